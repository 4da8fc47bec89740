"""The docked widget: choose a BIDS run and a checkpoint, predict its BOLD volumes, compare them with the measured ones.

The widget is a view over a :class:`~napari_spec2vol._state.WidgetState` (idle, running, done, failed, cancelled),
which holds every decision that does not need Qt and is tested on its own.

The work runs in a napari ``thread_worker`` (a generator over :func:`napari_spec2vol._pipeline.predict_run`), so
the viewer stays responsive; a progress bar follows it and a Cancel button stops it. When it finishes, the
measured, predicted and difference volumes appear side by side in grid mode with linked contrast limits and one
time slider (:func:`napari_spec2vol._layers.show_comparison`), plus the voxel-wise dynamic correlation, and the
per-volume SSIM, PSNR and spatial correlation fill a table and a small plot. *Try the sample data* prepares the
simulated sample (:mod:`napari_spec2vol._sample_data`) in the same kind of worker and predicts it. Every user error
becomes a napari notification (never a traceback).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, SpinBox, Table
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

from . import _pipeline
from ._pipeline import DEVICES, SCAN_BACKENDS, Progress, RunResult
from ._state import Outcome, WidgetState, error_message

__all__ = ["Spec2VolWidget", "error_message"]

if TYPE_CHECKING:  # pragma: no cover
    import napari


class _Relay(QObject):
    """Carries progress reports from inside a long step (worker thread) to the widget (GUI thread)."""

    progress = Signal(object)


class Spec2VolWidget(Container):
    """Predict BOLD from EEG with a Spec2VolCAMU-Net checkpoint and compare it with the measured BOLD.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer the widget is docked in (napari passes it).

    Attributes
    ----------
    result : RunResult or None
        The last completed prediction.
    worker : napari.qt.threading.GeneratorWorker or None
        The running prediction or sample preparation, if any.
    state : WidgetState
        What the widget is doing (its phase and status message), and what it does next.
    """

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.result: RunResult | None = None
        self.worker = None
        self.state = WidgetState()
        self._pairs: list = []
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)

        self.bids_dir = FileEdit(mode="d", label="BIDS dataset", tooltip="Root folder of a raw BIDS dataset")
        # choices from a callable: napari calls reset_choices() on docked magicgui widgets when layers change
        self.run_choice = ComboBox(label="run", choices=self._run_names,
                                   tooltip="Paired EEG + BOLD runs of the dataset")
        self.checkpoint = FileEdit(mode="r", label="checkpoint", filter="*.ckpt *.pt *.pth",
                                   tooltip="A checkpoint written by 'spec2vol_bids train'")
        self.output_dir = FileEdit(mode="d", label="output folder",
                                   tooltip="Derivatives (spectrogram, target, prediction) are written here; "
                                           "empty: a per-dataset folder under ~/.cache/spec2vol-bids/napari")
        self.device = ComboBox(label="device", choices=list(DEVICES), value="auto",
                               tooltip="auto: the GPU when torch sees one, else the CPU")
        self.scan_backend = ComboBox(label="scan backend", choices=list(SCAN_BACKENDS), value="auto",
                                     tooltip="Selective-scan implementation (mamba_ssm needs CUDA)")
        self.batch_size = SpinBox(label="batch size", value=8, min=1, max=512)
        self.sample_button = PushButton(text="Try the sample data",
                                        tooltip="Simulate a small run, train a tiny model (cached) and predict it")
        self.run_button = PushButton(text="Predict")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress_bar = ProgressBar(label="progress", min=0, max=1000, value=0)
        self.status = Label(label="status", value=self.state.message)
        self.summary = Label(label="run metrics", value="")
        self.metrics_table = Table(value={"volume": [], "time (s)": [], "SSIM": [], "PSNR (dB)": [], "r": []},
                                   label="per volume")
        self.extend([self.bids_dir, self.run_choice, self.checkpoint, self.output_dir, self.device,
                      self.scan_backend, self.batch_size, self.sample_button, self.run_button, self.cancel_button,
                      self.progress_bar, self.status, self.summary, self.metrics_table])
        self._plot = _MetricsPlot()
        self.native.layout().addWidget(self._plot.canvas)

        self.bids_dir.changed.connect(self._on_dataset_changed)
        self.run_button.changed.connect(self.start)
        self.sample_button.changed.connect(self.load_sample)
        self.cancel_button.changed.connect(self.cancel)
        self.metrics_table.native.cellClicked.connect(self._on_row_clicked)
        self.viewer.dims.events.current_step.connect(self._on_time_changed)

    # ------------------------------------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        """Whether a prediction or a sample preparation is in progress."""
        return self.state.running

    def _run_names(self, widget=None) -> list[str]:
        return [p.name for p in self._pairs]

    def _set_running(self, running: bool) -> None:
        for w in (self.bids_dir, self.run_choice, self.checkpoint, self.output_dir, self.device, self.scan_backend,
                  self.batch_size, self.sample_button, self.run_button):
            w.enabled = not running
        self.cancel_button.enabled = running

    def _notify_error(self, exc: BaseException) -> None:
        message = error_message(exc)
        self.status.value = message
        show_error(message)

    def _show_state(self) -> None:
        """The status line says what the state says."""
        self.status.value = self.state.message

    # -------------------------------------------------------------------------------------------- dataset
    def _on_dataset_changed(self, value=None) -> None:
        path = Path(self.bids_dir.value)
        self._pairs = []
        self.run_choice.reset_choices()
        if not str(self.bids_dir.value) or not path.is_dir() or path == Path("."):
            return
        if not (path / "dataset_description.json").is_file():
            # typed paths change on every key stroke: say it quietly, notify only on Predict
            self.status.value = f"{path} is not a BIDS dataset (no dataset_description.json)."
            return
        self._start_indexing(path)

    @property
    def indexing(self) -> bool:
        """Whether the chosen dataset is being indexed (in a worker thread)."""
        return self.state.indexing is not None

    def _start_indexing(self, path: Path) -> None:
        """Index the dataset in a worker thread: pybids can take seconds on a large dataset."""
        self.state.begin_indexing(path)
        self.run_button.enabled = False
        self._show_state()
        worker = _index_worker(path)
        worker.returned.connect(lambda outcome: self._on_indexed(path, outcome))
        worker.start()

    def _on_indexed(self, path: Path, outcome: Outcome) -> None:
        if not self.state.end_indexing(path, self.bids_dir.value):  # the user chose another folder meanwhile
            return
        self.run_button.enabled = not self.running
        if outcome.error is not None:
            self._notify_error(outcome.error)
            return
        self._set_pairs(outcome.result, path)

    def _set_pairs(self, pairs: list, path) -> list[str]:
        self._pairs = list(pairs)
        names = self._run_names()
        self.run_choice.reset_choices()
        wanted = self.state.take_wanted_run()
        if names:
            self.run_choice.value = wanted if wanted in names else names[0]
        after = self.state.indexed(len(names), Path(path).name)
        self._show_state()
        if after is not None:
            after()
        return names

    def load_dataset(self, path) -> list[str]:
        """Index the BIDS dataset at ``path`` and offer its paired runs.

        Parameters
        ----------
        path : path-like
            Root of a raw BIDS dataset.

        Returns
        -------
        runs : list of str
            The names of the paired runs now offered in the run box.

        Notes
        -----
        Runs in the calling thread; choosing a folder in the form indexes it in a worker thread instead.
        """
        self.state.indexing = None
        return self._set_pairs(_pipeline.list_runs(path), path)

    # --------------------------------------------------------------------------------------------- running
    def start(self, value=None):
        """Check the inputs and start the prediction in a worker thread.

        Returns
        -------
        worker : GeneratorWorker or None
            The started worker, or ``None`` when the inputs are wrong (a notification says why).
        """
        if self.running:
            return None
        if self.indexing:
            self.state.after_indexing(self.start)
            self._show_state()
            return None
        try:
            pair, checkpoint = self._inputs()
        except Exception as exc:  # noqa: BLE001
            self._notify_error(exc)
            return None
        self.state.start("predict", f"Starting {pair.name} ...")
        relay = self._relay
        worker = _prediction_worker(
            pair, checkpoint, out_dir=self._output_dir(), device=self.device.value, scan_backend=self.scan_backend.value,
            batch_size=int(self.batch_size.value), report=relay.progress.emit,
            should_stop=lambda: self.state.cancel_requested)
        return self._launch(worker, self._on_returned)

    def _inputs(self):
        from spec2vol_bids.errors import NoInputError, UsageError
        from spec2vol_bids.utils import require_path

        if not str(self.bids_dir.value) or not Path(self.bids_dir.value).is_dir() or Path(
                self.bids_dir.value) == Path("."):
            raise UsageError("no BIDS dataset is chosen", hint="Choose the root folder of a BIDS dataset.")
        if not self._pairs:
            self.load_dataset(self.bids_dir.value)
        if not self._pairs:
            raise NoInputError("the dataset has no paired EEG + BOLD run",
                               hint="Each EEG run needs a BOLD run with the same entities.")
        pair = _pipeline.find_run(self._pairs, self.run_choice.value)
        ckpt = Path(self.checkpoint.value)
        if not str(self.checkpoint.value) or ckpt == Path("."):
            raise NoInputError("no checkpoint is chosen", hint="Choose a checkpoint written by 'spec2vol_bids train'.")
        require_path(ckpt, "the checkpoint", expected="a checkpoint file",
                     hint="Choose a checkpoint written by 'spec2vol_bids train'.")
        return pair, ckpt

    def _output_dir(self) -> Path:
        chosen = str(self.output_dir.value)
        if chosen and Path(chosen) != Path("."):
            return Path(chosen)
        return _pipeline.default_output_dir(self.bids_dir.value)

    def use_sample(self, paths) -> None:
        """Fill the form with the sample dataset, run and checkpoint (see :func:`~._sample_data.prepare_sample`).

        Parameters
        ----------
        paths : SamplePaths
            The output of :func:`napari_spec2vol._sample_data.prepare_sample`.
        """
        self.checkpoint.value = paths.checkpoint
        self.state.wanted_run = paths.run
        if Path(self.bids_dir.value) == Path(paths.bids_dir) and self._pairs:
            self._set_pairs(self._pairs, paths.bids_dir)
        else:
            self.bids_dir.value = paths.bids_dir  # indexes the dataset (worker), then selects the run

    def load_sample(self, value=None, *, settings: dict | None = None, predict: bool = True):
        """Prepare the sample data in a worker (simulated run + tiny model, cached), then fill in the form.

        Parameters
        ----------
        settings : dict, optional
            Overrides of :data:`napari_spec2vol._sample_data.SAMPLE`.
        predict : bool
            Start the prediction of the sample run as soon as the sample is ready.

        Returns
        -------
        worker : GeneratorWorker or None
            ``None`` when a worker is already running.
        """
        if self.running:
            return None
        self.state.start("sample", "Preparing the sample data ...")
        worker = _sample_worker(settings=settings, report=self._relay.progress.emit,
                                should_stop=lambda: self.state.cancel_requested)
        return self._launch(worker, lambda outcome: self._on_sample_ready(outcome, predict))

    def _launch(self, worker, on_returned):
        """Connect a worker's signals to the widget, show it busy and start the worker (the state is RUNNING)."""
        self.progress_bar.value = 0
        self._show_state()
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(on_returned)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._set_running(True)
        worker.start()
        return worker

    def _accepted(self, outcome: Outcome):
        """The worker's result, or None after an error (notified) or a cancel (a late Cancel still wins)."""
        result = self.state.finish(outcome)
        self._show_state()
        if outcome.error is not None:
            show_error(self.state.message)
        return result

    def _on_sample_ready(self, outcome: Outcome, predict: bool) -> None:
        if self._accepted(outcome) is None:
            return
        self.use_sample(outcome.result)
        self.status.value = f"Sample ready: {outcome.result.run}."
        if predict:
            self.state.after_task(self.start)

    def cancel(self, value=None) -> None:
        """Ask the running prediction to stop (at the next window block, volume or batch)."""
        if self.worker is None or not self.state.request_cancel():
            return
        self._show_state()
        self.worker.quit()

    def _on_progress(self, prog: Progress) -> None:
        if not isinstance(prog, Progress) or self.worker is None:
            return
        stage = _STAGES.get(prog.stage.split(" on ")[0], (0.0, 1.0))
        overall = stage[0] + (stage[1] - stage[0]) * prog.fraction
        # until the first predicted batch reports back, a busy bar (Qt: maximum 0)
        self.progress_bar.max = 0 if prog.stage.startswith("predicting") and prog.done == 0 else 1000
        self.progress_bar.value = int(round(1000 * overall)) if self.progress_bar.max else 0
        self.status.value = f"{prog.stage}: {prog.done}/{prog.total}" if prog.total > 1 else prog.stage

    def _on_returned(self, result: Outcome) -> None:
        if self._accepted(result) is not None:
            self.show_result(result.result)

    def _on_aborted(self) -> None:
        self.state.aborted()
        self._show_state()
        show_info("spec2vol: prediction cancelled")

    def _on_finished(self) -> None:
        after = self.state.worker_finished()
        self.worker = None
        self._set_running(False)
        self.progress_bar.max = 1000
        if not self.state.keeps_progress:  # cancelled, failed or only prepared: no stale partial bar
            self.progress_bar.value = 0
        if after is not None:
            after()

    # --------------------------------------------------------------------------------------------- results
    def show_result(self, result: RunResult) -> list:
        """Show a :class:`RunResult`: comparison layers in the viewer, metrics in the table and the plot.

        Returns
        -------
        layers : list of napari.layers.Layer
            measured, predicted, difference and dynamic-correlation layers.
        """
        from ._layers import show_comparison

        self.result = result
        self.state.result_shown()
        layers = show_comparison(self.viewer, result.layer_data())
        self.metrics_table.value = result.table()
        self.metrics_table.native.resizeColumnsToContents()
        self._plot.show(result)
        summary = _pipeline.describe(result)
        r = summary["dynamic r"]
        self.summary.value = (f"SSIM {summary['SSIM']:.3f} | PSNR {summary['PSNR (dB)']:.1f} dB | "
                              f"spatial r {_fmt(summary['r'])} | dynamic r {_fmt(r)}")
        self.progress_bar.max = 1000
        self.progress_bar.value = 1000
        self.status.value = (f"{result.run}: {summary['volumes']} volumes predicted on {summary['device']} "
                             f"({result.metadata.get('scan_backend')} scan).")
        return layers

    def _on_row_clicked(self, row: int, column: int) -> None:
        if self.result is None or row >= len(self.result.volume_indices):
            return
        self.viewer.dims.set_point(self.viewer.dims.ndim - 4, float(self.result.translate[0]
                                                                    + row * self.result.scale[0]))

    def _on_time_changed(self, event=None) -> None:
        if self.result is None or self.viewer.dims.ndim < 4:
            return
        # world time of the slider == seconds since the first BOLD volume (the layers' time translate)
        self._plot.mark(float(self.viewer.dims.point[self.viewer.dims.ndim - 4]))


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


