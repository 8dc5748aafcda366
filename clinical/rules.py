"""The rule registry: the single source of truth for rule ids, wording, sources and verification marks.

Transcribed from ``shared/clinical/RULES.md`` (sections 1-10; the section number is kept in ``section``) and,
for the rules marked ``SOURCE_DOC``, from the user's source document
``shared/seed/osteoporosis_treatment.txt``. RULES.md section 10 lists monitoring keys without rule ids; the
engine cites them with the ``R-MON-*`` ids assigned here (``assigned_id=True``).

The engine cites these ids in its output, the UI and the reports list them, and the tests iterate over them.
Pure data: no I/O, no logic beyond look-ups.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from clinical.vocabulary import AlertKey, MonitoringKey


class Mark(StrEnum):
    """Verification marks of RULES.md, plus ``SOURCE_DOC`` for the user's source document."""

    V = "V"
    """Checked word for word against a copy of the source."""
    S = "S"
    """Taken from a secondary summary; to be checked against the primary source before release."""
    R = "R"
    """From the primary document as commonly cited, not re-checked: treat as unverified."""
    PROJECT = "PROJECT"
    """A convention of this project; no guideline says it."""
    SOURCE_DOC = "SOURCE_DOC"
    """From the user's source document (osteoporosis_treatment.txt), not a guideline."""


_WEAKEST_FIRST: Final = (Mark.SOURCE_DOC, Mark.PROJECT, Mark.R, Mark.S, Mark.V)


@dataclass(frozen=True)
class Rule:
    """One row of the rule table."""

    id: str
    """Rule id as written in RULES.md (cite it in the engine output)."""
    text: str
    """Plain-words statement."""
    source: str
    """Source keys and their marks, as written in RULES.md."""
    marks: tuple[Mark, ...]
    """Every verification mark found in the source column."""
    section: str
    """RULES.md section (for example ``"4"``) or ``"source document"``."""
    assigned_id: bool = False
    """True when RULES.md has no id for this row and the id was assigned by this project."""
    outputs: tuple[AlertKey | MonitoringKey, ...] = ()
    """The alert and monitoring keys this rule can raise, each cited with this rule's id in the output."""

    @property
    def verification(self) -> Mark:
        """The weakest mark of the row: the one that limits how far it can be trusted."""
        return next(m for m in _WEAKEST_FIRST if m in self.marks)


def _r(
    rule_id: str, section: str, marks: str, text: str, source: str, *, assigned: bool = False, outputs: str = ""
) -> Rule:
    """Build a :class:`Rule`; ``marks`` and ``outputs`` are space-separated :class:`Mark` values and keys."""
    keys = tuple(_key(k) for k in outputs.split())
    return Rule(rule_id, text, source, tuple(Mark(m) for m in marks.split()), section, assigned, keys)


def _key(key: str) -> AlertKey | MonitoringKey:
    """An alert or monitoring key of the vocabulary (the two sets do not overlap)."""
    return AlertKey(key) if key in {a.value for a in AlertKey} else MonitoringKey(key)


