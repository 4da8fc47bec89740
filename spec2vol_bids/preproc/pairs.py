"""Pairing spectrogram rows (EEG windows) with target BOLD volumes.

The spectrogram has one row per BOLD volume (row index == volume index, see CONTRIBUTING.md). A *pair* is
the list of ``n_windows`` consecutive rows that form one model input and the index of the volume it predicts::

    rows t - lag - n_windows .. t - lag - 1  ->  volume t,   t >= discard + n_windows + lag

The official convention (Calhas et al., Spec2VolCAMU-Net) is ``n_windows=20, discard=6, lag=0``: after
dropping the first 6 volumes, windows ``i..i+19`` predict volume ``i+20`` (the 20 TRs immediately before the
target). Pure NumPy; no I/O.
"""

from __future__ import annotations

import numpy as np

from ..config import option_name, pairing_from_seconds
from ..errors import DataError, UsageError

__all__ = ["make_pairs", "pairing_from_seconds", "pairs_for_config"]


def make_pairs(n_volumes: int, valid=None, *, n_windows: int = 20, discard: int = 6,
               lag: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Model-input rows and target volume of every usable pair of a run.

    Parameters
    ----------
    n_volumes : int
        Number of BOLD volumes (= spectrogram rows) of the run.
    valid : array-like of bool, shape (n_volumes,), optional
        ``False`` where a row's EEG window is not fully inside the recording. Pairs that use such a row are
        left out. ``None``: every row is valid.
    n_windows : int
        Consecutive windows per model input (default 20).
    discard : int
        Leading volumes that take part in no pair (default 6).
    lag : int
        Volumes between the last input window and the target (default 0: the windows end at the
        target's onset).

    Returns
    -------
    windows : ndarray of int32, shape (n_pairs, n_windows)
        Row indices of each pair's input, ascending in time.
    targets : ndarray of int32, shape (n_pairs,)
        Target volume index of each pair.

    Raises
    ------
    DataError
        When the run is too short for a single pair, or when no pair has only valid windows.
    UsageError
        For negative or zero settings.
    """
    n_volumes = int(n_volumes)
    if n_windows < 1 or discard < 0 or lag < 0:
        raise UsageError(f"invalid pairing n_windows={n_windows}, discard={discard}, lag={lag}",
                         hint="Use --n-windows >= 1 and --discard, --lag >= 0 (pairing.n_windows, "
                              "pairing.discard_volumes, pairing.lag_volumes).")
    if valid is None:
        valid = np.ones(n_volumes, dtype=bool)
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != (n_volumes,):
        raise UsageError(f"valid has shape {valid.shape}, expected ({n_volumes},) (one flag per volume)")
    need = discard + n_windows + lag + 1
    if n_volumes < need:
        raise DataError(
            f"the run has {n_volumes} volumes, too few for one pair "
            f"({discard} discarded + {n_windows} input windows + {lag} lag + 1 target = {need})",
            hint=f"Use a longer run, or lower {option_name('pairing.discard_volumes')}, "
                 f"{option_name('pairing.n_windows')} or {option_name('pairing.lag_volumes')}.")
    targets = np.arange(discard + n_windows + lag, n_volumes)  # (n_candidates,)
    # windows[p, j] = targets[p] - lag - n_windows + j
    windows = targets[:, None] - lag - n_windows + np.arange(n_windows)[None, :]  # (n_candidates, n_windows)
    keep = valid[windows].all(axis=1)
    if not keep.any():
        raise DataError(
            f"none of the {len(targets)} candidate pairs has all {n_windows} EEG windows inside the recording",
            hint="Check that the EEG covers the BOLD run (volume onsets vs EEG length).")
    return windows[keep].astype(np.int32), targets[keep].astype(np.int32)


def pairs_for_config(n_volumes: int, valid, tr: float, cfg) -> tuple[np.ndarray, np.ndarray]:
    """:func:`make_pairs` with the settings of a :class:`~spec2vol_bids.config.PairingConfig` (seconds resolved)."""
    n_windows, discard, lag = cfg.resolve(tr)
    return make_pairs(n_volumes, valid, n_windows=n_windows, discard=discard, lag=lag)
