"""Whole commands, as a user runs them: ``vfrisk --help``, ``vfrisk predict STUDY`` and ``vfrisk predict STUDY
--out DIR``, each a fresh process (interpreter start, imports, model loading, reading, both locate passes when
needed, the level check, the measurement, the suggestion, the JSON on stdout and, with ``--out``, every report).

Each command runs ``--rounds`` times, the three in turn within a round (order alternating), after one untimed
warm-up round (page cache and bytecode warm for all three alike); the figures are medians, and the peak resident
memory is each process's own (``wait4``). The study: a synthetic ``--matrix`` x ``--matrix`` x ``--slices``
axial series of 1 mm slices, Explicit VR Little Endian, kept in ``.bench-data/``.

Run: ``.venv/bin/python bench/bench_commands.py [--matrix 512] [--slices 300] [--rounds 5]``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from common import VFRISK, ProcessRun, fixed_study, machine, median, run_python, study_arguments, table

LABS = ("--ntx", "40", "--bmd-tscore", "-2.5")


def main() -> None:
    """Time the three commands and print the table."""
    args = study_arguments(__doc__.splitlines()[0], rounds=5)
    print(machine())
    study = fixed_study(args.matrix, args.slices)
    with tempfile.TemporaryDirectory(prefix="vfrisk-bench-out-") as tmp:
        out = Path(tmp) / "reports"
        commands = {
            "vfrisk --help": ["--help"],
            "vfrisk predict": ["predict", str(study), *LABS],
            "vfrisk predict --out": ["predict", str(study), *LABS, "--out", str(out)],
        }
        runs: dict[str, list[ProcessRun]] = {name: [] for name in commands}
        names, reports = list(commands), []
        for r in range(args.rounds + 1):  # round 0: warm-up, not recorded
            for name in names if r % 2 == 0 else names[::-1]:
                shutil.rmtree(out, ignore_errors=True)
                run = run_python(VFRISK, commands[name])
                if run.returncode != 0:
                    raise SystemExit(f"{name} failed with exit status {run.returncode}")
                if r:
                    runs[name].append(run)
                if "--out" in commands[name]:
                    reports = sorted(p.name for p in out.iterdir())
    print(f"\nwhole commands, {args.matrix} x {args.matrix} x {args.slices} study (uncompressed), "
          f"each a fresh process, median of {args.rounds} interleaved rounds after a warm-up round:")
    rows = []
    for name, rs in runs.items():
        walls = [r.wall_s for r in rs]
        rows.append([f"`{name}`", f"{median(walls):.2f} s ({min(walls):.2f}-{max(walls):.2f})",
                     f"{median([r.cpu_s for r in rs]):.2f} s", f"{median([r.peak_rss_mb for r in rs]):.0f} MB"])
    print(table(["command", "wall, median (min-max)", "CPU (user+sys)", "peak RSS"], rows))
    base, full = runs["vfrisk predict"], runs["vfrisk predict --out"]
    wall = median([r.wall_s for r in full]) - median([r.wall_s for r in base])
    cpu = median([r.cpu_s for r in full]) - median([r.cpu_s for r in base])
    rss = median([r.peak_rss_mb for r in full]) / median([r.peak_rss_mb for r in base])
    print(f"\nreports ({', '.join(reports)}) add {wall:.2f} s wall and {cpu:.2f} s CPU to `vfrisk predict` "
          f"({median([r.cpu_s for r in full]) / median([r.cpu_s for r in base]):.2f}x its CPU); peak memory "
          f"{rss:.2f}x `vfrisk predict`'s")


if __name__ == "__main__":
    main()
