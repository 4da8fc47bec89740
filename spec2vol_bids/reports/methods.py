"""Citable methods boilerplate generated from the preprocessing settings (in the spirit of fMRIPrep's).

The text describes exactly what the given :class:`~spec2vol_bids.config.PreprocConfig` does, so it changes with
every option; users may copy it into a manuscript unchanged. It cites the Spec2VolCAMU-Net paper, the BIDS
standards and every library that did the work (:data:`REFERENCES`). :func:`methods_text` returns plain text
(paragraphs separated by blank lines; with ``cite=True`` Pandoc citation keys such as ``[@gramfort2013mne]``);
:func:`methods_html` the same as HTML paragraphs with numbered citations and the reference list;
:func:`write_boilerplate` writes fMRIPrep's ``logs/CITATION.md``, ``CITATION.bib`` and ``CITATION.html``.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping
from pathlib import Path

from .._version import __version__
from ..config import GRADIENT_SPAN_BELOW_HZ

__all__ = ["PAPER_CITATION", "REFERENCES", "methods_text", "methods_html", "boilerplate_markdown", "bibtex",
           "write_boilerplate"]

#: the works the methods text cites: key -> (reference as text, BibTeX entry)
REFERENCES: dict[str, tuple[str, str]] = {
    "he2025spec2vol": (
        "He D., Li S., Jiang B., Yan H. (2025). Spec2VolCAMU-Net: A Spectrogram-to-Volume Model for EEG-to-fMRI "
        "Reconstruction based on Multi-directional Time-Frequency Convolutional Attention Encoder and Vision-Mamba "
        "U-Net. arXiv preprint. https://github.com/hdy6438/Spec2VolCAMU-Net",
        "@article{he2025spec2vol,\n  title = {{Spec2VolCAMU-Net}: A Spectrogram-to-Volume Model for {EEG}-to-{fMRI} "
        "Reconstruction based on Multi-directional Time-Frequency Convolutional Attention Encoder and "
        "{Vision-Mamba} {U-Net}},\n  author = {He, Dongyi and Li, Shiyang and Jiang, Bin and Yan, He},\n"
        "  journal = {arXiv preprint},\n  year = {2025},\n  url = {https://github.com/hdy6438/Spec2VolCAMU-Net}\n}"),
    "gorgolewski2016bids": (
        "Gorgolewski K.J. et al. (2016). The brain imaging data structure, a format for organizing and describing "
        "outputs of neuroimaging experiments. Scientific Data 3, 160044. doi:10.1038/sdata.2016.44",
        "@article{gorgolewski2016bids,\n  title = {The brain imaging data structure, a format for organizing and "
        "describing outputs of neuroimaging experiments},\n  author = {Gorgolewski, Krzysztof J. and others},\n"
        "  journal = {Scientific Data},\n  volume = {3},\n  pages = {160044},\n  year = {2016},\n"
        "  doi = {10.1038/sdata.2016.44}\n}"),
    "pernet2019eegbids": (
        "Pernet C.R., Appelhoff S., Gorgolewski K.J., Flandin G., Phillips C., Delorme A., Oostenveld R. (2019). "
        "EEG-BIDS, an extension to the brain imaging data structure for electroencephalography. Scientific Data 6, "
        "103. doi:10.1038/s41597-019-0104-8",
        "@article{pernet2019eegbids,\n  title = {{EEG-BIDS}, an extension to the brain imaging data structure for "
        "electroencephalography},\n  author = {Pernet, Cyril R. and Appelhoff, Stefan and Gorgolewski, Krzysztof J. "
        "and Flandin, Guillaume and Phillips, Christophe and Delorme, Arnaud and Oostenveld, Robert},\n"
        "  journal = {Scientific Data},\n  volume = {6},\n  pages = {103},\n  year = {2019},\n"
        "  doi = {10.1038/s41597-019-0104-8}\n}"),
    "gorgolewski2017bidsapps": (
        "Gorgolewski K.J. et al. (2017). BIDS apps: Improving ease of use, accessibility, and reproducibility of "
        "neuroimaging data analysis methods. PLoS Computational Biology 13(3), e1005209. "
        "doi:10.1371/journal.pcbi.1005209",
        "@article{gorgolewski2017bidsapps,\n  title = {{BIDS} apps: Improving ease of use, accessibility, and "
        "reproducibility of neuroimaging data analysis methods},\n  author = {Gorgolewski, Krzysztof J. and "
        "others},\n  journal = {PLoS Computational Biology},\n  volume = {13},\n  number = {3},\n"
        "  pages = {e1005209},\n  year = {2017},\n  doi = {10.1371/journal.pcbi.1005209}\n}"),
    "allen1998pulse": (
        "Allen P.J., Polizzi G., Krakow K., Fish D.R., Lemieux L. (1998). Identification of EEG events in the MR "
        "scanner: the problem of pulse artifact and a method for its subtraction. NeuroImage 8(3), 229-239. "
        "doi:10.1006/nimg.1998.0361",
        "@article{allen1998pulse,\n  title = {Identification of {EEG} events in the {MR} scanner: the problem of pulse "
        "artifact and a method for its subtraction},\n  author = {Allen, Philip J. and Polizzi, Giovanni and Krakow, "
        "Karsten and Fish, David R. and Lemieux, Louis},\n  journal = {NeuroImage},\n  volume = {8},\n  number = {3},\n"
        "  pages = {229--239},\n  year = {1998},\n  doi = {10.1006/nimg.1998.0361}\n}"),
    "allen2000gradient": (
        "Allen P.J., Josephs O., Turner R. (2000). A method for removing imaging artifact from continuous EEG "
        "recorded during functional MRI. NeuroImage 12(2), 230-239. doi:10.1006/nimg.2000.0599",
        "@article{allen2000gradient,\n  title = {A method for removing imaging artifact from continuous {EEG} "
        "recorded during functional {MRI}},\n  author = {Allen, Philip J. and Josephs, Oliver and Turner, Robert},\n"
        "  journal = {NeuroImage},\n  volume = {12},\n  number = {2},\n  pages = {230--239},\n  year = {2000},\n"
        "  doi = {10.1006/nimg.2000.0599}\n}"),
    "niazy2005obs": (
        "Niazy R.K., Beckmann C.F., Iannetti G.D., Brady J.M., Smith S.M. (2005). Removal of FMRI environment "
        "artifacts from EEG data using optimal basis sets. NeuroImage 28(3), 720-737. "
        "doi:10.1016/j.neuroimage.2005.06.067",
        "@article{niazy2005obs,\n  title = {Removal of {FMRI} environment artifacts from {EEG} data using optimal "
        "basis sets},\n  author = {Niazy, Rami K. and Beckmann, Christian F. and Iannetti, Gian Domenico and Brady, "
        "J. Michael and Smith, Stephen M.},\n  journal = {NeuroImage},\n  volume = {28},\n  number = {3},\n"
        "  pages = {720--737},\n  year = {2005},\n  doi = {10.1016/j.neuroimage.2005.06.067}\n}"),
    "pan1985qrs": (
        "Pan J., Tompkins W.J. (1985). A real-time QRS detection algorithm. IEEE Transactions on Biomedical "
        "Engineering BME-32(3), 230-236. doi:10.1109/TBME.1985.325532",
        "@article{pan1985qrs,\n  title = {A real-time {QRS} detection algorithm},\n  author = {Pan, Jiapu and "
        "Tompkins, Willis J.},\n  journal = {IEEE Transactions on Biomedical Engineering},\n  volume = {BME-32},\n"
        "  number = {3},\n  pages = {230--236},\n  year = {1985},\n  doi = {10.1109/TBME.1985.325532}\n}"),
    "schimmel1967plusminus": (
        "Schimmel H. (1967). The (+/-) reference: accuracy of estimated mean components in average response "
        "studies. Science 157(3784), 92-94. doi:10.1126/science.157.3784.92",
        "@article{schimmel1967plusminus,\n  title = {The ($\\pm$) reference: accuracy of estimated mean components "
        "in average response studies},\n  author = {Schimmel, Herbert},\n  journal = {Science},\n"
        "  volume = {157},\n  number = {3784},\n  pages = {92--94},\n  year = {1967},\n"
        "  doi = {10.1126/science.157.3784.92}\n}"),
    "gramfort2013mne": (
        "Gramfort A. et al. (2013). MEG and EEG data analysis with MNE-Python. Frontiers in Neuroscience 7, 267. "
        "doi:10.3389/fnins.2013.00267",
        "@article{gramfort2013mne,\n  title = {{MEG} and {EEG} data analysis with {MNE-Python}},\n"
        "  author = {Gramfort, Alexandre and Luessi, Martin and Larson, Eric and Engemann, Denis A. and Strohmeier, "
        "Daniel and Brodbeck, Christian and Goj, Roman and Jas, Mainak and Brooks, Teon and Parkkonen, Lauri and "
        "H{\\\"a}m{\\\"a}l{\\\"a}inen, Matti},\n  journal = {Frontiers in Neuroscience},\n  volume = {7},\n"
        "  pages = {267},\n  year = {2013},\n  doi = {10.3389/fnins.2013.00267}\n}"),
    "appelhoff2019mnebids": (
        "Appelhoff S. et al. (2019). MNE-BIDS: Organizing electrophysiological data into the BIDS format and "
        "facilitating their analysis. Journal of Open Source Software 4(44), 1896. doi:10.21105/joss.01896",
        "@article{appelhoff2019mnebids,\n  title = {{MNE-BIDS}: Organizing electrophysiological data into the "
        "{BIDS} format and facilitating their analysis},\n  author = {Appelhoff, Stefan and others},\n"
        "  journal = {Journal of Open Source Software},\n  volume = {4},\n  number = {44},\n  pages = {1896},\n"
        "  year = {2019},\n  doi = {10.21105/joss.01896}\n}"),
    "yarkoni2019pybids": (
        "Yarkoni T. et al. (2019). PyBIDS: Python tools for BIDS datasets. Journal of Open Source Software 4(40), "
        "1294. doi:10.21105/joss.01294",
        "@article{yarkoni2019pybids,\n  title = {{PyBIDS}: Python tools for {BIDS} datasets},\n  author = "
        "{Yarkoni, Tal and others},\n  journal = {Journal of Open Source Software},\n  volume = {4},\n"
        "  number = {40},\n  pages = {1294},\n  year = {2019},\n  doi = {10.21105/joss.01294}\n}"),
    "gorgolewski2011nipype": (
        "Gorgolewski K. et al. (2011). Nipype: a flexible, lightweight and extensible neuroimaging data processing "
        "framework in Python. Frontiers in Neuroinformatics 5, 13. doi:10.3389/fninf.2011.00013",
        "@article{gorgolewski2011nipype,\n  title = {Nipype: a flexible, lightweight and extensible neuroimaging "
        "data processing framework in {Python}},\n  author = {Gorgolewski, Krzysztof and Burns, Christopher D. and "
        "Madison, Cindee and Clark, Dav and Halchenko, Yaroslav O. and Waskom, Michael L. and Ghosh, Satrajit S.},\n"
        "  journal = {Frontiers in Neuroinformatics},\n  volume = {5},\n  pages = {13},\n  year = {2011},\n"
        "  doi = {10.3389/fninf.2011.00013}\n}"),
    "brett2024nibabel": (
        "Brett M., Markiewicz C.J., Hanke M. et al. NiBabel: access a cacophony of neuro-imaging file formats. "
        "Zenodo. doi:10.5281/zenodo.591597",
        "@misc{brett2024nibabel,\n  title = {{NiBabel}: access a cacophony of neuro-imaging file formats},\n"
        "  author = {Brett, Matthew and Markiewicz, Christopher J. and Hanke, Michael and others},\n"
        "  howpublished = {Zenodo},\n  doi = {10.5281/zenodo.591597}\n}"),
    "harris2020numpy": (
        "Harris C.R. et al. (2020). Array programming with NumPy. Nature 585, 357-362. doi:10.1038/s41586-020-2649-2",
        "@article{harris2020numpy,\n  title = {Array programming with {NumPy}},\n  author = {Harris, Charles R. "
        "and others},\n  journal = {Nature},\n  volume = {585},\n  pages = {357--362},\n  year = {2020},\n"
        "  doi = {10.1038/s41586-020-2649-2}\n}"),
    "virtanen2020scipy": (
        "Virtanen P. et al. (2020). SciPy 1.0: fundamental algorithms for scientific computing in Python. Nature "
        "Methods 17, 261-272. doi:10.1038/s41592-019-0686-2",
        "@article{virtanen2020scipy,\n  title = {{SciPy} 1.0: fundamental algorithms for scientific computing in "
        "{Python}},\n  author = {Virtanen, Pauli and others},\n  journal = {Nature Methods},\n  volume = {17},\n"
        "  pages = {261--272},\n  year = {2020},\n  doi = {10.1038/s41592-019-0686-2}\n}"),
    "paszke2019pytorch": (
        "Paszke A. et al. (2019). PyTorch: An Imperative Style, High-Performance Deep Learning Library. Advances in "
        "Neural Information Processing Systems 32, 8024-8035",
        "@inproceedings{paszke2019pytorch,\n  title = {{PyTorch}: An Imperative Style, High-Performance Deep "
        "Learning Library},\n  author = {Paszke, Adam and others},\n  booktitle = {Advances in Neural Information "
        "Processing Systems 32},\n  pages = {8024--8035},\n  year = {2019}\n}"),
}
#: the library (versions key, display name) -> its reference
_LIBRARIES = (("numpy", "NumPy", "harris2020numpy"), ("scipy", "SciPy", "virtanen2020scipy"),
              ("mne", "MNE-Python", "gramfort2013mne"), ("mne-bids", "MNE-BIDS", "appelhoff2019mnebids"),
              ("pybids", "PyBIDS", "yarkoni2019pybids"), ("nibabel", "NiBabel", "brett2024nibabel"),
              ("nipype", "Nipype", "gorgolewski2011nipype"), ("torch", "PyTorch", "paszke2019pytorch"))
_CITE = re.compile(r" ?\[@([A-Za-z0-9_]+)\]")

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
                 versions: Mapping[str, str] | None = None, model: str | None = None, cite: bool = False) -> str:
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
    cite : bool
        Put Pandoc citation keys of :data:`REFERENCES` after what they cite (``[@gramfort2013mne]``) instead of
        the closing "Reference:" paragraph.

    Returns
    -------
    str
        Paragraphs separated by blank lines.
    """
    cfg = _cfg(config)
    e, p, b = cfg.eeg, cfg.pairing, cfg.bold
    v = dict(versions or {})

    def c(*keys: str) -> str:
        return f" [{'; '.join(f'@{k}' for k in keys)}]" if cite else ""

    runs = f"Each of the {n_runs} paired EEG-fMRI runs" if n_runs else "Each paired EEG-fMRI run"
    paras = []

    srcs = onset_sources or {"markers": n_runs or 1}
    parts = []
    for src, count in srcs.items():
        text = _ONSETS.get(src, f"from {src}").format(marker=e.volume_marker)
        parts.append(f"{text} ({count} run{'s' if count != 1 else ''})" if len(srcs) > 1 else text)
    onset_txt = "; ".join(parts)
    paras.append(
        f"EEG and fMRI data in the Brain Imaging Data Structure{c('gorgolewski2016bids', 'pernet2019eegbids')} "
        f"were preprocessed with spec2vol-bids {__version__}, a BIDS-App{c('gorgolewski2017bidsapps')} "
        f"implementing the Spec2VolCAMU-Net data pipeline (He et al.){c('he2025spec2vol')}. {runs} was processed "
        f"as follows. The onset of every BOLD "
        f"volume within the EEG recording was obtained {onset_txt}.")

    correction = _correction_text(cfg.correction, c)
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
    sel.append("channels marked bad in the BIDS channels.tsv were kept" if e.keep_bad_channels else
               "channels marked bad in the BIDS channels.tsv were excluded")
    sel_txt = " (" + "; ".join(sel) + ")"
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
        name = str(model)
        if name == "spec2vol":
            family = f" (Spec2VolCAMU-Net{c('he2025spec2vol')})"
        elif name.startswith("spec2vol-"):
            readout = {"spec2vol-lowrank": "a low-rank linear read-out to every voxel",
                       "spec2vol-xattn": "a cross-attention read-out from learned grid queries",
                       "spec2vol-refine": "a low-rank read-out refined by a small VM-UNet"}.get(name, "a global read-out")
            family = (f" (the EEG encoder of Spec2VolCAMU-Net{c('he2025spec2vol')} with {readout} in place of its "
                      "VM-UNet decoder, predicting each volume's deviation from the training-mean volume)")
        else:
            family = ""
        paras.append(f"BOLD volumes were predicted from the EEG spectrograms with the trained model {model}{family}.")

    libs = [f"{name} {v[key]}{c(ref)}" for key, name, ref in _LIBRARIES if key in v]
    if libs:
        paras.append(f"Computations used {', '.join(libs)}.")
    if not cite:
        paras.append(f"Reference: {PAPER_CITATION}.")
    return "\n\n".join(paras)


