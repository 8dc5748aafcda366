"""The ``vfrisk`` command line.

Thin glue only: every sub-command imports its implementation lazily so that ``vfrisk predict`` and
``vfrisk score`` never pay for torch, MONAI or Gradio. Exit status: 0 success; 2 bad input or usage
(one line ``error: <reason>`` on stderr); 1 an internal fault.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from inference.disclaimer import DISCLAIMER
from inference.errors import InputError

app = typer.Typer(
    name="vfrisk",
    help=f"6-month vertebral fracture risk from spine CT + labs. {DISCLAIMER}",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _fail(message: str, status: int = 2) -> NoReturn:
    """Print exactly one line ``error: <message>`` on stderr and exit."""
    sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
    raise SystemExit(status)


def _guarded(func: Callable[[], Any]) -> Any:
    """Run ``func``; turn user errors into exit 2 and anything unexpected into exit 1, never a traceback."""
    try:
        return func()
    except InputError as exc:
        _fail(exc.message, 2)
    except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError) as exc:
        _fail(f"{exc.strerror or 'cannot open'}: {Path(str(exc.filename)).name}", 2)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except SystemExit:
        raise
    except Exception as exc:
        _fail(f"internal error ({type(exc).__name__}); please report it with the command you ran", 1)


def _print_json(obj: Any) -> None:
    """Write one JSON object on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _source(paths: list[Path]) -> Path | list[Path]:
    """One folder/zip/file, or a list of files."""
    for p in paths:
        if not p.exists():
            raise InputError("not_found", f"no such file or folder: {p.name}")
    return paths[0] if len(paths) == 1 else paths


def _not_yet(name: str) -> NoReturn:
    _fail(f"not available yet ({name})", 2)


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Output folder for the cohort.")],
    n: Annotated[int, typer.Option(help="Number of studies.")] = 50,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 1,
    matrix: Annotated[int, typer.Option(help="In-plane matrix (256-512; smaller for fast cohorts).")] = 0,
    workers: Annotated[int, typer.Option(help="Worker processes (0 = all cores).")] = 0,
    wide: Annotated[bool, typer.Option(help="Draw acquisition parameters from wider ranges.")] = False,
    extras: Annotated[bool, typer.Option(help="Add scouts, thick and sagittal series to some studies.")] = True,
    fov: Annotated[str, typer.Option(help="standard: T11-L5 with margins; mixed: fields of view of every kind "
                                          "and transitional spines (see README).")] = "standard",
    family: Annotated[str, typer.Option(help="Phantom family: a (the training generator) or b (the independent "
                                             "second generator, with its own fields of view of every kind: "
                                             "--wide and --fov are family a's).")] = "a",
    transitional: Annotated[float | None, typer.Option(
        help="With --fov mixed: share of four- and again of six-lumbar spines (default 0.04; training cohorts "
             "may hold more).")] = None,
    lungs: Annotated[bool | None, typer.Option(
        "--lungs/--no-lungs",
        help="Family a: lungs and a heart (the default, as the default model is trained on); --no-lungs: family a "
             "as before lungs were drawn (the default model may number such a spine one level off).")] = None,
) -> None:
    """Write a synthetic cohort (DESIGN.md cohort layout)."""

    def run() -> None:
        if family == "b":
            if wide or fov != "standard" or transitional is not None or lungs is not None:
                raise InputError("bad_usage", "--wide, --fov, --transitional and --lungs/--no-lungs apply to "
                                              "family a (family b draws its own anatomy and fields of view of every "
                                              "kind)")
            from data.synthetic.family_b.cohort import Options
            from data.synthetic.family_b.cohort import write_cohort as write_b

            _print_json(write_b(out, Options(n=n, seed=seed, matrix=matrix or None, workers=workers, extras=extras)))
            return
        if family != "a":
            raise InputError("bad_usage", f"--family must be a or b, not {family!r}")
        if transitional is not None and (fov != "mixed" or not 0.0 <= transitional <= 0.5):
            raise InputError("bad_usage", "--transitional needs --fov mixed and a share from 0 to 0.5")
        from data.synthetic.cohort import CohortOptions, write_cohort

        opts = CohortOptions(n=n, seed=seed, matrix=matrix or None, workers=workers, wide=wide, extras=extras,
                             fov=fov, transitional=transitional, lungs=lungs is not False)
        summary = write_cohort(out, opts)
        _print_json(summary)

    _guarded(run)


