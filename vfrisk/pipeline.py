"""The application pipeline: read → score (:mod:`inference.pipeline`) → typed prediction → suggest → typed
suggestion → reports. ``vfrisk predict``, the web app, the C-STORE listener, the DICOMweb puller and the
evaluation all run it; each stage takes arguments and returns a value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from clinical.suggestion import Suggestion
from inference.labs import LabInput
from inference.result import Prediction
from inference.study import Study
from vfrisk.result import Result


def clinical_context(prediction: Prediction, context: Mapping[str, Any] | None) -> dict[str, Any]:
    """The suggestion engine's input: the user's context completed with this study's facts (what the user gave
    wins; the labs the model used fill what the context leaves out)."""
    ctx = dict(context or {})
    ctx.setdefault("assessment_date", dt.date.today().isoformat())
    patient = dict(ctx.get("patient") or {})
    labs = prediction.labs
    patient.setdefault("age", labs.age)
    patient.setdefault("sex", labs.sex)
    plabs = dict(patient.get("labs") or {})
    plabs.setdefault("urine_ntx_nmol_bce_per_mmol_cr", labs.ntx)
    patient["labs"] = plabs
    if not patient.get("dxa"):
        patient["dxa"] = {"t_lumbar_spine": labs.bmd_tscore}
    found = prediction.found_levels()
    # an L1 whose name is uncertain may be a neighbour: its HU is not given as L1's (missing is missing)
    l1 = next((v for v in found if v.level == "L1" and not v.name_uncertain), None)
    patient["imaging"] = {
        "study": prediction.study_instance_uid or None,
        "l1_trabecular_hu": l1.trabecular_hu if l1 else None,
        "vertebral_deformities": [
            {"level": v.level, "genant_grade": v.genant_grade,
             "height_loss_pct": round(100 * (1 - v.height_ratio), 1)}
            for v in found if v.genant_grade and v.height_ratio is not None
        ],
    }
    ctx["patient"] = patient
    ctx["model"] = {"p_vertebral_fracture_6m": prediction.probability}
    return ctx


def suggest(prediction: Prediction, context: Mapping[str, Any] | None = None) -> Suggestion:
    """Run the suggestion engine on the context completed with the prediction (``invalid_context`` on a bad
    context)."""
    from clinical.engine import suggestion

    return suggestion(clinical_context(prediction, context))


def assess(prediction: Prediction, context: Mapping[str, Any] | None = None) -> Result:
    """The prediction with its suggestion: the typed result every output is written from."""
    return Result(prediction, suggest(prediction, context))


def write_reports(result: Result, study: Study, source: Path | Sequence[Path], out: Path,
                  formats: Iterable[str] | None = None) -> dict[str, Path]:
    """Write the reports (JSON; SR, SEG, FHIR and PDF with the interop layer) into ``out``; format -> path."""
    check_out_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        from interop.reports import FORMATS
        from interop.reports import write_reports as write
    except ImportError:  # a core install without the interop extra: the JSON alone
        import json

        path = out / "result.json"
        path.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return {"json": path}
    return write(result, study, source, out, formats=FORMATS if formats is None else formats)


def check_out_folder(out: Path) -> None:
    """Refuse (``bad_usage``) an output folder that exists as something else than a folder, before any work."""
    from inference.errors import InputError

    if out.exists() and not out.is_dir():
        raise InputError("bad_usage", f"--out must be a folder; {out.name} exists and is not one")


def read_context(path: Path | None) -> dict[str, Any] | None:
    """A clinical context JSON file (validated later by the suggestion engine)."""
    import json

    from inference.errors import InputError

    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError("invalid_context", f"cannot read context {path.name}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError("invalid_context", "the context file must hold one JSON object")
    return data


def predict_cli(source: Path | list[Path], *, labs: LabInput, context: Path | None, model: Path | None,
                out: Path | None) -> dict[str, Any]:
    """``vfrisk predict``: read, score, suggest, and write the reports when ``out`` is given; the result JSON
    (with ``reports``, format -> path, when written)."""
    from inference.engine import Engine
    from inference.pipeline import score_source

    ctx = read_context(context)
    if out is not None:
        check_out_folder(out)
    engine = Engine(model)
    scored = score_source(source, labs, engine)
    del engine  # the reports need no model: its ONNX Runtime session and arena go before they are written
    result = assess(scored.prediction, ctx)
    data = result.to_json()
    if out is not None:
        data["reports"] = {k: str(v) for k, v in write_reports(result, scored.study, source, out).items()}
        _release_report_tables()
    return data


def _release_report_tables() -> None:
    """The command ends after its reports: free the report writers' one-off tables now, cheaply, rather than
    at the interpreter's shutdown (:func:`interop.reports.release_tables`)."""
    try:
        from interop.reports import release_tables
    except ImportError:  # a core install without the interop extra
        return
    release_tables()
