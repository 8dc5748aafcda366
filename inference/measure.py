"""Transparent per-vertebra measurements: trabecular HU and body heights from the image alone.

The learned heads of the model were trained on synthetic phantoms only; this module measures the same
quantities with a short, inspectable method (in the spirit of Comp2Comp and TotalSegmentator) so that both
can be reported side by side. Only numpy and ``scipy.ndimage`` are used.

Method, per level (given the level name and the patient z of its centre, e.g. from the model):

1. **Column.** The in-plane position of the vertebral column comes from :func:`inference.crop.spine_center`
   (or is given). It lies between the body and the spinal canal.
2. **Body in-plane.** On an axial slab through the level centre, the antero-posterior (AP) profile through
   the column is followed posteriorly from the thickest bone near the column to the spinal canal (the
   darkest point just behind that bone). The vertebral body is the bony block anterior to the canal: the
   run of voxels above a threshold halfway between soft tissue (or the canal) and the bone, grown from the
   thickest bone. Its left-right (LR) extent is found the same way on a profile through the body centre.
3. **Endplates.** On the mid-sagittal plane of the body, z profiles are taken in the middle of the
   anterior, middle and posterior thirds of the AP depth. On the middle profile each endplate is found at a
   disc: a dark gap between two bright endplates, searched between the level centre and the neighbouring
   level centre (the other levels given bound the search). On the anterior and posterior profiles the
   endplate is the steepest step within ``REFINE_MM`` of the middle one. Edges are located to a fraction of
   a slice; the height is the distance between the two endplates.
4. **Trabecular HU.** The median HU in an elliptical ROI centred in the body, kept away from the cortex
   (semi-axes at most 60 % of the body's half extents and at least 4 mm inside its edges), over the slices in
   the middle 40 % of the body height.

``height_ratio`` is ``min(anterior, middle, posterior) / max(anterior, middle, posterior)`` of the body's own
heights (TotalSegmentator's ``height_difference`` is ``1 - height_ratio``); the Genant grade follows from
the loss ``1 - height_ratio``. Because the ratio compares a body with itself, a uniform (crush) collapse
with three equal heights is not seen by it; that needs a comparison with the neighbouring levels.

Status: the trabecular HU agrees with the phantom truth (within 8 HU) and with TotalSegmentator on the
reference CT (within 17 HU, ours lower: a trabecular ROI against a whole-body median). The heights are less
reliable: on 3 mm slices they come out 3-6 mm taller than TotalSegmentator's, the endplate search fails on
strongly tilted discs (L5/S1) and on some phantom levels, and a wrong disc is sometimes taken (a height
running into the neighbour). Treat ``height_ratio`` as indicative, next to the learned value.

When a body cannot be delineated, the measurement carries ``quality`` != ``"ok"`` with a reason and the
values are ``None``: no number is ever made up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from inference.crop import spine_center
from inference.findings import genant_grade
from inference.spec import PreprocessSpec
from inference.study import Study

LEVEL_SPACING_MM = 35.0
"""Typical distance between neighbouring lumbar level centres, for a level given without neighbours."""
LONE_SIDE = 1.2
"""Distance to a missing neighbour relative to the other one (end levels: S1 and T10 are not modelled)."""
GAP_RANGE_MM = (18.0, 50.0)
"""Bounds on the distance to a neighbouring level centre used for the endplate search."""
DISC_WINDOW = (0.15, 0.05)
"""The endplate is searched between 5 % and 85 % of the way from the level centre to its neighbour."""
DISC_REACH_MM = 12.0
"""A disc's endplates lie within this distance on either side of its darkest point."""
MIN_EDGE_HU = 10.0
"""Least HU change per slice for an endplate edge."""
REFINE_MM = 7.5
"""How far the anterior or posterior endplate may lie from the middle one."""
DEPTH_RANGE_MM = (12.0, 60.0)
"""Plausible AP depth of a vertebral body (T11-L5, with partial volume)."""
WIDTH_RANGE_MM = (15.0, 80.0)
"""Plausible LR width of a vertebral body."""
HEIGHT_RANGE_MM = (6.0, 50.0)
"""Plausible height of a vertebral body, fractured ones included."""
ROI_FRACTION = 0.6
"""Semi-axes of the trabecular ROI as a fraction of the body's half extents."""
CORTEX_MARGIN_MM = 4.0
"""Least distance between the ROI edge and the body edge."""
MIN_ROI_VOXELS = 6
SOFT_TISSUE_HU = 40.0
"""Typical HU of the muscle and fat-streaked tissue around the body (the darkest reference for the body edge)."""


