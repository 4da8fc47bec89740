"""Participant report ``OUT_DIR/sub-<label>.html``: one portable HTML file per subject.

Sections: summary (runs, onset source, marker counts), EEG-to-volume alignment, spectrogram, EEG artefacts (the
scanner-artefact QC, when measured; artefact found in the EEG is also shown at the top in red), target BOLD,
prediction vs measured (when predictions exist), methods (boilerplate generated from the settings, with its
references), errors (crash files) and about (command line, date, versions, environment, input datasets). Paths are
shown relative to ``OUT_DIR``: the report names no machine path. Figures are embedded as base64 PNG and also saved
under ``OUT_DIR/sub-<label>/figures/``.

The inputs are plain arrays and values collected in :class:`RunReport`, so the caller (the BIDS-App, a notebook)
only passes data it already has.

Examples
--------
>>> run = RunReport(name="sub-01_task-rest", repetition_time=2.0, n_volumes=len(onsets),
...                 volume_onsets=onsets, onset_source="markers", marker_onsets=markers,
...                 spectrogram=raw_spec, frequencies=freqs, valid=valid, target=target, mask=mask)
>>> participant_report(out_dir, "01", [run], config=cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import UsageError
from .html import RawHTML, Section, esc, img_tag, render_page, table_html

__all__ = ["RunReport", "participant_report", "report_path", "figures_dir"]

LOGGER = logging.getLogger("spec2vol_bids.reports")
MAX_CRASH_LINES = 80


@dataclass
class RunReport:
    """Everything the report shows about one paired EEG-fMRI run (``None``: not available, section skipped).

    Attributes
    ----------
    name : str
        BIDS entity prefix of the run, e.g. ``"sub-01_ses-1_task-rest_run-1"`` (figure file names start with it).
    repetition_time : float
        BOLD TR in seconds.
    n_volumes : int
        Volumes in the BOLD run.
    volume_onsets : ndarray of float, shape (n_volumes,)
        Onsets used for the EEG windows (seconds from the first EEG sample).
    onset_source : str
        ``"markers"``, ``"events.tsv"`` or ``"tr-fallback"``.
    marker_onsets : ndarray of float, optional
        Every volume marker found (count may differ from ``n_volumes``).
    filled_volumes : list of int
        Volumes whose missing trigger was filled between its neighbours (marked in the alignment figure).
    eeg_duration, sfreq : float, optional
        Length (s) and sampling frequency (Hz) of the EEG recording.
    channels : list of str, optional
        Channels used, in spectrogram order.
    spectrogram : ndarray, shape (n_volumes, n_channels, n_freqs), optional
        Preferably unscaled (see :func:`~spec2vol_bids.reports.figures.spectrogram_figure`).
    frequencies : ndarray, shape (n_freqs,), optional
    valid : ndarray of bool, shape (n_volumes,), optional
    n_pairs : int, optional
        Model input/target pairs of the run.
    target : ndarray, shape (X, Y, Z, n_volumes), optional
        Target BOLD on the model grid.
    mask : ndarray of bool, shape (X, Y, Z), optional
    prediction : ndarray, shape (X, Y, Z, N), optional
        Predicted volumes; ``prediction_indices`` gives each one's volume index in ``target``.
    prediction_indices : ndarray of int, shape (N,), optional
    ssim : ndarray, shape (N,), optional
        Per-volume SSIM (computed when omitted).
    warnings : list of str
        Messages to show with the run (e.g. marker/volume count mismatches found while reading).
    files : dict of str to path
        Output files to list (label -> path), shown relative to the output folder.
    eeg_source : dict, optional
        Where the EEG came from (the sidecar's ``EEGSource``: ``Dataset``, ``File`` and, for preprocessed EEG,
        ``Desc``).
    artefact_correction, artefact_qc : dict, optional
        The sidecar's ``ArtefactCorrection`` and ``ArtefactQC`` (scanner artefacts before and after correction).
    artefact_warnings : list of str
        Artefact found in the EEG the spectrogram is made from (shown loudly, at the top of the report).
    """

    name: str
    repetition_time: float
    n_volumes: int
    volume_onsets: Any = None
    onset_source: str = "markers"
    marker_onsets: Any = None
    filled_volumes: Sequence[int] = ()
    eeg_duration: float | None = None
    sfreq: float | None = None
    channels: Sequence[str] | None = None
    spectrogram: Any = None
    frequencies: Any = None
    valid: Any = None
    n_pairs: int | None = None
    target: Any = None
    mask: Any = None
    prediction: Any = None
    prediction_indices: Any = None
    ssim: Any = None
    warnings: list[str] = field(default_factory=list)
    files: dict[str, Any] = field(default_factory=dict)
    eeg_source: dict | None = None
    artefact_correction: dict | None = None
    artefact_qc: dict | None = None
    artefact_warnings: list[str] = field(default_factory=list)

    def all_warnings(self) -> list[str]:
        """``warnings`` plus the checks the report makes itself (marker count, TR fallback, invalid windows)."""
        out = list(self.warnings)
        if self.marker_onsets is not None and len(self.marker_onsets) != self.n_volumes:
            out.append(f"{len(self.marker_onsets)} volume markers were found for {self.n_volumes} BOLD volumes.")
        if self.onset_source == "tr-fallback":
            out.append("No volume markers: onsets assumed at EEG start + k x TR (alignment unverified).")
        if self.valid is not None:
            n_bad = int(np.size(self.valid) - np.count_nonzero(self.valid))
            if n_bad:
                out.append(f"{n_bad} of {np.size(self.valid)} EEG windows lie outside the recording (unused).")
        return out


def _label(subject: str) -> str:
    label = str(subject)
    label = label[4:] if label.startswith("sub-") else label
    if not label or not label.isalnum():
        raise UsageError(f"participant label {subject!r} is not alphanumeric",
                         hint="Pass the label without the sub- prefix, e.g. 01.")
    return label


def report_path(out_dir: str | os.PathLike, subject: str) -> Path:
    """``OUT_DIR/sub-<label>.html``."""
    return Path(out_dir) / f"sub-{_label(subject)}.html"


def figures_dir(out_dir: str | os.PathLike, subject: str) -> Path:
    """``OUT_DIR/sub-<label>/figures``."""
    return Path(out_dir) / f"sub-{_label(subject)}" / "figures"


class _Figures:
    """Renders figures to PNG, saves them under the figures folder and collects failures."""

    def __init__(self, out_dir: Path, fig_dir: Path, save: bool):
        self.out_dir, self.fig_dir, self.save = out_dir, fig_dir, save
        self.failures: list[str] = []
        self.saved: list[Path] = []

    def make(self, stem: str, desc: str, suffix: str, caption: str, build) -> str:
        from .figures import save_figure, to_png

        try:
            png = to_png(build())
        except Exception as exc:  # a broken figure must not cost the whole report
            LOGGER.warning("report figure %s_desc-%s failed: %s", stem, desc, exc)
            self.failures.append(f"figure {stem}_desc-{desc}_{suffix}.png could not be drawn: "
                                 f"{type(exc).__name__}: {exc}")
            return f'<p class="warn">The {esc(desc)} figure could not be drawn ({esc(exc)}).</p>'
        link = None
        if self.save:
            path = save_figure(png, self.fig_dir / f"{stem}_desc-{desc}_{suffix}.png")
            self.saved.append(path)
            link = os.path.relpath(path, self.out_dir)
        return f"<figure>{img_tag(png, caption, link=link)}<figcaption class=\"meta\">{esc(caption)}" \
               f"</figcaption></figure>"


def _stem(run: RunReport, label: str) -> str:
    name = run.name if run.name.startswith("sub-") else f"sub-{label}_{run.name}"
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def _summary(runs: Sequence[RunReport], label: str, config_toml: str | None, n_errors: int, out_dir: Path) -> str:
    rows = []
    for r in runs:
        onsets = None if r.volume_onsets is None else np.asarray(r.volume_onsets, float)
        n_markers = None if r.marker_onsets is None else len(r.marker_onsets)
        markers = (RawHTML(f'<span class="{"ok" if n_markers == r.n_volumes else "bad"}">{n_markers}</span>')
                   if n_markers is not None else None)
        n_valid = None if r.valid is None else int(np.count_nonzero(r.valid))
        rows.append([r.name, float(r.repetition_time), int(r.n_volumes), markers, r.onset_source,
                     None if onsets is None or onsets.size == 0 else float(onsets[0]),
                     r.eeg_duration, r.sfreq, None if r.channels is None else len(r.channels),
                     n_valid, r.n_pairs, "yes" if r.prediction is not None else "no"])
    alerts = [f'<div class="alert"><b>{esc(r.name)}: scanner artefact in the EEG.</b> {_options_nowrap(w)} '
              f'<a href="#artefacts">See "EEG artefacts".</a></div>' for r in runs for w in r.artefact_warnings]
    body = alerts + [f"<p>Participant <b>sub-{esc(label)}</b>: {len(runs)} paired EEG-fMRI run"
            f"{'s' if len(runs) != 1 else ''}, {n_errors} error{'s' if n_errors != 1 else ''}.</p>",
            table_html(rows, ["run", "TR (s)", "BOLD volumes", "volume markers", "onset source",
                              "first volume (s)", "EEG length (s)", "EEG rate (Hz)", "channels",
                              "valid windows", "pairs", "predicted"])]
    for r in runs:
        for w in r.all_warnings():
            body.append(f'<p class="warn"><b>{esc(r.name)}</b>: {esc(w)}</p>')
        if r.eeg_source:
            corr = (r.artefact_correction or {}).get("Method", "none")
            body.append(f'<p class="meta">{esc(r.name)}: EEG from <code>{esc(r.eeg_source.get("File", ""))}</code>'
                        + (f' (desc-{esc(r.eeg_source["Desc"])})' if r.eeg_source.get("Desc") else "")
                        + f"; artefact correction: {esc(corr)}.</p>")
        if r.files:
            items = "".join(f"<li>{esc(k)}: <code>{esc(_relative(v, out_dir))}</code></li>"
                            for k, v in r.files.items())
            body.append(f"<details><summary>{esc(r.name)}: output files</summary><ul>{items}</ul></details>")
    if config_toml:
        body.append(f"<details><summary>settings (TOML)</summary><pre>{esc(config_toml)}</pre></details>")
    return "\n".join(body)


def _options_nowrap(text: str) -> str:
    """``text`` escaped, its command-line options (``--eeg-correction``) kept on one line by the browser."""
    return re.sub(r"(--[A-Za-z][\w-]*)", r'<span class="nowrap">\1</span>', esc(text))


def _yes_no(flag) -> str:
    return {True: '<span class="bad">yes</span>', False: '<span class="ok">no</span>'}.get(flag, "not measured")


def _artefacts_html(r: RunReport, stem: str, figs: _Figures) -> str:
    """The scanner-artefact QC of a run: warnings, the figure and the per-channel numbers."""
    from . import figures as F

    qc = r.artefact_qc or {}
    method = (r.artefact_correction or {}).get("Method", "none")
    grad, card = qc.get("Gradient") or {}, qc.get("Cardiac") or {}
    parts = [f'<div class="alert">{_options_nowrap(w)}</div>' for w in r.artefact_warnings]
    detected = qc.get("ArtefactDetected") or {}
    if not r.artefact_warnings:
        parts.append('<p class="ok">The QC finds no gradient or pulse artefact in the EEG the spectrogram is made '
                     'from.</p>')
    parts.append(f"<p>Correction: <b>{esc(method)}</b>. Gradient artefact at the {esc(grad.get('Triggers', '?'))} "
                 f"triggers, {grad.get('ArtefactFrequency', float('nan')):.4g} Hz and its harmonics up to "
                 f"{grad.get('HarmonicsMax', float('nan')):.4g} Hz"
                 + (f"; heart rate {card['HeartRate']:.0f} per minute from {esc(card.get('ECGChannel'))} "
                    f"({card.get('NumberOfBeats')} beats)" if "HeartRate" in card else "")
                 + (f"; cardiac QC: {esc(card['Skipped'])}" if "Skipped" in card else "")
                 + f". Artefact in the EEG the spectrogram is made from: gradient "
                   f"{_yes_no(detected.get('Gradient'))}, pulse {_yes_no(detected.get('Cardiac'))}.</p>")
    parts.append(figs.make(
        stem, "artefacts", "eeg",
        ("Power spectrum (mean over channels) of the EEG as used (not corrected)" if method == "none" else
         "Power spectrum (mean over channels) before and after correction")
        + " with the harmonics of the trigger frequency, and per channel the power at those harmonics and of the "
          "heartbeat-locked average.",
        lambda: F.artefact_figure(qc, title=f"{r.name}: scanner artefacts (correction {method})")))
    names = qc.get("Channels") or []
    card_names = card.get("Channels") or []

    def val(d, key, k):
        values = d.get(key) or []
        return None if k is None or k >= len(values) or values[k] is None else float(values[k])

    rows = []
    for i, ch in enumerate(names):
        j = card_names.index(ch) if ch in card_names else None
        rows.append([ch, val(grad, "PowerBefore", i), val(grad, "PowerAfter", i), val(grad, "Reduction", i),
                     val(grad, "PeakRatioBefore", i), val(grad, "PeakRatioAfter", i),
                     val(card, "PowerBefore", j), val(card, "PowerAfter", j)])
    parts.append("<details><summary>per-channel numbers (dB)</summary>"
                 + table_html(rows, ["channel", "harmonics before", "harmonics after", "reduction",
                                     "peak ratio before", "peak ratio after", "cardiac before", "cardiac after"])
                 + "</details>")
    return "\n".join(parts)


def _relative(path, out_dir: Path) -> str:
    """A path as shown in the report: relative to ``OUT_DIR``."""
    try:
        return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(out_dir))).as_posix()
    except ValueError:  # pragma: no cover - another drive on Windows
        return Path(path).name


def _errors(errors: Sequence[Any], failures: Sequence[str], out_dir: Path, paths: dict[str, str]) -> str:
    if not errors and not failures:
        return '<p class="ok">No errors to report.</p>'
    items = []
    for err in errors:
        path = Path(err) if isinstance(err, (str, os.PathLike)) and Path(err).is_file() else None
        if path is None:
            from .provenance import scrub

            items.append(f'<div class="warn">{esc(scrub(str(err), paths))}</div>')
            continue
        try:
            rel = os.path.relpath(path, out_dir)
        except ValueError:  # pragma: no cover - another drive on Windows
            rel = str(path)
        from .provenance import scrub

        lines = scrub(path.read_text(encoding="utf-8", errors="replace"), paths).splitlines()
        more = f"\n... ({len(lines) - MAX_CRASH_LINES} more lines)" if len(lines) > MAX_CRASH_LINES else ""
        items.append(f'<details><summary class="bad">{esc(rel)}</summary>'
                     f"<pre>{esc(chr(10).join(lines[:MAX_CRASH_LINES]) + more)}</pre></details>")
    items += [f'<div class="warn">{esc(f)}</div>' for f in failures]
    return f"<p>{len(items)} error{'s' if len(items) != 1 else ''}:</p>\n" + "\n".join(items)


def participant_report(out_dir: str | os.PathLike, subject: str, runs: Sequence[RunReport], *, config=None,
                       errors: Sequence[Any] = (), versions: dict[str, str] | None = None,
                       model: str | None = None, save_figures: bool = True, provenance=None) -> Path:
    """Write ``OUT_DIR/sub-<label>.html`` (and its figures) atomically; return the report's path.

    Parameters
    ----------
    out_dir : path
        The derivatives folder (OUT_DIR).
    subject : str
        Participant label, with or without ``sub-``.
    runs : sequence of RunReport
        One entry per paired run (may be empty when every run failed: the report then shows the errors).
    config : PreprocConfig or dict, optional
        Settings used (default: the official pipeline); shown as TOML and turned into the methods text.
    errors : sequence of paths or str
        Crash files (their text is embedded, folded) or error messages.
    versions : dict, optional
        Package versions for the methods paragraph (:func:`spec2vol_bids.utils.versions`).
    model : str, optional
        Name of the model used for predictions.
    save_figures : bool
        Also save every figure as ``OUT_DIR/sub-<label>/figures/<run>_desc-<figure>_<suffix>.png``.
    provenance : Provenance, optional
        The About section (:func:`spec2vol_bids.reports.provenance.provenance`; default: made here, from
        ``sys.argv``). Its paths are also scrubbed from the crash files shown.
    """
    from ..config import PreprocConfig
    from ..utils import atomic_write
    from . import figures as F
    from .methods import methods_html
    from .provenance import about_section
    from .provenance import provenance as make_provenance

    out = Path(out_dir)
    if provenance is None:
        provenance = make_provenance(out)
    paths = {**getattr(provenance, "paths", {}), str(out.absolute()): "."}
    label = _label(subject)
    cfg = config if isinstance(config, PreprocConfig) else PreprocConfig.from_dict(config or {})
    figs = _Figures(out, figures_dir(out, label), save_figures)

    align, spec, bold, pred, arts = [], [], [], [], []
    for r in runs:
        stem = _stem(r, label)
        head = f"<h3>{esc(r.name)}</h3>"
        if r.artefact_qc:
            arts.append(head + _artefacts_html(r, stem, figs))
        if r.volume_onsets is not None and len(r.volume_onsets):
            align.append(head + figs.make(
                stem, "alignment", "eeg",
                f"Volume onsets ({r.onset_source}) within the EEG recording and their deviation from a regular "
                f"TR grid."
                + (f" Orange: onsets filled for missing triggers (volume(s) "
                   f"{', '.join(str(i) for i in r.filled_volumes)})." if len(r.filled_volumes) else ""),
                lambda r=r: F.alignment_figure(r.volume_onsets, r.repetition_time, eeg_duration=r.eeg_duration,
                                               marker_onsets=r.marker_onsets, onset_source=r.onset_source,
                                               filled=r.filled_volumes)))
        if r.spectrogram is not None and r.frequencies is not None:
            spec.append(head + figs.make(
                stem, "spectrogram", "eeg",
                "Spectrogram of the EEG windows (one per BOLD volume): time x frequency averaged over channels "
                "(channel x frequency averaged over time when the values are z-scored across electrodes, whose "
                "channel mean is 0), time x channel averaged over frequencies, and the mean of each channel "
                "(outliers in red).",
                lambda r=r: F.spectrogram_figure(r.spectrogram, r.frequencies, volume_onsets=r.volume_onsets,
                                                 valid=r.valid, channels=r.channels)))
        if r.target is not None:
            first = (cfg.pairing.discard_volumes if np.shape(r.target)[-1] > cfg.pairing.discard_volumes else 0)
            bold.append(head + figs.make(
                stem, "target", "bold",
                f"Target BOLD on the model grid: volume {first} (the first one after the discarded volumes) "
                f"and the mean volume, with the brain mask outlined in red.",
                lambda r=r, first=first: F.bold_figure(r.target, mask=r.mask, volume_index=first)))
        if r.prediction is not None and r.target is not None:
            idx = (np.arange(np.shape(r.prediction)[-1]) if r.prediction_indices is None
                   else np.asarray(r.prediction_indices, dtype=int))
            pred.append(head + figs.make(
                stem, "prediction", "bold",
                "Predicted and measured volume (median SSIM) with their difference; SSIM of every predicted "
                "volume; distribution of the voxel-wise correlation of predicted and measured time courses "
                "inside the brain mask.",
                lambda r=r, idx=idx: F.prediction_figure(
                    r.prediction, np.asarray(r.target)[..., idx], volume_indices=idx, ssim=r.ssim,
                    mask=r.mask)))

    onset_sources: dict[str, int] = {}
    for r in runs:
        onset_sources[r.onset_source] = onset_sources.get(r.onset_source, 0) + 1
    sections = [Section("summary", "Summary", "")]  # body filled once the figure failures are known
    none = '<p class="meta">Not available for this participant.</p>'
    sections.append(Section("alignment", "EEG-to-volume alignment", "\n".join(align) or none))
    sections.append(Section("spectrogram", "Spectrogram", "\n".join(spec) or none))
    if arts:
        sections.append(Section("artefacts", "EEG artefacts", "\n".join(arts)))
    sections.append(Section("target", "Target BOLD", "\n".join(bold) or none))
    if pred:
        sections.append(Section("prediction", "Prediction vs measured", "\n".join(pred)))
    sections.append(Section("methods", "Methods", '<div class="methods">' + methods_html(
        cfg, n_runs=len(runs) or None, onset_sources=onset_sources or None, versions=versions, model=model)
        + '<p class="meta">This text was generated automatically from the settings above and may be copied '
          'into a manuscript unchanged; <code>logs/CITATION.md</code> and <code>logs/CITATION.bib</code> hold it '
          'with its references for Pandoc.</p></div>'))
    sections.append(Section("errors", "Errors", _errors(errors, figs.failures, out, paths)))
    sections.append(about_section(provenance))
    n_err = len(errors) + len(figs.failures)
    sections[0].body = _summary(runs, label, cfg.to_toml(), n_err, out)
    page = render_page(f"spec2vol-bids report: sub-{label}", sections,
                       subtitle=f"spec2vol-bids {__version__}")
    return atomic_write(report_path(out, label), page)
