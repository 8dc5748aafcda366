"""A transparent check of the learned level positions: every level found must sit on its own vertebral body.

The model was trained on phantoms; on a strongly lordotic real spine it can put a level on a disc or on the
next body (L5 on the L5/S1 disc of the reference CT). This check reads the image alone:

1. **Profile.** Between the highest and lowest levels found (and ``MARGIN_PITCH`` of a level pitch beyond
   them), the median HU of a small in-plane box (``BOX_HALF_MM``) at the vertebral-body centre is taken on
   every slice. The body centre is delineated at each level with :func:`inference.measure.find_body` and
   interpolated between levels, so the box follows the curve of the spine.
2. **Discs.** Intervertebral discs are the dips of that profile: local minima at least ``DISC_CONTRAST_HU``
   below the highest value within ``DISC_REACH_PITCH`` of a pitch on both sides; dips closer than
   ``MERGE_PITCH`` of a pitch are one disc (the deeper kept).
3. **Bodies.** A body is the run between two consecutive discs, with its centre halfway between them, kept
   when the disc-to-disc distance is a plausible level pitch (``PITCH_RANGE_MM``).
4. **Assignment.** The levels found are laid on consecutive bodies, in order, with the offset that moves them
   least. The highest or lowest level found (where the curve of the spine and the sacrum mislead the model; an
   interior level between two agreeing neighbours cannot be a body off) that is more than ``MOVE_MIN_MM`` from
   its body's centre is moved there, and a warning says so, only when the image confirms the model's error:
   the level sits on a disc (within ``ON_DISC_PITCH`` of a pitch)
   and the other levels agree with their bodies (mean distance at most ``AGREE_MM``, at least
   ``MIN_ASSIGNED - 1`` of them). Nothing moves otherwise, nor when a move would exceed ``MOVE_MAX_MM``: where
   the image and the model disagree broadly, the profile is the less trustworthy of the two (on phantoms the
   model's levels are within 1 mm).

5. **Scan edges.** Where a scan's edge cuts the spine away from what the model anchors on (the sacrum, the
   lower thoracic spine), the model squeezes the levels near the edge inwards. Levels put closer to a
   neighbour than ``CROWDED_PITCH`` of the local pitch (or in the wrong order) are withdrawn
   (:func:`inference.findings.crowded_levels`, also applied by ``vfrisk score``); one or two end levels pushed
   inwards from a nearby edge while the rest agree with their bodies go back to their bodies
   (:func:`edge_tails`); a modelled level just beyond the ends that the edge cuts is named partly in the scan,
   with how much of it is shown (:func:`partial_levels`).

The learned per-level values (grade, height ratio, HU) stay the model's; only the position, and with it the
transparent measurement, follows the check; a withdrawn level loses its learned values from the findings (the
probability, computed by the graph, is unchanged). ``python -m training.edge_check`` measures all of this on
phantoms cut at fixed positions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from inference.crop import spine_center
from inference.findings import Vertebra, crowded_levels
from inference.measure import axial_slab, find_body, slice_index
from inference.spec import PreprocessSpec
from inference.study import Study
from inference.thresholds import LEVEL_PITCH_MM

BOX_HALF_MM = 4.0
MARGIN_PITCH = 0.75
DISC_CONTRAST_HU = 30.0
DISC_REACH_PITCH = 0.5
MERGE_PITCH = 0.65
PITCH_RANGE_MM = (18.0, 50.0)
MOVE_MIN_MM = 12.0
MOVE_MAX_MM = 0.8 * LEVEL_PITCH_MM
MIN_ASSIGNED = 3
AGREE_MM = 6.0
ON_DISC_PITCH = 0.12
TAIL_MAX = 2
TAIL_EDGE_PITCH = 1.5
PARTIAL_DISC_PITCH = (0.3, 0.8)
PARTIAL_MAX_PITCH = 0.9
PARTIAL_MIN_MM = 10.0


@dataclass(frozen=True)
class Move:
    """A level the check moved: from the model's z to the centre of the body it belongs to (patient z, mm)."""

    level: str
    from_z_mm: float
    to_z_mm: float


