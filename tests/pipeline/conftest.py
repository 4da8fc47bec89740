"""A simulated run, its offline BIDS-App outputs and two small checkpoints, for the real-time tests.

``spec2vol_bids simulate --preset tiny --subjects 1 --volumes 40 --seed 1`` (16 channels at 250 Hz, TR 2 s, markers
``Response/R128``), processed by the BIDS-App's run-level steps (spectrogram, target, prediction) twice:

* ``default``: the official pairing (20 windows after 6 discarded volumes: 14 predicted volumes, 26-39);
* ``short``: 4 windows after 1 discarded volume (35 volumes, 5-39), so that a replay in real time reaches its first
  prediction after 14 s.

The checkpoints hold the default model (``spec2vol-lowrank``, tiny preset) with seeded random weights, every
parameter and buffer perturbed so that no output is trivially constant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

N_VOLUMES = 40
TR = 2.0


@dataclass
class OfflineRun:
    eeg: Path
    spectrogram: Path
    prediction: np.ndarray  # [X, Y, Z, n] as the BIDS-App wrote it
    indices: list[int]
    checkpoint: Path


def _checkpoint(path: Path, spectrogram: Path, n_windows: int) -> Path:
    import torch

    from spec2vol_bids.io.spectrogram import load_spectrogram
    from spec2vol_bids.train.checkpoint import save_checkpoint
    from spec2vol_bids.train.loop import build_for_data

    spec = load_spectrogram(spectrogram)
    torch.manual_seed(0)
    model = build_for_data("spec2vol-lowrank", ((n_windows, len(spec.channels), 249), (8, 64, 64)), preset="tiny")
    with torch.no_grad():
        for t in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            t.add_(0.05 * torch.randn_like(t))
    x = spec.windows()
    save_checkpoint(path, {
        "model": {"name": "spec2vol-lowrank", "kwargs": dict(model.config)}, "state_dict": model.state_dict(),
        "preprocessing": spec.config, "channels": spec.channels, "frequencies": spec.frequencies,
        "grid": {"shape": [64, 64, 8], "affine": np.diag([3.0, 3.0, 4.0, 1.0])},
        "scaling": {"method": "minmax", "min": float(x.min()), "max": float(x.max())},
        "acquisition": {"sfreq": 250.0, "repetition_time": TR}, "training": {"seed": 0}, "metrics": {},
        "versions": {"torch": str(torch.__version__)}})
    return path


@pytest.fixture(scope="session")
def rt_bids(tmp_path_factory):
    from spec2vol_bids.cli.main import main

    root = tmp_path_factory.mktemp("rt") / "bids"
    assert main(["simulate", str(root), "--preset", "tiny", "--subjects", "1", "--volumes", str(N_VOLUMES),
                 "--seed", "1", "--no-progress", "-q"]) == 0
    return root


def _offline(bids: Path, out: Path, pairing: dict) -> OfflineRun:
    import nibabel as nib

    from spec2vol_bids.pipeline.steps import compute_spectrogram, compute_target, predict_run

    sub = bids / "sub-01"
    eeg = sub / "eeg" / "sub-01_task-rest_eeg.vhdr"
    cfg = {"pairing": pairing}
    h5, _ = compute_spectrogram(eeg, n_volumes=N_VOLUMES, repetition_time=TR, config=cfg,
                                out_file=out / "sub-01_task-rest_desc-stft_spectrogram.h5",
                                channels_tsv=sub / "eeg" / "sub-01_task-rest_channels.tsv",
                                events_tsv=sub / "eeg" / "sub-01_task-rest_events.tsv")
    target, _, _, _ = compute_target(sub / "func" / "sub-01_task-rest_bold.nii.gz", repetition_time=TR, config=cfg,
                                     out_file=out / "sub-01_task-rest_desc-target_bold.nii.gz",
                                     mask_file=out / "sub-01_task-rest_desc-brain_mask.nii.gz")
    ckpt = _checkpoint(out / "model.ckpt", h5, pairing.get("n_windows", 20))
    pred, side = predict_run(h5, target, ckpt, out_file=out / "sub-01_task-rest_desc-spec2vol_bold.nii.gz",
                             device="cpu")
    return OfflineRun(eeg=eeg, spectrogram=h5, prediction=np.asarray(nib.load(pred).dataobj),
                      indices=json.loads(side.read_text())["VolumeIndices"], checkpoint=ckpt)


@pytest.fixture(scope="session")
def offline_default(rt_bids, tmp_path_factory):
    return _offline(rt_bids, tmp_path_factory.mktemp("rt_default"), {})


@pytest.fixture(scope="session")
def offline_short(rt_bids, tmp_path_factory):
    return _offline(rt_bids, tmp_path_factory.mktemp("rt_short"), {"n_windows": 4, "discard_volumes": 1})


@pytest.fixture(scope="session")
def recording(rt_bids):
    """``(data [n, C] volts, sfreq, channel names, marker sample indices)`` of the simulated run, read with MNE."""
    import mne

    raw = mne.io.read_raw_brainvision(rt_bids / "sub-01" / "eeg" / "sub-01_task-rest_eeg.vhdr", preload=True,
                                      verbose="error")
    sf = raw.info["sfreq"]
    marks = [int(round(o * sf)) for o, d in zip(raw.annotations.onset, raw.annotations.description) if "R128" in d]
    return raw.get_data().T.copy(), sf, list(raw.ch_names), marks
