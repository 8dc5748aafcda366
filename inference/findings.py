"""Per-vertebra findings from the model outputs, in patient coordinates: bodies found, their names and how sure
the names are, and the coverage rule.

The graph outputs, per 4 mm position along the crop, the probability of each name class (the spec's levels,
``other`` vertebra, ``none``). A body is a peak of 1 - P(none) (:func:`find_bodies`), found whatever its name;
the bodies are named together by counting along them (:func:`name_bodies`: a chain over the levels in
anatomical order whose evidence is the model's name probabilities and the gaps between the bodies), each name's
confidence its posterior probability given every body found. Names are trusted only where an anchor of the
numbering is in view (the sacrum, or the last rib-bearing vertebra with the first lumbar under it): otherwise
every name is marked uncertain, and the result says so. Names never repeat or break the anatomical order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from inference.crop import Crop
from inference.errors import InputError
from inference.spec import COUNTED_LEVELS, LEVELS, OTHER
from inference.study import Study
from inference.thresholds import LEVEL_PITCH_MM, genant_grade

MIN_BODIES = 2
"""Fewest whole vertebral bodies of T10-L5 (or an L6) that must be found for a study to be scored."""
BODY_MIN = 0.5
"""Least 1 - P(none) at a peak for a body to be found."""
SEPARATION_MM = 20.0
"""Peaks closer than this are one body (the stronger kept): below every real pitch between neighbouring bodies
(T10-T11 5th percentile 23.6 mm in 2,116 real CTs, ../shared/real-spine/vid-keypoints)."""
SURE = 0.9
"""Name confidence at or above which a name (with an anchor in view) is reported as sure."""
ANCHOR_MIN = SURE
"""The model's own probability of an S1, or of a T12 and the L1 under it, for them to anchor the numbering: on
real CT the model's neighbouring names err together (a 90 mm slab's T12 and L1 named T11 and T12 with 0.78 and
0.83), so names that agree with each other are no anchor unless the model is sure of the anchor itself."""
EDGE_MM = 9.0
"""A body whose centre lies nearer than this to the end of the scanned data (the scan's edge, or the crop's) is
cut by it, not whole: not found. Below half the height of every whole T10-L5 body (about 10-15 mm)."""



@dataclass(frozen=True)
class Measured:
    """The transparent cross-check of one level (:mod:`inference.measure`): trabecular HU in an elliptical ROI
    and heights on the mid-sagittal plane, next to the learned values (heights are experimental)."""

    quality: str
    trabecular_hu: float | None = None
    height_anterior_mm: float | None = None
    height_middle_mm: float | None = None
    height_posterior_mm: float | None = None
    height_ratio: float | None = None
    trabecular_hu_corrected: float | None = None
    """The trabecular HU corrected for contrast enhancement (:func:`inference.contrast.corrected`); None when the
    scan is not enhanced (or not told) or the HU was not measured."""
    trabecular_hu_corrected_sd: float | None = None
    """SD (HU) of the corrected HU: the spread of the published offset it subtracts."""

    NUMBERS = ("trabecular_hu", "height_anterior_mm", "height_middle_mm", "height_posterior_mm", "height_ratio",
               "trabecular_hu_corrected", "trabecular_hu_corrected_sd")

    def to_json(self) -> dict[str, object]:
        """Result-JSON form."""
        return {"quality": self.quality} | {k: getattr(self, k) for k in self.NUMBERS}


@dataclass(frozen=True)
class Vertebra:
    """One level as reported to the user."""

    level: str
    present: bool
    genant_grade: int | None
    height_ratio: float | None
    trabecular_hu: float | None
    z_mm: float | None
    """Patient (LPS) z of the level centre."""
    measured: Measured | None = None
    """The transparent measurement of the level, when it was measured."""
    name_confidence: float | None = None
    """How sure the name is (0-1): with a trusted anchor of the numbering in view, the posterior probability of
    this name given every body found (:func:`name_bodies`); without one, the model's own probability of this name
    for this body alone."""
    name_uncertain: bool = False
    """The name is not sure: confidence below :data:`SURE`, no anchor of the numbering in view, a count that
    overruled a name the model is sure of (:attr:`Naming.overruled`), one that most bodies' own names do not
    corroborate (:attr:`Naming.agreement`), or one their own names contradict as strongly as a sure name
    (:attr:`Naming.conflict`)."""

    def name_label(self) -> str:
        """The name as shown to users: ``L2``, or ``L2? (0.62)`` when the name is uncertain."""
        if not self.name_uncertain:
            return self.level
        return f"{self.level}?" + (f" ({self.name_confidence:.2f})" if self.name_confidence is not None else "")

    def to_json(self) -> dict[str, object]:
        """Result-JSON form (``measured`` only when the level was measured)."""
        out: dict[str, object] = {"level": self.level, "present": self.present, "genant_grade": self.genant_grade,
                                  "height_ratio": self.height_ratio, "trabecular_hu": self.trabecular_hu,
                                  "z_mm": self.z_mm, "name_confidence": self.name_confidence,
                                  "name_uncertain": self.name_uncertain}
        if self.measured is not None:
            out["measured"] = self.measured.to_json()
        return out


@dataclass(frozen=True)
class Body:
    """A vertebral body found on the profile: where, how strongly, and its name."""

    z_mm: float
    """Centre, mm from the crop's first slice."""
    strength: float
    """1 - P(none) at the peak."""
    name: str
    """The most probable class among the levels and ``other``."""
    confidence: float
    """Probability of ``name`` among the body classes."""
    hu: float
    ratio: float
    probs: dict[str, float]
    """Probability of every body class (levels and ``other``) given that a body is there."""


