"""Image-quality and dynamics metrics for predicted fMRI volumes.

Three metrics, each with a differentiable/per-sample torch form (used by the training loop) and a NumPy-friendly
wrapper (used by the simulator's noise ceiling, the BIDS-App's ``group_metrics.tsv`` and the napari widget):

* :func:`ssim` - structural similarity exactly as published (torchmetrics >= 1.4.3
  ``StructuralSimilarityIndexMeasure(data_range=1.0)``): **2-D**, the ``D`` axial slices of a volume are the
  channels of one image and each slice is filtered separately with an 11 x 11 Gaussian window (sigma 1.5),
  ``K1 = 0.01``, ``K2 = 0.03``, local variances clamped at zero, inputs reflect-padded by 5 pixels and the SSIM map
  averaged over the **full** image. ``crop_border=True`` reproduces torchmetrics < 1.4.3, which discarded a 5-pixel
  border of the map before averaging (Lightning-AI/torchmetrics#2721 removed the crop); with the crop the value
  equals :func:`skimage.metrics.structural_similarity` (``gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False``) averaged over slices.
* :func:`psnr` - peak signal-to-noise ratio of each volume, ``10 log10(range**2 / MSE)`` with the published range
  rule ``range = max(target.max(), 0) - min(target.min(), 0)`` (torchmetrics ``PeakSignalNoiseRatio()`` with
  ``data_range=None`` applied to one volume at a time; 1 for targets min-max scaled to [0, 1]).
* :func:`dynamic_correlation` - per-voxel Pearson correlation of the predicted and measured time courses inside a
  mask (each time course's mean removed), averaged over voxels. SSIM and PSNR compare one volume at a time and are
  dominated by the mean image; this metric sees only what changes over time, which is what EEG can predict. A
  model that always outputs the same volume scores 0.

Layout: volumes are "slices first" like the model output, ``[D, H, W]`` for one volume or ``[N, D, H, W]`` for a
batch / a time series. NIfTI arrays ``[X, Y, Z(, T)]`` convert with :func:`from_nifti_layout`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "SSIM_KERNEL_SIZE",
    "SSIM_SIGMA",
    "SSIM_K1",
    "SSIM_K2",
    "from_nifti_layout",
    "gaussian_window",
    "ssim_map",
    "ssim_per_sample",
    "psnr_per_sample",
    "ssim",
    "psnr",
    "dynamic_correlation",
    "dynamic_correlation_map",
    "DynamicCorrelationAccumulator",
    "RunMetrics",
    "run_metrics",
]

#: Gaussian window of the published SSIM: int(3.5 * sigma + 0.5) * 2 + 1 = 11 for sigma = 1.5.
SSIM_KERNEL_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

#: volumes per chunk in the NumPy wrappers (bounds memory: 5 x chunk x D x H x W float64 while filtering)
_CHUNK = 16


# --------------------------------------------------------------------------------------------------- layout
def from_nifti_layout(arr: np.ndarray) -> np.ndarray:
    """Convert a NIfTI-ordered array to the slices-first layout of the model and the metrics.

    Parameters
    ----------
    arr : ndarray, shape (X, Y, Z) or (X, Y, Z, T)
        A volume or a 4-D series as stored in NIfTI.

    Returns
    -------
    out : ndarray, shape (Z, X, Y) or (T, Z, X, Y)
        A view (no copy).
    """
    arr = np.asarray(arr)
    if arr.ndim == 3:
        return arr.transpose(2, 0, 1)
    if arr.ndim == 4:
        return arr.transpose(3, 2, 0, 1)
    raise ValueError(f"expected a 3-D or 4-D NIfTI array, got shape {arr.shape}")


# --------------------------------------------------------------------------------------------------- torch core
def gaussian_window(
    kernel_size: int = SSIM_KERNEL_SIZE, sigma: float = SSIM_SIGMA, *, dtype=None, device=None
) -> torch.Tensor:
    """Normalised 2-D Gaussian window (outer product of two normalised 1-D Gaussians), shape ``[k, k]``."""
    import torch

    g = gaussian_kernel_1d(kernel_size, sigma, dtype=torch.float64)
    win = torch.outer(g, g)  # [k, k]
    return win.to(dtype=dtype or torch.float32, device=device)


def gaussian_kernel_1d(kernel_size: int = SSIM_KERNEL_SIZE, sigma: float = SSIM_SIGMA, *, dtype=None,
                       device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian, shape ``[k]``; the SSIM window is its outer product with itself."""
    import torch

    half = (kernel_size - 1) / 2.0
    dist = torch.arange(-half, half + 1.0, 1.0, dtype=torch.float64)  # [k]
    g = torch.exp(-((dist / sigma) ** 2) / 2.0)
    return (g / g.sum()).to(dtype=dtype or torch.float32, device=device)


