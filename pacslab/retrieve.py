"""Retrieve from a PACS straight into the store: every received instance goes to an ingest.

What arrived before a retrieve failed midway is still stored (the PACS layer delivers it
and says so with :class:`~pacslab.pacs.RetrieveIncomplete`); the error is returned with the
report so the caller (a widget, the batch pipeline) can show both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pacslab.ingest import Ingest, IngestReport
from pacslab.pacs import PacsClient, ReceivedInstance, RetrieveIncomplete, RetrieveProgress, RetrieveResult
from pacslab.store import SeriesInfo, SliceStore

__all__ = ["NON_IMAGE_MODALITIES", "NoStudyFound", "RetrieveOutcome", "ensure_stored", "retrieve_into_store"]

# Series of these modalities hold results or documents, not images to process (a SEG sent back
# to the PACS is part of the study it segments).
NON_IMAGE_MODALITIES = ("SEG", "SR", "KO", "PR", "DOC", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD")


@dataclass(frozen=True)
class RetrieveOutcome:
    """What a retrieve brought: the PACS's account, the ingest's, and the error if it stopped."""

    result: RetrieveResult | None
    report: IngestReport
    bytes_received: int
    incomplete: RetrieveIncomplete | None = None


def retrieve_into_store(
    pacs: PacsClient,
    store: SliceStore,
    study_uid: str,
    series_uid: str | None = None,
    *,
    on_progress: Callable[[RetrieveProgress], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    cancel_event: threading.Event | None = None,
) -> RetrieveOutcome:
    """Retrieve a study (or one of its series) and ingest every instance into ``store``.

    Raises
    ------
    PacsError
        The PACS refused or could not be reached; nothing was received.
    IngestError
        Storing failed as a whole.
    """
    received = 0
    lock = threading.Lock()

    # The PACS keeps every instance: no fsync per instance, only of what is finally stored.
    with Ingest(store, durable=False) as ingest:

        def on_instance(instance: ReceivedInstance) -> None:
            nonlocal received
            ingest.add_encoded(
                instance.data,
                instance.transfer_syntax_uid,
                instance.sop_class_uid,
                instance.sop_instance_uid,
            )
            with lock:
                received += len(instance.data)
                total = received
            if on_bytes is not None:
                on_bytes(total)

        incomplete: RetrieveIncomplete | None = None
        result: RetrieveResult | None
        try:
            if series_uid is None:
                result = pacs.retrieve_study(
                    study_uid, on_instance=on_instance, on_progress=on_progress, cancel_event=cancel_event
                )
            else:
                result = pacs.retrieve_series(
                    study_uid,
                    series_uid,
                    on_instance=on_instance,
                    on_progress=on_progress,
                    cancel_event=cancel_event,
                )
        except RetrieveIncomplete as exc:
            # Keep what arrived: the ingest still finishes on leaving this block.
            incomplete = exc
            result = exc.result
    assert ingest.report is not None
    return RetrieveOutcome(result, ingest.report, received, incomplete)


class NoStudyFound(LookupError):
    """The PACS holds no study matching the filters; the message names them."""


def ensure_stored(
    pacs: PacsClient,
    store: SliceStore,
    *,
    exclude_modalities: Sequence[str] = NON_IMAGE_MODALITIES,
    **filters: Any,
) -> list[SeriesInfo]:
    """The stored image series of the studies matching ``filters``, retrieving studies the store lacks.

    A study counts as stored when the store holds at least as many of its instances as the
    PACS lists (or, when the PACS gives no count, any series of it).

    Parameters
    ----------
    pacs : PacsClient
    store : SliceStore
    exclude_modalities : sequence of str
        Series of these modalities are left out of the result (they are still retrieved).
    **filters
        Study-level filters of :meth:`PacsClient.find_studies` (``patient_name="Doe*"``...).

    Raises
    ------
    NoStudyFound
        Nothing on the PACS matches.
    RetrieveIncomplete
        A study arrived only in part (what arrived is stored).
    """
    studies = list(pacs.find_studies(**filters))
    if not studies:
        shown = ", ".join(f"{k}={v!r}" for k, v in filters.items()) or "no filter"
        raise NoStudyFound(f"no study on {pacs.node.name} matches {shown}; check the filters")
    series: list[SeriesInfo] = []
    for study in studies:
        stored = store.list_series(study.study_uid)
        held = sum(s.n_slices * max(1, len(s.channels)) for s in stored)
        lacking = held < study.n_instances if study.n_instances is not None else not stored
        if lacking:
            outcome = retrieve_into_store(pacs, store, study.study_uid)
            if outcome.incomplete is not None:
                raise outcome.incomplete
            stored = store.list_series(study.study_uid)
        series.extend(s for s in stored if s.modality not in exclude_modalities)
    return series
