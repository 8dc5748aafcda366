"""Training-time augmentation of the cached crops: what scans, scanners and spines vary that one phantom
generator does not.

- :func:`augment`: the field of view (z shifts near and far, random cuts through bodies, in-plane shifts, a
  left-right flip), the level truth moving with it;
- :func:`vary_look`: stretch along the spine, noise, in-plane smoothing;
- :func:`tilt`: vertebral bodies tilted in the sagittal plane, as lordosis and kyphosis tilt them in real
  spines (a generator that stacks flat bodies teaches a finder that a tilted body is not one);
- :func:`warp_discs`: discs thinned or thickened between the body centres, as degeneration narrows real discs
  (a generator with one disc height per level teaches a finder that a thin disc is bone);
- :func:`zoom`: the whole spine larger or smaller, as spines differ between people (a generator with one size
  table teaches a finder to name a body by its size);
- :func:`bone_contrast`: bone brighter or dimmer against soft tissue, and soft tissue shifted, as cortical
  thickness, kernel, tube voltage and calibration differ between scanners and patients (a generator with one
  cortical density teaches a finder to find a body by its brightness);
- :func:`enhance_organs`: enhanced kidneys and a bright aorta beside the column (a contrast-enhanced scan);
- :func:`elastic`: a smooth random deformation, mostly in plane (every body's and process's outline varies);
- :func:`bend_sacrum`: the sacrum turned about the lumbosacral disc, steeper or flatter (real sacral slopes range
  far wider than one phantom's).

Every function takes windowed crops ``x`` (N, 1, D, H, W; canonical Z=+S, Y=+P, X=+L; air and padding 0) and a
seeded :class:`torch.Generator`, and changes nothing where its strength is 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from inference.spec import LEVELS
from training.data import HALF_BODY_MM


def augment(x: torch.Tensor, z: torch.Tensor, seen: torch.Tensor, shifts: tuple[int, int, float],
            gen: torch.Generator, mm_per_voxel: float, cut_prob: float = 0.0, xy_shift: int = 0
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random z shift (near, or far with some probability; padding with air), a random cut of the top and/or
    bottom of the field (with ``cut_prob``: the scan ends at a random height, through bodies or between them), a
    random in-plane shift of up to ``xy_shift`` grid voxels each way (edges replicated) and a left-right flip; the
    level truth moves with the image and a body the cut leaves partly outside is no longer whole in view."""
    near, far, far_prob = shifts
    out = torch.zeros_like(x)
    z, seen = z.clone(), seen.clone()
    n_d = x.shape[2]
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
        if bool(torch.rand(1, generator=gen) < cut_prob):
            lo, hi = 0, n_d
            which = int(torch.randint(0, 3, (1,), generator=gen))  # 0 top, 1 bottom, 2 both
            length = int(torch.randint(int(50 / mm_per_voxel), n_d, (1,), generator=gen))
            start = int(torch.randint(0, n_d - length + 1, (1,), generator=gen))
            if which in (1, 2):
                lo = start
            if which in (0, 2):
                hi = start + length
            out[i, :, :lo] = 0.0
            out[i, :, hi:] = 0.0
            inside = (z[i] - HALF_BODY_MM >= lo * mm_per_voxel) & (z[i] + HALF_BODY_MM <= hi * mm_per_voxel)
            seen[i] = torch.where(torch.isfinite(seen[i]), seen[i] * inside.float(), seen[i])
        if xy_shift > 0:
            dy, dx = (int(v) for v in torch.randint(-xy_shift, xy_shift + 1, (2,), generator=gen))
            rows = (torch.arange(out.shape[3]) - dy).clamp(0, out.shape[3] - 1)
            cols = (torch.arange(out.shape[4]) - dx).clamp(0, out.shape[4] - 1)
            out[i] = out[i][:, :, rows][:, :, :, cols]
        if bool(torch.rand(1, generator=gen) < 0.5):
            out[i] = out[i].flip(-1)
    return out, z, seen


