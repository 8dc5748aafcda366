"""Benchmark: load a 512x512x300 CT series with vfrisk, a naive pydicom loop and MONAI LoadImage.

Writes the series to a temporary folder, then times each reader and the raw read floor (reading the same bytes
with no parsing) ``--rounds`` times, interleaved (order alternating) after one untimed warm-up round for all (page
cache warm for all alike); the figures are medians. Every reader returns the same HU volume (checked for the
naive loop).
Run: ``.venv/bin/python bench/bench_dicom_load.py``; ``--slices``/``--size``/``--rounds`` change the workload,
``--no-monai`` skips the 10+ s MONAI import.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from common import interleaved, machine, median, table  # first: it puts the repository on the path
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from inference.dicom import load_study


def write_series(folder: Path, n: int, size: int) -> list[Path]:
    """Write an axial CT series of ``n`` slices of ``size``x``size`` (uint16, intercept -1024)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    body = (((yy - size / 2) / (size * 0.4)) ** 2 + ((xx - size / 2) / (size * 0.45)) ** 2 <= 1).astype(
        np.int32
    )
    study, series = generate_uid(), generate_uid()
    paths = []
    for k in range(n):
        img = (24 + body * (1064 + (k % 50)) + rng.integers(0, 30, (size, size))).astype(np.uint16)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.ImageType, ds.BodyPartExamined = "CT", ["ORIGINAL", "PRIMARY", "AXIAL"], "SPINE"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-200.0, -200.0, 1.0 * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [0.78, 0.78]
        ds.SliceThickness = 1.0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = img.tobytes()
        path = folder / f"{(k * 7919) % n:05d}.dcm"  # file names not in slice order
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def raw_floor(folder: Path) -> np.ndarray:
    """Read every file's bytes: the floor any reader pays."""
    total = 0
    for path in sorted(folder.iterdir()):
        total += len(path.read_bytes())
    return np.array([total])


def naive_pydicom(folder: Path) -> np.ndarray:
    """The usual loop: dcmread each file, pixel_array, rescale, sort on z, stack."""
    slices = [pydicom.dcmread(p) for p in folder.iterdir()]
    slices.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    return np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in slices])


def vfrisk(folder: Path) -> np.ndarray:
    """inference.dicom.load_study (all checks included)."""
    return load_study(folder).volume


def monai_reader() -> tuple[Callable[[Path], np.ndarray], float]:
    """MONAI LoadImage with the PydicomReader (the reader a venv without itk ends up with)."""
    t0 = time.perf_counter()
    from monai.transforms import LoadImage

    loader = LoadImage(reader="PydicomReader", image_only=True)
    return (lambda folder: np.asarray(loader(str(folder)))), time.perf_counter() - t0


def main() -> None:
    """Run the benchmark and print a side-by-side table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-monai", action="store_true")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 80 slices of 256 x 256, one round")
    args = ap.parse_args()
    if args.quick:
        args.slices, args.size, args.rounds = 80, 256, 1
    print(machine())
    with tempfile.TemporaryDirectory(prefix="bench-dicom-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        write_series(folder, args.slices, args.size)
        mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        print(f"series: {args.slices} x {args.size}x{args.size} uint16, {mb:.0f} MB, written in "
              f"{time.perf_counter() - t0:.1f} s; median of {args.rounds} interleaved rounds after a warm-up round")
        assert np.array_equal(vfrisk(folder), naive_pydicom(folder).astype(np.float32)), "the readers disagree"
        readers: dict[str, Callable[[Path], object]] = {
            "raw read floor (bytes only)": raw_floor, "vfrisk load_study": vfrisk, "naive pydicom loop": naive_pydicom}
        if not args.no_monai:
            reader, import_s = monai_reader()
            print(f"(import monai: {import_s:.1f} s, not counted)")
            readers["MONAI LoadImage(PydicomReader)"] = reader
        times = interleaved({name: (lambda f=f: f(folder)) for name, f in readers.items()}, args.rounds)
    ours, floor = median(times.wall["vfrisk load_study"]), median(times.wall["raw read floor (bytes only)"])
    ours_cpu = median(times.cpu["vfrisk load_study"])
    rows = [[name, f"{median(t):.3f} s", f"{mb / median(t):.0f}", f"{median(t) / ours:.2f}x",
             f"{median(t) / floor:.2f}x", f"{median(times.cpu[name]):.3f} s",
             f"{median(times.cpu[name]) / ours_cpu:.2f}x"] for name, t in times.wall.items()]
    print(table(["reader", "wall", "MB/s", "x vfrisk", "x floor", "CPU", "CPU x vfrisk"], rows))


if __name__ == "__main__":
    main()
