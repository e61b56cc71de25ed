"""The PACS boundary: one :class:`PacsClient` protocol and the values that cross it.

Both transports (:mod:`pacslab.pacs.dimse`, :mod:`pacslab.pacs.dicomweb`) implement the
protocol and return these types, so widgets and notebooks never see pynetdicom or
dicomweb-client objects.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, overload, runtime_checkable

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset, read_partial
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

if TYPE_CHECKING:
    import threading

    import pandas as pd

    from pacslab.config import PacsNode

__all__ = [
    "DateFilter",
    "EncodedSink",
    "InstanceMatch",
    "OnInstance",
    "OnProgress",
    "PacsClient",
    "PatientMatch",
    "QueryTable",
    "ReceivedInstance",
    "RetrieveMethod",
    "RetrieveProgress",
    "RetrieveResult",
    "SeriesMatch",
    "StoreStatus",
    "StudyMatch",
    "into_ingest",
]

RetrieveMethod = Literal["auto", "c-get", "c-move", "wado"]
# A date typed by the user: "20240101", "2024-01-01", "20240101-20240131", "20240101-",
# a datetime.date, or a (start, end) pair with None for an open end.
DateFilter = Any


class ReceivedInstance:
    """One instance as it came off the wire, decoded only when asked.

    The fast path (ingest writing pixel bytes as chunks) reads :attr:`dataset_bytes` and
    :attr:`transfer_syntax_uid`; everything else can use :attr:`dataset`, decoded on first
    access and cached.

    Parameters
    ----------
    sop_class_uid, sop_instance_uid, transfer_syntax_uid : str
        Identify the instance and the encoding of ``data``.
    data : bytes
        The encoded instance: the data set alone (``dataset_offset == 0``, as DIMSE sends it)
        or a whole DICOM Part 10 file whose data set starts at ``dataset_offset`` (as WADO-RS
        sends it).
    dataset_offset : int
        Where the data set starts in ``data``.
    """

    __slots__ = (
        "__dict__",
        "data",
        "dataset_offset",
        "sop_class_uid",
        "sop_instance_uid",
        "transfer_syntax_uid",
    )

    def __init__(
        self,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        data: bytes,
        dataset_offset: int = 0,
    ) -> None:
        self.sop_class_uid = str(sop_class_uid)
        self.sop_instance_uid = str(sop_instance_uid)
        self.transfer_syntax_uid = str(transfer_syntax_uid)
        self.data = data
        self.dataset_offset = dataset_offset

    @classmethod
    def from_part10(cls, data: bytes) -> ReceivedInstance:
        """Wrap a DICOM Part 10 file (preamble, file meta, data set) held in memory.

        Raises
        ------
        pydicom.errors.InvalidDicomError
            When ``data`` has no DICOM preamble and file meta information.
        """
        # File Meta Group Length (0002,0000) UL, explicit VR little endian right after "DICM",
        # says where the data set starts: only the meta group is decoded.
        if data[128:132] == b"DICM" and data[132:138] == b"\x02\x00\x00\x00UL":
            (group_length,) = struct.unpack_from("<I", data, 140)
            end = 144 + group_length
            meta = read_dataset(BytesIO(data[132:end]), is_implicit_VR=False, is_little_endian=True)
        else:
            fp = BytesIO(data)
            meta = read_partial(fp, stop_when=lambda tag, vr, length: True).file_meta
            end = fp.tell()
        return cls(
            meta.MediaStorageSOPClassUID,
            meta.MediaStorageSOPInstanceUID,
            meta.TransferSyntaxUID,
            data,
            dataset_offset=end,
        )

    @classmethod
    def from_dataset(cls, ds: Dataset) -> ReceivedInstance:
        """Encode a pydicom data set (in its own transfer syntax, else explicit VR little endian)."""
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return cls.from_part10(buffer.getvalue())

    @property
    def dataset_bytes(self) -> bytes:
        """The encoded data set without file meta information."""
        if self.dataset_offset == 0:
            return self.data
        return self.data[self.dataset_offset :]

    @property
    def file_meta(self) -> FileMetaDataset:
        """File meta information describing this instance."""
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(self.sop_class_uid)
        meta.MediaStorageSOPInstanceUID = UID(self.sop_instance_uid)
        meta.TransferSyntaxUID = UID(self.transfer_syntax_uid)
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        return meta

    def file_bytes(self) -> bytes:
        """The instance as a DICOM Part 10 file."""
        if self.dataset_offset:
            return self.data
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_file_meta_info

        out = DicomBytesIO()
        out.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(out, self.file_meta)
        out.write(self.data)
        return out.getvalue()

    def write(self, path: Path | str) -> Path:
        """Write the instance as a DICOM Part 10 file at ``path`` and return the path."""
        target = Path(path)
        target.write_bytes(self.file_bytes())
        return target

    @cached_property
    def dataset(self) -> Dataset:
        """The decoded data set (with file meta), decoded on first access."""
        return pydicom.dcmread(BytesIO(self.file_bytes()))

    def __repr__(self) -> str:
        return (
            f"ReceivedInstance(sop_instance_uid={self.sop_instance_uid!r}, "
            f"transfer_syntax={UID(self.transfer_syntax_uid).name!r}, bytes={len(self.data)})"
        )


@dataclass(frozen=True)
class RetrieveProgress:
    """Where a retrieve stands; sent on every pending response and every received instance.

    ``completed``/``failed``/``warning``/``remaining`` are the PACS's own sub-operation counts
    (``remaining`` is ``None`` when it does not say); ``received`` counts instances that reached
    our callback; ``expected`` is the number of instances the PACS listed before the transfer.
    """

    method: str
    received: int
    expected: int | None = None
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int | None = None

    @property
    def fraction(self) -> float | None:
        """Share of the expected instances received so far (0-1), or ``None`` if unknown."""
        if self.expected:
            return min(1.0, self.received / self.expected)
        total = self.completed + self.failed + self.warning + (self.remaining or 0)
        if self.remaining is not None and total:
            return (self.completed + self.failed + self.warning) / total
        return None


@dataclass(frozen=True)
class RetrieveResult:
    """How a retrieve ended.

    ``status`` is ``"success"`` only when every expected instance reached the callback;
    a cancelled retrieve says ``"cancelled"``. A retrieve that lost instances for any other
    reason raises :class:`~pacslab.pacs.errors.RetrieveIncomplete` carrying this result.
    ``missing_uids`` comes from listing the instances on the PACS; ``missing_known`` is False
    when that listing could not be made (the PACS went away first).
    """

    method: str
    level: str
    status: Literal["success", "cancelled", "incomplete"]
    received: int
    expected: int | None
    completed: int = 0
    failed: int = 0
    warning: int = 0
    received_uids: tuple[str, ...] = ()
    missing_uids: tuple[str, ...] = ()
    failed_uids: tuple[str, ...] = ()
    status_code: int | None = None
    elapsed: float = 0.0
    messages: tuple[str, ...] = ()
    missing_known: bool = True

    @property
    def ok(self) -> bool:
        """True when every expected instance arrived."""
        return self.status == "success"


@dataclass(frozen=True)
class StoreStatus:
    """The PACS's answer for one instance sent by :meth:`PacsClient.store`."""

    sop_instance_uid: str
    sop_class_uid: str
    status: int
    meaning: str
    category: Literal["success", "warning", "failure"]

    @property
    def ok(self) -> bool:
        """True when the PACS kept the instance (success or warning)."""
        return self.category != "failure"