def _band(g: torch.Tensor, n: int) -> torch.Tensor:
    """``[n, n + k - 1]`` matrix whose row ``i`` holds the 1-D kernel ``g`` at columns ``i .. i + k - 1``."""
    import torch

    k = g.shape[0]
    band = torch.zeros(n, n + k - 1, dtype=g.dtype, device=g.device)
    rows = torch.arange(n, device=g.device)[:, None]
    band[rows, rows + torch.arange(k, device=g.device)] = g
    return band


def ssim_map(
    preds: torch.Tensor,
    target: torch.Tensor,
    *,
    data_range: float = 1.0,
    kernel_size: int = SSIM_KERNEL_SIZE,
    sigma: float = SSIM_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
    crop_border: bool = False,
) -> torch.Tensor:
    """SSIM map of 2-D multi-channel images (torchmetrics >= 1.4.3 semantics), differentiable.

    Parameters
    ----------
    preds, target : Tensor, shape (B, C, H, W)
        Channels (the slices of a volume) are filtered separately.
    data_range : float
        Dynamic range ``L`` in ``C1 = (K1 L)**2``, ``C2 = (K2 L)**2``; 1 for targets scaled to [0, 1].
    crop_border : bool
        Drop a border of ``(kernel_size - 1) // 2`` pixels from the map (torchmetrics < 1.4.3, skimage).

    Returns
    -------
    Tensor, shape (B, C, H, W), or (B, C, H - 2 p, W - 2 p) with ``crop_border``.
    """
    import torch
    import torch.nn.functional as F

    if preds.shape != target.shape:
        raise ValueError(f"preds and target must have the same shape, got {tuple(preds.shape)} "
                         f"and {tuple(target.shape)}")
    if preds.ndim != 4:
        raise ValueError(f"expected [B, C, H, W] tensors, got shape {tuple(preds.shape)}")
    if not torch.is_floating_point(preds):
        preds = preds.float()
    target = target.to(preds.dtype)
    b, c, h, w = preds.shape
    pad = (kernel_size - 1) // 2
    if h <= pad or w <= pad:
        raise ValueError(f"images of {h} x {w} pixels are too small for an SSIM window of {kernel_size}")
    g = gaussian_kernel_1d(kernel_size, sigma, dtype=preds.dtype, device=preds.device)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2

    # [5B, C, H + 2p, W + 2p]: the five local moments, every slice filtered on its own by the 2-D Gaussian
    # window. The window is separable, so the "valid" filtering is two banded matrix products,
    # out = G_H @ X @ G_W^T with G_n[i, i:i + k] = g: identical up to rounding to the k x k grouped convolution
    # and an order of magnitude faster on a CPU (BLAS, also in float64).
    stack = torch.cat([preds, target, preds * preds, target * target, preds * target], dim=0)
    stack = F.pad(stack, (pad, pad, pad, pad), mode="reflect")
    out = _band(g, h) @ stack @ _band(g, w).T  # [5B, C, H, W]
    mu_p, mu_t, e_pp, e_tt, e_pt = out.split(b, dim=0)
    mu_pp, mu_tt, mu_pt = mu_p * mu_p, mu_t * mu_t, mu_p * mu_t
    var_p = torch.clamp(e_pp - mu_pp, min=0.0)
    var_t = torch.clamp(e_tt - mu_tt, min=0.0)
    cov = e_pt - mu_pt
    smap = ((2 * mu_pt + c1) * (2 * cov + c2)) / ((mu_pp + mu_tt + c1) * (var_p + var_t + c2))
    if crop_border:
        smap = smap[..., pad:-pad, pad:-pad]
    return smap


