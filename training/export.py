"""``vfrisk export``: one-file ONNX with the model card in its metadata, checked against PyTorch on real
studies before the bundle is written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from inference.bundle import CARD_KEY, file_sha256
from inference.crop import spine_crop
from inference.errors import InputError
from inference.labs import LabInput, resolve_labs
from inference.spec import LAB_CATALOGUE, PreprocessSpec
from models.full import ARCH_VERSION, INPUT_NAMES, OUTPUT_NAMES, VfriskModel
from training.data import read_manifest
from training.run import library_versions

MAX_ABS_DP = 1e-5
MAX_ABS_NAMES = 1e-4
"""Largest difference allowed in the name-class probabilities (a softmax over 12 classes at every position: float32
summation order moves them by about 1e-5; a body is found at 0.5)."""
MODEL_NAME = "vfrisk-spine-6m"


def load_checkpoint(run: Path, variant: str = "fused") -> tuple[VfriskModel, dict[str, Any]]:
    """Rebuild a trained model variant from a run folder."""
    path = run / "checkpoint.pt"
    if not path.is_file():
        raise InputError("bad_run", f"{run.name} has no checkpoint.pt (run vfrisk train first)")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ckpt.get("arch_version", ARCH_VERSION) != ARCH_VERSION:
        raise InputError("bad_run", f"checkpoint architecture v{ckpt['arch_version']} is not this code's "
                         f"v{ARCH_VERSION}: retrain")
    spec = PreprocessSpec.from_dict(ckpt["spec"])
    cfg = ckpt["config"]
    img, lab = {"fused": (True, True), "labs_only": (False, True), "image_only": (True, False)}[variant]
    model = VfriskModel(spec, width=cfg["width"], n_members=cfg["members"], use_image=img, use_labs=lab)
    model.load_state_dict(ckpt["state"][variant])
    model.risk.z = ckpt["risk_z"]
    return model.eval(), ckpt


def check_inputs(
    cohort: Path | None, spec: PreprocessSpec, n: int = 3
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Real studies for the ONNX check: from the training cohort (those whose files are still there: a pruned
    cohort keeps only its cache), or a fresh small synthetic one."""
    from inference.io import load_any as load_study

    tmp = None
    rows = []
    if cohort is not None and (cohort / "manifest.csv").is_file():
        rows = [r for r in read_manifest(cohort) if (cohort / r["study"]).exists()][:n]
    if not rows:
        from data.synthetic.cohort import CohortOptions, write_cohort

        tmp = Path(tempfile.mkdtemp(prefix="vfrisk-export-"))
        cohort = tmp / "c"
        write_cohort(cohort, CohortOptions(n=n, seed=424242, matrix=160, workers=1, extras=False))
        rows = read_manifest(cohort)[:n]
    assert cohort is not None
    try:
        out = []
        for row in rows:
            study = load_study(cohort / row["study"])
            crop = spine_crop(study, spec)
            labs = np.array([resolve_labs(LabInput.from_cells(row), study).vector(spec.labs)], dtype=np.float32)
            out.append((crop.image[None, None], np.array([crop.spacing_mm], dtype=np.float32), labs))
        return out
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of the model's parameters and buffers (names, shapes and float32 values, in state-dict order): the
    part of a bundle's version that tells two models of the same day and preprocessing spec apart."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        values = tensor.detach().to("cpu", torch.float32).contiguous().numpy()
        digest.update(f"{name}:{tuple(values.shape)}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def model_card(model: VfriskModel, ckpt: dict[str, Any], run: Path, variant: str = "fused") -> dict[str, Any]:
    """The card: identity, preprocessing spec and hash, inputs/outputs, calibration, data, metrics, use."""
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    spec = model.spec
    return {
        "name": MODEL_NAME if variant == "fused" else f"{MODEL_NAME}-baseline-{variant}",
        "version": datetime.now(UTC).strftime("%Y.%m.%d") + f"-{spec.sha256()[:8]}-{weights_sha256(model)[:8]}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "preprocessing": {"spec": spec.to_dict(), "sha256": spec.sha256(),
                          "crop": "inference.crop.spine_crop (numpy, shared by training and inference)",
                          "in_graph": "trilinear resample to 2x grid + 2x average pool, HU window, lab "
                                      "log/standardisation, per-level pooling, risk head, Platt calibration"},
        "inputs": {
            "image": "float32 [N,1,D,H,W] HU crop from spine_crop, canonical (Z=+S, Y=+P, X=+L)",
            "spacing": "float32 [N,3] voxel size of the crop in mm (Z, Y, X)",
            "labs": [{"name": s.name, "unit": s.unit, "valid_range": [s.low, s.high],
                      "description": s.description} for s in LAB_CATALOGUE],
        },
        "outputs": {
            "probability": "calibrated P(new vertebral fracture within 6 months), [N]",
            "interval": f"[N,2] {ckpt['config']['interval_level']:.0%} interval from the bootstrap ensemble, "
                        "widened by width_missing logits per share of T11-L5 not in view",
            "level_presence": f"[N,{len(spec.levels)}] highest probability of each level along z "
                              f"({', '.join(spec.levels)})",
            "level_z_mm": f"[N,{len(spec.levels)}] probability-weighted centre of each level, mm from the crop's "
                          "first slice",
            "level_hu": f"[N,{len(spec.levels)}] trabecular HU (pooled)",
            "level_height_ratio": f"[N,{len(spec.levels)}] height ratio (pooled)",
            "name_probs": f"[N,{len(spec.name_classes)},Z'] probability of each name class "
                          f"({', '.join(spec.name_classes)}) per profile position",
            "hu_profile": "[N,Z'] trabecular HU per profile position",
            "ratio_profile": "[N,Z'] height ratio per profile position",
            "profile_step_mm": "[N] profile position i lies at (i + 0.5) * step mm from the crop's first slice",
        },
        "levels": list(spec.levels),
        "calibration": {"method": "Platt scaling of the ensemble-mean logit on the calibration split",
                        "platt": model.risk.platt.tolist(), "interval_z": model.risk.z,
                        "interval_width": float(model.risk.width), "width_base": float(model.risk.width_base),
                        "width_missing": float(model.risk.width_missing)},
        "training_data": ckpt.get("cohort", {}),
        "training_config": ckpt["config"],
        "metrics": {k: v for k, v in metrics.items() if k in ("fused", "labs_only", "image_only", "split_counts")},
        "intended_use": "Research and decision support for clinicians: 6-month new vertebral fracture risk "
                        "from an adult thoracolumbar CT plus urine NTX and DXA T-score. Not a diagnostic "
                        "device. Trained on synthetic phantoms only: validate locally before any use.",
        "libraries": library_versions(),
    }


