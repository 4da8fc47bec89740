"""Spec2VolCAMU-Net: EEG spectrogram windows to an fMRI volume (MD-TF-CAE encoder + VM-UNet decoder).

Data contract (``CONTRIBUTING.md``): input float32 ``[B, n_windows, n_electrodes, n_freqs]`` (paper
``[B, 20, C, 249]``), output float32 ``[B, n_slices, 64, 64]`` (the slices of the target volume as channels,
in-plane ``[X, Y]``; no output activation).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..errors import DataError, UsageError
from .encoder import SpectrogramEncoder, encoded_width
from .vmunet import VMUNet

__all__ = ["Spec2VolCAMUNet", "ConfigShapes", "PRESETS", "check_model_input"]

#: Named hyper-parameter sets for :meth:`Spec2VolCAMUNet.from_preset` (shape arguments are given separately).
PRESETS: dict[str, dict[str, Any]] = {
    # the published network (official code: Spectrogram2fMRI(in_dim=20, hidden_dim=256, out_dim=D))
    "paper": {},
    # a small network of the same structure that trains on 2 CPU cores in minutes (tests, demos). The first VM-UNet
    # stage is 32 wide so the output head sees 32 / 4 = 8 channels per pixel: with 16 (4 channels) the tiny net took
    # twice the steps to reach the mean image (held-out SSIM 0.21 vs 0.55 after 10 epochs on the tiny simulation).
    "tiny": {"hidden": 32, "heads": 4, "dims": (32, 64, 128, 256), "depths": (1, 1, 1, 1),
             "depths_decoder": (1, 1, 1, 1), "d_state": 8, "drop_path": 0.0},
}

_SHAPE_KEYS = ("n_windows", "n_electrodes", "n_freqs", "n_slices")


def check_model_input(name: str, x: torch.Tensor, expected: tuple[int, int, int], dtype: torch.dtype) -> None:
    """Raise :class:`~spec2vol_bids.errors.DataError` unless ``x`` is a floating-point ``[B, *expected]`` tensor
    of ``dtype`` (any dtype under autocast); ``name`` is the model named in the message."""
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name} expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(expected):
        hint = "add a batch axis with x[None]" if tuple(x.shape) == tuple(expected) else (
            "check the number of TR windows, the channel selection and the frequency bins of the spectrogram")
        raise DataError(
            f"{name} expects input [batch, windows, electrodes, freqs] = "
            f"[B, {expected[0]}, {expected[1]}, {expected[2]}], got {list(x.shape)}", hint=hint)
    if not x.is_floating_point():
        raise DataError(f"{name} expects a floating-point input, got {x.dtype}", hint="convert it with x.float()")
    if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise DataError(f"{name} has {dtype} weights but the input is {x.dtype}",
                        hint=f"convert the input with x.to({dtype}) (or the model with model.to(x.dtype))")


class ConfigShapes:
    """``input_shape`` and ``output_shape`` of a model whose ``config`` holds ``n_windows``, ``n_electrodes``,
    ``n_freqs``, ``n_slices`` and ``grid`` (the published network and its variants)."""

    config: dict

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Expected per-sample input shape ``(n_windows, n_electrodes, n_freqs)``."""
        c = self.config
        return c["n_windows"], c["n_electrodes"], c["n_freqs"]

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """Per-sample output shape ``(n_slices, grid, grid)``."""
        c = self.config
        return c["n_slices"], c["grid"], c["grid"]


