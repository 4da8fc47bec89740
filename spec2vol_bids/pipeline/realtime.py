"""Real-time prediction: one BOLD volume from the EEG of the preceding TRs, as soon as that EEG has arrived.

The engine, :class:`RealtimePredictor`, knows nothing of the network: it is fed EEG samples with their timestamps
(:meth:`~RealtimePredictor.add_samples`) and volume triggers (:meth:`~RealtimePredictor.add_trigger`) in any
interleaving, and returns each prediction as soon as the EEG windows of its input are complete. It uses the
BIDS-App's own functions, so a live run gives the offline predictions:

* the spectrogram row of volume ``k`` is :func:`spec2vol_bids.preproc.eeg.spectrogram_from_reader` called on the
  received samples with the one onset ``k`` (the same window bounds, FFT and per-row scaling);
* the model input of volume ``t`` is the rows of :func:`spec2vol_bids.preproc.pairs.make_pairs` (``t - lag -
  n_windows .. t - lag - 1``, after the discarded volumes), predicted with
  :func:`spec2vol_bids.train.predict.predict_windows` (the checkpoint's input scaling included);
* a single missing trigger is filled at the midpoint of its neighbours by
  :func:`spec2vol_bids.bids.eeg.fill_missing_triggers`, the BIDS-App's policy. A longer gap cannot be refused
  as the BIDS-App refuses a run: it is reported, the volume count jumps by the number of spacings, and the
  volumes whose input would need the missing EEG are skipped.

Sample indices count from the first received sample (the offline onsets count from the first sample of the
file). Samples the stream dropped (a timestamp gap) are filled with NaN so that later samples keep their index;
windows touching them are reported and skipped. A stream whose timestamps go backwards has restarted: the
engine starts over (new sample count and volume chain).

:class:`RealtimeSession` adds the outputs (an :class:`~spec2vol_bids.io.nifti.IncrementalNifti` and its sidecar,
an optional sink such as an LSL outlet) and :func:`stream_settings` checks a stream against a checkpoint. The
LSL transport itself is in :mod:`spec2vol_bids.pipeline.lsl`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PreprocConfig
from ..errors import DataError, UsageError

__all__ = ["StreamSettings", "stream_settings", "Prediction", "StreamEvent", "RealtimePredictor",
           "RealtimeSession"]

LOGGER = logging.getLogger("spec2vol_bids.realtime")

#: a timestamp step longer than this many sample periods (and ``min_gap_s``) is a drop of samples
GAP_SAMPLES = 1.5
#: triggers closer than this fraction of the volume spacing to the previous one are duplicates
DUPLICATE_FRACTION = 0.5


@dataclass(frozen=True)
class StreamSettings:
    """What the engine needs to know about the stream and the model.

    Attributes
    ----------
    picks : list of int
        Stream channel indices of the model's channels, in the model's order.
    channels : list of str
        The model's channel names (row order of the spectrogram).
    sfreq, repetition_time : float
        EEG rate (Hz) and TR (s).
    config : PreprocConfig
        The checkpoint's preprocessing (its ``eeg`` settings make the spectrogram rows).
    n_windows, discard, lag : int
        The pairing in volumes (:meth:`~spec2vol_bids.config.PairingConfig.resolve`).
    """

    picks: list[int]
    channels: list[str]
    sfreq: float
    repetition_time: float
    config: PreprocConfig
    n_windows: int
    discard: int
    lag: int


def stream_settings(ckpt: Mapping[str, Any], *, channels: Sequence[str], sfreq: float,
                    repetition_time: float | None = None, stream: str = "the stream") -> StreamSettings:
    """Check a stream's channels and rate against a checkpoint and resolve the real-time settings.

    Parameters
    ----------
    ckpt : Checkpoint
    channels : sequence of str
        The stream's channel names, in stream order. Every model channel must be among them (extra ones, such
        as a trigger channel, are ignored; the model's order is restored by name).
    sfreq : float
        The stream's nominal rate in Hz; must equal the training data's (``acquisition.sfreq`` of the
        checkpoint) when the checkpoint records it.
    repetition_time : float, optional
        TR in seconds; default the checkpoint's ``acquisition.repetition_time``.
    stream : str
        Name used in messages.

    Raises
    ------
    DataError
        Missing channels, another sampling rate, or a frequency axis the model was not trained on (exit 65).
    UsageError
        No TR known, or a preprocessing that needs the whole run (``zscore-channel`` scaling).
    """
    from ..train.checkpoint import check_run_compatible

    names = [str(c) for c in channels]
    want = [str(c) for c in ckpt["channels"]]
    missing = [c for c in want if c not in names]
    if missing:
        raise DataError(f"{stream} lacks {len(missing)} of the model's {len(want)} channels "
                        f"({', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}; it has "
                        f"{', '.join(names[:6])}{' ...' if len(names) > 6 else ''})",
                        hint="stream the channels the model was trained on (`channels` in the checkpoint) or use a "
                             "checkpoint trained on this montage")
    acquisition = ckpt.get("acquisition") or {}
    trained = acquisition.get("sfreq")
    if not (np.isfinite(sfreq) and sfreq > 0):
        raise DataError(f"{stream} has no regular sampling rate ({sfreq!r} Hz)",
                        hint="connect to the EEG stream, not to a marker stream")
    if trained and abs(float(sfreq) - float(trained)) > 1e-6 * float(trained):
        raise DataError(f"{stream} samples at {sfreq:g} Hz, the model was trained on EEG at {float(trained):g} Hz",
                        hint=f"set the amplifier or its LSL app to {float(trained):g} Hz")
    tr = repetition_time if repetition_time is not None else acquisition.get("repetition_time")
    if tr is None:
        raise UsageError("the checkpoint does not record the repetition time of its training data",
                         hint="pass --tr SECONDS (the sequence's RepetitionTime)")
    tr = float(tr)
    cfg = PreprocConfig.coerce(ckpt.get("preprocessing") or {})
    if cfg.eeg.scaling == "zscore-channel":
        raise UsageError("the checkpoint's spectrogram scaling zscore-channel uses statistics of the whole run, "
                         "which a live stream does not have yet",
                         hint="use a checkpoint trained with --eeg-scaling zscore-electrodes or none")
    check_run_compatible(ckpt, channels=want, sfreq=float(sfreq), repetition_time=tr,
                         native_shape=tuple(int(v) for v in ckpt["grid"]["shape"]), config=cfg)
    n_windows, discard, lag = cfg.pairing.resolve(tr)
    return StreamSettings(picks=[names.index(c) for c in want], channels=want, sfreq=float(sfreq),
                          repetition_time=tr, config=cfg, n_windows=int(n_windows), discard=int(discard),
                          lag=int(lag))


@dataclass
class Prediction:
    """One predicted volume.

    Attributes
    ----------
    index : int
        Volume index (0 = the first volume trigger of the session).
    volume : ndarray, float32, shape (X, Y, Z)
        NIfTI layout.
    input_end : float
        Stream timestamp of the volume's trigger (its onset sample); before the trigger has come (TR clock, or
        a positive lag), just after the last EEG sample of the input.
    ready : float
        ``clock()`` when the prediction was computed (the same clock as the stream's timestamps).
    compute_s : float
        Seconds spent on the spectrogram row and the network for this volume.
    """

    index: int
    volume: np.ndarray
    input_end: float
    ready: float
    compute_s: float

    @property
    def latency(self) -> float:
        """Seconds from the volume's trigger (or the end of its input EEG) to the prediction."""
        return self.ready - self.input_end


@dataclass
class StreamEvent:
    """Something about the stream worth reporting: ``kind`` is ``drop``, ``restart``, ``stall``, ``resume``,
    ``trigger-filled``, ``trigger-gap``, ``trigger-duplicate``, ``window-invalid`` or ``clock``."""

    kind: str
    message: str
    time: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "time": round(float(self.time), 6)}


