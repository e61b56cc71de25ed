"""C-GET and C-MOVE from the embedded PACS: every instance arrives, pixel data unchanged."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.dimse_messages import C_CANCEL_RQ
from pynetdicom.events import Event

from pacslab.pacs.embedded import EmbeddedPacs
from tests.embedded.conftest import StudyFacts
from tests.embedded.dimse import (
    PATIENT_ROOT_MOVE,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    associate,
    nodelay,
)

CT, MR, CR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.1"


def _query(level: str, **keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


class Received:
    """What a Storage SCP (ours in C-GET, a destination in C-MOVE) was sent."""

    def __init__(self) -> None:
        self.datasets: dict[str, Dataset] = {}

    def on_store(self, event: Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.datasets[ds.SOPInstanceUID] = ds
        return 0x0000


def _assert_same_pixels(received: dict[str, Dataset], files: list[Path]) -> None:
    sources = {ds.SOPInstanceUID: ds for ds in map(dcmread, files)}
    assert set(received) == set(sources)
    for uid, source in sources.items():
        assert received[uid].PixelData == source.PixelData
        assert received[uid].SOPClassUID == source.SOPClassUID


def _get(port: int, query: Dataset, storage: list[Any], received: Received, **kw: Any) -> list[Dataset]:
    """C-GET ``query``; returns every response status dataset."""
    roles = kw.pop(
        "roles", [build_role(cx[0] if isinstance(cx, tuple) else cx, scp_role=True) for cx in storage]
    )
    with associate(
        port,
        [STUDY_ROOT_GET, *storage],
        roles=roles,
        handlers=[(evt.EVT_C_STORE, received.on_store)],
    ) as assoc:
        assert assoc.is_established
        return [status for status, _ in assoc.send_c_get(query, STUDY_ROOT_GET)]


def test_c_get_of_a_study_returns_every_instance_unchanged(
    embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts]
) -> None:
    study = max((s for s in studies.values() if s.from_dicomdir), key=lambda s: len(s.series))
    files = [f for series in study.series.values() for f in series]
    received = Received()
    statuses = _get(embedded_pacs.port, _query("STUDY", StudyInstanceUID=study.uid), [CT, MR, CR], received)
    _assert_same_pixels(received.datasets, files)
    final = statuses[-1]
    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == len(files)
    assert final.NumberOfFailedSuboperations == 0
    pending = statuses[:-1]
    assert [s.Status for s in pending] == [0xFF00] * len(files)
    assert [s.NumberOfRemainingSuboperations for s in pending] == list(range(len(files) - 1, -1, -1))


def test_c_get_without_the_scp_role_counts_failures(
    embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts]
) -> None:
    study = next(s for s in studies.values() if s.from_dicomdir and s.modalities == {"CT"})
    received = Received()
    # CT storage proposed, but without taking the SCP role: the PACS has no context to send on.
    statuses = _get(embedded_pacs.port, _query("STUDY", StudyInstanceUID=study.uid), [CT], received, roles=[])
    final = statuses[-1]
    assert received.datasets == {}
    assert final.NumberOfFailedSuboperations == study.n_instances
    assert final.NumberOfCompletedSuboperations == 0
    assert final.Status in (0xA702, 0xB000)


def test_c_get_can_be_cancelled(embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts]) -> None:
    study = max(studies.values(), key=lambda s: s.n_instances)
    received = Received()
    storage = sorted({dcmread(f[0], stop_before_pixels=True).SOPClassUID for f in study.series.values()})
    with associate(
        embedded_pacs.port,
        [STUDY_ROOT_GET, *storage],
        roles=[build_role(uid, scp_role=True) for uid in storage],
        handlers=[(evt.EVT_C_STORE, received.on_store)],
    ) as assoc:
        context = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == STUDY_ROOT_GET)
        statuses = []
        for status, _ in assoc.send_c_get(_query("STUDY", StudyInstanceUID=study.uid), STUDY_ROOT_GET):
            statuses.append(status)
            if len(statuses) == 1:
                assoc.send_c_cancel(1, context.context_id)
    final = statuses[-1]
    assert final.Status == 0xFE00
    assert final.NumberOfRemainingSuboperations > 0
    assert final.NumberOfCompletedSuboperations == len(received.datasets) < study.n_instances


def test_c_get_decompresses_for_a_peer_without_the_stored_syntax(empty_pacs: EmbeddedPacs) -> None:
    rle = Path(get_testdata_file("MR_small_RLE.dcm") or "")
    original = dcmread(get_testdata_file("MR_small.dcm") or "")
    empty_pacs.add_files([rle])
    stored = dcmread(rle)
    assert stored.file_meta.TransferSyntaxUID == RLELossless
    received = Received()
    statuses = _get(
        empty_pacs.port,
        _query(
            "IMAGE",
            StudyInstanceUID=stored.StudyInstanceUID,
            SeriesInstanceUID=stored.SeriesInstanceUID,
            SOPInstanceUID=stored.SOPInstanceUID,
        ),
        [(MR, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])],
        received,
    )
    assert statuses[-1].Status == 0x0000
    (got,) = received.datasets.values()
    assert not got.file_meta.TransferSyntaxUID.is_compressed
    np.testing.assert_array_equal(got.pixel_array, original.pixel_array)


@pytest.fixture
def destination(embedded_pacs: EmbeddedPacs) -> Iterator[tuple[str, Received]]:
    """A pynetdicom Storage SCP on a free port, registered as a C-MOVE destination."""
    received = Received()
    ae = AE(ae_title="MOVE_DEST")
    ae.supported_contexts = StoragePresentationContexts
    server = ae.start_server(
        ("127.0.0.1", 0),
        block=False,
        evt_handlers=[(evt.EVT_CONN_OPEN, nodelay), (evt.EVT_C_STORE, received.on_store)],
    )
    assert server is not None
    embedded_pacs.add_destination("MOVE_DEST", "127.0.0.1", server.server_address[1])
    try:
        yield "MOVE_DEST", received
    finally:
        embedded_pacs.destinations.pop("MOVE_DEST", None)
        server.shutdown()


def _move(port: int, query: Dataset, destination: str, model: str = STUDY_ROOT_MOVE) -> list[Dataset]:
    with associate(port, [model]) as assoc:
        assert assoc.is_established
        return [status for status, _ in assoc.send_c_move(query, destination, model)]


def test_c_move_of_a_series_to_a_storage_scp(
    embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts], destination: tuple[str, Received]
) -> None:
    ae_title, received = destination
    study = next(s for s in studies.values() if s.from_dicomdir and "MR" in s.modalities)
    series_uid, files = max(study.series.items(), key=lambda item: len(item[1]))
    query = _query("SERIES", StudyInstanceUID=study.uid, SeriesInstanceUID=series_uid)
    statuses = _move(embedded_pacs.port, query, ae_title)
    assert statuses[-1].Status == 0x0000
    assert statuses[-1].NumberOfCompletedSuboperations == len(files)
    assert [s.NumberOfRemainingSuboperations for s in statuses[:-1]] == list(range(len(files) - 1, -1, -1))
    _assert_same_pixels(received.datasets, files)


def test_c_move_of_a_patient_with_patient_root(
    embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts], destination: tuple[str, Received]
) -> None:
    ae_title, received = destination
    archibald = [s for s in studies.values() if s.patient_name == "Doe^Archibald"]
    statuses = _move(
        embedded_pacs.port,
        _query("PATIENT", PatientID=archibald[0].patient_id),
        ae_title,
        PATIENT_ROOT_MOVE,
    )
    assert statuses[-1].Status == 0x0000
    files = [f for s in archibald for series in s.series.values() for f in series]
    _assert_same_pixels(received.datasets, files)


def test_c_move_to_an_unknown_destination_is_refused(
    embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts]
) -> None:
    study = next(iter(studies.values()))
    statuses = _move(embedded_pacs.port, _query("STUDY", StudyInstanceUID=study.uid), "NOWHERE")
    assert statuses[-1].Status == 0xA801


def test_c_move_with_a_bad_level_is_refused(
    embedded_pacs: EmbeddedPacs, destination: tuple[str, Received]
) -> None:
    ae_title, received = destination
    statuses = _move(embedded_pacs.port, _query("PATIENT", PatientID="x"), ae_title)
    # pynetdicom's "unable to process" failure: the handler refuses before any sub-operation.
    assert statuses[-1].Status == 0xC514
    assert received.datasets == {}


def test_c_move_can_be_cancelled(embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts]) -> None:
    study = max((s for s in studies.values() if s.from_dicomdir), key=lambda s: s.n_instances)
    server = embedded_pacs.server
    assert server is not None
    cancel_arrived = threading.Event()

    def watch(event: Event) -> None:
        if isinstance(event.message, C_CANCEL_RQ):
            cancel_arrived.set()

    received = Received()
    move: dict[str, Any] = {}

    def store_then_cancel(event: Event) -> int:
        # The first sub-operation asks for the cancel and completes once the PACS has it, so
        # the PACS must stop before the second one.
        if not received.datasets:
            move["assoc"].send_c_cancel(1, move["context"])
            assert cancel_arrived.wait(timeout=30)
        return received.on_store(event)

    ae = AE(ae_title="CANCEL_DEST")
    ae.supported_contexts = StoragePresentationContexts
    destination = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, store_then_cancel)]
    )
    assert destination is not None
    embedded_pacs.add_destination("CANCEL_DEST", "127.0.0.1", destination.server_address[1])
    server.bind(evt.EVT_DIMSE_RECV, watch)
    try:
        with associate(embedded_pacs.port, [STUDY_ROOT_MOVE]) as assoc:
            move["assoc"] = assoc
            move["context"] = assoc.accepted_contexts[0].context_id
            query = _query("STUDY", StudyInstanceUID=study.uid)
            statuses = [status for status, _ in assoc.send_c_move(query, "CANCEL_DEST", STUDY_ROOT_MOVE)]
    finally:
        server.unbind(evt.EVT_DIMSE_RECV, watch)
        embedded_pacs.destinations.pop("CANCEL_DEST", None)
        destination.shutdown()
    final = statuses[-1]
    assert final.Status == 0xFE00
    assert final.NumberOfCompletedSuboperations == len(received.datasets) == 1
    assert final.NumberOfRemainingSuboperations == study.n_instances - 1
