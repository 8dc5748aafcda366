"""How the transparent measurement (``inference.measure``) does against the truth of a synthetic cohort.

``python -m training.measure_check --cohort DIR [--levels model|truth] [--n N]`` measures every level of the
first ``N`` studies of a labelled cohort (``vfrisk synth``) at the level centres the default model finds after
the level check (``model``, what ``vfrisk predict`` reports) or at the true centres (``truth``), and prints:
how many levels were measured, the height-ratio error against the phantom's truth (mean, share above 0.1),
how many intact bodies measure below 0.8 (a grade-1 deformity that is not there), the fractured levels'
error, and the trabecular HU error. No torch: the model runs through ONNX Runtime as in ``vfrisk predict``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from inference.engine import Engine
from inference.errors import InputError
from inference.io import load_any
from inference.labs import Labs
from inference.measure import Measurement, measure_levels
from inference.spec import RISK_LEVELS as LEVELS  # the levels every synthetic truth has (T11-L5)

TRUTH_FIELDS = ("z_mm", "height_ratio", "grade", "hu")
"""Per-level columns of a labelled cohort's truth.csv that the checks read (``<LEVEL>_<field>``)."""


def truth_rows(cohort: Path, n: int | None = None) -> list[dict[str, str]]:
    """The first ``n`` rows of ``cohort/truth.csv``; an :class:`InputError` when it is missing or lacks the
    columns of a labelled synthetic cohort (``study`` and ``<LEVEL>_<field>`` for every level)."""
    path = cohort / "truth.csv"
    if not path.is_file():
        raise InputError("bad_truth", f"no truth.csv in {cohort}")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ["study", *(f"{lv}_{f}" for lv in LEVELS for f in TRUTH_FIELDS)]
                   if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError("bad_truth", f"{path} is not a labelled cohort's truth: no column {missing[0]}")
        return list(reader)[:n]


def positive(text: str) -> int:
    """An integer of at least 1 (an argparse type)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def true_centres(row: dict[str, str], levels: tuple[str, ...]) -> list[tuple[str, float]]:
    """The true centres of ``levels`` that are given and wholly in view (``<LEVEL>_in_view``; absent, as in a
    standard cohort: in view)."""
    return [(lv, float(row[f"{lv}_z_mm"])) for lv in levels
            if row.get(f"{lv}_z_mm") and row.get(f"{lv}_in_view", "1") == "1"]


def _centres(study_dir: Path, row: dict[str, str], mode: str, engine: Engine | None) -> list[tuple[str, float]]:
    """Level centres to measure at: the model's (after the level check) or the truth's (the levels whose whole
    body is in the scan, in a ``--fov mixed`` cohort)."""
    if mode == "truth" or engine is None:
        return true_centres(row, LEVELS)
    result = engine.predict(load_any(study_dir), Labs(40.0, -1.5, 70.0, "F"))
    return [(v.level, float(v.z_mm)) for v in result.found_levels() if v.z_mm is not None]


def check(cohort: Path, mode: str = "model", n: int | None = None) -> dict[str, float]:
    """Measure the cohort's studies and return the summary figures (also printed by :func:`main`)."""
    engine = Engine() if mode == "model" else None
    rows = truth_rows(cohort, n)
    measured: list[tuple[Measurement, float, int, float]] = []
    total, skipped = 0, 0
    for row in rows:
        study_dir = cohort / row["study"]
        try:
            levels = _centres(study_dir, row, mode, engine)
            found = measure_levels(load_any(study_dir), levels)
        except InputError as exc:  # one unreadable or refused study is reported and skipped
            print(f"skipped {row['study']}: {exc.one_line()}", file=sys.stderr)
            skipped += 1
            continue
        total += len(levels)
        for m in found:
            if m.quality == "ok" and all(row.get(f"{m.level}_{k}") not in (None, "") for k in TRUTH_FIELDS):
                measured.append((m, float(row[f"{m.level}_height_ratio"]), int(row[f"{m.level}_grade"]),
                                 float(row[f"{m.level}_hu"])))
    err = np.array([abs(float(m.height_ratio or 0.0) - r) for m, r, _, _ in measured])
    intact = np.array([float(m.height_ratio or 0.0) for m, _, g, _ in measured if g == 0])
    fractured = [abs(float(m.height_ratio or 0.0) - r) for m, r, g, _ in measured if g > 0]
    hu = np.array([float(m.trabecular_hu or 0.0) - h for m, _, _, h in measured])
    return {
        "studies": len(rows), "skipped": skipped, "levels": total, "measured": len(measured),
        "ratio_mae": float(err.mean()) if err.size else float("nan"),
        "ratio_err_over_0.1": int((err > 0.1).sum()),
        "intact": int(intact.size), "intact_below_0.8": int((intact < 0.8).sum()),
        "intact_p5": float(np.percentile(intact, 5)) if intact.size else float("nan"),
        "fractured_measured": len(fractured),
        "fractured_ratio_mae": float(np.mean(fractured)) if fractured else float("nan"),
        "hu_mae": float(np.abs(hu).mean()) if hu.size else float("nan"),
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=Path, required=True, help="a labelled synthetic cohort (with truth.csv)")
    ap.add_argument("--levels", choices=("model", "truth"), default="model")
    ap.add_argument("--n", type=positive, default=None, help="only the first N studies")
    args = ap.parse_args(argv)
    try:
        out = check(args.cohort, args.levels, args.n)
    except InputError as exc:
        ap.error(exc.message)
    print(f"levels at the {args.levels}'s centres, {out['studies']} studies ({out['skipped']} skipped): measured "
          f"{out['measured']}/{out['levels']}")
    print(f"  height ratio: MAE {out['ratio_mae']:.3f}, error > 0.1 on {out['ratio_err_over_0.1']}; intact bodies "
          f"below 0.8: {out['intact_below_0.8']}/{out['intact']} (5th percentile {out['intact_p5']:.3f})")
    print(f"  fractured levels measured: {out['fractured_measured']}, ratio MAE {out['fractured_ratio_mae']:.3f}; "
          f"trabecular HU MAE {out['hu_mae']:.1f}")


if __name__ == "__main__":
    main()
