"""The real scans of ``../shared`` through the product: what is scored or refused, and how the bodies the masks show
are found and named.

``python -m training.real_check [--model BUNDLE] [--out FILE]`` runs every real scan of ``../shared`` through the
product pipeline (:class:`inference.engine.Engine` with the bundle; default: the bundled default model), the
reader's refusals included, and prints one row per scan and a total:

- **verdict**: scored, or refused with the one-line reason (a refused case of :data:`MUST_REFUSE` is also read
  with relaxed coverage limits and given to the model: its anatomy verdict is the ``relaxed`` field);
- **whole**: the vertebral bodies of T10-L6 and S1 that the scan's masks show whole;
- **found**: of those, how many have a reported body within 10 mm of the mask's centre; **named**: how many of
  the found are reported under their own name; **sure right**: of the found whose name is reported as sure (not
  ``name_uncertain``), how many are right; **uncertain**: how many of the found are marked uncertain (a scan
  refused as ``spine_not_covered`` counts the bodies its refusal found, as in ``training.fov_check``; any
  other refusal none);
- **HU**: where the scan has a TotalSegmentator report, the transparent trabecular HU (``measured``) against the
  report's median per level found, as the largest absolute difference over the levels measured (every level in
  the JSON, the learned HU beside it).

The scans and their truth come from the files, never copied into the project: every NIfTI image under
``../shared/real-spine`` and ``../shared/dicom-corpus`` that has vertebra masks beside it, in one of three
conventions (a TotalSegmentator v2 label map ``<image>_seg.nii.gz`` or ``totalseg.nii.gz``; one TotalSegmentator
structure per file, ``<image>_vertebrae_<LEVEL>.nii.gz``; a VerSe-numbered BIDS mask ``..._seg-vert_..._msk``),
its ``spine_report.json`` and ``<image>_contrast_phase.json`` when present, plus the corpus DICOM cases that show
no thoracolumbar spine (:data:`MUST_REFUSE`). A labelled vertebra is *whole* when the front of its mask (its
body, :data:`BODY_SHARE`) touches neither the first nor the last slice, or when it does but the mask is at least
:data:`WHOLE_SHARE` as tall as the scan's uncut vertebrae (the posterior elements reach the edge before the body
does: the 90 mm slab's T12). ``tests/
test_real_ct.py`` and ``tests/test_real_fov.py`` assert on these same figures. No torch.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import InputError
from inference.labs import Labs
from inference.spec import LEVELS
from training.command import run_check

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
"""The shared read-only material (``../shared`` beside the checkout); absent in a user's clone."""
FOUND_MM = 10.0
"""A whole body counts as found when a reported body lies within this distance of its mask's centre."""
BODY_SHARE = 0.4
"""The front share of a vertebra mask's extent front to back taken as its body: a body is cut when this part
touches the first or last slice (a spinous process sloping down past the scan's edge does not cut the body above
it: the contrast-enhanced crop's T12, whose body ends 12 mm above the bottom slice)."""
WHOLE_SHARE = 0.8
"""A mask cut by the first or last slice still counts as a whole body when it is at least this share as tall as
the median of the scan's uncut vertebra masks."""
LABS = Labs(45.0, -1.8, 60.0, "M")
"""The labs every real scan is scored with (the probability is not checked here: the scans have no outcome)."""
MUST_REFUSE = ("accept_pycerr_hn_constant_instancenumber", "accept_totalseg_abdomen_j2k_empty_uids")
"""Corpus DICOM cases that show no thoracolumbar spine (a head-and-neck CT, a 20-slice 38 mm abdominal slab):
the corpus README's scoring verdict is a refusal."""
TOTALSEG_V2 = {26 + i: lv for i, lv in enumerate(("S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10"))}
"""TotalSegmentator v2 class numbers of the vertebrae the model names (``vertebrae_S1`` = 26 ... ``T10`` = 34)."""
VERSE = {17 + i: lv for i, lv in enumerate(("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6"))}
"""VerSe numbering of the same (1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6)."""
_MASK = re.compile(r"(_seg|_msk|^totalseg|_vertebrae_)")


@dataclass(frozen=True)
class RealScan:
    """One real scan: its image (a NIfTI file or a DICOM folder), its vertebra masks and what they number."""

    name: str
    image: Path
    masks: tuple[tuple[Path, tuple[tuple[int, str], ...]], ...] = ()
    """Each mask file with its (label value, level) pairs."""
    report: Path | None = None
    """A TotalSegmentator ``spine_report.json`` (per-level ``vertebrae_<LEVEL>_intensity_median``)."""
    contrast: Path | None = None
    """A ``<image>_contrast_phase.json`` (TotalSegmentator's phase estimate)."""
    relaxed: bool = False
    """A DICOM case whose reader verdict is followed by the model's verdict with relaxed coverage limits."""


