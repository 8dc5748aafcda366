"""``vfrisk train``: image network on auxiliary per-vertebra truth, then the fused risk head on outcomes,
calibration on the calibration split, evaluation on the test split, and a complete run folder.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from inference.errors import InputError
from inference.spec import LEVELS, PreprocessSpec
from models.full import VfriskModel
from models.risk import RiskHead
from training.config import TrainConfig
from training.data import Row, build_cache, patient_split, read_manifest, read_truth, to_row
from training.distributed import DistInfo, shard

log = logging.getLogger("vfrisk.train")
SIGMA_MM = 6.0


@dataclass
class Split:
    """Rows of one split with their cached grids."""

    rows: list[Row]
    images: torch.Tensor
    """(N, 1, D, H, W) float16 windowed grid."""
    z_mm: torch.Tensor
    """(N, L) truth z of each level centre (NaN when unknown)."""

    def labs(self) -> torch.Tensor:
        """(N, 4) raw labs."""
        return torch.tensor([r.labs for r in self.rows], dtype=torch.float32)

    def labels(self) -> np.ndarray:
        """0/1 outcomes."""
        return np.array([r.label for r in self.rows])

    def truth_levels(self, key: str) -> torch.Tensor:
        """(N, L) per-level truth (HU or height ratio) from truth.csv, NaN when absent."""
        out = torch.full((len(self.rows), len(LEVELS)), float("nan"))
        for i, r in enumerate(self.rows):
            for j, lv in enumerate(LEVELS):
                v = r.truth.get(f"{lv}_{key}")
                if v not in (None, ""):
                    out[i, j] = float(v)
        return out


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


def load_splits(cohort: Path, cfg: TrainConfig, spec: PreprocessSpec) -> dict[str, Split]:
    """Read manifest and truth, split by patient, decode through the cache."""
    rows = read_manifest(cohort)
    if cfg.max_studies:
        rows = rows[: cfg.max_studies]
    truth = read_truth(cohort)
    cache = Path(cfg.cache_dir) if cfg.cache_dir else cohort / ".vfrisk-cache"
    metas = build_cache(cohort, rows, truth, spec, cache, cfg.workers)
    keyed = [(to_row(r, m, truth.get(r["study"], {})), m) for r, m in zip(rows, metas, strict=True)]
    skipped = sum(1 for row, _ in keyed if row is None)
    if skipped:
        log.warning("%d studies could not be used (unreadable or no age/sex)", skipped)
    kept = [(row, m) for row, m in keyed if row is not None]
    assign = patient_split([row.patient for row, _ in kept], cfg.split, cfg.seed)
    out = {}
    for name in ("train", "cal", "test"):
        sel = [(row, m) for (row, m), a in zip(kept, assign, strict=True) if a == name]
        if len(sel) < 2:
            raise InputError("bad_cohort", f"the {name} split has fewer than 2 usable studies")
        imgs = torch.from_numpy(np.stack([np.load(m["cache"]) for _, m in sel]))[:, None]
        z = torch.tensor([m["z_mm"] for _, m in sel], dtype=torch.float32)
        out[name] = Split([row for row, _ in sel], imgs, z)
    return out


def augment(x: torch.Tensor, z: torch.Tensor, shifts: tuple[int, int, float], gen: torch.Generator,
            mm_per_voxel: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Random z shift (near, or far with some probability; padding with air) and left-right flip; the level
    z truth moves with the image.
    """
    near, far, far_prob = shifts
    out = torch.zeros_like(x)
    z = z.clone()
    for i in range(x.shape[0]):
        limit = far if bool(torch.rand(1, generator=gen) < far_prob) else near
        s = int(torch.randint(-limit, limit + 1, (1,), generator=gen))
        src = x[i]
        if s > 0:
            out[i, :, s:] = src[:, :-s]
        elif s < 0:
            out[i, :, :s] = src[:, -s:]
        else:
            out[i] = src
        z[i] += s * mm_per_voxel
        if bool(torch.rand(1, generator=gen) < 0.5):
            out[i] = out[i].flip(-1)
    return out, z


