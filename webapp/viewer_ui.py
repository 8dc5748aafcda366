"""The viewer as the page shows it: an HTML value (the study's planes, slice positions, window presets) and the
script that turns it into a viewer drawing slices from the image route (:mod:`webapp.views`).

Server-rendered by choice: the volume stays on the server (no patient voxels sent to the browser, no 20-200 MB
download before the first image), every slice is drawn by the same code as the tests check, and the app needs no
JavaScript viewer library (none is installed or vendored here). One slice is one GET of a small PNG drawn from
memory, so scrolling keeps up: the script asks for the newest slice as soon as the previous one arrived and drops
the ones scrolled past.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

import numpy as np

from webapp.viewer import DEFAULT_WINDOW, NORMAL_AXIS, WINDOWS, Plane, slice_count, slice_positions
from webapp.views import PREFIX

EMPTY = ('<div class="vf-v vf-empty" id="vf-viewer-empty">Upload a study: it is shown here (sagittal, coronal '
         "and axial).</div>")
"""The viewer before any study is loaded."""
PRESETS = (("Bone", "bone W2000/L500"), ("Bone (narrow)", "bone W1800/L400"), ("Soft tissue", "soft tissue W400/L40"))
"""The preset buttons (label, window name)."""


def _plane(shape: tuple[int, ...], spacing: tuple[float, float, float], affine: np.ndarray, plane: Plane,
           index: int) -> dict[str, Any]:
    """One plane's facts for the script: slice count, default slice, positions in mm, image size in mm."""
    start, step, neg, pos = slice_positions(affine, shape, plane)
    z_mm, y_mm, x_mm = (n * s for n, s in zip(shape, spacing, strict=True))
    width, height = {Plane.SAGITTAL: (y_mm, z_mm), Plane.CORONAL: (x_mm, z_mm), Plane.AXIAL: (x_mm, y_mm)}[plane]
    count = slice_count(shape, plane)
    return {"count": count, "index": int(np.clip(index, 0, count - 1)), "start": round(start, 3),
            "step": round(step, 5), "neg": neg, "pos": pos, "w_mm": round(width, 2), "h_mm": round(height, 2)}


def viewer_value(token: str, volume_shape: tuple[int, ...], spacing: tuple[float, float, float],
                 affine: np.ndarray, centre: tuple[int, int, int], version: int, scored: bool) -> str:
    """The viewer's HTML value for a loaded study (``version`` changes when the overlay does, after scoring)."""
    default = WINDOWS[DEFAULT_WINDOW]
    cfg = {
        "token": token, "v": version, "src": PREFIX.lstrip("/") + token + ".png", "scored": scored,
        "planes": {p.value: _plane(volume_shape, spacing, affine, p, centre[NORMAL_AXIS[p]]) for p in Plane},
        "ww": default.width, "wl": default.level,
    }
    planes = "".join(f'<button type="button" data-plane="{p.value}">{p.value.capitalize()}</button>' for p in Plane)
    presets = "".join(f'<button type="button" data-ww="{WINDOWS[name].width:g}" data-wl="{WINDOWS[name].level:g}">'
                      f"{escape(label)}</button>" for label, name in PRESETS)
    return (
        f'<div class="vf-v" data-cfg="{escape(json.dumps(cfg), quote=True)}">'
        f'<div class="vf-bar"><span class="vf-group vf-planes">{planes}</span>'
        f'<span class="vf-group vf-presets">{presets}</span>'
        '<label class="vf-range">W <input type="range" class="vf-ww" min="1" max="4000" step="1">'
        '<span class="vf-ww-out"></span></label>'
        '<label class="vf-range">L <input type="range" class="vf-wl" min="-1000" max="2000" step="1">'
        '<span class="vf-wl-out"></span></label>'
        '<span class="vf-group vf-zoom"><button type="button" data-zoom="-1" title="zoom out (-)">&minus;</button>'
        '<button type="button" data-zoom="0" title="fit (0)">Fit</button>'
        '<button type="button" data-zoom="1" title="zoom in (+)">+</button></span></div>'
        '<div class="vf-stage" tabindex="0" title="wheel or arrow keys: slice; drag: window/level">'
        '<img class="vf-img" alt="CT slice" draggable="false"></div>'
        '<div class="vf-status" aria-live="polite"></div>'
        '<div class="vf-help">Wheel or &uarr;/&darr;: next slice &middot; PgUp/PgDn: 10 slices &middot; drag on the '
        "image: window (left-right) and level (up-down) &middot; +/&minus;: zoom"
        + (" &middot; labels: name, then how sure the name is (yellow with ?: uncertain)" if scored else "")
        + "</div></div>"
    )


