"""The artefact steps of a run recorded inside the scanner: gradient correction, pulse (BCG) correction and QC.

Each step (:func:`correct_gradient`, :func:`correct_bcg`, or both in one go: :func:`correct_gradient_bcg`, which
the workflow runs) reads an EEG file lazily, streams it block by block through the pure correctors of
:mod:`spec2vol_bids.preproc.artefacts` and writes

* the corrected recording as BrainVision (float32 microvolts, every channel and marker of the input;
  :class:`~spec2vol_bids.io.brainvision.BrainVisionWriter`), in the node's working directory: the spectrogram step
  reads its samples (its volume onsets and ``Sources`` still come from the input recording);
* a QC JSON: per channel, the power at the harmonics of the artefact frequency and between them (gradient), and
  the power of the R-peak-locked average and its ratio to the averaging noise (pulse), before and after.

Memory: a few blocks of samples (a few seconds each) plus the correctors' windows (the slice or volume epochs of a
gradient template, at least 6 s with slice triggers, and the 31 heartbeats of a pulse template, of every channel),
never the recording; the ECG channel alone is held for the R-peak detection. Part of the work (the low-pass, the
pulse correction, the writing of the corrected file and the QC) runs in a worker thread (:class:`_Background`),
overlapping the gradient correction on a second core; in :func:`correct_gradient_bcg` another worker reads the
recording for the QC before correction while the R peaks are found (:class:`_Ahead`). Multiplexed binary
BrainVision files are read without MNE (:func:`_reader_uv`), a few channels alone when that is all a pass needs.

:func:`merge_qc` combines the QC files of a run into the ``ArtefactQC`` and ``ArtefactCorrection`` fields of the
spectrogram's sidecar, with a loud warning when artefact remains in the EEG the spectrogram is made from.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bids.eeg import EEGRecording, VolumeOnsets, events_tsv_onsets, marker_onsets, volume_onsets
from ..config import GRADIENT_SPAN_BELOW_HZ, PreprocConfig, option_name
from ..errors import DataError
from ..io.brainvision import BrainVisionWriter, markers_from_annotations
from ..preproc import artefacts as A
from ..utils import atomic_path, write_json

__all__ = [
    "ELECTRODE_TYPES",
    "BCG_TYPES",
    "Triggers",
    "gradient_triggers",
    "ecg_channel",
    "detect_r_peaks",
    "check_correctable",
    "correct_gradient",
    "correct_gradient_bcg",
    "correct_bcg",
    "artefact_qc",
    "run_artefact_steps",
    "merge_qc",
]

LOGGER = logging.getLogger("spec2vol_bids.pipeline")

#: channel types (BIDS) that pick up the gradient artefact and are corrected
ELECTRODE_TYPES = ("EEG", "REF", "ECG", "EOG", "VEOG", "HEOG", "EMG")
#: channel types the pulse-artefact correction is applied to (the electrodes on the head)
BCG_TYPES = ("EEG", "REF", "EOG", "VEOG", "HEOG")
#: seconds before and after the R peak of the heartbeat-locked average of the QC
CARDIAC_PRE, CARDIAC_POST = 0.2, 0.6
#: rate (Hz) of the lags of the heartbeat-locked averages of the QC (:func:`_lag_step`): their power and noise are
#: means over lags, which every tenth lag of a 5 kHz recording estimates to about 0.1 dB (the pulse artefact lies
#: below 30 Hz)
CARDIAC_LAG_RATE = 500
#: the software named in the corrected files' headers
SOFTWARE = "spec2vol-bids artefact correction"
#: highest sampling rate (Hz) of the ECG given to MNE's QRS detector: its threshold search loops over every sample
#: in Python, 16 times. The QRS band is 5-35 Hz; the peaks are refined at the full rate afterwards. At 125 Hz it
#: takes half the time it takes at 250 Hz, and a sixth of that at 500 Hz, with the same refined R peaks on the
#: 8-minute benchmark run (524) and on eight simulated runs at 1 and 5 kHz (seeds 0-3)
R_PEAK_RATE = 125
#: samples read at once: this many values over the channels (1 MB of float32; every stage holds a few such blocks:
#: blocks of twice this size took 10 MB more memory on the benchmark run, and no less time)
BLOCK_VALUES = 1 << 18


@dataclass(frozen=True)
class Triggers:
    """The scanner triggers the gradient artefact is epoched at.

    Attributes
    ----------
    samples : ndarray of int64
        Trigger samples.
    kind : str
        ``"slice"`` or ``"volume"``.
    marker : str or None
        The marker they were read from (None when the volume onsets were not from markers).
    """

    samples: np.ndarray
    kind: str
    marker: str | None


def gradient_triggers(rec: EEGRecording, cfg: PreprocConfig, onsets: VolumeOnsets, *,
                      events_tsv: str | os.PathLike | None = None, strict: bool = True) -> Triggers | None:
    """Slice triggers when the recording has them (``correction.triggers``), else the volume triggers.

    Slice triggers are the ``correction.slice_marker`` annotations of the file (else rows of its ``events.tsv``).
    Volume triggers are every volume marker found plus the onsets filled for missing ones.

    Raises
    ------
    DataError
        ``strict`` and no usable triggers: ``triggers = "slice"`` without slice markers, or no volume markers at
        all (the onsets came from the TR). Without ``strict`` None is returned instead.
    """
    c = cfg.correction
    label = rec.path.name
    if c.triggers in ("auto", "slice"):
        found, name = marker_onsets(rec, c.slice_marker)
        if found.size == 0:
            found, name = events_tsv_onsets(events_tsv, c.slice_marker)
        if found.size >= 2:
            return Triggers(np.unique(np.round(found * rec.sfreq).astype(np.int64)), "slice", name)
        if c.triggers == "slice":
            if not strict:
                return None
            raise DataError(f"{label} has no slice triggers named {c.slice_marker!r}",
                            hint=f"Name them with {option_name('correction.slice_marker')}, or set "
                                 "correction.triggers to auto or volume")
    if onsets.source == "tr-fallback":
        if not strict:
            return None
        raise DataError(f"{label} has no volume markers: the gradient artefact cannot be located",
                        hint=f"Name the volume marker with --volume-marker (or slice triggers with "
                             f"{option_name('correction.slice_marker')}), or use corrected EEG "
                             "(-d eegprep=PATH) without --eeg-correction")
    samples = np.concatenate([onsets.markers, onsets.onsets[list(onsets.filled)]]) if onsets.markers.size \
        else onsets.onsets
    return Triggers(np.unique(np.round(np.asarray(samples) * rec.sfreq).astype(np.int64)), "volume", onsets.marker)


def ecg_channel(rec: EEGRecording, cfg: PreprocConfig) -> int | None:
    """Index of the ECG channel: ``correction.ecg_channel``, else the first channel of type ECG, else None.

    Raises
    ------
    DataError
        ``correction.ecg_channel`` names a channel the recording does not have.
    """
    name = cfg.correction.ecg_channel
    if name is not None:
        if name not in rec.ch_names:
            raise DataError(f"the ECG channel {name!r} ({option_name('correction.ecg_channel')}) is not in "
                            f"{rec.path.name}", hint=f"Available channels: {', '.join(rec.ch_names)}")
        return rec.ch_names.index(name)
    found = [i for i, t in enumerate(rec.ch_types) if t == "ECG"]
    if len(found) > 1:
        LOGGER.warning("%s has %d ECG channels; the R peaks are taken from %s (choose with --ecg-channel)",
                       rec.path.name, len(found), rec.ch_names[found[0]])
    return found[0] if found else None


def gradient_neighbours(c, epoch_seconds: float) -> int:
    """Epochs averaged into each gradient template: at least ``c.gradient_neighbours`` and, when the trigger
    frequency is below :data:`~spec2vol_bids.config.GRADIENT_SPAN_BELOW_HZ`, enough to span ``c.gradient_span`` seconds of epochs of
    ``epoch_seconds`` (see :class:`~spec2vol_bids.config.CorrectionConfig`)."""
    span = float(c.gradient_span)
    if span <= 0 or epoch_seconds <= 0 or 1.0 / epoch_seconds >= GRADIENT_SPAN_BELOW_HZ:
        return int(c.gradient_neighbours)
    return max(int(c.gradient_neighbours), math.ceil(span / float(epoch_seconds) - 1e-9))


def _picks(rec: EEGRecording, types: Sequence[str], exclude: Sequence[int] = ()) -> np.ndarray:
    return np.array([i for i, t in enumerate(rec.ch_types) if t in types and i not in exclude], dtype=np.int64)


def detect_r_peaks(ecg: np.ndarray, sfreq: float, *, label: str = "ECG") -> np.ndarray:
    """R-peak samples of an ECG trace (gradient artefact removed), with MNE's QRS detector.

    The trace is resampled to at most :data:`R_PEAK_RATE` Hz for :func:`mne.preprocessing.find_ecg_events`
    (band-pass 5-35 Hz with a 2 s FIR, adaptive threshold); beats it missed are searched for in the 5-35 Hz
    band-passed trace at that rate (:func:`~spec2vol_bids.preproc.artefacts.search_back`); then each peak is moved
    to the extremum, with the QRS polarity, of the 5-35 Hz band-passed trace within 30 ms at the full rate,
    filtered chunk by chunk (the full-rate trace is never copied whole: a 20-minute ECG at 5 kHz is 48 MB in
    float64).

    Raises
    ------
    DataError
        Fewer than 3 beats, or a heart rate outside 30-200 beats per minute: the channel is not a usable ECG.
    """
    import mne
    from scipy.signal import resample_poly, sosfiltfilt

    x = np.asarray(ecg).ravel()
    q = max(1, int(sfreq // R_PEAK_RATE))
    low = np.asarray(resample_poly(x, 1, q) if q > 1 else x, dtype=np.float64)
    low_sfreq = float(sfreq) / q
    info = mne.create_info(["ECG"], low_sfreq, ["ecg"])
    raw = mne.io.RawArray(low[None, :] * 1e-6, info, verbose="error")
    hint = (f"Check the ECG channel ({option_name('correction.ecg_channel')}), or correct only the gradient "
            "artefact (--eeg-correction gradient)")
    try:
        events, _, _ = mne.preprocessing.find_ecg_events(raw, ch_name="ECG", filter_length="2s", verbose="error")
    except Exception as err:  # MNE raises on flat or very short traces
        raise DataError(f"no R peaks could be found on {label} ({type(err).__name__}: {err})", hint=hint) from None
    peaks = np.clip(np.asarray(events[:, 0], dtype=np.int64), 0, low.size - 1)  # samples at low_sfreq
    if peaks.size:
        band = sosfiltfilt(_qrs_band(low_sfreq), low)
        sign = 1.0 if np.median(band[peaks]) >= 0 else -1.0
        peaks = A.search_back(np.unique(peaks), sign * band)
        peaks = _refine_peaks(x, peaks * q, sfreq, sign, half_width=max(int(round(0.03 * sfreq)), q))
    if peaks.size < 3:
        raise DataError(f"only {peaks.size} R peaks were found on {label}", hint=hint)
    rate = _heart_rate(peaks, sfreq)
    if not 30.0 <= rate <= 200.0:
        raise DataError(f"the R peaks found on {label} give a heart rate of {rate:.0f} beats per minute",
                        hint=hint)
    return peaks


def _qrs_band(sfreq: float):
    """The 5-35 Hz band-pass (3rd-order Butterworth, second-order sections) of the QRS complex."""
    from scipy.signal import butter

    return butter(3, [5.0, min(35.0, 0.45 * float(sfreq))], btype="bandpass", fs=float(sfreq), output="sos")


def _refine_peaks(x: np.ndarray, peaks: np.ndarray, sfreq: float, sign: float, *, half_width: int,
                  chunk_seconds: float = 60.0, margin_seconds: float = 2.0) -> np.ndarray:
    """Move every peak to the extremum (``sign``) of the band-passed trace within ``half_width`` samples.

    The trace is band-passed (zero phase) in chunks with ``margin_seconds`` on each side, where the filter's
    transients die out, so the result is that of filtering the whole trace.
    """
    from scipy.signal import sosfiltfilt

    sos = _qrs_band(sfreq)
    n, chunk, margin = x.size, int(chunk_seconds * sfreq), int(margin_seconds * sfreq)
    out = []
    peaks = np.sort(np.asarray(peaks, dtype=np.int64))
    for start in range(0, n, chunk):
        mine = peaks[(peaks >= start) & (peaks < start + chunk)]
        if not mine.size:
            continue
        a, b = max(0, start - margin - half_width), min(n, start + chunk + margin + half_width)
        band = sosfiltfilt(sos, np.asarray(x[a:b], dtype=np.float64))
        for p in mine:
            lo, hi = max(0, p - half_width), min(n, p + half_width + 1)
            out.append(lo + int(np.argmax(sign * band[lo - a:hi - a])))
    return np.unique(np.asarray(out, dtype=np.int64))


def check_correctable(rec: EEGRecording, cfg: PreprocConfig, onsets: VolumeOnsets, *,
                      events_tsv: str | os.PathLike | None = None) -> None:
    """Refuse, before anything runs, a run the requested correction cannot handle (no triggers, no ECG).

    Raises
    ------
    DataError
        No slice or volume triggers for the gradient correction; no ECG channel for the pulse correction.
    """
    c = cfg.correction
    if c.gradient:
        gradient_triggers(rec, cfg, onsets, events_tsv=events_tsv)
        if not _picks(rec, ELECTRODE_TYPES).size:
            raise DataError(f"{rec.path.name} has no EEG channels to correct",
                            hint="Check the channel types in channels.tsv")
    if c.bcg and ecg_channel(rec, cfg) is None:
        raise DataError(f"{rec.path.name} has no ECG channel: the pulse artefact is corrected at the R peaks of "
                        "the ECG", hint=f"Name it with {option_name('correction.ecg_channel')} (or give it type ECG "
                                        "in channels.tsv), or use --eeg-correction gradient")


# ------------------------------------------------------------------------------------------------ helpers
def _meas_date(rec: EEGRecording) -> str:
    date = rec.raw.info.get("meas_date")
    return date.strftime("%Y%m%d%H%M%S%f") if date is not None else "19700101000000000000"


#: samples compared with MNE's reader before a BrainVision file is read directly (:func:`_reader_uv`)
CHECK_SAMPLES = 512


def _reader_uv(rec: EEGRecording, picks=None):
    """``read(start, stop) -> [C, n]`` in microvolts (float32 or float64), of every channel or of ``picks``.

    A multiplexed binary BrainVision file (:func:`~spec2vol_bids.io.brainvision.binary_layout`: the simulator's, the
    corrected copies this module writes, Brain Products recordings in 16-bit integers or float32) is read
    directly, at several times the speed of MNE's reader (:func:`_direct_reader`); any other file with MNE.
    """
    direct = _direct_reader(rec, picks)
    if direct is not None:
        return direct
    read = rec.segment_reader(range(len(rec.ch_names)) if picks is None else picks)
    return lambda a, b: read(a, b) * 1e6  # volts -> microvolts


def _direct_reader(rec: EEGRecording, picks=None):
    """``read(start, stop)`` of a multiplexed binary BrainVision file without MNE (only ``picks`` are converted),
    once its first :data:`CHECK_SAMPLES` samples have been found equal to what MNE reads; None for any other file,
    or on a mismatch."""
    if rec.path.suffix.lower() != ".vhdr":
        return None
    from ..io.brainvision import binary_layout, read_block

    layout = binary_layout(rec.path)
    if layout is None or layout.n_channels != len(rec.ch_names) or layout.n_samples < rec.n_samples:
        return None
    rows = None if picks is None else np.asarray(picks, dtype=np.int64)

    def direct(a, b):
        return read_block(layout.data_file, layout.n_channels, a, b, dtype=layout.dtype, scale=layout.scale,
                          channels=rows)

    n = min(CHECK_SAMPLES, rec.n_samples)
    ref = rec.segment_reader(range(len(rec.ch_names)) if picks is None else picks)(0, n) * 1e6
    if np.allclose(direct(0, n), ref, rtol=1e-5, atol=1e-6 * max(float(np.max(np.abs(ref))), 1.0)):
        return direct
    LOGGER.info("%s: the samples in the data file differ from what MNE reads; it is read with MNE", rec.path.name)
    return None


def _release_memory() -> None:
    """Hand the memory freed by a step back to the operating system: the garbage with reference cycles (MNE's
    recording objects) is collected, then glibc's ``malloc_trim`` returns the free heap (nothing elsewhere).

    A step frees hundreds of blocks of a few MB, which the C allocator otherwise keeps for the process: the next
    step (or node of the same nipype worker) would start about 100 MB higher on a 64-channel run.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _step(func):
    """A step of this module: its BLAS calls (the alignment's scores, OBS fits) run in one thread, and the memory it
    freed goes back to the system when it ends (:func:`_release_memory`).

    The step runs its own threads on the cores (:class:`_Background`, :class:`_Ahead`); OpenBLAS's would compete
    with them, and its idle threads spin for a while after each product.
    """
    import functools

    from threadpoolctl import threadpool_limits

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            with threadpool_limits(limits=1, user_api="blas"):
                return func(*args, **kwargs)
        finally:
            _release_memory()

    return wrapper