@dataclass(frozen=True)
class MaskBody:
    """A labelled vertebra: its level, the patient z (mm) of its mask's centre, and whether it is whole."""

    level: str
    z_mm: float
    whole: bool


@dataclass
class BodyCheck:
    """A whole body of the masks against the body the product reports nearest to it."""

    level: str
    mask_z_mm: float
    reported: str | None = None
    reported_z_mm: float | None = None
    found: bool = False
    confidence: float | None = None
    uncertain: bool = False
    measured_hu: float | None = None
    learned_hu: float | None = None
    report_hu: float | None = None


@dataclass
class ScanRow:
    """One scan's figures (see the module docstring)."""

    scan: str
    verdict: str
    reason: str | None = None
    relaxed: str | None = None
    bodies: list[BodyCheck] = field(default_factory=list)
    whole: int = 0
    found: int = 0
    named: int = 0
    sure: int = 0
    sure_right: int = 0
    uncertain: int = 0
    hu_max_diff: float | None = None
    hu_levels: int = 0
    contrast_phase: str | None = None
    phase_told: str | None = None


def _image_stem(path: Path) -> str:
    """The file name without ``.nii.gz`` / ``.nii``."""
    return path.name.removesuffix(".gz").removesuffix(".nii")


def _bids_entities(stem: str) -> tuple[frozenset[str], str]:
    """A BIDS file name's key-value entities and its suffix (``sub-ct_label-22_ct`` -> {sub-ct, label-22}, ct)."""
    *parts, suffix = stem.split("_")
    return frozenset(p for p in parts if "-" in p), suffix


def _masks_of(image: Path) -> list[tuple[Path, tuple[tuple[int, str], ...]]]:
    """The vertebra masks beside ``image`` in the three conventions, each with its label map."""
    stem, folder = _image_stem(image), image.parent
    out: list[tuple[Path, tuple[tuple[int, str], ...]]] = []
    for seg in (folder / f"{stem}_seg.nii.gz", folder / "totalseg.nii.gz"):
        if seg.is_file():
            out.append((seg, tuple(TOTALSEG_V2.items())))
            break
    for one in sorted(folder.glob(f"{stem}_vertebrae_*.nii.gz")):
        level = _image_stem(one).rsplit("_", 1)[1]
        if level in LEVELS:
            out.append((one, ((1, level),)))
    entities, suffix = _bids_entities(stem)
    if entities and suffix == "ct":
        for msk in sorted(folder.glob("*_seg-vert_*msk.nii.gz")):
            ents, _ = _bids_entities(_image_stem(msk))
            if ents - {"seg-vert"} == entities:
                out.append((msk, tuple(VERSE.items())))
    return out


def real_scans(shared: Path = SHARED) -> list[RealScan]:
    """Every real scan of ``shared`` with vertebra masks, then the corpus cases that must be refused; empty when
    ``shared`` is absent."""
    scans: list[RealScan] = []
    roots = [shared / "dicom-corpus", shared / "real-spine"]
    for image in sorted(p for root in roots if root.is_dir() for p in root.rglob("*.nii*")):
        if _MASK.search(image.name) or not (masks := _masks_of(image)):
            continue
        report = image.parent / "spine_report.json"
        contrast = image.parent / f"{_image_stem(image)}_contrast_phase.json"
        scans.append(RealScan(f"{image.parent.name}/{_image_stem(image)}", image, tuple(masks),
                              report if report.is_file() else None, contrast if contrast.is_file() else None))
    for case in MUST_REFUSE:
        if (shared / "dicom-corpus" / case).is_dir():
            scans.append(RealScan(case, shared / "dicom-corpus" / case, relaxed=True))
    return scans


def scan_named(stem: str, shared: Path = SHARED) -> RealScan:
    """The scan whose image (file stem or folder) is ``stem``; a KeyError naming it when there is none."""
    for scan in real_scans(shared):
        if scan.name.split("/")[-1] == stem:
            return scan
    raise KeyError(f"no real scan {stem} in {shared}")


