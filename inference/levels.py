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

The learned per-level values (grade, height ratio, HU) stay the model's; only the position, and with it the
transparent measurement, follows the check.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from inference.crop import spine_center
from inference.findings import LEVEL_PITCH_MM, Vertebra
from inference.measure import axial_slab, find_body, slice_index
from inference.spec import PreprocessSpec
from inference.study import Study

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


def check_levels(study: Study, levels: list[tuple[str, int, float]]) -> list[Move]:
    """Moves that put each found level on its own body; ``levels`` is ``(name, index in T11..L5, z_mm)``.

    Returns an empty list when the image does not support a confident assignment (see the module docstring).
    """
    dz = float(study.affine[2, 0])
    if len(levels) < MIN_ASSIGNED or dz <= 0:
        return []
    centre_rc = spine_center(study.volume, study.spacing_mm, PreprocessSpec())
    located = []
    for name, index, z in levels:
        try:
            k = slice_index(study, z, centre_rc)
            if not 0 <= k <= study.volume.shape[0] - 1:
                continue
            body = find_body(axial_slab(study.volume, study.spacing_mm, k), study.spacing_mm, centre_rc)
        except Exception:  # a level that cannot be delineated does not steer the profile
            continue
        located.append((name, index, z, k, body.yc, body.xc))
    if len(located) < 2:
        return []
    pitch_px = LEVEL_PITCH_MM / dz
    ks = [loc[3] for loc in located]
    lo = max(0, int(min(ks) - MARGIN_PITCH * pitch_px))
    hi = min(study.volume.shape[0] - 1, int(np.ceil(max(ks) + MARGIN_PITCH * pitch_px)))
    profile = body_profile(study, ks, [loc[4] for loc in located], [loc[5] for loc in located], lo, hi)
    discs = [lo + d for d in find_discs(profile, pitch_px)]
    z_of = lambda k: float(study.affine[2, 3] + dz * k + study.affine[2, 1] * centre_rc[0]  # noqa: E731
                           + study.affine[2, 2] * centre_rc[1])
    # runs between consecutive discs, superior -> inferior as T11..L5; None where the run is not a plausible body
    bodies = [(z_of(a) + z_of(b)) / 2.0 if PITCH_RANGE_MM[0] <= (b - a) * dz <= PITCH_RANGE_MM[1] else None
              for a, b in zip(discs[::-1][1:], discs[::-1][:-1], strict=True)]
    if sum(b is not None for b in bodies) < MIN_ASSIGNED:
        return []
    best: tuple[float, list[Move]] | None = None
    first = min(index for _, index, _ in levels)
    for offset in range(-len(levels), len(bodies)):
        slots = [(name, z, bodies[offset + index - first]) for name, index, z in levels
                 if 0 <= offset + index - first < len(bodies)]
        pairs = [(name, z, centre) for name, z, centre in slots if centre is not None]
        if len(pairs) < MIN_ASSIGNED:
            continue
        cost = sum(abs(z - b) for _, z, b in pairs) / len(pairs)
        if best is None or cost < best[0]:
            best = (cost, [Move(name, z, round(b, 1)) for name, z, b in pairs])
    if best is None:
        return []
    ends = {min(levels, key=lambda t: t[1])[0], max(levels, key=lambda t: t[1])[0]}
    moves = [m for m in best[1] if abs(m.to_z_mm - m.from_z_mm) > MOVE_MIN_MM]
    kept = [abs(m.to_z_mm - m.from_z_mm) for m in best[1] if m not in moves]
    disc_z = [z_of(k) for k in discs]
    if (not moves or any(m.level not in ends for m in moves)
            or len(kept) < MIN_ASSIGNED - 1 or float(np.mean(kept)) > AGREE_MM
            or any(abs(m.to_z_mm - m.from_z_mm) > MOVE_MAX_MM for m in moves)
            or any(min(abs(m.from_z_mm - d) for d in disc_z) > ON_DISC_PITCH * LEVEL_PITCH_MM for m in moves)):
        return []
    return moves


def checked_levels(study: Study, vertebrae: list[Vertebra]) -> tuple[list[Vertebra], list[str]]:
    """``vertebrae`` with the moves of :func:`check_levels` applied, and one warning per moved level."""
    found = [(v.level, i, float(v.z_mm)) for i, v in enumerate(vertebrae) if v.present and v.z_mm is not None]
    moves = {m.level: m for m in check_levels(study, found)}
    out = [replace(v, z_mm=moves[v.level].to_z_mm) if v.level in moves else v for v in vertebrae]
    warnings = [f"{m.level}: the model placed it at z {m.from_z_mm:.1f} mm, on a disc; the transparent level check "
                f"moved it to the centre of its body at z {m.to_z_mm:.1f} mm" for m in moves.values()]
    return out, warnings
