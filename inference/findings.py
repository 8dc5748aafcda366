"""Per-vertebra findings from the model outputs, in patient coordinates, and the coverage policy."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from inference.crop import Crop
from inference.errors import InputError
from inference.study import Study
from inference.thresholds import LEVEL_PITCH_MM, genant_grade

MIN_LEVELS = 4
"""Fewest levels (of T11-L5) that must be found for a study to be scored."""
PRESENT = 0.5


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

    NUMBERS = ("trabecular_hu", "height_anterior_mm", "height_middle_mm", "height_posterior_mm", "height_ratio")

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

    def to_json(self) -> dict[str, object]:
        """Result-JSON form (``measured`` only when the level was measured)."""
        out: dict[str, object] = {"level": self.level, "present": self.present, "genant_grade": self.genant_grade,
                                  "height_ratio": self.height_ratio, "trabecular_hu": self.trabecular_hu,
                                  "z_mm": self.z_mm}
        if self.measured is not None:
            out["measured"] = self.measured.to_json()
        return out


def level_findings(levels: tuple[str, ...], outputs: dict[str, np.ndarray], crop: Crop,
                   study: Study) -> list[Vertebra]:
    """Map the graph's per-level outputs (one study) to patient coordinates."""
    out = []
    rows = (crop.start_index[1] + crop.image.shape[1] / 2.0, crop.start_index[2] + crop.image.shape[2] / 2.0)
    for i, level in enumerate(levels):
        present = bool(outputs["level_presence"][i] > PRESENT)
        k = crop.start_index[0] + float(outputs["level_z_mm"][i]) / crop.spacing_mm[0] - 0.5
        lps = study.affine @ np.array([k, rows[0], rows[1], 1.0])
        ratio = float(outputs["level_height_ratio"][i])
        out.append(Vertebra(
            level=level, present=present,
            genant_grade=genant_grade(ratio) if present else None,
            height_ratio=round(ratio, 3) if present else None,
            trabecular_hu=round(float(outputs["level_hu"][i]), 1) if present else None,
            z_mm=round(float(lps[2]), 1) if present else None,
        ))
    return out


def spine_midpoint_index(levels: tuple[str, ...], outputs: dict[str, np.ndarray], crop: Crop) -> float | None:
    """Slice index where the T11-L5 midpoint should be, estimated from the levels found in ``crop``.

    Used to re-centre the crop along z when a long scan (chest-abdomen-pelvis) puts part of the spine outside
    the first crop. None when nothing was found.
    """
    present = outputs["level_presence"] > PRESENT
    if not present.any():
        return None
    mid = (len(levels) - 1) / 2.0
    estimates = [float(outputs["level_z_mm"][i]) - (mid - i) * LEVEL_PITCH_MM
                 for i in range(len(levels)) if present[i]]
    return crop.start_index[0] + float(np.mean(estimates)) / crop.spacing_mm[0] - 0.5


RECENTRE_MIN_MM = 20.0
"""A second, re-centred crop is tried only when the spine's midpoint is at least this far from the first one's."""


def recentre_target(levels: tuple[str, ...], outputs: dict[str, np.ndarray], crop: Crop) -> float | None:
    """Slice index to centre a second crop on when ``crop`` missed some of ``levels`` and the spine it found lies
    at least ``RECENTRE_MIN_MM`` from its centre; None to keep ``crop``. The one rule of ``vfrisk predict``
    (:meth:`inference.engine.Engine.locate`) and ``vfrisk score``."""
    if int((outputs["level_presence"] > PRESENT).sum()) == len(levels):
        return None
    target = spine_midpoint_index(levels, outputs, crop)
    current = crop.start_index[0] + (crop.image.shape[0] - 1) / 2.0
    if target is None or abs(target - current) * crop.spacing_mm[0] < RECENTRE_MIN_MM:
        return None
    return target


