"""Real scans of partial fields of view (../shared/real-spine) through the product with the bundled default model:
each is scored or refused by the coverage rule (refused only when fewer than two whole bodies of T10-L5 are in
the field), and every whole body its masks show is found within 10 mm and named right or marked uncertain.
``pytest tests/test_real_fov.py -s`` prints what the product reports for each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from inference.bundle import default_bundle
from inference.errors import InputError
from inference.io import load_any
from inference.labs import Labs
from inference.nifti import _canonical
from tests.conftest import CORPUS

REAL = CORPUS.parent / "real-spine"
pytestmark = [pytest.mark.skipif(not (default_bundle() / "model.onnx").is_file(), reason="no default bundle"),
              pytest.mark.skipif(not REAL.is_dir(), reason="no ../shared/real-spine")]
SLAB = REAL / "totalseg-extra" / "example_ct_sm.nii.gz"
AORTIC = REAL / "totalseg-extra" / "aortic_ct_crop.nii.gz"
TPTBOX = REAL / "tptbox-l3-crop" / "sub-ct_label-22_ct.nii.gz"


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    from inference.engine import Engine

    return Engine()


def _score(engine: Any, path: Path) -> dict[str, Any] | str:
    """The result JSON, or the one-line refusal."""
    try:
        return engine.predict(load_any(path), Labs(45.0, -1.8, 60.0, "M")).to_json()  # type: ignore[no-any-return]
    except InputError as exc:
        return exc.one_line()


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


def _mask_centres(seg: Path, image: Path, labels: dict[int, str], whole_only: bool = True) -> dict[str, float]:
    """Patient z (mm) of each labelled vertebra's centre; with ``whole_only``, only those not touching the top or
    bottom slice (a body the scan's edge cuts is not whole)."""
    study = load_any(image)
    img = nib.load(str(seg))
    lab, _ = _canonical(np.asarray(img.dataobj), img.affine)
    out = {}
    for code, name in labels.items():
        k = np.nonzero(lab == code)[0]
        if k.size == 0 or (whole_only and (k.min() == 0 or k.max() == lab.shape[0] - 1)):
            continue
        out[name] = float((study.affine @ np.array([k.mean(), 0, 0, 1.0]))[2])
    return out


def _check_bodies(result: dict[str, Any], centres: dict[str, float]) -> None:
    """Every whole body of the masks is found within 10 mm and named right or marked uncertain."""
    found = [v for v in result["vertebrae"] if v["present"]]
    for level, z in centres.items():
        near = min(found, key=lambda v: abs(v["z_mm"] - z), default=None)
        assert near is not None and abs(near["z_mm"] - z) <= 10.0, f"{level} (z {z:.1f}) not found"
        assert near["level"] == level or near["name_uncertain"], f"{level} named {near['level']} and sure"


def test_90_mm_slab_is_scored_on_what_it_shows(engine) -> None:  # type: ignore[no-untyped-def]
    """30 slices of 3 mm showing T12 and L1 whole (T11 a sliver, L2 cut): two whole bodies, so it is scored
    (the reader's old 150 mm minimum refused it unread), with both found and named right or uncertain."""
    result = _score(engine, SLAB)
    _show("90 mm slab", result)
    # T12's mask touches the top slice through its posterior elements; its body is whole (real-spine README)
    centres = _mask_centres(REAL / "totalseg-extra" / "example_ct_sm_seg.nii.gz", SLAB, {31: "L1", 32: "T12"},
                            whole_only=False)
    print(f"  masks: whole bodies at {json.dumps({k: round(v, 1) for k, v in centres.items()})}")
    assert isinstance(result, dict), result
    _check_bodies(result, centres)


def test_contrast_enhanced_chest_crop_by_the_rule(engine) -> None:  # type: ignore[no-untyped-def]
    """A real contrast-enhanced chest-abdomen crop whose lowest level is T12 (cut by the bottom edge): the cut T12
    is not reported as a whole body, and the scan is scored or refused by the coverage rule, never an error."""
    result = _score(engine, AORTIC)
    _show("contrast-enhanced chest crop", result)
    cut = _mask_centres(REAL / "totalseg-extra" / "aortic_ct_crop_vertebrae_T12.nii.gz", AORTIC, {1: "T12"},
                        whole_only=False)
    if isinstance(result, str):
        assert result.startswith("spine_not_covered: ") and "levels found" in result
        return
    counted = [v for v in result["vertebrae"] if v["present"] and v["level"] != "S1"]
    assert len(counted) >= 2
    assert all(abs(v["z_mm"] - cut["T12"]) > 10.0 for v in counted), "the cut T12 was reported as a whole body"


def test_tptbox_lumbar_crop_shows_one_whole_body_and_is_refused(engine) -> None:  # type: ignore[no-untyped-def]
    """A 70 mm real lumbar crop: L3 whole, L2 and L4 cut. One whole body is fewer than two: refused
    (`spine_not_covered`, naming what was seen)."""
    result = _score(engine, TPTBOX)
    _show("TPTBox lumbar crop", result)
    centres = _mask_centres(REAL / "tptbox-l3-crop" / "sub-ct_seg-vert_label-22_msk.nii.gz", TPTBOX,
                            {21: "L2", 22: "L3", 23: "L4"})
    print(f"  masks: whole bodies at {json.dumps({k: round(v, 1) for k, v in centres.items()})}")
    assert isinstance(result, str) and result.startswith("spine_not_covered: "), result
    assert "levels found" in result
