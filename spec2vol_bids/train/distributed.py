"""Data-parallel training over several processes (``torchrun``): one context object, no scheduler of our own.

``torchrun --nproc-per-node N -m spec2vol_bids train ...`` starts ``N`` copies of the command with ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`init_distributed` reads them and
joins the process group (``nccl`` on CUDA, ``gloo`` on the CPU). Without them it returns :data:`SINGLE`, the
one-process context, whose collectives do nothing, so the training loop has one code path.

How one optimiser step is shared (what :meth:`DistContext.shard` implements):

* the **global** micro-batches are those of one process: the seeded epoch order
  (:func:`spec2vol_bids.train.loop.epoch_order`) cut into chunks of ``--batch-size`` samples, ``--accumulation``
  chunks per optimiser step; so the global batch of an optimiser step is ``batch_size x accumulation`` samples,
  whatever the number of processes;
* each chunk is dealt out like ``torch.utils.data.DistributedSampler`` deals a dataset: rank ``r`` takes the
  chunk's samples ``r, r + N, r + 2N, ...`` (its per-process micro-batch holds ``batch_size / N`` samples);
* each process scales its micro-batch's mean loss by ``n_r / n`` (its share of the chunk's ``n`` samples) times
  ``N`` (DistributedDataParallel *averages* the gradients over the ``N`` processes) and divides by the
  accumulation count, as one process does. The all-reduced gradient is then the one-process gradient, up to the
  order of floating-point sums, because the losses are means over samples;
* a process whose share of a chunk is empty (a last chunk smaller than ``N``) runs the chunk's first sample with
  weight 0, so that every process joins every gradient all-reduce.

Random layers (the drop-path of the paper preset) draw their masks from each rank's own stream
(:meth:`DistContext.seed_rank`; rank 0 keeps the one-process stream, ``resume.ckpt`` keeps every rank's state): a
run of N processes then equals the one-process run in distribution, not bit for bit. Models without random
layers (the tiny preset) train the same weights up to floating-point sums.

The learning-rate schedule, ``save_every``, the resume position and the history count global micro-batches and
optimiser steps, so they are the same for any number of processes; a run can be resumed with another number of
processes (the weights then agree within floating-point tolerance instead of bit for bit).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import inspect
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DataError, UsageError

logger = logging.getLogger("spec2vol_bids.train")

__all__ = ["DistContext", "SINGLE", "init_distributed", "launched_by_torchrun", "digest"]

#: the environment torchrun (and ``torch.distributed.launch``, SLURM wrappers that mimic it) sets for each process
ENV_KEYS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel run (:data:`SINGLE`: the only process).

    Attributes
    ----------
    rank, world_size, local_rank : int
        Global rank, number of processes, rank on this machine (selects the GPU).
    backend : str or None
        ``'gloo'`` or ``'nccl'``; ``None`` for one process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """True in a process group started by torchrun (also of one process: DDP then all-reduces over one)."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files (checkpoints, metrics, reports)."""
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        """What the outputs record about the run's processes."""
        return {"world_size": self.world_size, "backend": self.backend or "none"}

    # ----------------------------------------------------------------------------------------- devices, models
    def device(self, requested: str = "auto"):
        """The torch device of this process: ``cuda:LOCAL_RANK`` on GPUs, else the CPU.

        Raises
        ------
        UsageError
            ``--device cuda`` without a GPU, or more processes on this machine than GPUs.
        """
        import torch

        from ..utils import resolve_device

        dev = resolve_device(requested)
        if dev != "cuda":
            return torch.device(dev)
        n = torch.cuda.device_count()
        if self.local_rank >= n:
            raise UsageError(f"process {self.local_rank} of this machine has no GPU: the machine has {n}",
                             hint="start at most one process per GPU (torchrun --nproc-per-node)")
        return torch.device("cuda", self.local_rank)

    def wrap(self, model, device):
        """``model`` in :class:`torch.nn.parallel.DistributedDataParallel` (itself outside a process group).

        Buffers are not re-broadcast at every forward (``forward_sync_buffers=False``, ``broadcast_buffers=False``
        before torch 2.13): the only buffers of the models are the training statistics, which every rank computes
        from the same data and :meth:`check_same` compares.
        """
        if not self.enabled:
            return model
        import warnings

        from torch.nn.parallel import DistributedDataParallel

        # the 1-channel depthwise kernels' gradients come with other strides on their size-1 axes: the same
        # memory, copied into the bucket either way (a warning per step otherwise)
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")

        ids = [device.index] if device.type == "cuda" else None
        # torch >= 2.13 spells "no buffer broadcast at each forward" forward_sync_buffers (broadcast_buffers warns)
        no_sync = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})
        return DistributedDataParallel(model, device_ids=ids, output_device=device.index if ids else None,
                                       **no_sync)

    @staticmethod
    def no_sync(model, skip: bool):
        """A context in which ``model``'s backward does not all-reduce (the micro-batches of an optimiser step
        before its last one) when ``skip``; a null context otherwise or for a model not wrapped."""
        if skip and hasattr(model, "no_sync"):
            return model.no_sync()
        return contextlib.nullcontext()

    # ----------------------------------------------------------------------------------------- data
    def shard(self, chunk: Sequence[int]) -> tuple[list[int], float]:
        """This process's share of a global micro-batch and the factor its mean loss is multiplied by.

        Returns ``(items, factor)``: ``chunk[rank::world_size]`` and ``len(items) * world_size / len(chunk)``;
        for an empty share, ``([chunk[0]], 0.0)`` (see the module docstring). For one process: ``(chunk, 1.0)``.
        """
        items = [int(i) for i in chunk]
        if not self.enabled:
            return items, 1.0
        mine = items[self.rank::self.world_size]
        if not mine:
            return items[:1], 0.0
        return mine, len(mine) * self.world_size / len(items)

    # ----------------------------------------------------------------------------------------- collectives
    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over the processes (float64; the values themselves for one process)."""
        if not self.enabled:
            return [float(v) for v in values]
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return [float(v) for v in t.cpu().tolist()]

    def gather_objects(self, obj: Any) -> list[Any]:
        """``obj`` of every process, by rank (``[obj]`` for one process)."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, obj)
        return values

    def seed_rank(self, seed: int) -> None:
        """Give ranks other than 0 their own random stream (drop-path masks), derived from ``seed`` and the rank;
        rank 0 keeps the stream of a one-process run. Nothing for one process."""
        if self.enabled and self.rank > 0:
            import torch

            torch.manual_seed((int(seed) * 1_000_003 + 7919 * self.rank) % (2**63 - 1))

    def barrier(self) -> None:
        """Wait for every process (nothing for one process)."""
        if self.enabled:
            import torch.distributed as dist

            if self.backend == "nccl":
                dist.barrier(device_ids=[self.local_rank])
            else:
                dist.barrier()

    def check_same(self, value: str, what: str, *, hint: str | None = None) -> None:
        """Refuse a run whose processes disagree on ``value`` (a digest of what they read).

        Raises
        ------
        DataError
            On every process, naming the ranks that differ from rank 0.
        """
        if not self.enabled:
            return
        values = self.gather_objects(str(value))
        odd = [r for r, v in enumerate(values) if v != values[0]]
        if odd:
            raise DataError(f"the processes of this run read different {what}: rank(s) "
                            f"{', '.join(map(str, odd))} differ from rank 0",
                            hint=hint or "every process must read the same DERIV_DIR (a shared file system on a "
                                         "cluster) with the same arguments")

    def _collective_device(self):
        import torch

        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def shutdown(self) -> None:
        """Leave the process group (nothing for one process)."""
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


