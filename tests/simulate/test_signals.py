"""Building blocks of the simulator against closed forms and independent estimates."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps
from scipy.stats import gamma

from spec2vol_bids.errors import UsageError
from spec2vol_bids.simulate import PRESETS, get_preset
from spec2vol_bids.simulate.presets import electrode_names
from spec2vol_bids.simulate.signals import (
    EEGRun,
    SourcePower,
    bold_regressors,
    canonical_hrf,
    make_source_power,
    make_timing,
    scalp_patterns,
    smooth_process,
    spatial_mixing,
    stream_rng,
)


def test_canonical_hrf_shape():
    dt = 0.01
    h = canonical_hrf(dt)
    t = np.arange(h.size) * dt
    assert h.sum() == pytest.approx(1.0)
    assert t[np.argmax(h)] == pytest.approx(5.0, abs=0.02)  # mode of G(6, 1)
    assert t[np.argmin(h)] == pytest.approx(15.75, abs=0.5)  # undershoot
    ref = gamma.pdf(t, 6) - gamma.pdf(t, 16) / 6
    np.testing.assert_allclose(h, ref / ref.sum())


def test_smooth_process_moments_and_timescale():
    rng = np.random.default_rng(1)
    x = smooth_process(rng, 20000, 0.1, 3.0)
    assert x.mean() == pytest.approx(0.0, abs=1e-12) and x.std() == pytest.approx(1.0)
    # Gaussian kernel of sigma s: autocorrelation exp(-lag^2 / (4 s^2)); at lag 3 s: exp(-1/4)
    lag = 30
    r = np.corrcoef(x[:-lag], x[lag:])[0, 1]
    assert r == pytest.approx(np.exp(-0.25), abs=0.08)


def test_streams_are_independent_and_reproducible():
    a = stream_rng(0, 1, 2).standard_normal(5)
    np.testing.assert_array_equal(a, stream_rng(0, 1, 2).standard_normal(5))
    assert not np.allclose(a, stream_rng(0, 2, 1).standard_normal(5))
    assert not np.allclose(a, stream_rng(1, 1, 2).standard_normal(5))


def test_electrodes_and_patterns():
    names = electrode_names(16)
    assert names[:4] == ["Fz", "Cz", "Pz", "Oz"] and len(set(names)) == 16
    assert len(electrode_names(63)) == 63 and "FCz" in electrode_names(74)
    pat = scalp_patterns(names, ["Pz", "Fz"])
    assert pat.shape == (16, 2) and pat.max() == pytest.approx(1.0)
    assert names[int(np.argmax(pat[:, 0]))] == "Pz" and names[int(np.argmax(pat[:, 1]))] == "Fz"
    assert pat[names.index("Oz"), 0] > pat[names.index("Fp1"), 0]  # smooth: decays with distance
    mix = spatial_mixing(names)
    np.testing.assert_allclose(np.linalg.norm(mix, axis=1), 1.0)
    cov = mix @ mix.T  # covariance of the mixed background (unit white input)
    assert cov[names.index("Cz"), names.index("Pz")] > 5 * cov[names.index("Fp1"), names.index("Oz")]


def test_timing_lead_in_and_markers():
    p = PRESETS["tiny"]
    tm = make_timing(p, stream_rng(0, 1))
    assert p.lead_in[0] <= tm.first_volume_onset <= p.lead_in[1]
    assert tm.samples_per_tr == 500 and tm.tr == 2.0
    np.testing.assert_array_equal(np.diff(tm.volume_samples), 500)
    assert tm.n_samples == tm.volume_samples[-1] + 500 + int(p.lead_out * p.sfreq)


def test_bold_regressors_are_hrf_convolved_power():
    times = np.arange(-40.0, 200.0, 0.1)
    lp = np.zeros((1, times.size))
    lp[0, (times >= 50.0) & (times < 51.0)] = np.log(11.0)  # power 11 for one second, 1 elsewhere
    power = SourcePower(times=times, log_power=lp)
    acq = np.arange(0.0, 120.0, 1.0)
    raw, z = bold_regressors(power, acq)
    # closed form: 1 (baseline, unit-sum HRF) + 10 * integral of the HRF over the pulse
    h = canonical_hrf(0.1)
    expected = 1.0 + 10.0 * np.array([h[max(0, int(round((a - 51.0) / 0.1))) + 1:
                                        max(0, int(round((a - 50.0) / 0.1))) + 1].sum() for a in acq])
    np.testing.assert_allclose(raw[:, 0], expected, atol=2e-3)
    assert acq[np.argmax(raw[:, 0])] == pytest.approx(55.5, abs=1.0)  # peak ~5 s after the pulse
    assert z.mean() == pytest.approx(0.0, abs=1e-12) and z.std() == pytest.approx(1.0)


def _eeg(preset_name: str, **changes):
    p = get_preset(preset_name).replace(**changes) if changes else get_preset(preset_name)
    names = electrode_names(p.n_eeg)
    tm = make_timing(p, stream_rng(0, 1))
    pw = make_source_power(p, tm, stream_rng(0, 2), stream_rng(0, 3))
    pat = scalp_patterns(names, [b.scalp_centre for b in p.bands])
    gen = EEGRun(p, names, tm, pw, pat, 0, (1, 1, 0, 1))
    return p, names, tm, pw, np.hstack(list(gen.iter_blocks())).astype(np.float64)


def test_eeg_spectrum_background_line_and_sources():
    p, names, tm, _, x = _eeg("tiny", n_volumes=60)
    assert x.shape == (p.n_channels, tm.n_samples)
    f, pxx = sps.welch(x, fs=p.sfreq, nperseg=1000)  # (C, F)
    mean = pxx.mean(axis=0)
    # 1/f background: log-log slope about -1 between 50 and 120 Hz, away from sources and line noise
    band = (f > 55) & (f < 120)
    slope = np.polyfit(np.log(f[band]), np.log(mean[band]), 1)[0]
    assert -1.6 < slope < -0.6
    # line noise: a narrow peak at PowerLineFrequency
    i50 = np.argmin(np.abs(f - p.line_freq))
    assert mean[i50] > 20 * np.median(mean[(f > 45) & (f < 55) & (np.abs(f - 50) > 1)])
    # the alpha source peaks at its scalp centre (Pz) in 8-13 Hz relative to the frontal pole
    alpha = (f >= 8) & (f < 13)
    pz, fp1 = names.index("Pz"), names.index("Fp1")
    assert pxx[pz, alpha].mean() > 3 * pxx[fp1, alpha].mean()
    assert 5 < x.std() < 60  # microvolts


def test_eeg_band_power_follows_the_source_power():
    p, names, tm, pw, x = _eeg("tiny", n_volumes=60)
    k = [b.name for b in p.bands].index("alpha")
    sos = sps.butter(4, [8, 13], btype="bandpass", fs=p.sfreq, output="sos")
    y = sps.sosfiltfilt(sos, x[names.index("Pz")])
    starts = tm.volume_onsets
    n = tm.samples_per_tr
    measured = np.array([np.mean(y[tm.volume_samples[i]:tm.volume_samples[i] + n] ** 2) for i in range(60)])
    truth = pw.mean_power(starts, tm.tr)[:, k]
    assert np.corrcoef(np.log(measured), np.log(truth))[0, 1] > 0.8


def test_eeg_blocks_do_not_depend_on_previous_calls():
    *_, a = _eeg("tiny", n_volumes=8)
    *_, b = _eeg("tiny", n_volumes=8)
    np.testing.assert_array_equal(a, b)


def test_ecg_gradient_and_events():
    p, names, tm, pw, x = _eeg("oddball-like", n_volumes=20, ecg=True, n_eeg=8)
    assert x.shape[0] == 9
    ecg = x[-1]
    # R peaks: 60-75 beats per minute
    peaks, _ = sps.find_peaks(ecg, height=0.5 * ecg.max(), distance=int(0.4 * p.sfreq))
    bpm = 60.0 / np.median(np.diff(peaks)) * p.sfreq
    assert 55 < bpm < 80
    assert pw.events and {c for _, c in pw.events} <= {1, 2}
    onsets = np.array([o for o, _ in pw.events])
    assert onsets.min() >= tm.first_volume_onset and np.all(np.diff(onsets) >= 2.0 - 1e-9)
    # gradient residue: power at the slice frequency during scanning, none before the first volume
    f_slice = p.grid[2] / p.tr
    seg_scan = x[0, tm.first_volume:tm.first_volume + 4 * tm.samples_per_tr]
    seg_pre = x[0, :tm.first_volume]
    f1, p1 = sps.welch(seg_scan, fs=p.sfreq, nperseg=2000)
    f0, p0 = sps.welch(seg_pre, fs=p.sfreq, nperseg=min(2000, seg_pre.size))
    assert np.interp(f_slice, f1, p1) > 10 * np.interp(f_slice, f0, p0)


def test_preset_checks():
    with pytest.raises(UsageError, match="whole number of samples"):
        get_preset("tiny").replace(tr=2.0013)
    with pytest.raises(UsageError, match="between 1 and 74"):
        get_preset("tiny").replace(n_eeg=80)
    with pytest.raises(UsageError, match="too low"):
        get_preset("tiny").replace(sfreq=80.0, tr=2.0)
    for preset in PRESETS.values():
        assert preset.check() is preset
        assert preset.tr * preset.sfreq >= 500  # 249 FFT bins of the official pipeline


def test_noise_gain_matches_filtered_white_noise():
    from spec2vol_bids.simulate.signals import _PINK_A, _PINK_B, _noise_gain

    white = np.random.default_rng(3).standard_normal(400_000)
    sos = sps.butter(4, [8, 13], btype="bandpass", fs=250.0, output="sos")
    assert sps.sosfilt(sos, white).std() == pytest.approx(_noise_gain(sos), rel=0.03)
    assert sps.lfilter(_PINK_B, _PINK_A, white).std() == pytest.approx(_noise_gain(None, _PINK_B, _PINK_A),
                                                                       rel=0.03)