def scanned_mm(crop: Crop) -> tuple[float, float]:
    """The z range (mm from the crop's first slice) that holds scanned data: a crop slice beyond the scan is all
    padding (-1000 HU), which no slice through a patient is."""
    filled = np.nonzero(crop.image.reshape(crop.image.shape[0], -1).max(axis=1) > -990.0)[0]
    if filled.size == 0:
        return 0.0, 0.0
    return float(filled[0]) * crop.spacing_mm[0], float(filled[-1] + 1) * crop.spacing_mm[0]


def find_bodies(outputs: dict[str, np.ndarray], classes: tuple[str, ...],
                window: tuple[float, float] | None = None) -> list[Body]:
    """The bodies of one study's profile outputs (``name_probs`` (C, Z), ``hu_profile``, ``ratio_profile``,
    ``profile_step_mm``), superior first: peaks of 1 - P(none) of at least :data:`BODY_MIN`, one per
    :data:`SEPARATION_MM`, the centre refined by a parabola through the peak and its neighbours. With the scanned
    ``window`` (:func:`scanned_mm`), a body centred within :data:`EDGE_MM` of its ends is cut, not found."""
    probs = np.asarray(outputs["name_probs"], dtype=np.float64)
    step = float(outputs["profile_step_mm"])
    body = 1.0 - probs[-1]
    n = body.size
    peaks = [i for i in range(n) if body[i] >= BODY_MIN
             and (i == 0 or body[i] >= body[i - 1]) and (i == n - 1 or body[i] > body[i + 1])]
    kept: list[int] = []
    for i in sorted(peaks, key=lambda k: -body[k]):
        if all(abs(i - k) * step >= SEPARATION_MM for k in kept):
            kept.append(i)
    out = []
    for i in kept:
        off = 0.0
        if 0 < i < n - 1:
            den = body[i - 1] - 2 * body[i] + body[i + 1]
            off = float(np.clip(0.5 * (body[i - 1] - body[i + 1]) / den, -0.5, 0.5)) if den < 0 else 0.0
        q = probs[:-1, i] / max(body[i], 1e-9)
        k = int(np.argmax(q))
        out.append(Body(z_mm=(i + 0.5 + off) * step, strength=float(body[i]), name=classes[k],
                        confidence=float(q[k]), hu=float(outputs["hu_profile"][i]),
                        ratio=float(outputs["ratio_profile"][i]),
                        probs={c: float(v) for c, v in zip(classes, q, strict=True)}))
    if window is not None:
        out = [b for b in out if window[0] + EDGE_MM <= b.z_mm <= window[1] - EDGE_MM]
    return sorted(out, key=lambda b: -b.z_mm)


