"""GPU readiness check (issue 17): DDP with ``nccl`` through our code, and the scan backends on the paper preset.

Run from the repository root on a machine with a CUDA GPU; it needs torch and numpy only (no nibabel, MNE, nipype
or PyBIDS: the modules it imports load those lazily, and the data are synthetic tensors)::

    PYTHONPATH=. torchrun --standalone --nproc-per-node 1 benchmarks/gpu_ddp_check.py --out gpu_ddp_check.json

(``--nproc-per-node N`` on a machine with N GPUs.) It prints one JSON object (and writes it to ``--out``):

* ``ddp``: the torchrun environment is joined with :func:`spec2vol_bids.train.distributed.init_distributed`
  (``nccl``), the tiny network is wrapped with :meth:`DistContext.wrap` and trained for ``--steps`` optimiser
  steps exactly as the training loop does (global micro-batches dealt out with :meth:`DistContext.shard`, loss
  factors, ``no_sync`` on all but the last micro-batch of a step, clipping, AdamW); rank 0 then repeats the same
  steps on one process without DDP: ``max_weight_diff``, ``relative_update_diff`` (the weight difference over
  the weights' total update, expected below 1e-3; TF32 is switched off), the time per step, and the epoch loss
  summed over the processes with ``all_reduce_sum`` against the one-process one;
* ``scan_backends`` (rank 0): the paper preset (45.9 M parameters) trained for one synthetic epoch
  (``--epoch-samples``, micro-batches of 16, accumulation 2) from the same initial weights and batches with the
  ``chunked`` backend and, when ``mamba_ssm`` imports, the ``mamba_ssm`` CUDA kernel: seconds, samples/s, the
  per-step losses and their largest difference.

Exit code 0 when every comparison that ran is within its tolerance, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

SHAPE = {"n_windows": 20, "n_electrodes": 32, "n_freqs": 249, "n_slices": 8}  # x [B, 20, 32, 249] -> [B, 8, 64, 64]
DDP_TOL = 1e-3  # relative to the weights' total update
LOSS_TOL = 1e-3


def _data(n: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, SHAPE["n_windows"], SHAPE["n_electrodes"], SHAPE["n_freqs"], generator=g)
    # a target that depends on the input (so the loss moves), in [0, 1] like the scaled BOLD targets
    w = torch.randn(SHAPE["n_electrodes"] * SHAPE["n_freqs"], SHAPE["n_slices"], generator=g) * 0.05
    drive = x.mean(1).flatten(1) @ w  # [n, D]
    xx = torch.linspace(-1, 1, 64)
    blob = torch.exp(-(xx[:, None] ** 2 + xx[None] ** 2) / 0.3)  # [64, 64]
    y = torch.sigmoid(drive[:, :, None, None] * blob + blob - 0.5)
    return x, y


def _model(preset: str, backend: str | None, seed: int):
    import torch

    from spec2vol_bids.model.registry import build_model

    torch.manual_seed(seed)
    return build_model("spec2vol", preset=preset, scan_backend=backend, **SHAPE)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train(net, model, x, y, *, steps: int, batch: int, accumulation: int, dist, device, clip: float = 1.0):
    """``steps`` optimiser steps of the training loop's arithmetic; returns (per-step losses, seconds, loss sum)."""
    import torch

    from spec2vol_bids.train.losses import SSIMMSELoss

    crit = SSIMMSELoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    n = x.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    chunks = [order[s:s + batch] for s in range(0, n, batch)][:steps * accumulation]
    losses, loss_sum, loss_n = [], 0.0, 0
    _sync(device)
    t0 = time.perf_counter()
    for pos, chunk in enumerate(chunks):
        items, factor = dist.shard(chunk)
        last = (pos + 1) % accumulation == 0 or pos + 1 == len(chunks)
        with dist.no_sync(net, skip=not last):
            pred = net(x[items].to(device, non_blocking=True))
            loss = crit(pred, y[items].to(device, non_blocking=True))
            ((loss if factor == 1.0 else loss * factor) / accumulation).backward()
        n_real = len(items) if factor > 0 else 0
        loss_sum += float(loss.detach()) * n_real
        loss_n += n_real
        if last:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
    _sync(device)
    return losses, time.perf_counter() - t0, dist.all_reduce_sum([loss_sum, loss_n])


