"""Training and evaluation of one model on one cross-validation fold.

Optimisation as published (reference-implementation notes §1.3): AdamW (lr 1e-3, weight decay 1e-2 on every
parameter, betas 0.9/0.999), micro-batches of 16 with gradient accumulation 2 (loss divided by the accumulation
count, as accelerate does), gradient-norm clipping at 1.0 on optimiser steps only (the official code also clipped
on micro-steps), fp32, 50-step linear warm-up then cosine with hard restarts (:mod:`.schedule`), 50 epochs.

Differences from the official code, each for a reason:

* seeded: the weight initialisation (``seed``) and the data order (epoch ``e`` uses the permutation of a
  generator seeded with ``seed`` and ``e``) are reproducible, and resuming needs no replay of earlier epochs;
* evaluation per epoch on the fold's **validation** subject(s); the best epoch is chosen on them (SSIM for the
  published network, dynamic correlation for the global-read-out variants), never on the test subjects unless
  ``select_on='test'`` (the paper's protocol, labelled in every output). Both the last-epoch and the selected
  checkpoint are evaluated on the test subjects;
* the loss is the model's own (``loss='auto'``): the paper's SSIM + MSE for the published network, and for the
  variants of :mod:`spec2vol_bids.model.variants` the MSE of each run's deviations from its own mean volume,
  relative to their variance (``demeaned-mse``; see :func:`spec2vol_bids.train.losses.demeaned_mse_loss`). Models
  that predict a deviation from the training-mean volume get that volume before the first step;
* resumable: ``resume.ckpt`` (model, optimiser, schedule, RNG state, data position, history) is written
  atomically at every epoch end and every ``save_every`` optimiser steps; ``resume=True`` continues from it to
  the same final weights as an uninterrupted run (CPU, same seed);
* data-parallel over processes (``torchrun``, ``dist``): the global micro-batches and optimiser steps are those
  of one process, each process computes the gradient of its share of every micro-batch, DistributedDataParallel
  all-reduces them, and only rank 0 writes files (:mod:`.distributed`).

Closed-form baselines (``closed_form = True``: ridge, mean volume) are fitted once and evaluated the same way.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError, UsageError
from ..utils import resolve_device, seed_everything, versions, write_json
from . import metrics as M
from .checkpoint import RESUME_FORMAT, load_checkpoint, save_checkpoint
from .data import PairDataset, compute_scaling, input_statistics, target_statistics
from .distributed import SINGLE, DistContext, digest
from .losses import SSIMMSELoss, demeaned_mse_loss
from .schedule import LRSchedule
from .splits import Fold

logger = logging.getLogger("spec2vol_bids.train")

__all__ = ["TrainConfig", "build_for_data", "evaluate", "train_fold"]


@dataclass
class TrainConfig:
    """Settings of one training run (recorded in every checkpoint and in ``config.toml``).

    The optimisation defaults are the paper's (reference-implementation notes §1.3); the model is the product's
    default, the published encoder with a low-rank global read-out (``spec2vol-lowrank``; ``'spec2vol'`` is the
    published network).
    """

    model: str = "spec2vol-lowrank"
    preset: str = "paper"
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 50
    batch_size: int = 16
    accumulation: int = 2
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 50
    restart_every: int = 10
    schedule: str = "paper"
    clip_grad_norm: float = 1.0
    seed: int = 42
    device: str = "auto"
    eval_batch_size: int = 16
    save_every: int = 0
    num_workers: int = 0
    normalization: str = "train-minmax"
    select_metric: str = "auto"
    loss: str = "auto"

    def __post_init__(self):
        for name in ("epochs", "batch_size", "accumulation", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if self.select_metric not in SELECT_METRICS:
            raise UsageError(f"unknown selection metric {self.select_metric!r}", hint=", ".join(SELECT_METRICS))
        if self.loss not in LOSSES:
            raise UsageError(f"unknown loss {self.loss!r}", hint=", ".join(LOSSES))

    def to_dict(self) -> dict:
        return asdict(self)

    def resolved(self, model=None) -> TrainConfig:
        """A copy with ``loss`` and ``select_metric`` set to the model's defaults where they are ``'auto'``
        (:func:`model_defaults`)."""
        defaults = model_defaults(self.model, model)
        return replace(self, loss=defaults["loss"] if self.loss == "auto" else self.loss,
                       select_metric=defaults["select_metric"] if self.select_metric == "auto"
                       else self.select_metric)


#: training losses: the model's own (auto), the paper's, or MSE of the per-run deviations (see losses.py)
LOSSES = ("auto", "ssim+mse", "demeaned-mse")
#: what the checkpoint selection maximises on the selection subjects (auto: the model's own)
SELECT_METRICS = ("auto", "ssim", "dyncorr", "loss")


def model_defaults(name: str, model=None) -> dict[str, str]:
    """The loss and selection metric a model trains with by default.

    Models that predict a deviation from the training-mean volume (``needs_mean_volume``: the global-read-out
    variants) learn the dynamics: ``demeaned-mse`` and selection on dynamic correlation. Every other model (the
    published network, E2fNet) keeps the paper's SSIM + MSE and SSIM.
    """
    if model is None:
        from ..model.registry import model_class_attribute

        global_path = bool(model_class_attribute(name, "needs_mean_volume", False))
    else:
        global_path = bool(getattr(model, "needs_mean_volume", False))
    if global_path:
        return {"loss": "demeaned-mse", "select_metric": "dyncorr"}
    return {"loss": "ssim+mse", "select_metric": "ssim"}


def build_for_data(name: str, shapes, *, preset: str | None = None, model_kwargs: dict | None = None):
    """Build a registered model for the data's shapes ``((W, C, F), (D, X, Y))``."""
    from ..model.registry import build_model

    (n_windows, n_ch, n_freqs), (n_slices, gx, gy) = shapes
    if gx != gy:
        raise DataError(f"the target grid is {gx} x {gy} in-plane; the models need a square grid",
                        hint="resize the targets to 64 x 64 (BIDS-App --bold-resize dct)")
    kwargs = dict(n_windows=n_windows, n_electrodes=n_ch, n_freqs=n_freqs, n_slices=n_slices)
    kwargs.update(model_kwargs or {})
    kwargs.setdefault("grid", gx)
    return build_model(name, preset=preset, **kwargs)  # builders without presets (ridge, mean) drop it


