"""SSIM / PSNR / dynamic correlation against independent oracles (skimage, closed forms, constructed signals)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from spec2vol_bids.train import metrics
from spec2vol_bids.train.losses import SSIMMSELoss, ssim_mse_loss


def _pair(seed=0, shape=(3, 4, 24, 20)):
    rng = np.random.default_rng(seed)
    t = rng.random(shape)
    # smooth structure + noise so the local statistics vary over the image
    t = 0.6 * t + 0.4 * np.sin(np.linspace(0, 6, shape[-1]))[None, None, None, :] ** 2
    p = np.clip(t + 0.15 * rng.standard_normal(shape), -0.2, 1.2)
    return p, t


def _skimage_slice_mean(p, t, *, pad_reflect=False):
    """Mean over volumes and slices of skimage's SSIM with the published window settings."""
    out = []
    for pv, tv in zip(p, t):
        vals = []
        for ps, ts in zip(pv, tv):
            if pad_reflect:  # numpy 'reflect' == torch 'reflect' (edge not repeated); skimage crops it back off
                ps = np.pad(ps, 5, mode="reflect")
                ts = np.pad(ts, 5, mode="reflect")
            vals.append(structural_similarity(ps, ts, gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False, data_range=1.0))
        out.append(np.mean(vals))
    return np.array(out)


def test_ssim_crop_border_equals_skimage():
    p, t = _pair()
    ours = metrics.ssim(p, t, crop_border=True, reduction="none")
    oracle = _skimage_slice_mean(p, t)
    np.testing.assert_allclose(ours, oracle, rtol=0, atol=1e-10)


def test_ssim_full_map_equals_skimage_on_reflect_padded_images():
    p, t = _pair(seed=1)
    ours = metrics.ssim(p, t, reduction="none")
    oracle = _skimage_slice_mean(p, t, pad_reflect=True)
    np.testing.assert_allclose(ours, oracle, rtol=0, atol=1e-10)
    # the border handling matters: the two published definitions differ on such data
    assert abs(ours.mean() - metrics.ssim(p, t, crop_border=True)) > 1e-4


def test_ssim_identity_and_torch_path_float32():
    p, t = _pair(seed=2)
    assert metrics.ssim(t, t) == pytest.approx(1.0, abs=1e-12)
    s64 = metrics.ssim(p, t, reduction="none")
    s32 = metrics.ssim_per_sample(torch.tensor(p, dtype=torch.float32), torch.tensor(t, dtype=torch.float32))
    np.testing.assert_allclose(s32.numpy(), s64, atol=2e-5)
    # a single volume [D, H, W] is a batch of one
    assert metrics.ssim(p[0], t[0]) == pytest.approx(s64[0], abs=1e-12)


def test_gaussian_window_matches_published_size():
    w = metrics.gaussian_window()
    assert w.shape == (11, 11)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-6)
    assert int(3.5 * 1.5 + 0.5) * 2 + 1 == metrics.SSIM_KERNEL_SIZE


def test_psnr_closed_form_and_range_rule():
    rng = np.random.default_rng(3)
    t = rng.random((2, 3, 8, 8))
    p = t + 0.1  # MSE exactly 0.01
    # range rule: max(t.max(), 0) - min(t.min(), 0) per volume
    rng0 = t[0].max() - 0.0
    np.testing.assert_allclose(metrics.psnr(p, t, reduction="none"),
                               10 * np.log10(np.array([t[0].max(), t[1].max()]) ** 2 / 0.01), rtol=1e-12)
    assert metrics.psnr(p[0], t[0]) == pytest.approx(10 * np.log10(rng0**2 / 0.01), rel=1e-12)
    # negative targets widen the range below zero
    tn = t - 0.5
    expected = 10 * np.log10((max(tn[0].max(), 0) - min(tn[0].min(), 0)) ** 2 / 0.01)
    assert metrics.psnr(tn[0] + 0.1, tn[0]) == pytest.approx(expected, rel=1e-12)
    # explicit data range, and the torch form agrees
    assert metrics.psnr(p, t, data_range=1.0) == pytest.approx(20.0, rel=1e-12)
    tp = metrics.psnr_per_sample(torch.tensor(p), torch.tensor(t))
    np.testing.assert_allclose(tp.numpy(), metrics.psnr(p, t, reduction="none"), rtol=1e-12)


