"""Fixtures of the PACS client tests: every client against every real server that offers it.

``peer`` runs a test once per (server, transport): Orthanc over DIMSE, Orthanc over DICOMweb,
the embedded PACS over DIMSE. Expectations (``facts``) are read from the sample files
themselves, never from a PACS.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread

from pacslab.config import Config, PacsNode, Timeouts
from pacslab.pacs import PacsClient, ReceivedInstance, connect_pacs
from pacslab.pacs.dicomweb import DicomwebClient
from pacslab.pacs.dimse import DimseClient
from pacslab.pacs.embedded import EmbeddedPacs
from pacslab.pacs.orthanc import OrthancServer
from pacslab.pacs.receiver import Receiver

OUR_AE = "PACSLAB_TEST"
TIMEOUTS = Timeouts(connection=3.0, acse=5.0, dimse=20.0, network=20.0)


def make_config(node: PacsNode, receiver_port: int = 0, ae_title: str = OUR_AE, **timeouts: float) -> Config:
    """Settings for talking to ``node`` with short test timeouts."""
    values = {**TIMEOUTS.__dict__, **timeouts}
    return Config(
        ae_title=ae_title,
        receiver_port=receiver_port,
        nodes=(node,),
        default_node=node.name,
        timeouts=Timeouts(**values),
    )


@dataclass
class SeriesFacts:
    uid: str
    modality: str
    description: str
    files: list[Path] = field(default_factory=list)


@dataclass
class StudyFacts:
    """One study as its files describe it."""

    uid: str
    patient_id: str
    patient_name: str
    birth_date: str
    date: str
    description: str
    accession: str
    series: dict[str, SeriesFacts] = field(default_factory=dict)

    @property
    def modalities(self) -> set[str]:
        return {s.modality for s in self.series.values()}

    @property
    def files(self) -> list[Path]:
        return [f for s in self.series.values() for f in s.files]

    @property
    def n_instances(self) -> int:
        return len(self.files)


@pytest.fixture(scope="session")
def facts(samples: dict[str, list[Path]]) -> dict[str, StudyFacts]:
    """Every sample study by Study Instance UID, read from the files."""
    studies: dict[str, StudyFacts] = {}
    for files in samples.values():
        for path in files:
            ds = dcmread(path, stop_before_pixels=True)
            study = studies.setdefault(
                ds.StudyInstanceUID,
                StudyFacts(
                    uid=ds.StudyInstanceUID,
                    patient_id=str(ds.PatientID),
                    patient_name=str(ds.PatientName),
                    birth_date=str(ds.get("PatientBirthDate", "") or ""),
                    date=str(ds.get("StudyDate", "") or ""),
                    description=str(ds.get("StudyDescription", "") or ""),
                    accession=str(ds.get("AccessionNumber", "") or ""),
                ),
            )
            series = study.series.setdefault(
                ds.SeriesInstanceUID,
                SeriesFacts(
                    ds.SeriesInstanceUID, str(ds.Modality), str(ds.get("SeriesDescription", "") or "")
                ),
            )
            series.files.append(path)
    return studies


@pytest.fixture(scope="session")
def by_patient(facts: dict[str, StudyFacts]) -> dict[str, list[StudyFacts]]:
    """Studies grouped by patient name."""
    grouped: dict[str, list[StudyFacts]] = defaultdict(list)
    for study in facts.values():
        grouped[study.patient_name].append(study)
    return grouped


@pytest.fixture(scope="session")
def ct_phantom(facts: dict[str, StudyFacts], samples: dict[str, list[Path]]) -> StudyFacts:
    """The synthetic CT study (one series of 512x512 slices)."""
    uid = dcmread(samples["ct_phantom"][0], stop_before_pixels=True).StudyInstanceUID
    return facts[uid]


@pytest.fixture(scope="session")
def receiver(orthanc: OrthancServer, embedded_pacs: EmbeddedPacs) -> Iterator[Receiver]:
    """Our Storage SCP for C-MOVE, known to both servers as ``OUR_AE``."""
    config = make_config(orthanc.node)
    rx = Receiver(config, "127.0.0.1", port=0, allowed_calling_aes=[orthanc.ae_title, embedded_pacs.ae_title])
    rx.start()
    orthanc.add_modality(OUR_AE, "127.0.0.1", rx.port)
    embedded_pacs.add_destination(OUR_AE, "127.0.0.1", rx.port)
    try:
        yield rx
    finally:
        rx.stop()


@dataclass
class Peer:
    """One client talking to one real server."""

    name: str
    server: Any
    node: PacsNode
    config: Config
    client: PacsClient
    methods: tuple[str, ...]

    def fresh_client(self, **kwargs: Any) -> PacsClient:
        """Another client to the same server (options such as ``modalities_in_study``)."""
        if isinstance(self.client, DicomwebClient):
            return DicomwebClient(self.node, self.config, **kwargs)
        assert isinstance(self.client, DimseClient)
        return DimseClient(self.node, self.config, receiver=self.client._receiver, **kwargs)


PEERS = ("orthanc-dimse", "orthanc-dicomweb", "embedded-dimse")


def _peer(name: str, request: pytest.FixtureRequest) -> Peer:
    server_name, transport = name.split("-")
    server = request.getfixturevalue("orthanc" if server_name == "orthanc" else "embedded_pacs")
    if transport == "dicomweb":
        node = server.web_node
        config = make_config(node)
        return Peer(name, server, node, config, connect_pacs(node, config), ("wado",))
    rx = request.getfixturevalue("receiver")
    node = server.node
    config = make_config(node, receiver_port=rx.port)
    client = DimseClient(node, config, receiver=rx)
    return Peer(name, server, node, config, client, ("c-get", "c-move"))


@pytest.fixture(params=PEERS)
def peer(request: pytest.FixtureRequest) -> Peer:
    """Each client × server pair (DICOMweb where the server offers it)."""
    return _peer(request.param, request)


RETRIEVALS = [
    ("orthanc-dimse", "c-get"),
    ("orthanc-dimse", "c-move"),
    ("orthanc-dicomweb", "wado"),
    ("embedded-dimse", "c-get"),
    ("embedded-dimse", "c-move"),
]


@pytest.fixture(params=RETRIEVALS, ids=[f"{p}-{m}" for p, m in RETRIEVALS])
def retrieval(request: pytest.FixtureRequest) -> tuple[Peer, str]:
    """Each way of retrieving: (peer, method)."""
    name, method = request.param
    return _peer(name, request), method


class Collector:
    """An ``on_instance`` callback that keeps what arrived (thread-safe) and can stop midway."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.instances: list[ReceivedInstance] = []
        self.reached = threading.Event()
        self.stop_after = stop_after
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, instance: ReceivedInstance) -> None:
        with self._lock:
            self.instances.append(instance)
            self.threads.add(threading.current_thread().name)
            if self.stop_after is not None and len(self.instances) >= self.stop_after:
                self.reached.set()

    @property
    def uids(self) -> set[str]:
        return {i.sop_instance_uid for i in self.instances}


def pixels_by_uid(files: list[Path]) -> dict[str, np.ndarray]:
    """Decoded pixel arrays of source files, by SOP Instance UID."""
    out = {}
    for path in files:
        ds = dcmread(path)
        out[str(ds.SOPInstanceUID)] = ds.pixel_array
    return out


def assert_same_pixels(instances: list[ReceivedInstance], files: list[Path]) -> None:
    """Every received instance decodes to exactly the pixels of its source file."""
    source = pixels_by_uid(files)
    for instance in instances:
        expected = source[instance.sop_instance_uid]
        np.testing.assert_array_equal(instance.dataset.pixel_array, expected)


@pytest.fixture
def empty_embedded(tmp_path: Path) -> Iterator[EmbeddedPacs]:
    """A fresh, empty embedded PACS of this test alone."""
    pacs = EmbeddedPacs(tmp_path / "embedded", port=0)
    pacs.start()
    try:
        yield pacs
    finally:
        pacs.stop()
