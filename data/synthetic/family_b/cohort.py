"""``vfrisk synth --family b``: family B cohorts in the layout and truth schema of family A's ``--fov mixed``.

``DIR/manifest.csv`` (study, ntx, bmd_tscore, age, sex, fracture_6m), ``DIR/studies/<id>/`` (the main axial CT
series; some studies add a 5 mm reconstruction, a lung-kernel reconstruction or a localizer), ``DIR/truth.csv``
(:data:`TRUTH_COLUMNS`: the true probability, per level of :data:`REPORT_LEVELS` its grade, height ratio,
unenhanced and enhanced trabecular HU, shape, body centre in patient LPS mm and whether the whole body is in the
scan, the field of view, the contrast phase and the acquisition). An interrupted run resumes (``DIR/.progress``).
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data.synthetic.dicom_writer import RESCALES, SeriesHeader, det_uid, slice_dataset, write_dataset
from data.synthetic.family_b.plan import FOV_KINDS, StudyPlan, plan_study, rngs
from data.synthetic.family_b.render import Volume, render_study
from data.synthetic.family_b.tissue import PHASES
from inference.errors import InputError
from inference.workers import init_worker

REPORT_LEVELS: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1")
"""Levels whose truth every row records (the product's level classes)."""
LEVEL_KEYS: tuple[str, ...] = ("grade", "height_ratio", "hu", "hu_enhanced", "shape", "z_mm", "y_mm", "x_mm",
                               "in_view")
TRUTH_COLUMNS: tuple[str, ...] = (
    "study", "family", "p_true", "l1_hu", "worst_grade", "n_fractures", "fov_kind", "lumbar_count", "transitional",
    "scan_bottom_mm", "scan_top_mm", "contrast_phase", "contrast_in_header", "contrast_offset_hu",
    *(f"{lv}_{k}" for lv in REPORT_LEVELS for k in LEVEL_KEYS),
    "matrix", "pixel_spacing", "slice_spacing", "slice_thickness", "kernel", "noise_sd", "contrast",
    "transfer_syntax", "orientation", "rescale", "files", "extras", "prone", "bmi", "sacral_slope_deg",
)
MANIFEST_COLUMNS = ("study", "ntx", "bmd_tscore", "age", "sex", "fracture_6m")
BODY_PARTS = {"whole": "CHESTABDPELVIS", "abdomen": "ABDOMEN", "lumbar": "LSPINE", "chest": "CHEST",
              "slab": "SPINE", "none": ""}
PHASE_WORDS = {"none": ("", "NATIVE ", "WO "), "arterial": ("ART ", "ARTERIAL ", "C+ "),
               "portal_venous": ("PV ", "VENOUS ", "C+ ")}


@dataclass(frozen=True)
class Options:
    """Options of ``vfrisk synth --family b``."""

    n: int
    seed: int
    matrix: int | None = None
    """Fixed in-plane matrix (64-1024); None draws 256-512."""
    workers: int = 0
    """Worker processes (0 = all cores)."""
    extras: bool = True
    """Write the extra reconstructions drawn (5 mm, lung kernel, localizer)."""


def truth_row(study: str, plan: StudyPlan, n_files: int, extras: list[str]) -> dict[str, Any]:
    """The truth of one study (every column of :data:`TRUTH_COLUMNS`)."""
    p, spine, series = plan.patient, plan.spine, plan.series
    z = plan.z_positions()
    lo, hi = float(z[0]), float(z[-1])
    row: dict[str, Any] = dict.fromkeys(TRUTH_COLUMNS, "")
    row |= {"study": study, "family": "b", "p_true": round(p.p_true, 6), "l1_hu": p.l1_hu,
            "worst_grade": p.worst_grade, "n_fractures": sum(v.grade > 0 for v in p.vertebrae),
            "fov_kind": plan.scan.kind, "lumbar_count": spine.lumbar, "transitional": int(spine.lumbar != 5),
            "scan_bottom_mm": round(lo, 2), "scan_top_mm": round(hi, 2), "contrast_phase": series.phase,
            "contrast_in_header": int(series.header_says_contrast),
            "contrast_offset_hu": round(plan.tissues.bone_offset, 2)}
    seg = spine.by_level()
    truth = {v.level: v for v in p.vertebrae}
    for lv in REPORT_LEVELS:
        if lv not in seg:
            continue
        s = seg[lv]
        bottom, top = s.z_span()
        row |= {f"{lv}_z_mm": round(s.centre[2], 2), f"{lv}_y_mm": round(s.centre[1], 2),
                f"{lv}_x_mm": round(s.centre[0], 2), f"{lv}_in_view": int(lo <= bottom and top <= hi)}
        if lv in truth:
            t = truth[lv]
            row |= {f"{lv}_grade": t.grade, f"{lv}_height_ratio": t.height_ratio, f"{lv}_hu": t.trabecular_hu,
                    f"{lv}_hu_enhanced": round(t.trabecular_hu + plan.look.enhancement.get(lv, 0.0), 1),
                    f"{lv}_shape": t.shape}
    rec = series.rec
    row |= {"matrix": series.matrix, "pixel_spacing": rec.pixel_mm, "slice_spacing": rec.spacing,
            "slice_thickness": rec.thickness, "kernel": rec.kernel, "noise_sd": rec.noise_sd,
            "contrast": int(series.phase != "none"), "transfer_syntax": series.syntax, "orientation": "axial",
            "rescale": series.rescale_index, "files": n_files, "extras": "+".join(extras),
            "prone": int(series.prone), "bmi": plan.habitus.bmi, "sacral_slope_deg": round(spine.sacral_slope_deg, 1)}
    return row


def manifest_row(study: str, plan: StudyPlan) -> dict[str, Any]:
    """The manifest line of one study (age and sex blank in some: the reader then takes the header's)."""
    p = plan.patient
    blank = plan.series.blank_demographics
    return {"study": study, "ntx": p.ntx, "bmd_tscore": p.tscore, "age": "" if blank else p.age,
            "sex": "" if blank else p.sex, "fracture_6m": p.fracture_6m}


def header(seed: int, index: int, plan: StudyPlan, number: int, description: str, kernel: str,
           image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")) -> SeriesHeader:
    """Patient, study and series facts of one series of the study."""
    study_uid = det_uid("vfrisk-synth-family-b", seed, index)
    return SeriesHeader(
        patient_id=f"B{seed:04d}{index:06d}", age=plan.patient.age, sex=plan.patient.sex, study_uid=study_uid,
        study_date=f"{2019 + index % 7}{1 + (index * 5) % 12:02d}{1 + (index * 11) % 28:02d}",
        series_uid=det_uid(study_uid, "series", number), frame_uid=det_uid(study_uid, "frame"),
        series_number=number, description=description, kernel=kernel, image_type=image_type)


def _describe(plan: StudyPlan, rng: np.random.Generator) -> str:
    """Series description; names the phase only when the header says so."""
    rec = plan.series.rec
    words = PHASE_WORDS[plan.series.phase] if plan.series.header_says_contrast or plan.series.phase == "none" else ("",)
    region = {"whole": "CAP", "abdomen": "ABD/PEL", "lumbar": "L-SPINE", "chest": "CHEST", "slab": "SPINE",
              "none": "CT"}[plan.scan.kind]
    return f"{words[int(rng.integers(len(words)))]}{region} {rec.thickness:g}mm {rec.kernel}".strip()


def _decorate(ds: Any, plan: StudyPlan) -> None:
    """Study-level elements family B sets on every image: body part, position, and the contrast module when the
    series records it."""
    ds.StudyDescription = f"CT {BODY_PARTS[plan.scan.kind] or 'BODY'} (synthetic B)"
    ds.BodyPartExamined = BODY_PARTS[plan.scan.kind]
    ds.PatientPosition = ("HFP" if plan.scan.kind == "chest" else "FFP") if plan.series.prone else (
        "HFS" if plan.scan.kind == "chest" else "FFS")
    if plan.series.header_says_contrast:
        start = 10 * 3600 + 15 * 60 - (30 if plan.series.phase == "arterial" else 70)  # acquired at 10:15:00
        ds.ContrastBolusAgent = plan.series.agent
        ds.ContrastBolusRoute = "IV"
        ds.ContrastBolusStartTime = f"{start // 3600:02d}{start % 3600 // 60:02d}{start % 60:02d}"
        ds.ContrastBolusVolume = "90"


def write_axial(vol: Volume, h: SeriesHeader, plan: StudyPlan, folder: Path) -> int:
    """One image per slice; supine rows run +y and columns +x, prone the reverse (IOP -1 0 0 0 -1 0)."""
    rescale = RESCALES[plan.series.rescale_index]
    ps = float(vol.y[1] - vol.y[0])
    n = len(vol.z)
    for k in range(n):
        pixels = vol.hu[k]
        if plan.series.prone:
            pixels = pixels[::-1, ::-1]
            ipp, iop = (float(vol.x[-1]), float(vol.y[-1]), float(vol.z[k])), (-1, 0, 0, 0, -1, 0)
        else:
            ipp, iop = (float(vol.x[0]), float(vol.y[0]), float(vol.z[k])), (1, 0, 0, 0, 1, 0)
        number = n - 1 - k if plan.series.head_first_numbering else k
        ds = slice_dataset(h, number, np.ascontiguousarray(pixels), rescale, ipp, iop, (ps, ps), vol.thickness)
        ds.SliceLocation = f"{vol.z[k]:.4f}"
        _decorate(ds, plan)
        write_dataset(ds, folder / f"{h.series_number:02d}{(number * 7307 + 13) % 99991:05d}.dcm", plan.series.syntax)
    return n


def write_localizer(vol: Volume, h: SeriesHeader, plan: StudyPlan, folder: Path) -> None:
    """A coronal projection image (rows head to feet, columns +x) as a LOCALIZER."""
    atten = np.clip(vol.hu + 1000.0, 0, None).sum(axis=1) * float(vol.y[1] - vol.y[0]) / 1000.0
    image = np.clip(atten[::-1] * 8.0 - 1000.0, -1000.0, 3000.0).astype(np.float32)
    ds = slice_dataset(h, 0, image, RESCALES[plan.series.rescale_index],
                       (float(vol.x[0]), float(np.mean(vol.y)), float(vol.z[-1])), (1, 0, 0, 0, 0, -1),
                       (float(vol.z[1] - vol.z[0]) if len(vol.z) > 1 else 1.0, float(vol.x[1] - vol.x[0])), 1.0)
    _decorate(ds, plan)
    write_dataset(ds, folder / "localizer.dcm", plan.series.syntax)


def thick(vol: Volume, mm: float = 5.0) -> Volume:
    """Average neighbouring slices into slices of about ``mm`` (their thickness the spacing they end up with)."""
    step = float(vol.z[1] - vol.z[0])
    k = max(2, round(mm / step))
    n = len(vol.z) // k
    hu = vol.hu[: n * k].reshape(n, k, *vol.hu.shape[1:]).mean(axis=1)
    return Volume(hu, vol.z[: n * k].reshape(n, k).mean(axis=1), vol.y, vol.x, round(k * step, 4))


def make_study(root: Path, seed: int, index: int, opts: Options) -> tuple[dict[str, Any], dict[str, Any]]:
    """Render and write study ``index``; return its manifest and truth rows."""
    plan = plan_study(seed, index, opts.matrix)
    rng = rngs(seed, index)[3]
    main, lung = render_study(plan, rng)
    folder = root / "studies" / f"S{index:05d}"
    folder.mkdir(parents=True, exist_ok=True)
    kernel = plan.series.rec.kernel
    n = write_axial(main, header(seed, index, plan, 2, _describe(plan, rng), kernel), plan, folder)
    extras = []
    if opts.extras and plan.series.extra_localizer:
        write_localizer(main, header(seed, index, plan, 1, "Topogram", kernel, ("ORIGINAL", "PRIMARY", "LOCALIZER")),
                        plan, folder)
        extras.append("localizer")
    if opts.extras and plan.series.extra_thick:
        thick_series = thick(main)
        write_axial(thick_series, header(seed, index, plan, 3, f"{thick_series.thickness:g}mm soft tissue", kernel),
                    plan, folder)
        extras.append("thick")
    if opts.extras and lung is not None:
        write_axial(lung, header(seed, index, plan, 4, f"Lung {plan.series.extra_lung}", plan.series.extra_lung),
                    plan, folder)
        extras.append("lung")
    progress = root / ".progress"
    progress.mkdir(exist_ok=True)
    (progress / f"S{index:05d}").write_text(json.dumps({"files": n, "extras": extras}) + "\n")
    sid = f"studies/S{index:05d}"
    return manifest_row(sid, plan), truth_row(sid, plan, n, extras)


def rows_of_written_study(root: Path, seed: int, index: int, opts: Options) -> tuple[dict[str, Any], dict[str, Any]]:
    """Rows of a study an interrupted run finished: redrawn without rendering."""
    plan = plan_study(seed, index, opts.matrix)
    done = json.loads((root / ".progress" / f"S{index:05d}").read_text())
    sid = f"studies/S{index:05d}"
    return manifest_row(sid, plan), truth_row(sid, plan, int(done["files"]), list(done["extras"]))


def _job(args: tuple[str, int, int, Options]) -> tuple[dict[str, Any], dict[str, Any]]:
    root, seed, index, opts = args
    if (Path(root) / ".progress" / f"S{index:05d}").is_file():
        return rows_of_written_study(Path(root), seed, index, opts)
    return make_study(Path(root), seed, index, opts)


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _check_resume(out: Path, opts: Options) -> None:
    """Record the options; an interrupted run resumes only with the same ones."""
    progress = out / ".progress"
    progress.mkdir(exist_ok=True)
    mine = json.dumps({"family": "b"} | {k: v for k, v in asdict(opts).items() if k not in ("workers", "n")},
                      sort_keys=True)
    saved = progress / "options.json"
    if saved.is_file() and saved.read_text() != mine:
        raise InputError("bad_usage", f"{out.name} holds an interrupted cohort made with other options")
    saved.write_text(mine)


def write_cohort(out: Path, opts: Options) -> dict[str, Any]:
    """Write a whole family B cohort; return a summary (counts of fields of view, spines and phases)."""
    if opts.n < 1:
        raise InputError("bad_usage", "--n must be at least 1")
    if opts.matrix is not None and not 64 <= opts.matrix <= 1024:
        raise InputError("bad_usage", "--matrix must be between 64 and 1024")
    resuming = (out / ".progress").is_dir() and not (out / "cohort.json").is_file()
    if out.exists() and any(out.iterdir()) and not resuming:
        raise InputError("bad_usage", f"output folder {out.name} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    _check_resume(out, opts)
    t0 = time.perf_counter()
    workers = opts.workers or os.cpu_count() or 1
    jobs = [(str(out), opts.seed, i, opts) for i in range(opts.n)]
    if workers == 1 or opts.n == 1:
        results = [_job(j) for j in jobs]
    else:  # spawn, never fork (a forked child of a threaded parent can deadlock)
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=init_worker, initargs=(os.getpid(),)) as pool:
            results = list(pool.map(_job, jobs, chunksize=max(1, min(8, opts.n // (4 * workers)))))
    _write_csv(out / "manifest.csv", MANIFEST_COLUMNS, [m for m, _ in results])
    _write_csv(out / "truth.csv", TRUTH_COLUMNS, [t for _, t in results])
    truths = [t for _, t in results]
    summary = {
        "family": "b", "n": opts.n, "seed": opts.seed,
        "event_rate": round(float(np.mean([m["fracture_6m"] for m, _ in results])), 4),
        "mean_p_true": round(float(np.mean([t["p_true"] for t in truths])), 4),
        "any_prevalent_fracture": round(float(np.mean([t["worst_grade"] > 0 for t in truths])), 4),
        "fov_kinds": {k: sum(t["fov_kind"] == k for t in truths) for k in FOV_KINDS},
        "lumbar_counts": {str(k): sum(t["lumbar_count"] == k for t in truths) for k in (4, 5, 6)},
        "contrast_phases": {k: sum(t["contrast_phase"] == k for t in truths) for k in PHASES},
        "contrast_in_header": sum(int(t["contrast_in_header"]) for t in truths),
        "options": {k: v for k, v in asdict(opts).items() if k != "workers"},
    }
    (out / "cohort.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {"out": str(out), "seconds": round(time.perf_counter() - t0, 2)} | summary


__all__ = ["TRUTH_COLUMNS", "Options", "make_study", "truth_row", "write_cohort"]
