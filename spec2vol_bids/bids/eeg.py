"""Read a BIDS EEG recording lazily and find the onsets of the BOLD volumes in it.

Two things matter for simultaneous EEG-fMRI and are easy to get wrong:

* **Memory.** A 10-minute 64-channel recording at 5 kHz is ~1.5 GB as float64. :class:`EEGRecording` opens the
  file with ``mne.io.read_raw(..., preload=False)`` and hands out a ``read_segment(start, stop)`` callable, so the
  spectrogram is computed window by window and the run is never held in memory at once.
* **Alignment.** EEG sample 0 is rarely the first scan. The scanner's own volume triggers, logged by the EEG
  amplifier (BrainVision ``R128`` "Response" markers, which MNE names ``Response/R128``), give each volume's onset
  on the EEG clock. mne-bids' ``read_raw_bids`` *replaces* the file's annotations with the rows of
  ``events.tsv`` (mne-tools/mne-bids#754), dropping those markers; we therefore read the raw file directly.

Onset policy (:func:`volume_onsets`), in order:

1. markers in the raw file named ``Response/R128``/``R128`` (or ``marker=``, the CLI's ``--volume-marker``);
2. else rows of the EEG run's ``events.tsv`` whose ``trial_type`` or ``value`` is that marker (onsets measured
   from the first sample of the EEG file, per BIDS);
3. else EEG start + n x TR, with a loud warning (the official code's implicit assumption).

Gaps between markers (a trigger lost in the middle of the run). Without this step every volume after a lost trigger
would get the EEG of the next volume (a shift of one TR from the gap on). An interval between consecutive markers
longer than 1.5 x their median spacing (normally the TR) is a gap; ``round(interval / spacing) - 1`` triggers are
missing in it:

* a gap of **one** missing trigger (the interval is 2 x spacing, +- 0.25 x spacing) is filled: the volume's onset is
  put at the midpoint of the two markers around it (exact up to the scanner's trigger jitter, since both neighbours
  are measured). A warning names the volume index and the onset; the spectrogram sidecar lists the filled volumes in
  ``FilledVolumeTriggers`` and the report's alignment figure marks them. Every such isolated gap is filled, as long
  as at most one volume in ten (at least one per run) is filled;
* a gap of **two or more** consecutive missing triggers, a gap that is not a whole number of spacings, or more
  filled volumes than that bound is refused with a :class:`~spec2vol_bids.errors.DataError` naming the gap (volume
  indices and times): the onsets cannot be reconstructed reliably (repair the markers or exclude the run).
* Gaps after the last BOLD volume's marker do not matter and are ignored.

Marker count vs BOLD volumes (``n`` markers after filling, ``T`` volumes):

* ``n == T``: used as is.
* ``n > T``: the first ``T`` markers are used (the scanner or recording went on after the stored series);
  a warning names the number of extra markers.
* ``n < T``: the missing *trailing* onsets are extrapolated at the median marker spacing, with a warning (a
  recording stopped early is caught by the next check). A hole in the middle is never covered this way: it is
  filled or refused above.
* The EEG must reach the start of the last volume: otherwise the EEG is shorter than the BOLD run and a
  :class:`~spec2vol_bids.errors.DataError` is raised. A last window that runs past the end of the recording is
  only marked invalid (the spectrogram's ``valid`` mask).
* A median marker spacing that differs from ``RepetitionTime`` by more than 5 % is warned about.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, NoInputError
from ..io.spectrogram import BIDS_TO_MNE_TYPES

__all__ = [
    "DEFAULT_VOLUME_MARKERS",
    "BIDS_TO_MNE_TYPES",
    "EEGRecording",
    "VolumeOnsets",
    "read_channels_tsv",
    "read_bad_channels",
    "marker_onsets",
    "is_volume_marker",
    "events_tsv_onsets",
    "fill_missing_triggers",
    "reconcile_onsets",
    "volume_onsets",
]

LOGGER = logging.getLogger("spec2vol_bids.bids")

#: marker names tried when no ``--volume-marker`` is given (compared without spaces, case-insensitive)
DEFAULT_VOLUME_MARKERS = ("Response/R128", "R128")
#: relative tolerance between the median marker spacing and RepetitionTime before a warning
SPACING_TOLERANCE = 0.05
#: an interval between markers longer than this many median spacings is a gap (missing triggers)
GAP_FACTOR = 1.5
#: how far (in spacings) a gap may be from a whole number of spacings for its missing triggers to be counted
GAP_TOLERANCE = 0.25
#: at most this fraction of a run's volumes (and at least one) may get a filled onset
MAX_FILLED_FRACTION = 0.1


def read_channels_tsv(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Read ``name`` and ``type`` of each row of a BIDS ``channels.tsv`` (file order).

    Tolerates files written with spaces instead of tabs and quoted names (as in OpenNeuro ds002336/ds002338).

    Returns
    -------
    rows : list of (name, type)
        ``type`` upper-cased (``"EEG"``, ``"ECG"``, ...); ``"n/a"`` when the column is missing.
    """
    import pandas as pd

    path = Path(path)
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if "name" not in table.columns:
        table = pd.read_csv(path, sep=r"\s+", dtype=str, keep_default_na=False, engine="python")
    if "name" not in table.columns:
        raise DataError(f"{path.name} has no 'name' column", hint="Fix the channels.tsv header (name, type, units)")
    quotes = "'\"\u2018\u2019\u201c\u201d"
    names = [str(n).strip().strip(quotes) for n in table["name"]]
    types = ([str(t).strip().strip(quotes).upper() for t in table["type"]] if "type" in table.columns
             else ["n/a"] * len(names))
    return list(zip(names, types))