@dataclass(frozen=True)
class Measurement:
    """One level measured from the image. Values are ``None`` whenever ``quality`` is not ``"ok"``."""

    level: str
    z_mm: float
    """The level centre given (patient LPS z, mm)."""
    quality: str
    """``"ok"`` or a reason code: outside_volume, body_not_found, endplates_not_found, roi_too_small."""
    reason: str = ""
    """Human-readable detail when ``quality`` is not ``"ok"``."""
    trabecular_hu: float | None = None
    """Median HU in the elliptical trabecular ROI at mid-height."""
    height_anterior_mm: float | None = None
    height_middle_mm: float | None = None
    height_posterior_mm: float | None = None
    height_ratio: float | None = None
    """min / max of the three heights (1 = no deformity)."""
    genant_grade: int | None = None
    """Genant grade of the loss ``1 - height_ratio``."""
    measured_z_mm: float | None = None
    """Patient z of the body centre halfway between the endplates found."""
    roi_voxels: int | None = None

    def as_dict(self) -> dict[str, object]:
        """Result-JSON form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class _Body:
    """In-plane box of a vertebral body in voxel coordinates (fractional) on one axial slab."""

    y_ant: float
    y_post: float
    x_right: float
    x_left: float
    threshold: float

    @property
    def yc(self) -> float:
        """AP centre (row)."""
        return (self.y_ant + self.y_post) / 2.0

    @property
    def xc(self) -> float:
        """LR centre (column)."""
        return (self.x_right + self.x_left) / 2.0


class _FailedError(Exception):
    """A step could not delineate the body; carries the reason code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def measure_levels(study: Study, levels: list[tuple[str, float]],
                   centre_rc: tuple[int, int] | None = None) -> list[Measurement]:
    """Measure trabecular HU and anterior/middle/posterior heights of each ``(level, z_mm)`` given.

    ``z_mm`` is the patient (LPS) z of the level centre, typically the model's ``z_mm``; ``centre_rc`` is the
    in-plane (row, column) of the vertebral column, found with :func:`spine_center` when omitted. The
    centres of the neighbouring levels in ``levels`` bound the search for the endplates (a lone level uses
    ``LEVEL_SPACING_MM``). Levels that cannot be delineated come back with ``quality`` set to a reason code
    and no values.
    """
    if centre_rc is None:
        centre_rc = spine_center(study.volume, study.spacing_mm, PreprocessSpec())
    gaps = neighbour_gaps([float(z) for _, z in levels])
    out = []
    for (level, z_mm), gap in zip(levels, gaps, strict=True):
        try:
            out.append(_measure_one(study, level, float(z_mm), centre_rc, gap))
        except _FailedError as exc:
            out.append(Measurement(level=level, z_mm=float(z_mm), quality=exc.code, reason=exc.detail))
    return out


