"""JupyterLab in chromium: open the processing notebook, start the pacslab kernel, run it to the end."""

from __future__ import annotations

import re

import nbformat
import pytest

from tests.browser.conftest import ROOT, Steps

pytestmark = pytest.mark.browser

NOTEBOOK = "03_process_on_dask.ipynb"
OPEN_MS = 120_000
RUN_MS = 420_000  # retrieve, three jobs over 120 slices of 512x512 and a plot, on a busy machine


def test_process_notebook_runs_to_the_end(steps: Steps, lab_url: str) -> None:
    from playwright.sync_api import expect

    page = steps.page
    source = nbformat.read(ROOT / "notebooks" / NOTEBOOK, as_version=4)
    n_code = sum(1 for cell in source.cells if cell.cell_type == "code")

    with steps.step("open-notebook"):
        page.goto(f"{lab_url}/tree/{NOTEBOOK}", timeout=OPEN_MS)
        expect(page.locator(".jp-Notebook")).to_be_visible(timeout=OPEN_MS)
        expect(page.get_by_text("pacslab | Idle")).to_be_visible(timeout=OPEN_MS)

    with steps.step("run-all"):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
        prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputArea-prompt")
        # A fresh kernel numbers the cells 1..n in order: the last one done means all ran.
        expect(prompts.last).to_have_text(f"[{n_code}]:", timeout=RUN_MS)
        expect(page.get_by_text("pacslab | Idle")).to_be_visible(timeout=OPEN_MS)

    with steps.step("outputs"):
        expect(prompts).to_have_text([f"[{i}]:" for i in range(1, n_code + 1)])
        expect(page.get_by_text("done: 0 failed")).to_be_visible()
        expect(page.get_by_text("overlay: mask True")).to_be_visible()
        expect(page.get_by_text(re.compile(r"job bone_mask-\w+ done: 120 done, 0 failed"))).to_be_attached()
        plot = page.locator(".jp-RenderedImage img").last
        plot.scroll_into_view_if_needed()
        expect(plot).to_be_visible()
        assert (
            page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']").count() == 0
        )
