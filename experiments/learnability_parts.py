"""Which part of Spec2VolCAMU-Net fails to learn, and where? Each part trained alone on a scalar control, scored
near and far from the control feature's position on the published network's image grid.

History. An earlier version of this experiment (issue 6) concluded that "the encoder fits without generalising".
That conclusion came from three flaws, which this version removes (issue 12):

1. its encoder probe read the encoder out through **global average pooling**, which discards position, while the
   encoder's convolutions and attention carry no positional information of their own: the probe could not tell
   one electrode or frequency from another. The probe is kept here as ``encoder+gap`` to show exactly that,
   beside ``encoder+flatten`` (a linear read-out of the whole map, which keeps position);
2. the whole-volume experiment zero-initialised the output layer, which creates a saddle (nothing downstream gets
   a gradient); every network here keeps its default initialisation (the global read-out's output layer starts at
   zero by design, but its code layer gets gradient after the first step, see ``tests/model/test_variants.py``);
3. the decoder-alone control placed its signal right next to the scored region. Here every control is scored
   **near** its position on the grid (:data:`experiments.common.NEAR`: rows 0-3 hold electrode 0, columns 1-8 the
   encoded alpha bins) and **far** from it (:data:`~experiments.common.FAR`, rows 4-11, columns 28-36).

Target: the control feature (``--control``, default ``alpha-fz``: the mean over the last 8 windows and frequency
bins 16-24 of electrode 0, Fz, of the z-scored spectrogram; a linear function of the input), standardised over the
training samples. Parts, each trained with AdamW (lr 1e-3, weight decay 1e-2, micro-batch 8, clipping 1.0):

* ``encoder+gap`` / ``encoder+flatten``: the encoder and a linear read-out (pooled / flattened) predict the target;
* ``decoder near`` / ``decoder far``: the VM-UNet alone gets a random feature image ``[C, 64, 64]`` whose channel 0
  carries the target on the first electrode rows (rows 0-3, columns 4-6, where the encoder would put it); the mean
  of its output over the near / far region must equal 0.3 x the target;
* ``spec2vol near`` / ``spec2vol far``: the whole published network, scored the same way;
* ``spec2vol-lowrank near`` / ``far``: the published encoder with the global low-rank read-out.

Scores: correlation of the prediction with the target on the training subjects (``r_train``, on a fixed draw of
256 training samples) and on the held-out subject (``r_heldout``).

Default data: the ``tiny`` simulation, 6 subjects x 300 volumes (subjects 1-4 train, 6 held out), 300 steps per
part, about 40 minutes on 2 cores; ``--quick``: 4 subjects x 60 volumes, 30 steps (results in
``experiments/results/quick/``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.bench_train_quality import build_derivatives
from benchmarks.common import write_results
from experiments import RESULTS_DIR
from experiments.common import CONTROLS, FAR, NEAR, control_standardiser, experiment_parser, zscored_sets

PARTS = ("encoder+gap", "encoder+flatten", "decoder near", "decoder far", "spec2vol near", "spec2vol far",
         "spec2vol-lowrank near", "spec2vol-lowrank far")


def _corr(a, b) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm() + 1e-12))


def build_part(part: str, x_shape, *, seed: int):
    """``(params, forward, uses_feature_image, scale)`` of one part (module docstring)."""
    import torch

    from spec2vol_bids.model import build_model
    from spec2vol_bids.utils import seed_everything

    seed_everything(seed)
    n_windows, n_el, n_freqs = x_shape
    shape = dict(n_windows=n_windows, n_electrodes=n_el, n_freqs=n_freqs, n_slices=8)
    where = part.rsplit(" ", 1)[-1]
    region = (slice(None), slice(None), *(NEAR if where == "near" else FAR))
    if part.startswith("spec2vol-lowrank"):
        model = build_model("spec2vol-lowrank", preset="tiny", **shape)
        return list(model.parameters()), lambda x: model.deviation(x)[region].mean(dim=(1, 2, 3)), False, 0.3
    model = build_model("spec2vol", preset="tiny", **shape)
    if part.startswith("encoder"):
        with torch.no_grad():
            feat = model.encoder.features(torch.zeros(1, *x_shape))  # (1, N, C, W')
        pooled = part == "encoder+gap"
        head = torch.nn.Linear(feat.shape[1] if pooled else feat[0].numel(), 1)
        enc = model.encoder

        def forward(x):
            h = enc.features(x)
            return head(h.mean(dim=(2, 3)) if pooled else h.flatten(1))[:, 0]

        return list(enc.parameters()) + list(head.parameters()), forward, False, 1.0
    if part.startswith("decoder"):
        return list(model.decoder.parameters()), lambda h: model.decoder(h)[region].mean(dim=(1, 2, 3)), True, 0.3
    if part.startswith("spec2vol"):
        return list(model.parameters()), lambda x: model(x)[region].mean(dim=(1, 2, 3)), False, 0.3
    raise ValueError(f"unknown part {part!r}")


def train_part(part: str, x_train, s_train, x_held, s_held, *, steps: int, lr: float = 1e-3, seed: int = 0,
               eval_every: int | None = None) -> list[dict]:
    """Train one part on the control; one record per evaluation (``step``, ``loss``, ``r_train``, ``r_heldout``)."""
    import torch

    params, forward, feature_image, scale = build_part(part, tuple(x_train.shape[1:]), seed=seed)
    if feature_image:  # the decoder's input: noise, plus the target where the encoder would put the feature
        g = torch.Generator().manual_seed(seed)

        def image(s):
            h = torch.randn(len(s), 32, 64, 64, generator=g)
            h[:, 0, 0:4, 4:7] += s[:, None, None]
            return h

        inputs_train, inputs_held = image(s_train), image(s_held)
    else:
        inputs_train, inputs_held = x_train, x_held

    def predict(inputs):
        with torch.no_grad():
            return torch.cat([forward(inputs[i:i + 32]) for i in range(0, len(inputs), 32)])

    # in-sample score on a fixed subset of the training samples (evaluating all of them dominated the run time)
    probe = torch.randperm(len(inputs_train), generator=torch.Generator().manual_seed(seed))[:256]

    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    eval_every = eval_every or max(1, steps // 3)
    records, t0 = [], time.perf_counter()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(inputs_train), (8,), generator=torch.Generator().manual_seed(seed * 100003 + step))
        loss = torch.mean((forward(inputs_train[idx]) - scale * s_train[idx]) ** 2)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % eval_every == 0 or step == steps:
            records.append({"part": part, "step": step, "loss": loss.item(),
                            "r_train": _corr(predict(inputs_train[probe]), s_train[probe]),
                            "r_heldout": _corr(predict(inputs_held), s_held),
                            "seconds": round(time.perf_counter() - t0, 1)})
            print(records[-1], flush=True)
    return records


def main(quick: bool = False, *, subjects: int | None = None, volumes: int | None = None, steps: int | None = None,
         seed: int = 0, control: str = "alpha-fz", parts=PARTS, derivatives: str | Path | None = None) -> dict:
    import torch

    from spec2vol_bids.train.data import discover_runs

    subjects = subjects or (4 if quick else 6)
    volumes = volumes or (60 if quick else 300)
    steps = steps or (30 if quick else 300)
    with tempfile.TemporaryDirectory(prefix="s2v-parts-") as tmp:
        if derivatives is None:
            _, derivatives = build_derivatives(Path(tmp), preset="tiny", subjects=subjects, volumes=volumes,
                                               seed=seed)
        runs = discover_runs(derivatives, cache_dir=Path(tmp) / "cache")
        labels = sorted({r.subject for r in runs})
        train, held = labels[:-2] if len(labels) > 3 else labels[:-1], labels[-1:]
        sets = zscored_sets(runs, {"train": train, "held": held})
    x_train, x_held = (torch.cat([x for x, _ in sets[k]]) for k in ("train", "held"))
    standardised = control_standardiser(control, x_train)
    s_train, s_held = standardised(x_train), standardised(x_held)

    records = []
    for part in parts:
        records += train_part(part, x_train, s_train, x_held, s_held, steps=steps, seed=seed)
    final = {r["part"]: r for r in records if r["step"] == steps}
    meta = {"quick": quick, "subjects": len(labels), "volumes": volumes, "steps": steps, "seed": seed,
            "control": control, "control_feature": CONTROLS[control], "near_region": "rows 0-3, cols 1-8",
            "far_region": "rows 4-11, cols 28-36", "train_subjects": "+".join(train), "heldout_subject": held[0],
            "train_samples": int(len(x_train)), "heldout_samples": int(len(x_held))}
    write_results(
        "learnability_parts", [final[p] for p in parts if p in final] + records, meta=meta,
        md_table_columns=["part", "step", "loss", "r_train", "r_heldout", "seconds"],
        title="Experiment: which part of Spec2VolCAMU-Net learns a control, near and far from its grid position?",
        notes=f"`tiny` preset; {len(x_train)} training samples (subjects {'+'.join(train)}), held-out subject "
              f"{held[0]} ({len(x_held)} samples); {steps} AdamW steps per part, default initialisation. Target: "
              f"the `{control}` control feature (a linear function of the input; see the module docstring), scored "
              "near its position on the published network's grid (rows 0-3, cols 1-8) and far from it (rows 4-11, "
              "cols 28-36). The first rows are the final step of each part; the rest is the learning curve.",
        results_dir=RESULTS_DIR / "quick" if quick else RESULTS_DIR)
    return {"records": records, "meta": meta}


if __name__ == "__main__":
    p = experiment_parser(__doc__)
    p.add_argument("--control", choices=sorted(CONTROLS), default="alpha-fz")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    a = p.parse_args()
    main(a.quick, subjects=a.subjects, volumes=a.volumes, steps=a.steps, control=a.control, parts=a.parts,
         derivatives=a.derivatives)
