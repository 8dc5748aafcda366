"""How contrast detection (``inference.contrast``) and the contrast-corrected trabecular HU do against the truth of
a synthetic cohort.

``python -m training.contrast_check --cohort DIR [--levels truth|model] [--n N] [--out JSON]`` assesses every
study of a labelled cohort and prints a confusion table of the true phase against the phase told (aorta and
header), how many studies were told (n told / n total), and, where the transparent measurement exists, the error of
the measured and of the contrast-corrected trabecular HU against the unenhanced truth (``<LEVEL>_hu``).

``--levels truth`` (the default: the detector alone, cheaper) looks at the aorta beside the true level centres of
the levels in view; ``--levels model`` runs ``vfrisk predict``'s engine and reads the contrast and the
measurement from its result (a study it refuses is counted as refused, not told).

Family B truth has ``contrast_phase`` (none / arterial / portal_venous). Family A truth has only ``contrast``
(0/1): its enhanced studies have opacified vessels (160-320 HU) over unenhanced bone, so they are tabled as
``vessels_only`` and the false-positive rate is counted on its ``contrast`` 0 studies. Read-only on the cohort;
only ``--out`` is written. No torch.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from inference.contrast import AORTA_LEVELS, Contrast, assess, corrected
from inference.errors import InputError
from inference.findings import Measured, Vertebra
from inference.io import load_any
from inference.labs import Labs
from inference.spec import COUNTED_LEVELS
from training.measure_check import positive, true_centres

TOLD = ("none", "arterial", "portal_venous", "enhanced_unknown_phase", "not told", "refused")
"""Columns of the confusion table."""


def true_phase(row: dict[str, str]) -> str:
    """The study's true phase: family B's ``contrast_phase``; family A's ``contrast`` 0 -> ``none``, 1 ->
    ``vessels_only`` (opacified vessels, unenhanced bone)."""
    if row.get("contrast_phase"):
        return row["contrast_phase"]
    if row.get("contrast") in ("0", "1"):
        return "none" if row["contrast"] == "0" else "vessels_only"
    raise InputError("bad_truth", "truth.csv has neither contrast_phase nor contrast")


def in_view(row: dict[str, str]) -> list[tuple[str, float]]:
    """The levels T10-L6 whose true centre is given and in view (``<LEVEL>_in_view``, absent: in view)."""
    return true_centres(row, COUNTED_LEVELS)


def _truth_mode(study_dir: Path, row: dict[str, str]) -> tuple[Contrast, list[tuple[str, float | None]]]:
    """The detector alone at the true level centres, and the transparent measurement there."""
    from inference.measure import measure_levels

    study = load_any(study_dir)
    levels = in_view(row)
    found = [Vertebra(lv, True, None, None, None, z) for lv, z in levels]
    contrast = assess(study, [v for v in found if v.level in AORTA_LEVELS])
    measured = measure_levels(study, levels) if levels else []
    return contrast, [(m.level, m.trabecular_hu) for m in measured]


def _model_mode(study_dir: Path, engine: Any) -> tuple[Contrast, list[tuple[str, float | None]]]:
    """What ``vfrisk predict`` reports: its contrast and its measured levels."""
    result = engine.predict(load_any(study_dir), Labs(40.0, -1.5, 70.0, "F"))
    return result.contrast, [(v.level, v.measured.trabecular_hu) for v in result.found_levels()
                             if v.measured is not None]


def _hu_errors(row: dict[str, str], contrast: Contrast,
               measured: list[tuple[str, float | None]]) -> list[tuple[float, float]]:
    """(measured - truth, corrected - truth) per measured level, against the unenhanced truth ``<LEVEL>_hu``
    (corrected = measured when no correction applies)."""
    out = []
    for level, hu in measured:
        truth = row.get(f"{level}_hu")
        if hu is None or not truth:
            continue
        fixed = corrected(Measured("ok", hu), contrast).trabecular_hu_corrected
        value = hu if fixed is None else fixed
        out.append((hu - float(truth), value - float(truth)))
    return out


def check(cohort: Path, mode: str = "truth", n: int | None = None) -> dict[str, Any]:
    """Assess the cohort's studies; the summary and one record per study (also printed by :func:`main`)."""
    path = cohort / "truth.csv"
    if not path.is_file():
        raise InputError("bad_truth", f"no truth.csv in {cohort}")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:n]
    engine = None
    if mode == "model":
        from inference.engine import Engine

        engine = Engine()
    table: Counter[tuple[str, str]] = Counter()
    records: list[dict[str, Any]] = []
    errors: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        truth = true_phase(row)
        try:
            contrast, measured = (_truth_mode(cohort / row["study"], row) if engine is None
                                  else _model_mode(cohort / row["study"], engine))
        except InputError as exc:  # a refusal is reported and counted
            table[truth, "refused"] += 1
            records.append({"study": row["study"], "truth": truth, "told": "refused", "reason": exc.one_line()})
            continue
        told = contrast.phase or "not told"
        table[truth, told] += 1
        errors.setdefault(truth, []).extend(_hu_errors(row, contrast, measured))
        records.append({"study": row["study"], "truth": truth, "told": told, "source": contrast.source,
                        "aorta_hu": contrast.aorta_hu, "header": contrast.header,
                        "offset_hu": row.get("contrast_offset_hu") or None})
    return {"cohort": str(cohort), "levels": mode, "studies": len(rows),
            "told": sum(v for (_, t), v in table.items() if t not in ("not told", "refused")),
            "confusion": {f"{a}|{b}": v for (a, b), v in sorted(table.items())},
            "hu": {k: _hu_summary(v) for k, v in sorted(errors.items())}, "records": records}


