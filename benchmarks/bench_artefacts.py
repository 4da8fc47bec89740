"""Benchmark of the artefact correction on a CN-EPFL-like run recorded in the scanner (64 channels, 5 kHz).

The EEG of one run of the ``cnepfl-like`` preset (63 EEG channels and an ECG at 5 kHz, TR 1.28 s, 64 slices, so
slice triggers every 20 ms) is simulated with the MR gradient and pulse artefacts and written as BrainVision
(float32), without the BOLD (not needed here). Then, each in a fresh process:

* ``read``: the whole recording read block by block through the reader the pipeline uses
  (:meth:`spec2vol_bids.bids.eeg.EEGRecording.segment_reader`, MNE's BrainVision reader) - the baseline;
* ``gradient+bcg``: :func:`spec2vol_bids.pipeline.artefacts.correct_gradient` then
  :func:`~spec2vol_bids.pipeline.artefacts.correct_bcg` (QC included: Welch spectra before and after, R peaks,
  heartbeat-locked averages), each reading its input and writing its corrected BrainVision copy;
* ``gradient``: the gradient step alone;
* ``gradient+bcg, no QC``: both steps with ``[correction] qc = false`` (the low-pass kept);
* ``io floor`` (a control): both steps with the correctors replaced by stages that pass the samples through, without
  the low-pass and the QC: what opening, reading and writing the run twice and finding the R peaks cost, without
  any correction.

Reported: wall time (imports excluded), its ratio to the read time (target <= 3), the peak resident memory of the
process and its ratio to the size of the run on disk (target <= 0.5), and the peak's increase over the process after
the imports (the correction's own memory) relative to the run. The steps use a second core when there is one
(writing, low-pass and QC in a worker thread): the machine's CPUs are in the header.

Run: ``python -m benchmarks.bench_artefacts [--quick] [--volumes N]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import bench_parser, write_results

DEFAULT_VOLUMES = 120
QUICK_VOLUMES = 20
#: the correction cases: (correction.method, other [correction] settings)
CASES = {"gradient": ("gradient", {}), "gradient+bcg": ("gradient+bcg", {}),
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

            def push(self, block):
                return np.array(block, dtype=np.float32)

        PA.A.GradientAAS = PassThrough
        PA.A.BCGSubtraction = lambda r, n, *args, **kwargs: PassThrough(PA.A.epoch_layout(r, n))

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
        g = PA.correct_gradient(run["vhdr"], out_file=work / "g" / "x_eeg.vhdr", qc_file=work / "g.json",
                                ecg_file=work / "ecg.npy", n_volumes=run["n_volumes"], repetition_time=run["tr"],
                                config=cfg, channels_tsv=run["channels_tsv"], cardiac_qc=case == "gradient")
        if cfg.correction.qc:
            qc["gradient"] = json.loads(Path(g["qc_file"]).read_text())
        if method == "gradient+bcg":
            b = PA.correct_bcg(g["out_file"], out_file=work / "b" / "x_eeg.vhdr", qc_file=work / "b.json",
                               ecg_file=g["ecg_file"], config=cfg, channels_tsv=run["channels_tsv"])
            if cfg.correction.qc:
                qc["bcg"] = json.loads(Path(b["qc_file"]).read_text())
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


def main(quick: bool = False, volumes: int | None = None) -> dict:
    n_volumes = volumes or (QUICK_VOLUMES if quick else DEFAULT_VOLUMES)
    records = []
    with tempfile.TemporaryDirectory(prefix="bench_artefacts_") as tmp:
        t0 = time.perf_counter()
        run = make_run(Path(tmp) / "eeg", n_volumes)
        simulate_s = time.perf_counter() - t0
        read = _measure("read", run, Path(tmp) / "w0")
        for case in ("read", *CASES):
            res = read if case == "read" else _measure(case, run, Path(tmp) / f"w_{case}")
            increase = res["peak_rss_mb"] - res["rss_after_imports_mb"]
            records.append({"case": case, "volumes": n_volumes, "minutes": run["seconds"] / 60,
                            "run_mb": run["run_mb"], "seconds": res["seconds"],
                            "time_vs_read": res["seconds"] / read["seconds"],
                            "peak_rss_mb": res["peak_rss_mb"], "rss_after_imports_mb": res["rss_after_imports_mb"],
                            "rss_increase_mb": increase, "rss_increase_vs_run": increase / run["run_mb"],
                            "peak_rss_vs_run": res["peak_rss_mb"] / run["run_mb"],
                            **{k: res[k] for k in ("triggers", "gradient_reduction_db_median",
                                                   "cardiac_reduction_db_median") if k in res}})
    meta = {"quick": quick, "volumes": n_volumes, "channels": run["n_channels"], "sfreq": run["sfreq"],
            "samples": run["n_samples"], "simulate_seconds": simulate_s,
            "targets": {"time_vs_read": 3.0, "peak_rss_vs_run": 0.5}}
    write_results("artefacts", records, meta=meta, title="Benchmark: artefact correction (cnepfl-like run)",
                  notes=__doc__.split("\n\n", 1)[1].split("Run:")[0].strip(),
                  md_table_columns=["case", "volumes", "minutes", "run_mb", "seconds", "time_vs_read",
                                    "peak_rss_mb", "peak_rss_vs_run", "rss_increase_mb", "rss_increase_vs_run",
                                    "triggers",
                                    "gradient_reduction_db_median", "cardiac_reduction_db_median"])
    return {"records": records, "meta": meta}


if __name__ == "__main__":
    parser = bench_parser(__doc__)
    parser.add_argument("--volumes", type=int, help=f"volumes of the run (default {DEFAULT_VOLUMES})")
    args = parser.parse_args()
    main(quick=args.quick, volumes=args.volumes)