#: share of the progress bar given to each stage (start, end)
_STAGES = {
    "loading the checkpoint": (0.0, 0.05),
    "reading the EEG": (0.05, 0.1),
    "EEG spectrogram": (0.1, 0.35),
    "BOLD targets": (0.35, 0.55),
    "predicting": (0.55, 0.95),
    "metrics": (0.95, 1.0),
    # sample data
    "simulating an EEG-fMRI dataset": (0.0, 0.25),
    "computing spectrograms and targets": (0.25, 0.35),
    "training a tiny model": (0.35, 1.0),
}


@thread_worker(start_thread=False)
def _prediction_worker(pair, checkpoint, **kwargs):
    """Generator run in a worker thread; errors are returned (and shown as notifications), not raised."""
    try:
        result = yield from _pipeline.predict_run(pair, checkpoint, **kwargs)
    except Exception as exc:  # noqa: BLE001 - shown to the user as a notification
        return Outcome(error=exc)
    return Outcome(result=result)


@thread_worker(start_thread=False)
def _index_worker(path):
    """Paired runs of a dataset, found in a worker thread; errors are returned (and shown), not raised."""
    try:
        return Outcome(result=_pipeline.list_runs(path))
    except Exception as exc:  # noqa: BLE001 - shown to the user as a notification
        return Outcome(error=exc)


