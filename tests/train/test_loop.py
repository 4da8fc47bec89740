"""Training loop: reproducibility, resume after a kill, no leakage into selection, baselines that learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spec2vol_bids.errors import UsageError
from spec2vol_bids.io.spectrogram import load_spectrogram
from spec2vol_bids.train import data as D
from spec2vol_bids.train import loop as L
from spec2vol_bids.train import runs as R
from spec2vol_bids.train.checkpoint import load_checkpoint
from spec2vol_bids.train.predict import predict_windows
from spec2vol_bids.train.splits import make_folds

from .conftest import make_derivatives


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Three subjects x 14 pairs: test 03, validation 02, training 01."""
    root = make_derivatives(tmp_path_factory.mktemp("small"), subjects=("01", "02", "03"), n_volumes=20)
    runs = D.discover_runs(root)
    (fold,) = make_folds([r.subject for r in runs], "split", test_subjects=["03"], val_subjects=["02"])
    return runs, fold


def _cfg(**kw):
    base = dict(model="spec2vol", preset="tiny", epochs=2, batch_size=4, accumulation=2, warmup_steps=2,
                seed=7, device="cpu", eval_batch_size=8)
    base.update(kw)
    return L.TrainConfig(**base)


def _weights(path):
    return load_checkpoint(path)["state_dict"]


@pytest.mark.slow
def test_same_seed_same_weights_and_resume_after_kill(small, tmp_path):
    runs, fold = small
    a = L.train_fold(runs, fold, _cfg(), tmp_path / "a", progress=False)
    b = L.train_fold(runs, fold, _cfg(), tmp_path / "b", progress=False)
    wa, wb = _weights(tmp_path / "a" / "last.ckpt"), _weights(tmp_path / "b" / "last.ckpt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["history"] == b["history"] or all(
        x["train_loss"] == y["train_loss"] for x, y in zip(a["history"], b["history"]))
    # 14 pairs / micro-batch 4 = 4 micro-batches = 2 optimiser steps per epoch
    assert a["history"][-1]["step"] == 4

    def kill_at(step):
        def cb(s):
            if s == step:
                raise KeyboardInterrupt  # what a kill looks like: the process stops, files on disk remain
        return cb

    with pytest.raises(KeyboardInterrupt):
        L.train_fold(runs, fold, _cfg(save_every=1), tmp_path / "c", progress=False, step_callback=kill_at(3))
    assert not (tmp_path / "c" / "last.ckpt").exists()
    c = L.train_fold(runs, fold, _cfg(save_every=1), tmp_path / "c", progress=False, resume=True)
    wc = _weights(tmp_path / "c" / "last.ckpt")
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    assert [h["train_loss"] for h in c["history"]] == [h["train_loss"] for h in a["history"]]
    # a different seed gives different weights (the test above can fail)
    L.train_fold(runs, fold, _cfg(seed=8, epochs=1), tmp_path / "d", progress=False)
    wd = _weights(tmp_path / "d" / "last.ckpt")
    assert not all(torch.equal(wa[k], wd[k]) for k in wa)
    # resuming with other settings is refused
    with pytest.raises(UsageError, match="different settings"):
        L.train_fold(runs, fold, _cfg(save_every=1, lr=5e-4), tmp_path / "c", progress=False, resume=True)


@pytest.mark.slow
def test_selection_never_reads_test_subjects(small, tmp_path, monkeypatch):
    runs, fold = small
    seen = []
    real = L.evaluate

    def spy(model, ds, **kw):
        if ds is not None:
            seen.append((tuple(ds.subjects), kw.get("example", False)))
        return real(model, ds, **kw)

    monkeypatch.setattr(L, "evaluate", spy)
    stats_reads = []
    real_read = R.load_spectrogram
    monkeypatch.setattr(R, "load_spectrogram", lambda p, **kw: stats_reads.append(p.name) or real_read(p, **kw))
    res = L.train_fold(runs, fold, _cfg(epochs=2), tmp_path / "sel", progress=False)
    # scaling statistics: the training subject only
    assert [n[:6] for n in stats_reads] == ["sub-01"] and res["scaling"]["subjects"] == ["01"]
    # during training only the validation subject is evaluated; test only after training, for reporting
    n_epoch_evals = 2
    assert seen[:n_epoch_evals] == [(("02",), False)] * n_epoch_evals
    assert ("03",) not in [s for s, _ in seen[:n_epoch_evals]]
    assert res["protocol"] == "validation-selected"
    ck = load_checkpoint(tmp_path / "sel" / "best.ckpt")
    assert ck["training"]["protocol"] == "validation-selected"
    assert ck["training"]["fold"]["test"] == ["03"] and ck["scaling"]["subjects"] == ["01"]
    assert ck["training"]["epoch"] == res["selected_epoch"]
    best_val = max(h["val"]["ssim"] for h in res["history"])
    assert res["results"]["best"]["val"]["ssim"] == pytest.approx(best_val, abs=1e-6)

    # selecting on dynamic correlation picks the epoch with the highest validation dynamic r
    res_d = L.train_fold(runs, fold, _cfg(epochs=2, select_metric="dyncorr"), tmp_path / "dyn", progress=False)
    dyn = [h["val"]["dyncorr"] for h in res_d["history"]]
    assert res_d["selected_epoch"] == 1 + int(np.argmax(dyn))
    assert res_d["results"]["best"]["val"]["dyncorr"] == pytest.approx(max(dyn), abs=1e-9)

    # the paper protocol is available, and labelled
    seen.clear()
    (paper,) = make_folds(["01", "02", "03"], "split", test_subjects=["03"], select_on="test")
    res_p = L.train_fold(runs, paper, _cfg(epochs=1), tmp_path / "paper", progress=False)
    assert "test-selected" in res_p["protocol"]
    assert "test-selected" in load_checkpoint(tmp_path / "paper" / "best.ckpt")["training"]["protocol"]
    assert res_p["scaling"]["subjects"] == ["01", "02"]


