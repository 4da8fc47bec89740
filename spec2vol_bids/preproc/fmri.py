"""BOLD -> model targets: grid choice, DCT resize with a consistent affine, brain mask, per-volume scaling.

Pure NumPy/SciPy: arrays in, arrays out; no file I/O, no nibabel images, no nipype.

Default (official) path for a native ``[X, Y, Z, T]`` run::

    shape = target_shape(native_shape[:3], cfg)          # (64, 64, D)
    vols  = dct_resize(vol, shape) for each volume       # low-pass resampling, same field of view
    data  = scale_volumes(vols, "minmax")                # each volume to [0, 1] over all voxels
    aff   = resized_affine(native_affine, native_shape[:3], shape)

:func:`bold_target` does all of this in one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import option_name
from ..errors import DataError, UsageError

__all__ = [
    "OFFICIAL_N_SLICES",
    "target_shape",
    "dct_resize",
    "resized_affine",
    "brain_mask",
    "nearest_resize_mask",
    "scale_volumes",
    "BoldTarget",
    "bold_target",
]

#: axial slices used when the native grid must be resized and ``n_slices`` is unset (CN-EPFL convention)
OFFICIAL_N_SLICES = 30
#: volumes read from the input at a time by :func:`bold_target`
VOLUME_CHUNK = 16


def target_shape(native_shape, cfg) -> tuple[int, int, int]:
    """Model grid ``(X, Y, Z)`` for a native volume shape under a :class:`~spec2vol_bids.config.BOLDConfig`.

    In-plane is ``cfg.grid x cfg.grid``. Depth is ``cfg.n_slices`` when set; otherwise the native depth if the
    native in-plane grid already is ``grid x grid``, else 30. With ``cfg.resize == "none"`` the native shape is
    returned and must already be ``grid x grid`` in-plane (and have ``n_slices`` slices if that is set).
    """
    shape = tuple(int(s) for s in native_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise DataError(f"a BOLD volume must be 3-D, got shape {shape}", hint="Pass one volume [X, Y, Z].")
    inplane_ok = shape[:2] == (cfg.grid, cfg.grid)
    depth = cfg.n_slices if cfg.n_slices is not None else (shape[2] if inplane_ok else OFFICIAL_N_SLICES)
    if cfg.resize == "none":
        if not inplane_ok or depth != shape[2]:
            raise DataError(
                f"the BOLD grid {shape} is not the model grid ({cfg.grid}, {cfg.grid}, {depth}) and "
                f"{option_name('bold.resize')} is \"none\"",
                hint='Use --bold-resize dct (bold.resize = "dct") to resample it.')
        return shape
    return cfg.grid, cfg.grid, int(depth)


def dct_resize(vol, shape, *, preserve_intensity: bool = True) -> np.ndarray:
    """Resample a volume by truncating (or zero-padding) its orthonormal DCT-II.

    Keeps the low-frequency corner ``[:X', :Y', :Z']`` of ``scipy.fft.dctn(vol, norm="ortho")`` and applies
    the inverse transform on the new shape (the official CN-EPFL downsampling). Sample ``j`` of an axis of
    new length ``m`` lies at native voxel coordinate ``(j + 0.5) * n / m - 0.5``: the field of view is
    unchanged (see :func:`resized_affine`). A volume band-limited to the kept coefficients is resampled exactly.

    Parameters
    ----------
    vol : array-like, shape (X, Y, Z)
    shape : tuple of 3 int
        New shape; each axis may shrink (truncation) or grow (zero padding).
    preserve_intensity : bool
        Multiply by ``sqrt(prod(shape) / prod(vol.shape))`` so the mean intensity is unchanged (the official
        code omits this factor; it cancels in any per-volume scaling).

    Returns
    -------
    ndarray of float64, shape ``shape``
    """
    from scipy.fft import dctn, idctn

    x = np.asarray(vol, dtype=np.float64)
    shape = tuple(int(s) for s in shape)
    if x.ndim != 3 or len(shape) != 3 or min(shape) < 1:
        raise UsageError(f"dct_resize needs a 3-D volume and a 3-D shape, got {x.shape} -> {shape}")
    if x.shape == shape:
        return x.copy()
    coef = dctn(x, type=2, norm="ortho")  # [X, Y, Z]
    kept = np.zeros(shape, dtype=np.float64)
    sl = tuple(slice(0, min(a, b)) for a, b in zip(x.shape, shape))
    kept[sl] = coef[sl]
    out = idctn(kept, type=2, norm="ortho")  # [X', Y', Z']
    if preserve_intensity:
        out *= np.sqrt(np.prod(shape, dtype=float) / np.prod(x.shape, dtype=float))
    return out


def resized_affine(affine, native_shape, new_shape) -> np.ndarray:
    """Voxel-to-world affine of a grid of ``new_shape`` covering the same field of view as the native grid.

    Along each voxel axis the voxel size is multiplied by ``native / new`` and the origin moves so that the
    outer voxel edges (``-0.5`` and ``n - 0.5`` in native voxel coordinates) stay where they were; orientation
    and shears are unchanged. New voxel ``j`` is centred at native voxel coordinate ``(j + 0.5) n / m - 0.5``.

    Parameters
    ----------
    affine : array-like, shape (4, 4)
    native_shape, new_shape : tuple of 3 int

    Returns
    -------
    ndarray of float64, shape (4, 4)
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise UsageError(f"affine must be 4 x 4, got {a.shape}")
    n = np.asarray(native_shape[:3], dtype=np.float64)
    m = np.asarray(new_shape[:3], dtype=np.float64)
    scale = n / m
    vox = np.eye(4)  # new voxel coords -> native voxel coords
    vox[:3, :3] = np.diag(scale)
    vox[:3, 3] = (scale - 1.0) / 2.0
    return a @ vox


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1-D sample (maximises the between-class variance of the histogram)."""
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(float)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mu1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[int(np.argmax(between[:-1]))])


def brain_mask(data) -> np.ndarray:
    """Brain (head) mask of a BOLD run or volume, from its mean image.

    The mean over time (for 4-D input) is thresholded at Otsu's level, holes are filled slice-wise and in
    3-D, a one-voxel opening removes speckle, and the largest connected component is kept. Robust for EPI,
    where the background is dark.

    Parameters
    ----------
    data : array-like, shape (X, Y, Z) or (X, Y, Z, T)

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
    """
    from scipy import ndimage

    x = np.asarray(data)
    x = x.mean(axis=3, dtype=np.float64) if x.ndim == 4 else x.astype(np.float64)  # [X, Y, Z]
    if x.ndim != 3:
        raise UsageError(f"brain_mask needs [X, Y, Z] or [X, Y, Z, T] data, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError("the BOLD data contain NaN or infinite values", hint="Check the BOLD file.")
    if np.ptp(x) == 0:
        return np.ones(x.shape, dtype=bool)
    mask = x > _otsu(x.ravel())
    opened = ndimage.binary_opening(mask, structure=ndimage.generate_binary_structure(3, 1))
    if opened.any():
        mask = opened
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
        mask = labels == (int(np.argmax(sizes)) + 1)
    for z in range(mask.shape[2]):
        mask[:, :, z] = ndimage.binary_fill_holes(mask[:, :, z])
    return ndimage.binary_fill_holes(mask)


def scale_volumes(data, method: str, mask=None, *, out: np.ndarray | None = None) -> np.ndarray:
    """Per-volume intensity scaling of ``data[X, Y, Z, T]`` (or one volume ``[X, Y, Z]``); returns float32.

    Parameters
    ----------
    data : array-like, shape (X, Y, Z, T) or (X, Y, Z)
    method : {"minmax", "minmax-mask", "zscore"}
        ``"minmax"`` (official): ``(v - min v) / (max v - min v)`` over all voxels of each volume.
        ``"minmax-mask"``: min and max over the mask's voxels, applied to the mask, 0 outside.
        ``"zscore"``: ``(v - mean) / std`` over the mask's voxels (all voxels if there is no mask), 0 outside.
        A constant volume (zero range or deviation) becomes all zeros.
    mask : array-like of bool, shape (X, Y, Z), optional
        Brain mask; for the masked methods it defaults to :func:`brain_mask` of ``data``.
    out : ndarray of float32, shape like ``data`` (4-D), optional
        Where to write the result; may be ``data`` itself (in-place scaling, no second copy of the run).
    """
    x = np.asarray(data)
    squeeze = x.ndim == 3
    if squeeze:
        x = x[..., None]
    if x.ndim != 4:
        raise UsageError(f"scale_volumes needs [X, Y, Z, T] data, got shape {x.shape}")
    if method not in ("minmax", "minmax-mask", "zscore"):
        raise UsageError(f"unknown BOLD scaling {method!r}", hint="Use minmax, minmax-mask or zscore.")
    if method == "minmax":
        m = np.ones(x.shape[:3], dtype=bool)
    elif mask is None:
        m = brain_mask(x) if method == "minmax-mask" else np.ones(x.shape[:3], dtype=bool)
    else:
        m = np.asarray(mask, dtype=bool)
        if m.shape != x.shape[:3]:
            raise DataError(f"mask shape {m.shape} differs from the volume shape {x.shape[:3]}",
                            hint="Compute the mask on the same grid as the data.")
    if not m.any():
        raise DataError("the brain mask is empty",
                        hint="Check the mask or use --bold-scaling minmax (bold.scaling = \"minmax\").")
    if out is None:
        out = np.zeros(x.shape, dtype=np.float32)  # [X, Y, Z, T]
    elif out.shape != x.shape or out.dtype != np.float32:
        raise UsageError(f"out must be a float32 array of shape {x.shape}, got {out.dtype} {out.shape}")
    for t in range(x.shape[3]):  # one volume at a time: no full-size float64 temporaries
        v = np.asarray(x[..., t], dtype=np.float64)  # [X, Y, Z]
        inside = v[m]
        if method == "zscore":
            off, den = inside.mean(), inside.std()
        else:
            off, den = inside.min(), inside.max() - inside.min()
        if den > 0:
            scaled = (v - off) / den
            if method != "minmax":
                scaled[~m] = 0.0
            out[..., t] = scaled
        else:
            out[..., t] = 0.0
    return out[..., 0] if squeeze else out


@dataclass
class BoldTarget:
    """Result of :func:`bold_target`.

    Attributes
    ----------
    data : ndarray of float32, shape (X, Y, Z, T)
        Scaled volumes on the model grid.
    affine : ndarray of float64, shape (4, 4)
        Affine of the model grid (same field of view as the native one).
    mask : ndarray of uint8, shape (X, Y, Z)
        Brain mask on the model grid (from the resized, unscaled mean image).
    native_shape : tuple of int
        ``(X, Y, Z)`` of the native grid.
    native_affine : ndarray of float64, shape (4, 4)
    resized : bool
        Whether the DCT resize was applied.
    """

    data: np.ndarray
    affine: np.ndarray
    mask: np.ndarray
    native_shape: tuple[int, int, int]
    native_affine: np.ndarray
    resized: bool


def nearest_resize_mask(mask, shape) -> np.ndarray:
    """Resample a binary mask ``[X, Y, Z]`` onto a grid of ``shape`` with the same field of view (nearest voxel).

    The grids share their outer voxel edges, as :func:`dct_resize` and :func:`resized_affine` do: voxel ``i`` of
    an ``M``-voxel axis takes native voxel ``floor((i + 0.5) * N / M)`` of the ``N``-voxel axis.
    """
    m = np.asarray(mask) > 0
    if m.ndim != 3 or len(tuple(shape)) != 3:
        raise DataError(f"a mask must be 3-D, got shape {m.shape}", hint="Pass one volume [X, Y, Z].")
    index = [np.minimum(((np.arange(new) + 0.5) * old / new).astype(int), old - 1)
             for old, new in zip(m.shape, shape)]
    return m[np.ix_(*index)]


def bold_target(data, affine, cfg, *, mask=None, progress=None) -> BoldTarget:
    """Native BOLD run ``data[X, Y, Z, T]`` -> model targets on the configured grid (resize, mask, scaling).

    Parameters
    ----------
    data : array-like, shape (X, Y, Z, T)
        Native BOLD (a nibabel ``dataobj`` works; volumes are read one at a time).
    affine : array-like, shape (4, 4)
    cfg : BOLDConfig
    mask : array-like, shape (X, Y, Z), optional
        A brain mask on the native grid (e.g. fMRIPrep's ``desc-brain_mask``), resampled to the model grid with
        :func:`nearest_resize_mask`. Default: :func:`brain_mask` of the resized series.
    progress : bool or callable, optional
        ``True`` shows a tqdm bar over volumes; a callable is called as ``progress(done, total)``.
    """
    shape4 = tuple(int(s) for s in data.shape)
    if len(shape4) != 4:
        raise DataError(f"the BOLD run must be 4-D [X, Y, Z, T], got shape {shape4}",
                        hint="Pass a 4-D BOLD series.")
    native = shape4[:3]
    shape = target_shape(native, cfg)
    resize = shape != native
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != native:
            raise DataError(f"the brain mask's shape {mask.shape} differs from the BOLD grid {native}",
                            hint="Use a mask on the same grid as the BOLD series.")
        mask = nearest_resize_mask(mask, shape)
        if not mask.any():
            raise DataError("the brain mask is empty", hint="Check the mask file.")
    out = np.empty((*shape, shape4[3]), dtype=np.float32)  # [X', Y', Z', T]
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=shape4[3], desc="BOLD targets", unit="volume", leave=False)
    try:
        chunk, t0 = None, 0
        for t in range(shape4[3]):
            if chunk is None or t >= t0 + chunk.shape[3]:
                # a few volumes at a time: cache-friendly for C-ordered arrays, bounded for lazy proxies
                t0 = t
                chunk = np.asarray(data[..., t0:t0 + VOLUME_CHUNK])  # [X, Y, Z, <=VOLUME_CHUNK]
            vol = np.asarray(chunk[..., t - t0], dtype=np.float64)
            if not np.all(np.isfinite(vol)):
                raise DataError(f"BOLD volume {t} contains NaN or infinite values", hint="Check the BOLD file.")
            out[..., t] = dct_resize(vol, shape) if resize else vol
            if bar is not None:
                bar.update()
            elif callable(progress):
                progress(t + 1, shape4[3])
    finally:
        if bar is not None:
            bar.close()
    if mask is None:
        mask = brain_mask(out)
    scaled = scale_volumes(out, cfg.scaling, mask=mask, out=out)  # in place: one float32 copy of the run
    new_affine = resized_affine(affine, native, shape) if resize else np.asarray(affine, dtype=np.float64)
    return BoldTarget(data=scaled, affine=new_affine, mask=mask.astype(np.uint8), native_shape=native,
                      native_affine=np.asarray(affine, dtype=np.float64), resized=resize)
