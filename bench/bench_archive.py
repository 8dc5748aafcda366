"""``vfrisk score`` over a mixed archive against the pixel-decode floor of the same files, and compressed studies
against the decode floor of the slices they use.

The archive: ``--studies`` synthetic studies of ``--matrix`` x ``--matrix`` x ``--slices`` 1 mm axial slices, in
every transfer syntax the synthetic writer makes, in the proportions it draws them for a cohort (Explicit VR
Little Endian about half, then Implicit VR, RLE, JPEG-LS and JPEG 2000 lossless), made once into
``.bench-data/``. Three measurements, each side timed the same way, interleaved, median of ``--rounds``:

* archive -- ``run_score`` (local engine, a fresh output each run, so nothing is skipped) with 1 and 2 workers,
  against the floor: the same files read and decoded (``pydicom.dcmread(f).pixel_array``, nothing else) by a
  pool of the same number of processes. Both are timed from the call to the last result, process start-up
  included (vfrisk's workers also load the ONNX session); the CPU seconds of all processes (this one's and each
  worker's own, as the workers report them) and the peak RSS of each worker process (``ru_maxrss``) are measured
  the same way for both. vfrisk does more than the floor (header checks, series choice, sort, HU of the
  crop, hashing, inference, results table and database) and decodes less: only the slices the spine finder
  samples and the crop's (for an uncompressed file only the crop's rows);
* compressed -- each JPEG 2000 and JPEG-LS study of the archive in this process, with a batch worker's limits
  (one decoding thread): the score row's read (decoding only the slices used), the whole-volume path the batch
  took before issue 20 (decode every slice, then crop), and the floor of ``dcmread`` + ``pixel_array`` of
  exactly the files the score row decoded (pydicom's default decoder either way); the page cache is warm (the
  archive runs read these files); peak RSS of each path alone in a fresh process;
* Ray -- ``--engine ray`` against the local engine, 2 workers, same archive (``--ray-rounds``; ``--no-ray`` skips).

Run: ``.venv/bin/python bench/bench_archive.py [--studies 8] [--matrix 512] [--slices 300] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import fixed_study, machine, median, quiet_stderr, run_python, spread, table

WEIGHTS = {"explicit": 0.5, "implicit": 0.15, "rle": 0.15, "jpegls": 0.1, "j2k": 0.1}
"""The cohort writer's proportions (``data.synthetic.cohort.SYNTAX_WEIGHTS``): each syntax at least once."""


def mix(n: int) -> list[str]:
    """``n`` transfer syntaxes: every one at least once, the rest by the largest remainder of the weights."""
    if n < len(WEIGHTS):
        raise SystemExit(f"--studies must be at least {len(WEIGHTS)} (one per transfer syntax)")
    counts = dict.fromkeys(WEIGHTS, 1)
    share = {k: w * n - 1 for k, w in WEIGHTS.items()}
    for _ in range(n - len(WEIGHTS)):
        pick = max(share, key=lambda k: share[k])
        counts[pick] += 1
        share[pick] -= 1
    return [k for k in WEIGHTS for _ in range(counts[k])]