def _model_kwargs(model) -> dict:
    kw = dict(getattr(model, "config", {}) or {})
    if "scan_backend" in kw:
        kw["scan_backend"] = None  # chosen at load time (CUDA kernel when available)
    return kw


# --------------------------------------------------------------------------------------------------- batches
def _stack(ds: PairDataset, items: Sequence[int]):
    xs, ys = zip(*(ds[int(i)] for i in items))
    return torch.stack(xs), torch.stack(ys)  # [b, W, C, F], [b, D, X, Y]


def _batches(ds: PairDataset, batch_size: int, order: Sequence[int] | None = None):
    order = range(len(ds)) if order is None else order
    for s in range(0, len(order), batch_size):
        yield _stack(ds, order[s:s + batch_size])


def _collate(items):
    xs, ys = zip(*items)
    return torch.stack(xs), torch.stack(ys)


def _train_batches(ds: PairDataset, chunks: Sequence[Sequence[int]], num_workers: int):
    """Micro-batches of ``chunks`` in order; with ``num_workers`` > 0 read ahead by DataLoader workers (each
    opens its own h5 and cache handles). The order, hence the result, does not depend on ``num_workers``."""
    if num_workers <= 0:
        for c in chunks:
            yield _stack(ds, c)
        return
    from torch.utils.data import DataLoader

    yield from DataLoader(ds, batch_sampler=[list(c) for c in chunks], num_workers=num_workers,
                          collate_fn=_collate)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled sample order of ``epoch`` (independent of everything but ``seed`` and ``epoch``)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g).tolist()


