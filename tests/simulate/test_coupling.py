"""The simulated BOLD is driven by the simulated EEG, and only through the documented coupling.

Oracles are independent of the simulator's code: the HRF is rebuilt here from scipy's gamma density, band power
and the official features (|FFT| of TR windows, z-scored across electrodes) are computed here from the EEG file
read by MNE, and the BOLD is read from the raw dataset.
"""

from __future__ import annotations

import json

import mne
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.stats import gamma

from spec2vol_bids.simulate import PRESETS, SIMULATION_DIR
from spec2vol_bids.simulate.dataset import BOLD_AMPLITUDE

TINY = PRESETS["tiny"]
SKIP = 10  # volumes whose HRF history starts before the EEG recording


def _hrf(dt: float) -> np.ndarray:
    t = np.arange(0.0, 32.0, dt)
    h = gamma.pdf(t, 6.0) - gamma.pdf(t, 16.0) / 6.0
    return h / h.sum()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a[SKIP:], b[SKIP:])[0, 1])


def _load(root, sub):
    deriv = root / SIMULATION_DIR / f"sub-{sub}" / "func"
    params = json.loads((deriv / f"sub-{sub}_task-rest_desc-simulation_params.json").read_text())
    raw = mne.io.read_raw_brainvision(root / f"sub-{sub}/eeg/sub-{sub}_task-rest_eeg.vhdr", verbose="error")
    bold = np.asanyarray(nib.load(root / f"sub-{sub}/func/sub-{sub}_task-rest_bold.nii.gz").dataobj)
    maps = nib.load(deriv / f"sub-{sub}_desc-sources_map.nii.gz").get_fdata()
    return params, raw, bold.astype(np.float64), maps


def _window_spectra(raw):
    """|FFT| of the TR-long windows starting at each R128 marker: (V, C, F) and the frequencies."""
    sf = raw.info["sfreq"]
    r128 = raw.annotations[raw.annotations.description == "Response/R128"]
    starts = np.round(r128.onset * sf).astype(int)
    n = int(round(TINY.tr * sf))
    data = raw.get_data() * 1e6
    win = np.stack([data[:, s:s + n] for s in starts])  # (V, C, n)
    spec = np.abs(np.fft.rfft(win, axis=2))[:, :, 1:]  # (V, C, F), DC dropped
    return spec, np.fft.rfftfreq(n, 1.0 / sf)[1:]


def test_noisefree_bold_is_linear_in_hrf_convolved_power(tiny_bids):
    """Noise-free BOLD = baseline x (1 + A sum_k sign_k map_k r_k): exact fit, coefficients recover the maps."""
    sub = "02"
    deriv = tiny_bids / SIMULATION_DIR / f"sub-{sub}" / "func"
    nf = nib.load(deriv / f"sub-{sub}_task-rest_desc-noisefree_bold.nii.gz").get_fdata()  # (X, Y, Z, V)
    maps = nib.load(deriv / f"sub-{sub}_desc-sources_map.nii.gz").get_fdata()  # (X, Y, Z, K)
    mask = nib.load(deriv / f"sub-{sub}_task-rest_desc-brain_mask.nii.gz").get_fdata() > 0
    ts = pd.read_csv(deriv / f"sub-{sub}_task-rest_desc-sources_timeseries.tsv", sep="\t")
    reg = ts[[f"{b.name}_hrf" for b in TINY.bands]].to_numpy()  # (V, K)
    design = np.column_stack([np.ones(len(reg)), reg])  # (V, 1 + K)
    y = nf[mask].T  # (V, N)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    r2 = 1.0 - resid.var(axis=0) / y.var(axis=0)
    assert np.median(r2) > 0.9999 and r2.min() > 0.999
    signs = np.array([b.bold_sign for b in TINY.bands])
    rel = coef[1:] / coef[0]  # (K, N): A sign_k map_k
    np.testing.assert_allclose(rel, BOLD_AMPLITUDE * signs[:, None] * maps[mask].T, atol=1e-4)
    # at each map's peak voxel, the source's regressor dominates its time course
    for k, band in enumerate(TINY.bands):
        peak = np.unravel_index(np.argmax(maps[..., k]), maps.shape[:3])
        assert band.bold_sign * _corr(nf[peak], reg[:, k]) > 0.6


@pytest.mark.parametrize("features", ["band_power", "official_zscored"])
def test_eeg_band_power_predicts_measured_bold(tiny_bids, features):
    """From the EEG file alone: HRF-convolved band power at the source's electrode tracks the BOLD of its map;
    shuffling the EEG windows in time destroys the relation."""
    rng = np.random.default_rng(0)
    observed, null = [], []
    for sub in ("01", "02", "03", "04"):
        params, raw, bold, maps = _load(tiny_bids, sub)
        spec, freqs = _window_spectra(raw)
        if features == "official_zscored":  # z-scored across electrodes per (window, frequency) cell
            spec = (spec - spec.mean(axis=1, keepdims=True)) / spec.std(axis=1, keepdims=True)
        h = _hrf(TINY.tr)
        for k, src in enumerate(params["Sources"]):
            lo, hi = src["band_hz"]
            sel = (freqs >= lo) & (freqs < hi)
            ch = int(np.argmax([params["ScalpPatterns"][c][k] for c in raw.ch_names]))
            x = spec[:, ch, sel].mean(axis=1)  # (V,)
            inside = maps[..., k] > 0
            top = maps[..., k] >= np.quantile(maps[..., k][inside], 0.9)
            y = bold[top].mean(axis=0)  # (V,) measured BOLD of the map's core
            sign = src["bold_sign"]
            observed.append(sign * _corr(np.convolve(x, h)[: x.size], y))
            for _ in range(20):
                xs = rng.permutation(x)
                null.append(sign * _corr(np.convolve(xs, h)[: xs.size], y))
    observed, null = np.asarray(observed), np.asarray(null)
    assert observed.min() > 0.5, observed
    assert np.median(observed) > 0.7
    assert abs(null.mean()) < 0.1 and np.median(np.abs(null)) < 0.25
    assert np.mean(observed[:, None] > null[None, :]) > 0.98