@dataclass(frozen=True)
class Naming:
    """The names of the bodies found and what they say about the numbering."""

    names: tuple[str, ...]
    """One per body (superior first): a level, or ``other``."""
    confidence: tuple[float, ...]
    """How sure each name is: its posterior probability given every body found (:func:`name_bodies`)."""
    consistent: tuple[bool, ...]
    """Whether each name is the body's own most probable one (False: its neighbours' names chose it)."""
    anchors: tuple[str, ...]
    """Anchors of the numbering in view: ``sacrum``, ``last rib``."""
    transitional: str | None
    """``six lumbar vertebrae`` / ``four lumbar vertebrae`` where both anchors show it; else None."""
    overruled: tuple[str, ...] = ()
    """Bodies whose own name the model gives with at least :data:`OVERRULED` but the count along the spine
    changed (``L3 (0.95) counted as L2``): the numbering is in doubt and every name is uncertain."""
    conflict: float = 0.0
    """How strongly the bodies' own names contradict the count: the sum, over the bodies the count renamed, of
    the log ratio of the model's probability of the body's own name to that of the name counted for it."""
    gapless: bool = True
    """No gap between neighbouring bodies found spans :data:`MISSED_GAP` of the study's pitches or more (no body
    between them was missed): only then can two anchors check each other, since a missed body absorbs a count that
    is one level off."""

    @property
    def cross_checked(self) -> bool:
        """Both anchors in view with no body missed between the bodies counted: the count from one is checked by
        the other (what a transitional spine's count rests on)."""
        return len(self.anchors) == 2 and self.gapless

    @property
    def contested(self) -> bool:
        """The renamed bodies weigh against the count as much as one sure name overruled
        (:data:`CONFLICT_MAX`) and the two anchors do not check it (:attr:`cross_checked`)."""
        return self.conflict >= CONFLICT_MAX and not self.cross_checked

    @property
    def agreement(self) -> float:
        """Share of the bodies whose own most probable name is the name counted for them (1 with no body)."""
        return sum(self.consistent) / len(self.consistent) if self.consistent else 1.0

    @property
    def trusted(self) -> bool:
        """Whether sure names may be reported: an anchor in view, no confident name overruled, the bodies the
        count renamed not weighing against it as much as one (:data:`CONFLICT_MAX`), and the count corroborated by
        the bodies' own names (:data:`AGREEMENT_MIN`)."""
        return bool(self.anchors) and not self.overruled and self.agreement >= AGREEMENT_MIN and not self.contested

    def warnings(self, named: list[str]) -> list[str]:
        """Result warnings about the names."""
        out = []
        if named and not self.anchors:
            out.append("no anchor of the numbering (sacrum, last rib-bearing vertebra) in view: the names of the "
                       f"bodies found ({', '.join(named)}) are uncertain")
        if named and self.overruled:
            out.append("the count along the spine contradicts the model's own name of a body "
                       f"({'; '.join(self.overruled)}): every name is uncertain")
        elif named and self.anchors and self.agreement < AGREEMENT_MIN:
            out.append(f"the count along the spine agrees with the model's own names of only "
                       f"{sum(self.consistent)} of {len(self.consistent)} bodies: every name is uncertain")
        elif named and self.anchors and self.contested:
            out.append("the count along the spine renames bodies against the model's own names as strongly as "
                       f"it would overrule a sure name (odds {math.exp(self.conflict):.0f} : 1 against the "
                       "count): every name is uncertain")
        if self.transitional:
            out.append(f"transitional anatomy: {self.transitional} (numbered from the last rib-bearing vertebra "
                       "and the sacrum)")
        return out


P_TRANSITIONAL = 0.04
"""Prior probability of a spine with four lumbar vertebrae, and again of one with six (a few percent each in
published series; the share ``vfrisk synth --fov mixed`` draws)."""
P_MISSED = 0.05
"""Prior probability that a whole body between two bodies found was not found (the gap spans two levels)."""
GAP_SD = 0.2
"""SD of the log ratio of a gap between two bodies found to its expected length (the number of levels it spans
times the study's pitch): real pitches vary by level (T10-T11 about 25 mm, L3-L4 about 38 mm)."""
MAX_SPAN = 3
"""Most levels one gap between bodies found may span."""
AGREEMENT_MIN = 0.7
"""Least share of the bodies found whose own most probable name must be the counted one for the count to be
trusted: a model out of its domain can be sure of one wrong anchor (a model trained on family A alone names family
B's lower sacrum S1 with 1.00) and the count would carry it to every body; there, its own names of the other
bodies disagree with the count (on family B, 0 names left sure against 207, 10 % of them right, without this rule;
on in-domain validation cohorts it marks 2 % more names uncertain)."""
OVERRULED = SURE
"""Own name probability of a body at or above which the count may not change its name without casting doubt on
the whole numbering (on the real reference CT the count, trusting the model's weaker T12 and L1 above, would
otherwise shift the L3 it names with 0.95, and four bodies with it, by one level, and call them sure)."""


