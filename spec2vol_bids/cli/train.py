"""``spec2vol_bids train``: cross-validated training on participant-level derivatives, with baselines.

Reads the BIDS-App's ``*_desc-stft_spectrogram.h5`` / ``*_desc-target_bold.nii.gz`` pairs (or the official code's
per-subject h5 files with ``--official-h5``), trains the chosen model and the baselines on every fold, and writes
into MODEL_DIR::

    config.toml                  every setting, the seed, the command line and the software versions
    folds/<fold>/<model>/        last.ckpt, best.ckpt, resume.ckpt, history.json, examples.npz
    metrics.tsv, metrics.json    per fold, model, checkpoint (last / best-on-validation) and split
    metrics_summary.tsv          mean +- std over folds, baselines next to the model
    learning_curves.png          training loss and validation SSIM / dynamic correlation per epoch
    report.html                  tables, curves and example slices (predicted vs measured vs baseline)
    model.ckpt                   the model for ``spec2vol_bids BIDS_DIR OUT_DIR participant --model``

Beyond one process:

* ``torchrun --nproc-per-node N -m spec2vol_bids train ...`` (and ``--nnodes`` across machines) trains each model
  with DistributedDataParallel (:mod:`spec2vol_bids.train.distributed`): ``--batch-size`` x ``--accumulation`` is
  the global batch of an optimiser step whatever ``N`` is, each process computing ``--batch-size / N`` samples
  of every micro-batch; rank 0 writes every file;
* ``--fold K`` trains one fold only (a cluster array job per fold), and ``spec2vol_bids train collect
  MODEL_DIR`` then writes the tables, the report and ``model.ckpt`` of the whole experiment.

Heavy imports (torch, the data and training modules) happen inside :func:`run`, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .argtypes import nonnegative_int, positive_float, positive_int

#: kept here so that --help does not import torch (tests check it against the registry)
MODEL_CHOICES = ("spec2vol-lowrank", "spec2vol-xattn", "spec2vol-refine", "spec2vol", "e2fnet", "ridge", "mean")
#: the model `train` trains without --model: the published encoder with a low-rank global read-out
DEFAULT_MODEL = "spec2vol-lowrank"
CV_CHOICES = ("loso", "split", "none")
NORMALIZATION_CHOICES = ("train-minmax", "global-leaky", "none")
SCHEDULE_CHOICES = ("paper", "official", "constant")
SELECT_CHOICES = ("val", "test", "last")

logger = logging.getLogger("spec2vol_bids.train")

#: the first argument that selects the merge of ``--fold`` runs instead of training
COLLECT = "collect"


class _TrainParser(argparse.ArgumentParser):
    """``spec2vol_bids train DERIV_DIR MODEL_DIR ...`` or, with ``collect`` first, ``spec2vol_bids train collect
    MODEL_DIR`` (a DERIV_DIR literally named ``collect`` is written ``./collect``)."""

    def parse_args(self, args=None, namespace=None):  # noqa: D102
        args = list(sys.argv[1:] if args is None else args)
        if args and args[0] == COLLECT:
            ns = build_collect_parser(f"{self.prog} {COLLECT}").parse_args(args[1:], namespace)
            ns.command = COLLECT
            return ns
        ns = super().parse_args(args, namespace)
        ns.command = "train"
        return ns


def build_collect_parser(prog: str = "spec2vol_bids train collect") -> argparse.ArgumentParser:
    """Command-line parser of ``spec2vol_bids train collect``."""
    from .main import add_verbosity_options

    p = argparse.ArgumentParser(
        prog=prog,
        description="Merge the folds trained one at a time (`spec2vol_bids train DERIV_DIR MODEL_DIR --fold K`, "
                    "e.g. one cluster array job per fold) into the tables, the report and model.ckpt that one "
                    "run of every fold writes. Every fold must have finished, with the same arguments.",
        epilog="Exit codes: 0 done, 66 a fold has not run or not finished, 65 the folds differ in settings or "
               "data, 73 MODEL_DIR already holds a whole experiment.",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", type=Path, help="the MODEL_DIR of the --fold runs")
    add_verbosity_options(p)
    return p


def build_parser(prog: str = "spec2vol_bids train") -> argparse.ArgumentParser:
    """Command-line parser of ``spec2vol_bids train`` (``collect`` first: :func:`build_collect_parser`)."""
    from .main import add_verbosity_options

    p = _TrainParser(
        prog=prog,
        description="Train and cross-validate an EEG-to-fMRI model on the participant-level derivatives of "
                    "spec2vol-bids, next to the E2fNet / ridge / mean-volume baselines, with leak-free "
                    "validation and safe, resumable checkpoints.",
        epilog="Defaults reproduce the paper's optimisation (AdamW 1e-3, wd 1e-2, 16 x 2 accumulation, 50-step "
               "warm-up, cosine restarts every 10 epochs, 50 epochs) with a leak-free protocol: EEG statistics "
               "from the training subjects only and checkpoint selection on a validation subject. "
               "`--normalization global-leaky --select-on test --schedule official` reproduces the official "
               "code's protocol (labelled as such in every output). "
               "Several processes: `torchrun --nproc-per-node N -m spec2vol_bids train ...` (DDP; the global "
               "batch stays --batch-size x --accumulation). One fold per job: --fold K, then "
               "`spec2vol_bids train collect MODEL_DIR`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("deriv_dir", metavar="DERIV_DIR", type=Path,
                   help="OUT_DIR of `spec2vol_bids BIDS_DIR OUT_DIR participant` (not read with --official-h5)")
    p.add_argument("model_dir", metavar="MODEL_DIR", type=Path, help="where checkpoints, metrics and reports go")
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=MODEL_CHOICES, default=DEFAULT_MODEL,
                   help="the model to train: spec2vol-lowrank (default) is the published encoder with a low-rank "
                        "read-out to every voxel, which learns the EEG-driven dynamics; spec2vol is the published "
                        "network exactly (for reproducing the paper: it learns the mean image, see the FAQ); "
                        "spec2vol-xattn and spec2vol-refine are the other read-outs of the ablation")
    g.add_argument("--preset", choices=("paper", "tiny"), default="paper",
                   help="network size (spec2vol, e2fnet): the published one or a small one for CPUs and demos")
    g.add_argument("--baselines", nargs="*", default=["mean", "ridge"], metavar="NAME",
                   help="baselines trained on the same folds (any model name, e.g. spec2vol e2fnet ridge mean; none: no "
                        "baseline)")
    g = p.add_argument_group("protocol")
    g.add_argument("--cv", choices=CV_CHOICES, default="loso",
                   help="leave-one-subject-out, a fixed split (--test-subjects), or no test set")
    g.add_argument("--test-subjects", nargs="+", default=None, metavar="LABEL", help="test subjects of --cv split")
    g.add_argument("--val-subjects", nargs="+", default=None, metavar="LABEL",
                   help="validation subjects (default: drawn from each fold's training subjects with --seed)")
    g.add_argument("--n-val", type=positive_int, default=1, help="validation subjects drawn per fold")
    g.add_argument("--participant-label", nargs="+", default=None, metavar="LABEL",
                   help="use only these subjects")
    g.add_argument("--fold", default=None, metavar="K",
                   help="train only this fold (its index from 0, e.g. $SLURM_ARRAY_TASK_ID, or its name such as "
                        "test-03); when every fold has run, `spec2vol_bids train collect MODEL_DIR` writes the "
                        "tables, report and model.ckpt")
    g.add_argument("--select-on", choices=SELECT_CHOICES, default="val",
                   help="choose the best epoch on the validation subject (val), on the TEST subjects (test: the "
                        "paper's optimistic protocol, labelled in every output) or keep the last epoch")
    g.add_argument("--select-metric", choices=("auto", "ssim", "dyncorr", "loss"), default="auto",
                   help="what the selection set maximises (auto: dyncorr for the spec2vol-lowrank/xattn/refine "
                        "read-outs, which predict dynamics, ssim for spec2vol and e2fnet as in the paper)")
    g.add_argument("--loss", choices=("auto", "ssim+mse", "demeaned-mse"), default="auto",
                   help="training loss (auto: demeaned-mse, the MSE of each volume's deviation from its run's mean "
                        "volume, for the read-outs that predict a deviation from the training-mean volume; the "
                        "paper's ssim+mse for spec2vol and e2fnet)")
    g.add_argument("--normalization", choices=NORMALIZATION_CHOICES, default="train-minmax",
                   help="EEG min-max statistics from the training subjects (default) or from every subject "
                        "including the test ones (global-leaky, the official code)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=positive_int, default=50)
    g.add_argument("--batch-size", type=positive_int, default=16,
                   help="micro-batch size, summed over the processes under torchrun (each computes its share)")
    g.add_argument("--accumulation", type=positive_int, default=2,
                   help="micro-batches per optimiser step: the global batch is batch-size x accumulation samples "
                        "for any number of processes")
    g.add_argument("--lr", type=positive_float, default=1e-3)
    g.add_argument("--weight-decay", type=float, default=1e-2)
    g.add_argument("--warmup-steps", type=nonnegative_int, default=50)
    g.add_argument("--schedule", choices=SCHEDULE_CHOICES, default="paper",
                   help="cosine restarts every 10 epochs (paper), the official code's effective ~20-epoch "
                        "restarts (official), or a constant LR")
    g.add_argument("--seed", type=nonnegative_int, default=42)
    g = p.add_argument_group("execution")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    g.add_argument("--num-threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    g.add_argument("--num-workers", type=nonnegative_int, default=0,
                   help="DataLoader worker processes reading training batches ahead (0: read in the main process)")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in MODEL_DIR (same arguments) to the same final weights")
    g.add_argument("--save-every", type=nonnegative_int, default=0,
                   help="also write the resume state every N optimiser steps (0: at epoch ends only)")
    g.add_argument("--official-h5", nargs="+", type=Path, default=None, metavar="FILE",
                   help="train on per-subject h5 files of the official scripts (eeg [N,20,C,249], fmri "
                        "[N,D,64,64]) instead of DERIV_DIR")
    g.add_argument("--noise-ceiling", type=Path, default=None, metavar="TSV",
                   help="noise_ceiling.tsv of a simulated dataset, reported next to the results")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_verbosity_options(g)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the command; returns 0 (errors are raised as :class:`~spec2vol_bids.errors.Spec2VolError`)."""
    if getattr(args, "command", "train") == COLLECT:
        return run_collect(args)
    import torch

    from ..train.distributed import init_distributed
    from .main import setup_logging

    dist = init_distributed(args.device)  # one process unless started by torchrun
    try:
        # one voice: the other processes only report warnings and errors
        setup_logging(args.verbose, args.quiet + (1 if dist.rank > 0 else 0))
        if args.num_threads:
            torch.set_num_threads(args.num_threads)
        if dist.enabled:
            logger.info("process %d of %d (%s)", dist.rank, dist.world_size, dist.backend)
            if args.batch_size < dist.world_size:
                logger.warning("--batch-size %d is smaller than the %d processes: some of them idle on every "
                               "micro-batch (raise --batch-size, lower --accumulation)", args.batch_size,
                               dist.world_size)
        return _train(args, dist)
    finally:
        dist.shutdown()


