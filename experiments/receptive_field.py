"""Which EEG electrodes can each part of the predicted volume see? Input-gradient sensitivity of the networks.

The published architecture pads the encoder's ``[electrodes x frequencies]`` feature map to a 64 x 64 image and
decodes it with a U-Net whose output pixel ``(i, j)`` is, by construction, spatially aligned with input position
``(i, j)``: electrode ``e`` sits on image row ``e``. Only the selective scans and the coarse U-Net stages mix rows
far apart. This benchmark measures how much that alignment shapes the prediction, on the untrained network (the
starting point of every training run) and, with ``--checkpoint``, on a trained one, next to the global read-out
``spec2vol-lowrank`` (:mod:`spec2vol_bids.model.variants`), whose every output pixel depends on every electrode.

What it showed (``experiments/results/receptive_field.md``): with 16 electrodes the published network's output rows
far below the electrode rows are tens of times less sensitive to the EEG than the rows on them (hundreds of times
after training), and with 64 electrodes each half of a slice takes a small share of its sensitivity from the
electrodes drawn on the other half; the global read-out's shares are those of uniform weighting.

Measure: for each band of four output rows ``b`` (16 bands), the gradient of the sum of the predicted volume over
those rows with respect to the input, ``|d sum(y[:, :, 4b:4b+4, :]) / d x|``, summed over windows, frequencies and
a batch of random inputs, gives one sensitivity value per electrode. Reported per model:

* ``near_far_ratio``: mean sensitivity of output rows that lie on electrode rows (``< n_electrodes``) divided by
  that of output rows at least 32 rows away from the last electrode row (only where such rows exist, i.e. fewer
  than 32 electrodes, as in the ``tiny`` simulation);
* ``local_share``: the fraction of each output band's sensitivity that comes from the electrodes on the same
  band's rows +- 4 rows, averaged over bands with electrodes; ``uniform_share`` is that fraction if every electrode
  contributed equally. A ratio ``local_share / uniform_share`` well above 1 means the prediction of a brain region
  is driven by the electrodes that happen to be drawn on the same image rows, not by all of them;
* ``other_half_share`` (more than 32 electrodes): the fraction of each output band's sensitivity that comes from
  the electrodes drawn on the *other* half of the image (rows 0-31 vs 32-63), against ``other_half_uniform`` if
  every electrode counted equally. Near 0 means each half of every predicted slice is blind to half of the
  electrodes.

The sensitivity maps are drawn to ``docs/_static/receptive_field.png`` (``--figure`` to change).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import write_results
from experiments import RESULTS_DIR
from spec2vol_bids.model import Spec2VolCAMUNet

GRID = 64
BAND = 4
FIGURE = Path(__file__).resolve().parent.parent / "docs" / "_static" / "receptive_field.png"


def sensitivity(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """``[GRID // BAND, n_electrodes]``: input-gradient magnitude of each band of output rows per electrode."""
    model.eval()
    x = x.clone().requires_grad_(True)
    y = model(x)  # [B, D, GRID, GRID]
    rows = []
    for b in range(y.shape[2] // BAND):
        (g,) = torch.autograd.grad(y[:, :, b * BAND:(b + 1) * BAND, :].sum(), x, retain_graph=True)
        rows.append(g.abs().sum(dim=(0, 1, 3)).double().numpy())  # [E]
    return np.stack(rows)


def summarise(s: np.ndarray) -> dict:
    """The two numbers of the module docstring from a sensitivity map ``s [bands, E]``."""
    n_bands, n_el = s.shape
    band_total = s.sum(1)
    near = [b for b in range(n_bands) if b * BAND < n_el]
    far = [b for b in range(n_bands) if b * BAND >= n_el + 32]
    out = {"near_far_ratio": float(band_total[near].mean() / band_total[far].mean()) if far else None}
    shares, uniform = [], []
    for b in near:
        lo, hi = max(0, b * BAND - 4), min(n_el, (b + 1) * BAND + 4)
        shares.append(s[b, lo:hi].sum() / s[b].sum())
        uniform.append((hi - lo) / n_el)
    out["local_share"] = float(np.mean(shares))
    out["uniform_share"] = float(np.mean(uniform))
    out["local_vs_uniform"] = out["local_share"] / out["uniform_share"]
    # share of each output band's sensitivity that comes from electrodes drawn on the other half of the image
    half = GRID // 2
    if n_el > half:
        other = [s[b, half:].sum() / s[b].sum() if b * BAND < half else s[b, :half].sum() / s[b].sum()
                 for b in range(n_bands)]
        out["other_half_share"] = float(np.mean(other))
        out["other_half_uniform"] = float(np.mean([(n_el - half) / n_el if b * BAND < half else half / n_el
                                                   for b in range(n_bands)]))
    else:
        out["other_half_share"] = out["other_half_uniform"] = None
    return out


def draw(maps: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = min(3, len(maps))
    nrow = -(-len(maps) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.4 * ncol, 3.8 * nrow), squeeze=False)
    for ax in axes.flat[len(maps):]:
        ax.axis("off")
    for ax, (name, s) in zip(axes.flat, maps.items()):
        norm = s / s.sum(1, keepdims=True)
        im = ax.imshow(norm, aspect="auto", cmap="magma", origin="upper",
                       extent=(-0.5, s.shape[1] - 0.5, GRID - 0.5, -0.5))
        ax.set_xlabel("EEG electrode (= input image row)")
        ax.set_ylabel("output image row (4-row bands)")
        ax.set_title(name, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, label="share of the band's sensitivity")
    fig.suptitle("Which electrodes drive each row of the predicted slices: the published network (rows follow "
                 "electrodes) and the global read-out (every row sees every electrode)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def main(quick: bool = False, *, checkpoint: str | None = None, figure: str | Path | None = FIGURE) -> dict:
    cases = [("tiny", 16, 8), ("tiny", 64, 8)] + ([] if quick else [("paper", 64, 30)])
    seeds = [0] if quick else [0, 1, 2]
    batch = 2
    records, maps = [], {}
    for preset, n_el, n_slices in cases:
        acc = None
        for seed in seeds:
            torch.manual_seed(seed)
            model = Spec2VolCAMUNet.from_preset(preset, n_electrodes=n_el, n_slices=n_slices)
            g = torch.Generator().manual_seed(100 + seed)
            s = sensitivity(model, torch.rand(batch, 20, n_el, 249, generator=g))
            acc = s if acc is None else acc + s
        name = f"{preset}, {n_el} electrodes, untrained"
        maps[name] = acc
        records.append({"model": preset, "electrodes": n_el, "weights": f"random init, seeds {seeds}",
                        **summarise(acc)})
    # the global read-out: its output layer starts at zero (no gradient at all), so it is measured with that layer
    # drawn at random, like any other layer: the structure, not the training, is what is measured here
    from spec2vol_bids.model import build_model

    for n_el in (16, 64):
        acc = None
        for seed in seeds:
            torch.manual_seed(seed)
            model = build_model("spec2vol-lowrank", preset="tiny", n_windows=20, n_electrodes=n_el, n_freqs=249,
                                n_slices=8)
            torch.nn.init.normal_(model.head.expand.weight, std=0.02)
            g = torch.Generator().manual_seed(100 + seed)
            s = sensitivity(model, torch.rand(batch, 20, n_el, 249, generator=g))
            acc = s if acc is None else acc + s
        maps[f"spec2vol-lowrank (tiny), {n_el} electrodes"] = acc
        records.append({"model": "spec2vol-lowrank tiny", "electrodes": n_el,
                        "weights": f"random init (output layer too), seeds {seeds}", **summarise(acc)})
    if checkpoint:
        from spec2vol_bids.train.checkpoint import load_checkpoint

        ck = load_checkpoint(checkpoint)
        model = ck.build_model()
        w, e, f = model.input_shape
        torch.manual_seed(0)
        s = sensitivity(model, torch.rand(batch, w, e, f))
        maps[f"{ck.model_name} trained, {e} electrodes"] = s
        records.append({"model": f"{ck.model_name} trained", "electrodes": e,
                        "weights": f"trained checkpoint ({Path(checkpoint).name})", **summarise(s)})
    if figure:
        draw(maps, Path(figure))
    write_results(
        "receptive_field", records, meta={"quick": quick, "batch": batch, "band_rows": BAND},
        md_table_columns=["model", "electrodes", "weights", "near_far_ratio", "local_share", "uniform_share",
                          "local_vs_uniform", "other_half_share", "other_half_uniform"],
        title="Experiment: which electrodes drive each part of the prediction", results_dir=RESULTS_DIR,
        notes="Input-gradient sensitivity of each 4-row band of the predicted slices to each EEG electrode "
              "(see the module docstring). `near_far_ratio`: output rows on electrode rows vs rows >= 32 rows "
              "below the last electrode. `local_share`: fraction of a band's sensitivity from the electrodes drawn "
              "on the same rows +- 4; `uniform_share`: the same if all electrodes counted equally.")
    return {"records": records}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--checkpoint", help="also measure a trained model (a spec2vol_bids train checkpoint)")
    p.add_argument("--figure", default=str(FIGURE), help="where to draw the sensitivity maps ('' for none)")
    a = p.parse_args()
    print(main(a.quick, checkpoint=a.checkpoint, figure=a.figure or None))
