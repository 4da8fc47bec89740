"""VM-UNet: the Vision-Mamba U-Net decoder of Spec2VolCAMU-Net (``notes/reference-implementation.md`` §1.2).

Layout (paper configuration, input ``(B, 256, 64, 64)``)::

    PatchEmbed  conv k4 s4 -> 96, LayerNorm                  (B, 16, 16, 96)    skip 0 (never used)
    stage 0     2 VSS blocks @ 96,  PatchMerging -> 192       (B, 8, 8, 192)     skip 1
    stage 1     2 VSS blocks @ 192, PatchMerging -> 384       (B, 4, 4, 384)     skip 2
    stage 2     9 VSS blocks @ 384, PatchMerging -> 768       (B, 2, 2, 768)     skip 3
    stage 3     2 VSS blocks @ 768                            (B, 2, 2, 768)
    up 0        2 VSS blocks @ 768                            (B, 2, 2, 768)
    up 1        (+ skip 3) PatchExpand -> 384, 9 VSS blocks   (B, 4, 4, 384)
    up 2        (+ skip 2) PatchExpand -> 192, 2 VSS blocks   (B, 8, 8, 192)
    up 3        (+ skip 1) PatchExpand -> 96,  2 VSS blocks   (B, 16, 16, 96)
    final       Linear 96 -> 384, 4x4 pixel shuffle, LayerNorm(24), 1x1 conv -> num_classes  (B, D, 64, 64)

Skips are added, not concatenated; there is no output activation. Drop-path rates rise linearly from 0 to
``drop_path`` over the encoder blocks and fall linearly over the decoder blocks. Linear weights are
truncated-normal (std 0.02) with zero bias, LayerNorms 1/0, convolutions keep PyTorch's default, and the SS2D
parameters (``A_logs``, ``Ds``, ``dt``) keep their own initialisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .ss2d import VSSBlock

__all__ = ["VMUNet", "PatchEmbed2D", "PatchMerging2D", "PatchExpand2D", "FinalPatchExpand2D", "VSSLayer"]


class PatchEmbed2D(nn.Module):
    """Non-overlapping ``patch_size`` patches: (B, C_in, H, W) -> (B, H/p, W/p, embed_dim) with LayerNorm."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 4):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # (B, H/p, W/p, embed_dim)


class PatchMerging2D(nn.Module):
    """2x2 neighbourhood concatenation (4C), LayerNorm, Linear 4C -> 2C without bias: halves H and W."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, H, W, C) -> (B, H/2, W/2, 4C), order (0,0), (1,0), (0,1), (1,1) as in Swin
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))  # (B, H/2, W/2, 2C)


def _pixel_shuffle_last(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Rearrange ``(B, H, W, (p1 p2 c))`` to ``(B, H*p1, W*p2, c)`` with ``p1 = p2 = scale``."""
    Bsz, H, W, C = x.shape
    c = C // (scale * scale)
    x = x.view(Bsz, H, W, scale, scale, c).permute(0, 1, 3, 2, 4, 5)  # (B, H, p1, W, p2, c)
    return x.reshape(Bsz, H * scale, W * scale, c)