def export_bundle(run: Path, out: Path, cohort: Path | None = None, variant: str = "fused") -> dict[str, Any]:
    """Export, check ONNX Runtime against PyTorch on real studies, then write the bundle.

    ``variant`` is ``fused`` (the model) or one of the baselines fitted on the same split (``labs_only``,
    ``image_only``), exported the same way so that ``vfrisk evaluate --compare`` can score them side by side.
    """
    import onnxruntime as ort

    if variant not in ("fused", "labs_only", "image_only"):
        raise InputError("bad_usage", f"unknown variant {variant}: fused, labs_only or image_only")
    model, ckpt = load_checkpoint(run, variant)
    if cohort is None and ckpt.get("cohort_path"):
        cohort = Path(ckpt["cohort_path"])
    card = model_card(model, ckpt, run, variant)
    samples = check_inputs(cohort, model.spec)
    tmp = Path(tempfile.mkdtemp(prefix="vfrisk-bundle-"))
    try:
        onnx_path = tmp / "model.onnx"
        _export_onnx(model, samples[0], onnx_path)
        proto = onnx.load(str(onnx_path))
        onnx.helper.set_model_props(proto, {CARD_KEY: json.dumps(card, sort_keys=True)})
        onnx.save(proto, str(onnx_path))
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        worst, worst_names = 0.0, 0.0
        for image, spacing, labs in samples:
            ref = model(torch.from_numpy(image), torch.from_numpy(spacing), torch.from_numpy(labs))
            got = session.run(None, {"image": image, "spacing": spacing, "labs": labs})
            for k in (0, 1):  # probability, interval
                worst = max(worst, float(np.abs(got[k] - ref[k].detach().numpy()).max()))
            worst_names = max(worst_names, float(np.abs(got[6] - ref[6].detach().numpy()).max()))
        if worst > MAX_ABS_DP or worst_names > MAX_ABS_NAMES:
            raise InputError("export_mismatch", f"ONNX and PyTorch differ by {worst:.2e} (probability; at most "
                             f"{MAX_ABS_DP:g}) and {worst_names:.2e} (name probabilities; at most {MAX_ABS_NAMES:g})")
        card["export_check"] = {"studies": len(samples), "max_abs_dp": worst, "max_abs_name_probs": worst_names}
        card["onnx_sha256"] = file_sha256(onnx_path)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(onnx_path, out / "model.onnx")
        (out / "model.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"bundle": str(out), "version": card["version"], "max_abs_dp": worst,
            "onnx_bytes": (out / "model.onnx").stat().st_size}


def _export_onnx(model: VfriskModel, sample: tuple[np.ndarray, np.ndarray, np.ndarray], path: Path) -> None:
    """torch.onnx.export (dynamo) with a dynamic batch and crop size, one file."""
    image, spacing, labs = (torch.from_numpy(a) for a in sample)
    batch = torch.export.Dim("batch", min=1, max=64)
    d, h, w = (torch.export.Dim(n, min=8, max=2048) for n in ("depth", "height", "width"))
    shapes = {"image": {0: batch, 2: d, 3: h, 4: w}, "spacing": {0: batch}, "labs": {0: batch}}
    torch.onnx.export(model, (image, spacing, labs), str(path), input_names=list(INPUT_NAMES),
                      output_names=list(OUTPUT_NAMES), dynamic_shapes=shapes, external_data=False,
                      dynamo=True, optimize=True)