class _Background:
    """One worker thread running calls in the order they were submitted (writing the corrected file, the QC's
    spectra and averages), so that they overlap the correction on a second core: NumPy's array operations and
    SciPy's transforms release the GIL. With one core it costs nothing but the hand-over.

    At most ``max_pending`` calls wait at once (they hold their blocks: memory stays bounded); an exception of the
    worker is raised in the caller, at a later :meth:`submit` or when the ``with`` block ends.
    """

    def __init__(self, max_pending: int = 4):
        self.max_pending = int(max_pending)

    def __enter__(self) -> _Background:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spec2vol-artefacts")
        self.pending: deque = deque()
        return self

    def submit(self, fn, *args) -> None:
        self.pending.append(self.pool.submit(fn, *args))
        while self.pending and (len(self.pending) > self.max_pending or self.pending[0].done()):
            self.pending.popleft().result()  # raises the worker's exception here

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if exc_type is None:
                while self.pending:
                    self.pending.popleft().result()
            else:  # the caller failed: what is queued is dropped (its output is discarded anyway)
                for future in self.pending:
                    future.cancel()
        finally:
            self.pool.shutdown(wait=True)


class _Ahead:
    """Observers of a whole recording as it is (the check for non-finite samples, the QC's spectra before
    correction) in a worker thread, which reads the recording itself, block after block: they overlap what this
    thread does meanwhile (the ECG's R peaks, then the correction) instead of waiting for its blocks.

    Leaving the ``with`` block waits for the worker to finish and raises its exception, if any (:meth:`check`
    raises it sooner, :meth:`finish` before an output is put in place); leaving it with an exception stops the
    worker after its block.
    """

    def __init__(self, read, n_samples: int, block: int, observers: Sequence):
        import threading

        self.read, self.n, self.block, self.observers = read, int(n_samples), int(block), list(observers)
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="spec2vol-artefacts-ahead", daemon=True)

    def _run(self) -> None:
        try:
            for a in range(0, self.n, self.block):
                if self.stop.is_set():
                    return
                x = self.read(a, min(a + self.block, self.n))
                for observe in self.observers:
                    observe(a, x)
        except BaseException as err:  # raised in the caller
            self.error = err

    def check(self) -> None:
        """Raise the worker's exception now, if it has failed."""
        if self.error is not None:
            raise self.error

    def finish(self) -> None:
        """Wait for the worker to observe the whole recording; raise its exception, if any."""
        self.thread.join()
        self.check()

    def __enter__(self) -> _Ahead:
        self.thread.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self.stop.set()
        self.thread.join()
        if exc_type is None:
            self.check()