# --------------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model, ds: PairDataset | None, *, device=None, batch_size: int = 16, progress: bool = False,
             desc: str = "eval", example: bool = False) -> dict[str, Any] | None:
    """Loss, SSIM, PSNR (means over samples) and dynamic correlation (mean over runs) of ``model`` on ``ds``.

    Each run is scored with :class:`spec2vol_bids.train.metrics.RunMetrics` over its pairs in time order (the
    dynamic correlation inside the run's brain mask when the derivatives provide one).

    Returns
    -------
    dict or None
        ``loss``, ``ssim``, ``psnr``, ``dyncorr``, ``n_samples``, ``n_runs``, ``subjects`` and, with
        ``example``, ``example`` = ``{"pred", "target"}`` arrays ``[D, X, Y]`` of the middle pair of the first run.
        ``None`` when ``ds`` is empty.
    """
    from tqdm.auto import tqdm

    if ds is None or len(ds) == 0:
        return None
    device = device or next(iter(model.parameters()), torch.zeros(())).device
    was_training = model.training
    model.eval()
    losses, ssims, psnrs, dyn = [], [], [], []
    ex = None
    bar = tqdm(total=len(ds), desc=desc, disable=not progress, leave=False, unit="vol")
    for ri, items in ds.run_slices():
        run = ds.runs[ri]
        mask = run.mask()
        scores = None
        mid = items.start + len(items) // 2
        for s in range(items.start, items.stop, batch_size):
            idx = list(range(s, min(s + batch_size, items.stop)))
            x, y = _stack(ds, idx)
            pred = model(x.to(device)).float().cpu()  # [b, D, X, Y]
            if pred.shape != y.shape:
                raise DataError(f"the model predicts {tuple(pred.shape[1:])} volumes, the targets are "
                                f"{tuple(y.shape[1:])}", hint="train on data with the model's grid")
            if scores is None:
                scores = M.RunMetrics(tuple(y.shape[1:]))
            ps = scores.update(pred, y)  # per-volume SSIM [b]
            losses.append((0.5 * (1 - ps) + 0.5 * ((pred - y) ** 2).flatten(1).mean(1)).numpy())
            if example and ex is None and mid in idx:
                j = idx.index(mid)
                ex = {"pred": pred[j].numpy().copy(), "target": y[j].numpy().copy(), "run": run.name,
                      "pair": int(mid - items.start)}
            bar.update(len(idx))
        if scores is not None:
            ssims.append(scores.ssim_values)
            psnrs.append(scores.psnr_values)
            if scores.n >= 2:
                dyn.append(scores.dynamic_correlation(mask))
    bar.close()
    model.train(was_training)
    out = {
        "loss": float(np.mean(np.concatenate(losses))),
        "ssim": float(np.mean(np.concatenate(ssims))),
        "psnr": float(np.mean(np.concatenate(psnrs))),
        "dyncorr": float(np.nanmean(dyn)) if dyn and np.isfinite(dyn).any() else math.nan,
        "n_samples": len(ds),
        "n_runs": len(ds.runs),
        "subjects": ds.subjects,
    }
    if example:
        out["example"] = ex
    return out


def _score(res: dict | None, metric: str) -> float:
    if res is None:
        return -math.inf
    v = res[metric]
    return -v if metric == "loss" else v


def _strip(res: dict | None) -> dict | None:
    return None if res is None else {k: v for k, v in res.items() if k != "example"}


def _evaluate_splits(model, data: FoldData, cfg: TrainConfig, device, *, progress: bool = False
                     ) -> dict[str, dict | None]:
    """The fold's validation and test results of ``model`` (the test one with an example volume)."""
    return {"val": evaluate(model, data.val, device=device, batch_size=cfg.eval_batch_size),
            "test": evaluate(model, data.test, device=device, batch_size=cfg.eval_batch_size, example=True,
                             progress=progress, desc="test")}


# --------------------------------------------------------------------------------------------------- data
@dataclass
class FoldData:
    """The datasets of one fold, their EEG scaled with statistics of the training subjects (or as configured).

    Attributes
    ----------
    train, val, test : PairDataset (or None when the fold has no such subjects)
    runs : dict
        The runs of each split (``train``, ``val``, ``test``).
    scaling : dict
        :func:`~spec2vol_bids.train.scaling.compute_scaling`'s statistics.
    select_on : str
        Which split chooses the best epoch: ``val``, ``test`` (the paper's protocol) or ``last`` (none).
    """

    train: PairDataset
    val: PairDataset | None
    test: PairDataset | None
    runs: dict[str, list]
    scaling: dict
    select_on: str

    @property
    def selection(self) -> PairDataset | None:
        """The dataset the best epoch is chosen on (``None``: keep the last epoch)."""
        return {"val": self.val, "test": self.test}.get(self.select_on)

    def checkpoint_meta(self) -> dict[str, Any]:
        """What every checkpoint of the fold carries about its data (preprocessing, channels, grid, scaling)."""
        ref = self.runs["train"][0]
        return {
            "preprocessing": ref.config,
            "channels": list(ref.channels),
            "frequencies": None if ref.frequencies is None else [float(f) for f in ref.frequencies],
            "grid": {"shape": [int(v) for v in ref.grid_shape], "affine": np.asarray(ref.affine).tolist()},
            "scaling": self.scaling,
            # the recording the spectrograms came from: what a live stream must match (spec2vol_bids realtime)
            "acquisition": {"sfreq": getattr(ref, "sfreq", None), "repetition_time": ref.repetition_time},
        }