def _correction_text(c, cite=lambda *keys: "") -> str:
    """The artefact-correction paragraph (empty without correction).

    ``cite(*keys)`` gives the citation marks of :func:`methods_text` (an empty string without ``cite=True``, when
    the works are named by author and year instead).
    """
    if c.method == "none":
        return ""

    def ref(authors: str, key: str) -> str:
        return cite(key) or f" ({authors})"

    trig = {"auto": f"at the scanner's slice triggers (\u201c{c.slice_marker}\u201d markers) when the recording had "
                    "them, else at its volume triggers",
            "slice": f"at the scanner's slice triggers (\u201c{c.slice_marker}\u201d markers)",
            "volume": "at the scanner's volume triggers"}[c.triggers]
    text = (f"The MR gradient artefact was removed by average artefact subtraction"
            f"{ref('Allen et al., 2000', 'allen2000gradient')}: the EEG was cut into epochs {trig}, and from every "
            f"epoch the mean of its {c.gradient_neighbours} nearest epochs (half before, half after, the epoch itself "
            "excluded"
            + (f"; with triggers below {GRADIENT_SPAN_BELOW_HZ:g} Hz, as many as span {c.gradient_span:g} s when "
               "these spanned less"
               if c.gradient_span else "")
            + ") was subtracted")
    if c.align:
        text += (f", after sub-sample alignment of the epochs (delays of up to {c.max_shift:g} samples, estimated "
                 "from the cross-spectrum with a reference epoch and applied as Fourier phase shifts to the "
                 "template)")
    text += "."
    if c.obs_components:
        text += (f" The first {c.obs_components} principal components of the residual artefact of each channel "
                 f"(optimal basis set{cite('niazy2005obs') or ', Niazy et al., 2005'}; computed over blocks of epochs) "
                 "were fitted to every epoch and subtracted.")
    if c.lowpass:
        text += f" The data were then low-pass filtered at {c.lowpass:g} Hz (zero-phase linear-phase FIR)."
    if c.bcg:
        ecg = f"the {c.ecg_channel} channel" if c.ecg_channel else "the ECG channel"
        if c.bcg_obs_components:
            how = (f"the mean and the first {c.bcg_obs_components} principal components of its "
                   f"{c.bcg_neighbours} nearest heartbeats were fitted to each heartbeat (optimal basis set)")
        else:
            how = f"the mean of its {c.bcg_neighbours} nearest heartbeats was subtracted from each heartbeat"
            if c.bcg_template_rank == "auto":
                how += (", keeping of that mean (channels x lags) the singular components above the largest "
                        "singular value of the same heartbeats averaged with alternating signs, the +/- average"
                        f"{ref('Schimmel, 1967', 'schimmel1967plusminus')}")
            elif c.bcg_template_rank:
                how += f", keeping its first {c.bcg_template_rank} singular components (channels x lags)"
        text += (f" The pulse (ballistocardiogram) artefact was then removed{ref('Allen et al., 1998', 'allen1998pulse')}"
                 f": R peaks were detected on {ecg} with MNE-Python's QRS detector{cite('gramfort2013mne')}, "
                 "missed beats were searched for in R-R intervals longer than 1.66 median intervals"
                 f"{ref('Pan and Tompkins, 1985', 'pan1985qrs')}, the "
                 "EEG was cut into heartbeat epochs starting a tenth of the median R-R interval before each R "
                 f"peak, and {how}.")
    return text


