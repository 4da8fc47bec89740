"""Training throughput of data-parallel training (torchrun, DistributedDataParallel) for 1 and 2 processes.

The same training run (``spec2vol_bids train``, tiny preset, one fold of a simulated dataset, the same global
batch: ``--batch-size`` x ``--accumulation`` samples) is started with ``torchrun --nproc-per-node N`` for each case:

* ``1 process x 1 thread``: the reference of the efficiency;
* ``1 process x T threads``: the same cores used by intra-op threads instead of processes (T = the cores of the
  2-process case), the alternative to compare with;
* ``N processes x 1 thread``: ``gloo`` on the CPU (``nccl`` with ``--device cuda``).

Throughput = training samples / seconds of optimisation (the history's ``train_seconds``, evaluation excluded), over
the epochs after the first (start-up, allocations). Efficiency = throughput(N processes) / (N x throughput(1 x 1)).
The final weights of every case are compared with the 1-process ones (the same global batches: equal up to the
order of floating-point sums).

Run: ``python -m benchmarks.bench_ddp [--quick] [--data DERIV_DIR] [--procs 2] [--device cpu|cuda]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import bench_parser, machine_info, write_results


def _derivatives(work: Path, *, subjects: int, volumes: int) -> Path:
    from benchmarks.bench_train_quality import build_derivatives

    return build_derivatives(work, preset="tiny", subjects=subjects, volumes=volumes, seed=0)[1]


def _case(derivs: Path, out: Path, *, procs: int, threads: int, epochs: int, batch_size: int, accumulation: int,
          device: str, train_subjects: tuple[str, ...]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                                         os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
           "-m", "spec2vol_bids", "train", str(derivs), str(out), "--model", "spec2vol", "--preset", "tiny",
           "--baselines", "none", "--cv", "split", "--test-subjects", "04", "--val-subjects", "03", "--fold", "0",
           "--epochs", str(epochs), "--batch-size", str(batch_size), "--accumulation", str(accumulation),
           "--warmup-steps", "2", "--seed", "0", "--device", device, "--num-threads", str(threads),
           "--participant-label", *train_subjects, "03", "04", "--no-progress", "-q"]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()[0]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    fold_dir = next((out / "folds").glob("*/spec2vol"))
    hist = json.loads((fold_dir / "history.json").read_text())["history"]
    from spec2vol_bids.train.checkpoint import load_checkpoint

    ck = load_checkpoint(fold_dir / "last.ckpt")
    n_train = int(ck["training"]["n_pairs"]["train"])
    timed = hist[1:] if len(hist) > 1 else hist
    seconds = sum(h["train_seconds"] for h in timed)
    return {"case": f"{procs} process{'es' if procs > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}",
            "processes": procs, "threads": threads, "train_samples": n_train * len(timed),
            "train_seconds": round(seconds, 3), "samples_per_s": round(n_train * len(timed) / seconds, 2),
            "wall_seconds": round(wall, 1), "load_1min": f"{load_before:.1f} -> {load_after:.1f}",
            "weights": fold_dir / "last.ckpt"}


def main(quick: bool = False, *, data: Path | None = None, procs: int = 2, device: str = "cpu",
         epochs: int | None = None, batch_size: int = 16, accumulation: int = 2) -> dict:
    from spec2vol_bids.train.checkpoint import load_checkpoint

    epochs = epochs or (2 if quick else 3)  # the first epoch is not timed
    tmp = Path(tempfile.mkdtemp(prefix="bench_ddp_"))
    derivs = data or _derivatives(tmp, subjects=4, volumes=60 if quick else 120)
    train_subjects = ("01",)  # 94 training pairs per epoch (120 volumes): a case takes minutes on a loaded machine
    cases = [(1, 1), (1, procs), (procs, 1)]
    records = []
    for p, t in cases:
        records.append(_case(derivs, tmp / f"p{p}t{t}", procs=p, threads=t, epochs=epochs, batch_size=batch_size,
                             accumulation=accumulation, device=device, train_subjects=train_subjects))
    ref = records[0]
    w_ref = load_checkpoint(ref["weights"])["state_dict"]
    for r in records:
        w = load_checkpoint(r.pop("weights"))["state_dict"]
        r["max_weight_diff_vs_1x1"] = float(max((w[k].double() - w_ref[k].double()).abs().max() for k in w))
        r["speed_up_vs_1x1"] = round(r["samples_per_s"] / ref["samples_per_s"], 3)
        r["efficiency"] = round(r["speed_up_vs_1x1"] / (r["processes"] * r["threads"]), 3)
    machine = machine_info()
    meta = {"quick": quick, "device": device, "epochs": epochs, "timed_epochs": epochs - 1,
            "global_batch": batch_size * accumulation, "batch_size": batch_size, "accumulation": accumulation,
            "preset": "tiny", "model": "spec2vol", "train_pairs_per_epoch": records[0]["train_samples"] // max(
                1, epochs - 1), "data": str(derivs) if data else "simulated tiny, 4 subjects",
            "train_subjects": list(train_subjects),
            "usable_cpus": machine.get("usable_cpus")}
    notes = ("Training samples per second of optimisation (evaluation excluded) over the epochs after the first; "
             "efficiency = speed-up over 1 process x 1 thread / cores used. The machine is shared: other jobs "
             "change the numbers from run to run (load_1min: the 1-minute load average before and after each case; "
             "above the core count, the processes shared the cores with other jobs).")
    paths = write_results("ddp", records, meta,
                          md_table_columns=["case", "samples_per_s", "speed_up_vs_1x1", "efficiency",
                                            "max_weight_diff_vs_1x1", "train_seconds", "wall_seconds", "load_1min"],
                          title="Benchmark: data-parallel training throughput (torchrun)", notes=notes)
    return {"records": records, "meta": meta, "paths": paths}


if __name__ == "__main__":
    parser = bench_parser(__doc__)
    parser.add_argument("--data", type=Path, default=None, help="participant-level derivatives to reuse "
                        "(subjects 01-04); default: simulate them")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--epochs", type=int, default=None)
    a = parser.parse_args()
    res = main(a.quick, data=a.data, procs=a.procs, device=a.device, epochs=a.epochs)
    for r in res["records"]:
        print(json.dumps(r))