def make_archive(root: Path, matrix: int, slices: int, syntaxes: list[str]) -> tuple[Path, list[Path]]:
    """The archive folder (links to the kept studies) and its manifest."""
    studies = [fixed_study(matrix, slices, syntax, index=i) for i, syntax in enumerate(syntaxes)]
    (root / "studies").mkdir(parents=True)
    rows = [["study", "ntx", "bmd_tscore", "age", "sex", "syntax"]]
    for i, (study, syntax) in enumerate(zip(studies, syntaxes, strict=True)):
        link = root / "studies" / f"S{i:02d}-{syntax}"
        link.symlink_to(study, target_is_directory=True)
        rows.append([link.relative_to(root).as_posix(), "40", "-2.5", "70", "F", syntax])
    with (root / "manifest.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return root / "manifest.csv", studies


def decode_study(folder: str) -> tuple[int, float, float]:
    """Floor: read and decode every file of a study (pydicom, nothing else); this process's id, peak RSS (MB) and
    CPU seconds so far."""
    import pydicom

    for path in sorted(Path(folder).rglob("*.dcm")):
        pydicom.dcmread(path).pixel_array  # noqa: B018  (decoding is the point)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return os.getpid(), usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Workers:
    """What the worker processes of one run reported: peak RSS (MB) and CPU seconds, one value per worker."""

    peak_rss_mb: list[float]
    cpu_s: list[float]


def floor_run(studies: list[Path], workers: int) -> Workers:
    """The floor over every study in a pool of ``workers`` processes."""
    ctx = multiprocessing.get_context("forkserver")
    peaks: dict[int, float] = {}
    cpu: dict[int, float] = {}
    with ctx.Pool(workers) as pool:
        for pid, peak, used in pool.imap_unordered(decode_study, [str(s) for s in studies], chunksize=1):
            peaks[pid], cpu[pid] = max(peaks.get(pid, 0.0), peak), max(cpu.get(pid, 0.0), used)
    return Workers([peaks[p] for p in sorted(peaks)], [cpu[p] for p in sorted(cpu)])


def vfrisk_run(archive: Path, manifest: Path, workers: int, engine: str, out: Path) -> Workers:
    """``vfrisk score`` over the archive into a fresh output (its run report gives each worker's figures)."""
    from inference.batch import ScoreOptions, run_score

    shutil.rmtree(out.parent, ignore_errors=True)
    with quiet_stderr():  # its progress bar (and Ray's log lines)
        summary = run_score(ScoreOptions(archive=archive, manifest=manifest, out=out, workers=workers,
                                         engine=engine))
    report = json.loads(Path(summary["report"]).read_text())
    if report["counts"]["error"]:
        raise SystemExit(f"vfrisk score gave error rows: {report['reasons']}")
    return Workers(list(report["peak_rss_mb"]["workers"]), list(report["worker_cpu_s"]))


@dataclass
class Timed:
    """One side's rounds: wall seconds, CPU seconds of all its processes (this one's and its workers'), and
    what its workers reported."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    workers: list[Workers] = field(default_factory=list)


def timed_rounds(sides: dict[str, Callable[[], Workers | None]], rounds: int) -> dict[str, Timed]:
    """Each side ``rounds`` times, interleaved (order alternating); CPU: this process's plus its workers'."""
    out = {k: Timed() for k in sides}
    names = list(sides)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            workers = sides[name]()
            out[name].wall.append(time.perf_counter() - t0)
            out[name].cpu.append(time.process_time() - c0 + (sum(workers.cpu_s) if workers else 0.0))
            if workers is not None:
                out[name].workers.append(workers)
        print(f"  (round {r + 1} of {rounds} done)", flush=True)
    return out


def peak_text(timed: Timed) -> str:
    """The largest peak RSS of any worker over the rounds."""
    flat = [p for w in timed.workers for p in w.peak_rss_mb]
    return f"{max(flat):.0f} MB" if flat else "-"


def archive_table(archive: Path, manifest: Path, studies: list[Path], rounds: int, tmp: Path) -> None:
    """Studies per minute of vfrisk and of the floor, 1 and 2 workers."""
    sides: dict[str, Callable[[], Workers | None]] = {}
    for w in (1, 2):
        sides[f"vfrisk {w}"] = lambda w=w: vfrisk_run(archive, manifest, w, "local", tmp / f"out{w}" / "r.csv")
        sides[f"floor {w}"] = lambda w=w: floor_run(studies, w)
    res = timed_rounds(sides, rounds)
    rows = []
    for w in (1, 2):
        for name, label in ((f"vfrisk {w}", "vfrisk score"), (f"floor {w}", "decode floor")):
            t = res[name]
            rows.append([f"{w}", label, spread(t.wall, 1), f"{60 * len(studies) / median(t.wall):.1f}",
                         f"{median(t.cpu):.1f} s", peak_text(t)])
        ours, flo = res[f"vfrisk {w}"], res[f"floor {w}"]
        rows.append([f"{w}", "vfrisk / floor", f"{median(ours.wall) / median(flo.wall):.2f}x", "",
                     f"{median(ours.cpu) / median(flo.cpu):.2f}x", ""])
    print(table(["workers", "side", "wall, median (min-max)", "studies/min", "CPU, all processes",
                 "peak RSS per worker"], rows))


def used_files(folder: Path, spec: object) -> list[Path]:
    """The files the score row decodes for this study (the region reader's decoded slices), found by running
    the score row's read once with the region reader observed."""
    from inference.dicom import region
    from inference.io import load_crop_any

    seen: list[tuple[list, region.RegionVolume]] = []
    real = region.region_volume

    def observed(frames: list, stack: object) -> region.RegionVolume | None:
        lazy = real(frames, stack)  # type: ignore[arg-type]
        if lazy is not None:
            seen.append((frames, lazy))
        return lazy

    region.region_volume = observed  # type: ignore[assignment]
    try:
        load_crop_any(folder, spec)  # type: ignore[arg-type]
    finally:
        region.region_volume = real  # type: ignore[assignment]
    if not seen:
        raise SystemExit(f"{folder} did not take the region path")
    frames, lazy = seen[0]
    return [frames[s].path for s in sorted(set(lazy.decoded_slices))]


_SPEC = ("import sys; from inference.batch.work import worker_limits; from inference.bundle import "
         "default_bundle, load_bundle; spec = load_bundle(default_bundle()).spec; ")
PATHS = {
    "score row (now)": _SPEC + "from inference.io import load_crop_any; "
                               "load_crop_any(sys.argv[1], spec, limits=worker_limits())",
    "whole volume (before)": _SPEC + "from inference.io import load_any; from inference.crop import spine_crop; "
                                     "spine_crop(load_any(sys.argv[1], worker_limits()), spec)",
}
"""The two paths alone in a fresh process each, with a batch worker's limits (one decoding thread)."""


def compressed_table(studies: list[Path], syntaxes: list[str], rounds: int) -> None:
    """Each JPEG 2000 / JPEG-LS study: the score row's read, the whole-volume path, the floor of the slices used."""
    import pydicom

    from inference.batch.work import worker_limits
    from inference.bundle import default_bundle, load_bundle
    from inference.crop import spine_crop
    from inference.io import load_any, load_crop_any

    spec = load_bundle(default_bundle()).spec
    rows = []
    for study, syntax in zip(studies, syntaxes, strict=True):
        if syntax not in ("j2k", "jpegls"):
            continue
        files = used_files(study, spec)
        n_all = len(list(study.rglob("*.dcm")))

        def now(study: Path = study) -> None:
            load_crop_any(study, spec, limits=worker_limits())

        def before(study: Path = study) -> None:
            spine_crop(load_any(study, worker_limits()), spec)

        def floor_used(files: list[Path] = files) -> None:
            for path in files:
                pydicom.dcmread(path).pixel_array  # noqa: B018  (decoding is the point)

        res = timed_rounds({"now": now, "before": before, "floor": floor_used}, rounds)
        mem = {k: run_python(code, [str(study)]).peak_rss_mb for k, code in PATHS.items()}
        for label, key, rss in (("score row read (now)", "now", mem["score row (now)"]),
                                ("whole volume + crop (before)", "before", mem["whole volume (before)"]),
                                ("decode floor of the slices decoded", "floor", None)):
            t, f = res[key], res["floor"]
            rows.append([syntax, f"{len(files)} of {n_all}", label, f"{median(t.wall):.2f} s",
                         f"{median(t.wall) / median(f.wall):.2f}x", f"{median(t.cpu):.2f} s",
                         f"{median(t.cpu) / median(f.cpu):.2f}x", f"{rss:.0f} MB" if rss else ""])
    print(table(["syntax", "slices decoded", "path", "wall", "x floor", "CPU", "CPU x floor",
                 "peak RSS, alone in a process"], rows))


def ray_table(archive: Path, manifest: Path, n: int, rounds: int, tmp: Path) -> None:
    """The local engine and Ray, 2 workers, on this machine."""
    sides = {"local": lambda: vfrisk_run(archive, manifest, 2, "local", tmp / "rl" / "r.csv"),
             "ray": lambda: vfrisk_run(archive, manifest, 2, "ray", tmp / "rr" / "r.csv")}
    res = timed_rounds(sides, rounds)
    local, ray = median(res["local"].wall), median(res["ray"].wall)
    print(table(["engine (2 workers)", "wall, median (min-max)", "studies/min", "x local"],
                [["local", spread(res["local"].wall, 1), f"{60 * n / local:.1f}", "1.00x"],
                 ["ray (local instance)", spread(res["ray"].wall, 1), f"{60 * n / ray:.1f}",
                  f"{ray / local:.2f}x"]]))


def main() -> None:
    """Make (or reuse) the archive and print the three tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=8)
    ap.add_argument("--matrix", type=int, default=512)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ray-rounds", type=int, default=1)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 5 studies of 128 x 128 x 200, one round")
    args = ap.parse_args()
    if args.quick:
        args.studies, args.matrix, args.slices, args.rounds, args.ray_rounds = 5, 128, 200, 1, 1
    print(machine())
    syntaxes = mix(args.studies)
    with tempfile.TemporaryDirectory(prefix="vfrisk-bench-archive-") as name:
        tmp = Path(name)
        manifest, studies = make_archive(tmp / "archive", args.matrix, args.slices, syntaxes)
        counts = ", ".join(f"{syntaxes.count(k)} {k}" for k in WEIGHTS)
        print(f"\narchive: {len(studies)} studies of {args.matrix} x {args.matrix} x {args.slices} ({counts}); "
              f"median of {args.rounds} interleaved rounds:")
        archive_table(tmp / "archive", manifest, studies, args.rounds, tmp)
        print(f"\ncompressed studies, one process, median of {args.rounds} interleaved rounds (page cache warm); "
              "peak RSS: each path alone in a fresh process:")
        compressed_table(studies, syntaxes, args.rounds)
        if not args.no_ray:
            print(f"\nRay against the local engine on this machine, same archive, 2 workers, {args.ray_rounds} "
                  "run(s) each, interleaved (median):")
            ray_table(tmp / "archive", manifest, len(studies), args.ray_rounds, tmp)


if __name__ == "__main__":
    main()
