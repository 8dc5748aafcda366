"""write_reports: formats, files only inside out_dir, refusals, and import hygiene of the interop package."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from test_interop_support import LEVELS, Scored, make_result

from inference.errors import InputError
from interop.reports import FILE_NAMES, FORMATS, write_reports
from vfrisk.result import Result

pytest_plugins = ["test_interop_support"]

REPO = Path(__file__).resolve().parents[1]


def test_every_format_written_inside_out_dir(reports: dict[str, Path], scored: Scored) -> None:
    assert set(reports) == set(FORMATS)
    out_dir = reports["json"].parent
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(FILE_NAMES.values())  # no temporary left
    assert json.loads(reports["json"].read_text()) == scored.result.to_json()


def test_json_only_needs_no_source(scored: Scored, tmp_path: Path) -> None:
    written = write_reports(scored.result, scored.study, tmp_path / "missing", tmp_path / "o", formats=("json",))
    assert list(written) == ["json"]


def test_unknown_format_is_bad_usage(scored: Scored, tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        write_reports(scored.result, scored.study, scored.source, tmp_path, formats=("json", "hl7v2"))
    assert err.value.code == "bad_usage"
    assert not any(tmp_path.iterdir())


def test_source_without_the_series_is_refused(scored: Scored, interop_cohort: Path, tmp_path: Path) -> None:
    other = interop_cohort / "studies" / "S00000"
    with pytest.raises(InputError) as err:
        write_reports(scored.result, scored.study, other, tmp_path, formats=("sr",))
    assert err.value.code == "source_mismatch"


def test_result_for_another_series_is_a_bug(scored: Scored, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="UIDs"):
        other = replace(scored.result, prediction=replace(scored.result.prediction, series_instance_uid="1.2.3"))
        write_reports(other, scored.study, scored.source, tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"probability": 1.5}, "not a probability"),
        ({"interval": [0.2, 0.3]}, "does not contain"),
        ({"model": {"name": "x"}}, "model"),
        ({"risk_category": "moderate"}, "risk_category"),
    ],
)
def test_malformed_result_is_refused(scored: Scored, change: dict, message: str) -> None:
    assert Result.from_json(scored.result.to_json()) == scored.result  # the JSON round-trips
    with pytest.raises(ValueError, match=message):
        Result.from_json({**scored.result.to_json(), **change})


def test_no_found_level_writes_no_seg(scored: Scored, tmp_path: Path) -> None:
    result = make_result(scored.study, scored.truth, absent=LEVELS)
    written = write_reports(result, scored.study, scored.source, tmp_path, formats=("sr", "seg"))
    assert list(written) == ["sr"]


def test_sr_points_into_the_seg_only_when_both_are_written(scored: Scored, tmp_path: Path) -> None:
    """The SEG is written before the SR whatever the order asked; an SR written without it cites no segment."""
    from interop.sr import read_sr_measurements

    both = write_reports(scored.result, scored.study, scored.source, tmp_path / "both", formats=("sr", "seg"))
    assert list(both) == ["seg", "sr"]
    assert any(v["segment"] for v in read_sr_measurements(both["sr"])["levels"].values())
    alone = write_reports(scored.result, scored.study, scored.source, tmp_path / "alone", formats=("sr",))
    assert not any(v["segment"] for v in read_sr_measurements(alone["sr"])["levels"].values())


def test_source_as_a_list_of_files(scored: Scored, tmp_path: Path) -> None:
    files = sorted(scored.source.iterdir())
    written = write_reports(scored.result, scored.study, files, tmp_path, formats=("sr",))
    assert written["sr"].exists()


def test_interop_imports_no_torch_monai_or_gradio() -> None:
    code = (
        "import sys, interop.reports, interop.sr, interop.seg, interop.fhir, interop.pdf, interop.keyimage,"
        " interop.encapsulated, interop.listen, interop.intake, interop.state, interop.pacs_cli;"
        "print(sorted(m for m in ('torch', 'monai', 'gradio') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