def fold_data(runs: Sequence, fold: Fold, normalization: str) -> FoldData:
    """Split ``runs`` by the subjects of ``fold`` and scale them (statistics from the training subjects only,
    unless ``normalization='global-leaky'``).

    Raises
    ------
    DataError
        The fold has no training runs, or they have no pairs.
    """
    split = {"train": [r for r in runs if r.subject in fold.train], "val": [r for r in runs if r.subject in fold.val],
             "test": [r for r in runs if r.subject in fold.test]}
    if not split["train"]:
        raise DataError(f"fold {fold.name}: no training runs")
    # EEG statistics: training subjects only (default) or the official leaky min-max over everything
    scaling = compute_scaling(runs, normalization, train_subjects=list(fold.train))
    data = FoldData(train=PairDataset(split["train"], scaling),
                    val=PairDataset(split["val"], scaling) if split["val"] else None,
                    test=PairDataset(split["test"], scaling) if split["test"] else None,
                    runs=split, scaling=scaling, select_on=fold.select_on)
    if len(data.train) == 0:
        raise DataError(f"fold {fold.name}: the training runs have no pairs")
    return data


def _make_criterion(cfg: TrainConfig, stats: dict | None, train: PairDataset, device) -> Callable:
    """The training loss ``criterion(pred, y, items)`` of ``cfg.loss`` (``items``: the batch's dataset items)."""
    if cfg.loss == "demeaned-mse":
        run_means = torch.as_tensor(stats["run_means"]).to(device)  # [n_train_runs, D, X, Y]
        mean_volume = torch.as_tensor(stats["mean_volume"]).to(device)  # [D, X, Y]
        run_of = torch.as_tensor(train.index[:, 0])  # item -> run

        def criterion(pred, y, items):
            return demeaned_mse_loss(pred, y, run_means[run_of[items].to(device)], mean_volume,
                                     variance=stats["dynamic_variance"])
    else:
        ssim_mse = SSIMMSELoss()

        def criterion(pred, y, items):
            return ssim_mse(pred, y)
    return criterion


# --------------------------------------------------------------------------------------------------- checkpoints
@dataclass
class TrainState:
    """Where a gradient training run is: what ``resume.ckpt`` restores (besides the model, optimiser, schedule and
    RNG states)."""

    epoch: int = 0
    mb_pos: int = 0
    global_step: int = 0
    history: list = field(default_factory=list)
    ep_loss_sum: float = 0.0
    ep_loss_n: int = 0
    best_epoch: int | None = None
    best_score: float = -math.inf
    best_state: dict | None = None

    def consider(self, epoch: int, score: float, model) -> None:
        """Keep ``model``'s weights as the best ones if ``score`` beats the best so far."""
        if score > self.best_score:
            self.best_epoch, self.best_score = epoch, score
            self.best_state = _cpu_state(model)