def _train(args: argparse.Namespace, dist) -> int:
    from ..errors import CantCreateError, UsageError
    from ..pipeline.training import Experiment

    model_dir: Path = args.model_dir
    if args.official_h5 is None and model_dir.resolve() == args.deriv_dir.resolve():
        raise UsageError("MODEL_DIR must differ from DERIV_DIR", hint="choose a new folder for MODEL_DIR")
    if model_dir.exists() and (model_dir / "config.toml").exists() and not args.resume:
        raise CantCreateError(f"{model_dir} already holds a training run",
                              hint="pass --resume to continue it, or choose a new MODEL_DIR")
    baselines = [b for b in (args.baselines or []) if b != "none"]
    unknown = sorted(set(baselines) - set(MODEL_CHOICES))
    if unknown:
        raise UsageError(f"unknown baseline(s) {', '.join(unknown)}",
                         hint=f"choose among {' '.join(MODEL_CHOICES)}")
    exp = Experiment.from_args(args, baselines=baselines, argv=sys.argv, dist=dist)
    exp.run(progress=not args.no_progress)
    if dist.is_main:
        if exp.fold is None:
            print(exp.summary_text())
        else:
            print(f"fold {exp.fold.name} finished ({len(exp.models)} model(s)) in {model_dir}; when every fold "
                  f"has run: spec2vol_bids train collect {model_dir}")
    return 0


def run_collect(args: argparse.Namespace) -> int:
    """``spec2vol_bids train collect MODEL_DIR``: merge the ``--fold`` runs (:meth:`Experiment.collect`)."""
    from ..pipeline.training import Experiment
    from .main import setup_logging

    setup_logging(args.verbose, args.quiet)
    exp = Experiment.collect(args.model_dir, argv=sys.argv)
    print(exp.summary_text())
    return 0

