"""How the default model and the level check cope with scans that a scan's edge cuts short.

``python -m training.edge_check --cohort DIR [--n N] [--model BUNDLE]`` takes the first ``N`` studies of a
labelled synthetic cohort, cuts each at fixed positions relative to the true level centres (the top edge through
T11 or at T12/L1, the bottom edge through L5 or at the centre of L4/L3), scores every cut scan with
``Engine.predict`` (the model, the level check, the coverage rule) and prints per cut position: how many scans
were scored or refused, how many report a level more than ``--tol`` mm from its true centre, and how many carry
a "withdrawn" or "partly in the scan" warning. No torch: ONNX Runtime as in ``vfrisk predict``.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from inference.engine import Engine
from inference.errors import InputError
from inference.io import load_any
from inference.labs import Labs
from inference.spec import LEVELS
from inference.study import Study, z_slab
from training.measure_check import positive, truth_rows


def cut(study: Study, lo_mm: float, hi_mm: float) -> Study:
    """The part of a study between two patient z values (:func:`inference.study.z_slab`); an empty cut is an
    :class:`InputError` like any scan too short to score."""
    try:
        return z_slab(study, lo_mm, hi_mm)
    except ValueError as exc:
        raise InputError("too_few_slices", str(exc)) from exc


def cut_positions(z: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Named (low, high) patient-z ranges: each keeps 60 mm beyond the far end of the spine."""
    out = {f"top edge at T11 centre {d:+d} mm": (z["L5"] - 60.0, z["T11"] + d) for d in (-16, -11, -5, 0, 5)}
    out["top edge at T12 centre"] = (z["L5"] - 60.0, z["T12"])
    out["top edge at L1 centre"] = (z["L5"] - 60.0, z["L1"])
    out |= {f"bottom edge at L5 centre {d:+d} mm": (z["L5"] + d, z["T11"] + 60.0) for d in (-5, 0, 5)}
    out["bottom edge at L4 centre"] = (z["L4"], z["T11"] + 60.0)
    out["bottom edge at L3 centre"] = (z["L3"], z["T11"] + 60.0)
    return out


def check(cohort: Path, n: int | None = None, model: Path | None = None, tol: float = 10.0) -> dict[str, Counter[str]]:
    """Counts per cut position (see the module docstring)."""
    rows = truth_rows(cohort, n)
    engine = Engine(model)
    stats: dict[str, Counter[str]] = {}
    for row in rows:
        try:
            study = load_any(cohort / row["study"])
        except InputError as exc:  # one unreadable study is reported and skipped
            print(f"skipped {row['study']}: {exc.one_line()}", file=sys.stderr)
            continue
        z = {lv: float(row[f"{lv}_z_mm"]) for lv in LEVELS}
        for name, (lo, hi) in cut_positions(z).items():
            count = stats.setdefault(name, Counter())
            try:
                result = engine.predict(cut(study, lo, hi), Labs(40.0, -1.5, 70.0, "F"))
            except InputError:
                count["refused"] += 1
                continue
            count["scored"] += 1
            found = {v.level: float(v.z_mm) for v in result.found_levels() if v.z_mm is not None}
            count["level off"] += any(abs(zz - z[lv]) > tol for lv, zz in found.items())
            count["withdrawn"] += any("withdrawn" in w for w in result.warnings)
            count["partly in the scan"] += any("partly in the scan" in w for w in result.warnings)
    return stats


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=Path, required=True, help="a labelled synthetic cohort (with truth.csv)")
    ap.add_argument("--n", type=positive, default=None, help="only the first N studies")
    ap.add_argument("--model", type=Path, default=None, help="model bundle (default: bundled)")
    ap.add_argument("--tol", type=float, default=10.0, help="mm from the true centre that counts as off")
    args = ap.parse_args(argv)
    try:
        stats = check(args.cohort, args.n, args.model, args.tol)
    except InputError as exc:
        ap.error(exc.message)
    print(f"{'cut':36} scored refused  level>{args.tol:.0f}mm  withdrawn  partly")
    for name, c in stats.items():
        print(f"{name:36} {c['scored']:6} {c['refused']:7} {c['level off']:10} {c['withdrawn']:10} "
              f"{c['partly in the scan']:7}")


if __name__ == "__main__":
    main()
