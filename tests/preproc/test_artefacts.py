"""spec2vol_bids.preproc.artefacts: the gradient and pulse correctors and the QC, on synthetic signals with a known
artefact (the oracle: the signal without it) and against SciPy/NumPy computations written out independently."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from spec2vol_bids.errors import DataError, UsageError
from spec2vol_bids.preproc import artefacts as A

FS = 1000.0


def gradient_case(*, seed=0, n_ch=4, n_slices=8, tr=2.0, n_vol=24, lead=3000, eeg_uv=10.0, fraction=0.37):
    """EEG (white noise) plus a slice-locked artefact whose slice period is not a whole number of samples, on a
    scanner clock drifting against the EEG clock (true onsets up to a sample before the logged triggers).

    Returns (eeg, artefact, inside, slice_triggers, volume_triggers, true_delays) with the true fractional delay
    of every slice trigger (logged sample minus true onset).
    """
    rng = np.random.default_rng(seed)
    period = tr * FS / n_slices + fraction  # samples; fractional unless fraction is 0 (synchronised clocks)
    n = int(lead + n_vol * n_slices * period + 2000)
    t0 = lead - 0.6
    onsets = t0 + np.arange(n_vol * n_slices) * period
    h = np.arange(1, int(0.4 * period))
    amp = rng.standard_normal((3, h.size)) / np.sqrt(h) / np.sqrt(1 + (h * FS / period / 200.0) ** 10)
    phase = rng.uniform(0, 2 * np.pi, (3, h.size))
    s = np.arange(n, dtype=float)
    inside = (s >= t0) & (s < t0 + onsets.size * period)
    local = np.mod(s - t0, period) / period
    wave = np.zeros((3, n))
    for k in range(h.size):
        wave += amp[:, k:k + 1] * np.cos(2 * np.pi * h[k] * local[None] + phase[:, k:k + 1])
    wave /= wave[:, inside].std(axis=1, keepdims=True)
    artefact = (rng.standard_normal((n_ch, 3)) * 400.0) @ wave * inside
    eeg = rng.standard_normal((n_ch, n)) * eeg_uv
    trig = np.ceil(onsets).astype(np.int64)
    return eeg, artefact, inside, trig, trig[::n_slices], trig - onsets


def run(stages, x, block=4096):
    pieces = list(A.correct_stream(lambda a, b: x[:, a:b], x.shape[1], stages, block=block))
    starts = [p[0] for p in pieces]
    assert starts == sorted(starts) and pieces[0][0] == 0
    out = np.concatenate([p[1] for p in pieces], axis=1)
    assert out.shape == x.shape
    return out


def db(a, b):
    return 20 * np.log10(np.std(a) / np.std(b))


def test_epoch_layout_tiles_from_trigger_to_trigger():
    lay = A.epoch_layout([100, 200, 301, 400, 700, 801], 900)
    np.testing.assert_array_equal(lay.starts, [100, 200, 301, 400, 700, 801])
    # spacing 300 > 1.5 x the median 101: a gap, only the median spacing is corrected after it; the last epoch
    # gets the median spacing too, cut at the end of the recording
    np.testing.assert_array_equal(lay.lengths, [100, 101, 99, 101, 101, 99])
    assert lay.length == 101 and lay.period == 101.0 and lay.gaps == 1
    assert A.epoch_layout([5, 5, 50, -3, 2000], 100).starts.tolist() == [5, 50]  # duplicates, outside: dropped
    with pytest.raises(DataError, match="at least 2"):
        A.epoch_layout([10], 100)


def test_window_bounds_keep_the_window_size_at_the_ends():
    lo, hi = A.window_bounds(10, 4)
    assert (hi - lo).tolist() == [5] * 10
    assert lo.tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 5, 5]
    lo, hi = A.window_bounds(3, 30)  # fewer epochs than the window: all of them
    assert lo.tolist() == [0, 0, 0] and hi.tolist() == [3, 3, 3]
    with pytest.raises(UsageError):
        A.window_bounds(5, 0)


def test_segment_geometry_holds_whole_periods():
    pad, n = A.segment_geometry(250, 250.37)
    assert n == round(2 * 250.37) and pad == (n - 250) // 2 and pad >= A.MIN_PAD
    assert A.segment_geometry(5000, 5000.0) == (A.LONG_PAD, 5000 + 2 * A.LONG_PAD)
    assert A.segment_geometry(250, 250.0, exact=True) == (0, 250)  # one period, the epoch itself
    # exact triggers: the same spacing everywhere, gaps aside; a spacing of 250 or 251 is not
    assert A.epoch_layout([0, 250, 500, 750, 1500, 1750], 2000).exact
    assert not A.epoch_layout([0, 250, 501, 751, 1001], 2000).exact


def test_aas_on_exact_triggers_transforms_one_period(monkeypatch):
    """Synchronised clocks (a slice period of a whole number of samples): one-period epochs, as good as the
    segments padded to whole periods."""
    eeg, art, inside, trig, _, _ = gradient_case(seed=4, fraction=0.0)
    x = eeg + art
    lay = A.epoch_layout(trig, x.shape[1])
    exact = A.GradientAAS(lay, x.shape[1], x.shape[0])
    assert lay.exact and exact.pad == 0 and exact.seg_len == lay.length == 250
    out = run([exact], x)
    gain = db(art[:, inside], (out - eeg)[:, inside])
    geometry = A.segment_geometry  # the geometry of other triggers: segments padded to two periods
    monkeypatch.setattr(A, "segment_geometry", lambda length, period, exact=False: geometry(length, period))
    padded = A.GradientAAS(lay, x.shape[1], x.shape[0])
    assert padded.seg_len == 500
    gain_padded = db(art[:, inside], (run([padded], x) - eeg)[:, inside])
    assert gain > 40.0 and gain > gain_padded - 0.5, (gain, gain_padded)


def test_aas_removes_the_gradient_artefact_with_sub_sample_alignment():
    eeg, art, inside, trig, _, true_delay = gradient_case()
    x = eeg + art
    aligned = A.GradientAAS(A.epoch_layout(trig, x.shape[1]), x.shape[1], x.shape[0])
    out = run([aligned], x)
    gain = db(art[:, inside], (out - eeg)[:, inside])
    assert gain > 40.0, gain  # artefact RMS down by more than 40 dB
    # what is left is the EEG of the neighbouring epochs averaged into the template: about EEG / sqrt(30)
    assert np.std((out - eeg)[:, inside]) < 1.5 * 10.0 / np.sqrt(30)
    outside = ~inside
    np.testing.assert_allclose(out[:, outside], x[:, outside], rtol=1e-6, atol=1e-5)  # untouched (float32)
    # the delays found follow the true sub-sample delays (the artefact starts ``true_delay`` samples before the
    # logged trigger), up to a constant: the reference's own delay
    found = np.array([aligned.delays[e] for e in range(trig.size)])
    assert np.std(found + true_delay) < 0.05
    # without the alignment the template is blurred: at least 10 dB worse
    plain = run([A.GradientAAS(A.epoch_layout(trig, x.shape[1]), x.shape[1], x.shape[0], align=False)], x)
    assert db(art[:, inside], (plain - eeg)[:, inside]) < gain - 10.0


def test_aas_on_volume_triggers_and_picks():
    eeg, art, inside, _, vol, _ = gradient_case(seed=1, n_vol=40)
    x = eeg + art
    x[2] = np.sin(np.arange(x.shape[1]) / 7.0)  # a channel that is not corrected (e.g. a trigger channel)
    out = run([A.GradientAAS(A.epoch_layout(vol, x.shape[1]), x.shape[1], x.shape[0], picks=[0, 1, 3])], x)
    np.testing.assert_allclose(out[2], x[2], rtol=1e-6, atol=1e-7)  # passed through (as float32 samples)
    assert db(art[[0, 1, 3]][:, inside], (out - eeg)[[0, 1, 3]][:, inside]) > 30.0


def test_streams_do_not_depend_on_the_block_size_and_stay_bounded():
    eeg, art, _, trig, _, _ = gradient_case(seed=2, n_vol=12)
    x = eeg + art
    n = x.shape[1]
    outs = []
    for block in (517, 4096, n):
        aas = A.GradientAAS(A.epoch_layout(trig, n), n, x.shape[0], n_neighbours=10)
        biggest = 0
        pieces = []
        for a in range(0, n, block):
            pieces += aas.push(x[:, a:a + block])
            biggest = max(biggest, aas.buf.shape[1])
        outs.append(np.concatenate([p for _, p in pieces], axis=1))
        if block == 517:  # the buffer holds about half a window of epochs plus one block, not the recording
            assert biggest < (10 // 2 + 4) * aas.layout.length + block < n / 3
    # equal up to the rounding of the float32 samples (FFT batches of another size round differently)
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(outs[0], outs[2], rtol=0, atol=1e-5)


def test_aas_refuses_a_wrong_block():
    aas = A.GradientAAS(A.epoch_layout([10, 20, 30], 50), 50, 2)
    with pytest.raises(UsageError):
        aas.push(np.zeros((3, 5)))
    with pytest.raises(UsageError):
        aas.push(np.zeros((2, 60)))
    with pytest.raises(UsageError):
        aas.finish()  # samples missing


def test_obs_fit_removes_a_low_rank_structure():
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((2, 50))
    epochs = rng.standard_normal((200, 2)) * 20 @ basis + rng.standard_normal((200, 50)) * 0.1
    resid = epochs - A.obs_fit(epochs, 2)
    assert np.std(resid) < 0.15
    assert np.all(A.obs_fit(epochs, 0) == 0)


def test_aas_with_obs_runs_and_keeps_the_correction():
    eeg, art, inside, trig, _, _ = gradient_case(seed=3, n_vol=20)
    x = eeg + art
    out = run([A.GradientAAS(A.epoch_layout(trig, x.shape[1]), x.shape[1], x.shape[0], obs_components=2)], x)
    assert db(art[:, inside], (out - eeg)[:, inside]) > 30.0


def bcg_case(*, seed=0, n=90_000, n_ch=3):
    rng = np.random.default_rng(seed)
    beats = np.cumsum(rng.uniform(800, 1050, 200)).astype(int)
    beats = beats[beats < n - 1500]
    t = np.arange(n)
    shape = np.zeros(n)
    for b in beats:
        d = t[b:b + 900] - b
        shape[b:b + 900] += np.exp(-0.5 * ((d - 250) / 40.0) ** 2) - 0.5 * np.exp(-0.5 * ((d - 420) / 60.0) ** 2)
    art = np.outer(rng.uniform(30, 80, n_ch), shape)
    eeg = rng.standard_normal((n_ch, n)) * 10
    ecg = np.zeros((1, n))
    ecg[0, beats] = 1000.0
    return eeg, art, beats, ecg


def test_bcg_sliding_average_removes_the_pulse_artefact_and_leaves_the_ecg():
    eeg, art, beats, ecg = bcg_case()
    x = np.vstack([eeg + art, ecg])
    n = x.shape[1]
    out = run([A.BCGSubtraction(beats, n, x.shape[0], FS, picks=[0, 1, 2])], x)
    span = slice(beats[1], beats[-2])
    assert db(art[:, span], (out[:3] - eeg)[:, span]) > 15.0
    np.testing.assert_allclose(out[3], x[3], rtol=1e-6)  # the ECG is not corrected
    # block size does not matter
    again = run([A.BCGSubtraction(beats, n, x.shape[0], FS, picks=[0, 1, 2])], x, block=777)
    np.testing.assert_allclose(out, again, rtol=0, atol=1e-5)
    with pytest.raises(DataError, match="R peaks"):
        A.BCGSubtraction([5, 10], n, 4, FS, picks=[0])


@pytest.mark.parametrize("missed", [False, True])
def test_bcg_stream_equals_the_sliding_average_written_out_and_stays_bounded(missed):
    """Oracle: every beat epoch minus the mean, lag by lag, of its window's other beats that reach that lag, computed
    on the whole recording in memory; the stream (any block size) keeps about a window of beats, not the run. With a
    beat missed, the interval holding it is a gap: its beat epoch is the median interval long, and the samples after
    it, in no beat (like those before the first beat and after the last), are handed back as recorded."""
    eeg, art, beats, ecg = bcg_case(seed=3)
    if missed:
        beats = np.delete(beats, beats.size // 2)
    x = np.vstack([eeg + art, ecg])
    # consecutive channels (taken as views), or not (channel 1 left as recorded: gathered)
    n, picks, k = x.shape[1], [0, 2] if missed else [0, 1, 2], 8
    bcg = A.BCGSubtraction(beats, n, x.shape[0], FS, picks=picks, n_neighbours=k)
    lay = bcg.layout
    assert lay.gaps == int(missed) and lay.starts[0] > 0 and lay.starts[-1] + lay.lengths[-1] < n
    lo, hi = A.window_bounds(lay.n_epochs, k)
    want = x.copy()
    for e in range(lay.n_epochs):
        s0, ln = int(lay.starts[e]), int(lay.lengths[e])
        total, count = np.zeros((len(picks), ln)), np.zeros(ln)
        for j in range(lo[e], hi[e]):
            m = min(ln, int(lay.lengths[j]))
            if j != e:
                total[:, :m] += x[picks, int(lay.starts[j]):int(lay.starts[j]) + m]
                count[:m] += 1
        want[picks, s0:s0 + ln] -= np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    for block in (613, 5000):
        stream = A.BCGSubtraction(beats, n, x.shape[0], FS, picks=picks, n_neighbours=k)
        pieces, biggest = [], 0
        for a in range(0, n, block):
            pieces += stream.push(x[:, a:a + block])
            biggest = max(biggest, stream.buf.shape[1])
        got = np.concatenate([p for _, p in pieces], axis=1)
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-3)  # float32 samples
        assert not stream.corrected  # every template was handed back
        assert biggest < (k + 3) * lay.length + block < n / 3
        if not missed:  # the beats are in their copies: the buffer holds about a beat and a block
            assert biggest <= 2 * lay.length + block, (biggest, lay.length, block)


def _fill_sample_buffer(reserve: int) -> list[int]:
    """Random appends and drops against the oracle (concatenation and slicing); the array sizes seen."""
    rng = np.random.default_rng(reserve)
    buf = A.SampleBuffer(2, np.float64, reserve=reserve)
    ref, ref_start, sizes = np.empty((2, 0)), 0, []
    for i in range(300):
        block = rng.standard_normal((2, 120 if i == 0 else int(rng.integers(0, 121))))
        buf.append(block)
        ref = np.concatenate([ref, block], axis=1)
        np.testing.assert_array_equal(buf.data, ref)  # every sample kept, in order (moved, grown or not)
        assert buf.start == ref_start and buf.end == ref_start + ref.shape[1]
        keep_from = max(ref_start, buf.end - int(rng.integers(0, 400)))  # drop the front, keeping < 400 samples
        buf.drop_before(keep_from)
        ref, ref_start = ref[:, keep_from - ref_start:], keep_from
        sizes.append(buf.store.shape[1])
    return sizes


def test_sample_buffer_keeps_what_concatenation_keeps():
    # reserved for what is kept: room for it and a block, and a quarter more, from the first append; it never grew
    sizes = _fill_sample_buffer(400)
    assert max(sizes) == min(sizes) == (400 + 120) * 5 // 4
    # nothing reserved: it grew (and never shrank), to what was kept and the block, and a quarter more, at most
    sizes = _fill_sample_buffer(0)
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1] <= (400 + 120) * 5 // 4


def test_bcg_optimal_basis_set():
    eeg, art, beats, ecg = bcg_case(n=60_000)
    x = np.vstack([eeg + art, ecg])
    obs = run([A.BCGSubtraction(beats, x.shape[1], x.shape[0], FS, picks=[0, 1, 2], obs_components=2)], x)
    span = slice(beats[1], beats[-2])
    assert db(art[:, span], (obs[:3] - eeg)[:, span]) > 10.0
    np.testing.assert_allclose(obs[3], x[3], rtol=1e-6)


def test_bcg_template_rank_keeps_the_artefact_and_drops_the_neighbours_eeg():
    """A rank-2 pulse artefact (two head movements: two scalp maps x two waveforms) on 8 channels of white EEG:
    the auto rank finds 2 components, and the low-rank template leaves less behind than the plain average, which
    carries 1/sqrt(30) of the neighbours' EEG; rank 1 drops half the artefact."""
    rng = np.random.default_rng(3)
    n, n_ch = 120_000, 8
    beats = np.cumsum(rng.uniform(800, 1050, 200)).astype(int)
    beats = beats[beats < n - 1500]
    t = np.arange(n)
    waves = np.zeros((2, n))
    for b in beats:
        d = t[b:b + 900] - b
        waves[0, b:b + 900] += np.exp(-0.5 * ((d - 250) / 40.0) ** 2)
        waves[1, b:b + 900] += np.exp(-0.5 * ((d - 420) / 70.0) ** 2)
    art = rng.uniform(-80, 80, (n_ch, 2)) @ waves
    eeg = rng.standard_normal((n_ch, n)) * 10
    x = eeg + art
    span = slice(beats[20], beats[-20])

    def left(rank):
        stream = A.BCGSubtraction(beats, n, n_ch, FS, picks=np.arange(n_ch), n_neighbours=30, template_rank=rank)
        out = run([stream], x)
        return float(np.sqrt(np.mean((out - eeg)[:, span] ** 2))), stream.ranks

    auto, ranks = left(None)
    whole, none = left(0)
    one, _ = left(1)
    assert np.median(ranks) == 2 and min(ranks) >= 2 and not none
    # the plain average leaves ~10 / sqrt(30) = 1.8 uV of the neighbours' EEG; 2 of 8 channel dimensions of it
    # stay in the low-rank template
    assert whole == pytest.approx(10 / np.sqrt(30), rel=0.15)
    assert auto < 0.7 * whole
    assert one > 3 * whole


