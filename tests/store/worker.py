"""Start and steer ``tests.store.ingest_worker`` processes (no sleeps: lines are the signals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """An ingest in a child process, talking through its stdin/stdout."""

    def __init__(self, store: Path, files: list[Path], *options: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.store.ingest_worker", str(store), *options, *map(str, files)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        """Never leave a child behind, whatever the test did."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=60)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()

    def read_lines(self, count: int) -> bool:
        """Read ``count`` lines; False if the process ended first."""
        stdout = self.process.stdout
        assert stdout is not None
        return all(stdout.readline() for _ in range(count))

    def expect(self, word: str) -> str:
        """Read lines until one starts with ``word`` (fails if the process ends first)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(word):
                return line.strip()
        raise AssertionError(f"worker ended without {word!r}: {self.stderr()}")

    def send(self, line: str = "go") -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def kill(self) -> bool:
        """SIGKILL the worker; False if it had already finished its ingest (the last event races the kill)."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)
        assert self.process.returncode in (-signal.SIGKILL, 0), self.stderr()
        return self.process.returncode == -signal.SIGKILL

    def finish(self, timeout: float = 120) -> str:
        """Wait for the end and return the last line ("done N" or "error ...")."""
        out, err = self.process.communicate(timeout=timeout)
        lines = [line for line in out.splitlines() if line.startswith(("done", "error"))]
        assert lines, f"worker printed no result; stderr: {err}"
        return lines[-1]

    def stderr(self) -> str:
        if self.process.poll() is None:
            return ""
        return self.process.stderr.read() if self.process.stderr else ""