def cited(text: str) -> list[str]:
    """The keys of :data:`REFERENCES` cited in a text with ``cite=True``, in order of first citation."""
    keys = re.findall(r"@([A-Za-z0-9_]+)", " ".join(m.group(0) for m in re.finditer(r"\[@[^\]]+\]", text)))
    return list(dict.fromkeys(k for k in keys if k in REFERENCES))


def methods_html(config=None, **kwargs) -> str:
    """:func:`methods_text` as HTML ``<p>`` paragraphs (text escaped), with numbered citations and the list of
    references (``<ol class="references">``, entries ``id="ref-<key>"``)."""
    kwargs.pop("cite", None)
    text = methods_text(config, cite=True, **kwargs)
    keys = cited(text)
    number = {k: i + 1 for i, k in enumerate(keys)}

    def link(match: re.Match) -> str:
        refs = re.findall(r"@([A-Za-z0-9_]+)", match.group(0))
        return " [" + ", ".join(f'<a href="#ref-{k}">{number[k]}</a>' for k in refs) + "]"

    paras = [re.sub(r" \[@[^\]]+\]", link, html.escape(par, quote=False)) for par in text.split("\n\n")]
    refs = "".join(f'<li id="ref-{k}">{html.escape(REFERENCES[k][0])}</li>' for k in keys)
    return "\n".join(f"<p>{par}</p>" for par in paras) + f'\n<h3>References</h3>\n<ol class="references">{refs}</ol>'


