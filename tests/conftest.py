"""Shared pytest fixtures for the whole test suite (others append theirs below)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("NIPYPE_NO_ET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_bids(tmp_path_factory):
    """Path of a synthetic EEG-fMRI BIDS dataset: the ``tiny`` preset, seed 0, simulated once per session.

    4 subjects, one ``rest`` run each, 16 EEG channels at 250 Hz (easycap-M1), TR 2 s, 64 x 64 x 8 BOLD,
    72 volumes; ground truth under ``derivatives/simulation``. Treat it as read-only (it is shared).
    """
    from spec2vol_bids.simulate import simulate_dataset

    return simulate_dataset(tmp_path_factory.mktemp("tiny_bids") / "bids", preset="tiny", seed=0, progress=False)
