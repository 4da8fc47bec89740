"""Lazy EEG reading, channel types, volume markers and the marker/volume reconciliation policy."""

from __future__ import annotations

import numpy as np
import pytest

from spec2vol_bids.bids.eeg import (
    EEGRecording,
    events_tsv_onsets,
    marker_onsets,
    read_channels_tsv,
    reconcile_onsets,
    volume_onsets,
)
from spec2vol_bids.errors import DataError


@pytest.fixture(scope="module")
def recording(tiny_bids):
    eeg = tiny_bids / "sub-01" / "eeg"
    return EEGRecording(eeg / "sub-01_task-rest_eeg.vhdr", eeg / "sub-01_task-rest_channels.tsv")


def test_recording_is_lazy_and_reads_segments(recording, tiny_bids):
    import mne

    assert not recording.raw.preload
    assert recording.sfreq == 250.0 and len(recording.ch_names) == 16
    assert set(recording.ch_types) == {"EEG"}
    read = recording.segment_reader([0, 5])
    seg = read(100, 350)
    assert seg.shape == (2, 250)
    full = mne.io.read_raw_brainvision(recording.path, preload=True, verbose="error").get_data()
    np.testing.assert_array_equal(seg, full[[0, 5], 100:350])


def test_markers_from_the_raw_file(recording, tiny_bids):
    import json

    onsets, name = marker_onsets(recording)
    assert name == "Response/R128" and onsets.size == 72
    params = json.loads(next((tiny_bids / "derivatives" / "simulation").rglob(
        "sub-01_task-rest_desc-simulation_params.json")).read_text())
    assert onsets[0] == pytest.approx(params["FirstVolumeOnset"], abs=1 / 250)
    same, _ = marker_onsets(recording, "R128")  # the short name matches Response/R128
    np.testing.assert_array_equal(same, onsets)
    none, _ = marker_onsets(recording, "S  2")
    assert none.size == 0
    v = volume_onsets(recording, n_volumes=72, repetition_time=2.0)
    assert v.source == "markers" and v.n_markers == 72 and not v.messages


def test_events_tsv_markers(tiny_bids):
    onsets, name = events_tsv_onsets(tiny_bids / "sub-01" / "eeg" / "sub-01_task-rest_events.tsv", "R128")
    assert onsets.size == 72 and name == "Response/R128"
    assert events_tsv_onsets(None)[0].size == 0


def test_channels_tsv_with_spaces_and_quotes(tmp_path):
    """The ds002336 layout: space separated, quoted names, a typographic quote."""
    f = tmp_path / "task-x_channels.tsv"
    f.write_text("name type units\n'Fp1' EEG microV\n'ECG\u2019 ECG microV\n")
    assert read_channels_tsv(f) == [("Fp1", "EEG"), ("ECG", "ECG")]


def test_reconcile_equal_counts():
    on, msgs = reconcile_onsets(np.arange(10) * 2.0 + 3, n_volumes=10, repetition_time=2.0, duration=100)
    np.testing.assert_array_equal(on, np.arange(10) * 2.0 + 3)
    assert msgs == []


def test_reconcile_extra_markers_uses_the_first():
    on, msgs = reconcile_onsets(np.arange(12) * 2.0, n_volumes=10, repetition_time=2.0, duration=100)
    np.testing.assert_array_equal(on, np.arange(10) * 2.0)
    assert "2 extra" in msgs[0]


def test_reconcile_missing_markers_are_extrapolated():
    on, msgs = reconcile_onsets(np.arange(8) * 2.0 + 1, n_volumes=10, repetition_time=2.0, duration=100)
    np.testing.assert_allclose(on, np.arange(10) * 2.0 + 1)
    assert "extrapolated" in msgs[0]


def test_reconcile_spacing_mismatch_warns():
    _, msgs = reconcile_onsets(np.arange(10) * 1.0, n_volumes=10, repetition_time=2.0, duration=100)
    assert any("1 s apart" in m for m in msgs)


def test_reconcile_eeg_shorter_than_bold_raises():
    with pytest.raises(DataError, match="shorter than the BOLD"):
        reconcile_onsets(np.arange(5) * 2.0, n_volumes=10, repetition_time=2.0, duration=11.0)
