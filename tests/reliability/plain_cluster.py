"""A ``dask scheduler`` and ``dask worker`` processes on loopback that a test can kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import dask_cluster
from tests.reliability.conftest import free_port

__all__ = ["PlainScheduler"]

DASK = str(Path(sys.executable).with_name("dask"))


class PlainScheduler:
    """A scheduler process and worker processes (without a nanny unless asked)."""

    def __init__(self, workdir: Path, *, protocol: str = "tcp", extra: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        # Plain processes read pacslab's Dask defaults the documented way.
        self.env = {**os.environ, "DASK_CONFIG": str(Path(dask_cluster.__file__).parent)}
        self.port = free_port()
        self.address = f"{protocol}://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen[bytes]] = []
        args = ["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"]
        self.scheduler = self._start("scheduler", [*args, "--protocol", protocol, *extra])

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen([DASK, *args], stdout=log, stderr=log, env=self.env, cwd=self.workdir)
        self.processes.append(process)
        return process

    def add_worker(self, *, nanny: bool = False) -> subprocess.Popen[bytes]:
        """A worker of one thread; without a nanny a killed worker stays dead."""
        name = f"worker{len(self.processes)}"
        args = ["worker", self.address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"]
        return self._start(name, [*args, "--name", name, *([] if nanny else ["--no-nanny"])])

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
