"""A live view of ``spec2vol_bids realtime``: follow the growing prediction NIfTI as volumes arrive.

The real-time command appends every prediction to an uncompressed 4-D NIfTI (``IncrementalNifti``: the voxels
first, then the header's volume count, then the sidecar). The viewer follows that file from its own process, so a
slow or closed GUI never delays a prediction, and the same view works on a session started elsewhere (a shared
disk) or after the fact.

* :class:`LiveSeries` (no Qt): polls the file and keeps the volumes in napari's axis order, their BOLD indices
  (gaps filled with empty volumes, so the time axis stays aligned), latencies and time courses (the mean of the
  volume, or of each label of an ROI image, and of one chosen voxel).
* :class:`LiveViewWidget`: a dock widget that polls on a Qt timer, shows the series as one image layer whose time
  slider follows the newest volume, and plots the time courses (double-click a voxel of the layer to plot it).
* ``python -m napari_spec2vol._live FILE`` (what ``spec2vol_bids realtime --napari`` starts): a viewer with the
  widget following ``FILE``; ``--screenshot PNG --exit-after N`` saves a picture once N volumes are shown and quits.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import _layers, _reader

#: ``metadata["spec2vol_role"]`` of the live layer
ROLE = "live"


class LiveSeries:
    """The volumes of a growing prediction file, read incrementally.

    Parameters
    ----------
    path : path-like
        The ``.nii`` written by ``spec2vol_bids realtime --out`` (it may not exist yet).
    roi_mask : ndarray of int, shape (X, Y, Z), optional
        Labels on the model grid (voxel order of the file); the time courses are the mean of each label > 0
        instead of the whole volume's mean.
    baseline_volumes : int
        :attr:`change` is each volume minus the mean of the first ``baseline_volumes`` predicted volumes (the mean
        of those so far until there are that many), as a neurofeedback display shows change from a baseline block.

    Notes
    -----
    A volume is taken once the header counts it (the writer updates the count after the voxels are on disk) and,
    when the sidecar exists, once the sidecar lists its BOLD index. A file replaced by a new session (another
    inode, or fewer volumes than already read) starts the series again.
    """

    def __init__(self, path: str | os.PathLike, *, roi_mask: np.ndarray | None = None, baseline_volumes: int = 10):
        self.path = Path(path)
        self.baseline_volumes = max(1, int(baseline_volumes))
        self.roi_mask = None if roi_mask is None else np.asarray(roi_mask).astype(np.int64)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything read (a new session replaced the file); :attr:`generation` counts the resets."""
        self.generation = getattr(self, "generation", -1) + 1
        self._identity: tuple[int, int] | None = None
        self._read = 0  # volumes of the file consumed
        self._buffer: np.ndarray | None = None  # (capacity, z, y, x) float32
        self._change: np.ndarray | None = None  # the same rows minus the baseline
        self._baseline: np.ndarray | None = None
        self._baseline_rows: list[int] = []  # rows (not gap fillers) averaged into the baseline
        self._slots = 0  # filled rows of the buffer (volumes + gap fillers)
        self.indices: list[int] = []  # BOLD index of every row (gaps included)
        self.latencies: list[float | None] = []
        self.courses: np.ndarray = np.zeros((0, 0), np.float32)  # (rows, labels)
        self.labels: list[str] = []
        self.voxel: tuple[int, int, int] | None = None  # (z, y, x) of the plotted voxel
        self.repetition_time = 1.0
        self.scale: list[float] = [1.0, 1.0, 1.0, 1.0]
        self.translate: list[float] = [0.0, 0.0, 0.0, 0.0]
        self._masks: list[np.ndarray] = []
        self.status = f"waiting for {self.path.name}"

    @property
    def n_volumes(self) -> int:
        """Predicted volumes read so far (gap fillers not counted)."""
        return self._read

    @property
    def data(self) -> np.ndarray:
        """The rows so far, ``(t, z, y, x)`` float32 (NaN rows where the session predicted nothing)."""
        if self._buffer is None:
            return np.zeros((0, 1, 1, 1), np.float32)
        return self._buffer[: self._slots]

    @property
    def change(self) -> np.ndarray:
        """:attr:`data` minus the baseline (the mean of the first ``baseline_volumes`` predicted volumes); NaN
        outside the head (baseline below 10 % of its robust range)."""
        if self._change is None:
            return np.zeros((0, 1, 1, 1), np.float32)
        return self._change[: self._slots]

    @property
    def baseline_complete(self) -> bool:
        return len(self._baseline_rows) >= self.baseline_volumes

    @property
    def times(self) -> np.ndarray:
        """Onset of every row in seconds (BOLD index x TR)."""
        return np.asarray(self.indices, dtype=float) * self.repetition_time

    def voxel_course(self) -> np.ndarray | None:
        """The time course of :attr:`voxel` (``None`` when no voxel is chosen)."""
        if self.voxel is None or self._buffer is None:
            return None
        z, y, x = self.voxel
        return self.data[:, z, y, x].copy()

    def select_voxel(self, zyx: Sequence[float]) -> bool:
        """Plot the voxel nearest to napari data coordinates ``(z, y, x)``; False outside the volume."""
        if self._buffer is None:
            return False
        idx = tuple(int(np.floor(float(v) + 0.5)) for v in zyx)
        if any(i < 0 or i >= n for i, n in zip(idx, self._buffer.shape[1:])):
            return False
        self.voxel = idx  # type: ignore[assignment]
        return True

    # ------------------------------------------------------------------ reading
    def poll(self) -> int:
        """Read the volumes added since the last call; returns how many rows were added (0: nothing new)."""
        import nibabel as nib

        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._identity is not None:
                self.reset()
            self.status = f"waiting for {self.path.name}"
            return 0
        identity = (st.st_ino, st.st_dev)
        if self._identity is not None and identity != self._identity:
            self.reset()  # a new session replaced the file
        try:
            img = nib.load(str(self.path), mmap=False)
        except Exception as err:  # noqa: BLE001 - a header being created: try again on the next poll
            self.status = f"cannot read {self.path.name} yet ({err.__class__.__name__})"
            return 0
        shape = tuple(int(v) for v in img.shape)
        n_file = shape[3] if len(shape) == 4 else (1 if len(shape) == 3 else 0)
        if len(shape) not in (3, 4):
            self.status = f"{self.path.name} is not a 3-D or 4-D image"
            return 0
        if n_file < self._read:
            self.reset()
        sidecar = _reader._sidecar(self.path)
        if self._identity is None:
            self._identity = identity
            self._setup(img, sidecar)
        indices = sidecar.get("VolumeIndices") if sidecar else None
        available = n_file if indices is None else min(n_file, len(indices))
        latencies = (sidecar.get("Realtime") or {}).get("LatencySeconds") or [] if sidecar else []
        if available <= self._read:
            self._status(available)
            return 0
        if len(shape) == 3:
            block = np.asarray(img.dataobj, dtype=np.float32)[..., None]
        else:
            block = np.asarray(img.dataobj[..., self._read:available], dtype=np.float32)
        vols, _ = self._napari(block, img.affine)
        before = self._slots
        for j, vol in enumerate(vols):
            k = self._read + j
            index = int(indices[k]) if indices is not None else k
            latency = float(latencies[k]) if k < len(latencies) else None
            self._push(vol, index, latency)
        self._read = available
        self._status(available)
        return self._slots - before

    def _setup(self, img, sidecar: dict[str, Any]) -> None:
        tr = float(img.header.get_zooms()[3]) if len(img.shape) == 4 else 0.0
        if sidecar.get("RepetitionTime"):
            tr = float(sidecar["RepetitionTime"])
        self.repetition_time = tr if tr > 0 else 1.0
        _, info = self._napari(np.zeros((*img.shape[:3], 1), np.float32), img.affine)
        self.scale, self.translate = list(info["scale"]), list(info["translate"])
        if self.roi_mask is not None:
            if self.roi_mask.shape != tuple(img.shape[:3]):
                raise ValueError(f"the ROI mask is {self.roi_mask.shape}, the predictions are {tuple(img.shape[:3])}")
            labels = [int(v) for v in np.unique(self.roi_mask) if v > 0]
            canon_mask, _ = _reader.image_to_napari(nib_image(self.roi_mask.astype(np.int32), img.affine),
                                                    kind="mask", name=self.path.name)
            self._masks = [canon_mask == v for v in labels]
            self.labels = [f"label {v}" for v in labels]
        else:
            self._masks = []
            self.labels = ["mean of the volume"]

    def _napari(self, block: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, dict]:
        """Volumes ``(X, Y, Z, k)`` of the file -> ``(k, z, y, x)`` and their geometry, as the plugin's reader
        shows the finished file (:func:`napari_spec2vol._reader.image_to_napari`)."""
        return _reader.image_to_napari(nib_image(block, affine), sidecar={"RepetitionTime": self.repetition_time},
                                       name=self.path.name)

    def _push(self, vol: np.ndarray, index: int, latency: float | None) -> None:
        if not self.indices:
            self.translate[0] = index * self.repetition_time
        else:
            # missing BOLD indices (a stall, a restart): empty rows keep the time axis aligned
            for missing in range(self.indices[-1] + 1, index):
                self._append_row(np.full(vol.shape, np.nan, np.float32), missing, None)
        self._append_row(vol, index, latency)

    def _append_row(self, vol: np.ndarray, index: int, latency: float | None) -> None:
        if self._buffer is None:
            self._buffer = np.empty((16, *vol.shape), np.float32)
            self._change = np.empty((16, *vol.shape), np.float32)
        if self._slots == self._buffer.shape[0]:
            for name in ("_buffer", "_change"):
                old = getattr(self, name)
                grown = np.empty((2 * self._slots, *vol.shape), np.float32)
                grown[: self._slots] = old[: self._slots]
                setattr(self, name, grown)
        row = self._slots
        self._buffer[row] = vol
        self._slots += 1
        if not self.baseline_complete and np.isfinite(vol).all():
            # the baseline is still growing: it moves, so every row so far is re-referenced (few rows)
            self._baseline_rows.append(row)
            self._baseline = np.mean(self._buffer[self._baseline_rows], axis=0)
            self._baseline[~self._in_brain(self._baseline)] = np.nan  # no change shown outside the head
            self._change[: self._slots] = self._buffer[: self._slots] - self._baseline
        elif self._baseline is None:
            self._change[row] = np.nan
        else:
            self._change[row] = vol - self._baseline
        self.indices.append(int(index))
        self.latencies.append(latency)
        if self._masks:
            means = [float(np.mean(vol[m])) if m.any() else np.nan for m in self._masks]
        else:
            means = [float(np.mean(vol))]
        self.courses = np.vstack([self.courses.reshape(-1, len(means)), np.asarray([means], np.float32)])

    @staticmethod
    def _in_brain(baseline: np.ndarray) -> np.ndarray:
        """Voxels above 10 % of the baseline's robust range (FSL FEAT's brain threshold)."""
        finite = baseline[np.isfinite(baseline)]
        if finite.size == 0:
            return np.zeros(baseline.shape, bool)
        lo, hi = np.percentile(finite, [2, 98])
        return baseline > lo + 0.1 * (hi - lo)

    def _status(self, available: int) -> None:
        if not self.indices:
            self.status = f"{self.path.name}: no volume yet"
            return
        last = next((v for v in reversed(self.latencies) if v is not None), None)
        lat = f", latency {last:.3f} s" if last is not None else ""
        gaps = self._slots - self._read
        gap = f", {gaps} not predicted" if gaps else ""
        self.status = f"{self._read} volumes (last: BOLD volume {self.indices[-1]}{lat}{gap})"


