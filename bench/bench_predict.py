"""Benchmark of the predict path: import time, per-study latency by stage, archive throughput, peak memory.

On the same synthetic studies (uncompressed axial CT, ``matrix`` x ``matrix`` x ``--slices``, written by
``data.synthetic.cohort.write_fixed_study``), side by side:

* import   -- ``import inference.engine, inference.dicom, inference.labs`` in a fresh interpreter (best of 3),
              and whether torch/MONAI/Gradio came along (they must not);
* stages   -- vfrisk per study, one process, at each ``--matrix``: the ``predict`` path (read: find files,
              parse headers, choose the series; decode: all pixel data to HU; preprocess: canonical orientation,
              spine crop; inference: ONNX Runtime, one thread) and the ``score`` path of batch rows (read; crop:
              decode only the model's region, find the spine, cut the crop; hash; inference);
* baseline -- the usual research loop on the same studies: MONAI ``LoadImage`` (PydicomReader) +
              ``EnsureChannelFirst`` + ``Spacing`` (to the model's voxel size) + ``Resize`` (to the model grid)
              + the same network in eager PyTorch (``models.full.VfriskModel``, one thread);
* floor    -- reading every file and rescaling its pixel data alone (no parsing, no model), per study and,
              for the archive, in 2 processes at once;
* archive  -- ``vfrisk score`` (``inference.batch``, local engine, 2 workers) over a manifest repeating the
              largest studies: studies/min, mean seconds per stage and the peak RSS of each worker.

Run: ``.venv/bin/python bench/bench_predict.py [--matrix 256 512] [--slices 300] [--n 2] [--copies 12]``.
Run it on a quiet machine: it measures wall time.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMPORT = ("import time, sys; t = time.perf_counter(); import inference.engine, inference.dicom, inference.labs; "
          "dt = time.perf_counter() - t; print(dt, sorted({'torch', 'monai', 'gradio'} & set(sys.modules)))")
LABS = np.array([40.0, -2.5, 70.0, 1.0], dtype=np.float32)


def import_time() -> tuple[float, str]:
    """Best of 3 fresh-interpreter imports of the predict path, and any heavy library it pulled in."""
    best, heavy = float("inf"), ""
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", IMPORT], capture_output=True, text=True, check=True).stdout
        seconds, heavy = out.split(" ", 1)
        best = min(best, float(seconds))
    return best, heavy.strip()


def make_studies(root: Path, n: int, matrix: int, slices: int) -> list[Path]:
    """``n`` uncompressed axial studies of ``matrix`` x ``matrix`` x ``slices``."""
    from data.synthetic.cohort import write_fixed_study

    return [write_fixed_study(root / f"m{matrix}" / f"S{i:03d}", 7, i, matrix=matrix, n_slices=slices)
            for i in range(n)]


def vfrisk_stages(folder: Path, engine: object) -> dict[str, float]:
    """Seconds of each stage of ``vfrisk predict``'s scoring path for one study."""
    from inference.crop import spine_crop
    from inference.dicom import load_study

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    study = load_study(folder, timings=seconds)
    t1 = time.perf_counter()
    crop = spine_crop(study, engine.spec)  # type: ignore[attr-defined]
    t2 = time.perf_counter()
    engine.run(crop, _labs())  # type: ignore[attr-defined]
    t3 = time.perf_counter()
    return {"read": seconds["read"], "decode": seconds["decode"],
            "preprocess": seconds["orient"] + (t2 - t1), "inference": t3 - t2, "total": t3 - t0}


def score_stages(folder: Path, engine: object) -> dict[str, float]:
    """Seconds of each stage of ``vfrisk score``'s per-row path (``inference.batch.work``): read the headers,
    decode only the model's region and cut the crop, hash it, run the model."""
    from inference.engine import crop_sha256
    from inference.io import load_crop_any

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    _, crop = load_crop_any(folder, engine.spec, timings=seconds)  # type: ignore[attr-defined]
    t1 = time.perf_counter()
    crop_sha256(crop)
    t2 = time.perf_counter()
    engine.run(crop, _labs())  # type: ignore[attr-defined]
    t3 = time.perf_counter()
    return {"read": seconds["read"], "crop": seconds["crop"], "hash": t2 - t1, "inference": t3 - t2,
            "total": t3 - t0}


