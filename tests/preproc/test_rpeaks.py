"""R peaks for the pulse-artefact correction: the search-back for beats the QRS detector missed."""

from __future__ import annotations

import numpy as np

from spec2vol_bids.preproc.artefacts import SEARCH_BACK_AMPLITUDE, search_back


def _band(beats, n, amplitudes=None, seed=0):
    """A band-passed ECG with the QRS up: a 10 ms bump per beat, on noise at 3 % of the R amplitude."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = 0.03 * rng.standard_normal(n)
    for b, a in zip(beats, np.ones(len(beats)) if amplitudes is None else amplitudes):
        x += a * np.exp(-0.5 * ((t - b) / 10.0) ** 2)
    return x


def test_missed_beats_are_recovered_in_the_middle_and_at_the_ends():
    rng = np.random.default_rng(1)
    beats = np.cumsum(rng.uniform(850, 1000, 60)).astype(int)
    n = int(beats[-1] + 600)
    band = _band(beats, n, amplitudes=rng.uniform(0.7, 1.3, beats.size))
    found = np.delete(beats, [0, 17, 30, 31, 59])  # missed: the first, one, two in a row, the last
    got = search_back(found, band)
    assert got.size == beats.size
    assert np.abs(got - beats).max() <= 2  # the bump's top on noise: within 2 ms


def test_a_real_pause_and_small_bumps_add_nothing():
    beats = np.concatenate([np.arange(1000, 20000, 900), np.arange(22000, 40000, 900)])  # a 2.9 s pause
    n = 40500
    band = _band(beats, n)
    t = np.arange(n)
    band += 0.9 * SEARCH_BACK_AMPLITUDE * np.exp(-0.5 * ((t - 20900) / 10.0) ** 2)  # a wave below the level
    np.testing.assert_array_equal(search_back(beats, band), beats)
