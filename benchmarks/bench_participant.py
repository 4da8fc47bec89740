"""Benchmark of the participant level on one CN-EPFL-like run (64 channels at 5 kHz, 370 volumes, TR 1.28 s).

A synthetic run is written with :func:`spec2vol_bids.simulate.simulate_dataset` (``cnepfl-like`` preset, one
subject, one run: BrainVision float32 EEG of ~480 s and a 108 x 108 x 64 x 370 BOLD series). Each case runs in a
fresh Python process so that its peak resident memory (``ru_maxrss``) is its own:

* ``read EEG (stream)``: read every sample of the raw file through MNE in the blocks the pipeline uses
  (the cost of "merely reading the raw EEG file"),
* ``read EEG (preload)``: ``mne.io.read_raw(..., preload=True)``, i.e. loading the file the usual way (what the
  official code does),
* ``spectrogram``: :func:`spec2vol_bids.pipeline.steps.compute_spectrogram` (markers, streaming STFT, pairs, h5),
* ``BOLD target``: :func:`spec2vol_bids.pipeline.steps.compute_target` (DCT resize, mask, scaling, NIfTI),
* ``participant (CLI)``: ``spec2vol_bids BIDS OUT participant --nprocs 1`` end to end (nipype, both steps above,
  derivatives, report),
* ``imports only``: the interpreter with the same imports, the floor of every peak.

Targets (issue 5): spectrogram wall time <= 2x the read time (reported against both reads: the streamed read is
the stricter floor, since it already skips MNE's full load); peak memory <= 1.5x the raw data of one run.

Run: ``python -m benchmarks.bench_participant [--quick] [--data DIR]`` (``--data`` reuses a simulated dataset).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import bench_parser, write_results

_PRELUDE = """
import json, resource, sys, time
from pathlib import Path
import numpy as np
import mne, nibabel, h5py, scipy.fft
import spec2vol_bids.pipeline.steps as P
from spec2vol_bids.bids.runs import collect_pairs
from spec2vol_bids.io.names import sidecar_path
eeg, bold, work = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
t0 = time.perf_counter()
"""
_EPILOGUE = """
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
CASES = {
    "imports only": "pass",
    "read EEG (stream)": """
from spec2vol_bids.bids.eeg import EEGRecording
from spec2vol_bids.preproc.eeg import MAX_BLOCK_SAMPLES
rec = EEGRecording(eeg)
read = rec.segment_reader(range(len(rec.ch_names)))
total = 0.0
for start in range(0, rec.n_samples, MAX_BLOCK_SAMPLES):
    total += float(read(start, min(start + MAX_BLOCK_SAMPLES, rec.n_samples))[:, -1].sum())
""",
    "read EEG (preload)": """
raw = mne.io.read_raw(str(eeg), preload=True, verbose="error")
""",
    "spectrogram": """
tr = json.loads(sidecar_path(bold).read_text())["RepetitionTime"]
n_vol = nibabel.load(bold).shape[3]
P.compute_spectrogram(eeg, n_volumes=n_vol, repetition_time=tr, out_file=work / "s_desc-stft_spectrogram.h5",
                      channels_tsv=eeg.with_name(eeg.name.replace("_eeg.vhdr", "_channels.tsv")))
""",
    "BOLD target": """
tr = json.loads(sidecar_path(bold).read_text())["RepetitionTime"]
P.compute_target(bold, out_file=work / "t_desc-target_bold.nii.gz", mask_file=work / "t_desc-brain_mask.nii.gz",
                 repetition_time=tr)
""",
}