@dataclass(frozen=True)
class PatientMatch:
    """A patient found on the PACS."""

    patient_id: str
    patient_name: str
    patient_birth_date: str = ""
    patient_sex: str = ""
    n_studies: int | None = None


@dataclass(frozen=True)
class StudyMatch:
    """A study found on the PACS; counts are ``None`` when the PACS does not give them."""

    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    study_description: str = ""
    modalities: tuple[str, ...] = ()
    n_series: int | None = None
    n_instances: int | None = None


@dataclass(frozen=True)
class SeriesMatch:
    """A series found on the PACS."""

    series_uid: str
    study_uid: str = ""
    modality: str = ""
    series_number: int | None = None
    series_description: str = ""
    series_date: str = ""
    body_part: str = ""
    n_instances: int | None = None
    patient_id: str = ""
    patient_name: str = ""


@dataclass(frozen=True)
class InstanceMatch:
    """An instance found on the PACS."""

    sop_instance_uid: str
    sop_class_uid: str = ""
    series_uid: str = ""
    study_uid: str = ""
    instance_number: int | None = None
    rows: int | None = None
    columns: int | None = None


R = TypeVar("R")


class QueryTable(Generic[R]):
    """The records a query returned, in the PACS's order; converts to a pandas DataFrame.

    ``truncated`` is True when the query stopped at ``limit`` and the PACS had more.
    """

    def __init__(
        self,
        level: str,
        records: Iterable[R],
        record_type: type[R],
        truncated: bool = False,
        messages: Sequence[str] = (),
    ) -> None:
        self.level = level
        self.records: tuple[R, ...] = tuple(records)
        self.record_type = record_type
        self.truncated = truncated
        self.messages = tuple(messages)

    @property
    def columns(self) -> list[str]:
        """Column names, in record field order."""
        return [f.name for f in dataclasses.fields(self.record_type)]  # type: ignore[arg-type]

    def to_dataframe(self) -> pd.DataFrame:
        """A DataFrame with one row per record and one column per field."""
        import pandas as pd

        rows = [dataclasses.asdict(r) for r in self.records]  # type: ignore[call-overload]
        return pd.DataFrame(rows, columns=self.columns)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[R]:
        return iter(self.records)

    @overload
    def __getitem__(self, index: int) -> R: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[R, ...]: ...
    def __getitem__(self, index: int | slice) -> R | tuple[R, ...]:
        return self.records[index]

    def __bool__(self) -> bool:
        return bool(self.records)

    def __repr__(self) -> str:
        more = ", truncated" if self.truncated else ""
        return f"QueryTable({self.level}, {len(self.records)} records{more})"


