"""Processors that misbehave on purpose, registered like a notebook's and shipped to workers by value."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import cloudpickle
import numpy as np

from pacslab.processing import Parameter, SliceContext, processor

__all__ = ["busy_copy", "crash_on", "flaky", "logged_copy"]


@processor(
    name="test_logged_copy",
    version="1",
    params={"log_dir": Parameter(""), "cost_s": Parameter(0.0, minimum=0.0)},
)
def logged_copy(pixels: np.ndarray, log_dir: str, cost_s: float, context: SliceContext) -> np.ndarray:
    """Record when each slice starts (one file per slice), take ``cost_s``, return the input."""
    if log_dir:
        (Path(log_dir) / f"{context.index}.start").write_text(f"{time.time():.6f} {os.getpid()}")
    if cost_s:
        time.sleep(cost_s)  # stands for processing cost; nothing waits on it
    return pixels.copy()


@processor(name="test_busy_copy", version="1", params={"cost_s": Parameter(0.0, minimum=0.0)})
def busy_copy(pixels: np.ndarray, cost_s: float) -> np.ndarray:
    """Spend ``cost_s`` of CPU time, as a processor that computes does, and return the input."""
    end = time.process_time() + cost_s
    while time.process_time() < end:
        pass
    return pixels.copy()


@processor(
    name="test_flaky",
    version="1",
    params={"state_dir": Parameter(""), "always": Parameter(-1), "once": Parameter(-1)},
)
def flaky(pixels: np.ndarray, state_dir: str, always: int, once: int, context: SliceContext) -> np.ndarray:
    """Fail every time on slice ``always``; fail only the first attempt on slice ``once``."""
    attempts = Path(state_dir) / f"{context.index}.attempts"
    count = int(attempts.read_text()) + 1 if attempts.exists() else 1
    attempts.write_text(str(count))
    if context.index == always:
        raise ValueError(f"slice {context.index} is unreadable by this processor")
    if context.index == once and count == 1:
        raise RuntimeError("a passing hiccup")
    return pixels + 1


@processor(name="test_crash_on", version="1", params={"index": Parameter(-1)})
def crash_on(pixels: np.ndarray, index: int, context: SliceContext) -> np.ndarray:
    """Kill the worker process on slice ``index`` (a segfault-like poison slice)."""
    if context.index == index:
        os.kill(os.getpid(), signal.SIGKILL)
    return pixels * 2


# Workers cannot import the tests package: send these functions by value, as for a notebook.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