RULES: Final[tuple[Rule, ...]] = (
    # 1. Precedence and project conventions
    _r(
        "R-PREC-1",
        "1",
        "PROJECT",
        "When sources disagree on a safety exclusion, apply the stricter one (ES 2020 blocks romosozumab "
        "after "
        "any prior MI/stroke, the label only within the past year).",
        "PROJECT",
    ),
    _r(
        "R-PREC-2",
        "1",
        "PROJECT",
        "The risk category for postmenopausal women follows AACE 2020; NOGG/ES disagreements are recorded in "
        "notes and do not change the result.",
        "PROJECT",
    ),
    _r(
        "R-PREC-3",
        "1",
        "PROJECT V",
        "For glucocorticoid users (>=2.5 mg/day prednisone-equivalent for >3 months) take the higher of the "
        "AACE "
        "and the ACR 2022 category; ACR moderate maps to high.",
        "PROJECT, ACR2022 [V abstract]",
    ),
    _r(
        "R-PREC-4",
        "1",
        "PROJECT",
        "Upper-limit alerts still fire when the excess is intentional supervised repletion; the clinician "
        "acknowledges the alert, the service does not suppress it.",
        "PROJECT",
    ),
    _r(
        "R-PROJ-1",
        "1",
        "PROJECT R",
        "Course limits travel with time-limited anabolics. Whenever teriparatide/abaloparatide or romosozumab "
        "is suggested (first line, or deferred until a correction), taken, or in the history, its course-limit "
        "alert is raised (teriparatide_course_limit by R-PTH-1, romosozumab_course_limit by R-ROMO-3) with how "
        "much of the course the history already used, where known; after a completed romosozumab course the "
        "limit still stands alongside the follow-on antiresorptive. Wider than R-PTH-1's wording (alert from 18 "
        "months or a partial prior course): the limit is part of prescribing the drug, not only a warning near "
        "the end of a course.",
        "PROJECT (issue 23); source document 'treatment courses not exceeding 2 years'; labels [R]",
        assigned=True,
    ),
    _r(
        "R-PROJ-2",
        "1",
        "PROJECT S V",
        "Denosumab is never simply stopped. A patient on denosumab, or who stopped it with no bisphosphonate "
        "after it, keeps denosumab and a planned transition to a bisphosphonate (zoledronic acid preferred, then "
        "oral) in first_line at low and high risk: continuing first, the transition first when the patient "
        "asks to stop (patient_request) or has stopped. At very high risk the category's list, which holds "
        "denosumab, is kept. R-DMAB-1 takes precedence over R-TX-LOW; the denosumab_no_stop alert times the "
        "transition from the last injection and names its follow-up (bone turnover at 3 and 6 months).",
        "PROJECT (issue 23); R-DMAB-1: ES2019 [S gertitashkomd]; ECTS2021 [V abstract]",
        assigned=True,
    ),
    _r(
        "R-PROJ-3",
        "1",
        "PROJECT S V",
        "An anabolic course is followed by an antiresorptive, never by nothing. After an anabolic course with "
        "no antiresorptive started after it, the category's antiresorptives come before the anabolics in "
        "first_line; at low risk, where anabolics are not suggested (R-TX-LOW), a past or current anabolic "
        "course brings oral or IV bisphosphonate or denosumab instead of lifestyle alone (R-PTH-2 takes "
        "precedence; banned action no_followon_therapy).",
        "PROJECT (issue 23); R-PTH-2: ES2019 [S geriguides quoting JCEM]; ACP2023 rec 3 [V]",
        assigned=True,
    ),
    _r(
        "R-DATE-1",
        "1",
        "PROJECT",
        "'Within the past 12 months' means date >= assessment_date - 365 days, counting both ends.",
        "PROJECT",
    ),
    _r(
        "R-MODEL-1",
        "1",
        "PROJECT V",
        "6-month vertebral-fracture probability p maps to a model level: p < 0.03 low, 0.03 <= p < 0.10 "
        "high, "
        "p >= 0.10 very_high. A calibration proposal, not a guideline value; refit on calibration data.",
        "PROJECT; LINDSAY2001 [V abstract]",
    ),
    _r(
        "R-MODEL-2",
        "1",
        "PROJECT V",
        "Final category = max(clinical, min(model, clinical + 1 level)): the model raises the category by at "
        "most one level and never lowers it; from a clinical low it never unlocks anabolic drugs.",
        "PROJECT; LABEL_TERIPARATIDE/ABALOPARATIDE indications [V]",
    ),
    _r(
        "R-MODEL-3",
        "1",
        "PROJECT",
        "If the model and clinical levels differ by 2 or more, raise model_clinical_discordance and request "
        "an "
        "image/data review.",
        "PROJECT",
        outputs="model_clinical_discordance vertebral_imaging",
    ),
    # 2. Risk category
    _r(
        "R-CAT-1",
        "2",
        "S PROJECT",
        "very_high: fragility fracture within 12 months; fracture on approved osteoporosis therapy; multiple "
        "fragility fractures; fracture on bone-harming drugs (long-term glucocorticoids); T-score < -3.0; "
        "high "
        "fall risk (>=2 falls in 12 months or any injurious fall, PROJECT); FRAX MOF > 30% or hip > 4.5%.",
        "AACE2020 [S: listed in droracle/wis.it summaries; full text not available]",
        outputs="fall_risk_intervention",
    ),
    _r(
        "R-CAT-1-NOGG",
        "2",
        "V R",
        "Notes only: NOGG 2022 very-high indicators (vertebral fracture within 2 years; >=2 vertebral "
        "fractures; T <= -3.5; prednisolone >=7.5 mg/day for >=3 months; FRAX above 1.6 x the intervention "
        "threshold): consider specialist referral and parenteral treatment.",
        "NOGG2022 action text [V nogg.org.uk]; 1.6x [V Kanis 2021 abstract]; indicator list [R]",
    ),
    _r(
        "R-CAT-2",
        "2",
        "V S",
        "high: any prior fragility fracture; T <= -2.5 at LS/FN/TH/33% radius; osteopenia with FRAX MOF >= "
        "20% "
        "or hip >= 3%.",
        "AACE2020 dx statements [V guidelinecentral 41073]; NOF/BHOF thresholds [V webisa/timeofcare text]; "
        "ES2019 high-risk definition [S obgproject]",
    ),
    _r(
        "R-CAT-3",
        "2",
        "V",
        "low: none of the above. NOGG low risk: lifestyle advice, reassess in <=5 years; FRAX without BMD at "
        "intermediate risk: measure BMD.",
        "NOGG2022 [V]",
        outputs="dxa_recommended",
    ),
    _r(
        "R-CAT-GC",
        "2",
        "V S",
        "Glucocorticoid users (ACR 2022): very high = prior osteoporotic fracture, T <= -3.5, GC-adjusted "
        "FRAX "
        "MOF >=30% or hip >=4.5%, or >=30 mg/day for >30 days or >=5 g cumulative in a year; high = MOF "
        ">=20%, "
        "hip >=3% or T <= -2.5; moderate = MOF 10-19% or hip >1 to <3%; low = MOF <10% and hip <=1%.",
        "ACR2022 [V abstract: treat medium/high/very high; S: strata and very-high definition]",
        outputs="glucocorticoid_induced_osteoporosis",
    ),
    _r(
        "R-CAT-DX",
        "2",
        "V",
        "Once osteoporosis is diagnosed by T <= -2.5 the diagnosis persists; the risk category is still "
        "recomputed from current BMD/FRAX/fractures.",
        "AACE2020 [V guidelinecentral 41073]; ASBMR2016 [V]",
    ),
    _r(
        "R-CAT-MEN",
        "2",
        "PROJECT R",
        "Men >=50: same numeric criteria (BHOF/ES numbers; AACE 2020 covers only postmenopausal women).",
        "PROJECT + BHOF [R]",
    ),
    # 3. First-line drug classes
    _r(
        "R-TX-LOW",
        "3",
        "V",
        "low: lifestyle + calcium/vitamin D only; anabolic drugs must not be suggested (labelled for high "
        "fracture risk).",
        "NOGG2022 [V]; labels [V indications]",
    ),
    _r(
        "R-TX-HIGH",
        "3",
        "V R",
        "high: oral or IV bisphosphonate (preferred), denosumab (acceptable); alternates raloxifene, "
        "ibandronate.",
        "ES2019 2.1 [V]; ACP2023 1a/2a [V]; AACE2020 algorithm [R]",
    ),
    _r(
        "R-TX-VHIGH",
        "3",
        "R S V",
        "very_high: teriparatide/abaloparatide or romosozumab (preferred; follow with an antiresorptive), "
        "denosumab or zoledronic acid (acceptable); oral bisphosphonate only an alternate.",
        "AACE2020 [R algorithm; S 'anabolic for very high']; ES2019 [V]; ES2020 [V]; ACP2023 rec 3 [V]; "
        "NOGG2022 [V parenteral + referral]",
    ),
    _r(
        "R-TX-MEN",
        "3",
        "V R",
        "Men: bisphosphonate first, denosumab second; no romosozumab (label: postmenopausal women); no SERM "
        "or "
        "hormone therapy; teriparatide and abaloparatide are labelled for men.",
        "ACP2023 1b/2b [V]; LABEL_ABALOPARATIDE men indication [V]; LABEL_EVENITY [R indication wording]",
    ),
    _r(
        "R-TX-GC",
        "3",
        "V",
        "Glucocorticoid users: oral BP, IV BP, denosumab or PTH/PTHrP analog by shared decision; anabolic "
        "conditionally preferred at high/very high risk; romosozumab is not in the ACR 2022 list.",
        "ACR2022 [V abstract, guidelinecentral 7043]",
    ),
    # 4. Safety exclusions and alerts
    _r(
        "R-REN-0",
        "4",
        "V",
        "Use Cockcroft-Gault CrCl for the drug cut-offs; cross-check eGFR with it so renal function is not "
        "overestimated in older or small patients.",
        "SPS_NHS [V]",
    ),
    _r(
        "R-REN-1",
        "4",
        "R S",
        "Alendronate: not recommended if CrCl < 35 mL/min.",
        "LABEL_ALENDRONATE [R]; [S droracle, SPS '30-35']",
        outputs="renal_contraindication",
    ),
    _r(
        "R-REN-2/3",
        "4",
        "R S",
        "Risedronate, ibandronate: not recommended if CrCl < 30 mL/min.",
        "labels [R]; [S]",
        outputs="renal_contraindication",
    ),
    _r(
        "R-REN-4",
        "4",
        "R S",
        "Zoledronic acid: contraindicated if CrCl < 35 mL/min or acute renal impairment; measure CrCl before "
        "each dose.",
        "LABEL_RECLAST [R]; [S]",
        outputs="renal_contraindication renal_function_before_each_zoledronate_dose",
    ),
    _r(
        "R-REN-5",
        "4",
        "V",
        "Denosumab with eGFR < 30 (including dialysis): boxed warning for severe hypocalcaemia; evaluate for "
        "CKD-MBD first; treatment supervised by a CKD-MBD expert.",
        "LABEL_DENOSUMAB boxed warning [V openFDA]",
        outputs="denosumab_ckd_hypocalcaemia_risk serum_calcium_monitoring",
    ),
    _r(
        "R-REN-6",
        "4",
        "R",
        "CKD G4-5D: specialist work-up (bone biopsy may be considered) before antiresorptives.",
        "KDIGO2017 [R]",
        outputs="ckd_mbd_specialist_review",
    ),
    _r(
        "R-CA-1",
        "4",
        "R V",
        "Hypocalcaemia (corrected Ca < 8.5 mg/dL) must be corrected before bisphosphonates, denosumab or "
        "romosozumab.",
        "labels [R]; denosumab CKD text [V]",
        outputs="hypocalcaemia_correct_first serum_calcium_correct_and_recheck",
    ),
    _r(
        "R-VD-1",
        "4",
        "V R PROJECT",
        "Treat vitamin D deficiency (25(OH)D < 20 ng/mL, PROJECT cut-off) before antiresorptives or "
        "romosozumab; long-term target >= 30 ng/mL.",
        "AACE target 30 [V menopause.org.au, 2016 text]; label 'treat mineral-metabolism disorders first' "
        "[R]",
        outputs="vitamin_d_deficiency_correct_first vitamin_d_recheck_3m",
    ),
    _r(
        "R-ROMO-1",
        "4",
        "V",
        "Do not start romosozumab within 1 year of MI or stroke; stop it if MI/stroke occurs during "
        "treatment.",
        "LABEL_EVENITY boxed warning [V]",
        outputs="romosozumab_cv_contraindication",
    ),
    _r(
        "R-ROMO-2",
        "4",
        "V",
        "ES 2020: women at high CV/stroke risk, including any prior MI or stroke, should not be considered "
        "for "
        "romosozumab (applied by R-PREC-1).",
        "ES2020 [V plexusmd/endocrine.org]",
        outputs="romosozumab_cv_contraindication",
    ),
    _r(
        "R-ROMO-3",
        "4",
        "V R",
        "Romosozumab: at most 12 monthly doses, then an antiresorptive.",
        "ES2020 'up to 1 year ... then antiresorptive' [V]; label 12-dose limit [R]",
        outputs="romosozumab_course_limit",
    ),
    _r(
        "R-PTH-1",
        "4",
        "R V",
        "Lifetime cumulative teriparatide + abaloparatide <= 24 months; excluded once >= 24 months; alert "
        "from "
        ">= 18 months or when a partial prior course exists. Only a specialist may override the cap.",
        "labels [R]; 'up to two years' [V AAFP 2023, ES2019]",
        outputs="teriparatide_course_limit",
    ),
    _r(
        "R-PTH-2",
        "4",
        "S V",
        "After any anabolic course an antiresorptive is required (gains are lost otherwise).",
        "ES2019 [S geriguides quoting JCEM]; ACP2023 rec 3 [V]",
        outputs="anabolic_followup_antiresorptive",
    ),
    _r(
        "R-PTH-3",
        "4",
        "R",
        "Avoid PTH analogs with osteosarcoma risk: bone metastases or skeletal malignancy, prior skeletal "
        "radiation, Paget's disease, unexplained raised ALP, open epiphyses.",
        "labels W&P [R]",
        outputs="pth_analog_osteosarcoma_risk",
    ),
    _r(
        "R-DMAB-1",
        "4",
        "S V R PROJECT",
        "Never stop denosumab without a transition; no drug holiday. If stopping, start a bisphosphonate "
        "(zoledronate preferred) about 6 months after the last injection. A dose more than 7 months after "
        "the "
        "previous one is overdue (PROJECT).",
        "ES2019 [S gertitashkomd]; ECTS2021 [V abstract]; AACE2020 [R]",
        outputs="denosumab_no_stop",
    ),
    _r(
        "R-ADM-1",
        "4",
        "R",
        "Oral bisphosphonate: fasting, with 6-8 oz plain water, upright >= 30 min (60 min for ibandronate) "
        "before food, drink or other drugs; contraindicated with oesophageal emptying disorders or inability "
        "to sit or stand upright for 30 min.",
        "labels [R]",
        outputs="oral_bp_administration_rules",
    ),
    _r(
        "R-FX-1",
        "4",
        "S",
        "Fracture while on therapy: check adherence, administration, secondary causes; escalate.",
        "AACE2020 [S]",
        outputs="fracture_on_therapy",
    ),
    # 5. Calcium and vitamin D
    _r(
        "R-CAL-1",
        "5",
        "V",
        "Calcium RDA (diet + supplement): women 19-50 1000 mg, women 51+ 1200 mg, men 51-70 1000 mg, men 71+ "
        "1200 mg; AACE 1200 mg for women >= 50.",
        "IOM2011 [V 4bonehealth table]; AACE [V 2016 text]",
        outputs="calcium_below_recommended",
    ),
    _r(
        "R-CAL-2",
        "5",
        "V",
        "Calcium UL 2500 mg/day for ages 19-50, 2000 mg/day for 51+; total intake above the UL alerts "
        "(exactly "
        "at the UL does not).",
        "IOM2011 [V NAP p.423, table]",
        outputs="calcium_over_upper_limit",
    ),
    _r(
        "R-VITD-1",
        "5",
        "V",
        "Vitamin D intake 800-1000 IU/day for age >= 50 (AACE 1000-2000 IU maintenance); below 800 IU "
        "alerts.",
        "BHOF/NOF [V PMC4136427 table]; AACE [V 2016 text]",
        outputs="vitamin_d_below_recommended",
    ),
    _r(
        "R-VITD-2",
        "5",
        "V",
        "Vitamin D UL 4000 IU/day for adults; an average daily intake above 4000 IU alerts (50,000 IU/week "
        "is "
        "about 7143 IU/day).",
        "IOM2011 [V NAP p.443/445]",
        outputs="vitamin_d_over_upper_limit",
    ),
    # 6. Duration, sequence and holiday
    _r(
        "R-HOL-1",
        "6",
        "V",
        "Reassess after 5 years oral / 3 years IV bisphosphonate; holiday eligible if category low, age < "
        "75, "
        "no prior hip or vertebral fracture, no fracture on therapy, prednisolone < 7.5 mg/day and hip/FN T "
        "> "
        "-2.5. High-risk patients continue up to 10 years oral or 6 years IV.",
        "ES2019 2.2 [V]; ASBMR2016 [V]; NOGG2017 continuation criteria [V page]; labels [V openFDA]",
        outputs="drug_holiday_eligible",
    ),
    _r(
        "R-HOL-2",
        "6",
        "V",
        "During a holiday (up to ~5 years) reassess every 2-4 years; restart earlier if BMD falls markedly, "
        "a "
        "fracture occurs, or risk changes.",
        "ES2019 technical remark [V]",
        outputs="reassess_on_holiday_2_to_4y",
    ),
    _r("R-HOL-3", "6", "V", "A fracture during a holiday ends it.", "ES2019 [V]", outputs="end_drug_holiday"),
    _r(
        "R-DMAB-2",
        "6",
        "S",
        "Denosumab: reassess at 5-10 years, but never stop without a transition (R-DMAB-1).",
        "ES2019 [S obgproject]",
    ),
    # 7. Red flags, imaging, procedures
    _r(
        "R-RF-1",
        "7",
        "V",
        "Urgent evaluation for: sudden severe back pain in an older or osteoporotic patient; cancer history; "
        "unexplained weight loss; fever or immunosuppression; night pain; saddle anaesthesia, bladder/bowel "
        "dysfunction, progressive neurological deficit.",
        "AHCPR table [V NBK52120]",
        outputs="red_flag_urgent urgent_clinical_review vertebral_imaging",
    ),
    _r(
        "R-RF-2",
        "7",
        "V",
        "Vertebral imaging if women have prospective height loss > 2 cm or historical > 4 cm, men > 3 cm or "
        "> "
        "6 cm; also new back pain or posture change.",
        "ISCD VFA table [V PMC2787277]; NOF [V epocrates note]; NOGG height loss >4 cm [V FAQ]",
        outputs="vertebral_imaging_indicated vertebral_imaging",
    ),
    _r(
        "R-VA-1",
        "7",
        "V",
        "Vertebroplasty or balloon kyphoplasty only for severe ongoing pain after a recent, unhealed "
        "vertebral "
        "fracture despite optimal pain management, confirmed by examination and imaging.",
        "NICE_TA279 [V]",
        outputs="vertebral_augmentation_consider",
    ),
    _r(
        "R-AFF-1",
        "7",
        "V R",
        "Thigh or groin pain on a bisphosphonate or denosumab: evaluate for atypical femoral fracture.",
        "Bubbear 2016 [V abstract]; labels [R]",
        outputs="atypical_femur_fracture_evaluate",
    ),
    # 8. Bone turnover markers
    _r(
        "R-BTM-0",
        "8",
        "V S",
        "Urine NTx reference ranges (ARUP): men 21-83, premenopausal women 17-94, postmenopausal women "
        "26-124 "
        "nmol BCE/mmol Cr; on treatment aim for the lower half of the premenopausal range.",
        "ARUP [V]; premenopausal study [V abstract]; myendoconsult [S]",
    ),
    _r(
        "R-BTM-1",
        "8",
        "V",
        "Least significant change about 30%; a fall of less than 30% after >= 3 months on an antiresorptive "
        "raises btm_inadequate_response (check adherence and administration).",
        "Bergmann 2009 [V PMC2705815]; ARUP [V]; NOF [V]",
        outputs="btm_inadequate_response",
    ),
    _r(
        "R-BTM-2",
        "8",
        "V",
        "High BTMs predict faster bone loss and higher fracture risk; they inform the assessment but are "
        "not a "
        "category criterion.",
        "AACE2020 [V guidelinecentral]",
    ),
    # 9. Imaging anchors
    _r(
        "R-CT-1",
        "9",
        "V PROJECT",
        "L1 trabecular attenuation <= 160 HU is 90% sensitive and <= 110 HU >90% specific for DXA "
        "osteoporosis. PROJECT: L1 <= 110 HU with no DXA in the past 2 years gives dxa_recommended.",
        "Pickhardt 2013 [V abstract]; Insights Imaging 2023 [V abstract]",
        outputs="dxa_recommended",
    ),
    _r(
        "R-GEN-1",
        "9",
        "V",
        "Genant grades: 0 < 20% height loss (not a fracture); 1: 20-25%; 2: 25-40%; 3: > 40%. Grade >= 1 is "
        "a "
        "prevalent fracture; grade >= 2 or >= 2 fractures is 'severe or multiple'.",
        "Genant 1993 via radiopaedia and Wang 2019 [V]",
    ),
    # 10. Monitoring keys (no ids in RULES.md; ids assigned here)
    _r(
        "R-MON-REASSESS-6M",
        "10",
        "PROJECT",
        "Re-score the model and review the patient at 6 months (the model horizon) for all high and "
        "very_high.",
        "PROJECT",
        assigned=True,
        outputs="reassess_6m",
    ),
    _r(
        "R-MON-DXA",
        "10",
        "V S",
        "DXA every 1-2 years for all high and very_high.",
        "NOF 1-2 y [V epocrates]; ES 1-3 y [V]; ACR 1-2 y on glucocorticoids [S]",
        assigned=True,
        outputs="dxa_every_1_to_2y",
    ),
    _r(
        "R-MON-BTM",
        "10",
        "PROJECT",
        "Recheck bone turnover markers at 3-6 months when starting or switching therapy now, or correcting how "
        "it is taken (an administration issue documented), when eGFR >= 30 (the lower of eGFR and CrCl, "
        "R-REN-0) and no correction (a deferred class) or work-up (a red flag, dialysis) is pending.",
        "RULES.md section 10",
        assigned=True,
        outputs="btm_recheck_3_to_6m",
    ),
    _r(
        "R-MON-DXA-BASELINE",
        "10",
        "V",
        "No DXA available at high or very_high risk: measure BMD (the baseline that DXA monitoring compares "
        "with).",
        "RULES.md section 10 (dxa_recommended: no DXA available); NOGG [V]",
        assigned=True,
        outputs="dxa_recommended",
    ),
    _r(
        "R-MON-SPECIALIST",
        "10",
        "V",
        "Consider specialist referral for all very_high.",
        "NOGG [V]",
        assigned=True,
        outputs="specialist_referral_consider",
    ),
    _r(
        "R-MON-LOW-5Y",
        "10",
        "V",
        "Low risk, not on a holiday: reassess fracture risk within 5 years.",
        "NOGG [V]",
        assigned=True,
        outputs="reassess_fracture_risk_within_5y",
    ),
    _r(
        "R-MON-RENAL-6M",
        "10",
        "PROJECT",
        "CrCl 30-45 mL/min while on a bisphosphonate: recheck renal function at 6 months (required if "
        "already "
        "on one, otherwise when one is suggested).",
        "PROJECT",
        assigned=True,
        outputs="renal_recheck_6m",
    ),
    _r(
        "R-MON-FALLS",
        "10",
        "PROJECT",
        "Any fall in the past 12 months: fall-risk assessment.",
        "RULES.md section 10",
        assigned=True,
        outputs="fall_risk_assessment",
    ),
    _r(
        "R-MON-CV",
        "10",
        "V",
        "Romosozumab suggested: review cardiovascular risk first.",
        "ES 2020 [V]",
        assigned=True,
        outputs="cv_risk_review",
    ),
    # Source document (issue 6): rules taken from osteoporosis_treatment.txt
    _r(
        "SRC-CAVD",
        "source document",
        "SOURCE_DOC",
        "Daily calcium 1200-1500 mg with vitamin D3 800-2000 IU; monitor blood and urinary calcium to avoid "
        "hypercalcaemia.",
        "osteoporosis_treatment.txt",
    ),
    _r(
        "SRC-RENAL-6M",
        "source document",
        "SOURCE_DOC",
        "On bisphosphonates check renal function every 6 months; adjust by creatinine clearance.",
        "osteoporosis_treatment.txt",
        outputs="renal_recheck_6m",
    ),
    _r(
        "SRC-REASSESS",
        "source document",
        "SOURCE_DOC",
        "If fracture risk has not improved after 6 months of treatment, the regimen may need adjusting.",
        "osteoporosis_treatment.txt",
    ),
    _r(
        "SRC-DXA-2Y",
        "source document",
        "SOURCE_DOC",
        "Women over 50 are advised DEXA every 2 years.",
        "osteoporosis_treatment.txt",
        outputs="dxa_every_1_to_2y",
    ),
    _r(
        "SRC-URGENT",
        "source document",
        "SOURCE_DOC",
        "Seek medical attention immediately for unexplained severe spinal pain, sudden height loss of more "
        "than 2 cm, or a fragility fracture.",
        "osteoporosis_treatment.txt",
        outputs="urgent_clinical_review",
    ),
    _r(
        "SRC-BONE-PROTECT",
        "source document",
        "SOURCE_DOC",
        "Patients on long-term corticosteroids or acid suppressants should start bone protection early.",
        "osteoporosis_treatment.txt",
    ),
    _r(
        "SRC-LIFESTYLE",
        "source document",
        "SOURCE_DOC",
        "Weight-bearing and balance exercise, fall-proofing the home, caffeine <= 3 cups and alcohol <= 1 "
        "serving a day, salt < 5 g a day; traditional Chinese medicine only as a disclosed adjunct.",
        "osteoporosis_treatment.txt",
    ),
)
"""Every rule, in RULES.md order, then the source-document rules."""

RULES_BY_ID: Final = MappingProxyType({rule.id: rule for rule in RULES})
"""Look-up by id."""

RULES_MD_IDS: Final = tuple(r.id for r in RULES if r.section.isdigit() and not r.assigned_id)
"""The ids that RULES.md itself defines."""


def rule(rule_id: str) -> Rule:
    """Return the rule with ``rule_id``; a ``KeyError`` names an id missing from the registry (a bug)."""
    return RULES_BY_ID[rule_id]


def rules_table() -> list[dict[str, str]]:
    """Return the registry as plain rows (id, section, text, source, verification) for a UI or report."""
    return [
        {"id": r.id, "section": r.section, "text": r.text, "source": r.source, "verification": r.verification}
        for r in RULES
    ]
