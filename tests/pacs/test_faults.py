"""Failures a user meets, each ending in a named error that says what to do.

Peers here are real: a closed port, a socket that never answers, an embedded PACS that
refuses us, an Orthanc stopped in the middle of a transfer.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pydicom.uid import CTImageStorage
from pynetdicom import AE, build_context

from pacslab.config import PacsNode
from pacslab.pacs import (
    AssociationRejected,
    MoveDestinationUnknown,
    NoAcceptedContext,
    PacsTimeout,
    PacsUnreachable,
    QueryFailed,
    ReceivedInstance,
    RetrieveFailed,
    RetrieveIncomplete,
    connect_pacs,
)
from pacslab.pacs.association import VERIFICATION
from pacslab.pacs.dimse import DimseClient
from pacslab.pacs.embedded import EmbeddedPacs
from pacslab.pacs.orthanc import OrthancServer, free_port
from pacslab.pacs.receiver import Receiver
from pacslab.samples import phantom_ct_datasets
from tests.pacs.conftest import OUR_AE, Collector, Peer, StudyFacts, assert_same_pixels, make_config

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener takes connections (the kernel does) but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def _web_node(port: int) -> PacsNode:
    return PacsNode("web", "WEB", "127.0.0.1", port, "dicomweb", f"http://127.0.0.1:{port}/dicom-web")


@pytest.mark.parametrize("transport", ["dimse", "dicomweb"])
def test_closed_port_is_unreachable(transport: str) -> None:
    port = free_port()
    node = PacsNode("gone", "GONE", "127.0.0.1", port) if transport == "dimse" else _web_node(port)
    client = connect_pacs(node, make_config(node, connection=2.0))
    with pytest.raises(PacsUnreachable) as info:
        client.find_studies(patient_id="1")
    assert info.value.port == port
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "2 s" in str(info.value)


def test_silent_dimse_peer_times_out(silent_port: int) -> None:
    node = PacsNode("mute", "MUTE", "127.0.0.1", silent_port)
    client = connect_pacs(node, make_config(node, acse=1.0))
    with pytest.raises(PacsTimeout) as info:
        client.echo()
    assert info.value.stage == "acse"
    assert "timeouts.acse" in str(info.value)


def test_silent_web_server_times_out(silent_port: int) -> None:
    node = _web_node(silent_port)
    client = connect_pacs(node, make_config(node, network=1.0))
    with pytest.raises(PacsTimeout) as info:
        client.find_studies()
    assert info.value.stage == "network"


def test_unknown_calling_ae_is_rejected_with_the_reason(tmp_path: Path) -> None:
    with EmbeddedPacs(tmp_path / "pacs", port=0, allowed_calling_aes=["SOMEONE_ELSE"]) as pacs:
        client = connect_pacs(pacs.node, make_config(pacs.node))
        with pytest.raises(AssociationRejected) as info:
            client.find_studies()
    error = info.value
    assert error.reason == "Calling AE title not recognised"
    assert OUR_AE in str(error)
    assert "register it" in str(error)


def test_wrong_called_ae_is_rejected_with_the_reason(embedded_pacs: EmbeddedPacs) -> None:
    node = PacsNode("typo", "NOT_THE_PACS", "127.0.0.1", embedded_pacs.port)
    with pytest.raises(AssociationRejected, match="Called AE title not recognised") as info:
        connect_pacs(node, make_config(node)).echo()
    assert "correct the node's ae_title" in str(info.value)


def test_pacs_without_query_retrieve_says_so() -> None:
    ae = AE("ECHO_ONLY")
    ae.add_supported_context(VERIFICATION)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        node = PacsNode("echo", "ECHO_ONLY", "127.0.0.1", server.server_address[1])
        client = connect_pacs(node, make_config(node))
        assert client.echo() > 0
        with pytest.raises(NoAcceptedContext, match="C-FIND"):
            client.find_studies()
        with pytest.raises(NoAcceptedContext, match="C-MOVE"):
            # C-GET is tried first, then C-MOVE; neither is offered.
            client.retrieve_study("1.2.3", on_instance=lambda i: None)
    finally:
        server.shutdown()


def test_our_ae_unknown_to_orthanc_for_c_move(orthanc: OrthancServer, ct_phantom: StudyFacts) -> None:
    config = make_config(orthanc.node, ae_title="NOT_REGISTERED")
    with Receiver(config, port=0, allowed_calling_aes=[orthanc.ae_title]) as receiver:
        client = DimseClient(orthanc.node, config, receiver=receiver)
        with pytest.raises(MoveDestinationUnknown) as info:
            client.retrieve_study(ct_phantom.uid, on_instance=lambda i: None, method="c-move")
        port = receiver.port
    assert "NOT_REGISTERED" in str(info.value)
    assert "DicomModalities" in str(info.value)
    assert f"127.0.0.1:{port}" in str(info.value)


def test_our_ae_unknown_to_the_embedded_pacs_for_c_move(
    embedded_pacs: EmbeddedPacs, ct_phantom: StudyFacts
) -> None:
    config = make_config(embedded_pacs.node, ae_title="NOT_REGISTERED")
    with Receiver(config, port=0) as receiver:
        client = DimseClient(embedded_pacs.node, config, receiver=receiver)
        with pytest.raises(MoveDestinationUnknown, match="NOT_REGISTERED"):
            client.retrieve_study(ct_phantom.uid, on_instance=lambda i: None, method="c-move")


@pytest.fixture
def small_ct(tmp_path: Path) -> list[Path]:
    """A 40-slice CT phantom written to files."""
    folder = tmp_path / "ct"
    folder.mkdir()
    files = []
    for ds in phantom_ct_datasets(n_slices=40, size=256):
        path = folder / f"{ds.InstanceNumber:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


@pytest.mark.parametrize("method", ["c-get", "c-move", "wado"])
def test_orthanc_stopped_midway(empty_orthanc: OrthancServer, small_ct: list[Path], method: str) -> None:
    empty_orthanc.upload(small_ct)
    study_uid = str(phantom_ct_datasets(1, 8).__next__().StudyInstanceUID)
    node = empty_orthanc.web_node if method == "wado" else empty_orthanc.node
    config = make_config(node, dimse=5.0, network=5.0)
    receiver = Receiver(config, port=0, allowed_calling_aes=[empty_orthanc.ae_title]).start()
    empty_orthanc.add_modality(OUR_AE, "127.0.0.1", receiver.port)
    client = connect_pacs(node, config) if method == "wado" else DimseClient(node, config, receiver=receiver)
    got = Collector(stop_after=10)
    stopper = threading.Thread(target=lambda: (got.reached.wait(60), empty_orthanc.kill()))
    stopper.start()

    def slow_take(instance: ReceivedInstance) -> None:
        got(instance)
        if got.reached.is_set():
            # Hold the transfer until Orthanc is gone, so it cannot finish first.
            stopper.join(30)

    series = client.find_series(study_uid)[0].series_uid
    uids = [r.sop_instance_uid for r in client.find_instances(study_uid, series)]

    def retrieve() -> None:
        if method == "wado":
            # One request per instance: a whole-study response sits in our socket buffers
            # long before Orthanc could be stopped.
            client.retrieve_instances(study_uid, series, uids, on_instance=slow_take, method="wado")
        else:
            client.retrieve_study(study_uid, on_instance=slow_take, method=method)  # type: ignore[arg-type]

    try:
        with pytest.raises(RetrieveIncomplete) as info:
            retrieve()
    finally:
        got.reached.set()
        stopper.join()
        receiver.stop()
    result = info.value.result
    assert result.expected == len(small_ct)
    assert 10 <= result.received < len(small_ct)
    # The instances are listed alongside the transfer; Orthanc may die before that is done.
    if result.missing_known:
        assert result.received + len(result.missing_uids) == len(small_ct)
    else:
        assert "which ones are missing is unknown" in str(info.value)
    assert set(result.received_uids) == got.uids
    assert "127.0.0.1" in str(info.value)
    # What arrived before the PACS went away is whole.
    assert_same_pixels(got.instances, small_ct)


def test_receiver_accepts_only_configured_callers(orthanc: OrthancServer) -> None:
    from pydicom import Dataset

    config = make_config(orthanc.node)
    with Receiver(config, port=0, allowed_calling_aes=["ORTHANC"]) as receiver:
        stranger = AE("STRANGER")
        stranger.add_requested_context(CTImageStorage)
        assoc = stranger.associate("127.0.0.1", receiver.port, ae_title=OUR_AE)
        assert assoc.is_rejected
        # A known caller with an instance nobody asked for is refused per instance.
        known = AE("ORTHANC")
        known.add_requested_context(CTImageStorage)
        assoc = known.associate("127.0.0.1", receiver.port, ae_title=OUR_AE)
        assert assoc.is_established
        ds = next(phantom_ct_datasets(1, 8))
        status: Dataset = assoc.send_c_store(ds)
        assoc.release()
    assert status.Status == 0x0124
    assert receiver.unsolicited == 1


class OrthancWithoutGet(OrthancServer):
    """An Orthanc that refuses C-GET to everyone (as many hospital PACS do)."""

    def config(self) -> dict[str, object]:
        return {**super().config(), "DicomAlwaysAllowGet": False}


def test_auto_falls_back_to_c_move_when_c_get_is_refused(tmp_path: Path, small_ct: list[Path]) -> None:
    server = OrthancWithoutGet(tmp_path / "orthanc").start()
    try:
        server.upload(small_ct[:5])
        config = make_config(server.node)
        with Receiver(config, port=0, allowed_calling_aes=[server.ae_title]) as receiver:
            # Known as a C-MOVE destination, but not allowed to C-GET.
            modality = {"AET": OUR_AE, "Host": "127.0.0.1", "Port": receiver.port, "AllowGet": False}
            requests.put(f"{server.url}/modalities/ours", json=modality, timeout=10).raise_for_status()
            client = DimseClient(server.node, config, receiver=receiver)
            study_uid = str(next(phantom_ct_datasets(1, 8)).StudyInstanceUID)
            got = Collector()
            result = client.retrieve_study(study_uid, on_instance=got)
    finally:
        server.stop()
    assert result.ok
    assert result.method == "c-move"
    assert any("C-GET not available" in m for m in result.messages)
    assert len(got.instances) == 5


def test_every_association_of_ours_sets_tcp_nodelay(embedded_pacs: EmbeddedPacs) -> None:
    from pacslab.pacs.association import Connector

    config = make_config(embedded_pacs.node)
    assoc = Connector(embedded_pacs.node, config).associate([build_context(VERIFICATION)], "C-ECHO")
    try:
        sock = assoc.dul.socket.socket  # type: ignore[union-attr]
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        assoc.release()
    # And on the associations our receiver accepts.
    seen: list[int] = []
    with Receiver(config, port=0) as receiver:
        peer = AE("ORTHANC")
        peer.add_requested_context(CTImageStorage)
        incoming = peer.associate("127.0.0.1", receiver.port, ae_title=OUR_AE)
        for active in receiver._server.active_associations:  # type: ignore[union-attr]
            seen.append(active.dul.socket.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        incoming.release()
    assert seen == [1]


@pytest.mark.parametrize(("allowed", "admitted"), [("192.0.2.10", False), ("127.0.0.1", True)])
def test_receiver_accepts_only_allowed_hosts(allowed: str, admitted: bool) -> None:
    node = PacsNode("x", "ORTHANC", "127.0.0.1", 104)
    with Receiver(make_config(node), port=0, allowed_hosts=[allowed]) as receiver:
        peer = AE("ORTHANC")
        peer.add_requested_context(CTImageStorage)
        assoc = peer.associate("127.0.0.1", receiver.port, ae_title=OUR_AE)
        established = assoc.is_established
        if established:
            assoc.release()
    assert established is admitted


def test_unknown_study_is_a_named_failure(peer: Peer) -> None:
    absent = "1.2.826.0.1.3680043.8.498.99"
    assert not peer.client.find_studies(study_uid=absent)
    with pytest.raises(RetrieveFailed) as info:
        peer.client.retrieve_study(absent, on_instance=lambda i: None, method=peer.methods[0])  # type: ignore[arg-type]
    assert info.value.method in ("C-GET", "WADO-RS")


def test_wrong_dicomweb_root_is_a_query_failure(orthanc: OrthancServer) -> None:
    node = PacsNode(
        "web", "ORTHANC", "127.0.0.1", orthanc.http_port, "dicomweb", f"{orthanc.url}/not-dicom-web"
    )
    with pytest.raises(QueryFailed) as info:
        connect_pacs(node, make_config(node)).find_studies()
    assert info.value.status == 404
    assert "HTTP 404" in str(info.value)
