"""Apply a trained checkpoint to spectrogram windows (used by the BIDS-App, the napari plugin and ``train``).

>>> ckpt = load_checkpoint("model/model.ckpt")                               # doctest: +SKIP
>>> check_compatible(ckpt, channels=names, frequencies=freqs, grid=(64, 64, 30))  # doctest: +SKIP
>>> vols = predict_windows(ckpt, x)   # x [n, 20, C, F] unscaled spectrogram windows -> [n, D, 64, 64]  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..utils import resolve_device
from .checkpoint import Checkpoint, check_compatible, load_checkpoint

__all__ = ["predict_windows", "windows_from_spectrogram", "load_checkpoint", "check_compatible"]

_MODEL_CACHE: dict[tuple[str, str], Any] = {}


def _model_for(ckpt: Checkpoint, device):
    key = (ckpt.sha256, str(device))
    model = _MODEL_CACHE.get(key)
    if model is None:
        model = ckpt.build_model().to(device)
        _MODEL_CACHE.clear()  # keep one model in memory
        _MODEL_CACHE[key] = model
    return model


def predict_windows(ckpt: Checkpoint | Mapping | str | os.PathLike, x, *, device: str = "auto", batch_size: int = 8,
                    progress: bool | Callable[[int, int], None] = True,
                    scan_backend: str | None = None) -> np.ndarray:
    """Predict one volume per group of spectrogram windows.

    Parameters
    ----------
    ckpt : Checkpoint, dict or path
        A checkpoint from :func:`load_checkpoint` (or its path).
    x : array, shape (n, n_windows, n_channels, n_freqs) or (n_windows, n_channels, n_freqs)
        **Unscaled** spectrogram rows as stored in ``*_desc-stft_spectrogram.h5`` (e.g.
        ``spectrogram[pairs/windows]``); the checkpoint's input scaling is applied here.
    device : {'auto', 'cpu', 'cuda'}
    batch_size : int
    progress : bool or callable
        Show a tqdm progress bar, or call ``progress(done, total)`` (in predicted volumes) after every batch
        (a GUI's progress bar; the callable may raise to cancel between batches).
    scan_backend : str, optional
        Selective-scan backend of the model's SS2D layers (``"reference"``, ``"chunked"``, ``"mamba_ssm"``);
        default: chosen automatically from the device (see :mod:`spec2vol_bids.model.scan`).

    Returns
    -------
    ndarray, float32, shape (n, n_slices, X, Y)
        Slices first; ``pred[i].transpose(1, 2, 0)`` is a NIfTI volume ``[X, Y, Z]``.

    Raises
    ------
    DataError
        ``x`` does not have the shape the model was trained on.
    """
    import torch

    from .scaling import apply_scaling

    if not isinstance(ckpt, Checkpoint):
        ckpt = load_checkpoint(ckpt) if isinstance(ckpt, (str, os.PathLike, Path)) else Checkpoint(ckpt)
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    kw = ckpt["model"]["kwargs"]
    want = (kw.get("n_windows"), kw.get("n_electrodes"), kw.get("n_freqs"))
    if arr.ndim != 4 or (None not in want and tuple(arr.shape[1:]) != tuple(want)):
        raise DataError(f"the model expects windows [n, {want[0]}, {want[1]}, {want[2]}] (windows, channels, "
                        f"frequencies), got {list(arr.shape)}",
                        hint="check the channel selection, the frequency range and the number of windows")
    if not np.isfinite(arr).all():
        raise DataError("the spectrogram windows contain NaN or infinite values",
                        hint="drop invalid windows (the 'valid' dataset of the spectrogram file)")
    dev = torch.device(resolve_device(device))
    model = _model_for(ckpt, dev)
    if hasattr(model, "set_scan_backend"):
        model.set_scan_backend(scan_backend)
    report = progress if callable(progress) else None
    n = arr.shape[0]
    out = []
    with torch.no_grad():
        starts = range(0, n, int(batch_size))
        if progress is True:  # tqdm only for a bar (the real-time path and the benchmarks run without it)
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="predict", unit="batch")
        for s in starts:
            xb = torch.from_numpy(apply_scaling(arr[s:s + batch_size], ckpt.get("scaling")).astype(np.float32))
            out.append(model(xb.to(dev)).float().cpu().numpy())  # [b, D, X, Y]
            if report is not None:
                report(min(s + int(batch_size), n), n)
    if not out:
        d = kw.get("n_slices", 0)
        g = kw.get("grid", 64)
        return np.zeros((0, d, g, g), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def windows_from_spectrogram(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read a ``*_desc-stft_spectrogram.h5`` and return ``(x, targets, info)``.

    ``x`` is ``[n_pairs, n_windows, C, F]`` (unscaled), ``targets`` the target volume index of each pair, ``info``
    holds ``channels``, ``frequencies`` and ``n_volumes`` (for :func:`check_compatible`).
    """
    from ..io.spectrogram import load_spectrogram

    spec = load_spectrogram(path)
    info = {"channels": spec.channels, "frequencies": spec.frequencies, "n_volumes": spec.n_volumes}
    return spec.windows(), np.asarray(spec.pair_targets, dtype=np.int64), info