def _block(rec: EEGRecording, minimum: int = 0, *, n_channels: int | None = None) -> int:
    """Samples per block read: :data:`BLOCK_VALUES` values of the recording's channels (or of ``n_channels``),
    at least ``minimum``."""
    n_ch = len(rec.ch_names) if n_channels is None else int(n_channels)
    return max(int(minimum), BLOCK_VALUES // max(n_ch, 1), 1024)


def _progress(progress, what: str, total: int):
    """``(callback, close)`` for :func:`~spec2vol_bids.preproc.artefacts.correct_stream`."""
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=what, unit="sample", unit_scale=True, leave=False)

        def update(done, _total):
            bar.update(done - bar.n)

        return update, bar.close
    if callable(progress):
        return progress, lambda: None
    return None, lambda: None


def _qc_fmax(cfg: PreprocConfig, sfreq: float, repetition_time: float, lowpass: float | None) -> float:
    """Highest frequency of the gradient QC: the spectrogram's, below the low-pass and 0.45 x the sampling rate."""
    from ..preproc.eeg import frequency_axis, window_samples

    top = 0.45 * sfreq
    try:
        _, n_total = window_samples(sfreq, repetition_time, cfg.eeg.window_length, cfg.eeg.overlap)
        top = min(top, float(frequency_axis(n_total, sfreq, cfg.eeg)[-1]))
    except DataError:  # an axis the run cannot have fails later, in the spectrogram step, with its own message
        pass
    if lowpass:
        top = min(top, 0.9 * lowpass)
    return top


def _spectrum_top(fmax: float, f0: float) -> float:
    """Highest frequency of the QC's Welch spectra: the harmonics up to ``fmax`` and the bins between them (up to
    one artefact period above the last harmonic), with a margin; the bins above are not computed."""
    return float(fmax) + 2.0 * float(f0)


def _nperseg(period: float, sfreq: float) -> int:
    """Welch segment: a whole number (at least 8) of artefact periods, at least 2 s."""
    k = max(8, int(np.ceil(2.0 * sfreq / period)))
    return int(round(k * period))


def _db(x) -> list:
    return [None if not np.isfinite(v) else round(float(v), 2) for v in np.asarray(x, dtype=float)]


def _lowpass(cfg: PreprocConfig, sfreq: float) -> float | None:
    cut = cfg.correction.lowpass
    if not cut:
        return None
    if cut >= 0.45 * sfreq:
        LOGGER.info("the %g Hz low-pass is skipped: it is above 0.45 x the sampling rate (%g Hz)", cut, sfreq)
        return None
    return float(cut)


#: most points of the mean spectrum stored for the report's figure
SPECTRUM_POINTS = 1024


def _mean_spectrum(freqs: np.ndarray, psd: np.ndarray, fmax: float) -> tuple[list, list]:
    """Channel-mean power spectral density (dB re 1 uV^2/Hz) up to ``fmax``, at most SPECTRUM_POINTS points
    (bins averaged in groups)."""
    keep = (freqs > 0) & (freqs <= fmax)
    f, p = freqs[keep], psd[:, keep].mean(axis=0)
    group = max(1, int(np.ceil(f.size / SPECTRUM_POINTS)))
    n = f.size // group * group
    if group > 1 and n:
        f, p = f[:n].reshape(-1, group).mean(axis=1), p[:n].reshape(-1, group).mean(axis=1)
    with np.errstate(divide="ignore"):
        return [round(float(x), 4) for x in f], _db(10 * np.log10(p))