def neighbour_gaps(zs: list[float]) -> list[tuple[float, float]]:
    """Distance (mm) from each level centre to the next centre below and above it along z.

    A missing neighbour takes ``LONE_SIDE`` times the other side's distance, or ``LEVEL_SPACING_MM`` for a
    lone level; distances are kept within ``GAP_RANGE_MM`` so that a missed level does not open the search to two discs.
    """
    order = sorted(zs)
    out = []
    for z in zs:
        below = [z - o for o in order if o < z]
        above = [o - z for o in order if o > z]
        lo = min(below) if below else None
        hi = min(above) if above else None
        lo = lo if lo is not None else (LONE_SIDE * hi if hi is not None else LEVEL_SPACING_MM)
        hi = hi if hi is not None else LONE_SIDE * lo
        out.append(tuple(float(np.clip(g, *GAP_RANGE_MM)) for g in (lo, hi)))
    return [(g[0], g[1]) for g in out]


def slice_index(study: Study, z_mm: float, centre_rc: tuple[int, int]) -> float:
    """Fractional slice index (axis 0) at patient z ``z_mm`` on the column through ``centre_rc``."""
    a = study.affine
    row, col = centre_rc
    if abs(a[2, 0]) < 1e-6:
        raise _FailedError("outside_volume", "axis 0 of the volume does not run along patient z")
    return float((z_mm - a[2, 3] - a[2, 1] * row - a[2, 2] * col) / a[2, 0])


def _measure_one(study: Study, level: str, z_mm: float, centre_rc: tuple[int, int],
                 gap_mm: tuple[float, float]) -> Measurement:
    """Measure one level; raises :class:`_FailedError` when the body cannot be delineated."""
    vol, sp = study.volume, study.spacing_mm
    k0 = slice_index(study, z_mm, centre_rc)
    if not 0.0 <= k0 <= vol.shape[0] - 1:
        raise _FailedError("outside_volume", f"{level}: z {z_mm:.1f} mm is outside the scan")
    dk = abs(study.affine[2, 0])  # mm of patient z per slice
    windows = ((k0 - (1 - DISC_WINDOW[0]) * gap_mm[0] / dk, k0 - DISC_WINDOW[1] * gap_mm[0] / dk),
               (k0 + DISC_WINDOW[1] * gap_mm[1] / dk, k0 + (1 - DISC_WINDOW[0]) * gap_mm[1] / dk))
    if study.affine[2, 0] < 0:  # axis 0 runs against patient z: the slice below has the higher index
        windows = ((2 * k0 - windows[1][1], 2 * k0 - windows[1][0]), (2 * k0 - windows[0][1], 2 * k0 - windows[0][0]))
    body = find_body(axial_slab(vol, sp, k0), sp, centre_rc)
    heights, edges = body_heights(vol, sp, body, windows)
    hu, n_roi = trabecular_hu(vol, sp, body, edges)
    ratio = min(heights) / max(heights)
    k_mid = (edges[0] + edges[1]) / 2.0
    a = study.affine
    measured_z = float(a[2, 0] * k_mid + a[2, 1] * body.yc + a[2, 2] * body.xc + a[2, 3])
    return Measurement(
        level=level, z_mm=z_mm, quality="ok", trabecular_hu=round(hu, 1),
        height_anterior_mm=round(heights[0], 1), height_middle_mm=round(heights[1], 1),
        height_posterior_mm=round(heights[2], 1), height_ratio=round(ratio, 3),
        genant_grade=genant_grade(ratio), measured_z_mm=round(measured_z, 2), roi_voxels=n_roi,
    )


def axial_slab(vol: np.ndarray, sp: tuple[float, float, float], k0: float, half_mm: float = 4.0) -> np.ndarray:
    """Mean of the slices within ``half_mm`` of slice ``k0`` (at least the nearest one), lightly smoothed."""
    half = max(0, int(half_mm / sp[0]))
    k = round(k0)
    sub = vol[max(0, k - half): min(vol.shape[0], k + half + 1)].astype(np.float64)
    sigma = (max(0.0, 1.0 / sp[1]), max(0.0, 1.0 / sp[2]))
    return np.asarray(ndimage.gaussian_filter(sub.mean(axis=0), sigma))


