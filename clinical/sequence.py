"""What comes before and after a drug, applied to the category's candidates before the safety rules.

* R-DMAB-1 with R-PROJ-2: denosumab is never simply stopped. A patient on denosumab, or who stopped it with no
  bisphosphonate after it, keeps denosumab and a planned transition to a bisphosphonate in ``first_line`` at
  low and high risk (at very high risk the category's list already holds denosumab).
* R-PTH-2 with R-PROJ-3: an anabolic course is followed by an antiresorptive, never by nothing.

The safety rules run afterwards and still exclude whatever is unsafe.
"""

from __future__ import annotations

import re
from datetime import date

from clinical.category import CategoryResult
from clinical.facts import Course, Facts
from clinical.findings import NOTHING, Findings
from clinical.vocabulary import ANABOLICS, ANTIRESORPTIVES, BISPHOSPHONATES, DrugClass, RiskCategory

D = DrugClass
TRANSITION = (D.IV_BISPHOSPHONATE, D.ORAL_BISPHOSPHONATE)
"""R-DMAB-1: the bisphosphonate after denosumab, zoledronic acid preferred."""
FOLLOW_ON = (D.ORAL_BISPHOSPHONATE, D.IV_BISPHOSPHONATE, D.DENOSUMAB)
"""R-PROJ-3: the follow-on antiresorptives at low risk, in the R-TX-HIGH order."""
_STOP_REQUEST = re.compile(
    r"\b(stop\w*|discontinu\w*|quit\w*|come off|coming off|holiday|pause\w*|break from)\b", re.IGNORECASE
)


def denosumab_course(f: Facts) -> Course | None:
    """The current denosumab course, or None."""
    current = f.courses_of(frozenset({D.DENOSUMAB}), current=True)
    return current[0] if current else None


def denosumab_stopped_uncovered(f: Facts) -> date | None:
    """The date denosumab was stopped when no bisphosphonate started on or after it (and none is current)."""
    if denosumab_course(f) is not None:
        return None
    stops = [c.med.stop for c in f.courses_of(frozenset({D.DENOSUMAB}), current=False) if c.med.stop]
    if not stops:
        return None
    stop = max(stops)
    covered = any(
        c.current or (c.med.start is not None and c.med.start >= stop) for c in f.courses_of(BISPHOSPHONATES)
    )
    return None if covered else stop


def asks_to_stop(f: Facts) -> bool:
    """True when ``patient_request`` asks to stop treatment (R-PROJ-2 reads it for denosumab only)."""
    return bool(f.patient.patient_request and _STOP_REQUEST.search(f.patient.patient_request))


def anabolic_uncovered(f: Facts) -> bool:
    """True when an anabolic course stopped and no antiresorptive started on or after its stop (R-PTH-2)."""
    stops = [c.med.stop for c in f.courses_of(ANABOLICS, current=False) if c.med.stop]
    if not stops:
        return False
    last = max(stops)
    after = [c for c in f.courses_of(ANTIRESORPTIVES) if c.current or (c.med.start and c.med.start >= last)]
    return not after


def sequence(f: Facts, cat: CategoryResult, cands: tuple[DrugClass, ...]) -> tuple[tuple[DrugClass, ...], Findings]:
    """The candidates with denosumab continuity (R-PROJ-2) and the anabolic follow-on (R-PROJ-3) applied."""
    cands, found = _denosumab(f, cat, cands)
    more, follow = _follow_on(f, cat, cands)
    return more, found + follow


def _denosumab(f: Facts, cat: CategoryResult, cands: tuple[DrugClass, ...]) -> tuple[tuple[DrugClass, ...], Findings]:
    """R-PROJ-2: continuing denosumab and the transition, continuing first unless stopping is asked or done."""
    stopped = denosumab_stopped_uncovered(f) is not None
    if cat.final == RiskCategory.VERY_HIGH or not (denosumab_course(f) or stopped):
        return cands, NOTHING
    head = (*TRANSITION, D.DENOSUMAB) if stopped or asks_to_stop(f) else (D.DENOSUMAB, *TRANSITION)
    rest = tuple(c for c in cands if c not in head and c != D.LIFESTYLE_CALCIUM_VITD)
    return (*head, *rest), Findings(fired=("R-DMAB-1", "R-PROJ-2"))


def _follow_on(f: Facts, cat: CategoryResult, cands: tuple[DrugClass, ...]) -> tuple[tuple[DrugClass, ...], Findings]:
    """R-PROJ-3: antiresorptives before anabolics after an uncovered course; at low risk, instead of nothing."""
    ending = bool(f.courses_of(ANABOLICS, current=True)) and cat.final == RiskCategory.LOW
    if not (anabolic_uncovered(f) or ending):
        return cands, NOTHING
    if cands == (D.LIFESTYLE_CALCIUM_VITD,):
        cands = FOLLOW_ON
    ordered = tuple(c for c in cands if c in ANTIRESORPTIVES) + tuple(c for c in cands if c not in ANTIRESORPTIVES)
    return ordered, Findings(fired=("R-PTH-2", "R-PROJ-3"))
