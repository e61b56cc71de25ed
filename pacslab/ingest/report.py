"""What an ingest tells its caller: progress while it runs, a report when it ends."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from pacslab.ingest.errors import IngestError

__all__ = ["IngestProgress", "IngestReport", "Rejection"]


@dataclass(frozen=True)
class Rejection:
    """A file that was not stored, and the named error saying why."""

    name: str
    error: IngestError


@dataclass(frozen=True)
class IngestProgress:
    """One step of an ingest: files checked ("reading"), then slices written ("writing")."""

    stage: Literal["reading", "writing"]
    done: int
    total: int
    name: str = ""
    series_uid: str = ""


@dataclass
class IngestReport:
    """Series stored or updated, instances accepted, files rejected.

    ``series_uids`` lists every series the accepted files belong to (stored now or already
    complete in the store); ``unchanged`` those that needed no new version;
    ``warnings`` geometry warnings per series (see ``SeriesInfo.geometry_warnings``).
    """

    series_uids: list[str] = field(default_factory=list)
    n_instances: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    warnings: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def rejected_by_error(self) -> dict[str, int]:
        """How many files each kind of error refused."""
        return dict(Counter(type(r.error).__name__ for r in self.rejected))

    def __str__(self) -> str:
        text = f"{self.n_instances} instance(s) in {len(self.series_uids)} series"
        if self.rejected:
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.rejected_by_error().items()))
            text += f"; {len(self.rejected)} file(s) rejected ({kinds})"
        return text
