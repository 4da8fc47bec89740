"""End to end: the default settings give the official training arrays x [N, 20, C, 249], y [N, D, X, Y].

The oracle is a straightforward NumPy re-implementation of the official steps (reference-implementation.md
§1.5): rectangular TR windows from sample 0, full-length FFT, bins 1..249, |.|, z-score across electrodes;
drop the first 6 TRs of both modalities; windows i..i+19 -> volume i+20; per-volume DCT truncation and min-max;
volumes transposed to [D, X, Y].
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from spec2vol_bids.config import BOLDConfig, PreprocConfig
from spec2vol_bids.preproc.eeg import spectrogram_from_array
from spec2vol_bids.preproc.fmri import bold_target
from spec2vol_bids.preproc.pairs import pairs_for_config

from .test_fmri import official_dct_downsample


def official_arrays(eeg: np.ndarray, bold: np.ndarray, n_win: int, shape):
    n_vol = bold.shape[3]
    spec = np.empty((eeg.shape[0], 249, n_vol))  # [C, F, n_windows], as in utils.stft
    for c in range(eeg.shape[0]):
        for w in range(n_vol):
            spec[c, :, w] = np.abs(np.fft.fft(eeg[c, w * n_win:(w + 1) * n_win])[:250])[1:]
    spec = scipy.stats.zscore(spec)  # default axis=0: across electrodes
    spec = spec[:, :, 6:].transpose(2, 0, 1)  # drop 6 -> [n_windows - 6, C, F]
    vols = []
    for t in range(6, n_vol):  # drop the same 6 volumes
        v = official_dct_downsample(bold[..., t], shape)
        vols.append(((v - v.min()) / (v.max() - v.min())).transpose(2, 0, 1))  # [D, X, Y]
    vols = np.stack(vols)
    x = np.stack([spec[i:i + 20] for i in range(len(spec) - 20)])  # [N, 20, C, 249]
    y = vols[20:]  # [N, D, X, Y]
    return x, y


@pytest.mark.slow
def test_default_pipeline_equals_official_arrays():
    rng = np.random.default_rng(7)
    sfreq, tr, n_vol = 250.0, 2.16, 30
    n_win = 540
    eeg = rng.standard_normal((5, n_vol * n_win + 17))
    bold = 100 + 20 * rng.random((20, 20, 10, n_vol))
    cfg = PreprocConfig(bold=BOLDConfig(grid=12, n_slices=6))  # small grid; every other setting default
    x_ref, y_ref = official_arrays(eeg, bold, n_win, (12, 12, 6))

    spec, _, valid = spectrogram_from_array(eeg, np.arange(n_vol) * tr, sfreq, cfg.eeg)
    windows, targets = pairs_for_config(n_vol, valid, tr, cfg.pairing)
    target = bold_target(bold, np.eye(4), cfg.bold)
    x = spec[windows]  # [N, 20, C, 249]
    y = target.data[..., targets].transpose(3, 2, 0, 1)  # [N, D, X, Y] (CONTRIBUTING: vol.transpose(2, 0, 1))

    assert x.shape == x_ref.shape == (4, 20, 5, 249)
    assert y.shape == y_ref.shape == (4, 6, 12, 12)
    np.testing.assert_allclose(x, x_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