class CheckpointPolicy:
    """What a fold writes and when: ``last.ckpt`` and ``best.ckpt`` (with the fold's data and training metadata),
    ``resume.ckpt`` (at every epoch end and every ``save_every`` optimiser steps), ``history.json`` and
    ``examples.npz``.

    Parameters
    ----------
    out_dir : Path
        The fold's folder (``MODEL_DIR/folds/<fold>/<model>``).
    meta : dict
        :meth:`FoldData.checkpoint_meta`.
    training_info : dict
        The ``training`` entry of the checkpoints (updated by the caller as the loss and schedule are set up).
    fingerprint : dict, optional
        What must not change across a resume (settings, fold, number of training pairs).
    dist : DistContext, optional
        Only its rank 0 writes; every rank calls the methods (:meth:`save_resume` sums the epoch's loss over
        the processes).
    """

    def __init__(self, out_dir: Path, *, meta: dict, training_info: dict, fingerprint: dict | None = None,
                 dist: DistContext = SINGLE):
        self.out_dir = Path(out_dir)
        self.meta = meta
        self.training_info = training_info
        self.fingerprint = fingerprint
        self.dist = dist
        self.resume_path = self.out_dir / "resume.ckpt"

    def write_model(self, name: str, model, model_name: str, state: dict, kind: str, epoch: int | None,
                    results: dict) -> str:
        """Write ``<name>`` (``last.ckpt`` / ``best.ckpt``) with ``state`` (rank 0); returns its path."""
        if not self.dist.is_main:
            return str(self.out_dir / name)
        payload = dict(self.meta)
        payload.update(
            model={"name": model_name, "kwargs": _model_kwargs(model)},
            state_dict=state,
            training=dict(self.training_info, checkpoint=kind, epoch=epoch),
            metrics={k: _strip(v) for k, v in results.items()},
            versions=versions(),
        )
        save_checkpoint(self.out_dir / name, payload)
        return str(self.out_dir / name)

    def save_resume(self, model, optimizer, schedule, state: TrainState) -> None:
        """Write ``resume.ckpt`` (rank 0; every rank calls it: the epoch's loss so far is summed over them)."""
        loss_sum, loss_n = self.dist.all_reduce_sum([state.ep_loss_sum, state.ep_loss_n])
        rng_states = self.dist.gather_objects(torch.get_rng_state())  # each rank's (drop-path masks)
        if not self.dist.is_main:
            return
        save_checkpoint(self.resume_path, {
            "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "rng_state": torch.get_rng_state(), "rng_states": rng_states,
            "epoch": state.epoch, "mb_pos": state.mb_pos, "global_step": state.global_step,
            "history": state.history, "ep_loss_sum": loss_sum, "ep_loss_n": int(loss_n),
            "best_epoch": state.best_epoch, "best_score": state.best_score, "best_state": state.best_state,
            "fingerprint": self.fingerprint,
        }, fmt=RESUME_FORMAT)

    def load_resume(self, model, optimizer, schedule, fold_name: str) -> TrainState | None:
        """The saved state (model, optimiser, schedule and RNG restored), or ``None`` without ``resume.ckpt``.

        Raises
        ------
        UsageError
            ``resume.ckpt`` was written with other settings or data.
        """
        if not self.resume_path.exists():
            logger.info("no %s: starting fold %s from scratch", self.resume_path, fold_name)
            return None
        st = load_checkpoint(self.resume_path, fmt=RESUME_FORMAT)
        if st["fingerprint"] != _plainify(self.fingerprint):
            raise UsageError(f"{self.resume_path} was written with different settings or data",
                             hint="resume with the same arguments, or start a new MODEL_DIR")
        model.load_state_dict(st["state_dict"])
        optimizer.load_state_dict(st["optimizer"])
        schedule.load_state_dict(st["schedule"])
        states = st.get("rng_states") or [st["rng_state"]]
        if len(states) == self.dist.world_size:
            torch.set_rng_state(states[self.dist.rank])
        else:  # resumed with another number of processes: rank 0 continues, the others start new streams
            torch.set_rng_state(st["rng_state"])
            if self.dist.rank > 0:
                self.dist.seed_rank(int(self.fingerprint["config"]["seed"]) + int(st["global_step"]))
        # the saved loss sums are over every process: rank 0 carries them on, the others restart from 0
        main = self.dist.is_main
        state = TrainState(epoch=int(st["epoch"]), mb_pos=int(st["mb_pos"]), global_step=int(st["global_step"]),
                           history=list(st["history"]), ep_loss_sum=float(st["ep_loss_sum"]) if main else 0.0,
                           ep_loss_n=int(st["ep_loss_n"]) if main else 0, best_epoch=st["best_epoch"],
                           best_score=float(st["best_score"]), best_state=st["best_state"])
        logger.info("resuming fold %s at epoch %d, step %d", fold_name, state.epoch + 1, state.global_step)
        return state

    def save_examples(self, res: dict | None, res_last: dict | None = None) -> None:
        if self.dist.is_main:
            _save_examples(self.out_dir, res, res_last)

    def write_history(self, result: dict) -> None:
        if self.dist.is_main:
            write_json(self.out_dir / "history.json", result)


def _cpu_state(model) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------------- training
class _Stop(Exception):
    """Raised by a step callback to stop training (tests simulate a kill with it)."""


