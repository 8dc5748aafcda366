"""``vfrisk synth``: draw patients, render their CTs, write DICOM series, the manifest and the truth.

Layout (DESIGN.md): ``DIR/manifest.csv``, ``DIR/studies/<id>/`` (one folder per study, possibly holding
extra series: a scout, a thick soft-tissue reconstruction, a sagittal reformat), ``DIR/truth.csv``.
Each study draws from its own generator seeded with ``(seed, index)``, so the bytes do not depend on the
number of workers.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from data.synthetic.anatomy import (
    ALL_LEVELS,
    UPPER_LEVELS,
    Acquisition,
    Body,
    Grid,
    ScanRange,
    VertebraGeometry,
    level_span,
    make_grid,
    place_spine,
    render,
    s1_geometry,
)
from data.synthetic.dicom_writer import (
    RESCALES,
    TRANSFER_SYNTAXES,
    SeriesHeader,
    det_uid,
    slice_dataset,
    write_dataset,
)
from data.synthetic.model import LEVELS, Patient, draw_patient
from inference.errors import InputError
from inference.workers import init_worker

SYNTAX_WEIGHTS = {"explicit": 0.5, "implicit": 0.15, "rle": 0.15, "jpegls": 0.1, "j2k": 0.1}


@dataclass(frozen=True)
class CohortOptions:
    """Options of ``vfrisk synth``."""

    n: int
    """Number of studies."""
    seed: int
    """Seed: the same seed gives byte-identical files."""
    matrix: int | None = None
    """Fixed in-plane matrix (a reduced matrix makes fast training cohorts); None draws 256-512."""
    workers: int = 0
    """Worker processes (0 = all cores)."""
    wide: bool = False
    """Draw acquisition parameters from ranges wider than the default (robustness cohorts)."""
    extras: bool = True
    """Add scouts, thick reconstructions and sagittal reformats to some studies."""
    fov: str = "standard"
    """``standard``: every scan shows T11-L5 with margins; ``mixed``: fields of view of every kind (see
    :data:`FOV_KINDS`), a phantom from T4 to the sacrum, and transitional spines (four or six lumbar vertebrae,
    :data:`TRANSITIONAL` each unless ``transitional`` says otherwise)."""
    transitional: float | None = None
    """Share of four- and (again) of six-lumbar spines in a ``--fov mixed`` cohort; None: :data:`TRANSITIONAL`
    (a training cohort may hold more of them than a test cohort, so the model sees enough to learn them)."""
    lungs: bool = True
    """Lungs under two diaphragm domes and a heart, as the default model is trained and tested on (``make
    default-model``); off (``vfrisk synth --no-lungs``): family A as it was before lungs were drawn, a cohort the
    same as one made then, and a chest outside what the default model has seen (it may number such a spine one
    level off, marking the names uncertain)."""


FOV_KINDS: dict[str, float] = {
    "whole": 0.40, "abdomen": 0.12, "lumbar": 0.14, "chest": 0.10, "slab": 0.12, "none": 0.12,
}
"""Kinds of field of view of a ``--fov mixed`` cohort and their shares: ``whole`` T10 or above to the sacrum;
``abdomen`` from T12-L2 into the pelvis; ``lumbar`` a lumbar-spine CT (from T11-L1, 150-250 mm field of view
centred on the spine); ``chest`` ending between T11 and L2; ``slab`` 50-110 mm anywhere from T10 to S1; ``none``
no body of T10-L5 whole (chest above T10, pelvis below L5)."""
TRANSITIONAL = 0.04
"""Share of spines with four and (again) with six lumbar vertebrae in a ``--fov mixed`` cohort."""
REPORT_LEVELS: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1")
"""Levels whose position and visibility the truth of a ``--fov mixed`` cohort records."""


@dataclass(frozen=True)
class FovPlan:
    """The field of view and lumbar count of one study of a ``--fov mixed`` cohort."""

    kind: str
    lumbar: int
    scan: ScanRange
    fov_mm: float | None
    """In-plane field of view centred on the spine (lumbar-spine CTs); None: the body's."""


