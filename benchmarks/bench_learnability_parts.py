"""Which part of Spec2VolCAMU-Net fails to learn? The encoder, the decoder and the whole network on one control.

``bench_learnability`` shows the tiny network fits nothing under a volume-wide loss, even on a noise-free control.
This benchmark trains each part alone on a scalar version of that control, so that the loss is all signal:

* target: the ``alpha`` control feature of :func:`benchmarks.bench_learnability.control_signal`, i.e. the mean
  over the last 8 windows and frequency bins 16-24 of electrode 0 of the z-scored spectrogram (a linear function of
  the input), standardised over the training samples;
* ``encoder``: the encoder, global average pooling and a linear layer predict the target from the spectrogram;
* ``decoder``: the VM-UNet decoder alone gets a random feature image ``[C, 64, 64]`` whose channel 0 carries the
  target on the rows of the first electrodes; the mean of its output over a blob at rows 4-11 must equal
  0.3 x the target (the decoder's job in the full model: move a signal from the electrode rows to a brain region);
* ``full``: the whole network; the mean of its output over the same blob must equal 0.3 x the target.

Each part is trained with AdamW (lr 1e-3, micro-batch 8, clipping 1.0) on the first subjects and scored by the
correlation of its prediction with the target on those subjects (``r_train``, in-sample) and on the last subject
(``r_heldout``). A part that fits in-sample but not held-out memorises instead of learning the feature.

Default: the ``tiny`` simulation with 4 subjects x 200 volumes (3 train, 1 held out), 300 steps per part, about
7 minutes on 2 cores; ``--quick``: 4 subjects x 60 volumes, 30 steps.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.bench_learnability import control_standardiser, zscored_sets
from benchmarks.bench_train_quality import build_derivatives
from benchmarks.common import write_results

PARTS = ("encoder", "decoder", "full")


def _corr(a, b) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm() + 1e-12))


def train_part(part: str, x_train, s_train, x_held, s_held, *, steps: int, lr: float = 1e-3, seed: int = 0,
               eval_every: int | None = None) -> list[dict]:
    """Train one part on the control; one record per evaluation (``step``, ``loss``, ``r_train``, ``r_heldout``)."""
    import torch

    from spec2vol_bids.train.loop import build_for_data
    from spec2vol_bids.utils import seed_everything

    seed_everything(seed)
    shapes = (tuple(x_train.shape[1:]), (8, 64, 64))
    model = build_for_data("spec2vol", shapes, preset="tiny")
    width = model.encoder(x_train[:1]).shape[1]
    region = (slice(None), slice(None), slice(4, 12), slice(28, 36))  # the blob the output must light up

    if part == "encoder":
        head = torch.nn.Linear(width, 1)
        params = list(model.encoder.parameters()) + list(head.parameters())

        def forward(x):
            return head(model.encoder(x).mean(dim=(2, 3)))[:, 0]

        inputs_train, inputs_held, scale = x_train, x_held, 1.0
    elif part == "decoder":
        params = list(model.decoder.parameters())
        g = torch.Generator().manual_seed(seed)

        def feature_image(s):
            h = torch.randn(len(s), width, 64, 64, generator=g)
            h[:, 0, 0:4, 16:48] += s[:, None, None]
            return h

        def forward(h):
            return model.decoder(h)[region].mean(dim=(1, 2, 3))

        inputs_train, inputs_held, scale = feature_image(s_train), feature_image(s_held), 0.3
    elif part == "full":
        params = list(model.parameters())

        def forward(x):
            return model(x)[region].mean(dim=(1, 2, 3))

        inputs_train, inputs_held, scale = x_train, x_held, 0.3
    else:
        raise ValueError(f"unknown part {part!r}")

    def predict(inputs):
        model.eval()
        with torch.no_grad():
            out = torch.cat([forward(inputs[i:i + 32]) for i in range(0, len(inputs), 32)])
        model.train()
        return out

    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    eval_every = eval_every or max(1, steps // 5)
    records, t0 = [], time.perf_counter()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(inputs_train), (8,), generator=torch.Generator().manual_seed(seed * 100003 + step))
        loss = torch.mean((forward(inputs_train[idx]) - scale * s_train[idx]) ** 2)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % eval_every == 0 or step == steps:
            records.append({"part": part, "step": step, "loss": float(loss.detach()),
                            "r_train": _corr(predict(inputs_train), s_train),
                            "r_heldout": _corr(predict(inputs_held), s_held),
                            "seconds": round(time.perf_counter() - t0, 1)})
            print(records[-1], flush=True)
    return records


def main(quick: bool = False, *, volumes: int | None = None, steps: int | None = None, seed: int = 0,
         derivatives: str | Path | None = None) -> dict:
    import torch

    from spec2vol_bids.train.data import discover_runs

    volumes = volumes or (60 if quick else 200)
    steps = steps or (30 if quick else 300)
    with tempfile.TemporaryDirectory(prefix="s2v-parts-") as tmp:
        if derivatives is None:
            _, derivatives = build_derivatives(Path(tmp), preset="tiny", subjects=4, volumes=volumes, seed=seed)
        runs = discover_runs(derivatives, cache_dir=Path(tmp) / "cache")
        labels = sorted({r.subject for r in runs})
        train, held = labels[:-1], labels[-1:]
        sets = zscored_sets(runs, {"train": train, "held": held})
    x_train, x_held = (torch.cat([x for x, _ in sets[k]]) for k in ("train", "held"))
    standardised = control_standardiser("alpha", x_train)
    s_train, s_held = standardised(x_train), standardised(x_held)

    records = []
    for part in PARTS:
        records += train_part(part, x_train, s_train, x_held, s_held, steps=steps, seed=seed)
    final = {r["part"]: r for r in records if r["step"] == steps}
    meta = {"quick": quick, "volumes": volumes, "steps": steps, "seed": seed, "train_subjects": "+".join(train),
            "heldout_subject": held[0], "train_samples": int(len(x_train)), "heldout_samples": int(len(x_held)),
            **{f"{p}_r_train": final[p]["r_train"] for p in PARTS},
            **{f"{p}_r_heldout": final[p]["r_heldout"] for p in PARTS}}
    write_results(
        "learnability_parts", records, meta=meta,
        md_table_columns=["part", "step", "loss", "r_train", "r_heldout", "seconds"],
        title="Benchmark: which part of Spec2VolCAMU-Net fails to learn the alpha-power control?",
        notes=f"`tiny` preset; {len(x_train)} training samples (subjects {'+'.join(train)}), held-out subject "
              f"{held[0]} ({len(x_held)} samples); {steps} AdamW steps per part. Target: the alpha-band power of "
              "electrode 0 (a linear function of the input, see the module docstring). `r_train`: in-sample "
              "correlation; `r_heldout`: on the held-out subject.")
    return {"records": records, "meta": meta}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--volumes", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--derivatives", help="use these participant-level derivatives instead of simulating")
    a = p.parse_args()
    main(a.quick, volumes=a.volumes, steps=a.steps, derivatives=a.derivatives)