def test_dynamic_correlation_known_r():
    """Time courses built as cos(theta) * s + sin(theta) * n with s, n exactly orthonormal have r = cos(theta)."""
    rng = np.random.default_rng(4)
    T, shape = 50, (2, 3, 4)
    nvox = int(np.prod(shape))
    r_true = np.linspace(-0.9, 0.95, nvox)
    pred = np.empty((T, nvox))
    targ = np.empty((T, nvox))
    for v in range(nvox):
        q, _ = np.linalg.qr(rng.standard_normal((T, 3)))
        s, n = q[:, 1], q[:, 2]  # orthonormal and orthogonal to the constant column after centring
        s, n = s - s.mean(), n - n.mean()
        n = n - (n @ s) / (s @ s) * s
        s, n = s / np.linalg.norm(s), n / np.linalg.norm(n)
        th = np.arccos(r_true[v])
        targ[:, v] = 0.5 + 3.0 * s  # offsets and scales must not matter
        pred[:, v] = -2.0 + 0.1 * (np.cos(th) * s + np.sin(th) * n)
    pred = pred.reshape(T, *shape)
    targ = targ.reshape(T, *shape)
    rmap = metrics.dynamic_correlation_map(pred, targ)
    np.testing.assert_allclose(rmap.ravel(), r_true, atol=1e-10)
    assert metrics.dynamic_correlation(pred, targ) == pytest.approx(r_true.mean(), abs=1e-10)
    # the mask restricts the average; NIfTI layout via time_axis=-1
    mask = np.zeros(shape, bool)
    mask[0] = True
    assert metrics.dynamic_correlation(pred, targ, mask) == pytest.approx(r_true[:12].mean(), abs=1e-10)
    assert metrics.dynamic_correlation(np.moveaxis(pred, 0, -1), np.moveaxis(targ, 0, -1),
                                       time_axis=-1) == pytest.approx(r_true.mean(), abs=1e-10)


def test_dynamic_correlation_constant_courses_and_streaming():
    rng = np.random.default_rng(5)
    targ = rng.random((30, 2, 5, 5))
    targ[:, 0, 0, 0] = 0.7  # constant measured voxel: r undefined -> skipped
    mean_vol = np.broadcast_to(targ.mean(0), targ.shape)  # the mean-volume baseline
    rmap = metrics.dynamic_correlation_map(mean_vol, targ)
    assert np.isnan(rmap[0, 0, 0])
    assert np.all(rmap[np.isfinite(rmap)] == 0.0)
    assert metrics.dynamic_correlation(mean_vol, targ) == 0.0
    # streaming in uneven chunks == one shot == numpy corrcoef
    pred = targ + rng.standard_normal(targ.shape)
    acc = metrics.DynamicCorrelationAccumulator(targ.shape[1:])
    for a, b in [(0, 7), (7, 8), (8, 30)]:
        acc.update(pred[a:b], targ[a:b])
    oracle = np.array([np.corrcoef(pred[:, i, j, k], targ[:, i, j, k])[0, 1]
                       for i in range(2) for j in range(5) for k in range(5)]).reshape(2, 5, 5)
    got = acc.correlation_map()
    np.testing.assert_allclose(got[1:], oracle[1:], atol=1e-12)
    np.testing.assert_allclose(got[0].ravel()[1:], oracle[0].ravel()[1:], atol=1e-12)


def test_from_nifti_layout():
    a = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # X, Y, Z, T
    b = metrics.from_nifti_layout(a)
    assert b.shape == (5, 4, 2, 3)
    assert b[1, 2, 0, 1] == a[0, 1, 2, 1]
    assert metrics.from_nifti_layout(a[..., 0]).shape == (4, 2, 3)


def test_loss_value_and_gradient():
    p, t = _pair(seed=6, shape=(2, 3, 16, 16))
    pt = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(t, dtype=torch.float64)
    loss = SSIMMSELoss()(pt, tt)
    expected = 0.5 * (1 - metrics.ssim(p, t)) + 0.5 * np.mean((p - t) ** 2)
    assert float(loss.detach()) == pytest.approx(expected, abs=1e-12)
    loss.backward()
    assert torch.isfinite(pt.grad).all() and pt.grad.abs().sum() > 0
    # gradient check on a tiny problem
    small_p = torch.rand(1, 2, 12, 12, dtype=torch.float64, requires_grad=True)
    small_t = torch.rand(1, 2, 12, 12, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: ssim_mse_loss(x, small_t), (small_p,))
    assert float(ssim_mse_loss(tt, tt)) == pytest.approx(0.0, abs=1e-12)