def draw_fov(seed: int, index: int, transitional: float = TRANSITIONAL) -> FovPlan:
    """Draw the field of view from a stream of its own (the patient and scanner draws stay those of a standard
    cohort with the same seed); ``transitional`` is the share of four- and again of six-lumbar spines."""
    rng = np.random.default_rng([seed, index, 18])
    u = rng.random()
    lumbar = 4 if u < transitional else 6 if u < 2 * transitional else 5
    last = f"L{lumbar}"
    kind = str(rng.choice(list(FOV_KINDS), p=np.array(list(FOV_KINDS.values()))))
    fov_mm = None
    if kind == "whole":
        scan = ScanRange(str(rng.choice(["T10", "T9", "T8"])), float(rng.uniform(12, 40)), "S1",
                         float(-rng.uniform(10, 90)))
    elif kind == "abdomen":
        scan = ScanRange(str(rng.choice(["T12", "L1", "L2"])), float(rng.uniform(-15, 15)), "S1",
                         float(-rng.uniform(10, 90)))
    elif kind == "lumbar":
        scan = ScanRange(str(rng.choice(["T11", "T12", "L1"])), float(rng.uniform(-12, 12)),
                         str(rng.choice(["S1", last])), float(-rng.uniform(0, 40)))
        fov_mm = float(rng.uniform(150, 250))
    elif kind == "chest":
        scan = ScanRange(str(rng.choice(["T5", "T6", "T7"])), 0.0, str(rng.choice(["T11", "T12", "L1", "L2"])),
                         float(rng.uniform(-15, 15)))
    elif kind == "slab":
        centre = str(rng.choice(["T11", "T12", "L1", "L2", "L3", "L4", last]))
        half = float(rng.uniform(25, 55))
        off = float(rng.uniform(-10, 10))
        scan = ScanRange(centre, off + half, centre, off - half)
        fov_mm = float(rng.uniform(150, 300)) if rng.random() < 0.5 else None
    elif rng.random() < 0.5:  # none: chest above T10
        scan = ScanRange("T5", 0.0, "T9", float(rng.uniform(-5, 10)))
    else:  # none: pelvis below the lowest lumbar vertebra
        scan = ScanRange("S1", float(rng.uniform(5, 18)), "S1", float(-rng.uniform(100, 160)))
    return FovPlan(kind, lumbar, scan, fov_mm)


def spine_levels(lumbar: int) -> tuple[str, ...]:
    """Levels drawn in a ``--fov mixed`` phantom, superior first."""
    return (*UPPER_LEVELS, "T11", "T12", *(f"L{i}" for i in range(1, lumbar + 1)))


@dataclass(frozen=True)
class StudyPlan:
    """Everything drawn for one study before rendering."""

    acq: Acquisition
    body: Body
    syntax: str
    rescale_index: int
    sagittal_main: bool
    extra_scout: bool
    extra_thick: bool
    extra_sagittal: bool
    blank_demographics: bool


