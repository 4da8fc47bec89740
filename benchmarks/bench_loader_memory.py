"""Loader memory: peak resident memory while iterating 1x and 10x the derivatives stays roughly flat.

Writes participant-level derivatives that follow the data contract (``*_desc-stft_spectrogram.h5`` with 20-window
pairs, ``*_desc-target_bold.nii.gz``), then, each in a fresh Python process, iterates one shuffled epoch in
micro-batches of 16 over

* ``lazy``: :class:`spec2vol_bids.train.data.PairDataset` (h5 rows read per pair, targets read from the ``.npy``
  cache with positioned reads), and
* ``in-ram``: the official loader's strategy (every pair's ``[20, C, F]`` windows and ``[D, X, Y]`` target stacked
  into arrays first), for reference,

for a base dataset and one with 10x as many runs. Recorded: peak RSS (``ru_maxrss``), peak anonymous memory
(``RssAnon``, sampled after every batch), wall time. The target-cache conversion (one run at a time) is run
beforehand in its own process and reported separately.

Target (issue 6): lazy peak RSS at 10x within 1.25x of the base.

Run: ``python -m benchmarks.bench_loader_memory [--quick]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import bench_parser, write_results

_CHILD = r"""
import json, resource, sys, time
import numpy as np
import torch
torch.set_num_threads(1)
from spec2vol_bids.train.data import PairDataset, discover_runs

def anon_kb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('RssAnon:'):
                return int(line.split()[1])
    return 0

root, cache, mode = sys.argv[1], sys.argv[2], sys.argv[3]
runs = discover_runs(root, cache_dir=cache)
ds = PairDataset(runs)
peak_anon = anon_kb()
t0 = time.perf_counter()
n = 0
if mode == 'convert':
    for r in runs:
        r.target_array()
        peak_anon = max(peak_anon, anon_kb())
elif mode == 'lazy':
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0)).tolist()
    for s in range(0, len(order), 16):
        xs, ys = zip(*(ds[i] for i in order[s:s + 16]))
        x, y = torch.stack(xs), torch.stack(ys)
        n += x.shape[0]
        peak_anon = max(peak_anon, anon_kb())
else:  # in-ram: the official loader keeps every pair in memory
    X = np.stack([ds[i][0].numpy() for i in range(len(ds))])
    Y = np.stack([ds[i][1].numpy() for i in range(len(ds))])
    peak_anon = max(peak_anon, anon_kb())
    order = np.random.default_rng(0).permutation(len(ds))
    for s in range(0, len(order), 16):
        x, y = torch.from_numpy(X[order[s:s + 16]]), torch.from_numpy(Y[order[s:s + 16]])
        n += x.shape[0]
        peak_anon = max(peak_anon, anon_kb())
