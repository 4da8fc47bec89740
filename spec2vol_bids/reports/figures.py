"""Report figures (matplotlib, Agg backend), from plain arrays.

Each ``*_figure`` function returns a :class:`matplotlib.figure.Figure`; :func:`to_png` / :func:`to_svg` turn it
into bytes (and close it) and :func:`save_figure` writes it atomically. matplotlib is imported inside the
functions so that importing this module stays cheap.

Layouts follow CONTRIBUTING.md: spectrograms ``[n_volumes, n_channels, n_freqs]``, volumes in NIfTI order
``[X, Y, Z]`` / ``[X, Y, Z, T]``.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import UsageError

__all__ = [
    "to_png",
    "to_svg",
    "save_figure",
    "alignment_figure",
    "spectrogram_figure",
    "bold_figure",
    "prediction_figure",
    "group_metrics_figure",
    "artefact_figure",
]

DPI = 90


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _render(fig, fmt: str) -> bytes:
    import matplotlib

    buf = io.BytesIO()
    try:
        # a fixed hash salt makes SVG element ids (and so the bytes) identical on reruns
        with matplotlib.rc_context({"svg.hashsalt": "spec2vol-bids"}):
            fig.savefig(buf, format=fmt, dpi=DPI, bbox_inches="tight", metadata=(
                {"Software": "spec2vol-bids"} if fmt == "png" else {"Creator": "spec2vol-bids", "Date": None}))
    finally:
        _plt().close(fig)
    return buf.getvalue()


def to_png(fig) -> bytes:
    """PNG bytes of ``fig`` (the figure is closed)."""
    return _render(fig, "png")


def to_svg(fig) -> bytes:
    """SVG bytes of ``fig`` (the figure is closed; no date in the file, so reruns give identical bytes)."""
    return _render(fig, "svg")


def save_figure(fig_or_bytes, dest: str | os.PathLike) -> Path:
    """Write a figure (PNG or SVG by the suffix of ``dest``) or already rendered bytes, atomically."""
    from ..utils import atomic_write

    dest = Path(dest)
    if isinstance(fig_or_bytes, (bytes, bytearray)):
        data = bytes(fig_or_bytes)
    elif dest.suffix == ".svg":
        data = to_svg(fig_or_bytes)
    elif dest.suffix == ".png":
        data = to_png(fig_or_bytes)
    else:
        raise UsageError(f"cannot save a figure as {dest.name}", hint="Use a .png or .svg file name.")
    return atomic_write(dest, data)


def _mosaic(volume: np.ndarray, slices: Sequence[int]) -> np.ndarray:
    """Axial slices of ``volume[X, Y, Z]`` side by side, displayed radiologically upright: ``[Y, X * n]``."""
    return np.concatenate([np.rot90(volume[:, :, z]) for z in slices], axis=1)


def _pick_slices(mask_or_vol: np.ndarray, n: int) -> list[int]:
    depth = mask_or_vol.shape[2]
    if mask_or_vol.dtype == bool and mask_or_vol.any():
        zs = np.flatnonzero(mask_or_vol.any(axis=(0, 1)))
        lo, hi = zs[0], zs[-1]
    else:
        lo, hi = 0, depth - 1
    if hi - lo + 1 <= n:
        return list(range(int(lo), int(hi) + 1))
    return sorted({int(round(z)) for z in np.linspace(lo, hi, n)})


def _nanmean(a: np.ndarray, axis) -> np.ndarray:
    """``numpy.nanmean`` without the warning for all-NaN slices (invalid windows): those stay NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def alignment_figure(volume_onsets, repetition_time: float, *, eeg_duration: float | None = None,
                     marker_onsets=None, onset_source: str = "markers", filled=(), title: str | None = None):
    """EEG-to-volume alignment: where the volumes fall in the recording and how regular the markers are.

    Parameters
    ----------
    volume_onsets : array-like of float, shape (n_volumes,)
        Onsets used for the windows, in seconds from the first EEG sample.
    repetition_time : float
        The BOLD TR in seconds (defines the expected grid ``onset_0 + k * TR``).
    eeg_duration : float, optional
        Length of the EEG recording in seconds (drawn as the recording's extent).
    marker_onsets : array-like of float, optional
        All volume markers found in the recording (may be more or fewer than the volumes).
    onset_source : str
        ``"markers"``, ``"events.tsv"`` or ``"tr-fallback"`` (shown in the title).
    filled : sequence of int
        Indices of the volumes whose missing trigger was filled (drawn in orange in both panels).

    Returns
    -------
    matplotlib.figure.Figure
        Top: timeline of the recording, markers and volumes. Bottom: deviation of each onset from the
        regular TR grid, in milliseconds.
    """
    plt = _plt()
    onsets = np.asarray(volume_onsets, dtype=float)
    tr = float(repetition_time)
    k = np.arange(onsets.size)
    expected = onsets[0] + k * tr
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(9, 4.2), height_ratios=[1, 1.4], constrained_layout=True)
    end = max(eeg_duration or 0.0, onsets[-1] + tr)
    if eeg_duration is not None:
        ax0.axhspan(0.6, 1.4, xmin=0, xmax=eeg_duration / end, color="#cfe3f5", label="EEG recording")
    if marker_onsets is not None and len(marker_onsets):
        m = np.asarray(marker_onsets, dtype=float)
        ax0.vlines(m, 1.05, 1.35, color="#d62728", lw=0.6, label=f"volume markers ({m.size})")
    ax0.vlines(onsets, 0.65, 0.95, color="#1f77b4", lw=0.6, label=f"BOLD volumes ({onsets.size})")
    fill = np.asarray([int(i) for i in filled if 0 <= int(i) < onsets.size], dtype=int)
    if fill.size:
        ax0.vlines(onsets[fill], 0.6, 1.4, color="#ff7f0e", lw=1.6,
                   label=f"filled onsets, missing trigger ({fill.size})")
    ax0.axvline(onsets[0], color="k", ls="--", lw=0.8)
    ax0.text(onsets[0], 1.45, f" first volume at {onsets[0]:.3f} s", fontsize=8, va="bottom")
    ax0.set(xlim=(min(0.0, onsets[0]) - 0.01 * end, end * 1.01), ylim=(0.5, 1.8), yticks=[],
            xlabel="time from the first EEG sample (s)")
    ax0.legend(loc="upper right", fontsize=7, ncol=3, frameon=False)
    dev_ms = (onsets - expected) * 1e3
    ax1.plot(k, dev_ms, ".-", ms=3, lw=0.6, color="#1f77b4")
    if fill.size:
        ax1.plot(fill, dev_ms[fill], "o", ms=6, mfc="none", color="#ff7f0e",
                 label="filled: volume " + ", ".join(str(i) for i in fill[:8]) + (" ..." if fill.size > 8 else ""))
        ax1.legend(loc="best", fontsize=7, frameon=False)
    ax1.axhline(0, color="k", lw=0.6)
    ax1.set(xlabel="volume index", ylabel="onset - (onset$_0$ + k TR) (ms)")
    jitter = float(np.max(np.abs(dev_ms))) if dev_ms.size else 0.0
    ax1.set_title(f"deviation from the TR grid (TR = {tr:g} s; max |deviation| {jitter:.2f} ms)", fontsize=9)
    fig.suptitle(title or f"EEG-to-volume alignment (onsets from {onset_source})", fontsize=10)
    return fig