class PatchExpand2D(nn.Module):
    """Upsample 2x: Linear 2*dim -> 4*dim (no bias), pixel shuffle to (2H, 2W, dim), LayerNorm(dim).

    ``dim`` is the output width; the input has ``2 * dim`` channels.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.expand = nn.Linear(2 * dim, 4 * dim, bias=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_pixel_shuffle_last(self.expand(x), 2))  # (B, 2H, 2W, dim)


class FinalPatchExpand2D(nn.Module):
    """Upsample 4x: Linear dim -> 4*dim (no bias), pixel shuffle to (4H, 4W, dim/4), LayerNorm(dim/4)."""

    def __init__(self, dim: int, scale: int = 4):
        super().__init__()
        self.scale = scale
        self.expand = nn.Linear(dim, scale * dim, bias=False)
        self.norm = nn.LayerNorm(dim // scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_pixel_shuffle_last(self.expand(x), self.scale))  # (B, 4H, 4W, dim/4)


class VSSLayer(nn.Module):
    """A stage: ``depth`` VSS blocks at width ``dim``, with an optional down-sampling after (encoder) or
    up-sampling before (decoder)."""

    def __init__(self, dim: int, depth: int, drop_path: Sequence[float], d_state: int = 16,
                 downsample: bool = False, upsample: bool = False, scan_backend: str | None = None):
        super().__init__()
        self.upsample = PatchExpand2D(dim) if upsample else None
        self.blocks = nn.ModuleList(
            VSSBlock(dim, drop_path=float(drop_path[i]), d_state=d_state, scan_backend=scan_backend)
            for i in range(depth)
        )
        self.downsample = PatchMerging2D(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample is not None:
            x = self.upsample(x)
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class VMUNet(nn.Module):
    """Vision-Mamba U-Net mapping (B, in_chans, G, G) to (B, num_classes, G, G); G divisible by 32.

    Parameters
    ----------
    in_chans : int
        Input channels (the encoder width N, 256 in the paper).
    num_classes : int
        Output channels (the number of slices D).
    dims : sequence of 4 int
        Widths of the four encoder stages (96, 192, 384, 768); each is twice the previous one.
    depths, depths_decoder : sequence of 4 int
        VSS blocks per encoder stage ((2, 2, 9, 2)) and per decoder stage ((2, 9, 2, 2)).
    d_state : int
        Scan state size (16).
    drop_path : float
        Largest stochastic-depth rate (0.2).
    patch_size : int
        Patch-embedding stride (4).
    scan_backend : str, optional
        Selective-scan backend for every SS2D layer.
    """

    def __init__(self, in_chans: int = 256, num_classes: int = 30, dims: Sequence[int] = (96, 192, 384, 768),
                 depths: Sequence[int] = (2, 2, 9, 2), depths_decoder: Sequence[int] = (2, 9, 2, 2),
                 d_state: int = 16, drop_path: float = 0.2, patch_size: int = 4,
                 scan_backend: str | None = None):
        super().__init__()
        dims = [int(c) for c in dims]
        if len(dims) != len(depths) or len(dims) != len(depths_decoder) or len(dims) < 1:
            raise ValueError(f"dims {dims}, depths {list(depths)} and depths_decoder {list(depths_decoder)} "
                             "must have the same length")
        if any(b != 2 * a for a, b in zip(dims[:-1], dims[1:])):
            raise ValueError(f"each VM-UNet width must double the previous one, got dims {dims}")
        if dims[0] % 4:
            raise ValueError(f"dims[0] must be divisible by 4 for the final 4x expansion, got {dims[0]}")
        n = len(dims)
        dims_dec = dims[::-1]
        dpr = torch.linspace(0, drop_path, sum(depths)).tolist()
        dpr_dec = torch.linspace(0, drop_path, sum(depths_decoder)).flip(0).tolist()

        self.patch_embed = PatchEmbed2D(in_chans, dims[0], patch_size)
        self.layers = nn.ModuleList(
            VSSLayer(dims[i], depths[i], dpr[sum(depths[:i]):sum(depths[:i + 1])], d_state,
                     downsample=i < n - 1, scan_backend=scan_backend)
            for i in range(n)
        )
        self.layers_up = nn.ModuleList(
            VSSLayer(dims_dec[i], depths_decoder[i], dpr_dec[sum(depths_decoder[:i]):sum(depths_decoder[:i + 1])],
                     d_state, upsample=i > 0, scan_backend=scan_backend)
            for i in range(n)
        )
        self.final_up = FinalPatchExpand2D(dims_dec[-1], scale=4)
        self.final_conv = nn.Conv2d(dims_dec[-1] // 4, num_classes, kernel_size=1)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # (B, G/4, G/4, dims[0])
        skips = []
        for layer in self.layers:
            skips.append(x)  # skips[0] is the patch embedding (unused, as in VM-UNet)
            x = layer(x)  # (B, G/8, G/8, dims[1]) ... (B, G/32, G/32, dims[-1])
        for i, layer in enumerate(self.layers_up):
            x = layer(x if i == 0 else x + skips[-i])  # additive skips, then expand and VSS blocks
        x = self.final_up(x)  # (B, G, G, dims[0] / 4)
        return self.final_conv(x.permute(0, 3, 1, 2))  # (B, num_classes, G, G)
