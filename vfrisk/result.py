"""The typed result of the application pipeline: a :class:`~inference.result.Prediction` and the
:class:`~clinical.suggestion.Suggestion` made from it, as the CLI prints it and every report writer, the web app
and the PACS glue read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from clinical.suggestion import Alert, Suggestion
from clinical.vocabulary import AlertKey, DrugClass
from inference.bundle import UNDESCRIBED
from inference.findings import Vertebra
from inference.labs import Labs
from inference.result import ModelIdentity, Prediction

_BISPHOSPHONATES = (DrugClass.ORAL_BISPHOSPHONATE, DrugClass.IV_BISPHOSPHONATE)
ALERT_CLASSES: Final = MappingProxyType({
    AlertKey.DENOSUMAB_NO_STOP: (DrugClass.DENOSUMAB,),
    AlertKey.DENOSUMAB_CKD_HYPOCALCAEMIA_RISK: (DrugClass.DENOSUMAB,),
    AlertKey.ROMOSOZUMAB_CV_CONTRAINDICATION: (DrugClass.ROMOSOZUMAB,),
    AlertKey.ROMOSOZUMAB_COURSE_LIMIT: (DrugClass.ROMOSOZUMAB,),
    AlertKey.PTH_ANALOG_OSTEOSARCOMA_RISK: (DrugClass.PTH_ANALOG,),
    AlertKey.TERIPARATIDE_COURSE_LIMIT: (DrugClass.PTH_ANALOG,),
    AlertKey.ANABOLIC_FOLLOWUP_ANTIRESORPTIVE: (DrugClass.PTH_ANALOG, DrugClass.ROMOSOZUMAB),
    AlertKey.ORAL_BP_ADMINISTRATION_RULES: (DrugClass.ORAL_BISPHOSPHONATE,),
    AlertKey.RENAL_CONTRAINDICATION: _BISPHOSPHONATES,
    AlertKey.DRUG_HOLIDAY_ELIGIBLE: _BISPHOSPHONATES,
    AlertKey.END_DRUG_HOLIDAY: _BISPHOSPHONATES,
})
"""The drug classes an alert is about (the alert's key names the drug or class it concerns): the UI and the PDF
show such an alert beside that class as a caution of the choice. A display association only: the engine alone
chooses, orders and words the alerts; an alert about no one class is shown only in the alert list."""


@dataclass(frozen=True)
class Result:
    """A scored study with its suggestion (``to_json`` is the result JSON of DESIGN.md)."""

    prediction: Prediction
    suggestion: Suggestion

    def to_json(self) -> dict[str, Any]:
        """The result JSON: the prediction's fields, then ``suggestion`` and ``risk_category``."""
        return self.prediction.to_json() | {"suggestion": self.suggestion.to_json(),
                                            "risk_category": self.risk_category}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Result:
        """Validate a result JSON; ``ValueError`` naming the bad field."""
        if not isinstance(data.get("suggestion"), Mapping):
            raise ValueError("result.suggestion: an object is required")
        suggestion = Suggestion.from_json(data["suggestion"])
        category = data.get("risk_category", suggestion.risk_category.value)
        if category != suggestion.risk_category.value:
            raise ValueError(f"result.risk_category: {category!r} differs from the suggestion's")
        return cls(Prediction.from_json(data), suggestion)

    @property
    def probability(self) -> float:
        """Calibrated 6-month probability."""
        return self.prediction.probability

    @property
    def interval(self) -> tuple[float, float]:
        """Its uncertainty interval."""
        return self.prediction.interval

    @property
    def model(self) -> ModelIdentity:
        """The model that scored the study."""
        return self.prediction.model

    @property
    def study_instance_uid(self) -> str:
        """Study Instance UID of the scored series."""
        return self.prediction.study_instance_uid

    @property
    def series_instance_uid(self) -> str:
        """Series Instance UID of the scored series."""
        return self.prediction.series_instance_uid

    @property
    def input_sha256(self) -> str:
        """Hash of exactly what the model saw."""
        return self.prediction.input.sha256

    @property
    def labs(self) -> Labs:
        """The labs the model used."""
        return self.prediction.labs

    @property
    def vertebrae(self) -> tuple[Vertebra, ...]:
        """Per-vertebra findings."""
        return self.prediction.vertebrae

    @property
    def warnings(self) -> tuple[str, ...]:
        """Warnings of the prediction and of the suggestion engine."""
        return self.prediction.warnings

    @property
    def disclaimer(self) -> str:
        """The disclaimer."""
        return self.prediction.disclaimer

    @property
    def risk_category(self) -> str:
        """The suggestion's final risk category (``low``, ``high``, ``very_high``)."""
        return self.suggestion.risk_category.value

    def cautions(self, choice: DrugClass) -> tuple[Alert, ...]:
        """The engine's alerts about one first-line choice (:data:`ALERT_CLASSES`), in the engine's order."""
        return tuple(a for a in self.suggestion.alerts if choice in ALERT_CLASSES.get(a.key, ()))

    @property
    def training_data(self) -> str:
        """The model card's one line on the training data (every output states it)."""
        return self.prediction.model.training_data or UNDESCRIBED

    def found_levels(self) -> tuple[Vertebra, ...]:
        """The levels found in the volume."""
        return self.prediction.found_levels()
