"""Each script in examples/ runs to completion on the tiny simulated data and checks its own outputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # each example simulates data and runs the product: the full suite only

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, gui: bool = False, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, NIPYPE_NO_ET="1", MPLBACKEND="Agg", OMP_WAIT_POLICY="PASSIVE")
    cmd = [sys.executable, str(EXAMPLES / name), *args]
    if gui:
        env["QT_QPA_PLATFORM"] = os.environ.get("QT_QPA_PLATFORM", "xcb")
        if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY") and env["QT_QPA_PLATFORM"] == "xcb":
            # `make test` runs under xvfb-run; outside it, start one for this script
            assert shutil.which("xvfb-run"), "no display and no xvfb-run: run the tests with `make test`"
            cmd = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", *cmd]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=EXAMPLES.parent)
    assert proc.returncode == 0, f"{name} exited with {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def test_embed_workflow(tmp_path):
    proc = run_example("embed_workflow.py", str(tmp_path))
    assert "spectrogram: 40 windows x 16 channels x 249 frequencies" in proc.stdout
    deriv = tmp_path / "derivatives" / "sub-01"
    assert list(deriv.glob("eeg/*_desc-stft_spectrogram.h5"))
    assert list(deriv.glob("func/*_desc-target_bold.nii.gz"))


def test_train_from_python(tmp_path):
    proc = run_example("train_from_python.py", str(tmp_path))
    for name in ("spec2vol", "mean", "ridge"):
        assert any(line.startswith(name) for line in proc.stdout.splitlines()), proc.stdout
    assert (tmp_path / "model" / "model.ckpt").is_file()
    assert "predicted 14 volumes of shape (8, 64, 64)" in proc.stdout


def test_open_in_napari_screenshot(tmp_path):
    shot = tmp_path / "shot.png"
    run_example("open_in_napari.py", str(tmp_path), "--screenshot", str(shot), gui=True)
    import imageio.v3 as iio

    img = iio.imread(shot)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
    assert np.asarray(img, dtype=float).std() > 0


def test_convert_noddi_style(tmp_path):
    proc = run_example("convert_noddi_style.py", str(tmp_path))
    assert "sub-32001: 1 EEG run(s), 1 BOLD run(s)" in proc.stdout
    bids = tmp_path / "bids"
    assert (bids / "sub-32001" / "eeg" / "sub-32001_task-rest_eeg.vhdr").is_file()
    assert (bids / "sub-32001" / "func" / "sub-32001_task-rest_bold.json").is_file()
    assert list((tmp_path / "derivatives" / "sub-32002" / "eeg").glob("*_desc-stft_spectrogram.h5"))


def test_use_outputs(tmp_path):
    """PyBIDS, nilearn, MNE-Python and napari on a real OUT_DIR (the code of docs/using_outputs.rst)."""
    proc = run_example("use_outputs.py", str(tmp_path), gui=True, timeout=600)
    out = proc.stdout
    assert "model ridge, TR 2.0 s, 14 predicted volumes" in out
    assert "mne: <Power Spectrum" in out and "40 epochs" in out and "14 targets" in out
    assert "napari: sub-02_task-rest_desc-target_bold (40, 8, 64, 64), sub-02_task-rest_desc-spec2vol_bold " \
           "(14, 8, 64, 64)" in out