def _band(img: np.ndarray, centre: float, half: float, axis: int) -> np.ndarray:
    """Mean of ``img`` over the rows (axis 0) or columns (axis 1) within ``half`` voxels of ``centre``."""
    n = img.shape[axis]
    lo = max(0, int(np.floor(centre - half + 0.5)))
    hi = min(n, int(np.floor(centre + half + 0.5)) + 1)
    if hi <= lo:
        lo, hi = max(0, min(n - 1, round(centre))), max(0, min(n - 1, round(centre))) + 1
    return np.asarray(img[lo:hi].mean(axis=0) if axis == 0 else img[:, lo:hi].mean(axis=1))


def _run_end(profile: np.ndarray, start: int, step: int, threshold: float, gap: int = 0) -> float:
    """Fractional index where ``profile`` falls below ``threshold`` walking from ``start`` by ``step``.

    Dips below the threshold of at most ``gap`` samples (noise in trabecular bone) do not end the run.
    """
    i = start
    while True:
        ahead = [i + step * j for j in range(1, gap + 2) if 0 <= i + step * j < profile.size]
        nxt = next((j for j in ahead if profile[j] >= threshold), None)
        if nxt is None:
            break
        i = nxt
    if not 0 <= i + step < profile.size:
        return float(i)
    a, b = profile[i], profile[i + step]
    frac = (a - threshold) / (a - b) if a != b else 0.5
    return float(i + step * frac)


def _canal_row(ap: np.ndarray, dy: float, row: int) -> int:
    """Row of the spinal canal on the AP profile ``ap`` (rows run anterior -> posterior) near ``row``.

    From the thickest bone within 15 mm anterior to ``row`` (the column lies between the body and the
    canal), walk posteriorly while the profile stays bony (above halfway between that bone and soft
    tissue); the canal is the darkest point (profile smoothed over ~6 mm) within 15 mm behind the end of that run.
    """
    smooth = ndimage.uniform_filter1d(ap, size=max(1, round(6.0 / dy)))
    core = ndimage.median_filter(ap, size=max(3, 2 * round(3.5 / dy) + 1), mode="nearest")
    lo, hi = max(0, row - round(15.0 / dy)), min(ap.size, row + 1)
    start = lo + int(np.argmax(core[lo:hi]))
    level = (float(core[start]) + SOFT_TISSUE_HU) / 2.0
    end = round(_run_end(ap, start, +1, level, gap=1))
    stop = min(ap.size, end + round(15.0 / dy) + 1)
    if stop <= end:
        raise _FailedError("body_not_found", "no spinal canal behind the vertebral column")
    return end + int(np.argmin(smooth[end:stop]))


def find_body(slab: np.ndarray, sp: tuple[float, float, float], centre_rc: tuple[int, int]) -> _Body:
    """Delineate the vertebral body on an axial slab: the bony block just anterior to the spinal canal."""
    row, col = centre_rc
    ap = _band(slab, col, 4.0 / sp[2], axis=1)  # AP profile through the column
    canal = _canal_row(ap, sp[1], row)
    front = ap[max(0, canal - round(35.0 / sp[1])): canal]
    if front.size < 3:
        raise _FailedError("body_not_found", "no room anterior to the spinal canal")
    bone = float(np.median(front))
    threshold = (max(float(ap[canal]), SOFT_TISSUE_HU) + bone) / 2.0
    lo = max(0, canal - round(30.0 / sp[1]))
    core = ndimage.median_filter(ap, size=max(3, 2 * round(3.5 / sp[1]) + 1), mode="nearest")
    start = lo + int(np.argmax(core[lo:canal]))  # thick bone (not a thin cortex or lamina) anterior to the canal
    if bone - float(ap[canal]) < 40.0 or core[start] < threshold:
        raise _FailedError("body_not_found", "no bone anterior to the spinal canal")
    y_post = _run_end(ap, start, +1, threshold)
    y_ant = _run_end(ap, start, -1, threshold, gap=1)
    depth = (y_post - y_ant) * sp[1]
    if not DEPTH_RANGE_MM[0] <= depth <= DEPTH_RANGE_MM[1]:
        raise _FailedError("body_not_found", f"body depth {depth:.0f} mm is implausible")
    yc = (y_ant + y_post) / 2.0
    lr = _band(slab, yc, (y_post - y_ant) / 6.0, axis=0)
    near = round(10.0 / sp[2])
    c_lo, c_hi = max(0, col - near), min(lr.size, col + near + 1)
    core_lr = ndimage.median_filter(lr, size=max(3, 2 * round(3.5 / sp[2]) + 1), mode="nearest")
    x0 = c_lo + int(np.argmax(core_lr[c_lo:c_hi]))
    x_right = _run_end(lr, x0, -1, threshold, gap=1)
    x_left = _run_end(lr, x0, +1, threshold, gap=1)
    width = (x_left - x_right) * sp[2]
    if not WIDTH_RANGE_MM[0] <= width <= WIDTH_RANGE_MM[1]:
        raise _FailedError("body_not_found", f"body width {width:.0f} mm is implausible")
    return _Body(y_ant=y_ant, y_post=y_post, x_right=x_right, x_left=x_left, threshold=threshold)


