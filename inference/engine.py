"""The inference engine: load a bundle once, score a study plus labs, return a typed :class:`Prediction`.

No torch, MONAI or Gradio here: ONNX Runtime, numpy and the shared crop function only.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from inference.bundle import Bundle, load_bundle, make_session
from inference.contrast import assess as assess_contrast
from inference.contrast import corrected
from inference.crop import Crop, spine_crop
from inference.findings import Measured, Vertebra, coverage, found_levels, level_findings, recentre_target
from inference.labs import Labs
from inference.result import InputFacts, ModelIdentity, Prediction
from inference.study import Study

log = logging.getLogger("vfrisk.engine")
OUTPUTS = ("probability", "interval", "level_presence", "level_z_mm", "level_hu", "level_height_ratio",
           "name_probs", "hu_profile", "ratio_profile", "profile_step_mm")
"""The graph's outputs (``models.full.OUTPUT_NAMES``; the bundle's card documents them)."""


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
                 "labs": np.array([labs.vector(self.spec.labs)], dtype=np.float32)}
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
        if len(found_levels(self.spec.levels, out2, crop2)) > len(found_levels(self.spec.levels, out, crop)):
            return crop2, out2
        return crop, out

    def predict(self, study: Study, labs: Labs, crop: Crop | None = None) -> Prediction:
        """Score one study: probability, interval, the bodies found with their names and how sure they are,
        the transparent measurement, identity, hashes and warnings; ``spine_not_covered`` when fewer than two
        whole bodies of T10-L5 are found."""
        t0 = time.perf_counter()
        crop, out = self.locate(study, labs, crop)
        vertebrae, naming, narrow = level_findings(self.spec.levels, out, crop, study)
        named = [v.level for v in vertebrae if v.present]
        warnings = list(study.warnings) + coverage(vertebrae, narrow) + naming.warnings(named)
        unsure = [v.level for v in vertebrae if v.present and v.name_uncertain]
        if unsure and naming.anchors:
            warnings.append(f"names uncertain: {', '.join(unsure)}")
        measured = transparent_measurements(study, [v for v in vertebrae if v.level != "S1"], crop=crop)
        contrast = assess_contrast(study, vertebrae)  # inference.contrast: phase, corrected HU, warning
        measured = {lv: corrected(m, contrast) for lv, m in measured.items()}
        warnings += contrast.warnings()
        prediction = Prediction(
            probability=round(float(out["probability"]), 4),
            interval=(round(float(out["interval"][0]), 4), round(float(out["interval"][1]), 4)),
            model=ModelIdentity(**self.bundle.identity),
            study_instance_uid=study.study_instance_uid,
            series_instance_uid=study.series_instance_uid,
            input=InputFacts(int(study.volume.shape[0]),
                             tuple(round(s, 4) for s in study.spacing_mm),  # type: ignore[arg-type]
                             study.orientation, crop_sha256(crop)),
            labs=labs,
            vertebrae=tuple(replace(v, measured=measured.get(v.level)) for v in vertebrae),
            warnings=tuple(warnings),
            anchors=naming.anchors,
            transitional=naming.transitional,
            contrast=contrast,
        )
        log.info("scored series %s in %.3f s", study.series_instance_uid, time.perf_counter() - t0)
        return prediction


def column_centre(study: Study) -> tuple[int, int]:
    """In-plane (row, column) of the vertebral column (:func:`inference.crop.spine_center` with the default
    spec), the reference of the transparent measurement."""
    from inference.crop import spine_center
    from inference.spec import PreprocessSpec

    return spine_center(study.volume, study.spacing_mm, PreprocessSpec())


def column_at(crop: Crop, study: Study, z_mm: float) -> tuple[int, int]:
    """In-plane (row, column) of the vertebral column at patient z ``z_mm``: the centre of the crop slice there
    (the crop follows the column, :func:`inference.crop.spine_track`)."""
    a = study.affine
    r, c = crop.slice_origin((crop.image.shape[0] - 1) / 2.0)
    r, c = r + crop.image.shape[1] // 2, c + crop.image.shape[2] // 2
    if abs(a[2, 0]) < 1e-6:
        return r, c
    for _ in range(2):  # the slice at z depends (slightly, for a tilted series) on the column: refine once
        k = (z_mm - a[2, 3] - a[2, 1] * r - a[2, 2] * c) / a[2, 0]
        r0, c0 = crop.slice_origin(k - crop.start_index[0])
        r, c = r0 + crop.image.shape[1] // 2, c0 + crop.image.shape[2] // 2
    return r, c


def transparent_measurements(study: Study, vertebrae: list[Vertebra], centre_rc: tuple[int, int] | None = None,
                             crop: Crop | None = None) -> dict[str, Measured]:
    """The transparent cross-check of each found level (inference.measure): trabecular HU in an elliptical ROI
    and heights on the mid-sagittal plane, next to the learned values. Heights are experimental (see README).
    With the model's ``crop``, each level is sought on the column the crop followed at its height."""
    from inference.measure import measure_levels

    found = [(v.level, float(v.z_mm)) for v in vertebrae if v.present and v.z_mm is not None]
    if not found:
        return {}
    centres = {lv: column_at(crop, study, z) for lv, z in found} if crop is not None else None
    return {m.level: Measured(m.quality, m.trabecular_hu, m.height_anterior_mm, m.height_middle_mm,
                              m.height_posterior_mm, m.height_ratio)
            for m in measure_levels(study, found, centre_rc, centres)}


def crop_sha256(crop: Crop) -> str:
    """Hash of exactly what the model saw: the crop's HU, its spacing and where it was cut."""
    h = hashlib.sha256(np.ascontiguousarray(crop.image, dtype=np.float32).data)  # the buffer itself: no copy
    h.update(np.asarray(crop.spacing_mm, dtype=np.float64).tobytes())
    h.update(str((crop.image.shape, crop.start_index)).encode())
    h.update(np.ascontiguousarray(crop.offsets, dtype=np.int64).tobytes())
    return h.hexdigest()
