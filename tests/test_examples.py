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


def test_slurm_participant_array_tasks_run_locally(tiny_bids, tiny_derivatives, tmp_path):
    """examples/slurm/participant_array.sbatch: two array tasks run by hand (as SLURM would start them), each its
    participant in its own work directory, give the derivatives of one run over every participant; then the
    group level reads them."""
    import h5py
    import nibabel as nib

    out, work = tmp_path / "out", tmp_path / "work"
    env = dict(os.environ, NIPYPE_NO_ET="1", MPLBACKEND="Agg", OMP_WAIT_POLICY="PASSIVE", BIDS_DIR=str(tiny_bids),
               OUT_DIR=str(out), WORK_ROOT=str(work), SPEC2VOL=f"{sys.executable} -m spec2vol_bids",
               SPEC2VOL_ARGS="--skip-bids-validation -q")
    script = EXAMPLES / "slurm" / "participant_array.sbatch"
    for task in ("1", "0"):  # array tasks finish in any order
        proc = subprocess.run(["bash", str(script)], env={**env, "SLURM_ARRAY_TASK_ID": task}, capture_output=True,
                              text=True, timeout=300, cwd=EXAMPLES.parent)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert f"task {task}: sub-0{int(task) + 1}" in proc.stdout
    assert sorted(p.name for p in work.iterdir()) == ["sub-01", "sub-02"]  # one work directory per task
    assert sorted(p.name for p in out.glob("sub-*") if p.is_dir()) == ["sub-01", "sub-02"]
    for sub in ("01", "02"):
        name = f"sub-{sub}/eeg/sub-{sub}_task-rest_desc-stft_spectrogram.h5"
        with h5py.File(out / name) as a, h5py.File(tiny_derivatives / name) as b:
            np.testing.assert_array_equal(a["spectrogram"][()], b["spectrogram"][()])
            np.testing.assert_array_equal(a["pairs/targets"][()], b["pairs/targets"][()])
        name = f"sub-{sub}/func/sub-{sub}_task-rest_desc-target_bold.nii.gz"
        np.testing.assert_array_equal(nib.load(out / name).get_fdata(), nib.load(tiny_derivatives / name).get_fdata())
    # a task past the last participant stops with a usage error
    proc = subprocess.run(["bash", str(script)], env={**env, "SLURM_ARRAY_TASK_ID": "9"}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 64 and "no participant at that index" in proc.stderr
    # the group level, once every task has finished
    proc = subprocess.run([sys.executable, "-m", "spec2vol_bids", str(tiny_bids), str(out), "group", "-w",
                           str(work / "group"), "--skip-bids-validation", "-q"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
