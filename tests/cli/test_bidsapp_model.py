"""The BIDS-App with ``--model``: predictions, their provenance, checkpoint/data mismatches, group metrics."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from spec2vol_bids.cli.main import main
from spec2vol_bids.io.spectrogram import load_spectrogram
from spec2vol_bids.utils import sha256_file

from .test_bidsapp import copy_dataset, derivative_files, run_cli


def _checkpoint(path, channels, *, n_slices=8, frequencies=None):
    from spec2vol_bids.model.registry import build_model
    from spec2vol_bids.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model("ridge", n_windows=20, n_electrodes=len(channels), n_freqs=249, n_slices=n_slices,
                        grid=64, n_bands=4, n_components=3)
    for b in (model.x_mean, model.components, model.coef, model.y_mean):
        b.copy_(0.1 * torch.randn_like(b))
    save_checkpoint(path, {
        "model": {"name": "ridge", "kwargs": dict(model.config)},
        "state_dict": model.state_dict(),
        "preprocessing": {},
        "channels": list(channels),
        "frequencies": np.arange(1, 250) / 2.0 if frequencies is None else frequencies,
        "grid": {"shape": [64, 64, n_slices], "affine": np.eye(4)},
        "scaling": {"method": "none"},
        "training": {"seed": 0},
        "metrics": {},
        "versions": {"torch": torch.__version__},
    })
    return path


@pytest.fixture(scope="module")
def channels(tiny_derivatives):
    spec = next(tiny_derivatives.rglob("sub-01_*_desc-stft_spectrogram.h5"))
    return load_spectrogram(spec, data=False).channels


def test_predictions_with_provenance_then_group_metrics(tiny_bids, channels, tmp_path):
    from spec2vol_bids.train.predict import predict_windows

    bids = copy_dataset(tiny_bids, tmp_path / "bids", subjects=("01",))
    ckpt = _checkpoint(tmp_path / "model.ckpt", channels)
    out = tmp_path / "out"
    assert run_cli(bids, out, tmp_path / "work", "--model", ckpt, "--device", "cpu") == 0
    pred_path = out / "sub-01" / "func" / "sub-01_task-rest_desc-spec2vol_bold.nii.gz"
    img = nib.load(pred_path)
    assert img.shape == (64, 64, 8, 46) and img.get_data_dtype() == np.float32
    target = nib.load(out / "sub-01" / "func" / "sub-01_task-rest_desc-target_bold.nii.gz")
    np.testing.assert_allclose(img.affine, target.affine)
    side = json.loads(pred_path.with_name("sub-01_task-rest_desc-spec2vol_bold.json").read_text())
    assert side["VolumeIndices"] == list(range(26, 72))
    assert side["ModelSHA256"] == sha256_file(ckpt)
    assert side["RepetitionTime"] == 2.0 and side["TaskName"] == "rest" and side["SkullStripped"] is False
    assert "bids:raw:sub-01/eeg/sub-01_task-rest_eeg.vhdr" in side["Sources"]
    # the stored volumes are the model's output for the stored pairs, in NIfTI layout [X, Y, Z, n]
    x = load_spectrogram(next(out.rglob("*_spectrogram.h5"))).windows()  # [46, 20, 16, 249]
    expected = predict_windows(str(ckpt), x, device="cpu", progress=False).transpose(2, 3, 1, 0)
    np.testing.assert_allclose(np.asarray(img.dataobj), expected, rtol=1e-5, atol=1e-6)
    desc = json.loads((out / "dataset_description.json").read_text())
    assert any(sha256_file(ckpt) in g.get("Description", "") for g in desc["GeneratedBy"][1:])

    assert main([str(bids), str(out), "group"]) == 0
    rows = (out / "group_metrics.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:4] == ["level", "bids_name", "participant_id", "session_id"]
    assert len(rows) == 1 + 3  # one run, one subject, the group
    assert (out / "group.html").is_file()


def test_checkpoint_for_other_channels_is_refused(tiny_bids, channels, tmp_path, capsys):
    bids = copy_dataset(tiny_bids, tmp_path / "bids", subjects=("01",))
    ckpt = _checkpoint(tmp_path / "other.ckpt", list(reversed(channels)))
    out = tmp_path / "out"
    assert run_cli(bids, out, tmp_path / "work", "--model", ckpt) == 65
    assert "channel" in capsys.readouterr().err.lower()
    assert derivative_files(out) == [] and not out.exists()


def test_checkpoint_for_another_grid_is_refused(tiny_bids, channels, tmp_path, capsys):
    bids = copy_dataset(tiny_bids, tmp_path / "bids", subjects=("01",))
    ckpt = _checkpoint(tmp_path / "grid.ckpt", channels, n_slices=30)
    assert run_cli(bids, tmp_path / "out", tmp_path / "work", "--model", ckpt) == 65
    assert "grid" in capsys.readouterr().err.lower()


def test_missing_checkpoint_exits_66(tiny_bids, tmp_path):
    bids = copy_dataset(tiny_bids, tmp_path / "bids", subjects=("01",))
    assert run_cli(bids, tmp_path / "out", tmp_path / "work", "--model", tmp_path / "nope.ckpt") == 66