def _run_case(name: str, eeg: Path, bold: Path, work: Path) -> dict:
    code = _PRELUDE + CASES[name] + _EPILOGUE
    res = subprocess.run([sys.executable, "-c", code, str(eeg), str(bold), str(work)], capture_output=True,
                         text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _run_cli(bids: Path, work: Path) -> dict:
    code = ("import resource, sys, time, json\nfrom spec2vol_bids.cli.main import main\nt0 = time.perf_counter()\n"
            "rc = main(sys.argv[1:])\n"
            "print(json.dumps({'rc': rc, 'seconds': time.perf_counter() - t0,"
            " 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n")
    out = work / "out"
    res = subprocess.run([sys.executable, "-c", code, str(bids), str(out), "participant", "-w", str(work / "wf"),
                          "--nprocs", "1", "--skip-bids-validation"], capture_output=True, text=True, check=False)
    stats = json.loads(res.stdout.strip().splitlines()[-1])
    if stats["rc"] != 0:
        raise RuntimeError(f"participant level failed:\n{res.stderr[-3000:]}")
    return stats


def main(quick: bool = False, data: str | None = None) -> dict:
    """Run the benchmark and write ``benchmarks/results/participant.{json,md}``; returns the result paths."""
    from spec2vol_bids.simulate import simulate_dataset

    volumes = 60 if quick else 370
    with tempfile.TemporaryDirectory(prefix="spec2vol-bench-") as tmp:
        tmp = Path(tmp)
        if data is None:
            t0 = time.perf_counter()
            bids = simulate_dataset(tmp / "bids", preset="cnepfl-like", subjects=1, runs=1, volumes=volumes,
                                    seed=0, progress=False)
            print(f"simulated in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        else:
            bids = Path(data)
        eeg = next(bids.glob("sub-*/**/eeg/*_eeg.vhdr"))
        bold = next(bids.glob("sub-*/**/func/*_bold.nii.gz"))
        import nibabel as nib

        eeg_bytes = eeg.with_suffix(".eeg").stat().st_size
        img = nib.load(bold)
        bold_bytes = int(img.dataobj.dtype.itemsize) * int(__import__("numpy").prod(img.shape))
        run_mb = (eeg_bytes + bold_bytes) / 2**20
        records = []
        for name in CASES:
            work = tmp / name.replace(" ", "_").replace("(", "").replace(")", "")
            work.mkdir()
            stats = _run_case(name, eeg, bold, work)
            records.append({"case": name, **stats})
            print(f"{name}: {stats}", file=sys.stderr)
        work = tmp / "cli"
        work.mkdir()
        stats = _run_cli(bids, work)
        records.append({"case": "participant (CLI)", "seconds": stats["seconds"], "peak_rss_mb": stats["peak_rss_mb"]})
        by = {r["case"]: r for r in records}
        read_s = by["read EEG (stream)"]["seconds"]
        load_s = by["read EEG (preload)"]["seconds"]
        floor = by["imports only"]["peak_rss_mb"]
        for r in records:
            r["x_read_time"] = r["seconds"] / read_s
            r["x_mne_load_time"] = r["seconds"] / load_s
            r["peak_over_imports_mb"] = r["peak_rss_mb"] - floor
            r["x_run_size"] = r["peak_over_imports_mb"] / run_mb
        meta = {
            "quick": quick, "n_volumes": volumes, "eeg_shape": "64 channels x "
            f"{eeg_bytes // (64 * 4)} samples (float32)", "bold_shape": list(img.shape),
            "eeg_mb": eeg_bytes / 2**20, "bold_mb_native_dtype": bold_bytes / 2**20, "run_mb": run_mb,
            "target_time_x_read": 2.0, "target_memory_x_run": 1.5,
            "spectrogram_time_x_read": by["spectrogram"]["x_read_time"],
            "spectrogram_time_x_mne_load": by["spectrogram"]["x_mne_load_time"],
            "spectrogram_memory_x_run": by["spectrogram"]["x_run_size"],
            "cli_memory_x_run": by["participant (CLI)"]["x_run_size"],
            "time_target_met": by["spectrogram"]["x_read_time"] <= 2.0,
            "memory_target_met": max(by["spectrogram"]["x_run_size"], by["BOLD target"]["x_run_size"],
                                     by["participant (CLI)"]["x_run_size"]) <= 1.5,
        }
        notes = ("Each case runs in its own process; peak memory is ru_maxrss minus the 'imports only' floor, "
                 "relative to the raw data of the run (EEG float32 samples + BOLD voxels in their on-disk type). "
                 "Times relative to streaming every EEG sample through MNE. The CLI case adds nipype, the BOLD "
                 "target and the HTML report to the EEG work.")
        return write_results("participant", records, meta=meta, title="Participant level on a CN-EPFL-like run",
                             notes=notes, md_table_columns=["case", "seconds", "x_read_time", "x_mne_load_time",
                                                            "peak_rss_mb",
                                                            "peak_over_imports_mb", "x_run_size"])


if __name__ == "__main__":
    parser = bench_parser(__doc__)
    parser.add_argument("--data", help="an already simulated cnepfl-like dataset (one run is used)")
    ns = parser.parse_args()
    print(main(quick=ns.quick, data=ns.data))