def test_fir_filter_is_zero_phase_and_streams():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5000))
    h = A.lowpass_filter(FS, 100.0)
    assert h.size % 2 == 1
    d = (h.size - 1) // 2
    padded = np.concatenate([np.repeat(x[:, :1], d, 1), x, np.repeat(x[:, -1:], d, 1)], axis=1)
    expected = np.stack([np.convolve(row, h, mode="valid") for row in padded])
    for block in (7, 50, 333, 5000):  # blocks shorter than the filter's delay give nothing at first
        f = A.FIRFilter(h, 2, x.shape[1])
        got = np.concatenate([f.push(x[:, a:a + block]) for a in range(0, x.shape[1], block)], axis=1)
        np.testing.assert_allclose(got, expected, atol=1e-12)
    f32 = A.FIRFilter(h, 2, x.shape[1])  # float32 blocks: single precision
    got = np.concatenate([f32.push(x[:, a:a + 999].astype(np.float32)) for a in range(0, x.shape[1], 999)], axis=1)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    w, resp = scipy.signal.freqz(h, worN=[20.0, 100.0, 200.0], fs=FS)
    assert abs(abs(resp[0]) - 1) < 0.01 and abs(abs(resp[1]) - 0.5) < 0.05 and abs(resp[2]) < 0.01
    with pytest.raises(UsageError, match="cut-off"):
        A.lowpass_filter(FS, 600.0)


