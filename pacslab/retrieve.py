"""Retrieve from a PACS straight into the store: every received instance goes to an ingest.

What arrived before a retrieve failed midway is still stored (the PACS layer delivers it
and says so with :class:`~pacslab.pacs.RetrieveIncomplete`); the error is returned with the
report so the caller (a widget, the batch pipeline) can show both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from pacslab.ingest import Ingest, IngestReport
from pacslab.pacs import PacsClient, ReceivedInstance, RetrieveIncomplete, RetrieveProgress, RetrieveResult
from pacslab.store import SliceStore

__all__ = ["RetrieveOutcome", "retrieve_into_store"]


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

    with Ingest(store) as ingest:

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
