"""How fast a reduced-matrix synthetic cohort is made on this machine: one process against one per core.

The same cohort (same seed, same studies) is written ``--rounds`` times by each side, the two in turn within a
round (order alternating), each into a fresh folder; the figures are medians, with the projection to a
1,000-study cohort. On a shared machine the second process competes with whatever else runs, so more processes
can be slower: the table says so when it is.

Run: ``.venv/bin/python bench/bench_synth.py [--n 6] [--matrix 128] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from common import interleaved, machine, median, spread, table


def write(n: int, matrix: int, workers: int) -> None:
    """Write the cohort into a fresh temporary folder and delete it."""
    from data.synthetic.cohort import CohortOptions, write_cohort

    out = Path(tempfile.mkdtemp(prefix="vfrisk-bench-synth-"))
    try:
        write_cohort(out / "c", CohortOptions(n=n, seed=99, matrix=matrix, workers=workers, extras=False))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    """Time both sides and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--matrix", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2 studies at matrix 96, one round")
    args = ap.parse_args()
    if args.quick:
        args.n, args.matrix, args.rounds = 2, 96, 1
    print(machine())
    cores = len(os.sched_getaffinity(0))
    sides = {"1 process": lambda: write(args.n, args.matrix, 1),
             f"{cores} processes": lambda: write(args.n, args.matrix, cores)}
    times = interleaved(sides, args.rounds, warmup=0).wall
    one = median(times["1 process"])
    print(f"\n{args.n} studies at matrix {args.matrix}, median of {args.rounds} interleaved rounds:")
    rows = []
    for name, t in times.items():
        m = median(t)
        rows.append([name, spread(t, 1), f"{m / args.n:.2f} s", f"{m / args.n * 1000 / 60:.0f} min",
                     f"{one / m:.2f}x" + (" (slower)" if m > one else "")])
    print(table(["mode", "wall, median (min-max)", "per study", "1,000 studies", "speed-up over 1 process"], rows))


if __name__ == "__main__":
    main()