@pytest.mark.parametrize("nperseg, fmax", [(512, None), (513, None), (512, 100.0), (513, 499.0)])
def test_welch_psd_matches_scipy(nperseg, fmax):
    # the window is applied to the bins (and the mean removed there): the oracle windows the samples. Offsets and
    # drifts per channel check the mean removal; odd segments and a top bin at Nyquist the mirrored bins
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 10_000)) + np.array([[0.0], [50.0], [-3.0]]) + np.linspace(0, 5, 10_000)
    acc = A.WelchPSD(3, FS, nperseg, fmax=fmax)
    for a in range(0, x.shape[1], 700):
        acc.push(x[:, a:a + 700])
    f, p = acc.result()
    f_ref, p_ref = scipy.signal.welch(x, fs=FS, window="hann", nperseg=nperseg,
                                      noverlap=nperseg - nperseg // 2,  # a step of nperseg // 2
                                      detrend="constant", scaling="density")
    keep = f_ref.size if fmax is None else int(np.floor(fmax * nperseg / FS)) + 1
    np.testing.assert_allclose(f, f_ref[:keep])
    assert acc.count == (x.shape[1] - nperseg) // (nperseg // 2) + 1
    np.testing.assert_allclose(p, p_ref[:, :keep], rtol=1e-9, atol=1e-12 * p_ref.max())
    # float32 blocks: single-precision transforms, to single precision
    acc32 = A.WelchPSD(3, FS, nperseg, fmax=fmax)
    acc32.push(x.astype(np.float32))
    np.testing.assert_allclose(acc32.result()[1], p_ref[:, :keep], rtol=2e-3, atol=1e-6 * p_ref.max())


