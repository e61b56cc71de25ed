"""Errors of dask_cluster, each saying what to do."""

from __future__ import annotations

__all__ = ["ClusterError"]


class ClusterError(Exception):
    """The Dask cluster cannot be reached or started, or its workers cannot run pacslab."""
