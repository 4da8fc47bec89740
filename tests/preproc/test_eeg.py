"""Tests of spec2vol_bids.preproc.eeg against independent NumPy/SciPy oracles."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import scipy.stats

from spec2vol_bids.config import EEGConfig
from spec2vol_bids.errors import DataError, UsageError
from spec2vol_bids.preproc import eeg

SFREQ = 250.0
TR = 2.16  # NODDI: 540 samples per window, 249 bins up to 115 Hz
N_WIN = 540


def official_stft(x: np.ndarray, n: int) -> np.ndarray:
    """The official "STFT" written out plainly: [C, n_samples] -> [n_windows, C, 249].

    Consecutive rectangular windows of n samples from sample 0 (trailing partial window dropped), full-length
    complex FFT, keep bins 0..249, |.|, drop DC, then scipy.stats.zscore with its default axis=0 on
    [C, 249, n_windows] (each (freq, window) cell across electrodes).
    """
    n_windows = x.shape[1] // n
    out = np.empty((x.shape[0], 249, n_windows))
    for c in range(x.shape[0]):
        for w in range(n_windows):
            seg = x[c, w * n:(w + 1) * n]
            out[c, :, w] = np.abs(np.fft.fft(seg)[:250])[1:]
    z = scipy.stats.zscore(out)  # axis=0: electrodes
    return z.transpose(2, 0, 1)


@pytest.fixture(scope="module")
def rec():
    rng = np.random.default_rng(42)
    n_vol = 12
    x = rng.standard_normal((6, n_vol * N_WIN + 123)) * 1e-5  # trailing partial window
    t = np.arange(x.shape[1]) / SFREQ
    x[2] += 3e-5 * np.sin(2 * np.pi * 10.0 * t)  # alpha on one channel
    return x, n_vol


def test_default_equals_official_numpy(rec):
    x, n_vol = rec
    spec, freqs, valid = eeg.spectrogram_from_array(x, np.arange(n_vol) * TR, SFREQ, EEGConfig())
    ref = official_stft(x, N_WIN)  # [12, 6, 249]
    assert spec.dtype == np.float32 and spec.shape == ref.shape == (n_vol, 6, 249)
    assert valid.all()
    np.testing.assert_allclose(spec, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(freqs, np.arange(1, 250) / TR)


def test_windows_start_at_markers_when_eeg_starts_early(rec):
    x, n_vol = rec
    offset = 777  # EEG started 777 samples before the first volume
    onsets = offset / SFREQ + np.arange(n_vol - 2) * TR
    spec, _, valid = eeg.spectrogram_from_array(x, onsets, SFREQ, EEGConfig())
    ref = official_stft(x[:, offset:], N_WIN)[: n_vol - 2]
    assert valid.all()
    np.testing.assert_allclose(spec, ref, rtol=1e-5, atol=1e-5)


def test_window_by_window_equals_all_at_once_and_reads_in_bounds(rec):
    x, n_vol = rec
    onsets = 0.3 + np.arange(n_vol + 3) * TR  # last windows run past the end of the recording
    calls = []

    def reader(a, b):
        calls.append((a, b))
        assert 0 <= a < b <= x.shape[1]
        return x[:, a:b]

    cfg = EEGConfig(overlap=0.25, taper="hann")
    one, f1, v1 = eeg.spectrogram_from_reader(lambda a, b: x[:, a:b], onsets, SFREQ, x.shape[1], cfg,
                                              max_block_samples=10**9)
    many, f2, v2 = eeg.spectrogram_from_reader(reader, onsets, SFREQ, x.shape[1], cfg, max_block_samples=1)
    n_total = int(round(N_WIN / 0.75))
    assert len(calls) == v2.sum() and all(b - a == n_total for a, b in calls)  # one window per call
    np.testing.assert_array_equal(one, many)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(v1, v2)
    assert not v1[-3:].any() and not v1[0]  # past the end; first window extends before sample 0
    assert np.all(one[~v1] == 0)


def test_window_bounds_overlap_and_length():
    onsets = np.array([1.0, 3.0, 5.0])
    starts, stops, valid = eeg.window_bounds(onsets, 100.0, 600, 2.0)
    np.testing.assert_array_equal(starts, [100, 300, 500])
    np.testing.assert_array_equal(stops, [300, 500, 700])
    np.testing.assert_array_equal(valid, [True, True, False])
    starts, stops, valid = eeg.window_bounds(onsets, 100.0, 800, 2.0, overlap=0.5)
    # windows end where the core window ends and are twice as long: consecutive ones share half
    np.testing.assert_array_equal(stops, [300, 500, 700])
    np.testing.assert_array_equal(starts, [-100, 100, 300])
    shared = stops[0] - starts[1]
    assert shared == 0.5 * (stops[0] - starts[0])
    np.testing.assert_array_equal(valid, [False, True, True])
    starts, stops, _ = eeg.window_bounds(onsets, 100.0, 800, 0.5)  # shorter window leaves gaps
    np.testing.assert_array_equal(stops - starts, [50, 50, 50])
    np.testing.assert_array_equal(starts, [100, 300, 500])


def test_window_length_option_changes_resolution(rec):
    x, n_vol = rec
    cfg = EEGConfig(window_length=4.0, n_freqs=100, scaling="none")
    spec, freqs, valid = eeg.spectrogram_from_array(x, np.arange(n_vol) * TR, SFREQ, cfg, tr=TR)
    np.testing.assert_allclose(freqs, np.arange(1, 101) / 4.0)
    k = 3
    seg = x[:, int(round(k * TR * SFREQ)):int(round(k * TR * SFREQ)) + 1000]
    np.testing.assert_allclose(spec[k], np.abs(np.fft.fft(seg, axis=1))[:, 1:101], rtol=1e-5)
    assert not valid[-1] and valid[:-2].all()  # 4 s windows from the last onsets overrun the recording


@pytest.mark.parametrize("taper, win", [
    ("hann", lambda n: scipy.signal.windows.hann(n, sym=False)),
    ("hamming", lambda n: scipy.signal.windows.hamming(n, sym=False)),
    ("tukey", lambda n: scipy.signal.windows.tukey(n, 0.5, sym=False)),
])
def test_tapers_multiply_the_segment(taper, win):
    rng = np.random.default_rng(1)
    seg = rng.standard_normal((3, N_WIN))
    got = eeg.window_spectrum(seg, SFREQ, EEGConfig(taper=taper))
    ref = np.abs(np.fft.fft(seg * win(N_WIN), axis=1))[:, 1:250]
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_hann_reduces_leakage():
    t = np.arange(N_WIN) / SFREQ
    seg = np.sin(2 * np.pi * 20.3 * t)[None]  # between bins (bin spacing 1/2.16 Hz)
    far = (np.arange(1, 250) / TR > 60)
    box = eeg.window_spectrum(seg, SFREQ, EEGConfig())[0]
    hann = eeg.window_spectrum(seg, SFREQ, EEGConfig(taper="hann"))[0]
    assert hann[far].max() < 0.01 * box[far].max()


def test_hz_axis_is_common_across_datasets():
    cfg = EEGConfig(frequency_axis="hz", fmin=1.0, fmax=40.0, n_freqs=79, scaling="none")
    peaks, axes = [], []
    for sfreq, tr in ((250.0, 2.16), (1000.0, 2.0), (500.0, 1.28)):
        n = int(round(tr * sfreq))
        t = np.arange(5 * n) / sfreq
        x = np.vstack([np.sin(2 * np.pi * 12.5 * t), np.cos(2 * np.pi * 30.0 * t)])
        spec, freqs, _ = eeg.spectrogram_from_array(x, np.arange(5) * tr, sfreq, cfg)
        axes.append(freqs)
        peaks.append([freqs[spec[2, c].argmax()] for c in range(2)])
    np.testing.assert_array_equal(axes[0], np.linspace(1, 40, 79))
    for p in peaks:
        np.testing.assert_allclose(p, [12.5, 30.0], atol=0.5)
    # interpolation between bins: a value equals the linear interpolation of the |FFT| of neighbours
    x = np.random.default_rng(3).standard_normal((2, 640))
    got = eeg.window_spectrum(x, 500.0, cfg)
    mag = np.abs(np.fft.rfft(x, axis=1))
    ref = np.vstack([np.interp(cfg_f, np.fft.rfftfreq(640, 1 / 500.0), m)
                     for m, cfg_f in zip(mag, [np.linspace(1, 40, 79)] * 2)])
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_log_power_is_decibels(rec):
    x, n_vol = rec
    onsets = np.arange(n_vol) * TR
    lin, _, _ = eeg.spectrogram_from_array(x, onsets, SFREQ, EEGConfig(scaling="none"))
    db, _, _ = eeg.spectrogram_from_array(x, onsets, SFREQ, EEGConfig(scaling="none", log_power=True))
    np.testing.assert_allclose(db, 10 * np.log10(lin.astype(float) ** 2), rtol=1e-5, atol=1e-4)


def test_scalings(rec):
    x, n_vol = rec
    onsets = np.arange(n_vol) * TR
    raw, _, _ = eeg.spectrogram_from_array(x, onsets, SFREQ, EEGConfig(scaling="none"))
    ch, _, _ = eeg.spectrogram_from_array(x, onsets, SFREQ, EEGConfig(scaling="zscore-channel"))
    np.testing.assert_allclose(ch.mean(axis=(0, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(ch.std(axis=(0, 2)), 1, atol=1e-5)
    ref = (raw - raw.mean(axis=(0, 2), keepdims=True)) / raw.std(axis=(0, 2), keepdims=True)
    np.testing.assert_allclose(ch, ref, rtol=1e-4, atol=1e-4)
    unscaled, _, _ = eeg.spectrogram_from_array(x, onsets, SFREQ, EEGConfig(), scale=False)
    np.testing.assert_array_equal(unscaled, raw)
    el = eeg.scale_spectrogram(raw, "zscore-electrodes")
    np.testing.assert_allclose(el, scipy.stats.zscore(raw.astype(float), axis=1), rtol=1e-4, atol=1e-4)
    # invalid rows are excluded from the statistics and stay 0
    valid = np.ones(n_vol, bool)
    valid[:3] = False
    part = eeg.scale_spectrogram(raw, "zscore-channel", valid=valid)
    assert np.all(part[:3] == 0)
    np.testing.assert_allclose(part[3:], eeg.scale_spectrogram(raw[3:], "zscore-channel"), atol=1e-6)
    # a constant cell (all electrodes equal) becomes 0, never NaN
    flat = np.ones((2, 4, 5))
    assert np.all(eeg.scale_spectrogram(flat, "zscore-electrodes") == 0)
    with pytest.raises(UsageError):
        eeg.scale_spectrogram(raw, "robust")


def test_nan_names_channel_and_time(rec):
    x, n_vol = rec
    bad = x.copy()
    bad[4, 1500] = np.nan
    bad[1, 2000] = np.inf
    with pytest.raises(DataError, match=r"channel O2 .* 6\.000 s \(sample 1500\)"):
        eeg.spectrogram_from_array(bad, np.arange(n_vol) * TR, SFREQ, EEGConfig(),
                                   channel_names=["Fp1", "Fp2", "Cz", "Pz", "O2", "ECG"])


def test_select_channels():
    names = ["Fp1", "Fp2", "ECG", "Cz", "HEOG"]
    types = ["EEG", "EEG", "ECG", "eeg", "EOG"]
    np.testing.assert_array_equal(eeg.select_channels(names, types, EEGConfig()), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(
        eeg.select_channels(names, types, EEGConfig(exclude_types=("ecg", "EOG"))), [0, 1, 3])
    np.testing.assert_array_equal(
        eeg.select_channels(names, types, EEGConfig(include=("Cz", "Fp1", "ECG"), exclude=("ECG",))), [3, 0])
    with pytest.raises(DataError, match="Oz"):
        eeg.select_channels(names, types, EEGConfig(include=("Oz",)))
    with pytest.raises(DataError, match="no EEG channel"):
        eeg.select_channels(names, types, EEGConfig(exclude=tuple(names)))
    with pytest.raises(DataError, match="types"):
        eeg.select_channels(names, None, EEGConfig(exclude_types=("ECG",)))


def test_errors_and_progress(rec):
    x, n_vol = rec
    onsets = np.arange(n_vol) * TR
    with pytest.raises(DataError, match="frequency bins"):
        eeg.spectrogram_from_array(x[:, :1000], np.arange(3) * 0.4, SFREQ, EEGConfig())  # 100-sample windows
    with pytest.raises(DataError, match="fmax"):
        eeg.frequency_axis(500, 250.0, EEGConfig(frequency_axis="hz", fmax=130.0))
    with pytest.raises(DataError, match="inside the EEG"):
        eeg.spectrogram_from_array(x, 1000 + onsets, SFREQ, EEGConfig())
    with pytest.raises(DataError, match="strictly increasing"):
        eeg.window_bounds([0.0, 2.0, 2.0], SFREQ, 10_000, TR)
    with pytest.raises(DataError, match="repetition time"):
        eeg.spectrogram_from_array(x, [0.0], SFREQ, EEGConfig())
    seen = []
    eeg.spectrogram_from_reader(lambda a, b: x[:, a:b], onsets, SFREQ, x.shape[1], EEGConfig(),
                                progress=lambda d, t: seen.append((d, t)), max_block_samples=3 * N_WIN)
    assert seen[-1] == (n_vol, n_vol) and len(seen) == 4


def test_scaling_in_row_chunks_matches_whole_array_statistics(monkeypatch):
    rng = np.random.default_rng(9)
    spec = rng.gamma(2.0, size=(150, 5, 7)) * rng.uniform(0.5, 3, size=(1, 5, 1))
    valid = rng.random(150) > 0.2
    ref_ch = np.zeros_like(spec)
    v = spec[valid]
    ref_ch[valid] = (v - v.mean(axis=(0, 2), keepdims=True)) / v.std(axis=(0, 2), keepdims=True)
    ref_el = np.zeros_like(spec)
    ref_el[valid] = scipy.stats.zscore(v, axis=1)
    monkeypatch.setattr(eeg, "ROW_CHUNK", 16)  # several chunks
    before = spec.copy()
    np.testing.assert_allclose(eeg.scale_spectrogram(spec, "zscore-channel", valid=valid), ref_ch, atol=1e-5)
    np.testing.assert_allclose(eeg.scale_spectrogram(spec, "zscore-electrodes", valid=valid), ref_el, atol=1e-5)
    np.testing.assert_array_equal(spec, before)  # input untouched


def test_progress_bar(rec, capsys):
    x, n_vol = rec
    eeg.spectrogram_from_array(x, np.arange(n_vol) * TR, SFREQ, EEGConfig(), progress=True)
    err = capsys.readouterr().err
    assert "EEG spectrogram" in err and f"0/{n_vol} " in err and "window" in err  # total = valid windows
