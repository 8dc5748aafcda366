"""Real scans of partial fields of view (../shared/real-spine) through the product with the bundled default model:
each is scored or refused by the coverage rule (refused only when fewer than two whole bodies of T10-L5 are in
the field), and every whole body its masks show is found within 10 mm and named right or marked uncertain.
``pytest tests/test_real_fov.py -s`` prints what the product reports for each. The scans, their masks' whole
bodies and the figures are those of ``python -m training.real_check`` (one implementation)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from inference.bundle import default_bundle
from training.real_check import SHARED, check_scan, mask_bodies, predict, scan_named

REAL = SHARED / "real-spine"
pytestmark = [pytest.mark.skipif(not (default_bundle() / "model.onnx").is_file(), reason="no default bundle"),
              pytest.mark.skipif(not REAL.is_dir(), reason="no ../shared/real-spine")]


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    from inference.engine import Engine

    return Engine()


def _show(name: str, result: dict[str, Any] | str) -> None:
    if isinstance(result, str):
        print(f"\n{name}: refused: {result}")
        return
    print(f"\n{name}: p = {result['probability']} {result['interval']}, anchors {result['anchors']}")
    for v in result["vertebrae"]:
        if v["present"]:
            print(f"  {v['level']:4} z {v['z_mm']:7.1f}  confidence {v['name_confidence']:.2f}"
                  f"{' uncertain' if v['name_uncertain'] else ''}  HU {v['trabecular_hu']}")
    for w in result["warnings"]:
        print(f"  warning: {w}")


def _check_bodies(scan_name: str, result: dict[str, Any] | str) -> None:
    """Every whole body of the masks is found within 10 mm and named right or marked uncertain."""
    row = check_scan(scan_named(scan_name), result)
    for body in row.bodies:
        assert body.found, f"{body.level} (z {body.mask_z_mm}) not found"
        assert body.reported == body.level or body.uncertain, f"{body.level} named {body.reported} and sure"
    assert row.found == row.whole and row.sure_right == row.sure


def test_90_mm_slab_is_scored_on_what_it_shows(engine) -> None:  # type: ignore[no-untyped-def]
    """30 slices of 3 mm showing T12 and L1 whole (T11 a sliver, L2 cut): two whole bodies, so it is scored
    (the reader's old 150 mm minimum refused it unread), with both found and named right or uncertain."""
    scan = scan_named("example_ct_sm")
    result = predict(engine, scan)
    _show("90 mm slab", result)
    # T12's mask touches the top slice through its posterior elements; its body is whole (real-spine README)
    centres = {b.level: b.z_mm for b in mask_bodies(scan) if b.whole}
    print(f"  masks: whole bodies at {json.dumps({k: round(v, 1) for k, v in centres.items()})}")
    assert set(centres) == {"T12", "L1"}
    assert isinstance(result, dict), result
    _check_bodies("example_ct_sm", result)


def test_contrast_enhanced_chest_crop_is_scored_on_the_bodies_it_shows(engine) -> None:  # type: ignore[no-untyped-def]
    """A real contrast-enhanced chest-abdomen crop running from T12 up into the mid-thoracic spine. T12's mask
    reaches the bottom slice only through its spinous process (its body ends 12 mm above it), so T12, T11 and T10
    are whole in the field: the rule scores it, and T12, the only body with a mask, is found within 10 mm and
    named right or marked uncertain."""
    scan = scan_named("aortic_ct_crop")
    result = predict(engine, scan)
    _show("contrast-enhanced chest crop", result)
    assert {b.level for b in mask_bodies(scan) if b.whole} == {"T12"}
    assert isinstance(result, dict), result
    _check_bodies("aortic_ct_crop", result)


def test_tptbox_lumbar_crop_shows_one_whole_body_and_is_refused(engine) -> None:  # type: ignore[no-untyped-def]
    """A 70 mm real lumbar crop: L3 whole, L2 and L4 cut. One whole body is fewer than two: refused
    (`spine_not_covered`, naming what was seen), and the body the refusal found is the masks' L3, within 10 mm,
    named right or marked uncertain."""
    scan = scan_named("sub-ct_label-22_ct")
    result = predict(engine, scan)
    _show("TPTBox lumbar crop", result)
    centres = {b.level: b.z_mm for b in mask_bodies(scan) if b.whole}
    print(f"  masks: whole bodies at {json.dumps({k: round(v, 1) for k, v in centres.items()})}")
    assert set(centres) == {"L3"}
    assert isinstance(result, str) and result.startswith("spine_not_covered: "), result
    assert "levels found" in result
    print(f"  found by the refusal: {[(v['level'], v['z_mm']) for v in getattr(result, 'found', ())]}")
    _check_bodies("sub-ct_label-22_ct", result)