CONFLICT_MAX = math.log(OVERRULED / (1.0 - OVERRULED))
"""Least :attr:`Naming.conflict` that makes every name uncertain unless both anchors check the count
(:attr:`Naming.cross_checked`): as much evidence against the count as one name the model gives with
:data:`OVERRULED` (against 1 - that for the counted one) being overruled, whether it comes from one body or from
several less sure ones (on the real reference CT a retrained model's own names, L3 0.62 and L4 0.87, were both
counted one level lower: its count ran from a wrong last-rib anchor down to a pubis it named S1, a missed body
between, and came out sure)."""


MISSED_GAP = 1.5
"""A gap between two bodies found of at least this many of the study's pitches holds a body that was not found
(:attr:`Naming.gapless`): half-way between one pitch and two."""


def name_bodies(bodies: list[Body], levels: tuple[str, ...] = LEVELS) -> Naming:
    """Name the bodies found (superior first) by counting: a hidden Markov chain along the bodies whose states
    are the levels in anatomical order (``other`` above the first and below the last), whose emissions are the
    model's name probabilities and whose steps follow the anatomy (the next level, or the one after when a body
    between was not found, as the gap in mm says; L4 to S1 or L5 to L6 with :data:`P_TRANSITIONAL`). The names
    are the most probable consistent sequence; each name's confidence is its posterior probability given every
    body found (forward-backward), so an anchor in view (the sacrum, the last rib-bearing vertebra) fixes the
    names counted from it, and conflicting evidence lowers them. Names never repeat or break the order; a count
    that overrules a name the model is sure of (:data:`OVERRULED`) is recorded, and makes every name uncertain."""
    n, k = len(bodies), len(levels)
    if n == 0:
        return Naming((), (), (), (), None)
    m = k + 2  # states: 0 = other above, 1..k = level index + 1, k + 1 = other below
    emit = np.full((n, m), -np.inf)
    for i, b in enumerate(bodies):
        for j, lv in enumerate(levels):
            emit[i, j + 1] = np.log(max(b.probs.get(lv, 0.0), 1e-12))
        emit[i, 0] = emit[i, k + 1] = np.log(max(b.probs.get(OTHER, 0.0), 1e-12))
    steps, pitch = _step_matrices(levels), _study_pitch(bodies)
    trans = [_gap_transition(a.z_mm - b.z_mm, pitch, steps) for a, b in pairwise(bodies)]
    states = _viterbi(emit, trans)
    post = _posterior(emit, trans)
    names = tuple(OTHER if s in (0, k + 1) else levels[s - 1] for s in states)
    conf = tuple(float(post[i, s]) for i, s in enumerate(states))
    own = tuple(b.name == nm for b, nm in zip(bodies, names, strict=True))
    anchors, transitional = _anchors(bodies, names, conf)
    overruled = tuple(f"{b.name} ({b.confidence:.2f}) counted as {nm}" for b, nm in zip(bodies, names, strict=True)
                      if b.name != nm and b.confidence >= OVERRULED)
    conflict = sum(float(np.log(max(b.confidence, 1e-12) / max(b.probs.get(nm, 0.0), 1e-12)))
                   for b, nm in zip(bodies, names, strict=True) if b.name != nm)
    gapless = all(a.z_mm - b.z_mm < MISSED_GAP * pitch for a, b in pairwise(bodies))
    return Naming(names, conf, own, anchors, transitional, overruled, conflict, gapless)