def train_fold(
    runs: Sequence,
    fold: Fold,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    step_callback: Callable[[int], None] | None = None,
    data_summary: dict | None = None,
    dist: DistContext | None = None,
) -> dict[str, Any]:
    """Train (or fit) ``cfg.model`` on ``fold`` and evaluate it; write checkpoints into ``out_dir``.

    The units: :func:`fold_data` (the scaled datasets), the model and its target statistics,
    :class:`CheckpointPolicy` (what is written when), :func:`_train_epoch` (one epoch of optimiser steps),
    :func:`_select` (evaluation and best-epoch choice after each epoch) and :func:`_finish` (the final evaluation
    of the last and selected weights); closed-form baselines go through :func:`_fit_closed_form` instead.

    Parameters
    ----------
    runs : list of runs
        Every run of the experiment (:func:`spec2vol_bids.train.data.discover_runs`).
    fold : Fold
        Which subjects train, validate and test.
    cfg : TrainConfig
    out_dir : path
        Receives ``last.ckpt``, ``best.ckpt`` (when a selection set exists), ``resume.ckpt``, ``history.json``
        and ``examples.npz``.
    resume : bool
        Continue from ``out_dir/resume.ckpt`` (refused when its settings differ from ``cfg``).
    step_callback : callable, optional
        Called with the global optimiser step after each step (and after ``resume.ckpt`` is written).
    dist : DistContext, optional
        This process's place in a data-parallel run (:func:`spec2vol_bids.train.distributed.init_distributed`);
        every process calls ``train_fold`` with the same arguments, only rank 0 writes files, and every process
        returns the same result.

    Returns
    -------
    dict
        ``fold``, ``model``, ``protocol``, ``selected_epoch``, ``results`` (``last``/``best`` x ``val``/``test``
        metric dicts), ``history`` (one dict per epoch), ``scaling``, ``fit_info``, ``seconds``,
        ``checkpoints``.
    """
    t0 = time.perf_counter()
    dist = dist or SINGLE
    progress = progress and dist.is_main
    out_dir = Path(out_dir)
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    device = dist.device(cfg.device) if dist.enabled else torch.device(resolve_device(cfg.device))
    data = fold_data(runs, fold, cfg.normalization)

    seed_everything(cfg.seed)
    model = build_for_data(cfg.model, data.train.sample_shapes, preset=cfg.preset,
                           model_kwargs=cfg.model_kwargs).to(device)
    cfg = cfg.resolved(model)
    stats = None
    if getattr(model, "needs_mean_volume", False) or (cfg.loss == "demeaned-mse"
                                                     and not getattr(model, "closed_form", False)):
        stats = target_statistics(data.train)
        if getattr(model, "needs_mean_volume", False):
            model.set_target_statistics(stats["mean_volume"], math.sqrt(stats["dynamic_variance"]))
            inputs = input_statistics(data.runs["train"], data.scaling)
            model.set_input_statistics(inputs["mean"], inputs["std"])
    # every process computed the statistics from its own reading of the data: they must agree
    if dist.enabled:
        dist.check_same(digest(data.scaling, len(data.train), stats, dict(model.state_dict())), "training data")
        dist.seed_rank(cfg.seed)  # the same weights everywhere; from here on each rank its own random stream
    training_info = {
        "fold": fold.to_dict(),
        "protocol": fold.protocol,
        "seed": cfg.seed,
        "config": cfg.to_dict(),
        "device": str(device),
        "data": data_summary or {},
        "runs": {k: [r.name for r in v] for k, v in data.runs.items()},
        "n_pairs": {"train": len(data.train), "val": len(data.val or []), "test": len(data.test or [])},
        "distributed": dist.describe(),
    }
    result = {"fold": fold.name, "model": cfg.model, "protocol": fold.protocol}
    if getattr(model, "closed_form", False):
        policy = CheckpointPolicy(out_dir, meta=data.checkpoint_meta(), training_info=training_info, dist=dist)
        result.update(_fit_closed_form(model, data, cfg, device, policy))
    else:
        criterion = _make_criterion(cfg, stats, data.train, device)
        training_info["loss"] = {"name": cfg.loss, "select_metric": cfg.select_metric,
                                 "dynamic_variance": None if stats is None else stats["dynamic_variance"]}
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                      betas=(0.9, 0.999))
        micro_per_epoch = math.ceil(len(data.train) / cfg.batch_size)
        schedule = LRSchedule(optimizer, cfg.lr, kind=cfg.schedule, epochs=cfg.epochs,
                              steps_per_epoch=math.ceil(micro_per_epoch / cfg.accumulation),
                              micro_batches_per_epoch=micro_per_epoch, warmup=cfg.warmup_steps,
                              restart_every=cfg.restart_every)
        training_info["schedule"] = schedule.describe()
        # what must not change across a resume (execution-only settings may)
        fingerprint = {"config": {k: v for k, v in cfg.to_dict().items() if k not in ("num_workers", "save_every")},
                       "fold": fold.to_dict(), "n_train": len(data.train)}
        policy = CheckpointPolicy(out_dir, meta=data.checkpoint_meta(), training_info=training_info,
                                  fingerprint=fingerprint, dist=dist)
        state = (policy.load_resume(model, optimizer, schedule, fold.name) if resume else None) or TrainState()
        net = dist.wrap(model, device)  # DistributedDataParallel over the processes (the model itself for one)
        model.train()
        while state.epoch < cfg.epochs:
            _train_epoch(model, optimizer, schedule, data.train, criterion, state, cfg, device, policy,
                         label=f"{fold.name} {cfg.model}", progress=progress, step_callback=step_callback,
                         net=net, dist=dist)
            _select(model, data, cfg, device, state, log_label=f"fold {fold.name} {cfg.model}")
            state.epoch += 1
            state.mb_pos = 0
            state.ep_loss_sum, state.ep_loss_n = 0.0, 0
            policy.save_resume(model, optimizer, schedule, state)
            if step_callback is not None:
                step_callback(-state.epoch)  # negative: an epoch boundary
        result.update(_finish(model, data, cfg, device, policy, state, progress=progress))
    result["seconds"] = time.perf_counter() - t0
    result = {k: result.get(k) for k in ("fold", "model", "protocol", "selected_epoch", "results", "history",
                                         "scaling", "fit_info", "seconds", "checkpoints", "loss")}  # loss: None if closed form
    policy.write_history(result)
    return result


