"""Sending to a PACS by C-STORE and STOW-RS, and interoperating with DCMTK both ways."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from pacslab.config import Config, PacsNode
from pacslab.pacs import PacsClient, connect_pacs
from pacslab.pacs.embedded import EmbeddedPacs
from pacslab.pacs.orthanc import OrthancServer
from pacslab.pacs.receiver import Receiver
from pacslab.samples import phantom_ct_datasets, pydicom_sample_files
from tests.conftest import require_tool
from tests.pacs.conftest import OUR_AE, Collector, assert_same_pixels, make_config

pytestmark = pytest.mark.timeout(180)


@dataclass
class EmptyPeer:
    """A client to an empty server of this test alone."""

    server: Any
    node: PacsNode
    config: Config
    client: PacsClient
    methods: tuple[str, ...]


EMPTY = ("orthanc-dimse", "orthanc-dicomweb", "embedded-dimse")


@pytest.fixture(params=EMPTY)
def empty_peer(request: pytest.FixtureRequest) -> Iterator[EmptyPeer]:
    server_name, transport = request.param.split("-")
    server = request.getfixturevalue("empty_orthanc" if server_name == "orthanc" else "empty_embedded")
    if transport == "dicomweb":
        node = server.web_node
        config = make_config(node)
        yield EmptyPeer(server, node, config, connect_pacs(node, config), ("wado",))
        return
    node = server.node
    config = make_config(node)
    with Receiver(config, port=0) as receiver:
        server.add_modality(OUR_AE, "127.0.0.1", receiver.port)
        from pacslab.pacs.dimse import DimseClient

        yield EmptyPeer(
            server, node, config, DimseClient(node, config, receiver=receiver), ("c-get", "c-move")
        )


def _few_samples() -> list[Path]:
    files = pydicom_sample_files()
    picked = [f for f in files if f.name in ("CT_small.dcm", "MR_small.dcm")]
    return picked + [f for f in files if "MR700" in str(f)][:3]


def test_store_files_then_find_and_retrieve_them(empty_peer: EmptyPeer) -> None:
    files = _few_samples()
    statuses = empty_peer.client.store(files)
    assert [s.ok for s in statuses] == [True] * len(files)
    assert [s.sop_instance_uid for s in statuses] == [str(dcmread(f).SOPInstanceUID) for f in files]
    assert all(s.category == "success" and s.status == 0 for s in statuses)
    studies = empty_peer.client.find_studies()
    assert {r.study_uid for r in studies} == {str(dcmread(f).StudyInstanceUID) for f in files}
    for method in empty_peer.methods:
        got = Collector()
        for study in studies:
            empty_peer.client.retrieve_study(study.study_uid, on_instance=got, method=method)  # type: ignore[arg-type]
        assert got.uids == {s.sop_instance_uid for s in statuses}
        assert_same_pixels(got.instances, files)


def test_store_datasets_made_in_memory(empty_peer: EmptyPeer) -> None:
    datasets = list(phantom_ct_datasets(n_slices=4, size=32))
    statuses = empty_peer.client.store(datasets)
    assert all(s.ok for s in statuses)
    series = datasets[0].SeriesInstanceUID
    found = empty_peer.client.find_instances(datasets[0].StudyInstanceUID, series)
    assert {r.sop_instance_uid for r in found} == {d.SOPInstanceUID for d in datasets}


def test_store_reports_each_bad_item_and_keeps_the_rest(empty_peer: EmptyPeer, tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image")
    good = get_testdata_file("CT_small.dcm")
    assert good is not None
    statuses = empty_peer.client.store([junk, good])
    assert len(statuses) == 2
    assert not statuses[0].ok
    assert "notes.txt" in statuses[0].meaning
    assert statuses[1].ok
    assert len(empty_peer.client.find_studies()) == 1


def test_compressed_instance_round_trips(empty_peer: EmptyPeer) -> None:
    rle = get_testdata_file("MR_small_RLE.dcm")
    assert rle is not None
    (status,) = empty_peer.client.store([rle])
    assert status.ok
    ds = dcmread(rle)
    got = Collector()
    empty_peer.client.retrieve_study(ds.StudyInstanceUID, on_instance=got, method=empty_peer.methods[0])  # type: ignore[arg-type]
    (instance,) = got.instances
    assert (instance.dataset.pixel_array == ds.pixel_array).all()


# -- DCMTK ---------------------------------------------------------------------------------

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def _dicom_server(request: pytest.FixtureRequest, name: str) -> OrthancServer | EmbeddedPacs:
    return request.getfixturevalue("empty_orthanc" if name == "orthanc" else "empty_embedded")


@pytest.mark.dcmtk
@pytest.mark.parametrize("server_name", ["orthanc", "embedded"])
def test_what_storescu_puts_in_we_find_and_retrieve(
    request: pytest.FixtureRequest, server_name: str, tmp_path: Path
) -> None:
    storescu = require_tool("storescu", "dcmtk")
    server = _dicom_server(request, server_name)
    files = _few_samples()
    folder = tmp_path / "in"
    folder.mkdir()
    for f in files:
        (folder / f.name).write_bytes(f.read_bytes())
    subprocess.run(
        [
            storescu,
            "+sd",
            "+r",
            "-aet",
            "DCMTK",
            "-aec",
            server.ae_title,
            "127.0.0.1",
            str(server.dicom_port),
            str(folder),
        ],
        check=True,
        env=DCMTK_ENV,
        capture_output=True,
    )
    config = make_config(server.node)
    with Receiver(config, port=0) as receiver:
        server.add_modality(OUR_AE, "127.0.0.1", receiver.port)
        from pacslab.pacs.dimse import DimseClient

        client = DimseClient(server.node, config, receiver=receiver)
        studies = client.find_studies()
        assert {r.study_uid for r in studies} == {str(dcmread(f).StudyInstanceUID) for f in files}
        for method in ("c-get", "c-move"):
            got = Collector()
            for study in studies:
                client.retrieve_study(study.study_uid, on_instance=got, method=method)  # type: ignore[arg-type]
            assert len(got.instances) == len(files)
            assert_same_pixels(got.instances, files)


def _findscu_study_uids(server: OrthancServer | EmbeddedPacs) -> set[str]:
    findscu = require_tool("findscu", "dcmtk")
    done = subprocess.run(
        [
            findscu,
            "-S",
            "-aet",
            "DCMTK",
            "-aec",
            server.ae_title,
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "StudyInstanceUID",
            "127.0.0.1",
            str(server.dicom_port),
        ],
        check=True,
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
    )
    return set(re.findall(r"\(0020,000d\) UI \[([0-9.]+)", done.stdout + done.stderr))


@pytest.mark.dcmtk
@pytest.mark.parametrize("route", ["orthanc-dimse", "orthanc-dicomweb", "embedded-dimse"])
def test_what_we_store_findscu_finds_and_getscu_retrieves(
    request: pytest.FixtureRequest, route: str, tmp_path: Path
) -> None:
    getscu = require_tool("getscu", "dcmtk")
    server_name, transport = route.split("-")
    server = _dicom_server(request, server_name)
    node = server.web_node if transport == "dicomweb" else server.node  # type: ignore[union-attr]
    client = connect_pacs(node, make_config(node))
    datasets = list(phantom_ct_datasets(n_slices=5, size=64))
    assert all(s.ok for s in client.store(datasets))
    study_uid = datasets[0].StudyInstanceUID
    assert _findscu_study_uids(server) == {study_uid}
    out = tmp_path / "getscu"
    out.mkdir()
    subprocess.run(
        [
            getscu,
            "-S",
            "-aet",
            "DCMTK",
            "-aec",
            server.ae_title,
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study_uid}",
            "-od",
            str(out),
            "127.0.0.1",
            str(server.dicom_port),
        ],
        check=True,
        env=DCMTK_ENV,
        capture_output=True,
    )
    fetched = {str(ds.SOPInstanceUID): ds for ds in (dcmread(p) for p in out.iterdir())}
    assert set(fetched) == {d.SOPInstanceUID for d in datasets}
    for original in datasets:
        assert fetched[original.SOPInstanceUID].PixelData == original.PixelData
