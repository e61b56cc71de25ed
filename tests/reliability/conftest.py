"""Fixtures of the reliability and security suite: figures, and small helpers shared by its tests.

Every test reports its figures through the ``figures`` fixture: each figure is printed (shown
by ``pytest -s`` or ``-rA``), listed again at the end of the run, and merged into
``.test-output/reliability.json`` (item number -> figure name -> value), which the README's
"Reliability and security" section quotes.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import multiprocessing
import socket
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FIGURES_PATH = PROJECT_ROOT / ".test-output" / "reliability.json"

_SESSION_FIGURES: list[tuple[int, str, str, Any]] = []


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def written_once(path: Path) -> tuple[int, int, int]:
    """(slices done, slices missing, slices written more than once) of a job's result file."""
    from pacslab.store.results import ResultReader

    reader = ResultReader(path)
    done, counts = reader.done_mask(), reader.write_counts()
    return int(done.sum()), int((~done).sum()), int((counts > 1).sum())


def _merge_into_file(item: int, name: str, value: Any, test: str) -> None:
    FIGURES_PATH.parent.mkdir(parents=True, exist_ok=True)
    lock_path = FIGURES_PATH.with_name(FIGURES_PATH.name + ".lock")
    with lock_path.open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(FIGURES_PATH.read_text()) if FIGURES_PATH.exists() else {}
        except ValueError:  # a file from an interrupted older format: start again
            data = {}
        entry = data.setdefault(str(item), {})
        entry[name] = {"value": value, "test": test, "measured": dt.datetime.now(dt.UTC).isoformat()}
        partial = FIGURES_PATH.with_name(FIGURES_PATH.name + ".partial")
        partial.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
        partial.replace(FIGURES_PATH)


class Figures:
    """Records the figures of one test (the module's ``ITEM`` says which item of the suite)."""

    def __init__(self, item: int, test: str) -> None:
        self.item = item
        self.test = test
        self.recorded: dict[str, Any] = {}

    def __call__(self, name: str, value: Any) -> Any:
        """Print and keep one figure; returns ``value`` so a test can assert on it in one line."""
        self.recorded[name] = value
        print(f"[reliability {self.item}] {name}: {value}", flush=True)
        _SESSION_FIGURES.append((self.item, self.test, name, value))
        _merge_into_file(self.item, name, value, self.test)
        return value


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    """Report figures of this test (printed, summarised at the end, merged into the JSON file)."""
    item = getattr(request.module, "ITEM", 0)
    return Figures(int(item), request.node.nodeid)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List every figure measured in this run, by item."""
    if not _SESSION_FIGURES:
        return
    terminalreporter.section("reliability figures")
    for item, _test, name, value in sorted(_SESSION_FIGURES, key=lambda f: f[0]):
        terminalreporter.write_line(f"{item:>2}. {name}: {value}")
    terminalreporter.write_line(f"(also in {FIGURES_PATH.relative_to(PROJECT_ROOT)})")


@pytest.fixture(scope="session")
def forkserver() -> ForkServerContext:
    """Processes forked from a clean server that has pacslab's writers imported (fast to start)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.reliability.writers"])
    return context


@pytest.fixture(scope="session")
def job_client(dask_client: Any) -> Any:
    """The shared 2-worker test cluster, with the misbehaving test processors on its workers."""
    import dask_cluster
    from tests.jobs import processors  # noqa: F401 - registers them

    dask_cluster.register_processors(dask_client)
    return dask_client


@pytest.fixture(scope="session")
def voila_url(tmp_path_factory: pytest.TempPathFactory, embedded_pacs: Any, dask_client: Any) -> Any:
    """Voilà as the demo runs it: from the project root, so with its ``voila.json``, on loopback
    without a token (what an authenticated user can do is what these tests probe).

    Its kernels read a config naming the embedded PACS, a fresh store and the test cluster.
    """
    from tests.notebooks.kernel_env import kernel_env, write_config
    from tests.servers import BIN, ServerProcess

    if not (PROJECT_ROOT / "voila.json").exists():
        pytest.fail("the project has no voila.json; Voilà would serve with its defaults")
    root = tmp_path_factory.mktemp("voila")
    address = dask_client.scheduler.address
    config = write_config(root / "pacslab.toml", [embedded_pacs.node], root / "store", address)
    port = free_port()
    argv = [str(BIN / "voila"), f"--port={port}", "--no-browser", "--Voila.token="]  # as the loopback demo
    server = ServerProcess("voila", argv, kernel_env(config), PROJECT_ROOT, root / "voila.log")
    try:
        server.wait_for("Voilà is running at")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
