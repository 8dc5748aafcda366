"""``vfrisk train``: image network on auxiliary per-vertebra truth, then the fused risk head on outcomes,
calibration on the calibration split, evaluation on the test split, and a complete run folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from inference.errors import InputError
from inference.findings import Body, find_bodies, name_bodies
from inference.spec import OTHER, RISK_LEVELS, PreprocessSpec
from models.full import VfriskModel
from models.risk import RiskHead
from training.augment import augment, bend_sacrum, bone_contrast, elastic, enhance_organs, vary_spine
from training.config import TrainConfig
from training.data import HALF_BODY_MM, Row, build_cache, patient_split, read_manifest, read_truth, to_row
from training.distributed import DistInfo, shard
from training.evaluate import level_truth
from training.fov_check import FOUND_MM

log = logging.getLogger("vfrisk.train")


@dataclass
class Split:
    """Rows of one split with their cached grids."""

    rows: list[Row]
    images: torch.Tensor
    """(N, 1, D, H, W) float16 windowed grid."""
    z_mm: torch.Tensor
    """(N, L) truth z of each level centre (NaN when unknown)."""
    in_view: torch.Tensor
    """(N, L) 1 where the whole body is in the scan, 0 where not, NaN when unknown."""

    def labs(self) -> torch.Tensor:
        """(N, 4) raw labs."""
        return torch.tensor([r.labs for r in self.rows], dtype=torch.float32)

    def labels(self) -> np.ndarray:
        """0/1 outcomes."""
        return np.array([r.label for r in self.rows])

    def truth_levels(self, key: str) -> torch.Tensor:
        """(N, L) per-level truth (HU as imaged, or height ratio) from truth.csv, NaN when absent
        (:func:`training.evaluate.level_truth`)."""
        return torch.from_numpy(level_truth([r.truth for r in self.rows], key)).float()


def pick_device(cfg: TrainConfig, info: DistInfo | None = None) -> torch.device:
    """CUDA when asked or available (auto; this process's GPU under torchrun), else CPU."""
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", info.local_rank) if info is not None and info.active else torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed torch and numpy; deterministic algorithms where available."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def load_splits(cohort: Path | Sequence[Path], cfg: TrainConfig, spec: PreprocessSpec) -> dict[str, Split]:
    """Read manifest and truth of each cohort, decode through each cohort's cache, split by patient over them all
    (a patient is keyed by cohort and patient id, so two cohorts' ``P00001`` are different people)."""
    cohorts = [cohort] if isinstance(cohort, Path) else list(cohort)
    keyed: list[tuple[Row | None, dict[str, Any]]] = []
    for c in cohorts:
        rows = read_manifest(c)
        if cfg.max_studies:
            rows = rows[: cfg.max_studies]
        truth = read_truth(c)
        cache = Path(cfg.cache_dir) / c.name if cfg.cache_dir and len(cohorts) > 1 else (
            Path(cfg.cache_dir) if cfg.cache_dir else c / ".vfrisk-cache")
        metas = build_cache(c, rows, truth, spec, cache, cfg.workers)
        for r, m in zip(rows, metas, strict=True):
            row = to_row(r, m, truth.get(r["study"], {}))
            if row is not None and len(cohorts) > 1:
                row = dataclasses.replace(row, study=f"{c.name}/{row.study}", patient=f"{c.name}/{row.patient}")
            keyed.append((row, m))
    skipped = sum(1 for row, _ in keyed if row is None)
    if skipped:
        log.warning("%d studies could not be used (unreadable or no age/sex)", skipped)
    kept = [(row, m) for row, m in keyed if row is not None]
    assign = patient_split([row.patient for row, _ in kept], cfg.split,
                           cfg.seed if cfg.split_seed is None else cfg.split_seed)
    out = {}
    for name in ("train", "cal", "test"):
        sel = [(row, m) for (row, m), a in zip(kept, assign, strict=True) if a == name]
        if len(sel) < 2:
            raise InputError("bad_cohort", f"the {name} split has fewer than 2 usable studies")
        imgs = torch.from_numpy(np.stack([np.load(m["cache"]) for _, m in sel]))[:, None]
        z = torch.tensor([m["z_mm"] for _, m in sel], dtype=torch.float32)
        seen = torch.tensor([m["in_view"] for _, m in sel], dtype=torch.float32)
        out[name] = Split([row for row, _ in sel], imgs, z, seen)
    return out


CENTRE_MM = 4.0
"""Positions this close to a body centre carry its name class (and its HU and height-ratio truth)."""
NONE_MM = 14.0
"""Positions at least this far from every known centre carry the ``none`` class (between: not supervised)."""


def scan_range(x: torch.Tensor, mm_per_voxel: float) -> torch.Tensor:
    """(N, 2) the z range (mm from the crop's first slice) that holds image data: padding beyond the scan (and the
    parts a cut took away) is air at -1000 HU, 0 after windowing, on every voxel of a slice."""
    filled = x.flatten(3).amax(dim=3)[:, 0] > 0  # (N, D) grid slices with data
    out = torch.zeros((x.shape[0], 2))
    for i in range(x.shape[0]):
        idx = filled[i].nonzero()
        if idx.numel():
            out[i, 0], out[i, 1] = float(idx.min()) * mm_per_voxel, float(idx.max() + 1) * mm_per_voxel
    return out


def name_targets(z: torch.Tensor, seen: torch.Tensor, n_z: int, step: float, n_levels: int,
                 scanned: torch.Tensor | None = None) -> torch.Tensor:
    """(N, Z') class index per profile position (-1: not supervised), classes as
    :attr:`PreprocessSpec.name_classes`: a level's class near the centre of a body wholly in view inside the
    crop; ``other`` near the centres of whole vertebrae above T10 (extrapolated at the T10-T11 pitch); ``none``
    far from every known centre (discs, soft tissue, the sacrum below S1, air beyond the scan) and at the centre
    of a body that the scan's edge cuts (so that only whole bodies are found). ``scanned`` (N, 2) is the z range
    holding image data (:func:`scan_range`; default: the whole crop)."""
    other, none = n_levels, n_levels + 1
    pos = (torch.arange(n_z, dtype=torch.float32) + 0.5) * step
    extent = n_z * step
    out = torch.full((z.shape[0], n_z), -1, dtype=torch.long)
    for i in range(z.shape[0]):
        lo, hi = (0.0, extent) if scanned is None else (float(scanned[i, 0]), float(scanned[i, 1]))
        lo, hi = max(lo, 0.0), min(hi, extent)
        lab = out[i]
        centres = z[i][torch.isfinite(z[i])]
        far = ((pos[:, None] - centres[None]).abs().amin(1) >= NONE_MM if centres.numel()
               else torch.ones(n_z, dtype=torch.bool))
        lab[far] = none
        t10, t11 = float(z[i, 0]), float(z[i, 1])
        if math.isfinite(t10) and math.isfinite(t11):
            pitch = t10 - t11  # z runs upwards in the crop
            lab[pos > t10 + NONE_MM] = -1  # vertebrae above T10 and their discs: only their centres supervised
            for k in range(1, 8):
                c = t10 + k * pitch * (1.0 - 0.03 * k)
                if lo + HALF_BODY_MM <= c <= hi - HALF_BODY_MM:
                    lab[(pos - c).abs() <= CENTRE_MM] = other
                elif lo <= c <= hi:
                    lab[(pos - c).abs() <= CENTRE_MM] = none
        for j in range(n_levels):
            zc = float(z[i, j])
            if not math.isfinite(zc):
                continue
            whole = float(seen[i, j]) == 1.0 and lo + HALF_BODY_MM <= zc <= hi - HALF_BODY_MM
            if whole:
                lab[(pos - zc).abs() <= CENTRE_MM] = j
            elif lo <= zc <= hi:
                lab[(pos - zc).abs() <= CENTRE_MM] = none  # a body the edge cuts: not a body to find
    return out


def aux_loss(model: VfriskModel, raw: dict[str, torch.Tensor], z: torch.Tensor, seen: torch.Tensor,
             hu: torch.Tensor, ratio: torch.Tensor, scanned: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """Name-class cross-entropy per position, and trabecular HU and height-ratio losses at the body centres."""
    logits = raw["logits"].float()
    n_levels = len(model.spec.levels)
    target = name_targets(z, seen, logits.shape[2], model.z_step_mm, n_levels, scanned)
    weight = torch.ones(logits.shape[1])
    weight[-1] = 0.3  # "none" dominates the positions
    names = F.cross_entropy(logits, target, weight=weight, ignore_index=-1)
    lvl = target.clamp(0, n_levels - 1)
    at_body = (target >= 0) & (target < n_levels)
    hu_t = torch.gather(hu, 1, lvl)
    ratio_t = torch.gather(ratio, 1, lvl)
    ok = at_body & torch.isfinite(hu_t)
    hu_p, ratio_p = raw["hu"].float(), raw["ratio"].float()
    hu_loss = F.smooth_l1_loss(hu_p[ok] / 25.0, hu_t[ok] / 25.0) if ok.any() else logits.sum() * 0
    ok_r = at_body & torch.isfinite(ratio_t)
    if ok_r.any():
        # deformed levels are rare (a few % of levels): weight them up so the head does not learn "always intact"
        w = 1.0 + 9.0 * (ratio_t[ok_r] < 0.92).float()
        per = F.smooth_l1_loss(ratio_p[ok_r] / 0.03, ratio_t[ok_r] / 0.03, reduction="none")
        r_loss = (per * w).sum() / w.sum()
    else:
        r_loss = logits.sum() * 0
    total = names + hu_loss + r_loss
    parts = {"names": names, "hu": hu_loss, "ratio": r_loss}
    return total, {k: float(v.detach()) for k, v in parts.items()}


def training_batch(model: VfriskModel, tr: Split, idx: torch.Tensor, hu: torch.Tensor, cfg: TrainConfig,
                   gen: torch.Generator, shifts: tuple[int, int, float], xy_shift: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training crops ``idx`` of ``tr`` as augmented for one step: what spines, generators and scanners vary
    (discs, size, tilt, level spacing and body height, noise, kernel, the sacrum's slope; then bone's brightness
    and the tissue calibration, the trabecular HU truth ``hu`` remapped with it), then the field of view. Returns
    the crops, the level centres, the levels wholly in view and the HU truth."""
    mm_vox = model.spec.crop_mm[0] / model.spec.grid[0]
    lo, hi = model.spec.hu_window
    look = (cfg.z_stretch, cfg.noise_sd_hu / (hi - lo), cfg.blur_prob)
    x, z = vary_spine(tr.images[idx].float(), tr.z_mm[idx], gen,
                      (mm_vox, model.spec.crop_mm[1] / model.spec.grid[1]), look, cfg.tilt_deg, cfg.disc_warp,
                      cfg.zoom)
    x, z = bend_sacrum(x, z, gen, (mm_vox, model.spec.crop_mm[1] / model.spec.grid[1]), cfg.sacrum_bend_deg)
    x, hu = bone_contrast(x, hu, gen, (lo, hi), cfg.bone_gain, cfg.tissue_offset_hu, cfg.hu_scale)
    vox = (mm_vox, model.spec.crop_mm[1] / model.spec.grid[1], model.spec.crop_mm[2] / model.spec.grid[2])
    x = enhance_organs(x, gen, vox, (lo, hi), cfg.enhance_prob)
    x = elastic(x, gen, vox, cfg.elastic_mm)
    x, z, seen = augment(x, z, tr.in_view[idx], shifts, gen, mm_vox, cfg.cut_prob, xy_shift)
    return x, z, seen, hu


def train_image_net(model: VfriskModel, splits: dict[str, Split], cfg: TrainConfig,
                    device: torch.device, info: DistInfo | None = None,
                    resume: Path | None = None) -> list[dict[str, float]]:
    """Stage 1: train the image network on auxiliary per-vertebra truth; returns the epoch history.

    With ``resume`` (a file in the run folder), the state after every epoch (network, optimiser, schedule, random
    generator, history) is saved there, and a run started again with the same config goes on from the last epoch
    saved: a killed or timed-out training loses at most one epoch.

    Under torchrun (``info.active``) each process takes its shard of every epoch's permutation (drawn from a
    generator seeded per epoch, so all processes agree) and DistributedDataParallel averages the gradients; one
    process keeps the original single generator, so a one-process run is unchanged."""
    info = info or DistInfo()
    tr = splits["train"]
    hu_t, ratio_t = tr.truth_levels("hu"), tr.truth_levels("height_ratio")
    opt = torch.optim.AdamW(model.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(shard(torch.arange(len(tr.rows)), info)) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, steps))
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * info.rank)
    mm_vox = model.spec.crop_mm[0] / model.spec.grid[0]
    shifts = (int(cfg.z_shift_mm / mm_vox), int(cfg.z_far_shift_mm / mm_vox), cfg.far_shift_prob)
    xy_shift = round(cfg.xy_shift_mm * model.spec.grid[1] / model.spec.crop_mm[1])
    use_bf16 = cfg.bf16 and (device.type == "cuda" or torch.backends.mkldnn.is_available())
    model.net.to(device)
    net: torch.nn.Module = model.net
    if info.active:
        net = torch.nn.parallel.DistributedDataParallel(
            model.net, device_ids=[device.index] if device.type == "cuda" else None)
    tail = TailAverage(model.net, start=steps - round(cfg.average_tail * steps) if cfg.average_tail > 0 else None)
    parts_of_state: dict[str, Any] = {"net": model.net, "opt": opt, "sched": sched, "average": tail}
    history, first = _restore(resume if not info.active else None, cfg, parts_of_state, gen)
    for epoch in range(first, cfg.epochs):
        model.net.to(device).train()
        if info.active:
            perm = shard(torch.randperm(len(tr.rows), generator=torch.Generator().manual_seed(cfg.seed + epoch)),
                         info)
        else:
            perm = torch.randperm(len(tr.rows), generator=gen)
        parts: dict[str, float] = {}
        bar = tqdm(range(0, len(perm), cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not info.main)
        for b in bar:
            idx = perm[b: b + cfg.batch_size]
            if len(idx) < 2:
                continue
            x, z, seen, hu_b = training_batch(model, tr, idx, hu_t[idx], cfg, gen, shifts, xy_shift)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                raw = net(x.to(device))
            loss, items = aux_loss(model, {k: v.cpu() for k, v in raw.items()}, z, seen, hu_b, ratio_t[idx],
                                   scan_range(x, mm_vox))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.net.parameters(), 5.0)
            opt.step()
            sched.step()
            tail.update(model.net, sched.last_epoch)
            for k, v in items.items():
                parts[k] = parts.get(k, 0.0) + v * len(idx) / len(perm)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        if not info.main:
            continue
        val = finding_errors(model, splits["cal"], device)
        history.append({"epoch": epoch + 1, **{f"train_{k}": round(v, 4) for k, v in parts.items()}, **val})
        log.info("epoch %d %s", epoch + 1, json.dumps(history[-1]))
        if resume is not None and not info.active:
            tmp = resume.with_suffix(".tmp")
            torch.save({"config": cfg.to_dict(), "epoch": epoch + 1, "gen": gen.get_state(), "history": history}
                       | {key: part.state_dict() for key, part in parts_of_state.items()}, tmp)
            tmp.replace(resume)  # atomic: a kill mid-save keeps the previous epoch's state
    model.net.to("cpu")
    if tail.apply(model.net):
        log.info("kept the average of the weights over the last %d of %d steps", tail.count, steps)
    return history


def _restore(resume: Path | None, cfg: TrainConfig, parts: dict[str, Any], gen: torch.Generator,
             ) -> tuple[list[dict[str, float]], int]:
    """Load a resumable run's state saved after its last epoch into ``parts`` (network, optimiser, schedule,
    weight average) and ``gen``, when it was saved under the same config; returns (history, epochs done)."""
    if resume is None or not resume.is_file():
        return [], 0
    state = torch.load(resume, map_location="cpu", weights_only=False)
    if state.get("config") != cfg.to_dict():
        return [], 0
    for key, part in parts.items():
        part.load_state_dict(state.get(key, {}))
    gen.set_state(state["gen"])
    log.info("resuming after epoch %d of %d (%s)", int(state["epoch"]), cfg.epochs, resume.name)
    return state["history"], int(state["epoch"])


class TailAverage:
    """The running mean of a network's parameters over the training steps from ``start`` on (stochastic weight
    averaging; :attr:`training.config.TrainConfig.average_tail`). Buffers (batch-norm statistics) are not
    averaged: they are re-estimated for the averaged weights (:func:`recalibrate_norm`)."""

    def __init__(self, net: torch.nn.Module, start: int | None) -> None:
        """Average from step ``start`` (1-based count of steps taken) on; None: off."""
        self.start = start
        self.count = 0
        self.mean: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def update(self, net: torch.nn.Module, step: int) -> None:
        """Fold the weights after step ``step`` into the mean when averaging has begun."""
        if self.start is None or step < self.start:
            return
        self.count += 1
        for name, p in net.named_parameters():
            w = p.detach().to("cpu", torch.float32)
            if name not in self.mean:
                self.mean[name] = w.clone()
            else:
                self.mean[name] += (w - self.mean[name]) / self.count

    @torch.no_grad()
    def apply(self, net: torch.nn.Module) -> bool:
        """Put the mean into the network's parameters; False (the network unchanged) when nothing was averaged."""
        if not self.count:
            return False
        for name, p in net.named_parameters():
            p.copy_(self.mean[name].to(p.device, p.dtype))
        return True

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to go on averaging."""
        return {"count": self.count, "mean": self.mean}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state (an empty dict: nothing averaged yet)."""
        self.count = int(state.get("count", 0))
        self.mean = dict(state.get("mean", {}))


