"""The real-time mode over Lab Streaming Layer, on this machine only (loopback), every wait bounded.

* ``spec2vol_bids replay`` (mne-lsl PlayerLSL, real time) into ``spec2vol_bids realtime``: the predictions on the
  outlet and in the file equal the BIDS-App's for the same run and checkpoint (the short-pairing checkpoint, so
  that the first predictions come after 14 s of replay).
* A fast pusher (the recording with its true timestamps, pushed faster than real time) streams the whole 40-volume
  run through the command with the default pairing, then stalls: every volume equals the BIDS-App's, the stall is
  reported.
* Streams that do not fit the checkpoint end with exit code 65 and one line.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _liblsl_reason() -> str | None:
    try:
        from mne_lsl import lsl

        lsl.local_clock()
    except Exception as err:  # noqa: BLE001 - ImportError, OSError (liblsl), RuntimeError
        return f"mne-lsl / liblsl cannot run here ({type(err).__name__}: {err}); install the realtime extra"
    return None


_REASON = _liblsl_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

from mne_lsl import lsl  # noqa: E402


def _name(tag: str) -> str:
    return f"s2v-test-{tag}-{uuid.uuid4().hex[:8]}"  # unique: parallel test runs never see each other's streams


def _pusher(name, data, sf, names, marks, *, speed=8.0, stop_at=None, dtype="float32"):
    """Push ``data [n, C]`` as stream ``name`` (and string markers ``R128`` on ``name-markers``) ``speed`` times
    faster than real time, each sample with the timestamp it would have had in real time, each marker with its
    sample's. Stops pushing (stays connected) after sample ``stop_at``."""
    info = lsl.StreamInfo(name, "eeg", len(names), sf, dtype, f"{name}-src")
    info.set_channel_names(names)
    outlet = lsl.StreamOutlet(info, chunk_size=25)
    minfo = lsl.StreamInfo(f"{name}-markers", "markers", 1, 0.0, "string", f"{name}-msrc")
    moutlet = lsl.StreamOutlet(minfo, chunk_size=1)
    # start once the receiver listens to both streams (an inlet sees only what is pushed after it connects)
    assert outlet.wait_for_consumers(120) and moutlet.wait_for_consumers(120)
    t0 = lsl.local_clock() + 0.5
    stop_at = len(data) if stop_at is None else stop_at
    mi = 0
    for i in range(0, stop_at, 25):
        chunk = np.ascontiguousarray(data[i:min(i + 25, stop_at)], dtype=np.float32)
        ts = t0 + (i + np.arange(len(chunk))) / sf
        while mi < len(marks) and marks[mi] < i + len(chunk):
            moutlet.push_sample([f"Response/R{128}"], timestamp=t0 + marks[mi] / sf)
            mi += 1
        outlet.push_chunk(chunk, timestamp=ts)
        time.sleep(len(chunk) / sf / speed)
    return outlet, moutlet


def test_fast_stream_through_the_command_equals_offline_then_stall_is_reported(offline_default, recording, tmp_path,
                                                                               capsys):
    from spec2vol_bids.pipeline.lsl import run_realtime
    from spec2vol_bids.train.checkpoint import load_checkpoint

    data, sf, names, marks = recording
    name = _name("fast")
    holder = {}
    thread = threading.Thread(target=lambda: holder.update(
        outlets=_pusher(name, data, sf, names, marks, speed=10.0)), daemon=True)
    thread.start()
    received = []

    def consume():  # a neurofeedback display: reads the predictions from the outlet
        infos = lsl.resolve_streams(timeout=120, name=f"{name}-out", minimum=1)
        inlet = lsl.StreamInlet(infos[0])
        inlet.open_stream(timeout=10)
        end = time.monotonic() + 240
        while time.monotonic() < end and len(received) < 14:
            x, ts = inlet.pull_chunk(timeout=0.5)
            received.extend(np.array(x, copy=True))

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    result = run_realtime(load_checkpoint(offline_default.checkpoint), stream=name, marker_stream=f"{name}-markers",
                          out_file=tmp_path / "rt_desc-spec2vol_bold.nii", outlet=f"{name}-out",
                          connect_timeout=60, stall_timeout=0.5, idle_timeout=1.5, duration=240)
    thread.join(5)
    reader.join(10)
    assert result["stopped_by"] == "idle", {k: result[k] for k in ("stopped_by", "volumes", "indices")}
    assert result["indices"] == offline_default.indices == list(range(26, 40))
    import nibabel as nib

    got = np.asarray(nib.load(tmp_path / "rt_desc-spec2vol_bold.nii").dataobj)
    np.testing.assert_allclose(got, offline_default.prediction, rtol=1e-5, atol=1e-5)
    side = json.loads((tmp_path / "rt_desc-spec2vol_bold.json").read_text())
    assert side["VolumeIndices"] == list(range(26, 40)) and side["RepetitionTime"] == 2.0
    kinds = [e["kind"] for e in side["Realtime"]["StreamEvents"]]
    assert "stall" in kinds, kinds  # the pusher stopped: reported before the session ended
    assert len(side["Realtime"]["LatencySeconds"]) == 14
    # the outlet carried one sample per volume: the volume in NIfTI (x-fastest) order
    assert len(received) == 14
    np.testing.assert_allclose(received[0], offline_default.prediction[..., 0].reshape(-1, order="F"), rtol=1e-5,
                               atol=1e-5)


