"""Cohort reading, patient-level splits and the decoded-crop cache.

Studies are read with :func:`inference.dicom.load_study` and cut with :func:`inference.crop.spine_crop`,
exactly as at inference; the cache stores the crop after the model's own in-graph preprocessing module
(:class:`models.preprocess.ImagePreprocess`), so there is one implementation of every step.
"""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from inference import tables
from inference.crop import spine_crop
from inference.errors import InputError
from inference.labs import Header, LabInput, resolve_labs
from inference.spec import LEVELS, PreprocessSpec
from inference.study import Study
from inference.workers import init_worker


@dataclass(frozen=True)
class Row:
    """One manifest row with its truth (when the cohort is synthetic)."""

    study: str
    labs: tuple[float, float, float, float]
    """Raw [NTX, T-score, age, sex F=1] (age/sex from the header when blank)."""
    label: int
    patient: str
    truth: dict[str, Any]


def read_manifest(cohort: Path) -> list[dict[str, str]]:
    """Rows of the cohort's ``manifest.csv`` (:func:`inference.tables.read_manifest`; ``bad_cohort`` without
    one)."""
    path = cohort / "manifest.csv"
    if not path.is_file():
        raise InputError("bad_cohort", f"no manifest.csv in {cohort.name}")
    return tables.read_manifest(path)


def read_truth(cohort: Path) -> dict[str, dict[str, Any]]:
    """``truth.csv`` by study (empty for real cohorts)."""
    path = cohort / "truth.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        return {r["study"]: r for r in csv.DictReader(fh)}


def patient_split(keys: list[str], fractions: tuple[float, float, float], seed: int) -> list[str]:
    """Assign each patient key to train / cal / test deterministically (hash of seed and key)."""
    out = []
    for key in keys:
        u = int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:12], 16) / 16**12
        out.append("train" if u < fractions[0] else "cal" if u < fractions[0] + fractions[1] else "test")
    return out


def _cache_key(study_path: Path, spec: PreprocessSpec) -> str:
    """Key from the input files (names, sizes, mtimes) and the spec hash."""
    h = hashlib.sha256(spec.sha256().encode())
    files = [study_path] if study_path.is_file() else sorted(p for p in study_path.rglob("*") if p.is_file())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(study_path.parent)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


HALF_BODY_MM = 12.0
"""Half the height of a vertebral body: a level whose centre is nearer than this to a scan edge is not whole."""


def level_truth_in_crop(study: Study, start_index: tuple[int, int, int],
                        truth: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per level of :data:`LEVELS`: z of the body centre in mm from the crop's first slice (NaN when unknown)
    and whether the whole body is in the scan (1/0; the truth's ``{level}_in_view`` where the cohort records it,
    else the centre at least :data:`HALF_BODY_MM` inside the scanned slices; NaN when unknown)."""
    z = np.full(len(LEVELS), np.nan, dtype=np.float32)
    seen = np.full(len(LEVELS), np.nan, dtype=np.float32)
    inv = np.linalg.inv(study.affine)
    last = (study.volume.shape[0] - 1) * study.spacing_mm[0]
    for i, lv in enumerate(LEVELS):
        key = f"{lv}_z_mm"
        if truth.get(key) in (None, ""):
            continue
        lps = np.array([float(truth[f"{lv}_x_mm"]), float(truth[f"{lv}_y_mm"]), float(truth[key]), 1.0])
        k_mm = (inv @ lps)[0] * study.spacing_mm[0]
        z[i] = k_mm - start_index[0] * study.spacing_mm[0]
        flag = truth.get(f"{lv}_in_view")
        seen[i] = float(flag) if flag not in (None, "") else float(HALF_BODY_MM <= k_mm <= last - HALF_BODY_MM)
    return z, seen


def decode_one(args: tuple[str, str, dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    """Load, crop and preprocess one study (runs in a worker); errors come back as a reason."""
    from inference.io import load_any as load_study
    from models.preprocess import ImagePreprocess

    path, cache_file, spec_d, truth = args
    spec = PreprocessSpec.from_dict(spec_d)
    try:
        study = load_study(Path(path))
    except InputError as exc:  # recorded too: the same files fail the same way
        failed = {"error": exc.one_line()}
        Path(cache_file + ".json").write_text(json.dumps(failed))
        return failed
    crop = spine_crop(study, spec)
    torch.set_num_threads(1)
    with torch.no_grad():
        grid = ImagePreprocess(spec)(torch.from_numpy(crop.image)[None, None])[0, 0].numpy()
    z, seen = level_truth_in_crop(study, crop.start_index, truth)
    z *= spec.crop_mm[0] / (crop.image.shape[0] * crop.spacing_mm[0])  # to the grid's nominal extent
    meta = {"z_mm": z.tolist(), "in_view": seen.tolist(), "age": study.age, "sex": study.sex,
            "spacing": list(crop.spacing_mm)}
    np.save(cache_file, grid.astype(np.float16))
    Path(cache_file + ".json").write_text(json.dumps(meta))
    return meta


INDEX = "index.json"
"""The cache's record of which entry holds each study (``{spec hash: {study: key}}``), so that a study whose
DICOM files were deleted once cached (``python -m training.prune``) is still found."""


def read_index(cache_dir: Path) -> dict[str, dict[str, str]]:
    """The cache index (empty when there is none)."""
    path = cache_dir / INDEX
    return json.loads(path.read_text()) if path.is_file() else {}


def build_cache(cohort: Path, rows: list[dict[str, str]], truth: dict[str, dict[str, Any]],
                spec: PreprocessSpec, cache_dir: Path, workers: int) -> list[dict[str, Any]]:
    """Decode every study once into ``cache_dir`` (reused while inputs and spec are unchanged; a study whose
    files are gone is read from the entry the index recorded for it)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    index = read_index(cache_dir)
    known = index.setdefault(spec.sha256(), {})
    todo, metas = [], [dict[str, Any]() for _ in rows]
    for i, r in enumerate(rows):
        path = cohort / r["study"]
        key = _cache_key(path, spec) if path.exists() or r["study"] not in known else known[r["study"]]
        known[r["study"]] = key
        f = str(cache_dir / key)
        metas[i]["cache"] = f + ".npy"
        if Path(f + ".npy.json").is_file():
            metas[i] |= json.loads(Path(f + ".npy.json").read_text())
        else:
            todo.append((i, (str(cohort / r["study"]), f + ".npy", spec.to_dict(), truth.get(r["study"], {}))))
    if todo:
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=init_worker, initargs=(os.getpid(),)) as pool:
            results = pool.map(decode_one, [a for _, a in todo], chunksize=4)
            for (i, _), res in tqdm(zip(todo, results, strict=True), total=len(todo), desc="decode", unit="study"):
                metas[i] |= res
    tmp = cache_dir / (INDEX + ".tmp")
    tmp.write_text(json.dumps(index))
    tmp.replace(cache_dir / INDEX)
    return metas


def to_row(r: dict[str, str], meta: dict[str, Any], truth: dict[str, Any]) -> Row | None:
    """Manifest row + cache metadata -> :class:`Row` (None when the study could not be read)."""
    if "error" in meta:
        return None
    try:
        labs = resolve_labs(LabInput.from_cells(r), Header(meta.get("age"), meta.get("sex")))
    except InputError:
        return None
    raw = labs.vector()
    return Row(study=r["study"], labs=(raw[0], raw[1], raw[2], raw[3]),
               label=int(r.get("fracture_6m") or 0), patient=r.get("patient_id") or r["study"], truth=truth)


def cpu_count() -> int:
    """Usable cores."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
