"""The inference engine: load a bundle once, score a study plus labs, return the result JSON of DESIGN.md.

No torch, MONAI or Gradio here: ONNX Runtime, numpy and the shared crop function only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from inference.bundle import Bundle, load_bundle, make_session
from inference.crop import Crop, spine_crop
from inference.findings import coverage, found_levels, level_findings, recentre_target
from inference.labs import Labs
from inference.study import Study

log = logging.getLogger("vfrisk.engine")
DISCLAIMER = "Decision support for clinicians; not a diagnosis. vfrisk is research software, not a diagnostic device."
OUTPUTS = ("probability", "interval", "level_presence", "level_z_mm", "level_hu", "level_height_ratio")


class Engine:
    """A loaded model bundle and its ONNX Runtime session."""

    def __init__(self, bundle: Path | None = None, threads: int = 0) -> None:
        self.bundle: Bundle = load_bundle(bundle)
        self.session = make_session(self.bundle, threads)
        self.spec = self.bundle.spec

    @property
    def lab_ranges(self) -> dict[str, list[float]]:
        """Valid ranges of the labs, from the model card."""
        return self.bundle.lab_ranges

    def crop(self, study: Study) -> Crop:
        """The shared spine-centred crop (numpy; may run in a worker process)."""
        return spine_crop(study, self.spec)

    def run(self, crop: Crop, labs: Labs) -> dict[str, np.ndarray]:
        """One forward pass of the graph; outputs for this study (batch axis removed)."""
        feeds = {"image": crop.image[None, None].astype(np.float32, copy=False),
                 "spacing": np.array([crop.spacing_mm], dtype=np.float32),
                 "labs": np.array([labs.vector()], dtype=np.float32)}
        values = self.session.run(list(OUTPUTS), feeds)
        return {name: v[0] for name, v in zip(OUTPUTS, values, strict=True)}

    def locate(self, study: Study, labs: Labs, crop: Crop | None = None) -> tuple[Crop, dict[str, np.ndarray]]:
        """Run on the scan-centred crop; when levels are missing and the scan goes on beyond the crop, re-centre
        the crop on the spine the first pass found and keep whichever pass found more levels."""
        crop = crop or self.crop(study)
        out = self.run(crop, labs)
        target = recentre_target(self.spec.levels, out, crop)
        if target is None:
            return crop, out
        crop2 = spine_crop(study, self.spec, z_centre_index=target)
        out2 = self.run(crop2, labs)
        if len(found_levels(self.spec.levels, out2)) > len(found_levels(self.spec.levels, out)):
            return crop2, out2
        return crop, out

    def predict(self, study: Study, labs: Labs, context: dict[str, Any] | None = None,
                crop: Crop | None = None) -> dict[str, Any]:
        """Score one study: probability, interval, findings, identity, hashes, warnings, suggestion."""
        t0 = time.perf_counter()
        crop, out = self.locate(study, labs, crop)
        from inference.levels import checked_levels, column_centre  # scipy: imported when a study is scored

        centre_rc = column_centre(study)  # found once for the level check and the measurement

        located = level_findings(self.spec.levels, out, crop, study)
        vertebrae, moved, partial = checked_levels(study, located, centre_rc)
        withdrawn = {v.level for v in located if v.present} - {v.level for v in vertebrae if v.present}
        explained = withdrawn | {p.level for p in partial}
        warnings = (list(study.warnings) + coverage(vertebrae, explained, found_levels(self.spec.levels, out))
                    + moved + [p.warning() for p in partial])
        measured = transparent_measurements(study, vertebrae, centre_rc)
        probability = float(out["probability"])
        result: dict[str, Any] = {
            "probability": round(probability, 4),
            "interval": [round(float(x), 4) for x in out["interval"]],
            "model": self.bundle.identity,
            "study_instance_uid": study.study_instance_uid,
            "series_instance_uid": study.series_instance_uid,
            "input": {"slices": int(study.volume.shape[0]), "spacing_mm": [round(s, 4) for s in study.spacing_mm],
                      "orientation": study.orientation, "sha256": crop_sha256(crop)},
            "labs": labs.as_dict(),
            "vertebrae": [v.as_dict() | ({"measured": measured[v.level]} if v.level in measured else {})
                          for v in vertebrae],
            "warnings": warnings,
            "disclaimer": DISCLAIMER,
        }
        suggestion = suggest_for(result, context)
        result["suggestion"] = suggestion
        result["risk_category"] = suggestion["risk_category"]
        log.info("scored series %s in %.3f s", study.series_instance_uid, time.perf_counter() - t0)
        return result


def transparent_measurements(study: Study, vertebrae: list[Any],
                             centre_rc: tuple[int, int] | None = None) -> dict[str, dict[str, Any]]:
    """The transparent cross-check of each found level (inference.measure): trabecular HU in an elliptical ROI
    and heights on the mid-sagittal plane, next to the learned values. Heights are experimental (see README)."""
    from inference.measure import measure_levels

    found = [(v.level, float(v.z_mm)) for v in vertebrae if v.present and v.z_mm is not None]
    if not found:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for m in measure_levels(study, found, centre_rc):
        d = m.as_dict()
        out[m.level] = {str(k): d[k] for k in ("quality", "trabecular_hu", "height_anterior_mm", "height_middle_mm",
                                          "height_posterior_mm", "height_ratio") if k in d}
    return out


def crop_sha256(crop: Crop) -> str:
    """Hash of exactly what the model saw: the crop's HU, its spacing and where it was cut."""
    h = hashlib.sha256(np.ascontiguousarray(crop.image, dtype=np.float32).data)  # the buffer itself: no copy
    h.update(np.asarray(crop.spacing_mm, dtype=np.float64).tobytes())
    h.update(str((crop.image.shape, crop.start_index)).encode())
    return h.hexdigest()


def clinical_context(result: dict[str, Any], context: dict[str, Any] | None) -> dict[str, Any]:
    """The suggestion engine's input: the user's context completed with this study's facts."""
    ctx = {k: v for k, v in (context or {}).items()}
    ctx.setdefault("assessment_date", dt.date.today().isoformat())
    patient = dict(ctx.get("patient") or {})
    labs = result["labs"]
    patient.setdefault("age", labs["age"])
    patient.setdefault("sex", labs["sex"])
    plabs = dict(patient.get("labs") or {})
    plabs.setdefault("urine_ntx_nmol_bce_per_mmol_cr", labs["ntx_nmol_bce_per_mmol_cr"])
    patient["labs"] = plabs
    if not patient.get("dxa"):
        patient["dxa"] = {"t_lumbar_spine": labs["bmd_tscore"]}
    found = [v for v in result["vertebrae"] if v["present"]]
    l1 = next((v for v in found if v["level"] == "L1"), None)
    patient["imaging"] = {
        "study": result["study_instance_uid"] or None,
        "l1_trabecular_hu": l1["trabecular_hu"] if l1 else None,
        "vertebral_deformities": [
            {"level": v["level"], "genant_grade": v["genant_grade"],
             "height_loss_pct": round(100 * (1 - v["height_ratio"]), 1)}
            for v in found if v["genant_grade"] and v["genant_grade"] > 0
        ],
    }
    ctx["patient"] = patient
    ctx["model"] = {"p_vertebral_fracture_6m": result["probability"]}
    return ctx


def suggest_for(result: dict[str, Any], context: dict[str, Any] | None) -> dict[str, Any]:
    """Run the suggestion engine on the completed context."""
    from clinical.engine import suggest

    return suggest(clinical_context(result, context))
