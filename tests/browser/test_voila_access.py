"""What the dashboard's Voilà serves besides the dashboard: nothing (``voila.json``)."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(
    "path",
    [
        "voila/files/dashboard.ipynb",
        "voila/files/batch_pipeline.ipynb",
        "voila/files/sanitize.cfg",
        "voila/files/../pacslab/cli.py",
        "voila/files/%2e%2e/voila.json",
        "voila/render/01_browse_and_retrieve.ipynb",
        "voila/tree",
        "notebooks/dashboard.ipynb",
        "api/contents",
        "api/kernels",
    ],
)
def test_no_file_or_api_is_served(voila_url: str, path: str) -> None:
    response = requests.get(voila_url + path, timeout=30, allow_redirects=True)
    assert response.status_code in {403, 404, 405}, (path, response.status_code, response.text[:200])
    assert '"cells"' not in response.text
    assert "import" not in response.text
