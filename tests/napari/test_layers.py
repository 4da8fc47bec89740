"""Comparison layers and their arrangement in a viewer; the pipeline's small helpers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_spec2vol._layers import comparison_layers, show_comparison
from spec2vol_bids.errors import NoInputError, NoMatchError, UsageError


def _arrays(shape=(5, 3, 8, 9), seed=0):
    rng = np.random.default_rng(seed)
    measured = rng.random(shape, dtype=np.float32)
    predicted = measured + 0.1 * rng.standard_normal(shape).astype(np.float32)
    return measured, predicted


def test_comparison_layers_share_geometry_and_contrast():
    measured, predicted = _arrays()
    layers = comparison_layers(measured, predicted, scale=[2.0, 4.0, 3.0, 3.0], translate=[52.0, -7, -90, -100],
                               metadata={"run": "sub-01"})
    (m, mkw, mt), (p, pkw, pt), (d, dkw, dt) = layers
    assert mt == pt == dt == "image"
    assert mkw["scale"] == pkw["scale"] == dkw["scale"] == [2.0, 4.0, 3.0, 3.0]
    assert mkw["translate"] == pkw["translate"] == [52.0, -7, -90, -100]
    assert mkw["contrast_limits"] == pkw["contrast_limits"]
    lo, hi = mkw["contrast_limits"]
    assert lo == pytest.approx(np.percentile(measured, 0.5)) and hi == pytest.approx(np.percentile(measured, 99.5))
    np.testing.assert_allclose(d, predicted - measured)
    bound = dkw["contrast_limits"][1]
    assert dkw["contrast_limits"][0] == -bound and bound > 0
    assert [kw["metadata"]["spec2vol_role"] for _, kw, _ in layers] == ["measured", "predicted", "difference"]
    assert all(kw["metadata"]["run"] == "sub-01" for _, kw, _ in layers)


def test_comparison_layers_reject_mismatched_shapes():
    measured, predicted = _arrays()
    with pytest.raises(ValueError, match="one shape"):
        comparison_layers(measured, predicted[:-1], scale=[1, 1, 1, 1])
    with pytest.raises(ValueError):
        comparison_layers(measured[0], predicted[0], scale=[1, 1, 1])


def test_show_comparison_grid_links_and_replaces(make_napari_viewer):
    viewer = make_napari_viewer()
    other = viewer.add_image(np.zeros((8, 9)), name="EEG")
    measured, predicted = _arrays()
    layers = show_comparison(viewer, comparison_layers(measured, predicted, scale=[2, 4, 3, 3],
                                                       translate=[10, 0, 0, 0]))
    assert [layer.name for layer in layers] == ["measured", "predicted", "difference (predicted - measured)"]
    assert viewer.canvas.grid.enabled
    assert not other.visible  # other layers are hidden so the grid shows only the comparison
    assert viewer.dims.point[0] == pytest.approx(10.0)  # time slider on the first compared volume
    assert viewer.dims.point[1] == pytest.approx(4.0 * 1)  # middle slice of 3
    from napari_spec2vol._layers import viewer_camera

    assert tuple(viewer_camera(viewer).orientation2d) == ("up", "right")
    layers[0].contrast_limits = (0.2, 0.3)
    assert tuple(layers[1].contrast_limits) == pytest.approx((0.2, 0.3))
    layers[1].colormap = "viridis"
    assert layers[0].colormap.name == "viridis"
    # showing a new run replaces the old comparison layers instead of piling them up
    show_comparison(viewer, comparison_layers(measured * 2, predicted * 2, scale=[2, 4, 3, 3]))
    assert len(viewer.layers) == 4
    assert [layer.name for layer in viewer.layers][1:] == ["measured", "predicted",
                                                          "difference (predicted - measured)"]


def test_pipeline_helpers(tmp_path):
    from napari_spec2vol import _pipeline

    assert _pipeline.Progress("x", 3, 4).fraction == 0.75
    assert _pipeline.Progress("x", 0, 0).fraction == 1.0
    assert _pipeline.resolve_device("cpu") == "cpu"
    with pytest.raises(UsageError, match="unknown device"):
        _pipeline.resolve_device("tpu")
    with pytest.raises(NoInputError):
        _pipeline.list_runs(tmp_path / "missing")
    with pytest.raises(NoMatchError, match="no paired run"):
        _pipeline.find_run([], "sub-01_task-rest")
    out = _pipeline.default_output_dir(tmp_path / "ds")
    assert out.parent == _pipeline.cache_root() / "napari" and out.name.startswith("ds-")
    assert _pipeline.default_output_dir(tmp_path / "ds") == out


def test_scan_backend_choices_match_the_model():
    from napari_spec2vol._pipeline import SCAN_BACKENDS, SCAN_ENV
    from spec2vol_bids.model.scan import BACKENDS, ENV_VAR

    assert set(SCAN_BACKENDS) == set(BACKENDS)
    assert SCAN_ENV == ENV_VAR


def test_cuda_device_without_gpu_is_a_usage_error():
    import torch

    from napari_spec2vol._pipeline import resolve_device

    if torch.cuda.is_available():
        assert resolve_device("cuda") == "cuda"
        assert resolve_device("auto") == "cuda"
    else:
        with pytest.raises(UsageError, match="no CUDA GPU"):
            resolve_device("cuda")
        assert resolve_device("auto") == "cpu"