def _step_matrices(levels: tuple[str, ...]) -> list[np.ndarray]:
    """Log prior of going from state a to state b in exactly 1, 2, ... :data:`MAX_SPAN` anatomical steps."""
    k = len(levels)
    m = k + 2
    one = np.full((m, m), -np.inf)
    one[0, 0] = one[0, 1] = 0.0  # above T10: more vertebrae above, or the first level
    one[k + 1, k + 1] = 0.0
    one[k, k + 1] = 0.0  # below the last level (S1): S2 and below
    at = {lv: j + 1 for j, lv in enumerate(levels)}
    for j in range(1, k):
        one[j, j + 1] = 0.0
    if {"L4", "L5", "L6", "S1"} <= set(at):  # four lumbar: L4 on the sacrum; six: L6 between L5 and S1
        p = P_TRANSITIONAL
        one[at["L4"], at["L5"]], one[at["L4"], at["S1"]] = np.log(1 - p), np.log(p)
        one[at["L5"], at["L6"]], one[at["L5"], at["S1"]] = np.log(p), np.log(1 - p)
    mats = [one]
    for _ in range(MAX_SPAN - 1):
        mats.append(np.logaddexp.reduce(mats[-1][:, :, None] + one[None, :, :], axis=1))
    return mats


def _study_pitch(bodies: list[Body]) -> float:
    """The study's pitch between neighbouring bodies (mm): the median gap, each gap first divided by the number
    of pitches it spans (a body not found doubles a gap)."""
    gaps = np.array([a.z_mm - b.z_mm for a, b in pairwise(bodies)])
    if gaps.size == 0:
        return LEVEL_PITCH_MM
    first = float(np.median(gaps))
    return float(np.median(gaps / np.maximum(1.0, np.round(gaps / first))))


def _gap_transition(gap: float, pitch: float, steps: list[np.ndarray]) -> np.ndarray:
    """Log transition matrix across one gap: each number of levels spanned, weighted by how well the gap fits
    it (log-normal about span x pitch, SD :data:`GAP_SD`) and by :data:`P_MISSED` per body not found."""
    out = np.full(steps[0].shape, -np.inf)
    for span, mat in enumerate(steps, start=1):
        fit = -np.log(max(gap, 1e-3) / (span * pitch)) ** 2 / (2 * GAP_SD ** 2) + (span - 1) * np.log(P_MISSED)
        out = np.logaddexp(out, mat + fit)
    return out


def _viterbi(emit: np.ndarray, trans: list[np.ndarray]) -> list[int]:
    """The state sequence of highest joint probability."""
    score, back = emit[0].copy(), []
    for i, t in enumerate(trans, start=1):
        cand = score[:, None] + t
        back.append(np.argmax(cand, axis=0))
        score = cand.max(axis=0) + emit[i]
    states = [int(np.argmax(score))]
    for b in reversed(back):
        states.append(int(b[states[-1]]))
    return states[::-1]


def _posterior(emit: np.ndarray, trans: list[np.ndarray]) -> np.ndarray:
    """(n, states) posterior probability of each state at each body (forward-backward, in logs)."""
    n = emit.shape[0]
    fwd, bwd = np.zeros_like(emit), np.zeros_like(emit)
    fwd[0] = emit[0]
    for i, t in enumerate(trans, start=1):
        fwd[i] = np.logaddexp.reduce(fwd[i - 1][:, None] + t, axis=0) + emit[i]
    for i in range(n - 2, -1, -1):
        bwd[i] = np.logaddexp.reduce(trans[i] + (emit[i + 1] + bwd[i + 1])[None, :], axis=1)
    joint = fwd + bwd
    return np.exp(joint - np.logaddexp.reduce(joint, axis=1, keepdims=True))


def _anchors(bodies: list[Body], names: tuple[str, ...],
             conf: tuple[float, ...]) -> tuple[tuple[str, ...], str | None]:
    """Anchors in view (an S1; a T12 with an L1), each a body the model itself names so with at least
    :data:`ANCHOR_MIN` (the count along the spine cannot make an anchor), and the transitional anatomy both
    anchors show (an L6, or an L4 on the sacrum, counted with a posterior of at least one half)."""
    own = {nm for b, nm in zip(bodies, names, strict=True) if b.probs.get(nm, 0.0) >= ANCHOR_MIN}
    anchors = tuple(a for a, ok in (("sacrum", "S1" in own), ("last rib", {"T12", "L1"} <= own)) if ok)
    counted = {nm for nm, c in zip(names, conf, strict=True) if c >= 0.5}
    transitional = None
    if len(anchors) == 2:
        if "L6" in counted:
            transitional = "six lumbar vertebrae"
        elif "L4" in counted and "L5" not in names:
            transitional = "four lumbar vertebrae"
    return anchors, transitional


