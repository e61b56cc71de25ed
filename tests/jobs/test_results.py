"""Job result files: SWMR reading while a job writes, done marks, provenance, resume, recovery."""

from __future__ import annotations

import multiprocessing as mp
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pacslab.store.results import (
    ResultBusyError,
    ResultFileError,
    ResultMismatchError,
    ResultNotFoundError,
    ResultNotReadyError,
    ResultReader,
    ResultWriter,
)


def provenance(n: int, **changes: Any) -> dict[str, Any]:
    return {
        "job_id": "gaussian_denoise-0123456789ab",
        "processor": "gaussian_denoise",
        "processor_version": "1.0",
        "params": {"sigma": 2.0},
        "series_uid": "1.2.3",
        "sop_instance_uids": [f"1.2.3.{i}" for i in range(n)],
        **changes,
    }


def slice_value(index: int) -> np.ndarray:
    return np.full((8, 8), index, dtype=np.float32)


def test_written_slices_read_back_with_provenance(tmp_path: Path) -> None:
    path = tmp_path / "job" / "1.2.3.h5"
    with ResultWriter(path, "image", 5, (8, 8), np.float32, provenance(5)) as writer:
        writer.write_many([(0, slice_value(0)), (3, slice_value(3))])
        assert writer.write(3, slice_value(99)) is False  # never written twice
    reader = ResultReader(path)
    np.testing.assert_array_equal(reader.done_mask(), [True, False, False, True, False])
    np.testing.assert_array_equal(reader.read(3), slice_value(3))
    np.testing.assert_array_equal(reader.write_counts(), [1, 0, 0, 1, 0])
    with pytest.raises(ResultNotReadyError, match=r"slice 1 of 1\.2\.3\.h5 is not done yet"):
        reader.read(1)
    meta = reader.provenance
    assert meta["processor"] == "gaussian_denoise"
    assert meta["processor_version"] == "1.0"
    assert meta["params"] == {"sigma": 2.0}
    assert meta["sop_instance_uids"][4] == "1.2.3.4"
    assert meta["status"] == "done"
    assert meta["started"] <= meta["finished"]
    assert meta["pacslab_version"]
    assert meta["format_version"] == 1


def test_masks_and_measurements(tmp_path: Path) -> None:
    with ResultWriter(tmp_path / "m.h5", "mask", 2, (4, 4), bool, provenance(2)) as writer:
        writer.write(1, np.eye(4, dtype=bool))
    assert ResultReader(tmp_path / "m.h5").read(1).dtype == bool
    table = np.dtype([("area_mm2", "f8"), ("count", "f8")])
    with ResultWriter(tmp_path / "t.h5", "measurements", 3, (), table, provenance(3)) as writer:
        writer.write(2, {"area_mm2": 12.5, "count": 2.0})
        writer.write(0, {"area_mm2": 1.0, "count": 1.0})
    frame = ResultReader(tmp_path / "t.h5").measurements()
    assert list(frame.index) == [0, 2]
    assert list(frame.columns) == ["sop_instance_uid", "area_mm2", "count"]
    assert frame.loc[2, "area_mm2"] == 12.5
    assert frame.loc[2, "sop_instance_uid"] == "1.2.3.2"


def test_failures_keep_their_traceback_until_the_slice_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    with ResultWriter(path, "image", 3, (8, 8), np.float32, provenance(3)) as writer:
        writer.write_failure(1, "Traceback ...\nValueError: bad slice")
        writer.write_failure(2, "x" * 10_000 + "END")
    reader = ResultReader(path)
    errors = reader.errors()
    assert errors[1].endswith("ValueError: bad slice")
    assert errors[2].endswith("END")  # the end of a long traceback is kept
    with ResultWriter.open_existing(path, provenance(3)) as writer:
        writer.write(1, slice_value(1))
    assert set(ResultReader(path).errors()) == {2}


