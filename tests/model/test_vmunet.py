"""VM-UNet decoder and the MD-TF-CAE encoder: shapes, skips, schedules, initialisation, parameter counts."""

from __future__ import annotations

import pytest
import torch

from spec2vol_bids.model.encoder import EncoderBlock, SpectrogramEncoder, encoded_width
from spec2vol_bids.model.ss2d import VSSBlock
from spec2vol_bids.model.vmunet import PatchExpand2D, PatchMerging2D, VMUNet

SMALL = dict(dims=(8, 16, 32, 64), depths=(1, 1, 2, 1), depths_decoder=(1, 2, 1, 1), d_state=4)


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_paper_vmunet_and_encoder_parameter_counts():
    # notes/reference-implementation.md §1.2: the official classes give encoder 1,264,064 + VM-UNet 44,663,166
    assert _count(VMUNet(256, 30)) == 44_663_166
    assert _count(SpectrogramEncoder(20, 256, 8, 64)) == 1_264_064


def test_stage_shapes_and_additive_skips():
    torch.manual_seed(0)
    net = VMUNet(in_chans=6, num_classes=3, **SMALL).eval()
    seen = {}

    def keep(name):
        def hook(mod, inputs, output):
            seen[name] = (inputs[0].detach(), output.detach())
        return hook

    for i, layer in enumerate(net.layers):
        layer.register_forward_hook(keep(f"enc{i}"))
    for i, layer in enumerate(net.layers_up):
        layer.register_forward_hook(keep(f"dec{i}"))
    x = torch.randn(2, 6, 64, 64)
    out = net(x)
    assert out.shape == (2, 3, 64, 64)
    assert [tuple(seen[f"enc{i}"][1].shape) for i in range(4)] == [
        (2, 8, 8, 16), (2, 4, 4, 32), (2, 2, 2, 64), (2, 2, 2, 64)]
    assert [tuple(seen[f"dec{i}"][1].shape) for i in range(4)] == [
        (2, 2, 2, 64), (2, 4, 4, 32), (2, 8, 8, 16), (2, 16, 16, 8)]
    # decoder stage i > 0 receives the previous decoder output plus the input of encoder stage 4 - i
    assert torch.allclose(seen["dec0"][0], seen["enc3"][1])
    for i in (1, 2, 3):
        assert torch.allclose(seen[f"dec{i}"][0], seen[f"dec{i - 1}"][1] + seen[f"enc{4 - i}"][0])


def test_patch_embedding_skip_is_unused():
    # VM-UNet never adds the 16x16 patch-embedding skip: the output depends on it only through the encoder
    torch.manual_seed(0)
    net = VMUNet(in_chans=6, num_classes=3, **SMALL).eval()
    assert len(net.layers_up) == 4 and net.layers_up[0].upsample is None
    assert all(isinstance(layer.upsample, PatchExpand2D) for layer in net.layers_up[1:])
    assert all(isinstance(layer.downsample, PatchMerging2D) for layer in net.layers[:3])
    assert net.layers[3].downsample is None


def test_drop_path_schedule_is_linear_and_reversed_in_the_decoder():
    net = VMUNet(256, 30)
    enc = [b.drop_path.p for layer in net.layers for b in layer.blocks]
    dec = [b.drop_path.p for layer in net.layers_up for b in layer.blocks]
    assert len(enc) == 15 and len(dec) == 15
    assert enc == pytest.approx(torch.linspace(0, 0.2, 15).tolist())
    assert dec == pytest.approx(torch.linspace(0, 0.2, 15).tolist()[::-1])


def test_initialisation():
    torch.manual_seed(0)
    net = VMUNet(in_chans=6, num_classes=3, dims=(32, 64, 128, 256), depths=(1, 1, 1, 1),
                 depths_decoder=(1, 1, 1, 1), d_state=4)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert all(m.bias is None or not m.bias.any() for m in linears)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert all(torch.all(m.weight == 1) and not m.bias.any() for m in norms)
    blocks = [m for m in net.modules() if isinstance(m, VSSBlock)]
    for blk in blocks:  # the SS2D-specific initialisation survives the network's re-initialisation
        assert torch.allclose(blk.self_attention.A_logs.exp()[:, :4], torch.arange(1, 5.0).expand(
            blk.self_attention.A_logs.shape[0], 4))


def test_vmunet_rejects_inconsistent_widths():
    with pytest.raises(ValueError, match="double"):
        VMUNet(8, 2, dims=(8, 12, 32, 64))
    with pytest.raises(ValueError, match="same length"):
        VMUNet(8, 2, dims=(8, 16, 32), depths=(1, 1, 1, 1))


@pytest.mark.parametrize("n,expected", [(249, 63), (250, 63), (256, 64), (257, 65), (1, 1), (100, 25)])
def test_encoded_width(n, expected):
    assert encoded_width(n) == expected
    conv = torch.nn.Conv2d(1, 1, (1, 3), stride=(1, 2), padding=(0, 1))
    with torch.no_grad():
        assert conv(conv(torch.zeros(1, 1, 1, n))).shape[-1] == expected  # independent check


def test_encoder_pads_right_and_bottom_with_zeros():
    torch.manual_seed(0)
    enc = SpectrogramEncoder(in_chans=5, hidden=16, heads=4, grid=64).eval()
    with torch.no_grad():
        out = enc(torch.randn(2, 5, 43, 249))  # Oddball-like 43 electrodes
    assert out.shape == (2, 16, 64, 64)
    assert not out[:, :, 43:, :].any() and not out[:, :, :, 63:].any()
    assert (out[:, :, :43, :63] != 0).float().mean() > 0.99


def test_encoder_attention_never_mixes_electrodes():
    # with the two branches whose kernels span electrodes switched off, no operation of the block may mix
    # electrode rows: attention runs along frequency, one sequence per electrode
    torch.manual_seed(0)
    blk = EncoderBlock(dim=16, heads=4).eval()
    with torch.no_grad():
        for conv in (blk.branch_h, blk.branch_hw):
            conv.weight.zero_()
            conv.bias.zero_()
        x = torch.randn(1, 16, 6, 20)
        x2 = x.clone()
        x2[:, :, 3, 7] += 1.0
        diff = (blk(x2) - blk(x)).abs().amax(dim=(0, 1, 3))  # per electrode row
    assert diff[3] > 1e-3
    assert torch.all(diff[[0, 1, 2, 4, 5]] == 0)
    # and the attention does mix frequencies: a change at one bin reaches every bin of its row
    with torch.no_grad():
        full = (blk(x2) - blk(x)).abs()[0, :, 3].amax(0)  # (W/2,)
    assert torch.all(full > 0)


def test_encoder_block_rejects_bad_heads():
    with pytest.raises(ValueError, match="divisible"):
        EncoderBlock(dim=30, heads=8)


@pytest.mark.parametrize("training", [False, True])
def test_encoder_attention_equals_torch_multihead_attention(training):
    torch.manual_seed(0)
    blk = EncoderBlock(dim=32, heads=4).train(training)
    seq = torch.randn(6, 21, 32, dtype=torch.float64)
    blk.double()
    expected, _ = blk.attn(seq, seq, seq, need_weights=False)  # the module itself is the oracle
    assert torch.allclose(blk.self_attention(seq), expected, atol=1e-12)