def coverage(vertebrae: list[Vertebra], explained: set[str] | frozenset[str] = frozenset(),
             counted: list[str] | None = None) -> list[str]:
    """Refuse a scan that does not show the thoracolumbar spine; return warnings for missing levels (those in
    ``explained``, partly in the scan or withdrawn by the level check, get their own warning from
    :mod:`inference.levels`).

    ``counted`` (default: the levels present) are the levels the refusal counts: ``vfrisk predict`` passes
    :func:`found_levels`, what ``vfrisk score`` counts too, so that the image-based level check (which the batch
    does not run) never turns a scored study into a refused one."""
    require_levels(counted if counted is not None else [v.level for v in vertebrae if v.present])
    missing = [v.level for v in vertebrae if not v.present and v.level not in explained]
    return [f"levels not in the scan: {', '.join(missing)}; scored on the levels found"] if missing else []


def require_levels(found: list[str]) -> None:
    """The coverage rule of ``vfrisk predict`` and ``vfrisk score``: refuse (``spine_not_covered``, naming the
    levels found) a scan in which fewer than ``MIN_LEVELS`` levels were found."""
    if len(found) < MIN_LEVELS:
        listed = ", ".join(found) if found else "none"
        raise InputError("spine_not_covered",
                         f"the thoracolumbar spine (T11-L5) is not covered: levels found: {listed}")


CROWDED_PITCH = 0.6
"""Adjacent levels found less than this many pitches apart (per index step) cannot both be bodies of their own."""


@dataclass(frozen=True)
class Crowded:
    """A level withdrawn because the model put two adjacent levels too close together (or in the wrong order)."""

    level: str
    pair: tuple[str, str]
    gap_mm: float
    expected_mm: float

    def warning(self) -> str:
        """The one-line warning of the result."""
        return (f"{self.level}: withdrawn from the findings: the model put {self.pair[0]} and {self.pair[1]} "
                f"{self.gap_mm:.0f} mm apart where its neighbouring levels imply about {self.expected_mm:.0f} mm, "
                f"as it does where a scan's edge cuts the spine (the probability is the model's)")


def crowded_levels(levels: list[tuple[str, int, float]]) -> list[Crowded]:
    """Levels the model put too close to (or beyond) their neighbour to be bodies of their own.

    ``levels`` is ``(name, index, z_mm)`` of the levels found. Where a scan's edge cuts the spine away from the
    anatomy the model anchors on (the sacrum below, the lower thoracic spine above), it can squeeze the levels
    beyond the edge onto the last bodies in the scan (phantoms cut at L4: L4 put on L3 and L5 on L4; cut
    through T11: T11 put on T12). Two adjacent levels found (``k`` indices apart) are inconsistent when they
    lie less than ``CROWDED_PITCH * k`` pitches apart along z (or in the wrong order), the pitch being the
    median distance per index step of the neighbouring pairs (the one above and the one below; at least three
    pairs in all, since the pitch grows down the spine). Of an inconsistent pair, the side with fewer levels
    up to its end of the spine is withdrawn.
    """
    ordered = sorted(levels, key=lambda t: t[1])
    pairs = list(itertools.pairwise(ordered))
    if len(pairs) < 3:
        return []
    step = [(a[2] - b[2]) / (b[1] - a[1]) for a, b in pairs]  # LPS z runs up: superior levels have larger z
    out: dict[str, Crowded] = {}
    for n, (a, b) in enumerate(pairs):
        pitch = float(np.median([step[m] for m in (n - 1, n + 1) if 0 <= m < len(pairs)]))
        if pitch <= 0 or step[n] >= CROWDED_PITCH * pitch:
            continue
        above, below = ordered[: n + 1], ordered[n + 1:]
        for t in above if len(above) < len(below) else below:
            out.setdefault(t[0], Crowded(t[0], (a[0], b[0]), round(a[2] - b[2], 1), round(pitch * (b[1] - a[1]), 1)))
    return list(out.values())


def found_levels(levels: tuple[str, ...], outputs: dict[str, np.ndarray]) -> list[str]:
    """The levels the graph found (presence above ``PRESENT``) less those :func:`crowded_levels` withdraws; the
    count ``vfrisk predict`` and ``vfrisk score`` both compare crops by and apply the coverage rule to."""
    found = [(level, i, float(outputs["level_z_mm"][i])) for i, level in enumerate(levels)
             if outputs["level_presence"][i] > PRESENT]
    withdrawn = {c.level for c in crowded_levels(found)}
    return [level for level, _, _ in found if level not in withdrawn]
