"""webapp.viewer, webapp.levels and webapp.views: windows, reformats (sagittal, coronal, axial), slice positions,
true aspect, lossless PNG, readable level labels, the per-level table, and the owner-only image route."""

from __future__ import annotations

import asyncio
import io
import itertools
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest
from factories import vertebra as make_vertebra
from PIL import Image

from inference.findings import Measured, Vertebra
from webapp.levels import WHITE, YELLOW, findings_html, hu_reading, level_marks, mark_label, z_index_of
from webapp.viewer import (
    WINDOWS,
    Plane,
    View,
    Window,
    default_index,
    display_size,
    png_bytes,
    position_text,
    reformat,
    render,
    slice_count,
    slice_positions,
    spread,
)
from webapp.views import PREFIX, ViewerRoute, ViewStore, slice_png, view_of

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
    cor, cor_mm = reformat(vol, (2.0, 1.0, 0.5), Plane.CORONAL, 3)
    assert cor.shape == (10, 30) and cor_mm == (2.0, 0.5) and slice_count(vol.shape, Plane.CORONAL) == 20
    assert cor[4, 0] == 2000.0  # superior at the top, patient right on the viewer's left


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


def test_slice_positions_in_mm_along_each_plane_normal() -> None:
    a = affine((2.5, 0.8, 0.6), origin_z=-300.0)
    a[0, 3], a[1, 3] = -76.8, -50.0
    shape = (80, 100, 256)
    start, step, neg, pos = slice_positions(a, shape, Plane.AXIAL)
    assert (start, step, neg, pos) == (-300.0, 2.5, "I", "S")
    start, step, neg, pos = slice_positions(a, shape, Plane.SAGITTAL)
    assert start == pytest.approx(-76.8) and step == pytest.approx(0.6) and (neg, pos) == ("R", "L")
    assert position_text(start + 127 * step, neg, pos) == "R 0.6 mm"
    assert position_text(start + 200 * step, neg, pos) == "L 43.2 mm"
    assert slice_positions(a, shape, Plane.CORONAL)[2:] == ("A", "P")


def verts() -> list[Vertebra]:
    return [vertebra("L1", -100.0 + 2.0 * 60, grade=2, ratio=0.7, hu=80.0),
            vertebra("L2", -100.0 + 2.0 * 40, hu=90.0),
            Vertebra("L3", True, 0, 0.98, 200.0, -100.0 + 2.0 * 20, None, 0.62, True),
            make_vertebra("L4", present=False)]


def test_level_marks_name_first_with_how_sure_the_name_is() -> None:
    spacing = (2.0, 1.0, 1.0)
    marks = level_marks(verts(), affine(spacing), (100, 64, 64), spacing, column=(50.0, 32.0))
    assert [m.level for m in marks] == ["L1", "L2", "L3"]
    assert [m.label for m in marks] == ["L1", "L2", "L3? 0.62"]
    assert [m.colour for m in marks] == [WHITE, WHITE, YELLOW]
    assert marks[0].z_index == pytest.approx(60.0)
    assert marks[0].half_extent == pytest.approx(0.75 * 20 / 2)  # body: three quarters of the gap of 20 slices
    assert marks[0].j == pytest.approx((50.0 - 85.0, 50.0 - 50.0)) and marks[0].i == pytest.approx((10.0, 54.0))
    measured = Vertebra("L1", True, 0, 1.0, 150.0, 0.0, Measured("ok", height_middle_mm=26.0), 0.97, False)
    (mark,) = level_marks([measured], affine(spacing, 0.0), (100, 64, 64), spacing)
    assert mark.half_extent == pytest.approx(26.0 / 2 / 2.0) and mark.j is None
    assert mark_label(measured) == "L1 0.97"


def test_labels_are_white_or_yellow_on_black_boxes() -> None:
    spacing = (2.0, 1.0, 1.0)
    vol = np.full((100, 64, 64), 300.0, dtype=np.float32)  # mid grey everywhere in the bone window
    marks = level_marks(verts(), affine(spacing), vol.shape, spacing, column=(50.0, 32.0))
    plain = np.asarray(render(vol, spacing, View(Plane.SAGITTAL, 32, BONE)))
    drawn = np.asarray(render(vol, spacing, View(Plane.SAGITTAL, 32, BONE), marks))
    assert plain.shape == drawn.shape
    colours = {tuple(int(c) for c in px) for px in drawn.reshape(-1, 3)}
    assert (0, 0, 0) in colours and WHITE in colours and YELLOW in colours
    assert not any(r > 200 and g < 100 for r, g, _ in colours)  # no red or green labels any more
    coronal = np.asarray(render(vol, spacing, View(Plane.CORONAL, 32, BONE), marks))
    assert np.any(np.all(coronal == YELLOW, axis=2))
    no_box = level_marks(verts(), affine(spacing), vol.shape, spacing)
    axial = np.asarray(render(vol, spacing, View(Plane.AXIAL, 60, BONE, long_side=256), no_box))
    top_right = axial[:40, -120:]
    assert np.any(np.all(top_right == WHITE, axis=2)) and np.any(np.all(top_right == 0, axis=2))
    assert not np.any(np.all(axial[:40, :60] == WHITE, axis=2))  # the name is not in the top-left corner


