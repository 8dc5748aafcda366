"""The radiologist's web app (Gradio). UI only: the logic lives in ``webapp/``; nothing heavy at import.

``build_demo(engine)`` returns the ``gr.Blocks``; ``main()`` starts it on loopback behind a login.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import types
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from webapp.config import AppConfig
    from webapp.private_files import FileRegistry
    from webapp.service import Loaded, Service
    from webapp.throttle import BoundedHasher, LoginThrottle
    from webapp.users import UserStore
    from webapp.views import ViewStore

log = logging.getLogger("vfrisk.app")
SESSION_TTL_S = 2 * 3600
"""A session's study (volume, reports) is dropped this long after its last use."""
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SWEEP_EVERY_S = 60.0
"""How often stale uploads and leftovers are swept from the temp folder."""


def _user(request: Any) -> str | None:
    return getattr(request, "username", None) if request is not None else None


def _public_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """For the API: show every failure as ``gr.Error('code: message')`` (no traceback in the log, none shown);
    never a path or header value.

    Also declares the special parameters Gradio fills in: ``request`` (``gr.Request``, for the user name) and
    ``progress`` (``gr.Progress``), which ``app.py`` cannot annotate at import time without importing Gradio.
    """
    import gradio as gr

    from webapp.errors import public

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            err = public(exc)
            raise gr.Error(f"{err.code}: {err.message}", print_exception=False) from None

    return _special_parameters(fn, wrapper)


def _special_parameters(fn: Callable[..., Any], wrapper: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """``wrapper`` (default: a plain call of ``fn``) with the signature of ``fn`` (a function or a bound method)
    and Gradio's ``request`` and ``progress`` parameters typed, so that Gradio fills them in."""
    import inspect

    import gradio as gr

    if wrapper is None:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)
    wrapper.__name__ = getattr(fn, "__name__", "handler")
    wrapper.__doc__ = fn.__doc__
    sig = inspect.signature(fn)
    params = [q.replace(annotation=gr.Request) if q.name == "request"
              else q.replace(default=gr.Progress()) if q.name == "progress" else q
              for q in sig.parameters.values()]
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {"request": gr.Request} if "request" in sig.parameters else {}
    return wrapper


def _on_page(fn: Callable[..., Any]) -> Callable[..., Any]:
    """For the page: a handler's refusal becomes its error line (``Handlers.failed``), which stays on the page until
    the next action; nothing is raised, so no pop-up fades and no component is marked with an empty error."""

    @wraps(fn)
    def wrapper(self: Handlers, *args: Any, **kwargs: Any) -> Any:
        from webapp.errors import public

        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:
            return self.failed(fn.__name__, public(exc))

    return wrapper


LAB_BOXES = ("ntx", "bmd_tscore", "age", "sex")
"""The lab boxes, each with its message line beside it."""


