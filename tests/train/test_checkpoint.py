"""Checkpoints: round trip, SHA-256 tamper detection, pickled code refused, compatibility checks, predict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spec2vol_bids.errors import DataError, NoInputError
from spec2vol_bids.model import Spec2VolCAMUNet
from spec2vol_bids.model.registry import build_model
from spec2vol_bids.train.checkpoint import (
    Checkpoint,
    check_compatible,
    load_checkpoint,
    payload_sha256,
    save_checkpoint,
)
from spec2vol_bids.train.predict import predict_windows


def _payload(model, name="ridge"):
    return {
        "model": {"name": name, "kwargs": dict(model.config)},
        "state_dict": model.state_dict(),
        "preprocessing": {"window": "tr"},
        "channels": ["Fp1", "Fp2", "Cz"],
        "frequencies": np.arange(1, 9) / 2.0,
        "grid": {"shape": [8, 8, 2], "affine": np.eye(4)},
        "scaling": {"method": "train-minmax", "min": -1.0, "max": 3.0, "subjects": ["01"]},
        "training": {"seed": 1},
        "metrics": {"test": {"ssim": 0.5}},
        "versions": {"torch": torch.__version__},
    }


@pytest.fixture
def ridge_model():
    torch.manual_seed(0)
    m = build_model("ridge", n_windows=2, n_electrodes=3, n_freqs=8, n_slices=2, grid=8, n_bands=4,
                    n_components=5)
    for b in (m.x_mean, m.components, m.coef, m.y_mean):
        b.copy_(torch.randn_like(b))
    return m


def test_round_trip_and_predict_applies_scaling(ridge_model, tmp_path):
    path = tmp_path / "model.ckpt"
    digest = save_checkpoint(path, _payload(ridge_model))
    ck = load_checkpoint(path)
    assert isinstance(ck, Checkpoint) and ck.sha256 == digest == payload_sha256(ck)
    assert ck.channels == ["Fp1", "Fp2", "Cz"] and ck.grid_shape == (8, 8, 2)
    np.testing.assert_allclose(ck.frequencies, np.arange(1, 9) / 2.0)
    # plain containers only: the file loads with weights_only=True by itself
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "spec2vol-bids-checkpoint" and isinstance(raw["grid"]["affine"], list)
    x = np.random.default_rng(0).random((5, 2, 3, 8)).astype(np.float32) * 4 - 1
    got = predict_windows(ck, x, device="cpu", batch_size=2, progress=False)
    with torch.no_grad():
        expected = ridge_model(torch.from_numpy((x + 1.0) / 4.0)).numpy()  # (x - min) / (max - min)
    assert got.shape == (5, 2, 8, 8) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert predict_windows(path, x[0], device="cpu", progress=False).shape == (1, 2, 8, 8)
    with pytest.raises(DataError, match=r"expects windows \[n, 2, 3, 8\]"):
        predict_windows(ck, x[:, :, :2], device="cpu", progress=False)


def test_tampered_and_foreign_files_refused(ridge_model, tmp_path):
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, _payload(ridge_model))
    data = torch.load(path, weights_only=True)
    data["state_dict"]["coef"][0, 0] += 1e-3  # one weight changed, hash left as it was
    torch.save(data, tmp_path / "tampered.ckpt")
    with pytest.raises(DataError, match="fails its SHA-256 check"):
        load_checkpoint(tmp_path / "tampered.ckpt")
    data = torch.load(path, weights_only=True)
    data["channels"][0] = "Fp9"
    torch.save(data, tmp_path / "tampered2.ckpt")
    with pytest.raises(DataError, match="SHA-256"):
        load_checkpoint(tmp_path / "tampered2.ckpt")
    # a pickled object (could run code on load) is refused by weights_only=True
    data = torch.load(path, weights_only=True)
    data["training"] = {"hook": _Evil()}
    torch.save(data, tmp_path / "pickled.ckpt")
    with pytest.raises(DataError, match="pickled objects"):
        load_checkpoint(tmp_path / "pickled.ckpt")
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "garbage.ckpt")
    torch.save({"format": "something-else"}, tmp_path / "other.ckpt")
    with pytest.raises(DataError, match="is not a spec2vol-bids-checkpoint"):
        load_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(NoInputError):
        load_checkpoint(tmp_path / "missing.ckpt")


class _Evil:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_check_compatible(ridge_model, tmp_path):
    save_checkpoint(tmp_path / "m.ckpt", _payload(ridge_model))
    ck = load_checkpoint(tmp_path / "m.ckpt")
    check_compatible(ck, channels=["Fp1", "Fp2", "Cz"], frequencies=np.arange(1, 9) / 2.0, grid=(8, 8, 2))
    with pytest.raises(DataError, match=r"missing \['Cz'\], extra \['Oz'\]"):
        check_compatible(ck, channels=["Fp1", "Fp2", "Oz"])
    with pytest.raises(DataError, match="different order"):
        check_compatible(ck, channels=["Fp2", "Fp1", "Cz"])
    with pytest.raises(DataError, match="8 frequency bins"):
        check_compatible(ck, frequencies=np.arange(1, 9) / 2.5)
    with pytest.raises(DataError, match=r"grid is \(8, 8, 3\)"):
        check_compatible(ck, grid={"shape": [8, 8, 3], "affine": np.eye(4)})


def test_predict_reports_progress_and_selects_the_scan_backend(tmp_path):
    torch.manual_seed(0)
    model = Spec2VolCAMUNet.from_preset("tiny", n_windows=2, n_electrodes=3, n_freqs=8, n_slices=2)
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, _payload(model, name="spec2vol"))
    x = np.random.default_rng(1).random((5, 2, 3, 8)).astype(np.float32)
    calls = []
    auto = predict_windows(path, x, device="cpu", batch_size=2,
                           progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    ref = predict_windows(path, x, device="cpu", batch_size=2, progress=False, scan_backend="reference")
    np.testing.assert_allclose(ref, auto, rtol=1e-4, atol=1e-5)  # the oracle loop gives the same volumes

    def cancel(done, total):
        raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):  # a GUI cancels between batches by raising from the callback
        predict_windows(path, x, device="cpu", batch_size=2, progress=cancel)
