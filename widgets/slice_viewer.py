"""SliceViewer: scroll a stored series with window/level, probe pixel values, see job results.

Clicks and the mouse wheel on the picture come through ipyevents (a small widget extension
shipped prebuilt in its wheel, so it works in JupyterLab and Voilà alike): a click probes the
value under the pointer (HU for CT) and centres the zoom there; the wheel scrolls slices.
Pictures are rendered by :func:`pacslab.render.render_slice` and kept in a small LRU cache.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import numpy as np
import traitlets
from ipyevents import Event

from pacslab.render import (
    CT_PRESETS,
    RenderCache,
    RenderedSlice,
    auto_window,
    encode_image,
    render_slice,
    thumbnail_montage,
)
from widgets.view import View, escape, series_label

if TYPE_CHECKING:
    from pacslab.jobs import Job, JobProgress
    from pacslab.store import SeriesInfo, SliceStore
    from pacslab.store.results import ResultReader

__all__ = ["SliceViewer"]

CUSTOM = "custom"
AUTO = "auto"
COLORMAPS = ("gray", "bone", "viridis", "magma", "hot")
THUMBNAILS = 16
THUMBNAIL_SIZE = 48
THUMBNAIL_COLUMNS = 8
# Overlay refreshes while a job runs: often enough to look live, rare enough to stay cheap.
OVERLAY_REFRESH_S = 0.25


def _header_rows(ds: Any, text: str) -> list[tuple[str, str, str, str]]:
    needle = text.strip().lower()
    rows = []
    for element in ds:
        if element.tag == 0x7FE00010:
            continue
        value = f"sequence of {len(element.value)} item(s)" if element.VR == "SQ" else str(element.value)
        if len(value) > 120:
            value = value[:119] + "…"
        tag = f"({element.tag.group:04X},{element.tag.element:04X})"
        row = (tag, element.keyword or element.name, element.VR, value)
        if needle and not any(needle in part.lower() for part in row):
            continue
        rows.append(row)
    return rows


class SliceViewer(View):
    """Slices of one stored series, with window/level, zoom, probe, metadata and a result overlay.

    Parameters
    ----------
    store : SliceStore
        Where the series are.
    series_uid : str, optional
        Series to open first.
    cache_size : int
        Rendered pictures kept (a series scrolled back and forth costs one render per slice).

    Traits
    ------
    series_uid : str
    index : int
        Slice shown (0-based, in stored order).
    n_slices : int
    channel : int
    preset : str
        Name of the window preset in use, ``"custom"`` after moving the sliders.
    center, width : float
        Window in output units (HU for CT).
    colormap : str
    zoom : float
        1 shows the whole slice; zoom crops around the probed point.
    probe : tuple
        ``(row, col)`` of the probed pixel, or empty.
    probe_value : float or None
        Value there on the current slice (rescaled: HU for CT).
    unit : str
    overlay_mode : str
        ``"off"``, ``"mask"`` or ``"side-by-side"``.
    overlay_color : str
    overlay_opacity : float
    overlay_done : int
        Slices of the shown result that are done.
    overlay_shown : bool
        Whether the current picture includes the result for this slice.
    renders : int
        Pictures rendered (not taken from the cache).
    """

    series_uid = traitlets.Unicode("")
    index = traitlets.Int(0)
    n_slices = traitlets.Int(0)
    channel = traitlets.Int(0)
    preset = traitlets.Unicode(AUTO)
    center = traitlets.Float(40.0)
    width = traitlets.Float(400.0)
    colormap = traitlets.Unicode("gray")
    zoom = traitlets.Float(1.0)
    probe = traitlets.Tuple()
    probe_value = traitlets.Float(None, allow_none=True)
    unit = traitlets.Unicode("")
    image_format = traitlets.Unicode("jpeg")
    overlay_path = traitlets.Unicode("")
    overlay_mode = traitlets.Enum(["off", "mask", "side-by-side"], default_value="off")
    overlay_color = traitlets.Unicode("#ff0000")
    overlay_opacity = traitlets.Float(0.4)
    overlay_done = traitlets.Int(0)
    overlay_shown = traitlets.Bool(False)
    metadata_filter = traitlets.Unicode("")
    thumbnail_indices = traitlets.List(traitlets.Int())
    metadata_rows: traitlets.List[tuple[str, str, str, str]] = traitlets.List()
    renders = traitlets.Int(0)

    def __init__(self, store: SliceStore, series_uid: str | None = None, *, cache_size: int = 64) -> None:
        super().__init__()
        self.store = store
        self.cache = RenderCache(cache_size)
        self.info: SeriesInfo | None = None
        self.rendered: RenderedSlice | None = None
        self._pixels: np.ndarray | None = None
        self._presets: dict[str, tuple[float, float]] = {}
        self._hold = 0
        self._setting_preset = False
        self._reader: ResultReader | None = None
        self._done = np.zeros(0, dtype=bool)
        self._overlay_lock = threading.Lock()
        self._last_overlay_refresh = 0.0

        self.series_picker = w.Dropdown(description="Series", layout=w.Layout(width="420px"))
        self.refresh_button = w.Button(
            icon="refresh", tooltip="list the stored series again", layout=w.Layout(width="40px")
        )
        self.slider = w.IntSlider(description="Slice", min=0, max=0, continuous_update=True)
        self.play = w.Play(interval=120, min=0, max=0, step=1, description="Play")
        self.preset_picker = w.Dropdown(description="Window")
        self.center_slider = w.FloatSlider(description="Level", min=-1500, max=3000, step=1, value=40)
        self.width_slider = w.FloatSlider(description="Width", min=1, max=5000, step=1, value=400)
        self.channel_picker = w.Dropdown(description="Channel", layout=w.Layout(display="none"))
        self.colormap_picker = w.Dropdown(options=list(COLORMAPS), value="gray", description="Colours")
        self.zoom_slider = w.FloatSlider(description="Zoom", min=1.0, max=8.0, step=0.25, value=1.0)
        self.image = w.Image(format="jpeg", layout=w.Layout(width="512px", height="auto"))
        self.probe_label = w.HTML("click the image to read a value")
        self.overlay_picker = w.ToggleButtons(options=["off", "mask", "side-by-side"], description="Result")
        self.color_picker = w.ColorPicker(value="#ff0000", description="Colour", concise=True)
        self.opacity_slider = w.FloatSlider(description="Opacity", min=0.0, max=1.0, step=0.05, value=0.4)
        self.overlay_label = w.Label()
        self.metadata_search = w.Text(description="Find", placeholder="tag, keyword or value")
        self.metadata_table = w.HTML()
        self.metadata_panel = w.Accordion(
            children=[
                w.VBox(
                    [
                        self.metadata_search,
                        w.Box([self.metadata_table], layout=w.Layout(max_height="320px", overflow="auto")),
                    ]
                )
            ],
            selected_index=None,
        )
        self.metadata_panel.set_title(0, "Metadata of this slice")
        self.thumbnails = w.Image(
            format="png", layout=w.Layout(width=f"{THUMBNAIL_COLUMNS * THUMBNAIL_SIZE}px")
        )

        self.image_events = Event(
            source=self.image, watched_events=["click", "wheel"], prevent_default_action=True
        )
        self.image_events.on_dom_event(self._on_image_event)
        self.thumbnail_events = Event(source=self.thumbnails, watched_events=["click"])
        self.thumbnail_events.on_dom_event(self._on_thumbnail_event)

        traitlets.link((self.slider, "value"), (self, "index"))
        traitlets.link((self.play, "value"), (self.slider, "value"))
        traitlets.link((self.center_slider, "value"), (self, "center"))
        traitlets.link((self.width_slider, "value"), (self, "width"))
        traitlets.link((self.colormap_picker, "value"), (self, "colormap"))
        traitlets.link((self.zoom_slider, "value"), (self, "zoom"))
        traitlets.link((self.overlay_picker, "value"), (self, "overlay_mode"))
        traitlets.link((self.color_picker, "value"), (self, "overlay_color"))
        traitlets.link((self.opacity_slider, "value"), (self, "overlay_opacity"))
        traitlets.link((self.metadata_search, "value"), (self, "metadata_filter"))
        self.series_picker.observe(self._series_picked, "value")
        self.refresh_button.on_click(lambda _: self.guarded(self.refresh_series_list))
        self.preset_picker.observe(self._preset_picked, "value")
        self.channel_picker.observe(self._channel_picked, "value")
        self.observe(self._on_series, "series_uid")
        self.observe(self._on_window, ["center", "width"])
        self.observe(self._on_preset, "preset")
        self.observe(
            self._redraw_observer,
            [
                "index",
                "channel",
                "colormap",
                "zoom",
                "overlay_mode",
                "overlay_color",
                "overlay_opacity",
                "image_format",
            ],
        )
        self.observe(self._on_probe, "probe")
        self.observe(self._show_metadata_observer, ["metadata_filter"])
        self.metadata_panel.observe(self._show_metadata_observer, "selected_index")

        controls = w.VBox(
            [
                w.HBox([self.series_picker, self.refresh_button]),
                w.HBox([self.play, self.slider]),
                w.HBox([self.preset_picker, self.channel_picker]),
                self.center_slider,
                self.width_slider,
                w.HBox([self.colormap_picker, self.zoom_slider]),
                self.overlay_picker,
                w.HBox([self.color_picker, self.opacity_slider]),
                self.overlay_label,
                self.probe_label,
            ]
        )
        self.widget = w.VBox(
            [
                self._style,
                self.error_area,
                w.HBox([self.image, controls]),
                self.thumbnails,
                self.metadata_panel,
                self.status_line,
            ]
        )
        self.guarded(self.refresh_series_list)
        if series_uid:
            self.show_series(series_uid)

    # -- series --------------------------------------------------------------------------------
    def refresh_series_list(self) -> None:
        """List the stored series in the picker (after an ingest or retrieve)."""
        options = [(series_label(s), s.series_uid) for s in self.store.list_series()]
        current = self.series_uid
        self._hold += 1
        try:
            self.series_picker.options = options
            self.series_picker.value = current if current in {v for _, v in options} else None
        finally:
            self._hold -= 1

    def show_series(self, series_uid: str) -> None:
        """Open a stored series (its first header preset, middle slice)."""
        self.error = ""
        try:
            self.store.series(series_uid)  # SeriesNotFound, named, before anything changes
        except Exception as exc:
            self.fail(exc)
            return
        if series_uid not in {v for _, v in self.series_picker.options}:
            self.refresh_series_list()
        if self.series_uid == series_uid:
            self._on_series({"new": series_uid})
        else:
            self.series_uid = series_uid

    def _series_picked(self, change: dict[str, Any]) -> None:
        if self._hold or not change["new"]:
            return
        self.series_uid = change["new"]

    @contextlib.contextmanager
    def _holding(self) -> Iterator[None]:
        """Change many traits with one redraw at the end."""
        self._hold += 1
        try:
            yield
        finally:
            self._hold -= 1
        if not self._hold:
            self.redraw()

    def _on_series(self, change: dict[str, Any]) -> None:
        try:
            info = self.store.series(change["new"])
        except Exception as exc:
            self.fail(exc)
            return
        self.info = info
        self.cache.clear()
        with self._holding():
            self.clear_result()
            if self.series_picker.value != info.series_uid:
                self._hold += 1
                try:
                    self.series_picker.value = info.series_uid
                finally:
                    self._hold -= 1
            self.n_slices = info.n_slices
            self.slider.max = max(info.n_slices - 1, 0)
            self.play.max = self.slider.max
            self.index = info.n_slices // 2
            names = [c or "image" for c in info.channels]
            self.channel_picker.options = [(n, i) for i, n in enumerate(names)]
            self.channel_picker.value = 0
            self.channel_picker.layout.display = None if len(names) > 1 else "none"
            self.channel = 0
            self.unit = "HU" if info.modality == "CT" else ""
            self.probe = ()
            self._presets = self._presets_for(info)
            options = [*self._presets, AUTO, CUSTOM]
            self._setting_preset = True
            try:
                self.preset_picker.options = options
            finally:
                self._setting_preset = False
            self.preset = options[0]
            self._apply_preset(options[0])
        self.status = f"{info.modality} series, {info.n_slices} slices of {info.rows}×{info.cols}" + "".join(
            f"; check geometry: {warning}" for warning in info.geometry_warnings
        )
        self._make_thumbnails()

    def _presets_for(self, info: SeriesInfo) -> dict[str, tuple[float, float]]:
        presets: dict[str, tuple[float, float]] = {}
        for name, center, width in info.window_presets:
            presets[f"{name} {center:g}/{width:g}"] = (center, width)
        if info.modality == "CT":
            for name, (center, width) in CT_PRESETS.items():
                presets.setdefault(f"{name} {center:g}/{width:g}", (center, width))
        return presets

    # -- window --------------------------------------------------------------------------------
    def _apply_preset(self, name: str) -> None:
        if name == CUSTOM:
            return
        if name == AUTO:
            pixels = self._read_pixels()
            if pixels is None:
                return
            center, width = auto_window(pixels)
        else:
            center, width = self._presets[name]
        self._setting_preset = True
        try:
            with self._holding():
                self.center_slider.min = min(self.center_slider.min, center)
                self.center_slider.max = max(self.center_slider.max, center)
                self.width_slider.max = max(self.width_slider.max, width)
                self.center = center
                self.width = width
        finally:
            self._setting_preset = False

    def _preset_picked(self, change: dict[str, Any]) -> None:
        if not self._setting_preset and change["new"]:
            self.preset = change["new"]

    def _on_preset(self, change: dict[str, Any]) -> None:
        name = change["new"]
        if name not in self.preset_picker.options:
            self.error = f"no window preset {name!r}; choose one of {', '.join(self.preset_picker.options)}"
            return
        if self.preset_picker.value != name:
            self._setting_preset = True
            try:
                self.preset_picker.value = name
            finally:
                self._setting_preset = False
        self.guarded(lambda: self._apply_preset(name))

    def _on_window(self, _: object) -> None:
        if not self._setting_preset and self.preset != CUSTOM and self.info is not None:
            self.preset = CUSTOM
        self.redraw()

    def _channel_picked(self, change: dict[str, Any]) -> None:
        if change["new"] is not None and not self._hold:
            self.channel = int(change["new"])

    # -- drawing -------------------------------------------------------------------------------
    def _read_pixels(self) -> np.ndarray | None:
        if self.info is None:
            return None
        return self.store.read_slice(self.info.series_uid, self.index, self.channel, rescaled=True)

    def _redraw_observer(self, change: dict[str, Any]) -> None:
        if change["name"] == "channel" and self.channel_picker.value != change["new"]:
            self._hold += 1
            try:
                self.channel_picker.value = change["new"]
            finally:
                self._hold -= 1
        self.redraw()

    def _overlay_for(self, index: int) -> np.ndarray | None:
        if self.overlay_mode == "off" or self._reader is None:
            return None
        if index >= len(self._done) or not self._done[index]:
            return None
        return self._reader.read(index)

    def redraw(self) -> None:
        """Render the current slice into the image (from the cache when it was drawn before)."""
        if self._hold or self.info is None:
            return
        try:
            self._redraw()
        except Exception as exc:
            self.fail(exc)

    def _redraw(self) -> None:
        info = self.info
        assert info is not None
        index = min(max(self.index, 0), info.n_slices - 1)
        overlay_ready = (
            self.overlay_mode != "off"
            and self._reader is not None
            and index < len(self._done)
            and bool(self._done[index])
        )
        zoom_center = tuple(self.probe) if self.probe else None
        key = (
            info.series_uid,
            info.version,
            index,
            self.channel,
            self.center,
            self.width,
            self.colormap,
            self.zoom,
            zoom_center if self.zoom > 1 else None,
            self.overlay_path if overlay_ready else "",
            self.overlay_mode if overlay_ready else "off",
            self.overlay_color,
            self.overlay_opacity,
            self.image_format,
        )
        pixels = self.store.read_slice(info.series_uid, index, self.channel, rescaled=True)
        self._pixels = pixels
        rendered = self.cache.get(key)
        if rendered is None:
            overlay = self._overlay_for(index) if overlay_ready else None
            rendered = render_slice(
                pixels,
                self.center,
                self.width,
                colormap=None if self.colormap == "gray" else self.colormap,
                overlay=overlay,
                overlay_mode="side-by-side" if self.overlay_mode == "side-by-side" else "mask",
                overlay_color=self.overlay_color,
                overlay_opacity=self.overlay_opacity,
                zoom=self.zoom,
                zoom_center=zoom_center,
                fmt="png" if self.image_format == "png" else "jpeg",
            )
            self.cache.put(key, rendered)
            self.renders += 1
        self.rendered = rendered
        self.overlay_shown = overlay_ready
        self.image.format = rendered.format
        self.image.value = rendered.data
        self.image.layout.width = "1028px" if rendered.left_width else "512px"
        self._update_probe_value()
        if self.metadata_panel.selected_index is not None:
            self._show_metadata()

    # -- probe ---------------------------------------------------------------------------------
    def _on_image_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "wheel":
            step = 1 if float(event.get("deltaY", 0)) > 0 else -1
            self.index = min(max(self.index + step, 0), max(self.n_slices - 1, 0))
        elif kind == "click":
            self.click(float(event.get("dataX", -1)), float(event.get("dataY", -1)))

    def click(self, x: float, y: float) -> None:
        """Probe the slice under picture pixel ``(x, y)`` (what a click on the image does)."""
        if self.rendered is None:
            return
        position = self.rendered.slice_position(x, y)
        if position is not None:
            self.probe = position

    def _on_probe(self, _: object) -> None:
        if self.zoom > 1:
            self.redraw()  # the zoom centres on the probe; redrawing updates the value too
        else:
            self._update_probe_value()

    def _update_probe_value(self) -> None:
        pixels = self._pixels
        if not self.probe or pixels is None:
            self.probe_value = None
            self.probe_label.value = "click the image to read a value"
            return
        row, col = self.probe
        if not (0 <= row < pixels.shape[0] and 0 <= col < pixels.shape[1]):
            self.probe_value = None
            self.probe_label.value = "the probed point is outside this slice"
            return
        value = float(pixels[row, col])
        self.probe_value = value
        unit = f" {self.unit}" if self.unit else ""
        shown = f"{value:.0f}" if math.isclose(value, round(value)) else f"{value:.4g}"
        self.probe_label.value = escape(f"x={col}, y={row}, slice {self.index}: {shown}{unit}")

    # -- thumbnails ----------------------------------------------------------------------------
    def _make_thumbnails(self) -> None:
        info = self.info
        if info is None:
            return
        n = min(THUMBNAILS, info.n_slices)
        indices = sorted({round(i) for i in np.linspace(0, info.n_slices - 1, n)})
        center, width, channel = self.center, self.width, self.channel

        def work() -> bytes:
            slices = [self.store.read_slice(info.series_uid, i, channel, rescaled=True) for i in indices]
            montage = thumbnail_montage(slices, center, width, size=THUMBNAIL_SIZE, columns=THUMBNAIL_COLUMNS)
            return encode_image(montage, "png")

        def done(data: bytes) -> None:
            if self.info is info:
                self.thumbnails.value = data
                self.thumbnail_indices = indices

        self.run_in_background("thumbnails", work, done)

    def _on_thumbnail_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "click":
            self.click_thumbnail(float(event.get("dataX", -1)), float(event.get("dataY", -1)))

    def click_thumbnail(self, x: float, y: float) -> None:
        """Jump to the slice of the thumbnail under ``(x, y)``."""
        if x < 0 or y < 0:
            return
        k = int(y // THUMBNAIL_SIZE) * THUMBNAIL_COLUMNS + int(x // THUMBNAIL_SIZE)
        if k < len(self.thumbnail_indices):
            self.index = self.thumbnail_indices[k]

    # -- metadata ------------------------------------------------------------------------------
    def _show_metadata_observer(self, _: object) -> None:
        self.guarded(self._show_metadata)

    def _show_metadata(self) -> None:
        if self.info is None:
            return
        ds = self.store.read_header(self.info.series_uid, self.index, self.channel)
        rows = _header_rows(ds, self.metadata_filter)
        self.metadata_rows = rows
        head = "".join(f"<th>{h}</th>" for h in ("tag", "keyword", "VR", "value"))
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        self.metadata_table.value = f'<div class="pacslab-grid"><table><tr>{head}</tr>{body}</table></div>'

    def show_metadata(self, visible: bool = True) -> None:
        """Open (or close) the metadata panel of the current slice."""
        self.metadata_panel.selected_index = 0 if visible else None

    # -- result overlay ------------------------------------------------------------------------
    def show_result(self, path: Path | str, mode: str | None = None) -> None:
        """Show a job's result file for this series over (mask) or beside (image) the slices.

        The file may still be written by a running job; call :meth:`refresh_overlay` (or
        :meth:`follow_job`) to pick up slices as they are done.
        """
        from pacslab.store.results import ResultReader

        self.overlay_path = str(path)
        self._reader = None
        self._done = np.zeros(0, dtype=bool)
        try:
            reader = ResultReader(path)
        except Exception as exc:
            # The job has not written its first slice yet; following it will open the file.
            self.overlay_label.value = f"result: {exc}"
            return
        self._open_reader(reader, mode)

    def _open_reader(self, reader: ResultReader, mode: str | None) -> None:
        kind = reader.kind
        if kind == "measurements":
            self.error = "this result holds measurements, not images: see its table instead"
            return
        if self.info is not None and reader.n_slices != self.info.n_slices:
            self.error = (
                f"the result has {reader.n_slices} slices but the series shown has {self.info.n_slices}; "
                "open the series the job ran on"
            )
            return
        self._reader = reader
        with self._holding():
            self.overlay_mode = mode or ("mask" if kind == "mask" else "side-by-side")
            self._refresh_done()

    def clear_result(self) -> None:
        """Stop showing a result."""
        self._reader = None
        self._done = np.zeros(0, dtype=bool)
        self.overlay_path = ""
        self.overlay_done = 0
        self.overlay_label.value = ""
        with self._holding():
            self.overlay_mode = "off"

    def _refresh_done(self) -> None:
        if self._reader is None:
            return
        done = self._reader.done_mask()
        with self._overlay_lock:
            self._done = done
        self.overlay_done = int(done.sum())
        self.overlay_label.value = f"result: {self.overlay_done}/{len(done)} slices done"

    def refresh_overlay(self) -> None:
        """Read which slices of the result are done now and redraw if this slice changed."""
        if self.overlay_path and self._reader is None:
            self.show_result(self.overlay_path)
            return
        before = bool(self.index < len(self._done) and self._done[self.index])
        self._refresh_done()
        after = bool(self.index < len(self._done) and self._done[self.index])
        if after != before or (after and not self.overlay_shown):
            self.redraw()

    def follow_job(self, job: Job, series_uid: str | None = None) -> None:
        """Show ``job``'s result for a series (the one shown, by default), updated as it runs."""
        uid = series_uid or self.series_uid
        if uid not in job.result_paths:
            self.error = f"job {job.job_id} does not process series {uid}"
            return
        if uid != self.series_uid:
            self.show_series(uid)
        self.show_result(job.result_paths[uid])

        def listener(progress: JobProgress) -> None:
            now = time.monotonic()
            if progress.finished or now - self._last_overlay_refresh >= OVERLAY_REFRESH_S:
                self._last_overlay_refresh = now
                if self.overlay_path == str(job.result_paths[uid]):
                    self.guarded(self.refresh_overlay)

        job.add_listener(listener)