def test_findings_table_shows_grade_and_hu_beside_their_thresholds() -> None:
    html = findings_html(verts())
    assert html.count("<tr") == 5 and "not found in the scan" in html
    assert "R-GEN-1" in html and "R-CT-1" in html and "0.80" in html and "110 HU" in html
    assert 'class="vf-uncertain">L3?' in html and "0.62" in html
    assert hu_reading(80.0) == "at or below 110 HU" and hu_reading(150.0) == "at or below 160 HU"
    assert hu_reading(200.0) == "above 160 HU" and hu_reading(None) == "-"
    assert "contribution" not in html.lower()


def test_view_query_parsing_clamps_and_defaults() -> None:
    view = view_of({"plane": ["coronal"], "i": ["7"], "ww": ["350"], "wl": ["45"], "px": ["900"]}, (10, 20, 30))
    assert view == View(Plane.CORONAL, 7, Window(350.0, 45.0), 900)
    bad = view_of({"plane": ["oblique"], "ww": ["nan"], "wl": ["x"], "i": ["?"]}, (10, 20, 30))
    assert bad.plane == Plane.SAGITTAL and bad.window == BONE and bad.index == 15
    assert view_of({"ww": ["-5"], "wl": ["99999"]}, (10, 20, 30)).window == Window(1.0, 4000.0)


def study(user: str | None = "alice") -> Any:
    rng = np.random.default_rng(1)
    return SimpleNamespace(volume=rng.normal(200, 300, (30, 48, 64)).astype(np.float32),
                           spacing_mm=(2.0, 1.0, 1.0), marks=[], user=user)


def test_slice_png_is_the_rendered_slice() -> None:
    s = study()
    data = slice_png(s, {"plane": ["axial"], "i": ["12"], "ww": ["400"], "wl": ["40"], "px": ["64"]})
    back = np.asarray(Image.open(io.BytesIO(data)))
    assert np.array_equal(back[..., 0], Window(400.0, 40.0).apply(s.volume[12]))


class App:
    """What the route needs of the Gradio app: its session tokens."""

    cookie_id = "c1"
    tokens: ClassVar[dict[str, str]] = {"tok-alice": "alice", "tok-bob": "bob"}


def call(route: ViewerRoute, path: str, who: str | None, method: str = "GET") -> tuple[int, bytes, dict[bytes, bytes]]:
    headers = [(b"cookie", f"access-token-c1=tok-{who}".encode())] if who else []
    scope = {"type": "http", "path": path, "method": method, "headers": headers, "query_string": b"plane=axial&i=3",
             "app": App()}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(route(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), dict(sent[0]["headers"])


def test_image_route_answers_the_owner_only_and_forgets_dropped_studies() -> None:
    store = ViewStore()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"gradio"})

    route = ViewerRoute(app, store)
    token = store.add(study(), "alice")
    status, body, headers = call(route, f"{PREFIX}{token}.png", "alice")
    assert status == 200 and body.startswith(b"\x89PNG") and headers[b"cache-control"] == b"no-store"
    assert call(route, f"{PREFIX}{token}.png", "bob")[0] == 404
    assert call(route, f"{PREFIX}{token}.png", None)[0] == 404
    assert call(route, f"{PREFIX}{token}.png", "alice", "POST")[0] == 404
    assert call(route, f"{PREFIX}nope.png", "alice")[0] == 404
    assert call(route, "/gradio_api/info", "alice")[0] == 299
    store.drop(token)
    assert call(route, f"{PREFIX}{token}.png", "alice")[0] == 404 and len(store) == 0


def test_an_enhanced_scan_shows_its_contrast_line_and_corrected_hu_column() -> None:
    """Issue 19: a line names the phase, what told it and the correction's source; a column shows each measured
    level's HU beside its contrast-corrected value and SD. Unenhanced: the line only, no column."""
    from dataclasses import replace

    from inference.contrast import AortaReading, corrected, decide
    from inference.findings import Measured

    arterial = decide(AortaReading(318.0, ("L1",), 2), None)
    levels = [replace(v, measured=corrected(Measured("ok", 150.0), arterial)) if v.present else v for v in verts()]
    html = findings_html(levels, arterial)
    assert "Contrast: arterial phase (from the aorta; aorta 318 HU)." in html and "Pompe 2015" in html
    assert "contrast-corrected" in html and "150 → 136 ± 19" in html and 'colspan="6"' in html
    plain = findings_html(levels, decide(AortaReading(None, (), 4), None))
    assert "Contrast: unenhanced (from the aorta)." in plain and "contrast-corrected" not in plain
    assert "vf-contrast" not in findings_html(levels)  # not assessed: no line
