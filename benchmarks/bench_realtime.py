"""Real-time latency: from a volume's trigger to its prediction, for the tiny and paper presets.

Each preset is the default model (``spec2vol-lowrank``) with random weights on the preset's data shape: ``tiny``
16 channels, 8 slices; ``paper`` the published encoder/decoder sizes with 64 channels (NODDI: 63 EEG + ECG) and
30 slices. EEG at 250 Hz, TR 2 s, the official pairing (20 windows) without discarded volumes.

Two measurements:

* ``lsl`` (default; needs mne-lsl): the whole loop on this machine. A pusher streams synthetic EEG and ``R128``
  markers over LSL in real time (each marker with its sample's timestamp); ``spec2vol_bids.pipeline.lsl.run_realtime``
  (the command's loop) predicts; a consumer reads the predictions from the outlet. Latency = LSL time at which the
  consumer holds the volume minus the volume trigger's timestamp (the sample the outlet carries). A real stream adds
  its own transport delay (the amplifier's chunking). The pusher runs in the same process: on a starved machine it
  falls behind its schedule (``pusher_late_p99_ms``) and every latency includes that delay.
* ``synthetic`` (``--synthetic``; only torch, numpy and scipy: no LSL, nibabel or MNE): the same engine
  (:class:`~spec2vol_bids.pipeline.realtime.RealtimePredictor`) fed the synthetic stream as fast as it takes it.
  Latency = wall time of the call that delivers the sample completing a volume's input, i.e. the spectrogram row
  and the network (on ``--device cuda`` including the host-device copies); ``cpu_*_ms`` is the process's CPU time
  for the same calls, which a busy machine does not inflate. For a lent GPU::

      python -m benchmarks.bench_realtime --synthetic --device cuda

Target (issue 18): p99 under one TR (2 s) for the paper preset on 2 CPU cores.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from benchmarks.common import bench_parser, write_results

SFREQ = 250.0
TR = 2.0
#: model input shapes of each preset: (channels, slices)
SHAPES = {"tiny": (16, 8), "paper": (64, 30)}


def make_checkpoint(preset: str, *, seed: int = 0):
    """An in-memory checkpoint of the default model for ``preset``, with random weights."""
    import torch

    from spec2vol_bids.config import PreprocConfig
    from spec2vol_bids.model.registry import build_model
    from spec2vol_bids.preproc.eeg import frequency_axis
    from spec2vol_bids.train.checkpoint import Checkpoint, payload_sha256

    n_ch, n_slices = SHAPES[preset]
    torch.manual_seed(seed)
    model = build_model("spec2vol-lowrank", preset=preset, n_windows=20, n_electrodes=n_ch, n_freqs=249,
                        n_slices=n_slices, grid=64)
    cfg = PreprocConfig.from_dict({"pairing": {"discard_volumes": 0}})
    ckpt = Checkpoint({
        "format": "spec2vol-bids-checkpoint", "format_version": 1,
        "model": {"name": "spec2vol-lowrank", "kwargs": dict(model.config)},
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "preprocessing": cfg.to_dict(), "channels": [f"E{i:02d}" for i in range(n_ch)],
        "frequencies": [float(f) for f in frequency_axis(int(SFREQ * TR), SFREQ, cfg.eeg)],
        "grid": {"shape": [64, 64, n_slices], "affine": np.eye(4).tolist()},
        "scaling": {"method": "none"}, "acquisition": {"sfreq": SFREQ, "repetition_time": TR},
    })
    ckpt["sha256"] = payload_sha256(ckpt)
    return ckpt


def synthetic_eeg(n_ch: int, n_samples: int, seed: int = 1) -> np.ndarray:
    """Random EEG-like samples ``[n, C]`` (volts)."""
    rng = np.random.default_rng(seed)
    return (1e-5 * rng.standard_normal((n_samples, n_ch))).astype(np.float32)


def _stats(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"n": int(v.size), "median_ms": 1e3 * float(np.median(v)), "p99_ms": 1e3 * float(np.percentile(v, 99)),
            "max_ms": 1e3 * float(v.max()), "p99_over_tr": float(np.percentile(v, 99)) / TR}


def run_synthetic(preset: str, *, n_volumes: int, device: str = "cpu", warmup: int = 3, chunk: int = 10) -> dict:
    """Feed the engine ``20 + warmup + n_volumes`` TRs of synthetic EEG; the per-volume compute latency."""
    from spec2vol_bids.pipeline.realtime import RealtimePredictor, stream_settings

    ckpt = make_checkpoint(preset)
    n_ch, _ = SHAPES[preset]
    settings = stream_settings(ckpt, channels=ckpt["channels"], sfreq=SFREQ)
    engine = RealtimePredictor(ckpt, settings, device=device)
    per_tr = int(SFREQ * TR)
    total_vols = 20 + warmup + n_volumes + 1
    lead = 100  # samples before the first trigger
    data = synthetic_eeg(n_ch, lead + total_vols * per_tr)
    ts = np.arange(len(data)) / SFREQ
    marks = lead + per_tr * np.arange(total_vols)
    lat, cpu, mi = [], [], 0
    for i in range(0, len(data), chunk):
        while mi < len(marks) and marks[mi] < i + chunk:
            engine.add_trigger(ts[marks[mi]])  # markers arrive with (here: just before) their samples
            mi += 1
        t0, c0 = time.perf_counter(), time.process_time()
        preds = engine.add_samples(data[i:i + chunk], ts[i:i + chunk])
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if preds:
            lat.append(dt)
            cpu.append(dc)
    lat, cpu = lat[warmup:], cpu[warmup:]
    if len(lat) < n_volumes:
        raise RuntimeError(f"{preset}: only {len(lat)} predictions")
    # CPU time of the process for the same calls: what the computation costs, whatever else the machine runs (with
    # one torch thread on a CPU it is the wall time an idle machine would give; on a GPU it is the host's share)
    c = np.asarray(cpu[:n_volumes])
    return {"preset": preset, "mode": "synthetic", "device": device, **_stats(lat[:n_volumes]),
            "cpu_median_ms": 1e3 * float(np.median(c)), "cpu_p99_ms": 1e3 * float(np.percentile(c, 99))}


def run_lsl(preset: str, *, n_volumes: int, warmup: int = 2) -> dict:
    """The command's loop over LSL in real time; latency measured by a consumer of the outlet."""
    import uuid

    from mne_lsl import lsl

    from spec2vol_bids.pipeline.lsl import run_realtime

    ckpt = make_checkpoint(preset)
    n_ch, _ = SHAPES[preset]
    name = f"bench-rt-{uuid.uuid4().hex[:8]}"
    per_tr = int(SFREQ * TR)
    total_vols = 20 + warmup + n_volumes + 1
    data = synthetic_eeg(n_ch, 100 + total_vols * per_tr)
    marks = 100 + per_tr * np.arange(total_vols)
    info = lsl.StreamInfo(name, "eeg", n_ch, SFREQ, "float32", f"{name}-src")
    info.set_channel_names(list(ckpt["channels"]))
    outlet = lsl.StreamOutlet(info, chunk_size=10)
    minfo = lsl.StreamInfo(f"{name}-markers", "markers", 1, 0.0, "string", f"{name}-msrc")
    moutlet = lsl.StreamOutlet(minfo, chunk_size=1)
    received: list[tuple[float, float]] = []
    late: list[float] = []  # how late the pusher pushed each chunk: a starved process inflates every latency
    stop = threading.Event()

    def push():
        outlet.wait_for_consumers(60)
        moutlet.wait_for_consumers(60)
        t0 = lsl.local_clock()
        mi = 0
        for i in range(0, len(data), 10):  # 10-sample chunks at the real pace (40 ms)
            due = t0 + (i + 10) / SFREQ
            while lsl.local_clock() < due:
                time.sleep(0.001)
            late.append(lsl.local_clock() - due)
            chunk = data[i:i + 10]
            outlet.push_chunk(np.ascontiguousarray(chunk), timestamp=t0 + (i + np.arange(len(chunk)) + 1) / SFREQ)
            while mi < len(marks) and marks[mi] < i + 10:
                moutlet.push_sample(["R128"], timestamp=t0 + (marks[mi] + 1) / SFREQ)
                mi += 1
            if stop.is_set():
                return

    def consume():
        infos = lsl.resolve_streams(timeout=60, name=f"{name}-out", minimum=1)
        inlet = lsl.StreamInlet(infos[0])
        inlet.open_stream(timeout=30)
        while not stop.is_set():
            x, ts = inlet.pull_chunk(timeout=0.2)
            now = lsl.local_clock()
            received.extend((now, float(t)) for t in np.array(ts, copy=True))

    threads = [threading.Thread(target=push, daemon=True), threading.Thread(target=consume, daemon=True)]
    for t in threads:
        t.start()
    try:
        result = run_realtime(ckpt, stream=name, marker_stream=f"{name}-markers", outlet=f"{name}-out",
                              connect_timeout=30, max_volumes=warmup + n_volumes, idle_timeout=10,
                              duration=TR * total_vols + 60)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    lat = [now - ts for now, ts in received][warmup:]
    return {"preset": preset, "mode": "lsl", "device": "cpu", **_stats(lat),
            "engine_median_ms": 1e3 * (result["latency_median_s"] or float("nan")),
            "pusher_late_p99_ms": 1e3 * float(np.percentile(late, 99)) if late else None,
            "stream_events": len(result["events"])}


