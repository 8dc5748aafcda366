"""A stand-in engine for the browser tests of the page (issue 21) when no default model of this code's spec is
installed: the page, the viewer, the form and the errors do not depend on what the model says.

It reads the default model card (for the lab labels, ranges and the training-data line) without loading the model,
crops the volume's middle, and reports seven levels T11-L5 at a 32 mm pitch around the middle of the scan (L1 grade
1, L5 with an uncertain name) and a probability of 0.12. Never used outside tests; ``main`` starts the app with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from factories import make_prediction

from inference.bundle import default_bundle, training_line
from inference.findings import Vertebra
from inference.labs import Labs
from inference.result import ModelIdentity, Prediction
from inference.study import Study

LEVELS = ("T11", "T12", "L1", "L2", "L3", "L4", "L5")
PITCH_MM = 32.0


class StandInEngine:
    """The engine's interface (``bundle``, ``lab_ranges``, ``crop``, ``predict``) without a model."""

    def __init__(self, bundle: Path | None = None, threads: int = 0) -> None:
        card = json.loads(((bundle or default_bundle()) / "model.json").read_text())
        identity = {"name": "stand-in", "version": "0.0-standin", "sha256": "0" * 64,
                    "training_data": training_line(card)}
        self.bundle = SimpleNamespace(card=card, identity=identity,
                                      lab_ranges={lab["name"]: lab["valid_range"] for lab in card["inputs"]["labs"]})

    @property
    def lab_ranges(self) -> dict[str, list[float]]:
        """Valid ranges of the labs, from the card."""
        return dict(self.bundle.lab_ranges)

    def crop(self, study: Study) -> Any:
        """The middle half of the volume."""
        z, y, x = study.volume.shape
        return SimpleNamespace(start_index=(z // 4, y // 4, x // 4), image=np.zeros((z // 2, y // 2, x // 2)))

    def predict(self, study: Study, labs: Labs) -> Prediction:
        """Seven levels around the middle of the scan."""
        n = study.volume.shape[0]
        mid = float((study.affine @ np.array([n / 2.0, 0.0, 0.0, 1.0]))[2])
        verts = []
        for k, level in enumerate(LEVELS):
            z = mid + (3 - k) * PITCH_MM
            uncertain = level == "L5"
            verts.append(Vertebra(level, True, 1 if level == "L1" else 0, 0.78 if level == "L1" else 0.97,
                                  95.0 if level == "L1" else 150.0, z, None, 0.62 if uncertain else 0.97, uncertain))
        return make_prediction(study, probability=0.12, interval=(0.07, 0.19), vertebrae=verts, labs=labs,
                               model=ModelIdentity(**self.bundle.identity))


def main(port: int) -> None:
    """Start the app on loopback with the stand-in engine."""
    import inference.engine

    inference.engine.Engine = StandInEngine  # type: ignore[misc, assignment]
    import app

    app.main(host="127.0.0.1", port=port)
