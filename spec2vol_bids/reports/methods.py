"""Citable methods boilerplate generated from the preprocessing settings (in the spirit of fMRIPrep's).

The text describes exactly what the given :class:`~spec2vol_bids.config.PreprocConfig` does, so it changes with
every option; users may copy it into a manuscript unchanged. :func:`methods_text` returns Markdown-like plain
text (paragraphs separated by blank lines); :func:`methods_html` the same as HTML paragraphs.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from .._version import __version__

__all__ = ["PAPER_CITATION", "methods_text", "methods_html"]

PAPER_CITATION = (
    "He D., Li S., Jiang B., Yan H. Spec2VolCAMU-Net: A Spectrogram-to-Volume Model for EEG-to-fMRI "
    "Reconstruction based on Multi-directional Time-Frequency Convolutional Attention Encoder and Vision-Mamba "
    "U-Net. https://github.com/hdy6438/Spec2VolCAMU-Net"
)

_TAPER = {"boxcar": "a rectangular (boxcar) window, i.e. no taper", "hann": "a periodic Hann taper",
          "hamming": "a periodic Hamming taper", "tukey": "a periodic Tukey taper (alpha = {alpha:g})"}
_ONSETS = {
    "markers": "from the scanner's volume markers (\u201c{marker}\u201d) recorded in the EEG file",
    "events.tsv": "from the volume-marker rows (\u201c{marker}\u201d) of the EEG events.tsv file",
    "tr-fallback": ("as the EEG start plus multiples of the repetition time, because no volume markers were "
                    "found (this assumes the first EEG sample coincides with the first volume)"),
}


def _cfg(config):
    from ..config import PreprocConfig

    if config is None:
        return PreprocConfig()
    if isinstance(config, PreprocConfig):
        return config
    return PreprocConfig.from_dict(dict(config))


def methods_text(config=None, *, n_runs: int | None = None, onset_sources: Mapping[str, int] | None = None,
                 versions: Mapping[str, str] | None = None, model: str | None = None) -> str:
    """Methods paragraphs for the given settings.

    Parameters
    ----------
    config : PreprocConfig or dict, optional
        The settings used (default: the official pipeline).
    n_runs : int, optional
        Number of paired EEG-fMRI runs processed.
    onset_sources : mapping of str to int, optional
        How many runs took their volume onsets from each source (``"markers"``, ``"events.tsv"``,
        ``"tr-fallback"``).
    versions : mapping, optional
        Package versions (as from :func:`spec2vol_bids.utils.versions`); NumPy/SciPy/MNE/nibabel are cited.
    model : str, optional
        Name of the checkpoint used for prediction, if any.

    Returns
    -------
    str
        Paragraphs separated by blank lines.
    """
    cfg = _cfg(config)
    e, p, b = cfg.eeg, cfg.pairing, cfg.bold
    v = dict(versions or {})
    runs = f"Each of the {n_runs} paired EEG-fMRI runs" if n_runs else "Each paired EEG-fMRI run"
    paras = []

    srcs = onset_sources or {"markers": n_runs or 1}
    parts = []
    for src, count in srcs.items():
        text = _ONSETS.get(src, f"from {src}").format(marker=e.volume_marker)
        parts.append(f"{text} ({count} run{'s' if count != 1 else ''})" if len(srcs) > 1 else text)
    onset_txt = "; ".join(parts)
    paras.append(
        f"EEG and fMRI data were preprocessed with spec2vol-bids {__version__}, an implementation of the "
        f"Spec2VolCAMU-Net data pipeline (He et al.). {runs} was processed as follows. The onset of every BOLD "
        f"volume within the EEG recording was obtained {onset_txt}.")

    correction = _correction_text(cfg.correction)
    if correction:
        paras.append(correction)

    if e.window_length is None:
        core = "one repetition time (TR)"
    else:
        core = f"{e.window_length:g} s"
    if e.overlap > 0:
        win = (f"For each volume, an EEG window ending {core} after the volume onset was extracted; windows "
               f"were extended backwards to {1 / (1 - e.overlap):g} times that length, so that consecutive "
               f"windows overlapped by {100 * e.overlap:g}%")
    else:
        win = f"For each volume, the EEG window of {core} starting at the volume onset was extracted"
    sel = []
    if e.include is not None:
        sel.append(f"only the channels {', '.join(e.include)} were used")
    if e.exclude:
        sel.append(f"channels {', '.join(e.exclude)} were excluded")
    if e.exclude_types:
        sel.append(f"channels of type {', '.join(e.exclude_types)} were excluded")
    sel_txt = (" (" + "; ".join(sel) + ")") if sel else " (all recorded channels were kept)"
    taper = _TAPER[e.taper].format(alpha=e.tukey_alpha)
    if e.frequency_axis == "bins":
        axis = (f"the magnitudes of Fourier coefficients 1 to {e.n_freqs} were kept, i.e. frequencies k/T Hz "
                f"(k = 1..{e.n_freqs}) for a window of T seconds")
    else:
        axis = (f"the magnitude spectrum was linearly interpolated onto {e.n_freqs} evenly spaced frequencies "
                f"from {e.fmin:g} to {e.fmax:g} Hz")
    value = "converted to power in decibels (10 log10 |X|^2)" if e.log_power else "kept as linear magnitudes"
    scaling = {
        "zscore-electrodes": "Each (window, frequency) value was then z-scored across electrodes",
        "zscore-channel": "Each channel was then z-scored over all its windows and frequencies",
        "none": "No further standardisation was applied",
    }[e.scaling]
    paras.append(
        f"{win}{sel_txt}, multiplied by {taper}, and transformed with the full-length discrete Fourier "
        f"transform; {axis}. Values were {value}. {scaling}. This yields one spectrogram row "
        f"(electrodes x {e.n_freqs} frequencies) per BOLD volume; windows not fully contained in the recording "
        f"were marked invalid and not used.")

    if p.window_span_s is not None:
        n_txt = f"the round({p.window_span_s:g} s / TR) consecutive windows"
    else:
        n_txt = f"the {p.n_windows} consecutive windows"
    if p.lag_s is not None:
        lag_txt = f"ending round({p.lag_s:g} s / TR) volumes before the onset of the target volume"
    elif p.lag_volumes:
        lag_txt = f"ending {p.lag_volumes} volume{'s' if p.lag_volumes != 1 else ''} before the target's onset"
    else:
        lag_txt = "immediately preceding the target volume"
    paras.append(
        f"The first {p.discard_volumes} volumes of each run and their EEG windows were discarded. Each model "
        f"input consisted of {n_txt} {lag_txt}, and its target was that BOLD volume.")

    if b.resize == "dct":
        depth = (f"{b.n_slices} slices" if b.n_slices is not None else
                 "the native number of slices when the acquisition grid was already "
                 f"{b.grid} x {b.grid} in-plane, otherwise 30 slices")
        resize = (f"BOLD volumes were resampled to a {b.grid} x {b.grid} in-plane grid with {depth}, over the "
                  f"same field of view, by keeping the low-frequency coefficients of their orthonormal 3-D "
                  f"discrete cosine transform (DCT-II) and inverting the transform on the new grid")
    else:
        resize = "BOLD volumes were used on their acquisition grid"
    bscale = {
        "minmax": "each volume was min-max scaled to [0, 1] using all its voxels",
        "minmax-mask": "each volume was min-max scaled to [0, 1] using the voxels of a brain mask, with voxels "
                       "outside the mask set to 0",
        "zscore": "each volume was z-scored within a brain mask, with voxels outside the mask set to 0",
    }[b.scaling]
    mask = ("The brain mask was obtained by Otsu thresholding of the mean volume, followed by morphological "
            "opening, selection of the largest connected component and hole filling.")
    paras.append(f"{resize}; {bscale}. {mask}")

    if model:
        paras.append(f"BOLD volumes were predicted from the EEG spectrograms with the trained model {model}.")

    libs = [f"{name} {v[key]}" for name, key in (("NumPy", "numpy"), ("SciPy", "scipy"), ("MNE-Python", "mne"),
                                                   ("MNE-BIDS", "mne-bids"), ("NiBabel", "nibabel"),
                                                   ("Nipype", "nipype"), ("PyTorch", "torch")) if key in v]
    if libs:
        paras.append(f"Computations used {', '.join(libs)}.")
    paras.append(f"Reference: {PAPER_CITATION}.")
    return "\n\n".join(paras)


def _correction_text(c) -> str:
    """The artefact-correction paragraph (empty without correction)."""
    if c.method == "none":
        return ""
    trig = {"auto": f"at the scanner's slice triggers (\u201c{c.slice_marker}\u201d markers) when the recording had "
                    "them, else at its volume triggers",
            "slice": f"at the scanner's slice triggers (\u201c{c.slice_marker}\u201d markers)",
            "volume": "at the scanner's volume triggers"}[c.triggers]
    text = (f"The MR gradient artefact was removed by average artefact subtraction (Allen et al., 2000): the EEG "
            f"was cut into epochs {trig}, and from every epoch the mean of its {c.gradient_neighbours} nearest "
            "epochs (half before, half after, the epoch itself excluded) was subtracted")
    if c.align:
        text += (f", after sub-sample alignment of the epochs (delays of up to {c.max_shift:g} samples, estimated "
                 "from the cross-spectrum with a reference epoch and applied as Fourier phase shifts to the "
                 "template)")
    text += "."
    if c.obs_components:
        text += (f" The first {c.obs_components} principal components of the residual artefact of each channel "
                 "(optimal basis set, Niazy et al., 2005; computed over blocks of epochs) were fitted to every "
                 "epoch and subtracted.")
    if c.lowpass:
        text += f" The data were then low-pass filtered at {c.lowpass:g} Hz (zero-phase linear-phase FIR)."
    if c.bcg:
        ecg = f"the {c.ecg_channel} channel" if c.ecg_channel else "the ECG channel"
        how = (f"the mean and the first {c.bcg_obs_components} principal components of its "
               f"{c.bcg_neighbours} nearest heartbeats were fitted to each heartbeat (optimal basis set)"
               if c.bcg_obs_components else
               f"the mean of its {c.bcg_neighbours} nearest heartbeats was subtracted from each heartbeat")
        text += (f" The pulse (ballistocardiogram) artefact was then removed: R peaks were detected on {ecg} "
                 "with MNE-Python's QRS detector, the EEG was cut into heartbeat epochs starting a quarter of the "
                 f"median R-R interval before each R peak, and {how}.")
    return text


def methods_html(config=None, **kwargs) -> str:
    """:func:`methods_text` as HTML ``<p>`` paragraphs (text escaped)."""
    return "\n".join(f"<p>{html.escape(par)}</p>" for par in methods_text(config, **kwargs).split("\n\n"))
