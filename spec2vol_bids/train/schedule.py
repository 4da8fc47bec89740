"""Learning-rate schedule: linear warm-up, then cosine with hard restarts (diffusers' formula).

The multiplier of the base learning rate at optimiser step ``s`` is::

    s < W:       s / W
    otherwise:   p = (s - W) / (S - W);  0 if p >= 1  else  0.5 (1 + cos(pi * ((k p) mod 1)))

with ``W`` warm-up steps, ``S`` training steps and ``k`` cycles (diffusers
``get_cosine_with_hard_restarts_schedule_with_warmup``).

Two named variants:

``paper`` (default)
    What the paper states: ``S`` = optimiser steps of the whole run, ``k = max(1, epochs // 10)``, i.e. a restart
    every 10 epochs of optimiser steps (after the warm-up).
``official``
    What the official code effectively runs: it sets ``S`` = micro-batches per epoch x epochs, but accelerate
    steps the scheduler only on optimiser steps, so with gradient accumulation ``a`` only ``1/a`` of the schedule
    runs: restarts every ``10 a`` epochs (~2.5 cycles in 50 epochs for ``a = 2``) and the LR ends near half its
    base value.
"""

from __future__ import annotations

import math

from ..errors import UsageError

__all__ = ["SCHEDULES", "cosine_restarts_multiplier", "LRSchedule"]

SCHEDULES = ("paper", "official", "constant")


def cosine_restarts_multiplier(step: int, *, warmup: int, total: int, cycles: float) -> float:
    """diffusers' cosine-with-hard-restarts multiplier with linear warm-up (see the module docstring)."""
    if step < warmup:
        return float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    if progress >= 1.0:
        return 0.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((float(cycles) * progress) % 1.0))))


class LRSchedule:
    """Sets the learning rate of an optimiser at each optimiser step; its state is one integer.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
    base_lr : float
    kind : {'paper', 'official', 'constant'}
    epochs, steps_per_epoch, micro_batches_per_epoch : int
        ``steps_per_epoch`` counts optimiser steps, ``micro_batches_per_epoch`` forward passes.
    warmup : int
        Warm-up optimiser steps (50 in the paper).
    restart_every : int
        Epochs per cosine cycle (10 in the paper).
    """

    def __init__(self, optimizer, base_lr: float, *, kind: str = "paper", epochs: int, steps_per_epoch: int,
                 micro_batches_per_epoch: int, warmup: int = 50, restart_every: int = 10):
        if kind not in SCHEDULES:
            raise UsageError(f"unknown --schedule {kind!r}", hint=f"choose one of {', '.join(SCHEDULES)}")
        self.optimizer = optimizer
        self.base_lr = float(base_lr)
        self.kind = kind
        self.warmup = int(warmup)
        self.cycles = max(1, int(epochs) // int(restart_every))
        if kind == "official":
            self.total = int(micro_batches_per_epoch) * int(epochs)
        else:
            self.total = int(steps_per_epoch) * int(epochs)
        self.step_count = 0
        self._apply()

    def multiplier(self, step: int) -> float:
        if self.kind == "constant":
            return 1.0
        return cosine_restarts_multiplier(step, warmup=self.warmup, total=self.total, cycles=self.cycles)

    def lr_at(self, step: int) -> float:
        """Learning rate used by the optimiser step that follows ``step`` completed steps."""
        return self.base_lr * self.multiplier(step)

    def _apply(self) -> None:
        lr = self.lr_at(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self) -> None:
        """Call after each optimiser step."""
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> float:
        return self.lr_at(self.step_count)

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "kind": self.kind, "total": self.total, "cycles": self.cycles,
                "warmup": self.warmup, "base_lr": self.base_lr}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self._apply()

    def describe(self) -> dict:
        return {"kind": self.kind, "warmup_steps": self.warmup, "training_steps": self.total,
                "cycles": self.cycles, "base_lr": self.base_lr}
