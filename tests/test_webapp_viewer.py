"""webapp.viewer and webapp.drivers: windows, reformat orientation, true aspect, lossless PNG, level overlay."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from factories import vertebra as make_vertebra
from PIL import Image

from inference.findings import Vertebra
from webapp.drivers import (
    GREEN,
    LOW_HU,
    ORANGE,
    RED,
    contribution,
    drivers_table,
    level_label,
    level_marks,
    z_index_of,
)
from webapp.viewer import (
    WINDOWS,
    Plane,
    View,
    Window,
    default_index,
    display_size,
    png_bytes,
    reformat,
    render,
    slice_count,
    spread,
)

BONE = WINDOWS["bone W2000/L500"]


def vertebra(level: str, z_mm: float, grade: int = 0, ratio: float = 1.0, hu: float = 180.0) -> Vertebra:
    return make_vertebra(level, grade=grade, ratio=ratio, hu=hu, z_mm=z_mm)


def affine(spacing: tuple[float, float, float], origin_z: float = -100.0) -> np.ndarray:
    a = np.zeros((4, 4))
    a[3, 3] = 1.0
    a[0, 2], a[1, 1], a[2, 0] = spacing[2], spacing[1], spacing[0]
    a[2, 3] = origin_z
    return a


def test_window_presets_map_hu_linearly() -> None:
    assert set(WINDOWS) == {"bone W2000/L500", "bone W1800/L400", "soft tissue W400/L40"}
    hu = np.array([-2000.0, -500.0, 500.0, 1500.0, 3000.0])
    assert BONE.apply(hu).tolist() == [0, 0, 128, 255, 255]
    soft = WINDOWS["soft tissue W400/L40"].apply(np.array([-160.0, 40.0, 240.0]))
    assert soft.tolist() == [0, 128, 255]


@pytest.mark.parametrize(("shape", "pixel", "expected"), [
    ((100, 200), (2.0, 0.5), (256, 512)),   # 200 mm tall, 100 mm wide
    ((50, 50), (1.0, 1.0), (512, 512)),
    ((165, 256), (2.0, 1.7657), (512, 374)),
])
def test_display_size_keeps_the_aspect_in_millimetres(shape: tuple[int, int], pixel: tuple[float, float],
                                                      expected: tuple[int, int]) -> None:
    w, h = display_size(shape, pixel, 512)
    assert (w, h) == expected
    assert w / h == pytest.approx((shape[1] * pixel[1]) / (shape[0] * pixel[0]), rel=0.01)


def test_reformat_orientation() -> None:
    vol = np.zeros((10, 20, 30), dtype=np.float32)
    vol[9, 0, 15] = 1000.0   # most superior, most anterior, mid-line
    vol[5, 3, 0] = 2000.0    # patient right edge (X index 0)
    sag, sag_mm = reformat(vol, (2.0, 1.0, 0.5), Plane.SAGITTAL, 15)
    assert sag.shape == (10, 20) and sag_mm == (2.0, 1.0)
    assert sag[0, 0] == 1000.0  # superior at the top, anterior on the left
    ax, ax_mm = reformat(vol, (2.0, 1.0, 0.5), Plane.AXIAL, 5)
    assert ax.shape == (20, 30) and ax_mm == (1.0, 0.5)
    assert ax[3, 0] == 2000.0  # anterior at the top, patient right on the viewer's left
    assert slice_count(vol.shape, Plane.SAGITTAL) == 30 and slice_count(vol.shape, Plane.AXIAL) == 10
    assert default_index(vol.shape, Plane.AXIAL) == 5


def test_reformat_clamps_the_index() -> None:
    vol = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    assert np.array_equal(reformat(vol, (1, 1, 1), Plane.AXIAL, 99)[0], vol[1])
    assert np.array_equal(reformat(vol, (1, 1, 1), Plane.SAGITTAL, -5)[0], vol[::-1, :, 0])


def test_png_is_lossless_and_png() -> None:
    rng = np.random.default_rng(0)
    vol = rng.normal(300, 400, size=(40, 64, 64)).astype(np.float32)
    img = render(vol, (1.0, 1.0, 1.0), View(Plane.AXIAL, 20, BONE, long_side=64))
    data = png_bytes(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    back = Image.open(io.BytesIO(data))
    assert np.array_equal(np.asarray(back), np.asarray(img))
    assert np.array_equal(np.asarray(img)[..., 0], BONE.apply(vol[20]))


def test_render_true_aspect_for_anisotropic_voxels() -> None:
    vol = np.zeros((100, 80, 80), dtype=np.float32)
    img = render(vol, (3.0, 0.75, 0.75), View(Plane.SAGITTAL, 40, BONE, long_side=400))
    assert img.size == (80, 400)  # 60 mm wide, 300 mm tall


def test_overlay_marks_levels_with_their_colour() -> None:
    spacing = (2.0, 1.0, 1.0)
    vol = np.zeros((100, 64, 64), dtype=np.float32)
    a = affine(spacing)
    verts = [vertebra("L1", -100.0 + 2.0 * 60, grade=2, ratio=0.7, hu=80.0),
             vertebra("L2", -100.0 + 2.0 * 40, hu=90.0), vertebra("L3", -100.0 + 2.0 * 20, hu=200.0),
             make_vertebra("L4", present=False)]
    marks = level_marks(verts, a, vol.shape, spacing[0])
    assert [m.level for m in marks] == ["L1", "L2", "L3"]
    assert [m.colour for m in marks] == [RED, ORANGE, GREEN]
    assert marks[0].z_index == pytest.approx(60.0)
    plain = np.asarray(render(vol, spacing, View(Plane.SAGITTAL, 32, BONE)))
    drawn = np.asarray(render(vol, spacing, View(Plane.SAGITTAL, 32, BONE), marks))
    assert plain.shape == drawn.shape
    changed = np.any(drawn != plain, axis=2)
    rows = np.nonzero(changed[:, 2])[0]  # the contribution band at the left edge
    assert rows.size > 0
    red = np.all(np.abs(drawn.astype(int) - np.array(RED)) < 60, axis=2)
    assert red.any()
    axial = np.asarray(render(vol, spacing, View(Plane.AXIAL, 60, BONE), marks))
    assert np.any(axial != 0)  # the level name is written on the slice through L1


def test_drivers_rank_fractures_and_low_hu() -> None:
    assert contribution(3, 200.0)[0] == 1.0
    assert contribution(0, 200.0) == (0.0, GREEN, "no fracture, attenuation above the low-HU threshold")
    score, colour, reason = contribution(0, LOW_HU - 30)
    assert colour == ORANGE and 0 < score < 1 and "HU" in reason
    marks = level_marks([vertebra("T12", 10.0, hu=200.0), vertebra("L1", 0.0, grade=1, ratio=0.78)],
                        affine((1.0, 1.0, 1.0), 0.0), (50, 8, 8), 1.0)
    assert [row[0] for row in drivers_table(marks)] == ["L1", "T12"]
    assert level_label(vertebra("L1", 0.0, grade=2, ratio=0.712, hu=84.4)) == "L1  G2  0.71  84 HU"


def test_z_index_inverts_the_affine() -> None:
    a = affine((2.5, 1.0, 1.0), -300.0)
    shape = (80, 10, 10)
    for k in (0.0, 13.5, 79.0):
        z = (a @ np.array([k, 4.5, 4.5, 1.0]))[2]
        assert z_index_of(float(z), a, shape) == pytest.approx(k)


def test_spread_separates_labels_in_order() -> None:
    rows = [100.0, 101.0, 99.0, 300.0]
    out = spread(rows, 12.0, 0.0, 400.0)
    order = sorted(range(4), key=lambda i: rows[i])
    placed = [out[i] for i in order]
    assert all(b - a >= 12.0 - 1e-9 for a, b in itertools.pairwise(placed))
    assert out[3] == 300.0
    assert max(spread([395.0, 396.0, 397.0], 12.0, 0.0, 400.0)) <= 400.0


def test_custom_window() -> None:
    assert Window(100.0, 0.0).apply(np.array([-50.0, 50.0])).tolist() == [0, 255]
