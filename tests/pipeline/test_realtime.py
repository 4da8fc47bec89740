"""The real-time engine against the offline BIDS-App, without a network: the simulated run is fed chunk by chunk.

Oracles: the BIDS-App's own derivatives of the same run and checkpoint (spectrogram .h5 and prediction NIfTI, made
from the file by :mod:`spec2vol_bids.pipeline.steps`), and a direct NumPy FFT of the raw samples.
"""

from __future__ import annotations

import numpy as np
import pytest

from spec2vol_bids.errors import DataError, UsageError
from spec2vol_bids.pipeline.realtime import RealtimePredictor, RealtimeSession, stream_settings
from spec2vol_bids.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
T0 = 1000.0  # stream clock at the first sample


def feed(engine, data, sf, marks, *, seed=0, drop_marks=(), cut=None, jitter=0.3):
    """Feed ``data [n, C]`` in random chunks, with each trigger sent up to ``jitter`` s before or after its sample
    has arrived (markers and EEG come on separate streams). A marker carries its sample's timestamp.
    ``cut = (start, stop)`` removes those samples (a drop: their timestamps are missing too)."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(len(data)) / sf
    keep = np.ones(len(data), bool)
    if cut is not None:
        keep[cut[0]:cut[1]] = False
    trig = [T0 + m / sf for i, m in enumerate(marks) if i not in drop_marks]
    out, i, j = [], 0, 0
    while i < len(data):
        n = int(rng.integers(1, 80))
        end_t = ts[min(i + n, len(data)) - 1]
        while j < len(trig) and trig[j] <= end_t + rng.uniform(-jitter, jitter):
            out += engine.add_trigger(trig[j])
            j += 1
        sel = keep[i:i + n]
        if sel.any():
            out += engine.add_samples(data[i:i + n][sel], ts[i:i + n][sel])
        i += n
    for t in trig[j:]:
        out += engine.add_trigger(t)
    return out


def make_engine(offline, recording, **kw):
    data, sf, names, _ = recording
    ckpt = load_checkpoint(offline.checkpoint)
    settings = stream_settings(ckpt, channels=names, sfreq=sf)
    return RealtimePredictor(ckpt, settings, device="cpu", keep_rows=True, **kw), ckpt, settings


def assert_same_as_offline(preds, offline, indices=None):
    got = [p.index for p in preds]
    want = offline.indices if indices is None else indices
    assert got == want
    for p in preds:
        expected = offline.prediction[..., offline.indices.index(p.index)]
        np.testing.assert_allclose(p.volume, expected, rtol=1e-5, atol=1e-5)
    return got


def test_realtime_equals_offline_volume_by_volume(offline_default, recording, tmp_path):
    import nibabel as nib

    from spec2vol_bids.io.spectrogram import load_spectrogram

    data, sf, names, marks = recording
    engine, ckpt, settings = make_engine(offline_default, recording)
    # a stream with its channels in another order (and an extra one) is read by name
    order = np.random.default_rng(3).permutation(len(names))
    shuffled = np.concatenate([data[:, order], np.zeros((len(data), 1))], axis=1)
    settings2 = stream_settings(ckpt, channels=[names[i] for i in order] + ["TRIG"], sfreq=sf)
    engine = RealtimePredictor(ckpt, settings2, keep_rows=True)
    session = RealtimeSession(tmp_path / "rt_desc-spec2vol_bold.nii", ckpt, settings2)
    preds = feed(engine, shuffled, sf, marks)
    for p in preds:
        session.write(p, engine.events)
    session.close(engine.events)
    assert engine.events == [] and engine.n_triggers == 40
    assert_same_as_offline(preds, offline_default)  # volumes 26..39
    # every spectrogram row equals the BIDS-App's (same onsets, same windows, same scaling)
    spec = load_spectrogram(offline_default.spectrogram)
    assert sorted(engine.rows) == list(range(40))
    np.testing.assert_allclose(np.stack([engine.rows[k] for k in range(40)]), spec.spectrogram, rtol=1e-5, atol=1e-5)
    # an independent oracle for one row: |rfft| of the raw window of volume 30, bins 1..249, z-scored over channels
    seg = data[marks[30]:marks[30] + 500].T
    mag = np.abs(np.fft.rfft(seg, axis=1))[:, 1:250]
    z = (mag - mag.mean(0)) / mag.std(0)
    np.testing.assert_allclose(engine.rows[30], z, rtol=1e-4, atol=1e-4)
    # the file written volume by volume is the offline prediction
    img = nib.load(tmp_path / "rt_desc-spec2vol_bold.nii")
    np.testing.assert_allclose(np.asarray(img.dataobj), offline_default.prediction, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(img.affine, np.diag([3.0, 3.0, 4.0, 1.0]))
    assert img.header.get_zooms()[3] == pytest.approx(2.0)


def test_single_missing_trigger_is_filled_as_offline(offline_default, recording):
    data, sf, _, marks = recording
    engine, _, _ = make_engine(offline_default, recording)
    preds = feed(engine, data, sf, marks, drop_marks={12}, seed=1)
    assert [e.kind for e in engine.events] == ["trigger-filled"]
    assert "volume 12" in engine.events[0].message
    assert engine.onsets[12] == pytest.approx(marks[12] / sf)  # the midpoint of a regular sequence
    assert_same_as_offline(preds, offline_default)


def test_two_missing_triggers_are_reported_and_their_volumes_skipped(offline_default, recording):
    data, sf, _, marks = recording
    engine, _, _ = make_engine(offline_default, recording)
    preds = feed(engine, data, sf, marks, drop_marks={10, 11}, seed=2)
    kinds = [e.kind for e in engine.events]
    assert kinds == ["trigger-gap"], kinds
    assert "2 consecutive volume triggers are missing" in engine.events[0].message
    # rows 10 and 11 are unknown: targets 26..31 use them (windows t-20..t-1); 32..39 are predicted as offline
    assert_same_as_offline(preds, offline_default, indices=list(range(32, 40)))


def test_dropped_samples_are_reported_and_their_windows_skipped(offline_default, recording):
    data, sf, _, marks = recording
    engine, _, _ = make_engine(offline_default, recording)
    start = marks[15] + 100  # inside the window of volume 15
    preds = feed(engine, data, sf, marks, cut=(start, start + 50), seed=4)
    drops = [e for e in engine.events if e.kind == "drop"]
    assert len(drops) == 1 and "dropped 50 sample(s)" in drops[0].message
    assert [e.kind for e in engine.events if e.kind != "drop"] == ["window-invalid"]
    assert "volume 15" in engine.events[-1].message
    assert_same_as_offline(preds, offline_default, indices=list(range(36, 40)))


def test_restarted_stream_starts_over(offline_short, recording):
    data, sf, _, marks = recording
    engine, _, settings = make_engine(offline_short, recording)
    half = marks[20]
    first = feed(engine, data[:half], sf, [m for m in marks if m < half], jitter=0.0)
    assert [p.index for p in first] == list(range(5, 20))
    # the stream comes back with its clock reset: timestamps go back (feed() starts at T0 again)
    again = feed(engine, data, sf, marks, seed=5)
    assert [e.kind for e in engine.events] == ["restart"]
    # the count continues after the last volume (19): the new segment's first trigger is volume 20; its first 4
    # volumes give the first input (no volume is discarded again: the scanner was already in steady state)
    assert [p.index for p in again] == list(range(24, 60))
    np.testing.assert_allclose(again[1].volume, offline_short.prediction[..., 0], rtol=1e-5, atol=1e-5)


def test_tr_clock_without_triggers(offline_short, recording):
    data, sf, _, marks = recording
    engine, _, _ = make_engine(offline_short, recording, volume_clock="tr")
    preds = feed(engine, data, sf, [])
    assert [e.kind for e in engine.events] == ["clock"] and "TR clock" in engine.events[0].message
    # volume k starts k TR after the first sample (the BIDS-App's TR fallback), not at the (unknown) scan start
    assert engine.onsets[3] == pytest.approx(3 * 2.0)
    assert [p.index for p in preds][:2] == [5, 6]
    # 43 complete TRs (volumes 0..42); without triggers the volume after the last complete input (43) is
    # predicted too, as nothing says the scan has ended
    assert [p.index for p in preds] == list(range(5, int(len(data) / sf / 2.0) + 1))


def test_stream_that_does_not_fit_the_checkpoint_is_refused(offline_short, recording):
    _, sf, names, _ = recording
    ckpt = load_checkpoint(offline_short.checkpoint)
    with pytest.raises(DataError, match=r"lacks 1 of the model's 16 channels \(Cz;") as err:
        stream_settings(ckpt, channels=[n for n in names if n != "Cz"], sfreq=sf, stream="the LSL stream 'x'")
    assert err.value.exit_code == 65 and "\n" not in err.value.one_line()
    with pytest.raises(DataError, match="samples at 500 Hz, the model was trained on EEG at 250 Hz"):
        stream_settings(ckpt, channels=names, sfreq=500.0)
    no_acq = dict(ckpt)
    no_acq.pop("acquisition")
    with pytest.raises(UsageError, match="--tr"):
        stream_settings(no_acq, channels=names, sfreq=sf)
    # without the recorded rate, another rate still fails on the frequency axis the model was trained on
    with pytest.raises(DataError, match="frequency bins"):
        stream_settings(no_acq, channels=names, sfreq=100.0, repetition_time=1.0)
    assert stream_settings(no_acq, channels=names, sfreq=sf, repetition_time=2.0).repetition_time == 2.0


def test_marker_descriptions_of_string_and_one_hot_streams():
    from types import SimpleNamespace

    from spec2vol_bids.bids.eeg import is_volume_marker
    from spec2vol_bids.pipeline.lsl import _marker_descriptions

    string = SimpleNamespace(dtype="string")
    assert _marker_descriptions(string, [["Response/R128"], ["Stimulus/S  1"]]) == [["Response/R128"],
                                                                                  ["Stimulus/S  1"]]
    # PlayerLSL's default encoding: one float channel per description, the duration (-1) where it occurs
    sinfo = SimpleNamespace(get_channel_names=lambda: ["Response/R128", "Stimulus/S  1"])
    one_hot = SimpleNamespace(dtype="float64", n_channels=2, get_sinfo=lambda: sinfo)
    got = _marker_descriptions(one_hot, np.array([[-1.0, 0.0], [0.0, -1.0], [-1.0, -1.0]]))
    assert got == [["Response/R128"], ["Stimulus/S  1"], ["Response/R128", "Stimulus/S  1"]]
    assert [any(is_volume_marker(d) for d in row) for row in got] == [True, False, True]
    assert is_volume_marker("r 128", "R128") and not is_volume_marker("R1280", "R128")


def test_roi_outlet_is_the_mean_of_each_label():
    from spec2vol_bids.pipeline.lsl import roi_reducer

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (8, 6, 4))
    vol = rng.standard_normal((8, 6, 4)).astype(np.float32)
    reduce, names = roi_reducer(labels)
    assert names == ["roi-1", "roi-2"]
    np.testing.assert_allclose(reduce(vol), [vol[labels == 1].mean(), vol[labels == 2].mean()], rtol=1e-6)
    with pytest.raises(UsageError, match="no voxel above 0"):
        roi_reducer(np.zeros((2, 2, 2), int))
