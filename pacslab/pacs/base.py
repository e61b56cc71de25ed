"""What the DIMSE and DICOMweb clients share: filters in, one query or retrieve call out.

A transport implements ``_find`` (one query at a level), ``_find_studies`` (the study query,
with its ModalitiesInStudy fallback) and ``retrieve``; the user-facing methods that turn keyword
filters into those calls live here once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from pacslab.pacs import query
from pacslab.pacs.client import (
    DateFilter,
    InstanceMatch,
    OnInstance,
    OnProgress,
    QueryTable,
    RetrieveMethod,
    RetrieveResult,
    SeriesMatch,
    StudyMatch,
)

__all__ = ["QueryRetrieveBase"]


class QueryRetrieveBase:
    """Keyword filters → query tables, and UIDs → retrieve requests, for any transport."""

    modalities_in_study: bool | None = None

    def _find(self, level: query.Level, filters: query.QueryFilters) -> QueryTable[Any]:
        raise NotImplementedError

    def _find_studies(self, filters: query.QueryFilters) -> query.StudyQueryOutcome:
        raise NotImplementedError

    def retrieve(
        self,
        request: query.RetrieveRequest,
        on_instance: OnInstance,
        method: RetrieveMethod = "auto",
        on_progress: OnProgress | None = None,
        cancel_event: threading.Event | None = None,
    ) -> RetrieveResult:
        raise NotImplementedError

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
        """Studies matching the filters, with counts of series and instances."""
        filters = query.make_filters(
            patient_name=patient_name,
            patient_id=patient_id,
            patient_birth_date=patient_birth_date,
            accession_number=accession_number,
            study_date=study_date,
            modality=modality,
            study_description=study_description,
            study_uid=study_uid,
            limit=limit,
        )
        outcome = self._find_studies(filters)
        if outcome.modalities_in_study is not None:
            self.modalities_in_study = outcome.modalities_in_study
        return QueryTable("STUDY", outcome.studies, StudyMatch, outcome.truncated, outcome.messages)

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
        """Series of a study matching the filters."""
        filters = query.make_filters(
            study_uid=study_uid,
            modality=modality,
            series_description=series_description,
            series_uid=series_uid,
            patient_id=patient_id,
            limit=limit,
        )
        return self._find("SERIES", filters)

    def find_instances(
        self,
        study_uid: str,
        series_uid: str,
        *,
        sop_instance_uid: str | Sequence[str] | None = None,
        limit: int | None = None,
    ) -> QueryTable[InstanceMatch]:
        """Instances of a series."""
        filters = query.make_filters(
            study_uid=study_uid, series_uid=series_uid, sop_instance_uid=sop_instance_uid, limit=limit
        )
        return self._find("IMAGE", filters)

    def retrieve_study(
        self,
        study_uid: str,
        *,
        on_instance: OnInstance,
        method: RetrieveMethod = "auto",
        on_progress: OnProgress | None = None,
        cancel_event: threading.Event | None = None,
    ) -> RetrieveResult:
        """Fetch every instance of a study into ``on_instance`` (see :meth:`retrieve`)."""
        request = query.RetrieveRequest.make(study_uid)
        return self.retrieve(request, on_instance, method, on_progress, cancel_event)

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
        """Fetch every instance of a series into ``on_instance`` (see :meth:`retrieve`)."""
        request = query.RetrieveRequest.make(study_uid, series_uid)
        return self.retrieve(request, on_instance, method, on_progress, cancel_event)

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
        """Fetch the listed instances into ``on_instance`` (see :meth:`retrieve`)."""
        request = query.RetrieveRequest.make(study_uid, series_uid, sop_instance_uids)
        return self.retrieve(request, on_instance, method, on_progress, cancel_event)
