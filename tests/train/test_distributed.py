"""Data-parallel training under torchrun (gloo, CPU): 2 processes train the weights 1 process trains, a kill of
one rank + ``--resume`` ends at the same weights, and how a micro-batch is dealt out to the processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from spec2vol_bids.errors import UsageError
from spec2vol_bids.train import data as D
from spec2vol_bids.train import loop as L
from spec2vol_bids.train.checkpoint import RESUME_FORMAT, load_checkpoint
from spec2vol_bids.train.distributed import SINGLE, DistContext, init_distributed
from spec2vol_bids.train.splits import make_folds

from .conftest import make_derivatives

# 14 training pairs, micro-batches of 3 (3, 3, 3, 3, 2: processes hold 2 and 1 samples), 2 per optimiser step
ARGS = ["--model", "spec2vol", "--preset", "tiny", "--cv", "split", "--test-subjects", "03", "--val-subjects", "02",
        "--baselines", "none", "--batch-size", "3", "--accumulation", "2", "--warmup-steps", "2", "--seed", "7",
        "--device", "cpu", "--num-threads", "1", "--no-progress", "-q"]
FOLD = "test-03"
EPOCHS = 3


# ---------------------------------------------------------------------------------------------- unit: sharding
@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_shard_deals_every_sample_once_and_weights_give_the_global_mean(world, n):
    chunk = list(range(10, 10 + n))
    values = {i: float(i) ** 2 for i in chunk}  # a per-sample loss
    shares = [DistContext(rank=r, world_size=world, backend="gloo").shard(chunk) for r in range(world)]
    real = [items for items, f in shares if f > 0]
    assert sorted(i for items in real for i in items) == chunk  # each sample exactly once
    # DDP averages the processes' gradients: mean over ranks of factor * (mean loss of the share) == chunk mean
    ddp = sum(f * np.mean([values[i] for i in items]) for items, f in shares) / world
    assert ddp == pytest.approx(np.mean(list(values.values())), rel=1e-12)
    assert len(real) == min(n, world)
    assert all(items == chunk[:1] for items, f in shares if f == 0.0)  # an idle rank joins with weight 0
    assert SINGLE.shard(chunk) == (chunk, 1.0)


def test_init_distributed_reads_torchrun_environment():
    assert init_distributed(environ={}) is SINGLE
    assert init_distributed(environ={"WORLD_SIZE": "1", "RANK": "0"}) is SINGLE
    with pytest.raises(UsageError, match="MASTER_ADDR, MASTER_PORT not"):
        init_distributed(environ={"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    env = {"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "x", "MASTER_PORT": "1"}
    with pytest.raises(UsageError, match="RANK 2 is not in 0..1"):
        init_distributed(environ=env)
    with pytest.raises(UsageError, match="must be integers"):
        init_distributed(environ={**env, "RANK": "a"})


def test_torchrun_of_one_process_is_a_process_group_but_a_stray_world_size_is_not():
    from spec2vol_bids.train.distributed import launched_by_torchrun

    full = {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    assert launched_by_torchrun(full)
    assert not launched_by_torchrun({"WORLD_SIZE": "1"}) and not launched_by_torchrun({"WORLD_SIZE": "x"})
    assert launched_by_torchrun({"WORLD_SIZE": "2"})  # then init_distributed names what is missing
    assert not SINGLE.enabled and DistContext(world_size=1, backend="gloo").enabled


def test_each_rank_gets_its_own_random_stream_and_rank_0_keeps_the_one_process_one():
    def draws(ctx):
        torch.manual_seed(3)
        ctx.seed_rank(3)
        return torch.rand(4)

    r0 = draws(DistContext(rank=0, world_size=2, backend="gloo"))
    r1 = draws(DistContext(rank=1, world_size=2, backend="gloo"))
    assert torch.equal(r0, draws(SINGLE))  # rank 0: the stream of a one-process run
    assert not torch.equal(r0, r1)  # drop-path masks differ between ranks ...
    assert torch.equal(r1, draws(DistContext(rank=1, world_size=2, backend="gloo")))  # ... reproducibly


# ---------------------------------------------------------------------------------------------- torchrun runs
def _torchrun(derivs, out, *extra, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "spec2vol_bids", "train", str(derivs), str(out), *ARGS, "--epochs", str(EPOCHS), "--fold", FOLD,
           *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _weights(path):
    return load_checkpoint(path)["state_dict"]


def _max_diff(a, b):
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """The derivatives, one process's weights and history (in this process), and an uninterrupted 2-process run."""
    tmp = tmp_path_factory.mktemp("ddp")
    derivs = make_derivatives(tmp / "d", subjects=("01", "02", "03"), n_volumes=20)
    proc = _torchrun(derivs, tmp / "two")
    runs = D.discover_runs(derivs)
    (fold,) = make_folds([r.subject for r in runs], "split", test_subjects=["03"], val_subjects=["02"])
    cfg = L.TrainConfig(model="spec2vol", preset="tiny", epochs=EPOCHS, batch_size=3, accumulation=2,
                        warmup_steps=2, seed=7, device="cpu")
    one = L.train_fold(runs, fold, cfg, tmp / "one", progress=False)
    L.train_fold(runs, fold, L.TrainConfig(**{**cfg.to_dict(), "seed": 8}), tmp / "seed8",
                 progress=False)
    out, err = proc.communicate(timeout=1200)
    assert proc.returncode == 0, err[-3000:]
    return {"tmp": tmp, "derivs": derivs, "one": one, "one_w": _weights(tmp / "one" / "last.ckpt"),
            "seed8_w": _weights(tmp / "seed8" / "last.ckpt"), "two": tmp / "two" / "folds" / FOLD / "spec2vol",
            "stdout": out, "stderr": err}


