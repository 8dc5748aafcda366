"""Contrast enhancement: is the scan enhanced, in which phase, and the trabecular HU corrected for it.

Contrast-enhanced CTs read higher trabecular HU than unenhanced ones, by an amount that depends on the phase.
The model's risk is learned from unenhanced-bone HU relationships, so an enhanced scan is named as such, its phase
reported, and each measured trabecular HU given beside a contrast-corrected one whose uncertainty carries the
spread of the published offset.

Two sources, each of which may be silent (missing is missing, never "unenhanced"):

* **The aorta** (:func:`read_aorta`). On an axial slab through each vertebral body found at T10-L4 (above the
  aortic bifurcation), the descending aorta is looked for in front of the vertebral column and to its left
  (:func:`lumen_hu`): a lumen-sized, round, filled and even region of enhanced blood (``ENHANCED_MIN_HU`` to
  ``LUMEN_MAX_HU``, at several lower bounds so that a lumen pressed against the body stands apart from it), not
  enclosed by bone (the body's own cancellous bone is), not touching the edge of the search window (the heart,
  the liver), not right of the column (the vena cava). Its HU is the median of its core. A level whose column
  point is off the spine, or whose surroundings are not in view (outside the scan, or mostly air), does not
  count. The study is enhanced when a lumen is found at more than a third of the levels that count (the aorta
  merges with enhanced bowel or pancreas at some levels) and at two of them at least (``MIN_HITS``; at the one
  level when only one counts), its aortic HU the median over those levels; unenhanced otherwise; not told when no
  level counts. Checked on phantom families A and B and on two real scans: README,
  "Contrast-enhanced scans".
* **The header** (:func:`header_says`): the Contrast/Bolus module's agent and route (:class:`ContrastTags`,
  read by :mod:`inference.dicom.contrast`). An agent named (not a "none"), or an intravenous route, says
  enhanced; an agent that says "none" says unenhanced; no tags, an empty agent, an oral or rectal route only, or
  a NIfTI file (no header) say nothing.

Phase, from the aortic lumen HU: ``arterial`` from ``ARTERIAL_MIN_HU``, ``portal_venous`` from
``ENHANCED_MIN_HU`` (a delayed phase also lands here). When the header says contrast but the aorta cannot be
read, or reads unenhanced, the phase is ``enhanced_unknown_phase`` (the header wins: a tag copied onto a
pre-contrast series is rarer than a delayed phase the aorta no longer shows); when the header says none but the
aorta is enhanced, the aorta is believed. The correction per phase is in :data:`CORRECTIONS` with its source.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from inference.findings import Measured, Vertebra
from inference.study import ContrastTags, Study

Phase = Literal["none", "arterial", "portal_venous", "enhanced_unknown_phase"]
PHASES: tuple[str, ...] = ("none", "arterial", "portal_venous", "enhanced_unknown_phase")
SOURCES: tuple[str, ...] = ("aorta", "header", "both")

ENHANCED_MIN_HU = 100.0
"""Aortic lumen HU from which blood is enhanced. Unenhanced blood reads 30-60 HU (about 70 with a high
haematocrit); bolus-tracking protocols wait for the aorta to rise by 100 HU (e.g. Kanematsu et al., Open J Radiol
2013) before the delay to the phase starts. 100 HU leaves room for noise on both sides."""
ARTERIAL_MIN_HU = 230.0
"""Aortic lumen HU from which the phase is arterial. The late arterial phase peaks at 290-360 HU in the aorta
(Radiopaedia, "Late arterial phase", rev. 2023); in the portal venous phase the aorta falls back to about
130-200 HU (a typical range, not verified against one source here). 230 HU lies between the two; the check on
family B (``python -m training.contrast_check``) measures how often it errs."""
LUMEN_MAX_HU = 700.0
"""Above this a voxel is bone or calcified plaque, not an opacified lumen (kept out of the lumen mask)."""
LUMEN_DIAMETER_MM = (12.0, 40.0)
"""Equivalent diameter of an aortic lumen (normal 15-25 mm at T10-L3; a large aneurysm is missed)."""
MIN_ROUNDNESS = 0.65
"""Area over the area of the circle through its farthest point: 1 for a disc, 0.67 for a 3:2 ellipse."""
WINDOW_MM = (100.0, 35.0, 60.0)
"""Search window from the column point: this far in front of it, to its right and to its left (the aorta runs in
front of the spine and to its left, the vena cava to its right)."""
LUMEN_THRESHOLDS_HU: tuple[float, ...] = (ENHANCED_MIN_HU, 150.0, 200.0, 250.0, 300.0)
"""Lower HU bounds at which lumen candidates are looked for, lowest first."""
OPENING_MM = 5.0
"""Radius of the opening that cuts a lumen from a body or organ it touches (necks under 10 mm)."""
AHEAD_MM = 5.0
"""A lumen is centred at least this far in front of the column point."""
CLEAR_MM = 3.0
"""A lumen's edge is at least this far from the column point (a region round it is the vertebral body)."""
MAX_SPREAD_HU = 100.0
"""Largest interquartile range of a lumen's core HU (pieces of cortex carved out by the opening spread over
200 HU)."""
MAX_ENCLOSED = 0.25
"""Largest share of the rays from a lumen that meet bone: a lumen lies against the spine on one side at most. In
test-b and test-fov, 99 % of the round regions found in enhanced studies meet bone on 4 of 16 rays or fewer, and
90 % of those found in unenhanced studies (pieces of vertebral body) on 5 or more."""
RIGHT_LIMIT_MM = -10.0
"""Regions centred further right of the column than this are not the aorta (the vena cava runs there)."""
CANAL_HU = (-150.0, 120.0)
"""HU range of a spinal canal on the smoothed slab (CSF, cord and epidural fat, with noise)."""
CANAL_BONE_HU = 100.0
"""Least HU of the bone in front of a canal (the vertebral body, smoothed: an osteoporotic body on 3 mm pixels
reads little more than 120 HU)."""
BRIGHTER_HU = 50.0
"""A pixel this much brighter than a candidate's core is bone (or calcified plaque)."""
RAYS = 16
"""Rays cast from a candidate to measure how far bone encloses it."""
ENCLOSURE_MM = 15.0
"""How far beyond a candidate's edge the rays reach (a vertebral body's cancellous bone is within this of its
cortex all round)."""
SEARCH_PIXEL_MM = 1.5
"""Slabs with pixels finer than this are searched on blocks of pixels of about this size (the opening costs the
fourth power of the pixel count across a lumen)."""
COLUMN_SLAB_MM = 15.0
"""The column at a level is found on the slices within this distance of it."""
MIN_HITS = 2
"""Levels with a lumen needed when two or more were looked at (one stray round region is not an aorta)."""
AORTA_LEVELS: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4")
"""Levels at which the aorta is looked for (above its bifurcation, at about L4)."""