def spectrogram_figure(spec, freqs, *, volume_onsets=None, valid=None, channels: Sequence[str] | None = None,
                       log: bool | None = None, title: str | None = None):
    """Spectrogram overview: time x frequency (mean over channels), time x channel, and mean per channel.

    Parameters
    ----------
    spec : array-like, shape (n_volumes, n_channels, n_freqs)
        Preferably the **unscaled** spectra (``spectrogram_from_reader(..., scale=False)``): after the official
        z-scoring across electrodes the mean over channels is 0 in every cell.
    freqs : array-like, shape (n_freqs,)
        Hz.
    volume_onsets : array-like, shape (n_volumes,), optional
        Seconds; the time axis is the volume index when omitted.
    valid : array-like of bool, shape (n_volumes,), optional
        Invalid rows are masked (grey).
    channels : sequence of str, optional
        Channel names for the per-channel panel.
    log : bool, optional
        Show ``log10`` of the values; by default when every valid value is positive (linear magnitudes).

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    x = np.asarray(spec, dtype=np.float64)
    if x.ndim != 3:
        raise UsageError(f"spectrogram must be [volumes, channels, freqs], got shape {x.shape}")
    freqs = np.asarray(freqs, dtype=float)
    n_vol, n_ch, _ = x.shape
    valid = np.ones(n_vol, bool) if valid is None else np.asarray(valid, bool)
    if log is None:
        log = bool(valid.any() and np.all(x[valid] > 0))
    shown = np.log10(np.where(x > 0, x, np.nan)) if log else x.copy()
    shown[~valid] = np.nan
    t = np.arange(n_vol) if volume_onsets is None else np.asarray(volume_onsets, dtype=float)
    t_label = "volume index" if volume_onsets is None else "time (s)"
    unit = "log10 value" if log else "value"
    fig = plt.figure(figsize=(10, 5.2), constrained_layout=True)
    gs = fig.add_gridspec(2, 2, width_ratios=[3, 1.1])
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d0d0d0")  # invalid windows in grey
    ax0 = fig.add_subplot(gs[0, 0])
    tf = _nanmean(shown, axis=1).T  # [F, T]
    scale = np.nanmax(np.abs(shown)) if np.isfinite(shown).any() else 0.0
    if np.isfinite(tf).any() and np.nanmax(np.abs(tf)) > 1e-4 * scale:
        im = ax0.imshow(np.ma.masked_invalid(tf), aspect="auto", origin="lower", cmap=cmap,
                        interpolation="nearest", extent=[t[0], t[-1] if n_vol > 1 else t[0] + 1, freqs[0], freqs[-1]])
        ax0.set(xlabel=t_label, ylabel="frequency (Hz)", title="time x frequency, mean over channels")
    else:
        # z-scored across electrodes: the channel mean is 0 in every cell, so show channels x frequencies instead
        cf = _nanmean(shown[valid], axis=0) if valid.any() else np.full((n_ch, len(freqs)), np.nan)  # [C, F]
        im = ax0.imshow(np.ma.masked_invalid(cf), aspect="auto", origin="lower", cmap=cmap,
                        interpolation="nearest", extent=[freqs[0], freqs[-1], -0.5, n_ch - 0.5])
        ax0.set(xlabel="frequency (Hz)", ylabel="channel",
                title="channel x frequency, mean over time (the mean over channels is 0 after z-scoring "
                      "across electrodes)")
        ax0.title.set_fontsize(9)
    fig.colorbar(im, ax=ax0, label=unit, pad=0.01)
    ax1 = fig.add_subplot(gs[1, 0])
    tc = _nanmean(shown, axis=2).T  # [C, T]
    im = ax1.imshow(np.ma.masked_invalid(tc), aspect="auto", origin="lower", cmap=cmap, interpolation="nearest",
                    extent=[t[0], t[-1] if n_vol > 1 else t[0] + 1, -0.5, n_ch - 0.5])
    ax1.set(xlabel=t_label, ylabel="channel", title="time x channel, mean over frequencies")
    fig.colorbar(im, ax=ax1, label=unit, pad=0.01)
    ax2 = fig.add_subplot(gs[:, 1])
    per_ch = _nanmean(shown[valid], axis=(0, 2)) if valid.any() else np.zeros(n_ch)  # [C]
    med = np.median(per_ch)
    mad = np.median(np.abs(per_ch - med)) * 1.4826  # ~ standard deviation for normal data
    # robust outliers; the floor keeps near-identical channels from being flagged for tiny differences
    outlier = np.abs(per_ch - med) > max(3 * mad, 0.1 * float(np.ptp(per_ch)))
    y = np.arange(n_ch)
    # bars start just below the smallest value so log-scaled (possibly negative) means stay comparable
    base = per_ch.min() - 0.05 * (np.ptp(per_ch) or 1.0) if log else 0.0
    ax2.barh(y, per_ch - base, left=base, color=np.where(outlier, "#d62728", "#1f77b4"))
    names = list(channels) if channels is not None else [str(i) for i in range(n_ch)]
    step = max(1, n_ch // 32)
    ax2.set_yticks(y[::step], [names[i] for i in y[::step]], fontsize=6)
    ax2.invert_yaxis()
    ax2.set(xlabel=f"mean {unit}", title="mean per channel\n(red: > 3 MAD and > 10% of the range from the median)")
    ax2.title.set_fontsize(9)
    fig.suptitle(title or f"EEG spectrogram ({n_vol} windows x {n_ch} channels x {len(freqs)} frequencies, "
                 f"{freqs[0]:.2f}-{freqs[-1]:.1f} Hz)", fontsize=10)
    return fig


def bold_figure(data, *, mask=None, volume_index: int | None = None, n_slices: int = 8,
                title: str | None = None):
    """Target BOLD mosaic: one volume and the run mean, axial slices, with the brain-mask outline.

    Parameters
    ----------
    data : array-like, shape (X, Y, Z, T) or (X, Y, Z)
    mask : array-like of bool, shape (X, Y, Z), optional
        Drawn as a red outline.
    volume_index : int, optional
        The volume shown in the first row (default: the middle volume).
    n_slices : int
        Slices per row, evenly spread over the mask's (or the volume's) extent.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    x = np.asarray(data, dtype=np.float64)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise UsageError(f"BOLD data must be [X, Y, Z, T] or [X, Y, Z], got shape {x.shape}")
    k = x.shape[3] // 2 if volume_index is None else int(volume_index)
    if not 0 <= k < x.shape[3]:
        raise UsageError(f"volume_index {k} is outside the run's {x.shape[3]} volumes")
    m = None if mask is None else np.asarray(mask, dtype=bool)
    slices = _pick_slices(m if m is not None else x[..., k], n_slices)
    rows = [(f"volume {k}", x[..., k]), (f"mean of {x.shape[3]} volumes", x.mean(axis=3))]
    fig, axes = plt.subplots(2, 1, figsize=(1.3 * len(slices) + 1, 3.6), constrained_layout=True)
    for ax, (label, vol) in zip(axes, rows):
        lo, hi = np.percentile(vol, [1, 99.5])
        ax.imshow(_mosaic(vol, slices), cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1,
                  interpolation="nearest")
        if m is not None and m.any() and not m.all():
            ax.contour(_mosaic(m.astype(float), slices), levels=[0.5], colors="#d62728", linewidths=0.7)
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_axis_off()
    fig.suptitle(title or f"target BOLD {x.shape[0]} x {x.shape[1]} x {x.shape[2]}, axial slices "
                 f"{', '.join(map(str, slices))}", fontsize=10)
    return fig


