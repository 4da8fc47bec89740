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


def test_raw_markers_win_over_events_tsv(tiny_bids, tmp_path):
    """mne-bids' read_raw_bids would replace the file's markers with events.tsv rows; we read the raw file, so a
    stale events.tsv (here: shifted by 1 s and without volume markers) does not move the onsets."""
    import shutil

    src = tiny_bids / "sub-02" / "eeg"
    for f in src.glob("sub-02_task-rest_*"):
        shutil.copy(f, tmp_path / f.name)
    events = tmp_path / "sub-02_task-rest_events.tsv"
    lines = events.read_text().splitlines()
    header, rows = lines[0], [r.split("\t") for r in lines[1:]]
    events.write_text("\n".join([header] + ["\t".join([f"{float(r[0]) + 1:.3f}", *r[1:2], "Stimulus/S  1",
                                                        *r[3:]]) for r in rows]) + "\n")
    rec = EEGRecording(tmp_path / "sub-02_task-rest_eeg.vhdr")
    v = volume_onsets(rec, n_volumes=72, repetition_time=2.0, marker="R128", events_tsv=events)
    assert v.source == "markers"
    ref, _ = marker_onsets(EEGRecording(src / "sub-02_task-rest_eeg.vhdr"))
    np.testing.assert_array_equal(v.onsets, ref)
