"""Small page behaviours gradio has no setting for: results and input errors scroll into view, and
Compare's side-by-side view with one zoom for every column.

One script runs when the page loads (``launch(js=...)``); events then call ``window.ummReveal`` from a
browser-only listener (``js=``, no server round trip).
"""

from __future__ import annotations

from typing import Any

ON_LOAD = """
() => {
  const reveal = (el) => {
    // only when less than half of it (or of the window, for a tall result) is on screen
    const box = el.getBoundingClientRect();
    const seen = Math.min(box.bottom, window.innerHeight) - Math.max(box.top, 0);
    if (seen < 0.5 * Math.min(box.height, window.innerHeight)) el.scrollIntoView({block: "center", behavior: "smooth"});
  };
  window.ummReveal = (id) => { const el = document.getElementById(id); if (el) reveal(el); };
  // an input check's message (gradio draws it on the input it is about) scrolls into view when it appears
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType !== 1) continue;
        const hit = node.matches("[class*=validation]") ? node : node.querySelector("[class*=validation]");
        if (hit && hit.textContent.trim()) { reveal(hit); return; }
      }
    }
  }).observe(document.body, {childList: true, subtree: true});

  // Compare: every column's image side by side, one zoom for all, panning one pans the others
  window.ummSideBySide = () => {
    document.getElementById("umm-zoom")?.remove();
    const panes = [];
    for (let i = 0; ; i++) {
      const gallery = document.getElementById(`cmp-gallery-${i}`);
      if (!gallery) break;
      const img = gallery.querySelector("img");
      const title = document.getElementById(`cmp-title-${i}`)?.innerText.trim() || `Column ${i + 1}`;
      if (img) panes.push([title, img.currentSrc || img.src]);
    }
    if (!panes.length) return;
    const LEVELS = [0, 1, 2, 4, 8];  // 0 = fit
    const box = document.createElement("div");
    box.id = "umm-zoom";
    box.innerHTML = `<div class="umm-zoom-bar"><label>Zoom <input id="umm-zoom-level" type="range" min="0"
      max="${LEVELS.length - 1}" step="1" value="0"></label><span id="umm-zoom-text">fit</span>
      <button id="umm-zoom-close" type="button">✕ Close (Esc)</button></div><div class="umm-zoom-panes"></div>`;
    const row = box.querySelector(".umm-zoom-panes");
    for (const [title, src] of panes) {
      const pane = document.createElement("div");
      pane.className = "umm-zoom-pane";
      pane.innerHTML = `<div class="umm-zoom-title"></div><div class="umm-zoom-view"><img alt=""></div>`;
      pane.querySelector(".umm-zoom-title").textContent = title;
      pane.querySelector("img").src = src;
      row.appendChild(pane);
    }
    const views = [...box.querySelectorAll(".umm-zoom-view")];
    const images = [...box.querySelectorAll(".umm-zoom-view img")];
    const level = box.querySelector("#umm-zoom-level");
    const apply = () => {
      // one scale for all: every image as wide as the widest one's pixels × zoom, so the panes show the
      // same region of the picture even when the models' resolutions differ
      const zoom = LEVELS[Number(level.value)];
      const base = Math.max(...images.map((img) => img.naturalWidth));
      box.querySelector("#umm-zoom-text").textContent = zoom ? `${zoom}×` : "fit";
      for (const img of images) {
        img.classList.toggle("umm-zoomed", zoom > 1);
        img.style.width = zoom ? `${base * zoom}px` : "";
        img.style.maxWidth = zoom ? "none" : "";
        img.style.maxHeight = zoom ? "none" : "";
      }
    };
    level.addEventListener("input", apply);
    let syncing = false;
    for (const view of views) {
      view.addEventListener("scroll", () => {
        if (syncing) return;
        syncing = true;
        for (const other of views) {
          if (other !== view) { other.scrollLeft = view.scrollLeft; other.scrollTop = view.scrollTop; }
        }
        requestAnimationFrame(() => { syncing = false; });
      });
    }
    const close = () => { box.remove(); document.removeEventListener("keydown", onKey); };
    const onKey = (event) => { if (event.key === "Escape") close(); };
    document.addEventListener("keydown", onKey);
    box.querySelector("#umm-zoom-close").addEventListener("click", close);
    document.body.appendChild(box);
  };
}
"""

CSS = """
#umm-zoom { position: fixed; inset: 0; z-index: 1000; background: rgba(15, 15, 20, 0.97); color: #fff;
  display: flex; flex-direction: column; padding: 10px; gap: 8px; }
#umm-zoom .umm-zoom-bar { display: flex; gap: 16px; align-items: center; }
#umm-zoom .umm-zoom-bar button { margin-left: auto; padding: 2px 10px; border: 1px solid #888; border-radius: 6px; }
#umm-zoom .umm-zoom-panes { flex: 1; display: flex; gap: 8px; min-height: 0; }
#umm-zoom .umm-zoom-pane { flex: 1; display: flex; flex-direction: column; min-width: 0; }
#umm-zoom .umm-zoom-view { flex: 1; overflow: auto; display: flex; min-height: 0; }
#umm-zoom .umm-zoom-view img { max-width: 100%; max-height: 100%; object-fit: contain; margin: auto; }
#umm-zoom .umm-zoom-view img.umm-zoomed { image-rendering: pixelated; margin: 0; flex: none; }
#umm-zoom .umm-zoom-view img[style*="width"] { flex: none; margin: 0; }
"""


def reveal_after(events: list[Any], elem_id: str) -> None:
    """After each successful run, scroll ``elem_id`` (where the result is) into view if it is off screen."""
    for event in events:
        event.success(None, None, None, js=f"() => window.ummReveal && window.ummReveal({elem_id!r})",
                      queue=False, api_visibility="private")
