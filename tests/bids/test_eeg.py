"""Lazy EEG reading, channel types, volume markers and the marker/volume reconciliation policy."""

from __future__ import annotations

import numpy as np
import pytest

from spec2vol_bids.bids.eeg import (
    EEGRecording,
    events_tsv_onsets,
    fill_missing_triggers,
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


# ------------------------------------------------------------------- missing triggers in the middle of a run
ONSETS = np.arange(40) * 2.0 + 4.188  # 40 volumes, TR 2 s


def test_one_missing_trigger_is_filled_at_the_midpoint():
    """Without the fill, every onset after the gap would be one TR late and the last one extrapolated."""
    on, msgs = reconcile_onsets(np.delete(ONSETS, 20), n_volumes=40, repetition_time=2.0, duration=100)
    np.testing.assert_allclose(on, ONSETS, atol=1e-12)
    assert len(msgs) == 1 and "volume 20" in msgs[0] and "filled at 44.188 s" in msgs[0]
    assert not any("extrapolated" in m for m in msgs)


def test_isolated_missing_triggers_are_each_filled_and_reported():
    dropped = [3, 11, 25]
    filled_onsets, filled, msgs = fill_missing_triggers(np.delete(ONSETS, dropped), n_volumes=40,
                                                        repetition_time=2.0)
    np.testing.assert_allclose(filled_onsets, ONSETS, atol=1e-12)
    assert filled == dropped and [f"volume {v}" in m for v, m in zip(dropped, msgs)] == [True] * 3


def test_filled_onset_is_the_midpoint_of_jittered_neighbours():
    jittered = ONSETS + np.random.default_rng(0).uniform(-2e-3, 2e-3, ONSETS.size)
    on, _, _ = fill_missing_triggers(np.delete(jittered, 7), n_volumes=40, repetition_time=2.0)
    assert on[7] == pytest.approx((jittered[6] + jittered[8]) / 2)
    np.testing.assert_array_equal(np.delete(on, 7), np.delete(jittered, 7))


@pytest.mark.parametrize("dropped, volumes", [([20, 21], "volumes 20-21"), ([20, 21, 22, 23, 24], "volumes 20-24")])
def test_consecutive_missing_triggers_are_refused_naming_the_gap(dropped, volumes):
    with pytest.raises(DataError) as info:
        reconcile_onsets(np.delete(ONSETS, dropped), n_volumes=40, repetition_time=2.0, duration=100, label="x.vhdr")
    text = str(info.value)
    assert info.value.exit_code == 65 and "\n" not in text
    assert volumes in text and "consecutive" in text and "42.188 s" in text  # the marker before the gap
    assert "shorter" not in text  # the old message blamed a short EEG


def test_a_gap_that_is_not_whole_trs_is_refused():
    shifted = ONSETS.copy()
    shifted[21:] += 0.7  # 2.35 TRs between the markers around the gap: cannot tell how many volumes are missing
    with pytest.raises(DataError, match="not a whole number"):
        reconcile_onsets(np.delete(shifted, 20), n_volumes=40, repetition_time=2.0, duration=100)


def test_more_filled_volumes_than_one_in_ten_is_refused():
    assert fill_missing_triggers(np.delete(ONSETS, [3, 9, 15, 21]), n_volumes=40, repetition_time=2.0)[1] == \
        [3, 9, 15, 21]
    with pytest.raises(DataError, match="5 volume triggers are missing"):
        fill_missing_triggers(np.delete(ONSETS, [3, 9, 15, 21, 27]), n_volumes=40, repetition_time=2.0)


def test_gaps_after_the_last_volume_are_ignored():
    markers = np.concatenate([ONSETS, ONSETS[-1] + np.array([2.0, 10.0, 12.0])])  # recording went on, gappy
    on, msgs = reconcile_onsets(markers, n_volumes=40, repetition_time=2.0, duration=200)
    np.testing.assert_array_equal(on, ONSETS)
    assert len(msgs) == 1 and "3 extra" in msgs[0]


def test_volume_onsets_record_the_filled_volume(tiny_bids, tmp_path):
    import shutil

    src = tiny_bids / "sub-01" / "eeg"
    for f in src.glob("sub-01_task-rest_eeg.*"):
        shutil.copy(f, tmp_path / f.name)
    vmrk = tmp_path / "sub-01_task-rest_eeg.vmrk"
    lines = vmrk.read_text().splitlines(keepends=True)
    r128 = [i for i, ln in enumerate(lines) if ",R128," in ln]
    vmrk.write_text("".join(ln for i, ln in enumerate(lines) if i != r128[30]))  # Mk numbers keep their gap
    v = volume_onsets(EEGRecording(tmp_path / "sub-01_task-rest_eeg.vhdr"), n_volumes=72, repetition_time=2.0)
    assert v.n_markers == 71 and v.filled == [30] and v.onsets.size == 72
    np.testing.assert_allclose(np.diff(v.onsets), 2.0, atol=1 / 250)