def prediction_figure(pred, truth, *, volume_indices=None, ssim=None, dyn_corr_map=None, mask=None,
                      show: int | None = None, n_slices: int = 6, title: str | None = None):
    """Prediction vs truth: slices side by side with their difference, per-volume SSIM, dynamic correlation.

    Parameters
    ----------
    pred, truth : array-like, shape (X, Y, Z, N)
        Predicted and measured volumes of the same pairs (NIfTI order, time last).
    volume_indices : array-like of int, shape (N,), optional
        The run's volume index of each predicted volume (x axis of the SSIM plot).
    ssim : array-like, shape (N,), optional
        SSIM of each volume (computed with :func:`spec2vol_bids.train.metrics.ssim` when omitted).
    dyn_corr_map : array-like, shape (X, Y, Z), optional
        Per-voxel dynamic correlation (computed when omitted and ``N >= 2``).
    mask : array-like of bool, shape (X, Y, Z), optional
        Brain mask for the dynamic correlation.
    show : int, optional
        Position (0..N-1) of the volume drawn; default: the volume with the median SSIM.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 4:
        raise UsageError(f"prediction and truth must both be [X, Y, Z, N] with equal shapes, got "
                         f"{p.shape} and {t.shape}")
    n = p.shape[3]
    idx = np.arange(n) if volume_indices is None else np.asarray(volume_indices)
    if ssim is None:
        from ..train.metrics import ssim as ssim_fn

        ssim = ssim_fn(p.transpose(3, 2, 0, 1), t.transpose(3, 2, 0, 1), reduction="none")  # [N]
    ssim = np.asarray(ssim, dtype=float)
    if dyn_corr_map is None and n >= 2:
        from ..train.metrics import dynamic_correlation_map

        dyn_corr_map = dynamic_correlation_map(p, t, mask, time_axis=-1)  # [X, Y, Z]
    k = int(np.argsort(ssim)[len(ssim) // 2]) if show is None else int(show)
    m = None if mask is None else np.asarray(mask, bool)
    slices = _pick_slices(m if m is not None else t[..., k], n_slices)
    fig = plt.figure(figsize=(1.4 * len(slices) + 1.5, 7.2), constrained_layout=True)
    gs = fig.add_gridspec(4, 2, height_ratios=[1, 1, 1, 1.4])
    vmax = max(float(np.percentile(t[..., k], 99.5)), 1e-12)
    for row, (label, vol, cmap, lims) in enumerate([
            ("measured", t[..., k], "gray", (0, vmax)), ("predicted", p[..., k], "gray", (0, vmax)),
            ("predicted - measured", p[..., k] - t[..., k], "RdBu_r", (-vmax / 2, vmax / 2))]):
        ax = fig.add_subplot(gs[row, :])
        im = ax.imshow(_mosaic(vol, slices), cmap=cmap, vmin=lims[0], vmax=lims[1], interpolation="nearest")
        ax.set_title(f"{label} (volume {int(idx[k])})", fontsize=9, loc="left")
        ax.set_axis_off()
        fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    ax = fig.add_subplot(gs[3, 0])
    ax.plot(idx, ssim, ".-", ms=3, lw=0.6)
    ax.axhline(np.mean(ssim), color="k", lw=0.6, ls="--")
    ax.set(xlabel="volume index", ylabel="SSIM", title=f"SSIM per volume (mean {np.mean(ssim):.3f})")
    ax.title.set_fontsize(9)
    ax = fig.add_subplot(gs[3, 1])
    if dyn_corr_map is not None:
        r = np.asarray(dyn_corr_map, dtype=float)
        r = r[np.isfinite(r)]
        ax.hist(r, bins=40, range=(-1, 1), color="#2ca02c")
        mean_r = float(r.mean()) if r.size else float("nan")
        ax.axvline(0, color="k", lw=0.6)
        ax.set(xlabel="voxel time-course correlation r", ylabel="voxels",
               title=f"dynamic correlation (mean r = {mean_r:.3f})")
    else:
        ax.text(0.5, 0.5, "one volume: no dynamics", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.title.set_fontsize(9)
    fig.suptitle(title or f"prediction vs measured ({n} volumes)", fontsize=10)
    return fig


def group_metrics_figure(table, *, metrics: Sequence[str], by: str = "subject", title: str | None = None):
    """Box and strip plots of each metric per subject (one dot per run).

    Parameters
    ----------
    table : pandas.DataFrame
        One row per run; a ``by`` column and numeric metric columns.
    metrics : sequence of str
        Columns to plot, one panel each.
    by : str
        Grouping column (default ``"subject"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    groups = sorted(table[by].astype(str).unique())
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(4.0, 0.45 * len(groups) + 2) * len(metrics) / 1.4,
                                                       3.4), constrained_layout=True, squeeze=False)
    rng = np.random.default_rng(0)  # fixed jitter: identical figures on reruns
    for ax, metric in zip(axes[0], metrics):
        values = [table.loc[table[by].astype(str) == g, metric].astype(float).dropna().to_numpy()
                  for g in groups]
        ax.boxplot(values, positions=np.arange(len(groups)), widths=0.6, showfliers=False)
        for i, v in enumerate(values):
            ax.scatter(i + rng.uniform(-0.15, 0.15, v.size), v, s=12, alpha=0.8, color="#1f77b4", zorder=3)
        ax.set_xticks(np.arange(len(groups)), groups, rotation=60 if len(groups) > 6 else 0, fontsize=7)
        allv = np.concatenate(values) if values else np.array([])
        mean = f" (mean {np.nanmean(allv):.3f})" if allv.size else ""
        ax.set_title(f"{metric}{mean}", fontsize=9)
        ax.set_xlabel(by)
    fig.suptitle(title or f"metrics of {len(table)} runs from {len(groups)} {by}s", fontsize=10)
    return fig