def mask_bodies(scan: RealScan) -> list[MaskBody]:
    """Every labelled vertebra of the scan's masks (T10-L6, S1), head first, with the patient z (mm) of its centre
    on the image's grid and whether it is whole (see :data:`WHOLE_SHARE`)."""
    import nibabel as nib

    from inference.io import load_any
    from inference.nifti import _canonical

    if not scan.masks:
        return []
    affine = load_any(scan.image).affine
    spans: list[tuple[str, float, int, bool]] = []
    for path, labels in scan.masks:
        img: Any = nib.load(str(path))
        lab, _ = _canonical(np.asarray(img.dataobj), img.affine)
        for code, level in labels:
            k, rows, _ = np.nonzero(lab == code)
            if k.size:
                z = float((affine @ np.array([k.mean(), 0, 0, 1.0]))[2])
                body = k[rows <= rows.min() + BODY_SHARE * (rows.max() - rows.min())]  # the front: the body
                cut = bool(body.min() == 0 or body.max() == lab.shape[0] - 1)
                spans.append((level, z, int(k.max() - k.min() + 1), cut))
    uncut = [n for _, _, n, cut in spans if not cut]
    tall = float(np.median(uncut)) if uncut else float("inf")
    bodies = [MaskBody(lv, z, not cut or n >= WHOLE_SHARE * tall) for lv, z, n, cut in spans]
    return sorted(bodies, key=lambda b: -b.z_mm)


class Refused(str):
    """A one-line refusal; ``found``: the result-JSON form of the bodies a ``spine_not_covered`` refusal found
    (too few to score), empty for any other refusal."""

    found: tuple[dict[str, Any], ...] = ()


def predict(engine: Any, scan: RealScan, relaxed: bool = False) -> dict[str, Any] | str:
    """The product's result JSON for the scan, or its one-line refusal (the reader's or the model's:
    :class:`Refused`); with ``relaxed``, read with relaxed coverage limits (no minimum extent, slices or body
    part)."""
    from inference.dicom import Limits
    from inference.findings import NotCoveredError
    from inference.io import load_any

    limits = Limits(min_slices=1, min_extent_mm=0.0, check_body_part=False) if relaxed else None
    try:
        result: dict[str, Any] = engine.predict(load_any(scan.image, limits=limits), LABS).to_json()
        return result
    except InputError as exc:
        refused = Refused(exc.one_line())
        if isinstance(exc, NotCoveredError):
            refused.found = tuple(v.to_json() for v in exc.found)
        return refused


def body_at(vertebrae: list[dict[str, Any]], z_mm: float) -> dict[str, Any] | None:
    """The reported body (``present``) nearest to patient z, when within :data:`FOUND_MM` (whatever its name)."""
    found = [v for v in vertebrae if v["present"] and v.get("z_mm") is not None]
    near = min(found, key=lambda v: abs(v["z_mm"] - z_mm), default=None)
    return near if near is not None and abs(near["z_mm"] - z_mm) <= FOUND_MM else None


def report_hu(scan: RealScan) -> dict[str, float]:
    """The report's median HU per level (``vertebrae_<LEVEL>_intensity_median``); empty without a report."""
    if scan.report is None:
        return {}
    results = json.loads(scan.report.read_text())["results"]
    return {lv: float(results[f"vertebrae_{lv}_intensity_median"]) for lv in LEVELS
            if f"vertebrae_{lv}_intensity_median" in results}


def check_scan(scan: RealScan, result: dict[str, Any] | str, bodies: list[MaskBody] | None = None) -> ScanRow:
    """The scan's row from the product's outcome and the masks' whole bodies."""
    row = ScanRow(scan.name, "refused" if isinstance(result, str) else "scored",
                  result if isinstance(result, str) else None)
    if scan.contrast is not None:
        row.contrast_phase = str(json.loads(scan.contrast.read_text()).get("phase"))
    # a refused scan: the bodies its refusal found (too few to score), none for any other refusal
    vertebrae = list(getattr(result, "found", ())) if isinstance(result, str) else result["vertebrae"]
    if not isinstance(result, str):
        row.phase_told = (result.get("contrast") or {}).get("phase")
    reference = report_hu(scan)
    diffs = []
    for mb in (mask_bodies(scan) if bodies is None else bodies):
        if not mb.whole:
            continue
        check = BodyCheck(mb.level, round(mb.z_mm, 1), report_hu=reference.get(mb.level))
        row.bodies.append(check)
        row.whole += 1
        near = body_at(vertebrae, mb.z_mm)
        if near is None:
            continue
        measured = (near.get("measured") or {}).get("trabecular_hu")
        check.reported, check.reported_z_mm, check.found = near["level"], round(near["z_mm"], 1), True
        check.confidence, check.uncertain = near.get("name_confidence"), bool(near["name_uncertain"])
        check.measured_hu, check.learned_hu = measured, near.get("trabecular_hu")
        row.found += 1
        row.named += near["level"] == mb.level
        row.uncertain += check.uncertain
        if not check.uncertain:
            row.sure += 1
            row.sure_right += near["level"] == mb.level
        if measured is not None and check.report_hu is not None:
            diffs.append(abs(measured - check.report_hu))
    if diffs:
        row.hu_max_diff, row.hu_levels = round(max(diffs), 1), len(diffs)
    return row