def draw_plan(rng: np.random.Generator, opts: CohortOptions) -> StudyPlan:
    """Draw acquisition and habitus; ``wide`` widens every range."""
    if opts.matrix:
        matrix = opts.matrix
        fov = rng.uniform(300, 460) if not opts.wide else rng.uniform(260, 500)
        ps = fov / matrix
    else:
        matrix = int(rng.choice([256, 384, 512], p=[0.2, 0.3, 0.5]))
        ps = rng.uniform(0.5, 1.0) if not opts.wide else rng.uniform(0.45, 1.2)
        ps = max(ps, 300.0 / matrix) if matrix < 512 else ps
    spacings = [1.0, 1.25, 1.5, 2.0, 2.5, 3.0] if not opts.wide else [0.8, 1.0, 1.5, 2.0, 3.0, 4.0]
    spacing = float(rng.choice(spacings))
    thickness = spacing * float(rng.choice([1.0, 1.0, 1.25]))
    noise = rng.uniform(8, 30) if not opts.wide else rng.uniform(5, 55)
    off = 35.0 if not opts.wide else 70.0
    size = rng.normal(1.0, 0.12)
    body = Body(ax=float(np.clip(150 * size, 115, 210)), ay=float(np.clip(105 * size, 85, 150)),
                fat=float(rng.uniform(8, 40)))
    acq = Acquisition(
        matrix=matrix, pixel_spacing=round(float(ps), 4), slice_spacing=spacing, slice_thickness=thickness,
        kernel=str(rng.choice(["STANDARD", "BONE"], p=[0.6, 0.4])), noise_sd=float(noise),
        fov_offset=(float(rng.uniform(-off, off)) + 10.0, float(rng.uniform(-off, off))),
        margin_top=float(rng.uniform(15, 70)), margin_bottom=float(rng.uniform(5, 90)),
        contrast=bool(rng.random() < 0.4), table_z=float(rng.uniform(-700, -100)),
    )
    names = list(SYNTAX_WEIGHTS)
    syntax = str(rng.choice(names, p=np.array(list(SYNTAX_WEIGHTS.values()))))
    extra = opts.extras
    return StudyPlan(
        acq=acq, body=body, syntax=syntax, rescale_index=int(rng.integers(len(RESCALES))),
        sagittal_main=bool(rng.random() < (0.08 if not opts.wide else 0.2)),
        extra_scout=extra and bool(rng.random() < 0.3), extra_thick=extra and bool(rng.random() < 0.2),
        extra_sagittal=extra and bool(rng.random() < 0.1), blank_demographics=bool(rng.random() < 0.1),
    )


def _write_axial(vol: np.ndarray, g: Grid, h: SeriesHeader, plan: StudyPlan, folder: Path,
                 thickness: float) -> int:
    """Write one axial slice per z (file names unique but deliberately not in z order)."""
    rescale = RESCALES[plan.rescale_index]
    ps = (float(g.y[1] - g.y[0]), float(g.x[1] - g.x[0]))
    for k in range(vol.shape[0]):
        ds = slice_dataset(h, k, vol[k], rescale, (float(g.x[0]), float(g.y[0]), float(g.z[k])),
                           (1, 0, 0, 0, 1, 0), ps, thickness)
        ds.SliceLocation = f"{g.z[k]:.4f}"
        write_dataset(ds, folder / f"{h.series_number:03d}_{(k * 7919) % 100000:05d}.dcm", plan.syntax)
    return vol.shape[0]


def _write_sagittal(vol: np.ndarray, g: Grid, h: SeriesHeader, plan: StudyPlan, folder: Path,
                    step: int) -> int:
    """Write sagittal images (rows run head to feet, columns anterior to posterior), every ``step`` x."""
    rescale = RESCALES[plan.rescale_index]
    sz, sy = float(g.z[1] - g.z[0]), float(g.y[1] - g.y[0])
    count = 0
    for i in range(0, vol.shape[2], step):
        img = vol[::-1, :, i]
        ds = slice_dataset(h, i, img, rescale, (float(g.x[i]), float(g.y[0]), float(g.z[-1])),
                           (0, 1, 0, 0, 0, -1), (sz, sy), float(g.x[1] - g.x[0]) * step)
        write_dataset(ds, folder / f"{h.series_number:03d}_{i:04d}.dcm", plan.syntax)
        count += 1
    return count


