"""The live view of ``spec2vol_bids realtime --napari``: following the growing prediction NIfTI.

The oracle for the volumes is the plugin's reader (``load_bold``: nibabel's closest-canonical image in napari axis
order) applied to the finished file; the writer is the real-time mode's ``IncrementalNifti``.
"""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from spec2vol_bids.io.nifti import IncrementalNifti

SHAPE = (7, 6, 5)
#: an oblique-free but non-RAS grid (x flipped, y/z swapped) so the reorientation is exercised
AFFINE = np.array([[-3.0, 0, 0, 90], [0, 0, 4.0, -20], [0, 3.5, 0, -10], [0, 0, 0, 1]])


def _volumes(n, seed=0):
    rng = np.random.default_rng(seed)
    head = np.zeros(SHAPE, np.float32)
    head[1:-1, 1:-1, 1:-1] = 1.0  # a "head" and an empty background
    return [(head * (1 + 0.1 * rng.standard_normal(SHAPE))).astype(np.float32) for _ in range(n)]


def _sidecar(indices):
    return {"RepetitionTime": 2.0, "VolumeIndices": list(indices),
            "Realtime": {"LatencySeconds": [0.05 + 0.01 * i for i in range(len(indices))]}}


def test_series_follows_the_file_as_the_reader_reads_it(tmp_path):
    from napari_spec2vol._live import LiveSeries
    from napari_spec2vol._reader import load_bold

    path = tmp_path / "sub-rt_task-rt_desc-spec2vol_bold.nii"
    series = LiveSeries(path)
    assert series.poll() == 0 and "waiting" in series.status
    vols = _volumes(14)
    indices = [30, 31, 32, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44]  # BOLD volume 33 was not predicted
    with IncrementalNifti(path, AFFINE, SHAPE, repetition_time=2.0) as out:
        assert series.poll() == 0  # an empty series: nothing to show yet
        for k in range(3):
            out.append(vols[k], sidecar=_sidecar(indices[: k + 1]))
        assert series.poll() == 3
        assert series.poll() == 0
        # the header counts a volume whose sidecar entry is not written yet: it waits for the sidecar
        out.append(vols[3])
        assert series.poll() == 0
        out.append(vols[4], sidecar=_sidecar(indices[:5]))
        assert series.poll() == 3  # volume 34 and 35, and the empty row of the missing volume 33
        for k in range(5, 14):
            out.append(vols[k], sidecar=_sidecar(indices[: k + 1]))
        assert series.poll() == 9
        # a volume being written when the writer died: bytes past the header's count are not read
        out._fh.seek(0, 2)
        out._fh.write(b"\x7f" * 50)
        out._fh.flush()
        assert series.poll() == 0

    expected, info = load_bold(path)  # (t, z, y, x) of the 14 predicted volumes
    rows = np.asarray(series.indices)
    assert rows.tolist() == list(range(30, 45))
    got = series.data
    predicted = rows != 33
    np.testing.assert_array_equal(got[predicted], expected)
    assert np.isnan(got[~predicted]).all()
    assert series.scale == pytest.approx(info["scale"])
    assert series.translate[1:] == pytest.approx(info["translate"][1:])
    assert series.translate[0] == pytest.approx(30 * 2.0)
    np.testing.assert_allclose(series.times, rows * 2.0)
    # time course: the mean of each volume; the missing volume is a gap
    np.testing.assert_allclose(series.courses[predicted, 0], expected.mean(axis=(1, 2, 3)), rtol=1e-6)
    assert np.isnan(series.courses[~predicted, 0]).all()
    # change from the baseline (the first 10 predicted volumes), NaN outside the head
    baseline = expected[:10].mean(axis=0)
    head = expected[0] > 0
    np.testing.assert_allclose(series.change[predicted][:, head], (expected - baseline)[:, head], atol=1e-6)
    assert np.isnan(series.change[:, ~head]).all()
    assert series.baseline_complete and "14 volumes" in series.status and "1 not predicted" in series.status
    # a voxel's time course
    assert series.select_voxel((2.2, 3.0, 2.8))
    np.testing.assert_array_equal(series.voxel_course()[predicted], expected[:, 2, 3, 3])
    assert not series.select_voxel((-1, 0, 0))


def test_a_new_session_replacing_the_file_starts_over(tmp_path):
    from napari_spec2vol._live import LiveSeries
    from napari_spec2vol._reader import load_bold

    path = tmp_path / "run_desc-spec2vol_bold.nii"
    series = LiveSeries(path)
    first = _volumes(4, seed=1)
    with IncrementalNifti(path, AFFINE, SHAPE, repetition_time=2.0) as out:
        for k, vol in enumerate(first):
            out.append(vol, sidecar=_sidecar(range(k + 1)))
    assert series.poll() == 4 and series.generation == 0
    second = _volumes(2, seed=2)
    with IncrementalNifti(path, AFFINE, SHAPE, repetition_time=2.0) as out:
        for k, vol in enumerate(second):
            out.append(vol, sidecar=_sidecar(range(5, 6 + k)))
    assert series.poll() == 2 and series.generation == 1
    assert series.indices == [5, 6]
    expected, _ = load_bold(path)
    np.testing.assert_array_equal(series.data, expected)


