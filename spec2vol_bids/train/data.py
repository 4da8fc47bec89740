"""The training dataset: the pairs of some runs as ``(x, y)`` tensors, and the target statistics of a dataset.

A sample is ``x [n_windows, n_channels, n_freqs]`` (float32, scaled with :mod:`.scaling`) and ``y [D, X, Y]``
(float32), the model layout (a NIfTI volume ``vol[X, Y, Z]`` is ``vol.transpose(2, 0, 1)``). The runs come from
:mod:`.discovery` (:class:`~.runs.DerivativeRun` or :class:`~.runs.OfficialH5Run`).

This module is also where the data layer's public names are imported from::

    from spec2vol_bids.train.data import PairDataset, compute_scaling, discover_runs
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from ..io.derivatives import MASK, SPECTROGRAM, TARGET
from .discovery import check_consistent, discover_runs, load_official_h5
from .runs import DerivativeRun, OfficialH5Run, RunSource
from .scaling import SCALING_METHODS, apply_scaling, compute_scaling, input_statistics

__all__ = [
    "SPECTROGRAM_SUFFIX",
    "TARGET_SUFFIX",
    "MASK_SUFFIX",
    "SCALING_METHODS",
    "RunSource",
    "DerivativeRun",
    "OfficialH5Run",
    "discover_runs",
    "load_official_h5",
    "check_consistent",
    "compute_scaling",
    "apply_scaling",
    "PairDataset",
    "target_statistics",
    "input_statistics",
]

SPECTROGRAM_SUFFIX = SPECTROGRAM.name_suffix
TARGET_SUFFIX = TARGET.name_suffix
MASK_SUFFIX = MASK.name_suffix


class PairDataset:
    """A map-style torch dataset over the pairs of some runs.

    Parameters
    ----------
    runs : list of runs
        :class:`DerivativeRun` or :class:`OfficialH5Run`.
    scaling : dict or None
        From :func:`compute_scaling`; applied to every input.

    Items are ``(x, y)`` float32 tensors ``[n_windows, C, F]`` and ``[D, X, Y]``. ``index`` maps item ``i`` to
    ``(run_index, pair_index)``; :meth:`run_slices` gives the items of each run in time order (for the
    per-run dynamic correlation).
    """

    def __init__(self, runs: Sequence[RunSource], scaling: dict | None = None):
        self.runs = list(runs)
        self.scaling = scaling
        idx = [(ri, k) for ri, run in enumerate(self.runs) for k in range(run.n_pairs)]
        self.index = np.asarray(idx, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, i: int):
        import torch

        ri, k = self.index[int(i)]
        run = self.runs[int(ri)]
        x = apply_scaling(run.read_x(int(k)), self.scaling).astype(np.float32, copy=False)
        y = run.read_y(int(k))
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))

    def run_slices(self) -> list[tuple[int, range]]:
        """``(run_index, items)`` for each run, items in pair order."""
        out, start = [], 0
        for ri, run in enumerate(self.runs):
            out.append((ri, range(start, start + run.n_pairs)))
            start += run.n_pairs
        return out

    @property
    def subjects(self) -> list[str]:
        return sorted({r.subject for r in self.runs})

    @property
    def sample_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``((n_windows, C, F), (D, X, Y))``."""
        r = self.runs[0]
        n_freqs = r.frequencies.size if r.frequencies is not None else r.n_freqs
        x, y, z = r.grid_shape
        return (r.n_windows, len(r.channels), int(n_freqs)), (z, x, y)


def target_statistics(ds: PairDataset) -> dict[str, Any]:
    """Mean target volume of ``ds``, the mean volume of each of its runs, and the variance around the run means.

    One pass over the targets (float64 sums). Used by the trainer: the global-read-out models predict a deviation
    from ``mean_volume``, and the ``demeaned-mse`` loss compares deviations from ``run_means``.

    Returns
    -------
    dict
        ``mean_volume`` float32 ``[D, X, Y]`` (over every pair), ``run_means`` float32 ``[n_runs, D, X, Y]`` (over
        each run's pairs, in ``ds.runs`` order), ``dynamic_variance`` (mean over pairs and voxels of the squared
        deviation from the run mean; 1.0 when the targets never change) and ``n_samples``.
    """
    if len(ds) == 0:
        raise DataError("no training pairs to compute the target statistics from")
    run_means, sums, squares, counts = [], None, 0.0, 0
    for ri, items in ds.run_slices():
        run = ds.runs[ri]
        total, sq = None, None
        for k in range(run.n_pairs):
            y = run.read_y(k).astype(np.float64)  # [D, X, Y]
            total = y.copy() if total is None else total + y
            sq = y * y if sq is None else sq + y * y
        n = len(items)
        if n == 0:
            run_means.append(None)
            continue
        mean = total / n
        run_means.append(mean)
        squares += float((sq - n * mean * mean).sum())  # sum over pairs of (y - run mean)^2
        sums = total if sums is None else sums + total
        counts += n
    shape = next(m for m in run_means if m is not None).shape
    means = np.stack([m if m is not None else np.zeros(shape) for m in run_means]).astype(np.float32)
    variance = max(squares, 0.0) / (counts * int(np.prod(shape)))
    return {"mean_volume": (sums / counts).astype(np.float32), "run_means": means,
            "dynamic_variance": variance if variance > 0 else 1.0, "n_samples": counts}