def body_heights(vol: np.ndarray, sp: tuple[float, float, float], body: _Body,
                 windows: tuple[tuple[float, float], tuple[float, float]]
                 ) -> tuple[tuple[float, float, float], tuple[float, float]]:
    """Anterior, middle and posterior heights (mm) on the mid-sagittal plane, and the mean endplate slices.

    z profiles are taken in the middle of each third of the AP depth (averaged over a sixth of the depth
    and 4 mm either side of the mid-sagittal plane). On the middle profile each endplate is the disc ->
    endplate step (see :func:`disc_edge`) within ``windows`` (slice indices: ``windows[0]`` below the level
    centre, ``windows[1]`` above). On the anterior and posterior profiles it is the steepest step within
    ``REFINE_MM`` of the middle one, which follows wedge-shaped bodies and moderately tilted endplates.
    """
    depth = body.y_post - body.y_ant
    sag = _band(np.moveaxis(vol, 2, 0), body.xc, max(0.5, 4.0 / sp[2]), axis=0)  # (Z, Y) mid-sagittal
    profiles = [_band(sag.T, body.y_ant + f * depth, depth / 12.0, axis=0) for f in (1 / 6, 1 / 2, 5 / 6)]
    smooth = [ndimage.gaussian_filter1d(p.astype(np.float64), sigma=max(0.3, 1.0 / sp[0])) for p in profiles]
    mid_low = disc_edge(smooth[1], windows[0], +1, sp[0])
    mid_high = disc_edge(smooth[1], windows[1], -1, sp[0])
    r = REFINE_MM / sp[0]
    lows, highs = [], []
    for i, q in enumerate(smooth):
        if i == 1:
            lows.append(mid_low)
            highs.append(mid_high)
            continue
        grad = np.gradient(q)
        lows.append(_steepest(grad, (mid_low - r, mid_low + r)))
        highs.append(_steepest(-grad, (mid_high - r, mid_high + r)))
    heights = [(h - lo) * sp[0] for lo, h in zip(lows, highs, strict=True)]
    for h in heights:
        if not HEIGHT_RANGE_MM[0] <= h <= HEIGHT_RANGE_MM[1]:
            raise _FailedError("endplates_not_found", f"body height {h:.0f} mm is implausible")
    return (heights[0], heights[1], heights[2]), (float(np.mean(lows)), float(np.mean(highs)))


