"""Slices per second the viewer shows while the mouse wheel scrolls it in chromium (Voilà).

A SliceViewer over the 512×512×120 CT phantom is served by Voilà and opened in chromium with
Playwright; the page turns the mouse wheel over the picture (an event every 5 ms, a fast
trackpad; Playwright's own input sends only about 25 a second) and counts every new picture
it shows. Two passes over the same slices: the first renders each slice in the kernel,
the second finds them in the viewer's render cache. The reference, measured in the same run,
is the viewer's own path without a browser: read the slice from the store and render it
(pacslab.render) in this process. The ratio says how much of that rate reaches the screen.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

N_SLICES = 120
SIZE = 512
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
START_S = 180.0
STEPS = 40  # wheel events per pass
WHEEL_INTERVAL_MS = 5  # a fast trackpad; the page sends them itself (Playwright's own input is slower)

NOTEBOOK_CODE = """
from pacslab.store import SliceStore
from widgets import SliceViewer

viewer = SliceViewer(SliceStore({store!r}), {series!r})
viewer
"""

# Turns the wheel over the picture: ``n`` events, one every ``interval`` ms, in the page itself.
WHEEL_JS = """
([img, n, step, interval]) => new Promise((resolve) => {
  const box = img.getBoundingClientRect();
  const at = {clientX: box.x + box.width / 2, clientY: box.y + box.height / 2};
  let sent = 0;
  const timer = setInterval(() => {
    img.dispatchEvent(new WheelEvent("wheel", {deltaY: 120 * step, bubbles: true, cancelable: true, ...at}));
    if (++sent >= n) { clearInterval(timer); resolve(performance.now()); }
  }, interval);
})
"""

# Counts the pictures the page shows: each new src of the viewer's <img> is one slice drawn.
COUNTER_JS = """
(img) => {
  window.__shown = [];
  new MutationObserver(() => window.__shown.push(performance.now()))
    .observe(img, {attributes: true, attributeFilter: ["src"]});
}
"""


def _store_with_phantom(root: Path) -> tuple[Path, str]:
    from pacslab.ingest import Ingest
    from pacslab.samples import phantom_ct_datasets
    from pacslab.store import SliceStore

    store = SliceStore(root / "store")
    with Ingest(store) as ingest:
        for ds in phantom_ct_datasets(N_SLICES, SIZE):
            ingest.add_dataset(ds)
    series = store.list_series()[0].series_uid
    store.close()
    return root / "store", series


def _in_process_rate(store_path: Path, series_uid: str, indices: list[int]) -> float:
    """Slices per second of the viewer's read-and-render path, without a browser."""
    from pacslab.render import render_slice
    from pacslab.store import SliceStore

    store = SliceStore(store_path)
    render_slice(store.read_slice(series_uid, 0, rescaled=True), 40.0, 400.0)  # warm up
    started = time.perf_counter()
    for index in indices:
        render_slice(store.read_slice(series_uid, index, rescaled=True), 40.0, 400.0, fmt="jpeg")
    elapsed = time.perf_counter() - started
    store.close()
    return len(indices) / elapsed


def _notebook(path: Path, store: Path, series: str) -> None:
    cell: dict[str, object] = {
        "cell_type": "code",
        "execution_count": None,
        "id": "viewer",
        "metadata": {},
        "outputs": [],
        "source": NOTEBOOK_CODE.format(store=str(store), series=series).strip(),
    }
    notebook = {
        "cells": [cell],
        "metadata": {"kernelspec": {"display_name": "pacslab", "language": "python", "name": "pacslab"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook), encoding="utf-8")


def _start_voila(notebook: Path, port: int) -> subprocess.Popen[str]:
    voila = Path(sys.executable).with_name("voila")
    return subprocess.Popen(
        [str(voila), str(notebook), f"--port={port}", "--no-browser", "--Voila.ip=127.0.0.1"],
        cwd=notebook.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_until_running(process: subprocess.Popen[str]) -> None:
    """Read Voilà's output until it serves, then keep draining it (a full pipe would stall it)."""
    assert process.stdout is not None
    stream = process.stdout
    running = threading.Event()

    def drain() -> None:
        for line in stream:
            if "Voilà is running at" in line:
                running.set()

    threading.Thread(target=drain, daemon=True).start()
    if not running.wait(START_S):
        raise RuntimeError(f"Voilà did not start within {START_S:.0f} s; run it by hand to see why")


def _scroll_pass(
    page: Page, image: Locator, readout: Locator, step: int, start: int
) -> tuple[int, float, float]:
    """Wheel ``STEPS`` slices from ``start``.

    Returns the pictures shown, the seconds until the last one, and the seconds the wheel
    events took to send.
    """
    from playwright.sync_api import expect

    page.evaluate("window.__shown = []")
    started = page.evaluate("performance.now()")
    sent = page.evaluate(WHEEL_JS, [image.element_handle(), STEPS, step, WHEEL_INTERVAL_MS])
    expect(readout).to_have_text(str(start + step * STEPS), timeout=120_000)
    shown = page.evaluate("window.__shown")
    last = (shown[-1] - started) / 1000.0 if shown else float("inf")
    return len(shown), last, (sent - started) / 1000.0


def main() -> None:
    from playwright.sync_api import expect, sync_playwright

    from pacslab.pacs.orthanc import free_port

    with tempfile.TemporaryDirectory(prefix="pacslab-bench-browser-") as scratch:
        root = Path(scratch)
        store, series = _store_with_phantom(root)
        start = N_SLICES // 2
        indices = list(range(start + 1, start + 1 + STEPS))
        reference = _in_process_rate(store, series, indices)
        notebook = root / "viewer.ipynb"
        _notebook(notebook, store, series)
        port = free_port()
        voila = _start_voila(notebook, port)
        try:
            _wait_until_running(voila)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
                )
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}/", timeout=START_S * 1000)
                image = page.locator(".widget-image").first
                expect(image).to_be_visible(timeout=START_S * 1000)
                readout = page.locator(".widget-slider", has_text="Slice").locator(".widget-readout")
                expect(readout).to_have_text(str(start), timeout=START_S * 1000)
                image.evaluate(COUNTER_JS)
                cold_shown, cold_s, cold_input = _scroll_pass(page, image, readout, 1, start)
                _scroll_pass(page, image, readout, -1, start + STEPS)  # back, also cached
                warm_shown, warm_s, warm_input = _scroll_pass(page, image, readout, 1, start)
                browser.close()
        finally:
            os.killpg(voila.pid, signal.SIGTERM)
            voila.wait(timeout=30)
            if voila.stdout is not None:
                voila.stdout.close()
    cold = cold_shown / cold_s
    warm = warm_shown / warm_s
    print(f"viewer in chromium, first pass (rendered):  {cold:6.1f} slices/s ({cold_shown} of {STEPS} shown)")
    print(f"viewer in chromium, second pass (cached):   {warm:6.1f} slices/s ({warm_shown} of {STEPS} shown)")
    print(f"wheel events sent:                          {STEPS / min(cold_input, warm_input):6.1f} per s")
    print(f"read + render in process (reference):       {reference:6.1f} slices/s")
    print(f"ratio browser/in-process: first pass {cold / reference:.2f}, cached {warm / reference:.2f}")


if __name__ == "__main__":
    main()