class Handlers:
    """The event handlers: thin glue between Gradio components and :class:`webapp.service.Service`.

    Page outputs, in order: ``upload`` -> state, study summary, age, sex, viewer, error line, the result panels
    (:data:`RESULT`), the lab messages, the upload box (emptied: the summary replaces its file list); ``score`` ->
    state, viewer, error line, the result panels, the lab messages.
    """

    RESULT = 5
    """probability, levels, suggestion, downloads, result JSON."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.age_label = "age"
        """The age box's label without its source (set by :func:`build_demo` from the model card)."""

    def _viewer(self, loaded: Loaded | None) -> str:
        from webapp.viewer_ui import EMPTY, viewer_value

        if loaded is None or loaded.token is None:
            return EMPTY
        study = loaded.study
        return viewer_value(loaded.token, study.volume.shape, study.spacing_mm, study.affine, loaded.centre,
                            loaded.version, loaded.result is not None)

    def _cleared(self) -> list[Any]:
        return ["", "", "", None, None]

    def failed(self, handler: str, err: Any) -> tuple[Any, ...]:
        """The outputs of a refused action: its one-line message on the error line, results cleared."""
        import gradio as gr

        from webapp.errors import say
        from webapp.layout import error_html

        line = error_html(say(err))
        if handler == "on_upload":
            return (None, "", gr.update(), gr.update(), self._viewer(None), line, *self._cleared(),
                    *([""] * len(LAB_BOXES)), None)
        return (gr.update(), gr.update(), line, *self._cleared(), *([""] * len(LAB_BOXES)))

    @_on_page
    def on_upload(self, files: Any, old: Loaded | None, request: Any = None, progress: Any = None) -> tuple[Any, ...]:
        """Read the upload; show the compact summary and the viewer; prefill age and sex from the header (a NIfTI
        file has none: they are then required)."""
        import gradio as gr

        from webapp.errors import PublicError
        from webapp.present import study_html

        self.service.forget(old)
        if not files:
            raise PublicError("no_upload", "no file was uploaded")
        if progress is not None:
            progress(0.1, desc="reading the study")
        loaded = self.service.load(files, _user(request), view=True)
        self.service.attach(getattr(request, "session_hash", None), loaded)
        study = loaded.study
        where = "from the image header" if study.age is not None else "required: not in the image header"
        age = gr.update(value="" if study.age is None else str(study.age), label=f"{self.age_label} ({where})")
        sex = gr.update(value=study.sex, label="sex (from the image header)" if study.sex else
                        "sex (required: not in the image header)")
        return (loaded, study_html(study, loaded.n_files, loaded.series), age, sex, self._viewer(loaded), "",
                *self._cleared(), *([""] * len(LAB_BOXES)), None)

    @_on_page
    def on_score(
        self, request: Any, loaded: Loaded | None, ntx: str | None, tscore: str | None, age: str | None,
        sex: str | None, *context: Any,
    ) -> tuple[Any, ...]:
        """Check the form, score the loaded study, show the probability, levels, suggestion, downloads and JSON.

        An empty box is "not given": a required lab left empty is a message beside its box and nothing is scored.
        ``request`` comes first: Gradio fills special parameters only before the ``*context`` values.
        """
        from webapp.context_form import ContextForm
        from webapp.errors import PublicError
        from webapp.form import lab_messages
        from webapp.layout import error_html, message_html
        from webapp.levels import findings_html
        from webapp.present import probability_html, suggestion_html

        if loaded is None:
            raise PublicError("no_upload", "no study loaded")
        cells = {"ntx": ntx, "bmd_tscore": tscore, "age": age, "sex": sex}
        messages = lab_messages(cells, loaded.study.age, loaded.study.sex, self.service.engine.lab_ranges)
        if messages:
            line = error_html("Not scored: a required value is missing or not valid; see the message under each "
                              "marked box. (reason: missing_lab)")
            return (loaded, self._viewer(loaded), line, *self._cleared(),
                    *(message_html(messages.get(k, "")) for k in LAB_BOXES))
        form = ContextForm.from_form(dict(zip(CONTEXT_FIELDS, context, strict=True)))
        result = self.service.score(loaded, _lab_input(ntx, tscore, age, sex), form, _user(request), reports=True)
        return (loaded, self._viewer(loaded), "", probability_html(result),
                findings_html(result.vertebrae, result.prediction.contrast),
                suggestion_html(result), [str(p) for p in loaded.reports], result.to_json(),
                *([""] * len(LAB_BOXES)))

    def on_unload(self, request: Any = None) -> None:
        """The page was closed: drop its study (volume, viewer route, reports) now."""
        self.service.end(getattr(request, "session_hash", None))

    def on_download(self, loaded: Loaded | None, request: Any = None) -> None:
        """Audit a download."""
        self.service.downloaded(loaded, _user(request))

    def on_api(self, files: Any, ntx: float | None, tscore: float | None, age: float | None, sex: str | None,
               context_json: str | None, request: Any = None) -> dict[str, Any]:
        """API: score uploaded files with the labs (and an optional context JSON); return the result JSON."""
        from webapp.context_form import ContextForm

        form = ContextForm(context_json=context_json or "")
        return self.service.predict(files, _lab_input(ntx, tscore, age, sex), form, _user(request)).to_json()


    def on_api_reports(self, files: Any, ntx: float | None, tscore: float | None, age: float | None,
                       sex: str | None, context_json: str | None, request: Any = None) -> tuple[dict[str, Any],
                                                                                                list[str]]:
        """API: like ``/predict``, and the report files too (JSON, and for a DICOM study the SR, SEG, FHIR bundle,
        PDF, Encapsulated PDF and key image), kept a few minutes for the client to fetch."""
        from webapp.context_form import ContextForm

        form = ContextForm(context_json=context_json or "")
        result, files_out = self.service.predict_with_reports(files, _lab_input(ntx, tscore, age, sex), form,
                                                              _user(request))
        return result.to_json(), [str(p) for p in files_out]