@app.command()
def inspect(study: Annotated[list[Path], typer.Argument(help="Folder, zip, or DICOM files.")]) -> None:
    """Print the series found, the one chosen, its geometry, and why the others were set aside."""

    def run() -> None:
        from inference.dicom import inspect_study

        _print_json(inspect_study(_source(study)))

    _guarded(run)


@app.command()
def train(
    cohort: Annotated[list[Path], typer.Option(help="Cohort folder (repeat to train on a mixture).")],
    out: Annotated[Path, typer.Option(help="Run folder.")],
    config: Annotated[Path | None, typer.Option(help="Config JSON/TOML file.")] = None,
    cache_only: Annotated[bool, typer.Option(help="Only decode the cohort(s) into the training cache.")] = False,
    seed: Annotated[int | None, typer.Option(help="Replace the config's seed (weights, augmentation, and the split "
                                                  "unless the config sets split_seed): run the same settings with "
                                                  "several seeds to see the spread.")] = None,
) -> None:
    """Train, calibrate and evaluate on one cohort or a mixture; write the run folder."""

    def run() -> None:
        from training.run import cache_run, train_run

        report = cache_run(cohort, config) if cache_only else train_run(cohort, out, config, seed)
        if report:  # under torchrun only the first process reports
            _print_json(report["headline"])

    _guarded(run)


@app.command()
def export(
    run: Annotated[Path, typer.Option(help="Run folder from train.")],
    out: Annotated[Path, typer.Option(help="Bundle folder to write.")],
    variant: Annotated[str, typer.Option(help="fused (the model), or a baseline: labs_only, image_only.")] = "fused",
) -> None:
    """Write the model bundle (ONNX + card) after checking ONNX against PyTorch."""

    def run_export() -> None:
        from training.export import export_bundle

        _print_json(export_bundle(run, out, variant=variant))

    _guarded(run_export)