@dataclass(frozen=True)
class Correction:
    """A published trabecular-HU offset of enhancement for one phase: corrected = measured - offset, with the
    offset's SD carried into the corrected HU's uncertainty."""

    offset_hu: float
    sd_hu: float
    cite: str
    """Short citation (``Pompe 2015``)."""
    source: str
    """Full citation, with what the numbers are."""

    def to_json(self) -> dict[str, Any]:
        """Result-JSON form."""
        return {"offset_hu": self.offset_hu, "sd_hu": self.sd_hu, "cite": self.cite, "source": self.source}

    @classmethod
    def from_json(cls, value: Any) -> Correction:
        """Validate the ``contrast.correction`` object of a result JSON; ``ValueError`` naming the bad field."""
        if not isinstance(value, Mapping):
            raise ValueError("result.contrast.correction: an object or null is required")
        offset, sd = _number(value.get("offset_hu"), "correction.offset_hu"), _number(value.get("sd_hu"),
                                                                                     "correction.sd_hu")
        if offset is None or sd is None or not value.get("source"):
            raise ValueError("result.contrast.correction: offset_hu, sd_hu and source are required")
        return cls(offset, sd, str(value.get("cite") or ""), str(value["source"]))


PICKHARDT_2016 = ("Pickhardt PJ, Lauder T, Pooler BD, et al. Effect of IV contrast on lumbar trabecular attenuation "
                  "at routine abdominal CT: correlation with DXA and implications for opportunistic osteoporosis "
                  "screening. Osteoporos Int 2016;27:147-52 (L1, 157 adults, enhanced minus unenhanced series: "
                  "+11.2 HU, SD 19.2)")
