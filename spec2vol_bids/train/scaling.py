"""EEG input scaling ``x' = (x - min) / (max - min)`` with statistics from the training subjects only.

``method='train-minmax'`` (default) reads the pair windows of the training subjects' runs only;
``'global-leaky'`` is the official code's min-max over train **and test** EEG (a leak, kept only to reproduce the
paper); ``'none'`` leaves the spectrogram as written. The statistics travel in every checkpoint (``scaling``), and
prediction applies them with :func:`apply_scaling`.

:func:`input_statistics` gives the mean and standard deviation per channel and frequency of the scaled training
windows, with which the global-read-out models standardise their input (:mod:`spec2vol_bids.model.variants`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError, UsageError
from .runs import RunSource

__all__ = ["SCALING_METHODS", "compute_scaling", "apply_scaling", "input_statistics"]

#: EEG input scaling: statistics from the training subjects only (default), the official leaky global min-max
#: over every subject including the test subjects, or no scaling.
SCALING_METHODS = ("train-minmax", "global-leaky", "none")


def compute_scaling(runs: Sequence[RunSource], method: str = "train-minmax", *,
                    train_subjects: Sequence[str] | None = None) -> dict[str, Any]:
    """EEG input scaling statistics ``x' = (x - min) / (max - min)``.

    Parameters
    ----------
    runs : list of runs
        Every run of the experiment.
    method : {'train-minmax', 'global-leaky', 'none'}
        ``'train-minmax'``: min and max over the pair windows of the runs of ``train_subjects`` only.
        ``'global-leaky'``: the official code's min-max over **every** run (test subjects included: a leak,
        kept only to reproduce the paper). ``'none'``: identity.
    train_subjects : list of str
        Required for ``'train-minmax'``.

    Returns
    -------
    dict
        ``method``, ``min``, ``max`` (floats) and ``subjects`` (the labels whose data were read).
    """
    if method not in SCALING_METHODS:
        raise UsageError(f"unknown normalization {method!r}", hint=f"choose one of {', '.join(SCALING_METHODS)}")
    if method == "none":
        return {"method": "none", "min": 0.0, "max": 1.0, "subjects": []}
    if method == "train-minmax":
        if not train_subjects:
            raise UsageError("train-minmax scaling needs the training subjects")
        keep = set(train_subjects)
        used = [r for r in runs if r.subject in keep]
    else:
        used = list(runs)
    if not used:
        raise DataError("no run belongs to the training subjects", hint="check --test-subjects/--val-subjects")
    lo, hi = np.inf, -np.inf
    for run in used:
        vals = run.input_values()
        lo = min(lo, float(np.min(vals)))
        hi = max(hi, float(np.max(vals)))
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise DataError("the EEG spectrograms contain NaN or infinite values",
                        hint="re-run the BIDS-App participant level")
    if hi <= lo:
        hi = lo + 1.0
    return {"method": method, "min": lo, "max": hi, "subjects": sorted({r.subject for r in used})}


def apply_scaling(x, scaling: dict | None):
    """Apply :func:`compute_scaling`'s statistics to an array or tensor (any shape)."""
    if not scaling or scaling.get("method", "none") == "none":
        return x
    lo, hi = float(scaling["min"]), float(scaling["max"])
    return (x - lo) / (hi - lo)


def input_statistics(runs: Sequence[RunSource], scaling: dict | None) -> dict[str, np.ndarray]:
    """Mean and standard deviation of the (scaled) input per channel and frequency over the window rows of ``runs``.

    Every spectrogram row used by a pair counts once (float64 sums). The trainer passes the training subjects' runs
    only; the global-read-out models standardise their input with these.

    Returns
    -------
    dict
        ``mean`` and ``std``, float32 ``[n_channels, n_freqs]``, and ``n_rows``.
    """
    total = squares = None
    n = 0
    for run in runs:
        vals = np.asarray(apply_scaling(run.input_values(), scaling), dtype=np.float64)  # [rows, C, F]
        if vals.ndim == 4:  # official h5: [pairs, windows, C, F]
            vals = vals.reshape(-1, *vals.shape[2:])
        total = vals.sum(0) if total is None else total + vals.sum(0)
        squares = (vals * vals).sum(0) if squares is None else squares + (vals * vals).sum(0)
        n += vals.shape[0]
    if not n:
        raise DataError("no training windows to compute the input statistics from")
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean * mean, 0.0))
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32), "n_rows": n}
