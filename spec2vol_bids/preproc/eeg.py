"""EEG -> volume-locked spectrogram: windows at the BOLD volume onsets, one ``|FFT|`` row per volume.

Pure NumPy/SciPy: arrays (or a segment-reading callable) in, arrays out; no file I/O, no MNE, no nipype.

The spectrogram has shape ``[n_volumes, n_channels, n_freqs]`` and **one row per BOLD volume**: row ``k`` is the
spectrum of the EEG window anchored at volume ``k``'s onset (CONTRIBUTING.md, spectrogram derivative). With the
default :class:`~spec2vol_bids.config.EEGConfig` (the official pipeline) that window is ``[onset_k, onset_k + TR)``,
rectangular, its full-length FFT is taken, bins ``1..249`` are kept as ``|X|`` and every (window, frequency) cell
is z-scored across electrodes.

Long recordings (5 kHz, tens of minutes) are never loaded as one array: :func:`spectrogram_from_reader` asks
a ``read_segment(start, stop)`` callable for a few windows at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..config import SETTING_OPTIONS, option_name
from ..errors import DataError, UsageError

__all__ = [
    "window_samples",
    "window_bounds",
    "frequency_axis",
    "taper_window",
    "window_spectrum",
    "select_channels",
    "check_finite",
    "spectrogram_from_reader",
    "spectrogram_from_array",
    "scale_spectrogram",
    "estimate_tr",
]

#: added to the power before taking decibels, so silent (all-zero) segments give a finite value
LOG_EPS = 1e-30
#: upper bound on samples per channel read in one call of ``read_segment`` (several windows at a time)
MAX_BLOCK_SAMPLES = 1 << 17
#: windows transformed together (bounds the float64/complex temporaries to a few windows)
FFT_BATCH = 8


def estimate_tr(volume_onsets) -> float:
    """Median spacing of the volume onsets in seconds (the repetition time)."""
    onsets = np.asarray(volume_onsets, dtype=float)
    if onsets.size < 2:
        raise DataError(f"cannot infer the repetition time from {onsets.size} volume onset(s)",
                        hint="Pass tr= explicitly (RepetitionTime from the BOLD sidecar).")
    return float(np.median(np.diff(onsets)))


def window_samples(sfreq: float, tr: float, window_length: float | None = None,
                   overlap: float = 0.0) -> tuple[int, int]:
    """Core and total window length in samples.

    Parameters
    ----------
    sfreq : float
        EEG sampling frequency in Hz.
    tr : float
        Repetition time in seconds (the core length when ``window_length`` is ``None``).
    window_length : float or None
        Core window length in seconds (``None``: one TR).
    overlap : float
        Fraction in ``[0, 1)`` by which the window is extended backwards (see
        :class:`~spec2vol_bids.config.EEGConfig`).

    Returns
    -------
    n_core, n_total : int
        ``round(core * sfreq)`` and ``round(n_core / (1 - overlap))``.
    """
    core = float(tr) if window_length is None else float(window_length)
    if not (np.isfinite(sfreq) and sfreq > 0):
        raise DataError(f"EEG sampling frequency {sfreq!r} Hz is not a positive number",
                        hint="Check SamplingFrequency of the EEG recording.")
    if not (np.isfinite(core) and core > 0):
        raise DataError(f"window length {core!r} s is not a positive number",
                        hint=f"Check the repetition time or {option_name('eeg.window_length')}.")
    if not 0 <= overlap < 1:
        raise UsageError(f"{option_name('eeg.overlap')} = {overlap} is outside [0, 1)",
                         hint="Use a fraction such as 0.5.")
    n_core = int(np.rint(core * sfreq))
    n_total = int(np.rint(n_core / (1.0 - overlap)))
    if n_core < 2:
        raise DataError(f"a {core:g} s window at {sfreq:g} Hz holds {n_core} sample(s)",
                        hint=f"Use a longer {option_name('eeg.window_length')}.")
    return n_core, n_total


def window_bounds(volume_onsets, sfreq: float, n_samples: int, window_length: float, *,
                  overlap: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample bounds of the EEG window of every volume.

    The window of volume ``k`` is ``[stop_k - n_total, stop_k)`` with ``stop_k = round(onset_k * sfreq) + n_core``
    (``n_core = round(window_length * sfreq)``, ``n_total = round(n_core / (1 - overlap))``); without overlap
    that is ``[onset_k, onset_k + window_length)``.

    Parameters
    ----------
    volume_onsets : array-like of float, shape (n_volumes,)
        Volume onsets in seconds from the first EEG sample, strictly increasing.
    sfreq : float
        EEG sampling frequency in Hz.
    n_samples : int
        Number of samples in the recording.
    window_length : float
        Core window length in seconds (usually the TR).
    overlap : float
        Backward extension fraction in ``[0, 1)``.

    Returns
    -------
    starts, stops : ndarray of int64, shape (n_volumes,)
        First and one-past-last sample of each window (may fall outside the recording).
    valid : ndarray of bool, shape (n_volumes,)
        ``True`` where the window lies entirely inside ``[0, n_samples)``.
    """
    onsets = np.asarray(volume_onsets, dtype=float)
    if onsets.ndim != 1 or onsets.size == 0:
        raise DataError(f"volume onsets must be a non-empty 1-D list, got shape {onsets.shape}",
                        hint="Check the volume markers of the EEG recording.")
    if not np.all(np.isfinite(onsets)):
        raise DataError("volume onsets contain NaN or infinite values", hint="Check the volume markers.")
    if onsets.size > 1 and np.any(np.diff(onsets) <= 0):
        k = int(np.flatnonzero(np.diff(onsets) <= 0)[0])
        raise DataError(f"volume onsets are not strictly increasing (volume {k + 1} at {onsets[k + 1]:.4f} s "
                        f"follows {onsets[k]:.4f} s)", hint="Check for duplicated volume markers.")
    n_core, n_total = window_samples(sfreq, 1.0, window_length, overlap)
    stops = np.rint(onsets * sfreq).astype(np.int64) + n_core  # (n_volumes,)
    starts = stops - n_total
    valid = (starts >= 0) & (stops <= int(n_samples))
    return starts, stops, valid