def _lab_input(ntx: object, tscore: object, age: object, sex: object) -> Any:
    """The form's or the API's lab values through the one lab parser (blank is not given; text that is not a
    number is ``bad_lab``)."""
    from inference.labs import LabInput
    from webapp.errors import public

    try:
        return LabInput.from_cells({"ntx": ntx, "bmd_tscore": tscore, "age": age, "sex": sex})
    except Exception as exc:
        raise public(exc, []) from None


CONTEXT_FIELDS = ("fracture_sites", "vertebral_level", "last_fracture_date", "medications", "medication_start",
                  "crcl_ml_min", "calcium_diet_mg_day", "calcium_supplement_mg_day", "vitamin_d_iu_day",
                  "glucocorticoids_mg_day", "glucocorticoid_months", "last_mi_date", "last_stroke_date",
                  "falls_12m", "red_flags", "context_json")
"""Order of the clinical-context components (the fields of :class:`webapp.context_form.ContextForm`)."""


def _box(label: str, elem_id: str, placeholder: str = "") -> tuple[Any, Any]:
    """A text box for a number (empty is "not given", never 0) and the message line beside it."""
    import gradio as gr

    box = gr.Textbox(label=label, elem_id=elem_id, placeholder=placeholder, max_lines=1, value="")
    return box, gr.HTML("", elem_id=f"{elem_id}-msg", elem_classes=["vf-msg"])


def _context_panel() -> list[Any]:
    """The optional clinical-context inputs, in :data:`CONTEXT_FIELDS` order; every box starts empty and an empty
    box is left out of the context."""
    import gradio as gr

    from webapp.context_form import DRUGS, FRACTURE_SITES, RED_FLAGS, VERTEBRAL_LEVELS

    def number(label: str, elem_id: str) -> Any:
        return gr.Textbox(label=label, elem_id=elem_id, max_lines=1, value="", placeholder="not given")

    with gr.Accordion("Clinical context (optional: feeds the suggestion; empty boxes are not given)", open=False,
                      elem_id="vf-context"):
        with gr.Row():
            sites = gr.CheckboxGroup(list(FRACTURE_SITES), label="Prior fragility fractures")
            level = gr.Dropdown(["", *VERTEBRAL_LEVELS], value="", label="Level of the prior vertebral fracture")
            fx_date = gr.Textbox(label="Date of the last fracture (YYYY-MM-DD)", max_lines=1)
        with gr.Row():
            meds = gr.Dropdown(list(DRUGS), multiselect=True, label="Current osteoporosis medications")
            med_start = gr.Textbox(label="Started (YYYY-MM-DD)", max_lines=1)
            crcl = number("Creatinine clearance (mL/min, Cockcroft-Gault)", "vf-crcl")
        with gr.Row():
            ca_diet = number("Dietary calcium (mg/day)", "vf-ca-diet")
            ca_sup = number("Calcium supplement (mg/day)", "vf-ca-sup")
            vit_d = number("Vitamin D intake (IU/day)", "vf-vit-d")
        with gr.Row():
            gc_dose = number("Glucocorticoids, prednisone-equivalent (mg/day)", "vf-gc-dose")
            gc_months = number("Glucocorticoid duration (months)", "vf-gc-months")
            falls = number("Falls in the past 12 months", "vf-falls")
        with gr.Row():
            mi = gr.Textbox(label="Last myocardial infarction (YYYY-MM-DD)", max_lines=1, elem_id="vf-mi")
            stroke = gr.Textbox(label="Last stroke (YYYY-MM-DD)", max_lines=1)
        flags = gr.CheckboxGroup(list(RED_FLAGS), label="Red-flag symptoms", elem_id="vf-red-flags")
        pasted = gr.Code(language="json", label="Full clinical context JSON (clinical/context.md), optional")
    return [sites, level, fx_date, meds, med_start, crcl, ca_diet, ca_sup, vit_d, gc_dose, gc_months, mi, stroke,
            falls, flags, pasted]


