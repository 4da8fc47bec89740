"""Can the network learn EEG-driven dynamics over the whole volume? The published network next to the global
read-out, on the BOLD dynamics and on noise-free controls placed near and far from the feature's grid position.

Setting (the most favourable we know, shared by both networks):

* inputs: the official spectrogram, min-max scaled with the training subjects' statistics, then z-scored per
  (electrode, frequency) over the training windows (:func:`experiments.common.zscored_sets`);
* targets, one of
  - ``bold``: each run's BOLD with its own temporal mean removed (the subject's anatomy, which EEG cannot predict,
    is gone; what remains is the dynamics plus noise), scored by the dynamic correlation inside the brain;
  - ``near`` / ``far``: noise-free controls, ``0.03 x s x blob``, where ``s`` is the standardised ``alpha-fz``
    control feature (:data:`experiments.common.CONTROLS`) and ``blob`` a Gaussian centred on the
    :data:`~experiments.common.NEAR` or :data:`~experiments.common.FAR` region, scored inside the blob's core;
* loss: MSE over the whole volume, AdamW (lr 1e-3, weight decay 1e-2), micro-batch 8, clipping 1.0, **default
  initialisation** (an earlier version zero-initialised the published network's last layer, which is a saddle:
  nothing upstream gets a gradient);
* the norm of the gradient reaching the first layer (the encoder's stem) is logged: when it collapses, the encoder
  stops learning.

What it showed is in ``experiments/README.md``; numbers in ``experiments/results/learnability.md``. Ridge
(:class:`spec2vol_bids.model.baselines.RidgeRegression`) is fitted on the same data and scored the same way, and
the simulator's noise ceiling is listed for ``bold``.

Default: the ``tiny`` simulation, 6 subjects x 300 volumes (1-4 train, 5 validation for ridge, 6 test), 300 steps
per run, about 45 minutes on 2 cores. ``--quick``: 4 subjects x 60 volumes, 20 steps (``experiments/results/quick/``).
"""

from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_train_quality import build_derivatives
from benchmarks.common import write_results
from experiments import RESULTS_DIR
from experiments.common import FAR, NEAR, control_blob, control_standardiser, experiment_parser, zscored_sets

MODELS = ("spec2vol", "spec2vol-lowrank")
TARGETS = ("bold", "near", "far")


def _dyncorr(pred, sets, masks) -> float:
    from spec2vol_bids.train.metrics import DynamicCorrelationAccumulator

    vals = []
    for p, (_, y), m in zip(pred, sets, masks):
        acc = DynamicCorrelationAccumulator(tuple(y.shape[1:]))
        acc.update(p.numpy(), y.numpy())
        vals.append(acc.mean(m))
    return float(np.mean(vals))


def make_targets(sets, kind: str, brain_masks: dict):
    """``(sets, masks)``: per-run demeaned targets of ``kind`` and the per-run scoring masks."""
    import torch

    if kind == "bold":
        new = {k: [(x, y - y.mean(0)) for x, y in v] for k, v in sets.items()}
        return new, {k: brain_masks[k] for k in sets}
    blob, core = control_blob(NEAR if kind == "near" else FAR)
    standardised = control_standardiser("alpha-fz", torch.cat([x for x, _ in sets["train"]]))
    new = {}
    for k, v in sets.items():
        new[k] = []
        for x, y in v:
            s = standardised(x)
            t = 0.03 * (s - s.mean())[:, None, None, None] * blob  # [N, 1, G, G] -> broadcast over slices
            new[k].append((x, t.expand(-1, y.shape[1], -1, -1).contiguous()))
    mask = core[None].expand(sets["train"][0][1].shape[1], -1, -1).numpy()
    return new, {k: [mask] * len(v) for k, v in sets.items()}


def train_model(name: str, sets, masks, *, steps: int, seed: int, lr: float = 1e-3, batch_size: int = 8) -> list:
    import torch

    from spec2vol_bids.model import build_model
    from spec2vol_bids.utils import seed_everything

    x_train = torch.cat([x for x, _ in sets["train"]])
    y_train = torch.cat([y for _, y in sets["train"]])
    n_windows, n_el, n_freqs = x_train.shape[1:]
    seed_everything(seed)
    model = build_model(name, preset="tiny", n_windows=n_windows, n_electrodes=n_el, n_freqs=n_freqs,
                        n_slices=y_train.shape[1])
    stem = model.encoder.stem.weight
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)

    def predict(split):
        model.eval()
        with torch.no_grad():
            out = [torch.cat([model(x[i:i + 16]) for i in range(0, len(x), 16)]) for x, _ in sets[split]]
        model.train()
        return out

    records, t0, grads = [], time.perf_counter(), []
    eval_every = max(1, steps // 3)
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x_train), (batch_size,), generator=torch.Generator().manual_seed(seed * 7919 + step))
        loss = torch.mean((model(x_train[idx]) - y_train[idx]) ** 2)
        opt.zero_grad()
        loss.backward()
        grads.append(float(stem.grad.norm()))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % eval_every == 0 or step == steps:
            rec = {"model": name, "step": step, "loss": loss.item(),
                   "stem_grad_first": grads[0], "stem_grad_last": float(np.mean(grads[-10:])),
                   "seconds": round(time.perf_counter() - t0, 1)}
            for split in ("train", "test"):
                rec[f"r_{split}"] = _dyncorr(predict(split)[:1], sets[split][:1], masks[split][:1])
            records.append(rec)
            print(rec, flush=True)
    return records