def test_replay_command_into_realtime_command(offline_short, rt_bids, tmp_path, capsys):
    """The issue's loop on one machine: `replay` in real time, `realtime` reading it."""
    from spec2vol_bids.cli.main import main

    name = _name("replay")
    out = tmp_path / "rt"
    codes = {}

    def realtime():
        codes["rt"] = main(["realtime", "--model", str(offline_short.checkpoint), "--stream", name, "--marker-stream",
                            f"{name}-annotations", "--out", str(out), "--outlet", "none", "--max-volumes", "3",
                            "--connect-timeout", "30", "--duration", "45", "-q"])

    thread = threading.Thread(target=realtime, daemon=True)
    thread.start()
    time.sleep(1.0)  # the receiver waits for the stream; the replay starts after it (its first marker at 4.2 s)
    codes["replay"] = main(["replay", str(offline_short.eeg), "--name", name, "--chunk-size", "10", "--duration",
                            "20", "--no-progress", "-q"])
    thread.join(30)
    assert codes == {"rt": 0, "replay": 0}
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["volumes"] == 3 and summary["stopped_by"] == "max-volumes"
    assert np.isfinite(summary["latency_median_s"])  # measured (how fast is the benchmark's business, not a test's)
    import nibabel as nib

    img = nib.load(out / "sub-realtime_task-realtime_desc-spec2vol_bold.nii")
    side = json.loads((out / "sub-realtime_task-realtime_desc-spec2vol_bold.json").read_text())
    assert side["VolumeIndices"] == [5, 6, 7] and side["Realtime"]["MarkerStream"] == f"{name}-annotations"
    np.testing.assert_allclose(np.asarray(img.dataobj), offline_short.prediction[..., :3], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["channels", "sfreq"])
def test_stream_that_does_not_fit_the_checkpoint_exits_65(offline_short, recording, case, capsys):
    from spec2vol_bids.cli.main import main

    _, sf, names, _ = recording
    name = _name(case)
    if case == "channels":
        names = [n if n != "Pz" else "PZ-renamed" for n in names]
    info = lsl.StreamInfo(name, "eeg", len(names), 500.0 if case == "sfreq" else sf, "float32", f"{name}-src")
    info.set_channel_names(names)
    outlet = lsl.StreamOutlet(info)  # noqa: F841 - kept alive while the command connects
    code = main(["realtime", "--model", str(offline_short.checkpoint), "--stream", name, "--outlet", "none",
                 "--connect-timeout", "10"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 65
    last = err[-1]
    assert last.startswith("spec2vol_bids: error: ")
    assert ("lacks 1 of the model's 16 channels (Pz;" in last) if case == "channels" else (
        "samples at 500 Hz, the model was trained on EEG at 250 Hz" in last)


def test_missing_stream_exits_66(offline_short, capsys):
    from spec2vol_bids.cli.main import main

    code = main(["realtime", "--model", str(offline_short.checkpoint), "--stream", _name("absent"),
                 "--connect-timeout", "1"])
    assert code == 66
    assert "no LSL stream named" in capsys.readouterr().err


#: the command as a shell starts a background job: SIGINT ignored, which Python keeps (it installs no handler then)
_SIGINT_IGNORED = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                   "runpy.run_module('spec2vol_bids', run_name='__main__', alter_sys=True)")


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_ctrl_c_closes_the_outputs_with_every_predicted_volume(offline_short, recording, tmp_path, signame):
    """SIGINT (also to a process started with SIGINT ignored, as a background job) or SIGTERM (docker stop) to a
    running `spec2vol_bids realtime` process: exit 130, the file holds every volume predicted."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import nibabel as nib

    data, sf, names, marks = recording
    name = _name(signame.lower())
    out = tmp_path / "rt"
    root = Path(__file__).resolve().parents[2]
    start = ["-c", _SIGINT_IGNORED] if signame == "SIGINT" else ["-m", "spec2vol_bids"]
    proc = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", *start, "realtime", "--model", str(offline_short.checkpoint),
         "--stream", name, "--marker-stream", f"{name}-markers", "--out", str(out), "--outlet", "none",
         "--connect-timeout", "200", "--duration", "300"], env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        holder = {}
        thread = threading.Thread(target=lambda: holder.update(
            outlets=_pusher(name, data, sf, names, marks[:12], speed=4.0, stop_at=marks[12] + 10)), daemon=True)
        thread.start()
        sidecar = out / "sub-realtime_task-realtime_desc-spec2vol_bold.json"
        deadline = time.monotonic() + 240  # generous: a busy machine starts torch slowly
        while time.monotonic() < deadline and proc.poll() is None:  # until volume 7 is on disk
            if sidecar.is_file() and 7 in json.loads(sidecar.read_text() or "{}").get("VolumeIndices", []):
                break
            time.sleep(0.2)
        assert proc.poll() is None and sidecar.is_file(), "the realtime process predicted nothing"
        proc.send_signal(getattr(signal, signame))
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # where it hangs (faulthandler's dump)
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"no exit within 60 s of {signame}; the process's threads:\n{err[-6000:]}")
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    img = nib.load(out / "sub-realtime_task-realtime_desc-spec2vol_bold.nii")
    side = json.loads(sidecar.read_text())
    n = img.shape[3]
    assert side["VolumeIndices"] == list(range(5, 5 + n)) and n >= 3
    np.testing.assert_allclose(np.asarray(img.dataobj), offline_short.prediction[..., :n], rtol=1e-5, atol=1e-5)


def test_the_command_gives_the_signal_handlers_back():
    # in-process use (an application calling the CLI's main): SIGINT and SIGTERM are the session's only while it runs
    import signal

    from spec2vol_bids.cli.realtime import _interrupt_on_signals

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    sentinel = lambda signum, frame: None  # noqa: E731
    signal.signal(signal.SIGTERM, sentinel)
    try:
        with _interrupt_on_signals():
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
            with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
                signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is sentinel
    finally:
        signal.signal(signal.SIGTERM, before[1])
    assert signal.getsignal(signal.SIGINT) == before[0]
