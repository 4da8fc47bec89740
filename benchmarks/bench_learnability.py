"""Can the tiny Spec2VolCAMU-Net learn the EEG-driven BOLD dynamics at all? The most favourable setting we know.

The issue-6 training runs (``bench_train_quality``) end with a network that predicts the mean brain image: dynamic
correlation about 0 on held-out subjects. This benchmark removes every obstacle that is not the network itself and
watches the **training** subjects as well as the held-out ones:

* targets: each training run's own temporal mean is subtracted voxel by voxel (the subject's anatomy, which the EEG
  cannot predict, is gone; what remains is the BOLD dynamics plus noise), scaled by ``target_scale``; the
  prediction that is scored is the training-mean volume plus the network output (divided by ``target_scale``);
* inputs: the official spectrogram, z-scored per (electrode, frequency) over the training windows;
* loss: plain MSE on those targets (the published SSIM + MSE is also available, ``--loss ssim+mse``);
* the network's last 1x1 convolution starts at zero, so training starts from the mean-volume baseline;
* AdamW, constant learning rate, gradient-norm clipping at 1.0, micro-batch 8.

The ridge baseline (closed form, :class:`spec2vol_bids.model.baselines.RidgeRegression`) is fitted on the same
data and scored the same way, and the simulator's noise ceiling is listed. If the network's dynamic correlation on
the *training* subjects stays at 0 while ridge finds a clear linear relation, the network does not fit the
relation at all (an optimisation/architecture limit), which is a different problem from overfitting.

Default size: ``tiny`` preset, 6 subjects x 600 volumes (4 train, 1 validation, 1 test), 6 epochs, about 20 min on
2 CPU cores. ``--quick``: 4 subjects x 80 volumes, 2 epochs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_train_quality import build_derivatives
from benchmarks.common import write_results


def run_arrays(runs, subjects, scaling):
    """One ``(x, y)`` float32 tensor pair per run of ``subjects`` (every pair of the run, in time order)."""
    import torch

    from spec2vol_bids.train.data import PairDataset

    out = []
    for run in runs:
        if run.subject in subjects:
            ds = PairDataset([run], scaling)
            xs, ys = zip(*(ds[i] for i in range(len(ds))))
            out.append((torch.stack(xs), torch.stack(ys)))
    return out


def zscored_sets(runs, groups: dict, train: str = "train") -> dict:
    """``{name: [(x, y) per run]}`` for each ``{name: subjects}`` of ``groups``: the spectrogram min-max scaled
    with the ``train`` group's statistics (the trainer's default), then z-scored per (electrode, frequency) over
    the ``train`` group's windows."""
    import torch

    from spec2vol_bids.train.data import compute_scaling

    scaling = compute_scaling(runs, "train-minmax", train_subjects=groups[train])
    sets = {name: run_arrays(runs, subjects, scaling) for name, subjects in groups.items()}
    x_train = torch.cat([x for x, _ in sets[train]])
    mu = x_train.mean(dim=(0, 1), keepdim=True)
    sd = x_train.std(dim=(0, 1), keepdim=True) + 1e-6
    return {name: [((x - mu) / sd, y) for x, y in v] for name, v in sets.items()}


def _dyncorr(pred, sets, mask=None) -> float:
    """Mean over runs of the dynamic correlation inside ``mask`` (default: each run's mean image > 0.2, the
    brain)."""
    from spec2vol_bids.train.metrics import DynamicCorrelationAccumulator

    vals = []
    for p, (_, y) in zip(pred, sets):
        acc = DynamicCorrelationAccumulator(tuple(y.shape[1:]))
        acc.update(p.numpy(), y.numpy())
        vals.append(acc.mean(mask if mask is not None else y.mean(0).numpy() > 0.2))
    return float(np.mean(vals))


def control_signal(x, kind: str):
    """Per sample, the input feature a positive-control target is made of (``x`` z-scored ``[N, W, C, F]``):
    ``alpha``, the mean over the last 8 windows and frequency bins 16-24 of electrode 0; ``broadband``, the mean
    over every window and bin of electrode 0."""
    if kind == "alpha":
        return x[:, -8:, 0, 16:25].mean(dim=(1, 2))
    if kind == "broadband":
        return x[:, :, 0, :].mean(dim=(1, 2))
    raise ValueError(f"unknown control {kind!r}")