def ssim_per_sample(preds: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """SSIM of each sample (mean of :func:`ssim_map` over channels and pixels), shape ``[B]``, differentiable.

    ``kwargs`` are those of :func:`ssim_map`. The mean over the batch is torchmetrics' ``elementwise_mean``.
    """
    return ssim_map(preds, target, **kwargs).flatten(1).mean(dim=1)


def psnr_per_sample(preds: torch.Tensor, target: torch.Tensor, *, data_range: float | None = None) -> torch.Tensor:
    """PSNR of each sample over its whole volume in dB, shape ``[B]``.

    Parameters
    ----------
    preds, target : Tensor, shape (B, ...)
    data_range : float or None
        ``None`` (published): ``max(target.max(), 0) - min(target.min(), 0)`` per sample.

    Notes
    -----
    A perfect prediction (MSE 0) gives ``inf``.
    """
    import torch

    b = preds.shape[0]
    p = preds.reshape(b, -1).to(torch.float64)
    t = target.reshape(b, -1).to(torch.float64)
    mse = ((p - t) ** 2).mean(dim=1)  # [B]
    if data_range is None:
        rng = torch.clamp(t.max(dim=1).values, min=0.0) - torch.clamp(t.min(dim=1).values, max=0.0)
    else:
        rng = torch.full_like(mse, float(data_range))
    return 10.0 * torch.log10(rng**2 / mse)


# --------------------------------------------------------------------------------------------------- numpy wrappers
def _as_batch(a, name: str) -> np.ndarray:
    arr = np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"{name} must be [D, H, W] or [N, D, H, W] (slices first; NIfTI arrays: use "
                         f"from_nifti_layout), got shape {arr.shape}")
    return arr


