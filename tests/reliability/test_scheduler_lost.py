"""Item 10: the scheduler dies mid-job; the job stops with a clear error and resumes elsewhere.

A job runs on a plain ``dask scheduler`` with one worker; the scheduler is SIGKILLed when 60
slices are done. The same job is then run on another cluster (the shared test cluster): it
must skip what was written and finish with no gap and no slice written twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import dask_cluster
from pacslab.config import Config
from pacslab.jobs import SchedulerLostError, run_job
from pacslab.store import SliceStore
from tests.jobs.conftest import Recorder, ct_planes, put_series
from tests.reliability.conftest import Figures, written_once
from tests.reliability.plain_cluster import PlainScheduler

ITEM = 10
N = 300
PARAMS = {"cost_s": 0.01}

pytestmark = pytest.mark.timeout(300)


def test_scheduler_lost_then_resumed_without_gaps_or_duplicates(
    tmp_path: Path, store: SliceStore, job_client: Any, figures: Figures
) -> None:
    from tests.jobs import processors  # noqa: F401 - sent to the workers by connect()

    uid = put_series(store, "1.2.826.0.1.3680043.10.1338.1001", ct_planes(N, 8))
    cluster = PlainScheduler(tmp_path)
    try:
        cluster.add_worker()
        with dask_cluster.connect(Config(scheduler_address=cluster.address), timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
            recorder = Recorder()
            job = run_job(client, store, "test_logged_copy", PARAMS, [uid], on_progress=recorder)
            recorder.wait_for(lambda e: e.done >= 60)
            cluster.kill(cluster.scheduler)
            with pytest.raises(SchedulerLostError) as caught:
                job.wait(60)
    finally:
        cluster.stop()
    message = str(caught.value)
    done_before, gaps_before, _ = written_once(job.result_paths[uid])

    summary = run_job(job_client, store, "test_logged_copy", PARAMS, [uid]).wait(240)
    done, gaps, duplicates = written_once(summary.result_paths[uid])

    figures("the job stopped with", f"SchedulerLostError: {message}")
    figures("slices written before the loss", f"{done_before} of {N}")
    figures(
        "after resuming on another cluster: skipped, gaps, written twice", (summary.resumed, gaps, duplicates)
    )
    assert "run the same job again to resume" in message
    assert done_before + gaps_before == N
    assert summary.resumed == done_before
    assert (done, gaps, duplicates) == (N, 0, 0)