def artefact_figure(qc: dict, *, title: str | None = None):
    """Scanner artefacts of a run before and after correction, from its ``ArtefactQC`` sidecar field.

    Panels: the channel-mean power spectrum before and after the gradient correction with the harmonics of the
    artefact frequency marked; per channel, the power at those harmonics before and after; per channel, the power of
    the R-peak-locked average before and after (when there is an ECG).

    Parameters
    ----------
    qc : dict
        ``ArtefactQC`` as written by :func:`spec2vol_bids.pipeline.artefacts.merge_qc`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    grad = qc.get("Gradient") or {}
    card = qc.get("Cardiac") or {}
    has_card = "PowerBefore" in card
    fig = plt.figure(figsize=(10, 6.4 if has_card else 5.6), constrained_layout=True)
    gs = fig.add_gridspec(2, 2 if has_card else 1)
    colours = {"before": "#d62728", "after": "#1f77b4"}
    ax = fig.add_subplot(gs[0, :])
    spectrum = grad.get("MeanSpectrum") or {}
    f = np.asarray(spectrum.get("Frequencies", []), dtype=float)
    for key, label in (("Before", "before correction"), ("After", "after correction")):
        if key in spectrum and f.size:
            ax.plot(f, np.asarray(spectrum[key], dtype=float), lw=0.8, color=colours[key.lower()],
                    label=label if "After" in spectrum else "EEG as used (not corrected)")
    for h in grad.get("Harmonics", []):
        ax.axvline(h, color="#999999", lw=0.4, ls=":", zorder=0)
    f0 = grad.get("ArtefactFrequency")
    ax.set(xlabel="frequency (Hz)", ylabel="PSD (dB re 1 uV^2/Hz), mean over channels",
           title=f"power spectrum; dotted: harmonics of the {grad.get('Triggers', '')} trigger frequency"
                 + (f" ({f0:.4g} Hz) used by the QC" if f0 else ""))
    ax.title.set_fontsize(9)
    if ax.lines:
        ax.legend(fontsize=8, loc="upper right")

    def bars(axis, names, before, after, what):
        names = list(names or [])
        y = np.arange(len(names))
        b = np.asarray([np.nan if v is None else v for v in (before or [])], dtype=float)
        if after is not None:
            a = np.asarray([np.nan if v is None else v for v in after], dtype=float)
            axis.barh(y - 0.2, b, height=0.4, color=colours["before"], label="before")
            axis.barh(y + 0.2, a, height=0.4, color=colours["after"], label="after")
            axis.legend(fontsize=7, loc="lower right")
        else:
            axis.barh(y, b, height=0.6, color=colours["before"])
        step = max(1, len(names) // 32)
        axis.set_yticks(y[::step], [names[i] for i in y[::step]], fontsize=6)
        axis.invert_yaxis()
        axis.set(xlabel="dB", title=what)
        axis.title.set_fontsize(9)

    bars(fig.add_subplot(gs[1, 0]), qc.get("Channels"), grad.get("PowerBefore"), grad.get("PowerAfter"),
         "power at the artefact harmonics (dB re 1 uV^2)")
    if has_card:
        bars(fig.add_subplot(gs[1, 1]), card.get("Channels"), card.get("PowerBefore"), card.get("PowerAfter"),
             f"power of the average locked to the R peaks of {card.get('ECGChannel')} (dB re 1 uV^2)")
    fig.suptitle(title or "EEG recorded in the scanner: gradient and pulse artefacts", fontsize=10)
    return fig
