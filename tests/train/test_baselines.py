"""Baselines: E2fNet shapes and structure, ridge against scikit-learn, mean volume, registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spec2vol_bids.errors import DataError
from spec2vol_bids.model.baselines import E2fNet, MeanVolume, RidgeRegression
from spec2vol_bids.model.registry import build_model, model_names


def test_registered():
    assert {"spec2vol", "e2fnet", "ridge", "mean"} <= set(model_names())
    m = build_model("e2fnet", preset="tiny", n_windows=3, n_electrodes=5, n_freqs=20, n_slices=2)
    assert m.config["channels"] == [8, 8, 16, 16]
    assert isinstance(build_model(m.__class__.__name__.lower(), **m.config), E2fNet)


@pytest.mark.slow
@pytest.mark.parametrize("n_electrodes", [64, 43])
def test_e2fnet_paper_shapes(n_electrodes):
    """NODDI [20, 64, 249] -> 30 slices; Oddball's 43 electrodes are resized bicubically to the 64 x 64 grid."""
    torch.manual_seed(0)
    m = E2fNet(20, n_electrodes, 249, 30).eval()
    with torch.no_grad():
        h = m.encoder(torch.zeros(1, 20, n_electrodes, 249))
        assert tuple(h.shape) == (1, 256, n_electrodes, 64)  # frequency 249 -> 126 -> 64
        y = m(torch.rand(1, 20, n_electrodes, 249))
    assert tuple(y.shape) == (1, 30, 64, 64)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0  # sigmoid output
    assert m.unet.config.block_out_channels == (256, 256) and m.unet.config.layers_per_block == 1
    with pytest.raises(DataError, match=r"\[B, 20, 64, 249\]"):
        E2fNet(20, 64, 249, 30)(torch.zeros(1, 20, 63, 249))


def test_ridge_equals_sklearn_on_pooled_features():
    """With every principal component kept, ridge in the PCA basis is ridge on the pooled features (the penalty
    is rotation invariant), so scikit-learn's Ridge on those features is an independent oracle."""
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    W, C, F, D, G = 2, 3, 10, 2, 4
    x = rng.random((30, W, C, F)).astype(np.float32)
    w_true = rng.standard_normal((W * C * 5, D * G * G))
    edges = np.cumsum([0] + [len(a) for a in np.array_split(np.arange(F), 5)])
    pooled = np.stack([x[..., edges[b]:edges[b + 1]].mean(-1) for b in range(5)], -1).reshape(30, -1)
    y = (pooled @ w_true + 0.1 * rng.standard_normal((30, D * G * G))).reshape(30, D, G, G).astype(np.float32)
    m = RidgeRegression(W, C, F, D, grid=G, n_bands=5, n_components=64)
    tr, va = slice(0, 20), slice(20, 30)

    def batches(s):
        return lambda: [(torch.from_numpy(x[s][i:i + 7]), torch.from_numpy(y[s][i:i + 7]))
                        for i in range(0, len(x[s]), 7)]

    info = m.fit(batches(tr), batches(va))
    assert info["n_components"] == 19  # rank of 20 centred samples
    oracle = Ridge(alpha=info["alpha"], fit_intercept=True).fit(pooled[tr], y[tr].reshape(20, -1))
    with torch.no_grad():
        got = m(torch.from_numpy(x[va])).numpy().reshape(10, -1)
    np.testing.assert_allclose(got, oracle.predict(pooled[va]), rtol=1e-4, atol=1e-4)
    # the penalty was chosen on the validation batches: it has the lowest validation MSE of the grid
    assert info["val_mse_per_alpha"][m.alphas_rel.index(info["alpha_rel"])] == min(info["val_mse_per_alpha"])


def test_mean_volume():
    y = torch.rand(9, 2, 4, 4)
    m = MeanVolume(1, 1, 1, 2, grid=4)
    m.fit(lambda: [(torch.zeros(4, 1, 1, 1), y[:4]), (torch.zeros(5, 1, 1, 1), y[4:])])
    out = m(torch.zeros(3, 1, 1, 1))
    assert out.shape == (3, 2, 4, 4)
    torch.testing.assert_close(out[1], y.mean(0))


def test_e2fnet_without_diffusers_is_a_one_line_usage_error(fake_derivs, tmp_path, monkeypatch, capsys):
    """diffusers is the optional extra "e2fnet": without it, one line naming the install command, nothing written."""
    import sys

    from spec2vol_bids.cli.main import main
    from spec2vol_bids.errors import UsageError

    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ImportError
    out = tmp_path / "model"
    assert main(["train", str(fake_derivs), str(out), "--model", "ridge", "--baselines", "e2fnet",
                 "--no-progress"]) == 64
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "E2fNet baseline needs the optional package diffusers" in err[0]
    assert 'pip install "spec2vol-bids[e2fnet]"' in err[0]
    assert not out.exists()
    with pytest.raises(UsageError, match="spec2vol-bids\\[e2fnet\\]"):
        build_model("e2fnet", preset="tiny", n_windows=3, n_electrodes=5, n_freqs=20, n_slices=2)
    # the other models do not need it
    assert build_model("ridge", n_windows=3, n_electrodes=5, n_freqs=20, n_slices=2, grid=64) is not None