def test_welch_psd_decimated_equals_full_rate_on_low_passed_data():
    # a low-passed signal measured on every 10th sample: the same bins as at the full rate, to the power the
    # low-pass left above the alias frequency (none here, to float64 precision). Oracles: the full-rate estimate
    # (itself checked against scipy above), and scipy's Welch of the decimated samples from bin 2 on (it removes
    # the mean of the decimated samples, which only moves bins 0 and 1; ours removes the full-rate mean)
    fs, nperseg, fmax = 5000.0, 2000, 150.0
    rng = np.random.default_rng(4)
    cutoff = 100.0
    x = rng.standard_normal((2, 40_000)) * 50.0
    x[1] += 200.0 * np.sin(2 * np.pi * 37.5 * np.arange(x.shape[1]) / fs)  # a line on a bin
    low = scipy.signal.sosfiltfilt(scipy.signal.butter(10, cutoff, fs=fs, output="sos"), x)
    d = A.alias_free_decimation(fs, nperseg, fmax, stop=300.0)
    assert d == 10  # 5000 / 10 - 150 = 350 >= 300 and 20 divides 2000; 12 would give 267
    full, dec = A.WelchPSD(2, fs, nperseg, fmax=fmax), A.WelchPSD(2, fs, nperseg, fmax=fmax, decimate=d)
    for a in range(0, x.shape[1], 777):  # blocks that are not multiples of the factor
        full.push(low[:, a:a + 777])
        dec.push(low[:, a:a + 777])
    (f_full, p_full), (f_dec, p_dec) = full.result(), dec.result()
    np.testing.assert_allclose(f_dec, f_full)
    assert dec.count == full.count
    np.testing.assert_allclose(p_dec, p_full, rtol=1e-6, atol=1e-9 * p_full.max())
    f_ref, p_ref = scipy.signal.welch(low[:, ::d], fs=fs / d, window="hann", nperseg=nperseg // d,
                                      noverlap=nperseg // d // 2, detrend="constant")
    np.testing.assert_allclose(p_dec[:, 2:], p_ref[:, 2:f_dec.size], rtol=1e-9)
    assert np.abs(p_ref[:, :2] / p_full[:, :2] - 1).max() > 1e-3  # what the full-rate mean mends
    # float32 blocks (as the correction pushes them): single-precision transforms, to single precision
    dec32 = A.WelchPSD(2, fs, nperseg, fmax=fmax, decimate=d)
    for a in range(0, x.shape[1], 4096):
        dec32.push(low[:, a:a + 4096].astype(np.float32))
    np.testing.assert_allclose(dec32.result()[1], p_full, rtol=2e-3, atol=1e-6 * p_full.max())
    # on the raw signal (power up to Nyquist) the decimated estimate is wrong: the folded power is there
    raw = A.WelchPSD(2, fs, nperseg, fmax=fmax, decimate=d)
    raw.push(x)
    assert np.median(raw.result()[1][0] / p_full[0, :]) > 10.0
    with pytest.raises(UsageError, match="multiple of twice"):
        A.WelchPSD(2, fs, 1000, decimate=3)


def test_alias_free_decimation_keeps_folded_frequencies_above_the_stop_band():
    # what folds onto [0, fmax] comes from sfreq / d - fmax and above
    assert A.alias_free_decimation(5000.0, 10_000, 294.5, A.lowpass_stop(250.0)) == 8  # 625 - 294.5 >= 300
    assert A.alias_free_decimation(5000.0, 10_000, 294.5, 900.0) == 4  # 1250 - 294.5 >= 900; 5 gives 705.5
    assert A.alias_free_decimation(5000.0, 10_000, 294.5, 1000.0) == 2  # 4 gives 955.5; 3 does not divide
    assert A.alias_free_decimation(5000.0, 9998, 294.5, 300.0) == 1  # 4999 is prime: no factor divides it
    assert A.alias_free_decimation(1000.0, 2000, 300.0, 300.0) == 1  # 500 - 300 < 300
    assert A.lowpass_stop(250.0) == 300.0 and A.lowpass_stop(250.0, transition=10.0) == 260.0
    w, h = scipy.signal.freqz(A.lowpass_filter(5000.0, 250.0), worN=np.arange(300.0, 2500.0, 1.0), fs=5000.0)
    assert 20 * np.log10(np.abs(h).max()) < -55.0  # the stop band as documented


def test_harmonic_power_finds_lines_and_skips_mains():
    rng = np.random.default_rng(2)
    t = np.arange(60_000) / FS
    noise = rng.standard_normal((2, t.size))
    lines = noise + np.stack([3 * np.sin(2 * np.pi * 10 * t) + 3 * np.sin(2 * np.pi * 30 * t), 0 * t])
    f, p = scipy.signal.welch(lines, fs=FS, nperseg=2000)
    res = A.harmonic_power(f, p, 10.0, fmax=100.0)
    assert 50.0 not in res["harmonics"] and 100.0 not in res["harmonics"]  # mains multiples skipped
    assert res["harmonics"][:3] == [10.0, 20.0, 30.0]
    assert res["ratio_db"][0] > 20.0 and abs(res["ratio_db"][1]) < 3.0
    # the line power is the sinusoids' power (4.5 + 4.5) plus a little noise
    assert abs(res["power"][0] - 9.0) < 1.0
    empty = A.harmonic_power(f, p, 0.0, fmax=100.0)
    assert empty["harmonics"] == [] and np.isnan(empty["power"]).all()


def test_locked_average_matches_numpy_and_measures_the_noise():
    rng = np.random.default_rng(3)
    n = 50_000
    events = np.arange(500, n - 1000, 900)
    wave = np.hanning(300) * 20
    x = rng.standard_normal((2, n)) * 5
    for e in events:
        x[0, e:e + 300] += wave
    epochs = np.stack([x[:, e - 100:e + 400] for e in events], axis=1)
    epochs = epochs - epochs.mean(axis=-1, keepdims=True)
    # blocks longer and shorter than an epoch; float32 blocks are averaged to single precision. An event too
    # close to either end of the recording has no whole epoch and is left out
    for block, dtype, tol in [(1234, np.float64, 1e-9), (123, np.float64, 1e-9), (4096, np.float32, 1e-5)]:
        avg = A.LockedAverage(np.concatenate([[50], events, [n - 100]]), 2, 100, 400)
        for a in range(0, n, block):
            avg(a, x[:, a:a + block].astype(dtype))
        mean, var, count = avg.result()
        assert count == events.size
        np.testing.assert_allclose(mean, epochs.mean(axis=1), atol=tol * 5)
        np.testing.assert_allclose(var, epochs.var(axis=1, ddof=1), rtol=max(1e-6, tol * 10))
    # every third lag only (each epoch centred on those lags): the same as averaging the subsampled epochs, and
    # nearly the same power and noise as over all lags
    sub = A.LockedAverage(events, 2, 100, 400, lag_step=3)
    for a in range(0, n, 1234):
        sub(a, x[:, a:a + 1234])
    mean3, var3, count3 = sub.result()
    every3 = np.stack([x[:, e - 100:e + 400:3] for e in events], axis=1)
    every3 = every3 - every3.mean(axis=-1, keepdims=True)
    assert count3 == events.size and mean3.shape == (2, len(range(0, 500, 3)))
    np.testing.assert_allclose(mean3, every3.mean(axis=1), atol=1e-9)
    np.testing.assert_allclose(var3, every3.var(axis=1, ddof=1), rtol=1e-6)
    # epochs that overlap (events 300 samples apart, epochs of 500), blocks shorter than the lag step
    close = np.arange(500, 8000, 300)
    over = A.LockedAverage(close, 2, 100, 400, lag_step=3)
    for a in range(0, 9000, 2):
        over(a, x[:, a:a + 2])
    ref = np.stack([x[:, e - 100:e + 400:3] for e in close], axis=1)
    ref = ref - ref.mean(axis=-1, keepdims=True)
    mean_o, var_o, count_o = over.result()
    assert count_o == close.size and not over.partial
    np.testing.assert_allclose(mean_o, ref.mean(axis=1), atol=1e-9)
    np.testing.assert_allclose(var_o, ref.var(axis=1, ddof=1), rtol=1e-6)
    res3 = A.locked_power(mean3, var3, count3)
    res = A.locked_power(epochs.mean(axis=1), epochs.var(axis=1, ddof=1), events.size)
    np.testing.assert_allclose(res3["power_db"], res["power_db"], atol=0.3)
    np.testing.assert_allclose(res3["noise_db"], res["noise_db"], atol=0.3)
    assert res["ratio_db"][0] > 20.0  # a locked waveform: far above the averaging noise
    assert abs(res["ratio_db"][1]) < 3.0  # noise only: the average is at the noise level


def test_artefact_flags():
    assert A.artefact_flags(gradient_ratio_db=[30.0, 31.0, 2.0]) == {"gradient": True, "cardiac": None}
    assert A.artefact_flags(gradient_ratio_db=[1.0, 0.0]) == {"gradient": False, "cardiac": None}
    flags = A.artefact_flags(gradient_ratio_db=[None], cardiac_power_db=[30.0, 29.0], cardiac_ratio_db=[25.0, 20.0])
    assert flags == {"gradient": None, "cardiac": True}
    # a faint cardiac trace above the averaging noise but of a few microvolts is no pulse artefact
    assert A.artefact_flags(cardiac_power_db=[5.0], cardiac_ratio_db=[20.0])["cardiac"] is False


def test_harmonics_at_the_mains_frequency_are_measured_anyway():
    rng = np.random.default_rng(4)
    t = np.arange(60_000) / FS
    x = rng.standard_normal((1, t.size)) + 5 * np.sin(2 * np.pi * 50 * t)
    f, p = scipy.signal.welch(x, fs=FS, nperseg=1000)
    res = A.harmonic_power(f, p, 50.0, fmax=200.0)  # slices at 50 Hz: every harmonic is a mains harmonic
    assert res["mains_coincident"] and res["harmonics"] == [50.0, 100.0, 150.0, 200.0]
    assert res["ratio_db"][0] > 20.0
    assert not A.harmonic_power(f, p, 10.0, fmax=200.0)["mains_coincident"]
