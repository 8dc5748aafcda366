"""First-line candidates by category (R-TX-*) and the plan that the follow-up rules read."""

from __future__ import annotations

from dataclasses import dataclass

from clinical.category import CategoryResult
from clinical.facts import Facts
from clinical.findings import NOTHING, Avoid, Findings, avoid
from clinical.vocabulary import ANABOLICS, DRUGS_BY_CLASS, DrugClass, RiskCategory

D = DrugClass
LOW, HIGH, VERY_HIGH = RiskCategory.LOW, RiskCategory.HIGH, RiskCategory.VERY_HIGH
CORRECTION_RULES = frozenset({"R-CA-1", "R-VD-1"})
"""Rules whose exclusions last only until a deficiency is corrected (their classes go to ``deferred``)."""

_WOMEN = {
    HIGH: (D.ORAL_BISPHOSPHONATE, D.IV_BISPHOSPHONATE, D.DENOSUMAB, D.SERM),
    VERY_HIGH: (D.PTH_ANALOG, D.ROMOSOZUMAB, D.DENOSUMAB, D.IV_BISPHOSPHONATE),
}
_MEN = {
    HIGH: (D.ORAL_BISPHOSPHONATE, D.IV_BISPHOSPHONATE, D.DENOSUMAB),
    VERY_HIGH: (D.PTH_ANALOG, D.IV_BISPHOSPHONATE, D.DENOSUMAB),
}
_GC = (D.PTH_ANALOG, D.ORAL_BISPHOSPHONATE, D.IV_BISPHOSPHONATE, D.DENOSUMAB)


@dataclass(frozen=True)
class Plan:
    """The category and the classes suggested so far (candidates before exclusions, final after)."""

    category: CategoryResult
    first_line: tuple[DrugClass, ...]
    deferred: tuple[DrugClass, ...] = ()

    def suggests(self, cls: DrugClass) -> bool:
        """True when ``cls`` is in ``first_line``."""
        return cls in self.first_line

    def proposes(self, cls: DrugClass) -> bool:
        """True when ``cls`` is in ``first_line`` or ``deferred`` (acceptable once a deficiency is corrected)."""
        return cls in self.first_line or cls in self.deferred


def candidates(f: Facts, cat: CategoryResult) -> tuple[tuple[DrugClass, ...], Findings]:
    """First-line candidates for the final category, preferred first, and the rules that chose them."""
    final = cat.final
    if final == LOW:
        reason = "low risk: lifestyle, calcium and vitamin D only; anabolic drugs are labelled for high risk"
        return (D.LIFESTYLE_CALCIUM_VITD,), avoid(tuple(sorted(ANABOLICS)), reason, "R-TX-LOW")
    found = _clinical_low_lock(cat) + _men(f)
    if f.gc_user:
        return _GC, found + Findings(fired=("R-TX-GC",))
    if f.sex == "M":
        return _MEN[final], found
    chosen: tuple[DrugClass, ...] = _WOMEN[final]
    if f.patient.postmenopausal is False:
        chosen = tuple(c for c in chosen if c != D.SERM)
    return chosen, found + Findings(fired=("R-TX-HIGH" if final == HIGH else "R-TX-VHIGH",))


def _men(f: Facts) -> Findings:
    """R-TX-MEN: no romosozumab, SERM or hormone therapy for men."""
    if f.sex != "M":
        return NOTHING
    reason = "men: romosozumab is labelled for postmenopausal women; no SERM or hormone therapy"
    return avoid((D.ROMOSOZUMAB, D.SERM, D.MENOPAUSAL_HORMONE_THERAPY), reason, "R-TX-MEN")


def _clinical_low_lock(cat: CategoryResult) -> Findings:
    """R-MODEL-2: from a clinical low, the model alone never unlocks anabolic drugs."""
    if cat.clinical != LOW:
        return NOTHING
    reason = "the clinical category is low; the model alone cannot unlock anabolic drugs"
    return avoid(tuple(sorted(ANABOLICS)), reason, "R-MODEL-2")


def excluded(cls: DrugClass, avoids: tuple[Avoid, ...]) -> bool:
    """True when ``cls`` is avoided as a class or every one of its drugs is avoided."""
    items = {a.item for a in avoids}
    drugs = DRUGS_BY_CLASS[cls]
    return cls in items or (bool(drugs) and all(d in items for d in drugs))


def apply_exclusions(
    cands: tuple[DrugClass, ...], found: Findings
) -> tuple[tuple[DrugClass, ...], tuple[DrugClass, ...]]:
    """Return (first_line, deferred): candidates minus excluded classes; deferred = correctable only."""
    permanent = tuple(a for a in found.avoid if a.rule not in CORRECTION_RULES)
    deferred_classes = {d.item for d in found.deferred}
    first = tuple(c for c in cands if not excluded(c, found.avoid) and c not in deferred_classes)
    deferred = tuple(c for c in cands if c in deferred_classes and not excluded(c, permanent))
    if not first:
        first = (D.LIFESTYLE_CALCIUM_VITD,)
    return first, deferred
