"""The one factory of test results: real :class:`~inference.result.Prediction` and :class:`~vfrisk.result.Result`
objects (never hand-made dicts), so that a fixture cannot drift from the shape the pipeline produces."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inference.findings import Vertebra
from inference.labs import Labs
from inference.result import InputFacts, ModelIdentity, Prediction
from inference.spec import LEVELS
from inference.study import Study
from vfrisk.pipeline import assess
from vfrisk.result import Result

TEST_MODEL = ModelIdentity("vfrisk-test", "0.0.1-test", "ab" * 32,
                           "Trained on synthetic phantoms only: validate locally before any use.")
TEST_LABS = Labs(ntx=52.0, bmd_tscore=-2.6, age=74.0, sex="F")


def vertebra(level: str, *, grade: int | None = 0, ratio: float | None = 1.0, hu: float | None = 140.0,
             z_mm: float | None = 0.0, present: bool = True) -> Vertebra:
    """One level as the engine reports it (absent levels carry no values)."""
    if not present:
        return Vertebra(level, False, None, None, None, None)
    return Vertebra(level, True, grade, ratio, hu, z_mm)


def truth_vertebrae(truth: Mapping[str, str], absent: Sequence[str] = ()) -> tuple[Vertebra, ...]:
    """Levels with the synthetic generator's truth (grade, height ratio, HU, centre) as the findings."""
    return tuple(
        vertebra(lv, grade=int(truth[f"{lv}_grade"]), ratio=float(truth[f"{lv}_height_ratio"]),
                 hu=float(truth[f"{lv}_hu"]), z_mm=float(truth[f"{lv}_z_mm"]), present=lv not in absent)
        for lv in LEVELS if truth.get(f"{lv}_grade") not in (None, ""))


def make_prediction(study: Study | None = None, *, probability: float = 0.137,
                    interval: tuple[float, float] = (0.09, 0.19), vertebrae: Sequence[Vertebra] = (),
                    labs: Labs = TEST_LABS, warnings: Sequence[str] = (), model: ModelIdentity = TEST_MODEL,
                    uids: tuple[str, str] = ("1.2.3", "1.2.3.4")) -> Prediction:
    """A prediction for ``study`` (its UIDs, shape and hash) or, without one, for a made-up series."""
    if study is not None:
        uids = (study.study_instance_uid, study.series_instance_uid)
        facts = InputFacts(int(study.volume.shape[0]), tuple(study.spacing_mm),  # type: ignore[arg-type]
                           study.orientation, study.input_sha256())
        warnings = (*study.warnings, *warnings)
    else:
        facts = InputFacts(100, (1.0, 0.7, 0.7), "axial", "0" * 64)
    return Prediction(probability=probability, interval=interval, model=model, study_instance_uid=uids[0],
                      series_instance_uid=uids[1], input=facts, labs=labs, vertebrae=tuple(vertebrae),
                      warnings=tuple(warnings))


def make_result(prediction: Prediction, context: Mapping[str, Any] | None = None) -> Result:
    """The prediction with the real suggestion engine's suggestion for ``context``."""
    return assess(prediction, context)
