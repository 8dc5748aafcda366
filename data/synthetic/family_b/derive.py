"""Recompute the derived statistics of phantom family B (``family_b/stats.json``) from ``../shared/real-spine``.

``python -m data.synthetic.family_b.derive [--real DIR] [--out FILE]`` reads the real material (never copied into
the project) and writes only summary numbers:

- **VID keypoints** (2,116 real CTs, CC BY-SA 4.0): which levels each scan shows (where real scans start and
  stop), and the spine's shape as the step between neighbouring body centres (dz, dy, dx in patient LPS mm) from
  T1 down to L5: its mean, and the principal components of its covariance (pairwise-complete: the upper
  thoracic steps come from the fewer scans that show them); the L5-L6 step of spines with an L6.
- **VerSe verse004** (CC BY-SA 4.0): per level T9-L5 the vertebral body's width, depth, anterior / middle /
  posterior height and body-to-pitch ratio, and its mid-height axial outline (radius over the ellipse of the same
  width and depth, 24 angles), measured in a frame that follows the spine's own axis.
- **TPTBox L3 crop** (Apache-2.0): the same body measures for L3, its trabecular HU, spread and correlation
  lengths (in-plane and along the spine), and the cortical rim HU.

Without the real folder it prints a line and exits 0 (the committed JSON stays as it is).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

REAL = Path(__file__).resolve().parents[4] / "shared" / "real-spine"
OUT = Path(__file__).with_name("stats.json")
CURVE_LEVELS: tuple[str, ...] = (*(f"T{i}" for i in range(1, 13)), *(f"L{i}" for i in range(1, 6)))
ORDER: tuple[str, ...] = (*(f"C{i}" for i in range(1, 8)), *CURVE_LEVELS, "L6")
VERSE_LABELS: dict[int, str] = {16: "T9", 17: "T10", 18: "T11", 19: "T12", 20: "L1", 21: "L2", 22: "L3",
                                23: "L4", 24: "L5"}
STEP_RANGE_MM = (8.0, 60.0)
"""A scan whose craniocaudal step between two neighbouring bodies falls outside this range is left out of the
curve statistics (a mislabelled or rescaled scan)."""
N_COMPONENTS = 10
ANGLES = 24

SOURCES: list[dict[str, str]] = [
    {"name": "VID vertebra identification dataset, KeypointGroundTruthNoSacrum (2,116 CTs: VerSe'19/'20, TCIA "
             "CT Colonography, TCIA Pancreas-CT)",
     "url": "https://github.com/ImFusionGmbH/VID-vertebra-identification-dataset",
     "commit": "f19fd3c6965086d932789915a834f96d5c8768af", "licence": "CC BY-SA 4.0",
     "citation": "Bürgin, Prevost, Stollenga. Robust vertebra identification using simultaneous node and edge "
                 "predicting Graph Neural Networks. MICCAI 2023."},
    {"name": "VerSe sample sub-verse004 vertebra mask (T9-L5)", "url": "https://github.com/anjany/verse",
     "commit": "02b292b86021a8873043124982f5f58da9ba1cb8", "licence": "CC BY-SA 4.0",
     "citation": "Sekuboyina et al. VerSe: a vertebrae labelling and segmentation benchmark for multi-detector CT "
                 "images. Medical Image Analysis 73 (2021) 102166."},
    {"name": "TPTBox test sample CT crop around L3 with vertebra and subregion masks",
     "url": "https://github.com/Hendrik-code/TPTBox", "commit": "f43f7fb51a158e9316f50988c2b0b04e01bc35b1",
     "licence": "Apache-2.0", "citation": "TPTBox 1.1.0, TPTBox/tests/sample_ct/"},
]


def _r(x: Any, nd: int = 2) -> Any:
    """Round floats (nested lists too) for a small, stable JSON."""
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_r(v, nd) for v in x]
    return round(float(x), nd)


def read_keypoints(folder: Path) -> list[dict[str, np.ndarray]]:
    """Body centres (LPS mm) by level of every VID ground-truth file under ``folder``."""
    spines = []
    for path in sorted(folder.glob("KeypointGroundTruthNoSacrum/*/*.json")):
        points = json.loads(path.read_text())
        spines.append({p["type"]["spine_level"]: np.asarray(p["coordinates"]["world_space"], dtype=float)
                       for p in points if p["type"].get("keypoint_type") == "body"})
    return spines


def _steps(spine: dict[str, np.ndarray], levels: tuple[str, ...]) -> np.ndarray:
    """(gaps, 3) steps upper minus lower (dz, dy, dx); NaN where either level is missing or the step is odd."""
    out = np.full((len(levels) - 1, 3), np.nan)
    for i, (up, lo) in enumerate(itertools.pairwise(levels)):
        if up in spine and lo in spine:
            d = spine[up] - spine[lo]
            out[i] = (d[2], d[1], d[0])
    dz = out[:, 0]
    if np.any((dz < STEP_RANGE_MM[0]) | (dz > STEP_RANGE_MM[1])):
        return np.full_like(out, np.nan)
    return out


def curve_model(spines: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Mean step vector and principal components of its pairwise-complete covariance (T1 to L5)."""
    data = np.stack([_steps(s, CURVE_LEVELS).ravel() for s in spines])
    ok = ~np.isnan(data)
    mean = np.nanmean(data, axis=0)
    centred = np.where(ok, data - mean, 0.0)
    pairs = ok.T.astype(float) @ ok.astype(float)
    cov = (centred.T @ centred) / np.maximum(pairs - 1, 1)
    vals, vecs = np.linalg.eigh(cov)
    vals, vecs = np.clip(vals[::-1], 0, None), vecs[:, ::-1]
    keep = vecs[:, :N_COMPONENTS]
    explained = vals[:N_COMPONENTS].sum() / vals.sum()
    residual = np.sqrt(np.clip(np.diag(cov) - (keep**2 * vals[:N_COMPONENTS]).sum(axis=1), 0, None))
    return {"levels": list(CURVE_LEVELS), "step_order": ["dz", "dy", "dx"],
            "n_scans_per_gap": [int(n) for n in ok.reshape(len(spines), -1, 3)[:, :, 0].sum(axis=0)],
            "mean": _r(mean.reshape(-1, 3)), "sd": _r(np.sqrt(np.diag(cov)).reshape(-1, 3)),
            "components": _r(keep.T, 3), "component_sd": _r(np.sqrt(vals[:N_COMPONENTS]), 3),
            "residual_sd": _r(residual, 3), "explained": round(float(explained), 4)}


