"""``spec2vol_bids.io.read_spectrogram``: the spectrogram derivative as an MNE-Python spectrum."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from spec2vol_bids.io import read_spectrogram
from spec2vol_bids.io.spectrogram import write_spectrogram

CHANNELS = ["Fz", "Cz", "ECG", "Pz"]


@pytest.fixture
def spectrogram_file(tmp_path):
    rng = np.random.default_rng(3)
    n_vol, n_f = 12, 5
    onsets = 1.7 + 2.0 * np.arange(n_vol) + rng.uniform(-0.01, 0.01, n_vol)
    valid = np.ones(n_vol, bool)
    valid[-1] = False
    targets = np.array([6, 7, 8, 9, 10])
    windows = targets[:, None] - 3 + np.arange(3)[None]
    path = tmp_path / "sub-01_task-rest_desc-stft_spectrogram.h5"
    write_spectrogram(path, spectrogram=rng.standard_normal((n_vol, len(CHANNELS), n_f)), valid=valid,
                      frequencies=np.arange(1, n_f + 1) / 2.0, volume_onsets=onsets, pair_windows=windows,
                      pair_targets=targets,
                      attrs={"channels": CHANNELS, "channel_types": ["EEG", "EEG", "ECG", "EEG"], "sfreq": 250.0,
                             "repetition_time": 2.0, "units": "z-score", "kept_bad_channels": ["Cz"],
                             "excluded_bad_channels": ["Oz"]})
    return path


def test_round_trip_against_the_h5_arrays(spectrogram_file):
    spec = read_spectrogram(spectrogram_file)
    with h5py.File(spectrogram_file, "r") as h5:  # the file read independently of spec2vol_bids.io
        data, freqs = h5["spectrogram"][()], h5["frequencies"][()]
        onsets, valid, targets = h5["volume_onsets"][()], h5["valid"][()], h5["pairs/targets"][()]
    assert type(spec).__name__ == "EpochsSpectrumArray"
    np.testing.assert_array_equal(spec.get_data(picks="all", exclude=[]), data.astype(np.float64))
    np.testing.assert_array_equal(spec.freqs, freqs)
    assert spec.ch_names == CHANNELS and spec.info["sfreq"] == 250.0
    # bad channels kept with --keep-bad-channels are MNE bads (left out of get_data() by default)
    assert spec.info["bads"] == ["Cz"] and spec.get_data().shape[1] == 3
    # MNE spectra hold data channels only: the ECG row is typed eeg, its BIDS type is in the description
    assert spec.get_channel_types() == ["eeg"] * 4 and "EEG, EEG, ECG, EEG" in spec.info["description"]
    # one event per volume at its onset on the EEG clock
    np.testing.assert_array_equal(spec.events[:, 0], np.round(onsets * 250.0).astype(int))
    assert spec.event_id == {"volume": 1} and set(spec.events[:, 2]) == {1}
    meta = spec.metadata
    np.testing.assert_array_equal(meta["volume"], np.arange(12))
    np.testing.assert_allclose(meta["onset"], onsets)
    np.testing.assert_array_equal(meta["valid"], valid)
    assert list(meta.index[meta["target"]]) == list(targets)
    assert list(meta.loc[targets, "pair"]) == [0, 1, 2, 3, 4] and (meta.loc[:5, "pair"] == -1).all()
    # metadata queries select volumes, as with mne.Epochs
    assert len(spec["valid"]) == 11 and len(spec["target"]) == 5
    np.testing.assert_array_equal(spec["target"].get_data(picks="all", exclude=[]), data[targets])


def test_not_a_spectrogram(tmp_path):
    bad = tmp_path / "x_desc-stft_spectrogram.h5"
    with h5py.File(bad, "w") as h5:
        h5["other"] = np.zeros(3)
    with pytest.raises(KeyError):
        read_spectrogram(bad)
