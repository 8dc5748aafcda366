"""``vfrisk predict``: read one study, score it, print the result JSON, optionally write the reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inference.errors import InputError
from inference.labs import resolve_labs


def read_context(path: Path | None) -> dict[str, Any] | None:
    """A clinical context JSON file (validated later by the suggestion engine)."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError("invalid_context", f"cannot read context {path.name}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError("invalid_context", "the context file must hold one JSON object")
    return data


def predict_cli(source: Path | list[Path], *, ntx: float | None, bmd_tscore: float | None, age: int | None,
                sex: str | None, context: Path | None, model: Path | None, out: Path | None) -> dict[str, Any]:
    """Load the study, validate the labs, score, and write the reports when ``out`` is given."""
    from inference.engine import Engine
    from inference.io import load_any as load_study

    ctx = read_context(context)
    engine = Engine(model)
    study = load_study(source)
    labs = resolve_labs(ntx, bmd_tscore, age, sex, study, engine.lab_ranges)
    result = engine.predict(study, labs, ctx)
    if out is not None:
        result["reports"] = write_outputs(result, study, source, out)
    return result


def write_outputs(result: dict[str, Any], study: Any, source: Path | list[Path], out: Path) -> dict[str, str]:
    """JSON always; SR, SEG, FHIR and PDF through the interop layer when it is installed."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        from interop.reports import write_reports
    except ImportError:
        path = out / "result.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        return {"json": str(path)}
    return {k: str(v) for k, v in write_reports(result, study, source, out).items()}
