"""Typed preprocessing settings, read and written as TOML.

The settings are plain dataclasses grouped by modality:

* :class:`EEGConfig`: how the EEG around each BOLD volume becomes one spectrogram row,
* :class:`PairingConfig`: which spectrogram rows feed the model for which target volume,
* :class:`BOLDConfig`: how BOLD volumes become model targets (grid, resize, intensity scaling),
* :class:`CorrectionConfig`: the MR gradient and pulse (BCG) artefact correction of EEG recorded in the scanner
  (off by default) and its quality control,

collected in :class:`PreprocConfig`. **The defaults reproduce the official Spec2VolCAMU-Net pipeline**
(TR-long rectangular windows, ``|FFT|`` bins 1..249, z-scored across electrodes; 6 volumes discarded; windows
``i..i+19`` predict volume ``i+20``; per-volume min-max; DCT resize to 64 x 64 x D). Every other value of an
option is an improvement that users may opt into; the docstring of each field says what it changes.

Every run records its settings next to its outputs (``PreprocConfig.to_toml``); the same text read back with
:meth:`PreprocConfig.from_toml` gives identical settings. Wrong values raise :class:`~spec2vol_bids.errors.UsageError`
with a message that names the field and the accepted values.

Examples
--------
>>> from spec2vol_bids.config import PreprocConfig
>>> cfg = PreprocConfig.from_dict({"eeg": {"taper": "hann", "log_power": True}})
>>> cfg.eeg.taper, cfg.pairing.n_windows
('hann', 20)
>>> PreprocConfig.from_toml(cfg.to_toml()) == cfg
True
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .errors import DataError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "TAPERS",
    "FREQUENCY_AXES",
    "EEG_SCALINGS",
    "BOLD_RESIZES",
    "BOLD_SCALINGS",
    "EEGConfig",
    "PairingConfig",
    "BOLDConfig",
    "CorrectionConfig",
    "CORRECTIONS",
    "TRIGGER_SOURCES",
    "PreprocConfig",
    "SETTING_OPTIONS",
    "option_name",
]

#: accepted values of :attr:`EEGConfig.taper`
TAPERS = ("boxcar", "hann", "hamming", "tukey")
#: accepted values of :attr:`EEGConfig.frequency_axis`
FREQUENCY_AXES = ("bins", "hz")
#: accepted values of :attr:`EEGConfig.scaling`
EEG_SCALINGS = ("zscore-electrodes", "none", "zscore-channel")
#: accepted values of :attr:`BOLDConfig.resize`
BOLD_RESIZES = ("dct", "none")
#: accepted values of :attr:`BOLDConfig.scaling`
BOLD_SCALINGS = ("minmax", "minmax-mask", "zscore")
#: accepted values of :attr:`CorrectionConfig.method` (``--eeg-correction``)
CORRECTIONS = ("none", "gradient", "gradient+bcg")
#: accepted values of :attr:`CorrectionConfig.triggers`
TRIGGER_SOURCES = ("auto", "slice", "volume")


#: the BIDS-App's command-line option of each setting, so that messages name what a user can type
SETTING_OPTIONS = {
    "eeg.volume_marker": "--volume-marker", "eeg.window_length": "--window-length",
    "eeg.overlap": "--window-overlap", "eeg.taper": "--taper", "eeg.log_power": "--log-power",
    "eeg.frequency_axis": "--freq-axis", "eeg.n_freqs": "--n-freqs", "eeg.fmin": "--fmin", "eeg.fmax": "--fmax",
    "eeg.scaling": "--eeg-scaling", "eeg.include": "--include-channels", "eeg.exclude": "--exclude-channels",
    "eeg.exclude_types": "--exclude-channel-types", "eeg.keep_bad_channels": "--keep-bad-channels",
    "pairing.n_windows": "--n-windows", "pairing.discard_volumes": "--discard", "pairing.lag_volumes": "--lag",
    "pairing.window_span_s": "--window-span-s", "pairing.lag_s": "--lag-s",
    "bold.scaling": "--bold-scaling", "bold.resize": "--bold-resize", "bold.n_slices": "--n-slices",
    "correction.method": "--eeg-correction", "correction.slice_marker": "--slice-marker",
    "correction.ecg_channel": "--ecg-channel",
}


def option_name(key: str) -> str:
    """How messages name a setting: its command-line option and its settings-file key.

    >>> option_name("eeg.exclude")
    '--exclude-channels (eeg.exclude)'
    >>> option_name("eeg.tukey_alpha")  # no command-line option
    'eeg.tukey_alpha'
    """
    flag = SETTING_OPTIONS.get(key)
    return f"{flag} ({key})" if flag else key


def _choice(section: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        near = difflib.get_close_matches(str(value), choices, n=1)
        key = option_name(f"{section}.{name}")
        hint = f"Did you mean {near[0]!r} for {key}?" if near else f"Use one of: {', '.join(choices)} for {key}."
        raise UsageError(f"{section}.{name} = {value!r} is not one of {', '.join(choices)}", hint=hint)
    return value


def _number(section: str, name: str, value: Any, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, integer: bool = False) -> Any:
    ok_type = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type) or (
            not integer and not math.isfinite(float(value))):
        kind = "an integer" if integer else "a finite number"
        raise UsageError(f"{section}.{name} = {value!r} is not {kind}",
                         hint=f"Set {option_name(f'{section}.{name}')} to {kind}.")
    bad = ((low is not None and (value <= low if low_open else value < low))
           or (high is not None and (value >= high if high_open else value > high)))
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        rng = " and ".join(p for p in (lo, hi) if p)
        raise UsageError(f"{section}.{name} = {value!r} is out of range",
                         hint=f"Use a value {rng} for {option_name(f'{section}.{name}')}.")
    return int(value) if integer else float(value)


def _names(section: str, name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) for v in value):
        raise UsageError(f"{section}.{name} must be a list of names, got {value!r}",
                         hint=f'Write it as a list, e.g. {name} = ["ECG", "EOG"].')
    return tuple(value)


class _Section:
    """Shared ``to_dict``/``from_dict`` for the dataclass sections (unknown keys are refused)."""

    _section: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain-container copy (tuples become lists; ``None`` kept) suitable for JSON."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None):
        """Build from a mapping; missing keys take their default, unknown keys raise ``UsageError``."""
        data = dict(data or {})
        if not isinstance(data, dict):  # pragma: no cover - guarded by dict() above
            raise UsageError(f"[{cls._section}] must be a table")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                near = difflib.get_close_matches(key, known, n=1)
                hint = f"Did you mean {near[0]!r}?" if near else f"Known settings: {', '.join(known)}."
                raise UsageError(f"unknown setting {cls._section}.{key}", hint=hint)
        return cls(**data)


@dataclass(frozen=True)
class EEGConfig(_Section):
    """How the EEG around each BOLD volume becomes one spectrogram row ``[n_channels, n_freqs]``.

    The spectrogram always has **one row per BOLD volume** (row ``k`` belongs to volume ``k``); the hop between
    rows is therefore the volume spacing (the TR) and cannot be chosen. What can be chosen is which EEG
    samples enter row ``k`` and how their spectrum is summarised.

    Parameters
    ----------
    window_length : float or None
        Length in seconds of the *core* window of volume ``k``: ``[onset_k, onset_k + window_length)``.
        ``None`` (default, official) uses one TR, so consecutive windows tile the recording without gaps or
        overlap. A shorter value leaves gaps between windows; a longer one makes them overlap.
    overlap : float
        Fraction in ``[0, 1)`` by which each window is **extended backwards in time**: the window becomes
        ``[onset_k + L - L / (1 - overlap), onset_k + L)`` with ``L = window_length``, i.e. its length is
        ``L / (1 - overlap)`` and it ends where the core window ends (no later EEG enters row ``k``). With
        ``L = TR`` consecutive windows then overlap by exactly ``overlap`` of their length (0.5: each window
        spans two TRs). The default 0 is the official non-overlapping window. Longer windows give finer
        frequency resolution and lower variance; the first rows may become invalid (window before the recording).
    taper : {"boxcar", "hann", "hamming", "tukey"}
        Window function multiplied with each segment before the FFT. ``"boxcar"`` (default, official) is no
        taper; the others reduce spectral leakage from strong low-frequency and gradient artefacts into
        neighbouring bins at the cost of a wider main lobe.
    tukey_alpha : float
        Fraction of the Tukey window inside the cosine tapered region (only used with ``taper="tukey"``).
    frequency_axis : {"bins", "hz"}
        ``"bins"`` (default, official): the ``|FFT|`` bins ``1..n_freqs`` of each window, at ``k / T`` Hz for a
        window of ``T`` seconds, so the axis depends on the TR (0.78-194.5 Hz for CN-EPFL, 0.46-115 Hz for
        NODDI). ``"hz"``: the magnitude spectrum linearly interpolated onto ``n_freqs`` evenly spaced
        frequencies from ``fmin`` to ``fmax`` Hz, identical across datasets so a model trained on one TR can
        be applied to data with another.
    n_freqs : int
        Number of frequencies per row (default 249, the model's input width).
    fmin, fmax : float
        Ends of the ``"hz"`` axis in Hz (ignored for ``"bins"``); ``fmax`` must be below the Nyquist frequency.
    log_power : bool
        ``False`` (default, official): linear magnitude ``|X|``. ``True``: power in decibels,
        ``10 log10(|X|^2 + 1e-30)``, which compresses the 1/f dynamic range so that high frequencies are not
        dwarfed by the low ones.
    scaling : {"zscore-electrodes", "none", "zscore-channel"}
        Standardisation of the finished spectrogram. ``"zscore-electrodes"`` (default, official): every
        (window, frequency) cell is z-scored across electrodes (``scipy.stats.zscore(axis=channels)``), which
        removes the overall power of each window and keeps only the spatial pattern. ``"none"``: raw values.
        ``"zscore-channel"``: each channel is z-scored over all valid windows and frequencies of the run, which
        removes per-channel gain differences but keeps spectral shape and changes over time.
    include : list of str or None
        Channel names to keep, in this order (``None``, default: every channel after exclusions).
    exclude : list of str
        Channel names to drop (default none).
    exclude_types : list of str
        Channel types to drop, case-insensitive (e.g. ``["ECG", "EOG"]``). The default ``[]`` keeps every
        channel, as the official code does (it feeds the ECG channel to the model as if it were EEG).
    volume_marker : str
        Annotation name of the scanner's volume trigger (default ``"R128"``; MNE reads it as ``Response/R128``).
    keep_bad_channels : bool
        ``False`` (default): channels marked ``status`` = ``bad`` in the run's ``channels.tsv`` are left out of the
        spectrogram, as MNE-BIDS users expect (``read_raw_bids`` marks them in ``info["bads"]``); the spectrogram's
        sidecar and the report list them. ``True`` keeps them (and lists them as kept), as the official code,
        which has no notion of bad channels, does.
    """

    _section: ClassVar[str] = "eeg"

    window_length: float | None = None
    overlap: float = 0.0
    taper: str = "boxcar"
    tukey_alpha: float = 0.5
    frequency_axis: str = "bins"
    n_freqs: int = 249
    fmin: float = 1.0
    fmax: float = 100.0
    log_power: bool = False
    scaling: str = "zscore-electrodes"
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    exclude_types: tuple[str, ...] = ()
    volume_marker: str = "R128"
    keep_bad_channels: bool = False

    def __post_init__(self):
        s = self._section
        set_ = object.__setattr__
        if self.window_length is not None:
            set_(self, "window_length", _number(s, "window_length", self.window_length, low=0, low_open=True))
        set_(self, "overlap", _number(s, "overlap", self.overlap, low=0, high=1, high_open=True))
        _choice(s, "taper", self.taper, TAPERS)
        set_(self, "tukey_alpha", _number(s, "tukey_alpha", self.tukey_alpha, low=0, high=1))
        _choice(s, "frequency_axis", self.frequency_axis, FREQUENCY_AXES)
        set_(self, "n_freqs", _number(s, "n_freqs", self.n_freqs, low=1, integer=True))
        set_(self, "fmin", _number(s, "fmin", self.fmin, low=0))
        set_(self, "fmax", _number(s, "fmax", self.fmax, low=0, low_open=True))
        if self.fmax <= self.fmin:
            raise UsageError(f"eeg.fmax ({self.fmax} Hz) must be above eeg.fmin ({self.fmin} Hz)",
                             hint="Swap or correct the two values (--fmin, --fmax).")
        if not isinstance(self.log_power, bool):
            raise UsageError(f"eeg.log_power = {self.log_power!r} is not true or false",
                             hint="Set eeg.log_power to true or false (on the command line: --log-power).")
        _choice(s, "scaling", self.scaling, EEG_SCALINGS)
        if self.include is not None:
            set_(self, "include", _names(s, "include", self.include))
            if not self.include:
                raise UsageError("eeg.include is an empty list",
                                 hint="Leave --include-channels (eeg.include) unset to keep every channel.")
        set_(self, "exclude", _names(s, "exclude", self.exclude))
        set_(self, "exclude_types", _names(s, "exclude_types", self.exclude_types))
        if not isinstance(self.keep_bad_channels, bool):
            raise UsageError(f"eeg.keep_bad_channels = {self.keep_bad_channels!r} is not true or false",
                             hint="Set eeg.keep_bad_channels to true or false (on the command line: "
                                  "--keep-bad-channels).")
        if not isinstance(self.volume_marker, str) or not self.volume_marker.strip():
            raise UsageError(f"eeg.volume_marker = {self.volume_marker!r} is not a marker name",
                             hint="Give the annotation name of the volume trigger with --volume-marker, e.g. R128.")

    def window_seconds(self, tr: float) -> tuple[float, float]:
        """Core and total window length in seconds for a run with repetition time ``tr``.

        Returns
        -------
        core : float
            ``window_length`` or ``tr``; the window of volume ``k`` ends at ``onset_k + core``.
        total : float
            ``core / (1 - overlap)``: the window's full length (it starts at ``onset_k + core - total``).
        """
        core = float(tr) if self.window_length is None else self.window_length
        return core, core / (1.0 - self.overlap)


@dataclass(frozen=True)
class PairingConfig(_Section):
    """Which spectrogram rows are the model input of which target volume.

    A pair is ``rows t - lag - n_windows .. t - lag - 1 -> volume t``: the ``n_windows`` TR-windows that end
    ``lag`` volumes before the target's onset. With the defaults (official, after Calhas et al.) that is
    windows ``i..i+19 -> volume i+20`` counted after the first 6 volumes: the 20 TRs immediately before
    the target.

    Parameters
    ----------
    discard_volumes : int
        Volumes at the start of the run that take part in no pair, neither as input nor as target (the
        scanner's steady-state discard; default 6). It counts from the first volume in the BOLD file, so set
        it to 0 when dummy scans were already removed from the data.
    n_windows : int
        Number of consecutive windows per model input (default 20; the model's input channels).
    lag_volumes : int
        Extra gap, in volumes, between the last input window and the target (default 0, official). A lag
        of about 6 s models the haemodynamic delay explicitly.
    window_span_s : float or None
        Alternative to ``n_windows`` in seconds (the paper's "20 s of EEG"): converted to
        ``round(window_span_s / TR)`` windows per run. Overrides ``n_windows`` when set.
    lag_s : float or None
        Alternative to ``lag_volumes`` in seconds (the paper's "ending 6 s before the volume"): converted
        to ``round(lag_s / TR)`` volumes. Overrides ``lag_volumes`` when set.
    """

    _section: ClassVar[str] = "pairing"

    discard_volumes: int = 6
    n_windows: int = 20
    lag_volumes: int = 0
    window_span_s: float | None = None
    lag_s: float | None = None

    def __post_init__(self):
        s = self._section
        set_ = object.__setattr__
        set_(self, "discard_volumes", _number(s, "discard_volumes", self.discard_volumes, low=0, integer=True))
        set_(self, "n_windows", _number(s, "n_windows", self.n_windows, low=1, integer=True))
        set_(self, "lag_volumes", _number(s, "lag_volumes", self.lag_volumes, low=0, integer=True))
        if self.window_span_s is not None:
            set_(self, "window_span_s", _number(s, "window_span_s", self.window_span_s, low=0, low_open=True))
        if self.lag_s is not None:
            set_(self, "lag_s", _number(s, "lag_s", self.lag_s, low=0))

    def resolve(self, tr: float) -> tuple[int, int, int]:
        """``(n_windows, discard_volumes, lag_volumes)`` in volumes for a run with repetition time ``tr``."""
        n_windows, lag = self.n_windows, self.lag_volumes
        if self.window_span_s is not None or self.lag_s is not None:
            n_sec, lag_sec = pairing_from_seconds(tr, self.window_span_s, self.lag_s)
            n_windows = n_sec if self.window_span_s is not None else n_windows
            lag = lag_sec if self.lag_s is not None else lag
        return n_windows, self.discard_volumes, lag


def pairing_from_seconds(tr: float, window_span_s: float | None = None,
                         lag_s: float | None = None) -> tuple[int | None, int | None]:
    """Convert the paper-style "a window of S seconds ending L seconds before the volume" to volumes.

    The rounding rule of :meth:`PairingConfig.resolve` (also public as
    :func:`spec2vol_bids.preproc.pairs.pairing_from_seconds`).

    Parameters
    ----------
    tr : float
        Repetition time in seconds.
    window_span_s : float or None
        Seconds of EEG per model input; becomes ``round(window_span_s / tr)`` windows (at least 1).
    lag_s : float or None
        Seconds between the end of the input and the target's onset; becomes ``round(lag_s / tr)`` volumes.

    Returns
    -------
    n_windows, lag : int or None
        ``None`` where the corresponding argument was ``None``.

    Examples
    --------
    >>> pairing_from_seconds(2.0, 20.0, 6.0)
    (10, 3)
    """
    import numpy as np

    if not (isinstance(tr, (int, float, np.floating)) and np.isfinite(tr) and tr > 0):
        raise DataError(f"repetition time {tr!r} s is not a positive number",
                        hint="Check RepetitionTime in the BOLD sidecar.")
    n_windows = lag = None
    if window_span_s is not None:
        if window_span_s <= 0:
            raise UsageError(f"window_span_s = {window_span_s} must be positive")
        n_windows = max(1, int(np.floor(window_span_s / tr + 0.5)))
    if lag_s is not None:
        if lag_s < 0:
            raise UsageError(f"lag_s = {lag_s} must be zero or positive")
        lag = int(np.floor(lag_s / tr + 0.5))
    return n_windows, lag



@dataclass(frozen=True)
class BOLDConfig(_Section):
    """How BOLD volumes become model targets ``[X, Y, Z]`` on the model grid.

    Parameters
    ----------
    grid : int
        In-plane size of the model grid (default 64: the model predicts 64 x 64 slices).
    n_slices : int or None
        Number of axial slices of the target. ``None`` (default) keeps the native depth when the native
        in-plane grid is already ``grid x grid`` (NODDI 30, Oddball 32 slices) and otherwise uses 30 (the
        official CN-EPFL convention: 108 x 108 x 64 -> 64 x 64 x 30).
    resize : {"dct", "none"}
        ``"dct"`` (default, official): when the native grid differs from the target, keep the low-frequency
        corner of the orthonormal 3-D DCT-II of each volume and invert it on the smaller grid (an ideal
        low-pass resampling over the same field of view; zero-padding when enlarging). The intensity is
        rescaled so the mean is preserved. ``"none"``: use the native grid, which must then already be
        ``grid x grid`` in-plane.
    scaling : {"minmax", "minmax-mask", "zscore"}
        Per-volume intensity scaling. ``"minmax"`` (default, official): each volume mapped to ``[0, 1]`` by
        its own minimum and maximum over *all* voxels, background included (so SSIM is driven largely by the
        head outline). ``"minmax-mask"``: minimum and maximum taken inside the brain mask, voxels outside
        set to 0. ``"zscore"``: each volume standardised to zero mean and unit variance inside the brain
        mask, voxels outside set to 0 (removes global signal drifts, keeps relative contrast).
    """

    _section: ClassVar[str] = "bold"

    grid: int = 64
    n_slices: int | None = None
    resize: str = "dct"
    scaling: str = "minmax"

    def __post_init__(self):
        s = self._section
        object.__setattr__(self, "grid", _number(s, "grid", self.grid, low=1, integer=True))
        if self.n_slices is not None:
            object.__setattr__(self, "n_slices", _number(s, "n_slices", self.n_slices, low=1, integer=True))
        _choice(s, "resize", self.resize, BOLD_RESIZES)
        _choice(s, "scaling", self.scaling, BOLD_SCALINGS)


#: ``CorrectionConfig.gradient_span`` applies when the trigger frequency is below this (Hz): its harmonics then
#: fall where the EEG has its power, which a short template notches out
GRADIENT_SPAN_BELOW_HZ = 40.0


@dataclass(frozen=True)
class CorrectionConfig(_Section):
    """Correction of the artefacts of EEG recorded inside the MR scanner, and the QC that measures them.

    EEG recorded during fMRI holds the MR gradient artefact (hundreds to thousands of microvolts, locked to the
    slice and volume triggers) and the pulse or ballistocardiogram (BCG) artefact (tens to a few hundred
    microvolts, locked to the heartbeat). By default the EEG is used as it is (it may have been corrected already,
    e.g. by the vendor's software; ``-d eegprep=PATH`` takes it from a derivatives dataset) and only the QC runs:
    the report warns loudly when the QC finds artefact in it. The algorithms are described in
    :mod:`spec2vol_bids.preproc.artefacts`.

    Parameters
    ----------
    method : {"none", "gradient", "gradient+bcg"}
        ``"none"`` (default): no correction. ``"gradient"``: average artefact subtraction (AAS, Allen et al. 2000)
        of the gradient artefact with sub-sample alignment, then a low-pass. ``"gradient+bcg"``: then R peaks are
        found on the ECG channel and the pulse artefact is subtracted with a sliding template locked to them.
    triggers : {"auto", "slice", "volume"}
        Epochs of the gradient artefact: ``"slice"`` triggers (``slice_marker``), ``"volume"`` triggers (the
        volume markers, ``eeg.volume_marker``), or ``"auto"`` (default): slice triggers when the recording has
        them, else volume triggers.
    slice_marker : str
        Annotation name of the slice trigger (default ``"Slice"``, matched like the volume marker: MNE reads
        a BrainVision ``Response,Slice`` marker as ``Response/Slice``).
    gradient_neighbours : int
        Fewest epochs averaged into each gradient template (default 30, half before and half after the epoch).
    gradient_span : float
        Seconds of recording the epochs of a gradient template span at least (default 6): with short slice epochs
        the template averages more than ``gradient_neighbours`` of them. EEG at the harmonics of the trigger
        frequency is coherent across neighbouring epochs and enters the template, so the subtraction notches the
        EEG around each harmonic by about 1 / span Hz; at 10 slices per second, 30 epochs (3 s) cost 0.01 of
        spectrogram correlation below 40 Hz on simulated data, 6 s recover it (``experiments/bcg_residual.py``).
        Only for trigger frequencies below 40 Hz: higher harmonics fall where the EEG is weak, and a longer
        template follows the artefact's changes less closely (50 slices per second: 52 instead of 60 dB of
        median reduction). Volume triggers keep ``gradient_neighbours``. 0 for epochs only.
    align : bool
        Sub-sample alignment of the gradient epochs (default true).
    max_shift : float
        Largest delay (samples) the alignment searches (default 2).
    obs_components : int
        Principal components of the AAS residual removed per channel (optimal basis set, Niazy et al. 2005);
        0 (default) for none.
    lowpass : float
        Cut-off (Hz) of the zero-phase low-pass applied after the gradient correction (default 250); 0 for
        none. A cut-off at or above 0.45 x the sampling rate is skipped.
    ecg_channel : str or None
        The ECG channel for the R peaks (default: the channel of type ``ECG`` in ``channels.tsv``).
    bcg_neighbours : int
        Heartbeats averaged into each pulse-artefact template (default 30).
    bcg_obs_components : int
        Instead of the plain average, fit the neighbours' mean and this many principal components to each beat
        (the optimal basis set); 0 (default) for the sliding average.
    bcg_template_rank : "auto" or int
        Keep only this many spatio-temporal components (SVD over channels x lags) of each sliding-average pulse
        template: the pulse artefact of all electrodes comes from a few head movements, while the neighbours' EEG
        that the average carries spreads over every component. ``"auto"`` keeps the components above the noise
        floor measured by the +/- average of the same neighbours (Schimmel 1967); 0 (default) keeps the whole
        average. Auto gained 0.001-0.004 of spectrogram correlation on simulated runs but leaves weak components
        locked to the R peaks, such as the cardiac field, in the EEG.
    qc : bool
        Measure the artefacts (power at the slice-frequency harmonics and of the heartbeat-locked average, before
        and after correction) for the report and the spectrogram's sidecar (default true).
    """

    _section: ClassVar[str] = "correction"

    method: str = "none"
    triggers: str = "auto"
    slice_marker: str = "Slice"
    gradient_neighbours: int = 30
    gradient_span: float = 6.0
    align: bool = True
    max_shift: float = 2.0
    obs_components: int = 0
    lowpass: float = 250.0
    ecg_channel: str | None = None
    bcg_neighbours: int = 30
    bcg_obs_components: int = 0
    bcg_template_rank: str | int = 0
    qc: bool = True

    def __post_init__(self):
        s = self._section
        set_ = object.__setattr__
        _choice(s, "method", self.method, CORRECTIONS)
        _choice(s, "triggers", self.triggers, TRIGGER_SOURCES)
        if not isinstance(self.slice_marker, str) or not self.slice_marker.strip():
            raise UsageError(f"correction.slice_marker = {self.slice_marker!r} is not a marker name",
                             hint="Give the annotation name of the slice trigger with --slice-marker.")
        set_(self, "gradient_neighbours", _number(s, "gradient_neighbours", self.gradient_neighbours, low=2,
                                                  integer=True))
        set_(self, "bcg_neighbours", _number(s, "bcg_neighbours", self.bcg_neighbours, low=2, integer=True))
        set_(self, "gradient_span", _number(s, "gradient_span", self.gradient_span, low=0, high=600))
        if self.bcg_template_rank != "auto":
            if isinstance(self.bcg_template_rank, bool) or not isinstance(self.bcg_template_rank, int):
                raise UsageError(f"correction.bcg_template_rank = {self.bcg_template_rank!r} is not \"auto\" or an "
                                 "integer", hint=f"Set {option_name('correction.bcg_template_rank')} to \"auto\", 0 "
                                                 "(the whole average) or a number of components.")
            set_(self, "bcg_template_rank", _number(s, "bcg_template_rank", self.bcg_template_rank, low=0,
                                                    integer=True))
        set_(self, "max_shift", _number(s, "max_shift", self.max_shift, low=0, low_open=True, high=16))
        set_(self, "obs_components", _number(s, "obs_components", self.obs_components, low=0, high=16,
                                             integer=True))
        set_(self, "bcg_obs_components", _number(s, "bcg_obs_components", self.bcg_obs_components, low=0,
                                                 high=16, integer=True))
        set_(self, "lowpass", _number(s, "lowpass", self.lowpass, low=0))
        for name in ("align", "qc"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"correction.{name} = {getattr(self, name)!r} is not true or false",
                                 hint=f"Set correction.{name} to true or false.")
        if self.ecg_channel is not None and (not isinstance(self.ecg_channel, str) or not self.ecg_channel.strip()):
            raise UsageError(f"correction.ecg_channel = {self.ecg_channel!r} is not a channel name",
                             hint="Name the ECG channel with --ecg-channel, or leave it unset to use the channel "
                                  "of type ECG.")

    @property
    def gradient(self) -> bool:
        """Whether the gradient artefact is corrected."""
        return self.method != "none"

    @property
    def bcg(self) -> bool:
        """Whether the pulse artefact is corrected."""
        return self.method == "gradient+bcg"


@dataclass(frozen=True)
class PreprocConfig:
    """All preprocessing settings: ``eeg`` (:class:`EEGConfig`), ``pairing`` (:class:`PairingConfig`), ``bold``
    (:class:`BOLDConfig`) and ``correction`` (:class:`CorrectionConfig`). ``PreprocConfig()`` is the official
    Spec2VolCAMU-Net pipeline (no artefact correction).

    In TOML the sections are tables::

        [eeg]
        taper = "hann"
        exclude_types = ["ECG", "EOG"]

        [pairing]
        window_span_s = 20.0
        lag_s = 6.0

        [bold]
        scaling = "minmax-mask"

        [correction]
        method = "gradient+bcg"
    """

    eeg: EEGConfig = field(default_factory=EEGConfig)
    pairing: PairingConfig = field(default_factory=PairingConfig)
    bold: BOLDConfig = field(default_factory=BOLDConfig)
    correction: CorrectionConfig = field(default_factory=CorrectionConfig)

    _sections: ClassVar[dict[str, type]] = {"eeg": EEGConfig, "pairing": PairingConfig, "bold": BOLDConfig,
                                            "correction": CorrectionConfig}

    def __post_init__(self):
        for name, cls in self._sections.items():
            if not isinstance(getattr(self, name), cls):
                raise UsageError(f"PreprocConfig.{name} must be an {cls.__name__}")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested plain dictionary (``None`` kept), the inverse of :meth:`from_dict`."""
        return {name: getattr(self, name).to_dict() for name in self._sections}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PreprocConfig:
        """Build from a nested mapping; missing sections/keys take defaults, unknown ones raise ``UsageError``."""
        data = dict(data or {})
        for key, value in data.items():
            if key not in cls._sections:
                near = difflib.get_close_matches(key, list(cls._sections), n=1)
                hint = f"Did you mean [{near[0]}]?" if near else "Known sections: [eeg], [pairing], [bold], [correction]."
                raise UsageError(f"unknown settings section [{key}]", hint=hint)
            if not isinstance(value, dict):
                raise UsageError(f"settings section [{key}] must be a table, got {value!r}",
                                 hint=f"Write it as a [{key}] table of key = value lines.")
        return cls(**{name: sec.from_dict(data.get(name)) for name, sec in cls._sections.items()})

    @classmethod
    def coerce(cls, config: PreprocConfig | dict[str, Any] | None) -> PreprocConfig:
        """``config`` as settings: ``None`` gives the defaults (the official pipeline), a dict is validated."""
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        return cls.from_dict(dict(config))

    def to_toml(self) -> str:
        """TOML text of every setting (unset optional values are left out, meaning their default ``None``)."""
        import tomli_w

        clean = {sec: {k: v for k, v in vals.items() if v is not None} for sec, vals in self.to_dict().items()}
        header = "# spec2vol-bids preprocessing settings (PreprocConfig); unset keys take their defaults\n"
        return header + tomli_w.dumps(clean)

    @classmethod
    def from_toml(cls, source: str | os.PathLike) -> PreprocConfig:
        """Read settings from a TOML file path or from TOML text.

        A ``str`` that names an existing file, or any ``os.PathLike``, is read as a file; other strings are
        parsed as TOML text. Syntax errors raise ``UsageError`` with the parser's location.
        """
        where = "settings text"
        if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                                and "=" not in source):
            path = Path(source)
            if not path.is_file():
                raise UsageError(f"settings file {path} does not exist", hint="Check the path.")
            where, text = str(path), path.read_text(encoding="utf-8")
        else:
            text = source
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{where} is not valid TOML ({exc})", hint="Fix the syntax at that line.") from None
        return cls.from_dict(data)

    def write_toml(self, dest: str | os.PathLike) -> Path:
        """Write :meth:`to_toml` to ``dest`` atomically and return the path."""
        from .utils import atomic_write

        return atomic_write(dest, self.to_toml())

    def replace(self, **sections: dict[str, Any]) -> PreprocConfig:
        """Copy with some settings changed, e.g. ``cfg.replace(eeg={"taper": "hann"})``."""
        data = self.to_dict()
        for name, values in sections.items():
            if name not in self._sections:
                raise UsageError(f"unknown settings section [{name}]", hint="Use eeg, pairing, bold or correction.")
            data[name].update(values)
        return PreprocConfig.from_dict(data)
