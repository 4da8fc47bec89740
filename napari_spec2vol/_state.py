"""What the widget is doing, as a small state machine that needs no Qt (tested on its own).

The widget (:mod:`napari_spec2vol._widget`) is a view over one :class:`WidgetState`: it asks the state whether it
may start, tells it what the worker did, and shows :attr:`WidgetState.phase` and :attr:`WidgetState.message`
(buttons enabled or not, the status line, the progress bar reset after a failure or a cancel).

Phases::

    IDLE ──start──► RUNNING ──finish(result)───────────────────► DONE
                     │        ──finish(error)────────────────────► FAILED
                     │        ──finish(None) / aborted / ended──► CANCELLED
                     └──request_cancel: still RUNNING until the worker stops (a late result is then dropped)

    DONE, FAILED, CANCELLED ──start──► RUNNING   (once the worker thread has ended: :attr:`WidgetState.running`)

Indexing a dataset (pybids, in its own worker thread) is tracked beside the phase: the Predict button waits for
it (:meth:`WidgetState.after_indexing`), and a run chosen before the dataset was indexed is selected afterwards
(:attr:`WidgetState.wanted_run`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spec2vol_bids.errors import Spec2VolError

__all__ = ["Phase", "Outcome", "WidgetState", "error_message"]


class Phase(enum.Enum):
    """What the widget's worker is doing, or how its last task ended."""

    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class Outcome:
    """What a worker returns: a result, ``None`` (stopped), or the error that ended it."""

    result: Any = None
    error: BaseException | None = None


def error_message(exc: BaseException) -> str:
    """The one-line message shown for an error: the project's own wording, or the exception's type and text."""
    if isinstance(exc, Spec2VolError):
        return exc.one_line()
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


class WidgetState:
    """The widget's state: its phase, its status message, and what to do when a worker or the indexing ends.

    Attributes
    ----------
    phase : Phase
    task : str or None
        What is running (``"predict"`` or ``"sample"``), or ran last.
    message : str
        The status line.
    cancel_requested : bool
        The user pressed Cancel during the current task.
    indexing : Path or None
        The dataset being indexed in a worker thread.
    wanted_run : str or None
        The run to select once the dataset is indexed (the sample's run).
    """

    def __init__(self, message: str = "Choose a dataset and a checkpoint."):
        self.phase = Phase.IDLE
        self.task: str | None = None
        self.message = message
        self.cancel_requested = False
        self.indexing: Path | None = None
        self.wanted_run: str | None = None
        self._busy = False
        self._after_indexing: Callable[[], Any] | None = None
        self._after_task: Callable[[], Any] | None = None

    # ------------------------------------------------------------------------------------------------- tasks
    @property
    def running(self) -> bool:
        """Whether a worker thread is alive (from :meth:`start` until :meth:`worker_finished`)."""
        return self._busy

    def start(self, task: str, message: str) -> bool:
        """Enter RUNNING for ``task``; ``False`` (nothing changes) while a worker thread is alive."""
        if self._busy:
            return False
        self._busy = True
        self.phase, self.task, self.cancel_requested, self.message = Phase.RUNNING, task, False, message
        return True

    def request_cancel(self) -> bool:
        """Ask the running task to stop; ``False`` when no worker runs."""
        if not self.running:
            return False
        self.cancel_requested = True
        self.message = "Cancelling ..."
        return True

    def finish(self, outcome: Outcome) -> Any:
        """The worker returned ``outcome``: DONE (its result is returned), FAILED or CANCELLED (``None``).

        A result that arrives after Cancel was pressed is dropped (the user asked for nothing).
        """
        if outcome.error is not None:
            self.phase, self.message = Phase.FAILED, error_message(outcome.error)
            return None
        if outcome.result is None or self.cancel_requested:
            self.phase, self.message = Phase.CANCELLED, "Cancelled."
            return None
        self.phase = Phase.DONE
        return outcome.result

    def aborted(self) -> None:
        """The worker was stopped before it returned."""
        self.phase, self.message = Phase.CANCELLED, "Cancelled."

    def worker_finished(self) -> Callable[[], Any] | None:
        """The worker thread ended (after :meth:`finish` or :meth:`aborted`); returns what to run next, if queued.

        A worker that ended without returning anything (e.g. killed) counts as cancelled.
        """
        if self.phase is Phase.RUNNING:
            self.aborted()
        self._busy = False
        after, self._after_task = self._after_task, None
        return after

    def after_task(self, then: Callable[[], Any]) -> None:
        """Run ``then`` once the current worker has ended (e.g. predict once the sample is ready)."""
        self._after_task = then

    def result_shown(self) -> None:
        """A prediction's result is on screen (from a worker, or shown directly)."""
        self.phase, self.task = Phase.DONE, "predict"

    @property
    def keeps_progress(self) -> bool:
        """Whether the progress bar stays full: only after a prediction was shown (a failure, a cancel or a
        prepared sample leaves no stale bar)."""
        return self.phase is Phase.DONE and self.task == "predict"

    # --------------------------------------------------------------------------------------------- indexing
    def begin_indexing(self, path: str | Path) -> None:
        self.indexing = Path(path)
        self.message = f"Indexing {Path(path).name} ..."

    def end_indexing(self, path: str | Path, current: str | Path) -> bool:
        """The indexing of ``path`` ended; ``False`` when the user has chosen another folder meanwhile
        (``current``), whose own indexing is still to come."""
        if Path(path) != Path(current):
            return False
        self.indexing = None
        return True

    def after_indexing(self, then: Callable[[], Any]) -> None:
        """Run ``then`` once the dataset is indexed (Predict pressed while indexing)."""
        self._after_indexing = then
        self.message = "Waiting for the dataset to be indexed ..."

    def indexed(self, n_runs: int, dataset: str) -> Callable[[], Any] | None:
        """The dataset's runs are offered; returns what was waiting for them, if anything."""
        self.message = f"{n_runs} paired run(s) in {dataset}."
        after, self._after_indexing = self._after_indexing, None
        return after

    def take_wanted_run(self) -> str | None:
        """The run to select now (once), if one was asked for before the dataset was indexed."""
        wanted, self.wanted_run = self.wanted_run, None
        return wanted
