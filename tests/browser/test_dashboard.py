"""The clinicians' dashboard in chromium: from a study link to a segmentation stored in Orthanc."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import requests
from PIL import Image
from pydicom import dcmread

from tests.browser.conftest import Steps

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from pacslab.pacs.orthanc import OrthancServer

pytestmark = pytest.mark.browser

LOAD_MS = 180_000  # a fresh kernel: imports, the Dask client, C-ECHO and the first query
WORK_MS = 240_000  # retrieving or processing 120 slices of 512x512 on a busy machine
QUICK_MS = 60_000


def option_containing(select: Locator, text: str) -> str:
    """The value of the first option of ``select`` whose text contains ``text``."""
    from playwright.sync_api import expect

    option = select.locator("option").filter(has_text=text).first
    expect(option).to_be_attached(timeout=QUICK_MS)
    value = option.get_attribute("value")
    assert value is not None
    return value


def readout(page: Page, label: str) -> Locator:
    """The value shown beside the visible slider called ``label``."""
    slider = (
        page.locator(".widget-slider")
        .filter(visible=True)
        .filter(has=page.locator("label", has_text=re.compile(f"^{re.escape(label)}$")))
    )
    return slider.locator(".widget-readout")


def red_pixels(image: Locator) -> int:
    """Pixels of the shown picture that are clearly red (the overlay colour)."""
    with Image.open(io.BytesIO(image.screenshot())) as shot:
        rgb = np.asarray(shot.convert("RGB"), dtype=np.int16)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(np.count_nonzero((red > 150) & (red - green > 60) & (red - blue > 60)))


def test_link_search_retrieve_view_process_and_send(
    steps: Steps, voila_url: str, orthanc: OrthancServer, samples: dict[str, list[Path]]
) -> None:
    from playwright.sync_api import expect

    page = steps.page
    phantom = dcmread(samples["ct_phantom"][0], stop_before_pixels=True)
    study_uid = str(phantom.StudyInstanceUID)
    segs_before = _segmentations(orthanc, study_uid)
    try:
        with steps.step("open-study-link"):
            page.goto(f"{voila_url}?study={study_uid}", timeout=LOAD_MS)
            expect(
                page.get_by_text(re.compile(r"C-ECHO PACSLAB_PACS@127\.0\.0\.1:\d+: Success"))
            ).to_be_visible(timeout=LOAD_MS)
            tables = page.locator(".pacslab-table select").filter(visible=True)
            studies, series = tables.nth(0), tables.nth(1)
            expect(studies.locator("option")).to_have_count(1, timeout=LOAD_MS)
            expect(studies).to_have_value(option_containing(studies, "Phantom^Shepp Logan"))
            expect(series).to_contain_text("Axial head phantom", timeout=QUICK_MS)
            expect(page.get_by_text("<script>")).to_have_count(0)

        with steps.step("search-patient"):
            name = page.get_by_placeholder("Doe^J* or Doe, John")
            name.fill("Phantom^Shepp*")
            page.get_by_role("button", name="Search").click()
            expect(page.get_by_text("1 studies on embedded")).to_be_visible(timeout=QUICK_MS)
            expect(studies.locator("option")).to_have_count(1)
            expect(studies).to_contain_text("Phantom^Shepp Logan")
            # The study picked by the link is listed again: it stays picked, with its series.
            expect(studies).to_have_value(option_containing(studies, "Phantom^Shepp Logan"))
            expect(series).to_contain_text("Axial head phantom", timeout=QUICK_MS)

        with steps.step("retrieve-series"):
            series.select_option(value=option_containing(series, "Axial head phantom"))
            page.get_by_role("button", name="Retrieve selected").click()
            expect(page.get_by_text("CT Axial head phantom: 120 instances stored")).to_be_visible(
                timeout=WORK_MS
            )
            open_button = page.get_by_role("button", name="Open in viewer")
            row = series.locator("option").filter(has_text="Axial head phantom")
            expect(row).to_contain_text("yes", timeout=QUICK_MS)  # the Stored column
            expect(open_button).to_be_enabled(timeout=QUICK_MS)  # still picked, now stored
            open_button.click()
            expect(page.get_by_role("tab", name="View", selected=True)).to_be_visible(timeout=QUICK_MS)
            expect(page.get_by_text("CT series, 120 slices of 512×512")).to_be_visible(timeout=QUICK_MS)

        with steps.step("scroll-slices"):
            slice_number = readout(page, "Slice")
            expect(slice_number).to_have_text("60", timeout=QUICK_MS)
            image = page.locator(".widget-image").filter(visible=True).first
            image.hover()
            for _ in range(5):
                page.mouse.wheel(0, 120)
            expect(slice_number).to_have_text("65", timeout=QUICK_MS)

        with steps.step("change-window"):
            before = image.get_attribute("src")
            window = page.get_by_label("Window").filter(visible=True)
            window.select_option(value=option_containing(window, "LUNG -600/1500"))
            # The slider writes negative numbers with a minus sign (U+2212), not a hyphen.
            expect(readout(page, "Level")).to_have_text("\u2212600.00", timeout=QUICK_MS)
            expect(readout(page, "Width")).to_have_text("1500.00", timeout=QUICK_MS)
            expect(image).not_to_have_attribute("src", before or "", timeout=QUICK_MS)

        with steps.step("run-processor"):
            page.get_by_role("tab", name="Process").click()
            processor = page.get_by_label("Processor").filter(visible=True)
            processor.select_option(value="otsu_mask")
            chosen = page.get_by_label("Series").filter(visible=True)
            chosen.select_option(value=option_containing(chosen, "Axial head phantom"))
            page.get_by_role("button", name="Run").click()
            expect(page.get_by_text("120 done, 0 failed of 120 · done")).to_be_visible(timeout=WORK_MS)
            bar = page.locator(".widget-hprogress .progress-bar").filter(visible=True).first
            expect(bar).to_have_attribute("style", re.compile(r"width: 100%"))
            expect(bar).to_have_class(re.compile("progress-bar-success"))
            expect(page.get_by_text(re.compile(r"job otsu_mask-\w+ done: 120 done, 0 failed"))).to_be_visible(
                timeout=QUICK_MS
            )

        with steps.step("see-overlay"):
            page.get_by_role("tab", name="View").click()
            expect(page.get_by_text("result: 120/120 slices done")).to_be_visible(timeout=QUICK_MS)
            shown = page.locator(".widget-toggle-button.mod-active").filter(visible=True)
            expect(shown).to_have_text("mask")
            assert red_pixels(image) > 500, "the mask overlay is not drawn over the slice"

        with steps.step("send-to-orthanc"):
            page.get_by_role("tab", name="Export").click()
            result = page.get_by_label("Result").filter(visible=True)
            expect(result).to_contain_text("otsu_mask 1.0", timeout=QUICK_MS)
            target = page.get_by_label("Send to").filter(visible=True)
            target.select_option(value="orthanc")
            page.get_by_role("button", name="Send to PACS").click()
            expect(page.get_by_text("sent SEG to orthanc: 1 stored, 0 refused")).to_be_visible(
                timeout=WORK_MS
            )

        with steps.step("found-in-orthanc"):
            studies_there = orthanc.get_json("/studies?expand")
            assert isinstance(studies_there, list)
            study = next(s for s in studies_there if s["MainDicomTags"]["StudyInstanceUID"] == study_uid)
            series_there = orthanc.get_json(f"/studies/{study['ID']}/series?expand")
            assert isinstance(series_there, list)
            segs = [
                s
                for s in series_there
                if s["MainDicomTags"].get("Modality") == "SEG" and s["ID"] not in segs_before
            ]
            assert len(segs) == 1
            assert segs[0]["MainDicomTags"].get("SeriesDescription", "").startswith("SEG otsu_mask")
            assert len(segs[0]["Instances"]) == 1
    finally:
        # The session's Orthanc is shared: leave it as the other tests expect it.
        for orthanc_id in _segmentations(orthanc, study_uid) - segs_before:
            requests.delete(f"{orthanc.url}/series/{orthanc_id}", timeout=30).raise_for_status()


def _segmentations(orthanc: OrthancServer, study_uid: str) -> set[str]:
    """Orthanc IDs of the SEG series in a study."""
    studies = orthanc.get_json("/studies?expand")
    assert isinstance(studies, list)
    found: set[str] = set()
    for study in studies:
        if study["MainDicomTags"]["StudyInstanceUID"] != study_uid:
            continue
        series = orthanc.get_json(f"/studies/{study['ID']}/series?expand")
        assert isinstance(series, list)
        found |= {s["ID"] for s in series if s["MainDicomTags"].get("Modality") == "SEG"}
    return found


def test_patient_link_lists_that_patients_studies(steps: Steps, voila_url: str) -> None:
    from playwright.sync_api import expect

    page = steps.page
    with steps.step("open-patient-link"):
        page.goto(f"{voila_url}?patient=77654033", timeout=LOAD_MS)
        studies = page.locator(".pacslab-table select").filter(visible=True).first
        expect(page.get_by_text("2 studies on embedded")).to_be_visible(timeout=LOAD_MS)
        expect(studies.locator("option")).to_have_count(2)
        expect(studies).to_contain_text("Doe^Archibald")
        expect(page.get_by_label("Patient ID")).to_have_value("77654033")