dt = time.perf_counter() - t0
print(json.dumps({"samples": n, "pairs": len(ds), "runs": len(runs), "seconds": dt,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_anon_mb": peak_anon / 1024}))
"""


def write_derivatives(root: Path, n_runs: int, *, n_volumes: int, n_channels: int, n_slices: int,
                      n_windows: int = 20, discard: int = 6, seed: int = 0) -> None:
    """Contract-following derivatives: one run per subject, random spectra, smooth random targets."""
    import h5py
    import nibabel as nib

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "bench", "BIDSVersion": "1.9.0",
                                                               "DatasetType": "derivative"}))
    channels = [f"E{i:02d}" for i in range(n_channels)]
    firsts = np.arange(discard, n_volumes - n_windows)
    windows = (firsts[:, None] + np.arange(n_windows)[None]).astype(np.int32)
    for r in range(n_runs):
        sub = f"{r + 1:03d}"
        base = f"sub-{sub}_task-rest"
        (root / f"sub-{sub}" / "eeg").mkdir(parents=True, exist_ok=True)
        (root / f"sub-{sub}" / "func").mkdir(parents=True, exist_ok=True)
        with h5py.File(root / f"sub-{sub}" / "eeg" / f"{base}_desc-stft_spectrogram.h5", "w") as f:
            f["spectrogram"] = rng.standard_normal((n_volumes, n_channels, 249)).astype(np.float32)
            f["valid"] = np.ones(n_volumes, bool)
            f["frequencies"] = np.arange(1, 250) / 2.0
            f["volume_onsets"] = np.arange(n_volumes) * 2.0
            f["pairs/windows"] = windows
            f["pairs/targets"] = (firsts + n_windows).astype(np.int32)
            f.attrs["channels"] = json.dumps(channels)
            f.attrs["config"] = json.dumps({"bench": True})
        vol = np.repeat(rng.random((64, 64, n_slices, 1), dtype=np.float32), n_volumes, axis=3)
        vol += 0.01 * rng.standard_normal(vol.shape).astype(np.float32)
        img = nib.Nifti1Image(vol, np.diag([3.0, 3.0, 4.0, 1.0]))
        img.header["pixdim"][4] = 2.0
        nib.save(img, root / f"sub-{sub}" / "func" / f"{base}_desc-target_bold.nii.gz")


def _child(root: Path, cache: Path, mode: str) -> dict:
    res = subprocess.run([sys.executable, "-c", _CHILD, str(root), str(cache), mode], capture_output=True,
                         text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(quick: bool = False) -> dict:
    n_base = 2
    n_volumes = 60 if quick else 120
    n_channels = 16 if quick else 32
    n_slices = 8 if quick else 16
    records = []
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        tmp = Path(tmp)
        for factor in (1, 10):
            root = tmp / f"x{factor}"
            cache = tmp / f"cache{factor}"
            t0 = time.perf_counter()
            write_derivatives(root, n_base * factor, n_volumes=n_volumes, n_channels=n_channels,
                              n_slices=n_slices)
            t_write = time.perf_counter() - t0
            conv = _child(root, cache, "convert")
            size_mb = sum(p.stat().st_size for p in cache.glob("*.npy")) / 2**20 + sum(
                p.stat().st_size for p in root.rglob("*.h5")) / 2**20
            for mode in ("lazy", "in-ram"):
                r = _child(root, cache, mode)
                records.append({"dataset": f"{factor}x", "loader": mode, "runs": r["runs"], "pairs": r["pairs"],
                                "data_mb": round(size_mb, 1), "peak_rss_mb": round(r["peak_rss_mb"], 1),
                                "peak_anon_mb": round(r["peak_anon_mb"], 1), "epoch_s": round(r["seconds"], 2),
                                "pairs_per_s": round(r["samples"] / r["seconds"], 1)})
            records.append({"dataset": f"{factor}x", "loader": "cache conversion", "runs": conv["runs"],
                            "pairs": conv["pairs"], "data_mb": round(size_mb, 1),
                            "peak_rss_mb": round(conv["peak_rss_mb"], 1),
                            "peak_anon_mb": round(conv["peak_anon_mb"], 1), "epoch_s": round(conv["seconds"], 2),
                            "pairs_per_s": None, "write_s": round(t_write, 1)})

    def peak(ds, loader):
        return next(r["peak_rss_mb"] for r in records if r["dataset"] == ds and r["loader"] == loader)

    ratio_lazy = peak("10x", "lazy") / peak("1x", "lazy")
    ratio_ram = peak("10x", "in-ram") / peak("1x", "in-ram")
    meta = {"quick": quick, "runs_base": n_base, "volumes_per_run": n_volumes, "channels": n_channels,
            "grid": f"64x64x{n_slices}", "batch": 16, "lazy_peak_ratio_10x": round(ratio_lazy, 3),
            "in_ram_peak_ratio_10x": round(ratio_ram, 3), "target_lazy_ratio": 1.25,
            "pass": bool(ratio_lazy <= 1.25)}
    write_results("loader_memory", records, meta=meta, title="Benchmark: training data loader memory",
                  md_table_columns=["dataset", "loader", "runs", "pairs", "data_mb", "peak_rss_mb", "peak_anon_mb",
                                    "epoch_s", "pairs_per_s"],
                  notes="Peak resident memory of one shuffled epoch (micro-batches of 16) over 1x and 10x the "
                        "runs, each case in a fresh process. `lazy` is spec2vol_bids.train.data.PairDataset; "
                        "`in-ram` stacks every pair first, like the official loader. `data_mb`: spectrogram "
                        "files + uncompressed target cache.")
    return meta


if __name__ == "__main__":
    print(main(quick=bench_parser(__doc__).parse_args().quick))