VIEWER_JS = r"""
const st = element.__vf || (element.__vf = {});
const ZOOMS = [1, 1.5, 2, 3, 4];
function fmtPos(p, i) {
  const mm = p.start + p.step * i;
  return (mm >= 0 ? p.pos : p.neg) + ' ' + Math.abs(mm).toFixed(1) + ' mm';
}
function draw() {
  const root = st.root; if (!root || !st.cfg) return;
  const p = st.cfg.planes[st.plane];
  const i = Math.max(0, Math.min(p.count - 1, st.index[st.plane]));
  st.index[st.plane] = i;
  const stage = root.querySelector('.vf-stage'), img = root.querySelector('.vf-img');
  const W = Math.max(100, stage.clientWidth - 4), H = Math.max(100, stage.clientHeight - 4);
  const z = ZOOMS[st.zoom];
  const scale = Math.min(W / p.w_mm, H / p.h_mm) * z;
  const w = Math.round(p.w_mm * scale), h = Math.round(p.h_mm * scale);
  img.style.width = w + 'px'; img.style.height = h + 'px';
  const px = Math.max(64, Math.min(2048, Math.round(Math.max(w, h) * (window.devicePixelRatio || 1))));
  const url = st.cfg.src + '?plane=' + st.plane + '&i=' + i + '&ww=' + Math.round(st.ww) + '&wl=' +
    Math.round(st.wl) + '&px=' + px + '&v=' + st.cfg.v;
  root.dataset.plane = st.plane; root.dataset.index = String(i);
  root.querySelectorAll('[data-plane]').forEach(b => b.classList.toggle('vf-on', b.dataset.plane === st.plane));
  root.querySelector('.vf-ww').value = st.ww; root.querySelector('.vf-wl').value = st.wl;
  root.querySelector('.vf-ww-out').textContent = Math.round(st.ww);
  root.querySelector('.vf-wl-out').textContent = Math.round(st.wl);
  root.querySelector('.vf-status').textContent = st.plane + ' ' + (i + 1) + ' / ' + p.count + ' \u00b7 ' +
    fmtPos(p, i) + ' \u00b7 W ' + Math.round(st.ww) + ' L ' + Math.round(st.wl) + ' \u00b7 zoom ' + z + '\u00d7';
  request(img, url, st.plane + ':' + i);
}
function request(img, url, key) {
  if (st.busy) { st.next = [url, key]; return; }
  if (url === st.lastUrl) return;
  st.busy = true; st.key = key; st.lastUrl = url; st.t0 = performance.now();
  img.src = url;
}
function loaded(ok) {
  const root = st.root; st.busy = false;
  if (root) {
    root.dataset.shown = st.key; root.dataset.ms = String(Math.round(performance.now() - st.t0));
    if (!ok) root.querySelector('.vf-status').textContent = 'The image is no longer available: upload the study again.';
  }
  if (st.next) { const [u, k] = st.next; st.next = null; if (root) request(root.querySelector('.vf-img'), u, k); }
}
function step(n) {
  st.index[st.plane] += n; draw();
}
function bind(root) {
  const stage = root.querySelector('.vf-stage'), img = root.querySelector('.vf-img');
  img.onload = () => loaded(true); img.onerror = () => loaded(false);
  stage.addEventListener('wheel', e => { e.preventDefault(); if (e.deltaY) step(e.deltaY > 0 ? 1 : -1); },
                         {passive: false});
  stage.addEventListener('keydown', e => {
    const p = st.cfg.planes[st.plane];
    const moves = {ArrowUp: 1, ArrowRight: 1, ArrowDown: -1, ArrowLeft: -1, PageUp: 10, PageDown: -10};
    if (e.key in moves) step(moves[e.key]);
    else if (e.key === 'Home') { st.index[st.plane] = 0; draw(); }
    else if (e.key === 'End') { st.index[st.plane] = p.count - 1; draw(); }
    else if (e.key === '+' || e.key === '=') zoom(1);
    else if (e.key === '-') zoom(-1);
    else if (e.key === '0') zoom(0);
    else return;
    e.preventDefault();
  });
  stage.addEventListener('mousedown', e => {
    if (e.button !== 0) return;
    stage.focus({preventScroll: true});
    const start = {x: e.clientX, y: e.clientY, ww: st.ww, wl: st.wl};
    const move = m => {
      st.ww = Math.max(1, Math.min(4000, start.ww + (m.clientX - start.x) * 4));
      st.wl = Math.max(-1000, Math.min(2000, start.wl + (m.clientY - start.y) * 2));
      draw();
    };
    const up = () => { window.removeEventListener('mousemove', move); window.removeEventListener('mouseup', up); };
    window.addEventListener('mousemove', move); window.addEventListener('mouseup', up);
    e.preventDefault();
  });
  root.querySelectorAll('[data-plane]').forEach(b => b.addEventListener('click', () => {
    st.plane = b.dataset.plane; draw(); }));
  root.querySelectorAll('[data-ww]').forEach(b => b.addEventListener('click', () => {
    st.ww = Number(b.dataset.ww); st.wl = Number(b.dataset.wl); draw(); }));
  root.querySelectorAll('[data-zoom]').forEach(b => b.addEventListener('click', () => zoom(Number(b.dataset.zoom))));
  root.querySelector('.vf-ww').addEventListener('input', e => { st.ww = Number(e.target.value); draw(); });
  root.querySelector('.vf-wl').addEventListener('input', e => { st.wl = Number(e.target.value); draw(); });
}
function zoom(d) {
  const stage = st.root && st.root.querySelector('.vf-stage');
  const fx = stage ? (stage.scrollLeft + stage.clientWidth / 2) / Math.max(1, stage.scrollWidth) : 0.5;
  const fy = stage ? (stage.scrollTop + stage.clientHeight / 2) / Math.max(1, stage.scrollHeight) : 0.5;
  st.zoom = d === 0 ? 0 : Math.max(0, Math.min(ZOOMS.length - 1, st.zoom + d)); draw();
  if (stage) {  // keep the centre of the view where it was
    stage.scrollLeft = fx * stage.scrollWidth - stage.clientWidth / 2;
    stage.scrollTop = fy * stage.scrollHeight - stage.clientHeight / 2;
  }
}
function init() {
  const root = element.querySelector('.vf-v[data-cfg]');
  st.root = root;
  if (!root) { st.cfg = null; return; }
  const cfg = JSON.parse(root.dataset.cfg);
  if (st.token !== cfg.token) {
    st.token = cfg.token; st.plane = 'sagittal'; st.ww = cfg.ww; st.wl = cfg.wl; st.zoom = 0; st.index = {};
    for (const k in cfg.planes) st.index[k] = cfg.planes[k].index;
  }
  st.cfg = cfg; st.busy = false; st.next = null; st.lastUrl = null;
  if (!root.__vfBound) { bind(root); root.__vfBound = true; }
  draw();
}
if (!st.resizeBound) { window.addEventListener('resize', () => draw()); st.resizeBound = true; }
watch('value', init);
init();
"""
"""The viewer script (Gradio's ``js_on_load``: ``element``, ``watch``): state per study token, listeners bound
once per render, at most one slice request in flight."""
