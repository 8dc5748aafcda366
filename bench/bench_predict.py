"""One study in one process: vfrisk's predict and score paths next to the research loops a user would write.

Every side runs in the same process on the same study, ``--rounds`` times, interleaved (order alternating), after
one untimed warm-up round for all; the figures are medians. Set-up (imports, loading the ONNX session or building
the PyTorch model) is done once before and not counted on either side: ``bench_commands.py`` times whole
processes. The sides, and how their work differs:

* ``vfrisk predict``  -- :func:`inference.pipeline.score_source` + the suggestion: read every header, choose the
  series, decode the whole volume to HU (the findings, measurement and viewer need it), canonical orientation,
  spine crop, ONNX Runtime, the second locate pass when the first misses levels, the level check, the
  transparent measurement of each level, the suggestion engine;
* ``vfrisk score row`` -- one batch row (:mod:`inference.batch.work`): read every header, decode only the slices
  the spine finder samples and the crop's region, hash the crop, ONNX Runtime (one pass);
* ``MONAI + PyTorch, whole volume`` -- what a user would write: MONAI ``LoadImage`` (PydicomReader) +
  ``EnsureChannelFirst`` + ``Spacing`` + ``Resize`` of the *whole* volume to the model grid, then the same
  network (``models.full.VfriskModel``, untrained weights: the cost is the same) in eager PyTorch;
* ``pydicom loop + crop + PyTorch`` -- a baseline that crops as vfrisk does: ``dcmread`` every file,
  ``pixel_array``, rescale, sort on z, stack, then vfrisk's own spine crop and the eager network;
* ``floor`` -- read every file and rescale its pixel data, nothing else.

Neither baseline does the second pass, the level check, the measurement or the suggestion.
Run: ``.venv/bin/python bench/bench_predict.py [--matrix 512] [--slices 300] [--rounds 3] [--no-monai]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import REPO, fixed_study, interleaved, machine, median, table

IMPORT = ("import time, sys; t = time.perf_counter(); import inference.engine, inference.dicom, inference.labs; "
          "dt = time.perf_counter() - t; print(dt, ','.join(sorted({'torch', 'monai', 'gradio'} & set(sys.modules))))")
LABS = np.array([40.0, -2.5, 70.0, 1.0], dtype=np.float32)


def import_time(rounds: int) -> tuple[list[float], str]:
    """Fresh-interpreter imports of the predict path (seconds each), and any heavy library they pulled in."""
    times, heavy = [], ""
    for _ in range(rounds):
        out = subprocess.run([sys.executable, "-c", IMPORT], capture_output=True, text=True, check=True,
                             cwd=REPO).stdout
        seconds, heavy = out.split(" ", 1)
        times.append(float(seconds))
    return times, heavy.strip()


def vfrisk_sides(engine: object) -> dict[str, Callable[[Path], object]]:
    """The predict path and the batch row path, as functions of the study folder."""
    from inference.crop import Crop
    from inference.engine import crop_sha256
    from inference.io import load_crop_any
    from inference.labs import LabInput
    from inference.pipeline import score_source
    from vfrisk.pipeline import assess

    given = LabInput.from_cells({"ntx": "40", "bmd_tscore": "-2.5", "age": "70", "sex": "F"})

    def predict(folder: Path) -> object:
        return assess(score_source(folder, given, engine).prediction, None)  # type: ignore[arg-type]

    def score_row(folder: Path) -> object:
        from inference.labs import Labs

        _, crop = load_crop_any(folder, engine.spec)  # type: ignore[attr-defined]
        assert isinstance(crop, Crop)
        crop_sha256(crop)
        return engine.run(crop, Labs(40.0, -2.5, 70.0, "F"))  # type: ignore[attr-defined]

    return {"vfrisk predict": predict, "vfrisk score row": score_row}


def torch_model() -> tuple[Callable[[np.ndarray, list[float]], float], object]:
    """The network in eager PyTorch (built once) and the spec."""
    import torch

    from inference.bundle import default_bundle, load_bundle
    from models.full import VfriskModel

    spec = load_bundle(default_bundle()).spec
    model = VfriskModel(spec).eval()
    labs = torch.from_numpy(LABS)[None]

    def run(image: np.ndarray, spacing: list[float]) -> float:
        x = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32)[None, None]
        with torch.no_grad():
            return float(model(x, torch.tensor([spacing], dtype=torch.float32), labs)[0][0])

    return run, spec


def monai_whole(run: Callable[[np.ndarray, list[float]], float], spec: object) -> Callable[[Path], float]:
    """MONAI LoadImage + Spacing + Resize of the whole volume to the model grid, then the network."""
    from monai.transforms import Compose, EnsureChannelFirst, LoadImage, Resize, Spacing

    voxel = [c / g for c, g in zip(spec.crop_mm, spec.grid, strict=True)]  # type: ignore[attr-defined]
    # MONAI's arrays are (x, y, z) in RAS: the model's (z, y, x) voxel size reversed
    transform = Compose([LoadImage(reader="PydicomReader", image_only=True), EnsureChannelFirst(),
                         Spacing(pixdim=voxel[::-1], mode="bilinear"),
                         Resize(spatial_size=spec.grid[::-1])])  # type: ignore[attr-defined]

    def score(folder: Path) -> float:
        image = np.asarray(transform(str(folder)))[0].transpose(2, 1, 0)
        return run(image, voxel)

    return score


def naive_stack(folder: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The usual loop: dcmread each file, pixel_array, rescale, sort on z, stack (an axial series, LPS axes)."""
    import pydicom

    slices = [pydicom.dcmread(p) for p in sorted(folder.rglob("*.dcm"))]
    slices.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    volume = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in slices])
    dz = float(slices[1].ImagePositionPatient[2]) - float(slices[0].ImagePositionPatient[2])
    dy, dx = (float(v) for v in slices[0].PixelSpacing)
    return volume.astype(np.float32), (dz, dy, dx)