def _path_as_is(component: Any, f: Any) -> Any:
    """``File._process_single_file`` for ``type="filepath"`` without the stray file: Gradio's own opens an empty
    temporary file in the temp folder for every uploaded file and never deletes it (issue 24, item 6)."""
    import gradio as gr
    from gradio.utils import NamedString
    from gradio_client import utils as client_utils

    if component.file_types and not client_utils.is_valid_file(f.path, component.file_types):
        raise gr.Error("Invalid file type.")
    return NamedString(f.path)


def _upload(**kwargs: Any) -> Any:
    """A ``gr.File`` upload component that hands the handler the uploaded paths as they are (:func:`_path_as_is`,
    set on the instance: a subclass would make Gradio write a ``.pyi`` stub next to this module)."""
    import gradio as gr

    component = gr.File(**kwargs)
    component._process_single_file = types.MethodType(_path_as_is, component)  # type: ignore[method-assign]
    return component


def _api(handlers: Handlers) -> None:
    """The ``/predict`` endpoint (hidden components): files, labs and a context JSON in, result JSON out; and
    ``/predict_reports``: the same in, the result JSON and the report files out."""
    import gradio as gr

    with gr.Group(visible=False):
        files = _upload(file_count="multiple", label="files")
        ntx, tscore, age = gr.Number(label="ntx"), gr.Number(label="bmd_tscore"), gr.Number(label="age")
        sex, context = gr.Textbox(label="sex"), gr.Textbox(label="context_json")
        out = gr.JSON(label="result")
        trigger = gr.Button("api")
        reports = gr.File(label="reports", file_count="multiple")
        with_reports = gr.Button("api reports")
    trigger.click(_public_errors(handlers.on_api), [files, ntx, tscore, age, sex, context], out, api_name="predict",
                  api_visibility="public", concurrency_id="score")
    with_reports.click(_public_errors(handlers.on_api_reports), [files, ntx, tscore, age, sex, context],
                       [out, reports], api_name="predict_reports", api_visibility="public", concurrency_id="score")


