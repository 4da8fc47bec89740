"""Baselines trained and evaluated in the same harness as Spec2VolCAMU-Net.

* :class:`E2fNet` - the E2fNet generator of Roos et al. (arXiv 2502.08025), the paper's main comparison:
  a strided convolutional EEG encoder, a diffusers ``UNet2DModel`` (called with timestep 0) and a convolutional
  fMRI decoder with a sigmoid output.
* :class:`RidgeRegression` - closed-form ridge regression from the (band-pooled, PCA-reduced) spectrogram to the
  volume; the regularisation is chosen on the validation subject.
* :class:`MeanVolume` - the training-mean volume, whatever the EEG. SSIM of a model is only interesting next to
  this one, and its dynamic correlation is 0 by construction.

All three are registered in :mod:`spec2vol_bids.model.registry` (``build_model("e2fnet" | "ridge" | "mean")``),
take the shape arguments ``n_windows, n_electrodes, n_freqs, n_slices`` like ``Spec2VolCAMUNet``, expose the
constructor arguments as ``config`` and map ``[B, n_windows, n_electrodes, n_freqs]`` to ``[B, n_slices, grid,
grid]``. The closed-form models (``closed_form = True``) are fitted with ``fit(train_batches, val_batches)``
instead of gradient descent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError, UsageError
from .registry import register_model

__all__ = ["E2fNet", "RidgeRegression", "MeanVolume"]


def _check_x(model: nn.Module, x: torch.Tensor) -> None:
    c = model.config
    want = (c["n_windows"], c["n_electrodes"], c["n_freqs"])
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != want:
        got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise DataError(f"{type(model).__name__} expects input [batch, windows, electrodes, freqs] = "
                        f"[B, {want[0]}, {want[1]}, {want[2]}], got {got}",
                        hint="check the number of TR windows, the channel selection and the frequency bins")


# --------------------------------------------------------------------------------------------------- E2fNet
class E2fNet(nn.Module):
    """E2fNet generator (reference-implementation notes §2.1).

    Parameters
    ----------
    n_windows, n_electrodes, n_freqs, n_slices : int
        Input ``[B, n_windows, n_electrodes, n_freqs]``, output ``[B, n_slices, grid, grid]``.
    channels : tuple of 4 int
        Encoder widths ``(32, 64, 128, 256)``; the last one is the width of the U-Net and the decoder runs the
        first three in reverse. Smaller values give a fast variant for tests.
    grid : int
        In-plane output size (64).

    Notes
    -----
    Encoder: Conv ``n_windows -> c0`` kernel (1, 5) stride (1, 2) pad (0, 3) + BN + ReLU (frequency
    249 -> 126), Conv ``c0 -> c1`` same (126 -> 64), Conv 3 x 3 ``c1 -> c2`` + BN + ReLU, Conv 3 x 3 ``c2 -> c3``
    (no activation), bicubic resize to ``grid x grid`` when the map is not already that size (e.g. 43 electrodes).
    Middle: ``diffusers.UNet2DModel(c3 -> c3, layers_per_block=1, block_out_channels=(c3, c3), two DownBlock2D,
    two UpBlock2D)`` at timestep 0 (diffusers defaults otherwise, incl. the attention mid-block).
    Decoder: 3 x 3 convs ``c3 -> c2 -> c1 -> c0`` (BN + ReLU each), 3 x 3 conv ``c0 -> n_slices``, sigmoid.
    """

    def __init__(self, n_windows: int = 20, n_electrodes: int = 64, n_freqs: int = 249, n_slices: int = 30, *,
                 channels: tuple[int, int, int, int] = (32, 64, 128, 256), grid: int = 64):
        super().__init__()
        from ..utils import require_module  # diffusers is the optional extra "e2fnet"

        UNet2DModel = require_module("diffusers", extra="e2fnet", what="the E2fNet baseline").UNet2DModel

        c0, c1, c2, c3 = (int(c) for c in channels)
        self.config: dict[str, Any] = {"n_windows": int(n_windows), "n_electrodes": int(n_electrodes),
                                       "n_freqs": int(n_freqs), "n_slices": int(n_slices),
                                       "channels": [c0, c1, c2, c3], "grid": int(grid)}
        if grid % 4:
            raise UsageError(f"E2fNet: grid must be a multiple of 4, got {grid}")

        def block(cin, cout, **kw):
            return nn.Sequential(nn.Conv2d(cin, cout, **kw), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.encoder = nn.Sequential(
            block(n_windows, c0, kernel_size=(1, 5), stride=(1, 2), padding=(0, 3)),  # [B, c0, C, 126]
            block(c0, c1, kernel_size=(1, 5), stride=(1, 2), padding=(0, 3)),         # [B, c1, C, 64]
            block(c1, c2, kernel_size=3, padding=1),                                   # [B, c2, C, 64]
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),                               # [B, c3, C, 64]
        )
        self.unet = UNet2DModel(sample_size=grid, in_channels=c3, out_channels=c3, layers_per_block=1,
                                block_out_channels=(c3, c3), down_block_types=("DownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=math.gcd(32, c3))
        self.decoder = nn.Sequential(
            block(c3, c2, kernel_size=3, padding=1),
            block(c2, c1, kernel_size=3, padding=1),
            block(c1, c0, kernel_size=3, padding=1),
            nn.Conv2d(c0, n_slices, kernel_size=3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_x(self, x)
        g = self.config["grid"]
        h = self.encoder(x)  # [B, c3, C, F']
        if tuple(h.shape[-2:]) != (g, g):
            h = F.interpolate(h, size=(g, g), mode="bicubic", align_corners=False)  # [B, c3, g, g]
        h = self.unet(h, 0).sample  # [B, c3, g, g]
        return self.decoder(h)  # [B, D, g, g]


# --------------------------------------------------------------------------------------------------- closed form
Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


class RidgeRegression(nn.Module):
    """Ridge regression from the spectrogram to the volume, fitted in closed form.

    Features: the frequency axis is averaged into ``n_bands`` contiguous bands, the result flattened
    (``n_windows * n_electrodes * n_bands``), centred and projected on its first ``n_components`` principal
    components (training data only). The ridge solution for every voxel is computed in the PCA basis and the
    penalty is picked from a grid on the validation batches (lowest MSE); without validation data ``alpha_rel=1``
    (penalty = mean eigenvalue) is used.

    Parameters
    ----------
    n_windows, n_electrodes, n_freqs, n_slices : int
    grid : int
        In-plane output size.
    n_bands : int
        Frequency bands after pooling (8).
    n_components : int
        Principal components kept (128; fewer if there are fewer training samples).
    """

    closed_form = True
    alphas_rel = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3)

    def __init__(self, n_windows: int = 20, n_electrodes: int = 64, n_freqs: int = 249, n_slices: int = 30, *,
                 grid: int = 64, n_bands: int = 8, n_components: int = 128):
        super().__init__()
        n_bands = min(int(n_bands), int(n_freqs))
        self.config: dict[str, Any] = {"n_windows": int(n_windows), "n_electrodes": int(n_electrodes),
                                       "n_freqs": int(n_freqs), "n_slices": int(n_slices), "grid": int(grid),
                                       "n_bands": n_bands, "n_components": int(n_components)}
        p = int(n_windows) * int(n_electrodes) * n_bands
        q = int(n_slices) * int(grid) * int(grid)
        k = int(n_components)
        # band b averages frequency bins edges[b]:edges[b+1] (np.array_split boundaries)
        edges = np.cumsum([0] + [len(a) for a in np.array_split(np.arange(n_freqs), n_bands)])
        pool = torch.zeros(n_freqs, n_bands)
        for b in range(n_bands):
            pool[edges[b]:edges[b + 1], b] = 1.0 / (edges[b + 1] - edges[b])
        self.register_buffer("band_pool", pool)                 # [F, n_bands]
        self.register_buffer("x_mean", torch.zeros(p))          # [p]
        self.register_buffer("components", torch.zeros(k, p))   # [k, p]
        self.register_buffer("coef", torch.zeros(k, q))         # [k, q]
        self.register_buffer("y_mean", torch.zeros(q))          # [q]
        self.register_buffer("alpha", torch.zeros(()))
        self.fit_info: dict[str, Any] = {}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, W, C, F] -> [B, W * C * n_bands]``."""
        return (x.to(self.band_pool.dtype) @ self.band_pool).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_x(self, x)
        c = self.config
        z = (self.features(x) - self.x_mean) @ self.components.T  # [B, k]
        y = z @ self.coef + self.y_mean                          # [B, q]
        return y.reshape(x.shape[0], c["n_slices"], c["grid"], c["grid"])

    @torch.no_grad()
    def fit(self, train_batches: Batches, val_batches: Batches | None = None) -> dict[str, Any]:
        """Fit on ``train_batches()`` (an iterable of ``(x, y)`` batches, read twice); choose the penalty on
        ``val_batches()``. Returns a summary (samples, components, chosen penalty, validation MSE per penalty)."""
        feats, n, y_sum = [], 0, None
        for x, y in train_batches():                                  # pass 1: features and the target mean
            feats.append(self.features(x).to(torch.float64))
            y2 = y.reshape(y.shape[0], -1).to(torch.float64)
            y_sum = y2.sum(0) if y_sum is None else y_sum + y2.sum(0)
            n += y.shape[0]
        if n < 2:
            raise DataError("ridge regression needs at least 2 training samples")
        X = torch.cat(feats)                                          # [n, p]
        x_mean = X.mean(0)
        Xc = X - x_mean
        k = min(self.config["n_components"], n - 1, Xc.shape[1])
        # principal axes from the smaller Gram matrix
        if n <= Xc.shape[1]:
            evals, U = torch.linalg.eigh(Xc @ Xc.T)                   # [n], [n, n]
            order = torch.argsort(evals, descending=True)[:k]
            s2, U = evals[order].clamp_min(1e-12), U[:, order]
            V = (Xc.T @ U) / s2.sqrt()                                # [p, k]
        else:
            evals, V = torch.linalg.eigh(Xc.T @ Xc)
            order = torch.argsort(evals, descending=True)[:k]
            s2, V = evals[order].clamp_min(1e-12), V[:, order]
        Z = Xc @ V                                                    # [n, k]; Z^T Z = diag(s2)
        y_mean = y_sum / n
        ZtY = torch.zeros(k, y_mean.numel(), dtype=torch.float64)     # pass 2: Z^T (Y - mean)
        start = 0
        for _, y in train_batches():
            b = y.shape[0]
            ZtY += Z[start:start + b].T @ (y.reshape(b, -1).to(torch.float64) - y_mean)
            start += b
        alphas = [a * float(s2.mean()) for a in self.alphas_rel]
        val_mse = None
        if val_batches is not None:
            sse = np.zeros(len(alphas))
            count = 0
            for x, y in val_batches():
                zv = (self.features(x).to(torch.float64) - x_mean) @ V  # [b, k]
                yv = y.reshape(y.shape[0], -1).to(torch.float64) - y_mean
                for i, a in enumerate(alphas):
                    sse[i] += float(((zv / (s2 + a)) @ ZtY - yv).pow(2).sum())
                count += yv.numel()
            if count:
                val_mse = (sse / count).tolist()
        best = int(np.argmin(val_mse)) if val_mse is not None else self.alphas_rel.index(1.0)
        alpha = alphas[best]
        coef = ZtY / (s2 + alpha)[:, None]                            # [k, q]
        kmax = self.config["n_components"]
        self.components.zero_()
        self.coef.zero_()
        self.components[:k] = V.T.to(self.components.dtype)
        self.coef[:k] = coef.to(self.coef.dtype)
        self.x_mean.copy_(x_mean.to(self.x_mean.dtype))
        self.y_mean.copy_(y_mean.to(self.y_mean.dtype))
        self.alpha.fill_(alpha)
        self.fit_info = {"n_samples": n, "n_components": k, "n_components_max": kmax, "alpha": alpha,
                         "alpha_rel": self.alphas_rel[best], "val_mse_per_alpha": val_mse}
        return self.fit_info