def naive_crop(run: Callable[[np.ndarray, list[float]], float], spec: object) -> Callable[[Path], float]:
    """The pydicom loop, vfrisk's spine crop, then the network."""
    from inference.crop import crop_volume

    def score(folder: Path) -> float:
        volume, spacing = naive_stack(folder)
        crop = crop_volume(volume, spacing, spec)  # type: ignore[arg-type]
        return run(crop.image, list(crop.spacing_mm))

    return score


def floor(folder: Path) -> float:
    """Read every file and rescale its pixel data (uncompressed, at the end of the file): nothing else."""
    import pydicom

    files = sorted(folder.rglob("*.dcm"))
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    rows, cols = int(first.Rows), int(first.Columns)
    dtype = np.int16 if int(first.PixelRepresentation) else np.uint16
    stack = np.empty((len(files), rows, cols), dtype=dtype)
    for i, path in enumerate(files):
        data = path.read_bytes()
        stack[i] = np.frombuffer(data, dtype=dtype, count=rows * cols, offset=len(data) - rows * cols * 2).reshape(
            rows, cols)
    hu = np.empty(stack.shape, dtype=np.float32)
    np.multiply(stack, np.float32(first.RescaleSlope), out=hu)
    np.add(hu, np.float32(first.RescaleIntercept), out=hu)
    return float(hu[0, 0, 0])


def main() -> None:
    """Time every side at each matrix and print one table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", type=int, nargs="+", default=[512])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-monai", action="store_true", help="leave out the MONAI baseline (a 10+ s import)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: a 128 x 128 x 200 study, one round")
    args = ap.parse_args()
    if args.quick:
        args.matrix, args.slices, args.rounds = [128], 200, 1
    print(machine())
    times, heavy = import_time(5)
    print(f"import inference.engine+dicom+labs in a fresh interpreter: median {median(times) * 1000:.0f} ms of 5 "
          f"(heavy libraries imported: {heavy or 'none'})")
    from inference.engine import Engine

    engine = Engine()
    run, spec = torch_model()
    sides_of: dict[str, Callable[[Path], object]] = {**vfrisk_sides(engine)}
    if not args.no_monai:
        sides_of["MONAI + PyTorch, whole volume"] = monai_whole(run, spec)
    sides_of["pydicom loop + crop + PyTorch"] = naive_crop(run, spec)
    sides_of["floor: read + rescale"] = floor
    rows = []
    for matrix in args.matrix:
        study = fixed_study(matrix, args.slices)
        times_of = interleaved({name: (lambda f=f, s=study: f(s)) for name, f in sides_of.items()}, args.rounds)
        ours, ours_cpu = median(times_of.wall["vfrisk predict"]), median(times_of.cpu["vfrisk predict"])
        for name, t in times_of.wall.items():
            cpu = median(times_of.cpu[name])
            rows.append([f"{matrix} x {matrix} x {args.slices}", name, f"{median(t):.3f} s",
                         f"{median(t) / ours:.2f}x", f"{cpu:.3f} s", f"{cpu / ours_cpu:.2f}x"])
    print(f"\none study, one process, set-up not counted, median of {args.rounds} interleaved rounds after a "
          "warm-up round (see the docstring for what each side does); CPU: this process, all threads:")
    print(table(["study", "side", "wall", "wall x vfrisk predict", "CPU", "CPU x vfrisk predict"], rows))


if __name__ == "__main__":
    main()
