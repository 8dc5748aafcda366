"""Lifestyle advice from the user's source document (``shared/seed/osteoporosis_treatment.txt``)."""

from __future__ import annotations

from dataclasses import dataclass

from clinical.vocabulary import LifestyleTopic

SOURCE = "osteoporosis_treatment.txt (SRC-LIFESTYLE, SRC-CAVD)"


@dataclass(frozen=True)
class Advice:
    """One piece of lifestyle advice."""

    topic: LifestyleTopic
    advice: str


LIFESTYLE: tuple[Advice, ...] = (
    Advice(
        LifestyleTopic.CALCIUM_VITAMIN_D,
        "Calcium 1200-1500 mg a day, food first (cheese, dark green leafy vegetables, fortified foods), with "
        "vitamin D3 800-2000 IU a day; do not exceed 2000-2500 mg calcium or 4000 IU vitamin D a day.",
    ),
    Advice(
        LifestyleTopic.WEIGHT_BEARING_EXERCISE,
        "Weight-bearing and muscle-strengthening exercise 2-3 times a week for about 30 minutes (walking, "
        "stair "
        "climbing, squats); low-impact options for older adults, planned with a physiotherapist.",
    ),
    Advice(
        LifestyleTopic.BALANCE_TRAINING,
        "Balance training such as Tai Chi or yoga to reduce falls; non-slip footwear and walking aids as "
        "needed.",
    ),
    Advice(
        LifestyleTopic.FALL_PROOF_HOME,
        "Fall-proof the home: remove loose rugs, install handrails, night lighting, non-slip bathroom mats; "
        "avoid walking in slippers.",
    ),
    Advice(LifestyleTopic.CAFFEINE, "Limit coffee to at most 3 cups a day."),
    Advice(LifestyleTopic.ALCOHOL, "Limit alcohol to at most 1 serving (10 g of pure alcohol) a day."),
    Advice(LifestyleTopic.SALT, "Keep salt below 5 g a day (processed foods raise urinary calcium loss)."),
    Advice(
        LifestyleTopic.TRADITIONAL_CHINESE_MEDICINE,
        "Traditional Chinese medicine only as an adjunct, never instead of evidence-based treatment; tell "
        "the "
        "physician about every herbal medicine to avoid interactions.",
    ),
)
"""The advice given with every suggestion."""