def _fit_closed_form(model, data: FoldData, cfg: TrainConfig, device, policy: CheckpointPolicy) -> dict[str, Any]:
    """Fit a closed-form baseline (ridge, mean volume) once, evaluate it and write ``last.ckpt``."""
    train_b = lambda: _batches(data.train, cfg.eval_batch_size)  # noqa: E731
    val_b = (lambda: _batches(data.val, cfg.eval_batch_size)) if data.val is not None else None
    fit_info = model.fit(train_b, val_b)
    res = {"val": evaluate(model, data.val, device=device, batch_size=cfg.eval_batch_size),
           "test": evaluate(model, data.test, device=device, batch_size=cfg.eval_batch_size, example=True)}
    last = policy.write_model("last.ckpt", model, cfg.model, _cpu_state(model), "last", None, res)
    policy.save_examples(res["test"])
    return {"selected_epoch": None, "results": {"last": {k: _strip(v) for k, v in res.items()},
                                                "best": {k: _strip(v) for k, v in res.items()}}, "history": [],
            "scaling": data.scaling, "fit_info": fit_info, "checkpoints": {"last": last, "best": last}}


def _train_epoch(model, optimizer, schedule, train: PairDataset, criterion, state: TrainState, cfg: TrainConfig,
                 device, policy: CheckpointPolicy, *, label: str, progress: bool,
                 step_callback: Callable[[int], None] | None, net=None, dist: DistContext = SINGLE) -> None:
    """One epoch of micro-batches from ``state.mb_pos`` on, in the epoch's seeded order, with gradient
    accumulation, clipping on optimiser steps, the schedule, and ``resume.ckpt`` every ``save_every`` steps.

    ``net`` is ``model`` wrapped for data-parallel training (:meth:`DistContext.wrap`); each process runs its
    share of every global micro-batch (:meth:`DistContext.shard`), and the gradients are all-reduced on the last
    micro-batch of each optimiser step only."""
    from tqdm.auto import tqdm

    net = model if net is None else net
    n_train = len(train)
    order = epoch_order(n_train, cfg.seed, state.epoch)
    chunks = [order[s:s + cfg.batch_size] for s in range(0, n_train, cfg.batch_size)]
    shards = [dist.shard(c) for c in chunks]  # this process's (items, loss factor) of each global micro-batch
    bar = tqdm(total=len(chunks), initial=state.mb_pos, desc=f"{label} epoch {state.epoch + 1}/{cfg.epochs}",
               disable=not progress, unit="batch", leave=False)
    t_ep = time.perf_counter()
    batches = _train_batches(train, [items for items, _ in shards[state.mb_pos:]], cfg.num_workers)
    while state.mb_pos < len(chunks):
        x, y = next(batches)
        items, factor = shards[state.mb_pos]
        steps_here = (state.mb_pos + 1) % cfg.accumulation == 0 or state.mb_pos + 1 == len(chunks)
        with dist.no_sync(net, skip=not steps_here):  # all-reduce on the optimiser step's last micro-batch
            pred = net(x.to(device))  # [b, D, X, Y]
            loss = criterion(pred, y.to(device), torch.as_tensor(items))
            ((loss if factor == 1.0 else loss * factor) / cfg.accumulation).backward()
        n_real = len(items) if factor > 0 else 0
        state.ep_loss_sum += float(loss.detach()) * n_real
        state.ep_loss_n += n_real
        state.mb_pos += 1
        bar.update(1)
        if state.mb_pos % cfg.accumulation == 0 or state.mb_pos == len(chunks):
            if cfg.clip_grad_norm and cfg.clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            state.global_step += 1
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", lr=f"{schedule.get_last_lr():.2e}")
            if cfg.save_every and state.global_step % cfg.save_every == 0 and state.mb_pos < len(chunks):
                policy.save_resume(model, optimizer, schedule, state)
            if step_callback is not None:
                step_callback(state.global_step)
    bar.close()
    loss_sum, loss_n = dist.all_reduce_sum([state.ep_loss_sum, state.ep_loss_n])  # over the processes
    # train_seconds: the optimisation of this epoch (of its resumed part) alone, what a throughput is made of
    state.history.append({"epoch": state.epoch + 1, "step": state.global_step, "lr": schedule.get_last_lr(),
                          "train_loss": loss_sum / max(1, loss_n), "seconds": t_ep,
                          "train_seconds": time.perf_counter() - t_ep})