def nib_image(data: np.ndarray, affine: np.ndarray):
    """An in-memory NIfTI-1 image."""
    import nibabel as nib

    return nib.Nifti1Image(data, np.asarray(affine, dtype=float))


try:  # the widget needs Qt; LiveSeries does not
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import (
        QCheckBox,
        QFileDialog,
        QHBoxLayout,
        QLabel,
        QLineEdit,
        QPushButton,
        QVBoxLayout,
        QWidget,
    )
except Exception:  # noqa: BLE001 - no Qt binding: importing this module must still work for LiveSeries
    QWidget = object  # type: ignore[assignment,misc]


class LiveViewWidget(QWidget):  # type: ignore[misc,valid-type]
    """Follow a real-time prediction file: the newest volume in the viewer, the time courses in a plot.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    interval_ms : int
        Polling period of the file.
    """

    def __init__(self, napari_viewer, *, interval_ms: int = 250):
        super().__init__()
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.viewer = napari_viewer
        self.series: LiveSeries | None = None
        self.layers: dict[str, Any] = {}  # "predicted", "change" (from the baseline)
        self._limits: tuple[float, float, float] | None = None

        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("…_desc-spec2vol_bold.nii written by spec2vol_bids realtime --out")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.follow_button = QPushButton("Follow")
        self.follow_button.clicked.connect(self._toggle)
        self.jump = QCheckBox("Show the newest volume")
        self.jump.setChecked(True)
        self.status = QLabel("not following a file")
        self.status.setWordWrap(True)
        self.figure = Figure(figsize=(4, 2.6), tight_layout=True)
        self.axes = self.figure.add_subplot(111)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(200)

        row = QHBoxLayout()
        row.addWidget(self.path_edit)
        row.addWidget(browse)
        layout = QVBoxLayout()
        layout.addLayout(row)
        layout.addWidget(self.follow_button)
        layout.addWidget(self.jump)
        layout.addWidget(self.status)
        layout.addWidget(self.canvas)
        hint = QLabel("Double-click a voxel of the prediction to plot its time course.")
        hint.setWordWrap(True)
        layout.addWidget(hint)
        self.setLayout(layout)

        self.timer = QTimer(self)
        self.timer.setInterval(int(interval_ms))
        self.timer.timeout.connect(self.refresh)
        self._draw_plot()

    # ------------------------------------------------------------------ controls
    @property
    def following(self) -> bool:
        return self.timer.isActive()

    def follow(self, path: str | os.PathLike, *, roi_mask: np.ndarray | None = None) -> None:
        """Start following ``path`` (replacing the previous series and its layer)."""
        self.stop()
        self.path_edit.setText(str(path))
        self.series = LiveSeries(path, roi_mask=roi_mask)
        self._remove_layers()
        self._limits = None
        self.follow_button.setText("Stop")
        self.timer.start()
        self.refresh()

    def stop(self) -> None:
        self.timer.stop()
        self.follow_button.setText("Follow")

    def _toggle(self) -> None:
        if self.following:
            self.stop()
            return
        text = self.path_edit.text().strip()
        if not text:
            from napari.utils.notifications import show_error

            show_error("Choose the prediction file (…_desc-spec2vol_bold.nii) written by spec2vol_bids realtime --out")
            return
        self.follow(text)

    def _browse(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Real-time prediction", "", "NIfTI (*.nii)")
        if name:
            self.follow(name)

    # ------------------------------------------------------------------ updates
    def refresh(self) -> int:
        """Poll the file once and update the layer and the plot; returns the number of new rows."""
        if self.series is None:
            return 0
        generation = self.series.generation
        try:
            added = self.series.poll()
        except ValueError as err:  # an ROI image that does not fit the predictions
            from napari.utils.notifications import show_error

            self.stop()
            show_error(str(err))
            return 0
        if self.series.generation != generation:  # a new session replaced the file: new layers
            self._remove_layers()
            self._limits = None
        self.status.setText(self.series.status)
        if added:
            self._update_layer()
            self._draw_plot()
        return added

    def _update_layer(self) -> None:
        series = self.series
        data, change = series.data, series.change
        recent = data[-min(len(data), 5):]
        lo, hi = _layers._limits(recent)
        bound = float(np.nanpercentile(np.abs(change), 99.5)) if np.isfinite(change).any() else 0.0
        bound = bound if bound > 0 else 1e-6
        if self._limits is not None:  # widen only: the contrast does not flicker from volume to volume
            lo, hi = min(lo, self._limits[0]), max(hi, self._limits[1])
            bound = max(bound, self._limits[2])
        self._limits = (lo, hi, bound)
        base = f"mean of the first {series.baseline_volumes} volumes"
        if not self.layers or any(layer not in self.viewer.layers for layer in self.layers.values()):
            self._remove_layers()
            common = {"scale": series.scale, "translate": series.translate, "axis_labels": ("time", "z", "y", "x"),
                      "units": ("s", "mm", "mm", "mm")}
            meta = {"spec2vol_role": ROLE, "path": str(series.path)}
            for layer in self.viewer.layers:
                layer.visible = False
            self.layers = {
                "predicted": self.viewer.add_image(
                    data, name="predicted (live)", colormap="gray", contrast_limits=(lo, hi),
                    metadata={**meta, "spec2vol_live": "predicted"}, **common),
                "change": self.viewer.add_image(
                    change, name=f"change from baseline ({base})", colormap="bwr", contrast_limits=(-bound, bound),
                    metadata={**meta, "spec2vol_live": "change"}, **common),
            }
            for layer in self.layers.values():
                layer.mouse_double_click_callbacks.append(self._on_double_click)
            grid = _layers.viewer_grid(self.viewer)
            grid.enabled = True
            grid.shape = (1, 2)
            grid.stride = 1
            self.viewer.dims.ndisplay = 2
            _layers.viewer_camera(self.viewer).orientation2d = ("up", "right")
            nd = self.viewer.dims.ndim
            self.viewer.dims.set_point(nd - 3, float(series.translate[1] + series.scale[1] * (data.shape[1] // 2)))
            self.viewer.reset_view()
        else:
            for key, arr, (a, b) in (("predicted", data, (lo, hi)), ("change", change, (-bound, bound))):
                layer = self.layers[key]
                layer.data = arr
                layer.contrast_limits_range = (a, b)
                layer.contrast_limits = (a, b)
        if self.jump.isChecked():
            nd = self.viewer.dims.ndim
            self.viewer.dims.set_point(nd - 4, float(series.translate[0] + series.scale[0] * (len(data) - 1)))

    def _remove_layers(self) -> None:
        for layer in self.layers.values():
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.layers = {}

    def _on_double_click(self, layer, event) -> None:
        coords = layer.world_to_data(event.position)
        if self.series is not None and self.series.select_voxel(coords[-3:]):
            self._draw_plot()

    def _draw_plot(self) -> None:
        ax = self.axes
        ax.clear()
        series = self.series
        if series is None or not series.indices:
            ax.text(0.5, 0.5, "no prediction yet", ha="center", va="center", transform=ax.transAxes, color="0.4")
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            t = series.times
            for j, label in enumerate(series.labels):
                ax.plot(t, series.courses[:, j], lw=1.4, label=label)
            voxel = series.voxel_course()
            if voxel is not None:
                z, y, x = series.voxel
                ax.plot(t, voxel, lw=1.2, color="tab:red", label=f"voxel (z, y, x) = ({z}, {y}, {x})")
            ax.axvline(t[-1], color="0.6", lw=0.8, ls=":")
            ax.set_xlabel("time from the first trigger (s)")
            ax.set_ylabel("predicted BOLD")
            ax.legend(fontsize="small", loc="upper left", frameon=False)
            ax.set_title(f"{series.n_volumes} predicted volumes", fontsize="medium")
        self.canvas.draw_idle()


# ---------------------------------------------------------------------- standalone viewer
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m napari_spec2vol._live",
        description="Open napari on a real-time prediction file and follow it as volumes arrive "
                    "(what `spec2vol_bids realtime --napari` starts).")
    p.add_argument("file", type=Path, help="the ..._desc-spec2vol_bold.nii written by spec2vol_bids realtime --out")
    p.add_argument("--roi-mask", type=Path, default=None, help="label image on the model grid: plot each label's mean")
    p.add_argument("--interval", type=float, default=0.25, metavar="S", help="polling period (default 0.25 s)")
    p.add_argument("--title", default=None, help="window title")
    p.add_argument("--screenshot", type=Path, default=None, metavar="PNG",
                   help="save a screenshot of the window once --exit-after volumes are shown, then quit")
    p.add_argument("--exit-after", type=int, default=None, metavar="N",
                   help="quit once N volumes are shown (with --screenshot: after saving it)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="with --exit-after: give up (exit 1) after S seconds")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import napari

    roi = None
    if args.roi_mask is not None:
        import nibabel as nib

        roi = np.asarray(nib.load(str(args.roi_mask)).dataobj).astype(np.int64)
    viewer = napari.Viewer(title=args.title or f"spec2vol-bids live: {args.file.name}")
    widget = LiveViewWidget(viewer, interval_ms=max(20, int(args.interval * 1000)))
    viewer.window.add_dock_widget(widget, area="right", name="Real-time prediction")
    widget.follow(args.file, roi_mask=roi)
    outcome = {"code": 0}
    if args.exit_after is not None:
        import time

        from qtpy.QtCore import QTimer as _Timer

        start = time.monotonic()
        check = _Timer(widget)

        def done():
            if widget.series is not None and widget.series.n_volumes >= args.exit_after:
                check.stop()
                if args.screenshot is not None:
                    args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                    viewer.screenshot(str(args.screenshot), canvas_only=False)
                viewer.close()
            elif args.timeout is not None and time.monotonic() - start > args.timeout:
                check.stop()
                outcome["code"] = 1
                print(f"the live view saw {widget.series.n_volumes if widget.series else 0} of {args.exit_after} "
                      f"volumes in {args.timeout:g} s")
                viewer.close()

        check.timeout.connect(done)
        check.start(100)
    napari.run()
    return outcome["code"]


if __name__ == "__main__":
    raise SystemExit(main())
