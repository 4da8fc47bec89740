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


def test_sample_opens_at_once_without_training_or_docking(make_napari_viewer, monkeypatch):
    """File > Open Sample through napari and npe2: the shipped run, side by side; nothing trained, no widget."""
    import time

    def forbidden(*args, **kwargs):
        raise AssertionError("opening the sample must not simulate, train or predict")

    monkeypatch.setattr(_sample_data, "prepare_sample", forbidden)
    monkeypatch.setattr(_sample_data, "prepare_dataset", forbidden)
    viewer = make_napari_viewer()
    _register_plugin()
    t0 = time.perf_counter()
    added = viewer.open_sample("spec2vol-bids", "tiny-simulated-run")
    assert time.perf_counter() - t0 < 20
    roles = [layer.metadata["spec2vol_role"] for layer in added]
    assert roles == ["measured", "predicted", "difference", "correlation"]
    assert "Spec2Vol prediction" not in viewer.window.dock_widgets  # no side effect on the viewer's docks
    measured, predicted, difference, corr = added
    assert measured.data.shape == predicted.data.shape and measured.data.ndim == 4
    assert tuple(measured.contrast_limits) == tuple(predicted.contrast_limits)
    np.testing.assert_allclose(difference.data, predicted.data - measured.data, atol=1e-6)
    # the panels sit side by side along x in one canvas, without overlapping
    starts = [layer.translate[-1] for layer in added]
    width = measured.data.shape[-1] * measured.scale[-1]
    assert all(b - a >= width for a, b in zip(starts, starts[1:]))
    eeg = viewer.open_sample("spec2vol-bids", "tiny-simulated-eeg")
    assert [layer.metadata["kind"] for layer in eeg] == ["eeg", "volume-markers"]
    assert eeg[0].data.shape[0] == 16 and len(eeg[1].data) == len(eeg[0].metadata["volume_onsets"])


def _register_plugin():
    """Make sure npe2's plugin manager knows this plugin (napari's test fixtures may isolate it)."""
    from pathlib import Path

    from npe2 import PluginManager, PluginManifest

    import napari_spec2vol

    pm = PluginManager.instance()
    if "spec2vol-bids" not in pm._manifests:
        pm.register(PluginManifest.from_file(Path(napari_spec2vol.__file__).with_name("napari.yaml")))


def test_shipped_sample_file_follows_its_contract():
    """The file is small, made by the real pipeline (its header says how), and decodes to sensible data."""
    assert _sample_data.SAMPLE_FILE.stat().st_size < 600_000
    sample = _sample_data.load_sample_file()
    h = sample["header"]
    for key in ("run", "model_name", "checkpoint_sha256", "settings", "scale", "translate", "volume_indices",
                "ssim", "psnr", "spatial_r", "dynamic_r", "channels", "volume_onsets", "eeg_rate"):
        assert key in h, key
    n = len(h["volume_indices"])
    assert sample["measured"].shape == sample["predicted"].shape and sample["measured"].shape[0] == n
    assert len(h["ssim"]) == n and 0 < np.mean(h["ssim"]) <= 1
    assert sample["correlation"].shape == sample["measured"].shape[1:]
    assert sample["eeg"].shape[0] == len(h["channels"]) == 16
    # the EEG covers the run: its display length reaches past the last volume marker
    assert sample["eeg"].shape[1] / h["eeg_rate"] > h["volume_onsets"][-1]
    assert len(h["volume_onsets"]) == h["settings"]["volumes"]
    lo, hi = h["range"]
    assert lo <= sample["measured"].min() and sample["measured"].max() <= hi + 1e-6
    assert float(np.nanstd(sample["measured"])) > 0.05  # a brain, not a constant


def test_sample_layer_data_without_a_viewer():
    layers = _sample_data.make_sample_data()
    assert [kw["metadata"]["spec2vol_role"] for _, kw, _ in layers] == ["measured", "predicted", "difference",
                                                                        "correlation"]
    (m, mkw, _), (p, pkw, _) = layers[:2]
    assert m.shape == p.shape and m.ndim == 4 and mkw["contrast_limits"] == pkw["contrast_limits"]
    assert np.isfinite(p).all()
    assert mkw["metadata"]["run"] == "sub-02_task-rest" and mkw["metadata"]["model_name"]


def test_build_sample_file_from_the_pipeline(napari_sample, tmp_path, monkeypatch):
    """The developer's command that makes the shipped file, on the (cached) test sample."""
    monkeypatch.setattr(_sample_data, "SAMPLE", {**_sample_data.SAMPLE, **TEST_SAMPLE})
    dest = _sample_data.build_sample_file(tmp_path / "sample.npz", settings=TEST_SAMPLE)
    sample = _sample_data.load_sample_file(dest)
    h = sample["header"]
    assert h["run"] == napari_sample.paths.run and h["settings"]["volumes"] == TEST_SAMPLE["volumes"]
    from spec2vol_bids.train.checkpoint import load_checkpoint
    from spec2vol_bids.utils import sha256_file

    assert h["checkpoint_sha256"] in (load_checkpoint(napari_sample.paths.checkpoint).get("sha256"),
                                      sha256_file(napari_sample.paths.checkpoint))
    assert sample["measured"].shape[0] == len(h["volume_indices"]) == TEST_SAMPLE["volumes"] - 26
    # cropped to the brain mask: NaN correlations only outside it, the crop keeps every brain voxel
    assert np.isfinite(sample["correlation"]).any()
    assert sample["measured"].shape[2] <= 64 and sample["measured"].shape[3] <= 64


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
