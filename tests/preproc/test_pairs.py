"""Tests of spec2vol_bids.preproc.pairs."""

from __future__ import annotations

import numpy as np
import pytest

from spec2vol_bids.config import PairingConfig
from spec2vol_bids.errors import DataError, UsageError
from spec2vol_bids.preproc.pairs import make_pairs, pairing_from_seconds, pairs_for_config


def official_pairs(n_volumes: int, bold_shift: int = 6, interval: int = 20):
    """create_eeg_bold_pairs after the 6-volume drop, re-indexed to the original volumes."""
    kept = list(range(bold_shift, n_volumes))  # volume index of each kept row
    windows, targets = [], []
    for i in range(len(kept) - interval):
        windows.append(kept[i:i + interval])
        targets.append(kept[i + interval])
    return np.array(windows), np.array(targets)


def test_official_convention_cnepfl():
    windows, targets = make_pairs(370)
    ref_w, ref_t = official_pairs(370)
    assert windows.dtype == np.int32 and targets.dtype == np.int32
    assert windows.shape == (344, 20)  # 370 - 6 - 20 pairs, as in the paper's CN-EPFL split
    np.testing.assert_array_equal(windows, ref_w)
    np.testing.assert_array_equal(targets, ref_t)
    np.testing.assert_array_equal(windows[0], np.arange(6, 26))
    assert targets[0] == 26


def test_lag_and_invalid_windows():
    valid = np.ones(50, bool)
    valid[40] = False
    windows, targets = make_pairs(50, valid, n_windows=5, discard=2, lag=3)
    for w, t in zip(windows, targets):
        np.testing.assert_array_equal(w, np.arange(t - 3 - 5, t - 3))
        assert valid[w].all()
    # targets start at discard + n_windows + lag; every pair whose windows include row 40 is gone
    assert targets[0] == 10
    assert set(range(10, 50)) - set(targets.tolist()) == {t for t in range(10, 50) if 40 in range(t - 8, t - 3)}


def test_too_short_and_all_invalid():
    with pytest.raises(DataError, match="26 volumes, too few"):
        make_pairs(26)
    assert make_pairs(27)[0].shape == (1, 20)
    valid = np.zeros(40, bool)
    with pytest.raises(DataError, match="inside the recording"):
        make_pairs(40, valid)
    with pytest.raises(UsageError):
        make_pairs(40, np.ones(39, bool))
    with pytest.raises(UsageError):
        make_pairs(40, n_windows=0)


def test_seconds():
    assert pairing_from_seconds(2.0, 20.0, 6.0) == (10, 3)
    assert pairing_from_seconds(1.28, 20.0, 6.0) == (16, 5)  # 15.6 and 4.7 volumes
    assert pairing_from_seconds(2.16, None, 6.0) == (None, 3)
    with pytest.raises(DataError):
        pairing_from_seconds(0.0, 20.0)
    cfg = PairingConfig(window_span_s=20.0, lag_s=6.0)
    assert cfg.resolve(2.0) == (10, 6, 3)
    windows, targets = pairs_for_config(40, None, 2.0, cfg)
    assert windows.shape == (40 - 6 - 10 - 3, 10)
    np.testing.assert_array_equal(windows[0], np.arange(6, 16))
    assert targets[0] == 19
    assert PairingConfig(lag_s=4.0).resolve(2.0) == (20, 6, 2)