def _harmonics_qc(psd_before, psd_after, f0: float, fmax: float) -> dict[str, Any]:
    freqs, before = psd_before
    b = A.harmonic_power(freqs, before, f0, fmax=fmax)
    out: dict[str, Any] = {"ArtefactFrequency": round(f0, 6), "Harmonics": [round(h, 4) for h in b["harmonics"]],
                           "PowerBefore": _db(b["power_db"]), "PeakRatioBefore": _db(b["ratio_db"])}
    if b["mains_coincident"]:
        out["MainsCoincident"] = True  # the harmonics are the mains': line noise counts as artefact
    f, spec_before = _mean_spectrum(freqs, before, fmax)
    spectrum: dict[str, Any] = {"Frequencies": f, "Before": spec_before}
    if psd_after is not None:
        a = A.harmonic_power(freqs, psd_after[1], f0, fmax=fmax)
        out.update(PowerAfter=_db(a["power_db"]), PeakRatioAfter=_db(a["ratio_db"]),
                   Reduction=_db(b["power_db"] - a["power_db"]))
        spectrum["After"] = _mean_spectrum(freqs, psd_after[1], fmax)[1]
    out["MeanSpectrum"] = spectrum
    return out


def _heart_rate(r_peaks, sfreq: float) -> float:
    """Beats per minute of the median R-R interval."""
    return 60.0 * float(sfreq) / float(np.median(np.diff(r_peaks)))


def _cardiac_qc(r_peaks, sfreq, before, after=None) -> dict[str, Any]:
    pre = locked = A.locked_power(*before.result())
    out: dict[str, Any] = {"NumberOfBeats": int(len(r_peaks)), "HeartRate": round(_heart_rate(r_peaks, sfreq), 1),
                           "PowerBefore": _db(pre["power_db"]), "RatioBefore": _db(locked["ratio_db"])}
    if after is not None:
        post = A.locked_power(*after.result())
        out.update(PowerAfter=_db(post["power_db"]), RatioAfter=_db(post["ratio_db"]),
                   Reduction=_db(pre["power_db"] - post["power_db"]))
    return out


def _read_channel(rec: EEGRecording, index: int) -> np.ndarray:
    """One channel of the whole recording, in microvolts (read block by block)."""
    read = _reader_uv(rec, [index])
    step = 1 << 20
    return np.concatenate([read(a, min(a + step, rec.n_samples))[0] for a in range(0, rec.n_samples, step)])