def narrow_levels(found: Iterable[tuple[str, float]], crop: Crop) -> dict[str, float]:
    """Of the bodies ``found`` (name, centre in mm from the crop's first slice), the counted levels that lie in a
    section narrower than the trunk, with that section's width (:attr:`Crop.sections`, :mod:`inference.trunk`):
    what :func:`require_levels` does not count."""
    if crop.sections is None:
        return {}
    return {name: w for name, z_mm in found if name in COUNTED_LEVELS
            and (w := crop.sections.narrow(z_mm, crop.spacing_mm[0])) is not None}


def level_findings(levels: tuple[str, ...], outputs: dict[str, np.ndarray], crop: Crop,
                   study: Study) -> tuple[list[Vertebra], Naming, dict[str, float]]:
    """The levels of the spec as reported: each body found under its name (:func:`name_bodies`), in patient
    coordinates, with its name confidence and whether the name is uncertain; levels not found listed as not
    present (L6 only when found); S1 without findings. Third, the levels found in a section narrower than the
    trunk (:func:`narrow_levels`)."""
    bodies = find_bodies(outputs, (*levels, OTHER), scanned_mm(crop))
    naming = name_bodies(bodies, levels)
    narrow = _narrow_named(bodies, naming.names, crop)
    at = {nm: i for i, nm in enumerate(naming.names) if nm != OTHER}
    out = []
    for level in levels:
        if level not in at:
            if level != "L6":
                out.append(Vertebra(level, False, None, None, None, None))
            continue
        i = at[level]
        b = bodies[i]
        # the posterior counts along the spine from an anchor; without a trusted one, the model's own word on this
        # body alone (a count from nowhere would look sure of names that may all be one level off)
        conf = naming.confidence[i] if naming.trusted else b.probs.get(level, 0.0)
        j = b.z_mm / crop.spacing_mm[0] - 0.5
        origin = crop.slice_origin(j)  # the crop follows the column: each slice has its own in-plane origin
        rows = (origin[0] + crop.image.shape[1] / 2.0, origin[1] + crop.image.shape[2] / 2.0)
        lps = study.affine @ np.array([crop.start_index[0] + j, rows[0], rows[1], 1.0])
        uncertain = conf < SURE or not naming.trusted
        body = level != "S1"
        out.append(Vertebra(
            level=level, present=True,
            genant_grade=genant_grade(b.ratio) if body else None,
            height_ratio=round(b.ratio, 3) if body else None,
            trabecular_hu=round(b.hu, 1) if body else None,
            z_mm=round(float(lps[2]), 1), name_confidence=round(conf, 3), name_uncertain=uncertain,
        ))
    return out, naming, narrow


def counted_levels(vertebrae: list[Vertebra] | tuple[Vertebra, ...]) -> list[str]:
    """The found levels the coverage rule counts (T10-L5 and an L6)."""
    return [v.level for v in vertebrae if v.present and v.level in COUNTED_LEVELS]


def found_levels(levels: tuple[str, ...], outputs: dict[str, np.ndarray], crop: Crop | None = None) -> list[str]:
    """The counted levels (T10-L6) of the bodies found on one study's outputs (whole in ``crop``'s scanned range
    when given): what ``vfrisk predict`` and ``vfrisk score`` compare crops by and apply the coverage rule to."""
    bodies = find_bodies(outputs, (*levels, OTHER), None if crop is None else scanned_mm(crop))
    return sorted({b.name for b in bodies if b.name in COUNTED_LEVELS}, key=levels.index)


def _narrow_named(bodies: list[Body], names: tuple[str, ...], crop: Crop) -> dict[str, float]:
    """:func:`narrow_levels` of the bodies under the names the count gave them."""
    return narrow_levels(((nm, b.z_mm) for b, nm in zip(bodies, names, strict=True)), crop)


def coverage_levels(levels: tuple[str, ...], bodies: list[Body],
                    crop: Crop) -> tuple[list[str], dict[str, float]]:
    """What the coverage rule (:func:`require_levels`) is given for the bodies found (superior first): the
    counted levels (T10-L6) under the names the count along the spine gives them (:func:`name_bodies`, as
    :func:`level_findings` reports them to ``vfrisk predict``), in the spec's order, and those of them found in a
    section narrower than the trunk (:func:`narrow_levels`). ``vfrisk score`` refuses and scores by this, so that
    a batch row and ``vfrisk predict`` on the same study agree."""
    names = name_bodies(bodies, levels).names
    present = sorted({nm for nm in names if nm in COUNTED_LEVELS}, key=levels.index)
    return present, _narrow_named(bodies, names, crop)


