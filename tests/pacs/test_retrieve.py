"""Retrieves from real servers by C-GET, C-MOVE and WADO-RS: what arrives is what was stored."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from pydicom import dcmread

from pacslab.ingest import Ingest
from pacslab.pacs import (
    QueryFilterError,
    ReceivedInstance,
    RetrieveIncomplete,
    RetrieveProgress,
    into_ingest,
)
from pacslab.pacs.dimse import DimseClient
from pacslab.pacs.embedded import EmbeddedPacs
from pacslab.pacs.orthanc import free_port
from pacslab.pacs.receiver import Receiver
from pacslab.store import SliceStore
from tests.pacs.conftest import Collector, Peer, StudyFacts, assert_same_pixels, make_config


def _sop_uid(path: object) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)  # type: ignore[arg-type]


def test_whole_study_arrives_with_identical_pixels(
    retrieval: tuple[Peer, str], ct_phantom: StudyFacts
) -> None:
    peer, method = retrieval
    got = Collector()
    progress: list[RetrieveProgress] = []
    result = peer.client.retrieve_study(
        ct_phantom.uid,
        on_instance=got,
        method=method,
        on_progress=progress.append,  # type: ignore[arg-type]
    )
    assert result.ok
    assert result.status == "success"
    assert result.method == method
    assert result.expected == result.received == ct_phantom.n_instances
    assert result.missing_uids == ()
    assert got.uids == {_sop_uid(p) for p in ct_phantom.files}
    assert_same_pixels(got.instances, ct_phantom.files)
    # Progress reached the end and never went backwards.
    received = [p.received for p in progress]
    assert received == sorted(received)
    assert received[-1] == ct_phantom.n_instances
    assert progress[-1].fraction == 1.0


def test_multi_series_study(retrieval: tuple[Peer, str], facts: dict[str, StudyFacts]) -> None:
    peer, method = retrieval
    study = next(f for f in facts.values() if f.description == "Brain-MRA")
    got = Collector()
    result = peer.client.retrieve_study(study.uid, on_instance=got, method=method)  # type: ignore[arg-type]
    assert result.status == "success"
    assert result.received == study.n_instances == 11
    assert got.uids == {_sop_uid(p) for p in study.files}
    assert_same_pixels(got.instances, study.files)
    # Headers come through too: each instance decodes to its file's identity.
    for instance in got.instances:
        assert instance.dataset.StudyInstanceUID == study.uid
        assert instance.dataset.PatientName == "Doe^Peter"


def test_one_series(retrieval: tuple[Peer, str], facts: dict[str, StudyFacts]) -> None:
    peer, method = retrieval
    study = next(f for f in facts.values() if f.description == "Brain-MRA")
    series = max(study.series.values(), key=lambda s: len(s.files))
    got = Collector()
    result = peer.client.retrieve_series(study.uid, series.uid, on_instance=got, method=method)  # type: ignore[arg-type]
    assert result.status == "success"
    assert got.uids == {_sop_uid(p) for p in series.files}


def test_missing_instance_is_reported_not_hidden(
    retrieval: tuple[Peer, str], facts: dict[str, StudyFacts]
) -> None:
    peer, method = retrieval
    study = next(f for f in facts.values() if f.description == "Brain-MRA")
    series = max(study.series.values(), key=lambda s: len(s.files))
    present = [_sop_uid(p) for p in series.files[:2]]
    absent = "1.2.826.0.1.3680043.8.498.1"
    got = Collector()
    with pytest.raises(RetrieveIncomplete) as info:
        peer.client.retrieve_instances(
            study.uid,
            series.uid,
            [*present, absent],
            on_instance=got,
            method=method,  # type: ignore[arg-type]
        )
    error = info.value
    assert error.missing_uids == (absent,)
    assert error.result.received == 2
    assert error.result.status == "incomplete"
    assert got.uids == set(present)
    assert "1 missing" in str(error)


def test_callback_failure_makes_the_retrieve_incomplete(
    retrieval: tuple[Peer, str], facts: dict[str, StudyFacts]
) -> None:
    peer, method = retrieval
    study = next(f for f in facts.values() if f.description == "Brain-MRA")
    seen: list[str] = []

    def refuse_third(instance: ReceivedInstance) -> None:
        seen.append(instance.sop_instance_uid)
        if len(seen) == 3:
            raise OSError("disk full")

    with pytest.raises(RetrieveIncomplete, match="disk full") as info:
        peer.client.retrieve_study(study.uid, on_instance=refuse_third, method=method)  # type: ignore[arg-type]
    result = info.value.result
    assert seen[2] in result.failed_uids
    assert seen[2] in result.missing_uids
    assert seen[2] not in result.received_uids
    # Some PACS go on after a failed sub-operation, others (Orthanc's C-MOVE) stop there.
    assert result.received >= 2
    assert result.received + len(result.missing_uids) == study.n_instances


def test_cancel_midway_keeps_what_arrived(retrieval: tuple[Peer, str], ct_phantom: StudyFacts) -> None:
    peer, method = retrieval
    cancel = threading.Event()
    got = Collector(stop_after=10)

    def take(instance: ReceivedInstance) -> None:
        got(instance)
        if got.reached.is_set():
            cancel.set()

    result = peer.client.retrieve_study(
        ct_phantom.uid,
        on_instance=take,
        method=method,  # type: ignore[arg-type]
        cancel_event=cancel,
    )
    assert result.status == "cancelled"
    assert not result.ok
    assert 10 <= result.received < ct_phantom.n_instances
    assert len(result.missing_uids) == ct_phantom.n_instances - result.received
    assert set(result.received_uids) == got.uids
    # Everything that arrived is whole: it decodes to the stored pixels.
    assert_same_pixels(got.instances, ct_phantom.files)


def test_auto_method(peer: Peer, facts: dict[str, StudyFacts]) -> None:
    study = next(f for f in facts.values() if f.description == "Carotids")
    got = Collector()
    result = peer.client.retrieve_study(study.uid, on_instance=got)
    assert result.status == "success"
    assert result.method == peer.methods[0]  # C-GET first on DIMSE, WADO-RS on DICOMweb
    assert got.uids == {_sop_uid(p) for p in study.files}


def test_method_of_the_other_transport_is_refused(peer: Peer, facts: dict[str, StudyFacts]) -> None:
    study = next(iter(facts))
    wrong = "c-get" if peer.methods == ("wado",) else "wado"
    with pytest.raises(QueryFilterError, match="method"):
        peer.client.retrieve_study(study, on_instance=lambda i: None, method=wrong)  # type: ignore[arg-type]


def test_received_instance_gives_bytes_and_a_dataset(peer: Peer, facts: dict[str, StudyFacts]) -> None:
    study = next(f for f in facts.values() if f.description == "Carotids")
    got = Collector()
    peer.client.retrieve_study(study.uid, on_instance=got)
    instance = got.instances[0]
    source = next(p for p in study.files if _sop_uid(p) == instance.sop_instance_uid)
    # The encoded bytes are a valid data set in the stated transfer syntax ...
    part10 = instance.file_bytes()
    assert part10[128:132] == b"DICM"
    ds = instance.dataset
    assert ds.file_meta.TransferSyntaxUID == instance.transfer_syntax_uid
    assert ds.SOPInstanceUID == instance.sop_instance_uid
    assert ds.SOPClassUID == instance.sop_class_uid
    # ... holding the source's pixel data, byte for byte in the uncompressed sample.
    assert ds.PixelData == dcmread(source).PixelData


@pytest.mark.parametrize(
    "retrieval",
    [("orthanc-dimse", "c-get"), ("orthanc-dicomweb", "wado"), ("embedded-dimse", "c-move")],
    indirect=True,
    ids=["orthanc-c-get", "orthanc-wado", "embedded-c-move"],
)
def test_retrieve_into_the_store(
    retrieval: tuple[Peer, str], ct_phantom: StudyFacts, store: SliceStore
) -> None:
    peer, method = retrieval
    with Ingest(store) as ingest:
        result = peer.client.retrieve_study(ct_phantom.uid, on_instance=into_ingest(ingest), method=method)  # type: ignore[arg-type]
    assert result.ok
    assert ingest.report is not None
    assert ingest.report.n_instances == ct_phantom.n_instances
    assert not ingest.report.rejected
    (series_uid,) = ct_phantom.series
    info = store.series(series_uid)
    assert info.n_slices == ct_phantom.n_instances
    sources = sorted((dcmread(p) for p in ct_phantom.files), key=lambda d: float(d.ImagePositionPatient[2]))
    stored = store.read_slices(series_uid)
    for index, source in enumerate(sources):
        np.testing.assert_array_equal(stored[index], source.pixel_array)


def test_c_move_starts_the_shared_receiver_on_the_configured_port(
    embedded_pacs: EmbeddedPacs, facts: dict[str, StudyFacts]
) -> None:
    port = free_port()
    config = make_config(embedded_pacs.node, receiver_port=port, ae_title="PACSLAB_SHARED")
    embedded_pacs.add_destination("PACSLAB_SHARED", "127.0.0.1", port)
    study = next(f for f in facts.values() if f.description == "Carotids")
    try:
        client = DimseClient(embedded_pacs.node, config)
        got = Collector()
        result = client.retrieve_study(study.uid, on_instance=got, method="c-move")
        # A second retrieve reuses the receiver already listening.
        again = DimseClient(embedded_pacs.node, config).retrieve_study(
            study.uid, on_instance=got, method="c-move"
        )
    finally:
        Receiver.stop_shared()
    assert result.ok
    assert again.ok
    assert got.uids == {_sop_uid(p) for p in study.files}