def body_profile(study: Study, ks: list[float], rows: list[float], cols: list[float],
                 lo: int, hi: int) -> np.ndarray:
    """Median HU in a box at the interpolated body centre on slices ``lo..hi`` (inclusive)."""
    vol, sp = study.volume, study.spacing_mm
    hy, hx = max(1, round(BOX_HALF_MM / sp[1])), max(1, round(BOX_HALF_MM / sp[2]))
    order = np.argsort(ks)
    k_sorted = np.asarray(ks)[order]
    out = np.empty(hi - lo + 1)
    for n, k in enumerate(range(lo, hi + 1)):
        r = round(float(np.interp(k, k_sorted, np.asarray(rows)[order])))
        c = round(float(np.interp(k, k_sorted, np.asarray(cols)[order])))
        box = vol[k, max(0, r - hy): r + hy + 1, max(0, c - hx): c + hx + 1]
        out[n] = float(np.median(box)) if box.size else np.nan
    return out


def find_discs(profile: np.ndarray, pitch_px: float) -> list[int]:
    """Indices of the disc dips of ``profile`` (see the module docstring, step 2)."""
    size = max(1, round(pitch_px / 12))  # ~3 mm: smooth 1 mm slices, leave 3 mm slices as they are
    prof = ndimage.uniform_filter1d(np.nan_to_num(profile, nan=float(np.nanmedian(profile))), size)
    reach = max(2, round(DISC_REACH_PITCH * pitch_px))
    dips = []
    for i in range(1, len(prof) - 1):
        if not (prof[i] <= prof[i - 1] and prof[i] < prof[i + 1]):
            continue
        before, after = prof[max(0, i - reach): i], prof[i + 1: i + 1 + reach]
        if before.size and after.size and min(before.max(), after.max()) - prof[i] >= DISC_CONTRAST_HU:
            dips.append(i)
    merged: list[int] = []
    for i in dips:
        if merged and i - merged[-1] < MERGE_PITCH * pitch_px:
            if prof[i] < prof[merged[-1]]:
                merged[-1] = i
            continue
        merged.append(i)
    return merged


@dataclass(frozen=True)
class _Spine:
    """The body-centre profile of a study and the discs found on it (slice indices, axis 0 running up)."""

    discs: list[int]
    lo: int
    hi: int
    profile: np.ndarray
    centre_rc: tuple[int, int]

    def z_of(self, study: Study, k: float) -> float:
        """Patient z (mm) of slice index ``k`` on the vertebral column."""
        a = study.affine
        return float(a[2, 3] + a[2, 0] * k + a[2, 1] * self.centre_rc[0] + a[2, 2] * self.centre_rc[1])


def _spine(study: Study, levels: list[tuple[str, int, float]], extend: tuple[bool, bool] = (False, False),
           centre_rc: tuple[int, int] | None = None) -> _Spine | None:
    """Delineate the bodies at ``levels`` and find the discs between them (and ``MARGIN_PITCH`` beyond, or up to
    the scan's edge below / above where ``extend`` says so). None when fewer than two levels can be delineated
    or the volume's axis 0 does not run up along patient z."""
    dz = float(study.affine[2, 0])
    if dz <= 0:
        return None
    centre_rc = column_centre(study) if centre_rc is None else centre_rc
    located = []
    for _, _, z in levels:
        try:
            k = slice_index(study, z, centre_rc)
            if not 0 <= k <= study.volume.shape[0] - 1:
                continue
            body = find_body(axial_slab(study.volume, study.spacing_mm, k), study.spacing_mm, centre_rc)
        except Exception:  # a level that cannot be delineated does not steer the profile
            continue
        located.append((k, body.yc, body.xc))
    if len(located) < 2:
        return None
    pitch_px = LEVEL_PITCH_MM / dz
    ks = [loc[0] for loc in located]
    lo = 0 if extend[0] else max(0, int(min(ks) - MARGIN_PITCH * pitch_px))
    top = study.volume.shape[0] - 1
    hi = top if extend[1] else min(top, int(np.ceil(max(ks) + MARGIN_PITCH * pitch_px)))
    profile = body_profile(study, ks, [loc[1] for loc in located], [loc[2] for loc in located], lo, hi)
    return _Spine([lo + d for d in find_discs(profile, pitch_px)], lo, hi, profile, centre_rc)


@dataclass(frozen=True)
class _Assignment:
    """The levels found laid on the bodies of the disc profile with the least movement."""

    spine: _Spine
    pairs: dict[str, tuple[float, float]]
    """Level -> (model z, centre z of its body), for the levels that have a body."""
    cost: float