def keypoint_stats(folder: Path) -> dict[str, Any]:
    """Coverage (first and last level shown), level counts, step table, curve model and the L5-L6 step."""
    spines = read_keypoints(folder)
    top: dict[str, int] = {}
    bottom: dict[str, int] = {}
    counts = dict.fromkeys(ORDER, 0)
    for s in spines:
        shown = sorted(s, key=ORDER.index)
        top[shown[0]] = top.get(shown[0], 0) + 1
        bottom[shown[-1]] = bottom.get(shown[-1], 0) + 1
        for lv in shown:
            counts[lv] += 1
    six = np.array([(s["L5"] - s["L6"])[[2, 1, 0]] for s in spines if "L5" in s and "L6" in s])
    four = sum("L4" in s and "L5" not in s and "T12" in s for s in spines)
    table = {}
    for up, lo in itertools.pairwise(CURVE_LEVELS[7:]):  # T8-T9 ... L4-L5
        dz = np.array([s[up][2] - s[lo][2] for s in spines if up in s and lo in s])
        dz = dz[(dz > STEP_RANGE_MM[0]) & (dz < STEP_RANGE_MM[1])]
        table[f"{up}-{lo}"] = {"n": len(dz), "mean": round(float(dz.mean()), 2), "sd": round(float(dz.std()), 2),
                               "p5": round(float(np.percentile(dz, 5)), 2),
                               "p95": round(float(np.percentile(dz, 95)), 2)}
    return {"n_scans": len(spines), "level_counts": {k: v for k, v in counts.items() if v},
            "top_level": dict(sorted(top.items(), key=lambda t: ORDER.index(t[0]))),
            "bottom_level": dict(sorted(bottom.items(), key=lambda t: ORDER.index(t[0]))),
            "scans_ending_at_l4_with_t12": four, "pitch_mm": table,
            "l6_step": {"n": len(six), "mean": _r(six.mean(axis=0)), "sd": _r(six.std(axis=0))},
            "curve": curve_model(spines)}