class _Buffer:
    """The last samples of the stream, addressed by their sample index since the session (or restart) began."""

    def __init__(self, n_channels: int, keep: int):
        self.keep = int(keep)
        self.data = np.zeros((n_channels, 2 * self.keep), dtype=np.float64)  # [C, capacity]
        self.ts = np.zeros(2 * self.keep, dtype=np.float64)
        self.first = 0  # sample index of column 0
        self.n = 0  # samples received (index of the next sample)

    def append(self, block: np.ndarray, ts: np.ndarray) -> None:
        """Append ``block[C, n]`` with timestamps ``ts[n]`` (keeps at least the last ``keep`` samples)."""
        n = block.shape[1]
        if n > self.keep:  # only the tail can ever be read
            self.first = self.n + n - self.keep
            self.data[:, :self.keep] = block[:, -self.keep:]
            self.ts[:self.keep] = ts[-self.keep:]
            self.n += n
            return
        used = self.n - self.first
        if used + n > self.data.shape[1]:  # drop the oldest samples beyond `keep`
            drop = used + n - self.keep
            self.data[:, :used - drop] = self.data[:, drop:used]
            self.ts[:used - drop] = self.ts[drop:used]
            self.first += drop
            used -= drop
        self.data[:, used:used + n] = block
        self.ts[used:used + n] = ts
        self.n += n

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start:stop`` as ``[C, stop - start]``; NaN where they are no longer kept."""
        out = np.full((self.data.shape[0], stop - start), np.nan)
        a, b = max(start, self.first), min(stop, self.n)
        if b > a:
            out[:, a - start:b - start] = self.data[:, a - self.first:b - self.first]
        return out

    def index_of(self, t: float) -> int | None:
        """Sample index whose timestamp is nearest ``t`` (``None`` when older than the kept samples)."""
        ts = self.ts[:self.n - self.first]
        if ts.size == 0 or t < ts[0] - 0.5 * (ts[1] - ts[0] if ts.size > 1 else 0.0):
            return None
        j = int(np.searchsorted(ts, t))
        if j >= ts.size:
            return self.first + ts.size - 1
        if j > 0 and abs(ts[j - 1] - t) <= abs(ts[j] - t):
            j -= 1
        return self.first + j

    def time_of(self, index: int) -> float | None:
        """Timestamp of sample ``index`` if kept."""
        if self.first <= index < self.n:
            return float(self.ts[index - self.first])
        return None

    @property
    def last_time(self) -> float | None:
        return float(self.ts[self.n - self.first - 1]) if self.n > self.first else None


class RealtimePredictor:
    """Turn a live EEG stream and its volume triggers into predicted volumes.

    Parameters
    ----------
    ckpt : Checkpoint
        The model (:func:`spec2vol_bids.train.checkpoint.load_checkpoint`).
    settings : StreamSettings
        From :func:`stream_settings`.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    volume_clock : {"markers", "tr"}
        ``"markers"``: volumes start at the triggers given to :meth:`add_trigger` (or found on a trigger channel).
        ``"tr"``: no triggers exist; volume ``k`` starts ``k * TR`` after the first sample (the BIDS-App's TR
        fallback, with its warning).
    trigger_channel : int, optional
        Stream channel index whose rising edges (0 to non-zero) are the volume triggers.
    min_gap_s : float
        Smallest timestamp gap reported as dropped samples (a real amplifier's timestamps jitter).
    max_fill_s : float
        Longest gap filled with NaN; a longer one restarts the engine.
    clock : callable
        The stream's clock (``mne_lsl.lsl.local_clock`` for LSL); default ``time.perf_counter``.
    scan_backend : str, optional
        Selective-scan backend of the model.
    keep_rows : bool
        Keep every spectrogram row in :attr:`rows` (volume index -> ``[C, F]``; for tests and inspection).
    """

    def __init__(self, ckpt, settings: StreamSettings, *, device: str = "cpu", volume_clock: str = "markers",
                 trigger_channel: int | None = None, min_gap_s: float = 0.02, max_fill_s: float = 60.0,
                 clock: Callable[[], float] | None = None, scan_backend: str | None = None,
                 keep_rows: bool = False):
        from ..preproc.eeg import window_samples

        if volume_clock not in ("markers", "tr"):
            raise UsageError(f"unknown volume clock {volume_clock!r}", hint="use markers or tr")
        self.ckpt = ckpt
        self.settings = settings
        self.device = device
        self.scan_backend = scan_backend
        self.volume_clock = volume_clock
        self.trigger_channel = trigger_channel
        self.min_gap_s = float(min_gap_s)
        self.max_fill_s = float(max_fill_s)
        self.clock = clock or time.perf_counter
        s = settings
        _, self._n_total = window_samples(s.sfreq, s.repetition_time, s.config.eeg.window_length,
                                          s.config.eeg.overlap)
        # samples kept: the longest window, plus 30 s for triggers that arrive late
        self._keep = int(self._n_total + 30 * s.sfreq)
        self.events: list[StreamEvent] = []
        self.rows: dict[int, np.ndarray] | None = {} if keep_rows else None
        self.onsets: dict[int, float] = {}  # every volume onset placed (s from the first sample of its segment)
        self.n_triggers = 0
        self._next_volume = 0  # the next volume index (a restart continues the count)
        self._segment_offset = 0  # the first volume index of the current segment (the TR clock counts from it)
        self._reset()

    # ------------------------------------------------------------------------------------------------ state
    def _reset(self) -> None:
        s = self.settings
        self._buf = _Buffer(len(s.picks), self._keep)
        self._pending: list[float] = []  # trigger timestamps not yet placed on the sample axis
        self._onsets: dict[int, float] = {}  # volume index -> onset (s from sample 0)
        self._last_onset: tuple[int, float] | None = None
        self._intervals: list[float] = []
        self._waiting: list[int] = []  # volumes whose row is not computed yet
        self._candidates: set[int] = set()  # volumes whose input may be complete
        self._rows: dict[int, np.ndarray | None] = {}  # volume -> [C, F] float32, None = invalid
        self._row_time: dict[int, float] = {}
        self._trig_prev = 0.0

    def report(self, kind: str, message: str) -> None:
        """Record (and log) a :class:`StreamEvent`."""
        ev = StreamEvent(kind, message, self.clock())
        self.events.append(ev)
        (LOGGER.info if kind in ("resume", "clock") else LOGGER.warning)("%s", message)

    @property
    def n_samples(self) -> int:
        """Samples received since the session (or the last restart) began."""
        return self._buf.n

    # ------------------------------------------------------------------------------------------------ input
    def add_samples(self, data, timestamps) -> list[Prediction]:
        """Add a chunk of the stream: ``data[n, n_stream_channels]`` (LSL layout) with ``timestamps[n]``.

        Returns the predictions that became possible.
        """
        data = np.asarray(data, dtype=np.float64)
        ts = np.asarray(timestamps, dtype=np.float64)
        if data.ndim != 2 or ts.shape != (data.shape[0],):
            raise UsageError(f"samples must be [n, channels] with n timestamps, got {data.shape} and {ts.shape}")
        if ts.size == 0:
            return []
        s = self.settings
        period = 1.0 / s.sfreq
        last = self._buf.last_time
        if last is not None:
            step = ts[0] - last
            if step < -0.5 * period:
                self.report("restart", f"the stream's timestamps went back {-step:.3f} s: it restarted; starting "
                                       f"over (the next prediction needs {s.n_windows} new windows of EEG)")
                self._restart()
            elif step > max(GAP_SAMPLES * period, self.min_gap_s):
                missing = int(round(step * s.sfreq)) - 1
                if step > self.max_fill_s:
                    self.report("restart", f"no EEG for {step:.1f} s (more than {self.max_fill_s:g} s): starting "
                                           "over")
                    self._restart()
                elif missing > 0:
                    self.report("drop", f"the stream dropped {missing} sample(s) ({missing * period:.3f} s) before "
                                        f"t = {ts[0]:.3f}; the windows that include them are skipped")
                    fill_ts = last + period * np.arange(1, missing + 1)
                    self._append(np.full((missing, data.shape[1]), np.nan), fill_ts)
        self._append(data, ts)
        return self._advance()

    def _restart(self) -> None:
        self._segment_offset = self._next_volume
        self._reset()

    def _append(self, data: np.ndarray, ts: np.ndarray) -> None:
        s = self.settings
        first = self._buf.n
        if self.trigger_channel is not None:
            trig = data[:, self.trigger_channel]
            prev = np.concatenate([[self._trig_prev], trig[:-1]])
            for j in np.flatnonzero((np.nan_to_num(prev) == 0) & (np.nan_to_num(trig) != 0)):
                self._place_trigger(first + int(j))
            if trig.size:
                self._trig_prev = float(np.nan_to_num(trig[-1]))
        self._buf.append(data[:, s.picks].T, ts)
        if self.volume_clock == "tr":
            while True:
                k = self._next_volume - self._segment_offset
                onset = k * s.repetition_time
                if int(np.rint(onset * s.sfreq)) >= self._buf.n:
                    break
                if k == 0 and self._next_volume == 0:
                    self.report("clock", "no volume triggers: ASSUMING THE FIRST RECEIVED SAMPLE IS THE FIRST "
                                         f"VOLUME and volumes every {s.repetition_time:g} s (TR clock)")
                self._new_volume(self._next_volume, onset)

    def add_trigger(self, timestamp: float) -> list[Prediction]:
        """A volume trigger (e.g. an ``R128`` marker) at stream time ``timestamp``; returns new predictions."""
        self._pending.append(float(timestamp))
        self._pending.sort()
        return self._advance()

    # ------------------------------------------------------------------------------------------------ logic
    def _place_trigger(self, index: int) -> None:
        """A trigger at sample ``index``: give it a volume number (the BIDS-App's gap policy)."""
        from ..bids.eeg import GAP_FACTOR, fill_missing_triggers

        s = self.settings
        self.n_triggers += 1
        onset = index / s.sfreq
        if self._last_onset is None:
            self._new_volume(self._next_volume, onset)
            return
        prev_volume, prev = self._last_onset
        interval = onset - prev
        spacing = float(np.median(self._intervals)) if len(self._intervals) > 1 else s.repetition_time
        if interval < DUPLICATE_FRACTION * spacing:
            self.report("trigger-duplicate", f"a volume trigger {interval:.3f} s after the previous one (spacing "
                                             f"{spacing:.4g} s) is ignored")
            return
        if interval > GAP_FACTOR * spacing:
            steps = interval / spacing
            where = (f"after volume {prev_volume} (triggers {interval:.3f} s apart = {steps:.2f} x the spacing of "
                     f"{spacing:.4g} s)")
            try:  # the BIDS-App's policy: one missing trigger is filled at the midpoint, a longer gap is refused
                filled_onsets, _, _ = fill_missing_triggers(
                    np.array([prev, onset]), n_volumes=2 ** 31, repetition_time=spacing, label="stream")
            except DataError:
                n_skip = max(1, int(round(steps)) - 1)
                self.report("trigger-gap", f"{n_skip} consecutive volume triggers are missing {where}; the volume "
                                           f"count resumes at volume {prev_volume + n_skip + 1} and the predictions "
                                           "that need the missing volumes are skipped")
                self._next_volume = prev_volume + n_skip + 1
                self._new_volume(self._next_volume, onset)
                return
            for extra in filled_onsets[1:-1]:
                self.report("trigger-filled", f"the trigger of volume {self._next_volume} is missing {where}; its "
                                              f"onset is filled at {extra:.3f} s (midpoint), as the BIDS-App does")
                self._new_volume(self._next_volume, float(extra))
            self._new_volume(self._next_volume, onset)
            return
        self._intervals.append(interval)
        self._new_volume(self._next_volume, onset)

    def _new_volume(self, k: int, onset: float) -> None:
        self._onsets[k] = onset
        self.onsets[k] = onset
        self._last_onset = (k, onset)
        self._waiting.append(k)
        self._next_volume = k + 1

    def _advance(self) -> list[Prediction]:
        last = self._buf.last_time
        while self._pending and last is not None and self._pending[0] <= last + 0.5 / self.settings.sfreq:
            t = self._pending.pop(0)
            index = self._buf.index_of(t)
            if index is None:
                self.report("trigger-gap", f"a volume trigger at t = {t:.3f} s is older than the kept EEG; ignored")
                continue
            self._place_trigger(index)
        for k in sorted(self._waiting):
            if self._try_row(k):
                self._waiting.remove(k)
                self._candidates.add(k + self.settings.lag + 1)
        out = []
        for t in sorted(self._candidates):
            if t not in self._onsets:
                if t < self._next_volume:  # a volume skipped by a trigger gap
                    self._candidates.discard(t)
                    continue
                if self.volume_clock == "markers":
                    continue  # wait for the volume's trigger: the scanner may have stopped
            self._candidates.discard(t)
            pred = self._try_predict(t)
            if pred is not None:
                out.append(pred)
        return out

    def _try_row(self, k: int) -> bool:
        """Compute the spectrogram row of volume ``k`` if its window is complete; returns whether it is done."""
        from ..preproc.eeg import spectrogram_from_reader, window_bounds

        s = self.settings
        onset = self._onsets[k]
        core, _ = s.config.eeg.window_seconds(s.repetition_time)
        starts, stops, _ = window_bounds([onset], s.sfreq, self._buf.n, core, overlap=s.config.eeg.overlap)
        start, stop = int(starts[0]), int(stops[0])
        if stop > self._buf.n:
            return False
        t0 = time.perf_counter()
        if start < 0 or start < self._buf.first:
            self._rows[k] = None
            self.report("window-invalid", f"the EEG window of volume {k} starts before the kept EEG; skipped")
            return True
        try:
            spec, _, _ = spectrogram_from_reader(self._buf.read, [onset], s.sfreq, self._buf.n, s.config.eeg,
                                                 tr=s.repetition_time, channel_names=s.channels)
        except DataError as err:
            self._rows[k] = None
            self.report("window-invalid", f"volume {k}: {err.message}; its window is skipped")
            return True
        self._rows[k] = spec[0]  # [C, F] float32
        if self.rows is not None:
            self.rows[k] = spec[0]
        end = self._buf.time_of(stop - 1)
        self._row_time[k] = (end + 1.0 / s.sfreq) if end is not None else self.clock()
        self._row_compute = time.perf_counter() - t0
        return True

    def _try_predict(self, t: int) -> Prediction | None:
        from ..train.predict import predict_windows

        s = self.settings
        if t < s.discard + s.n_windows + s.lag:
            return None
        rows = range(t - s.lag - s.n_windows, t - s.lag)
        if any(self._rows.get(r) is None for r in rows):
            return None
        t0 = time.perf_counter()
        x = np.stack([self._rows[r] for r in rows])[None]  # [1, n_windows, C, F]
        pred = predict_windows(self.ckpt, x, device=self.device, batch_size=1, progress=False,
                               scan_backend=self.scan_backend)
        volume = np.asarray(pred[0], dtype=np.float32).transpose(1, 2, 0)  # [D, X, Y] -> [X, Y, D]
        compute = time.perf_counter() - t0 + getattr(self, "_row_compute", 0.0)
        for r in [r for r in self._rows if r < t - s.lag - s.n_windows]:  # rows no longer needed
            del self._rows[r]
            self._row_time.pop(r, None)
        end = self._row_time[t - s.lag - 1]
        if t in self._onsets:  # the volume's own trigger (on the stream clock), when it has come
            end = self._buf.time_of(int(np.rint(self._onsets[t] * s.sfreq))) or end
        return Prediction(index=t, volume=volume, input_end=end, ready=self.clock(), compute_s=compute)


@dataclass
class RealtimeSession:
    """The outputs of a live run: the growing 4-D NIfTI, its sidecar, and any number of sinks.

    Parameters
    ----------
    out_file : path-like or None
        ``..._desc-spec2vol_bold.nii`` (uncompressed, valid after every volume); ``None``: no file.
    ckpt : Checkpoint
    settings : StreamSettings
    sinks : list of callables ``sink(prediction)``
        Called after the volume is on disk (e.g. the LSL outlet, a viewer).
    info : dict
        Extra sidecar fields (stream names, volume clock).
    """

    out_file: str | Path | None
    ckpt: Any
    settings: StreamSettings
    sinks: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    device: str = "cpu"

    def __post_init__(self):
        from ..io.nifti import IncrementalNifti
        from ..utils import sha256_file

        ckpt_path = getattr(self.ckpt, "path", None)
        self._sha256 = sha256_file(ckpt_path) if ckpt_path else None  # once: the file may be hundreds of MB
        self.indices: list[int] = []
        self.latencies: list[float] = []
        self.compute: list[float] = []
        self._writer = None
        if self.out_file is not None:
            self.out_file = Path(self.out_file)
            self.out_file.parent.mkdir(parents=True, exist_ok=True)
            grid = self.ckpt["grid"]
            self._writer = IncrementalNifti(self.out_file, np.asarray(grid["affine"], dtype=float),
                                            tuple(int(v) for v in grid["shape"]),
                                            repetition_time=self.settings.repetition_time)

    def sidecar(self, events: Sequence[StreamEvent] = ()) -> dict[str, Any]:
        from ..io.derivatives import PREDICTION

        return PREDICTION.sidecar({
            "RepetitionTime": self.settings.repetition_time,
            "VolumeIndices": [int(i) for i in self.indices],
            "ModelName": str(self.ckpt["model"]["name"]),
            "ModelSHA256": self._sha256,
            "Device": self.device,
            "Realtime": {**self.info, "LatencySeconds": [round(v, 6) for v in self.latencies],
                         "ComputeSeconds": [round(v, 6) for v in self.compute],
                         "StreamEvents": [e.as_dict() for e in events]},
        }, description="BOLD volumes predicted in real time from a live EEG stream by spec2vol-bids; volume i "
                       "of the file is BOLD volume VolumeIndices[i] counted from the session's first trigger")

    def write(self, pred: Prediction, events: Sequence[StreamEvent] = ()) -> None:
        """Append one prediction to the file (then its sidecar), then hand it to the sinks."""
        self.indices.append(int(pred.index))
        self.latencies.append(float(pred.latency))
        self.compute.append(float(pred.compute_s))
        if self._writer is not None:
            self._writer.append(pred.volume, sidecar=self.sidecar(events))
        for sink in self.sinks:
            sink(pred)

    def close(self, events: Sequence[StreamEvent] = ()) -> None:
        """Final sidecar (every event) and close the file."""
        if self._writer is not None:
            from ..io.names import sidecar_path
            from ..utils import write_json

            write_json(sidecar_path(self.out_file), self.sidecar(events))
            self._writer.close()

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies, dtype=float)
        return {"volumes": len(self.indices),
                "latency_median_s": float(np.median(lat)) if lat.size else None,
                "latency_p99_s": float(np.percentile(lat, 99)) if lat.size else None}