def _write_extras(vol: np.ndarray, g: Grid, base: SeriesHeader, plan: StudyPlan, folder: Path) -> list[str]:
    """Scout (coronal projection), thick soft-tissue axial and sagittal reformat, as drawn."""
    made: list[str] = []
    rescale = RESCALES[plan.rescale_index]
    if plan.extra_scout:
        h = _derived(base, 1, "Topogram", ("ORIGINAL", "PRIMARY", "LOCALIZER"))
        proj = np.clip(vol.mean(axis=1)[::-1] * 3.0, -1000, 2000)
        ds = slice_dataset(h, 0, proj, rescale, (float(g.x[0]), 0.0, float(g.z[-1])), (1, 0, 0, 0, 0, -1),
                           (float(g.z[1] - g.z[0]), float(g.x[1] - g.x[0])), 1.0)
        write_dataset(ds, folder / "scout.dcm", plan.syntax)
        made.append("scout")
    if plan.extra_thick:
        k = max(1, round(5.0 / plan.acq.slice_spacing))
        n = vol.shape[0] // k
        thick = vol[: n * k].reshape(n, k, *vol.shape[1:]).mean(axis=1)
        gz = Grid(z=g.z[: n * k].reshape(n, k).mean(axis=1), y=g.y, x=g.x)
        _write_axial(thick, gz, _derived(base, 3, "Abdomen 5mm soft tissue"), plan, folder, 5.0)
        made.append("thick")
    if plan.extra_sagittal:
        h = _derived(base, 4, "Sagittal reformat", ("DERIVED", "SECONDARY", "REFORMATTED"))
        _write_sagittal(vol, g, h, plan, folder, step=max(1, round(3.0 / plan.acq.pixel_spacing)))
        made.append("sagittal_reformat")
    return made


def _derived(base: SeriesHeader, number: int, description: str,
             image_type: tuple[str, ...] = ("DERIVED", "SECONDARY", "AXIAL")) -> SeriesHeader:
    return SeriesHeader(
        patient_id=base.patient_id, age=base.age, sex=base.sex, study_uid=base.study_uid,
        study_date=base.study_date, series_uid=det_uid(base.series_uid, "derived", number),
        frame_uid=base.frame_uid, series_number=number, description=description, kernel=base.kernel,
        image_type=image_type,
    )


def fov_truth(p: Patient, spine: list[VertebraGeometry], plan: StudyPlan, fov: FovPlan) -> dict[str, Any]:
    """The field-of-view truth of a ``--fov mixed`` study (same columns on every row): the kind, the lumbar
    count, the scan's z range and, per level of :data:`REPORT_LEVELS`, its centre and whether the whole body is
    in the scan (``{level}_in_view`` 1/0, blank where the spine has no such level)."""
    grid = make_grid(plan.acq, spine)
    lo, hi = float(grid.z[0]), float(grid.z[-1])
    have = {v.level for v in spine} | {"S1"}
    row: dict[str, Any] = {"fov_kind": fov.kind, "lumbar_count": fov.lumbar,
                           "transitional": int(fov.lumbar != 5), "scan_bottom_mm": round(lo, 2),
                           "scan_top_mm": round(hi, 2)}
    where = {v.level: v for v in spine}
    truth = {v.level: v for v in p.vertebrae}
    for level in REPORT_LEVELS:
        for key in ("grade", "height_ratio", "hu", "shape", "z_mm", "y_mm", "x_mm", "in_view"):
            row[f"{level}_{key}"] = ""
        if level not in have:
            continue
        bottom, top = level_span(spine, level)
        if level == "S1":
            _, _, y, x = s1_geometry(spine)
        else:
            y, x = where[level].yc, where[level].xc
        row |= {f"{level}_z_mm": round((bottom + top) / 2, 2), f"{level}_y_mm": round(y, 2),
                f"{level}_x_mm": round(x, 2), f"{level}_in_view": int(lo <= bottom and top <= hi)}
        if level in truth:
            t = truth[level]
            row |= {f"{level}_grade": t.grade, f"{level}_height_ratio": t.height_ratio,
                    f"{level}_hu": t.trabecular_hu, f"{level}_shape": t.shape}
    return row


