"""The widget's state machine, without Qt: phases, cancel, queued actions, indexing."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_spec2vol._state import Outcome, Phase, WidgetState, error_message
from spec2vol_bids.errors import DataError


def test_a_prediction_runs_then_is_done():
    state = WidgetState()
    assert state.phase is Phase.IDLE and not state.running
    assert state.start("predict", "Starting sub-01 ...")
    assert state.phase is Phase.RUNNING and state.running and state.message == "Starting sub-01 ..."
    assert not state.start("sample", "again")  # one worker at a time
    assert state.finish(Outcome(result="R")) == "R"
    assert state.phase is Phase.DONE and state.running  # the worker thread has not ended yet
    state.result_shown()
    assert state.worker_finished() is None
    assert not state.running and state.keeps_progress


@pytest.mark.parametrize("outcome, phase, message", [
    (Outcome(error=DataError("bad channels", hint="Use others")), Phase.FAILED, "bad channels. Use others"),
    (Outcome(error=RuntimeError("boom")), Phase.FAILED, "RuntimeError: boom"),
    (Outcome(), Phase.CANCELLED, "Cancelled."),  # the worker stopped itself (should_stop)
])
def test_failures_and_stops_return_nothing(outcome, phase, message):
    state = WidgetState()
    state.start("predict", "Starting ...")
    assert state.finish(outcome) is None
    assert state.phase is phase and message in state.message
    state.worker_finished()
    assert not state.keeps_progress and not state.running


def test_cancel_wins_over_a_late_result():
    state = WidgetState()
    assert not state.request_cancel()  # nothing runs
    state.start("predict", "Starting ...")
    assert state.request_cancel() and state.cancel_requested and state.message == "Cancelling ..."
    assert state.phase is Phase.RUNNING  # until the worker stops
    assert state.finish(Outcome(result="too late")) is None
    assert state.phase is Phase.CANCELLED and state.message == "Cancelled."
    state.worker_finished()
    assert state.start("predict", "again") and not state.cancel_requested  # a new task starts clean


def test_a_worker_that_ends_without_returning_counts_as_cancelled():
    state = WidgetState()
    state.start("predict", "Starting ...")
    state.worker_finished()
    assert state.phase is Phase.CANCELLED and not state.running
    state.start("predict", "Starting ...")
    state.aborted()
    assert state.phase is Phase.CANCELLED


def test_a_prepared_sample_queues_the_prediction_and_resets_the_bar():
    state, started = WidgetState(), []
    state.start("sample", "Preparing the sample data ...")
    assert state.finish(Outcome(result="paths")) == "paths"
    state.after_task(lambda: started.append(True))
    assert not state.keeps_progress  # the sample is ready, nothing was predicted yet
    then = state.worker_finished()
    assert then is not None and not state.running
    then()
    assert started == [True] and state.worker_finished() is None  # queued once


def test_indexing_defers_predict_and_selects_the_wanted_run(tmp_path):
    state, calls = WidgetState(), []
    state.begin_indexing(tmp_path / "ds")
    assert state.indexing == tmp_path / "ds" and "Indexing ds" in state.message
    state.after_indexing(lambda: calls.append("start"))
    assert "Waiting" in state.message
    # another folder was chosen meanwhile: this indexing result is stale
    assert not state.end_indexing(tmp_path / "old", tmp_path / "ds") and state.indexing is not None
    assert state.end_indexing(tmp_path / "ds", str(tmp_path / "ds")) and state.indexing is None
    state.wanted_run = "sub-02_task-rest"
    assert state.take_wanted_run() == "sub-02_task-rest" and state.take_wanted_run() is None
    then = state.indexed(2, "ds")
    assert state.message == "2 paired run(s) in ds." and then is not None
    then()
    assert calls == ["start"] and state.indexed(2, "ds") is None


def test_error_message():
    assert error_message(DataError("x", hint="y")) == "x. y"
    assert error_message(ValueError()) == "ValueError: ValueError"


def test_the_state_module_needs_no_qt():
    import ast

    import napari_spec2vol._state as module

    tree = ast.parse(Path(module.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in names if m.split(".")[0] in ("napari", "qtpy", "magicgui", "PyQt5")}