def read_bad_channels(path: str | os.PathLike) -> dict[str, str]:
    """The channels a BIDS ``channels.tsv`` marks ``status`` = ``bad``, with their ``status_description``.

    Returns
    -------
    dict of str to str
        ``{name: description}`` in file order (``""`` without a description); empty without a ``status``
        column. Spelled as :func:`read_channels_tsv` reads the names.
    """
    import pandas as pd

    path = Path(path)
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if "name" not in table.columns:
        table = pd.read_csv(path, sep=r"\s+", dtype=str, keep_default_na=False, engine="python")
    if "name" not in table.columns or "status" not in table.columns:
        return {}
    quotes = "'\"\u2018\u2019\u201c\u201d"
    notes = table["status_description"] if "status_description" in table.columns else [""] * len(table)
    return {str(n).strip().strip(quotes): ("" if str(d).strip() == "n/a" else str(d).strip())
            for n, s, d in zip(table["name"], table["status"], notes) if str(s).strip().lower() == "bad"}


@dataclass
class VolumeOnsets:
    """Onsets of the BOLD volumes on the EEG clock.

    Attributes
    ----------
    onsets : ndarray of float64, shape (n_volumes,)
        Seconds from the first sample of the EEG file to the start of each volume.
    source : str
        ``"markers"``, ``"events.tsv"`` or ``"tr-fallback"``.
    marker : str or None
        The marker description that was used.
    n_markers : int
        How many markers were found (before reconciliation with the volume count).
    messages : list of str
        Warnings raised while reconciling (also logged).
    markers : ndarray of float64
        Every marker found (seconds from the first EEG sample), before reconciliation; empty for the TR fallback.
    filled : list of int
        Indices of the volumes whose missing trigger was filled between its two neighbours
        (:func:`fill_missing_triggers`).
    """

    onsets: np.ndarray
    source: str
    marker: str | None = None
    n_markers: int = 0
    messages: list[str] = field(default_factory=list)
    markers: np.ndarray = field(default_factory=lambda: np.empty(0))
    filled: list[int] = field(default_factory=list)