def truth_row(study: str, p: Patient, spine: list[VertebraGeometry], plan: StudyPlan, n_files: int,
              extras: list[str], fov: FovPlan | None = None) -> dict[str, Any]:
    """Per-study truth: the true probability, per-vertebra truth and the acquisition drawn (with the
    field-of-view truth of a ``--fov mixed`` cohort)."""
    row: dict[str, Any] = {
        "study": study, "p_true": round(p.p_true, 6), "l1_hu": p.l1_hu, "worst_grade": p.worst_grade,
        "n_fractures": sum(v.grade > 0 for v in p.vertebrae),
    }
    where = {v.level: v for v in spine}
    for v in p.vertebrae:
        geo = where[v.level]
        row |= {f"{v.level}_grade": v.grade, f"{v.level}_height_ratio": v.height_ratio,
                f"{v.level}_hu": v.trabecular_hu, f"{v.level}_shape": v.shape,
                f"{v.level}_z_mm": round(geo.z_center, 2), f"{v.level}_y_mm": round(geo.yc, 2),
                f"{v.level}_x_mm": round(geo.xc, 2)}
    a = plan.acq
    row |= {"matrix": a.matrix, "pixel_spacing": a.pixel_spacing, "slice_spacing": a.slice_spacing,
            "kernel": a.kernel, "noise_sd": round(a.noise_sd, 2), "contrast": int(a.contrast),
            "transfer_syntax": plan.syntax, "orientation": "sagittal" if plan.sagittal_main else "axial",
            "rescale": plan.rescale_index, "files": n_files, "extras": "+".join(extras)}
    if fov is not None:
        row |= fov_truth(p, spine, plan, fov)
    return row


def _draw(seed: int, index: int, opts: CohortOptions
          ) -> tuple[np.random.Generator, Patient, StudyPlan, FovPlan | None]:
    """The per-study generator and everything drawn before rendering."""
    rng = np.random.default_rng([seed, index])
    share = TRANSITIONAL if opts.transitional is None else opts.transitional
    fov = draw_fov(seed, index, share) if opts.fov == "mixed" else None
    patient = draw_patient(rng, fov.lumbar if fov else 5)
    plan = draw_plan(rng, opts)
    if fov is not None:
        acq = replace(plan.acq, scan=fov.scan)
        if fov.fov_mm is not None:  # a spine-centred reconstruction
            spine_y = plan.body.ay * 0.25
            acq = replace(acq, pixel_spacing=round(fov.fov_mm / acq.matrix, 4),
                          fov_offset=(spine_y + float(rng.uniform(-10, 10)), float(rng.uniform(-10, 10))))
        plan = replace(plan, acq=acq)
    return rng, patient, plan, fov


SAGITTAL_MIN_SLICES = 64
"""A scan shorter than this many axial slices is written axial even when a sagittal series was drawn (a short
field-of-view cohort's slab would make sagittal images too small for the JPEG 2000 encoder's resolution levels)."""


def _fit_orientation(plan: StudyPlan, n_z: int) -> StudyPlan:
    return replace(plan, sagittal_main=False) if plan.sagittal_main and n_z < SAGITTAL_MIN_SLICES else plan


def _levels(fov: FovPlan | None) -> tuple[str, ...]:
    return spine_levels(fov.lumbar) if fov else ALL_LEVELS


def _header(seed: int, index: int, patient: Patient, plan: StudyPlan) -> SeriesHeader:
    study_uid = det_uid("vfrisk-synth", seed, index)
    return SeriesHeader(
        patient_id=f"{seed:04d}{index:06d}", age=patient.age, sex=patient.sex, study_uid=study_uid,
        study_date=f"{2020 + index % 6}{1 + index % 12:02d}{1 + index % 28:02d}",
        series_uid=det_uid(study_uid, "main"), frame_uid=det_uid(study_uid, "frame"),
        series_number=2, description=f"Abdomen {plan.acq.slice_thickness:g}mm {plan.acq.kernel.lower()}",
        kernel=plan.acq.kernel,
    )