@thread_worker(start_thread=False)
def _sample_worker(settings=None, report=None, should_stop=None):
    """Generator run in a worker thread: build or reuse the sample; errors are returned, not raised."""
    from ._pipeline import Cancelled, _inner
    from ._sample_data import prepare_sample

    yield Progress("simulating an EEG-fMRI dataset", 0, 1)
    relay = _inner("sample", None, should_stop)

    def on_progress(p: Progress) -> None:
        relay(0, 1)  # raises Cancelled when the user asked to stop
        if report is not None:
            report(p)

    try:
        paths = prepare_sample(settings=settings, report=on_progress)
    except Cancelled:
        return Outcome()
    except Exception as exc:  # noqa: BLE001 - shown to the user as a notification
        return Outcome(error=exc)
    yield Progress("training a tiny model", 1, 1)
    return Outcome(result=paths)


class _MetricsPlot:
    """A small matplotlib plot of the per-volume SSIM, spatial r and PSNR with a marker at the current time."""

    def __init__(self):
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.2, 2.0), dpi=90, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(160)
        self.ax = self.figure.add_subplot(111)
        self.ax2 = self.ax.twinx()
        self._marker = None
        self._clear()

    def _clear(self) -> None:
        for ax in (self.ax, self.ax2):
            ax.clear()
            ax.tick_params(labelsize=7)
        self.ax.set_xlabel("time (s)", fontsize=7)
        self.ax.set_ylabel("SSIM, r", fontsize=7)
        self.ax2.set_ylabel("PSNR (dB)", fontsize=7, color="tab:orange")
        self._marker = None

    def show(self, result: RunResult) -> None:
        """Plot the metrics of ``result``."""
        self._clear()
        t = result.times
        self.ax.plot(t, result.ssim, color="tab:blue", lw=1.2, label="SSIM")
        self.ax.plot(t, result.spatial_r, color="tab:green", lw=1.0, label="r")
        self.ax2.plot(t, result.psnr, color="tab:orange", lw=1.0, label="PSNR")
        self.ax.legend(fontsize=6, loc="upper left", frameon=False)
        self._marker = self.ax.axvline(float(t[0]) if len(t) else 0.0, color="k", lw=0.8, ls="--")
        self.canvas.draw_idle()

    def mark(self, time_s: float) -> None:
        """Move the time marker to ``time_s`` (seconds)."""
        if self._marker is not None:
            self._marker.set_xdata([time_s, time_s])
            self.canvas.draw_idle()
