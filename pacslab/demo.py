"""``pacslab demo``: the embedded PACS with sample data, a Dask cluster, Voila and JupyterLab.

Everything listens on 127.0.0.1. Ctrl-C stops every process the demo started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from pacslab.config import load_config
from pacslab.pacs.orthanc import free_port

__all__ = ["DemoError", "run_demo"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class DemoError(RuntimeError):
    """A part of the demo did not come up; the message names it and its log file."""


@dataclass
class _Processes:
    logs: Path
    running: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        # A new session per child, so Ctrl-C reaches us once and we stop each child cleanly.
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT, start_new_session=True
        )
        log.close()
        self.running.append((name, process))
        return process

    def check(self) -> None:
        for name, process in self.running:
            if process.poll() is not None:
                raise DemoError(f"{name} exited with code {process.returncode}; see {self.logs / name}.log")

    def stop(self) -> None:
        for _, process in reversed(self.running):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process in reversed(self.running):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.running.clear()


def _wait_for(what: str, ready: Callable[[], bool], processes: _Processes, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check()
        try:
            if ready():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.2)  # readiness poll of a child process
    raise DemoError(f"{what} did not come up within {timeout:.0f} s; see the logs in {processes.logs}")


def _http_ok(url: str) -> bool:
    return requests.get(url, timeout=5).status_code == 200


def _echo_ok(host: str, port: int, called_ae: str) -> bool:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = AE(ae_title="PACSLAB")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 2
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status and status.Status == 0)


def _write_demo_config(workdir: Path) -> Path:
    path = workdir / "config.toml"
    if not path.exists():
        path.write_text(
            "\n".join(
                [
                    "# Written by `pacslab demo`; edit freely.",
                    f'store_path = "{workdir / "store"}"',
                    "",
                    "[embedded_pacs]",
                    f'root = "{workdir / "pacs"}"',
                    "",
                ]
            ),
            encoding="utf-8",
        )
    return path


def run_demo(workdir: Path, lab: bool = True, voila_port: int = 8866, lab_port: int = 8888) -> int:
    """Start the demo and block until Ctrl-C (or until a part dies)."""
    workdir = workdir.resolve()
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PACSLAB_CONFIG"] = str(_write_demo_config(workdir))
    env.setdefault("TCP_NODELAY", "1")
    os.environ["PACSLAB_CONFIG"] = env["PACSLAB_CONFIG"]
    config = load_config()
    samples = workdir / "samples"
    if not (samples / "ct_phantom").exists():
        from pacslab.samples import write_samples

        print(f"Writing sample data to {samples} ...", flush=True)
        write_samples(samples)

    processes = _Processes(workdir / "logs")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        pacs = config.embedded_pacs
        processes.start(
            "pacs", [sys.executable, "-m", "pacslab.cli", "pacs", "serve", "--seed", str(samples)], env
        )
        _wait_for("the embedded PACS", lambda: _echo_ok(pacs.host, pacs.port, pacs.ae_title), processes)
        print(f"Embedded PACS: {pacs.ae_title}@{pacs.host}:{pacs.port}", flush=True)

        scheduler_port = free_port()
        dashboard_port = free_port()
        processes.start(
            "dask-scheduler",
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(scheduler_port),
                "--dashboard-address",
                f"127.0.0.1:{dashboard_port}",
            ],
            env,
        )
        scheduler = f"tcp://127.0.0.1:{scheduler_port}"
        processes.start(
            "dask-workers",
            [
                str(BIN / "dask"),
                "worker",
                scheduler,
                "--nworkers",
                str(max(os.cpu_count() or 1, 1)),
                "--nthreads",
                "1",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
            ],
            env,
        )
        _wait_for(
            "the Dask scheduler", lambda: _http_ok(f"http://127.0.0.1:{dashboard_port}/health"), processes
        )
        env["PACSLAB_SCHEDULER_ADDRESS"] = scheduler
        print(
            f"Dask scheduler: {scheduler}  (dashboard http://127.0.0.1:{dashboard_port}/status)", flush=True
        )

        voila_port = voila_port if _port_free(voila_port) else free_port()
        processes.start(
            "voila",
            [
                str(BIN / "voila"),
                "notebooks/dashboard.ipynb",
                f"--port={voila_port}",
                "--no-browser",
                "--Voila.ip=127.0.0.1",
                # voila.json asks for a token; the loopback demo, like its JupyterLab, does not.
                "--Voila.token=",
            ],
            env,
        )
        dashboard = f"http://127.0.0.1:{voila_port}/"
        _wait_for("Voila", lambda: _http_ok(dashboard), processes, timeout=180)
        print(f"Dashboard: {dashboard}", flush=True)

        if lab:
            lab_port = lab_port if _port_free(lab_port) else free_port()
            processes.start(
                "jupyterlab",
                [
                    str(BIN / "jupyter"),
                    "lab",
                    "--no-browser",
                    "--ip=127.0.0.1",
                    f"--port={lab_port}",
                    "--IdentityProvider.token=",
                    f"--ServerApp.root_dir={PROJECT_ROOT}",
                    *(["--allow-root"] if os.geteuid() == 0 else []),
                ],
                env,
            )
            lab_url = f"http://127.0.0.1:{lab_port}/lab"
            _wait_for("JupyterLab", lambda: _http_ok(lab_url), processes, timeout=180)
            print(f"JupyterLab: {lab_url}  (notebooks in notebooks/, kernel 'pacslab')", flush=True)

        print("Ready. Press Ctrl-C to stop everything.", flush=True)
        while True:
            processes.check()
            time.sleep(1)  # idle loop of the foreground demo
    except KeyboardInterrupt:
        print("\nStopping ...", flush=True)
        return 0
    except DemoError as exc:
        print(f"pacslab demo: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        processes.stop()


def _interrupt(signum: int, frame: object) -> None:
    """Treat SIGTERM like Ctrl-C so the children are stopped too."""
    raise KeyboardInterrupt


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