def _hu_summary(errs: list[tuple[float, float]]) -> dict[str, float | int]:
    """Bias and MAE of the measured and of the corrected HU against the unenhanced truth."""
    e = np.array(errs, dtype=float).reshape(-1, 2)
    if not e.size:
        return {"levels": 0}
    return {"levels": int(e.shape[0]), "measured_bias": round(float(e[:, 0].mean()), 1),
            "measured_mae": round(float(np.abs(e[:, 0]).mean()), 1),
            "corrected_bias": round(float(e[:, 1].mean()), 1),
            "corrected_mae": round(float(np.abs(e[:, 1]).mean()), 1)}


def report(out: dict[str, Any]) -> str:
    """The confusion table and the HU errors as text."""
    pairs = {tuple(k.split("|")): v for k, v in out["confusion"].items()}
    truths = sorted({a for a, _ in pairs}, key=lambda t: (t != "none", t))
    cols = [t for t in TOLD if any(b == t for _, b in pairs)]
    head = "true / told"
    lines = [f"{out['cohort']}: levels at the {out['levels']}'s centres; told {out['told']}/{out['studies']}",
             f"{head:<15}" + "".join(f"{c:>24}" for c in cols)]
    lines += [f"{a:<15}" + "".join(f"{pairs.get((a, c), 0):>24}" for c in cols) for a in truths]
    fp = sum(v for (a, b), v in pairs.items() if a == "none" and b not in ("none", "not told", "refused"))
    told_none = sum(v for (a, b), v in pairs.items() if a == "none" and b not in ("not told", "refused"))
    lines.append(f"false positives (unenhanced told enhanced): {fp}/{told_none} told")
    for truth, s in out["hu"].items():
        if s.get("levels"):
            lines.append(f"trabecular HU vs unenhanced truth, {truth} ({s['levels']} levels measured): measured "
                         f"bias {s['measured_bias']:+.1f} MAE {s['measured_mae']:.1f}; corrected bias "
                         f"{s['corrected_bias']:+.1f} MAE {s['corrected_mae']:.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--cohort", type=Path, required=True, help="a labelled synthetic cohort (with truth.csv)")
    ap.add_argument("--levels", choices=("truth", "model"), default="truth")
    ap.add_argument("--n", type=positive, default=None, help="only the first N studies")
    ap.add_argument("--out", type=Path, default=None, help="write the summary and per-study records as JSON")
    args = ap.parse_args(argv)
    try:
        out = check(args.cohort, args.levels, args.n)
    except InputError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    print(report(out))
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
