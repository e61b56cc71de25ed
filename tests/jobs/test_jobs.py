"""Jobs on a real 2-worker Dask cluster: results, progress, retries, cancel, resume, errors."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from distributed import Client

import dask_cluster
from pacslab.jobs import ProcessorNotOnWorkersError, run_job
from pacslab.processing import ParameterError, UnknownProcessorError, processor, registry
from pacslab.store import SliceStore
from pacslab.store.results import ResultBusyError, ResultNotReadyError, ResultReader
from tests.jobs.conftest import Recorder, ct_planes, put_series

CT = "1.2.826.0.1.3680043.10.1338.1"


def test_a_job_writes_what_the_processor_computes(client: Client, ct_store: tuple[SliceStore, str]) -> None:
    store, uid = ct_store
    recorder = Recorder()
    job = run_job(client, store, "otsu_mask", {"fill_holes": False}, [uid], on_progress=recorder)
    summary = job.wait(120)
    assert (summary.status, summary.done, summary.failed, summary.total) == ("done", 24, 0, 24)
    assert summary.duplicates == 0
    reader = ResultReader(job.result_paths[uid])
    assert reader.done_mask().all()
    assert (reader.write_counts() == 1).all()
    for index in (0, 11, 23):
        expected = registry.get("otsu_mask")(store.read_slice(uid, index, rescaled=True), fill_holes=False)
        np.testing.assert_array_equal(reader.read(index), expected)
    meta = reader.provenance
    assert (meta["processor"], meta["processor_version"], meta["status"]) == ("otsu_mask", "1.0", "done")
    assert meta["params"] == {"fill_holes": False, "largest_component": True}
    assert meta["sop_instance_uids"] == list(store.series(uid).sop_instance_uids)
    record = store.job(summary.job_id)
    assert (record.status, record.done, record.total, record.processor) == ("done", 24, 24, "otsu_mask")
    # Progress: counts only grow, the last event is final, both workers' counts add up.
    dones = [e.done for e in recorder.events]
    assert dones == sorted(dones)
    last = recorder.events[-1]
    assert (last.finished, last.status, last.done, last.eta_s) == (True, "done", 24, 0.0)
    assert sum(last.per_worker.values()) == 24
    assert job.progress.finished


def test_measurements_job_gives_a_table(client: Client, ct_store: tuple[SliceStore, str]) -> None:
    store, uid = ct_store
    summary = run_job(client, store, "region_measurements", {}, [uid]).wait(120)
    frame = ResultReader(summary.result_paths[uid]).measurements()
    assert len(frame) == 24
    spacing = store.series(uid).pixel_spacing
    from pacslab.processing import SliceContext

    direct = registry.get("region_measurements")(
        store.read_slice(uid, 12, rescaled=True), context=SliceContext(pixel_spacing=spacing)
    )
    assert frame.loc[12, ["area_mm2", "mean_hu", "std_hu", "count"]].to_dict() == pytest.approx(direct)


def test_retries_then_per_slice_failure_never_fail_the_job(
    client: Client, ct_store: tuple[SliceStore, str], tmp_path: Path
) -> None:
    store, uid = ct_store
    params = {"state_dir": str(tmp_path), "always": 5, "once": 9}
    summary = run_job(client, store, "test_flaky", params, [uid], retries=1).wait(120)
    assert (summary.status, summary.done, summary.failed) == ("done", 23, 1)
    [failure] = summary.failures
    assert (failure.index, failure.series_uid) == (5, uid)
    assert failure.sop_instance_uid == store.series(uid).sop_instance_uids[5]
    assert "ValueError: slice 5 is unreadable by this processor" in failure.error
    reader = ResultReader(summary.result_paths[uid])
    assert reader.failed_mask().nonzero()[0].tolist() == [5]
    assert "slice 5 is unreadable" in reader.errors()[5]
    assert reader.done_mask()[9]
    assert (tmp_path / "5.attempts").read_text() == "2"
    # Run again: only the failed slice is tried, and it fails again.
    again = run_job(client, store, "test_flaky", params, [uid], retries=1).wait(120)
    assert (again.resumed, again.done, again.failed) == (23, 23, 1)
    assert (tmp_path / "5.attempts").read_text() == "4"
    assert (tmp_path / "9.attempts").read_text() == "2"


def test_cancel_starts_no_batch_afterwards_keeps_written_slices_and_resume_finishes(
    client: Client, store: SliceStore, tmp_path: Path
) -> None:
    uid = put_series(store, "1.2.77", ct_planes(40, 16))
    params = {"log_dir": str(tmp_path), "cost_s": 0.05}
    recorder = Recorder()
    job = run_job(client, store, "test_logged_copy", params, [uid], on_progress=recorder, batch_size=1)
    recorder.wait_for(lambda e: e.done >= 4)
    job.cancel()
    cancelled_at = time.time()
    summary = job.wait(30)
    assert summary.status == "cancelled"
    # A barrier: a task sent to each single-thread worker now runs only after every batch that
    # worker had already been given has started and ended.
    for address in client.scheduler_info()["workers"]:
        client.submit(time.time, workers=[address], allow_other_workers=False, pure=False).result(60)
    starts = [float(p.read_text().split()[0]) for p in tmp_path.glob("*.start")]
    assert max(starts) < cancelled_at, "a batch started after cancel() returned"
    reader = ResultReader(job.result_paths[uid])
    written = int(reader.done_mask().sum())
    assert 4 <= written < 40
    assert reader.provenance["status"] == "cancelled"
    assert store.job(summary.job_id).status == "cancelled"
    resumed = run_job(client, store, "test_logged_copy", params, [uid], batch_size=1).wait(120)
    assert (resumed.status, resumed.resumed, resumed.done) == ("done", written, 40)
    assert (ResultReader(job.result_paths[uid]).write_counts() == 1).all()


def test_a_thousand_tiny_slices_are_each_written_once_in_few_batches(
    client: Client, store: SliceStore
) -> None:
    uid = put_series(store, "1.2.1000", np.arange(1000 * 64, dtype=np.uint16).reshape(1000, 8, 8) % 4096)
    summary = run_job(client, store, "window", {}, [uid]).wait(120)
    assert (summary.done, summary.failed, summary.duplicates) == (1000, 0, 0)
    # Batches shrink towards the end so the workers finish together, but stay far fewer than slices.
    assert summary.batch_size >= 4
    assert summary.batches < 150
    reader = ResultReader(summary.result_paths[uid])
    assert (reader.write_counts() == 1).all()


def test_slices_a_slow_first_batch_hands_back_are_each_done_once(client: Client, store: SliceStore) -> None:
    # 0.26 s of CPU a slice: the first batches (a quarter of what is left, before any timing:
    # 3, 3, 2, 2 slices) stop at their 0.5 s budget after two slices and hand the third back.
    uid = put_series(store, "1.2.78", ct_planes(12, 16))
    summary = run_job(client, store, "test_busy_copy", {"cost_s": 0.26}, [uid]).wait(120)
    assert (summary.status, summary.done, summary.failed, summary.duplicates) == ("done", 12, 0, 0)
    reader = ResultReader(summary.result_paths[uid])
    assert (reader.write_counts() == 1).all()
    hu = ct_planes(12, 16).astype(np.float32) - 1024
    for index in range(12):
        np.testing.assert_array_equal(reader.read(index), hu[index])


def test_neighbours_and_channels_jobs(client: Client, store: SliceStore) -> None:
    planes = ct_planes(8, 16)
    uid = put_series(store, "1.2.55", planes)
    summary = run_job(client, store, "slab_average", {}, [uid]).wait(120)
    hu = planes.astype(np.float32) - 1024
    np.testing.assert_allclose(
        ResultReader(summary.result_paths[uid]).read(4), hu[3:6].mean(axis=0), atol=1e-3
    )
    mr = np.stack([np.full((4, 8, 8), 50, np.uint16), np.full((4, 8, 8), 3000, np.uint16)], axis=1)
    mr_uid = put_series(store, "1.2.56", mr, channels=("magnitude", "phase"), rescale=((1, 0), (0.001, -1.0)))
    summary = run_job(client, store, "complex_image", {}, [mr_uid]).wait(120)
    value = ResultReader(summary.result_paths[mr_uid]).read(2)
    assert value.dtype == np.complex64
    np.testing.assert_allclose(np.angle(value), 2.0, rtol=1e-4)


def test_several_series_each_get_a_result_file(client: Client, store: SliceStore) -> None:
    a = put_series(store, "1.2.61", ct_planes(5, 16))
    b = put_series(store, "1.2.62", ct_planes(7, 16))
    summary = run_job(client, store, "sobel_edges", {}, [a, b]).wait(120)
    assert summary.done == 12
    assert {uid: ResultReader(p).done_mask().sum() for uid, p in summary.result_paths.items()} == {a: 5, b: 7}
    assert {r.series_uid for r in store.list_jobs() if r.processor == "sobel_edges"} == {a, b}


def test_nothing_is_submitted_when_the_request_is_wrong(
    client: Client, ct_store: tuple[SliceStore, str]
) -> None:
    store, uid = ct_store
    with pytest.raises(ParameterError, match="parameter 'sigma' of processor 'gaussian_denoise'"):
        run_job(client, store, "gaussian_denoise", {"sigma": -2}, [uid])
    with pytest.raises(UnknownProcessorError, match="No processor named 'gausian'"):
        run_job(client, store, "gausian", {}, [uid])
    with pytest.raises(ValueError, match="at least one series"):
        run_job(client, store, "gaussian_denoise", {}, [])
    assert list(store.jobs_dir.iterdir()) == []


def test_a_notebook_processor_missing_on_workers_is_refused_then_registered(
    client: Client, ct_store: tuple[SliceStore, str]
) -> None:
    store, uid = ct_store

    @processor(name="test_negate", version="1")
    def negate(pixels: np.ndarray) -> np.ndarray:
        return -pixels

    try:
        with pytest.raises(ProcessorNotOnWorkersError, match="'test_negate' version 1 is missing on workers"):
            run_job(client, store, "test_negate", {}, [uid])
        dask_cluster.register_processors(client)
        summary = run_job(client, store, "test_negate", {}, [uid]).wait(120)
        assert summary.done == 24
    finally:
        registry._processors.pop("test_negate", None)


def test_the_same_job_twice_at_once_is_refused(client: Client, store: SliceStore, tmp_path: Path) -> None:
    uid = put_series(store, "1.2.88", ct_planes(6, 16))
    params = {"log_dir": "", "cost_s": 0.2}
    job = run_job(client, store, "test_logged_copy", params, [uid], batch_size=1)
    try:
        with pytest.raises(ResultBusyError, match="being written by another job"):
            run_job(client, store, "test_logged_copy", params, [uid])
    finally:
        job.cancel()


def test_a_viewer_reads_finished_slices_while_the_job_writes(client: Client, store: SliceStore) -> None:
    planes = ct_planes(910, 8)
    uid = put_series(store, "1.2.910", planes)
    recorder = Recorder()
    params = {"cost_s": 0.005}
    job = run_job(client, store, "test_logged_copy", params, [uid], on_progress=recorder, batch_size=5)
    try:
        recorder.wait_for(lambda e: e.done >= 10)
        reader = ResultReader(job.result_paths[uid])
        done = reader.done_mask()
        print(f"viewer: {int(done.sum())} slices done while {int((~done).sum())} are not")
        assert done.sum() >= 10
        assert not done[-1]
        first = int(np.flatnonzero(done)[0])
        np.testing.assert_array_equal(reader.read(first), planes[first].astype(np.float32) - 1024)
        with pytest.raises(ResultNotReadyError):
            reader.read(909)
    finally:
        job.cancel()


def _spool_folders() -> list[Path]:
    """Spool folders of jobs of this process (in /dev/shm, else the temp folder)."""
    import tempfile

    roots = [Path("/dev/shm"), Path(tempfile.gettempdir())]
    return [p for root in roots if root.is_dir() for p in root.glob(f"pacslab-spool-{os.getpid()}-*")]


def test_large_outputs_come_back_whole_and_leave_no_spool_behind(
    client: Client, store: SliceStore, tmp_path: Path
) -> None:
    # 160 x 160 float32 outputs go through the spool folder of the job.
    uid = put_series(store, "1.2.160", ct_planes(12, 160))
    before = set(_spool_folders())  # jobs of other tests may still be ending
    summary = run_job(client, store, "gaussian_denoise", {"sigma": 2.0}, [uid]).wait(120)
    assert (summary.status, summary.done, summary.duplicates) == ("done", 12, 0)
    reader = ResultReader(summary.result_paths[uid])
    for index in (0, 7, 11):
        expected = registry.get("gaussian_denoise")(store.read_slice(uid, index, rescaled=True), sigma=2.0)
        np.testing.assert_array_equal(reader.read(index), expected)
    assert set(_spool_folders()) <= before
    # A cancelled job leaves none either (outputs of abandoned batches included).
    recorder = Recorder()
    params = {"log_dir": str(tmp_path), "cost_s": 0.05}
    job = run_job(client, store, "test_logged_copy", params, [uid], on_progress=recorder, batch_size=1)
    recorder.wait_for(lambda e: e.done >= 2)
    job.cancel()
    assert job.wait(30).status == "cancelled"
    assert set(_spool_folders()) <= before
