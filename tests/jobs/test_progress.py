"""Progress counts, rate and ETA, and the text bar written to terminals and logs."""

from __future__ import annotations

import io

import pytest

from pacslab.jobs import JobProgress, TextProgressBar, format_progress
from pacslab.jobs.progress import ProgressTracker


def test_rate_and_eta_from_recent_slices() -> None:
    tracker = ProgressTracker("j", total=100, already_done=20)
    start = tracker._start  # the tracker's own clock origin
    tracker.add(10, 0, "tcp://a", now=start + 1.0)
    tracker.add(8, 2, "tcp://b", now=start + 2.0)
    assert tracker.rate(now=start + 2.0) == pytest.approx(10.0)
    progress = tracker.snapshot()
    assert (progress.done, progress.failed, progress.total) == (38, 2, 100)
    assert dict(progress.per_worker) == {"tcp://a": 10, "tcp://b": 10}
    assert progress.remaining == 60


def test_format_progress_running_and_finished() -> None:
    running = JobProgress("j", done=50, failed=2, total=100, rate=12.5, eta_s=75.0)
    assert (
        format_progress(running, width=10) == "[#####.....] 50/100 done, 2 failed, 12.5 slices/s, ETA 1m15s"
    )
    finished = JobProgress("j", done=100, failed=0, total=100, finished=True, status="done")
    assert format_progress(finished, width=4) == "[####] 100/100 done - done"


def test_text_bar_in_a_log_writes_lines_at_most_every_interval_and_always_the_last() -> None:
    stream = io.StringIO()
    bar = TextProgressBar(stream=stream, width=4, interval=3600.0)
    for done in range(5):
        bar(JobProgress("j", done=done, failed=0, total=4))
    bar(JobProgress("j", done=4, failed=0, total=4, finished=True, status="done"))
    lines = stream.getvalue().splitlines()
    assert lines == ["[....] 0/4 done, 0.0 slices/s, ETA ?", "[####] 4/4 done - done"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_bar_on_a_terminal_redraws_in_place() -> None:
    stream = _Terminal()
    bar = TextProgressBar(stream=stream, width=4)
    bar(JobProgress("j", done=1, failed=0, total=4, rate=1.0, eta_s=3.0))
    bar(JobProgress("j", done=4, failed=0, total=4, finished=True, status="done"))
    assert stream.getvalue() == "\r[#...] 1/4 done, 1.0 slices/s, ETA 3s\r[####] 4/4 done - done\n"