def _assign(study: Study, levels: list[tuple[str, int, float]], extend: tuple[bool, bool] = (False, False),
            centre_rc: tuple[int, int] | None = None) -> _Assignment | None:
    """Lay ``levels`` (``(name, index, z_mm)``) on consecutive bodies (runs between two discs of a plausible
    pitch) with the offset that moves them least; None without at least ``MIN_ASSIGNED`` levels on bodies."""
    spine = _spine(study, levels, extend, centre_rc) if len(levels) >= MIN_ASSIGNED else None
    if spine is None:
        return None
    dz, discs = float(study.affine[2, 0]), spine.discs
    # runs between consecutive discs, superior -> inferior as T11..L5; None where the run is not a plausible body
    bodies = [(spine.z_of(study, a) + spine.z_of(study, b)) / 2.0
              if PITCH_RANGE_MM[0] <= (b - a) * dz <= PITCH_RANGE_MM[1] else None
              for a, b in zip(discs[::-1][1:], discs[::-1][:-1], strict=True)]
    if sum(b is not None for b in bodies) < MIN_ASSIGNED:
        return None
    best: _Assignment | None = None
    first = min(index for _, index, _ in levels)
    for offset in range(-len(levels), len(bodies)):
        pairs = {name: (z, body) for name, index, z in levels
                 if 0 <= offset + index - first < len(bodies) and (body := bodies[offset + index - first]) is not None}
        if len(pairs) < MIN_ASSIGNED:
            continue
        cost = sum(abs(z - b) for z, b in pairs.values()) / len(pairs)
        if best is None or cost < best.cost:
            best = _Assignment(spine, pairs, cost)
    return best


def check_levels(study: Study, levels: list[tuple[str, int, float]],
                 centre_rc: tuple[int, int] | None = None) -> list[Move]:
    """Moves that put each found level on its own body; ``levels`` is ``(name, index in T11..L5, z_mm)``.

    Returns an empty list when the image does not support a confident assignment (see the module docstring).
    """
    assignment = _assign(study, levels, centre_rc=centre_rc)
    if assignment is None:
        return []
    found = [Move(name, z, round(b, 1)) for name, (z, b) in assignment.pairs.items()]
    ends = {min(levels, key=lambda t: t[1])[0], max(levels, key=lambda t: t[1])[0]}
    moves = [m for m in found if abs(m.to_z_mm - m.from_z_mm) > MOVE_MIN_MM]
    kept = [abs(m.to_z_mm - m.from_z_mm) for m in found if m not in moves]
    disc_z = [assignment.spine.z_of(study, k) for k in assignment.spine.discs]
    if (not moves or any(m.level not in ends for m in moves)
            or len(kept) < MIN_ASSIGNED - 1 or float(np.mean(kept)) > AGREE_MM
            or any(abs(m.to_z_mm - m.from_z_mm) > MOVE_MAX_MM for m in moves)
            or any(min(abs(m.from_z_mm - d) for d in disc_z) > ON_DISC_PITCH * LEVEL_PITCH_MM for m in moves)):
        return []
    return moves


