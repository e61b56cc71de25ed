"""The network faults the suite plays, and how a client call is run and timed against them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacslab.config import Config, PacsNode, Timeouts
from pacslab.pacs import ReceivedInstance
from pacslab.pacs.dimse import DimseClient
from pacslab.pacs.embedded import EmbeddedPacs
from tests.reliability.dicom_bytes import encode, series
from tests.reliability.faulty_peer import Fault

__all__ = [
    "BOUND_S",
    "N_SLICES",
    "SCENARIOS",
    "TIMEOUT_S",
    "Outcome",
    "Study",
    "call_for",
    "client_for",
    "run_timed",
    "seeded_pacs",
]

TIMEOUT_S = 2.0
BOUND_S = TIMEOUT_S + 1.0
N_SLICES = 30


@dataclass
class Study:
    pacs: EmbeddedPacs
    study_uid: str
    series_uid: str


def seeded_pacs(root: Path) -> Iterator[Study]:
    """An embedded PACS under ``root`` holding a 30-slice series (a context manager's body)."""
    files = root / "files"
    files.mkdir()
    datasets = series(N_SLICES, rows=64, cols=64)
    for i, ds in enumerate(datasets):
        (files / f"{i}.dcm").write_bytes(encode(ds))
    with EmbeddedPacs(root / "pacs", port=0, maximum_associations=50) as pacs:
        pacs.add_files([files])
        yield Study(pacs, str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID))


def client_for(port: int, ae_title: str) -> DimseClient:
    node = PacsNode("faulty", ae_title, "127.0.0.1", port)
    timeouts = Timeouts(connection=TIMEOUT_S, acse=TIMEOUT_S, dimse=TIMEOUT_S, network=TIMEOUT_S)
    return DimseClient(
        node, Config(ae_title="PACSLAB_REL", nodes=(node,), default_node=node.name, timeouts=timeouts)
    )


@dataclass
class Outcome:
    seconds: float | None  # None: still running after the bound and a half
    error: BaseException | None
    value: Any
    delivered: int


def call_for(
    client: DimseClient, what: str, study: Study
) -> tuple[Callable[[], Any], list[ReceivedInstance]]:
    got: list[ReceivedInstance] = []
    calls = {
        "echo": client.echo,
        "find": lambda: client.find_studies(patient_id="RELIABILITY-1"),
        "retrieve": lambda: client.retrieve_series(
            study.study_uid, study.series_uid, on_instance=got.append, method="c-get"
        ),
    }
    return calls[what], got


def run_timed(
    call: Callable[[], Any], delivered: list[ReceivedInstance], started: Callable[[], float]
) -> Outcome:
    """Run ``call`` in a thread; time it from ``started()`` (the fault, or the call)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = call()
        except BaseException as exc:  # kept and judged by the test
            result["error"] = exc
        result["end"] = time.monotonic()

    thread = threading.Thread(target=target, daemon=True)
    begin = time.monotonic()
    thread.start()
    thread.join(BOUND_S + 1.5)
    if "end" not in result:
        return Outcome(None, None, None, len(delivered))
    return Outcome(
        result["end"] - max(begin, started()), result.get("error"), result.get("value"), len(delivered)
    )


SCENARIOS = {
    # At the association: the A-ASSOCIATE-AC never comes whole.
    "abort while associating / echo": (Fault("abort"), "echo"),
    "reset while associating / find": (Fault("reset"), "find"),
    "silent after accepting the connection / retrieve": (Fault("stall"), "retrieve"),
    "slow sender while associating / find": (Fault("slow"), "find"),
    # Halfway through the C-FIND response PDU.
    "abort inside an answer / find": (Fault("abort", after_pdus=1, mid_pdu=True), "find"),
    "reset inside an answer / find": (Fault("reset", after_pdus=1, mid_pdu=True), "find"),
    "stall inside an answer / find": (Fault("stall", after_pdus=1, mid_pdu=True), "find"),
    "slow answer / find": (Fault("slow", after_pdus=1), "find"),
    "oversize PDU after associating / find": (Fault("oversize", after_pdus=1), "find"),
    # 100 KB into the C-STORE sub-operations of a C-GET.
    "abort mid-transfer / retrieve": (Fault("abort", after_bytes=100_000), "retrieve"),
    "reset mid-transfer / retrieve": (Fault("reset", after_bytes=100_000), "retrieve"),
    "stall mid-transfer / retrieve": (Fault("stall", after_bytes=100_000), "retrieve"),
    "slow mid-transfer / retrieve": (Fault("slow", after_bytes=100_000), "retrieve"),
    "oversize PDU mid-transfer / retrieve": (Fault("oversize", after_bytes=100_000), "retrieve"),
}