def _rows(index: int, patient: Patient, spine: list[VertebraGeometry], plan: StudyPlan, n: int,
          extras: list[str], fov: FovPlan | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    sid = f"studies/S{index:05d}"
    blank = plan.blank_demographics
    manifest = {"study": sid, "ntx": patient.ntx, "bmd_tscore": patient.tscore,
                "age": "" if blank else patient.age, "sex": "" if blank else patient.sex,
                "fracture_6m": patient.fracture_6m}
    return manifest, truth_row(sid, patient, spine, plan, n, extras, fov)


def make_study(
    root: Path, seed: int, index: int, opts: CohortOptions
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Generate and write study ``index``; return its manifest row and truth row."""
    rng, patient, plan, fov = _draw(seed, index, opts)
    vol, grid, spine = render(patient, plan.acq, plan.body, rng, _levels(fov), lungs=opts.lungs)
    plan = _fit_orientation(plan, len(grid.z))
    folder = root / "studies" / f"S{index:05d}"
    folder.mkdir(parents=True, exist_ok=True)
    h = _header(seed, index, patient, plan)
    if plan.sagittal_main:
        n = _write_sagittal(vol, grid, h, plan, folder, step=1)
    else:
        n = _write_axial(vol, grid, h, plan, folder, plan.acq.slice_thickness)
    extras = _write_extras(vol, grid, h, plan, folder)
    progress = root / ".progress"
    progress.mkdir(exist_ok=True)
    (progress / f"S{index:05d}").write_text(f"{n}\n")
    return _rows(index, patient, spine, plan, n, extras, fov)


def write_fixed_study(folder: Path, seed: int, index: int, *, matrix: int, n_slices: int,
                      slice_mm: float = 1.0, fov_mm: float = 400.0, syntax: str = "explicit") -> Path:
    """Write one axial study of exactly ``matrix`` x ``matrix`` x ``n_slices`` (for benchmarks and tests).

    The patient and habitus are drawn as in a cohort; the acquisition is fixed (``fov_mm`` field of view,
    ``slice_mm`` slices, the transfer ``syntax``: a key of ``TRANSFER_SYNTAXES``, Explicit VR Little Endian by
    default) and the slices are the ``n_slices`` centred on L2.
    """
    if syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"unknown transfer syntax {syntax!r}; known: {', '.join(TRANSFER_SYNTAXES)}")
    rng, patient, plan, _ = _draw(seed, index, CohortOptions(n=1, seed=seed, matrix=matrix, extras=False))
    margin = max(0.0, (n_slices * slice_mm - 200.0) / 2.0 + 40.0)
    acq = replace(plan.acq, matrix=matrix, pixel_spacing=fov_mm / matrix, slice_spacing=slice_mm,
                  slice_thickness=slice_mm, margin_top=margin, margin_bottom=margin)
    plan = replace(plan, acq=acq, syntax=syntax, sagittal_main=False)
    vol, grid, spine = render(patient, acq, plan.body, rng)
    centre = int(np.argmin(np.abs(grid.z - next(v.z_center for v in spine if v.level == "L2"))))
    start = int(np.clip(centre - n_slices // 2, 0, max(0, len(grid.z) - n_slices)))
    keep = slice(start, start + n_slices)
    folder.mkdir(parents=True, exist_ok=True)
    _write_axial(vol[keep], Grid(z=grid.z[keep], y=grid.y, x=grid.x), _header(seed, index, patient, plan), plan,
                 folder, slice_mm)
    return folder


def rows_of_written_study(
    root: Path, seed: int, index: int, opts: CohortOptions
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Rows of a study a previous (interrupted) run finished: redrawn without rendering."""
    rng, patient, plan, fov = _draw(seed, index, opts)
    spine = place_spine(patient, rng, z_l5_bottom=plan.acq.table_z, y_spine=plan.body.ay * 0.25,
                        levels=_levels(fov))
    plan = _fit_orientation(plan, len(make_grid(plan.acq, spine).z))
    n = int((root / ".progress" / f"S{index:05d}").read_text())
    extras = [name for name, flag in (("scout", plan.extra_scout), ("thick", plan.extra_thick),
                                      ("sagittal_reformat", plan.extra_sagittal)) if flag]
    return _rows(index, patient, spine, plan, n, extras, fov)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _job(args: tuple[str, int, int, CohortOptions]) -> tuple[dict[str, Any], dict[str, Any]]:
    root, seed, index, opts = args
    if (Path(root) / ".progress" / f"S{index:05d}").is_file():
        return rows_of_written_study(Path(root), seed, index, opts)
    return make_study(Path(root), seed, index, opts)


def _check_resume(out: Path, opts: CohortOptions) -> None:
    """Record the options of this run; an interrupted run resumes only with the same ones."""
    progress = out / ".progress"
    progress.mkdir(exist_ok=True)
    kept = {k: v for k, v in asdict(opts).items() if k not in ("workers", "n")}
    if not kept["lungs"]:
        del kept["lungs"]  # the options of a cohort begun before the option existed
    mine = json.dumps(kept, sort_keys=True)
    saved = progress / "options.json"
    if saved.is_file() and saved.read_text() != mine:
        raise InputError("bad_usage", f"{out.name} holds an interrupted cohort made with other options")
    saved.write_text(mine)


def write_cohort(out: Path, opts: CohortOptions) -> dict[str, Any]:
    """Write a whole cohort; return a summary (counts, rates, seconds)."""
    if opts.n < 1:
        raise InputError("bad_usage", "--n must be at least 1")
    if opts.fov not in ("standard", "mixed"):
        raise InputError("bad_usage", f"--fov must be standard or mixed, not {opts.fov!r}")
    if opts.matrix is not None and not 64 <= opts.matrix <= 1024:
        raise InputError("bad_usage", "--matrix must be between 64 and 1024")
    resuming = (out / ".progress").is_dir() and (out / "cohort.json").is_file() is False
    if out.exists() and any(out.iterdir()) and not resuming:
        raise InputError("bad_usage", f"output folder {out.name} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    _check_resume(out, opts)
    t0 = time.perf_counter()
    workers = opts.workers or os.cpu_count() or 1
    jobs = [(str(out), opts.seed, i, opts) for i in range(opts.n)]
    if workers == 1 or opts.n == 1:
        results = [_job(j) for j in jobs]
    else:
        # spawn, never fork: a forked child of a threaded parent (pytest, torch, a server) can deadlock
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=init_worker, initargs=(os.getpid(),)) as pool:
            results = list(pool.map(_job, jobs, chunksize=max(1, min(16, opts.n // (4 * workers)))))
    _write_csv(out / "manifest.csv", [m for m, _ in results])
    _write_csv(out / "truth.csv", [t for _, t in results])
    p = np.array([t["p_true"] for _, t in results])
    summary = {
        "n": opts.n, "seed": opts.seed,
        "event_rate": round(float(np.mean([m["fracture_6m"] for m, _ in results])), 4),
        "mean_p_true": round(float(p.mean()), 4),
        "any_prevalent_fracture": round(float(np.mean([t["worst_grade"] > 0 for _, t in results])), 4),
        "levels": list(LEVELS if opts.fov == "standard" else REPORT_LEVELS),
        **({"fov_kinds": {k: sum(t.get("fov_kind") == k for _, t in results) for k in FOV_KINDS},
            "transitional": sum(int(t.get("transitional") or 0) for _, t in results)}
           if opts.fov == "mixed" else {}),
        "options": {k: v for k, v in asdict(opts).items() if k != "workers"},
    }
    (out / "cohort.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {"out": str(out), "seconds": round(time.perf_counter() - t0, 2)} | summary


__all__ = ["CohortOptions", "make_study", "write_cohort"]