def test_reopening_resumes_and_checks_it_is_the_same_job(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    with ResultWriter(path, "image", 4, (8, 8), np.float32, provenance(4)) as writer:
        writer.write_many([(0, slice_value(0)), (1, slice_value(1))])
    with ResultWriter.open_existing(path, provenance(4)) as writer:
        np.testing.assert_array_equal(writer.done_mask(), [True, True, False, False])
        assert writer.write_many([(1, slice_value(1)), (2, slice_value(2))]) == 1
    np.testing.assert_array_equal(ResultReader(path).write_counts(), [1, 1, 1, 0])
    with pytest.raises(ResultMismatchError, match="params"):
        ResultWriter.open_existing(path, provenance(4, params={"sigma": 3.0}))
    with pytest.raises(ResultMismatchError, match="other instances"):
        ResultWriter.open_existing(path, provenance(4, sop_instance_uids=["9"] * 4))
    with pytest.raises(ResultMismatchError, match="holds image"):
        ResultWriter(path, "image", 4, (16, 16), np.float32, provenance(4))


def test_a_file_not_stored_one_slice_per_chunk_is_not_resumed(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "c.h5"
    with ResultWriter(path, "image", 4, (8, 8), np.float32, provenance(4)) as writer:
        writer.write(0, slice_value(0))
    # The same file with its data rechunked, as another tool might leave it.
    with h5py.File(path, "r+") as f:
        data = f["data"][:]
        del f["data"]
        f.create_dataset("data", data=data, chunks=(2, 8, 8))
    with pytest.raises(ResultMismatchError, match="not one uncompressed chunk per slice"):
        ResultWriter.open_existing(path, provenance(4))


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.h5"
    with (
        ResultWriter(path, "image", 2, (8, 8), np.float32, provenance(2)),
        pytest.raises(ResultBusyError, match="being written by another job"),
    ):
        ResultWriter.open_existing(path, provenance(2))
    ResultWriter.open_existing(path, provenance(2)).close()


def test_reading_what_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ResultNotFoundError, match="has not written a slice yet"):
        ResultReader(tmp_path / "none.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ResultFileError, match="cannot open result file"):
        ResultReader(tmp_path / "junk.h5").done_mask()
    with pytest.raises(ResultFileError, match="kind must be one of"):
        ResultWriter(tmp_path / "k.h5", "movie", 1, (1, 1), np.float32, provenance(1))  # type: ignore[arg-type]


def _watch_file(path: str, ready: Any, seen: Any, resume: Any) -> None:
    """Reader process: wait for the writer's signal, then report what it sees."""
    ready.wait(60)
    reader = ResultReader(path)
    done = reader.done_mask()
    value = reader.read(9)
    seen.put((int(done.sum()), len(done), bool(done[9]), float(value.mean())))
    resume.set()


def test_a_viewer_sees_slice_10_done_while_the_rest_are_queued(tmp_path: Path) -> None:
    path = tmp_path / "live.h5"
    n = 910
    ctx = mp.get_context("spawn")
    ready, resume, seen = ctx.Event(), ctx.Event(), ctx.Queue()
    viewer = ctx.Process(target=_watch_file, args=(str(path), ready, seen, resume))
    viewer.start()
    try:
        with ResultWriter(path, "image", n, (8, 8), np.float32, provenance(n)) as writer:
            writer.write_many([(i, slice_value(i)) for i in range(10)])
            ready.set()
            assert resume.wait(60), "the viewer process did not read the file"
            writer.write_many([(i, slice_value(i)) for i in range(10, 20)])
        assert seen.get(timeout=5) == (10, n, True, 9.0)
    finally:
        viewer.join(30)
    assert viewer.exitcode == 0


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from pacslab.store.results import ResultWriter
    path, n = sys.argv[1], int(sys.argv[2])
    prov = {"job_id": "j", "processor": "p", "processor_version": "1", "params": {}, "series_uid": "1.2.3",
            "sop_instance_uids": [f"1.2.3.{i}" for i in range(n)]}
    writer = ResultWriter(path, "image", n, (32, 32), np.float32, prov)
    for i in range(n):
        writer.write(i, np.full((32, 32), i, dtype=np.float32))
        print(i, flush=True)  # acknowledged: data and done mark flushed
    input()  # wait to be killed
    """
)


@pytest.mark.parametrize("kill_after", [0, 7, 40])
def test_a_killed_writer_leaves_every_acknowledged_slice_and_the_job_resumes(
    tmp_path: Path, kill_after: int
) -> None:
    path = tmp_path / "killed.h5"
    n = 60
    with subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(path), str(n)],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        acknowledged = -1
        while acknowledged < kill_after:
            acknowledged = int(proc.stdout.readline())
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    reader = ResultReader(path)  # readable with SWMR as it was left
    done = reader.done_mask()
    assert done[: acknowledged + 1].all()
    for i in np.flatnonzero(done):
        np.testing.assert_array_equal(reader.read(int(i)), np.full((32, 32), i, dtype=np.float32))
    prov = provenance(n, job_id="j", processor="p", processor_version="1", params={})
    with ResultWriter.open_existing(path, prov) as writer:  # copies the file, then writes on
        np.testing.assert_array_equal(writer.done_mask(), done)
        writer.write_many([(i, np.full((32, 32), i, dtype=np.float32)) for i in range(n) if not done[i]])
    assert ResultReader(path).done_mask().all()
    assert (ResultReader(path).write_counts() == 1).all()