@pytest.mark.slow
def test_baselines_learn_linear_data(tmp_path):
    """On data with a linear EEG->BOLD relation, ridge beats the mean volume on dynamic correlation."""
    root = make_derivatives(tmp_path / "d", subjects=("01", "02", "03", "04"), n_volumes=40)
    runs = D.discover_runs(root, cache_dir=tmp_path / "cache")
    (fold,) = make_folds([r.subject for r in runs], "split", test_subjects=["04"], val_subjects=["03"])
    mean = L.train_fold(runs, fold, _cfg(model="mean"), tmp_path / "mean", progress=False)
    ridge = L.train_fold(runs, fold, _cfg(model="ridge"), tmp_path / "ridge", progress=False)
    m_t, r_t = mean["results"]["best"]["test"], ridge["results"]["best"]["test"]
    assert m_t["dyncorr"] == 0.0  # a constant prediction carries no dynamics
    assert r_t["dyncorr"] > 0.3
    # the mean-volume baseline is exactly the voxel-wise training mean (independent oracle from the files)
    ds_train = D.PairDataset([r for r in runs if r.subject in fold.train])
    oracle = np.mean([ds_train[i][1].numpy() for i in range(len(ds_train))], axis=0)
    ck = load_checkpoint(tmp_path / "mean" / "last.ckpt")
    np.testing.assert_allclose(ck["state_dict"]["mean"].numpy(), oracle, atol=1e-6)
    # the recording the model expects (what `spec2vol_bids realtime` checks a live stream against): the fake
    # derivatives' spectrogram attributes
    assert ck["acquisition"] == {"sfreq": 250.0, "repetition_time": 2.0}
    # predict_windows on the raw spectrogram windows reproduces the evaluation
    run4 = runs[3]
    spec = load_spectrogram(run4.spectrogram).spectrogram
    ckr = load_checkpoint(tmp_path / "ridge" / "last.ckpt")
    pred = predict_windows(ckr, spec[run4.windows], device="cpu", progress=False)  # [n, D, X, Y]
    from spec2vol_bids.train.metrics import dynamic_correlation

    tgt = run4.target_array()[run4.targets]
    mask = run4.mask()
    assert dynamic_correlation(pred, tgt, mask) == pytest.approx(r_t["dyncorr"], abs=1e-4)
    assert json.loads((tmp_path / "ridge" / "history.json").read_text())["model"] == "ridge"
    # not learnable: shuffled relation -> ridge does not find dynamics
    root2 = make_derivatives(tmp_path / "d2", subjects=("01", "02", "03", "04"), learnable=False)
    runs2 = D.discover_runs(root2, cache_dir=tmp_path / "cache2")
    r2 = L.train_fold(runs2, fold, _cfg(model="ridge"), tmp_path / "ridge2", progress=False)
    assert abs(r2["results"]["best"]["test"]["dyncorr"]) < 0.15


@pytest.mark.slow
def test_gradient_training_reduces_loss(small, tmp_path):
    runs, fold = small
    res = L.train_fold(runs, fold, _cfg(epochs=3, lr=3e-3), tmp_path / "fit", progress=False)
    losses = [h["train_loss"] for h in res["history"]]
    assert losses[-1] < 0.8 * losses[0]
    assert res["history"][-1]["val"]["ssim"] > res["history"][0]["val"]["ssim"]