@torch.no_grad()
def recalibrate_norm(model: VfriskModel, split: Split, cfg: TrainConfig, device: torch.device,
                     n: int = 1024) -> None:
    """Re-estimate the batch-norm statistics of the trained network as an average over up to ``n`` training
    crops, augmented as in training (cuts and shifts included), instead of the last batches' running values: the
    statistics then describe every kind of field of view the network saw, and evaluation is stable."""
    norms = [m for m in model.net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    gen = torch.Generator().manual_seed(cfg.seed + 31337)
    mm_vox = model.spec.crop_mm[0] / model.spec.grid[0]
    shifts = (int(cfg.z_shift_mm / mm_vox), int(cfg.z_far_shift_mm / mm_vox), cfg.far_shift_prob)
    model.net.train().to(device)
    order = torch.randperm(len(split.rows), generator=gen)[:n]
    for b in range(0, len(order), cfg.batch_size):
        idx = order[b: b + cfg.batch_size]
        x, _, _ = augment(split.images[idx].float(), split.z_mm[idx], split.in_view[idx], shifts, gen, mm_vox,
                          cfg.cut_prob, round(cfg.xy_shift_mm * model.spec.grid[1] / model.spec.crop_mm[1]))
        model.net(x.to(device))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    model.net.eval().to("cpu")


@torch.no_grad()
def findings_of(model: VfriskModel, split: Split, device: torch.device) -> dict[str, torch.Tensor]:
    """Per-level findings of every study in a split (eval mode, no augmentation), with each study's scanned
    z range (``window``, :func:`scan_range`) as the engine takes it from the crop."""
    model.net.eval().to(device)
    chunks: dict[str, list[torch.Tensor]] = {}
    mm_vox = model.spec.crop_mm[0] / model.spec.grid[0]
    for b in range(0, len(split.rows), 16):
        x = split.images[b: b + 16].float()
        found = model.findings(x.to(device))
        for k, v in found.items():
            chunks.setdefault(k, []).append(v.float().cpu())
        chunks.setdefault("window", []).append(scan_range(x, mm_vox))
    model.net.to("cpu")
    return {k: torch.cat(v) for k, v in chunks.items()}


def bodies_of(model: VfriskModel, found: dict[str, torch.Tensor], i: int) -> list[Body]:
    """The bodies the engine's :func:`inference.findings.find_bodies` finds on study ``i`` of :func:`findings_of`'s
    profiles (the torch path reads them as the engine reads the ONNX outputs)."""
    window = (float(found["window"][i, 0]), float(found["window"][i, 1])) if "window" in found else None
    return find_bodies({"name_probs": found["probs"][i].numpy(), "hu_profile": found["hu_profile"][i].numpy(),
                        "ratio_profile": found["ratio_profile"][i].numpy(),
                        "profile_step_mm": np.asarray(model.z_step_mm)}, (*model.spec.levels, OTHER), window)


def body_matches(model: VfriskModel, found: dict[str, torch.Tensor], z: torch.Tensor, seen: torch.Tensor
                 ) -> list[tuple[int, int, Body | None]]:
    """(study, level index, the body found within :data:`FOUND_MM` of it or None) for every level wholly in view
    inside the crop, bodies found by the engine's own :func:`inference.findings.find_bodies`."""
    extent = model.spec.crop_mm[0]
    out = []
    for i in range(z.shape[0]):
        bodies = bodies_of(model, found, i)
        for j in range(z.shape[1]):
            zc = float(z[i, j])
            if not (math.isfinite(zc) and float(seen[i, j]) == 1.0 and HALF_BODY_MM <= zc <= extent - HALF_BODY_MM):
                continue
            near = min(bodies, key=lambda b: abs(b.z_mm - zc), default=None)
            out.append((i, j, near if near is not None and abs(near.z_mm - zc) <= FOUND_MM else None))
    return out


def finding_errors(model: VfriskModel, split: Split, device: torch.device) -> dict[str, float]:
    """Bodies found (within 10 mm) and named right among the levels wholly in view, and the mean absolute
    errors of HU and height ratio at the bodies found under their right name."""
    found = findings_of(model, split, device)
    matches = body_matches(model, found, split.z_mm, split.in_view)
    hu, ratio = split.truth_levels("hu"), split.truth_levels("height_ratio")
    levels = model.spec.levels
    hit = [(i, j, b) for i, j, b in matches if b is not None]
    right = [(i, j, b) for i, j, b in hit if b.name == levels[j]]

    def mae(truth: torch.Tensor, key: str) -> float:
        errs = [abs(getattr(b, key) - float(truth[i, j])) for i, j, b in right if math.isfinite(float(truth[i, j]))]
        return round(float(np.mean(errs)), 4) if errs else float("nan")

    return {"val_found": round(len(hit) / max(1, len(matches)), 4),
            "val_named": round(len(right) / max(1, len(hit)), 4),
            "val_hu_mae": mae(hu, "hu"), "val_ratio_mae": mae(ratio, "ratio")}


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float, weights: torch.Tensor | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-penalised logistic regression by L-BFGS; returns (weight, bias)."""
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    sw = torch.ones(len(y)) if weights is None else weights
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (F.binary_cross_entropy_with_logits(x @ w + b, y, reduction="none") * sw).sum() / sw.sum()
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def fit_risk_head(model: VfriskModel, feats: dict[str, torch.Tensor], splits: dict[str, Split],
                  cfg: TrainConfig, missing: dict[str, torch.Tensor | None]) -> None:
    """Stage 2: bootstrap logistic members on the train split, Platt calibration on the cal split, then the
    interval: its scale on the cal crops that show all the risk levels, its widening per missing share on the
    others."""
    head = model.risk
    ftr = feats["train"]
    head.feat_mean.copy_(ftr.mean(0))
    head.feat_std.copy_(ftr.std(0).clamp_min(1e-3))
    x = (ftr - head.feat_mean) / head.feat_std
    y = torch.tensor(splits["train"].labels(), dtype=torch.float32)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    with torch.no_grad():
        for m in range(head.weight.shape[0]):
            counts = torch.bincount(torch.randint(0, len(y), (len(y),), generator=gen), minlength=len(y))
            w, b = fit_logistic(x, y, cfg.l2, counts.float())
            head.weight[m] = w
            head.bias[m] = b
        mu = head.member_logits(feats["cal"]).mean(1)
    yc = torch.tensor(splits["cal"].labels(), dtype=torch.float32)
    a, b = fit_logistic(mu[:, None], yc, 0.0)
    head.platt.copy_(torch.tensor([float(a[0]), float(b[0])]))
    head.z = float(torch.distributions.Normal(0, 1).icdf(torch.tensor(0.5 + cfg.interval_level / 2)))
    head.width_missing.fill_(0.0)
    head.width_base.fill_(0.0)
    miss, cal = missing["cal"], splits["cal"]
    whole = whole_in_crop(cal, model.spec)
    head.width.fill_(interval_width(head, feats["cal"], cal, cfg.interval_level, miss, whole))
    if head.width >= MAX_WIDTH:  # the spread alone cannot cover: a constant term for the findings' error
        head.width.fill_(1.0)
        head.width_base.fill_(interval_width(head, feats["cal"], cal, cfg.interval_level, miss, whole, "width_base"))
    if miss is not None and bool((~whole).any()):
        head.width_missing.fill_(interval_width(head, feats["cal"], cal, cfg.interval_level, miss, ~whole,
                                                knob="width_missing"))


MAX_WIDTH = 10.0
"""Largest scale of the ensemble spread searched before a constant term is added instead."""


def whole_in_crop(split: Split, spec: PreprocessSpec) -> torch.Tensor:
    """(N,) True where every risk level (T11-L5) of the spine is wholly in view inside the crop (truth)."""
    idx = [spec.levels.index(lv) for lv in RISK_LEVELS]
    z, seen = split.z_mm[:, idx], split.in_view[:, idx]
    inside = (z >= HALF_BODY_MM) & (z <= spec.crop_mm[0] - HALF_BODY_MM)
    return ((seen == 1) & inside | torch.isnan(z)).all(dim=1)


def interval_width(head: RiskHead, feats: torch.Tensor, cal: Split, level: float,
                   missing: torch.Tensor | None = None, rows: torch.Tensor | None = None,
                   knob: str = "width") -> float:
    """The smallest value of ``knob`` (the scale of the ensemble spread, or the widening per missing share)
    that makes the interval cover the true probability at the nominal level on the calibration ``rows``. Needs
    the generator's p_true (synthetic cohorts); 1.0 / 0.0 (the raw bootstrap spread) when it is absent. The
    bootstrap alone captures only the head's estimation error, not the error of the image measurements, hence
    the scale."""
    p_true = [r.truth.get("p_true") for r in cal.rows]
    if any(p in (None, "") for p in p_true):
        return 1.0 if knob == "width" else 0.0  # the raw bootstrap spread
    target = torch.tensor([float(str(p)) for p in p_true])
    sel = torch.ones(len(target), dtype=torch.bool) if rows is None else rows
    grid = torch.linspace(1.0, MAX_WIDTH, 91) if knob == "width" else torch.linspace(0.0, 6.0, 241)
    best = float(grid[0])
    with torch.no_grad():
        for w in grid:
            getattr(head, knob).fill_(float(w))
            _, interval = head(feats, missing)
            covered = ((interval[:, 0] <= target) & (target <= interval[:, 1]))[sel].float().mean()
            best = float(w)
            if covered >= level:
                break
    return best


def with_cuts(split: Split, cfg: TrainConfig, mm_per_voxel: float) -> Split:
    """The split twice: its crops as cached, and each cut at random heights (deterministic), so the heads learn
    and the interval is calibrated on partial fields of view too."""
    gen = torch.Generator().manual_seed(cfg.seed + 4242)
    cut, z, seen = augment(split.images.float(), split.z_mm, split.in_view, (0, 0, 0.0), gen, mm_per_voxel, 1.0)
    return Split(split.rows + split.rows, torch.cat([split.images, cut.half()]), torch.cat([split.z_mm, z]),
                 torch.cat([split.in_view, seen]))


@torch.no_grad()
def calibrate_names(model: VfriskModel, split: Split, device: torch.device) -> float:
    """Fit the name temperature on ``split`` (its crops as cached and cut): the value in 0.3-3 that minimises the
    cross-entropy of the names given a body (the softmax over the body classes) at the labelled body centres.
    Sets it on the model and returns it."""
    model.net.eval().to(device)
    mm_vox = model.spec.crop_mm[0] / model.spec.grid[0]
    n_levels = len(model.spec.levels)
    logits, targets = [], []
    for b in range(0, len(split.rows), 16):
        x = split.images[b: b + 16].float()
        raw = model.net(x.to(device))["logits"].float().cpu()
        t = name_targets(split.z_mm[b: b + 16], split.in_view[b: b + 16], raw.shape[2], model.z_step_mm, n_levels,
                         scan_range(x, mm_vox))
        keep = (t >= 0) & (t <= n_levels)  # the body classes: levels and other
        logits.append(raw[:, :-1].permute(0, 2, 1)[keep])
        targets.append(t[keep])
    model.net.to("cpu")
    lg, tg = torch.cat(logits), torch.cat(targets)
    best = min(torch.linspace(0.3, 3.0, 55).tolist(), key=lambda temp: float(F.cross_entropy(lg / temp, tg)))
    model.name_temperature.fill_(best)
    return best


def fit_all_heads(model: VfriskModel, splits: dict[str, Split], cfg: TrainConfig,
                  device: torch.device) -> dict[str, VfriskModel]:
    """Fit the fused head and the two baselines (labs only, image only) on the same splits (train and cal with
    cut copies of their crops)."""
    mm_vox = model.spec.crop_mm[0] / model.spec.grid[0]
    fitting = {n: with_cuts(s, cfg, mm_vox) if n in ("train", "cal") else s for n, s in splits.items()}
    temperature = calibrate_names(model, fitting["cal"], device)
    log.info("name temperature %.3f (calibration split, cached and cut crops)", temperature)
    found = {name: findings_of(model, s, device) for name, s in fitting.items()}
    model.labs_norm.fit(splits["train"].labs())
    variants = {"fused": model}
    for name, (img, lab) in {"labs_only": (False, True), "image_only": (True, False)}.items():
        v = VfriskModel(model.spec, width=cfg.width, n_members=cfg.members, use_image=img, use_labs=lab)
        v.net.load_state_dict(model.net.state_dict())
        v.name_temperature.copy_(model.name_temperature)
        v.labs_norm.load_state_dict(model.labs_norm.state_dict())
        variants[name] = v
    for v in variants.values():
        with torch.no_grad():
            feats = {n: v.fuse(found[n], s.labs()) for n, s in fitting.items()}
            missing = {n: v.missing(found[n]) for n in fitting}
        fit_risk_head(v, feats, fitting, cfg, missing)
    return variants


@torch.no_grad()
def predict_split(model: VfriskModel, split: Split, device: torch.device) -> dict[str, np.ndarray]:
    """Probability, interval and findings on a split from cached grids (the torch path)."""
    found = findings_of(model, split, device)
    prob, interval = model.risk(model.fuse(found, split.labs()), model.missing(found))
    return {"probability": prob.numpy(), "interval": interval.numpy(), **named_levels(model, found)}


def named_levels(model: VfriskModel, found: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """(N, L) per level of the spec: 1 where the engine's own finding and naming (:func:`find_bodies`,
    :func:`name_bodies`) put a body under that name, with its HU and height ratio (NaN elsewhere)."""
    levels = model.spec.levels
    n = found["probs"].shape[0]
    presence = np.zeros((n, len(levels)))
    hu, ratio = np.full((n, len(levels)), np.nan), np.full((n, len(levels)), np.nan)
    for i in range(n):
        bodies = bodies_of(model, found, i)
        for body, name in zip(bodies, name_bodies(bodies, levels).names, strict=True):
            if name in levels:
                j = levels.index(name)
                presence[i, j], hu[i, j], ratio[i, j] = 1.0, body.hu, body.ratio
    return {"level_presence": presence, "level_hu": hu, "level_ratio": ratio}


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """Run and time a call."""
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t
