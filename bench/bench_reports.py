"""What each report costs inside ``vfrisk predict --out``, and what reusing the parsed headers saves.

One process, one study read and scored once (the default model), then, ``--rounds`` times, interleaved, after one
untimed warm-up round (imports): each format written alone (with the headers the reader kept); the series' headers
kept by the reader (``Study.source_frames``, now) against read from the files again (before issue 20); all five
reports with the kept headers (what ``predict --out`` does now) against with the headers read again (what it did
before). Both ways write the same files (``tests/test_interop_reuse.py`` compares them).

Run: ``.venv/bin/python bench/bench_reports.py [--matrix 512] [--slices 300] [--rounds 3]``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from common import fixed_study, interleaved, machine, median, study_arguments, table


def main() -> None:
    """Score the study, time each format both ways, print the table."""
    args = study_arguments(__doc__.splitlines()[0], rounds=3)
    print(machine())
    study_dir = fixed_study(args.matrix, args.slices)
    from inference.engine import Engine
    from inference.labs import LabInput
    from inference.pipeline import score_source
    from interop.reports import FILE_NAMES, FORMATS, write_reports
    from interop.source import read_source_series, series_from_frames
    from vfrisk.pipeline import assess

    labs = LabInput.from_cells({"ntx": "40", "bmd_tscore": "-2.5", "age": None, "sex": None})
    scored = score_source(study_dir, labs, Engine())
    result = assess(scored.prediction, None)
    bare = replace(scored.study, source_frames=())
    uid = scored.study.series_instance_uid
    with tempfile.TemporaryDirectory(prefix="vfrisk-bench-reports-") as tmp:
        out = Path(tmp)
        sides: dict[str, Callable[[], object]] = {
            f"`{fmt}` alone": (lambda f=fmt: write_reports(result, scored.study, study_dir, out / "a", [f]))
            for fmt in FORMATS}
        sides |= {
            "the series' headers, kept by the reader (now)": lambda: series_from_frames(scored.study.source_frames),
            "the series' headers, read from the files again (before)": lambda: read_source_series(study_dir, uid),
            "all five, headers kept (now)": lambda: write_reports(result, scored.study, study_dir, out / "b"),
            "all five, headers read again (before)": lambda: write_reports(result, bare, study_dir, out / "c"),
        }
        times = interleaved(sides, args.rounds)
        sizes = {p.name: p.stat().st_size for p in (out / "b").iterdir()}
    print(f"\nreports of one {args.matrix} x {args.matrix} x {args.slices} study, one process, median of "
          f"{args.rounds} interleaved rounds after a warm-up round:")
    rows = [[name, f"{median(t):.3f} s", f"{median(times.cpu[name]):.3f} s", ""] for name, t in times.wall.items()]
    for row, fmt in zip(rows, FORMATS, strict=False):
        row[3] = f"{sizes.get(FILE_NAMES[fmt], 0) / 1e6:.2f} MB"
    print(table(["what", "wall", "CPU", "file"], rows))
    now, before = "all five, headers kept (now)", "all five, headers read again (before)"
    print(f"\nall five reports: {median(times.wall[now]):.2f} s wall / {median(times.cpu[now]):.2f} s CPU with the "
          f"kept headers, {median(times.wall[before]):.2f} s / {median(times.cpu[before]):.2f} s reading them again "
          f"(CPU {median(times.cpu[before]) / median(times.cpu[now]):.2f}x); the same files either way "
          "(tests/test_interop_reuse.py)")


if __name__ == "__main__":
    main()
