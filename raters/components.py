"""The rater app's interactive parts, as Streamlit custom components (v2: inline HTML, CSS and
JavaScript, no build step, no third-party frontend code):

- :func:`zoom_pan`: photos side by side with one zoom and pan for all (wheel or +/- to zoom at the
  pointer, drag to pan, double click to reset), so A and B, or photo and cut-out, stay aligned;
- :func:`brush_editor`: a round brush that adds to or erases from a mask over its photo, with
  zoom and pan, undo, and the strokes handed to Python in photo pixels
  (:class:`raters.corrections.Stroke`), where the stored mask is computed;
- :func:`form_helper`: single-key answers for the rating forms and a draft of the half-filled form
  in the browser's ``localStorage`` (restored after a reload, dropped on submit);
- :func:`session_cookie`: keeps the login across a reload in a ``SameSite=Strict`` cookie.

The images travel as data URLs inside the component's data (JPEG for photos, PNG for masks).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import streamlit as st

from synth.io import encode_jpeg, encode_png

COOKIE = "liftlab_session"


def jpeg_url(rgb: np.ndarray, quality: int = 90) -> str:
    """An ``(H, W, 3)`` uint8 RGB image as a ``data:image/jpeg`` URL (:func:`synth.io.encode_jpeg`)."""
    return "data:image/jpeg;base64," + base64.b64encode(encode_jpeg(rgb, quality)).decode()


def png_url(gray: np.ndarray) -> str:
    """An ``(H, W)`` uint8 image as a ``data:image/png`` URL (:func:`synth.io.encode_png`)."""
    return "data:image/png;base64," + base64.b64encode(encode_png(gray)).decode()


_ZOOM_CSS = """
.zp-row { display: flex; gap: 0.5rem; width: 100%; }
.zp-pane { flex: 1 1 0; min-width: 0; margin: 0; }
.zp-view { position: relative; overflow: hidden; width: 100%; border-radius: 0.25rem; touch-action: none; cursor: grab;
           background: #eee; }
.zp-view img { display: block; width: 100%; height: auto; transform-origin: 0 0; user-select: none; -webkit-user-drag: none; }
.zp-pane figcaption { font-size: 0.8rem; opacity: 0.7; text-align: center; }
.zp-bar { font-size: 0.8rem; opacity: 0.8; margin-top: 0.25rem; }
.zp-bar button { margin-right: 0.25rem; }
"""

_ZOOM_JS = """
export default function (component) {
  const { data, parentElement } = component;
  const root = parentElement.querySelector(".zp-root");
  if (root.dataset.id === String(data.id)) return;  // same photos: keep the zoom the rater chose
  root.dataset.id = String(data.id);
  root.innerHTML = "";
  const row = document.createElement("div");
  row.className = "zp-row";
  const views = [];
  let scale = 1, tx = 0, ty = 0;
  const apply = () => views.forEach(v => { v.img.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`; });
  const clamp = (w, h) => {
    tx = Math.min(0, Math.max(w - w * scale, tx));
    ty = Math.min(0, Math.max(h - h * scale, ty));
  };
  const zoomAt = (view, factor, x, y) => {
    const next = Math.min(16, Math.max(1, scale * factor));
    tx = x - (x - tx) * next / scale; ty = y - (y - ty) * next / scale; scale = next;
    clamp(view.clientWidth, view.clientHeight); apply();
  };
  for (const item of data.images) {
    const fig = document.createElement("figure"); fig.className = "zp-pane";
    const view = document.createElement("div"); view.className = "zp-view";
    const img = document.createElement("img"); img.src = item.src; img.alt = item.alt; img.draggable = false;
    view.appendChild(img); fig.appendChild(view);
    const cap = document.createElement("figcaption"); cap.textContent = item.caption; fig.appendChild(cap);
    row.appendChild(fig); views.push({ view, img });
    view.addEventListener("wheel", ev => {
      ev.preventDefault();
      const r = view.getBoundingClientRect();
      zoomAt(view, ev.deltaY < 0 ? 1.25 : 0.8, ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
    let drag = null;
    view.addEventListener("pointerdown", ev => { drag = { x: ev.clientX, y: ev.clientY, tx, ty }; view.setPointerCapture(ev.pointerId); });
    view.addEventListener("pointermove", ev => {
      if (!drag) return;
      tx = drag.tx + ev.clientX - drag.x; ty = drag.ty + ev.clientY - drag.y; clamp(view.clientWidth, view.clientHeight); apply();
    });
    view.addEventListener("pointerup", () => { drag = null; });
    view.addEventListener("dblclick", () => { scale = 1; tx = 0; ty = 0; apply(); });
  }
  root.appendChild(row);
  const bar = document.createElement("div"); bar.className = "zp-bar";
  const button = (label, title, fn) => { const b = document.createElement("button"); b.textContent = label; b.title = title; b.onclick = fn; bar.appendChild(b); };
  button("+", "zoom in", () => { const v = views[0].view; zoomAt(v, 1.5, v.clientWidth / 2, v.clientHeight / 2); });
  button("-", "zoom out", () => { const v = views[0].view; zoomAt(v, 1 / 1.5, v.clientWidth / 2, v.clientHeight / 2); });
  button("1:1", "reset", () => { scale = 1; tx = 0; ty = 0; apply(); });
  bar.appendChild(document.createTextNode(" wheel or +/- to zoom, drag to pan, double click to reset; the views move together"));
  root.appendChild(bar);
}
"""



def _zoom_component():
    # registered on each use: a registration belongs to the running app (a new AppTest or server
    # starts with none), and registering the same definition again is cheap
    return st.components.v2.component("liftlab_zoom_pan", html='<div class="zp-root"></div>', css=_ZOOM_CSS, js=_ZOOM_JS,
                                      isolate_styles=False)  # in the page, so tests and benchmarks find the images


def zoom_pan(images: list[tuple[str, np.ndarray]], item_id: Any, key: str) -> None:
    """Show ``images`` (``(caption, (H, W, 3) uint8 RGB)``, one size) side by side with one zoom
    and pan for all. ``item_id`` identifies what is shown: the zoom is kept across reruns of the
    same item and reset for a new one."""
    data = {"id": str(item_id), "images": [{"src": jpeg_url(im), "caption": cap, "alt": f"{cap} {item_id}"} for cap, im in images]}
    _zoom_component()(data=data, key=key)


_BRUSH_CSS = """
.be-bar { display: flex; flex-wrap: wrap; gap: 0.4rem; align-items: center; margin-bottom: 0.4rem; font-size: 0.9rem; }
.be-bar button.on { outline: 2px solid #1c83e1; }
.be-view { position: relative; overflow: hidden; width: 100%; touch-action: none; border-radius: 0.25rem; background: #eee; }
.be-stack { position: relative; transform-origin: 0 0; }
.be-stack canvas { position: absolute; left: 0; top: 0; width: 100%; height: 100%; }
.be-stack img { display: block; width: 100%; height: auto; user-select: none; -webkit-user-drag: none; }
"""

_BRUSH_JS = """
export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const root = parentElement.querySelector(".be-root");
  if (root.dataset.id === String(data.id)) return;
  root.dataset.id = String(data.id);
  root.innerHTML = "";
  const W = data.width, H = data.height;
  let mode = "add", radius = data.radius, scale = 1, tx = 0, ty = 0;
  const strokes = [];
  const bar = document.createElement("div"); bar.className = "be-bar";
  const buttons = {};
  const tool = (name, label, key) => {
    const b = document.createElement("button"); b.textContent = `${label} (${key})`; b.dataset.tool = name;
    b.onclick = () => setMode(name); bar.appendChild(b); buttons[name] = b;
  };
  const setMode = m => { mode = m; Object.entries(buttons).forEach(([k, b]) => b.classList.toggle("on", k === m)); };
  tool("add", "Add", "A"); tool("erase", "Erase", "E"); tool("pan", "Pan", "P");
  const size = document.createElement("input"); size.type = "range"; size.min = 1; size.max = Math.max(8, Math.round(Math.max(W, H) / 8));
  size.value = radius; size.setAttribute("aria-label", "Brush radius (px)");
  const sizeLabel = document.createElement("span");
  const showSize = () => { sizeLabel.textContent = `brush ${radius} px`; };
  size.oninput = () => { radius = Number(size.value); showSize(); }; showSize();
  bar.appendChild(size); bar.appendChild(sizeLabel);
  const undo = document.createElement("button"); undo.textContent = "Undo (Z)"; bar.appendChild(undo);
  const zin = document.createElement("button"); zin.textContent = "+"; bar.appendChild(zin);
  const zout = document.createElement("button"); zout.textContent = "-"; bar.appendChild(zout);
  root.appendChild(bar);
  const view = document.createElement("div"); view.className = "be-view";
  const stack = document.createElement("div"); stack.className = "be-stack";
  const img = document.createElement("img"); img.src = data.photo; img.alt = `photo to correct ${data.id}`; img.draggable = false;
  const canvas = document.createElement("canvas"); canvas.width = W; canvas.height = H; canvas.setAttribute("aria-label", "mask editor");
  stack.appendChild(img); stack.appendChild(canvas); view.appendChild(stack); root.appendChild(view);
  const ctx = canvas.getContext("2d");
  const base = new Image();
  const colour = "rgba(0, 160, 255, 0.45)";
  const paint = (s) => {
    ctx.save();
    ctx.globalCompositeOperation = s.mode === "add" ? "source-over" : "destination-out";
    ctx.strokeStyle = ctx.fillStyle = s.mode === "add" ? "rgb(0, 160, 255)" : "black";
    ctx.lineCap = ctx.lineJoin = "round"; ctx.lineWidth = 2 * s.radius;
    ctx.beginPath();
    if (s.points.length === 1) { ctx.arc(s.points[0][0], s.points[0][1], s.radius, 0, 2 * Math.PI); ctx.fill(); }
    else { ctx.moveTo(s.points[0][0], s.points[0][1]); for (const p of s.points.slice(1)) ctx.lineTo(p[0], p[1]); ctx.stroke(); }
    ctx.restore();
  };
  const redraw = () => {
    ctx.clearRect(0, 0, W, H);
    ctx.drawImage(base, 0, 0, W, H);
    strokes.forEach(paint);
  };
  base.onload = () => {  // the mask (grey PNG) becomes a coloured layer; the canvas is shown semi-transparent
    const off = document.createElement("canvas"); off.width = W; off.height = H;
    const o = off.getContext("2d"); o.drawImage(base, 0, 0, W, H);
    const px = o.getImageData(0, 0, W, H);
    for (let i = 0; i < px.data.length; i += 4) {
      const on = px.data[i] > 127;
      px.data[i] = 0; px.data[i + 1] = 160; px.data[i + 2] = 255; px.data[i + 3] = on ? 255 : 0;
    }
    o.putImageData(px, 0, 0);
    base.onload = null; base.src = off.toDataURL(); base.onload = redraw;
  };
  canvas.style.opacity = "0.45";
  base.src = data.mask;
  const apply = () => { stack.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`; };
  const clamp = () => { const w = view.clientWidth, h = view.clientHeight; tx = Math.min(0, Math.max(w - w * scale, tx)); ty = Math.min(0, Math.max(h - h * scale, ty)); };
  const zoomAt = (f, x, y) => { const n = Math.min(16, Math.max(1, scale * f)); tx = x - (x - tx) * n / scale; ty = y - (y - ty) * n / scale; scale = n; clamp(); apply(); };
  zin.onclick = () => zoomAt(1.5, view.clientWidth / 2, view.clientHeight / 2);
  zout.onclick = () => zoomAt(1 / 1.5, view.clientWidth / 2, view.clientHeight / 2);
  view.addEventListener("wheel", ev => { ev.preventDefault(); const r = view.getBoundingClientRect(); zoomAt(ev.deltaY < 0 ? 1.25 : 0.8, ev.clientX - r.left, ev.clientY - r.top); }, { passive: false });
  const toPhoto = ev => {  // pointer position in photo pixels (pixel centres at integers)
    const r = canvas.getBoundingClientRect();
    return [Math.round(((ev.clientX - r.left) / r.width * W - 0.5) * 10) / 10, Math.round(((ev.clientY - r.top) / r.height * H - 0.5) * 10) / 10];
  };
  let current = null, drag = null;
  const send = () => setStateValue("strokes", strokes.map(s => ({ mode: s.mode, radius: s.radius, points: s.points })));
  canvas.addEventListener("pointerdown", ev => {
    canvas.setPointerCapture(ev.pointerId);
    if (mode === "pan" || ev.button === 1) { drag = { x: ev.clientX, y: ev.clientY, tx, ty }; return; }
    const r = canvas.getBoundingClientRect();
    current = { mode, radius: Math.max(1, Math.round(radius)), points: [toPhoto(ev)] };
    strokes.push(current); paint(current);
  });
  canvas.addEventListener("pointermove", ev => {
    if (drag) { tx = drag.tx + ev.clientX - drag.x; ty = drag.ty + ev.clientY - drag.y; clamp(); apply(); return; }
    if (!current) return;
    const p = toPhoto(ev), q = current.points[current.points.length - 1];
    if (Math.hypot(p[0] - q[0], p[1] - q[1]) < 1) return;
    current.points.push(p); redraw();
  });
  const end = () => { if (drag) { drag = null; return; } if (current) { current = null; send(); } };
  canvas.addEventListener("pointerup", end); canvas.addEventListener("pointercancel", end);
  undo.onclick = () => { strokes.pop(); redraw(); send(); };
  const onKey = ev => {
    const t = ev.target; if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA")) return;
    const k = ev.key.toLowerCase();
    if (k === "a") setMode("add"); else if (k === "e") setMode("erase"); else if (k === "p") setMode("pan");
    else if (k === "z") undo.onclick(); else return;
    ev.preventDefault();
  };
  document.addEventListener("keydown", onKey);
  setMode("add");
  return () => document.removeEventListener("keydown", onKey);
}
"""



def _brush_component():
    return st.components.v2.component("liftlab_brush", html='<div class="be-root"></div>', css=_BRUSH_CSS, js=_BRUSH_JS)


def brush_editor(rgb: np.ndarray, mask: np.ndarray, item_id: Any, key: str, radius: int | None = None) -> list[dict[str, Any]]:
    """A brush over ``rgb`` (``(H, W, 3)`` uint8) editing ``mask`` (``(H, W)`` bool).

    Returns:
        The strokes drawn so far (``{"mode", "radius", "points"}`` in photo pixels, the
        :class:`raters.corrections.Stroke` fields), ``[]`` before the first one.
    """
    h, w = mask.shape
    data = {"id": str(item_id), "width": w, "height": h, "photo": jpeg_url(rgb), "mask": png_url(mask.astype(np.uint8) * 255),
            "radius": radius or max(2, round(max(h, w) / 60))}
    res = _brush_component()(data=data, key=key, default={"strokes": []}, on_strokes_change=lambda: None)
    return list(getattr(res, "strokes", None) or [])


_FORM_JS = """
export default function (component) {
  const { data } = component;
  const state = window.__liftlabForm || (window.__liftlabForm = {});
  state.data = data;
  // the current item's form, found by its widgets' keys, which end with the item's id: the last
  // item's form may linger while the page re-renders, and its answers must never be saved, or
  // restored, as this item's
  const formEl = () => {
    const id = state.data.id;
    const mine = document.querySelector(`.st-key-q_overall_${id}, .st-key-q_choice_${id}`);
    return mine ? mine.closest('[data-testid="stForm"]') : null;
  };
  const groups = () => { const f = formEl(); return f ? Array.from(f.querySelectorAll('[data-testid="stRadio"]')) : []; };
  const chosen = g => g.querySelector("input:checked");
  const options = g => g.querySelectorAll('label[data-testid="stRadioOption"], label[data-baseweb="radio"]');  // a radio group's option labels
  const draftKey = () => `liftlab-draft-${state.data.id}`;
  const readDraft = () => { try { return JSON.parse(localStorage.getItem(draftKey()) || "null"); } catch (e) { return null; } };
  // the rater's edits save the draft; a restore's own clicks and input events never do: a click
  // fires "change" at once, and a save then, before the comment box is on the page, would
  // overwrite the draft's comment with nothing
  const save = () => {
    const f = formEl(); if (!f || state.restoring) return;
    const answers = groups().map(g => { const c = chosen(g); return c ? Array.from(g.querySelectorAll("input")).indexOf(c) : -1; });
    const text = f.querySelector("textarea");
    const prev = text ? null : readDraft();  // no comment box (yet): keep the draft's comment
    try { localStorage.setItem(draftKey(), JSON.stringify({ answers, comment: text ? text.value : (prev && prev.comment) || "" })); } catch (e) {}
  };
  const restore = () => {
    const draft = readDraft();
    if (!draft) return;
    state.restoring = true;
    try {
      groups().forEach((g, i) => {
        const k = draft.answers[i];
        if (k >= 0 && !chosen(g)) { const labels = options(g); if (labels[k]) labels[k].click(); }
      });
      const text = formEl() && formEl().querySelector("textarea");
      if (text && draft.comment && !text.value) {
        const setter = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, "value").set;
        setter.call(text, draft.comment); text.dispatchEvent(new Event("input", { bubbles: true }));
      }
    } finally { state.restoring = false; }
  };
  if (data.clear) { for (const id of data.clear) { try { localStorage.removeItem(`liftlab-draft-${id}`); } catch (e) {} } }
  if (!state.installed) {
    state.installed = true;
    // an answer saves the draft. Older Streamlit radios fire "change"; newer ones take the label's
    // click in React and fire none, so a rater's own click (a trusted event) and a key shortcut
    // save once the page has taken the answer. A restore's clicks are untrusted and never save.
    const saveSoon = () => { setTimeout(save, 0); setTimeout(save, 250); };
    document.addEventListener("change", ev => { if (formEl() && formEl().contains(ev.target)) save(); }, true);
    document.addEventListener("click", ev => { if (ev.isTrusted && formEl() && formEl().contains(ev.target)) saveSoon(); }, true);
    document.addEventListener("input", ev => { if (ev.target.tagName === "TEXTAREA" && formEl() && formEl().contains(ev.target)) save(); }, true);
    document.addEventListener("keydown", ev => {
      const t = ev.target;
      if (!state.data.shortcuts || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      if (t && (t.tagName === "INPUT" && t.type !== "radio" || t.tagName === "TEXTAREA")) return;
      const gs = groups(); if (!gs.length) return;
      let label = null;
      if (state.data.kind === "ab") {
        const i = { a: 0, b: 1, t: 2 }[ev.key.toLowerCase()];
        if (i !== undefined) label = options(gs[0])[i];
      } else if (/^[1-5]$/.test(ev.key)) {
        const g = gs.find(x => !chosen(x));
        if (g) label = options(g)[Number(ev.key) - 1];
      }
      if (label) { label.click(); saveSoon(); ev.preventDefault(); ev.stopPropagation(); return; }
      if (ev.key === "Enter") {
        const b = formEl() && formEl().querySelector('[data-testid="stFormSubmitButton"] button');
        if (b) { ev.preventDefault(); ev.stopPropagation(); b.click(); }
      }
    }, true);  // capture: a focused radio's own key handling must not swallow Enter
  }
  // restore once the form is on the page, and again for 15 s: on a loaded server the comment box
  // can come seconds after the radios, and a re-render after the reload can reset what was
  // restored. Each pass fills only what is still empty, and every edit of the rater saves the
  // draft, so an answer or comment the rater changes or clears is never put back.
  let tries = 0;
  const wait = () => { if (groups().length) restore(); if (tries++ < 150) setTimeout(wait, 100); };
  wait();
}
"""



def _form_component():
    return st.components.v2.component("liftlab_form_helper", html="<span></span>", js=_FORM_JS)

SHORTCUTS_SINGLE = ("Keys: 1-5 answer the first unanswered question (overall, edge; then completeness 1 whole, 2 partly, "
                    "3 no; leak 1 none, 2 minor, 3 major; would use 1 yes, 2 no); Enter submits.")
SHORTCUTS_AB = "Keys: A, B or T (tie) choose; Enter submits."


def form_helper(item_id: Any, kind: str, clear: list[Any] | None = None, shortcuts: bool = True) -> None:
    """Single-key answers for the current rating form (``kind`` ``single`` or ``ab``) and its draft
    in ``localStorage`` (restored after a reload); ``clear``: items whose drafts to drop (answered)."""
    _form_component()(data={"id": str(item_id), "kind": kind, "shortcuts": shortcuts, "clear": [str(c) for c in clear or []]},
                    key="form_helper", height=0)


_COOKIE_JS = """
export default function (component) {
  const { data } = component;
  const secure = location.protocol === "https:" ? "; Secure" : "";
  if (data.token) {
    document.cookie = `${data.name}=${data.token}; Path=/; SameSite=Strict; Max-Age=${data.max_age}${secure}`;
  } else {
    document.cookie = `${data.name}=; Path=/; SameSite=Strict; Max-Age=0${secure}`;
  }
}
"""



def _cookie_component():
    return st.components.v2.component("liftlab_session_cookie", html="<span></span>", js=_COOKIE_JS)


def session_cookie(token: str | None, max_age_s: int) -> None:
    """Set (``token``) or clear (None) the login cookie, ``SameSite=Strict``, ``Secure`` over HTTPS.
    The server keeps only the token's hash and still applies the idle and absolute timeouts."""
    _cookie_component()(data={"name": COOKIE, "token": token, "max_age": int(max_age_s)}, key=f"cookie_{bool(token)}", height=0)


def cookie_token() -> str | None:
    """The login token the browser sent in its cookie, if any."""
    try:
        value = st.context.cookies.get(COOKIE)
    except Exception:  # noqa: BLE001 - no browser context (bare mode, tests)
        return None
    return value if isinstance(value, str) and 0 < len(value) <= 200 else None