def aux_loss(model: VfriskModel, found_raw: dict[str, torch.Tensor], z: torch.Tensor, hu: torch.Tensor,
             ratio: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Localisation (soft target over z), presence, trabecular HU and height-ratio losses."""
    logits = found_raw["logits"].float()
    n_z = logits.shape[2]
    step = model.z_step_mm
    pos = (torch.arange(n_z, dtype=torch.float32) + 0.5) * step
    extent = n_z * step
    present = torch.isfinite(z) & (z > 8.0) & (z < extent - 8.0)
    target = torch.exp(-0.5 * ((pos[None, None] - z.nan_to_num(-1e4)[..., None]) / SIGMA_MM) ** 2)
    target = target / target.sum(-1, keepdim=True).clamp_min(1e-9)
    loc = -(target * torch.log_softmax(logits, dim=2)).sum(-1)
    loc = (loc * present).sum() / present.sum().clamp_min(1)
    pres = F.binary_cross_entropy_with_logits(logits.amax(dim=2), present.float())
    w = torch.softmax(logits, dim=2)
    hu_l = (w * found_raw["hu"].float()[:, None]).sum(2)
    ratio_l = (w * found_raw["ratio"].float()[:, None]).sum(2)
    ok = present & torch.isfinite(hu)
    hu_loss = F.smooth_l1_loss(hu_l[ok] / 25.0, hu[ok] / 25.0) if ok.any() else logits.sum() * 0
    ok_r = present & torch.isfinite(ratio)
    if ok_r.any():
        # deformed levels are rare (a few % of levels): weight them up so the head does not learn "always intact"
        weight = 1.0 + 9.0 * (ratio[ok_r] < 0.92).float()
        per = F.smooth_l1_loss(ratio_l[ok_r] / 0.03, ratio[ok_r] / 0.03, reduction="none")
        r_loss = (per * weight).sum() / weight.sum()
    else:
        r_loss = logits.sum() * 0
    total = loc + pres + hu_loss + r_loss
    parts = {"loc": loc, "presence": pres, "hu": hu_loss, "ratio": r_loss}
    return total, {k: float(v.detach()) for k, v in parts.items()}


def train_image_net(model: VfriskModel, splits: dict[str, Split], cfg: TrainConfig,
                    device: torch.device, info: DistInfo | None = None) -> list[dict[str, float]]:
    """Stage 1: train the image network on auxiliary per-vertebra truth; returns the epoch history.

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
    use_bf16 = cfg.bf16 and (device.type == "cuda" or torch.backends.mkldnn.is_available())
    model.net.to(device)
    net: torch.nn.Module = model.net
    if info.active:
        net = torch.nn.parallel.DistributedDataParallel(
            model.net, device_ids=[device.index] if device.type == "cuda" else None)
    history = []
    for epoch in range(cfg.epochs):
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
            x, z = augment(tr.images[idx].float(), tr.z_mm[idx], shifts, gen, mm_vox)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                raw = net(x.to(device))
            loss, items = aux_loss(model, {k: v.cpu() for k, v in raw.items()}, z, hu_t[idx], ratio_t[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.net.parameters(), 5.0)
            opt.step()
            sched.step()
            for k, v in items.items():
                parts[k] = parts.get(k, 0.0) + v * len(idx) / len(perm)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        if not info.main:
            continue
        val = finding_errors(model, splits["cal"], device)
        history.append({"epoch": epoch + 1, **{f"train_{k}": round(v, 4) for k, v in parts.items()}, **val})
        log.info("epoch %d %s", epoch + 1, json.dumps(history[-1]))
    model.net.to("cpu")
    return history


@torch.no_grad()
def findings_of(model: VfriskModel, split: Split, device: torch.device) -> dict[str, torch.Tensor]:
    """Per-level findings of every study in a split (eval mode, no augmentation)."""
    model.net.eval().to(device)
    chunks: dict[str, list[torch.Tensor]] = {}
    for b in range(0, len(split.rows), 16):
        found = model.findings(split.images[b: b + 16].float().to(device))
        for k, v in found.items():
            chunks.setdefault(k, []).append(v.float().cpu())
    model.net.to("cpu")
    return {k: torch.cat(v) for k, v in chunks.items()}


def finding_errors(model: VfriskModel, split: Split, device: torch.device) -> dict[str, float]:
    """Mean absolute errors of the per-level findings against truth (levels inside the crop)."""
    found = findings_of(model, split, device)
    z = split.z_mm
    inside = torch.isfinite(z) & (z > 8) & (z < model.spec.crop_mm[0] - 8)
    hu, ratio = split.truth_levels("hu"), split.truth_levels("height_ratio")

    def mae(a: torch.Tensor, b: torch.Tensor) -> float:
        ok = inside & torch.isfinite(b)
        return round(float((a[ok] - b[ok]).abs().mean()), 4) if ok.any() else float("nan")

    return {"val_hu_mae": mae(found["hu"], hu), "val_ratio_mae": mae(found["ratio"], ratio),
            "val_z_mae_mm": mae(found["z_mm"], z),
            "val_presence_acc": round(float(((found["presence"] > 0.5) == inside).float().mean()), 4)}


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
                  cfg: TrainConfig) -> None:
    """Stage 2: bootstrap logistic members on the train split, Platt calibration on the cal split."""
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
    head.width.fill_(interval_width(head, feats["cal"], splits["cal"], cfg.interval_level))


def interval_width(head: RiskHead, feats: torch.Tensor, cal: Split, level: float) -> float:
    """Scale of the ensemble spread that makes the interval cover the true probability at the nominal level on
    the calibration split. Needs the generator's p_true (synthetic cohorts); 1.0 (the raw bootstrap spread)
    when it is absent. The bootstrap alone captures only the head's estimation error, not the error of the
    image measurements, hence the scale."""
    p_true = [r.truth.get("p_true") for r in cal.rows]
    if any(p in (None, "") for p in p_true):
        return 1.0
    target = torch.tensor([float(str(p)) for p in p_true])
    best = 1.0
    with torch.no_grad():
        for w in torch.linspace(1.0, 30.0, 291):
            head.width.fill_(float(w))
            _, interval = head(feats)
            covered = ((interval[:, 0] <= target) & (target <= interval[:, 1])).float().mean()
            best = float(w)
            if covered >= level:
                break
    return best


def fit_all_heads(model: VfriskModel, splits: dict[str, Split], cfg: TrainConfig,
                  device: torch.device) -> dict[str, VfriskModel]:
    """Fit the fused head and the two baselines (labs only, image only) on the same splits."""
    found = {name: findings_of(model, s, device) for name, s in splits.items()}
    model.labs_norm.fit(splits["train"].labs())
    variants = {"fused": model}
    for name, (img, lab) in {"labs_only": (False, True), "image_only": (True, False)}.items():
        v = VfriskModel(model.spec, width=cfg.width, n_members=cfg.members, use_image=img, use_labs=lab)
        v.net.load_state_dict(model.net.state_dict())
        v.labs_norm.load_state_dict(model.labs_norm.state_dict())
        variants[name] = v
    for v in variants.values():
        with torch.no_grad():
            feats = {n: v.fuse(found[n], s.labs()) for n, s in splits.items()}
        fit_risk_head(v, feats, splits, cfg)
    return variants


@torch.no_grad()
def predict_split(model: VfriskModel, split: Split, device: torch.device) -> dict[str, np.ndarray]:
    """Probability, interval and findings on a split from cached grids (the torch path)."""
    found = findings_of(model, split, device)
    prob, interval = model.risk(model.fuse(found, split.labs()))
    return {"probability": prob.numpy(), "interval": interval.numpy(),
            **{f"level_{k}": v.numpy() for k, v in found.items()}}


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """Run and time a call."""
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t
