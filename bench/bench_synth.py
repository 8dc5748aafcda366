"""How fast a reduced-matrix synthetic cohort is made on this machine.

Side by side on the same studies: one process (the naive baseline) and all cores (what `vfrisk synth` does),
and the projection to a 1,000-study cohort.  Usage: python bench/bench_synth.py [N] [MATRIX]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from data.synthetic.cohort import CohortOptions, write_cohort


def timed(n: int, matrix: int, workers: int) -> float:
    out = Path(tempfile.mkdtemp(prefix="vfrisk-bench-")) / "c"
    t = time.perf_counter()
    write_cohort(out, CohortOptions(n=n, seed=99, matrix=matrix, workers=workers, extras=False))
    dt = time.perf_counter() - t
    shutil.rmtree(out.parent, ignore_errors=True)
    return dt


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 24
    matrix = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    cores = len(os.sched_getaffinity(0))
    one = timed(n, matrix, 1)
    many = timed(n, matrix, cores)
    print(f"{n} studies at matrix {matrix} on {cores} cores")
    print(f"{'mode':<22}{'s/study':>10}{'1000 studies (min)':>22}{'x baseline':>12}")
    print(f"{'1 process (baseline)':<22}{one / n:>10.3f}{one / n * 1000 / 60:>22.1f}{1.0:>12.2f}")
    print(f"{f'{cores} processes':<22}{many / n:>10.3f}{many / n * 1000 / 60:>22.1f}{one / many:>12.2f}")


if __name__ == "__main__":
    main()
