"""Processing jobs on Dask: batches, one result writer, progress, cancel, retry and resume.

>>> job = run_job(client, store, "otsu_mask", {}, [series_uid], progress_bar=True)  # doctest: +SKIP
>>> job.wait().done  # doctest: +SKIP
"""

from pacslab.jobs.errors import (
    JobError,
    NoWorkersError,
    ProcessorNotOnWorkersError,
    SchedulerLostError,
    StoreNotReadableError,
)
from pacslab.jobs.planning import job_id_for, plan_batch_size
from pacslab.jobs.progress import (
    JobProgress,
    JobStatus,
    JobSummary,
    SliceFailure,
    TextProgressBar,
    format_progress,
)
from pacslab.jobs.runner import DEFAULT_NO_WORKERS_TIMEOUT_S, Job, run_job
from pacslab.jobs.tasks import BatchResult, BatchSpec, SeriesInput, process_batch

__all__ = [
    "DEFAULT_NO_WORKERS_TIMEOUT_S",
    "BatchResult",
    "BatchSpec",
    "Job",
    "JobError",
    "JobProgress",
    "JobStatus",
    "JobSummary",
    "NoWorkersError",
    "ProcessorNotOnWorkersError",
    "SchedulerLostError",
    "SeriesInput",
    "SliceFailure",
    "StoreNotReadableError",
    "TextProgressBar",
    "format_progress",
    "job_id_for",
    "plan_batch_size",
    "process_batch",
    "run_job",
]