OnInstance = Callable[[ReceivedInstance], None]
OnProgress = Callable[[RetrieveProgress], None]


class EncodedSink(Protocol):
    """Anything that takes encoded instances, such as :class:`pacslab.ingest.Ingest`."""

    def add_encoded(
        self,
        data: bytes,
        transfer_syntax_uid: str | None = None,
        sop_class_uid: str | None = None,
        sop_instance_uid: str | None = None,
        name: str | None = None,
    ) -> Any: ...


def into_ingest(ingest: EncodedSink) -> OnInstance:
    """An ``on_instance`` callback that hands each instance to an ingest as it came, undecoded.

    Examples
    --------
    >>> with Ingest(store) as ingest:                                   # doctest: +SKIP
    ...     pacs.retrieve_series(study, series, on_instance=into_ingest(ingest))
    """

    def add(instance: ReceivedInstance) -> None:
        ingest.add_encoded(
            instance.data,
            instance.transfer_syntax_uid,
            instance.sop_class_uid,
            instance.sop_instance_uid,
        )

    return add


@runtime_checkable
class PacsClient(Protocol):
    """What pacslab asks of a PACS, whatever the transport.

    Filters take what a user types: wildcards ``*``/``?`` in names and descriptions, dates
    as ``20240101``, ``2024-01-01``, ranges ``20240101-20240131``, open ranges ``20240101-``
    / ``-20240131``. Received instances are handed to ``on_instance`` one by one (never two
    at once) on a delivery thread of the retrieve, through a short bounded queue: they are
    never collected in memory.
    """

    node: PacsNode

    def echo(self) -> float:
        """Check the PACS answers; return the round trip in seconds."""
        ...

    def find_patients(
        self,
        *,
        patient_name: str | None = None,
        patient_id: str | None = None,
        patient_birth_date: DateFilter = None,
        limit: int | None = None,
    ) -> QueryTable[PatientMatch]:
        """Patients matching the filters."""
        ...

    def find_studies(
        self,
        *,
        patient_name: str | None = None,
        patient_id: str | None = None,
        patient_birth_date: DateFilter = None,
        accession_number: str | None = None,
        study_date: DateFilter = None,
        modality: str | None = None,
        study_description: str | None = None,
        study_uid: str | Sequence[str] | None = None,
        limit: int | None = None,
    ) -> QueryTable[StudyMatch]:
        """Studies matching the filters, with series/instance counts when the PACS gives them."""
        ...

    def find_series(
        self,
        study_uid: str | None = None,
        *,
        modality: str | None = None,
        series_description: str | None = None,
        series_uid: str | Sequence[str] | None = None,
        patient_id: str | None = None,
        limit: int | None = None,
    ) -> QueryTable[SeriesMatch]:
        """Series of a study (or of any study when ``study_uid`` is None) matching the filters."""
        ...

    def find_instances(
        self,
        study_uid: str,
        series_uid: str,
        *,
        sop_instance_uid: str | Sequence[str] | None = None,
        limit: int | None = None,
    ) -> QueryTable[InstanceMatch]:
        """Instances of a series."""
        ...

    def retrieve_study(
        self,
        study_uid: str,
        *,
        on_instance: OnInstance,
        method: RetrieveMethod = "auto",
        on_progress: OnProgress | None = None,
        cancel_event: threading.Event | None = None,
    ) -> RetrieveResult:
        """Fetch every instance of a study into ``on_instance``."""
        ...

    def retrieve_series(
        self,
        study_uid: str,
        series_uid: str,
        *,
        on_instance: OnInstance,
        method: RetrieveMethod = "auto",
        on_progress: OnProgress | None = None,
        cancel_event: threading.Event | None = None,
    ) -> RetrieveResult:
        """Fetch every instance of a series into ``on_instance``."""
        ...

    def retrieve_instances(
        self,
        study_uid: str,
        series_uid: str,
        sop_instance_uids: Sequence[str],
        *,
        on_instance: OnInstance,
        method: RetrieveMethod = "auto",
        on_progress: OnProgress | None = None,
        cancel_event: threading.Event | None = None,
    ) -> RetrieveResult:
        """Fetch the listed instances of a series into ``on_instance``."""
        ...

    def store(self, datasets: Iterable[Dataset | Path | str]) -> list[StoreStatus]:
        """Send instances to the PACS; one status per instance, in order."""
        ...

    def close(self) -> None:
        """Release any open association or HTTP session."""
        ...

    def __enter__(self) -> PacsClient: ...

    def __exit__(self, *exc: object) -> None: ...