def control_standardiser(kind: str, x_train):
    """``f(x)``: the control signal of ``x`` standardised with the mean and std of ``x_train``'s."""
    train_sig = control_signal(x_train, kind)
    m, s = train_sig.mean(), train_sig.std()
    return lambda x: (control_signal(x, kind) - m) / s


def control_targets(sets, base, kind: str, *, row: int = 8, sigma: float = 6.0, amplitude: float = 0.03):
    """Replace every run's targets by ``base + amplitude * s * blob``: ``s``, the control signal standardised over
    the training windows; ``blob``, a Gaussian of ``sigma`` pixels at image row ``row`` (on the electrode rows),
    column 32, in every slice. Returns the new sets and the blob's core (``blob > 0.5``) as the scoring mask."""
    import torch

    standardised = control_standardiser(kind, torch.cat([x for x, _ in sets["train"]]))
    _, h, w = base.shape
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    blob = torch.exp(-((yy - row) ** 2 + (xx - w // 2) ** 2) / (2 * sigma ** 2))
    new = {k: [(x, base + amplitude * standardised(x)[:, None, None, None] * blob)
               for x, _ in v] for k, v in sets.items()}
    mask = (blob > 0.5)[None].expand_as(base).numpy()
    return new, mask


def _ssim(pred, sets) -> float:
    import torch

    from spec2vol_bids.train.metrics import ssim_per_sample

    return float(torch.cat([ssim_per_sample(p, y) for p, (_, y) in zip(pred, sets)]).mean())


def main(quick: bool = False, *, subjects: int | None = None, volumes: int | None = None, epochs: int | None = None,
         lr: float = 1e-3, batch_size: int = 8, loss: str = "mse", target_scale: float = 10.0, seed: int = 0,
         derivatives: str | Path | None = None, control: str = "none", name: str | None = None) -> dict:
    import torch

    from spec2vol_bids.model.baselines import RidgeRegression
    from spec2vol_bids.train.data import discover_runs
    from spec2vol_bids.train.loop import build_for_data
    from spec2vol_bids.train.losses import ssim_mse_loss
    from spec2vol_bids.utils import seed_everything

    subjects = subjects or (4 if quick else 6)
    volumes = volumes or (80 if quick else 600)
    epochs = epochs or (2 if quick else 6)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="s2v-learn-") as tmp:
        if derivatives is None:
            bids, derivatives = build_derivatives(Path(tmp), preset="tiny", subjects=subjects, volumes=volumes,
                                                  seed=seed)
            ceiling_tsv = bids / "derivatives" / "simulation" / "noise_ceiling.tsv"
        else:
            ceiling_tsv = None
            volumes = None  # whatever the given derivatives hold (pairs_train counts them)
        runs = discover_runs(derivatives, cache_dir=Path(tmp) / "cache")
        labels = sorted({r.subject for r in runs})
        subjects = len(labels)
        train, val, test = labels[:-2], labels[-2:-1], labels[-1:]
        sets = zscored_sets(runs, {"train": train, "val": val, "test": test})
        x_train = torch.cat([x for x, _ in sets["train"]])
        base = torch.cat([y for _, y in sets["train"]]).mean(0)                 # training-mean volume
        mask = None
        if control != "none":  # positive control: noise-free targets that are a known function of the input
            sets, mask = control_targets(sets, base, control)
        t_train = torch.cat([(y - y.mean(0)) * target_scale for _, y in sets["train"]])
        data_s = time.perf_counter() - t_start

        records = []
        # ridge on the same inputs, fitted on the training runs, penalty chosen on the validation subject
        ridge = RidgeRegression(*x_train.shape[1:], base.shape[0], grid=base.shape[1])
        ridge.fit(lambda: iter(sets["train"]), lambda: iter(sets["val"]))
        with torch.no_grad():
            for split in ("train", "val", "test"):
                pred = [ridge(x) for x, _ in sets[split]]
                records.append({"model": "ridge", "epoch": None, "split": split, "dyncorr": _dyncorr(pred, sets[split], mask),
                                "ssim": _ssim(pred, sets[split]), "train_loss": None})
                pred = [base.expand_as(y) for _, y in sets[split]]
                records.append({"model": "mean", "epoch": None, "split": split, "dyncorr": 0.0,
                                "ssim": _ssim(pred, sets[split]), "train_loss": None})

        seed_everything(seed)
        shapes = (tuple(x_train.shape[1:]), tuple(base.shape))
        model = build_for_data("spec2vol", shapes, preset="tiny")
        torch.nn.init.zeros_(model.decoder.final_conv.weight)
        torch.nn.init.zeros_(model.decoder.final_conv.bias)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)

        def predict(split):
            model.eval()
            with torch.no_grad():
                out = [torch.cat([model(x[i:i + 16]) for i in range(0, len(x), 16)]) / target_scale + base
                       for x, _ in sets[split]]
            model.train()
            return out

        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        for epoch in range(1, epochs + 1):
            order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
            total, steps = 0.0, 0
            for i in tqdm(range(0, len(order), batch_size), desc=f"epoch {epoch}/{epochs}", leave=False):
                idx = order[i:i + batch_size]
                out = model(x_train[idx])
                if loss == "mse":
                    value = torch.mean((out - t_train[idx]) ** 2)
                else:
                    value = ssim_mse_loss(out, t_train[idx])
                opt.zero_grad()
                value.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                total, steps = total + float(value.detach()), steps + 1
            for split in ("train", "val", "test"):
                pred = predict(split)
                records.append({"model": "spec2vol (tiny)", "epoch": epoch, "split": split,
                                "dyncorr": _dyncorr(pred, sets[split], mask), "ssim": _ssim(pred, sets[split]),
                                "train_loss": total / steps})
            print(records[-3:], flush=True)
        train_s = time.perf_counter() - t0

        ceiling = None
        if ceiling_tsv is not None and Path(ceiling_tsv).exists() and control == "none":
            import csv

            with open(ceiling_tsv, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f, delimiter="\t") if r["participant_id"][4:] in test]
            if rows:
                ceiling = float(np.mean([float(r["dynamic_correlation"]) for r in rows]))
                records.append({"model": "noise ceiling", "epoch": None, "split": "test", "dyncorr": ceiling,
                                "ssim": float(np.mean([float(r["ssim"]) for r in rows])), "train_loss": None})

    variance = float(t_train.var())
    name = name or ("learnability" if control == "none" else f"learnability_control-{control}")
    what = ("Per-run-demeaned targets" if control == "none" else
            f"Positive control `{control}`: noise-free targets = training-mean volume + a blob whose amplitude is "
            f"the {control} power feature of electrode 0 (`control_signal`), scored inside the blob; demeaned")
    meta = {"quick": quick, "subjects": subjects, "volumes": volumes, "pairs_train": int(len(x_train)),
            "epochs": epochs, "lr": lr, "batch_size": batch_size, "loss": loss, "target_scale": target_scale,
            "seed": seed, "control": control, "target_variance": variance, "data_seconds": round(data_s, 1),
            "train_seconds": round(train_s, 1), "noise_ceiling_dyncorr_test": ceiling}
    write_results(
        name, records, meta=meta, md_table_columns=["model", "epoch", "split", "dyncorr", "ssim", "train_loss"],
        title="Benchmark: can the tiny Spec2VolCAMU-Net learn the BOLD dynamics at all?",
        notes=(f"Simulated `tiny` dataset ({subjects} subjects x {volumes} volumes, seed {seed})" if volumes else
               f"Derivatives of {subjects} subjects") + "; training subjects "
              f"{'+'.join(train)}, validation {val[0]}, test {test[0]}. {what} x {target_scale:g}, "
              f"z-scored inputs, {loss} loss, zero-initialised output layer (see the module docstring). "
              f"`train_loss` equal to the target variance ({variance:.4g}) means nothing was fitted. Dynamic "
              "correlation inside the brain; `train` rows score the first training subject (in-sample).")
    return {"records": records, "meta": meta}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--subjects", type=int)
    p.add_argument("--volumes", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", choices=("mse", "ssim+mse"), default="mse")
    p.add_argument("--derivatives", help="use these participant-level derivatives instead of simulating")
    p.add_argument("--control", choices=("none", "alpha", "broadband"), default="none",
                   help="positive control: replace the BOLD targets by a noise-free blob driven by a known input "
                        "feature (results in learnability_control-<kind>.*)")
    a = p.parse_args()
    main(a.quick, subjects=a.subjects, volumes=a.volumes, epochs=a.epochs, lr=a.lr, loss=a.loss,
         derivatives=a.derivatives, control=a.control)