def check(model: Path | None = None, shared: Path = SHARED, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every real scan's row and the total (``only``: the scans whose name ends with one of these)."""
    from inference.engine import Engine

    scans = [s for s in real_scans(shared) if not only or s.name.split("/")[-1] in only]
    if not scans:
        raise SystemExit(f"error: no real scans in {shared}" + (f" named {', '.join(only)}" if only else ""))
    engine = Engine(model)
    rows = []
    for scan in scans:
        result = predict(engine, scan)
        row = check_scan(scan, result)
        if scan.relaxed and isinstance(result, str):
            again = predict(engine, scan, relaxed=True)
            row.relaxed = again if isinstance(again, str) else "scored"
        rows.append(row)
    total = {k: sum(getattr(r, k) for r in rows) for k in ("whole", "found", "named", "sure", "sure_right",
                                                            "uncertain", "hu_levels")}
    total |= {"scans": len(rows), "scored": sum(r.verdict == "scored" for r in rows),
              "refused": sum(r.verdict == "refused" for r in rows)}
    return {"model": engine.bundle.identity, "shared": str(shared), "scans": [asdict(r) for r in rows],
            "total": total}


def _ratio(a: int, b: int) -> str:
    """``a/b`` for a table cell."""
    return f"{a}/{b}"


def print_table(result: dict[str, Any]) -> None:
    """The table on stdout."""
    width = max(len(r["scan"]) for r in result["scans"]) + 1
    head = ("found", "named", "sure right", "uncertain", "HU |diff| max")
    print(f"model {json.dumps(result['model'])}")
    print(f"{'scan':{width}s} {'verdict':8s} {'whole bodies (masks)':22s}" + "".join(f"{h:>14s}" for h in head))
    for r in result["scans"]:
        hu = f"{r['hu_max_diff']} ({r['hu_levels']})" if r["hu_levels"] else "-"
        whole = " ".join(b["level"] for b in r["bodies"]) or "-"
        cells = (_ratio(r["found"], r["whole"]), _ratio(r["named"], r["found"]), _ratio(r["sure_right"], r["sure"]),
                 str(r["uncertain"]), hu)
        print(f"{r['scan']:{width}s} {r['verdict']:8s} {whole:22s}" + "".join(f"{c:>14s}" for c in cells))
        if r["reason"]:
            print(f"{'':{width}s}   {r['reason']}")
        if r["relaxed"]:
            print(f"{'':{width}s}   read with relaxed limits: {r['relaxed']}")
        for b in r["bodies"]:
            said = (f"{b['reported']}{'?' if b['uncertain'] else ''} ({b['confidence']}) at {b['reported_z_mm']} mm"
                    if b["found"] else "not found")
            hu = (f"; HU measured {b['measured_hu']} learned {b['learned_hu']} report {b['report_hu']}"
                  if b["report_hu"] is not None else "")
            print(f"{'':{width}s}   {b['level']} mask {b['mask_z_mm']} mm: {said}{hu}")
        if r["contrast_phase"]:
            print(f"{'':{width}s}   contrast phase (TotalSegmentator): {r['contrast_phase']}; told: {r['phase_told']}")
    t = result["total"]
    cells = (_ratio(t["found"], t["whole"]), _ratio(t["named"], t["found"]), _ratio(t["sure_right"], t["sure"]),
             str(t["uncertain"]), f"({t['hu_levels']})")
    verdicts = f"{t['scans']} scans: {t['scored']} scored, {t['refused']} refused"
    print(f"{'TOTAL':{width}s} {verdicts:31s}" + "".join(f"{c:>14s}" for c in cells))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="a model bundle folder (default: the bundled model)")
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared material (default: ../shared)")
    ap.add_argument("--only", nargs="*", default=(), help="only the scans with these image stems or case names")
    ap.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    run_check(lambda: check(args.model, args.shared, tuple(args.only)), print_table, args.out)


if __name__ == "__main__":
    main()
