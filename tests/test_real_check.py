"""``python -m training.real_check``: the real scans are found from the files of ../shared, and the command's JSON
has one row per scan with the figures (run here on the small TPTBox crop only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.bundle import default_bundle
from training.real_check import SHARED, main, real_scans

pytestmark = [pytest.mark.skipif(not (default_bundle() / "model.onnx").is_file(), reason="no default bundle"),
              pytest.mark.skipif(not (SHARED / "real-spine").is_dir(), reason="no ../shared/real-spine")]


def test_scans_are_found_from_the_files() -> None:
    """Every image with vertebra masks, each with its masks and report, and the corpus cases that must be refused."""
    scans = {s.name.split("/")[-1]: s for s in real_scans()}
    assert {"example_ct_sm", "aortic_ct_crop", "sub-ct_label-22_ct"} <= set(scans)
    assert scans["example_ct_sm"].masks and scans["aortic_ct_crop"].contrast is not None
    assert all(s.masks or s.relaxed for s in scans.values())
    if (SHARED / "dicom-corpus").is_dir():
        assert scans["example_ct"].report is not None
        assert scans["accept_pycerr_hn_constant_instancenumber"].relaxed


def test_command_rows_on_one_small_scan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The TPTBox crop (L3 whole, L2 and L4 cut): a row refused with the reason, the masks' whole body, the counts,
    and a total; the same figures printed and written."""
    out = tmp_path / "real.json"
    main(["--only", "sub-ct_label-22_ct", "--out", str(out)])
    result = json.loads(out.read_text())
    (row,) = result["scans"]
    assert row["scan"].endswith("sub-ct_label-22_ct") and row["verdict"] == "refused"
    assert row["reason"].startswith("spine_not_covered: ")
    assert [b["level"] for b in row["bodies"]] == ["L3"] and row["whole"] == 1
    assert {"found", "named", "sure", "sure_right", "uncertain", "hu_max_diff"} <= set(row)
    assert result["total"]["scans"] == 1 and result["total"]["refused"] == 1
    assert result["model"]["version"]
    printed = capsys.readouterr().out
    assert "sub-ct_label-22_ct" in printed and "TOTAL" in printed


def test_unknown_scan_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    """``--only`` naming no scan: exit 2 with one line on stderr."""
    with pytest.raises(SystemExit) as exc:
        main(["--only", "no-such-scan"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no real scans") and err.count("\n") == 1