def disc_edge(q: np.ndarray, window: tuple[float, float], inward: int, dz: float) -> float:
    """Fractional slice index of the edge between a disc and the body on the z profile ``q``.

    ``inward`` = +1 when the body lies at higher indices than the disc. A disc is a dark gap between two
    bright endplates close together: candidates are the local minima within ``window`` (at its outer end:
    any sample darker than the next one towards the body), scored by the smaller of the rises to the
    brightest sample within ``DISC_REACH_MM`` on either side. The best one's edge is where the profile crosses
    halfway between the disc and the endplate on the body side. A dark spot inside a body (far from both
    endplates) scores low.
    """
    lo = max(1, int(np.ceil(window[0])))
    hi = min(q.size - 2, int(np.floor(window[1])))
    reach = max(2, int(np.ceil(DISC_REACH_MM / dz)))
    outer_end = lo if inward > 0 else hi
    best, best_score, best_peak = -1, MIN_EDGE_HU, -1
    for i in range(lo, hi + 1):
        if q[i] > q[i + inward] or (i != outer_end and q[i] > q[i - inward]):
            continue
        ahead = [i + inward * j for j in range(1, reach + 1) if 0 <= i + inward * j < q.size]
        behind = [i - inward * j for j in range(1, reach + 1) if 0 <= i - inward * j < q.size]
        if not ahead or not behind:
            continue
        peak = max(ahead, key=lambda j: float(q[j]))
        rise_in, rise_out = float(q[peak] - q[i]), max(float(q[j] - q[i]) for j in behind)
        score = rise_in if rise_out >= 0.3 * rise_in else 0.3 * rise_in
        if score > best_score:
            best, best_score, best_peak = i, score, peak
    if best < 0:
        raise _FailedError("endplates_not_found", "no disc between the level and its neighbour")
    return _run_end(-q, best, inward, -(float(q[best]) + float(q[best_peak])) / 2.0)


def _steepest(score: np.ndarray, window: tuple[float, float]) -> float:
    """Sub-sample position of the maximum of ``score`` between slice indices ``window``.

    The maximum must be a clear edge (at least ``MIN_EDGE_HU`` per slice); it is refined by a parabola.
    """
    lo = max(1, int(np.ceil(window[0])))
    hi = min(score.size - 2, int(np.floor(window[1])))
    if hi < lo:
        raise _FailedError("endplates_not_found", "the body reaches the end of the scan")
    i = lo + int(np.argmax(score[lo: hi + 1]))
    if score[i] < MIN_EDGE_HU:
        raise _FailedError("endplates_not_found", "no endplate edge near the middle one")
    a, b, c = score[i - 1], score[i], score[i + 1]
    den = a - 2 * b + c
    return float(i + (0.5 * (a - c) / den if den < 0 else 0.0))


def trabecular_hu(vol: np.ndarray, sp: tuple[float, float, float], body: _Body,
                  edges: tuple[float, float]) -> tuple[float, int]:
    """Median HU and voxel count of the elliptical trabecular ROI in the middle 40 % of the body height."""
    half_y = (body.y_post - body.y_ant) / 2.0
    half_x = (body.x_left - body.x_right) / 2.0
    ry = min(ROI_FRACTION * half_y, half_y - CORTEX_MARGIN_MM / sp[1])
    rx = min(ROI_FRACTION * half_x, half_x - CORTEX_MARGIN_MM / sp[2])
    low, high = edges
    mid, half_z = (low + high) / 2.0, 0.2 * (high - low)
    ks = np.arange(max(0, int(np.ceil(mid - half_z))), min(vol.shape[0], int(np.floor(mid + half_z)) + 1))
    if ry <= 0 or rx <= 0 or ks.size == 0:
        raise _FailedError("roi_too_small", "the body is too small for a trabecular ROI")
    yy, xx = np.mgrid[0:vol.shape[1], 0:vol.shape[2]]
    ellipse = ((yy - body.yc) / ry) ** 2 + ((xx - body.xc) / rx) ** 2 <= 1.0
    values = vol[ks][:, ellipse]
    if values.size < MIN_ROI_VOXELS:
        raise _FailedError("roi_too_small", f"only {values.size} voxels in the trabecular ROI")
    return float(np.median(values)), int(values.size)