def vary_look(x: torch.Tensor, z: torch.Tensor, gen: torch.Generator, mm_per_voxel: float,
              look: tuple[float, float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each crop of ``x`` (N, 1, D, H, W; windowed, air and padding 0) stretched or squeezed along z about its
    centre by up to ``look[0]`` (trilinear; the level centres ``z`` (N, L, mm from the first slice) move with it,
    the slices it empties are padding), Gaussian noise of SD up to ``look[1]`` window units on the slices holding
    data, and with probability ``look[2]`` a 3 x 3 in-plane smoothing of random strength (all zero: unchanged)."""
    stretch, noise, blur = look
    if not any(look):
        return x, z
    out, z = x.clone(), z.clone()
    n_d = x.shape[2]
    for i in range(x.shape[0]):
        if stretch > 0:
            s = 1.0 + (2.0 * float(torch.rand(1, generator=gen)) - 1.0) * stretch
            depth = max(2, round(n_d * s))
            res = F.interpolate(x[i: i + 1].float(), size=(depth, *x.shape[3:]), mode="trilinear",
                                align_corners=False)[0]
            start = (depth - n_d) // 2  # > 0: crop the stretched one about its centre; < 0: pad it with air
            canvas = torch.zeros_like(out[i])
            lo, hi = max(0, start), min(depth, start + n_d)
            canvas[:, lo - start: hi - start] = res[:, lo:hi].to(canvas.dtype)
            out[i] = canvas
            z[i] = z[i] * depth / n_d - start * mm_per_voxel  # z: mm from the first slice's edge
        if noise > 0 or blur > 0:
            img = out[i].float()
            data = img.flatten(2).amax(2) > 0  # (1, D): slices holding data (padding must stay exactly 0)
            if blur > 0 and bool(torch.rand(1, generator=gen) < blur):
                a = float(torch.rand(1, generator=gen))
                soft = F.avg_pool2d(img, 3, stride=1, padding=1, count_include_pad=False)
                img = (1 - a) * img + a * soft
            if noise > 0:
                sd = float(torch.rand(1, generator=gen)) * noise
                img = img + sd * torch.randn(img.shape, generator=gen)
            img = img.clamp(0.0, 1.0) * data[..., None, None]
            out[i] = img.to(out.dtype)
    return out, z


def tilt(x: torch.Tensor, gen: torch.Generator, voxel_mm: tuple[float, float], max_deg: float,
         prob: float = 0.8) -> torch.Tensor:
    """Each crop of ``x``, with probability ``prob``, sheared in the sagittal plane so that its vertebral bodies
    and discs tilt front to back by an angle that varies smoothly along the spine (up to ``max_deg`` either way:
    a constant part plus a sinusoid of random period 250-600 mm and phase, as a lordotic or kyphotic curve tilts
    each body by a different angle). The shear is about the crop's middle row (the column the crop follows), so
    the body centres, and with them the level truth, stay where they are. ``voxel_mm``: (z, y) voxel size.

    Family A stacks flat, untilted bodies; real lumbar endplates lie up to about 25 degrees off the axial plane
    (L5-S1 the most), where an axial slice cuts through body and disc at once."""
    if max_deg <= 0 or prob <= 0:
        return x
    n, _, n_d, n_h, _ = x.shape
    out = x.clone()
    zs = torch.arange(n_d, dtype=torch.float32) * voxel_mm[0]
    rows = torch.arange(n_h, dtype=torch.float32) - (n_h - 1) / 2.0  # rows from the column
    for i in range(n):
        if not bool(torch.rand(1, generator=gen) < prob):
            continue
        a, b, period, phase = (float(v) for v in torch.rand(4, generator=gen))
        base = (2 * a - 1) * 0.5 * max_deg
        swing = (2 * b - 1) * 0.5 * max_deg
        deg = base + swing * torch.sin(2 * math.pi * (zs / (250.0 + 350.0 * period) + phase))
        shift = torch.tan(torch.deg2rad(deg))[:, None] * rows[None, :] * (voxel_mm[1] / voxel_mm[0])  # (D, H)
        src_z = torch.arange(n_d, dtype=torch.float32)[:, None] + shift  # where each output voxel reads from
        # grid_sample in (x = z as read along the spine, y = row): normalised to [-1, 1] over the crop
        gz = (2 * src_z + 1) / n_d - 1
        gy = (2 * torch.arange(n_h, dtype=torch.float32)[None, :].expand(n_d, n_h) + 1) / n_h - 1
        out[i, 0] = resample_sagittal(x[i, 0], gz, gy, "zeros").to(out.dtype)
    return out


def resample_sagittal(crop: torch.Tensor, gz: torch.Tensor, gy: torch.Tensor, padding: str) -> torch.Tensor:
    """One crop (D, H, W) read, in every sagittal plane alike, at the normalised positions (``gz`` along the
    spine, ``gy`` across the rows; each (D, H), in [-1, 1] over the crop, ``align_corners=False``) given for every
    output (slice, row): the in-plane warp of :func:`tilt` and :func:`bend_sacrum`. Bilinear; ``padding`` as
    :func:`torch.nn.functional.grid_sample` takes it. Returns float32 (D, H, W)."""
    grid = torch.stack([gz, gy], dim=-1)[None].permute(0, 2, 1, 3)  # (1, H, D, 2): (z, row) read per (row, z)
    planes = crop.float().permute(2, 1, 0)[:, None]  # (W, 1, H, D): each sagittal plane an image
    out = F.grid_sample(planes, grid.expand(crop.shape[2], -1, -1, -1), mode="bilinear", padding_mode=padding,
                        align_corners=False)  # (W, 1, H, D)
    return out[:, 0].permute(2, 1, 0)


def disc_map(z_out: torch.Tensor, centres: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """Where (mm) each output position ``z_out`` reads from when the span between each pair of neighbouring body
    ``centres`` (sorted, mm) is warped by ``amount`` (one per span, in (-1, 1)): within a span, at fraction u of
    the way, ``u + amount * sin(2 pi u) / (2 pi)``, so the centres stay fixed and the map is monotone; the disc
    half-way reads a span ``1 - amount`` times as long (amount > 0: a thicker disc, < 0: a thinner one, the body
    around each centre the other way). Outside the first and last centre: unchanged."""
    out = z_out.clone()
    for k in range(centres.numel() - 1):
        lo, hi = float(centres[k]), float(centres[k + 1])
        inside = (z_out >= lo) & (z_out < hi)
        u = (z_out[inside] - lo) / (hi - lo)
        out[inside] = lo + (hi - lo) * (u + float(amount[k]) * torch.sin(2 * math.pi * u) / (2 * math.pi))
    return out


def warp_discs(x: torch.Tensor, z: torch.Tensor, gen: torch.Generator, mm_per_voxel: float, strength: float,
               prob: float = 0.8) -> torch.Tensor:
    """Each crop of ``x`` (N, 1, D, H, W), with probability ``prob``, resampled along z by :func:`disc_map`
    between its level centres ``z`` (N, L, mm from the first slice; NaN where a level is absent), each span by
    its own amount drawn from (-``strength``, ``strength``): discs thinned or thickened and the bodies the other
    way, the centres (the level truth) fixed. Linear interpolation between slices; nothing outside the first and
    last centre changes.

    Family A draws one disc height per level (7-12 mm); real discs narrow with age and degeneration, and an
    independently built phantom's thin discs made a family-A model see one long body across two."""
    if strength <= 0 or prob <= 0:
        return x
    n_d = x.shape[2]
    out = x.clone()
    z_out = (torch.arange(n_d, dtype=torch.float32) + 0.5) * mm_per_voxel
    for i in range(x.shape[0]):
        centres = torch.sort(z[i][torch.isfinite(z[i])].float()).values
        if centres.numel() < 2 or not bool(torch.rand(1, generator=gen) < prob):
            continue
        amount = (2 * torch.rand(centres.numel() - 1, generator=gen) - 1) * min(strength, 0.95)
        src = (disc_map(z_out, centres, amount) / mm_per_voxel - 0.5).clamp(0, n_d - 1)
        lo = src.floor().long()
        hi = (lo + 1).clamp(max=n_d - 1)
        w = (src - lo.float())[None, :, None, None]
        img = x[i].float()
        out[i] = ((1 - w) * img[:, lo] + w * img[:, hi]).to(out.dtype)
    return out


def zoom(x: torch.Tensor, z: torch.Tensor, gen: torch.Generator, mm_per_voxel: float, max_scale: float,
         prob: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    """Each crop of ``x`` (N, 1, D, H, W), with probability ``prob``, scaled about its centre by one factor in all
    three axes, drawn log-uniformly from 1 / (1 + ``max_scale``) to 1 + ``max_scale`` (trilinear; what leaves the
    crop is lost, what comes in is padding); the level centres ``z`` (N, L, mm from the first slice) move with
    it. Family A draws every body from one size table scaled by a few percent per patient, so a finder trained on
    it names a body by its size; real spines (and family B's, from real masks) differ by more than a level's
    step in size between people, and only the anatomy that fixes the numbering names a body for sure."""
    if max_scale <= 0 or prob <= 0:
        return x, z
    n = x.shape[0]
    top = math.log1p(max_scale)
    scale = torch.ones(n)
    for i in range(n):
        if bool(torch.rand(1, generator=gen) < prob):
            scale[i] = math.exp((2 * float(torch.rand(1, generator=gen)) - 1) * top)
    theta = torch.zeros(n, 3, 4)
    theta[:, 0, 0] = theta[:, 1, 1] = theta[:, 2, 2] = 1.0 / scale  # output point p reads the input at p / s
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    half = x.shape[2] * mm_per_voxel / 2.0
    return out.to(x.dtype), half + (z - half) * scale[:, None]


def vary_spine(x: torch.Tensor, z: torch.Tensor, gen: torch.Generator, voxel_mm: tuple[float, float],
               look: tuple[float, float, float], tilt_deg: float, disc_warp: float = 0.0,
               max_zoom: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """What spines, generators and scanners vary, before the field of view is drawn (:func:`augment`): the
    discs' height (:func:`warp_discs`), the spine's size (:func:`zoom`), the bodies' tilt (:func:`tilt`), then
    the stretch, noise and smoothing of :func:`vary_look`."""
    x = warp_discs(x, z, gen, voxel_mm[0], disc_warp)
    x, z = zoom(x, z, gen, voxel_mm[0], max_zoom)
    return vary_look(tilt(x, gen, voxel_mm, tilt_deg), z, gen, voxel_mm[0], look)


BONE_KNEE_HU = 150.0
"""Above this HU (bone: trabecular and cortical) :func:`bone_contrast` scales the distance from it; below, soft
tissue only shifts."""


def contrast_map(hu: torch.Tensor, gain: torch.Tensor, offset: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The HU ``hu`` (N, ...) after :func:`bone_contrast`'s remap, one ``gain``, ``offset`` and ``scale`` (N,) per
    crop: bone's distance above :data:`BONE_KNEE_HU` multiplied by ``gain``, then the whole scale multiplied by
    ``scale`` (about 0 HU) and shifted by ``offset`` (continuous and monotone for positive factors)."""
    shape = (-1,) + (1,) * (hu.dim() - 1)
    g, o, s = gain.reshape(shape), offset.reshape(shape), scale.reshape(shape)
    return torch.where(hu > BONE_KNEE_HU, BONE_KNEE_HU + (hu - BONE_KNEE_HU) * g, hu) * s + o


def bone_contrast(x: torch.Tensor, hu: torch.Tensor, gen: torch.Generator, hu_window: tuple[float, float],
                  max_gain: float, max_offset_hu: float, max_scale: float = 0.0, prob: float = 0.8
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each crop of ``x`` (N, 1, D, H, W; windowed to ``hu_window`` and scaled to [0, 1], air and padding 0),
    with probability ``prob``, remapped by :func:`contrast_map`: bone's distance above 150 HU multiplied by a
    gain drawn log-uniformly from 1 / (1 + ``max_gain``) to 1 + ``max_gain``, the whole HU scale (about 0 HU:
    every contrast between tissues) by a factor drawn likewise with ``max_scale``, and every voxel holding tissue
    shifted by an offset drawn uniformly within +-``max_offset_hu``; voxels at 0 (air, padding) stay 0. The
    per-level trabecular HU truth ``hu`` (N, L; NaN where unknown) goes through the same map, so the HU the
    network is taught to read is the HU it sees.

    Family A draws one cortical density and thickness; an independently built phantom's brighter cortex and
    posterior elements (its bone above 150 HU has a median near 320 HU, family A's near 240) made a family-A model
    lose and misname bodies; scaling that phantom's whole HU scale by 0.7 before the model brought back more than
    half of them (README "Cross-family generalisation", session 14), this augmentation only a few points."""
    if (max_gain <= 0 and max_offset_hu <= 0 and max_scale <= 0) or prob <= 0:
        return x, hu
    n = x.shape[0]
    top, top_s = math.log1p(max(max_gain, 0.0)), math.log1p(max(max_scale, 0.0))
    gain, offset, scale = torch.ones(n), torch.zeros(n), torch.ones(n)
    for i in range(n):
        if bool(torch.rand(1, generator=gen) < prob):
            a, b = (float(v) for v in torch.rand(2, generator=gen))
            gain[i] = math.exp((2 * a - 1) * top)
            offset[i] = (2 * b - 1) * max_offset_hu
            if max_scale > 0:
                scale[i] = math.exp((2 * float(torch.rand(1, generator=gen)) - 1) * top_s)
    lo, hi = hu_window
    img = x.float()
    tissue = img > 0
    mapped = (contrast_map(img * (hi - lo) + lo, gain, offset, scale) - lo) / (hi - lo)
    out = torch.where(tissue, mapped.clamp(0.0, 1.0), img)
    return out.to(x.dtype), contrast_map(hu, gain, offset, scale)


def _ellipsoid(shape: tuple[int, int, int], centre: tuple[float, float, float],
               radii: tuple[float, float, float]) -> torch.Tensor:
    """Boolean (D, H, W) mask of an axis-aligned ellipsoid (centre and radii in voxels)."""
    axes = [((torch.arange(n, dtype=torch.float32) - c) / r) ** 2 for n, c, r in zip(shape, centre, radii, strict=True)]
    return (axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]) <= 1.0


def enhance_organs(x: torch.Tensor, gen: torch.Generator, voxel_mm: tuple[float, float, float],
                   hu_window: tuple[float, float], prob: float) -> torch.Tensor:
    """Each crop of ``x`` (N, 1, D, H, W; windowed, canonical Z=+S, Y=+P, X=+L; the column at the middle row and
    column), with probability ``prob``, given what a contrast-enhanced scan shows beside the spine: two kidneys
    (cortex 120-260 HU round a medulla at 40-90 % of it; 40-60 mm either side of the column, 100-120 mm long, at a
    random height) and an aorta (150-450 HU, 20-26 mm across, along the whole crop, 25-45 mm in front of the crop's
    centre and 5-25 mm to one side). They are painted over soft tissue only (-50 to 120 HU): bone, fat and air
    stay. Family A draws no kidneys and a thin, straight aorta of at most 320 HU 14 mm in front of L1; of the bodies
    family B's enhancement costs a family-A-only model, its aorta alone costs a third and its kidneys alone a third
    (``training.contrast_ablation``); with this at 0.5 that model finds 91.3 % of family B's bodies (78.8 %; 77.0 % with
    training seed 1: README "Cross-family generalisation", sessions 15 and 16)."""
    if prob <= 0:
        return x
    lo, hi = hu_window
    out = x.clone()
    n, _, d, h, w = x.shape
    mid_r, mid_c = (h - 1) / 2.0, (w - 1) / 2.0
    vz, vy, vx = voxel_mm

    def u(a: float, b: float) -> float:
        return a + (b - a) * float(torch.rand(1, generator=gen))

    for i in range(n):
        if not bool(torch.rand(1, generator=gen) < prob):
            continue
        img = out[i, 0].float()
        hu = img * (hi - lo) + lo
        soft = (img > 0) & (hu > -50.0) & (hu < 120.0)
        paint = torch.zeros_like(img)
        cortex = u(120.0, 260.0)
        zc = u(0.0, d * vz)
        for side in (-1.0, 1.0):
            c = (zc / vz + u(-10.0, 10.0) / vz, mid_r + u(-5.0, 25.0) / vy, mid_c + side * u(40.0, 60.0) / vx)
            r = (u(50.0, 60.0) / vz, u(20.0, 26.0) / vy, u(25.0, 30.0) / vx)
            paint = torch.where(_ellipsoid((d, h, w), c, r), torch.tensor(cortex), paint)
            inner = (r[0] * 0.75, r[1] * 0.65, r[2] * 0.65)
            paint = torch.where(_ellipsoid((d, h, w), c, inner), torch.tensor(cortex * u(0.4, 0.9)), paint)
        radius = u(10.0, 13.0)
        ar, ac = mid_r - u(25.0, 45.0) / vy, mid_c + (1 if u(0, 1) < 0.5 else -1) * u(5.0, 25.0) / vx
        rows = ((torch.arange(h, dtype=torch.float32) - ar) * vy)[:, None]
        cols = ((torch.arange(w, dtype=torch.float32) - ac) * vx)[None, :]
        tube = (rows**2 + cols**2 <= radius**2)[None].expand(d, h, w)
        paint = torch.where(tube, torch.tensor(u(150.0, 450.0)), paint)
        new = ((paint - lo) / (hi - lo)).clamp(0.0, 1.0)
        out[i, 0] = torch.where(soft & (paint > 0), new, img).to(out.dtype)
    return out


def elastic(x: torch.Tensor, gen: torch.Generator, voxel_mm: tuple[float, float, float], max_mm: float,
            prob: float = 0.8) -> torch.Tensor:
    """Each crop of ``x`` (N, 1, D, H, W), with probability ``prob``, deformed by a smooth random displacement
    field (Gaussian at control points about 36 mm apart along the spine and 24 mm in plane, interpolated; its SD
    drawn up to ``max_mm`` in plane and a fifth of it along the spine, so that the level truth stays where it
    is). Bodies, posterior elements and ribs change their outline as they differ between people and between
    generators, which one phantom's fixed shapes do not teach. ``voxel_mm``: (z, y, x) voxel size."""
    if max_mm <= 0 or prob <= 0:
        return x
    n, _, d, h, w = x.shape
    out = x.clone()
    size_mm = (d * voxel_mm[0], h * voxel_mm[1], w * voxel_mm[2])
    ctrl = (max(2, round(size_mm[0] / 36.0) + 1), max(2, round(size_mm[1] / 24.0) + 1),
            max(2, round(size_mm[2] / 24.0) + 1))
    base = F.affine_grid(torch.eye(3, 4)[None], [1, 1, d, h, w], align_corners=False)  # (1, D, H, W, 3): x, y, z
    for i in range(n):
        if not bool(torch.rand(1, generator=gen) < prob):
            continue
        sd = max_mm * float(torch.rand(1, generator=gen))
        field = torch.randn((1, 3, *ctrl), generator=gen) * sd  # mm; channels z, y, x
        field[:, 0] *= 0.2
        dense = F.interpolate(field, size=(d, h, w), mode="trilinear", align_corners=True)[0]  # (3, D, H, W)
        # mm -> normalised grid units (2 / extent); grid's last axis is (x, y, z)
        disp = torch.stack([dense[2] * 2 / size_mm[2], dense[1] * 2 / size_mm[1], dense[0] * 2 / size_mm[0]], -1)
        grid = base + disp[None]
        out[i:i + 1] = F.grid_sample(x[i:i + 1].float(), grid, mode="bilinear", padding_mode="border",
                                     align_corners=False).to(x.dtype)
    return out


def bend_sacrum(x: torch.Tensor, z: torch.Tensor, gen: torch.Generator, voxel_mm: tuple[float, float],
                max_deg: float, prob: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    """Each crop whose S1 and the lumbar body above it are both in ``z`` (the level centres, mm along the crop),
    with probability ``prob``, with everything below the lumbosacral disc turned in the sagittal plane about the
    disc (half-way between the two centres, 10 mm in front of the crop's middle row) by an angle drawn from
    -``max_deg`` / 4 to ``max_deg`` degrees (positive: the sacrum steeper, S1 further back), the turn blended in
    over the 16 mm across the disc so that the lumbar spine above stays as it is; S1's centre moves with it.
    ``voxel_mm``: (z, y) voxel size. Returns the crops and the level centres.

    Family A's sacrum sits at one slope; real sacral slopes span some 20-60 degrees, and a finder trained on one
    slope misses a steep S1 and the L5 above it."""
    if max_deg <= 0 or prob <= 0 or "S1" not in LEVELS:
        return x, z
    n, _, n_d, n_h, _ = x.shape
    s1 = LEVELS.index("S1")
    lumbar = [LEVELS.index(lv) for lv in ("L4", "L5", "L6") if lv in LEVELS]
    out, z = x.clone(), z.clone()
    z_out = (torch.arange(n_d, dtype=torch.float32) + 0.5) * voxel_mm[0]  # mm of each output slice's centre
    y_out = (torch.arange(n_h, dtype=torch.float32) - (n_h - 1) / 2.0) * voxel_mm[1]  # mm from the middle row
    y_pivot = -10.0  # the disc lies in front of the crop's middle row (rows run front to back)
    for i in range(n):
        above = [float(z[i, k]) for k in lumbar if math.isfinite(float(z[i, k]))]
        z_s1 = float(z[i, s1])
        if not above or not math.isfinite(z_s1) or not bool(torch.rand(1, generator=gen) < prob):
            continue
        theta = math.radians(max_deg * (1.25 * float(torch.rand(1, generator=gen)) - 0.25))
        z_pivot = (min(above) + z_s1) / 2.0
        angle = theta * ((z_pivot + 8.0 - z_out) / 16.0).clamp(0.0, 1.0)  # (D,): 0 above the disc, theta below
        cos, sin = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
        dz, dy = z_out[:, None] - z_pivot, y_out[None, :] - y_pivot  # (D, H) from the pivot
        src_z = z_pivot + dz * cos - dy * sin  # where each output voxel reads from: the inverse turn
        src_y = y_pivot + dy * cos + dz * sin
        gz = 2.0 * src_z / (voxel_mm[0] * n_d) - 1.0
        gy = (2.0 * (src_y / voxel_mm[1] + (n_h - 1) / 2.0) + 1.0) / n_h - 1.0
        out[i, 0] = resample_sagittal(x[i, 0], gz, gy, "border").to(out.dtype)
        z[i, s1] = z_pivot + (z_s1 - z_pivot) * math.cos(theta)  # S1's centre, taken on the pivot's row
    return out, z