POMPE_2015 = ("Pompe E, Willemink MJ, Dijkhuis GR, et al. Intravenous contrast injection significantly affects bone "
              "mineral density measured on CT. Eur Radiol 2015;25:283-9 (L1, 99 patients without malignancy: "
              "arterial +13.5 HU, portal venous +18.2 HU; the SD of the difference is not in the abstract, so "
              "Pickhardt 2016's 19.2 HU is carried)")
CORRECTIONS: Mapping[str, Correction] = {
    "arterial": Correction(13.5, 19.2, "Pompe 2015", POMPE_2015),
    "portal_venous": Correction(11.2, 19.2, "Pickhardt 2016", PICKHARDT_2016),
    "enhanced_unknown_phase": Correction(11.2, 19.2, "Pickhardt 2016", PICKHARDT_2016),
}
"""One rule per enhanced phase. Arterial: Pompe 2015, the one study with an arterial figure (the same patients'
unenhanced, arterial and portal venous series). Portal venous: Pickhardt 2016 rather than Pompe's +18.2 HU, because
it reports the SD of the paired difference (what the uncertainty needs) on more patients; its enhanced series are
routine abdominal CT, which is portal venous in the main, though its abstract does not name the phase. Unknown
phase: Pickhardt 2016 too, its enhanced series not being chosen by phase. The two studies' portal venous offsets
(11.2 and 18.2 HU) differ by less than the 19.2 HU SD carried."""


@dataclass(frozen=True)
class Contrast:
    """What is known about the scan's contrast enhancement."""

    phase: Phase | None
    """``none``, ``arterial``, ``portal_venous``, ``enhanced_unknown_phase``; None when it cannot be told."""
    source: str | None = None
    """What told it: ``aorta``, ``header`` or ``both`` (None with the phase)."""
    aorta_hu: float | None = None
    """Median HU of the enhanced aortic lumen (None when no enhanced lumen was found)."""
    aorta_levels: tuple[str, ...] = ()
    """Levels at which the enhanced lumen was found."""
    header: bool | None = None
    """What the header's contrast tags say: True enhanced, False unenhanced, None not given."""
    correction: Correction | None = None
    """The trabecular-HU correction of the phase (None unless enhanced)."""

    @property
    def enhanced(self) -> bool:
        """The scan is contrast-enhanced (in any phase)."""
        return self.phase not in (None, "none")

    def label(self) -> str:
        """The phase in words: ``arterial phase``, ``portal venous phase``, ``enhanced, phase unknown``,
        ``unenhanced``, ``not told``."""
        return {"arterial": "arterial phase", "portal_venous": "portal venous phase",
                "enhanced_unknown_phase": "enhanced, phase unknown", "none": "unenhanced",
                None: "not told"}[self.phase]

    def warnings(self) -> list[str]:
        """The one-line warning on the probability when the scan is enhanced (none otherwise)."""
        if not self.enhanced:
            return []
        told = "the aorta and the header" if self.source == "both" else f"the {self.source}"
        return [f"contrast-enhanced scan ({self.label()}, from {told}): the model's risk is learned from "
                "unenhanced-bone HU relationships"]

    def summary(self) -> str:
        """One line for the reports: the phase, what told it, the aortic HU, and the correction of the measured
        trabecular HU with its source."""
        told = {"both": "the aorta and the header", None: "neither the aorta nor the header"}.get(
            self.source, f"the {self.source}")
        line = f"Contrast: {self.label()} (from {told}"
        line += f"; aorta {self.aorta_hu:.0f} HU)." if self.aorta_hu is not None else ")."
        if self.correction is not None:
            c = self.correction
            line += (f" Measured trabecular HU corrected by -{c.offset_hu:g} HU, its SD {c.sd_hu:g} HU carried into "
                     f"the corrected HU ({c.cite}).")
        return line

    def to_json(self) -> dict[str, Any]:
        """Result-JSON form."""
        return {"phase": self.phase, "source": self.source, "aorta_hu": self.aorta_hu,
                "aorta_levels": list(self.aorta_levels), "header": self.header,
                "correction": None if self.correction is None else self.correction.to_json()}

    @classmethod
    def from_json(cls, value: Any) -> Contrast:
        """Validate the ``contrast`` object of a result JSON; ``ValueError`` naming the bad field."""
        if not isinstance(value, Mapping):
            raise ValueError("result.contrast: an object is required")
        phase, source = value.get("phase"), value.get("source")
        if phase is not None and phase not in PHASES:
            raise ValueError(f"result.contrast.phase: {phase!r} is not one of {', '.join(PHASES)}")
        if source is not None and source not in SOURCES:
            raise ValueError(f"result.contrast.source: {source!r} is not one of {', '.join(SOURCES)}")
        header = value.get("header")
        if header is not None and not isinstance(header, bool):
            raise ValueError(f"result.contrast.header: expected true, false or null, got {header!r}")
        corr = value.get("correction")
        return cls(phase=phase, source=source, aorta_hu=_number(value.get("aorta_hu"), "aorta_hu"),
                   aorta_levels=tuple(str(x) for x in value.get("aorta_levels") or ()), header=header,
                   correction=None if corr is None else Correction.from_json(corr))


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"result.contrast.{name}: expected a finite number, got {value!r}")
    return float(value)