def spine_midpoint_index(levels: tuple[str, ...], outputs: dict[str, np.ndarray], crop: Crop) -> float | None:
    """Slice index where the midpoint of ``levels`` should be, estimated from the bodies found in ``crop``.

    Used to re-centre the crop along z when a long scan (chest-abdomen-pelvis) puts part of the spine outside
    the first crop. None when nothing was found.
    """
    bodies = [b for b in find_bodies(outputs, (*levels, OTHER)) if b.name in levels]
    if not bodies:
        return None
    mid = (len(levels) - 1) / 2.0
    estimates = [b.z_mm - (mid - levels.index(b.name)) * LEVEL_PITCH_MM for b in bodies]
    return crop.start_index[0] + float(np.mean(estimates)) / crop.spacing_mm[0] - 0.5


RECENTRE_MIN_MM = 20.0
"""A second, re-centred crop is tried only when the spine's midpoint is at least this far from the first one's."""


def recentre_target(levels: tuple[str, ...], outputs: dict[str, np.ndarray], crop: Crop) -> float | None:
    """Slice index to centre a second crop on when ``crop`` missed some of T10-S1 and the spine it found lies at
    least ``RECENTRE_MIN_MM`` from its centre; None to keep ``crop``. The one rule of
    ``vfrisk predict`` (:meth:`inference.engine.Engine.locate`) and ``vfrisk score``."""
    named = {b.name for b in find_bodies(outputs, (*levels, OTHER))}
    if all(lv in named for lv in levels if lv != "L6"):  # T10 to S1 all in the crop
        return None
    target = spine_midpoint_index(levels, outputs, crop)
    current = crop.start_index[0] + (crop.image.shape[0] - 1) / 2.0
    if target is None or abs(target - current) * crop.spacing_mm[0] < RECENTRE_MIN_MM:
        return None
    return target


class NotCoveredError(InputError):
    """``spine_not_covered`` raised by :func:`coverage`, with the bodies that were found (``found``: the present
    levels as they would have been reported, names and positions), for a caller that shows or checks where they
    are; its message is the one-line refusal."""

    def __init__(self, message: str, found: tuple[Vertebra, ...]) -> None:
        super().__init__("spine_not_covered", message)
        self.found = found


def coverage(vertebrae: list[Vertebra], narrow: dict[str, float] | None = None) -> list[str]:
    """Refuse a scan showing fewer than :data:`MIN_BODIES` whole bodies of T10-L5 in the trunk (``narrow``: the
    levels found in a section too narrow for the trunk, :mod:`inference.trunk`) with :class:`NotCoveredError`; return
    the warning naming the levels of T10-L5 not seen."""
    try:
        require_levels(counted_levels(vertebrae), narrow)
    except InputError as exc:
        raise NotCoveredError(exc.message, tuple(v for v in vertebrae if v.present)) from None
    missing = [v.level for v in vertebrae if not v.present and v.level in COUNTED_LEVELS and v.level != "L6"]
    return [f"levels not seen: {', '.join(missing)}; scored on the levels found, with an interval widened for "
            "what is missing"] if missing else []


def require_levels(found: list[str], narrow: dict[str, float] | None = None) -> None:
    """The coverage rule of ``vfrisk predict`` and ``vfrisk score``: refuse (``spine_not_covered``, naming the
    levels found) a scan in which fewer than :data:`MIN_BODIES` whole bodies of T10-L5 were found in the trunk;
    ``narrow`` maps the levels found in a section narrower than the trunk to that section's width (mm)."""
    narrow = narrow or {}
    counted = [lv for lv in found if lv not in narrow]
    if len(counted) < MIN_BODIES:
        listed = ", ".join(counted) if counted else "none"
        outside = "".join(f"; {lv} found in a section {w:.0f} mm wide (a neck or a limb, not the trunk)"
                          for lv, w in narrow.items() if lv in found)
        raise InputError("spine_not_covered",
                         f"fewer than {MIN_BODIES} whole vertebral bodies of T10-L5 in the field: levels found: "
                         f"{listed}{outside}")