@app.command()
def evaluate(
    cohort: Annotated[Path, typer.Option(help="Labelled cohort folder.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    model: Annotated[Path | None, typer.Option(help="Model bundle folder (default: bundled).")] = None,
    compare: Annotated[list[Path] | None, typer.Option(help="Baseline bundle(s) scored on the same studies.")] = None,
) -> None:
    """Metrics JSON and ROC/calibration plots on a labelled cohort."""

    def run() -> None:
        from training.evaluate_bundle import evaluate_bundle

        m = evaluate_bundle(model, cohort, out, compare=compare or [])
        _print_json({"classification": m["classification"], "vs_truth": m.get("vs_truth"),
                     "vertebrae": m.get("vertebrae"), "scored": m["scored"], "total": m["total"],
                     "refused": m["refusals_by_reason"], "versus": m.get("versus")})

    _guarded(run)


@app.command()
def predict(
    study: Annotated[list[Path], typer.Argument(help="Folder, zip, or DICOM files.")],
    ntx: Annotated[str | None, typer.Option(help="Urine NTX, nmol BCE/mmol creatinine.")] = None,
    bmd_tscore: Annotated[str | None, typer.Option("--bmd-tscore", help="Lowest DXA T-score.")] = None,
    age: Annotated[str | None, typer.Option(help="Age in years (default: DICOM header).")] = None,
    sex: Annotated[str | None, typer.Option(help="F or M (default: DICOM header).")] = None,
    context: Annotated[Path | None, typer.Option(help="Clinical context JSON.")] = None,
    model: Annotated[Path | None, typer.Option(help="Model bundle (default: bundled).")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the reports here.")] = None,
) -> None:
    """Score one study and print the result JSON."""

    def run() -> None:
        from inference.labs import LabInput
        from vfrisk.pipeline import predict_cli

        # the one lab parser of the batch manifest and the web app: "4_0" is refused, 70.5 accepted, everywhere
        labs = LabInput.from_cells({"ntx": ntx, "bmd_tscore": bmd_tscore, "age": age, "sex": sex})
        _print_json(predict_cli(_source(study), labs=labs, context=context, model=model, out=out))

    _guarded(run)


@app.command()
def suggest(context: Annotated[Path, typer.Option(help="Clinical context JSON.")]) -> None:
    """Run the suggestion engine alone on a clinical context JSON."""

    def run() -> None:
        from clinical.engine import suggest_from_json_file

        _print_json(suggest_from_json_file(context))

    _guarded(run)


@app.command()
def score(
    out: Annotated[Path, typer.Option(help="Results table (.csv or .parquet).")],
    archive: Annotated[Path | None, typer.Argument(help="Archive folder (studies under it).")] = None,
    manifest: Annotated[Path | None, typer.Option(help="Manifest CSV (DESIGN.md); omit for folder-only mode.")] = None,
    engine: Annotated[str, typer.Option(help="local or ray.")] = "local",
    workers: Annotated[int, typer.Option(help="Worker processes (0 = one per core).")] = 0,
    model: Annotated[Path | None, typer.Option(help="Model bundle (default: bundled).")] = None,
    db: Annotated[str | None, typer.Option(help="Results database URL (default: SQLite at <out>.sqlite).")] = None,
    labs: Annotated[Path | None, typer.Option(help="Labs CSV keyed by study_instance_uid (folder/PACS mode).")] = None,
    dicomweb: Annotated[str | None, typer.Option(help="Pull CT studies from this DICOMweb URL instead.")] = None,
    date_from: Annotated[str | None, typer.Option(help="DICOMweb: study date from (YYYY-MM-DD).")] = None,
    date_to: Annotated[str | None, typer.Option(help="DICOMweb: study date to (YYYY-MM-DD).")] = None,
    limit: Annotated[int | None, typer.Option(help="DICOMweb: at most this many studies.")] = None,
    push: Annotated[bool, typer.Option(help="DICOMweb: store the SEG, SR, PDF and key image back (STOW-RS).")]
    = False,
    retry_not_found: Annotated[bool, typer.Option(
        help="DICOMweb: search again for labs rows whose study the PACS did not hold on an earlier run.")] = False,
) -> None:
    """Batch-score an archive (or a PACS over DICOMweb) into a results table; re-running resumes."""

    def run() -> None:
        if dicomweb:
            from interop.pacs_cli import Scoring, score_dicomweb

            scoring = Scoring(model=model, labs_csv=labs, workers=workers, db=db, engine=engine)
            _print_json(score_dicomweb(dicomweb, out, scoring, date_from=_date(date_from), date_to=_date(date_to),
                                       limit=limit, push=push, retry_not_found=retry_not_found))
            return
        if archive is None:
            raise InputError("bad_usage", "give an ARCHIVE folder or --dicomweb URL")
        from inference.batch import score_cli

        _print_json(score_cli(archive, manifest, out, engine=engine, workers=workers, model=model, db=db,
                              labs_csv=labs))

    _guarded(run)


def _date(text: str | None) -> Any:
    """ISO date or None; a bad date is a usage error."""
    import datetime as dt

    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise InputError("bad_usage", f"not a date (YYYY-MM-DD): {text}") from exc


@app.command()
def listen(
    storage: Annotated[Path, typer.Option(help="Folder where received instances are kept.")],
    out: Annotated[Path, typer.Option(help="Folder for the reports of each study and the listener's records.")],
    port: Annotated[int, typer.Option(help="DICOM port to listen on.")] = 11112,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    ae_title: Annotated[str, typer.Option(help="AE title to answer to.")] = "VFRISK",
    stable_seconds: Annotated[float, typer.Option(help="A study is complete after this many quiet seconds.")] = 10.0,
    labs: Annotated[Path | None, typer.Option(help="Labs CSV keyed by study_instance_uid (watched for changes).")]
    = None,
    model: Annotated[Path | None, typer.Option(help="Model bundle (default: bundled).")] = None,
    send_to: Annotated[list[str] | None, typer.Option(
        help="Send the SEG, SR, PDF and key image to HOST:PORT:AETITLE (repeatable; retried until stored).")] = None,
    retry_seconds: Annotated[float, typer.Option(help="First delay before a failed send is retried.")] = 5.0,
    status: Annotated[bool, typer.Option(help="Print the record of every study and the outbox, then exit.")] = False,
) -> None:
    """DICOM C-STORE receiver: score each complete CT study once, write its reports, send the results back."""

    def run() -> None:
        from interop.pacs_cli import Listener, listen_status
        from interop.pacs_cli import listen as serve_listener

        if status:
            _print_json(listen_status(out))
            return
        listener = Listener(host=host, port=port, ae_title=ae_title, stable_seconds=stable_seconds,
                            send_to=tuple(send_to or ()), retry_seconds=retry_seconds)
        serve_listener(storage, out, listener, model, labs)

    _guarded(run)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Bind address (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 7860,
    demo_user: Annotated[bool, typer.Option(help="Add an in-memory demo account (password printed once).")] = False,
    model: Annotated[Path | None, typer.Option(help="Model bundle (default: bundled).")] = None,
) -> None:
    """Start the web app (same as ``python app.py``)."""

    def run() -> None:
        import app as webapp

        webapp.main(host=host, port=port, demo_user=demo_user or None, model=model)

    _guarded(run)


users_app = typer.Typer(help="Web-app user accounts (hashed passwords).", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    users: Annotated[Path | None, typer.Option(help="User store (default: $VFRISK_USERS or ~/.vfrisk).")] = None,
    replace: Annotated[bool, typer.Option(help="Replace an existing user's password.")] = False,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin.")] = False,
) -> None:
    """Add a user (prompts twice for the password)."""

    def run() -> None:
        from webapp.users import add_user_cli

        password = sys.stdin.readline().rstrip("\n") if password_stdin else None
        path = add_user_cli(name, users, password, replace=replace)
        _print_json({"added": name, "store": str(path)})

    _guarded(run)


@users_app.command("remove")
def users_remove(
    name: Annotated[str, typer.Argument(help="User name.")],
    users: Annotated[Path | None, typer.Option(help="User store.")] = None,
) -> None:
    """Remove a user."""

    def run() -> None:
        from webapp.config import AppConfig
        from webapp.users import remove_user

        remove_user(users or AppConfig.from_env().users_file, name)
        _print_json({"removed": name})

    _guarded(run)


@users_app.command("list")
def users_list(users: Annotated[Path | None, typer.Option(help="User store.")] = None) -> None:
    """List user names."""

    def run() -> None:
        from webapp.config import AppConfig
        from webapp.users import list_users

        _print_json({"users": list_users(users or AppConfig.from_env().users_file)})

    _guarded(run)


def main() -> None:
    """Console-script entry point: usage errors are one ``error:`` line with exit 2, like bad input."""
    try:
        _main()
    finally:
        _skip_final_collections()


def _skip_final_collections() -> None:
    """The command has run and the process ends: exempt what it leaves (the model's tables, the DICOM headers,
    highdicom's tables of the standard, the reports' objects) from the garbage collector's scans at the
    interpreter's shutdown (:func:`gc.freeze`). Those final full collections walk every object of the process,
    about 0.1 s after ``vfrisk predict`` and 0.2 s after ``vfrisk predict --out`` (``bench/bench_commands.py``);
    the objects are still freed with the process, files were closed and written before, and the exit handlers
    (logging's flush, temporary folders) still run."""
    import gc

    gc.freeze()


def _main() -> None:
    """:func:`main` itself."""
    from typer._click import exceptions as click_errors  # typer vendors its own click

    try:
        app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:  # `vfrisk users`: show that group's help, as typer would
        if exc.ctx is not None:
            sys.stdout.write(exc.ctx.get_help() + "\n")
        raise SystemExit(0) from None
    except click_errors.UsageError as exc:
        hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        _fail(f"{exc.format_message()}{hint}", 2)


if __name__ == "__main__":
    main()