def _labs() -> object:
    from inference.labs import Labs

    return Labs(40.0, -2.5, 70.0, "F")


def monai_baseline() -> tuple[Callable[[Path], float], float]:
    """The MONAI + eager PyTorch loop (built once; its import time is returned, not counted per study)."""
    t0 = time.perf_counter()
    import torch
    from monai.transforms import Compose, EnsureChannelFirst, LoadImage, Resize, Spacing

    from inference.bundle import default_bundle, load_bundle
    from models.full import VfriskModel

    torch.set_num_threads(1)
    spec = load_bundle(default_bundle()).spec
    voxel = [c / g for c, g in zip(spec.crop_mm, spec.grid, strict=True)]
    # MONAI's arrays are (x, y, z) in RAS: the model's (z, y, x) voxel size reversed
    transform = Compose([LoadImage(reader="PydicomReader", image_only=True), EnsureChannelFirst(),
                         Spacing(pixdim=voxel[::-1], mode="bilinear"), Resize(spatial_size=spec.grid[::-1])])
    model = VfriskModel(spec).eval()  # the bundled architecture; weights do not change the cost
    spacing = torch.tensor([voxel], dtype=torch.float32)
    labs = torch.from_numpy(LABS)[None]

    def score(folder: Path) -> float:
        image = transform(str(folder))
        x = torch.as_tensor(np.asarray(image), dtype=torch.float32).permute(0, 3, 2, 1)[None]
        with torch.no_grad():
            return float(model(x, spacing, labs)[0][0])

    return score, time.perf_counter() - t0


def floor(folder: Path) -> float:
    """Read every file and rescale its pixel data (uncompressed, at the end of the file): nothing else."""
    import pydicom

    files = sorted(folder.rglob("*.dcm"))
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    rows, cols = int(first.Rows), int(first.Columns)
    nbytes = rows * cols * 2
    dtype = np.int16 if int(first.PixelRepresentation) else np.uint16
    stack = np.empty((len(files), rows, cols), dtype=dtype)
    for i, path in enumerate(files):
        data = path.read_bytes()
        stack[i] = np.frombuffer(data, dtype=dtype, count=rows * cols, offset=len(data) - nbytes).reshape(rows, cols)
    hu = np.empty(stack.shape, dtype=np.float32)
    np.multiply(stack, np.float32(first.RescaleSlope), out=hu)
    np.add(hu, np.float32(first.RescaleIntercept), out=hu)
    return float(hu[0, 0, 0])