def _frame(axis: np.ndarray) -> np.ndarray:
    """Rows u (right), v (posterior), w (along the spine, inferior) in the PIR voxel-mm frame of a mask."""
    w = axis / np.linalg.norm(axis)
    v = np.array([1.0, 0.0, 0.0]) - w * w[0]
    v /= np.linalg.norm(v)
    return np.stack([np.cross(v, w), v, w])


def _local(mask: np.ndarray, spacing: np.ndarray, centre: np.ndarray, frame: np.ndarray,
           half: float = 40.0, step: float = 0.5) -> np.ndarray:
    """Resample a boolean PIR mask on a local (w, v, u) grid round ``centre`` (mm) at ``step`` mm."""
    t = np.arange(-half, half + step / 2, step)
    ww, vv, uu = np.meshgrid(t, t, t, indexing="ij")
    pts = centre[:, None] + frame.T @ np.stack([uu.ravel(), vv.ravel(), ww.ravel()])
    vox = pts / spacing[:, None]
    out = ndimage.map_coordinates(mask.astype(np.float32), vox, order=1, mode="constant")
    return (out.reshape(ww.shape) > 0.5)


def isolate_body(local: np.ndarray, step: float = 0.5) -> np.ndarray:
    """The vertebral body of a whole-vertebra mask on a local (w, v, u) grid: per axial slice whose midline starts
    near the vertebra's front, the rows from the front back to the first gap in the midline (the canal), the last
    40 % of them no wider than the rest."""
    body = np.zeros_like(local)
    centre = local.shape[2] // 2
    band: np.ndarray = np.asarray(local[:, :, centre - round(3 / step): centre + round(3 / step) + 1].any(axis=2))
    front = int(np.flatnonzero(local.any(axis=(0, 2)))[0])
    for k in range(local.shape[0]):
        rows = np.flatnonzero(band[k])
        if rows.size == 0 or rows[0] > front + round(12 / step):
            continue
        gaps = np.flatnonzero(~band[k, rows[0]:])
        wall = rows[0] + (int(gaps[0]) if gaps.size else band.shape[1])
        body[k, :wall] = local[k, :wall]
        split = rows[0] + round(0.6 * (wall - rows[0]))
        cols = np.flatnonzero(local[k, rows[0]:split].any(axis=0))
        if cols.size:  # the pedicles' roots behind the body: no wider than the body in front of them
            body[k, split:wall, : cols[0]] = False
            body[k, split:wall, cols[-1] + 1:] = False
    labels, n = ndimage.label(body)
    if n > 1:
        sizes = ndimage.sum(body, labels, range(1, n + 1))
        body = labels == 1 + int(np.argmax(sizes))
    return body


