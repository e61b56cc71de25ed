"""Queries against real servers: each filter, over each client and server.

Every expectation is computed from the sample files (``facts``), so a server that ignored a
filter, or matched it differently from the DICOM rules, fails here.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest

from pacslab.pacs import QueryFilterError, StudyMatch
from tests.pacs.conftest import Peer, StudyFacts


def _uids(table: object) -> set[str]:
    return {r.study_uid for r in table}  # type: ignore[attr-defined]


def _where(facts: dict[str, StudyFacts], keep: object) -> set[str]:
    return {uid for uid, f in facts.items() if keep(f)}  # type: ignore[operator]


def test_echo_answers(peer: Peer) -> None:
    assert peer.client.echo() > 0


def test_all_studies_with_counts(peer: Peer, facts: dict[str, StudyFacts]) -> None:
    table = peer.client.find_studies()
    assert _uids(table) == set(facts)
    assert not table.truncated
    for record in table:
        study = facts[record.study_uid]
        assert record.patient_id == study.patient_id
        assert record.patient_name == study.patient_name
        assert record.study_date == study.date
        assert record.n_series == len(study.series)
        assert record.n_instances == study.n_instances
        assert set(record.modalities) == study.modalities


@pytest.mark.parametrize(
    "pattern",
    ["Doe^P*", "Doe^Pete?", "*Jan", "Doe", "Citizen^Jan", "Doe, Peter", "Phantom*"],
)
def test_patient_name_wildcards(peer: Peer, facts: dict[str, StudyFacts], pattern: str) -> None:
    table = peer.client.find_studies(patient_name=pattern)
    # The documented rule: wildcards as typed, otherwise a prefix; "Family, Given" is Family^Given.
    typed = pattern.replace(", ", "^")
    dicom = typed if ("*" in typed or "?" in typed) else typed + "*"
    expected = _where(facts, lambda f: fnmatchcase(f.patient_name, dicom))
    assert expected, "the pattern should match some sample"
    assert _uids(table) == expected


def test_patient_id_is_exact(peer: Peer, facts: dict[str, StudyFacts]) -> None:
    table = peer.client.find_studies(patient_id="98890234")
    assert _uids(table) == _where(facts, lambda f: f.patient_id == "98890234")
    assert not peer.client.find_studies(patient_id="9889023")


def test_accession_number(peer: Peer, facts: dict[str, StudyFacts]) -> None:
    table = peer.client.find_studies(accession_number="428")
    assert _uids(table) == _where(facts, lambda f: f.accession == "428")
    assert len(table) == 1


@pytest.mark.parametrize(
    ("typed", "low", "high"),
    [
        ("20030505", "20030505", "20030505"),
        ("2003-05-05", "20030505", "20030505"),
        ("20010101-20030505", "20010101", "20030505"),
        ("2001-01-01 - 2003-05-05", "20010101", "20030505"),
        ("20040101-", "20040101", "99991231"),
        ("-20010101", "00000000", "20010101"),
    ],
)
def test_study_date_and_ranges(
    peer: Peer, facts: dict[str, StudyFacts], typed: str, low: str, high: str
) -> None:
    table = peer.client.find_studies(study_date=typed)
    expected = _where(facts, lambda f: f.date and low <= f.date <= high)
    assert expected
    assert _uids(table) == expected


@pytest.mark.parametrize("modality", ["CR", "CT", "MR"])
def test_modality_at_study_level(peer: Peer, facts: dict[str, StudyFacts], modality: str) -> None:
    table = peer.client.find_studies(modality=modality)
    assert _uids(table) == _where(facts, lambda f: modality in f.modalities)
    assert all(modality in r.modalities for r in table)


def test_modality_through_series_when_modalities_in_study_is_not_used(
    peer: Peer, facts: dict[str, StudyFacts]
) -> None:
    client = peer.fresh_client(modalities_in_study=False)
    table = client.find_studies(modality="MR", patient_name="Doe^Peter")
    expected = _where(facts, lambda f: "MR" in f.modalities and f.patient_name == "Doe^Peter")
    assert _uids(table) == expected
    assert all("MR" in r.modalities for r in table)


@pytest.mark.parametrize("pattern", ["Brain*", "*Brain*", "Carotids", "XR C Spine*"])
def test_study_description_wildcards(peer: Peer, facts: dict[str, StudyFacts], pattern: str) -> None:
    table = peer.client.find_studies(study_description=pattern)
    dicom = pattern if "*" in pattern else pattern + "*"
    expected = _where(facts, lambda f: fnmatchcase(f.description, dicom))
    assert expected
    assert _uids(table) == expected


def test_filters_combine(peer: Peer, facts: dict[str, StudyFacts]) -> None:
    table = peer.client.find_studies(patient_name="Doe^Peter", study_date="20030505", modality="MR", limit=10)
    expected = _where(facts, lambda f: f.patient_name == "Doe^Peter" and f.date == "20030505")
    assert _uids(table) == expected


def test_limit_marks_truncation(peer: Peer, facts: dict[str, StudyFacts]) -> None:
    table = peer.client.find_studies(limit=2)
    assert len(table) == 2
    assert table.truncated
    assert _uids(table) <= set(facts)
    everything = peer.client.find_studies(limit=len(facts))
    assert len(everything) == len(facts)
    assert not everything.truncated


def test_series_of_a_study(peer: Peer, facts: dict[str, StudyFacts]) -> None:
    study = next(f for f in facts.values() if f.description == "Brain-MRA")
    table = peer.client.find_series(study.uid)
    assert {r.series_uid for r in table} == set(study.series)
    for record in table:
        series = study.series[record.series_uid]
        assert record.study_uid == study.uid
        assert record.modality == series.modality
        assert record.series_description == series.description
        assert record.n_instances == len(series.files)


def test_series_description_wildcard_and_modality(peer: Peer, facts: dict[str, StudyFacts]) -> None:
    study = next(f for f in facts.values() if f.description == "Brain-MRA")
    table = peer.client.find_series(study.uid, series_description="*FAST*")
    expected = {s.uid for s in study.series.values() if fnmatchcase(s.description, "*FAST*")}
    assert expected
    assert {r.series_uid for r in table} == expected
    assert not peer.client.find_series(study.uid, modality="CT")


def test_instances_of_a_series(peer: Peer, ct_phantom: StudyFacts) -> None:
    series = next(iter(ct_phantom.series.values()))
    table = peer.client.find_instances(ct_phantom.uid, series.uid)
    from pydicom import dcmread

    expected = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in series.files}
    assert {r.sop_instance_uid for r in table} == expected
    assert all(r.series_uid == series.uid for r in table)
    limited = peer.client.find_instances(ct_phantom.uid, series.uid, limit=5)
    assert len(limited) == 5
    assert limited.truncated


def test_patients_with_study_counts(peer: Peer, by_patient: dict[str, list[StudyFacts]]) -> None:
    table = peer.client.find_patients(patient_name="Doe*")
    assert {r.patient_name for r in table} == {"Doe^Peter", "Doe^Archibald"}
    for record in table:
        if record.n_studies is not None:
            assert record.n_studies == len(by_patient[record.patient_name])


def test_table_becomes_a_dataframe(peer: Peer, facts: dict[str, StudyFacts]) -> None:
    table = peer.client.find_studies(patient_name="Doe^Archibald")
    frame = table.to_dataframe()
    assert list(frame.columns) == table.columns
    assert len(frame) == len(table) == 2
    assert set(frame["study_uid"]) == _uids(table)
    assert set(frame["n_instances"]) == {facts[u].n_instances for u in _uids(table)}
    assert isinstance(table[0], StudyMatch)


def test_open_association_serves_many_queries(peer: Peer, facts: dict[str, StudyFacts]) -> None:
    with peer.fresh_client() as client:
        for study_uid in list(facts)[:4]:
            assert _uids(client.find_studies(study_uid=study_uid)) == {study_uid}


def test_study_uid_list(peer: Peer, facts: dict[str, StudyFacts]) -> None:
    wanted = sorted(facts)[:3]
    assert _uids(peer.client.find_studies(study_uid=wanted)) == set(wanted)


def test_bad_filter_is_refused_before_any_network(peer: Peer) -> None:
    with pytest.raises(QueryFilterError, match="study_date"):
        peer.client.find_studies(study_date="2024-13-45")
    with pytest.raises(QueryFilterError, match="ends"):
        peer.client.find_studies(study_date="20240201-20240101")