def frequency_axis(n_window: int, sfreq: float, cfg) -> np.ndarray:
    """Frequencies in Hz of the spectrogram columns for windows of ``n_window`` samples.

    ``cfg.frequency_axis == "bins"``: ``k * sfreq / n_window`` for ``k = 1..n_freqs`` (the official axis).
    ``"hz"``: ``numpy.linspace(fmin, fmax, n_freqs)``.

    Raises
    ------
    DataError
        When the window has fewer than ``n_freqs`` positive-frequency bins, or ``fmax`` is above Nyquist.
    """
    n_half = n_window // 2  # highest rFFT bin index
    if cfg.frequency_axis == "bins":
        if cfg.n_freqs > n_half:
            raise DataError(
                f"a window of {n_window} samples has only {n_half} frequency bins, fewer than "
                f"{option_name('eeg.n_freqs')} = {cfg.n_freqs}",
                hint=f"Lower {option_name('eeg.n_freqs')}, use a longer {option_name('eeg.window_length')}, or "
                     f"{SETTING_OPTIONS['eeg.frequency_axis']} hz (eeg.frequency_axis = \"hz\").")
        return np.arange(1, cfg.n_freqs + 1, dtype=np.float64) * (sfreq / n_window)
    nyquist = sfreq * n_half / n_window
    if cfg.fmax > nyquist:
        raise DataError(f"{option_name('eeg.fmax')} = {cfg.fmax:g} Hz is above the highest frequency of the EEG "
                        f"({nyquist:g} Hz)", hint=f"Set {option_name('eeg.fmax')} to at most {nyquist:g} Hz.")
    return np.linspace(cfg.fmin, cfg.fmax, cfg.n_freqs, dtype=np.float64)


def taper_window(name: str, n: int, *, alpha: float = 0.5) -> np.ndarray:
    """The taper ``[n]`` (float64) of :attr:`EEGConfig.taper`, periodic (DFT-even) as for spectral analysis."""
    from scipy.signal import get_window

    if name == "boxcar":
        return np.ones(n)
    if name == "tukey":
        return get_window(("tukey", alpha), n, fftbins=True)
    if name in ("hann", "hamming"):
        return get_window(name, n, fftbins=True)
    raise UsageError(f"unknown taper {name!r}", hint="Use boxcar, hann, hamming or tukey.")


