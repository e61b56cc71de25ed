"""``pacslab pacs serve``: seeds an empty PACS, answers on loopback, stops cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.embedded.dimse import associate, find


def _serve(tmp_path: Path, seed: Path) -> tuple[subprocess.Popen[str], int]:
    """Start the command; returns the process and the port it reports once listening."""
    config = tmp_path / "config.toml"
    config.write_text(f'[embedded_pacs]\nroot = "{tmp_path / "root"}"\nport = 0\n', encoding="utf-8")
    env = {**os.environ, "PACSLAB_CONFIG": str(config), "HOME": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "pacslab.cli", "pacs", "serve", "--seed", str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    # The command prints its address when it listens: wait for that line, not for a time.
    for line in process.stdout:
        found = re.search(r"on 127\.0\.0\.1:(\d+)", line)
        if found:
            return process, int(found.group(1))
    raise AssertionError(f"pacs serve exited ({process.wait()}) without listening")


def _stop(process: subprocess.Popen[str], signum: int = signal.SIGINT) -> str:
    process.send_signal(signum)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "embedded PACS stopped" in output
    return output


def test_serve_seeds_answers_and_stops_on_ctrl_c(sample_dir: Path, tmp_path: Path) -> None:
    process, port = _serve(tmp_path, sample_dir / "pydicom")
    try:
        with associate(port) as assoc:
            assert assoc.send_c_echo().Status == 0x0000
        assert len(find(port, "STUDY", StudyInstanceUID="")) == 9  # 7 dicomdirtests + CT_small + MR_small
    finally:
        _stop(process)
    # A PACS that already holds studies is not seeded again; SIGTERM stops it cleanly too.
    process, port = _serve(tmp_path, sample_dir / "mr_phantom")
    try:
        assert len(find(port, "STUDY", StudyInstanceUID="")) == 9
    finally:
        assert "loaded" not in _stop(process, signal.SIGTERM)
