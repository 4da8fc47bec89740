"""Spec2Vol with a global read-out: the published encoder, and a path from every electrode x frequency token to
every voxel.

Why (``docs/faq.rst``, ``benchmarks/results/variants.md``): the published network draws electrode ``e`` on image
row ``e`` and frequency bin ``f`` near column ``f / 4`` of a 64 x 64 map, and its VM-UNet decoder predicts each output
pixel mostly from the input pixels around it. On simulated data with known coupling it learns targets near the
electrode rows and not far from them, and under a volume-wide loss it settles on the mean image. The encoder
itself generalises when its read-out keeps position. The models here keep the published encoder
(:class:`~spec2vol_bids.model.encoder.SpectrogramEncoder`, unpadded :meth:`~SpectrogramEncoder.features`) and
replace the decoder by a head that sees the whole encoded map:

* ``lowrank`` (:class:`LowRankHead`): a 1x1 convolution to a few channels, the whole map flattened, a linear layer
  to a small code (``rank``), SiLU, and a linear layer to every voxel. Every voxel is a linear function of the
  code, so the predicted dynamics are low-rank in space, as brain networks (and the simulator's sources) are.
* ``xattn`` (:class:`CrossAttentionHead`): learned queries on a coarse in-plane grid attend to the electrode x
  frequency tokens (with learned electrode and frequency embeddings); each query writes one patch of every slice.
* ``refine`` (:class:`RefinerHead`): the low-rank head's coarse prediction and the training-mean volume go
  through a (small) VM-UNet that adds a correction, so the Mamba decoder works on a map aligned with its output.

Every variant standardises its input per (electrode, frequency) with statistics of the training subjects' windows
(buffers ``input_mean`` / ``input_std``, set by the training loop with :meth:`Spec2VolGlobal.set_input_statistics`):
the official spectrogram, z-scored across electrodes and then min-max scaled over the whole dataset, varies little
around its mean at any one electrode and frequency, and with it the encoder's features barely differed between
samples, so the global read-out started learning only after many epochs (measured: no change in 2 epochs of the
``tiny`` simulation, against clear learning in the first epoch with standardised inputs).

Every variant predicts the **deviation from the training-mean volume**, in units of the training targets' dynamic
standard deviation: ``output = mean_volume + deviation_scale * head(features)``. Both buffers are set by the
training loop (:meth:`Spec2VolGlobal.set_target_statistics`) and stored in the checkpoint. The anatomy, which EEG
cannot predict, comes from the training data; the head's output layer starts at zero, so training starts at the
mean-volume baseline instead of a random image; and the head works in standard units whatever the target scaling
(min-max, z-score), so a learning rate suits every dataset. (Without the scale, Adam's first steps on the wide
output layer moved every voxel by many times the size of the BOLD fluctuations.)

Input and output are those of :class:`~spec2vol_bids.model.Spec2VolCAMUNet`: ``[B, n_windows, n_electrodes,
n_freqs]`` -> ``[B, n_slices, grid, grid]``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UsageError
from .encoder import SpectrogramEncoder, encoded_width
from .registry import register_model
from .spec2vol import ConfigShapes, check_model_input

__all__ = ["Spec2VolGlobal", "LowRankHead", "CrossAttentionHead", "RefinerHead", "HEADS", "VARIANT_PRESETS",
           "VARIANT_NAMES"]

#: head name -> registry name of the model that uses it
VARIANT_NAMES = {"lowrank": "spec2vol-lowrank", "xattn": "spec2vol-xattn", "refine": "spec2vol-refine"}
HEADS = tuple(VARIANT_NAMES)

#: encoder (and refiner) sizes of the presets; the encoder of ``paper`` is the published one (N = 256, 8 heads)
VARIANT_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"hidden": 256, "heads": 8, "refiner_dims": (96, 192, 384, 768), "refiner_depths": (2, 2, 9, 2),
              "d_state": 16},
    "tiny": {"hidden": 32, "heads": 4, "refiner_dims": (32, 64, 128, 256), "refiner_depths": (1, 1, 1, 1),
             "d_state": 8},
}


def _zero_(layer: nn.Module) -> nn.Module:
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class LowRankHead(nn.Module):
    """Encoded map ``(B, N, C, W)`` -> deviation volume ``(B, D, G, G)`` through a ``rank``-dimensional code.

    ``1x1 conv N -> channels`` (keeps every electrode x frequency position), flatten to ``channels * C * W``,
    dropout, ``Linear -> rank``, SiLU, dropout, ``Linear rank -> D * G * G`` (zero-initialised: the head starts at
    a zero deviation). Parameters: about ``channels * C * W * rank + rank * D * G * G``.
    """

    def __init__(self, in_dim: int, n_electrodes: int, width: int, n_slices: int, grid: int, *,
                 channels: int = 4, rank: int = 64, dropout: float = 0.0):
        super().__init__()
        self.out_shape = (int(n_slices), int(grid), int(grid))
        self.reduce = nn.Conv2d(in_dim, channels, kernel_size=1)
        self.code = nn.Linear(channels * n_electrodes * width, rank)
        self.expand = _zero_(nn.Linear(rank, n_slices * grid * grid))
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = self.reduce(h).flatten(1)  # (B, channels * C * W)
        z = F.silu(self.code(self.dropout(z)))  # (B, rank)
        return self.expand(self.dropout(z)).view(-1, *self.out_shape)  # (B, D, G, G)


class CrossAttentionHead(nn.Module):
    """Learned in-plane queries attend to the electrode x frequency tokens; each query writes one patch.

    Tokens: ``LayerNorm(Linear N -> dim)`` of every position of the encoded map plus a learned electrode embedding
    and a learned frequency embedding (the encoder itself has no positional information). Queries: a
    ``query_grid x query_grid`` array of learned vectors, one per ``G / query_grid`` square patch. ``layers``
    pre-norm blocks of cross-attention (``attn_heads`` heads) and an MLP, then ``Linear dim -> D * p * p``
    (zero-initialised) arranged into the patches of every slice.
    """

    def __init__(self, in_dim: int, n_electrodes: int, width: int, n_slices: int, grid: int, *, dim: int = 64,
                 query_grid: int = 8, layers: int = 1, attn_heads: int = 4, pos_std: float = 1.0):
        super().__init__()
        if grid % query_grid:
            raise UsageError(f"query_grid ({query_grid}) must divide the grid ({grid})")
        if dim % attn_heads:
            raise UsageError(f"the token width ({dim}) must be divisible by attn_heads ({attn_heads})")
        self.n_slices, self.grid, self.query_grid = int(n_slices), int(grid), int(query_grid)
        self.patch = grid // query_grid
        self.tokens = nn.Linear(in_dim, dim)
        self.token_norm = nn.LayerNorm(dim)
        self.electrode_embedding = nn.Parameter(torch.randn(n_electrodes, 1, dim) * pos_std)
        self.frequency_embedding = nn.Parameter(torch.randn(1, width, dim) * pos_std)
        self.queries = nn.Parameter(torch.randn(query_grid * query_grid, dim) * pos_std)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"norm_q": nn.LayerNorm(dim), "attn": nn.MultiheadAttention(dim, attn_heads, batch_first=True),
                           "norm_mlp": nn.LayerNorm(dim),
                           "mlp": nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, dim))})
            for _ in range(layers))
        self.out = _zero_(nn.Linear(dim, n_slices * self.patch * self.patch))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        Bsz = h.shape[0]
        tok = self.token_norm(self.tokens(h.permute(0, 2, 3, 1)))  # (B, C, W, dim)
        tok = (tok + self.electrode_embedding + self.frequency_embedding).flatten(1, 2)  # (B, C*W, dim)
        q = self.queries.expand(Bsz, -1, -1)  # (B, Q*Q, dim)
        for blk in self.blocks:
            a, _ = blk["attn"](blk["norm_q"](q), tok, tok, need_weights=False)
            q = q + a
            q = q + blk["mlp"](blk["norm_mlp"](q))  # (B, Q*Q, dim)
        o = self.out(q)  # (B, Q*Q, D*p*p)
        Q, p, D = self.query_grid, self.patch, self.n_slices
        o = o.view(Bsz, Q, Q, D, p, p).permute(0, 3, 1, 4, 2, 5)  # (B, D, Q, p, Q, p)
        return o.reshape(Bsz, D, Q * p, Q * p)  # (B, D, G, G)


class RefinerHead(nn.Module):
    """The low-rank head, then a VM-UNet on ``[coarse deviation, training-mean volume]`` adding a correction.

    The VM-UNet (``dims``, ``depths`` for both halves) sees a map aligned with its output, which is what its local
    receptive field handles; its last convolution is zero-initialised, so it starts as the low-rank head.
    """

    def __init__(self, in_dim: int, n_electrodes: int, width: int, n_slices: int, grid: int, *,
                 channels: int = 4, rank: int = 64, dropout: float = 0.0, dims: Sequence[int] = (32, 64, 128, 256),
                 depths: Sequence[int] = (1, 1, 1, 1), d_state: int = 8, scan_backend: str | None = None):
        super().__init__()
        from .vmunet import VMUNet

        self.lowrank = LowRankHead(in_dim, n_electrodes, width, n_slices, grid, channels=channels, rank=rank,
                                   dropout=dropout)
        self.refiner = VMUNet(2 * n_slices, n_slices, dims=dims, depths=depths, depths_decoder=tuple(depths)[::-1],
                              d_state=d_state, drop_path=0.0, scan_backend=scan_backend)
        _zero_(self.refiner.final_conv)

    def forward(self, h: torch.Tensor, mean_volume: torch.Tensor) -> torch.Tensor:
        coarse = self.lowrank(h)  # (B, D, G, G)
        context = torch.cat([coarse, mean_volume.expand_as(coarse)], dim=1)  # (B, 2D, G, G)
        return coarse + self.refiner(context)  # (B, D, G, G)


class Spec2VolGlobal(ConfigShapes, nn.Module):
    """The Spec2VolCAMU-Net encoder with a global head, predicting the deviation from the training-mean volume.

    Parameters
    ----------
    n_windows, n_electrodes, n_freqs, n_slices : int
        Input ``[B, n_windows, n_electrodes, n_freqs]``, output ``[B, n_slices, grid, grid]``. Unlike the published
        network, the number of electrodes is not limited by the grid.
    head : {'lowrank', 'xattn', 'refine'}
        The read-out (module docstring).
    hidden, heads : int
        Encoder width and attention heads (the published 256 and 8; ``tiny``: 32 and 4).
    grid : int
        In-plane output size (64).
    channels, rank, dropout : int, int, float
        Low-rank head (``lowrank`` and ``refine``): channels kept per position, code size, dropout.
    token_dim, query_grid, attn_layers, attn_heads : int
        Cross-attention head.
    refiner_dims, refiner_depths, d_state, scan_backend
        VM-UNet of the ``refine`` head.
    mean_skip : bool
        Add the training-mean volume and scale the head to the dynamic standard deviation (default). ``False``
        (an ablation) makes the head predict the whole volume in the targets' units, starting from zero, as a
        decoder without the skip would: :meth:`set_target_statistics` then leaves both buffers at 0 and 1.

    Attributes
    ----------
    config : dict
        Constructor arguments (``Spec2VolGlobal(**config)`` rebuilds the architecture).
    input_mean, input_std : Tensor ``[n_electrodes, n_freqs]``
        Buffers standardising the input (the training windows' mean and standard deviation per electrode and
        frequency); :meth:`set_input_statistics` sets them.
    mean_volume : Tensor ``[n_slices, grid, grid]``
        Buffer added to the head's output (the training-mean target).
    deviation_scale : Tensor ``[]``
        Buffer multiplying the head's output (the standard deviation of the training targets around their run
        means). :meth:`set_target_statistics` sets both.

    Examples
    --------
    >>> model = Spec2VolGlobal.from_preset("tiny", n_electrodes=16, n_slices=8)
    >>> model(torch.zeros(2, 20, 16, 249)).shape
    torch.Size([2, 8, 64, 64])
    """

    #: the training loop calls :meth:`set_input_statistics` and :meth:`set_target_statistics` with the training
    #: subjects' data before the first step
    needs_mean_volume = True

    def __init__(self, n_windows: int = 20, n_electrodes: int = 64, n_freqs: int = 249, n_slices: int = 30, *,
                 head: str = "lowrank", hidden: int = 256, heads: int = 8, grid: int = 64, channels: int = 4,
                 rank: int = 64, dropout: float = 0.0, token_dim: int = 64, query_grid: int = 8,
                 attn_layers: int = 1, attn_heads: int = 4, refiner_dims: Sequence[int] = (32, 64, 128, 256),
                 refiner_depths: Sequence[int] = (1, 1, 1, 1), d_state: int = 8, scan_backend: str | None = None,
                 mean_skip: bool = True):
        super().__init__()
        if head not in HEADS:
            raise UsageError(f"unknown head {head!r}", hint=f"choose one of {', '.join(HEADS)}")
        for label, value in (("n_windows", n_windows), ("n_electrodes", n_electrodes), ("n_freqs", n_freqs),
                             ("n_slices", n_slices), ("hidden", hidden), ("heads", heads), ("grid", grid),
                             ("channels", channels), ("rank", rank)):
            if int(value) != value or value < 1:
                raise UsageError(f"{VARIANT_NAMES[head]}: {label} must be a positive integer, got {value!r}")
        if hidden % heads:
            raise UsageError(f"{VARIANT_NAMES[head]}: hidden ({hidden}) must be divisible by heads ({heads})")
        if not 0.0 <= dropout < 1.0:
            raise UsageError(f"{VARIANT_NAMES[head]}: dropout must be in [0, 1), got {dropout}")
        self.config: dict[str, Any] = {
            "n_windows": int(n_windows), "n_electrodes": int(n_electrodes), "n_freqs": int(n_freqs),
            "n_slices": int(n_slices), "head": head, "hidden": int(hidden), "heads": int(heads), "grid": int(grid),
            "channels": int(channels), "rank": int(rank), "dropout": float(dropout), "token_dim": int(token_dim),
            "query_grid": int(query_grid), "attn_layers": int(attn_layers), "attn_heads": int(attn_heads),
            "refiner_dims": [int(d) for d in refiner_dims], "refiner_depths": [int(d) for d in refiner_depths],
            "d_state": int(d_state), "scan_backend": scan_backend, "mean_skip": bool(mean_skip),
        }
        width = encoded_width(n_freqs)
        self.encoder = SpectrogramEncoder(n_windows, hidden, heads, grid)
        shape = (hidden, n_electrodes, width, n_slices, grid)
        if head == "lowrank":
            self.head = LowRankHead(*shape, channels=channels, rank=rank, dropout=dropout)
        elif head == "xattn":
            self.head = CrossAttentionHead(*shape, dim=token_dim, query_grid=query_grid, layers=attn_layers,
                                           attn_heads=attn_heads)
        else:
            self.head = RefinerHead(*shape, channels=channels, rank=rank, dropout=dropout, dims=refiner_dims,
                                    depths=refiner_depths, d_state=d_state, scan_backend=scan_backend)
        self.register_buffer("input_mean", torch.zeros(n_electrodes, n_freqs))  # [C, F]
        self.register_buffer("input_std", torch.ones(n_electrodes, n_freqs))  # [C, F]
        self.register_buffer("mean_volume", torch.zeros(n_slices, grid, grid))  # [D, G, G]
        self.register_buffer("deviation_scale", torch.ones(()))

    @property
    def name(self) -> str:
        """Registry name (``spec2vol-lowrank``, ...)."""
        return VARIANT_NAMES[self.config["head"]]

    @classmethod
    def from_preset(cls, name: str = "paper", **kwargs: Any) -> Spec2VolGlobal:
        """Build from a named preset (``"paper"``: the published encoder; ``"tiny"``: N = 32, 4 heads); ``kwargs``
        give the shape and override preset values."""
        if name not in VARIANT_PRESETS:
            raise UsageError(f"unknown preset {name!r}", hint=f"choose one of {', '.join(VARIANT_PRESETS)}")
        params = copy.deepcopy(VARIANT_PRESETS[name])
        params.update(kwargs)
        return cls(**params)

    @torch.no_grad()
    def set_input_statistics(self, mean, std) -> None:
        """Set the per (electrode, frequency) mean and standard deviation (``[n_electrodes, n_freqs]``) the input
        is standardised with (the training windows'; a standard deviation of 0 is treated as 1)."""
        m = torch.as_tensor(mean, dtype=self.input_mean.dtype, device=self.input_mean.device)
        s = torch.as_tensor(std, dtype=self.input_std.dtype, device=self.input_std.device)
        if tuple(m.shape) != tuple(self.input_mean.shape) or tuple(s.shape) != tuple(self.input_std.shape):
            raise UsageError(f"the input statistics have shapes {tuple(m.shape)} and {tuple(s.shape)}, the model "
                             f"takes {tuple(self.input_mean.shape)} (electrodes x frequencies)")
        if not (torch.isfinite(m).all() and torch.isfinite(s).all()):
            raise UsageError("the input statistics contain NaN or infinite values")
        self.input_mean.copy_(m)
        self.input_std.copy_(torch.where(s > 0, s, torch.ones_like(s)))

    @torch.no_grad()
    def set_target_statistics(self, mean_volume, scale: float = 1.0) -> None:
        """Set the volume the deviation is added to (the training-mean target, ``[n_slices, grid, grid]``) and the
        deviation's unit (the standard deviation of the training targets around their run means; positive)."""
        v = torch.as_tensor(mean_volume, dtype=self.mean_volume.dtype, device=self.mean_volume.device)
        if tuple(v.shape) != tuple(self.mean_volume.shape):
            raise UsageError(f"the mean volume has shape {tuple(v.shape)}, the model predicts "
                             f"{tuple(self.mean_volume.shape)}")
        if not (float(scale) > 0 and torch.isfinite(torch.tensor(float(scale)))):
            raise UsageError(f"the deviation scale must be a positive number, got {scale}")
        if self.config["mean_skip"]:
            self.mean_volume.copy_(v)
            self.deviation_scale.fill_(float(scale))

    def set_scan_backend(self, backend: str | None) -> None:
        """Switch the selective-scan backend of the ``refine`` head's VM-UNet (no effect for the others)."""
        from .ss2d import SS2D

        for m in self.modules():
            if isinstance(m, SS2D):
                m.scan_backend = backend
        self.config["scan_backend"] = backend

    def deviation(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted deviation from :attr:`mean_volume`, ``[B, D, G, G]`` (in the targets' units)."""
        check_model_input(self.name, x, self.input_shape, self.encoder.stem.weight.dtype)
        x = (x - self.input_mean) / self.input_std  # (B, W, C, F), standardised per electrode and frequency
        h = self.encoder.features(x)  # (B, hidden, C, W')
        if self.config["head"] == "refine":
            return self.deviation_scale * self.head(h, self.mean_volume)
        return self.deviation_scale * self.head(h)  # (B, D, G, G)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` ``[B, n_windows, n_electrodes, n_freqs]`` to ``[B, n_slices, grid, grid]``."""
        return self.mean_volume + self.deviation(x)


def _builder(head: str):
    def build(preset: str | None = None, **kwargs) -> nn.Module:
        # a checkpoint's kwargs (the model's config) name the head too: it must be this builder's
        given = kwargs.pop("head", head)
        if given != head:
            raise UsageError(f"{VARIANT_NAMES[head]} has the {head!r} head, not {given!r}")
        return Spec2VolGlobal.from_preset(preset or "paper", head=head, **kwargs)

    build.__doc__ = f"Spec2VolGlobal with the {head!r} head; ``preset`` ``paper`` or ``tiny``."
    build.needs_mean_volume = Spec2VolGlobal.needs_mean_volume  # read by the trainer before building
    return build


for _head, _name in VARIANT_NAMES.items():
    register_model(_name)(_builder(_head))
