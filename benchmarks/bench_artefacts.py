"""Benchmark of the artefact correction on a CN-EPFL-like run recorded in the scanner (64 channels, 5 kHz).

The EEG of one run of the ``cnepfl-like`` preset (63 EEG channels and an ECG at 5 kHz, TR 1.28 s, 64 slices, so
slice triggers every 20 ms) is simulated with the MR gradient and pulse artefacts and written as BrainVision
(float32), without the BOLD (not needed here). Then, each in a fresh process:

* ``read``: the whole recording read block by block through MNE's BrainVision reader
  (:meth:`spec2vol_bids.bids.eeg.EEGRecording.segment_reader`), opening included - the baseline;
* ``gradient+bcg``: :func:`spec2vol_bids.pipeline.artefacts.correct_gradient_bcg`, what the workflow runs (QC
  included: Welch spectra before and after, R peaks, heartbeat-locked averages): a first pass reads the ECG channel
  alone for its R peaks while a second thread reads the run for the QC before correction, a second pass does both
  corrections, writing the corrected BrainVision copy once;
* ``gradient, then bcg``: :func:`~spec2vol_bids.pipeline.artefacts.correct_gradient` then
  :func:`~spec2vol_bids.pipeline.artefacts.correct_bcg`, each reading its input and writing its output (the
  workflow's two nodes before 2026-11-30);
* ``gradient``: the gradient step alone;
* ``gradient+bcg, no QC``: both corrections in one go with ``[correction] qc = false`` (the low-pass kept);
* ``io floor`` (a control): ``gradient+bcg, no QC`` with the correctors replaced by stages that pass the samples
  through, no low-pass, and the R peaks given instead of detected: what opening the run, reading its ECG and then
  the whole run twice (the QC's thread, the second pass) and writing it once cost, without any correction.

The data are read without MNE where the file allows it (multiplexed binary BrainVision in a voltage unit, as here:
:func:`spec2vol_bids.io.brainvision.binary_layout`), which MNE still opens (header, markers).

Reported: wall time (imports excluded) and its ratio to the read time of the same round (target <= 3), as the
median and the range over ``--repeat`` rounds of all the cases (these machines are noisy: the same code took 7.6 to
11 s within an hour); the highest peak resident memory of the process and its ratio to the size of the run on disk
(target <= 0.5), and the peak's increase over the process after the imports (the correction's own memory) relative
to the run. The steps use a second core when there is one (worker threads): the machine's CPUs are in the header.

Run: ``python -m benchmarks.bench_artefacts [--quick] [--volumes N] [--repeat N]``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import bench_parser, write_results

DEFAULT_VOLUMES = 120
QUICK_VOLUMES = 20
#: the correction cases: (correction.method, other [correction] settings)
CASES = {"gradient": ("gradient", {}), "gradient+bcg": ("gradient+bcg", {}),
         "gradient, then bcg": ("gradient+bcg", {}),
         "gradient+bcg, no QC": ("gradient+bcg", {"qc": False}),
         "io floor": ("gradient+bcg", {"qc": False, "lowpass": 0})}


def make_run(folder: Path, n_volumes: int, seed: int = 0) -> dict:
    """Write a cnepfl-like EEG run with gradient and pulse artefacts; returns its paths and size."""
    import numpy as np

    from spec2vol_bids.io.brainvision import BrainVisionWriter
    from spec2vol_bids.simulate.presets import electrode_names, get_preset
    from spec2vol_bids.simulate.signals import (
        SLICE_MARKER,
        EEGRun,
        GradientArtefact,
        PulseArtefact,
        make_source_power,
        make_timing,
        scalp_patterns,
        stream_rng,
    )

    p = get_preset("cnepfl-like").replace(n_volumes=n_volumes)
    names = electrode_names(p.n_eeg)
    channels = names + ["ECG"]
    keys = (1, 1, 0, 1)
    timing = make_timing(p, stream_rng(seed, 1, *keys))
    power = make_source_power(p, timing, stream_rng(seed, 2, *keys), stream_rng(seed, 3, *keys))
    patterns = scalp_patterns(names, [b.scalp_centre for b in p.bands])
    gen = EEGRun(p, names, timing, power, patterns, seed, keys)
    grad = GradientArtefact(p, len(channels), timing, stream_rng(seed, 7, *keys))
    pulse = PulseArtefact(names, len(channels), gen.beats, stream_rng(seed, 8, *keys))
    markers = [("Response", "R128", int(s)) for s in timing.volume_samples]
    markers += [("Response", SLICE_MARKER, int(s)) for s in grad.slice_markers() if s < timing.n_samples]
    folder.mkdir(parents=True, exist_ok=True)
    vhdr = folder / "sub-01_task-main_eeg.vhdr"
    with BrainVisionWriter(vhdr, channels, p.sfreq, markers, meas_date="20000101090000000000") as w:
        s0 = 0
        for block in gen.iter_blocks():
            s = np.arange(s0, s0 + block.shape[1])
            w.write((block + grad.block(s, p.sfreq) + pulse.block(s / p.sfreq)).astype(np.float32))
            s0 += block.shape[1]
    tsv = folder / "sub-01_task-main_channels.tsv"
    tsv.write_text("name\ttype\tunits\n" + "".join(f"{c}\t{'ECG' if c == 'ECG' else 'EEG'}\tuV\n" for c in channels))
    return {"vhdr": str(vhdr), "channels_tsv": str(tsv), "n_volumes": n_volumes, "tr": p.tr,
            "n_channels": len(channels), "sfreq": p.sfreq, "n_samples": timing.n_samples,
            "seconds": timing.n_samples / p.sfreq, "run_mb": vhdr.with_suffix(".eeg").stat().st_size / 1e6}


def _child(case: str, run: dict, work: str) -> dict:
    """One measurement, in this (fresh) process."""
    import resource

    import numpy as np

    from spec2vol_bids.bids.eeg import EEGRecording
    from spec2vol_bids.config import PreprocConfig
    from spec2vol_bids.pipeline import artefacts as PA

    def rss_mb() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 1e6

    import mne  # noqa: F401 - imported before the baseline, as every step imports it
    import scipy.signal  # noqa: F401

    if case == "io floor":  # the control: pass-through stages in place of the correctors
        class PassThrough:
            def __init__(self, layout, *args, **kwargs):
                self.layout, self.delays, self.ranks, self.pre_samples = layout, {}, [], 0
                self.done = 0

            def push(self, block):  # the pieces the correctors hand back: (first sample, a copy)
                self.done += block.shape[1]
                return [(self.done - block.shape[1], np.array(block, dtype=np.float32))]

        PA.A.GradientAAS = PassThrough
        PA.A.BCGSubtraction = lambda r, n, *args, **kwargs: PassThrough(PA.A.epoch_layout(r, n))
        # the ECG keeps its gradient artefact here: R peaks given (every 0.85 s), not detected
        PA.detect_r_peaks = lambda ecg, sfreq, **kwargs: np.arange(int(0.3 * sfreq), ecg.size, int(0.85 * sfreq))

    base = rss_mb()
    t0 = time.perf_counter()
    qc = {}
    if case == "read":
        rec = EEGRecording(run["vhdr"], run["channels_tsv"])
        read = rec.segment_reader(range(len(rec.ch_names)))
        step = (1 << 21) // len(rec.ch_names)
        total = 0.0
        for a in range(0, rec.n_samples, step):
            total += float(np.sum(read(a, min(a + step, rec.n_samples))[0, :1]))
    else:
        method, extra = CASES[case]
        cfg = PreprocConfig().replace(correction={"method": method, **extra})
        work = Path(work)
        common = {"n_volumes": run["n_volumes"], "repetition_time": run["tr"], "config": cfg,
                  "channels_tsv": run["channels_tsv"]}
        if method == "gradient+bcg" and case != "gradient, then bcg":  # both in one go, as the workflow
            b = PA.correct_gradient_bcg(run["vhdr"], out_file=work / "b" / "x_eeg.vhdr", qc_file=work / "g.json",
                                        bcg_qc_file=work / "b.json", **common)
            files = {"gradient": b["qc_file"], "bcg": b["bcg_qc_file"]}
        else:
            g = PA.correct_gradient(run["vhdr"], out_file=work / "g" / "x_eeg.vhdr", qc_file=work / "g.json",
                                    ecg_file=work / "ecg.npy", cardiac_qc=case == "gradient", **common)
            files = {"gradient": g["qc_file"]}
            if method == "gradient+bcg":
                b = PA.correct_bcg(g["out_file"], out_file=work / "b" / "x_eeg.vhdr", qc_file=work / "b.json",
                                   ecg_file=g["ecg_file"], config=cfg, channels_tsv=run["channels_tsv"])
                files["bcg"] = b["qc_file"]
        if cfg.correction.qc:
            qc = {step: json.loads(Path(path).read_text()) for step, path in files.items()}
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kB -> MB
    out = {"seconds": seconds, "rss_after_imports_mb": base, "peak_rss_mb": peak}
    if qc:
        grad = qc["gradient"]["Gradient"]
        out["gradient_reduction_db_median"] = float(np.median(grad["Reduction"]))
        out["triggers"] = f"{grad['NumberOfEpochs']} {grad['Triggers']}"
        if "bcg" in qc:
            out["cardiac_reduction_db_median"] = float(np.median(qc["bcg"]["Cardiac"]["Reduction"]))
    return out


def _measure(case: str, run: dict, work: Path) -> dict:
    code = ("import json, sys; from benchmarks.bench_artefacts import _child; "
            "print('RESULT', json.dumps(_child(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3])))")
    proc = subprocess.run([sys.executable, "-c", code, case, json.dumps(run), str(work)], capture_output=True,
                          text=True, check=False, cwd=Path(__file__).resolve().parents[1])
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"the {case} case failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(quick: bool = False, volumes: int | None = None, repeat: int = 1) -> dict:
    n_volumes = volumes or (QUICK_VOLUMES if quick else DEFAULT_VOLUMES)
    rounds: list[dict[str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="bench_artefacts_") as tmp:
        t0 = time.perf_counter()
        run = make_run(Path(tmp) / "eeg", n_volumes)
        simulate_s = time.perf_counter() - t0
        os.sync()  # the run on disk before the timings (its writing back would slow the first cases)
        for _ in range(max(1, int(repeat))):  # rounds of every case, each ratio taken within its round
            results = {}
            for case in ("read", *CASES):
                results[case] = _measure(case, run, Path(tmp) / f"w_{case}")
                # the corrected copies go before the next case (their dirty pages would be written back during it)
                shutil.rmtree(Path(tmp) / f"w_{case}", ignore_errors=True)
                os.sync()
            rounds.append(results)
    records = []
    for case in ("read", *CASES):
        res = [r[case] for r in rounds]
        seconds = [x["seconds"] for x in res]
        ratios = [x["seconds"] / r["read"]["seconds"] for x, r in zip(res, rounds)]
        peak = max(x["peak_rss_mb"] for x in res)
        base = min(x["rss_after_imports_mb"] for x in res)
        records.append({"case": case, "volumes": n_volumes, "minutes": run["seconds"] / 60, "run_mb": run["run_mb"],
                        "seconds": float(np.median(seconds)), "seconds_range": f"{min(seconds):.2f}-{max(seconds):.2f}",
                        "time_vs_read": float(np.median(ratios)),
                        "time_vs_read_range": f"{min(ratios):.2f}-{max(ratios):.2f}",
                        "peak_rss_mb": peak, "rss_after_imports_mb": base, "rss_increase_mb": peak - base,
                        "rss_increase_vs_run": (peak - base) / run["run_mb"], "peak_rss_vs_run": peak / run["run_mb"],
                        **{k: res[-1][k] for k in ("triggers", "gradient_reduction_db_median",
                                                   "cardiac_reduction_db_median") if k in res[-1]}})
    meta = {"quick": quick, "volumes": n_volumes, "rounds": len(rounds), "channels": run["n_channels"],
            "sfreq": run["sfreq"], "samples": run["n_samples"], "simulate_seconds": simulate_s,
            "targets": {"time_vs_read": 3.0, "peak_rss_vs_run": 0.5}}
    write_results("artefacts", records, meta=meta, title="Benchmark: artefact correction (cnepfl-like run)",
                  notes=__doc__.split("\n\n", 1)[1].split("Run:")[0].strip(),
                  md_table_columns=["case", "volumes", "minutes", "run_mb", "seconds", "seconds_range",
                                    "time_vs_read", "time_vs_read_range", "peak_rss_mb", "peak_rss_vs_run",
                                    "rss_increase_mb", "rss_increase_vs_run", "triggers",
                                    "gradient_reduction_db_median", "cardiac_reduction_db_median"])
    return {"records": records, "meta": meta}


if __name__ == "__main__":
    parser = bench_parser(__doc__)
    parser.add_argument("--volumes", type=int, help=f"volumes of the run (default {DEFAULT_VOLUMES})")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of all the cases (default 1): medians and ranges are reported")
    args = parser.parse_args()
    main(quick=args.quick, volumes=args.volumes, repeat=args.repeat)