NEGATIVE_WORDS = frozenset({"NONE", "NO", "N", "NIL", "NO CONTRAST", "WITHOUT", "WO", "NON", "NATIVE", "0"})
"""Contrast agent values that say no contrast was given."""
NON_VASCULAR_ROUTES = frozenset({"ORAL", "PO", "RECTAL", "PR", "INTRARECTAL", "ENTERAL"})
"""Routes that do not opacify the blood: oral or rectal contrast alone does not enhance bone."""


def header_says(tags: ContrastTags | None) -> bool | None:
    """What the header's contrast tags say about intravenous enhancement: True (an agent named, or an
    intravenous route), False (the agent says none), None (no header, no tags, an empty agent, or an oral or
    rectal route only)."""
    if tags is None:
        return None
    agent = (tags.agent or "").strip().upper()
    route = (tags.route or "").strip().upper()
    if agent in NEGATIVE_WORDS:
        return False
    if route in NON_VASCULAR_ROUTES:
        return None
    if agent or route in ("IV", "INTRAVENOUS", "INTRA-VENOUS", "INTRAARTERIAL", "INTRA-ARTERIAL", "IA"):
        return True
    return None


def phase_of(aorta_hu: float) -> Phase:
    """Phase from the aortic lumen HU: ``arterial`` from :data:`ARTERIAL_MIN_HU`, ``portal_venous`` from
    :data:`ENHANCED_MIN_HU`, else ``none``."""
    if aorta_hu >= ARTERIAL_MIN_HU:
        return "arterial"
    return "portal_venous" if aorta_hu >= ENHANCED_MIN_HU else "none"


@dataclass(frozen=True)
class AortaReading:
    """What the aorta says: the enhanced lumen's HU (None: no enhanced lumen where it should be), the levels it
    was found at, and how many levels could be looked at."""

    hu: float | None
    levels: tuple[str, ...]
    looked: int

    @property
    def phase(self) -> Phase | None:
        """The phase the aorta tells (None when no level could be looked at)."""
        if self.looked == 0:
            return None
        return "none" if self.hu is None else phase_of(self.hu)


def decide(reading: AortaReading, header: bool | None) -> Contrast:
    """Join the aorta's reading and the header's word into one :class:`Contrast` (rules in the module
    docstring)."""
    seen = reading.phase
    phase: Phase | None
    if seen is None:
        phase, source = (None, None) if header is None else (
            "enhanced_unknown_phase" if header else "none", "header")
    elif header is None:
        phase, source = seen, "aorta"
    elif header and seen == "none":
        phase, source = "enhanced_unknown_phase", "header"
    else:
        phase, source = seen, "both" if header == (seen != "none") else "aorta"
    return Contrast(phase=phase, source=source, aorta_hu=reading.hu, aorta_levels=reading.levels, header=header,
                    correction=CORRECTIONS.get(phase) if phase is not None else None)


def assess(study: Study, vertebrae: Iterable[Vertebra]) -> Contrast:
    """The scan's contrast enhancement from the aorta at the levels found (``vertebrae``, those of
    :data:`AORTA_LEVELS`) and from the header's contrast tags."""
    found = [(v.level, float(v.z_mm)) for v in vertebrae
             if v.present and v.z_mm is not None and v.level in AORTA_LEVELS]
    return decide(read_aorta(study, found), header_says(study.contrast_tags))


