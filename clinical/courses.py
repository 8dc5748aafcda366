"""Course limits of the time-limited anabolics: R-PTH-1 (teriparatide/abaloparatide), R-ROMO-3 (romosozumab).

R-PROJ-1 (issue 23): the limit travels with the drug. Whenever the class is suggested (first line, or deferred
until a correction), taken, or in the history, its course-limit alert is in the output with how much of the
course the history already used; after a completed course the limit still stands. The exclusions (the cap is
reached) run with the safety rules; the alerts run on the settled plan.
"""

from __future__ import annotations

from dataclasses import dataclass

from clinical import inputs
from clinical.facts import Course, Facts
from clinical.findings import NOTHING, Findings, alert, avoid, not_evaluated
from clinical.treatment import Plan
from clinical.vocabulary import AlertKey, DrugClass

D = DrugClass
PTH_CAP_MONTHS = 24.0
PTH_WARN_MONTHS = 18.0
ROMO_MAX_DOSES = 12
DECISION = "R-PROJ-1"


@dataclass(frozen=True)
class Usage:
    """How much of a limited course the history used: an amount (months or doses) and what is unknown."""

    amount: float
    courses: tuple[Course, ...]
    undated: tuple[str, ...]
    """Context paths whose absence leaves part of the amount unknown (the amount is then a lower bound)."""
    estimated: bool = False
    """True when some doses were estimated as one per month since the start."""

    @property
    def prior_course(self) -> bool:
        """True when a course has ended (a partial or completed prior course)."""
        return any(not c.current for c in self.courses)


def pth_usage(f: Facts) -> Usage:
    """Cumulative months of teriparatide + abaloparatide; a course without a start date is unknown."""
    courses = f.courses_of(frozenset({D.PTH_ANALOG}))
    undated = tuple(inputs.medication_start(c.index) for c in courses if c.months is None)
    return Usage(sum(c.months or 0.0 for c in courses), courses, undated)


def romosozumab_usage(f: Facts) -> Usage:
    """Romosozumab doses given: recorded, else one per month since the start; unknown without either."""
    courses = f.courses_of(frozenset({D.ROMOSOZUMAB}))
    doses, estimated, unknown = 0, False, []
    for c in courses:
        if c.med.doses_received is not None:
            doses += c.med.doses_received
        elif c.months is not None:
            doses, estimated = doses + int(c.months) + 1, True
        else:
            unknown += [inputs.medication_doses(c.index), inputs.medication_start(c.index)]
    return Usage(float(doses), courses, tuple(unknown), estimated)


def pth_cap(f: Facts, plan: Plan) -> Findings:
    """R-PTH-1 (exclusion part): no more PTH analog once 24 months have been used in a lifetime."""
    months = pth_usage(f).amount
    if months < PTH_CAP_MONTHS:
        return NOTHING
    reason = f"{months:.1f} months of PTH-analog therapy used: the 24-month lifetime cap is reached"
    return avoid((D.PTH_ANALOG,), reason + " (only a specialist may override it)", "R-PTH-1")


def romosozumab_doses(f: Facts, plan: Plan) -> Findings:
    """R-ROMO-3 (exclusion part): no more romosozumab once 12 monthly doses have been given."""
    doses = int(romosozumab_usage(f).amount)
    if doses < ROMO_MAX_DOSES:
        return NOTHING
    reason = f"{doses} romosozumab doses given: the 12-dose course is complete; follow with an antiresorptive"
    return avoid((D.ROMOSOZUMAB,), reason, "R-ROMO-3")


def pth_course_limit(f: Facts, plan: Plan) -> Findings:
    """R-PTH-1 alert, widened by R-PROJ-1: with every suggestion, course or history of a PTH analog."""
    usage = pth_usage(f)
    if not (plan.proposes(D.PTH_ANALOG) or usage.courses):
        return NOTHING
    own = usage.amount >= PTH_WARN_MONTHS or usage.prior_course or bool(usage.undated)
    return _limit_alert(AlertKey.TERIPARATIDE_COURSE_LIMIT, _pth_message(usage), "R-PTH-1", usage, own,
                        "the months used are unknown")


def _limit_alert(key: AlertKey, message: str, rule: str, usage: Usage, own: bool, unknown: str) -> Findings:
    """A course-limit alert, the undated courses as not evaluated, and R-PROJ-1 cited when the alert is there
    only because of the project decision (not the rule's own condition)."""
    found = alert(key, message, rule)
    if usage.undated:
        found += not_evaluated(rule, usage.undated, unknown)
    return found if own else found + Findings(fired=(DECISION,))


def _pth_message(usage: Usage) -> str:
    """The R-PTH-1 limit with the months the history used."""
    limit = "Teriparatide/abaloparatide: at most 24 months in a lifetime, then an antiresorptive"
    months = usage.amount
    if not usage.courses:
        return f"{limit}; no prior course recorded."
    if usage.undated:
        return f"{limit}; at least {months:.1f} months used (a course has no start date: the months left are unknown)."
    if months >= PTH_CAP_MONTHS:
        return f"{limit}; {months:.1f} months used: the cap is reached (only a specialist may override it)."
    return f"{limit}; {months:.1f} months used (prior courses counted), at most {PTH_CAP_MONTHS - months:.1f} remain."


def romosozumab_course_limit(f: Facts, plan: Plan) -> Findings:
    """R-ROMO-3 alert, widened by R-PROJ-1: also when deferred, and after a past course (completed or not)."""
    usage = romosozumab_usage(f)
    current = any(c.current for c in usage.courses)
    if not (plan.proposes(D.ROMOSOZUMAB) or usage.courses):
        return NOTHING
    own = plan.suggests(D.ROMOSOZUMAB) or current
    return _limit_alert(AlertKey.ROMOSOZUMAB_COURSE_LIMIT, _romosozumab_message(usage), "R-ROMO-3", usage, own,
                        "the doses given are unknown")


def _romosozumab_message(usage: Usage) -> str:
    """The R-ROMO-3 limit with the doses the history used."""
    limit = "Romosozumab: at most 12 monthly doses, then an antiresorptive"
    doses = int(usage.amount)
    how = " (estimated from the dates)" if usage.estimated else ""
    if not usage.courses:
        return f"{limit}."
    if usage.undated:
        return f"{limit}; at least {doses} doses given{how} (a course has no doses or start date)."
    if doses >= ROMO_MAX_DOSES:
        return f"{limit}; {doses} doses given{how}: the course is complete, no more romosozumab."
    return f"{limit}; {doses} of 12 doses given{how}, at most {ROMO_MAX_DOSES - doses} remain."
