"""The global-read-out variants (spec2vol-lowrank, -xattn, -refine): shapes, start at the mean volume, learning,
registry, and the published network left exactly as it was."""

from __future__ import annotations

import pytest
import torch

from spec2vol_bids.errors import DataError, UsageError
from spec2vol_bids.model import Spec2VolCAMUNet, build_model, model_names
from spec2vol_bids.model.registry import model_class_attribute
from spec2vol_bids.model.variants import HEADS, VARIANT_NAMES, Spec2VolGlobal

SHAPE = dict(n_windows=20, n_electrodes=16, n_freqs=249, n_slices=8)


@pytest.mark.parametrize("head", HEADS)
def test_every_head_starts_at_the_mean_volume(head):
    torch.manual_seed(0)
    model = build_model(VARIANT_NAMES[head], preset="tiny", **SHAPE)
    mean = torch.rand(8, 64, 64)
    model.set_target_statistics(mean, 0.05)
    x = torch.randn(3, 20, 16, 249)
    y = model(x)
    assert y.shape == (3, 8, 64, 64)
    # zero-initialised output layer: the untrained model is the mean-volume baseline, exactly
    assert torch.equal(y, mean.expand(3, -1, -1, -1))
    assert torch.equal(model.deviation(x), torch.zeros(3, 8, 64, 64))
    assert model.config["head"] == head and model.name == VARIANT_NAMES[head]
    assert model_class_attribute(VARIANT_NAMES[head], "needs_mean_volume") is True
    rebuilt = Spec2VolGlobal(**model.config)
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("head", ["lowrank", "xattn"])
def test_every_parameter_learns_and_a_batch_is_fitted(head):
    torch.manual_seed(0)
    model = build_model(VARIANT_NAMES[head], preset="tiny", n_windows=4, n_electrodes=6, n_freqs=24, n_slices=2)
    x = torch.randn(4, 4, 6, 24)
    y = 0.1 * torch.randn(4, 2, 64, 64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = torch.mean((model(x) - y) ** 2)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), [n for n, g in grads.items()
                                                                             if g is None or g.abs().sum() == 0]
    assert loss.item() < 0.5 * first


def test_lowrank_parameter_count_paper_preset():
    model = build_model("spec2vol-lowrank", preset="paper", n_windows=20, n_electrodes=64, n_freqs=249,
                        n_slices=30)
    encoder = sum(p.numel() for p in model.encoder.parameters())
    assert encoder == 1_264_064  # the published encoder, unchanged
    width = (249 + 3) // 4  # two stride-2 blocks: 249 -> 125 -> 63
    head = (256 * 4 + 4) + (4 * 64 * width * 64 + 64) + (64 * 30 * 64 * 64 + 30 * 64 * 64)
    assert sum(p.numel() for p in model.parameters()) == encoder + head


def test_more_electrodes_than_the_grid_fit():
    """The published network draws electrodes on image rows (at most 64); the global read-out has no such limit."""
    with pytest.raises(DataError, match="do not fit"):
        Spec2VolCAMUNet.from_preset("tiny", n_windows=4, n_electrodes=70, n_freqs=24, n_slices=2)
    model = build_model("spec2vol-lowrank", preset="tiny", n_windows=4, n_electrodes=70, n_freqs=24, n_slices=2)
    assert model(torch.randn(1, 4, 70, 24)).shape == (1, 2, 64, 64)


def test_errors_are_clear():
    model = build_model("spec2vol-lowrank", preset="tiny", **SHAPE)
    with pytest.raises(DataError, match=r"expects input .* \[B, 20, 16, 249\]"):
        model(torch.zeros(2, 20, 15, 249))
    with pytest.raises(UsageError, match="mean volume has shape"):
        model.set_target_statistics(torch.zeros(8, 32, 32))
    with pytest.raises(UsageError, match="positive number"):
        model.set_target_statistics(torch.zeros(8, 64, 64), 0.0)
    with pytest.raises(UsageError, match="unknown head"):
        Spec2VolGlobal(head="gap", **SHAPE)
    with pytest.raises(UsageError, match="unknown preset"):
        Spec2VolGlobal.from_preset("huge", **SHAPE)
    assert {"spec2vol-lowrank", "spec2vol-xattn", "spec2vol-refine", "spec2vol"} <= set(model_names())


def test_the_published_network_forward_is_unchanged():
    """Golden values of the tiny published network computed before the global read-outs were added (same seed,
    same input): adding them changed nothing in ``Spec2VolCAMUNet``."""
    torch.manual_seed(0)
    model = Spec2VolCAMUNet.from_preset("tiny", n_electrodes=16, n_slices=8).eval()
    assert sum(p.double().sum().item() for p in model.parameters()) == pytest.approx(57941.15094946663, rel=1e-9)
    x = torch.randn(2, 20, 16, 249, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
    assert y.double().sum().item() == pytest.approx(-4994.150940114632, rel=1e-4)
    assert y.double().abs().sum().item() == pytest.approx(32927.08225374669, rel=1e-5)
    assert y[0, 0, 0, :4].tolist() == pytest.approx(
        [-0.7099028825759888, -0.03078807145357132, -0.015944931656122208, -0.3718489706516266], abs=1e-4)
    assert y[1, 7, 63, -4:].tolist() == pytest.approx(
        [0.7599373459815979, -0.8054003119468689, -0.2744065523147583, -0.1733853667974472], abs=1e-4)


def test_a_model_rebuilds_from_its_registry_name_and_config():
    """What loading a checkpoint does: build_model(name, **config) (config names the head too)."""
    model = build_model("spec2vol-xattn", preset="tiny", **SHAPE)
    again = build_model("spec2vol-xattn", **model.config)
    assert again.config == model.config
    with pytest.raises(UsageError, match="has the 'lowrank' head"):
        build_model("spec2vol-lowrank", **model.config)
