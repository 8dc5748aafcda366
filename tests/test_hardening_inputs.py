"""Issue 24, item 8: labs are parsed by one validator in the CLI, the batch manifest and the web app, so that
``--ntx 4_0`` is refused everywhere, age 70.5 is accepted everywhere and ``ntx="abc"`` is a clean ``bad_lab``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from inference.errors import InputError
from inference.labs import LabInput, parse_number

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text", ["4_0", "1_000", "nan", "inf", "-inf", "0x10", "４０", "40 mg", "4,0", "--1", "1e",
                                  "."])
def test_lab_cells_that_python_float_would_take_or_garble_are_refused(text: str) -> None:
    with pytest.raises(InputError) as info:
        parse_number(text, "NTX")
    assert info.value.code == "bad_lab" and "NTX" in info.value.message


@pytest.mark.parametrize(("raw", "value"), [("40", 40.0), (" 40.5 ", 40.5), ("-2.5", -2.5), ("+3", 3.0), (".5", 0.5),
                                            ("1e2", 100.0), ("70.", 70.0), (52, 52.0), (70.5, 70.5), ("", None),
                                            (None, None)])
def test_plain_numbers_are_taken(raw: object, value: float | None) -> None:
    assert parse_number(raw, "age") == value


@pytest.mark.parametrize("raw", [True, [40], {"v": 40}, b"40", float("nan")])
def test_other_types_are_bad_labs(raw: object) -> None:
    with pytest.raises(InputError) as info:
        parse_number(raw, "NTX")
    assert info.value.code == "bad_lab"


def _cli_labs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str) -> Any:
    """The LabInput `vfrisk predict` hands the pipeline for ``args`` (the pipeline itself stubbed out)."""
    from typer.testing import CliRunner

    from vfrisk import cli

    seen: dict[str, Any] = {}

    def fake_predict(source: object, **kwargs: Any) -> dict[str, Any]:
        seen["labs"] = kwargs["labs"]
        return {}

    monkeypatch.setattr("vfrisk.pipeline.predict_cli", fake_predict)
    result = CliRunner().invoke(cli.app, ["predict", str(tmp_path), *args])
    return seen.get("labs", result)


def test_cli_batch_and_web_parse_the_same_cells(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import app

    cells = {"ntx": "40", "bmd_tscore": "-2.5", "age": "70.5", "sex": "F"}
    batch = LabInput.from_cells(cells)  # what a manifest row gives
    web = app._lab_input(40.0, -2.5, 70.5, "F")  # what the form (numbers) gives
    cli = _cli_labs(monkeypatch, tmp_path, "--ntx", "40", "--bmd-tscore", "-2.5", "--age", "70.5", "--sex", "F")
    assert batch == web == cli == LabInput(ntx=40.0, bmd_tscore=-2.5, age=70.5, sex="F")


def test_web_api_refuses_text_labs_cleanly() -> None:
    import app
    from webapp.errors import PublicError

    for ntx in ("abc", "4_0"):
        with pytest.raises(PublicError) as info:
            app._lab_input(ntx, -2.5, 70, "F")
        assert info.value.code == "bad_lab" and "internal" not in info.value.message


def test_cli_refuses_ntx_4_0_with_one_line() -> None:
    run = subprocess.run([sys.executable, "-m", "vfrisk.cli", "predict", "nowhere", "--ntx", "4_0",
                          "--bmd-tscore", "-2", "--age", "70", "--sex", "F"], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["error: NTX '4_0' is not a number"]


def test_predict_out_that_is_a_file_is_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``vfrisk predict --out FILE``: a one-line ``bad_usage`` before the study is read or the model loaded, and
    the file is left as it was."""
    import vfrisk.pipeline as P

    target = tmp_path / "report.txt"
    target.write_text("keep me")

    def no_engine(*_: object, **__: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("inference.engine.Engine", no_engine)
    with pytest.raises(InputError) as err:
        P.predict_cli(tmp_path / "missing-study", labs=LabInput(), context=None, model=None, out=target)
    assert err.value.code == "bad_usage" and "is not one" in str(err.value)
    assert target.read_text() == "keep me"


def test_a_command_that_ends_leaves_its_objects_to_the_process_not_to_the_final_collections(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``vfrisk`` freezes what a command leaves before the interpreter shuts down, whether it succeeded or
    failed, so that the final collections do not walk it (``bench/bench_commands.py`` measures the gain)."""
    import gc

    from vfrisk import cli

    gc.unfreeze()
    try:
        for argv, status in ((["vfrisk", "--help"], 0), (["vfrisk", "predict", "--ntx", "4_0", "x"], 2)):
            monkeypatch.setattr(sys, "argv", argv)
            assert gc.get_freeze_count() == 0
            code = 0
            try:
                cli.main()
            except SystemExit as ended:
                code = ended.code or 0
            assert code == status
            assert gc.get_freeze_count() > 0
            gc.unfreeze()
    finally:
        gc.unfreeze()