def _spectra(segments: np.ndarray, sfreq: float, cfg, freqs: np.ndarray | None = None) -> np.ndarray:
    """``|FFT|`` (or dB power) of segments ``[..., n]`` on the configured axis -> ``[..., n_freqs]`` float64."""
    n = segments.shape[-1]
    if freqs is None:
        freqs = frequency_axis(n, sfreq, cfg)
    x = np.asarray(segments, dtype=np.float64)  # FFT in double precision, as the official code
    if cfg.taper != "boxcar":
        x = x * taper_window(cfg.taper, n, alpha=cfg.tukey_alpha)
    coef = np.fft.rfft(x, axis=-1)  # [..., n // 2 + 1] complex, bin k at k * sfreq / n Hz
    if cfg.frequency_axis == "bins":
        out = np.abs(coef[..., 1:cfg.n_freqs + 1])
    else:
        pos = freqs * (n / sfreq)  # fractional bin index of each target frequency
        i0 = np.minimum(np.floor(pos).astype(np.int64), coef.shape[-1] - 2)
        w = pos - i0
        hi = int(i0.max()) + 2
        mag = np.abs(coef[..., :hi])  # only the bins the axis needs
        out = mag[..., i0] * (1.0 - w) + mag[..., i0 + 1] * w
    if cfg.log_power:
        out = 10.0 * np.log10(out * out + LOG_EPS)
    return out


def window_spectrum(segment, sfreq: float, cfg) -> np.ndarray:
    """Spectrum of one EEG window.

    Parameters
    ----------
    segment : array-like, shape (n_channels, n_samples)
        The window's samples (volts or any unit).
    sfreq : float
        Sampling frequency in Hz.
    cfg : EEGConfig
        Taper, frequency axis, ``n_freqs`` and ``log_power`` are used (scaling is not: it acts on the whole
        spectrogram, see :func:`scale_spectrogram`).

    Returns
    -------
    ndarray of float64, shape (n_channels, n_freqs)
        ``|X|`` (or ``10 log10 |X|^2``) on the axis of :func:`frequency_axis`.
    """
    seg = np.asarray(segment)
    if seg.ndim != 2:
        raise UsageError(f"segment must be [channels, samples], got shape {seg.shape}")
    return _spectra(seg, sfreq, cfg)


def select_channels(names: Sequence[str], types: Sequence[str] | None, cfg) -> np.ndarray:
    """Indices of the channels kept by ``cfg.include`` / ``cfg.exclude`` / ``cfg.exclude_types``.

    Parameters
    ----------
    names : sequence of str
        Channel names of the recording, in file order.
    types : sequence of str or None
        Channel types (``"EEG"``, ``"ECG"``, ...), same order; ``None`` if unknown (``exclude_types`` then
        cannot be honoured and raises).
    cfg : EEGConfig

    Returns
    -------
    ndarray of int64
        Indices into ``names`` in output order (``cfg.include`` order when given, else file order).

    Raises
    ------
    DataError
        When an included channel does not exist, or nothing is left.
    """
    names = list(names)
    if types is not None and len(types) != len(names):
        raise UsageError(f"{len(names)} channel names but {len(types)} channel types")
    if cfg.include is not None:
        missing = [n for n in cfg.include if n not in names]
        if missing:
            raise DataError(f"channel(s) {', '.join(missing)} listed in {option_name('eeg.include')} are not in "
                            "the recording",
                            hint=f"Available channels: {', '.join(names)}.")
        picks = [names.index(n) for n in cfg.include]
    else:
        picks = list(range(len(names)))
    drop_names = set(cfg.exclude)
    drop_types = {t.upper() for t in cfg.exclude_types}
    if drop_types and types is None:
        raise DataError(f"{option_name('eeg.exclude_types')} is set but the channel types of the recording are "
                        "unknown", hint="Add a channels.tsv with a type column, or exclude channels by name with "
                                        f"{option_name('eeg.exclude')}.")
    keep = [i for i in picks if names[i] not in drop_names
            and (types is None or str(types[i]).upper() not in drop_types)]
    if not keep:
        raise DataError("no EEG channel is left after channel selection",
                        hint="Relax --include-channels / --exclude-channels / --exclude-channel-types "
                             "(eeg.include / eeg.exclude / eeg.exclude_types).")
    return np.asarray(keep, dtype=np.int64)


def check_finite(block: np.ndarray, first_sample: int, sfreq: float,
                 channel_names: Sequence[str] | None = None) -> None:
    """Raise :class:`DataError` naming the channel and time of the earliest NaN/inf in ``block[C, n]``."""
    finite = np.isfinite(block)
    if finite.all():
        return
    bad = ~finite
    first = np.where(bad.any(axis=1), bad.argmax(axis=1), block.shape[1])  # first bad sample per channel
    ch = int(first.argmin())
    sample = int(first_sample + first[ch])
    name = channel_names[ch] if channel_names is not None else f"#{ch}"
    raise DataError(f"EEG channel {name} has NaN or infinite values, first at {sample / sfreq:.3f} s "
                    f"(sample {sample})",
                    hint=f"Repair or interpolate the channel, or exclude it with {option_name('eeg.exclude')}.")