def edge_tails(study: Study, levels: list[tuple[str, int, float]],
               centre_rc: tuple[int, int] | None = None) -> list[Move]:
    """Levels the model pushed inwards from a scan's edge, moved out to their bodies.

    ``levels`` is ``(name, index, z_mm)``. Where a scan's edge cuts the spine the model tends to place the last
    one or two levels towards the middle of the scan (phantoms ending at the centre of L5: L4 13-20 mm and L5
    20-28 mm high). At each end, the *tail* is the run of at most ``TAIL_MAX`` end levels more than
    ``MOVE_MIN_MM`` from their body or without a whole body between two discs (only the outermost may lack
    one), up to the first level that agrees with its body. The tail levels with a body are moved to it only
    when the rest agree with their bodies (at least ``MIN_ASSIGNED`` of them, mean distance at most
    ``AGREE_MM``), the scan's edge lies within ``TAIL_EDGE_PITCH`` of a pitch beyond the tail, and each of them
    lies between its body and the middle of the scan, at most ``MOVE_MAX_MM`` away. The outermost level, when
    the edge leaves it no whole body, goes to its neighbour's centre mirrored across the disc between them (one
    local pitch on) if that point is still inside the scan and the same conditions hold; otherwise it stays
    (:func:`crowded_levels`, run again after the moves, withdraws it if it is now squeezed).
    """
    assignment = _assign(study, levels, (True, True), centre_rc)
    if assignment is None or float(study.affine[2, 0]) <= 0:
        return []
    edges = (assignment.spine.z_of(study, study.volume.shape[0] - 1), assignment.spine.z_of(study, 0))
    ordered = sorted(levels, key=lambda t: t[1])
    moves: list[Move] = []
    for seq, edge_z, outward in ((ordered, edges[0], +1.0), (ordered[::-1], edges[1], -1.0)):
        off = {name: assignment.pairs[name][1] - z for name, _, z in seq if name in assignment.pairs}
        n_tail = next((n for n, (name, _, _) in enumerate(seq) if name in off and abs(off[name]) <= MOVE_MIN_MM),
                      len(seq))
        tail, rest = seq[:n_tail], seq[n_tail:]
        agree = [abs(off[name]) for name, _, _ in rest if name in off]
        if (not tail or len(tail) > TAIL_MAX or len(agree) < MIN_ASSIGNED or float(np.mean(agree)) > AGREE_MM
                or abs(edge_z - tail[0][2]) > TAIL_EDGE_PITCH * LEVEL_PITCH_MM
                or any(name not in off for name, _, _ in tail[1:])):
            continue
        if any(off[name] * outward <= 0 or abs(off[name]) > MOVE_MAX_MM for name, _, _ in tail if name in off):
            continue
        moves += [Move(name, z, round(z + off[name], 1)) for name, _, z in tail if name in off]
        if tail[0][0] not in off:  # the outermost level has no whole body: mirror its neighbour across their disc
            neighbour = assignment.pairs[(tail[1] if len(tail) > 1 else rest[0])[0]][1]
            discs = [assignment.spine.z_of(study, k) for k in assignment.spine.discs]
            between = [d for d in discs if 0.3 * LEVEL_PITCH_MM <= (d - neighbour) * outward <= 0.8 * LEVEL_PITCH_MM]
            if len(between) == 1:
                estimate, z = 2.0 * between[0] - neighbour, tail[0][2]
                if ((edge_z - estimate) * outward >= 0 and (estimate - z) * outward > 0
                        and MOVE_MIN_MM < abs(estimate - z) <= MOVE_MAX_MM):
                    moves.append(Move(tail[0][0], z, round(estimate, 1)))
    return moves


@dataclass(frozen=True)
class Partial:
    """A modelled level next to the end of the found range that the scan cuts: a disc beyond the end level,
    then bone up to the scan's edge (``shown_mm`` of it)."""

    level: str
    neighbour: str
    edge: str
    shown_mm: float

    def warning(self) -> str:
        """The one-line warning of the result."""
        upper, lower = (self.level, self.neighbour) if self.edge == "top" else (self.neighbour, self.level)
        return (f"{self.level}: partly in the scan (about {self.shown_mm:.0f} mm of its body between the "
                f"{upper}/{lower} disc and the {self.edge} edge of the scan); not scored, the model needs the "
                f"whole body")


def partial_levels(study: Study, levels: list[tuple[str, int, float]], names: tuple[str, ...],
                   centre_rc: tuple[int, int] | None = None) -> list[Partial]:
    """The modelled levels just beyond the highest and lowest found that the scan shows cut by its edge.

    ``levels`` is ``(name, index in names, z_mm)`` of the levels found. Beyond an end level whose neighbour in
    ``names`` was not found, the body-centre profile is followed to the scan's edge: the neighbour is partly
    in the scan when a disc lies ``PARTIAL_DISC_PITCH`` of a pitch beyond the end level's centre, no other disc
    follows, and bone (median brighter than that disc by half ``DISC_CONTRAST_HU``) runs from it to the edge
    over at least ``PARTIAL_MIN_MM`` and at most ``PARTIAL_MAX_PITCH`` of the end level's own pitch (disc to
    disc; a whole body and its next disc would need more). Nothing is reported otherwise.
    """
    dz = float(study.affine[2, 0])
    if len(levels) < 2 or dz <= 0:
        return []
    pitch_px = LEVEL_PITCH_MM / dz
    out = []
    top_end, bottom_end = min(levels, key=lambda t: t[1]), max(levels, key=lambda t: t[1])
    for end, step, edge in ((top_end, +1, "top"), (bottom_end, -1, "bottom")):
        name, index, z = end
        if not 0 <= index - step < len(names) or any(i == index - step for _, i, _ in levels):
            continue
        spine = _spine(study, levels, (step < 0, step > 0), centre_rc)
        if spine is None:
            continue
        k_end = slice_index(study, z, spine.centre_rc)
        k_edge = spine.hi if step > 0 else spine.lo
        beyond = [d for d in spine.discs if (d - k_end) * step > 0]
        within = [d for d in spine.discs if (d - k_end) * step <= 0]
        if len(beyond) != 1 or not (PARTIAL_DISC_PITCH[0] * pitch_px <= abs(beyond[0] - k_end)
                                    <= PARTIAL_DISC_PITCH[1] * pitch_px):
            continue
        disc = beyond[0]
        local_px = abs(disc - max(within, key=lambda d: d * step)) if within else pitch_px  # the end level's pitch
        shown_mm = abs(k_edge - disc) * dz
        run = spine.profile[min(disc, k_edge) - spine.lo: max(disc, k_edge) - spine.lo + 1]
        if (not PARTIAL_MIN_MM <= shown_mm <= PARTIAL_MAX_PITCH * local_px * dz
                or float(np.median(run)) < spine.profile[disc - spine.lo] + DISC_CONTRAST_HU / 2):
            continue
        out.append(Partial(names[index - step], name, edge, round(shown_mm, 1)))
    return out