def main(quick: bool = False, *, subjects: int | None = None, volumes: int | None = None, steps: int | None = None,
         seed: int = 0, models=MODELS, targets=TARGETS, derivatives: str | Path | None = None) -> dict:
    import torch

    from spec2vol_bids.model.baselines import RidgeRegression
    from spec2vol_bids.train.data import discover_runs

    subjects = subjects or (4 if quick else 6)
    volumes = volumes or (60 if quick else 300)
    steps = steps or (20 if quick else 300)
    ceiling_tsv = None
    with tempfile.TemporaryDirectory(prefix="s2v-learn-") as tmp:
        if derivatives is None:
            bids, derivatives = build_derivatives(Path(tmp), preset="tiny", subjects=subjects, volumes=volumes,
                                                  seed=seed)
            ceiling_tsv = bids / "derivatives" / "simulation" / "noise_ceiling.tsv"
        runs = discover_runs(derivatives, cache_dir=Path(tmp) / "cache")
        labels = sorted({r.subject for r in runs})
        groups = {"train": labels[:-2], "val": labels[-2:-1], "test": labels[-1:]}
        sets = zscored_sets(runs, groups)
        brain = {k: [r.mask() for s in g for r in runs if r.subject == s] for k, g in groups.items()}
    records = []
    for kind in targets:
        tsets, masks = make_targets(sets, kind, brain)
        x_train = torch.cat([x for x, _ in tsets["train"]])
        ridge = RidgeRegression(*x_train.shape[1:], tsets["train"][0][1].shape[1], grid=64)
        ridge.fit(lambda t=tsets: iter(t["train"]), lambda t=tsets: iter(t["val"]))
        with torch.no_grad():
            r = {f"r_{sp}": _dyncorr([ridge(x) for x, _ in tsets[sp]][:1], tsets[sp][:1], masks[sp][:1])
                 for sp in ("train", "test")}
        records.append({"target": kind, "model": "ridge", "step": None, **r})
        for name in models:
            for rec in train_model(name, tsets, masks, steps=steps, seed=seed):
                records.append({"target": kind, **rec})
    if ceiling_tsv is not None and "bold" in targets:
        with open(ceiling_tsv, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f, delimiter="\t") if r["participant_id"][4:] in groups["test"]]
        records.append({"target": "bold", "model": "noise ceiling", "step": None,
                        "r_test": float(np.mean([float(r["dynamic_correlation"]) for r in rows]))})
    final = [r for r in records if r.get("step") in (None, steps)]
    meta = {"quick": quick, "subjects": len(labels), "volumes": volumes, "steps": steps, "seed": seed,
            "train_subjects": "+".join(groups["train"]), "test_subject": groups["test"][0],
            "near_region": "rows 0-3, cols 1-8", "far_region": "rows 4-11, cols 28-36"}
    write_results(
        "learnability", final + [r for r in records if r not in final], meta=meta,
        md_table_columns=["target", "model", "step", "loss", "r_train", "r_test", "stem_grad_first",
                          "stem_grad_last", "seconds"],
        title="Experiment: can the network learn EEG-driven dynamics over the whole volume?",
        notes=f"`tiny` preset, {len(labels)} simulated subjects x {volumes} volumes; training subjects "
              f"{'+'.join(groups['train'])}, test subject {groups['test'][0]}. Whole-volume MSE on per-run demeaned "
              "targets, default initialisation, z-scored inputs (module docstring). `bold`: dynamic correlation "
              "inside the brain; `near`/`far`: a noise-free control blob near / far from the control feature's "
              "position on the published network's grid, scored inside the blob. `r_train`: first training "
              "subject (in-sample). `stem_grad_*`: gradient norm at the encoder's first layer (first step; mean "
              "of the last 10). First rows: final step; then the learning curves.",
        results_dir=RESULTS_DIR / "quick" if quick else RESULTS_DIR)
    return {"records": records, "meta": meta}


if __name__ == "__main__":
    p = experiment_parser(__doc__)
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    a = p.parse_args()
    main(a.quick, subjects=a.subjects, volumes=a.volumes, steps=a.steps, models=a.models, targets=a.targets,
         derivatives=a.derivatives)