def build_demo(engine: Any = None, config: AppConfig | None = None, service: Service | None = None) -> Any:
    """Build the Gradio Blocks for the given inference engine (``engine`` may be None only with ``service``).

    One screen at 1920 x 1080: the inputs on the left (upload, its compact summary, labs, context, Score), the
    viewer in the middle, the result on the right (probability and interval, the per-level table, the alerts and
    the suggestion). The page CSS is :data:`webapp.layout.PAGE_CSS` (given to ``launch``).
    """
    import gradio as gr

    from inference.bundle import training_line
    from inference.spec import Lab
    from webapp.audit import AuditLog
    from webapp.config import AppConfig
    from webapp.layout import header_html
    from webapp.present import lab_label
    from webapp.service import Service
    from webapp.viewer_ui import EMPTY, VIEWER_JS

    config = config or AppConfig.from_env()
    service = service or Service(engine, AuditLog(config.audit_file), config.temp_dir, config.limits)
    h = Handlers(service)
    card = service.engine.bundle.card
    h.age_label = lab_label(card, Lab.AGE)
    with gr.Blocks(title="vfrisk", analytics_enabled=False, delete_cache=(900, 3600), fill_width=True) as demo:
        gr.HTML(header_html(training_line(card)))
        error = gr.HTML("", elem_id="vf-error")
        state = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=service.forget)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=360):
                with gr.Tab("Files, zip or NIfTI"):
                    files = _upload(file_count="multiple", label="DICOM files, one zip, or one NIfTI (.nii, .nii.gz)",
                                    elem_id="vf-files", height=120)
                with gr.Tab("Folder"):
                    folder = _upload(file_count="directory", label="DICOM folder", elem_id="vf-folder", height=120)
                info = gr.HTML("", elem_id="vf-study")
                with gr.Row():
                    with gr.Column(min_width=160):
                        ntx, ntx_msg = _box(lab_label(card, Lab.NTX), "vf-ntx", "required")
                    with gr.Column(min_width=160):
                        tscore, tscore_msg = _box(lab_label(card, Lab.TSCORE), "vf-tscore", "required")
                with gr.Row():
                    with gr.Column(min_width=160):
                        age, age_msg = _box(h.age_label, "vf-age", "from the image header, or enter it")
                    with gr.Column(min_width=160):
                        sex = gr.Radio(["F", "M"], value=None, label="sex", elem_id="vf-sex")
                        sex_msg = gr.HTML("", elem_id="vf-sex-msg", elem_classes=["vf-msg"])
                context = _context_panel()
                score = gr.Button("Score", variant="primary", elem_id="vf-score")
            with gr.Column(scale=5, min_width=480):
                viewer = gr.HTML(EMPTY, html_template="${value}", js_on_load=VIEWER_JS, elem_id="vf-viewer")
            with gr.Column(scale=5, min_width=480):
                probability = gr.HTML("", elem_id="vf-probability")
                levels = gr.HTML("", elem_id="vf-levels")
                suggestion = gr.HTML("", elem_id="vf-suggestion")
                downloads = gr.File(label="Downloads (JSON, FHIR, PDF; for a DICOM study SR, SEG, PDF and key image "
                                    "as DICOM)",
                                    file_count="multiple", interactive=False, elem_id="vf-downloads")
                with gr.Accordion("Result JSON", open=False):
                    result_json = gr.JSON()
        result_out = [probability, levels, suggestion, downloads, result_json]
        messages = [ntx_msg, tscore_msg, age_msg, sex_msg]
        for source in (files, folder):
            source.upload(_special_parameters(h.on_upload), [source, state],
                          [state, info, age, sex, viewer, error, *result_out, *messages, source],
                          concurrency_id="score", api_visibility="private")
        score.click(_special_parameters(h.on_score), [state, ntx, tscore, age, sex, *context],
                    [state, viewer, error, *result_out, *messages], concurrency_id="score", api_visibility="private")
        downloads.download(_public_errors(h.on_download), [state], None, api_visibility="private")
        demo.unload(_special_parameters(h.on_unload))
        _api(h)
    return demo


def _auth(users: UserStore, service: Service, throttle: LoginThrottle,
          hasher: BoundedHasher) -> Callable[[str, str], Awaitable[bool]]:
    """Gradio's login check: throttled per account and per address, hashed off the event loop, audited.

    The audit line names the user only if the account exists; the server log adds the client address and the
    wait. A throttled attempt is answered 429 with ``Retry-After`` and is not checked at all; no password or
    typed user name that is not an account is ever logged.
    """
    from fastapi import HTTPException

    from webapp.audit import Event
    from webapp.throttle import CLIENT_ADDRESS, retry_after_header

    def refuse(status: int, why: str, wait: float) -> HTTPException:
        return HTTPException(status, detail=why, headers={"Retry-After": retry_after_header(wait)})

    async def check(name: str, password: str) -> bool:
        address = CLIENT_ADDRESS.get()
        who = name if name in users.records else "unknown"
        version = service.model_version
        verdict = throttle.admit(name, address)
        if not verdict.allowed:
            service.audit.record(Event.LOGIN, who, "throttled", model_version=version)
            log.warning("sign-in throttled: user %s, address %s, %s backoff, %.1f s left", who, address,
                        verdict.reason, verdict.retry_after_s)
            raise refuse(429, f"too many failed sign-ins; try again in {verdict.retry_after_s:.1f} s",
                         verdict.retry_after_s)
        ok = await hasher.verify(name, password)
        if ok is None:
            throttle.cancel(name, address)
            service.audit.record(Event.LOGIN, who, "busy", model_version=version)
            raise refuse(503, "too many sign-ins at once; try again in a moment", 1.0)
        if ok:
            throttle.succeeded(name, address)
        else:
            log.info("sign-in refused: user %s, address %s, failed attempts: account %d, address %d", who, address,
                     throttle.attempts("account", name), throttle.attempts("address", address))
        service.audit.record(Event.LOGIN, who, "ok" if ok else "refused", model_version=version)
        return ok

    return check