def read_aorta(study: Study, levels: Sequence[tuple[str, float]],
               centre_rc: tuple[int, int] | None = None) -> AortaReading:
    """Look for the enhanced aortic lumen beside each ``(level, patient z mm)`` given; see the module docstring.
    ``centre_rc``, the in-plane (row, column) of the vertebral column when known (a mask's centroid), replaces the
    column found near each level."""
    looked: list[tuple[str, float | None]] = []
    whole: list[tuple[int, int]] = []  # the column of the whole scan, found once when a level needs it
    for level, z_mm in levels:
        spot = _level_slab(study, z_mm, centre_rc, whole)
        if spot is not None and in_view(*spot):
            looked.append((level, lumen_hu(*spot)))
    hits = [(lv, hu) for lv, hu in looked if hu is not None]
    if not looked or 3 * len(hits) <= len(looked) or len(hits) < min(MIN_HITS, len(looked)):
        return AortaReading(None, (), len(looked))
    return AortaReading(round(float(np.median([hu for _, hu in hits])), 1), tuple(lv for lv, _ in hits),
                        len(looked))


def _level_slab(study: Study, z_mm: float, centre_rc: tuple[int, int] | None, whole: list[tuple[int, int]]
                ) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]] | None:
    """The axial slab through patient z ``z_mm`` (6 mm thick, smoothed; in blocks of about ``SEARCH_PIXEL_MM``), its
    pixel size and the column point there, or None when the level is outside the scan or no column point on the
    spine is found.

    The column point is ``centre_rc`` when given; else the one found on the slices within ``COLUMN_SLAB_MM`` of the
    level (the spine curves: one point for the whole scan can miss a body by 20 mm), and when that is off the spine
    (:func:`on_spine`), the whole scan's (kept in ``whole``)."""
    from inference.crop import spine_center
    from inference.measure import axial_slab
    from inference.spec import PreprocessSpec

    vol, sp, a = study.volume, study.spacing_mm, study.affine
    if abs(a[2, 0]) < 1e-6:
        return None
    k = float((z_mm - a[2, 3] - a[2, 1] * (vol.shape[1] - 1) / 2 - a[2, 2] * (vol.shape[2] - 1) / 2) / a[2, 0])
    if not 0.0 <= k <= vol.shape[0] - 1:
        return None
    slab = axial_slab(vol, sp, k, half_mm=3.0)
    if centre_rc is None:
        n = max(1, round(COLUMN_SLAB_MM / sp[0]))
        centre_rc = spine_center(vol[max(0, round(k) - n): round(k) + n + 1], sp, PreprocessSpec())
        if not on_spine(slab, sp, centre_rc):
            if not whole:
                whole.append(spine_center(vol, sp, PreprocessSpec()))
            centre_rc = whole[0]
    if not on_spine(slab, sp, centre_rc):
        return None
    f = max(1, int(SEARCH_PIXEL_MM // min(sp[1], sp[2])))  # fine pixels: searched on coarser ones, in blocks
    if f > 1:
        h, w = slab.shape[0] // f * f, slab.shape[1] // f * f
        slab = slab[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    return slab, (sp[1] * f, sp[2] * f), (centre_rc[0] // f, centre_rc[1] // f)


def on_spine(slab: np.ndarray, sp: tuple[float, float, float], centre_rc: tuple[int, int]) -> bool:
    """Whether a column point lies on the spine: a spinal canal (:func:`inference.measure._canal_row`) of CSF or
    fat (``CANAL_HU``) on the slab's AP profile through it, with bone (``CANAL_BONE_HU``) within 35 mm in front."""
    from inference.measure import _band, _canal_row, _FailedError

    row, col = centre_rc
    ap = _band(slab, col, 4.0 / sp[2], axis=1)
    try:
        canal = _canal_row(ap, sp[1], row)
    except _FailedError:
        return False
    front = ap[max(0, canal - round(35.0 / sp[1])):canal]
    return bool(CANAL_HU[0] <= ap[canal] <= CANAL_HU[1] and front.size > 0 and float(front.max()) >= CANAL_BONE_HU)


def in_view(slab: np.ndarray, spacing_yx: tuple[float, float], column: tuple[int, int]) -> bool:
    """Whether the aorta's place, in front of and left of the vertebral body (15-70 mm in front of the column
    point, from 10 mm right to 40 mm left of it), is in view: at least 80 % of it inside the slab and half of that
    tissue rather than air."""
    sy, sx = spacing_yx
    row, col = column
    near = _clip(slab, (row - 70.0 / sy, row - 15.0 / sy), (col - 10.0 / sx, col + 40.0 / sx))
    return near is not None and float(np.mean(slab[near] > -500.0)) >= 0.5


def lumen_hu(slab: np.ndarray, spacing_yx: tuple[float, float], column: tuple[int, int]) -> float | None:
    """HU of the enhanced round lumen nearest the vertebral column on an axial slab (rows run anterior to
    posterior, columns right to left), given the ``column`` point (in the vertebral body or just behind it); None
    when there is none.

    Candidates (:class:`Candidate`) are the regions between each of ``LUMEN_THRESHOLDS_HU`` and ``LUMEN_MAX_HU``
    left after an opening by a disc of ``OPENING_MM``, inside the search window (``WINDOW_MM``) and not touching its
    edge: a lumen touching the body at a low threshold stands apart at one above the body's HU. A candidate must be
    lumen-sized, round and filled, even (``MAX_SPREAD_HU``: not a piece of cortex), not enclosed by bone
    (``MAX_ENCLOSED``: not the body's cancellous bone), centred ``AHEAD_MM`` in front of the column point and
    left of ``RIGHT_LIMIT_MM`` (not the vena cava), its edge ``CLEAR_MM`` clear of the column point. The reading is
    the median HU of the core of the candidate nearest the column point, the highest over the thresholds at which
    it stands (a homogeneous lumen reads alike at each; in a dissected aorta the opacified true lumen, which tells
    the phase, stands alone above the false lumen's HU).
    """
    sy, sx = spacing_yx
    row, col = column
    box = _clip(slab, (row - WINDOW_MM[0] / sy, row + 10.0 / sy), (col - WINDOW_MM[1] / sx, col + WINDOW_MM[2] / sx),
                0.0)
    if box is None:
        return None
    placed = []
    for t in LUMEN_THRESHOLDS_HU:
        for c in _candidates(slab[box], (sy, sx), t):
            ahead, left = (row - box[0].start - c.row) * sy, (box[1].start + c.col - col) * sx
            clear = math.hypot(ahead, left) - c.radius_mm
            if (c.spread_hu <= MAX_SPREAD_HU and c.enclosed <= MAX_ENCLOSED and ahead >= AHEAD_MM
                    and left >= RIGHT_LIMIT_MM and clear >= CLEAR_MM):
                placed.append((clear, ahead, left, c.radius_mm, c.hu))
    if not placed:
        return None
    nearest = min(placed)
    same = [p[4] for p in placed if math.hypot(p[1] - nearest[1], p[2] - nearest[2]) < nearest[3]]
    return round(max(same), 1)


@dataclass(frozen=True)
class Candidate:
    """A round region of enhanced-blood HU on an axial slab (window coordinates)."""

    hu: float
    """Median HU of its core (the inner 60 % of its radius)."""
    row: float
    col: float
    radius_mm: float
    spread_hu: float
    """Interquartile range of its core's HU (a lumen is even; a piece of cortex is not)."""
    enclosed: float
    """Share of the rays from it (``RAYS``, out to ``ENCLOSURE_MM`` beyond its edge) that meet a pixel brighter than
    its core by ``BRIGHTER_HU``: most do from a vertebral body's cancellous bone (its cortex all round), a few from
    a lumen (where it lies against the spine)."""


def _candidates(window: np.ndarray, spacing_yx: tuple[float, float], threshold: float) -> list[Candidate]:
    """Lumen-sized, round and filled regions (:func:`_round_lumen`) of ``threshold`` to ``LUMEN_MAX_HU`` in
    ``window`` after the opening, not touching its edge (an organ reaching into the window, not a vessel in it)."""
    from scipy import ndimage

    sy, sx = spacing_yx
    mask = ndimage.binary_opening((window >= threshold) & (window <= LUMEN_MAX_HU),
                                  structure=_disc(OPENING_MM, sy, sx))
    labels, _ = ndimage.label(mask)
    pad = (math.ceil(6.0 / sy), math.ceil(6.0 / sx))
    out = []
    for i, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None or min(where[0].start, where[1].start) == 0 or where[0].stop == mask.shape[0] \
                or where[1].stop == mask.shape[1]:
            continue
        box = (slice(max(0, where[0].start - pad[0]), where[0].stop + pad[0]),
               slice(max(0, where[1].start - pad[1]), where[1].stop + pad[1]))
        found = _round_lumen(window[box], labels[box] == i, sy, sx)
        if found is not None:
            at = replace(found, row=found.row + box[0].start, col=found.col + box[1].start)
            out.append(replace(at, enclosed=_enclosure(window, at, sy, sx)))
    return out


def _enclosure(window: np.ndarray, c: Candidate, sy: float, sx: float) -> float:
    """Share of ``RAYS`` rays from the candidate's edge out to ``ENCLOSURE_MM`` beyond it that meet a pixel brighter
    than its core by ``BRIGHTER_HU`` (rays leaving the window meet nothing)."""
    angles = np.linspace(0.0, 2.0 * np.pi, RAYS, endpoint=False)
    reach = c.radius_mm + np.arange(1.0, ENCLOSURE_MM + 0.5, min(sy, sx) / 2.0)
    rows = np.rint(c.row + np.outer(np.sin(angles), reach) / sy).astype(int)
    cols = np.rint(c.col + np.outer(np.cos(angles), reach) / sx).astype(int)
    inside = (rows >= 0) & (rows < window.shape[0]) & (cols >= 0) & (cols < window.shape[1])
    values = np.where(inside, window[rows.clip(0, window.shape[0] - 1), cols.clip(0, window.shape[1] - 1)], -np.inf)
    return float(np.mean((values > c.hu + BRIGHTER_HU).any(axis=1)))


def _clip(img: np.ndarray, rows: tuple[float, float], cols: tuple[float, float],
          inside: float = 0.8) -> tuple[slice, slice] | None:
    """The part of a row and column range inside ``img``; None when less than ``inside`` of it is."""
    r0, r1, c0, c1 = round(rows[0]), round(rows[1]), round(cols[0]), round(cols[1])
    nominal = max(0, r1 - r0) * max(0, c1 - c0)
    r0c, r1c, c0c, c1c = max(0, r0), min(img.shape[0], r1), max(0, c0), min(img.shape[1], c1)
    if nominal == 0 or r1c <= r0c or c1c <= c0c or (r1c - r0c) * (c1c - c0c) < inside * nominal:
        return None
    return slice(r0c, r1c), slice(c0c, c1c)


def _round_lumen(values: np.ndarray, inside: np.ndarray, sy: float, sx: float) -> Candidate | None:
    """The region ``inside`` as a :class:`Candidate` (its enclosure not yet measured) when it is lumen-sized, round
    (:data:`MIN_ROUNDNESS`) and filled (its core wholly inside it), else None."""
    area = float(inside.sum()) * sy * sx
    diameter = 2.0 * math.sqrt(area / math.pi)
    if not LUMEN_DIAMETER_MM[0] <= diameter <= LUMEN_DIAMETER_MM[1]:
        return None
    yy, xx = np.nonzero(inside)
    cy, cx = float(yy.mean()), float(xx.mean())
    if area < MIN_ROUNDNESS * math.pi * float(np.hypot((yy - cy) * sy, (xx - cx) * sx).max()) ** 2:
        return None
    gy, gx = np.mgrid[0:inside.shape[0], 0:inside.shape[1]]
    core = np.hypot((gy - cy) * sy, (gx - cx) * sx) <= 0.3 * diameter
    if not core.any() or float(inside[core].mean()) < 0.9:
        return None
    q1, hu, q3 = (float(q) for q in np.percentile(values[core], (25, 50, 75)))
    return Candidate(hu, cy, cx, diameter / 2.0, q3 - q1, 0.0)


def _disc(radius_mm: float, sy: float, sx: float) -> np.ndarray:
    """A disc-shaped structuring element of ``radius_mm`` on a (sy, sx) mm grid (at least 3 x 3)."""
    ry, rx = max(1, round(radius_mm / sy)), max(1, round(radius_mm / sx))
    yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    return np.asarray((yy * sy) ** 2 + (xx * sx) ** 2 <= max(radius_mm, sy, sx) ** 2 + 1e-9)


def corrected(measured: Measured, contrast: Contrast) -> Measured:
    """The measurement with its contrast-corrected trabecular HU (measured minus the phase's offset) and that HU's
    SD (the correction's: the measurement carries no uncertainty of its own, so nothing is added in quadrature),
    when the scan is enhanced and the HU was measured; otherwise unchanged."""
    if measured.trabecular_hu is None or contrast.correction is None:
        return measured
    c = contrast.correction
    return replace(measured, trabecular_hu_corrected=round(measured.trabecular_hu - c.offset_hu, 1),
                   trabecular_hu_corrected_sd=c.sd_hu)
