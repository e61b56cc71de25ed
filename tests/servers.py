"""Jupyter servers and Voilà started as a user would, in their own process group, output watched.

Shared by the browser and reliability tests."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

__all__ = ["BIN", "ServerProcess"]

BIN = Path(sys.executable).parent
START_S = 180.0


class ServerProcess:
    """A server process; its output goes to ``log`` and can be waited on line by line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.name = name
        self.log = log
        self.lines: queue.Queue[str | None] = queue.Queue()
        log.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._pump = threading.Thread(target=self._copy_output, name=f"{name}-output", daemon=True)
        self._pump.start()

    def _copy_output(self) -> None:
        assert self.process.stdout is not None
        with self.log.open("w", encoding="utf-8") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, marker: str, timeout: float = START_S) -> str:
        """The first output line containing ``marker``; fails if the server exits or stays silent."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"{self.name} exited with code {self.process.wait()}; see {self.log}")
            if marker in line:
                return line
        pytest.fail(f"{self.name} did not print {marker!r} within {timeout:.0f} s; see {self.log}")

    def wait_listening(self, port: int, timeout: float = START_S) -> None:
        """Wait until ``port`` takes connections (servers print their URL before they bind it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                return
            except ConnectionRefusedError:
                if self.process.poll() is not None:
                    pytest.fail(f"{self.name} exited with code {self.process.returncode}; see {self.log}")
                with contextlib.suppress(queue.Empty):  # wake on the server's next line, or soon
                    self.lines.put(self.lines.get(timeout=0.1))
        pytest.fail(f"{self.name} did not listen on port {port} within {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._pump.join(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()
