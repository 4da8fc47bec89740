"""SS2D and the VSS block: direction order and merge, initialisation, drop path."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from spec2vol_bids.model.ss2d import SS2D, DropPath, VSSBlock


def _perm_directions(m: SS2D, order: list[int], conv: str) -> SS2D:
    """Copy of ``m`` whose direction k uses the weights of direction order[k]; conv kernel transformed."""
    m2 = copy.deepcopy(m)
    K, di, N = m.K, m.d_inner, m.d_state
    with torch.no_grad():
        m2.x_proj_weight.copy_(m.x_proj_weight[order])
        m2.dt_projs_weight.copy_(m.dt_projs_weight[order])
        m2.dt_projs_bias.copy_(m.dt_projs_bias[order])
        m2.A_logs.copy_(m.A_logs.view(K, di, N)[order].reshape(K * di, N))
        m2.Ds.copy_(m.Ds.view(K, di)[order].reshape(-1))
        w = m.conv2d.weight  # (d_inner, 1, kh, kw)
        m2.conv2d.weight.copy_(w.transpose(2, 3) if conv == "transpose" else w.flip(2, 3))
    return m2


def _randomised_ss2d(seed=0, d_model=8, d_state=4):
    torch.manual_seed(seed)
    m = SS2D(d_model=d_model, d_state=d_state).double()
    with torch.no_grad():  # make every direction distinct and the scan non-trivial
        m.A_logs.add_(0.3 * torch.randn_like(m.A_logs))
        m.Ds.add_(0.5 * torch.randn_like(m.Ds))
        m.dt_projs_bias.add_(2.0)
        m.in_proj.weight.normal_(0, 0.3)
        m.out_proj.weight.normal_(0, 0.3)
    return m


def test_transposing_the_map_swaps_row_and_column_scans():
    # rows<->columns swaps direction 0<->1 and 2<->3, so with those weights swapped SS2D commutes with a transpose
    m = _randomised_ss2d()
    m_t = _perm_directions(m, [1, 0, 3, 2], "transpose")
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64)  # (B, H, W, C), H != W
    out = m(x)
    assert out.shape == x.shape
    assert torch.allclose(m_t(x.transpose(1, 2)), out.transpose(1, 2), atol=1e-12)
    assert not torch.allclose(m(x.transpose(1, 2)), out.transpose(1, 2), atol=1e-3)  # directions do differ


def test_rotating_the_map_reverses_the_scans():
    # a 180-degree rotation reverses both row- and column-major order: direction 0<->2, 1<->3
    m = _randomised_ss2d(1)
    m_r = _perm_directions(m, [2, 3, 0, 1], "rotate")
    x = torch.randn(2, 4, 3, 8, dtype=torch.float64)
    assert torch.allclose(m_r(x.flip(1, 2)), m(x).flip(1, 2), atol=1e-12)


@pytest.mark.parametrize(
    "k,order,reverse",
    [(0, "row", False), (1, "col", False), (2, "row", True), (3, "col", True)],
)
def test_each_direction_is_causal_in_its_scan_order(k, order, reverse):
    # keep only direction k (B = C = 0 and D = 0 elsewhere): an input change at one pixel may only change the
    # outputs at pixels that come later in that direction's scan order
    m = _randomised_ss2d(2)
    K, di = m.K, m.d_inner
    with torch.no_grad():
        for j in range(K):
            if j != k:
                m.x_proj_weight[j].zero_()
                m.Ds.view(K, di)[j].zero_()
    H, W = 3, 4
    x = torch.randn(1, di, H, W, dtype=torch.float64)
    h0, w0 = 1, 2
    x2 = x.clone()
    x2[0, :, h0, w0] += 1.0
    diff = (m.forward_core(x2) - m.forward_core(x)).abs().amax(1).view(H, W)  # (H, W) in row-major layout

    def rank(h, w):
        r = h * W + w if order == "row" else w * H + h
        return -r if reverse else r

    for h in range(H):
        for w in range(W):
            if rank(h, w) < rank(h0, w0):
                assert diff[h, w] == 0, (h, w)
            else:
                assert diff[h, w] > 1e-8, (h, w)


def test_ss2d_initialisation_and_shapes():
    torch.manual_seed(0)
    C, N = 40, 16
    m = SS2D(d_model=C, d_state=N)
    di, R = 2 * C, math.ceil(C / 16)
    assert (m.d_inner, m.dt_rank) == (di, R)
    assert m.x_proj_weight.shape == (4, R + 2 * N, di)
    assert m.dt_projs_weight.shape == (4, di, R)
    assert m.dt_projs_bias.shape == (4, di)
    assert m.A_logs.shape == (4 * di, N) and m.Ds.shape == (4 * di,)
    assert m.in_proj.bias is None and m.out_proj.bias is None and m.conv2d.bias is not None
    assert m.conv2d.groups == di and m.conv2d.kernel_size == (3, 3)
    # S4D-real: A = -(1..N) for every channel; D = 1
    assert torch.allclose(-torch.exp(m.A_logs), -torch.arange(1, N + 1.0).expand(4 * di, N))
    assert torch.equal(m.Ds, torch.ones(4 * di))
    # softplus(dt bias) is the initial step: log-uniform in [1e-3, 1e-1]
    dt = torch.nn.functional.softplus(m.dt_projs_bias)
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    assert dt.log().std() > 0.5  # spread over the two decades, not a constant
    assert m.dt_projs_weight.abs().max() <= R**-0.5
    n_params = sum(p.numel() for p in m.parameters())
    expected = (C * 2 * di + di * 9 + di + 4 * (R + 2 * N) * di + 4 * di * R + 4 * di + 4 * di * N + 4 * di
                + 2 * di + di * C)
    assert n_params == expected


def test_vss_block_is_residual_without_mlp():
    torch.manual_seed(0)
    blk = VSSBlock(8, drop_path=0.0, d_state=4).eval()
    x = torch.randn(2, 4, 4, 8)
    manual = x + blk.self_attention(blk.ln_1(x))
    assert torch.allclose(blk(x), manual)
    assert {name.split(".")[0] for name, _ in blk.named_children()} == {"ln_1", "self_attention", "drop_path"}


def test_drop_path_drops_whole_samples_in_training_only():
    torch.manual_seed(0)
    dp = DropPath(0.5)
    x = torch.ones(2000, 3, 4)
    dp.train()
    y = dp(x)
    per_sample = y.view(2000, -1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert (per_sample.min(1).values == per_sample.max(1).values).all()  # whole samples
    assert abs(y.mean().item() - 1.0) < 0.1  # expectation kept
    dp.eval()
    assert torch.equal(dp(x), x)
    with pytest.raises(ValueError):
        DropPath(1.0)