def _app_kwargs(files: FileRegistry, views: ViewStore) -> dict[str, Any]:
    """FastAPI settings of the Gradio app: the private-files middleware, the viewer's image route (signed-in
    owner only), and no anonymous OpenAPI schema."""
    from starlette.middleware import Middleware

    from webapp.private_files import PrivateFiles
    from webapp.views import ViewerRoute

    return {"middleware": [Middleware(PrivateFiles, registry=files), Middleware(ViewerRoute, store=views)],
            "openapi_url": None}


def _sweep_forever(files: FileRegistry, every_s: float, service: Service | None = None) -> None:
    """Sweep the temp folder every ``every_s`` seconds (a daemon thread for the life of the app), and the report
    files of API calls once their client has had time to fetch them."""
    while True:
        time.sleep(every_s)
        try:
            removed = files.sweep() + (service.expire_api_reports() if service is not None else 0)
        except OSError as exc:
            log.error("temp folder sweep failed (%s)", type(exc).__name__)
            continue
        if removed:
            log.info("temp folder sweep removed %d stale file(s)", removed)


def _server_log() -> None:
    """The app's own messages (``vfrisk.*``: sign-ins refused and throttled, sweeps, slots in use) at INFO on
    stderr, once; never patient data (UIDs are hashed in the audit log, files are never named)."""
    root = logging.getLogger("vfrisk")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False


def _prepare(config: AppConfig) -> Path:
    """Private temp folder, swept; Gradio pointed at it; analytics off. Must run before importing gradio."""
    from webapp.uploads import private_temp_dir

    temp = private_temp_dir(config.temp_dir)
    os.environ["GRADIO_TEMP_DIR"] = str(temp)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    return temp


def main(host: str = "127.0.0.1", port: int = 7860, demo_user: bool | None = None,
         model: Path | None = None) -> None:
    """Start the web app on ``host`` (loopback by default) behind a login.

    Users come from the user store (``vfrisk users add NAME``); ``demo_user`` (or ``VFRISK_DEMO_USER=1``) adds an
    in-memory ``demo`` account whose random password is printed once.
    """
    from inference.engine import Engine
    from inference.errors import InputError
    from webapp.audit import AuditLog
    from webapp.config import AppConfig
    from webapp.layout import PAGE_CSS
    from webapp.private_files import FileRegistry
    from webapp.service import Service
    from webapp.throttle import ACCOUNT, ADDRESS, BoundedHasher, LoginThrottle
    from webapp.users import DEMO_USER, UserStore

    config = AppConfig.from_env(demo_user=demo_user, bundle=model)
    _server_log()
    if host not in LOOPBACK:
        print(f"warning: serving on {host}, not loopback: put TLS and a reverse proxy in front", flush=True)
    temp = _prepare(config)
    users = UserStore.load(config.users_file)
    password = users.add_demo() if config.demo_user else None
    if not len(users):
        raise InputError("no_users", f"no users in {config.users_file}: add one with `vfrisk users add NAME`, "
                         "or start with --demo-user")
    files = FileRegistry(temp)
    service = Service(Engine(config.bundle), AuditLog(config.audit_file), temp, config.limits, files)
    demo = build_demo(service.engine, config, service)
    demo.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    if password is not None:
        print(f"demo account for this run only: user {DEMO_USER}, password {password}", flush=True)
    threading.Thread(target=_sweep_forever, args=(files, SWEEP_EVERY_S, service), daemon=True,
                     name="vfrisk-sweep").start()
    throttle = LoginThrottle(replace(ACCOUNT, base_s=config.login_backoff_s),
                             replace(ADDRESS, base_s=config.login_backoff_s))
    demo.launch(server_name=host, server_port=port, share=False,
                auth=_auth(users, service, throttle, BoundedHasher(users.authenticate)),
                app_kwargs=_app_kwargs(files, service.views), css=PAGE_CSS,
                auth_message="vfrisk: sign in (decision support; not a diagnostic device)",
                max_file_size=config.limits.gradio_max_file_size, allowed_paths=[],
                blocked_paths=config.blocked_paths(), show_error=True, footer_links=["api"],
                enable_monitoring=False, ssr_mode=False, pwa=False, mcp_server=False)


if __name__ == "__main__":
    main()
