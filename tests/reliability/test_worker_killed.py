"""Item 9: workers killed under a job: every slice written exactly once, a poison slice reported.

On the shared test cluster (two worker processes under nannies): a worker is SIGKILLed while a
1,000-slice job runs, and a processor that kills its worker on one slice runs over 60
slices. On a plain scheduler whose only worker (no nanny) is killed: the job stops with a
named error instead of waiting for workers that will never come, and leaves no thread waiting.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import dask_cluster
from pacslab.config import Config
from pacslab.jobs import NoWorkersError, run_job
from pacslab.store import SliceStore
from tests.jobs.conftest import Recorder, ct_planes, put_series
from tests.reliability.conftest import Figures, written_once
from tests.reliability.plain_cluster import PlainScheduler

ITEM = 9

pytestmark = pytest.mark.timeout(300)


_OTHER_CLIENT = """
import sys
import dask_cluster
from pacslab.config import Config
dask_cluster.connect(Config(scheduler_address=sys.argv[1]), timeout=60).close()
"""


def test_a_restarted_worker_gets_every_clients_processors(
    job_client: Any, store: SliceStore, figures: Figures
) -> None:
    import subprocess
    import sys

    # A second client (a dashboard's kernel) connects with its own processors...
    command = [sys.executable, "-c", _OTHER_CLIENT, job_client.scheduler.address]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    # ... then every worker process starts afresh, as after a crash.
    job_client.restart(timeout=120)
    uid = put_series(store, "1.2.826.0.1.3680043.10.1338.904", ct_planes(4, 8))
    summary = run_job(job_client, store, "test_logged_copy", {}, [uid]).wait(120)
    figures("workers restarted after another client connected: job done", summary.done)
    assert summary.done == 4


def test_a_worker_killed_during_a_thousand_slice_job(
    job_client: Any, store: SliceStore, figures: Figures
) -> None:
    uid = put_series(store, "1.2.826.0.1.3680043.10.1338.901", ct_planes(1000, 8))
    recorder = Recorder()
    job = run_job(job_client, store, "test_logged_copy", {"cost_s": 0.002}, [uid], on_progress=recorder)
    recorder.wait_for(lambda e: e.done >= 200)
    victim = sorted(job_client.scheduler_info()["workers"])[0]
    pid = job_client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)
    done_at_kill = job.progress.done
    summary = job.wait(240)
    job_client.wait_for_workers(2, timeout=120)  # the nanny brings it back for the next tests

    figure = written_once(summary.result_paths[uid])
    figures("worker killed at", f"{done_at_kill} of 1000 slices done")
    figures("done, missing, written twice", figure)
    figures("duplicate results received (skipped by the writer)", summary.duplicates)
    assert summary.status == "done"
    assert figure == (1000, 0, 0)


@pytest.fixture
def own_client() -> Any:
    """A cluster of its own: the poison slice kills workers, which the shared cluster must not lose."""
    from distributed import Client, LocalCluster

    import dask_cluster
    from tests.jobs import processors  # noqa: F401 - registers them

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        dask_cluster.register_processors(client)
        yield client


def test_a_poison_slice_is_reported_failed(own_client: Any, store: SliceStore, figures: Figures) -> None:
    job_client = own_client
    uid = put_series(store, "1.2.826.0.1.3680043.10.1338.902", ct_planes(60, 8))
    started = time.monotonic()
    # Both workers may die on the slice at once; their nannies need a while to bring them back
    # on a loaded machine, so the job waits longer than its default 60 s for workers.
    job = run_job(job_client, store, "test_crash_on", {"index": 17}, [uid], no_workers_timeout=240)
    summary = job.wait(270)
    seconds = time.monotonic() - started
    job_client.wait_for_workers(2, timeout=120)

    figures("poison slice reported failed after (s)", round(seconds, 1))
    figures("other slices done, written twice", (summary.done, written_once(summary.result_paths[uid])[2]))
    assert (summary.status, summary.done, summary.failed) == ("done", 59, 1)
    [failure] = summary.failures
    assert failure.index == 17
    assert "worker process died" in failure.error


def test_no_workers_left_stops_the_job(tmp_path: Path, store: SliceStore, figures: Figures) -> None:
    from tests.jobs import processors  # noqa: F401 - sent to the workers by connect()

    cluster = PlainScheduler(tmp_path)
    try:
        worker = cluster.add_worker()
        client = dask_cluster.connect(Config(scheduler_address=cluster.address), timeout=60)
        with client:
            client.wait_for_workers(1, timeout=120)
            uid = put_series(store, "1.2.826.0.1.3680043.10.1338.903", ct_planes(200, 8))
            recorder = Recorder()
            job = run_job(
                client,
                store,
                "test_logged_copy",
                {"cost_s": 0.02},
                [uid],
                on_progress=recorder,
                no_workers_timeout=3,
            )
            recorder.wait_for(lambda e: e.done >= 5)
            cluster.kill(worker)
            killed = time.monotonic()
            with pytest.raises(NoWorkersError, match="no workers for 3 s") as caught:
                job.wait(60)
            seconds = time.monotonic() - killed
            waiting = [
                t.name for t in threading.enumerate() if t.name.startswith(f"pacslab-job-{job.job_id}")
            ]
    finally:
        cluster.stop()
    summary = caught.value.summary
    assert summary is not None
    figures("no workers: the job stopped after (s, timeout 3 s)", round(seconds, 1))
    figures("job threads still waiting afterwards", len(waiting))
    assert waiting == []
    assert summary.status == "failed"
    assert store.job(summary.job_id).status == "failed"
