"""Jobs on plain ``dask scheduler`` / ``dask worker`` processes: killed workers, a poison slice,
no workers left, a lost scheduler, a worker that cannot see the store, and TLS.

Each test prints its figure (slices written, duplicates, seconds to report).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from distributed import Client

import dask_cluster
from pacslab.config import Config
from pacslab.jobs import NoWorkersError, SchedulerLostError, run_job
from pacslab.store import SliceStore
from pacslab.store.results import ResultReader
from tests.cluster.conftest import PlainCluster
from tests.jobs import processors  # noqa: F401 - the test processors travel to the workers
from tests.jobs.conftest import Recorder, ct_planes, put_series

pytestmark = pytest.mark.timeout(240)


def connect_to(cluster: PlainCluster, workers: int, **config: str) -> Client:
    client = dask_cluster.connect(Config(scheduler_address=cluster.address, **config), timeout=30)
    client.wait_for_workers(workers, timeout=60)
    return client


def exactly_once(path: Path) -> tuple[int, int, int]:
    """(slices done, slices missing, slices written more than once) of a result file."""
    reader = ResultReader(path)
    done, counts = reader.done_mask(), reader.write_counts()
    return int(done.sum()), int((~done).sum()), int((counts > 1).sum())


def test_a_worker_killed_mid_job_leaves_every_slice_written_once(
    plain_cluster: PlainCluster, store: SliceStore
) -> None:
    plain_cluster.start_scheduler()
    plain_cluster.add_worker(nanny=False)
    plain_cluster.add_worker(nanny=False)
    uid = put_series(store, "1.2.301", ct_planes(300, 16))
    with connect_to(plain_cluster, 2) as client:
        recorder = Recorder()
        job = run_job(client, store, "test_logged_copy", {"cost_s": 0.01}, [uid], on_progress=recorder)
        recorder.wait_for(lambda e: e.done >= 60)
        victim = sorted(client.scheduler_info()["workers"])[0]
        plain_cluster.kill_worker_process(client, victim)
        summary = job.wait(180)
    figure = exactly_once(summary.result_paths[uid])
    print(f"worker killed at 60/300: done, missing, duplicated = {figure}")
    assert summary.status == "done"
    assert figure == (300, 0, 0)


def test_a_poison_slice_is_reported_failed_within_seconds(
    plain_cluster: PlainCluster, store: SliceStore
) -> None:
    plain_cluster.start_scheduler()
    plain_cluster.add_worker()
    plain_cluster.add_worker()
    uid = put_series(store, "1.2.302", ct_planes(60, 16))
    with connect_to(plain_cluster, 2) as client:
        start = time.monotonic()
        summary = run_job(client, store, "test_crash_on", {"index": 17}, [uid]).wait(180)
        seconds = time.monotonic() - start
    print(f"poison slice reported failed after {seconds:.1f} s; {summary.done} other slices done")
    assert (summary.status, summary.done, summary.failed) == ("done", 59, 1)
    [failure] = summary.failures
    assert failure.index == 17
    assert "worker process died each time it processed this slice, also alone" in failure.error
    assert exactly_once(summary.result_paths[uid]) == (59, 1, 0)


def test_no_workers_left_stops_the_job_instead_of_waiting_forever(
    plain_cluster: PlainCluster, store: SliceStore
) -> None:
    plain_cluster.start_scheduler()
    plain_cluster.add_worker(nanny=False)
    uid = put_series(store, "1.2.303", ct_planes(100, 16))
    with connect_to(plain_cluster, 1) as client:
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
        [worker] = client.scheduler_info()["workers"]
        plain_cluster.kill_worker_process(client, worker)
        start = time.monotonic()
        with pytest.raises(NoWorkersError, match=r"no workers for 3 s.*run the same job again") as caught:
            job.wait(60)
        print(f"no workers: job stopped {time.monotonic() - start:.1f} s after the last worker died")
    summary = caught.value.summary
    assert summary is not None
    assert summary.status == "failed"
    assert 5 <= summary.done < 100
    assert store.job(summary.job_id).status == "failed"


def test_scheduler_lost_mid_job_then_resume_without_gaps_or_duplicates(
    tmp_path: Path, store: SliceStore
) -> None:
    uid = put_series(store, "1.2.304", ct_planes(200, 16))
    params = {"cost_s": 0.01}
    first = PlainCluster(tmp_path / "first")
    (tmp_path / "first").mkdir()
    try:
        first.start_scheduler()
        first.add_worker()
        first.add_worker()
        with connect_to(first, 2) as client:
            recorder = Recorder()
            job = run_job(client, store, "test_logged_copy", params, [uid], on_progress=recorder)
            recorder.wait_for(lambda e: e.done >= 40)
            first.kill_scheduler()
            with pytest.raises(SchedulerLostError, match="lost the connection to the Dask scheduler"):
                job.wait(60)
    finally:
        first.stop()
    done_before = exactly_once(job.result_paths[uid])[0]
    second = PlainCluster(tmp_path / "second")
    (tmp_path / "second").mkdir()
    try:
        second.start_scheduler()
        second.add_worker()
        second.add_worker()
        with connect_to(second, 2) as client:
            summary = run_job(client, store, "test_logged_copy", params, [uid]).wait(180)
    finally:
        second.stop()
    figure = exactly_once(summary.result_paths[uid])
    print(f"scheduler lost at {done_before}/200; after resume done, gaps, duplicates = {figure}")
    assert summary.resumed == done_before
    assert figure == (200, 0, 0)


def test_a_worker_that_cannot_see_the_store_gets_the_pixels_shipped(
    plain_cluster: PlainCluster, store: SliceStore
) -> None:
    unshare = shutil.which("unshare")
    probe = subprocess.run(
        [unshare or "unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        check=False,
    )
    if unshare is None or probe.returncode != 0:
        pytest.skip("a private mount namespace (unshare --mount, needs root) stands in for another machine")
    # The worker runs with an empty folder mounted over the store: like a machine without it.
    hide = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount -t tmpfs none "{store.root}" && exec "$@"', "sh"]  # fmt: skip
    uid = put_series(store, "1.2.305", ct_planes(12, 16))
    plain_cluster.start_scheduler()
    plain_cluster.add_worker(prefix=tuple(hide))
    with connect_to(plain_cluster, 1) as client:
        assert list(client.run(os.path.exists, str(store.series_path(uid))).values()) == [False]
        summary = run_job(client, store, "sobel_edges", {}, [uid]).wait(120)
    assert summary.done == 12
    reader = ResultReader(summary.result_paths[uid])
    from pacslab.processing import registry

    expected = registry.get("sobel_edges")(store.read_slice(uid, 6, rescaled=True))
    np.testing.assert_allclose(reader.read(6), expected, rtol=1e-6)


def _certificates(folder: Path) -> dict[str, str]:
    """A CA and one certificate for 127.0.0.1 signed by it (scheduler, workers and client share it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (Debian package 'openssl')")
    ca_key, ca, key, csr, cert = (
        str(folder / n) for n in ("ca.key", "ca.pem", "key.pem", "req.csr", "cert.pem")
    )
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=pacslab test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "2", "-extfile", str(ext)],
    ]  # fmt: skip
    for step in steps:
        subprocess.run([openssl, *step], check=True, capture_output=True)
    return {"ca": ca, "cert": cert, "key": key}


def test_tls_scheduler_accepts_configured_certificates_and_refuses_plain_clients(
    tmp_path: Path, store: SliceStore
) -> None:
    certs = _certificates(tmp_path)
    tls = ("--tls-ca-file", certs["ca"], "--tls-cert", certs["cert"], "--tls-key", certs["key"])
    cluster = PlainCluster(tmp_path, extra_scheduler_args=tls)
    cluster.scheme = "tls"
    try:
        cluster.start_scheduler()
        cluster.add_worker(args=tls)
        uid = put_series(store, "1.2.306", ct_planes(6, 16))
        config = {
            "scheduler_tls_ca": certs["ca"],
            "scheduler_tls_cert": certs["cert"],
            "scheduler_tls_key": certs["key"],
        }
        with connect_to(cluster, 1, **config) as client:
            assert run_job(client, store, "sobel_edges", {}, [uid]).wait(120).done == 6
        plain = cluster.address.replace("tls://", "tcp://")
        with pytest.raises(dask_cluster.ClusterError, match="cannot reach the Dask scheduler"):
            dask_cluster.connect(Config(scheduler_address=plain), timeout=3)
    finally:
        cluster.stop()