def test_roi_time_courses_are_the_mean_of_each_label(tmp_path):
    from napari_spec2vol._live import LiveSeries

    path = tmp_path / "run_desc-spec2vol_bold.nii"
    roi = np.zeros(SHAPE, np.int64)
    roi[:3] = 1
    roi[4:, :, 2:] = 2
    vols = _volumes(3, seed=3)
    with IncrementalNifti(path, AFFINE, SHAPE, repetition_time=2.0) as out:
        for k, vol in enumerate(vols):
            out.append(vol, sidecar=_sidecar(range(k + 1)))
    series = LiveSeries(path, roi_mask=roi)
    assert series.poll() == 3
    assert series.labels == ["label 1", "label 2"]
    expected = np.array([[v[roi == 1].mean(), v[roi == 2].mean()] for v in vols])
    np.testing.assert_allclose(series.courses, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="ROI mask"):
        LiveSeries(path, roi_mask=roi[:-1]).poll()


def _live_widget(make_napari_viewer):
    from napari_spec2vol._live import LiveViewWidget

    from .conftest import dock_plugin_widget

    viewer, widget = dock_plugin_widget(make_napari_viewer, "Spec2Vol real-time view")
    assert isinstance(widget, LiveViewWidget)
    return viewer, widget


@pytest.mark.gui
def test_widget_shows_volumes_as_they_arrive(make_napari_viewer, qtbot, tmp_path):
    from napari_spec2vol._reader import load_bold

    viewer, widget = _live_widget(make_napari_viewer)
    path = tmp_path / "sub-rt_task-rt_desc-spec2vol_bold.nii"
    widget.timer.setInterval(20)
    widget.follow(path)
    assert widget.following and not widget.layers and "waiting" in widget.status.text()
    vols = _volumes(12, seed=4)
    with IncrementalNifti(path, AFFINE, SHAPE, repetition_time=2.0) as out:
        for k, vol in enumerate(vols):
            out.append(vol, sidecar=_sidecar(range(20, 21 + k)))
            qtbot.waitUntil(lambda k=k: bool(widget.layers) and widget.layers["predicted"].data.shape[0] == k + 1,
                            timeout=10_000)
            # the time slider follows the newest volume
            assert viewer.dims.point[0] == pytest.approx((20 + k) * 2.0)
    expected, _ = load_bold(path)
    np.testing.assert_array_equal(widget.layers["predicted"].data, expected)
    change = widget.layers["change"].data
    head = expected[0] > 0
    np.testing.assert_allclose(change[:, head], (expected - expected[:10].mean(axis=0))[:, head], atol=1e-6)
    assert viewer.layers[-1].colormap.name == "bwr" and viewer.layers[-1].contrast_limits[0] < 0
    # the plot: the mean time course, one point per volume, on the BOLD time axis
    (line,) = widget.axes.get_lines()[:1]
    np.testing.assert_allclose(line.get_xdata(), np.arange(20, 32) * 2.0)
    np.testing.assert_allclose(line.get_ydata(), expected.mean(axis=(1, 2, 3)), rtol=1e-6)
    assert "12 volumes" in widget.status.text()
    # double-clicking a voxel adds its time course
    layer = widget.layers["predicted"]
    world = layer.data_to_world((5, 2, 3, 4))
    widget._on_double_click(layer, SimpleNamespace(position=world))
    lines = widget.axes.get_lines()
    assert len(lines) == 3  # mean, voxel, the "now" marker
    np.testing.assert_array_equal(lines[1].get_ydata(), expected[:, 2, 3, 4])
    widget.stop()
    assert not widget.following


@pytest.mark.gui
def test_standalone_viewer_follows_the_file_the_command_writes(tmp_path):
    """The process ``spec2vol_bids realtime --napari`` starts (its exact command), fed by a writer in this test."""
    import time

    from PIL import Image

    from spec2vol_bids.cli import realtime as cli_rt

    path = tmp_path / "out" / "sub-rt_task-rt_desc-spec2vol_bold.nii"
    launched = {}

    class Recorder:
        def __init__(self, cmd, **kwargs):
            launched["cmd"] = cmd

    real_popen = subprocess.Popen
    subprocess.Popen = Recorder
    try:
        cli_rt.start_live_view(path)
    finally:
        subprocess.Popen = real_popen
    cmd = launched["cmd"]
    assert cmd[:4] == [sys.executable, "-m", "napari_spec2vol._live", str(path)]
    shot = tmp_path / "live.png"
    proc = real_popen([*cmd, "--interval", "0.05", "--screenshot", str(shot), "--exit-after", "4",
                       "--timeout", "120"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.0)  # the file appears after the viewer started, as with a live session
        path.parent.mkdir(parents=True)
        with IncrementalNifti(path, AFFINE, SHAPE, repetition_time=2.0) as out:
            for k, vol in enumerate(_volumes(4, seed=5)):
                out.append(vol, sidecar=_sidecar(range(k + 1)))
                time.sleep(0.2)
        output, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[0] > 200 and img.std() > 10  # a rendered window, not a blank frame


def test_napari_option_needs_out(tmp_path, capsys):
    from spec2vol_bids.cli.main import main

    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"")
    code = main(["realtime", "--model", str(ckpt), "--stream", "eeg", "--napari"])
    assert code == 64
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--napari" in err[0] and "--out" in err[0]
