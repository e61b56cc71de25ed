"""ipywidgets views over pacslab, for JupyterLab and the Voilà dashboard.

Each view takes its collaborators in its constructor (a PACS client, a slice store, a Dask
client), publishes its state as traits and displays as ``view.widget``.
"""

from widgets.app import TABS, App
from widgets.batch_query import BatchQuery
from widgets.job_panel import JobPanel
from widgets.slice_viewer import SliceViewer
from widgets.study_browser import LOCAL_STORE, StudyBrowser
from widgets.table import PagedTable
from widgets.transfer_monitor import Transfer, TransferLog, TransferMonitor
from widgets.upload_panel import NO_SCHEMA, UploadPanel
from widgets.view import View

__all__ = [
    "LOCAL_STORE",
    "NO_SCHEMA",
    "TABS",
    "App",
    "BatchQuery",
    "JobPanel",
    "PagedTable",
    "SliceViewer",
    "StudyBrowser",
    "Transfer",
    "TransferLog",
    "TransferMonitor",
    "UploadPanel",
    "View",
]
