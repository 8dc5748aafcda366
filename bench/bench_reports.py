"""What each report costs inside ``vfrisk predict --out``, and what reusing the parsed headers saves.

One process, one study read and scored once (the default model), then each format written alone, ``--rounds``
times, interleaved: with the headers the reader already parsed (``Study.source_frames``, what ``predict`` does
now) and with every header of the series read from the files again (what it did before issue 20). Both sides
write the same files (``tests/test_interop_reuse.py`` compares them). After one untimed warm-up round (imports).

Run: ``.venv/bin/python bench/bench_reports.py [--matrix 512] [--slices 300] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

from common import fixed_study, interleaved, machine, median, table


def main() -> None:
    """Score the study, time each format both ways, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", type=int, default=512)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a smoke run: a 128 x 128 x 200 study, one round")
    args = ap.parse_args()
    if args.quick:
        args.matrix, args.slices, args.rounds = 128, 200, 1
    print(machine())
    study_dir = fixed_study(args.matrix, args.slices)
    from inference.engine import Engine
    from inference.labs import LabInput
    from inference.pipeline import score_source
    from interop.reports import FORMATS, write_reports
    from vfrisk.pipeline import assess

    labs = LabInput.from_cells({"ntx": "40", "bmd_tscore": "-2.5", "age": None, "sex": None})
    scored = score_source(study_dir, labs, Engine())
    result = assess(scored.prediction, None)
    bare = replace(scored.study, source_frames=())
    with tempfile.TemporaryDirectory(prefix="vfrisk-bench-reports-") as tmp:
        out = Path(tmp)
        sides = {
            "all reused": lambda: write_reports(result, scored.study, study_dir, out / "a"),
            "all re-read": lambda: write_reports(result, bare, study_dir, out / "b"),
        }
        for fmt in FORMATS:
            sides[f"{fmt} reused"] = (lambda f=fmt: write_reports(result, scored.study, study_dir, out / "a", [f]))
            sides[f"{fmt} re-read"] = (lambda f=fmt: write_reports(result, bare, study_dir, out / "b", [f]))
        times = interleaved(sides, args.rounds)
        sizes = {p.name: p.stat().st_size for p in (out / "a").iterdir()}
    print(f"\nreports of one {args.matrix} x {args.matrix} x {args.slices} study, one process, each format alone, "
          f"median of {args.rounds} interleaved rounds:")
    from interop.reports import FILE_NAMES

    rows = []
    for fmt in [*FORMATS, "all"]:
        a, b = median(times[f"{fmt} reused"]), median(times[f"{fmt} re-read"])
        size = sizes.get(FILE_NAMES.get(fmt, ""))
        rows.append(["all together" if fmt == "all" else fmt, f"{a:.3f} s", f"{b:.3f} s", f"{b / a:.2f}x",
                     f"{size / 1e6:.2f} MB" if size else ""])
    print(table(["format", "headers reused (now)", "headers read again (before)", "before/now", "file"], rows))


if __name__ == "__main__":
    main()
