"""MD-TF-CAE: the multi-directional time-frequency convolutional-attention encoder of Spec2VolCAMU-Net.

Input ``(B, n_windows, n_electrodes, n_freqs)``: the TR windows are the convolution channels, electrodes are
the image height and frequency bins the width (``notes/reference-implementation.md`` §1.1-1.2). A stem (3x3 conv
to ``hidden`` + SiLU) is followed by two :class:`EncoderBlock` s, each halving the frequency axis
(249 -> 125 -> 63), and the map is zero-padded on the right/bottom to the ``grid x grid`` input of VM-UNet.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["EncoderBlock", "SpectrogramEncoder", "encoded_width"]


def encoded_width(n_freqs: int, n_blocks: int = 2) -> int:
    """Frequency width after ``n_blocks`` stride-2 (kernel 3, padding 1) convolutions: ceil(n / 2**n_blocks)."""
    w = int(n_freqs)
    for _ in range(n_blocks):
        w = (w - 1) // 2 + 1
    return w


class EncoderBlock(nn.Module):
    """One encoder block at width ``dim``.

    1. Multi-scale convolution: three branches ``dim -> branch_channels`` (kernels (3, 1) across electrodes,
       (1, 3) across frequency, 3x3), each + SiLU, concatenated and fused by a 1x1 conv to ``dim`` + SiLU;
       residual; LayerNorm over channels.
    2. Multi-head self-attention along frequency: every (sample, electrode) row is one sequence of
       frequency tokens embedded by the ``dim`` channels (no positional encoding, electrodes never mix);
       residual; LayerNorm over channels.
    3. Down-sampling conv (1, 3), stride (1, 2), padding (0, 1), no activation: width ``W -> ceil(W / 2)``.

    Input and output are ``(B, dim, H, W)`` and ``(B, dim, H, ceil(W / 2))``.
    """

    def __init__(self, dim: int = 256, heads: int = 8, branch_channels: int = 32):
        super().__init__()
        if dim % heads:
            raise ValueError(f"the encoder width ({dim}) must be divisible by the number of heads ({heads})")
        self.branch_h = nn.Conv2d(dim, branch_channels, kernel_size=(3, 1), padding=(1, 0))
        self.branch_w = nn.Conv2d(dim, branch_channels, kernel_size=(1, 3), padding=(0, 1))
        self.branch_hw = nn.Conv2d(dim, branch_channels, kernel_size=3, padding=1)
        self.fuse = nn.Conv2d(3 * branch_channels, dim, kernel_size=1)
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.down = nn.Conv2d(dim, dim, kernel_size=(1, 3), stride=(1, 2), padding=(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Bsz, C, H, W = x.shape  # (B, dim, H electrodes, W freqs)
        y = torch.cat([F.silu(self.branch_h(x)), F.silu(self.branch_w(x)), F.silu(self.branch_hw(x))], dim=1)
        y = F.silu(self.fuse(y))  # (B, dim, H, W)
        x = self.norm1((x + y).permute(0, 2, 3, 1))  # (B, H, W, dim) channels-last
        seq = x.reshape(Bsz * H, W, C)  # one frequency sequence per (sample, electrode)
        a = self.self_attention(seq)  # (B*H, W, dim)
        x = self.norm2(seq + a).view(Bsz, H, W, C).permute(0, 3, 1, 2)  # (B, dim, H, W)
        return self.down(x)  # (B, dim, H, ceil(W/2))

    def self_attention(self, seq: torch.Tensor) -> torch.Tensor:
        """``self.attn(seq, seq, seq)`` computed with ``F.scaled_dot_product_attention``.

        The same parameters and result as :class:`torch.nn.MultiheadAttention` (no dropout, scale
        ``1/sqrt(head_dim)``), but the fused (flash) attention kernel is used in training and inference alike:
        on CPU it is about 1.6x faster than the module's eval fast path, which materialises the attention
        matrices with ``bmm`` + ``softmax`` (``benchmarks/bench_model.py``).
        """
        N, W, C = seq.shape  # (sequences, tokens, dim)
        h = self.heads
        qkv = F.linear(seq, self.attn.in_proj_weight, self.attn.in_proj_bias)  # (N, W, 3C)
        q, k, v = qkv.view(N, W, 3, h, C // h).permute(2, 0, 3, 1, 4)  # each (N, heads, W, C/heads)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, heads, W, C/heads)
        out = out.transpose(1, 2).reshape(N, W, C)  # (N, W, C)
        return F.linear(out, self.attn.out_proj.weight, self.attn.out_proj.bias)


class SpectrogramEncoder(nn.Module):
    """Stem + two encoder blocks + right/bottom zero padding to ``grid x grid``.

    Parameters
    ----------
    in_chans : int
        Number of TR windows (20).
    hidden : int
        Width N (256).
    heads : int
        Attention heads (8).
    grid : int
        Side of the padded output (64).
    n_blocks : int
        Encoder blocks (2).

    Input ``(B, in_chans, H, W)`` with ``H <= grid`` and ``ceil(W / 2**n_blocks) <= grid``; output
    ``(B, hidden, grid, grid)``. The caller checks the sizes (see :class:`~spec2vol_bids.model.Spec2VolCAMUNet`).
    """

    def __init__(self, in_chans: int = 20, hidden: int = 256, heads: int = 8, grid: int = 64, n_blocks: int = 2):
        super().__init__()
        self.grid = grid
        self.stem = nn.Conv2d(in_chans, hidden, kernel_size=3, padding=1)
        self.blocks = nn.ModuleList(EncoderBlock(hidden, heads) for _ in range(n_blocks))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoded map before padding: ``(B, in_chans, H, W) -> (B, hidden, H, ceil(W / 2**n_blocks))``.

        Row ``e`` is still electrode ``e`` and column ``j`` covers frequency bins ``4j .. 4j + 3`` (two blocks);
        the global-read-out variants (:mod:`spec2vol_bids.model.variants`) read this map directly.
        """
        x = F.silu(self.stem(x))  # (B, hidden, H, W)
        for blk in self.blocks:
            x = blk(x)  # (B, hidden, H, W/2), (B, hidden, H, W/4)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, hidden, H, W')
        H, W = x.shape[-2:]
        return F.pad(x, (0, self.grid - W, 0, self.grid - H))  # (B, hidden, grid, grid), zeros right/bottom