def _lag_step(sfreq: float) -> int:
    """Lags of the heartbeat-locked averages of the QC: every one up to :data:`CARDIAC_LAG_RATE` Hz, one in
    ``sfreq // CARDIAC_LAG_RATE`` above (a tenth at 5 kHz, for a tenth of the cost)."""
    return max(1, int(float(sfreq) // CARDIAC_LAG_RATE))


def _cardiac_average(sfreq: float, r_peaks, n_channels: int) -> A.LockedAverage:
    """An empty heartbeat-locked average of the QC (:data:`CARDIAC_PRE` to :data:`CARDIAC_POST` around each R
    peak, at the lags of :func:`_lag_step`)."""
    pre, post = int(round(CARDIAC_PRE * sfreq)), int(round(CARDIAC_POST * sfreq))
    return A.LockedAverage(r_peaks, int(n_channels), pre, post, lag_step=_lag_step(sfreq))


def _locked_pass(rec: EEGRecording, picks, r_peaks, *, path=None) -> A.LockedAverage:
    """Heartbeat-locked average of ``picks`` over a recording (or over one of our BrainVision files at ``path``,
    with ``rec``'s channels and samples)."""
    from ..io.brainvision import read_block

    avg = _cardiac_average(rec.sfreq, r_peaks, len(picks))
    read = _reader_uv(rec, picks) if path is None else \
        lambda a, b: read_block(path, len(rec.ch_names), a, b, channels=picks)
    step = _block(rec)
    for a in range(0, rec.n_samples, step):
        avg(a, read(a, min(a + step, rec.n_samples)))
    return avg


@dataclass(frozen=True)
class _Plan:
    """What the gradient correction of a recording works with (:func:`_plan`)."""

    trig: Triggers
    layout: A.EpochLayout
    picks: np.ndarray  # the channels corrected (electrodes)
    neighbours: int
    cutoff: float | None  # of the low-pass
    f0: float  # the artefact frequency (Hz)
    ecg: int | None  # the ECG channel
    qc_picks: np.ndarray  # the channels the gradient QC measures (the electrodes but the ECG)
    fmax: float  # of the gradient QC


def _plan(rec: EEGRecording, cfg: PreprocConfig, n_volumes: int, repetition_time: float, events_tsv) -> _Plan:
    c = cfg.correction
    onsets = volume_onsets(rec, n_volumes=int(n_volumes), repetition_time=float(repetition_time),
                           marker=cfg.eeg.volume_marker, events_tsv=events_tsv)
    trig = gradient_triggers(rec, cfg, onsets, events_tsv=events_tsv)
    layout = A.epoch_layout(trig.samples, rec.n_samples, what=f"{trig.kind} triggers")
    ecg_i = ecg_channel(rec, cfg)
    cutoff = _lowpass(cfg, rec.sfreq)
    return _Plan(trig=trig, layout=layout, picks=_picks(rec, ELECTRODE_TYPES),
                 neighbours=gradient_neighbours(c, layout.period / rec.sfreq), cutoff=cutoff,
                 f0=rec.sfreq / layout.period, ecg=ecg_i,
                 qc_picks=_picks(rec, ELECTRODE_TYPES, exclude=[] if ecg_i is None else [ecg_i]),
                 fmax=_qc_fmax(cfg, rec.sfreq, float(repetition_time), cutoff))


def _aas(plan: _Plan, c, n_samples: int, n_channels: int, picks=None) -> A.GradientAAS:
    return A.GradientAAS(plan.layout, n_samples, n_channels, n_neighbours=plan.neighbours, align=c.align,
                         max_shift=c.max_shift, obs_components=c.obs_components, picks=picks)


def _fir(plan: _Plan, sfreq: float, n_samples: int, n_channels: int) -> A.FIRFilter | None:
    return A.FIRFilter(A.lowpass_filter(sfreq, plan.cutoff), n_channels, n_samples) if plan.cutoff else None


def _welch(plan: _Plan, cfg: PreprocConfig, sfreq: float, *, low_passed: bool = False) -> A.WelchPSD | None:
    """The gradient QC's spectra of the recording as it is, or (``low_passed``) after the correction's low-pass:
    those are measured on every ``d``-th sample only, ``d`` chosen so that nothing the low-pass left folds onto
    the frequencies measured (:func:`~spec2vol_bids.preproc.artefacts.alias_free_decimation`)."""
    if not cfg.correction.qc:
        return None
    nperseg, top = _nperseg(plan.layout.period, sfreq), _spectrum_top(plan.fmax, plan.f0)
    d = A.alias_free_decimation(sfreq, nperseg, top, A.lowpass_stop(plan.cutoff)) if low_passed and plan.cutoff \
        else 1
    return A.WelchPSD(plan.qc_picks.size, sfreq, nperseg, fmax=top, decimate=d)


def _gradient_qc(rec: EEGRecording, cfg: PreprocConfig, plan: _Plan, aas: A.GradientAAS, before, after) -> dict:
    """The gradient step's QC file (without its cardiac section)."""
    c = cfg.correction
    qc: dict[str, Any] = {"Step": "gradient", "Channels": [rec.ch_names[i] for i in plan.qc_picks],
                          "CorrectedChannels": [rec.ch_names[i] for i in plan.picks]}
    delays = np.array(list(aas.delays.values())) if aas.delays else np.zeros(1)
    lay = plan.layout
    qc["Gradient"] = {"Triggers": plan.trig.kind, "TriggerMarker": plan.trig.marker, "NumberOfEpochs": lay.n_epochs,
                      "TriggerGaps": lay.gaps, "EpochLength": round(lay.period / rec.sfreq, 6),
                      "SubSampleDelayRange": [round(float(delays.min()), 3), round(float(delays.max()), 3)]}
    if c.qc:
        qc["Gradient"].update(_harmonics_qc(before.result(), after.result(), plan.f0, plan.fmax),
                              HarmonicsMax=round(plan.fmax, 3))
    qc["Settings"] = {"Method": "AAS", "Neighbours": plan.neighbours, "SubSampleAlignment": c.align,
                      "OBSComponents": c.obs_components, "LowPass": plan.cutoff}
    return qc


def _bcg_stage(rec: EEGRecording, cfg: PreprocConfig, r_peaks, ecg_i: int):
    """``(corrector, picks, before, after)`` of the pulse step: the corrector, the channels it corrects, and the
    heartbeat-locked averages of its QC (None without QC)."""
    c = cfg.correction
    picks = _picks(rec, BCG_TYPES, exclude=[ecg_i])
    bcg = A.BCGSubtraction(r_peaks, rec.n_samples, len(rec.ch_names), rec.sfreq, picks=picks,
                           n_neighbours=c.bcg_neighbours, obs_components=c.bcg_obs_components,
                           template_rank=None if c.bcg_template_rank == "auto" else int(c.bcg_template_rank))
    before = _cardiac_average(rec.sfreq, r_peaks, picks.size) if c.qc else None
    after = _cardiac_average(rec.sfreq, r_peaks, picks.size) if c.qc else None
    return bcg, picks, before, after


def _bcg_qc(rec: EEGRecording, cfg: PreprocConfig, r_peaks, ecg_i: int, stage) -> dict:
    """The pulse step's QC file."""
    c = cfg.correction
    bcg, picks, before, after = stage
    sfreq = rec.sfreq
    channels = [rec.ch_names[i] for i in picks]
    qc: dict[str, Any] = {"Step": "bcg", "Channels": channels}
    qc["Cardiac"] = {"ECGChannel": rec.ch_names[ecg_i], "Channels": channels}
    if c.qc:
        qc["Cardiac"].update(_cardiac_qc(r_peaks, sfreq, before, after))
    else:
        qc["Cardiac"].update(NumberOfBeats=int(r_peaks.size),
                             HeartRate=round(_heart_rate(r_peaks, sfreq), 1))
    qc["Settings"] = {"Method": "OBS" if c.bcg_obs_components else "sliding average",
                      "Neighbours": c.bcg_neighbours, "OBSComponents": c.bcg_obs_components,
                      "EpochStart": round(-bcg.pre_samples / sfreq, 4), "TemplateRank": c.bcg_template_rank}
    if bcg.ranks:  # the ranks the templates kept (auto: chosen per beat)
        qc["Settings"]["TemplateRanks"] = {"Median": float(np.median(bcg.ranks)), "Min": int(min(bcg.ranks)),
                                           "Max": int(max(bcg.ranks))}
    LOGGER.info("%s: pulse artefact removed at %d R peaks (%.0f beats per minute)", rec.path.name, r_peaks.size,
                _heart_rate(r_peaks, sfreq))
    return qc


class _SplitLowpass:
    """The low-pass of a stream shared by two threads: the first half of the channels is filtered where
    :meth:`here` is called (the reading thread), the rest where :meth:`there` is (the worker), which joins them."""

    def __init__(self, plan: _Plan, sfreq: float, n_samples: int, n_channels: int):
        self.half = n_channels // 2 if n_channels > 1 else n_channels
        self.first = _fir(plan, sfreq, n_samples, self.half)
        self.rest = _fir(plan, sfreq, n_samples, n_channels - self.half) if n_channels > 1 else None

    def here(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.first is None:  # no low-pass
            return x, None
        low = self.first.push(x[:self.half])
        return (low, x[self.half:]) if self.rest is not None else (low, None)

    def there(self, part: tuple[np.ndarray, np.ndarray | None]) -> np.ndarray:
        low, rest = part
        return low if rest is None else np.concatenate([low, self.rest.push(rest)])


class _Row:
    """A stage of :func:`~spec2vol_bids.preproc.artefacts.correct_stream` keeping one channel of every block."""

    def __init__(self, index: int):
        self.index = int(index)

    def push(self, block: np.ndarray) -> np.ndarray:
        return block[self.index:self.index + 1]


def _no_ecg(rec: EEGRecording) -> DataError:
    return DataError(f"{rec.path.name} has no ECG channel for the pulse-artefact correction",
                     hint=f"Name it with {option_name('correction.ecg_channel')} or use --eeg-correction gradient")


# ------------------------------------------------------------------------------------------------ steps
@_step
def correct_gradient(eeg_file: str | os.PathLike, *, out_file: str | os.PathLike, qc_file: str | os.PathLike,
                     n_volumes: int, repetition_time: float, config=None,
                     channels_tsv: str | os.PathLike | None = None, events_tsv: str | os.PathLike | None = None,
                     ecg_file: str | os.PathLike | None = None, cardiac_qc: bool = True,
                     progress=False) -> dict[str, Path]:
    """Remove the MR gradient artefact from a recording (AAS with sub-sample alignment, then a low-pass).

    Parameters
    ----------
    eeg_file : path-like
        The recording (any format MNE reads).
    out_file : path-like
        The corrected recording, ``.vhdr`` (BrainVision, float32 microvolts; ``.vmrk`` and ``.eeg`` beside it).
    qc_file : path-like
        The QC JSON (power at the harmonics of the artefact frequency before and after, per channel).
    n_volumes, repetition_time : int, float
        Of the paired BOLD run (the volume onsets, and the frequency range of the QC).
    config : PreprocConfig or dict, optional
        The ``correction`` section (and ``eeg.volume_marker``) is used.
    channels_tsv, events_tsv : path-like, optional
        The run's ``channels.tsv`` (channel types: which channels are electrodes, which is the ECG) and
        ``events.tsv`` (markers when the file has none).
    ecg_file : path-like, optional
        Also save the corrected ECG channel here (``.npy``, float32 microvolts), e.g. for :func:`correct_bcg`.
    cardiac_qc : bool
        Measure the heartbeat-locked average of the corrected EEG when there is an ECG (a second pass over the
        output; off when the pulse correction follows and measures it).
    progress : bool or callable
        A progress bar, or ``progress(done_samples, total)``.

    Returns
    -------
    dict
        ``out_file``, ``qc_file`` and, when written, ``ecg_file``.

    Raises
    ------
    DataError
        No triggers (:func:`gradient_triggers`), unreadable or non-finite samples.
    """
    cfg = PreprocConfig.coerce(config)
    c = cfg.correction
    rec = EEGRecording(eeg_file, channels_tsv)
    plan = _plan(rec, cfg, n_volumes, repetition_time, events_tsv)
    n, n_ch, sfreq = rec.n_samples, len(rec.ch_names), rec.sfreq
    aas = _aas(plan, c, n, n_ch, plan.picks)
    lowpass = _SplitLowpass(plan, sfreq, n, n_ch)
    before, after = _welch(plan, cfg, sfreq), _welch(plan, cfg, sfreq, low_passed=True)
    ecg_i = plan.ecg
    ecg_parts: list[np.ndarray] = []
    update, close = _progress(progress, "gradient correction", n)
    out_file = Path(out_file)

    qc_rows = A.consecutive(plan.qc_picks)  # a view of each block when they are consecutive (the QC copies)

    def finish(part, writer):  # in the worker, block after block: low-pass (the rest), write, QC after, ECG
        block = lowpass.there(part)
        if block.shape[1]:
            writer.write(block)
            if after is not None:
                after.push(block[qc_rows])
            if ecg_i is not None:
                ecg_parts.append(block[ecg_i].astype(np.float32))

    try:
        with _corrected_file(rec, out_file) as writer, _Background() as bg:
            observers = _observers(rec, bg, before, plan.qc_picks)
            for _, block in A.correct_stream(_reader_uv(rec), n, [aas], block=_block(rec, 4 * plan.layout.length),
                                             observers=observers, progress=update, dtype=np.float32):
                bg.submit(finish, lowpass.here(block), writer)
    finally:
        close()
    qc = _gradient_qc(rec, cfg, plan, aas, before, after)
    paths = {"out_file": out_file, "qc_file": Path(qc_file)}
    if ecg_i is not None:
        ecg = np.concatenate(ecg_parts) if ecg_parts else np.zeros(0, np.float32)
        if ecg_file is not None:
            with atomic_path(ecg_file) as tmp:
                np.save(tmp, ecg)
            paths["ecg_file"] = Path(ecg_file)
        if c.qc and cardiac_qc:
            qc["Cardiac"] = _cardiac_after_gradient(rec, ecg, ecg_i, out_file, cfg)
    write_json(qc_file, qc)
    LOGGER.info("%s: gradient artefact removed at %d %s triggers", rec.path.name, plan.layout.n_epochs,
                plan.trig.kind)
    return paths


@_step
def correct_gradient_bcg(eeg_file: str | os.PathLike, *, out_file: str | os.PathLike, qc_file: str | os.PathLike,
                         bcg_qc_file: str | os.PathLike, n_volumes: int, repetition_time: float, config=None,
                         channels_tsv: str | os.PathLike | None = None,
                         events_tsv: str | os.PathLike | None = None, progress=False) -> dict[str, Path]:
    """Remove the MR gradient artefact and then the pulse (BCG) artefact, writing the recording once.

    The result is that of :func:`correct_gradient` followed by :func:`correct_bcg`, in two passes over the
    recording instead of four (each step reading its input and writing its output):

    1. the ECG channel alone is read and corrected for the gradient artefact (AAS on that channel, then the
       low-pass), and its R peaks found (:func:`detect_r_peaks`); meanwhile a worker thread reads the whole
       recording for the check for non-finite samples and the gradient QC's spectra of the recording as it is
       (:class:`_Ahead`; it goes on during step 2 if it has not finished). A file MNE reads (not multiplexed
       binary BrainVision) is read once here, every channel, the check and the spectra on the way;
    2. every electrode is corrected for the gradient artefact (in this thread), low-passed (half the channels in
       this thread, half in the worker), corrected for the pulse artefact at those R peaks and written, with the
       QC measured on the way (in the worker).

    The R peaks come from the ECG corrected with sub-sample delays found on that channel alone (step 1), not over
    all electrodes as in :func:`correct_gradient`; the corrected samples are otherwise the same.

    Parameters
    ----------
    eeg_file, out_file : path-like
        The recording and its corrected copy (``.vhdr``, as :func:`correct_gradient`).
    qc_file, bcg_qc_file : path-like
        The QC JSON files of the gradient and of the pulse correction (as :func:`correct_gradient` and
        :func:`correct_bcg` write them; :func:`merge_qc` combines them).
    n_volumes, repetition_time, config, channels_tsv, events_tsv, progress
        As for :func:`correct_gradient`.

    Returns
    -------
    dict
        ``out_file``, ``qc_file`` and ``bcg_qc_file``.

    Raises
    ------
    DataError
        No triggers, no ECG channel or no usable R peaks on it, unreadable or non-finite samples.
    """
    cfg = PreprocConfig.coerce(config)
    c = cfg.correction
    rec = EEGRecording(eeg_file, channels_tsv)
    plan = _plan(rec, cfg, n_volumes, repetition_time, events_tsv)
    if plan.ecg is None:
        raise _no_ecg(rec)
    n, n_ch, sfreq = rec.n_samples, len(rec.ch_names), rec.sfreq
    read = _reader_uv(rec)
    block = _block(rec, 4 * plan.layout.length)
    before, after = _welch(plan, cfg, sfreq), _welch(plan, cfg, sfreq, low_passed=True)
    update, close = _progress(progress, "gradient and pulse-artefact correction", 2 * n)
    out_file = Path(out_file)
    try:
        # 1. the ECG's R peaks; the check for non-finite samples and the QC's spectra before correction meanwhile
        column = _direct_reader(rec, [plan.ecg])
        ecg_progress = None if update is None else lambda done, total: update(done, 2 * n)
        ecg_stages = [s for s in (_aas(plan, c, n, 1), _fir(plan, sfreq, n, 1)) if s is not None]
        label = f"the ECG channel {rec.ch_names[plan.ecg]} of {rec.path.name}"
        with contextlib.ExitStack() as stack:
            if column is not None:  # the ECG alone is read here; a worker observes the recording, to the end
                ahead = stack.enter_context(_Ahead(read, n, block, _observers(rec, None, before, plan.qc_picks)))
                ecg = [piece[0] for _, piece in A.correct_stream(
                    column, n, ecg_stages, block=_block(rec, 4 * plan.layout.length, n_channels=1),
                    observers=[_finite_check(rec, [plan.ecg])], progress=ecg_progress, dtype=np.float32)]
                ahead.check()
            else:  # MNE reads every channel anyway: they are observed on the way (the QC in the worker)
                ahead = None
                with _Background() as bg:
                    ecg = [piece[0] for _, piece in A.correct_stream(
                        read, n, [_Row(plan.ecg), *ecg_stages], block=block,
                        observers=_observers(rec, bg, before, plan.qc_picks), progress=ecg_progress,
                        dtype=np.float32)]
            r = detect_r_peaks(np.concatenate(ecg), sfreq, label=label)
            del ecg
            # 2. both corrections: the gradient artefact here, the pulse artefact, the QC and the writing in the
            # worker; the low-pass of half the channels here, of the others there (the two take about as long)
            aas = _aas(plan, c, n, n_ch, plan.picks)
            lowpass = _SplitLowpass(plan, sfreq, n, n_ch)
            stage = _bcg_stage(rec, cfg, r, plan.ecg)
            bcg, bcg_picks, card_before, card_after = stage
            # views of each block when the channels are consecutive (the QC copies what it keeps)
            qc_rows, bcg_rows = A.consecutive(plan.qc_picks), A.consecutive(bcg_picks)
            done = [0]  # samples low-passed so far

            def pulse(part, writer):  # in the worker, block after block
                x = lowpass.there(part)
                if not x.shape[1]:
                    return
                if after is not None:
                    after.push(x[qc_rows])
                if card_before is not None:
                    card_before(done[0], x[bcg_rows])
                done[0] += x.shape[1]
                for first, piece in bcg.push(x):
                    writer.write(piece)
                    if card_after is not None:
                        card_after(first, piece[bcg_rows])

            with _corrected_file(rec, out_file) as writer, _Background() as bg:
                for _, x in A.correct_stream(read, n, [aas], block=block, dtype=np.float32,
                                             progress=None if update is None else
                                             lambda d, total: update(n + d, 2 * n)):
                    if ahead is not None:
                        ahead.check()  # non-finite samples found ahead: stop now
                    bg.submit(pulse, lowpass.here(x), writer)
                if ahead is not None:  # the whole recording checked before the corrected file is put in place
                    ahead.finish()
    finally:
        close()
    gradient_qc = _gradient_qc(rec, cfg, plan, aas, before, after)
    write_json(qc_file, gradient_qc)
    write_json(bcg_qc_file, _bcg_qc(rec, cfg, r, plan.ecg, stage))
    LOGGER.info("%s: gradient artefact removed at %d %s triggers", rec.path.name, plan.layout.n_epochs,
                plan.trig.kind)
    return {"out_file": out_file, "qc_file": Path(qc_file), "bcg_qc_file": Path(bcg_qc_file)}


def _observers(rec: EEGRecording, bg: _Background | None, measure=None, rows=None) -> list:
    """The observers of a pass over a recording (:func:`~spec2vol_bids.preproc.artefacts.correct_stream`, or
    :class:`_Ahead`): the check for non-finite samples, and ``measure(start, block[rows])`` (a QC measure before
    correction) in the worker ``bg`` (without one: where the observers are called)."""
    observers = [_finite_check(rec)]
    if measure is not None:
        rows = A.consecutive(rows)
        observers.append((lambda a, x: bg.submit(measure, a, x[rows])) if bg is not None else
                         (lambda a, x: measure(a, x[rows])))
    return observers


def _finite_check(rec: EEGRecording, picks=None):
    """An observer refusing NaN or infinite samples (naming the channel and the time) in blocks of every channel
    or of ``picks``."""
    from ..preproc.eeg import check_finite

    names = rec.ch_names if picks is None else [rec.ch_names[i] for i in picks]
    return lambda start, block: check_finite(block, start, rec.sfreq, names)


@contextlib.contextmanager
def _corrected_file(rec: EEGRecording, out_file: Path) -> Iterator[BrainVisionWriter]:
    """A BrainVision writer for a corrected copy of ``rec`` (its channels and markers), placed atomically."""
    markers = markers_from_annotations(rec.annotations(), rec.sfreq)
    with atomic_path(out_file.with_suffix(".eeg")) as tmp_eeg:
        tmp_vhdr = tmp_eeg.with_suffix(".vhdr")
        try:
            with BrainVisionWriter(tmp_vhdr, rec.ch_names, rec.sfreq, markers, meas_date=_meas_date(rec),
                                   software=SOFTWARE) as writer:
                del markers  # written: tens of thousands of tuples with slice triggers
                yield writer
            _move_brainvision(tmp_vhdr, out_file)
        finally:
            for ext in (".vhdr", ".vmrk"):
                with contextlib.suppress(FileNotFoundError):
                    tmp_vhdr.with_suffix(ext).unlink()


def _cardiac_after_gradient(rec, ecg, ecg_i, out_file, cfg) -> dict[str, Any]:
    """The heartbeat-locked QC of gradient-corrected EEG (no pulse correction follows)."""
    name = rec.ch_names[ecg_i]
    picks = _picks(rec, BCG_TYPES, exclude=[ecg_i])
    try:
        r = detect_r_peaks(ecg, rec.sfreq, label=f"the ECG channel {name}")
    except DataError as err:
        LOGGER.warning("%s: the cardiac QC was skipped: %s", rec.path.name, err.one_line())
        return {"ECGChannel": name, "Channels": [rec.ch_names[i] for i in picks], "Skipped": err.one_line()}
    # the corrected file has the recording's channels and samples: read directly (no second MNE open)
    avg = _locked_pass(rec, picks, r, path=Path(out_file).with_suffix(".eeg"))
    return {"ECGChannel": name, "Channels": [rec.ch_names[i] for i in picks], **_cardiac_qc(r, rec.sfreq, avg)}


def _move_brainvision(tmp_vhdr: Path, out_vhdr: Path) -> None:
    """Write the headers of a BrainVision triplet made under a temporary name at their final name (the data file
    is renamed by the caller), with the file names inside them fixed."""
    out_vhdr.parent.mkdir(parents=True, exist_ok=True)
    for ext in (".vmrk", ".vhdr"):
        text = tmp_vhdr.with_suffix(ext).read_text(encoding="utf-8")
        text = text.replace(f"DataFile={tmp_vhdr.with_suffix('.eeg').name}", f"DataFile={out_vhdr.stem}.eeg")
        text = text.replace(f"MarkerFile={tmp_vhdr.with_suffix('.vmrk').name}", f"MarkerFile={out_vhdr.stem}.vmrk")
        with atomic_path(out_vhdr.with_suffix(ext)) as tmp:
            tmp.write_text(text, encoding="utf-8")


@_step
def correct_bcg(eeg_file: str | os.PathLike, *, out_file: str | os.PathLike, qc_file: str | os.PathLike,
                config=None, channels_tsv: str | os.PathLike | None = None,
                ecg_file: str | os.PathLike | None = None, progress=False) -> dict[str, Path]:
    """Remove the pulse (BCG) artefact: R peaks on the ECG, then a sliding template locked to them.

    For a recording whose gradient artefact is already removed (:func:`correct_gradient`'s output, or EEG
    corrected elsewhere); :func:`correct_gradient_bcg` does both steps in one go.

    Parameters
    ----------
    eeg_file : path-like
        The recording, free of gradient artefact.
    out_file, qc_file : path-like
        The corrected recording (``.vhdr``) and the QC JSON (power of the R-peak-locked average before and
        after, per EEG channel).
    config : PreprocConfig or dict, optional
        The ``correction`` section is used.
    channels_tsv : path-like, optional
        The run's ``channels.tsv`` (which channel is the ECG, which are EEG).
    ecg_file : path-like, optional
        The ECG channel already read (``.npy`` from :func:`correct_gradient`); read from ``eeg_file`` otherwise.
    progress : bool or callable

    Raises
    ------
    DataError
        No ECG channel, or no usable R peaks on it.
    """
    cfg = PreprocConfig.coerce(config)
    rec = EEGRecording(eeg_file, channels_tsv)
    ecg_i = ecg_channel(rec, cfg)
    if ecg_i is None:
        raise _no_ecg(rec)
    ecg = np.load(ecg_file) if ecg_file is not None else _read_channel(rec, ecg_i)
    if ecg.shape[-1] != rec.n_samples:
        raise DataError(f"the ECG trace {ecg_file} has {ecg.shape[-1]} samples, the recording {rec.n_samples}",
                        hint="Rerun the gradient correction of this run (delete its working directory)")
    r = detect_r_peaks(ecg, rec.sfreq, label=f"the ECG channel {rec.ch_names[ecg_i]} of {rec.path.name}")
    del ecg  # 10 MB for 20 minutes at 5 kHz: not needed any more
    stage = _bcg_stage(rec, cfg, r, ecg_i)
    bcg, picks, before, after = stage
    n = rec.n_samples
    update, close = _progress(progress, "pulse-artefact correction", n)
    out_file = Path(out_file)

    def finish(start, block, writer):  # in the worker, block after block: write, QC after
        writer.write(block)
        if after is not None:
            after(start, block[picks])

    try:
        with _corrected_file(rec, out_file) as writer, _Background() as bg:
            observers = _observers(rec, bg, before, picks)
            for start, block in A.correct_stream(_reader_uv(rec), n, [bcg], block=_block(rec, 2 * bcg.layout.length),
                                                 observers=observers, progress=update, dtype=np.float32):
                bg.submit(finish, start, block, writer)
    finally:
        close()
    write_json(qc_file, _bcg_qc(rec, cfg, r, ecg_i, stage))
    return {"out_file": out_file, "qc_file": Path(qc_file)}


@_step
def artefact_qc(eeg_file: str | os.PathLike, *, qc_file: str | os.PathLike, n_volumes: int,
                repetition_time: float, config=None, channels_tsv: str | os.PathLike | None = None,
                events_tsv: str | os.PathLike | None = None, progress=False) -> Path:
    """Measure the scanner artefacts of a recording that is not corrected (``--eeg-correction none``).

    The power at the harmonics of the slice (or volume) frequency against the power between them, per channel;
    when the recording has an ECG and no gradient artefact, the power of the R-peak-locked average against the
    averaging noise. Nothing here fails the run: what cannot be measured is said in the QC file.
    """
    cfg = PreprocConfig.coerce(config)
    rec = EEGRecording(eeg_file, channels_tsv)
    onsets = volume_onsets(rec, n_volumes=int(n_volumes), repetition_time=float(repetition_time),
                           marker=cfg.eeg.volume_marker, events_tsv=events_tsv)
    trig = gradient_triggers(rec, cfg, onsets, events_tsv=events_tsv, strict=False)
    sfreq = rec.sfreq
    if trig is not None and trig.samples.size >= 2:
        period, kind = float(np.median(np.diff(trig.samples))), trig.kind
    else:  # onsets from the TR: a TR-locked artefact would still be at the harmonics of 1 / TR
        period, kind = float(repetition_time) * sfreq, "volume (TR)"
    ecg_i = ecg_channel(rec, cfg)
    picks = _picks(rec, ELECTRODE_TYPES, exclude=[] if ecg_i is None else [ecg_i])
    fmax = _qc_fmax(cfg, sfreq, float(repetition_time), None)
    psd = A.WelchPSD(picks.size, sfreq, _nperseg(period, sfreq), fmax=_spectrum_top(fmax, sfreq / period))
    ecg_parts = []
    update, close = _progress(progress, "artefact QC", rec.n_samples)
    step = _block(rec)
    read = _reader_uv(rec)
    try:
        for a in range(0, rec.n_samples, step):
            b = min(a + step, rec.n_samples)
            data = read(a, b)  # NaN samples make NaN numbers here; the spectrogram step refuses them
            psd.push(data[picks].astype(np.float32))
            if ecg_i is not None:
                ecg_parts.append(data[ecg_i].astype(np.float32))
            if update is not None:
                update(b, rec.n_samples)
    finally:
        close()
    qc: dict[str, Any] = {"Step": "qc", "Channels": [rec.ch_names[i] for i in picks]}
    qc["Gradient"] = {"Triggers": kind, "TriggerMarker": trig.marker if trig is not None else None,
                      **_harmonics_qc(psd.result(), None, sfreq / period, fmax), "HarmonicsMax": round(fmax, 3)}
    if ecg_i is not None:
        name = rec.ch_names[ecg_i]
        bcg_picks = _picks(rec, BCG_TYPES, exclude=[ecg_i])
        card: dict[str, Any] = {"ECGChannel": name, "Channels": [rec.ch_names[i] for i in bcg_picks]}
        flags = A.artefact_flags(gradient_ratio_db=qc["Gradient"]["PeakRatioBefore"])
        if flags["gradient"]:
            card["Skipped"] = "not measured: the gradient artefact hides the heartbeat"
        else:
            try:
                r = detect_r_peaks(np.concatenate(ecg_parts), sfreq, label=f"the ECG channel {name}")
                card.update(_cardiac_qc(r, sfreq, _locked_pass(rec, bcg_picks, r)))
            except DataError as err:
                card["Skipped"] = err.one_line()
        qc["Cardiac"] = card
    write_json(qc_file, qc)
    return Path(qc_file)


def run_artefact_steps(eeg_file: str | os.PathLike, work_dir: str | os.PathLike, *, n_volumes: int,
                       repetition_time: float, config=None, channels_tsv: str | os.PathLike | None = None,
                       events_tsv: str | os.PathLike | None = None,
                       progress=False) -> tuple[Path | None, list[Path]]:
    """The artefact steps of a run as the BIDS-App's workflow chains them, without nipype.

    ``correction.method`` none: the QC (when ``correction.qc``); gradient: :func:`correct_gradient`;
    gradient+bcg: :func:`correct_gradient_bcg`. Files go into ``work_dir``.

    Returns
    -------
    data_file : Path or None
        The corrected recording for :func:`~spec2vol_bids.pipeline.steps.compute_spectrogram`'s ``data_file``
        (None without correction).
    qc_files : list of Path
        For its ``qc_files``.
    """
    cfg = PreprocConfig.coerce(config)
    work = Path(work_dir)
    from ..io.names import run_entities

    stem = "_".join(f"{k}-{v}" for k, v in run_entities(eeg_file).items()) or "eeg"
    common = {"n_volumes": n_volumes, "repetition_time": repetition_time, "config": cfg,
              "channels_tsv": channels_tsv, "events_tsv": events_tsv, "progress": progress}
    if cfg.correction.method == "none":
        if not cfg.correction.qc:
            return None, []
        return None, [artefact_qc(eeg_file, qc_file=work / "qc_artefacts.json", **common)]
    if not cfg.correction.bcg:
        g = correct_gradient(eeg_file, out_file=work / "gradient" / f"{stem}_desc-gradient_eeg.vhdr",
                             qc_file=work / "qc_gradient.json", **common)
        return g["out_file"], [g["qc_file"]]
    b = correct_gradient_bcg(eeg_file, out_file=work / "bcg" / f"{stem}_desc-bcg_eeg.vhdr",
                             qc_file=work / "qc_gradient.json", bcg_qc_file=work / "qc_bcg.json", **common)
    return b["out_file"], [b["qc_file"], b["bcg_qc_file"]]


# ------------------------------------------------------------------------------------------------ sidecar
def _final(section: dict | None, key: str) -> list | None:
    if not section:
        return None
    return section.get(f"{key}After", section.get(f"{key}Before"))


def merge_qc(qc_files: Sequence[str | os.PathLike], config=None) -> dict[str, Any]:
    """The ``ArtefactCorrection``, ``ArtefactQC`` (and ``ArtefactWarnings``) sidecar fields of a run.

    Parameters
    ----------
    qc_files : sequence of path-like
        The QC files of the run's steps (gradient, BCG, or the QC of an uncorrected run), in order.
    config : PreprocConfig or dict, optional

    Returns
    -------
    dict
        ``ArtefactCorrection``: the method and the settings of each step; ``ArtefactQC``: ``Channels``,
        ``Gradient`` and ``Cardiac`` (per-channel numbers before and, when corrected, after),
        ``ArtefactDetected`` (``Gradient``, ``Cardiac``: True, False or None, on the EEG the spectrogram is made
        from); ``ArtefactWarnings``: sentences for the report (empty when the EEG looks clean).
    """
    cfg = PreprocConfig.coerce(config)
    method = cfg.correction.method
    steps = [json.loads(Path(f).read_text(encoding="utf-8")) for f in qc_files]
    correction: dict[str, Any] = {"Method": method}
    qc: dict[str, Any] = {}
    for step in steps:
        if step.get("Step") == "gradient":
            correction["Gradient"] = step.get("Settings", {})
        if step.get("Step") == "bcg":
            correction["BCG"] = step.get("Settings", {})
        qc.setdefault("Channels", step.get("Channels"))
        if "Gradient" in step:
            qc["Gradient"] = step["Gradient"]
        if "Cardiac" in step:
            qc["Cardiac"] = step["Cardiac"]
    grad, card = qc.get("Gradient"), qc.get("Cardiac")
    flags = A.artefact_flags(gradient_ratio_db=_final(grad, "PeakRatio"), cardiac_power_db=_final(card, "Power"),
                             cardiac_ratio_db=_final(card, "Ratio"))
    qc["ArtefactDetected"] = {"Gradient": flags["gradient"], "Cardiac": flags["cardiac"]}
    qc["Thresholds"] = {"GradientPeakRatio": A.GRADIENT_RATIO_DB, "CardiacRatio": A.CARDIAC_RATIO_DB,
                        "CardiacPower": A.CARDIAC_POWER_DB}
    warnings = []
    if flags["gradient"]:
        ratio = float(np.nanmedian(np.asarray(_final(grad, "PeakRatio"), dtype=float)))
        what = (f"MR gradient artefact: the power at the harmonics of {grad['ArtefactFrequency']:.4g} Hz is "
                f"{ratio:.1f} dB above the power between them (median over channels"
                + ("; these are also the mains harmonics, so line noise counts too)" if grad.get("MainsCoincident")
                   else ")"))
        if method == "none":
            warnings.append(f"The EEG holds {what}, and --eeg-correction is none: the spectrogram shows the "
                            "scanner, not the brain. Use --eeg-correction gradient (or gradient+bcg), or "
                            "corrected EEG from a derivatives dataset (-d eegprep=PATH).")
        else:
            warnings.append(f"{what} remains after the correction.")
    if flags["cardiac"]:
        power = float(np.nanmedian(np.asarray(_final(card, "Power"), dtype=float)))
        what = (f"pulse (BCG) artefact: the average locked to the R peaks of {card['ECGChannel']} has "
                f"{power:.1f} dB re 1 uV^2 (median over channels), far above the averaging noise")
        if cfg.correction.bcg:
            warnings.append(f"{what[0].upper()}{what[1:]} remains after the correction.")
        else:
            warnings.append(f"The EEG holds {what}, and it is not corrected: use --eeg-correction gradient+bcg, "
                            "or corrected EEG from a derivatives dataset (-d eegprep=PATH).")
    return {"ArtefactCorrection": correction, "ArtefactQC": qc, "ArtefactWarnings": warnings}