#: the context of a run in one process
SINGLE = DistContext()


def launched_by_torchrun(environ=None) -> bool:
    """True when the environment says this process is one of a torchrun group: ``WORLD_SIZE`` above 1, or 1
    with every variable torchrun sets (``torchrun --nproc-per-node 1``); a lone stray ``WORLD_SIZE=1`` is not."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "0") or 0)
    except ValueError:
        return False
    return world > 1 or (world == 1 and all(k in env for k in ENV_KEYS))


def init_distributed(device: str = "auto", *, timeout_s: float | None = None, environ=None) -> DistContext:
    """Join the process group that torchrun described in the environment, or return :data:`SINGLE` (no torchrun:
    a plain one-process run, no process group).

    Parameters
    ----------
    device : str
        The ``--device`` choice: the backend is ``nccl`` when it resolves to CUDA, ``gloo`` otherwise.
    timeout_s : float, optional
        Collective timeout (torch's default otherwise).

    Raises
    ------
    UsageError
        Incomplete or malformed torchrun variables (one line naming them).
    """
    env = os.environ if environ is None else environ
    if not launched_by_torchrun(env):
        return SINGLE
    missing = [k for k in ENV_KEYS if k not in env]
    if missing:
        raise UsageError(f"WORLD_SIZE is set but {', '.join(missing)} not",
                         hint="start several processes with torchrun (python -m torch.distributed.run), which "
                              "sets them all")
    try:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    except ValueError:
        raise UsageError("RANK, LOCAL_RANK and WORLD_SIZE must be integers",
                         hint="start the processes with torchrun") from None
    if not 0 <= rank < world:
        raise UsageError(f"RANK {rank} is not in 0..{world - 1}", hint="start the processes with torchrun")
    import torch
    import torch.distributed as dist

    from ..utils import resolve_device

    backend = "nccl" if resolve_device(device) == "cuda" else "gloo"
    ctx = DistContext(rank=rank, world_size=world, local_rank=local, backend=backend)
    if backend == "nccl":
        torch.cuda.set_device(ctx.device(device))
    kwargs = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world, **kwargs)
    logger.debug("process %d of %d joined the %s process group", rank, world, backend)
    return ctx


def digest(*objects: Any) -> str:
    """A SHA-256 of NumPy arrays, tensors and plain containers (to compare what the processes computed)."""
    import numpy as np

    h = hashlib.sha256()

    def feed(obj):
        if hasattr(obj, "detach"):
            obj = obj.detach().cpu().numpy()
        if isinstance(obj, np.ndarray):
            a = np.ascontiguousarray(obj)
            h.update(f"A{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        elif isinstance(obj, dict):
            h.update(b"D")
            for k in sorted(obj, key=str):
                h.update(str(k).encode())
                feed(obj[k])
        elif isinstance(obj, (list, tuple)):
            h.update(f"L{len(obj)}".encode())
            for v in obj:
                feed(v)
        else:
            h.update(repr(obj).encode())

    for o in objects:
        feed(o)
    return h.hexdigest()