def checked_levels(study: Study, vertebrae: list[Vertebra], centre_rc: tuple[int, int] | None = None
                   ) -> tuple[list[Vertebra], list[str], list[Partial]]:
    """``vertebrae`` after the level check, its warnings, and the levels the scan shows cut by its edge.

    ``centre_rc`` is the column's in-plane position (:func:`column_centre`, computed when omitted; found once
    and shared by every step).

    In order: levels crowded onto their neighbours (:func:`crowded_levels`) are withdrawn (not present, their
    learned values left out); an end level on a disc is moved to its body (:func:`check_levels`); end levels
    pushed in from a nearby scan edge are moved out to their bodies (:func:`edge_tails`), after which a level
    left squeezed against them is withdrawn; the levels just beyond the ends that the scan cuts are found
    (:func:`partial_levels`).
    """
    centre_rc = column_centre(study) if centre_rc is None else centre_rc
    crowded = {c.level: c for c in crowded_levels(_found(vertebrae))}
    out = [_withdrawn(v) if v.level in crowded else v for v in vertebrae]
    warnings = [c.warning() for c in crowded.values()]
    moves = {m.level: m for m in check_levels(study, _found(out), centre_rc)}
    out = [replace(v, z_mm=moves[v.level].to_z_mm) if v.level in moves else v for v in out]
    warnings += [f"{m.level}: the model placed it at z {m.from_z_mm:.1f} mm, on a disc; the transparent level "
                 f"check moved it to the centre of its body at z {m.to_z_mm:.1f} mm" for m in moves.values()]
    tail = {m.level: m for m in edge_tails(study, _found(out), centre_rc)}
    out = [replace(v, z_mm=tail[v.level].to_z_mm) if v.level in tail else v for v in out]
    warnings += [f"{m.level}: the model placed it at z {m.from_z_mm:.1f} mm, pushed in from the scan's edge; the "
                 f"transparent level check moved it to the centre of its body at z {m.to_z_mm:.1f} mm"
                 for m in tail.values()]
    if tail:  # a level left without a body may now be squeezed against the moved one
        again = {c.level: c for c in crowded_levels(_found(out))}
        out = [_withdrawn(v) if v.level in again else v for v in out]
        warnings += [c.warning() for c in again.values()]
    checked = _found(out)
    return out, warnings, partial_levels(study, checked, tuple(v.level for v in vertebrae), centre_rc)


def _found(vertebrae: list[Vertebra]) -> list[tuple[str, int, float]]:
    """``(level, index, z_mm)`` of the levels present."""
    return [(v.level, i, float(v.z_mm)) for i, v in enumerate(vertebrae) if v.present and v.z_mm is not None]


def _withdrawn(v: Vertebra) -> Vertebra:
    """``v`` taken out of the findings: not present, no learned values, no position."""
    return replace(v, present=False, genant_grade=None, height_ratio=None, trabecular_hu=None, z_mm=None)


def column_centre(study: Study) -> tuple[int, int]:
    """In-plane (row, column) of the vertebral column (:func:`inference.crop.spine_center` with the default
    spec), the reference every step of the check and the transparent measurement works from."""
    return spine_center(study.volume, study.spacing_mm, PreprocessSpec())