def _select(model, data: FoldData, cfg: TrainConfig, device, state: TrainState, *, log_label: str) -> None:
    """Evaluate the epoch just trained on the validation subjects (and, with ``select_on='test'``, the test
    subjects), complete its history record, and keep its weights if they are the best on the selection split."""
    record = state.history[-1]
    t_ep = record.pop("seconds")
    val_res = evaluate(model, data.val, device=device, batch_size=cfg.eval_batch_size)
    sel_res = val_res if data.select_on == "val" else (
        evaluate(model, data.test, device=device, batch_size=cfg.eval_batch_size)
        if data.select_on == "test" else None)
    record["val"] = val_res
    record["seconds"] = time.perf_counter() - t_ep
    if data.select_on == "test":
        record["test_selection"] = sel_res
    if data.selection is not None and sel_res is not None:
        state.consider(state.epoch + 1, _score(sel_res, cfg.select_metric), model)
    logger.info("%s epoch %d: train loss %.4f%s", log_label, state.epoch + 1, record["train_loss"],
                "" if val_res is None else f", val SSIM {val_res['ssim']:.4f} dyn r {val_res['dyncorr']:.4f}")


def _finish(model, data: FoldData, cfg: TrainConfig, device, policy: CheckpointPolicy, state: TrainState, *,
            progress: bool) -> dict[str, Any]:
    """Evaluate the last weights and the selected ones on the validation and test subjects; write ``last.ckpt``,
    ``best.ckpt`` (when an epoch was selected) and ``examples.npz``."""
    last_state = _cpu_state(model)
    res_last = _evaluate_splits(model, data, cfg, device, progress=progress)
    ckpts = {"last": policy.write_model("last.ckpt", model, cfg.model, last_state, "last", cfg.epochs, res_last)}
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
        res_best = {"val": evaluate(model, data.val, device=device, batch_size=cfg.eval_batch_size),
                    "test": evaluate(model, data.test, device=device, batch_size=cfg.eval_batch_size, example=True)}
        ckpts["best"] = policy.write_model("best.ckpt", model, cfg.model, state.best_state, "best",
                                           state.best_epoch, res_best)
        model.load_state_dict(last_state)
    else:
        res_best = res_last
        ckpts["best"] = ckpts["last"]
    policy.save_examples(res_best["test"], res_last["test"])
    return {"selected_epoch": state.best_epoch if state.best_state is not None else cfg.epochs,
            "results": {"last": {k: _strip(v) for k, v in res_last.items()},
                        "best": {k: _strip(v) for k, v in res_best.items()}},
            "history": state.history, "scaling": data.scaling, "fit_info": None, "checkpoints": ckpts,
            "loss": cfg.loss}


def _save_examples(out_dir: Path, res: dict | None, res_last: dict | None = None) -> None:
    from ..utils import atomic_path

    if res is None or res.get("example") is None:
        return
    arrays = {"pred": res["example"]["pred"], "target": res["example"]["target"]}
    if res_last is not None and res_last.get("example") is not None:
        arrays["pred_last"] = res_last["example"]["pred"]
    with atomic_path(out_dir / "examples.npz") as tmp:
        np.savez_compressed(tmp, run=np.array(res["example"]["run"]), pair=np.array(res["example"]["pair"]),
                            **arrays)


def _plainify(obj):
    from .checkpoint import to_plain

    return to_plain(copy.deepcopy(obj))
