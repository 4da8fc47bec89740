"""Lab Streaming Layer transport of the real-time mode, on ``mne-lsl`` (the ``realtime`` extra).

* :func:`run_realtime`: connect to an EEG stream (and a marker stream), feed :class:`~.realtime.RealtimePredictor`,
  write every prediction (:class:`~.realtime.RealtimeSession`) and push it on an LSL outlet; report stalls;
  return cleanly on Ctrl-C.
* :func:`replay`: stream a recording and its markers over LSL in real time (``mne_lsl.player.PlayerLSL``).

The EEG is read with ``mne_lsl.lsl.StreamInlet.pull_chunk`` rather than the ring buffer of
``mne_lsl.stream.StreamLSL``: the engine must see every sample exactly once, with its timestamp, to keep the
sample count that places the windows and to notice dropped samples.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NoInputError, UsageError
from ..utils import require_module

__all__ = ["connect", "open_outlet", "run_realtime", "replay", "ReplayPlayer"]

LOGGER = logging.getLogger("spec2vol_bids.realtime")


def _lsl():
    require_module("mne_lsl", extra="realtime", what="the real-time mode (Lab Streaming Layer)")
    from mne_lsl import lsl

    return lsl


def connect(name: str, *, timeout: float = 10.0, what: str = "EEG"):
    """Open an inlet on the LSL stream called ``name`` (waits up to ``timeout`` s); raises NoInputError."""
    lsl = _lsl()
    infos = lsl.resolve_streams(timeout=float(timeout), name=name, minimum=1)
    if not infos:
        raise NoInputError(f"no LSL stream named {name!r} ({what}) was found within {timeout:g} s",
                           hint="start the amplifier's LSL app (or `spec2vol_bids replay FILE --name NAME`) on this "
                                "network, and check the stream name (e.g. with `mne-lsl viewer`)")
    inlet = lsl.StreamInlet(infos[0], max_buffered=360, processing_flags=["clocksync"])
    inlet.open_stream(timeout=float(timeout))
    return inlet


def open_outlet(name: str, n_channels: int, *, channel_names: Sequence[str] | None = None, source_id: str = ""):
    """An irregular-rate float32 LSL outlet of ``n_channels`` (one sample per predicted volume)."""
    lsl = _lsl()
    info = lsl.StreamInfo(name=name, stype="fMRI", n_channels=int(n_channels), sfreq=0.0, dtype="float32",
                          source_id=source_id or f"spec2vol-bids-{name}")
    if channel_names is not None:
        info.set_channel_names(list(channel_names))
    return lsl.StreamOutlet(info, chunk_size=1)


def _marker_descriptions(inlet, samples) -> list[list[str]]:
    """Descriptions carried by each marker sample: a string channel, or the non-zero channels of a one-hot
    stream (``PlayerLSL``'s default encoding, one channel per description)."""
    if inlet.dtype == "string" or isinstance(samples, list):
        return [[str(v) for v in row] for row in samples]
    names = inlet.get_sinfo().get_channel_names() or [str(i) for i in range(inlet.n_channels)]
    arr = np.asarray(samples)
    return [[names[j] for j in np.flatnonzero(row)] for row in arr]


def roi_reducer(mask: np.ndarray) -> tuple[Callable[[np.ndarray], np.ndarray], list[str]]:
    """Mean of the volume in each label (> 0) of an integer ``mask[X, Y, Z]``: (function, channel names)."""
    labels = [int(v) for v in np.unique(mask) if v > 0]
    if not labels:
        raise UsageError("the ROI mask has no voxel above 0", hint="pass a mask or label image on the model grid")
    idx = [np.flatnonzero(mask.reshape(-1, order="F") == v) for v in labels]

    def reduce(volume: np.ndarray) -> np.ndarray:
        flat = volume.reshape(-1, order="F")
        return np.asarray([flat[i].mean() for i in idx], dtype=np.float32)

    return reduce, [f"roi-{v}" for v in labels]


def run_realtime(ckpt, *, stream: str, marker_stream: str | None = None, volume_marker: str | None = None,
                 trigger_channel: str | None = None, out_file: str | Path | None = None,
                 outlet: str | None = "spec2vol", roi_mask: np.ndarray | None = None,
                 repetition_time: float | None = None, device: str = "cpu", connect_timeout: float = 10.0,
                 stall_timeout: float | None = None, idle_timeout: float | None = None,
                 max_volumes: int | None = None, duration: float | None = None,
                 on_volume: Callable[[Any], None] | None = None, poll: float = 0.005,
                 info: dict | None = None) -> dict[str, Any]:
    """Predict every volume of a live EEG stream until it ends, a limit is reached, or Ctrl-C.

    Parameters
    ----------
    ckpt : Checkpoint
    stream : str
        Name of the EEG stream.
    marker_stream : str, optional
        Name of the marker stream carrying the volume triggers (``volume_marker``).
    volume_marker : str, optional
        The trigger's description (default ``R128``/``Response/R128``).
    trigger_channel : str, optional
        A channel of the EEG stream whose rising edges are the triggers. Without it and without
        ``marker_stream`` the volumes follow a TR clock from the first sample (with a warning).
    out_file : path, optional
        ``..._desc-spec2vol_bold.nii`` written after every volume.
    outlet : str or None
        Name of the LSL outlet of the predictions (``None``: none). One sample per volume: the flattened volume
        (x fastest, the NIfTI order) or, with ``roi_mask``, one mean per label.
    stall_timeout : float, optional
        Seconds without EEG reported as a stall (default: one TR, at least 1 s).
    idle_timeout : float, optional
        End the session after this many seconds without EEG (default: never).
    max_volumes, duration : optional
        Stop after this many predictions or seconds.
    on_volume : callable, optional
        Called with each :class:`~.realtime.Prediction` (after the file and the outlet).

    Returns
    -------
    dict
        ``volumes``, ``latency_median_s``, ``latency_p99_s``, ``events`` and ``stopped_by``.
    """
    from ..bids.eeg import is_volume_marker
    from .realtime import RealtimePredictor, RealtimeSession, stream_settings

    lsl = _lsl()
    inlet = connect(stream, timeout=connect_timeout)
    sinfo = inlet.get_sinfo()
    names = sinfo.get_channel_names() or [f"ch{i}" for i in range(inlet.n_channels)]
    settings = stream_settings(ckpt, channels=names, sfreq=float(inlet.sfreq), repetition_time=repetition_time,
                               stream=f"the LSL stream {stream!r}")
    trig_index = None
    if trigger_channel is not None:
        if trigger_channel not in names:
            raise UsageError(f"the LSL stream {stream!r} has no channel {trigger_channel!r}",
                             hint=f"its channels are {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}")
        trig_index = names.index(trigger_channel)
    minlet = connect(marker_stream, timeout=connect_timeout, what="markers") if marker_stream else None
    clock = "markers" if (minlet is not None or trig_index is not None) else "tr"
    engine = RealtimePredictor(ckpt, settings, device=device, volume_clock=clock, trigger_channel=trig_index,
                               clock=lsl.local_clock)
    sinks: list = []
    push = None
    if outlet:
        reduce, ch_names = (roi_reducer(roi_mask) if roi_mask is not None else (None, None))
        n_out = len(ch_names) if ch_names else int(np.prod(ckpt["grid"]["shape"]))
        out_lsl = open_outlet(outlet, n_out, channel_names=ch_names)

        def push(pred):
            vec = reduce(pred.volume) if reduce else pred.volume.reshape(-1, order="F")
            out_lsl.push_sample(np.ascontiguousarray(vec, dtype=np.float32), timestamp=pred.input_end)

        sinks.append(push)
    if on_volume is not None:
        sinks.append(on_volume)
    meta = {"Stream": stream, "MarkerStream": marker_stream, "TriggerChannel": trigger_channel,
            "VolumeClock": "trigger-channel" if trig_index is not None else clock, **(info or {})}
    session = RealtimeSession(out_file, ckpt, settings, sinks=sinks, info=meta, device=device)
    stall_after = stall_timeout if stall_timeout is not None else max(1.0, settings.repetition_time)
    LOGGER.info("connected to %s (%d channels at %g Hz, %d used); volume clock: %s; TR %g s", stream, len(names),
                inlet.sfreq, len(settings.picks), meta["VolumeClock"], settings.repetition_time)
    t_start = time.monotonic()
    last_data = time.monotonic()
    stalled = False
    stopped_by = "end"
    try:
        while True:
            got = False
            data, ts = inlet.pull_chunk(timeout=0.0, max_samples=4096)
            if minlet is not None:
                markers, mts = minlet.pull_chunk(timeout=0.0)
                if len(mts):
                    stamps = np.array(mts, dtype=float, copy=True)
                    for descs, t in zip(_marker_descriptions(minlet, markers), stamps):
                        if any(is_volume_marker(d, volume_marker) for d in descs):
                            for pred in engine.add_trigger(float(t)):
                                session.write(pred, engine.events)
            if len(ts):
                got = True
                # pull_chunk returns views of reused buffers: copy before keeping
                for pred in engine.add_samples(np.array(data, copy=True), np.array(ts, copy=True)):
                    session.write(pred, engine.events)
                    LOGGER.info("volume %d predicted, %.0f ms after its trigger", pred.index, 1e3 * pred.latency)
            now = time.monotonic()
            if got:
                if stalled:
                    engine.report("resume", f"the stream resumed after {now - last_data:.1f} s")
                    stalled = False
                last_data = now
            elif not stalled and engine.n_samples and now - last_data > stall_after:
                engine.report("stall", f"the stream {stream!r} stalled: no EEG for {now - last_data:.1f} s")
                stalled = True
            if max_volumes is not None and len(session.indices) >= max_volumes:
                stopped_by = "max-volumes"
                break
            if duration is not None and now - t_start > duration:
                stopped_by = "duration"
                break
            if idle_timeout is not None and now - last_data > idle_timeout:
                stopped_by = "idle"
                break
            if not got:
                time.sleep(poll)
    except KeyboardInterrupt:
        stopped_by = "interrupt"
        LOGGER.warning("interrupted: closing the outputs (%d volumes written)", len(session.indices))
    finally:
        session.close(engine.events)
        for inl in (inlet, minlet):
            if inl is not None:
                try:
                    inl.close_stream()
                except Exception:  # noqa: BLE001 - closing a broken connection
                    pass
    return {**session.summary(), "events": [e.as_dict() for e in engine.events], "stopped_by": stopped_by,
            "indices": list(session.indices)}


class ReplayPlayer:
    """``mne_lsl.player.PlayerLSL`` whose markers carry the timestamp of the sample they mark.

    PlayerLSL stamps a chunk's last sample with the current time, so sample ``i`` of a chunk pushed at
    ``start_ts`` gets ``start_ts + (i + 1) / sfreq``, but an annotation at that sample ``start_ts + i / sfreq``:
    one sample early. Markers are shifted by one sample period so that a receiver finds the marked sample by
    its timestamp, as with an amplifier whose LSL app stamps markers and samples on one clock.
    """

    def __new__(cls, raw, *, name: str, chunk_size: int = 10, n_repeat: int = 1):
        require_module("mne_lsl", extra="realtime", what="the replay tool (Lab Streaming Layer)")
        from mne_lsl.player import PlayerLSL

        class _Player(PlayerLSL):
            def _stream_annotations(self, start, stop, start_timestamp):
                return super()._stream_annotations(start, stop, start_timestamp + 1.0 / self.info["sfreq"])

        return _Player(raw, chunk_size=int(chunk_size), n_repeat=n_repeat, name=name,
                       annotations=len(raw.annotations) > 0, annotations_encoding="string")


def replay(eeg_file: str | Path, *, name: str = "spec2vol-replay", chunk_size: int = 10, n_repeat: int = 1,
           duration: float | None = None, channels: Sequence[str] | None = None,
           drop_markers: Sequence[int] = (), progress: bool = True) -> dict[str, Any]:
    """Stream an EEG recording (BrainVision, EDF, BDF, EEGLAB) and its markers over LSL in real time.

    The EEG stream is called ``name``, its markers (strings, e.g. ``Response/R128``) ``{name}-annotations``.
    Blocks until the recording has been played ``n_repeat`` times, ``duration`` seconds passed, or Ctrl-C.

    Parameters
    ----------
    drop_markers : sequence of int
        Indices of volume markers left out (to rehearse a missed trigger).
    """
    from ..bids.eeg import EEGRecording

    rec = EEGRecording(eeg_file)  # the BIDS-App's reader: the same errors for a missing or broken file
    raw = rec.raw.load_data(verbose="error")
    if channels:
        raw.pick(list(channels))
    if drop_markers:
        keep = np.ones(len(raw.annotations), bool)
        keep[[int(i) for i in drop_markers if 0 <= int(i) < keep.size]] = False
        raw.set_annotations(raw.annotations[np.flatnonzero(keep)])
    player = ReplayPlayer(raw, name=name, chunk_size=chunk_size, n_repeat=n_repeat)
    total = raw.n_times / raw.info["sfreq"] * n_repeat
    limit = min(total, duration) if duration else total
    LOGGER.info("replaying %s as LSL stream %r (%d channels at %g Hz, %.1f s, %d markers on %r)",
                Path(eeg_file).name, name, len(raw.ch_names), raw.info["sfreq"], total, len(raw.annotations),
                f"{name}-annotations")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=round(limit), desc=f"replay {name}", unit="s")
    stopped = "end"
    player.start()
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < limit + 0.5:
            time.sleep(0.2)
            if bar is not None:
                bar.n = min(round(limit), int(time.monotonic() - t0))
                bar.refresh()
    except KeyboardInterrupt:
        stopped = "interrupt"
    finally:
        player.stop()
        if bar is not None:
            bar.close()
    return {"seconds": time.monotonic() - t0, "stopped_by": stopped}