def boilerplate_markdown(config=None, **kwargs) -> str:
    """fMRIPrep's ``CITATION.md``: the methods text with Pandoc citation keys, then the references as text.

    ``pandoc --citeproc --bibliography CITATION.bib CITATION.md`` formats it in any citation style.
    """
    kwargs.pop("cite", None)
    text = methods_text(config, cite=True, **kwargs)
    refs = "\n".join(f"- [{k}] {REFERENCES[k][0]}" for k in cited(text))
    return (f"# Methods (spec2vol-bids {__version__})\n\n{text}\n\n"
            "*This text was generated automatically from the settings of the run and may be copied into a "
            f"manuscript unchanged.*\n\n## References\n\n{refs}\n")


def bibtex(keys=None) -> str:
    """BibTeX entries of ``keys`` (default: every entry of :data:`REFERENCES`)."""
    return "\n\n".join(REFERENCES[k][1] for k in (keys or REFERENCES)) + "\n"


def write_boilerplate(out_dir: str | os.PathLike, config=None, **kwargs) -> list[Path]:
    """Write ``OUT_DIR/logs/CITATION.md``, ``CITATION.bib`` and ``CITATION.html`` (atomically), as fMRIPrep does.

    ``kwargs`` are those of :func:`methods_text` (``n_runs``, ``onset_sources``, ``versions``, ``model``).
    Returns the three paths.
    """
    from ..utils import atomic_write
    from .html import Section, render_page

    logs = Path(out_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    kwargs.pop("cite", None)
    markdown = boilerplate_markdown(config, **kwargs)
    keys = cited(methods_text(config, cite=True, **kwargs))
    page = render_page("spec2vol-bids methods", [Section("methods", "Methods", '<div class="methods">'
                                                         + methods_html(config, **kwargs) + "</div>")],
                       subtitle=f"spec2vol-bids {__version__}: generated from the settings of the run")
    return [atomic_write(logs / "CITATION.md", markdown), atomic_write(logs / "CITATION.bib", bibtex(keys)),
            atomic_write(logs / "CITATION.html", page)]
