"""Benchmark of ``spec2vol_bids simulate``: wall time, peak memory and output size per preset.

Each case runs in a fresh Python process (so peak resident memory is that case's alone, imports included) and
the peak is reported next to the resident memory right after the imports; a streaming writer shows up as a peak
that does not grow with the number of volumes (compare the two ``cnepfl-like`` cases).

Run ``python -m benchmarks.bench_simulate`` (``--quick`` for short runs). Results:
``benchmarks/results/simulate.json`` and ``simulate.md``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import bench_parser, write_results

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy, torch, mne, nibabel, nilearn.datasets, mne_bids  # imports are not part of the timing
from spec2vol_bids.simulate import simulate_dataset
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kw = json.loads(sys.argv[1])
t0 = time.perf_counter()
root = simulate_dataset(sys.argv[2], progress=False, **kw)
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
size = sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())
ceiling = (Path(root) / "derivatives/simulation/noise_ceiling.tsv").read_text().splitlines()
print(json.dumps({"seconds": dt, "rss_after_imports_mb": base / 1024, "peak_rss_mb": peak / 1024,
                  "output_mb": size / 2**20, "ceiling": ceiling}))
"""


def _cases(quick: bool) -> list[dict]:
    if quick:
        return [
            {"case": "tiny", "preset": "tiny"},
            {"case": "noddi-like, 1 subject, 60 volumes", "preset": "noddi-like", "subjects": 1, "volumes": 60},
            {"case": "cnepfl-like, 1 run, 20 volumes", "preset": "cnepfl-like", "subjects": 1, "runs": 1,
             "volumes": 20},
            {"case": "cnepfl-like, 1 run, 60 volumes", "preset": "cnepfl-like", "subjects": 1, "runs": 1,
             "volumes": 60},
        ]
    return [
        {"case": "tiny", "preset": "tiny"},
        {"case": "noddi-like, 2 subjects", "preset": "noddi-like", "subjects": 2},
        {"case": "oddball-like, 1 subject, 1 run per task", "preset": "oddball-like", "subjects": 1, "runs": 1},
        {"case": "cnepfl-like, 1 run, 60 volumes", "preset": "cnepfl-like", "subjects": 1, "runs": 1,
         "volumes": 60},
        {"case": "cnepfl-like, 1 run, 370 volumes", "preset": "cnepfl-like", "subjects": 1, "runs": 1},
    ]


def _describe(kwargs: dict) -> dict:
    from spec2vol_bids.simulate import get_preset

    p = get_preset(kwargs["preset"])
    subjects = kwargs.get("subjects", p.n_subjects)
    runs = subjects * p.n_sessions * len(p.tasks) * kwargs.get("runs", p.n_runs)
    volumes = kwargs.get("volumes", p.n_volumes)
    return {"runs": runs, "volumes_per_run": volumes, "channels": p.n_channels, "sfreq": p.sfreq,
            "grid": "x".join(map(str, p.grid)),
            "eeg_samples_per_run": int(round(volumes * p.tr * p.sfreq))}


def main(quick: bool = False) -> dict:
    """Run every case, write ``benchmarks/results/simulate.{json,md}`` and return the results."""
    records = []
    for case in _cases(quick):
        kwargs = {k: v for k, v in case.items() if k != "case"}
        with tempfile.TemporaryDirectory(prefix="bench_simulate_") as tmp:
            proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(kwargs), str(Path(tmp) / "ds")],
                                  capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{case['case']} failed:\n{proc.stderr[-2000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        rows = [line.split("\t") for line in res.pop("ceiling")]
        header, body = rows[0], rows[1:]
        dyn = [float(r[header.index("dynamic_correlation")]) for r in body]
        ssim = [float(r[header.index("ssim")]) for r in body]
        rec = {"case": case["case"], **_describe(kwargs), **res,
               "seconds_per_run": res["seconds"] / max(_describe(kwargs)["runs"], 1),
               "ceiling_dyn_corr_mean": sum(dyn) / len(dyn), "ceiling_ssim_mean": sum(ssim) / len(ssim)}
        print(f"{rec['case']}: {rec['seconds']:.1f} s, peak {rec['peak_rss_mb']:.0f} MB "
              f"(after imports {rec['rss_after_imports_mb']:.0f} MB), {rec['output_mb']:.1f} MB written",
              flush=True)
        records.append(rec)
    write_results(
        "simulate", records, meta={"quick": quick, "seed": 0},
        md_table_columns=["case", "runs", "volumes_per_run", "channels", "sfreq", "grid", "seconds",
                          "seconds_per_run", "rss_after_imports_mb", "peak_rss_mb", "output_mb",
                          "ceiling_dyn_corr_mean", "ceiling_ssim_mean"],
        title="Benchmark: spec2vol_bids simulate",
        notes="Wall time of `simulate_dataset` (imports excluded), peak resident memory of the process (imports "
              "included) and size on disk, one fresh process per case, seed 0. The machine is shared, so times "
              "vary with its load. A 5 kHz run is generated and written block by block (EEG: 1 s blocks; BOLD: one "
              "volume at a time), so the peak memory must not grow with the number of volumes.")
    return {"records": records}


if __name__ == "__main__":  # pragma: no cover
    main(quick=bench_parser(__doc__).parse_args().quick)
