"""Family B's scanner: reconstruction kernels as modulation transfer functions, the slice sensitivity profile, and
filtered-back-projection noise.

- **Kernel**: each named kernel is an MTF, ``exp(-ln2 (f / f50)^2)`` with an optional mid-frequency boost for
  edge-enhancing kernels (overshoot at bone edges), applied in the 2D Fourier domain of every slice.
- **Slice profile**: the phantom is drawn on a z grid at most 1.5 mm apart; each slice integrates a box of its
  nominal thickness (softened by a Gaussian) and the slices are then sampled at the slice spacing.
- **Noise**: FBP noise has a ramp-shaped power spectrum, ``NPS(f) ~ |f| MTF(f)^2`` (zero at DC, peaking at mid
  frequencies, so neighbouring pixels are anti-correlated; the real TPTBox crop's lag-1 correlation is negative
  too), correlated between overlapping slices, stronger at the body's centre and in wide slices (shoulders, hips).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft, ndimage

KERNELS: dict[str, tuple[float, float]] = {
    "B30f": (3.4, 0.0), "B31f": (3.6, 0.0), "B41f": (4.4, 0.03), "Br40d": (4.1, 0.0), "Br60d": (6.3, 0.12),
    "I30f": (3.5, 0.0), "I40f": (4.3, 0.02), "STANDARD": (4.0, 0.0), "SOFT": (3.1, 0.0), "BONE": (6.8, 0.15),
    "BONEPLUS": (8.0, 0.22), "FC03": (3.6, 0.0), "FC18": (4.2, 0.02), "B": (3.9, 0.0), "C": (4.6, 0.04),
    "D": (6.2, 0.1),
}
"""Kernels of a main series: (MTF50 in line pairs per cm, edge boost)."""
KERNEL_WEIGHTS: dict[str, float] = {
    "B30f": 0.1, "B31f": 0.06, "B41f": 0.05, "Br40d": 0.08, "Br60d": 0.04, "I30f": 0.06, "I40f": 0.04,
    "STANDARD": 0.14, "SOFT": 0.05, "BONE": 0.1, "BONEPLUS": 0.03, "FC03": 0.06, "FC18": 0.05, "B": 0.07,
    "C": 0.04, "D": 0.03,
}
LUNG_KERNELS: dict[str, tuple[float, float]] = {"LUNG": (8.5, 0.3), "B70f": (8.8, 0.3), "YB": (8.0, 0.25)}
"""Sharp kernels of an extra lung reconstruction (the reader should prefer the main series)."""
REFERENCE_KERNEL = "STANDARD"


def mtf(kernel: str, f: np.ndarray) -> np.ndarray:
    """MTF of a named kernel at spatial frequencies ``f`` (cycles/mm)."""
    lp_cm, boost = {**KERNELS, **LUNG_KERNELS}[kernel]
    f50 = lp_cm / 10.0
    base = np.exp(-math.log(2.0) * (f / f50) ** 2)
    fb = 0.75 * f50
    bump = (f / fb) ** 2 * np.exp(1.0 - (f / fb) ** 2)
    return base * (1.0 + boost * bump)


def _freqs(ny: int, nx: int, pixel_mm: float) -> np.ndarray:
    """Radial frequency (cycles/mm) of an rfft2 grid."""
    fy = np.fft.fftfreq(ny, d=pixel_mm)[:, None]
    fx = np.fft.rfftfreq(nx, d=pixel_mm)[None, :]
    return np.sqrt(fy * fy + fx * fx).astype(np.float32)


def noise_gain(kernel: str, pixel_mm: float) -> float:
    """Noise SD of ``kernel`` over the reference kernel's, on a grid of ``pixel_mm`` pixels."""
    f = _freqs(64, 64, pixel_mm)

    def power(k: str) -> float:
        return float(np.sum(f * mtf(k, f) ** 2))

    return math.sqrt(power(kernel) / power(REFERENCE_KERNEL))


