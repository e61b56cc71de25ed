"""Fixtures of the embedded PACS tests: what the sample files hold, read straight from them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydicom import dcmread

from pacslab.pacs.embedded import EmbeddedPacs


@dataclass
class StudyFacts:
    """One study as the files describe it (the expectation the PACS is checked against)."""

    uid: str
    patient_id: str
    patient_name: str
    date: str
    description: str
    series: dict[str, list[Path]] = field(default_factory=lambda: defaultdict(list))
    modalities: set[str] = field(default_factory=set)
    from_dicomdir: bool = False

    @property
    def n_instances(self) -> int:
        return sum(len(files) for files in self.series.values())


@pytest.fixture(scope="session")
def studies(samples: dict[str, list[Path]]) -> dict[str, StudyFacts]:
    """Every sample study, keyed by Study Instance UID."""
    facts: dict[str, StudyFacts] = {}
    for name, files in samples.items():
        for path in files:
            ds = dcmread(path, stop_before_pixels=True)
            study = facts.setdefault(
                ds.StudyInstanceUID,
                StudyFacts(
                    uid=ds.StudyInstanceUID,
                    patient_id=ds.PatientID,
                    patient_name=str(ds.PatientName),
                    date=ds.get("StudyDate", ""),
                    description=ds.get("StudyDescription", ""),
                ),
            )
            study.series[ds.SeriesInstanceUID].append(path)
            study.modalities.add(ds.Modality)
            # dicomdirtests files sit in patient folders below pydicom/; CT_small and MR_small do not.
            study.from_dicomdir = name == "pydicom" and path.parent.name != "pydicom"
    return facts


@pytest.fixture(scope="module")
def empty_pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPacs]:
    """An embedded PACS of this module alone, empty, on a free port; for tests that store."""
    with EmbeddedPacs(tmp_path_factory.mktemp("pacs") / "root", port=0) as pacs:
        yield pacs
