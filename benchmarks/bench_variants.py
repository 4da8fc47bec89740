"""Ablation of the global read-outs (issue 12): which variant of the published encoder learns the EEG-driven BOLD
dynamics, with which loss, against ridge, the mean volume and the published network.

Everything runs through the product's own training code (:func:`spec2vol_bids.train.loop.train_fold`) on the
BIDS-App's participant derivatives of a simulated dataset, on one fixed split (test: the last subject; validation:
the one before; training: the others), with the same budget for every gradient model (``--epochs`` epochs,
micro-batch 16, AdamW lr 1e-3, the paper's warm-up and cosine schedule) and several seeds:

* ``spec2vol-lowrank``, ``spec2vol-xattn``, ``spec2vol-refine`` (:mod:`spec2vol_bids.model.variants`), each with
  ``demeaned-mse`` (MSE of the deviations from each run's mean volume) and with the paper's ``ssim+mse`` on the
  min-max targets;
* ``spec2vol-lowrank`` without the training-mean skip (``mean_skip=False``: the head predicts the whole volume);
* the published ``spec2vol`` with both losses;
* ``ridge`` and ``mean`` (closed form), and the simulator's noise ceiling.

The best epoch is chosen on the validation subject by the model's own selection metric (dynamic correlation for
the variants, SSIM for the published network) and scored on the test subject: dynamic correlation, SSIM, PSNR.
Two controls bound what any model can reach on this data (same split): ``oracle: true sources`` fits each voxel on
the simulator's own HRF-convolved source powers (4 regressors; the answer a model would have to find, with the
subject's maps learned from the training subjects), and ``oracle: EEG band power`` fits it on the band power of
each source's peak electrode read from the spectrogram and convolved with the canonical HRF (a hand-made model
that knows the bands, the electrodes and the HRF).

Also measured in the same run (one process, so the ratios hold on a noisy machine): training throughput
(samples/s) and inference time per volume of each variant and of the published network, ``tiny`` and ``paper``
presets (``variants_speed`` rows).

Default: the ``tiny`` simulation, 6 subjects x 300 volumes, 6 epochs, seeds 0-2; hours on 2 CPU cores (the
``refine`` head and the published network run a VM-UNet). ``--quick``: 4 subjects x 60 volumes, 1 epoch, 1 seed,
two models (results in ``benchmarks/results/quick/``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS_DIR, write_results

#: (model, loss, model_kwargs, seeds to run) of the ablation; ``None`` seeds = every ``--seeds``
CANDIDATES = [
    ("spec2vol-lowrank", "demeaned-mse", {}, None),
    ("spec2vol-lowrank", "ssim+mse", {}, None),
    ("spec2vol-lowrank", "ssim+mse", {"mean_skip": False}, 1),
    ("spec2vol-lowrank", "demeaned-mse", {"mean_skip": False}, 1),
    ("spec2vol-xattn", "demeaned-mse", {}, None),
    ("spec2vol-xattn", "ssim+mse", {}, 1),
    ("spec2vol-refine", "demeaned-mse", {}, None),
    ("spec2vol-refine", "ssim+mse", {}, 1),
    ("spec2vol", "ssim+mse", {}, 1),
    ("spec2vol", "demeaned-mse", {}, 1),
]


def _label(model: str, loss: str, kwargs: dict) -> str:
    extra = "".join(f", {k}={v}" for k, v in kwargs.items())
    return f"{model} ({loss}{extra})"


def _run_row(run: dict) -> dict:
    """One training run as a row of the summary table (its scores under the summary's column names)."""
    row = {"model": f"{run['label']}, seed {run['seed']}", "seeds": 1, "parameters": run.get("parameters")}
    for k in ("dyncorr", "ssim", "psnr", "seconds_per_epoch"):
        row[f"{k}_mean"] = run[k]
    row["selected_epoch"], row["val_dyncorr"], row["dyncorr_last"] = (run.get("selected_epoch"),
                                                                      run.get("val_dyncorr"), run.get("dyncorr_last"))
    return row


def oracle_scores(bids_dir: Path, runs, train: list[str], test: list[str]) -> list[dict]:
    """The two oracle rows of the module docstring: per-voxel least squares on 4 regressors per volume."""
    import h5py
    import pandas as pd

    from spec2vol_bids.simulate.presets import DEFAULT_BANDS
    from spec2vol_bids.simulate.signals import canonical_hrf
    from spec2vol_bids.train.metrics import dynamic_correlation

    sim = bids_dir / "derivatives" / "simulation"
    by_sub = {r.subject: r for r in runs}

    def targets(r):
        return np.stack([r.read_y(k) for k in range(r.n_pairs)]).astype(np.float64)  # [n, D, X, Y]

    def true_sources(r):
        tsv = next((sim / f"sub-{r.subject}").rglob(f"{r.name}_desc-sources_timeseries.tsv"))
        table = pd.read_csv(tsv, sep="\t")
        return table[[f"{b.name}_hrf" for b in DEFAULT_BANDS]].to_numpy()[r.targets]  # [n, 4]

    def band_power(r):
        tr = float(r.repetition_time)
        hrf = canonical_hrf(tr, tr * (r.n_windows + 1))[1:r.n_windows + 1][::-1]  # oldest window first
        with h5py.File(r.spectrogram, "r") as f:
            spec = f["spectrogram"][()]  # [V, C, F]
        feats = []
        for b in DEFAULT_BANDS:
            sel = (r.frequencies >= b.low) & (r.frequencies < b.high)
            p = spec[:, r.channels.index(b.scalp_centre), sel].mean(1)  # [V]
            feats.append((p[r.windows] * hrf).sum(1))
        return np.stack(feats, 1)  # [n, 4]

    rows = []
    for name, features in (("oracle: true sources", true_sources), ("oracle: EEG band power", band_power)):
        X = {s: features(by_sub[s]) for s in train + test}
        Y = {s: targets(by_sub[s]) for s in train + test}
        A = np.concatenate([X[s] - X[s].mean(0) for s in train])
        B = np.concatenate([(Y[s] - Y[s].mean(0)).reshape(len(Y[s]), -1) for s in train])
        coef = np.linalg.lstsq(A, B, rcond=None)[0]
        for s in test:
            pred = ((X[s] - X[s].mean(0)) @ coef).reshape(Y[s].shape) + Y[s].mean(0)
            rows.append({"model": name, "seeds": "-", "dyncorr": dynamic_correlation(pred, Y[s], by_sub[s].mask())})
    return rows


def speed_rows(shapes: dict, *, quick: bool, device: str = "cpu") -> list[dict]:
    """Training throughput and inference time per volume, variants vs the published network, same process."""
    import torch

    from benchmarks.common import time_call
    from spec2vol_bids.model import build_model

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rows = []
    models = ["spec2vol-lowrank", "spec2vol"] if quick else ["spec2vol-lowrank", "spec2vol-xattn", "spec2vol-refine",
                                                             "spec2vol"]
    for preset, shape in shapes.items():
        for name in models:
            torch.manual_seed(0)
            model = build_model(name, preset=preset, **shape).to(device)
            x = torch.randn(8, shape["n_windows"], shape["n_electrodes"], shape["n_freqs"], device=device)
            y = torch.randn(8, shape["n_slices"], 64, 64, device=device)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

            def step(model=model, x=x, y=y, opt=opt):
                loss = torch.mean((model(x) - y) ** 2)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sync()

            def infer(model=model, x=x):
                with torch.no_grad():
                    model(x)
                sync()

            model.train()
            t_train = time_call(step, repeats=1 if quick else 3, warmup=1)["median"]
            model.eval()
            t_inf = time_call(infer, repeats=1 if quick else 3, warmup=1)["median"]
            rows.append({"model": name, "preset": preset, "parameters": sum(p.numel() for p in model.parameters()),
                         "train_samples_per_s": 8 / t_train, "inference_ms_per_volume": 1000 * t_inf / 8})
    ref = {r["preset"]: r for r in rows if r["model"] == "spec2vol"}
    for r in rows:
        r["train_speedup_vs_spec2vol"] = r["train_samples_per_s"] / ref[r["preset"]]["train_samples_per_s"]
        r["inference_speedup_vs_spec2vol"] = (ref[r["preset"]]["inference_ms_per_volume"]
                                              / r["inference_ms_per_volume"])
    return rows


def main(quick: bool = False, *, preset: str = "tiny", subjects: int | None = None, volumes: int | None = None,
         epochs: int | None = None, seeds=(0, 1, 2), candidates=None, derivatives: str | Path | None = None,
         bids: str | Path | None = None, name: str = "variants", threads: int | None = None,
         skip_speed: bool = False, runs_file: str | Path | None = None, cache_dir: str | Path | None = None,
         only_runs: bool = False, device: str = "cpu", results_dir: str | Path | None = None,
         only_tables: bool = False) -> dict:
    import torch

    from benchmarks.bench_train_quality import build_derivatives
    from spec2vol_bids.pipeline.training import read_noise_ceiling
    from spec2vol_bids.train import data as D
    from spec2vol_bids.train.loop import TrainConfig, train_fold
    from spec2vol_bids.train.splits import make_folds

    if threads:
        torch.set_num_threads(threads)
    subjects = subjects or (4 if quick else 6)
    volumes = volumes or (60 if quick else 300)
    epochs = epochs or (1 if quick else 6)
    seeds = tuple(seeds)[:1] if quick else tuple(seeds)
    if candidates is None:
        candidates = CANDIDATES[:2] if quick else CANDIDATES
    tmp = Path(tempfile.mkdtemp(prefix="bench_variants_"))
    t0 = time.perf_counter()
    records, runs_out = [], []
    # finished runs of earlier (or parallel) invocations: (label, seed) -> record; each new run is appended at once
    runs_file = Path(runs_file) if runs_file else None
    done = {}
    if runs_file is not None and runs_file.is_file():
        for line in runs_file.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[(rec["label"], rec["seed"])] = rec
    try:
        if derivatives is None:
            bids, derivatives = build_derivatives(tmp, preset=preset, subjects=subjects, volumes=volumes, seed=0)
        derivatives, bids = Path(derivatives), Path(bids) if bids else None
        runs = D.discover_runs(derivatives, cache_dir=Path(cache_dir) if cache_dir else tmp / "cache")
        labels = sorted({r.subject for r in runs})
        (fold,) = make_folds(labels, "split", test_subjects=labels[-1:], val_subjects=labels[-2:-1])
        # seed-major order: every candidate's first seed before any second seed (a cut-short run stays comparable)
        order = [(seed, model, loss, kwargs) for i, seed in enumerate(seeds)
                 for model, loss, kwargs, n_seeds in candidates if n_seeds is None or i < n_seeds]
        for seed, model, loss, kwargs in order:
            if (_label(model, loss, kwargs), seed) in done:
                runs_out.append(done[(_label(model, loss, kwargs), seed)])
                continue
            if only_tables:
                continue
            cfg = TrainConfig(model=model, preset="tiny", epochs=epochs, batch_size=16, accumulation=1,
                              warmup_steps=20, seed=seed, device=device, eval_batch_size=32, loss=loss,
                              model_kwargs=dict(kwargs))
            t1 = time.perf_counter()
            res = train_fold(runs, fold, cfg, tmp / "models" / f"{model}-{loss}-{len(runs_out)}", progress=False)
            seconds = time.perf_counter() - t1
            best, last = res["results"]["best"]["test"], res["results"]["last"]["test"]
            from spec2vol_bids.train.checkpoint import load_checkpoint

            # trainable parameters only (the variants' input and target statistics are buffers)
            n_params = sum(p.numel() for p in load_checkpoint(res["checkpoints"]["last"]).build_model().parameters())
            run = {"label": _label(model, loss, kwargs), "model": model, "loss": loss, "seed": seed, "device": device,
                   "selected_epoch": res["selected_epoch"], "dyncorr": best["dyncorr"], "ssim": best["ssim"],
                   "psnr": best["psnr"], "dyncorr_last": last["dyncorr"],
                   "val_dyncorr": res["results"]["best"]["val"]["dyncorr"],
                   "seconds_per_epoch": seconds / max(1, len(res["history"])), "parameters": n_params}
            runs_out.append(run)
            print(run, flush=True)
            if runs_file is not None:
                with open(runs_file, "a") as fh:  # one short line per run: safe to share between processes
                    fh.write(json.dumps(run) + "\n")
        if only_runs:
            return {"records": [], "runs": runs_out, "meta": {}}
        for model in ("ridge", "mean"):
            cfg = TrainConfig(model=model, epochs=1, seed=0, device="cpu")
            res = train_fold(runs, fold, cfg, tmp / "models" / model, progress=False)
            m = res["results"]["best"]["test"]
            runs_out.append({"label": model, "model": model, "loss": "-", "seed": 0, "dyncorr": m["dyncorr"],
                             "ssim": m["ssim"], "psnr": m["psnr"], "seconds_per_epoch": res["seconds"]})
        # mean +- sd over seeds per candidate
        for label in dict.fromkeys(r["label"] for r in runs_out):
            sel = [r for r in runs_out if r["label"] == label]
            row = {"model": label, "seeds": len(sel)}
            for k in ("dyncorr", "ssim", "psnr", "seconds_per_epoch"):
                v = np.array([r[k] for r in sel], dtype=float)
                row[f"{k}_mean"] = float(v.mean())
                row[f"{k}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
            row["dyncorr_min"] = float(min(r["dyncorr"] for r in sel))
            row["parameters"] = sel[0].get("parameters")
            records.append(row)
        if bids is not None:
            for r in oracle_scores(bids, runs, fold.train, fold.test):
                records.append({"model": r["model"], "seeds": "-", "dyncorr_mean": r["dyncorr"]})
            ceiling = read_noise_ceiling(bids / "derivatives" / "simulation" / "noise_ceiling.tsv")
            c = ceiling.get(fold.test[0], {})
            records.append({"model": "noise ceiling", "seeds": "-", "dyncorr_mean": c.get("dyncorr"),
                            "ssim_mean": c.get("ssim"), "psnr_mean": c.get("psnr")})
        speed = [] if skip_speed else speed_rows(
            {"tiny": dict(n_windows=20, n_electrodes=16, n_freqs=249, n_slices=8),
             "paper": dict(n_windows=20, n_electrodes=64, n_freqs=249, n_slices=30)}, quick=quick, device=device)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ridge = next(r for r in records if r["model"] == "ridge")["dyncorr_mean"]
    ceiling = next((r["dyncorr_mean"] for r in records if r["model"] == "noise ceiling"), None)
    for r in records:
        if ceiling and r.get("dyncorr_mean") is not None:
            r["pct_ceiling"] = 100 * r["dyncorr_mean"] / ceiling
    meta = {"quick": quick, "preset": preset, "subjects": len(labels), "volumes": volumes, "epochs": epochs,
            "seeds": list(seeds), "split": f"train {'+'.join(fold.train)}, validation {fold.val[0]}, "
                                          f"test {fold.test[0]}",
            "ridge_dyncorr": ridge, "noise_ceiling_dyncorr": ceiling,
            "total_seconds": round(time.perf_counter() - t0, 1)}
    results_dir = Path(results_dir) if results_dir else RESULTS_DIR / "quick" if quick else RESULTS_DIR
    meta["trained_on"] = sorted({r.get("device", "cpu") for r in runs_out if r["model"] not in ("ridge", "mean")})
    cols = ["model", "seeds", "dyncorr_mean", "dyncorr_sd", "dyncorr_min", "pct_ceiling", "ssim_mean", "ssim_sd",
            "psnr_mean", "psnr_sd", "seconds_per_epoch_mean", "parameters"]
    write_results(
        name, records + [_run_row(r) for r in runs_out if r["model"] not in ("ridge", "mean")], meta=meta,
        md_table_columns=cols,
        title="Benchmark: which global read-out learns the BOLD dynamics (ablation, production training code)",
        notes=f"Simulated `{preset}` dataset, {len(labels)} subjects x {volumes} volumes, BIDS-App participant level "
              f"with default preprocessing, then `spec2vol_bids train`'s own training code on one split ({meta['split']}); "
              f"{epochs} epochs for every gradient model, micro-batch 16, AdamW 1e-3, seeds {list(seeds)} (`seeds`: how "
              f"many finished), trained on {' and '.join(meta['trained_on']) or 'nothing'} "
              "(`seconds_per_epoch` is for that device). Test "
              "subject scores at the epoch chosen on the validation subject (mean, sd and minimum over seeds). "
              "`pct_ceiling`: dynamic correlation as a percentage of the simulator's noise ceiling. The two "
              "oracle rows bound what a model can reach (module docstring). Per-seed runs follow the summary.",
        results_dir=results_dir)
    if speed:
        write_results(
            f"{name}_speed", speed, meta={"quick": quick, "batch": 8, "threads": torch.get_num_threads(),
                                          "device": device},
            md_table_columns=["model", "preset", "parameters", "train_samples_per_s", "inference_ms_per_volume",
                              "train_speedup_vs_spec2vol", "inference_speedup_vs_spec2vol"],
            title="Benchmark: training throughput and inference time, global read-outs vs the published network",
            notes=f"One process, batch 8, float32 on {device}; medians of repeated calls. Paper preset: 64 electrodes, "
                  "30 slices; tiny preset: 16 electrodes, 8 slices.",
            results_dir=results_dir)
    return {"records": records, "runs": runs_out, "meta": meta}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--subjects", type=int)
    p.add_argument("--volumes", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--models", nargs="+", help="only these candidate models (default: all)")
    p.add_argument("--derivatives", help="participant derivatives to use instead of simulating (with --bids)")
    p.add_argument("--bids", help="the simulated BIDS dataset of --derivatives (oracles, noise ceiling)")
    p.add_argument("--name", default="variants", help="result file stem")
    p.add_argument("--threads", type=int)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--candidates", type=int, nargs="+", help="only these rows of CANDIDATES (0-based)")
    p.add_argument("--runs-file", help="JSON-lines file of finished runs: reused, and each new run appended (lets "
                                       "several processes share the work, and a killed benchmark resume)")
    p.add_argument("--cache-dir", help="target cache shared between invocations")
    p.add_argument("--only-runs", action="store_true", help="train the candidates, write no tables")
    p.add_argument("--only-tables", action="store_true",
                   help="train nothing: the tables from the runs in --runs-file (and ridge, mean, oracles, speed)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--results-dir", help="write the tables here (default benchmarks/results)")
    a = p.parse_args()
    cands = [c for i, c in enumerate(CANDIDATES)
             if (not a.models or c[0] in a.models) and (a.candidates is None or i in a.candidates)]
    print(main(a.quick, preset=a.preset, subjects=a.subjects, volumes=a.volumes, epochs=a.epochs, seeds=a.seeds,
               candidates=cands, derivatives=a.derivatives, bids=a.bids, name=a.name, threads=a.threads,
               skip_speed=a.skip_speed, runs_file=a.runs_file, cache_dir=a.cache_dir, only_runs=a.only_runs,
               device=a.device, results_dir=a.results_dir, only_tables=a.only_tables)["meta"])
