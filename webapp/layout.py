"""The page's look: one screen at 1920 x 1080 (inputs, viewer, result side by side), readable alerts, the viewer's
controls. Passed to ``launch(css=...)`` (Gradio 6 takes the page CSS there)."""

from __future__ import annotations

from html import escape

from inference.disclaimer import DISCLAIMER

PAGE_CSS = """
.gradio-container { max-width: 100% !important; padding: 6px 14px !important; }
#vf-header { display: flex; gap: 18px; align-items: baseline; flex-wrap: wrap; margin: 0 0 2px 0; }
#vf-header h1 { font-size: 20px; margin: 0; }
#vf-header .vf-sub { font-size: 13px; color: #374151; }
#vf-header .vf-training { font-size: 13px; font-weight: 600; color: #7c2d12; }
#vf-error { min-height: 0; }
#vf-error .vf-err { background: #fef2f2; border: 1px solid #c1121f; color: #7f1d1d; padding: 5px 10px;
  border-radius: 4px; font-size: 14px; }
.vf-msg { color: #b91c1c; font-size: 13px; min-height: 0; margin-top: -6px; }
.vf-msg p { margin: 0; }
#vf-files, #vf-folder { max-height: 150px; overflow: auto; }
#vf-study { font-size: 13px; }
#vf-study .vf-nifti { color: #7c2d12; margin-top: 3px; }
#vf-study .vf-warn { color: #92400e; }
#vf-study details summary { cursor: pointer; }
.vf-v { display: flex; flex-direction: column; gap: 4px; }
.vf-v.vf-empty { height: min(72vh, 760px); align-items: center; justify-content: center; background: #000;
  color: #d1d5db; border-radius: 4px; }
.vf-bar { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; font-size: 13px; }
.vf-bar button { border: 1px solid #9ca3af; border-radius: 4px; padding: 2px 8px; background: #f9fafb; }
.vf-bar button.vf-on { background: #1f2937; color: #fff; border-color: #1f2937; }
.vf-group { display: inline-flex; gap: 3px; }
.vf-range { display: inline-flex; align-items: center; gap: 4px; }
.vf-range input { width: 110px; }
.vf-stage { height: min(72vh, 760px); overflow: auto; background: #000; border-radius: 4px; display: flex;
  cursor: crosshair; outline: none; }
.vf-stage:focus { box-shadow: 0 0 0 2px #2563eb; }
.vf-img { margin: auto; user-select: none; flex: none; max-width: none !important;
  max-height: none !important; }
.vf-status { font-size: 13px; font-family: ui-monospace, monospace; }
.vf-help { font-size: 12px; color: #4b5563; }
.vf-prob { font-size: 14px; }
.vf-prob-main { font-size: 18px; }
.vf-prob-main .vf-p { font-size: 24px; }
.vf-model { font-size: 12px; color: #4b5563; }
.vf-table { border-collapse: collapse; font-size: 13px; width: 100%; }
.vf-table th, .vf-table td { border: 1px solid #d1d5db; padding: 1px 5px; text-align: left; }
.vf-table th { background: #f3f4f6; }
.vf-table .vf-absent td { color: #9ca3af; }
.vf-table .vf-grade { font-weight: 700; }
.vf-table .vf-uncertain { background: #fef9c3; }
.vf-levels-title { font-size: 14px; font-weight: 700; margin: 2px 0; }
.vf-note { font-size: 11px; color: #4b5563; margin: 2px 0; }
#vf-suggestion-body h3 { font-size: 14px; margin: 6px 0 2px 0; }
#vf-suggestion-body ul { margin: 0 0 0 16px; padding: 0; font-size: 13px; }
.vf-alert { display: inline-block; padding-left: 6px; }
.vf-cautions { display: block; margin-left: 10px; }
.vf-caution { display: block; font-size: 12px; }
.vf-cite { color: #6b7280; font-size: 11px; }
"""
"""The page CSS."""


def header_html(training_data: str) -> str:
    """Title, disclaimer and the model's training data, on one line."""
    return (f'<div id="vf-header"><h1>vfrisk</h1><span class="vf-sub">6-month vertebral fracture risk from spine CT '
            f'and labs</span><span class="vf-sub" id="vf-disclaimer"><b>{escape(DISCLAIMER)}</b> It does not replace '
            f'clinical judgement.</span><span class="vf-training" id="vf-training">Model: '
            f"{escape(training_data)}</span></div>")


def error_html(line: str) -> str:
    """The error line (empty string: no error)."""
    return f'<div class="vf-err" role="alert">{escape(line)}</div>' if line else ""


def message_html(text: str) -> str:
    """A message beside a form box (empty string: none)."""
    return f'<p role="alert" style="color:#b91c1c;font-weight:600">{escape(text)}</p>' if text else ""
