"""The worker side of a job, called directly: per-slice retries and failures, inputs, visibility."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from pacslab.jobs import BatchSpec, SeriesInput, process_batch
from pacslab.jobs.spool import SPOOL_MIN_BYTES, SpooledOutput
from pacslab.jobs.tasks import mark_cancelled
from pacslab.store import SliceStore
from tests.jobs import processors
from tests.jobs.conftest import ct_planes, put_series


def spec_for(
    series: SeriesInput, indices: tuple[int, ...], proc: str, params: dict, retries: int = 2
) -> BatchSpec:
    return BatchSpec(
        series=series,
        indices=indices,
        sop_instance_uids=tuple(f"uid{i}" for i in indices),
        processor=proc,
        version="1" if proc.startswith("test_") else "1.0",
        params=params,
        retries=retries,
    )


def shipped(n: int, size: int = 8) -> dict[int, np.ndarray]:
    return {i: np.full((1, size, size), float(i), dtype=np.float32) for i in range(n)}


def test_a_failing_slice_is_retried_then_reported_and_the_others_go_on(tmp_path: Path) -> None:
    series = SeriesInput("1.2", str(tmp_path / "absent.h5"), n_slices=6)
    params = processors.flaky.validate({"state_dir": str(tmp_path), "always": 2, "once": 4})
    result = process_batch(spec_for(series, tuple(range(6)), "test_flaky", params, retries=2), shipped(6))
    assert [i for i, _ in result.outputs] == [0, 1, 3, 4, 5]
    np.testing.assert_array_equal(dict(result.outputs)[4], np.full((8, 8), 5.0))
    [(index, error)] = result.failures
    assert index == 2
    assert "ValueError: slice 2 is unreadable by this processor" in error
    assert (tmp_path / "2.attempts").read_text() == "3"  # 1 + 2 retries
    assert (tmp_path / "4.attempts").read_text() == "2"
    assert result.worker == "local"


def test_without_retries_a_hiccup_fails_the_slice(tmp_path: Path) -> None:
    series = SeriesInput("1.2", str(tmp_path / "absent.h5"), n_slices=6)
    params = processors.flaky.validate({"state_dir": str(tmp_path), "once": 1})
    result = process_batch(spec_for(series, (1,), "test_flaky", params, retries=0), shipped(6))
    assert [i for i, _ in result.failures] == [1]


def test_a_worker_that_cannot_see_the_store_asks_for_pixels(tmp_path: Path) -> None:
    series = SeriesInput("1.2", str(tmp_path / "elsewhere.h5"), n_slices=3)
    result = process_batch(spec_for(series, (0, 1), "sobel_edges", {}))
    assert result.needs_pixels
    assert not result.outputs


def test_reading_the_store_applies_each_planes_rescale(store: SliceStore) -> None:
    magnitude = np.full((3, 8, 8), 100, dtype=np.uint16)
    phase = np.full((3, 8, 8), 2000, dtype=np.uint16)
    uid = put_series(
        store,
        "1.2.99",
        np.stack([magnitude, phase], axis=1),
        channels=("magnitude", "phase"),
        rescale=((1.0, 0.0), (0.001, -1.0)),
    )
    series = SeriesInput(uid, str(store.series_path(uid)), n_slices=3, channels=(0, 1))
    result = process_batch(
        spec_for(series, (1,), "complex_image", {"domain": "image", "shifted": True, "phase_scale": 1.0})
    )
    [(_, value)] = result.outputs
    np.testing.assert_allclose(np.abs(value), 100.0, rtol=1e-5)
    np.testing.assert_allclose(np.angle(value), 1.0, rtol=1e-4)  # 2000 * 0.001 - 1 radians


def test_a_batch_past_its_time_budget_starts_no_further_slice_and_hands_them_back(tmp_path: Path) -> None:
    series = SeriesInput("1.2", str(tmp_path / "absent.h5"), n_slices=6)
    spec = replace(spec_for(series, (1, 2, 3, 4), "sobel_edges", {}), seconds_budget=1e-9)
    result = process_batch(spec, shipped(6))
    # The first slice always runs, whatever the budget.
    assert [i for i, _ in result.outputs] == [1]
    assert (result.unprocessed, result.processed) == ((2, 3, 4), 1)
    unlimited = process_batch(replace(spec, seconds_budget=0.0), shipped(6))
    assert ([i for i, _ in unlimited.outputs], unlimited.unprocessed) == ([1, 2, 3, 4], ())


def test_neighbours_are_read_around_each_slice_and_clamped(store: SliceStore) -> None:
    planes = ct_planes(6, 16)
    uid = put_series(store, "1.2.98", planes)
    series = SeriesInput(uid, str(store.series_path(uid)), n_slices=6)
    result = process_batch(spec_for(series, (0, 3, 5), "slab_average", {}))
    hu = planes.astype(np.float32) - 1024
    expected = {
        0: (hu[0] + hu[0] + hu[1]) / 3,
        3: (hu[2] + hu[3] + hu[4]) / 3,
        5: (hu[4] + hu[5] + hu[5]) / 3,
    }
    for index, value in result.outputs:
        np.testing.assert_allclose(value, expected[index], atol=1e-3)
    assert result.seconds > 0


def test_large_outputs_go_to_a_visible_spool_and_stay_with_the_result_otherwise(tmp_path: Path) -> None:
    size = 160  # 160 x 160 float32 is above the spool threshold
    assert size * size * 4 >= SPOOL_MIN_BYTES
    series = SeriesInput("1.2", str(tmp_path / "absent.h5"), n_slices=3)
    params = processors.flaky.validate({"state_dir": str(tmp_path)})
    spool = tmp_path / "spool"
    spool.mkdir()
    spec = spec_for(series, (0, 2), "test_flaky", params)
    visible = process_batch(replace(spec, spool=str(spool)), shipped(3, size))
    outputs = dict(visible.outputs)
    assert all(isinstance(v, SpooledOutput) for v in outputs.values())
    assert sorted(p.name for p in spool.iterdir()) == sorted(Path(v.path).name for v in outputs.values())
    np.testing.assert_array_equal(outputs[2].load(), np.full((size, size), 3.0))
    outputs[2].discard()
    assert len(list(spool.iterdir())) == 1
    # A worker on another machine does not see the folder: the arrays travel with the result.
    elsewhere = process_batch(replace(spec, spool=str(tmp_path / "not-here")), shipped(3, size))
    np.testing.assert_array_equal(dict(elsewhere.outputs)[0], np.full((size, size), 1.0))
    # Small outputs never go to the spool.
    small = process_batch(replace(spec, spool=str(spool)), shipped(3))
    assert all(isinstance(v, np.ndarray) for _, v in small.outputs)


def test_a_batch_of_a_cancelled_job_does_not_start(tmp_path: Path) -> None:
    series = SeriesInput("1.2", str(tmp_path / "absent.h5"), n_slices=3)
    params = processors.flaky.validate({"state_dir": str(tmp_path)})
    spec = replace(spec_for(series, (0, 1), "test_flaky", params), cancel_mark="job-x-1")
    assert process_batch(spec, shipped(3)).outputs
    mark_cancelled("job-x-1")
    result = process_batch(spec, shipped(3))
    assert result.cancelled
    assert not result.outputs
    assert (tmp_path / "0.attempts").read_text() == "1"  # slice 0 did not run again