def check_ddp(dist, device, *, steps: int, batch: int, accumulation: int) -> dict:

    from spec2vol_bids.train.distributed import SINGLE

    x, y = _data(steps * accumulation * batch, seed=1)
    w0 = {k: v.detach().clone() for k, v in _model("tiny", None, seed=0).state_dict().items()}
    model = _model("tiny", None, seed=0).to(device)
    net = dist.wrap(model, device)
    _train(net, model, x, y, steps=1, batch=batch, accumulation=accumulation, dist=dist, device=device)  # warm-up
    model = _model("tiny", None, seed=0).to(device)
    net = dist.wrap(model, device)
    losses, seconds, (loss_sum, loss_n) = _train(net, model, x, y, steps=steps, batch=batch,
                                                 accumulation=accumulation, dist=dist, device=device)
    out = {"world_size": dist.world_size, "backend": dist.backend, "wrapped": type(net).__name__,
           "steps": steps, "global_batch": batch * accumulation, "seconds_per_step": seconds / steps,
           "epoch_loss": loss_sum / max(1, loss_n), "samples_seen": int(loss_n), "losses": losses}
    if dist.is_main:
        ref = _model("tiny", None, seed=0).to(device)
        _, ref_seconds, (ref_sum, ref_n) = _train(ref, ref, x, y, steps=steps, batch=batch,
                                                  accumulation=accumulation, dist=SINGLE, device=device)
        a, b = model.state_dict(), ref.state_dict()
        diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
        # the difference relative to how far training moved the weights (robust to AdamW's first steps, whose
        # size does not depend on the gradient's: a gradient of ~0 may flip sign with the order of sums)
        num = sum(float(((a[k].double().cpu() - b[k].double().cpu()) ** 2).sum()) for k in a)
        den = sum(float(((b[k].double().cpu() - w0[k].double()) ** 2).sum()) for k in b)
        rel = math.sqrt(num / max(den, 1e-30))
        out.update(one_process_seconds_per_step=ref_seconds / steps, max_weight_diff=diff,
                   relative_update_diff=rel, one_process_epoch_loss=ref_sum / max(1, ref_n),
                   ok=rel < DDP_TOL and abs(out["epoch_loss"] - ref_sum / max(1, ref_n)) < LOSS_TOL)
    return out


def check_backends(device, *, epoch_samples: int, batch: int = 16, accumulation: int = 2) -> dict:
    import torch

    from spec2vol_bids.model.scan import available_backends
    from spec2vol_bids.train.distributed import SINGLE

    have = available_backends()
    x, y = _data(epoch_samples, seed=2)
    steps = math.ceil(epoch_samples / batch / accumulation)
    res: dict = {"preset": "paper", "epoch_samples": epoch_samples, "global_batch": batch * accumulation,
                 "available": {k: v for k, v in have.items()}}
    for backend in ("chunked", "mamba_ssm"):
        if backend == "mamba_ssm" and have.get("mamba_ssm") is not None:
            res[backend] = {"skipped": f"mamba_ssm not usable here: {have['mamba_ssm']}"}
            continue
        model = _model("paper", backend, seed=0).to(device)
        n_params = sum(p.numel() for p in model.parameters())
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        losses, seconds, _ = _train(model, model, x, y, steps=steps, batch=batch, accumulation=accumulation,
                                    dist=SINGLE, device=device)
        res[backend] = {"seconds": seconds, "samples_per_s": epoch_samples / seconds, "losses": losses,
                        "parameters": n_params, "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30
                        if device.type == "cuda" else None}
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if "losses" in res.get("mamba_ssm", {}):
        d = max(abs(p - q) for p, q in zip(res["chunked"]["losses"], res["mamba_ssm"]["losses"]))
        res["max_loss_diff"] = d
        res["speed_up_mamba_ssm"] = res["chunked"]["seconds"] / res["mamba_ssm"]["seconds"]
        res["ok"] = d < LOSS_TOL
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here (rank 0)")
    p.add_argument("--steps", type=int, default=8, help="optimiser steps of the DDP comparison")
    p.add_argument("--batch-size", type=int, default=8, help="global micro-batch of the DDP comparison")
    p.add_argument("--epoch-samples", type=int, default=256, help="samples of the paper-preset epoch")
    p.add_argument("--skip-backends", action="store_true", help="only the DDP check")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cpu: a smoke run of this script with gloo (no GPU needed; the numbers mean nothing)")
    args = p.parse_args(argv)

    import torch

    from spec2vol_bids.train.distributed import init_distributed, launched_by_torchrun

    if args.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device: run this on a GPU machine"}))
        return 1
    if not launched_by_torchrun():
        print(json.dumps({"error": "start it with torchrun: PYTHONPATH=. torchrun --standalone --nproc-per-node 1 "
                                   "benchmarks/gpu_ddp_check.py"}))
        return 64
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 arithmetic: the comparisons are of fp32 runs
    torch.backends.cudnn.allow_tf32 = False
    dist = init_distributed(args.device)
    device = dist.device(args.device)
    try:
        report = {"command": " ".join(sys.argv), "host": platform.node(), "torch": torch.__version__,
                  "cuda": torch.version.cuda,
                  "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                  "rank": dist.rank, "ddp": check_ddp(dist, device, steps=args.steps, batch=args.batch_size,
                                                      accumulation=2)}
        if dist.is_main and not args.skip_backends:
            report["scan_backends"] = check_backends(device, epoch_samples=args.epoch_samples)
        dist.barrier()
    finally:
        dist.shutdown()
    if not dist.is_main:
        return 0
    ok = report["ddp"].get("ok", True) and report.get("scan_backends", {}).get("ok", True)
    report["ok"] = bool(ok)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "4")
    sys.exit(main())
