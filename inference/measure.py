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
3. **Endplates, in the body's own frame.** The body's sagittal tilt is taken from the direction of the spine
   through the neighbouring bodies' centres (extrapolated for the end levels). A body leaning less than
   ``TILTED_DEG`` is measured on vertical z profiles of the native slices; a more tilted one (L5, S1 in
   lordosis) on a mid-sagittal patch resampled along its own axis (``PATCH_MM`` pixels), the tilt refined
   within ``TILT_SEARCH_DEG`` to where its endplates are sharpest. Profiles are taken at 20 %, 50 % and 80 %
   of the AP depth (``PROFILE_AT``: clear of the cortical walls and their partial volume). On the middle
   profile each endplate is found at a disc: a dark gap between two bright endplates, searched between the
   level centre and the neighbouring level centre (the other levels given bound the search), on the disc's
   side of the centre. On the anterior and posterior profiles the
   endplate is the steepest step within ``REFINE_MM`` of the middle one. Edges are located to a fraction of
   a pixel; the height is the distance between the two endplates.
4. **Trabecular HU.** The median HU in an elliptical ROI centred in the body, kept away from the cortex
   (semi-axes at most 60 % of the body's half extents and at least 4 mm inside its edges), over the slices in
   the middle 40 % of the body height.

``height_ratio`` is ``min(anterior, middle, posterior) / max(anterior, middle, posterior)`` of the body's own
heights (TotalSegmentator's ``height_difference`` is ``1 - height_ratio``); the Genant grade follows from
the loss ``1 - height_ratio``. Because the ratio compares a body with itself, a uniform (crush) collapse
with three equal heights is not seen by it; that needs a comparison with the neighbouring levels.

Status: the trabecular HU agrees with the phantom truth (within 10 HU) and with TotalSegmentator on the
reference CT (within 25 HU, ours lower: a trabecular ROI against a whole-body median). The heights are less
reliable. On the reference CT, at the levels ``vfrisk predict`` finds, the ratio is within 0.1 of
TotalSegmentator's on L1, L3, L4 and L5 but not on L2 (3 mm slices hide its endplate concavity). On phantoms
(``python -m training.measure_check --cohort DIR``, 40 held-out studies at matrix 160, 2-2.8 mm pixels):
ratio MAE 0.066, 5 % of intact bodies below 0.8 (in the case inspected, the phantom's lamina band in front
of the canal merged with the body), and wedge fractures under-read (ratio MAE 0.16 on fractured levels). Treat
``height_ratio`` as indicative, next to the learned value.

When a body cannot be delineated, the measurement carries ``quality`` != ``"ok"`` with a reason and the
values are ``None``: no number is ever made up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from inference.crop import spine_center, spine_track
from inference.spec import PreprocessSpec
from inference.study import Study
from inference.thresholds import LEVEL_PITCH_MM, genant_grade

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
MIDDLE_EXCESS_MM = 4.0
"""Most the middle height may exceed both the anterior and the posterior one: a body's middle is never taller
than both its edges (its endplates are flat or concave, and a fracture lowers the middle or one edge), so a taller
middle means an endplate was missed on the middle profile (a neighbour's endplate taken for it), and a height
ratio from it would call an intact body deformed."""
ROI_FRACTION = 0.6
"""Semi-axes of the trabecular ROI as a fraction of the body's half extents."""
CORTEX_MARGIN_MM = 4.0
PROFILE_AT = (0.2, 0.5, 0.8)
"""Where the anterior, middle and posterior height profiles run, as fractions of the body's AP depth."""
"""Least distance between the ROI edge and the body edge."""
MIN_ROI_VOXELS = 6
PATCH_MM = 0.5
"""Pixel size of the sagittal patch on which heights are measured (each body in its own tilted frame)."""
PATCH_HALF_MM = (55.0, 35.0)
"""Half extent of that patch along the body's axis (reaching the neighbouring discs) and across it."""
TILTED_DEG = 15.0
"""Bodies leaning more than this (from the neighbouring bodies) are measured in their own tilted frame;
below it the vertical z profiles lose less than 4 % of a height and keep the native slice sampling."""
MAX_TILT_DEG = 50.0
"""Largest sagittal tilt considered (S1 in a steep lordosis)."""
OFF_LINE_MM = 20.0
"""Farthest a located body's front-to-back centre may lie from the line through its two nearest located
neighbours (:func:`off_line`): real spines bend by a few millimetres a level (the steepest lordosis about 10)."""
TILT_SEARCH_DEG = 20.0
"""How far a body's tilt may differ from the direction of the spine through its neighbours."""
SOFT_TISSUE_HU = 40.0
"""Typical HU of the muscle and fat-streaked tissue around the body (the darkest reference for the body edge)."""


@dataclass(frozen=True)
class BodyRegion:
    """Where the measurement delineated a body, in canonical voxel indices (fractional, bounds inclusive): the
    slices between its two endplates (the mean of the anterior, middle and posterior endplate positions) and its
    antero-posterior and left-right extent on the axial slab at the level centre. The body itself is not a box:
    its cross-section is roughly elliptical, and a tilted body (measured in its own frame) leans within these
    slices."""

    slices: tuple[float, float]
    """Lower and upper endplate (axis 0, inferior to superior)."""
    rows: tuple[float, float]
    """Anterior and posterior edge (axis 1)."""
    columns: tuple[float, float]
    """Right and left edge (axis 2)."""

    def as_dict(self) -> dict[str, list[float]]:
        """JSON form (rounded to 0.01 voxel)."""
        return {k: [round(v, 2) for v in getattr(self, k)] for k in ("slices", "rows", "columns")}


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
    tilt_deg: float | None = None
    """Sagittal tilt of the frame the heights were measured in (from the neighbouring bodies)."""
    region: BodyRegion | None = None
    """Where the body was delineated (the DICOM SEG draws its segment from it); None when not delineated."""

    def as_dict(self) -> dict[str, object]:
        """Result-JSON form."""
        out = dict(self.__dict__)
        out["region"] = self.region.as_dict() if self.region is not None else None
        return out


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
                   centre_rc: tuple[int, int] | None = None,
                   centres: Mapping[str, tuple[int, int]] | None = None) -> list[Measurement]:
    """Measure trabecular HU and anterior/middle/posterior heights of each ``(level, z_mm)`` given.

    ``z_mm`` is the patient (LPS) z of the level centre, typically the model's ``z_mm``; ``centre_rc`` is the
    in-plane (row, column) of the vertebral column; when omitted, each level takes the column at its height
    (:func:`track_centres`). The
    centres of the neighbouring levels in ``levels`` bound the search for the endplates (a lone level uses
    ``LEVEL_PITCH_MM``). ``centres`` may give a level its own column (a curved spine: the crop's track at that
    level), overriding ``centre_rc``. Levels that cannot be delineated come back with ``quality`` set to a reason
    code and no values.
    """
    if centre_rc is None and not all(lv in (centres or {}) for lv, _ in levels):
        centres = {**track_centres(study, levels), **(centres or {})}
    gaps = neighbour_gaps([float(z) for _, z in levels])
    found: dict[int, tuple[float, _Body] | _FailedError] = {}
    for i, (level, z_mm) in enumerate(levels):
        try:
            column = (centres or {}).get(level, centre_rc)
            assert column is not None
            found[i] = _locate(study, level, float(z_mm), column)
        except _FailedError as exc:
            found[i] = exc
    for i, detail in off_line(study, {i: f for i, f in found.items() if not isinstance(f, _FailedError)}).items():
        found[i] = _FailedError("body_not_found", f"{levels[i][0]}: {detail}")
    tilts = body_tilts(study, {i: f for i, f in found.items() if not isinstance(f, _FailedError)})
    out = []
    for i, ((level, z_mm), gap) in enumerate(zip(levels, gaps, strict=True)):
        located = found[i]
        try:
            if isinstance(located, _FailedError):
                raise located
            out.append(_measure_one(study, level, float(z_mm), located, tilts.get(i, 0.0), gap))
        except _FailedError as exc:
            out.append(Measurement(level=level, z_mm=float(z_mm), quality=exc.code, reason=exc.detail))
    return out


def track_centres(study: Study, levels: list[tuple[str, float]]) -> dict[str, tuple[int, int]]:
    """The column (row, column) at each level's height: :func:`inference.crop.spine_track` (a curved spine's
    bodies are not on one whole-scan column)."""
    anchor = spine_center(study.volume, study.spacing_mm, PreprocessSpec())
    track = spine_track(study.volume, study.spacing_mm, PreprocessSpec())
    out = {}
    for level, z_mm in levels:
        try:
            k = slice_index(study, float(z_mm), anchor)
        except _FailedError:
            k = 0.0
        i = int(np.clip(round(k), 0, len(track) - 1))
        out[level] = (round(float(track[i, 0])), round(float(track[i, 1])))
    return out


def _locate(study: Study, level: str, z_mm: float, centre_rc: tuple[int, int]) -> tuple[float, _Body]:
    """Slice index of the level centre and the body delineated on the axial slab there."""
    k0 = slice_index(study, z_mm, centre_rc)
    if not 0.0 <= k0 <= study.volume.shape[0] - 1:
        raise _FailedError("outside_volume", f"{level}: z {z_mm:.1f} mm is outside the scan")
    return k0, find_body(AxialBands(study.volume, study.spacing_mm, k0), study.spacing_mm, centre_rc)


def off_line(study: Study, bodies: dict[int, tuple[float, _Body]]) -> dict[int, str]:
    """The located bodies that lie off the column: a body's front-to-back centre more than :data:`OFF_LINE_MM`
    from the line through the two located bodies nearest to it along z (between them, or beyond them at an end),
    taken out worst first until every one left lies on its neighbours' line. A spine curves by a few millimetres
    a level; a body delineated that far off is something else anterior to a canal found in the wrong place (on a
    phantom with lungs, a T11 located 45 mm in front of T12 and L1 and measured 42 HU too dense). Needs three
    located bodies; the reason for each one taken out."""
    sp = study.spacing_mm
    left = {i: (k * sp[0], b.yc * sp[1]) for i, (k, b) in bodies.items()}
    out: dict[int, str] = {}
    while len(left) >= 3:
        worst, far = None, OFF_LINE_MM
        for i, (z, y) in left.items():
            a, b = sorted((j for j in left if j != i), key=lambda j: abs(left[j][0] - z))[:2]
            (za, ya), (zb, yb) = left[a], left[b]
            if abs(zb - za) < 1e-6:
                continue
            d = abs(y - (ya + (yb - ya) * (z - za) / (zb - za)))
            if d > far:
                worst, far = i, d
        if worst is None:
            break
        out[worst] = f"located {far:.0f} mm off the line through its neighbours"
        del left[worst]
    return out


def body_tilts(study: Study, bodies: dict[int, tuple[float, _Body]]) -> dict[int, float]:
    """Sagittal tilt (degrees, superior end leaning anteriorly > 0) of each located body: the direction of the
    spine through it, from the centres of the neighbouring located bodies (one-sided at the ends). Zero when
    fewer than two bodies were located or the volume's axis 0 does not run up along patient z."""
    if len(bodies) < 2 or study.affine[2, 0] <= 0:
        return dict.fromkeys(bodies, 0.0)
    sp = study.spacing_mm
    order = sorted(bodies, key=lambda i: bodies[i][0])
    centre = {i: (bodies[i][0] * sp[0], bodies[i][1].yc * sp[1]) for i in order}

    def chord(lo: int, hi: int) -> float:
        dz, dy = centre[hi][0] - centre[lo][0], centre[hi][1] - centre[lo][1]
        return float(np.degrees(np.arctan2(-dy, dz))) if dz > 0 else 0.0

    out = {i: chord(order[max(0, n - 1)], order[min(len(order) - 1, n + 1)]) for n, i in enumerate(order)}
    if len(order) >= 3:  # an end body: the chord to its neighbour is the mean of the two tilts; extrapolate
        for end, nxt in ((order[0], order[1]), (order[-1], order[-2])):
            pair = chord(*sorted((end, nxt), key=lambda i: bodies[i][0]))
            out[end] = float(np.clip(2.0 * pair - out[nxt], -MAX_TILT_DEG, MAX_TILT_DEG))
    return out


def neighbour_gaps(zs: list[float]) -> list[tuple[float, float]]:
    """Distance (mm) from each level centre to the next centre below and above it along z.

    A missing neighbour takes ``LONE_SIDE`` times the other side's distance, or ``LEVEL_PITCH_MM`` for a
    lone level; distances are kept within ``GAP_RANGE_MM`` so that a missed level does not open the search to two discs.
    """
    order = sorted(zs)
    out = []
    for z in zs:
        below = [z - o for o in order if o < z]
        above = [o - z for o in order if o > z]
        lo = min(below) if below else None
        hi = min(above) if above else None
        lo = lo if lo is not None else (LONE_SIDE * hi if hi is not None else LEVEL_PITCH_MM)
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


def _measure_one(study: Study, level: str, z_mm: float, located: tuple[float, _Body], tilt: float,
                 gap_mm: tuple[float, float]) -> Measurement:
    """Measure one located level in its own (tilted) frame; raises :class:`_FailedError` when the body cannot
    be delineated."""
    vol, sp = study.volume, study.spacing_mm
    k0, body = located
    if abs(tilt) < TILTED_DEG:  # upright enough: z profiles on the native slices
        dk = abs(study.affine[2, 0])
        windows = ((k0 - (1 - DISC_WINDOW[0]) * gap_mm[0] / dk, k0 - DISC_WINDOW[1] * gap_mm[0] / dk),
                   (k0 + DISC_WINDOW[1] * gap_mm[1] / dk, k0 + (1 - DISC_WINDOW[0]) * gap_mm[1] / dk))
        if study.affine[2, 0] < 0:  # axis 0 runs against patient z: the slice below has the higher index
            windows = ((2 * k0 - windows[1][1], 2 * k0 - windows[1][0]),
                       (2 * k0 - windows[0][1], 2 * k0 - windows[0][0]))
        heights, (low, high) = vertical_heights(vol, sp, body, windows)
        k_mid, row_mid, tilt = (low + high) / 2.0, body.yc, 0.0
    else:  # tilted (L5, S1 in lordosis): profiles along the body's own axis
        frame = SagittalFrame(k0, body.yc, tilt)
        windows = ((frame.row(-(1 - DISC_WINDOW[0]) * gap_mm[0]), frame.row(-DISC_WINDOW[1] * gap_mm[0])),
                   (frame.row(DISC_WINDOW[1] * gap_mm[1]), frame.row((1 - DISC_WINDOW[0]) * gap_mm[1])))
        frame = aligned_frame(vol, sp, body, frame, windows)
        patch = frame.sample(vol, sp, body.xc)
        heights, edges = body_heights(patch, frame.depth_extent(patch, body.threshold), windows, sp[0])
        u_mid = (frame.u_of(edges[0]) + frame.u_of(edges[1])) / 2.0
        k_mid, row_mid = (float(x) for x in frame.to_voxel(u_mid, 0.0, sp))
        half = (edges[1] - edges[0]) * PATCH_MM / 2.0 / sp[0]
        low, high, tilt = k_mid - half, k_mid + half, frame.tilt
    hu, n_roi = trabecular_hu(vol, sp, body, (low, high))
    ratio = min(heights) / max(heights)
    a = study.affine
    measured_z = float(a[2, 0] * k_mid + a[2, 1] * row_mid + a[2, 2] * body.xc + a[2, 3])
    return Measurement(
        level=level, z_mm=z_mm, quality="ok", trabecular_hu=round(hu, 1),
        height_anterior_mm=round(heights[0], 1), height_middle_mm=round(heights[1], 1),
        height_posterior_mm=round(heights[2], 1), height_ratio=round(ratio, 3),
        genant_grade=genant_grade(ratio), measured_z_mm=round(measured_z, 2), roi_voxels=n_roi,
        tilt_deg=round(tilt, 1),
        region=BodyRegion((min(low, high), max(low, high)), (body.y_ant, body.y_post), (body.x_right, body.x_left)),
    )


def endplate_sharpness(patch: np.ndarray, extent: tuple[float, float],
                       windows: tuple[tuple[float, float], tuple[float, float]]) -> float:
    """How sharp the two endplates look along the frame's axis: the steepest rise into the body below it plus
    the steepest fall above it, on the profile averaged over the middle 60 % of the body's depth. Endplates
    are sharpest when the profile runs perpendicular to them."""
    depth = extent[1] - extent[0]
    lo, hi = max(0, int(extent[0] + 0.2 * depth)), min(patch.shape[1], int(extent[1] - 0.2 * depth) + 1)
    if hi <= lo:
        return -np.inf
    grad = np.gradient(ndimage.gaussian_filter1d(patch[:, lo:hi].mean(axis=1), 1.0 / PATCH_MM))
    (a0, a1), (b0, b1) = ((max(0, int(w[0])), min(grad.size, int(w[1]) + 1)) for w in windows)
    if a1 <= a0 or b1 <= b0:
        return -np.inf
    return float(grad[a0:a1].max() + (-grad[b0:b1]).max())


def aligned_frame(vol: np.ndarray, sp: tuple[float, float, float], body: _Body, frame: SagittalFrame,
                  windows: tuple[tuple[float, float], tuple[float, float]]) -> SagittalFrame:
    """The frame, turned within ``TILT_SEARCH_DEG`` of its tilt (from the neighbouring bodies) to where the
    body's endplates are sharpest (coarse steps, then 1 degree)."""
    extent = frame.depth_extent(frame.sample(vol, sp, body.xc), body.threshold)

    def score(tilt: float) -> float:
        f = replace(frame, tilt=tilt)
        return endplate_sharpness(f.sample(vol, sp, body.xc), extent, windows)

    coarse = [frame.tilt + d for d in np.arange(-TILT_SEARCH_DEG, TILT_SEARCH_DEG + 0.1, 4.0)]
    best = max(coarse, key=score)
    best = max([best + d for d in (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)], key=score)
    return replace(frame, tilt=float(best))


@dataclass(frozen=True)
class SagittalFrame:
    """A body's own frame on the mid-sagittal plane: u along its superior axis, v along its posterior axis
    (mm from its centre), sampled on a square ``PATCH_MM`` grid (rows = u upwards, columns = v backwards)."""

    k0: float
    """Slice index of the centre."""
    row0: float
    """In-plane row (axis 1) of the centre."""
    tilt: float
    """Degrees; the superior axis leans anteriorly (towards -y) by this angle."""

    @property
    def rows(self) -> int:
        """Number of u samples (covering +-``PATCH_HALF_MM[0]``)."""
        return 2 * round(PATCH_HALF_MM[0] / PATCH_MM) + 1

    @property
    def cols(self) -> int:
        """Number of v samples (covering +-``PATCH_HALF_MM[1]``)."""
        return 2 * round(PATCH_HALF_MM[1] / PATCH_MM) + 1

    def u_of(self, row: float) -> float:
        """Distance along the axis (mm) of a (fractional) patch row."""
        return (row - (self.rows - 1) / 2.0) * PATCH_MM

    def row(self, u_mm: float) -> float:
        """Patch row of u (mm)."""
        return u_mm / PATCH_MM + (self.rows - 1) / 2.0

    def to_voxel(self, u: np.ndarray | float, v: np.ndarray | float,
                 sp: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
        """(slice index, row index) of frame coordinates (mm)."""
        t = np.radians(self.tilt)
        z_mm = np.multiply(u, np.cos(t)) + np.multiply(v, np.sin(t))
        y_mm = -np.multiply(u, np.sin(t)) + np.multiply(v, np.cos(t))
        return self.k0 + z_mm / sp[0], self.row0 + y_mm / sp[1]

    def sample(self, vol: np.ndarray, sp: tuple[float, float, float], col: float) -> np.ndarray:
        """The patch: the mid-sagittal band through column ``col`` (+-4 mm in x), resampled in this frame."""
        u = (np.arange(self.rows) - (self.rows - 1) / 2.0) * PATCH_MM
        v = (np.arange(self.cols) - (self.cols - 1) / 2.0) * PATCH_MM
        k, r = self.to_voxel(u[:, None], v[None, :], sp)
        # the band only where the interpolation reads it: each sample's two neighbours on both axes, clamped to
        # the volume's edge (mode "nearest") for samples beyond it
        nz, ny = vol.shape[:2]
        slices = (min(max(0, int(np.floor(k.min())) - 1), nz - 1), max(1, int(np.ceil(k.max())) + 2))
        rows = (min(max(0, int(np.floor(r.min())) - 1), ny - 1), max(1, int(np.ceil(r.max())) + 2))
        sag = sagittal_band(vol, col, max(0.5, 4.0 / sp[2]), rows=rows, slices=slices)  # (Z, Y)
        return np.asarray(ndimage.map_coordinates(sag.astype(np.float64), [k, r], order=1, mode="nearest"))

    def depth_extent(self, patch: np.ndarray, threshold: float) -> tuple[float, float]:
        """Anterior and posterior edge (patch columns) of the body on the rows within 5 mm of its centre."""
        mid = (self.rows - 1) / 2.0
        profile = _band(patch, mid, 5.0 / PATCH_MM, axis=0)
        c = (self.cols - 1) // 2
        core = ndimage.median_filter(profile, size=2 * round(3.5 / PATCH_MM) + 1, mode="nearest")
        if core[c] < threshold:
            raise _FailedError("body_not_found", "the body centre is not bony on the sagittal plane")
        ant = _run_end(profile, c, -1, threshold, gap=round(1.5 / PATCH_MM))
        post = _run_end(profile, c, +1, threshold, gap=round(1.5 / PATCH_MM))
        depth = (post - ant) * PATCH_MM
        if not DEPTH_RANGE_MM[0] <= depth <= DEPTH_RANGE_MM[1]:
            raise _FailedError("body_not_found", f"sagittal body depth {depth:.0f} mm is implausible")
        return ant, post


def axial_slab(vol: np.ndarray, sp: tuple[float, float, float], k0: float, half_mm: float = 4.0) -> np.ndarray:
    """Mean of the slices within ``half_mm`` of slice ``k0`` (at least the nearest one), lightly smoothed."""
    return _smoothed(_slab_mean(vol, sp, k0, half_mm), sp)


def _slab_mean(vol: np.ndarray, sp: tuple[float, float, float], k0: float, half_mm: float,
               rows: slice = slice(None), columns: slice = slice(None)) -> np.ndarray:
    """Float64 mean of the slices within ``half_mm`` of slice ``k0`` on ``rows`` and ``columns``: the slices
    summed one after the other, as numpy's mean of the float64 copy does (the same sums, without the copy)."""
    half = max(0, int(half_mm / sp[0]))
    k = round(k0)
    sub = vol[max(0, k - half): min(vol.shape[0], k + half + 1), rows, columns]
    total = np.zeros(sub.shape[1:], dtype=np.float64)
    for plane in sub:
        total += plane
    return np.true_divide(total, np.intp(sub.shape[0]), out=total, casting="unsafe")


def _smoothing(sp: tuple[float, float, float]) -> tuple[tuple[float, float], tuple[int, int]]:
    """The in-plane Gaussian of :func:`axial_slab` (sigma per axis, pixels) and how far it reaches (scipy's
    radius, ``int(4 * sigma + 0.5)``, plus one)."""
    sigma = (max(0.0, 1.0 / sp[1]), max(0.0, 1.0 / sp[2]))
    return sigma, (int(4.0 * sigma[0] + 0.5) + 1, int(4.0 * sigma[1] + 0.5) + 1)


def _smoothed(mean: np.ndarray, sp: tuple[float, float, float]) -> np.ndarray:
    return np.asarray(ndimage.gaussian_filter(mean, _smoothing(sp)[0]))


@dataclass(frozen=True)
class AxialBands:
    """The bands :func:`find_body` reads of the :func:`axial_slab` at ``k0``: each computed on the rows or
    columns it covers and the margin the smoothing reaches (or up to the slab's edge, where it reflects as on
    the whole slab), so that each equals the band of the whole slab bit for bit (the Gaussian is separable and
    each output is the same sum of the same inputs). Two bands of a 512 x 512 slab are a tenth of it."""

    vol: np.ndarray
    sp: tuple[float, float, float]
    k0: float
    half_mm: float = 4.0

    def band(self, centre: float, half: float, axis: int) -> np.ndarray:
        """``_band(axial_slab(vol, sp, k0, half_mm), centre, half, axis)``."""
        n = self.vol.shape[1 + axis]
        lo, hi = _band_range(n, centre, half)
        reach = _smoothing(self.sp)[1][axis]
        a, b = max(0, lo - reach), min(n, hi + reach)
        cut = slice(a, b)
        mean = _slab_mean(self.vol, self.sp, self.k0, self.half_mm, *((cut, slice(None)) if axis == 0
                                                                      else (slice(None), cut)))
        slab = _smoothed(mean, self.sp)
        return np.asarray(slab[lo - a:hi - a].mean(axis=0) if axis == 0 else slab[:, lo - a:hi - a].mean(axis=1))


def _profile(slab: np.ndarray | AxialBands, centre: float, half: float, axis: int) -> np.ndarray:
    """:func:`_band` of the slab, or of the slab an :class:`AxialBands` stands for."""
    return _band(slab, centre, half, axis) if isinstance(slab, np.ndarray) else slab.band(centre, half, axis)


def sagittal_band(vol: np.ndarray, col: float, half: float, rows: tuple[int, int] | None = None,
                  slices: tuple[int, int] | None = None) -> np.ndarray:
    """(Z, Y) mean of ``vol`` over the columns within ``half`` voxels of column ``col`` (the mid-sagittal band),
    computed only on the slices and rows given (inclusive-exclusive, clipped to the volume; all when None) and
    NaN elsewhere, so that a read outside them cannot pass unseen.

    Each value equals that of the band of the whole volume bit for bit (the same sums in the same order: only the
    block read is smaller); a body's heights need a few dozen of the 512 rows, which is a tenth of the reading."""
    nz, ny = vol.shape[:2]
    z0, z1 = (0, nz) if slices is None else (max(0, slices[0]), min(nz, slices[1]))
    y0, y1 = (0, ny) if rows is None else (max(0, rows[0]), min(ny, rows[1]))
    block = _band(np.moveaxis(vol[z0:z1, y0:y1], 2, 0), col, half, axis=0)
    if (z0, z1, y0, y1) == (0, nz, 0, ny):
        return block
    out = np.full((nz, ny), np.nan, dtype=np.result_type(block.dtype, np.float32))
    out[z0:z1, y0:y1] = block
    return out


def _band_range(n: int, centre: float, half: float) -> tuple[int, int]:
    """The indices (inclusive-exclusive) of the band of :func:`_band` among ``n``: within ``half`` of ``centre``,
    at least the nearest one."""
    lo = max(0, int(np.floor(centre - half + 0.5)))
    hi = min(n, int(np.floor(centre + half + 0.5)) + 1)
    if hi <= lo:
        lo, hi = max(0, min(n - 1, round(centre))), max(0, min(n - 1, round(centre))) + 1
    return lo, hi


def _band(img: np.ndarray, centre: float, half: float, axis: int) -> np.ndarray:
    """Mean of ``img`` over the rows (axis 0) or columns (axis 1) within ``half`` voxels of ``centre``."""
    lo, hi = _band_range(img.shape[axis], centre, half)
    return np.asarray(img[lo:hi].mean(axis=0) if axis == 0 else img[:, lo:hi].mean(axis=1))


def _run_end(profile: np.ndarray, start: int, step: int, threshold: float, gap: int = 0) -> float:
    """Fractional index where ``profile`` falls below ``threshold`` walking from ``start`` by ``step``.

    Dips below the threshold of at most ``gap`` samples (noise in trabecular bone) do not end the run. The end
    lies between the last sample of the run and the next one (a profile already below the threshold at ``start``
    ends there: interpolating between two nearly equal samples below it would put the end anywhere).
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
    if a < threshold:  # no run: it ends where it started
        return float(i)
    frac = (a - threshold) / (a - b) if a != b else 0.5
    return float(i + step * min(1.0, max(0.0, frac)))


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


def find_body(slab: np.ndarray | AxialBands, sp: tuple[float, float, float], centre_rc: tuple[int, int]) -> _Body:
    """Delineate the vertebral body on an axial slab (or on the bands of it it reads, :class:`AxialBands`): the
    bony block just anterior to the spinal canal."""
    row, col = centre_rc
    ap = _profile(slab, col, 4.0 / sp[2], axis=1)  # AP profile through the column
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
    lr = _profile(slab, yc, (y_post - y_ant) / 6.0, axis=0)
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


def body_heights(patch: np.ndarray, extent: tuple[float, float],
                 windows: tuple[tuple[float, float], tuple[float, float]], slice_mm: float = 1.0
                 ) -> tuple[tuple[float, float, float], tuple[float, float]]:
    """Anterior, middle and posterior heights (mm) on a body's tilted sagittal patch, and the mean endplate rows.

    ``extent`` is the body's depth in patch columns and ``windows`` the patch rows to search (see
    :func:`profile_heights`). Edge steepness is judged per ``slice_mm`` (the scan's slice spacing).
    """
    return profile_heights(patch, extent, windows, PATCH_MM, 1.0 / PATCH_MM, max(1.0, slice_mm) / PATCH_MM)


def vertical_heights(vol: np.ndarray, sp: tuple[float, float, float], body: _Body,
                     windows: tuple[tuple[float, float], tuple[float, float]]
                     ) -> tuple[tuple[float, float, float], tuple[float, float]]:
    """Anterior, middle and posterior heights (mm) on the mid-sagittal plane of the native slices (averaged
    4 mm either side of it), and the mean endplate slices; ``windows`` are slice indices."""
    rows = (int(np.floor(body.y_ant)) - 2, int(np.ceil(body.y_post)) + 3)  # the profiles lie within the body
    sag = sagittal_band(vol, body.xc, max(0.5, 4.0 / sp[2]), rows=rows)  # (Z, Y) mid-sagittal
    return profile_heights(sag, (body.y_ant, body.y_post), windows, sp[0], max(0.3, 1.0 / sp[0]), 1.0)


def profile_heights(image: np.ndarray, extent: tuple[float, float],
                    windows: tuple[tuple[float, float], tuple[float, float]], step_mm: float, sigma: float,
                    grad_scale: float) -> tuple[tuple[float, float, float], tuple[float, float]]:
    """Heights on a sagittal ``image`` whose rows run up the body (``step_mm`` apart) and columns backwards.

    Profiles are taken at ``PROFILE_AT`` of the depth ``extent`` (columns; averaged over a sixth
    of it) and smoothed by ``sigma`` rows. On the middle profile each endplate is the disc -> endplate step
    (see :func:`disc_edge`) within ``windows`` (rows: ``windows[0]`` below the centre, ``windows[1]`` above).
    On the anterior and posterior profiles it is the steepest step (gradient times ``grad_scale``, in HU per
    slice) within ``REFINE_MM`` of the middle one, which follows wedge-shaped bodies.
    """
    depth = extent[1] - extent[0]
    profiles = [_band(image.T, extent[0] + f * depth, depth / 12.0, axis=0) for f in PROFILE_AT]
    smooth = [ndimage.gaussian_filter1d(p.astype(np.float64), sigma=sigma) for p in profiles]
    mid_low = disc_edge(smooth[1], windows[0], +1, step_mm)
    mid_high = disc_edge(smooth[1], windows[1], -1, step_mm)
    r = REFINE_MM / step_mm
    lows, highs = [], []
    for i, q in enumerate(smooth):
        if i == 1:
            lows.append(mid_low)
            highs.append(mid_high)
            continue
        grad = np.gradient(q) * grad_scale
        lows.append(_steepest(grad, (mid_low - r, mid_low + r)))
        highs.append(_steepest(-grad, (mid_high - r, mid_high + r)))
    heights = [(h - lo) * step_mm for lo, h in zip(lows, highs, strict=True)]
    for h in heights:
        if not HEIGHT_RANGE_MM[0] <= h <= HEIGHT_RANGE_MM[1]:
            raise _FailedError("endplates_not_found", f"body height {h:.0f} mm is implausible")
    if heights[1] > max(heights[0], heights[2]) + MIDDLE_EXCESS_MM:
        raise _FailedError("endplates_not_found", f"middle height {heights[1]:.0f} mm exceeds the anterior and "
                           f"posterior ones ({heights[0]:.0f}, {heights[2]:.0f} mm): an endplate was missed")
    return (heights[0], heights[1], heights[2]), (float(np.mean(lows)), float(np.mean(highs)))


def disc_edge(q: np.ndarray, window: tuple[float, float], inward: int, dz: float) -> float:
    """Fractional slice index of the edge between a disc and the body on the z profile ``q``.

    ``inward`` = +1 when the body lies at higher indices than the disc. A disc is a dark gap between two
    bright endplates close together: candidates are the local minima within ``window`` (at its outer end:
    any sample darker than the next one towards the body), scored by the smaller of the rises to the
    brightest sample within ``DISC_REACH_MM`` on either side. The edge is where the profile crosses halfway
    between the disc and the endplate on the body side. The best-scoring candidate is taken unless its edge
    passes the window's inner end (the two endplates must bracket the level centre): then the next one is
    taken only if it is darker than the rejected one, since a disc is darker than a low-density band inside a
    body (under a sclerotic or compacted endplate, as in the reference CT's L1); otherwise the endplate is
    not found.
    """
    lo = max(1, int(np.ceil(window[0])))
    hi = min(q.size - 2, int(np.floor(window[1])))
    reach = max(2, int(np.ceil(DISC_REACH_MM / dz)))
    outer_end = lo if inward > 0 else hi
    candidates = []
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
        if score > MIN_EDGE_HU:
            candidates.append((score, i, peak))
    darkest_rejected = np.inf
    for _, i, peak in sorted(candidates, reverse=True):
        edge = _run_end(-q, i, inward, -(float(q[i]) + float(q[peak])) / 2.0)
        if (edge - window[1] if inward > 0 else window[0] - edge) > 0:  # the edge passes the level centre
            darkest_rejected = min(darkest_rejected, float(q[i]))
        elif float(q[i]) >= darkest_rejected:  # a disc is darker than a band inside a body
            break
        else:
            return edge
    raise _FailedError("endplates_not_found", "no disc between the level and its neighbour")


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
    # the ellipse's bounding rows and columns (one pixel spare): the same voxels, in the same order
    y0, y1 = max(0, int(np.floor(body.yc - ry)) - 1), min(vol.shape[1], int(np.ceil(body.yc + ry)) + 2)
    x0, x1 = max(0, int(np.floor(body.xc - rx)) - 1), min(vol.shape[2], int(np.ceil(body.xc + rx)) + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    ellipse = ((yy - body.yc) / ry) ** 2 + ((xx - body.xc) / rx) ** 2 <= 1.0
    values = vol[ks, y0:y1, x0:x1][:, ellipse]
    if values.size < MIN_ROI_VOXELS:
        raise _FailedError("roi_too_small", f"only {values.size} voxels in the trabecular ROI")
    return float(np.median(values)), int(values.size)
