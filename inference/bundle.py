"""The model bundle: ``model.onnx`` + ``model.json`` (the card, also inside the ONNX metadata).

The loader refuses a bundle whose file hash, spec version or spec hash does not match this code: the model
file carries its own preprocessing and nothing is allowed to drift silently.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from inference.errors import InputError
from inference.spec import SPEC_VERSION, PreprocessSpec

CARD_KEY = "vfrisk_card"
UNDESCRIBED = "Training data: not described in the model card."
"""The training-data line of a card that does not say what the model was trained on (never a guess)."""


def training_line(card: dict[str, Any]) -> str:
    """One line on what the model was trained on, from its card: ``training_data.description`` when the card
    has one, else the sentence of ``intended_use`` that says it ("Trained on synthetic phantoms only: ...");
    :data:`UNDESCRIBED` when neither does. Every output states it (issue 21)."""
    data = card.get("training_data")
    if isinstance(data, dict) and isinstance(data.get("description"), str) and data["description"].strip():
        return " ".join(data["description"].split())
    use = " ".join(str(card.get("intended_use") or "").split())
    start = use.lower().find("trained on")
    if start < 0:
        return UNDESCRIBED
    end = use.find(". ", start)
    return use[start:] if end < 0 else use[start: end + 1]


def default_bundle() -> Path:
    """The bundled default model (``models/default``)."""
    return Path(str(resources.files("models") / "default"))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its card, spec and the ONNX path."""

    path: Path
    card: dict[str, Any]
    spec: PreprocessSpec
    onnx_sha256: str

    @property
    def identity(self) -> dict[str, str]:
        """Name, version, hash and the training-data line (:func:`training_line`), as reported in every result."""
        return {"name": self.card["name"], "version": self.card["version"], "sha256": self.onnx_sha256,
                "training_data": training_line(self.card)}

    @property
    def lab_ranges(self) -> dict[str, list[float]]:
        """Valid range of each lab input, from the card."""
        return {lab["name"]: lab["valid_range"] for lab in self.card["inputs"]["labs"]}


def load_bundle(path: Path | None = None) -> Bundle:
    """Read and verify a bundle folder (default: the bundled model)."""
    folder = path or default_bundle()
    card_path, onnx_path = folder / "model.json", folder / "model.onnx"
    if not card_path.is_file() or not onnx_path.is_file():
        raise InputError("bad_bundle", f"{folder.name} is not a model bundle (needs model.json and model.onnx)")
    try:
        card = json.loads(card_path.read_text())
    except ValueError as exc:
        raise InputError("bad_bundle", f"model.json is not valid JSON: {exc}") from exc
    digest = file_sha256(onnx_path)
    if card.get("onnx_sha256") != digest:
        raise InputError("bad_bundle", "model.onnx does not match the hash in its model card")
    spec_d = card.get("preprocessing", {})
    if spec_d.get("spec", {}).get("version") != SPEC_VERSION:
        raise InputError("bad_bundle", f"model spec version {spec_d.get('spec', {}).get('version')} is not "
                         f"the version this vfrisk implements ({SPEC_VERSION})")
    spec = PreprocessSpec.from_dict(spec_d["spec"])
    if spec.sha256() != spec_d.get("sha256"):
        raise InputError("bad_bundle", "the preprocessing spec in the model card does not match its hash")
    return Bundle(folder, card, spec, digest)


def make_session(bundle: Bundle, threads: int = 0) -> Any:
    """ONNX Runtime session: CUDA when present, CPU otherwise; checks the embedded card matches."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    n = threads or min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    opts.intra_op_num_threads = n
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    session = ort.InferenceSession(str(bundle.path / "model.onnx"), sess_options=opts, providers=providers)
    embedded = session.get_modelmeta().custom_metadata_map.get(CARD_KEY)
    if embedded is None or json.loads(embedded).get("preprocessing") != bundle.card.get("preprocessing"):
        raise InputError("bad_bundle", "the card inside model.onnx does not match model.json")
    return session
