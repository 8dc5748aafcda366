"""Benchmark of the predict path: import time, per-study scoring against a naive baseline, archive throughput.

On the same synthetic studies (``data.synthetic``), side by side:

* import   -- ``import inference.engine, inference.dicom, inference.labs`` in a fresh interpreter (best of 3),
              and whether torch/MONAI/Gradio came along (they must not);
* naive    -- the usual loop: ``dcmread`` every file, stack, HU per slice, resample the *whole* volume to the
              model grid with ``scipy.ndimage.zoom`` (what MONAI ``Spacing``/``Resize`` do), cut the centre, ORT;
* vfrisk   -- ``load_study`` + ``spine_crop`` + ORT (one session, loaded once);
* floor    -- reading every file and rescaling the same pixel data alone (no parsing, no model);
* archive  -- ``inference.batch`` on a manifest repeating the studies, local engine, 2 workers: studies/min.

Run: ``.venv/bin/python bench/bench_predict.py [--matrix 512] [--n 4] [--repeat 3] [--model BUNDLE]``.
"""

from __future__ import annotations

import argparse
import csv
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


def import_time() -> tuple[float, str]:
    """Best of 3 fresh-interpreter imports of the predict path, and any heavy library it pulled in."""
    best, heavy = float("inf"), ""
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", IMPORT], capture_output=True, text=True, check=True).stdout
        seconds, heavy = out.split(" ", 1)
        best = min(best, float(seconds))
    return best, heavy.strip()


def make_studies(root: Path, n: int, matrix: int) -> list[Path]:
    """``n`` synthetic single-series studies (no extras) at ``matrix``."""
    from data.synthetic.cohort import CohortOptions, write_cohort

    write_cohort(root, CohortOptions(n=n, seed=7, matrix=matrix, workers=2, extras=False))
    return sorted((root / "studies").iterdir())


def naive_volume(folder: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """dcmread every file, sort on z, HU per slice, stack (float32, Z,Y,X) and the spacing."""
    import pydicom

    slices = [pydicom.dcmread(p) for p in sorted(folder.rglob("*.dcm"))]
    slices.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    hu = [ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in slices]
    dz = abs(float(slices[1].ImagePositionPatient[2]) - float(slices[0].ImagePositionPatient[2]))
    dy, dx = (float(v) for v in slices[0].PixelSpacing)
    return np.stack(hu), (dz, dy, dx)


def naive_score(folder: Path, engine: object, labs: np.ndarray) -> float:
    """The baseline: whole-volume resample to the model grid with scipy, centre crop, ORT."""
    from scipy.ndimage import zoom

    spec = engine.spec  # type: ignore[attr-defined]
    vol, spacing = naive_volume(folder)
    target = [c / g for c, g in zip(spec.crop_mm, spec.grid, strict=True)]
    vol = zoom(vol, [s / t for s, t in zip(spacing, target, strict=True)], order=1)
    crop = np.full(spec.grid, spec.pad_hu, dtype=np.float32)
    starts = [max(0, (v - g) // 2) for v, g in zip(vol.shape, spec.grid, strict=True)]
    part = vol[tuple(slice(s, s + g) for s, g in zip(starts, spec.grid, strict=True))]
    crop[tuple(slice(0, p) for p in part.shape)] = part
    return _ort(engine, crop, tuple(target), labs)


def _ort(engine: object, image: np.ndarray, spacing: tuple[float, ...], labs: np.ndarray) -> float:
    feeds = {"image": image[None, None].astype(np.float32), "spacing": np.array([spacing], dtype=np.float32),
             "labs": labs[None]}
    return float(engine.session.run(["probability"], feeds)[0][0])  # type: ignore[attr-defined]


def vfrisk_score(folder: Path, engine: object, labs: np.ndarray) -> float:
    """Our path: load_study (single read, vectorised HU) + the shared spine crop + ORT."""
    from inference.crop import spine_crop
    from inference.dicom import load_study

    study = load_study(folder)
    crop = spine_crop(study, engine.spec)  # type: ignore[attr-defined]
    return _ort(engine, crop.image, crop.spacing_mm, labs)


def floor(folder: Path, engine: object, labs: np.ndarray) -> float:
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
    hu = stack.astype(np.float32) * float(first.RescaleSlope) + float(first.RescaleIntercept)
    return float(hu[0, 0, 0])


def best_per_study(func: Callable[[Path, object, np.ndarray], float], studies: list[Path], engine: object,
                   labs: np.ndarray, repeat: int) -> float:
    """Mean over studies of the best-of-``repeat`` time of one study (page cache warm)."""
    times = []
    for folder in studies:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            func(folder, engine, labs)
            best = min(best, time.perf_counter() - t0)
        times.append(best)
    return float(np.mean(times))


def archive_rate(root: Path, studies: list[Path], model: Path | None, copies: int) -> dict[str, object]:
    """Studies per minute of ``inference.batch`` (local engine, 2 workers) over repeated rows."""
    from inference.batch import ScoreOptions, run_score

    manifest = root / "bench_manifest.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["study", "ntx", "bmd_tscore", "age", "sex", "copy"])
        for c in range(copies):
            w.writerows([[s.relative_to(root).as_posix(), "40", "-2.5", "70", "F", c] for s in studies])
    out = root / "bench_out" / "r.csv"
    summary = run_score(ScoreOptions(archive=root, manifest=manifest, out=out, workers=2, model=model))
    import json

    report = json.loads(Path(summary["report"]).read_text())
    return {"rows": report["rows"], "ok": report["counts"]["ok"], "studies_per_minute": report["studies_per_minute"],
            "peak_rss_mb": report["peak_rss_mb"], "mean_stage_s": report["mean_stage_s"]}


def main() -> None:
    """Run every measurement and print a small report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", type=int, default=256)
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--copies", type=int, default=4, help="manifest repeats of each study for the archive rate")
    ap.add_argument("--model", type=Path, default=None, help="bundle (default: the bundled model)")
    args = ap.parse_args()

    seconds, heavy = import_time()
    print(f"import inference.engine+dicom+labs: {seconds * 1000:.0f} ms (heavy libraries imported: {heavy})")
    from inference.engine import Engine

    engine = Engine(args.model, threads=1)
    labs = np.array([40.0, -2.5, 70.0, 1.0], dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="vfrisk-bench-") as tmp:
        root = Path(tmp)
        studies = make_studies(root, args.n, args.matrix)
        shape = naive_volume(studies[0])[0].shape
        print(f"{len(studies)} synthetic studies, matrix {args.matrix}, first volume {shape} (Z,Y,X)")
        naive = best_per_study(naive_score, studies, engine, labs, args.repeat)
        ours = best_per_study(vfrisk_score, studies, engine, labs, args.repeat)
        flo = best_per_study(floor, studies, engine, labs, args.repeat)
        print(f"per study, 1 process: naive {naive:.3f} s | vfrisk {ours:.3f} s | floor (read+rescale) {flo:.3f} s")
        print(f"ratio naive/vfrisk: {naive / ours:.1f}x   vfrisk/floor: {ours / flo:.2f}x")
        rate = archive_rate(root, studies, args.model, args.copies)
        print(f"archive, inference.batch local engine, 2 workers: {rate['studies_per_minute']} studies/min over "
              f"{rate['rows']} rows ({rate['ok']} ok)")
        print(f"  mean stage seconds: {rate['mean_stage_s']}")
        print(f"  peak RSS MB: {rate['peak_rss_mb']}")


if __name__ == "__main__":
    main()
