"""Browser tests: Debian's chromium driven by Playwright against Voilà and JupyterLab on loopback.

The servers are started by the fixtures with a pacslab config naming the embedded PACS
(default node) and Orthanc, a store of their own and the test Dask cluster. Each step of a
test leaves a screenshot in ``.test-output/browser/<test>/`` (a failing step too).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pacslab.pacs.orthanc import free_port
from tests.notebooks.kernel_env import kernel_env, write_config
from tests.servers import BIN, ServerProcess

if TYPE_CHECKING:
    from distributed import Client
    from playwright.sync_api import Browser, Page

    from pacslab.pacs.embedded import EmbeddedPacs
    from pacslab.pacs.orthanc import OrthancServer

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
OUTPUT = ROOT / ".test-output" / "browser"

pytestmark = pytest.mark.browser


class Steps:
    """Named steps of a browser test, each followed by a screenshot (also when it fails)."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.count = 0

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        try:
            yield
        except BaseException:
            path = path.with_name(path.stem + "-FAILED.png")
            raise
        finally:
            with contextlib.suppress(Exception):  # a closed page must not hide the real failure
                self.page.screenshot(path=str(path), full_page=True)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's chromium, headless.

    Per module: Playwright's sync API keeps an asyncio loop marked running in this thread
    while it is open, which later tests (``asyncio.run``, another Playwright) must not meet.
    """
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (Debian package 'chromium')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def steps(chromium: Browser, request: pytest.FixtureRequest) -> Iterator[Steps]:
    """A fresh page and the test's screenshot folder."""
    folder = OUTPUT / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        yield Steps(page, folder)
    finally:
        context.close()


@pytest.fixture(scope="session")
def browser_config(
    tmp_path_factory: pytest.TempPathFactory,
    embedded_pacs: EmbeddedPacs,
    orthanc: OrthancServer,
    dask_client: Client,
) -> Path:
    """The config the servers' kernels read: embedded PACS (default), Orthanc, a store, the cluster."""
    root = tmp_path_factory.mktemp("browser-env")
    address = dask_client.scheduler.address  # type: ignore[union-attr]
    return write_config(root / "pacslab.toml", [embedded_pacs.node, orthanc.node], root / "store", address)


@pytest.fixture(scope="session")
def voila_url(browser_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Voilà serving the dashboard with the project's voila.json (it runs from the project root)."""
    port = free_port()
    logs = tmp_path_factory.mktemp("voila-logs")
    server = ServerProcess(
        "voila",
        [str(BIN / "voila"), f"--port={port}", "--no-browser", "--Voila.token="],  # loopback, as the demo
        kernel_env(browser_config),
        ROOT,
        logs / "voila.log",
    )
    try:
        server.wait_for("Voilà is running at")
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def lab_url(browser_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """JupyterLab on a copy of the notebooks (running them must not change the project's files)."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    port = free_port()
    argv = [
        str(BIN / "jupyter"),
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={root / 'notebooks'}",
        f"--LabApp.user_settings_dir={root / 'settings'}",
        f"--LabApp.workspaces_dir={root / 'workspaces'}",
        *(["--allow-root"] if os.geteuid() == 0 else []),
    ]
    env = kernel_env(browser_config)
    env["JUPYTER_CONFIG_DIR"] = str(root / "config")  # no user settings leak in
    server = ServerProcess("jupyterlab", argv, env, root, root / "jupyterlab.log")
    try:
        server.wait_for("is running at")
        yield f"http://127.0.0.1:{port}/lab"
    finally:
        server.stop()
