"""Errors a job can end with; each message says what to do next."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pacslab.jobs.progress import JobSummary

__all__ = [
    "JobError",
    "NoWorkersError",
    "ProcessorNotOnWorkersError",
    "SchedulerLostError",
    "StoreNotReadableError",
]


class JobError(Exception):
    """A job stopped before every slice was tried; finished slices stay written.

    ``summary`` holds the counts at the moment it stopped (``None`` before it started).
    """

    summary: JobSummary | None = None


class NoWorkersError(JobError):
    """The cluster had no workers for longer than the job's ``no_workers_timeout``."""


class SchedulerLostError(JobError):
    """The connection to the Dask scheduler was lost while the job ran."""


class ProcessorNotOnWorkersError(JobError):
    """Some workers do not have the processor (or have another version of it)."""


class StoreNotReadableError(JobError):
    """The client could not read a series it had to ship to workers that cannot see the store."""
