"""Item 13: the Voilà dashboard runs no code it is sent, serves no file, leaks nothing.

Voilà runs as the project runs it (from the project root, with ``voila.json``) over the
embedded PACS and the test cluster. Three kinds of attack:

* an ``execute_request`` sent over the dashboard kernel's websocket (a ``kernel_info_request``
  sent after it shows when the kernel has handled it);
* requests for notebooks, sources, configuration and ``../`` paths, raw and percent-encoded,
  and a script in the dashboard's own query string;
* script, SQL, shell and path strings typed into every text widget of the dashboard's
  views (headless: the widget objects themselves, with their actions run).

Nothing may run (a marker file stays absent), no file may be served, and no response may
carry a traceback or a patient's name.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import ipywidgets as w
import pydicom
import pytest
import requests
import websocket

from pacslab.config import Config, Timeouts
from pacslab.ingest import ingest_paths
from pacslab.pacs.dimse import DimseClient
from pacslab.store import SliceStore
from tests.reliability.conftest import Figures
from tests.reliability.widget_text import text_inputs, visible_text, walk
from widgets import LOCAL_STORE, App
from widgets.export_panel import ExportPanel

ITEM = 13
TRACEBACK = "Traceback (most recent call last)"

pytestmark = pytest.mark.timeout(300)


def patient_names(samples: dict[str, list[Path]]) -> set[str]:
    """Family names of the sample patients (what must not leak), long enough to mean something."""
    names = set()
    for path in (p for files in samples.values() for p in files):
        name = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientName"]).get(
            "PatientName"
        )
        family = str(name.family_name if name else "").strip()
        if len(family) >= 4:
            names.add(family)
    return names


def _message(msg_type: str, content: dict[str, Any], session: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "username": "attacker",
            "session": session,
            "msg_type": msg_type,
            "version": "5.3",
            "date": dt.datetime.now(dt.UTC).isoformat(),
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": "shell",
        "buffers": [],
    }


def test_an_execute_request_over_the_kernel_websocket_runs_nothing(
    voila_url: str, tmp_path: Path, figures: Figures
) -> None:
    page = requests.get(f"{voila_url}/", timeout=180)
    assert page.status_code == 200
    kernel_id = re.search(r'"kernelId":\s*"([0-9a-f-]+)"', page.text)
    assert kernel_id, "the dashboard page names no kernel"
    marker = tmp_path / f"executed-{uuid.uuid4().hex}"
    code = f"open({str(marker)!r}, 'w').write('ran')"
    session = uuid.uuid4().hex
    url = f"ws://{urlparse(voila_url).netloc}/api/kernels/{kernel_id.group(1)}/channels?session_id={session}"
    ws = websocket.create_connection(url, timeout=60)
    try:
        sent = {}
        for msg_type, content in (
            ("execute_request", {"code": code, "silent": False, "store_history": True}),
            ("inspect_request", {"code": code, "cursor_pos": 1}),
            ("complete_request", {"code": "import o", "cursor_pos": 8}),
            ("kernel_info_request", {}),
        ):
            message = _message(msg_type, content, session)
            sent[message["header"]["msg_id"]] = msg_type
            ws.send(json.dumps(message))
        # Shell messages are handled in order: once kernel_info is answered, the rest was too.
        answers: list[str] = []
        while "kernel_info_reply" not in answers:
            reply = json.loads(ws.recv())
            if reply.get("parent_header", {}).get("msg_id") in sent:
                answers.append(reply["header"]["msg_type"])
    finally:
        ws.close()
    ran = [a for a in answers if a in ("execute_reply", "execute_input", "stream", "execute_result")]
    figures("messages sent: execute, inspect, complete, kernel_info; answered", answers)
    figures("code executed", int(marker.exists()) + len(ran))
    assert not marker.exists()
    assert ran == []
    assert "inspect_reply" not in answers
    assert "complete_reply" not in answers


PROBES = [
    "/notebooks/dashboard.ipynb",
    "/dashboard.ipynb",
    "/voila/render/dashboard.ipynb",
    "/voila/files/notebooks/dashboard.ipynb",
    "/voila/files/voila.json",
    "/voila/files/pacslab/config.py",
    "/voila/files/../pacslab/config.py",
    "/voila/files/%2e%2e/%2e%2e/etc/passwd",
    "/voila/files/..%2f..%2f..%2fetc%2fpasswd",
    "/voila/static/../../voila.json",
    "/voila/static/..%2f..%2fvoila.json",
    "/static/../../../etc/passwd",
    "/files/pacslab/config.py",
    "/api/contents/pacslab/config.py",
    "/api/contents",
    "/tree",
    "/lab",
    "/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/?notebook=../pacslab/config.py",
    "/voila/api/shutdown/x",
]
# What each served file would contain: the notebook JSON, voila.json, Python sources, /etc/passwd.
CONTENT = ('"nbformat"', '"strip_sources"', "def load_config", "from __future__", "root:x:0:0")


def _raw_get(base: str, path: str) -> tuple[int, str, str]:
    """GET ``path`` exactly as written (no normalisation of '..' or '%2e'), following redirects.

    Returns the first status, and the body and path of the last answer.
    """
    where = urlparse(base)
    first: int | None = None
    for _ in range(5):
        connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=120)
        try:
            connection.request("GET", path)
            answer = connection.getresponse()
            body = answer.read().decode("utf-8", "replace")
            location = answer.getheader("Location")
        finally:
            connection.close()
        first = answer.status if first is None else first
        if answer.status not in (301, 302, 303, 307, 308) or not location:
            break
        target = urlparse(location)
        if target.netloc and target.netloc != where.netloc:
            break  # a redirect elsewhere is not served by this Voilà
        path = target.path + (f"?{target.query}" if target.query else "")
    return first, body, path


def test_notebooks_sources_and_parent_paths_are_not_served(
    voila_url: str, samples: dict[str, list[Path]], figures: Figures
) -> None:
    names = patient_names(samples)
    served, tracebacks, leaks, statuses = [], [], [], {}
    for path in PROBES:
        status, body, landed = _raw_get(voila_url, path)
        statuses[path] = status
        if any(marker in body for marker in CONTENT):
            served.append(f"{path} -> {landed}")
        if TRACEBACK in body:
            tracebacks.append(path)
        if path != "/" and not path.startswith("/?") and any(name in body for name in names):
            leaks.append(path)
    figures("paths probed", len(PROBES))
    figures("files served", served)
    figures("responses with a traceback / with a patient name", (len(tracebacks), len(leaks)))
    figures(
        "statuses",
        dict(
            sorted({str(s): sum(1 for v in statuses.values() if v == s) for s in statuses.values()}.items())
        ),
    )
    assert served == []
    assert tracebacks == []
    assert leaks == []


def test_a_script_in_the_dashboard_link_is_not_reflected(voila_url: str, figures: Figures) -> None:
    script = "</script><script>document.title='pwned'</script>"
    answers = {
        key: requests.get(f"{voila_url}/?{key}={quote(script)}", timeout=180)
        for key in ("patient", "study", "series")
    }
    reflected = [key for key, answer in answers.items() if "<script>document.title" in answer.text]
    figures("dashboard links with a script: reflected raw", reflected)
    assert all(answer.status_code == 200 for answer in answers.values())
    assert reflected == []
    assert not any(TRACEBACK in answer.text for answer in answers.values())


PAYLOADS = [
    "<script>document.title='pwned-{token}'</script>",
    "<img src=x onerror=\"fetch('/pwned-{token}')\">",
    "'; DROP TABLE studies; --",
    "__import__('os').system('touch {marker}')",
    "{{{{7*7}}}}${{7*7}}",
    "../../../../etc/passwd",
    "Doe\x00\n\r\t^John*?[]",
    "A" * 5000,
]


@dataclass
class Injection:
    payloads: list[str]
    inputs: list[str]
    marker: Path
    shown: str
    html: str
    studies_before: list[tuple[str, int]]
    studies_after: list[tuple[str, int]]
    unanswered_imports: list[str]


@pytest.fixture(scope="module")
def injected(
    tmp_path_factory: pytest.TempPathFactory,
    embedded_pacs: Any,
    job_client: Any,
    samples: dict[str, list[Path]],
) -> Injection:
    """Every payload typed into every text widget of the dashboard's views, then their buttons clicked."""
    root = tmp_path_factory.mktemp("injection")
    store = SliceStore(root / "store")
    ingest_paths(store, samples["ct_phantom"][:3])
    before = [(s.study_uid, s.n_instances) for s in store.list_studies()]
    node = embedded_pacs.node
    config = Config(
        ae_title="PACSLAB_REL", nodes=(node,), default_node=node.name, timeouts=Timeouts(3, 5, 10, 10)
    )
    imports = root / "imports"
    imports.mkdir()
    app = App(store, job_client, pacs=DimseClient(node, config), config=config, server_root=imports)
    export = ExportPanel(store, config.nodes, config=config, jobs=app.jobs)
    app.browser.wait()
    trees = [app.widget, export.widget]
    inputs = [field for tree in trees for field in text_inputs(tree)]
    token = uuid.uuid4().hex[:10]
    marker = root / f"pwned-{token}"
    payloads = [p.format(token=token, marker=marker) for p in PAYLOADS]
    unanswered = []
    for payload in payloads:
        for field in inputs:
            field.value = payload
        for source in (node.name, LOCAL_STORE):
            app.browser.source = source
            app.browser.search_button.click()
            app.browser.wait(60)
        app.upload.error = ""
        app.upload.folder_button.click()
        app.upload.wait(60)
        if not app.upload.error:
            unanswered.append(repr(payload[:40]))
        for view in (app, app.browser, app.upload, app.viewer, export):
            view.wait(60)
    return Injection(
        payloads=payloads,
        inputs=sorted({f.description for f in inputs}),
        marker=marker,
        shown="\n".join(visible_text(tree) for tree in trees),
        html="\n".join(x.value for tree in trees for x in walk(tree) if isinstance(x, w.HTML | w.HTMLMath)),
        studies_before=before,
        studies_after=[(s.study_uid, s.n_instances) for s in store.list_studies()],
        unanswered_imports=unanswered,
    )


def test_script_injection_into_every_text_widget_runs_nothing(injected: Injection, figures: Figures) -> None:
    raw_markup = [p for p in injected.payloads[:2] if p in injected.html]
    figures("text widgets attacked", ", ".join(injected.inputs))
    figures("payloads per widget", len(injected.payloads))
    figures("code executed (marker file)", int(injected.marker.exists()))
    figures("markup reaching HTML widgets unescaped", len(raw_markup))
    figures("tracebacks shown", injected.shown.count(TRACEBACK))
    assert len(injected.inputs) >= 6
    assert not injected.marker.exists()
    assert raw_markup == []
    assert TRACEBACK not in injected.shown
    assert injected.studies_after == injected.studies_before


def test_every_refused_folder_name_gets_a_message(injected: Injection, figures: Figures) -> None:
    figures("hostile folder names imported without a message to the user", injected.unanswered_imports)
    assert injected.unanswered_imports == []
