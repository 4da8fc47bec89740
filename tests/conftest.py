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


@pytest.fixture(scope="session")
def tiny_derivatives(tiny_bids, tmp_path_factory):
    """Path of the participant-level outputs (OUT_DIR) of the BIDS-App on ``tiny_bids``, computed once.

    Default (official) preprocessing, all 4 subjects: per run ``sub-XX/eeg/*_desc-stft_spectrogram.h5`` (+ json,
    shape [72, 16, 249], 46 pairs), ``sub-XX/func/*_desc-target_bold.nii.gz`` ([64, 64, 8, 72]) and
    ``*_desc-brain_mask.nii.gz``, ``sub-XX.html``, ``dataset_description.json``. Treat it as read-only.
    """
    from spec2vol_bids.cli.main import main

    root = tmp_path_factory.mktemp("tiny_derivatives")
    out, work = root / "out", root / "work"
    code = main([str(tiny_bids), str(out), "participant", "-w", str(work), "--skip-bids-validation",
                 "--nprocs", "1"])
    assert code == 0, f"participant level on tiny_bids failed with exit code {code}"
    return out


#: fixtures that make a test slow (a simulated dataset, the BIDS-App run on it, the trained napari sample) or need
#: a display: tests using them are marked ``slow`` / ``gui`` automatically, so ``make test-fast`` leaves them out
SLOW_FIXTURES = frozenset({"tiny_bids", "tiny_derivatives", "napari_sample", "two_subjects"})
GUI_FIXTURES = frozenset({"make_napari_viewer", "make_napari_viewer_proxy", "qtbot"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & GUI_FIXTURES:
            item.add_marker(pytest.mark.gui)
        if names & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
