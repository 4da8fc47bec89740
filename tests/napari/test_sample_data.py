"""The sample-data contribution: a simulated run and a tiny trained model, shown in one click."""

from __future__ import annotations

import numpy as np
import pytest

from napari_spec2vol import _sample_data
from spec2vol_bids.errors import UsageError

from .conftest import TEST_SAMPLE


def test_prepare_sample_builds_once_then_reuses_the_cache(napari_sample):
    paths = napari_sample.paths
    stages = [p.stage for p in napari_sample.stages]
    for stage in ("simulating an EEG-fMRI dataset", "computing spectrograms and targets", "training a tiny model"):
        assert stage in stages
    train_reports = [p for p in napari_sample.stages if p.stage == "training a tiny model"]
    assert train_reports[-1].done == train_reports[-1].total > 0
    assert (paths.bids_dir / "dataset_description.json").is_file()
    assert paths.checkpoint.is_file()
    assert paths.run == "sub-02_task-rest"  # held out: the model never trained on it
    from spec2vol_bids.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(paths.checkpoint)
    assert ckpt["training"]["runs"]["train"] == ["sub-01_task-rest"]
    again = []
    assert _sample_data.prepare_sample(settings=TEST_SAMPLE, report=again.append) == paths
    assert again == []  # nothing rebuilt


def test_unknown_sample_setting_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown sample setting"):
        _sample_data.prepare_sample(settings={"epoch": 3})


def test_sample_command_docks_the_widget_and_shows_the_comparison(make_napari_viewer, qtbot, monkeypatch,
                                                                  napari_sample):
    """File > Open Sample through napari and npe2: EEG at once, the comparison when the worker is done."""
    monkeypatch.setattr(_sample_data, "SAMPLE", {**_sample_data.SAMPLE, **TEST_SAMPLE})  # the cached sample
    viewer = make_napari_viewer()
    _register_plugin()
    added = viewer.open_sample("spec2vol-bids", "tiny-simulated-run")
    assert [layer.metadata["kind"] for layer in added] == ["eeg", "volume-markers"]
    assert added[0].data.shape[0] == 16  # the tiny preset's channels
    widget = viewer.window.dock_widgets["Spec2Vol prediction"]
    qtbot.waitUntil(lambda: widget.result is not None and not widget.running, timeout=180_000)
    assert widget.bids_dir.value == napari_sample.paths.bids_dir
    assert widget.run_choice.value == napari_sample.paths.run
    roles = {layer.metadata.get("spec2vol_role") for layer in viewer.layers}
    assert {"measured", "predicted", "difference", "correlation"} <= roles
    assert not added[0].visible  # the EEG stays in the layer list, out of the grid
    assert viewer.canvas.grid.enabled
    # a second click reuses the docked widget
    assert len(_sample_data.make_sample_data()) == 2
    assert list(viewer.window.dock_widgets).count("Spec2Vol prediction") == 1
    qtbot.waitUntil(lambda: not widget.running, timeout=180_000)


def _register_plugin():
    """Make sure npe2's plugin manager knows this plugin (napari's test fixtures may isolate it)."""
    from pathlib import Path

    from npe2 import PluginManager, PluginManifest

    import napari_spec2vol

    pm = PluginManager.instance()
    if "spec2vol-bids" not in pm._manifests:
        pm.register(PluginManifest.from_file(Path(napari_spec2vol.__file__).with_name("napari.yaml")))


def test_sample_command_without_a_viewer_returns_layer_data(monkeypatch, napari_sample):
    import napari

    monkeypatch.setattr(_sample_data, "SAMPLE", {**_sample_data.SAMPLE, **TEST_SAMPLE})
    monkeypatch.setattr(napari, "current_viewer", lambda: None)
    layers = _sample_data.make_sample_data()
    assert [kw["metadata"].get("kind") for _, kw, _ in layers[:2]] == ["eeg", "volume-markers"]
    assert [kw["metadata"]["spec2vol_role"] for _, kw, _ in layers[2:]] == ["measured", "predicted", "difference",
                                                                             "correlation"]
    (m, mkw, _), (p, pkw, _) = layers[2:4]
    assert m.shape == p.shape and m.ndim == 4
    assert mkw["contrast_limits"] == pkw["contrast_limits"]
    assert np.isfinite(p).all()


def test_sample_button_can_be_cancelled(make_napari_viewer, qtbot, napari_sample, monkeypatch):
    monkeypatch.setattr(_sample_data, "SAMPLE", {**_sample_data.SAMPLE, **TEST_SAMPLE})
    from napari_spec2vol._widget import Spec2VolWidget

    viewer = make_napari_viewer()
    widget = Spec2VolWidget(viewer)
    worker = widget.load_sample()
    assert worker is not None and widget.running and not widget.sample_button.enabled
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert widget.status.value == "Cancelled."
    assert widget.result is None and widget.sample_button.enabled