def main(quick: bool = False, synthetic: bool = False, device: str = "cpu", presets=("tiny", "paper")) -> dict:
    import torch

    n = {"tiny": 10 if quick else 100, "paper": 5 if quick else 40}
    records = []
    for preset in presets:
        if synthetic:
            rec = run_synthetic(preset, n_volumes=n[preset], device=device)
        else:
            rec = run_lsl(preset, n_volumes=min(n[preset], 5 if quick else 30))
        records.append(rec)
        print(f"{preset:6s} {rec['mode']:9s} {rec['device']:5s} median {rec['median_ms']:8.1f} ms  p99 "
              f"{rec['p99_ms']:8.1f} ms  ({100 * rec['p99_over_tr']:.1f} % of the TR, n = {rec['n']})", flush=True)
    meta = {"quick": quick, "mode": "synthetic" if synthetic else "lsl", "device": device, "sfreq": SFREQ, "tr": TR,
            "model": "spec2vol-lowrank", "shapes": {k: {"channels": v[0], "slices": v[1]} for k, v in SHAPES.items()},
            "torch_threads": torch.get_num_threads(),
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "target": "p99 < 1 TR for the paper preset"}
    paper = [r for r in records if r["preset"] == "paper"]
    if paper:
        meta["meets_target"] = bool(paper[0]["p99_over_tr"] < 1.0)
    name = "realtime" if not synthetic else f"realtime_synthetic_{device}"
    meta["load_average_1min_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    columns = ["preset", "mode", "device", "n", "median_ms", "p99_ms", "max_ms", "p99_over_tr", "cpu_median_ms",
               "cpu_p99_ms", "engine_median_ms", "pusher_late_p99_ms"]
    write_results(name, records, meta, columns, title=f"Real-time latency, trigger to prediction ({meta['mode']}, "
                  f"{device})", notes=__doc__)
    return {"records": records, "meta": meta}


if __name__ == "__main__":
    parser = bench_parser(__doc__)
    parser.add_argument("--synthetic", action="store_true",
                        help="no LSL: the engine fed synthetic EEG as fast as it goes (torch + numpy + scipy only)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (with --synthetic)")
    parser.add_argument("--presets", nargs="+", default=["tiny", "paper"], choices=sorted(SHAPES))
    args = parser.parse_args()
    if args.device != "cpu" and not args.synthetic:
        parser.error("--device other than cpu needs --synthetic")
    main(quick=args.quick, synthetic=args.synthetic, device=args.device, presets=tuple(args.presets))