def _reduce(values: np.ndarray, reduction: str):
    if reduction == "mean":
        return float(np.mean(values))
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def ssim(pred, target, *, data_range: float = 1.0, crop_border: bool = False, reduction: str = "mean"):
    """Published SSIM of volumes given as NumPy arrays or tensors (computed in float64).

    Parameters
    ----------
    pred, target : array, shape (D, H, W) or (N, D, H, W)
        Slices first (model layout).
    data_range : float
        1 for targets scaled to [0, 1] (the published setting).
    crop_border : bool
        The pre-1.4.3 torchmetrics definition (5-pixel border of the SSIM map discarded).
    reduction : {'mean', 'none'}
        ``'mean'``: one float, the mean over volumes; ``'none'``: ``ndarray [N]``, one SSIM per volume.
    """
    import torch

    p = _as_batch(pred, "pred")
    t = _as_batch(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
    vals = []
    with torch.no_grad():
        for i in range(0, p.shape[0], _CHUNK):
            pt = torch.as_tensor(np.ascontiguousarray(p[i:i + _CHUNK]), dtype=torch.float64)
            tt = torch.as_tensor(np.ascontiguousarray(t[i:i + _CHUNK]), dtype=torch.float64)
            vals.append(ssim_per_sample(pt, tt, data_range=data_range, crop_border=crop_border).numpy())
    return _reduce(np.concatenate(vals), reduction)


def psnr(pred, target, *, data_range: float | None = None, reduction: str = "mean"):
    """Published PSNR (dB) of volumes given as NumPy arrays or tensors, one value per volume then averaged.

    Parameters
    ----------
    pred, target : array, shape (D, H, W) or (N, D, H, W)
    data_range : float or None
        ``None``: the published rule ``max(t.max(), 0) - min(t.min(), 0)`` per volume.
    reduction : {'mean', 'none'}
    """
    p = _as_batch(pred, "pred").astype(np.float64, copy=False)
    t = _as_batch(target, "target").astype(np.float64, copy=False)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
    n = p.shape[0]
    p2 = p.reshape(n, -1)
    t2 = t.reshape(n, -1)
    mse = ((p2 - t2) ** 2).mean(axis=1)
    if data_range is None:
        rng = np.maximum(t2.max(axis=1), 0.0) - np.minimum(t2.min(axis=1), 0.0)
    else:
        rng = np.full(n, float(data_range))
    with np.errstate(divide="ignore"):
        vals = 10.0 * np.log10(rng**2 / mse)
    return _reduce(vals, reduction)


def dynamic_correlation_map(pred, target, mask=None, *, time_axis: int = 0) -> np.ndarray:
    """Per-voxel Pearson correlation of predicted and measured time courses.

    Parameters
    ----------
    pred, target : array, time along ``time_axis``
        E.g. ``[T, D, H, W]`` (model layout, the default ``time_axis=0``) or ``[X, Y, Z, T]`` with
        ``time_axis=-1``.
    mask : array of bool, optional
        Spatial shape (the shape without the time axis); voxels outside are NaN in the result.

    Returns
    -------
    r : ndarray, float64, the spatial shape
        NaN outside the mask and where the measured time course is constant (r undefined); 0 where only the
        prediction is constant (it carries no dynamic information).
    """
    p = np.moveaxis(np.asarray(pred, dtype=np.float64), time_axis, 0)
    t = np.moveaxis(np.asarray(target, dtype=np.float64), time_axis, 0)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
    if p.shape[0] < 2:
        raise ValueError("dynamic correlation needs at least 2 time points")
    acc = DynamicCorrelationAccumulator(p.shape[1:])
    acc.update(p, t)
    return acc.correlation_map(mask)


def dynamic_correlation(pred, target, mask=None, *, time_axis: int = 0) -> float:
    """Mean over voxels of :func:`dynamic_correlation_map` (voxels with an undefined r are skipped).

    Parameters
    ----------
    pred, target : array, time along ``time_axis`` (default 0: ``[T, D, H, W]``)
    mask : array of bool, optional
        Spatial brain mask (e.g. ``*_desc-brain_mask.nii.gz`` transposed to the same layout).

    Returns
    -------
    float
        NaN when no voxel has a defined correlation.
    """
    r = dynamic_correlation_map(pred, target, mask, time_axis=time_axis)
    return _nanmean(r)


def _nanmean(r: np.ndarray) -> float:
    finite = np.isfinite(r)
    return float(r[finite].mean()) if finite.any() else math.nan


class DynamicCorrelationAccumulator:
    """Streaming per-voxel Pearson correlation over time (time points arrive in batches).

    Keeps five float64 sums per voxel (shifted by the first time point for numerical stability), so an
    evaluation never has to hold a whole run of predictions in memory.

    Parameters
    ----------
    spatial_shape : tuple of int
        Shape of one volume, e.g. ``(D, H, W)``.

    Examples
    --------
    >>> acc = DynamicCorrelationAccumulator((2, 4, 4))
    >>> acc.update(pred_batch, target_batch)  # doctest: +SKIP  (each [n, 2, 4, 4])
    >>> acc.mean()                            # doctest: +SKIP
    """

    def __init__(self, spatial_shape):
        self.spatial_shape = tuple(int(s) for s in spatial_shape)
        self.n = 0
        self._shift_p = None
        self._shift_t = None
        z = np.zeros(self.spatial_shape, dtype=np.float64)
        self._sp, self._st, self._spp, self._stt, self._spt = (z.copy() for _ in range(5))

    def update(self, pred, target) -> None:
        """Add time points; ``pred`` and ``target`` are ``[n, *spatial_shape]``."""
        p = np.asarray(pred, dtype=np.float64)
        t = np.asarray(target, dtype=np.float64)
        if p.shape != t.shape or p.shape[1:] != self.spatial_shape:
            raise ValueError(f"expected [n, {', '.join(map(str, self.spatial_shape))}] arrays, "
                             f"got {p.shape} and {t.shape}")
        if p.shape[0] == 0:
            return
        if self._shift_p is None:
            self._shift_p = p[0].copy()
            self._shift_t = t[0].copy()
        p = p - self._shift_p
        t = t - self._shift_t
        self._sp += p.sum(0)
        self._st += t.sum(0)
        self._spp += (p * p).sum(0)
        self._stt += (t * t).sum(0)
        self._spt += (p * t).sum(0)
        self.n += p.shape[0]

    def correlation_map(self, mask=None) -> np.ndarray:
        """Per-voxel r (see :func:`dynamic_correlation_map` for NaN/0 conventions)."""
        n = self.n
        if n < 2:
            raise ValueError("dynamic correlation needs at least 2 time points")
        cov = self._spt - self._sp * self._st / n
        var_p = self._spp - self._sp**2 / n
        var_t = self._stt - self._st**2 / n
        # relative tolerance: variance below ~1e-12 of the squared level counts as a constant time course
        scale_t = np.maximum(self._stt / n + 1e-300, 1e-300)
        scale_p = np.maximum(self._spp / n + 1e-300, 1e-300)
        const_t = var_t <= 1e-12 * n * scale_t + 1e-300
        const_p = var_p <= 1e-12 * n * scale_p + 1e-300
        with np.errstate(invalid="ignore", divide="ignore"):
            r = cov / np.sqrt(var_p * var_t)
        r = np.clip(r, -1.0, 1.0)
        r[const_p] = 0.0
        r[const_t] = np.nan
        if mask is not None:
            m = np.asarray(mask).astype(bool)
            if m.shape != self.spatial_shape:
                raise ValueError(f"mask shape {m.shape} does not match the volume shape {self.spatial_shape}")
            r[~m] = np.nan
        return r

    def mean(self, mask=None) -> float:
        """Mean r over voxels with a defined correlation."""
        return _nanmean(self.correlation_map(mask))


# --------------------------------------------------------------------------------------------------- one run
class RunMetrics:
    """The scores of one run, fed its volumes in batches: per-volume SSIM and PSNR, and the dynamic correlation.

    The one definition of a run's scores, used by the training loop's evaluation (batches of model output), the
    group level and the napari widget (:func:`run_metrics`, a whole run at once) and the simulator's noise ceiling.

    Parameters
    ----------
    spatial_shape : tuple of int
        Shape of one volume, ``(D, H, W)`` (slices first).
    ssim_dtype : numpy dtype, optional
        Precision of the SSIM of NumPy inputs: float64 by default (:func:`ssim`), or e.g. ``np.float32`` (about
        30x faster on the CPU; differences below 1e-5). Tensors are scored in their own precision.

    Notes
    -----
    Tensors (the training loop) are scored with :func:`ssim_per_sample` and :func:`psnr_per_sample`, arrays with
    :func:`ssim` and :func:`psnr`; the dynamic correlation streams through a :class:`DynamicCorrelationAccumulator`.
    """

    def __init__(self, spatial_shape, *, ssim_dtype=None):
        self.spatial_shape = tuple(int(s) for s in spatial_shape)
        self.ssim_dtype = ssim_dtype
        self._ssim: list[np.ndarray] = []
        self._psnr: list[np.ndarray] = []
        self._acc = DynamicCorrelationAccumulator(self.spatial_shape)

    @property
    def n(self) -> int:
        """Volumes scored so far."""
        return self._acc.n

    def update(self, pred, target):
        """Score a batch of volumes ``[n, D, H, W]`` (arrays or tensors); returns its per-volume SSIM.

        Returns
        -------
        ndarray or Tensor, shape (n,)
            The SSIM of each volume, a tensor for tensor inputs (e.g. for a loss).
        """
        if hasattr(pred, "detach"):
            ps = ssim_per_sample(pred, target)
            self._ssim.append(ps.detach().cpu().numpy())
            self._psnr.append(psnr_per_sample(pred, target).detach().cpu().numpy())
            self._acc.update(pred.detach().cpu().numpy(), target.detach().cpu().numpy())
            return ps
        if self.ssim_dtype is None:
            ps = np.asarray(ssim(pred, target, reduction="none"))
        else:
            import torch

            with torch.no_grad():
                ps = ssim_per_sample(torch.from_numpy(np.asarray(pred).astype(self.ssim_dtype)),
                                     torch.from_numpy(np.asarray(target).astype(self.ssim_dtype)),
                                     data_range=1.0).numpy().astype(np.float64)  # averaged in float64
        self._ssim.append(ps)
        self._psnr.append(np.asarray(psnr(pred, target, reduction="none")))
        self._acc.update(pred, target)
        return ps

    @property
    def ssim_values(self) -> np.ndarray:
        """SSIM of every volume scored, in order."""
        return np.concatenate(self._ssim) if self._ssim else np.zeros(0)

    @property
    def psnr_values(self) -> np.ndarray:
        """PSNR (dB) of every volume scored, in order."""
        return np.concatenate(self._psnr) if self._psnr else np.zeros(0)

    def dynamic_correlation(self, mask=None) -> float:
        """Mean over (masked) voxels of the time-course correlation; NaN with fewer than 2 volumes."""
        return self._acc.mean(mask) if self.n >= 2 else math.nan

    def correlation_map(self, mask=None) -> np.ndarray:
        """The time-course correlation per voxel ``(D, H, W)`` (NaN outside ``mask``; all NaN below 2 volumes)."""
        if self.n < 2:
            return np.full(self.spatial_shape, np.nan)
        return self._acc.correlation_map(mask)

    def result(self, mask=None) -> dict[str, Any]:
        """``n_volumes``, ``ssim`` and ``psnr`` (means over volumes) and ``dynamic_correlation``."""
        return {"n_volumes": int(self.n), "ssim": float(np.mean(self.ssim_values)),
                "psnr": float(np.mean(self.psnr_values)), "dynamic_correlation": float(self.dynamic_correlation(mask))}


def run_metrics(pred, target, mask=None, *, per_volume: bool = False) -> dict[str, Any]:
    """The scores of one whole run (:class:`RunMetrics`): predicted and measured volumes ``[N, D, H, W]``.

    Parameters
    ----------
    pred, target : array, shape (N, D, H, W)
        Slices first (NIfTI arrays: :func:`from_nifti_layout`); volume ``i`` of both is the same time point.
    mask : array of bool, shape (D, H, W), optional
        Brain mask of the dynamic correlation (and the spatial correlation).
    per_volume : bool
        Also return ``ssim_per_volume``, ``psnr_per_volume``, ``spatial_correlation`` (per volume, the Pearson
        r of predicted and measured voxel values inside ``mask``) and ``correlation_map`` (``(D, H, W)``).

    Returns
    -------
    dict
        ``n_volumes``, ``ssim``, ``psnr`` (means over volumes) and ``dynamic_correlation`` (NaN for one volume).
    """
    p = _as_batch(pred, "pred")
    t = _as_batch(target, "target")
    scores = RunMetrics(p.shape[1:])
    scores.update(p, t)
    out = scores.result(mask)
    if per_volume:
        m = np.ones(p.shape[1:], bool) if mask is None else np.asarray(mask).astype(bool)
        out.update(ssim_per_volume=scores.ssim_values, psnr_per_volume=scores.psnr_values,
                   # the same Pearson correlation, taken across the brain voxels of each volume ([V, N], axis 0)
                   spatial_correlation=dynamic_correlation_map(p[:, m].T, t[:, m].T),
                   correlation_map=scores.correlation_map(mask))
    return out