def floor_rate(folders: list[Path], workers: int = 2) -> float:
    """Studies per minute of :func:`floor` run in ``workers`` processes at once (warm, page cache hot)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(floor, folders[:workers])  # start-up and first touch, not counted
        t0 = time.perf_counter()
        pool.map(floor, folders, chunksize=1)
        return 60.0 * len(folders) / (time.perf_counter() - t0)


def best_of(func: Callable[[Path], object], folder: Path, repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` calls (page cache warm after the first) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = func(folder)
        best = min(best, time.perf_counter() - t0)
    return best, out


def archive_rate(root: Path, studies: list[Path], copies: int) -> dict[str, object]:
    """Studies per minute of ``inference.batch`` (local engine, 2 workers) over repeated rows, warm."""
    from inference.batch import ScoreOptions, run_score

    manifest = root / "bench_manifest.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["study", "ntx", "bmd_tscore", "age", "sex", "copy"])
        for c in range(copies):
            w.writerows([[s.relative_to(root).as_posix(), "40", "-2.5", "70", "F", c] for s in studies])
    out = root / "bench_out" / "r.csv"
    summary = run_score(ScoreOptions(archive=root, manifest=manifest, out=out, workers=2))
    report = json.loads(Path(summary["report"]).read_text())
    with out.open(newline="") as fh:
        stamps = sorted(dt.datetime.fromisoformat(r["scored_at"]) for r in csv.DictReader(fh))
    # warm: from the second worker's first result on (both workers started, page cache hot) to the last
    span = (stamps[-1] - stamps[1]).total_seconds() if len(stamps) > 2 else 0.0
    warm = 60.0 * (len(stamps) - 2) / span if span > 0 else float("nan")  # too few rows for a warm rate
    return {"rows": report["rows"], "ok": report["counts"]["ok"], "studies_per_minute": report["studies_per_minute"],
            "warm_studies_per_minute": warm, "peak_rss_mb": report["peak_rss_mb"],
            "mean_stage_s": report["mean_stage_s"]}


def main() -> None:
    """Run every measurement and print a small report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--n", type=int, default=2, help="studies per matrix")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--copies", type=int, default=40, help="manifest repeats of each study for the archive rate")
    ap.add_argument("--no-baseline", action="store_true", help="skip the MONAI + PyTorch baseline")
    args = ap.parse_args()

    seconds, heavy = import_time()
    print(f"import inference.engine+dicom+labs: {seconds * 1000:.0f} ms (heavy libraries imported: {heavy or 'none'})")
    from inference.engine import Engine

    engine = Engine(threads=1)
    baseline, import_s = (None, 0.0) if args.no_baseline else monai_baseline()
    if baseline is not None:
        print(f"(baseline set-up incl. import torch + monai: {import_s:.1f} s, not counted)")
    with tempfile.TemporaryDirectory(prefix="vfrisk-bench-") as tmp:
        root = Path(tmp)
        last: list[Path] = []
        baseline_s: dict[int, float] = {}
        for matrix in args.matrix:
            last = make_studies(root, args.n, matrix, args.slices)
            stages = [min((vfrisk_stages(s, engine) for _ in range(args.repeat)), key=lambda d: d["total"])
                      for s in last]
            mean = {k: float(np.mean([d[k] for d in stages])) for k in stages[0]}
            flo = float(np.mean([best_of(floor, s, args.repeat)[0] for s in last]))
            scored = [min((score_stages(s, engine) for _ in range(args.repeat)), key=lambda d: d["total"])
                      for s in last]
            smean = {k: float(np.mean([d[k] for d in scored])) for k in scored[0]}
            print(f"\nmatrix {matrix} x {args.slices} slices, {len(last)} studies, 1 process, best of {args.repeat}:")
            print("  predict (whole volume, for findings and views): "
                  + " | ".join(f"{k} {v:.3f} s" for k, v in mean.items()))
            print("  score (model region only):                      "
                  + " | ".join(f"{k} {v:.3f} s" for k, v in smean.items()))
            print(f"  floor (read + rescale all the pixel data only): {flo:.3f} s  -> "
                  f"predict/floor {mean['total'] / flo:.2f}x, score/floor {smean['total'] / flo:.2f}x")
            if baseline is not None:
                base = float(np.mean([best_of(baseline, s, 1)[0] for s in last]))
                baseline_s[matrix] = base
                print(f"  baseline MONAI LoadImage+Spacing+Resize + eager PyTorch: {base:.3f} s  -> "
                      f"baseline/predict {base / mean['total']:.1f}x, baseline/score {base / smean['total']:.1f}x")
        rate = archive_rate(root, last, args.copies)
        spm = float(rate["warm_studies_per_minute"])  # type: ignore[arg-type]
        flo_rate = floor_rate(last * args.copies, workers=2)
        print(f"\narchive, vfrisk score (local engine, 2 workers), matrix {args.matrix[-1]} x {args.slices}, "
              f"{rate['rows']} rows ({rate['ok']} ok): warm {spm:.0f} studies/min "
              f"(whole run with worker start-up: {float(rate['studies_per_minute']):.0f}/min)")
        print(f"  floor, 2 processes reading + rescaling every study's pixel data: {flo_rate:.0f} studies/min "
              f"-> floor/vfrisk {flo_rate / spm:.2f}x")
        if args.matrix[-1] in baseline_s:
            loop = 60.0 / baseline_s[args.matrix[-1]]
            print(f"  baseline loop (MONAI + eager PyTorch, one process): {loop:.1f} studies/min -> vfrisk/baseline "
                  f"{spm / loop:.1f}x (two such loops at best {2 * loop:.1f}/min -> {spm / (2 * loop):.1f}x)")
        print(f"  mean stage seconds: {rate['mean_stage_s']}")
        print(f"  peak RSS per process, MB: {rate['peak_rss_mb']}")


if __name__ == "__main__":
    main()
