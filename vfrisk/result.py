"""The typed result of the application pipeline: a :class:`~inference.result.Prediction` and the
:class:`~clinical.suggestion.Suggestion` made from it, as the CLI prints it and every report writer, the web app
and the PACS glue read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clinical.suggestion import Suggestion
from inference.findings import Vertebra
from inference.labs import Labs
from inference.result import ModelIdentity, Prediction


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

    def found_levels(self) -> tuple[Vertebra, ...]:
        """The levels found in the volume."""
        return self.prediction.found_levels()