class MeanVolume(nn.Module):
    """Predicts the voxel-wise mean of the training targets for every input.

    Parameters
    ----------
    n_windows, n_electrodes, n_freqs, n_slices : int
    grid : int
    """

    closed_form = True

    def __init__(self, n_windows: int = 20, n_electrodes: int = 64, n_freqs: int = 249, n_slices: int = 30, *,
                 grid: int = 64):
        super().__init__()
        self.config: dict[str, Any] = {"n_windows": int(n_windows), "n_electrodes": int(n_electrodes),
                                       "n_freqs": int(n_freqs), "n_slices": int(n_slices), "grid": int(grid)}
        self.register_buffer("mean", torch.zeros(int(n_slices), int(grid), int(grid)))  # [D, g, g]
        self.fit_info: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_x(self, x)
        return self.mean.expand(x.shape[0], *self.mean.shape).clone()

    @torch.no_grad()
    def fit(self, train_batches: Batches, val_batches: Batches | None = None) -> dict[str, Any]:
        """Average the targets of ``train_batches()`` (float64 accumulation)."""
        total, n = None, 0
        for _, y in train_batches():
            s = y.to(torch.float64).sum(0)
            total = s if total is None else total + s
            n += y.shape[0]
        if n == 0:
            raise DataError("the mean-volume baseline needs at least one training sample")
        self.mean.copy_((total / n).to(self.mean.dtype))
        self.fit_info = {"n_samples": n}
        return self.fit_info


@register_model("e2fnet")
def _build_e2fnet(**kwargs) -> nn.Module:
    """E2fNet; ``preset="tiny"`` gives narrow channels (8, 8, 16, 16) for tests and demos."""
    preset = kwargs.pop("preset", None)
    if preset == "tiny":
        kwargs.setdefault("channels", (8, 8, 16, 16))
    elif preset not in (None, "paper"):
        raise UsageError(f"unknown E2fNet preset {preset!r}", hint="choose paper or tiny")
    return E2fNet(**kwargs)


@register_model("ridge")
def _build_ridge(**kwargs) -> nn.Module:
    kwargs.pop("preset", None)
    return RidgeRegression(**kwargs)


@register_model("mean")
def _build_mean(**kwargs) -> nn.Module:
    kwargs.pop("preset", None)
    return MeanVolume(**kwargs)
