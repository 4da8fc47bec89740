"""A whole training experiment: data, folds, the model and its baselines, metrics tables, report, ``model.ckpt``.

This is what ``spec2vol_bids train`` runs; it can also be used from Python::

    from spec2vol_bids.pipeline.training import Experiment
    exp = Experiment(deriv_dir, model_dir, cfg=TrainConfig(model="spec2vol", preset="tiny", epochs=5),
                     cv="loso", baselines=["mean", "ridge"])
    exp.run()

One fold at a time (a cluster array job per fold), then the tables of the whole experiment::

    Experiment(deriv_dir, model_dir, cfg=cfg, cv="loso", fold=k).run()   # for every k, anywhere
    Experiment.collect(model_dir)                                        # once every fold has run

A fold run writes ``folds/<fold>/experiment.json`` (every setting of the experiment, its folds and data) next to
its models' folders; :meth:`Experiment.collect` checks that every fold ran with the same settings and data and
writes what one run of every fold writes (``config.toml``, the metrics tables, the report, ``model.ckpt``).

Under ``torchrun`` (``dist``), every process runs the experiment and only rank 0 writes.

Outputs (MODEL_DIR): see :mod:`spec2vol_bids.cli.train`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CantCreateError, DataError, NoInputError, UsageError
from ..io.tables import read_tsv, write_tsv
from ..train.data import discover_runs, load_official_h5
from ..train.distributed import SINGLE, DistContext
from ..train.loop import TrainConfig, train_fold
from ..train.losses import LOSS_DEFINITIONS
from ..train.splits import Fold, make_folds
from ..utils import atomic_write, copy_atomic, require_path, versions, write_json

logger = logging.getLogger("spec2vol_bids.train")

__all__ = ["Experiment", "METRIC_COLUMNS", "FOLD_RECORD", "read_noise_ceiling"]

METRIC_COLUMNS = ("ssim", "psnr", "dyncorr", "loss")
#: what a ``--fold`` run writes into its fold's folder for ``collect``
FOLD_RECORD = "experiment.json"
FOLD_FORMAT = "spec2vol-bids-fold"


def read_noise_ceiling(path: str | Path) -> dict[str, dict[str, float]]:
    """Read a simulator ``noise_ceiling.tsv``; returns ``{subject: {ssim, psnr, dyncorr}}`` (means over runs)."""
    path = require_path(path, "the noise-ceiling table",
                        hint="pass BIDS_DIR/derivatives/simulation/noise_ceiling.tsv")
    rows = read_tsv(path)
    out: dict[str, dict[str, list]] = {}
    for r in rows:
        sub = str(r.get("participant_id", "")).removeprefix("sub-")
        d = out.setdefault(sub, {"ssim": [], "psnr": [], "dyncorr": []})
        for key, col in (("ssim", "ssim"), ("psnr", "psnr"), ("dyncorr", "dynamic_correlation")):
            try:
                d[key].append(float(r[col]))
            except (KeyError, TypeError, ValueError):
                continue
    return {s: {k: float(np.mean(v)) if v else math.nan for k, v in d.items()} for s, d in out.items()}


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


class Experiment:
    """Cross-validated training of one model plus baselines on the same folds.

    Parameters
    ----------
    deriv_dir : path or None
        Participant-level derivatives (ignored with ``official_h5``).
    model_dir : path
        Output folder.
    cfg : TrainConfig
        Settings of the main model (the baselines share seed, device, batch sizes and schedule).
    cv, test_subjects, val_subjects, n_val, select_on
        See :func:`spec2vol_bids.train.splits.make_folds`.
    baselines : list of str
        Registered model names trained on every fold next to ``cfg.model``.
    official_h5 : list of paths, optional
        Train on the official code's per-subject h5 files.
    participant_label : list of str, optional
        Restrict to these subjects.
    noise_ceiling : path, optional
        A simulator ``noise_ceiling.tsv`` reported next to the results.
    resume : bool
        Continue an interrupted experiment.
    fold : int or str, optional
        Run only this fold (its index from 0, or its name such as ``test-03``); :meth:`collect` merges the folds.
    dist : DistContext, optional
        This process's place in a ``torchrun`` run (every process trains, rank 0 writes).
    """

    def __init__(self, deriv_dir, model_dir, *, cfg: TrainConfig, cv: str = "loso",
                 test_subjects: Sequence[str] | None = None, val_subjects: Sequence[str] | None = None,
                 n_val: int = 1, select_on: str = "val", baselines: Sequence[str] = ("mean", "ridge"),
                 official_h5: Sequence[str | Path] | None = None, participant_label: Sequence[str] | None = None,
                 noise_ceiling: str | Path | None = None, resume: bool = False, argv: Sequence[str] | None = None,
                 fold: int | str | None = None, dist: DistContext | None = None):
        if "e2fnet" in {cfg.model, *baselines}:  # before anything is read or written: one line saying what to do
            from ..utils import require_module

            require_module("diffusers", extra="e2fnet", what="the E2fNet baseline")
        self.deriv_dir = Path(deriv_dir) if deriv_dir is not None else None
        self.model_dir = Path(model_dir)
        self.cfg = cfg
        self.cv = cv
        self.resume = resume
        self.argv = list(argv or [])
        self.dist = dist or SINGLE
        self._summary: dict[str, Any] | None = None
        self.models = [cfg.model] + [b for b in dict.fromkeys(baselines) if b != cfg.model]
        if official_h5:
            self.runs = load_official_h5(official_h5)
            if participant_label:
                keep = {s.removeprefix("sub-") for s in participant_label}
                self.runs = [r for r in self.runs if r.subject in keep]
            self.source = {"kind": "official-h5", "files": [str(p) for p in official_h5]}
        else:
            self.runs = discover_runs(self.deriv_dir, cache_dir=self.model_dir / "cache",
                                      subjects=participant_label)
            self.source = {"kind": "derivatives", "root": str(self.deriv_dir)}
        if not self.runs:
            raise NoInputError("no runs selected", hint="check --participant-label")
        subjects = sorted({r.subject for r in self.runs})
        self.folds = make_folds(subjects, cv, test_subjects=test_subjects, val_subjects=val_subjects, n_val=n_val,
                                select_on=select_on, seed=cfg.seed)
        self.noise_ceiling = read_noise_ceiling(noise_ceiling) if noise_ceiling else None
        self.results: list[dict[str, Any]] = []
        self.fold = None if fold is None else self._select_fold(fold)
        if self.fold is not None and self.fold_record_path(self.fold).exists() and not resume:
            raise CantCreateError(f"fold {self.fold.name} already ran in {self.model_dir}",
                                  hint="pass --resume to continue it, or choose a new MODEL_DIR")

    def _select_fold(self, fold: int | str) -> Fold:
        """The fold ``fold`` names: an index from 0 or a fold name (``test-03``)."""
        names = [f.name for f in self.folds]
        listing = ", ".join(f"{i}={n}" for i, n in enumerate(names))
        text = str(fold).strip()
        if text.lstrip("-").isdigit():
            k = int(text)
            if not 0 <= k < len(self.folds):
                raise UsageError(f"--fold {k} does not exist: --cv {self.cv} gives {len(names)} fold(s)",
                                 hint=f"choose an index from 0 to {len(names) - 1} or a name ({listing})")
            return self.folds[k]
        if text in names:
            return self.folds[names.index(text)]
        raise UsageError(f"--fold {text!r} is not a fold of this experiment",
                         hint=f"choose an index from 0 to {len(names) - 1} or a name ({listing})")

    def fold_record_path(self, fold: Fold) -> Path:
        """``MODEL_DIR/folds/<fold>/experiment.json``, written by a ``--fold`` run."""
        return self.model_dir / "folds" / fold.name / FOLD_RECORD

    @classmethod
    def from_args(cls, args, *, baselines: Sequence[str], argv: Sequence[str] | None = None,
                  dist: DistContext | None = None) -> Experiment:
        """Build from the parsed ``spec2vol_bids train`` arguments."""
        cfg = TrainConfig(model=args.model, preset=args.preset, epochs=args.epochs, batch_size=args.batch_size,
                          accumulation=args.accumulation, lr=args.lr, weight_decay=args.weight_decay,
                          warmup_steps=args.warmup_steps, schedule=args.schedule, seed=args.seed,
                          device=args.device, save_every=args.save_every, normalization=args.normalization,
                          num_workers=args.num_workers, select_metric=args.select_metric,
                          loss=args.loss)
        return cls(None if args.official_h5 else args.deriv_dir, args.model_dir, cfg=cfg, cv=args.cv,
                   test_subjects=args.test_subjects, val_subjects=args.val_subjects, n_val=args.n_val,
                   select_on=args.select_on, baselines=baselines, official_h5=args.official_h5,
                   participant_label=args.participant_label, noise_ceiling=args.noise_ceiling,
                   resume=args.resume, argv=argv, fold=getattr(args, "fold", None), dist=dist)

    # ------------------------------------------------------------------------------------------------ running
    def data_summary(self) -> dict[str, Any]:
        if self._summary is not None:
            return self._summary
        ref = self.runs[0]
        return {
            "source": self.source,
            "n_runs": len(self.runs),
            "n_pairs": int(sum(r.n_pairs for r in self.runs)),
            "subjects": sorted({r.subject for r in self.runs}),
            "runs": [r.summary() for r in self.runs],
            "n_channels": len(ref.channels),
            "n_windows": ref.n_windows,
            "grid": list(ref.grid_shape),
        }

    def write_config(self) -> Path:
        import tomli_w

        def clean(obj):
            if isinstance(obj, dict):
                return {str(k): clean(v) for k, v in obj.items() if v is not None}
            if isinstance(obj, (list, tuple)):
                return [clean(v) for v in obj if v is not None]
            if isinstance(obj, Path):
                return str(obj)
            return obj

        doc = {
            "command": " ".join(self.argv),
            **({"fold_commands": self.fold_commands} if getattr(self, "fold_commands", None) else {}),
            "seed": self.cfg.seed,
            "train": self.cfg.to_dict(),
            "protocol": {"cv": self.cv, "select_on": self.folds[0].select_on, "protocol": self.folds[0].protocol,
                         "models": self.models, "folds": [f.to_dict() for f in self.folds]},
            "data": {k: v for k, v in self.data_summary().items() if k != "runs"},
            "versions": versions(extra=("diffusers",)),
        }
        return atomic_write(self.model_dir / "config.toml", tomli_w.dumps(clean(doc)))

    def run(self, *, progress: bool = True) -> list[dict[str, Any]]:
        """Train every model on every fold (or on ``fold`` only), then write the tables, the curves, the report
        and ``model.ckpt`` (a ``fold`` run writes its ``experiment.json`` instead: see :meth:`collect`)."""
        import datetime as _dt

        from tqdm.auto import tqdm

        started = _dt.datetime.now().astimezone()
        main = self.dist.is_main
        progress = progress and main
        self.dist.barrier()  # every process has made its checks before rank 0 writes anything
        if main:
            self.model_dir.mkdir(parents=True, exist_ok=True)
            if self.fold is None:
                self.write_config()
            else:
                write_json(self.fold_record_path(self.fold), self.fold_record())
        summary = self.data_summary()
        folds = self.folds if self.fold is None else [self.fold]
        jobs = [(f, m) for f in folds for m in self.models]
        t0 = time.perf_counter()
        self.results = []
        for fold, name in tqdm(jobs, desc="folds x models", disable=not progress or len(jobs) < 2, unit="job"):
            cfg = replace(self.cfg, model=name)
            out = self.model_dir / "folds" / fold.name / name
            res = train_fold(self.runs, fold, cfg, out, resume=self.resume, progress=progress,
                             data_summary={k: v for k, v in summary.items() if k != "runs"}, dist=self.dist)
            if self.noise_ceiling is not None:
                res["noise_ceiling"] = self._ceiling_for(fold.test)
            self.results.append(res)
        self.seconds = time.perf_counter() - t0
        if self.fold is not None or not main:
            return self.results
        self.finish(started)
        return self.results

    def finish(self, started=None) -> None:
        """Write the tables, ``model.ckpt``, the curves and the report of :attr:`results` (every fold)."""
        summary = self.data_summary()
        self.write_tables()
        self.write_model_ckpt()
        try:
            from ..reports.provenance import provenance
            from ..reports.training import training_report

            inputs = {"DERIV_DIR": self.deriv_dir} if self.deriv_dir is not None else {}
            about = provenance(self.model_dir, argv=self.argv or None, started=started, inputs=inputs,
                               device=self.cfg.device,
                               extra={"processes": self.dist.world_size} if self.dist.enabled else None)
            training_report(self.model_dir, self.results, protocol=self.folds[0].protocol,
                            noise_ceiling=self._ceiling_for([s for f in self.folds for s in f.test]),
                            main_model=self.cfg.model, config=self.cfg.to_dict(), data=summary,
                            provenance=about)
        except ImportError as err:  # pragma: no cover - matplotlib is a main dependency
            logger.warning("no report: %s", err)

    # ------------------------------------------------------------------------------------------------ folds
    def description(self) -> dict[str, Any]:
        """What every fold of one experiment shares (compared by :meth:`collect`)."""
        return {"config": self.cfg.to_dict(), "cv": self.cv, "models": list(self.models),
                "folds": [f.to_dict() for f in self.folds], "source": self.source,
                "deriv_dir": None if self.deriv_dir is None else str(self.deriv_dir),
                "data": self.data_summary(), "noise_ceiling": self.noise_ceiling}

    def fold_record(self) -> dict[str, Any]:
        """The ``experiment.json`` of a ``--fold`` run."""
        return {"format": FOLD_FORMAT, "fold": self.fold.name, "fold_index": self.folds.index(self.fold),
                "command": " ".join(self.argv), "experiment": self.description(), "versions": versions()}

    @classmethod
    def collect(cls, model_dir: str | Path, *, argv: Sequence[str] | None = None) -> Experiment:
        """Merge the ``--fold`` runs in ``model_dir`` into the experiment's tables, report and ``model.ckpt``.

        Raises
        ------
        NoInputError
            No fold record, or a fold (or one of its models) has not run or not finished.
        DataError
            The folds were run with different settings or data.
        CantCreateError
            ``model_dir`` already holds the outputs of a whole run (``config.toml``).
        """
        import json

        from ..utils import require_path

        model_dir = require_path(model_dir, "MODEL_DIR", folder=True,
                                 hint="pass the MODEL_DIR of the `spec2vol_bids train ... --fold K` runs")
        if (model_dir / "config.toml").exists():
            raise CantCreateError(f"{model_dir} already holds the outputs of a whole experiment (config.toml)",
                                  hint="collect only a MODEL_DIR whose folds were run with --fold")
        records = {}
        for path in sorted((model_dir / "folds").glob(f"*/{FOLD_RECORD}")):
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise DataError(f"{path} cannot be read ({err})", hint="run that fold again") from None
            if not isinstance(rec, dict) or rec.get("format") != FOLD_FORMAT:
                raise DataError(f"{path} is not a fold record of spec2vol-bids", hint="run that fold again")
            records[rec["fold"]] = rec
        if not records:
            raise NoInputError(f"{model_dir} holds no fold run (folds/*/{FOLD_RECORD})",
                               hint="run `spec2vol_bids train DERIV_DIR MODEL_DIR --fold K` for every fold first")
        first = next(iter(records.values()))
        desc = first["experiment"]
        for name, rec in records.items():
            if rec["experiment"] != desc:
                differ = sorted(k for k in desc if rec["experiment"].get(k) != desc.get(k))
                raise DataError(f"fold {name} was run with other settings or data than fold {first['fold']} "
                                f"({', '.join(differ)} differ)",
                                hint="run every fold with the same arguments except --fold")
        exp = cls.__new__(cls)
        exp.deriv_dir = Path(desc["deriv_dir"]) if desc["deriv_dir"] else None
        exp.model_dir = model_dir
        exp.cfg = TrainConfig(**desc["config"])
        exp.cv = desc["cv"]
        exp.resume = False
        exp.argv = list(argv or [])
        exp.dist = SINGLE
        exp.models = list(desc["models"])
        exp.runs = []
        exp.source = desc["source"]
        exp._summary = desc["data"]
        exp.folds = [Fold(name=f["name"], train=tuple(f["train"]), val=tuple(f["val"]), test=tuple(f["test"]),
                          select_on=f["select_on"]) for f in desc["folds"]]
        exp.noise_ceiling = desc["noise_ceiling"]
        exp.fold = None
        exp.fold_commands = [records[f.name]["command"] for f in exp.folds if f.name in records]
        missing = [i for i, f in enumerate(exp.folds) if f.name not in records]
        if missing:
            names = ", ".join(f"{i} ({exp.folds[i].name})" for i in missing)
            raise NoInputError(f"{len(missing)} of {len(exp.folds)} folds have not run: {names}",
                               hint=f"run `spec2vol_bids train ... --fold K` for K in {' '.join(map(str, missing))}, "
                                    "then collect again")
        exp.results = []
        for fold in exp.folds:
            for name in exp.models:
                out = model_dir / "folds" / fold.name / name
                if not (out / "history.json").is_file():
                    raise NoInputError(f"fold {fold.name} has not finished training {name} ({out / 'history.json'} "
                                       "is missing)", hint=f"run that fold again with --resume: {first['command']}")
                res = json.loads((out / "history.json").read_text(encoding="utf-8"))
                # the checkpoints where they are now (MODEL_DIR may have moved since the fold ran)
                res["checkpoints"] = {k: str(out / Path(v).name) for k, v in res["checkpoints"].items()}
                if exp.noise_ceiling is not None:
                    res["noise_ceiling"] = exp._ceiling_for(fold.test)
                exp.results.append(res)
        exp.seconds = float(sum(r.get("seconds") or 0.0 for r in exp.results))
        exp.write_config()
        exp.finish()
        return exp

    def _ceiling_for(self, subjects) -> dict[str, float] | None:
        if not self.noise_ceiling or not subjects:
            return None
        vals = [self.noise_ceiling[s] for s in subjects if s in self.noise_ceiling]
        if not vals:
            return None
        return {k: float(np.nanmean([v[k] for v in vals])) for k in ("ssim", "psnr", "dyncorr")}

    # ------------------------------------------------------------------------------------------------ outputs
    def rows(self) -> list[dict[str, Any]]:
        """One row per fold x model x checkpoint (last / best) x split (val / test)."""
        rows = []
        for res in self.results:
            for ckpt in ("last", "best"):
                for split in ("val", "test"):
                    m = res["results"][ckpt].get(split)
                    if m is None:
                        continue
                    row = {"fold": res["fold"], "model": res["model"], "checkpoint": ckpt, "split": split,
                           "epoch": res["selected_epoch"] if ckpt == "best" else (
                               res["history"][-1]["epoch"] if res["history"] else None),
                           "subjects": "+".join(m["subjects"]), "n_samples": m["n_samples"]}
                    row.update({k: m[k] for k in METRIC_COLUMNS})
                    row["protocol"] = res["protocol"]
                    rows.append(row)
        return rows

    def summary_rows(self) -> list[dict[str, Any]]:
        """Mean and standard deviation over folds per model x checkpoint x split."""
        rows = self.rows()
        out = []
        keys = list(dict.fromkeys((r["model"], r["checkpoint"], r["split"]) for r in rows))
        for model, ckpt, split in keys:
            sel = [r for r in rows if (r["model"], r["checkpoint"], r["split"]) == (model, ckpt, split)]
            row = {"model": model, "checkpoint": ckpt, "split": split, "n_folds": len(sel)}
            for k in METRIC_COLUMNS:
                row[f"{k}_mean"], row[f"{k}_std"] = _mean_std([r[k] for r in sel])
            row["protocol"] = sel[0]["protocol"]
            out.append(row)
        return out

    def write_tables(self) -> None:
        rows, summ = self.rows(), self.summary_rows()
        for name, table in (("metrics.tsv", rows), ("metrics_summary.tsv", summ)):
            if not table:
                continue
            write_tsv(self.model_dir / name, table, list(table[0]))
        ceiling = self._ceiling_for([s for f in self.folds for s in f.test])
        write_json(self.model_dir / "metrics.json", {
            "protocol": self.folds[0].protocol,
            "models": self.models,
            "main_model": self.cfg.model,
            "folds": [{k: v for k, v in r.items() if k not in ("history",)} for r in self.results],
            "rows": rows,
            "summary": summ,
            "noise_ceiling": ceiling,
            "seconds": getattr(self, "seconds", None),
            "metric_definitions": {
                "ssim": "published 2-D SSIM, slices as channels, Gaussian 11/1.5, data range 1, full map "
                        "(torchmetrics >= 1.4.3), mean over volumes",
                "psnr": "per-volume PSNR with range max(t.max(),0)-min(t.min(),0), mean over volumes (dB)",
                "dyncorr": "per-voxel Pearson r of predicted vs measured time courses inside the brain mask, "
                           "mean over voxels, then over runs",
                "loss": {r["model"]: LOSS_DEFINITIONS.get(r.get("loss"), r.get("loss"))
                         for r in self.results if r.get("loss")},
            },
        })

    def write_model_ckpt(self) -> Path | None:
        """Copy the main model's selected checkpoint of the first fold to ``MODEL_DIR/model.ckpt``.

        With ``--cv none`` that model saw every subject; with ``split`` every non-test subject; with ``loso``
        it is the first fold's model (trained without that fold's test subject). The file is a byte copy, so
        its SHA-256 is the fold checkpoint's.
        """
        main = [r for r in self.results if r["model"] == self.cfg.model]
        if not main:
            return None
        src = Path(main[0]["checkpoints"]["best"])
        if not src.exists():
            raise DataError(f"checkpoint {src} is missing", hint="train again")
        return copy_atomic(src, self.model_dir / "model.ckpt")

    def summary_text(self) -> str:
        """A short plain-text results table for the terminal."""
        lines = [f"protocol: {self.folds[0].protocol}; {len(self.folds)} fold(s); outputs in {self.model_dir}"]
        w = max([10] + [len(m) for m in self.models])
        lines.append(f"{'model':<{w}} {'ckpt':<5} {'split':<5} {'SSIM':>16} {'PSNR (dB)':>17} {'dyn. r':>16}")
        summ = self.summary_rows()
        has_test = any(x["split"] == "test" for x in summ)
        for r in summ:
            if has_test and r["split"] != "test":
                continue
            cells = [f"{r[f'{k}_mean']:.4f} +- {r[f'{k}_std']:.4f}" for k in ("ssim", "psnr", "dyncorr")]
            lines.append(f"{r['model']:<{w}} {r['checkpoint']:<5} {r['split']:<5} {cells[0]:>16} {cells[1]:>17} "
                         f"{cells[2]:>16}")
        ceiling = self._ceiling_for([s for f in self.folds for s in f.test])
        if ceiling:
            lines.append(f"{'ceiling':<{w}} {'':<5} {'test':<5} {ceiling['ssim']:>16.4f} {ceiling['psnr']:>17.4f} "
                         f"{ceiling['dyncorr']:>16.4f}")
        return "\n".join(lines)