def _blocks(starts: np.ndarray, stops: np.ndarray, order: np.ndarray, limit: int):
    """Group windows (given in ``order``, sorted by start) into runs read with one call of at most ``limit``."""
    block: list[int] = []
    for k in order:
        if block and stops[k] - starts[block[0]] > limit:
            yield block
            block = []
        block.append(int(k))
    if block:
        yield block


def spectrogram_from_reader(read_segment: Callable[[int, int], np.ndarray], volume_onsets, sfreq: float,
                            n_samples: int, cfg, *, tr: float | None = None,
                            channel_names: Sequence[str] | None = None, progress=None,
                            max_block_samples: int = MAX_BLOCK_SAMPLES, scale: bool = True
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Volume-locked spectrogram of a recording read a few windows at a time.

    Parameters
    ----------
    read_segment : callable ``(start, stop) -> ndarray [n_channels, stop - start]``
        Returns the (already channel-selected) samples ``start:stop``; never called outside
        ``[0, n_samples)``. Called with spans of at most ``max(max_block_samples, window)`` samples.
    volume_onsets : array-like of float, shape (n_volumes,)
        Onset of each BOLD volume in seconds from the first EEG sample.
    sfreq : float
        Sampling frequency in Hz.
    n_samples : int
        Samples in the recording.
    cfg : EEGConfig
        All settings are used (window, taper, axis, log, scaling).
    tr : float, optional
        Repetition time in seconds; by default the median onset spacing.
    channel_names : sequence of str, optional
        Names of the returned channels, used in error messages.
    progress : bool or callable, optional
        ``True`` shows a tqdm bar; a callable is called as ``progress(done, total)`` after each block.
    max_block_samples : int
        Upper bound on the samples per channel of one ``read_segment`` call.
    scale : bool
        Apply ``cfg.scaling`` (default). ``False`` returns the unscaled spectra (e.g. for the report's
        figures); ``scale_spectrogram(spec, cfg.scaling, valid=valid)`` then gives the scaled result.

    Returns
    -------
    spec : ndarray of float32, shape (n_volumes, n_channels, n_freqs)
        Scaled as ``cfg.scaling`` (unless ``scale=False``); rows of invalid windows are zeros.
    freqs : ndarray of float64, shape (n_freqs,)
        Frequency of each column in Hz.
    valid : ndarray of bool, shape (n_volumes,)
        ``False`` where the window is not fully inside the recording.

    Raises
    ------
    DataError
        NaN/inf samples (naming channel and time), no valid window, bad onsets or sampling rate.
    """
    onsets = np.asarray(volume_onsets, dtype=float)
    tr = estimate_tr(onsets) if tr is None else float(tr)
    core, _ = cfg.window_seconds(tr)
    starts, stops, valid = window_bounds(onsets, sfreq, n_samples, core, overlap=cfg.overlap)
    n_total = int(stops[0] - starts[0])
    freqs = frequency_axis(n_total, sfreq, cfg)
    if not valid.any():
        raise DataError(
            f"none of the {len(onsets)} volume windows lies inside the EEG recording "
            f"({n_samples / sfreq:.1f} s; volumes at {onsets[0]:.1f}-{onsets[-1]:.1f} s)",
            hint="Check the volume onsets (markers) and that the EEG covers the BOLD run.")
    order = np.flatnonzero(valid)
    order = order[np.argsort(starts[order], kind="stable")]
    spec = None  # [n_volumes, n_channels, n_freqs] float64, allocated once the channel count is known
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(order), desc="EEG spectrogram", unit="window", leave=False)
    done = 0
    try:
        for block in _blocks(starts, stops, order, max(int(max_block_samples), n_total)):
            b0, b1 = int(starts[block[0]]), int(max(stops[k] for k in block))
            data = np.asarray(read_segment(b0, b1))  # [C, b1 - b0]
            if data.ndim != 2 or data.shape[1] != b1 - b0:
                raise DataError(f"read_segment({b0}, {b1}) returned shape {data.shape}, "
                                f"expected [channels, {b1 - b0}]", hint="Check the EEG reader.")
            check_finite(data, b0, sfreq, channel_names)
            if spec is None:
                spec = np.zeros((len(onsets), data.shape[0], len(freqs)), dtype=np.float64)
            # FFT a few windows at a time so temporaries stay small: segments [n_sub, C, n_total] float64
            for i in range(0, len(block), FFT_BATCH):
                idx = np.asarray(block[i:i + FFT_BATCH])
                segs = np.empty((len(idx), data.shape[0], n_total), dtype=np.float64)
                for j, o in enumerate(starts[idx] - b0):
                    segs[j] = data[:, o:o + n_total]
                spec[idx] = _spectra(segs, sfreq, cfg, freqs)
            done += len(block)
            if bar is not None:
                bar.update(len(block))
            elif callable(progress):
                progress(done, len(order))
    finally:
        if bar is not None:
            bar.close()
    spec = _scale_inplace(spec, cfg.scaling if scale else "none", valid).astype(np.float32)
    return spec, freqs, valid


def spectrogram_from_array(data, volume_onsets, sfreq: float, cfg, *, tr: float | None = None,
                           channel_names: Sequence[str] | None = None, progress=None, scale: bool = True):
    """:func:`spectrogram_from_reader` over an in-memory (or memory-mapped) array ``data[C, n_samples]``."""
    data = np.asarray(data) if not isinstance(data, np.memmap) else data
    if data.ndim != 2:
        raise UsageError(f"EEG data must be [channels, samples], got shape {data.shape}")
    return spectrogram_from_reader(lambda a, b: data[:, a:b], volume_onsets, sfreq, data.shape[1], cfg,
                                   tr=tr, channel_names=channel_names, progress=progress, scale=scale)


def scale_spectrogram(spec, method: str, *, valid=None) -> np.ndarray:
    """Standardise a spectrogram ``[n_volumes, n_channels, n_freqs]``; returns float32.

    Parameters
    ----------
    spec : array-like, shape (n_volumes, n_channels, n_freqs)
    method : {"zscore-electrodes", "none", "zscore-channel"}
        ``"zscore-electrodes"`` (official): each (volume, frequency) cell across channels, population
        standard deviation (``scipy.stats.zscore(axis=1)``); cells where all channels are equal become 0.
        ``"zscore-channel"``: each channel over its valid rows and all frequencies.
        ``"none"``: unchanged.
    valid : array-like of bool, shape (n_volumes,), optional
        Rows to use and return; other rows are set to 0. Default: all rows.
    """
    x = np.array(spec, dtype=np.float64)  # a copy: the input is never modified
    if x.ndim != 3:
        raise UsageError(f"spectrogram must be [volumes, channels, freqs], got shape {x.shape}")
    valid = np.ones(x.shape[0], bool) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != (x.shape[0],):
        raise UsageError(f"valid has shape {valid.shape}, expected ({x.shape[0]},)")
    return _scale_inplace(x, method, valid).astype(np.float32)


#: spectrogram rows standardised together (bounds the temporaries of the z-scoring)
ROW_CHUNK = 64


def _scale_inplace(x: np.ndarray, method: str, valid: np.ndarray) -> np.ndarray:
    """:func:`scale_spectrogram` in place on a float64 array ``[n_volumes, C, F]`` (returns ``x``)."""
    if method not in ("none", "zscore-electrodes", "zscore-channel"):
        raise UsageError(f"unknown spectrogram scaling {method!r}",
                         hint="Use zscore-electrodes, none or zscore-channel.")
    x[~valid] = 0.0
    rows = np.flatnonzero(valid)
    chunks = [rows[i:i + ROW_CHUNK] for i in range(0, rows.size, ROW_CHUNK)]
    if method == "zscore-electrodes":
        for idx in chunks:
            v = x[idx]  # [n, C, F]
            mu = v.mean(axis=1, keepdims=True)
            sd = v.std(axis=1, keepdims=True)
            x[idx] = np.divide(v - mu, sd, out=np.zeros_like(v), where=sd > 0)
    elif method == "zscore-channel" and rows.size:
        count = rows.size * x.shape[2]
        mu = sum(x[idx].sum(axis=(0, 2)) for idx in chunks) / count  # [C]
        var = sum(((x[idx] - mu[None, :, None]) ** 2).sum(axis=(0, 2)) for idx in chunks) / count
        sd = np.sqrt(var)
        for idx in chunks:
            v = x[idx] - mu[None, :, None]
            x[idx] = np.divide(v, sd[None, :, None], out=np.zeros_like(v), where=sd[None, :, None] > 0)
    return x