def body_measures(body: np.ndarray, step: float = 0.5) -> dict[str, Any]:
    """Width, depth, anterior / middle / posterior heights and the mid-height outline of a local body mask."""
    idx = np.argwhere(body)
    c = idx.mean(axis=0)
    kw = round(c[0])
    mid = body[kw]
    cols = np.flatnonzero(mid.any(axis=0))
    rows = np.flatnonzero(mid.any(axis=1))
    width, depth = (cols[-1] - cols[0] + 1) * step, (rows[-1] - rows[0] + 1) * step
    heights = body.sum(axis=0) * step  # (v, u): extent along the spine's axis
    ku = round(c[2])
    band = heights[:, ku - 6: ku + 7].mean(axis=1)
    v0, v1 = rows[0], rows[-1]
    n = v1 - v0 + 1
    ant, midh, post = (float(band[v0 + round(f * n) - 3: v0 + round(f * n) + 4].mean()) for f in (0.12, 0.5, 0.88))
    cy, cx = (rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2
    outline = []
    for theta in np.linspace(0, 2 * np.pi, ANGLES, endpoint=False):
        dv, du = np.sin(theta), np.cos(theta)
        ell = 1.0 / np.sqrt((du / (width / 2 / step)) ** 2 + (dv / (depth / 2 / step)) ** 2)
        r = 0.0
        for s in np.arange(0, 1.6 * ell, 0.25):
            y, x = round(cy + s * dv), round(cx + s * du)
            if 0 <= y < mid.shape[0] and 0 <= x < mid.shape[1] and mid[y, x]:
                r = s
        outline.append(r / ell)
    return {"width": width, "depth": depth, "height_ant": ant, "height_mid": midh, "height_post": post,
            "outline": outline}


def _nifti(path: Path) -> Any:
    import nibabel as nib

    return nib.load(path)


def verse_stats(folder: Path) -> dict[str, Any]:
    """Per level T9-L5 of verse004: body measures in the spine's own frame and the body-to-pitch ratio."""
    import nibabel as nib

    img: Any = nib.load(folder / "sub-verse004_seg-vert_msk.nii.gz")
    mask = np.asanyarray(img.dataobj).astype(np.int16)
    spacing = np.asarray(img.header.get_zooms(), dtype=float)
    ctd = json.loads((folder / "sub-verse004_seg-subreg_ctd.json").read_text())[1:]
    centres = {VERSE_LABELS[c["label"]]: np.array([c["X"], c["Y"], c["Z"]]) * spacing for c in ctd}
    levels = list(VERSE_LABELS.values())
    out: dict[str, Any] = {}
    for i, lv in enumerate(levels):
        up, lo = centres[levels[max(0, i - 1)]], centres[levels[min(len(levels) - 1, i + 1)]]
        frame = _frame(lo - up)
        label = next(k for k, v in VERSE_LABELS.items() if v == lv)
        local = _local(mask == label, spacing, centres[lv], frame)
        body = isolate_body(local)
        m = body_measures(body)
        gaps = [float(np.linalg.norm(centres[lv] - centres[n])) for n in levels[max(0, i - 1): i + 2] if n != lv]
        m["pitch"] = float(np.mean(gaps))
        m["height_to_pitch"] = m["height_mid"] / m["pitch"]
        out[lv] = m
    crushed = [lv for i, lv in enumerate(levels) if 0 < i < len(levels) - 1
               and out[lv]["height_to_pitch"] < 0.6 * (out[levels[i - 1]]["height_to_pitch"]
                                                      + out[levels[i + 1]]["height_to_pitch"]) / 2]
    for lv in crushed:  # a fractured body of the real spine: its neighbours' mean instead
        i = levels.index(lv)
        up, lo = out[levels[i - 1]], out[levels[i + 1]]
        out[lv] = {k: (np.add(up[k], lo[k]) / 2 if k != "pitch" else out[lv][k]) for k in up}
    keys = ("width", "depth", "height_ant", "height_mid", "height_post", "pitch", "height_to_pitch")
    return {"levels": levels, "interpolated_from_neighbours": crushed,
            **{k: [_r(out[lv][k], 3 if k == "height_to_pitch" else 1) for lv in levels]
                                 for k in keys},
            "outline": [_r(out[lv]["outline"], 3) for lv in levels]}


def _lag_corr(field: np.ndarray, inside: np.ndarray, lag: int) -> list[float]:
    """Autocorrelation of ``field`` (its mean inside removed) at ``lag`` voxels along each axis, inside only."""
    f = np.where(inside, field - field[inside].mean(), 0.0)
    var = float((f[inside] ** 2).mean())
    out = []
    for axis in range(3):
        n = f.shape[axis]
        a, b = np.take(f, range(lag, n), axis=axis), np.take(f, range(n - lag), axis=axis)
        both = np.take(inside, range(lag, n), axis=axis) & np.take(inside, range(n - lag), axis=axis)
        out.append(round(float((a * b)[both].mean()) / var, 3))
    return out


def tptbox_stats(folder: Path) -> dict[str, Any]:
    """L3 of the TPTBox crop: body measures, trabecular HU (mean, spread, texture without the noise, its lag
    correlations), the noise (soft tissue minus its local median: SD and lag-1 correlation), the cortical rim."""
    import nibabel as nib

    ct_img: Any = nib.load(folder / "sub-ct_label-22_ct.nii.gz")
    ct = np.asanyarray(ct_img.dataobj).astype(np.float32)
    sub = np.asanyarray(_nifti(folder / "sub-ct_seg-subreg_label-22_msk.nii.gz").dataobj)
    vert = np.asanyarray(_nifti(folder / "sub-ct_seg-vert_label-22_msk.nii.gz").dataobj)
    step = float(ct_img.header.get_zooms()[0])
    corpus = (vert == 22) & np.isin(sub, (49, 50))
    spacing = np.full(3, step)
    centre = np.argwhere(corpus).mean(axis=0) * step
    m = body_measures(_local(corpus, spacing, centre, _frame(np.array([0.0, 1.0, 0.0]))))
    core = ndimage.binary_erosion((vert == 22) & (sub == 50), iterations=2)
    rim = (vert == 22) & (sub == 49)
    med = ndimage.median_filter(ct, 5)
    soft = ndimage.binary_erosion((med > -10) & (med < 90) & (vert == 0), iterations=2)
    resid = ct - med
    noise_sd = float(resid[soft].std())
    texture_sd = float(np.sqrt(max(0.0, float(ct[core].var()) - noise_sd**2)))
    return {"axes": "AP, SI, LR", "voxel_mm": step, "width": _r(m["width"], 1), "depth": _r(m["depth"], 1),
            "height_mid": _r(m["height_mid"], 1), "trabecular_hu_mean": _r(ct[core].mean(), 1),
            "trabecular_hu_sd": _r(ct[core].std(), 1), "trabecular_texture_sd": _r(texture_sd, 1),
            "trabecular_lag2_corr": _lag_corr(ct, core, 2), "noise_sd": _r(noise_sd, 1),
            "noise_lag1_corr": _lag_corr(resid, soft, 1), "soft_tissue_hu": _r(np.median(ct[soft]), 1),
            "cortical_rim_hu": _r(np.median(ct[rim]), 1)}


def derive(real: Path) -> dict[str, Any]:
    """Every derived statistic of family B from the real folder."""
    return {"about": "Derived statistics of phantom family B (data/synthetic/family_b/); recompute with "
                     "python -m data.synthetic.family_b.derive. Summary numbers only: no real file is copied.",
            "licence": "CC BY-SA 4.0 (derived from VID and VerSe data); TPTBox-derived numbers Apache-2.0",
            "sources": SOURCES, "keypoints": keypoint_stats(real / "vid-keypoints"),
            "verse004": verse_stats(real / "verse004-masks"), "tptbox_l3": tptbox_stats(real / "tptbox-l3-crop")}


def _dump(stats: dict[str, Any]) -> str:
    """Compact JSON with one line per top-level entry of each section (small, and readable in a diff)."""
    lines = []
    for key, value in stats.items():
        if isinstance(value, dict):
            inner = ",\n  ".join(f"{json.dumps(k)}: {json.dumps(v, separators=(',', ':'), ensure_ascii=False)}"
                                 for k, v in value.items())
            lines.append(f"{json.dumps(key)}: {{\n  {inner}\n}}")
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: recompute and write the JSON (skip cleanly without the real folder)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=REAL)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not (args.real / "vid-keypoints").is_dir():
        print(f"skipped: no real spine material at {args.real}")
        return 0
    stats = derive(args.real)
    args.out.write_text(_dump(stats))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