class Spec2VolCAMUNet(ConfigShapes, nn.Module):
    """The Spec2VolCAMU-Net generator.

    Parameters
    ----------
    n_windows : int
        TR windows per sample (the conv input channels; 20).
    n_electrodes : int
        EEG channels (the height of the spectrogram image); at most ``grid``.
    n_freqs : int
        Frequency bins (249); after the two stride-2 encoder blocks ``ceil(n_freqs / 4)`` must be at most
        ``grid``.
    n_slices : int
        Axial slices of the output volume (30 or 32).
    hidden : int
        Encoder width N (256).
    heads : int
        Attention heads of the encoder (8).
    dims : tuple of 4 int
        VM-UNet widths (96, 192, 384, 768).
    depths, depths_decoder : tuple of 4 int
        VSS blocks per encoder / decoder stage ((2, 2, 9, 2) / (2, 9, 2, 2)).
    d_state : int
        Selective-scan state size (16).
    drop_path : float
        Largest stochastic-depth rate (0.2).
    grid : int
        In-plane size of the output (64); a multiple of 32.
    scan_backend : str, optional
        Selective-scan backend (``"chunked"``, ``"reference"``, ``"mamba_ssm"``); ``None`` = automatic /
        ``SPEC2VOL_SCAN_BACKEND``.

    Attributes
    ----------
    config : dict
        The constructor arguments; ``Spec2VolCAMUNet(**model.config)`` rebuilds the same architecture.

    Examples
    --------
    >>> model = Spec2VolCAMUNet.from_preset("tiny", n_electrodes=16, n_slices=8)
    >>> model(torch.zeros(2, 20, 16, 249)).shape
    torch.Size([2, 8, 64, 64])
    """

    def __init__(self, n_windows: int = 20, n_electrodes: int = 64, n_freqs: int = 249, n_slices: int = 30, *,
                 hidden: int = 256, heads: int = 8, dims: tuple[int, ...] = (96, 192, 384, 768),
                 depths: tuple[int, ...] = (2, 2, 9, 2), depths_decoder: tuple[int, ...] = (2, 9, 2, 2),
                 d_state: int = 16, drop_path: float = 0.2, grid: int = 64, scan_backend: str | None = None):
        super().__init__()
        for label, value in (("n_windows", n_windows), ("n_electrodes", n_electrodes), ("n_freqs", n_freqs),
                             ("n_slices", n_slices), ("hidden", hidden), ("heads", heads), ("grid", grid),
                             ("d_state", d_state)):
            if int(value) != value or value < 1:
                raise UsageError(f"Spec2VolCAMUNet: {label} must be a positive integer, got {value!r}")
        if grid % 32:
            raise UsageError(f"Spec2VolCAMUNet: grid must be a multiple of 32 (patch 4, three 2x merges), got {grid}")
        if n_electrodes > grid:
            raise DataError(
                f"Spec2VolCAMUNet: {n_electrodes} electrodes do not fit the {grid}x{grid} grid "
                f"(at most {grid} electrodes)",
                hint=f"select at most {grid} channels (e.g. drop ECG/EOG/auxiliary channels)",
            )
        w = encoded_width(n_freqs)
        if w > grid:
            raise DataError(
                f"Spec2VolCAMUNet: {n_freqs} frequency bins give an encoded width of {w} > grid {grid} "
                f"(at most {4 * grid} bins fit)",
                hint=f"keep at most {4 * grid} frequency bins (the paper uses 249)",
            )
        if hidden % heads:
            raise UsageError(f"Spec2VolCAMUNet: hidden ({hidden}) must be divisible by heads ({heads})")
        self.config: dict[str, Any] = {
            "n_windows": int(n_windows), "n_electrodes": int(n_electrodes), "n_freqs": int(n_freqs),
            "n_slices": int(n_slices), "hidden": int(hidden), "heads": int(heads),
            "dims": [int(c) for c in dims], "depths": [int(c) for c in depths],
            "depths_decoder": [int(c) for c in depths_decoder], "d_state": int(d_state),
            "drop_path": float(drop_path), "grid": int(grid), "scan_backend": scan_backend,
        }
        self.encoder = SpectrogramEncoder(n_windows, hidden, heads, grid)
        self.decoder = VMUNet(hidden, n_slices, dims=dims, depths=depths, depths_decoder=depths_decoder,
                              d_state=d_state, drop_path=drop_path, scan_backend=scan_backend)

    @classmethod
    def from_preset(cls, name: str = "paper", **kwargs: Any) -> Spec2VolCAMUNet:
        """Build a model from a named preset (``"paper"`` or ``"tiny"``); ``kwargs`` set the shape
        (``n_windows``, ``n_electrodes``, ``n_freqs``, ``n_slices``) and override preset values."""
        if name not in PRESETS:
            raise UsageError(f"unknown Spec2VolCAMUNet preset {name!r}", hint=f"choose one of {', '.join(PRESETS)}")
        params = copy.deepcopy(PRESETS[name])
        params.update(kwargs)
        shape = {k: params.pop(k) for k in _SHAPE_KEYS if k in params}
        return cls(**shape, **params)

    def set_scan_backend(self, backend: str | None) -> None:
        """Switch the selective-scan backend of every SS2D layer (e.g. ``"mamba_ssm"`` after ``.cuda()``)."""
        from .ss2d import SS2D

        for m in self.modules():
            if isinstance(m, SS2D):
                m.scan_backend = backend
        self.config["scan_backend"] = backend

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`~spec2vol_bids.errors.DataError` unless ``x`` is ``[B, *input_shape]``."""
        check_model_input(type(self).__name__, x, self.input_shape, self.encoder.stem.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` ``[B, n_windows, n_electrodes, n_freqs]`` to ``[B, n_slices, grid, grid]``."""
        self.check_input(x)
        h = self.encoder(x)  # (B, hidden, grid, grid)
        return self.decoder(h)  # (B, n_slices, grid, grid)