def test_measured_bold_depends_on_the_eeg_of_its_own_run(tiny_bids):
    """Swapping subjects breaks the relation: EEG power of one subject does not predict another's BOLD."""
    _, raw1, _, maps = _load(tiny_bids, "01")
    _, _, bold2, _ = _load(tiny_bids, "02")
    _, _, bold1, _ = _load(tiny_bids, "01")
    spec, freqs = _window_spectra(raw1)
    sel = (freqs >= 8) & (freqs < 13)
    x = np.convolve(spec[:, raw1.ch_names.index("Pz"), sel].mean(axis=1), _hrf(TINY.tr))[: spec.shape[0]]
    top = maps[..., 1] >= np.quantile(maps[..., 1][maps[..., 1] > 0], 0.9)
    own, other = _corr(x, bold1[top].mean(0)), _corr(x, bold2[top].mean(0))
    assert own < -0.6  # alpha power is anti-correlated with BOLD in its (occipital) map
    assert abs(other) < abs(own) - 0.3


def _official_band_features(raw) -> np.ndarray:
    """Official features (|FFT| of TR windows at the markers, z-scored across electrodes per (window, frequency)
    cell), averaged within the four source bands: (V, C, 4)."""
    spec, freqs = _window_spectra(raw)
    spec = spec[:, :, :249]
    freqs = freqs[:249]
    z = (spec - spec.mean(axis=1, keepdims=True)) / spec.std(axis=1, keepdims=True)
    return np.stack([z[:, :, (freqs >= b.low) & (freqs < b.high)].mean(axis=2) for b in TINY.bands], axis=2)


def _pairs(feats: np.ndarray, vols: np.ndarray, discard: int = 6, n_win: int = 20):
    """Official pairing: windows i..i+19 -> volume i+20 after discarding the first 6 volumes."""
    idx = range(discard, feats.shape[0] - n_win)
    return (np.stack([feats[i:i + n_win].ravel() for i in idx]),
            np.stack([vols[i + n_win].ravel() for i in idx]))


def test_a_linear_model_learns_the_coupling_across_subjects(tiny_bids):
    """Leave-one-subject-out ridge regression from the preceding 20 windows of official features to the
    (per-volume min-max scaled) measured BOLD beats the same model trained on time-shuffled EEG."""
    from spec2vol_bids.train.metrics import dynamic_correlation

    subs = ("01", "02", "03", "04")
    feats, vols, masks = {}, {}, {}
    for sub in subs:
        _, raw, bold, _ = _load(tiny_bids, sub)
        feats[sub] = _official_band_features(raw)
        b = bold.transpose(3, 2, 0, 1)  # (V, Z, X, Y)
        lo, hi = b.min(axis=(1, 2, 3), keepdims=True), b.max(axis=(1, 2, 3), keepdims=True)
        vols[sub] = (b - lo) / (hi - lo)
        mask = tiny_bids / SIMULATION_DIR / f"sub-{sub}/func/sub-{sub}_task-rest_desc-brain_mask.nii.gz"
        masks[sub] = nib.load(mask).get_fdata().transpose(2, 0, 1) > 0

    def loso(test: str, shuffle: bool) -> float:
        rng = np.random.default_rng(0)
        xs, ys = [], []
        for sub in subs:
            if sub != test:
                f = feats[sub][rng.permutation(len(feats[sub]))] if shuffle else feats[sub]
                x, y = _pairs(f, vols[sub])
                xs.append(x)
                ys.append(y)
        x_tr, y_tr = np.concatenate(xs), np.concatenate(ys)
        x_te, y_te = _pairs(feats[test], vols[test])
        mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-9
        x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
        y_mean = y_tr.mean(0)
        alpha = np.linalg.solve(x_tr @ x_tr.T + 1e4 * np.eye(len(x_tr)), y_tr - y_mean)  # kernel ridge (dual)
        pred = x_te @ (x_tr.T @ alpha) + y_mean
        shape = vols[test].shape[1:]
        return dynamic_correlation(pred.reshape(-1, *shape), y_te.reshape(-1, *shape), masks[test])

    for test in ("01", "04"):
        real, shuffled = loso(test, False), loso(test, True)
        assert real > 0.12, (test, real)
        assert abs(shuffled) < 0.1, (test, shuffled)
        assert real > shuffled + 0.1
