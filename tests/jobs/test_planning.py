"""Pure planning decisions: batch size, job identity, neighbour reads."""

from __future__ import annotations

from pacslab.jobs import job_id_for, plan_batch_size
from pacslab.jobs.planning import MAX_BATCH_BYTES, TARGET_BATCH_SECONDS, needed_indices


def test_before_any_timing_a_batch_is_a_share_of_what_is_left() -> None:
    # Such batches carry a time budget (the runner sets it), so a slow processor returns early.
    assert plan_batch_size(None, remaining=1000, threads=2, bytes_per_slice=1000) == 250
    assert plan_batch_size(None, remaining=1, threads=2, bytes_per_slice=1000) == 1
    assert plan_batch_size(None, remaining=1000, threads=2, bytes_per_slice=MAX_BATCH_BYTES // 10) == 10


def test_slow_slices_get_batches_of_about_the_target_duration() -> None:
    size = plan_batch_size(0.01, remaining=10_000, threads=2, bytes_per_slice=1000)
    assert size == round(TARGET_BATCH_SECONDS / 0.01)


def test_fast_slices_are_capped_so_every_thread_gets_several_batches() -> None:
    assert plan_batch_size(0.001, remaining=1000, threads=2, bytes_per_slice=100) == 250


def test_work_shorter_than_a_round_trip_goes_in_one_batch() -> None:
    assert plan_batch_size(1e-5, remaining=1000, threads=2, bytes_per_slice=100) == 1000


def test_large_slices_are_capped_by_memory() -> None:
    size = plan_batch_size(1e-5, remaining=100_000, threads=1, bytes_per_slice=16 * 2**20)
    assert size == MAX_BATCH_BYTES // (16 * 2**20)


def test_the_last_batches_shrink_but_not_below_the_round_trip() -> None:
    assert plan_batch_size(0.001, remaining=8, threads=2, bytes_per_slice=100) == 8
    assert plan_batch_size(0.001, remaining=200, threads=2, bytes_per_slice=100) == 100
    assert plan_batch_size(0.2, remaining=4, threads=2, bytes_per_slice=100) == 1


def test_very_slow_slices_go_one_per_task() -> None:
    assert plan_batch_size(30.0, remaining=50, threads=2, bytes_per_slice=1000) == 1


def test_job_id_is_stable_and_depends_on_everything_that_changes_results() -> None:
    base = job_id_for("gaussian_denoise", "1.0", {"sigma": 2.0}, ["1.2", "1.3"])
    assert base == job_id_for("gaussian_denoise", "1.0", {"sigma": 2.0}, ["1.3", "1.2"])
    assert base.startswith("gaussian_denoise-")
    others = {
        job_id_for("gaussian_denoise", "1.1", {"sigma": 2.0}, ["1.2", "1.3"]),
        job_id_for("gaussian_denoise", "1.0", {"sigma": 3.0}, ["1.2", "1.3"]),
        job_id_for("gaussian_denoise", "1.0", {"sigma": 2.0}, ["1.2"]),
    }
    assert base not in others
    assert len(others) == 3


def test_needed_indices_clamp_at_the_ends() -> None:
    assert needed_indices([0, 1], 1, 10) == [0, 1, 2]
    assert needed_indices([9], 2, 10) == [7, 8, 9]
    assert needed_indices([4], 0, 10) == [4]