class EEGRecording:
    """A lazily opened EEG recording (nothing is loaded until :meth:`read_segment` is called).

    Parameters
    ----------
    path : path-like
        The EEG data file (``.vhdr``, ``.edf``, ``.bdf``, ``.set``).
    channels_tsv : path-like, optional
        The run's ``channels.tsv``; its ``type`` column overrides the channel types stored in the file
        (BrainVision files call every channel "EEG", including ECG).

    Attributes
    ----------
    raw : mne.io.BaseRaw
        The MNE raw object (``preload=False``).
    ch_names : list of str
        Channel names in file order.
    ch_types : list of str
        BIDS channel types (``"EEG"``, ``"ECG"``, ...) in file order.
    bads : dict of str to str
        Channels of the recording marked ``status`` = ``bad`` in ``channels.tsv``, with their
        ``status_description`` (empty without a ``channels.tsv`` or a ``status`` column).
    sfreq : float
        Sampling frequency in Hz.
    n_samples : int
        Number of samples of the recording.
    """

    def __init__(self, path: str | os.PathLike, channels_tsv: str | os.PathLike | None = None):
        import mne

        self.path = Path(path)
        if not self.path.is_file():
            raise NoInputError(f"the EEG file {self.path} does not exist",
                               hint="Check the dataset (BrainVision needs its .vhdr, .vmrk and .eeg files)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MNE warns about unknown units, channel names, ...
                self.raw = mne.io.read_raw(str(self.path), preload=False, verbose="error")
        except Exception as err:  # MNE raises many types on broken headers
            raise DataError(f"cannot read the EEG file {self.path.name} ({type(err).__name__}: {err})",
                            hint="Check that the recording and all its companion files are complete") from None
        self.ch_names: list[str] = list(self.raw.ch_names)
        self.sfreq = float(self.raw.info["sfreq"])
        self.n_samples = int(self.raw.n_times)
        mne_to_bids = {v: k for k, v in reversed(list(BIDS_TO_MNE_TYPES.items()))}
        self.ch_types = [mne_to_bids.get(t, "MISC") for t in self.raw.get_channel_types()]
        self.bads: dict[str, str] = {}
        if channels_tsv is not None and Path(channels_tsv).is_file():
            self._apply_channels_tsv(Path(channels_tsv))
            self.bads = {n: d for n, d in read_bad_channels(channels_tsv).items() if n in self.ch_names}

    def _apply_channels_tsv(self, path: Path) -> None:
        rows = read_channels_tsv(path)
        by_name = {name: typ for name, typ in rows}
        if all(name in by_name for name in self.ch_names):
            self.ch_types = [by_name[n] if by_name[n] != "N/A" else t for n, t in zip(self.ch_names, self.ch_types)]
        elif len(rows) == len(self.ch_names):
            LOGGER.warning("%s: channel names differ from %s; matching the rows by position",
                           path.name, self.path.name)
            self.ch_types = [typ if typ != "N/A" else t for (_, typ), t in zip(rows, self.ch_types)]
        else:
            LOGGER.warning("%s lists %d channels but %s has %d; channel types from the EEG file are used",
                           path.name, len(rows), self.path.name, len(self.ch_names))

    @property
    def duration(self) -> float:
        """Length of the recording in seconds."""
        return self.n_samples / self.sfreq


    def segment_reader(self, picks: Sequence[int]) -> Callable[[int, int], np.ndarray]:
        """Return ``read_segment(start, stop) -> float64 [len(picks), stop - start]`` (volts).

        ``picks`` are channel indices in output order (see
        :func:`spec2vol_bids.preproc.eeg.select_channels`). Each call reads only the requested samples from
        disk, so a long recording is never loaded at once.
        """
        idx = [int(i) for i in picks]
        raw = self.raw

        def read_segment(start: int, stop: int) -> np.ndarray:
            return raw.get_data(picks=idx, start=int(start), stop=int(stop))  # [C, stop - start]

        return read_segment

    def annotations(self) -> list[tuple[float, str]]:
        """(onset in seconds from the first sample, description) of every annotation/marker of the file."""
        ann = self.raw.annotations
        if len(ann) == 0:
            return []
        # Annotation onsets are relative to the measurement start; first_time is the first sample's time.
        onsets = np.asarray(ann.onset, dtype=float)
        if ann.orig_time is None:
            rel = onsets - 0.0
        else:
            rel = onsets - self.raw.first_time
        return [(float(o), str(d)) for o, d in zip(rel, ann.description)]


def _norm(name: str) -> str:
    return "".join(str(name).split()).lower()


def _matches(description: str, wanted: Sequence[str]) -> bool:
    d = _norm(description)
    return any(d == _norm(w) or d.endswith("/" + _norm(w)) for w in wanted)


def is_volume_marker(description: str, marker: str | None = None) -> bool:
    """Whether an annotation (or LSL marker) ``description`` is the volume trigger ``marker``.

    The rule of :func:`marker_onsets`: white space and case are ignored, and ``R128`` also matches
    ``Response/R128``; without ``marker`` the :data:`DEFAULT_VOLUME_MARKERS` are tried.
    """
    return _matches(description, [marker] if marker else list(DEFAULT_VOLUME_MARKERS))


def marker_onsets(recording: EEGRecording, marker: str | None = None) -> tuple[np.ndarray, str | None]:
    """Onsets (s, from the first EEG sample) of the volume markers in the raw file, sorted.

    ``marker`` is matched against the annotation descriptions ignoring white space and case, either exactly or
    as the part after the ``/`` (``R128`` matches ``Response/R128``). Returns an empty array when none match.
    """
    wanted = [marker] if marker else list(DEFAULT_VOLUME_MARKERS)
    hits = [(o, d) for o, d in recording.annotations() if _matches(d, wanted)]
    if not hits:
        return np.empty(0), None
    onsets = np.sort(np.array([o for o, _ in hits], dtype=float))
    return onsets, hits[0][1]


def events_tsv_onsets(path: str | os.PathLike | None, marker: str | None = None) -> tuple[np.ndarray, str | None]:
    """Onsets of volume markers listed in an EEG ``events.tsv`` (``trial_type`` or ``value`` column)."""
    import pandas as pd

    if path is None or not Path(path).is_file():
        return np.empty(0), None
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if "onset" not in table.columns:
        return np.empty(0), None
    wanted = [marker] if marker else list(DEFAULT_VOLUME_MARKERS)
    for column in ("trial_type", "value", "stim_type"):
        if column in table.columns:
            rows = table[[_matches(v, wanted) for v in table[column]]]
            if len(rows):
                onsets = pd.to_numeric(rows["onset"], errors="coerce").to_numpy(dtype=float)
                return np.sort(onsets[np.isfinite(onsets)]), str(rows[column].iloc[0])
    return np.empty(0), None


def fill_missing_triggers(onsets: np.ndarray, *, n_volumes: int, repetition_time: float,
                          label: str = "") -> tuple[np.ndarray, list[int], list[str]]:
    """Find gaps between volume markers; fill isolated single missing triggers, refuse longer gaps.

    The policy is in the module docstring. ``label`` (the recording's file name) starts every message.

    Parameters
    ----------
    onsets : ndarray of float64
        Sorted marker onsets (seconds from the first EEG sample).
    n_volumes : int
        Volumes of the BOLD run: gaps after the ``n_volumes``-th onset are ignored.
    repetition_time : float
        The BOLD TR (s); the reference spacing when there are only two markers (otherwise the median interval
        between the markers is, so that markers regular at another spacing are not mistaken for gaps).

    Returns
    -------
    onsets : ndarray of float64
        The markers with one onset inserted per filled gap.
    filled : list of int
        Volume indices of the inserted onsets (indices into the returned ``onsets``).
    messages : list of str
        One warning per filled volume.

    Raises
    ------
    DataError
        A gap of two or more missing triggers, a gap that is not a whole number of marker spacings, or more
        filled volumes than ``MAX_FILLED_FRACTION`` of the run.
    """
    onsets = np.asarray(onsets, dtype=float)
    if onsets.size < 2:
        return onsets, [], []
    intervals = np.diff(onsets)
    spacing = float(np.median(intervals)) if intervals.size > 1 else float(repetition_time)
    if not spacing > 0:
        return onsets, [], []
    out: list[float] = [float(onsets[0])]
    filled: list[int] = []
    msgs: list[str] = []
    for prev, nxt in zip(onsets[:-1], onsets[1:]):
        interval = float(nxt - prev)
        if len(out) < n_volumes and interval > GAP_FACTOR * spacing:
            steps = interval / spacing
            n_missing = int(round(steps)) - 1
            first = len(out)  # volume index of the first missing trigger
            after = f" (volume {first + n_missing})" if abs(steps - round(steps)) <= GAP_TOLERANCE else ""
            where = (f"between the markers at {prev:.3f} s (volume {first - 1}) and {nxt:.3f} s{after}, "
                     f"{interval:.3f} s apart = {steps:.2f} x the marker spacing of {spacing:.4g} s")
            hint = ("Repair the volume markers of the run (its marker file or events.tsv), or exclude the run "
                    "with --bids-filter-file")
            if abs(steps - round(steps)) > GAP_TOLERANCE:
                raise DataError(f"{label}: the volume markers have a gap {where}, not a whole number of "
                                f"spacings, so the onsets of the volumes after volume {first - 1} are unknown",
                                hint=hint)
            if n_missing > 1:
                raise DataError(f"{label}: {n_missing} consecutive volume triggers are missing (volumes {first}-"
                                f"{first + n_missing - 1}) {where}; only a single missing trigger is filled",
                                hint=hint)
            onset = 0.5 * float(prev + nxt)
            filled.append(first)
            out.append(onset)
            msgs.append(f"{label}: the trigger of volume {first} is missing {where}; its onset is filled at "
                        f"{onset:.3f} s (midpoint)")
        out.append(float(nxt))
    limit = max(1, int(MAX_FILLED_FRACTION * n_volumes))
    if len(filled) > limit:
        shown = ", ".join(str(i) for i in filled[:10]) + (" ..." if len(filled) > 10 else "")
        raise DataError(f"{label}: {len(filled)} volume triggers are missing (volumes {shown}), more than the "
                        f"{limit} that may be filled in a run of {n_volumes} volumes: the markers are unreliable or "
                        "are not the volume triggers",
                        hint="Check --volume-marker, repair the markers, or exclude the run with --bids-filter-file")
    return np.asarray(out, dtype=float), filled, msgs


def reconcile_onsets(onsets: np.ndarray, *, n_volumes: int, repetition_time: float,
                     duration: float, label: str = "") -> tuple[np.ndarray, list[str]]:
    """Match ``len(onsets)`` markers to ``n_volumes`` BOLD volumes (policy in the module docstring).

    Returns
    -------
    onsets : ndarray of float64, shape (n_volumes,)
    messages : list of str
        The warnings issued.

    Raises
    ------
    DataError
        The recording ends before the last volume starts (EEG shorter than BOLD), or the markers have a gap that
        cannot be filled (:func:`fill_missing_triggers`).
    """
    onsets, msgs, _ = _reconcile(onsets, n_volumes=n_volumes, repetition_time=repetition_time,
                                 duration=duration, label=label)
    return onsets, msgs


def _reconcile(onsets: np.ndarray, *, n_volumes: int, repetition_time: float, duration: float,
               label: str) -> tuple[np.ndarray, list[str], list[int]]:
    """:func:`reconcile_onsets`, also returning the volume indices whose onsets were filled."""
    msgs: list[str] = []
    onsets = np.asarray(onsets, dtype=float)
    n_markers = onsets.size
    spacing = float(np.median(np.diff(onsets))) if n_markers > 1 else repetition_time
    if n_markers > 1 and abs(spacing - repetition_time) > SPACING_TOLERANCE * repetition_time:
        msgs.append(f"{label}: the volume markers are {spacing:.4g} s apart but RepetitionTime is "
                    f"{repetition_time:.4g} s; check --volume-marker and the BOLD sidecar")
    onsets, filled, fill_msgs = fill_missing_triggers(onsets, n_volumes=n_volumes,
                                                      repetition_time=repetition_time, label=label)
    msgs += fill_msgs
    filled = [i for i in filled if i < n_volumes]
    n = onsets.size
    counted = f"{n_markers} volume markers" + (f" (+ {n - n_markers} filled)" if n != n_markers else "")
    if n > n_volumes:
        msgs.append(f"{label}: {counted} for {n_volumes} BOLD volumes; the first {n_volumes} are used "
                    f"({n - n_volumes} extra)")
        onsets = onsets[:n_volumes]
    elif n < n_volumes:
        extra = onsets[-1] + spacing * np.arange(1, n_volumes - n + 1)
        msgs.append(f"{label}: only {counted} for {n_volumes} BOLD volumes; the last "
                    f"{n_volumes - n} onsets (after the last marker) are extrapolated every {spacing:.4g} s")
        onsets = np.concatenate([onsets, extra])
    if onsets[-1] >= duration:
        raise DataError(f"{label}: the EEG recording ({duration:.1f} s) ends before the last BOLD volume starts "
                        f"({onsets[-1]:.1f} s): the EEG is shorter than the BOLD run",
                        hint="Exclude the run with --bids-filter-file or use the complete recording")
    if onsets[0] < 0:
        raise DataError(f"{label}: the first BOLD volume starts {-onsets[0]:.2f} s before the EEG recording",
                        hint="Check the volume markers (--volume-marker)")
    for m in msgs:
        LOGGER.warning(m)
    return onsets, msgs, filled


def volume_onsets(recording: EEGRecording, *, n_volumes: int, repetition_time: float,
                  marker: str | None = None, events_tsv: str | os.PathLike | None = None) -> VolumeOnsets:
    """Onsets of the BOLD volumes on the EEG clock, from markers, ``events.tsv`` or the TR.

    Parameters
    ----------
    recording : EEGRecording
        The opened EEG run.
    n_volumes : int
        Number of volumes of the paired BOLD series.
    repetition_time : float
        Its ``RepetitionTime`` in seconds.
    marker : str, optional
        Name of the volume marker (default: ``Response/R128`` or ``R128``).
    events_tsv : path-like, optional
        The EEG run's ``events.tsv``, used when the raw file has no markers.

    Returns
    -------
    VolumeOnsets
        ``onsets`` has exactly ``n_volumes`` entries.

    Raises
    ------
    DataError
        The EEG is shorter than the BOLD run, or the markers have a gap that cannot be filled.
    """
    label = recording.path.name
    onsets, found = marker_onsets(recording, marker)
    source = "markers"
    if onsets.size == 0:
        onsets, found = events_tsv_onsets(events_tsv, marker)
        source = "events.tsv"
    if onsets.size == 0:
        wanted = marker or " or ".join(DEFAULT_VOLUME_MARKERS)
        msg = (f"{label}: no volume markers ({wanted}) in the recording or its events.tsv; ASSUMING THE FIRST EEG "
               f"SAMPLE IS THE FIRST VOLUME and volumes every {repetition_time:.4g} s (TR fallback). If the EEG "
               "started before the scan, the spectrogram is misaligned: name the marker with --volume-marker")
        LOGGER.warning(msg)
        onsets = np.arange(n_volumes, dtype=float) * repetition_time
        if onsets[-1] >= recording.duration:
            raise DataError(f"{label}: the EEG recording ({recording.duration:.1f} s) is shorter than the BOLD run "
                            f"({n_volumes} volumes x {repetition_time:.4g} s)",
                            hint="Exclude the run with --bids-filter-file or use the complete recording")
        return VolumeOnsets(onsets=onsets, source="tr-fallback", marker=None, n_markers=0, messages=[msg])
    n_found = int(onsets.size)
    markers = onsets.copy()
    onsets, msgs, filled = _reconcile(onsets, n_volumes=n_volumes, repetition_time=repetition_time,
                                      duration=recording.duration, label=label)
    LOGGER.info("%s: %d volume onsets from %s (%s), first at %.3f s", label, n_volumes, source, found, onsets[0])
    return VolumeOnsets(onsets=onsets, source=source, marker=found, n_markers=n_found, messages=msgs,
                        markers=markers, filled=filled)
