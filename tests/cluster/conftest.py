"""Plain Dask processes on loopback: a ``dask scheduler`` and ``dask worker`` subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client

import dask_cluster

DASK = str(Path(sys.executable).with_name("dask"))
# Plain processes read pacslab's Dask defaults the documented way: DASK_CONFIG=<dask_cluster folder>.
DASK_CONFIG_DIR = str(Path(dask_cluster.__file__).parent)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PlainCluster:
    """A scheduler and workers started as separate processes, as on other machines."""

    def __init__(self, workdir: Path, *, extra_scheduler_args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.env = {**os.environ, "DASK_CONFIG": DASK_CONFIG_DIR}
        self.extra_scheduler_args = extra_scheduler_args
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.address = ""
        self.scheme = "tcp"

    def _log(self, name: str) -> int:
        return os.open(self.workdir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def start_scheduler(self) -> str:
        port = free_port()
        self.address = f"{self.scheme}://127.0.0.1:{port}"
        log = self._log("scheduler")
        self.scheduler = subprocess.Popen(
            [
                DASK,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
                "--protocol",
                self.scheme,
                *self.extra_scheduler_args,
            ],
            stdout=log,
            stderr=log,
            env=self.env,
            cwd=self.workdir,
        )
        os.close(log)
        return self.address

    def add_worker(
        self, *, nanny: bool = True, prefix: tuple[str, ...] = (), args: tuple[str, ...] = ()
    ) -> None:
        log = self._log(f"worker{len(self.workers)}")
        command = [
            DASK,
            "worker",
            self.address,
            "--nthreads",
            "1",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
            "--name",
            f"plain-{len(self.workers)}",
            *args,
        ]
        if not nanny:
            command.append("--no-nanny")
        self.workers.append(
            subprocess.Popen([*prefix, *command], stdout=log, stderr=log, env=self.env, cwd=self.workdir)
        )
        os.close(log)

    def kill_worker_process(self, client: Client, address: str) -> None:
        """SIGKILL the worker process behind ``address`` (its nanny, if any, restarts it)."""
        pid = client.run(os.getpid, workers=[address])[address]
        os.kill(pid, signal.SIGKILL)

    def kill_scheduler(self) -> None:
        assert self.scheduler is not None
        self.scheduler.send_signal(signal.SIGKILL)
        self.scheduler.wait(10)

    def stop(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, self.scheduler]:
            if proc is None:
                continue
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.workers.clear()


@pytest.fixture
def plain_cluster(tmp_path: Path) -> Iterator[PlainCluster]:
    cluster = PlainCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()
