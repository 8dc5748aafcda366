"""Scoring one study, the stage every entry point shares: read the study, validate the labs, score it.

``vfrisk predict``, the web app, the C-STORE listener, the DICOMweb puller and ``vfrisk evaluate`` call
:func:`score_source` (or :func:`score_study` on a study they already read); the batch job runs the same rules in
two stages (:mod:`inference.batch.work`) so that a row decodes only the model's crop. The suggestion and the
reports are the application's next stages (:mod:`vfrisk.pipeline`), outside ``inference/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from inference.labs import LabInput, resolve_labs
from inference.result import Prediction
from inference.study import Study

if TYPE_CHECKING:
    from inference.dicom.limits import Limits
    from inference.engine import Engine

Source = Path | str | Sequence[Path | str]
"""A study: a folder (searched recursively), a zip, DICOM files, or one NIfTI file."""


@dataclass(frozen=True)
class Scored:
    """A study read from its source and its prediction (the study is kept for the reports and the viewer)."""

    study: Study
    prediction: Prediction


def read_study(source: Source, limits: Limits | None = None) -> Study:
    """Read and validate a study (DICOM or NIfTI), refusing with a reason what cannot be scored."""
    from inference.io import load_any

    return load_any(source, limits=limits)


def score_study(study: Study, given: LabInput, engine: Engine) -> Prediction:
    """Validate the labs against the bundle (age and sex from the header unless given) and score the study."""
    return engine.predict(study, resolve_labs(given, study, engine.lab_ranges))


def score_source(source: Source, given: LabInput, engine: Engine, limits: Limits | None = None) -> Scored:
    """Read, validate and score one study: the one path of every entry point but the batch's row stages."""
    study = read_study(source, limits)
    return Scored(study, score_study(study, given, engine))
