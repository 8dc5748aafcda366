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

from inference.disclaimer import DISCLAIMER

if TYPE_CHECKING:
    from webapp.config import AppConfig
    from webapp.private_files import FileRegistry
    from webapp.service import Loaded, Service
    from webapp.throttle import BoundedHasher, LoginThrottle
    from webapp.users import UserStore

log = logging.getLogger("vfrisk.app")
SESSION_TTL_S = 2 * 3600
"""A session's study (volume, reports) is dropped this long after its last use."""
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SWEEP_EVERY_S = 60.0
"""How often stale uploads and leftovers are swept from the temp folder."""


def _user(request: Any) -> str | None:
    return getattr(request, "username", None) if request is not None else None


def _public_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show every failure as ``gr.Error('code: message')``; never a traceback, path or header value.

    Also declares the special parameters Gradio fills in: ``request`` (``gr.Request``, for the user name) and
    ``progress`` (``gr.Progress``), which ``app.py`` cannot annotate at import time without importing Gradio.
    """
    import inspect

    import gradio as gr

    from webapp.errors import public

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            err = public(exc)
            raise gr.Error(f"{err.code}: {err.message}", print_exception=False) from None

    sig = inspect.signature(fn)
    params = [q.replace(annotation=gr.Request) if q.name == "request"
              else q.replace(default=gr.Progress()) if q.name == "progress" else q
              for q in sig.parameters.values()]
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {"request": gr.Request} if "request" in sig.parameters else {}
    return wrapper


class Handlers:
    """The event handlers: thin glue between Gradio components and :class:`webapp.service.Service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def on_upload(self, files: Any, old: Loaded | None, request: Any = None,
                  progress: Any = None) -> tuple[Any, ...]:
        """Read the upload; prefill age and sex from the header; show the study."""
        import gradio as gr

        from webapp.present import study_markdown
        from webapp.viewer import DEFAULT_WINDOW, Plane, slice_count

        self.service.forget(old)
        if not files:
            return None, "", gr.update(), gr.update(), None, gr.update()
        if progress is not None:
            progress(0.1, desc="reading the study")
        loaded = self.service.load(files, _user(request))
        study = loaded.study
        image = self.service.image(loaded, Plane.SAGITTAL, DEFAULT_WINDOW, None)
        slider = gr.update(maximum=slice_count(study.volume.shape, Plane.SAGITTAL) - 1, value=loaded.centre[2])
        return (loaded, study_markdown(study), study.age, study.sex, image, slider)

    def on_plane(self, loaded: Loaded | None, plane: str, window: str) -> tuple[Any, Any]:
        """Switch plane: new slider range, centred on the spine."""
        import gradio as gr

        from webapp.viewer import Plane, slice_count

        if loaded is None:
            return None, gr.update()
        p = Plane(plane)
        index = loaded.centre[2] if p == Plane.SAGITTAL else loaded.centre[0]
        slider = gr.update(maximum=slice_count(loaded.study.volume.shape, p) - 1, value=index)
        return self.service.image(loaded, plane, window, index), slider

    def on_view(self, loaded: Loaded | None, plane: str, window: str, index: float) -> Any:
        """Redraw the viewer."""
        return None if loaded is None else self.service.image(loaded, plane, window, int(index))

    def on_score(  # noqa: PLR0913, PLR0917 (one parameter per Gradio input component)
        self, request: Any, loaded: Loaded | None, plane: str, window: str, index: float, ntx: float | None,
        tscore: float | None, age: float | None, sex: str | None, *context: Any,
    ) -> tuple[Any, ...]:
        """Score the loaded study; show the probability, levels, drivers, suggestion, downloads and JSON.

        ``request`` comes first: Gradio fills special parameters only before the ``*context`` values.
        """
        import gradio as gr

        from webapp.drivers import drivers_table
        from webapp.present import levels_table, probability_markdown, suggestion_html
        if loaded is None:
            raise gr.Error("no_upload: upload a study first")
        result = self.service.score(loaded, _lab_input(ntx, tscore, age, sex), _context_form(context),
                                    _user(request), reports=True)
        image = self.service.image(loaded, plane, window, int(index))
        return (loaded, probability_markdown(result), levels_table(result), drivers_table(loaded.marks),
                suggestion_html(result), [str(p) for p in loaded.reports], result.to_json(), image)

    def on_download(self, loaded: Loaded | None, request: Any = None) -> None:
        """Audit a download."""
        self.service.downloaded(loaded, _user(request))

    def on_api(self, files: Any, ntx: float | None, tscore: float | None, age: float | None, sex: str | None,
               context_json: str | None, request: Any = None) -> dict[str, Any]:
        """API: score uploaded files with the labs (and an optional context JSON); return the result JSON."""
        from webapp.context_form import ContextForm

        form = ContextForm(context_json=context_json or "")
        return self.service.predict(files, _lab_input(ntx, tscore, age, sex), form, _user(request)).to_json()


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


def _context_form(values: tuple[Any, ...]) -> Any:
    from webapp.context_form import ContextForm

    kwargs = {k: v for k, v in zip(CONTEXT_FIELDS, values, strict=True) if v not in (None, "", [])}
    return ContextForm(**kwargs)


def _context_panel() -> list[Any]:
    """The optional clinical-context inputs, in :data:`CONTEXT_FIELDS` order."""
    import gradio as gr

    from webapp.context_form import DRUGS, FRACTURE_SITES, RED_FLAGS, VERTEBRAL_LEVELS

    with gr.Accordion("Clinical context (optional: feeds the suggestion)", open=False):
        with gr.Row():
            sites = gr.CheckboxGroup(list(FRACTURE_SITES), label="Prior fragility fractures")
            level = gr.Dropdown(["", *VERTEBRAL_LEVELS], value="", label="Level of the prior vertebral fracture")
            fx_date = gr.Textbox(label="Date of the last fracture (YYYY-MM-DD)")
        with gr.Row():
            meds = gr.Dropdown(list(DRUGS), multiselect=True, label="Current osteoporosis medications")
            med_start = gr.Textbox(label="Started (YYYY-MM-DD)")
            crcl = gr.Number(label="Creatinine clearance (mL/min, Cockcroft-Gault)", minimum=0, maximum=400)
        with gr.Row():
            ca_diet = gr.Number(label="Dietary calcium (mg/day)", minimum=0)
            ca_sup = gr.Number(label="Calcium supplement (mg/day)", minimum=0)
            vit_d = gr.Number(label="Vitamin D intake (IU/day)", minimum=0)
        with gr.Row():
            gc_dose = gr.Number(label="Glucocorticoids, prednisone-equivalent (mg/day)", minimum=0)
            gc_months = gr.Number(label="Glucocorticoid duration (months)", minimum=0)
            falls = gr.Number(label="Falls in the past 12 months", minimum=0, precision=0)
        with gr.Row():
            mi = gr.Textbox(label="Last myocardial infarction (YYYY-MM-DD)")
            stroke = gr.Textbox(label="Last stroke (YYYY-MM-DD)")
        flags = gr.CheckboxGroup(list(RED_FLAGS), label="Red-flag symptoms")
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
    """The ``/predict`` endpoint (hidden components): files, labs and a context JSON in, result JSON out."""
    import gradio as gr

    with gr.Group(visible=False):
        files = _upload(file_count="multiple", label="files")
        ntx, tscore, age = gr.Number(label="ntx"), gr.Number(label="bmd_tscore"), gr.Number(label="age")
        sex, context = gr.Textbox(label="sex"), gr.Textbox(label="context_json")
        out = gr.JSON(label="result")
        trigger = gr.Button("api")
    trigger.click(_public_errors(handlers.on_api), [files, ntx, tscore, age, sex, context], out, api_name="predict",
                  api_visibility="public", concurrency_id="score")


def build_demo(engine: Any = None, config: AppConfig | None = None, service: Service | None = None) -> Any:
    """Build the Gradio Blocks for the given inference engine (``engine`` may be None only with ``service``)."""
    import gradio as gr

    from inference.spec import Lab
    from webapp.audit import AuditLog
    from webapp.config import AppConfig
    from webapp.present import lab_label
    from webapp.service import Service
    from webapp.viewer import DEFAULT_WINDOW, WINDOWS, Plane

    config = config or AppConfig.from_env()
    service = service or Service(engine, AuditLog(config.audit_file), config.temp_dir, config.limits)
    h = Handlers(service)
    card = service.engine.bundle.card
    with gr.Blocks(title="vfrisk", analytics_enabled=False, delete_cache=(900, 3600)) as demo:
        gr.Markdown("# vfrisk: 6-month vertebral fracture risk from spine CT and labs")
        gr.Markdown(f"**{DISCLAIMER}** It does not replace clinical judgement.", elem_id="vf-disclaimer")
        state = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=service.forget)
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Tab("Files or zip"):
                    files = _upload(file_count="multiple", label="DICOM series: files or one zip", elem_id="vf-files")
                with gr.Tab("Folder"):
                    folder = _upload(file_count="directory", label="DICOM folder", elem_id="vf-folder")
                info = gr.Markdown(elem_id="vf-study")
                ntx = gr.Number(label=lab_label(card, Lab.NTX), elem_id="vf-ntx")
                tscore = gr.Number(label=lab_label(card, Lab.TSCORE), elem_id="vf-tscore")
                with gr.Row():
                    age = gr.Number(label=lab_label(card, Lab.AGE) + " (from the header)", elem_id="vf-age")
                    sex = gr.Radio(["F", "M"], label="sex (from the header)", elem_id="vf-sex")
                context = _context_panel()
                score = gr.Button("Score", variant="primary", elem_id="vf-score")
            with gr.Column(scale=1):
                image = gr.Image(format="png", type="pil", label="Viewer", interactive=False, elem_id="vf-viewer")
                plane = gr.Radio([p.value for p in Plane], value=Plane.SAGITTAL.value, label="Plane")
                window = gr.Radio(list(WINDOWS), value=DEFAULT_WINDOW, label="Window")
                index = gr.Slider(0, 1, value=0, step=1, label="Slice", elem_id="vf-slice")
        probability = gr.Markdown(elem_id="vf-probability")
        with gr.Row():
            levels = gr.Dataframe(headers=["level", "found", "name confidence", "Genant grade", "height ratio",
                                           "trabecular HU"],
                                  label="Vertebral levels", interactive=False, elem_id="vf-levels")
            drivers = gr.Dataframe(headers=["level", "contribution", "why"], interactive=False,
                                   label="What drove the prediction (image findings, strongest first)")
        suggestion = gr.HTML(elem_id="vf-suggestion")
        downloads = gr.File(label="Downloads (JSON; SR, SEG, FHIR and PDF when installed)", file_count="multiple",
                            interactive=False, elem_id="vf-downloads")
        with gr.Accordion("Result JSON", open=False):
            result_json = gr.JSON()
        upload_out = [state, info, age, sex, image, index]
        for source in (files, folder):
            source.upload(_public_errors(h.on_upload), [source, state], upload_out, concurrency_id="score",
                          api_visibility="private")
        plane.change(_public_errors(h.on_plane), [state, plane, window], [image, index], api_visibility="private")
        window.change(_public_errors(h.on_view), [state, plane, window, index], image, api_visibility="private")
        index.release(_public_errors(h.on_view), [state, plane, window, index], image, api_visibility="private")
        score.click(_public_errors(h.on_score), [state, plane, window, index, ntx, tscore, age, sex, *context],
                    [state, probability, levels, drivers, suggestion, downloads, result_json, image],
                    concurrency_id="score", api_visibility="private")
        downloads.download(_public_errors(h.on_download), [state], None, api_visibility="private")
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


def _app_kwargs(files: FileRegistry) -> dict[str, Any]:
    """FastAPI settings of the Gradio app: the private-files middleware, and no anonymous OpenAPI schema."""
    from starlette.middleware import Middleware

    from webapp.private_files import PrivateFiles

    return {"middleware": [Middleware(PrivateFiles, registry=files)], "openapi_url": None}


def _sweep_forever(files: FileRegistry, every_s: float) -> None:
    """Sweep the temp folder every ``every_s`` seconds (a daemon thread for the life of the app)."""
    while True:
        time.sleep(every_s)
        try:
            removed = files.sweep()
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
    threading.Thread(target=_sweep_forever, args=(files, SWEEP_EVERY_S), daemon=True, name="vfrisk-sweep").start()
    throttle = LoginThrottle(replace(ACCOUNT, base_s=config.login_backoff_s),
                             replace(ADDRESS, base_s=config.login_backoff_s))
    demo.launch(server_name=host, server_port=port, share=False,
                auth=_auth(users, service, throttle, BoundedHasher(users.authenticate)),
                app_kwargs=_app_kwargs(files),
                auth_message="vfrisk: sign in (decision support; not a diagnostic device)",
                max_file_size=config.limits.gradio_max_file_size, allowed_paths=[],
                blocked_paths=config.blocked_paths(), show_error=True, footer_links=["api"],
                enable_monitoring=False, ssr_mode=False, pwa=False, mcp_server=False)


if __name__ == "__main__":
    main()