@pytest.mark.slow
def test_dataloader_workers_do_not_change_the_result(small, tmp_path):
    runs, fold = small
    L.train_fold(runs, fold, _cfg(epochs=1), tmp_path / "w0", progress=False)
    L.train_fold(runs, fold, _cfg(epochs=1, num_workers=1), tmp_path / "w2", progress=False)
    w0, w2 = _weights(tmp_path / "w0" / "last.ckpt"), _weights(tmp_path / "w2" / "last.ckpt")
    assert all(torch.equal(w0[k], w2[k]) for k in w0)


def test_target_statistics_match_an_independent_numpy_computation(small):
    runs, _ = small
    ds = D.PairDataset(runs[:2])
    stats = D.target_statistics(ds)
    ys = [np.stack([r.target_array()[t] for t in r.targets]).astype(np.float64) for r in runs[:2]]  # [n, D, X, Y]
    np.testing.assert_allclose(stats["mean_volume"], np.concatenate(ys).mean(0), atol=1e-6)
    np.testing.assert_allclose(stats["run_means"], np.stack([y.mean(0) for y in ys]), atol=1e-6)
    dev = np.concatenate([y - y.mean(0) for y in ys])
    assert stats["dynamic_variance"] == pytest.approx(float((dev**2).mean()), rel=1e-9)
    assert stats["n_samples"] == sum(len(y) for y in ys)


def test_demeaned_mse_loss_definition():
    from spec2vol_bids.train.losses import demeaned_mse_loss

    g = torch.Generator().manual_seed(0)
    y, pred = torch.rand(3, 2, 4, 4, generator=g), torch.rand(3, 2, 4, 4, generator=g)
    run_mean, mean_volume = torch.rand(2, 4, 4, generator=g), torch.rand(2, 4, 4, generator=g)
    expected = ((pred - mean_volume) - (y - run_mean)).pow(2).mean() / 0.5
    assert demeaned_mse_loss(pred, y, run_mean, mean_volume, variance=0.5) == pytest.approx(float(expected))
    # predicting the training-mean volume scores the variance of the deviations, i.e. 1.0 relative to it
    dev_var = float((y - run_mean).pow(2).mean())
    assert demeaned_mse_loss(mean_volume.expand(3, -1, -1, -1), y, run_mean, mean_volume,
                             variance=dev_var) == pytest.approx(1.0)


@pytest.mark.slow
def test_the_global_readout_trains_on_deviations_and_selects_on_dynamics(small, tmp_path):
    runs, fold = small
    res = L.train_fold(runs, fold, _cfg(model="spec2vol-lowrank", epochs=6), tmp_path / "lr", progress=False)
    ck = load_checkpoint(tmp_path / "lr" / "best.ckpt")
    cfg = ck["training"]["config"]
    assert cfg["loss"] == "demeaned-mse" and cfg["select_metric"] == "dyncorr"  # 'auto' resolved and recorded
    assert ck["model"]["kwargs"]["hidden"] == 32  # the tiny preset, not the paper-sized encoder
    # the mean volume the deviations are added to is the training targets' mean (subject 01), in the checkpoint
    train_ds = D.PairDataset([r for r in runs if r.subject in fold.train])
    oracle = np.mean([train_ds[i][1].numpy() for i in range(len(train_ds))], axis=0)
    np.testing.assert_allclose(ck["state_dict"]["mean_volume"].numpy(), oracle, atol=1e-6)
    dev = np.concatenate([np.stack([r.read_y(k) for k in range(r.n_pairs)]) for r in runs if r.subject in fold.train])
    dev = dev - dev.mean(0)
    assert float(ck["state_dict"]["deviation_scale"]) == pytest.approx(float(np.sqrt((dev**2).mean())), rel=1e-5)
    dyn = [h["val"]["dyncorr"] for h in res["history"]]
    assert res["selected_epoch"] == 1 + int(np.argmax(dyn))
    # the loss is relative to the deviations' variance: it starts near 1 and falls as dynamics are learned
    losses = [h["train_loss"] for h in res["history"]]
    assert 0.9 < losses[0] < 1.1 and losses[-1] < 0.99 * losses[0]
    # the published network keeps the paper's loss and selection; both can be set explicitly
    assert L.TrainConfig(model="spec2vol").resolved().loss == "ssim+mse"
    assert L.TrainConfig(model="spec2vol", loss="demeaned-mse").resolved().loss == "demeaned-mse"
    assert L.TrainConfig(model="spec2vol-lowrank", select_metric="ssim").resolved().select_metric == "ssim"
    with pytest.raises(UsageError, match="unknown loss"):
        L.TrainConfig(loss="l1")