@pytest.mark.slow
def test_two_processes_train_the_weights_of_one(ddp_run):
    two_dir = ddp_run["two"]
    w1, w2 = ddp_run["one_w"], _weights(two_dir / "last.ckpt")
    assert w1.keys() == w2.keys()
    diff = _max_diff(w1, w2)
    # the same global batches and optimiser steps: equal up to the order of floating-point sums ...
    assert diff < 1e-4, diff
    # ... while another seed lands far away (the comparison can fail)
    assert _max_diff(w1, ddp_run["seed8_w"]) > 100 * max(diff, 1e-6)
    hist = json.loads((two_dir / "history.json").read_text())
    h1 = ddp_run["one"]["history"]
    assert [h["step"] for h in hist["history"]] == [h["step"] for h in h1] == [3, 6, 9]  # optimiser steps counted once
    np.testing.assert_allclose([h["train_loss"] for h in hist["history"]], [h["train_loss"] for h in h1],
                               rtol=1e-5)  # the epoch loss is summed over both processes' samples
    np.testing.assert_allclose([h["lr"] for h in hist["history"]], [h["lr"] for h in h1], rtol=1e-12)
    ck = load_checkpoint(two_dir / "last.ckpt")
    assert ck["training"]["distributed"] == {"world_size": 2, "backend": "gloo"}
    # one voice: rank 0 prints the fold's summary line once
    assert ddp_run["stdout"].count(f"fold {FOLD} finished") == 1


def _rank_pid(root_pid: int, rank: int) -> int | None:
    """The pid of the torchrun worker with ``RANK=rank`` among ``root_pid``'s descendants (from /proc)."""
    todo, seen = [root_pid], []
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as fh:
                kids = [int(p) for p in fh.read().split()]
        except OSError:
            continue
        todo += kids
        seen += kids
    for pid in seen:
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = dict(kv.split(b"=", 1) for kv in fh.read().split(b"\0") if b"=" in kv)
        except OSError:
            continue
        if env.get(b"RANK") == str(rank).encode() and env.get(b"LOCAL_RANK") is not None:
            return pid
    return None


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank's process in /proc")
def test_kill_of_a_rank_then_resume_gives_the_same_weights(ddp_run):
    tmp, derivs = ddp_run["tmp"], ddp_run["derivs"]
    out = tmp / "killed"
    fold_dir = out / "folds" / FOLD / "spec2vol"
    proc = _torchrun(derivs, out, "--save-every", "1")
    deadline = time.monotonic() + 900
    while not (fold_dir / "resume.ckpt").exists():  # the first optimiser step is saved
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.02)
    pid = _rank_pid(proc.pid, 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # rank 1 dies; torchrun stops rank 0 and fails
    _, err = proc.communicate(timeout=600)
    assert proc.returncode != 0
    assert not (fold_dir / "last.ckpt").exists()  # killed mid-training
    step = load_checkpoint(fold_dir / "resume.ckpt", fmt=RESUME_FORMAT)["global_step"]
    assert 1 <= step < 3 * EPOCHS
    proc = _torchrun(derivs, out, "--save-every", "1", "--resume")
    _, err = proc.communicate(timeout=1200)
    assert proc.returncode == 0, err[-3000:]
    w = _weights(fold_dir / "last.ckpt")
    # the same processes resume exactly where they were: the weights of the uninterrupted 2-process run
    assert _max_diff(w, _weights(ddp_run["two"] / "last.ckpt")) < 1e-6
    assert _max_diff(w, ddp_run["one_w"]) < 1e-4