def slice_profile(thickness: float, step: float) -> np.ndarray:
    """Weights along z (render steps of ``step`` mm) of one slice of nominal ``thickness``: a box softened by a
    Gaussian of a quarter of the thickness, normalised."""
    half = thickness / 2 + thickness / 2
    n = max(1, math.ceil(half / step))
    x = np.arange(-n, n + 1) * step
    box = np.clip(thickness / 2 - np.abs(x) + step / 2, 0.0, step) / step
    sigma = max(0.25 * thickness / step, 0.3)
    out = ndimage.gaussian_filter1d(box.astype(float), sigma, mode="constant")
    return (out / out.sum()).astype(np.float32)


@dataclass(frozen=True)
class Reconstruction:
    """How one series is reconstructed from the drawn phantom."""

    kernel: str
    pixel_mm: float
    thickness: float
    spacing: float
    noise_sd: float
    """Noise SD (HU) at the body's centre in soft tissue, for this kernel, thickness and grid."""
    centre_boost: float
    """How much noisier the body's centre is than its edge (photon starvation)."""


def apply_profile(vol: np.ndarray, render_step: float, thickness: float, keep: slice) -> np.ndarray:
    """Integrate each slice's profile along z (render steps of ``render_step`` mm) and keep the ``keep`` slices."""
    weights = slice_profile(thickness, render_step)
    if len(weights) > 1:
        vol = ndimage.convolve1d(vol, weights, axis=0, mode="nearest")
    return np.ascontiguousarray(vol[keep])


def noise_field(rng: np.random.Generator, shape: tuple[int, int, int], rec: Reconstruction) -> np.ndarray:
    """Unit-SD FBP noise: ramp-shaped spectrum through the kernel, correlated between overlapping slices."""
    nz, ny, nx = shape
    f = _freqs(ny, nx, rec.pixel_mm)
    amp = np.sqrt(f * mtf(rec.kernel, f) ** 2).astype(np.float32)
    spec = (rng.standard_normal((nz, ny, nx // 2 + 1), dtype=np.float32)
            + 1j * rng.standard_normal((nz, ny, nx // 2 + 1), dtype=np.float32)) * amp
    noise = fft.irfft2(spec, s=(ny, nx), workers=1).astype(np.float32)
    overlap = rec.thickness / rec.spacing
    if overlap > 1.05 and nz > 2:
        noise = ndimage.convolve1d(noise, slice_profile(rec.thickness, rec.spacing), axis=0, mode="nearest")
    noise /= max(float(noise.std()), 1e-6)
    return noise


def reconstruct(vol: np.ndarray, rec: Reconstruction, rng: np.random.Generator, spread: np.ndarray) -> np.ndarray:
    """Apply the kernel's MTF to every slice and add the noise, scaled per voxel by ``spread`` (the body's noise
    map, 1 at the edge of the body)."""
    ny, nx = vol.shape[1:]
    f = _freqs(ny, nx, rec.pixel_mm)
    image = fft.irfft2(fft.rfft2(vol, workers=1) * mtf(rec.kernel, f), s=(ny, nx), workers=1).astype(np.float32)
    image += noise_field(rng, (vol.shape[0], ny, nx), rec) * (rec.noise_sd * spread)
    return image


def noise_spread(z_a: np.ndarray, z_b: np.ndarray, xc: np.ndarray, yc: np.ndarray, y: np.ndarray, x: np.ndarray,
                 boost: float) -> np.ndarray:
    """Noise multiplier per voxel: up to ``1 + boost`` at the centre of the body's ellipse, growing with the
    slice's cross-section (the tube current modulation only partly compensates)."""
    area = np.sqrt(z_a * z_b)
    per_slice = (area / float(np.median(area))) ** 0.5
    r2 = ((x[None, None, :] - xc[:, None, None]) / z_a[:, None, None]) ** 2 + (
        (y[None, :, None] - yc[:, None, None]) / z_b[:, None, None]) ** 2
    return ((1.0 + boost * np.clip(1.0 - r2, 0.0, 1.0)) * per_slice[:, None, None]).astype(np.float32)
