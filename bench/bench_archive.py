"""``vfrisk score`` over a mixed archive against the pixel-decode floor of the same files, and compressed studies
against the decode floor of the slices they use.

The archive: ``--studies`` synthetic studies of ``--matrix`` x ``--matrix`` x ``--slices`` 1 mm axial slices, in
every transfer syntax the synthetic writer makes, in the proportions it draws them for a cohort (Explicit VR
Little Endian about half, then Implicit VR, RLE, JPEG-LS and JPEG 2000 lossless), made once into
``.bench-data/``. Three measurements, each side timed the same way, interleaved, median of ``--rounds``:

* archive -- ``run_score`` (local engine, a fresh output each run, so nothing is skipped) with 1 and 2 workers,
  against the floor: the same files read and decoded (``pydicom.dcmread(f).pixel_array``, nothing else) by a
  pool of the same number of processes. Both are timed from the call to the last result, process start-up
  included (vfrisk's workers also load the ONNX session); the peak RSS of each worker process (``ru_maxrss``,
  the same way for both) is shown. vfrisk does more than the floor (header checks, series choice, sort, HU of the
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


def decode_study(folder: str) -> tuple[int, float]:
    """Floor: read and decode every file of a study (pydicom, nothing else); this process's id and peak RSS."""
    import pydicom

    for path in sorted(Path(folder).rglob("*.dcm")):
        pydicom.dcmread(path).pixel_array  # noqa: B018  (decoding is the point)
    return os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def floor_run(studies: list[Path], workers: int) -> list[float]:
    """The floor over every study in a pool of ``workers`` processes; peak RSS of each worker (MB)."""
    ctx = multiprocessing.get_context("forkserver")
    peaks: dict[int, float] = {}
    with ctx.Pool(workers) as pool:
        for pid, peak in pool.imap_unordered(decode_study, [str(s) for s in studies], chunksize=1):
            peaks[pid] = max(peaks.get(pid, 0.0), peak)
    return [peaks[p] for p in sorted(peaks)]


def vfrisk_run(archive: Path, manifest: Path, workers: int, engine: str, out: Path) -> list[float]:
    """``vfrisk score`` over the archive into a fresh output; peak RSS of each worker (MB)."""
    from inference.batch import ScoreOptions, run_score

    shutil.rmtree(out.parent, ignore_errors=True)
    with quiet_stderr():  # its progress bar (and Ray's log lines)
        summary = run_score(ScoreOptions(archive=archive, manifest=manifest, out=out, workers=workers,
                                         engine=engine))
    report = json.loads(Path(summary["report"]).read_text())
    if report["counts"]["error"]:
        raise SystemExit(f"vfrisk score gave error rows: {report['reasons']}")
    return list(report["peak_rss_mb"]["workers"])


def timed_rounds(sides: dict[str, Callable[[], list[float]]], rounds: int) -> dict[str, tuple[list[float], list]]:
    """Wall seconds and the returned peaks of each side, ``rounds`` times, interleaved (order alternating)."""
    out: dict[str, tuple[list[float], list]] = {k: ([], []) for k in sides}
    names = list(sides)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            peaks = sides[name]()
            out[name][0].append(time.perf_counter() - t0)
            out[name][1].append(peaks)
        print(f"  (round {r + 1} of {rounds} done)", flush=True)
    return out


def peaks_text(runs: list[list[float]]) -> str:
    """Largest worker peak over the rounds, per worker count."""
    flat = [p for run in runs for p in run]
    return f"{max(flat):.0f} MB" if flat else "-"


def archive_table(archive: Path, manifest: Path, studies: list[Path], rounds: int, tmp: Path) -> None:
    """Studies per minute of vfrisk and of the floor, 1 and 2 workers."""
    sides: dict[str, Callable[[], list[float]]] = {}
    for w in (1, 2):
        sides[f"vfrisk {w}"] = lambda w=w: vfrisk_run(archive, manifest, w, "local", tmp / f"out{w}" / "r.csv")
        sides[f"floor {w}"] = lambda w=w: floor_run(studies, w)
    res = timed_rounds(sides, rounds)
    rows = []
    for w in (1, 2):
        ours, flo = res[f"vfrisk {w}"], res[f"floor {w}"]
        spm, fspm = 60 * len(studies) / median(ours[0]), 60 * len(studies) / median(flo[0])
        rows.append([f"{w}", spread(ours[0], 1), f"{spm:.1f}", peaks_text(ours[1]),
                     spread(flo[0], 1), f"{fspm:.1f}", peaks_text(flo[1]),
                     f"{median(ours[0]) / median(flo[0]):.2f}x"])
    print(table(["workers", "vfrisk score: wall, median (min-max)", "studies/min", "peak RSS/worker",
                 "decode floor: wall", "studies/min", "peak RSS/worker", "vfrisk / floor"], rows))


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

        def now(study: Path = study) -> list[float]:
            load_crop_any(study, spec, limits=worker_limits())
            return []

        def before(study: Path = study) -> list[float]:
            spine_crop(load_any(study, worker_limits()), spec)
            return []

        def floor_used(files: list[Path] = files) -> list[float]:
            for path in files:
                pydicom.dcmread(path).pixel_array  # noqa: B018  (decoding is the point)
            return []

        res = timed_rounds({"now": now, "before": before, "floor": floor_used}, rounds)
        mem = {k: run_python(code, [str(study)]).peak_rss_mb for k, code in PATHS.items()}
        now, before, flo = (median(res[k][0]) for k in ("now", "before", "floor"))
        rows.append([syntax, f"{len(files)} of {n_all}", f"{now:.2f} s", f"{before:.2f} s", f"{flo:.2f} s",
                     f"{now / flo:.2f}x", f"{before / flo:.2f}x",
                     f"{mem['score row (now)']:.0f} MB", f"{mem['whole volume (before)']:.0f} MB"])
    print(table(["syntax", "slices decoded", "score row read (now)", "whole volume + crop (before)",
                 "decode floor of those slices", "now / floor", "before / floor", "peak RSS now",
                 "peak RSS before"], rows))


def ray_table(archive: Path, manifest: Path, n: int, rounds: int, tmp: Path) -> None:
    """The local engine and Ray, 2 workers, on this machine."""
    sides = {"local": lambda: vfrisk_run(archive, manifest, 2, "local", tmp / "rl" / "r.csv"),
             "ray": lambda: vfrisk_run(archive, manifest, 2, "ray", tmp / "rr" / "r.csv")}
    res = timed_rounds(sides, rounds)
    local, ray = median(res["local"][0]), median(res["ray"][0])
    print(table(["engine (2 workers)", "wall, median (min-max)", "studies/min", "x local"],
                [["local", spread(res['local'][0], 1), f"{60 * n / local:.1f}", "1.00x"],
                 ["ray (local instance)", spread(res['ray'][0], 1), f"{60 * n / ray:.1f}",
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
