"""`pacslab demo` brings up the embedded PACS, Dask, Voila and JupyterLab, and Ctrl-C stops them."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests
from pynetdicom import AE

from pacslab.pacs.orthanc import free_port

pytestmark = pytest.mark.slow
Demo = tuple[subprocess.Popen[str], dict[str, str]]


class _Output:
    """The demo's output lines, read by a thread so a test can wait for one with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        stream = process.stdout

        def pump() -> None:
            for line in stream:
                self.lines.put(line.rstrip())
            self.lines.put(None)

        self.stream = stream
        self.thread = threading.Thread(target=pump, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """After the demo exited: let the reader reach end of file, then close the pipe."""
        self.thread.join(timeout=30)
        self.stream.close()

    def wait_for(self, marker: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if line.startswith(marker):
                return line
        raise AssertionError(f"demo never printed {marker!r}; output so far:\n" + "\n".join(self.seen))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    workdir = tmp_path_factory.mktemp("demo")
    pacs_port = str(free_port())
    env = {
        **os.environ,
        "PACSLAB_EMBEDDED_PACS_PORT": pacs_port,
        "PACSLAB_NODE_EMBEDDED_PORT": pacs_port,
    }
    argv = [sys.executable, "-m", "pacslab.cli", "demo", "--workdir", str(workdir),
            "--voila-port", str(free_port()), "--lab-port", str(free_port())]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output = _Output(process)
    urls: dict[str, str] = {"pacs_port": pacs_port, "workdir": str(workdir)}
    try:
        urls["dashboard"] = output.wait_for("Dashboard:", 300).split()[1]
        urls["lab"] = output.wait_for("JupyterLab:", 300).split()[1]
        output.wait_for("Ready.", 60)
        yield process, urls
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
        output.close()


def test_dashboard_lists_the_sample_studies(demo: Demo) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    _, urls = demo
    response = requests.get(urls["dashboard"], timeout=120)
    assert response.status_code == 200
    assert "Success" in response.text  # the C-ECHO status line, rendered by the server

    # The study list is a widget: its rows reach the page through the kernel, in a browser.
    def look() -> None:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = browser.new_page()
                page.goto(urls["dashboard"], timeout=120_000)
                studies = page.locator(".pacslab-table select").filter(visible=True).first
                expect(studies).to_contain_text("Phantom^Shepp Logan", timeout=120_000)
            finally:
                browser.close()

    # Its own thread: the browser tests' Playwright may already run an event loop in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(look).result()


def test_jupyterlab_answers_without_a_token_on_loopback(
    demo: Demo,
) -> None:
    _, urls = demo
    assert requests.get(urls["lab"], timeout=60).status_code == 200
    kernels = requests.get(urls["lab"].replace("/lab", "/api/kernelspecs"), timeout=60).json()
    assert "pacslab" in kernels["kernelspecs"]


def test_embedded_pacs_answers_echo(demo: Demo) -> None:
    _, urls = demo
    ae = AE(ae_title="PACSLAB")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", int(urls["pacs_port"]), ae_title="PACSLAB_PACS")
    assert assoc.is_established
    status = assoc.send_c_echo()
    assoc.release()
    assert status.Status == 0


def test_ctrl_c_stops_every_process(demo: Demo) -> None:
    process, _ = demo
    children = psutil.Process(process.pid).children(recursive=True)
    assert len(children) >= 4  # PACS, Dask scheduler, Dask workers, Voila, JupyterLab
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == []
