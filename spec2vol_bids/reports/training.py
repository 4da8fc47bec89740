"""Training report: learning curves (PNG) and a single-file HTML report for ``spec2vol_bids train``.

``training_report(model_dir, results, ...)`` writes ``MODEL_DIR/learning_curves.png``,
``MODEL_DIR/example_slices.png`` and ``MODEL_DIR/report.html`` (results tables with the baselines next to the model
and the noise ceiling when known, the protocol label, learning curves and example slices predicted vs measured vs
baseline). ``results`` is the list returned by :func:`spec2vol_bids.train.loop.train_fold` for every fold x model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import atomic_write
from .figures import _plt, save_figure, to_png
from .html import Section, esc, img_tag, render_page, table_html

__all__ = ["learning_curves_figure", "example_slices_figure", "training_report"]

_METRICS = (("ssim", "SSIM"), ("psnr", "PSNR (dB)"), ("dyncorr", "dynamic r"))


def learning_curves_figure(results: Sequence[Mapping[str, Any]]):
    """Training loss, validation SSIM and validation dynamic correlation per epoch, one line per fold x model.

    Returns a matplotlib figure (closed models without epochs are skipped).
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    models = list(dict.fromkeys(r["model"] for r in results if r.get("history")))
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(models)}
    for r in results:
        hist = r.get("history") or []
        if not hist:
            continue
        ep = [h["epoch"] for h in hist]
        c = colors[r["model"]]
        label = f"{r['model']} {r['fold']}"
        axes[0].plot(ep, [h["train_loss"] for h in hist], color=c, alpha=0.8, label=label, marker="o", ms=2)
        for ax, key in ((axes[1], "ssim"), (axes[2], "dyncorr")):
            vals = [(h.get("val") or h.get("test_selection") or {}).get(key, math.nan) for h in hist]
            ax.plot(ep, vals, color=c, alpha=0.8, marker="o", ms=2)
        sel = r.get("selected_epoch")
        if sel:
            axes[1].axvline(sel, color=c, ls=":", lw=0.8)
    # closed-form baselines (no epochs): their validation score, averaged over folds, as dashed lines
    for j, m in enumerate(dict.fromkeys(r["model"] for r in results if not r.get("history"))):
        vals = [r["results"]["last"].get("val") for r in results if r["model"] == m]
        vals = [v for v in vals if v]
        if not vals:
            continue
        c = plt.cm.Set2(j % 8)
        for ax, key in ((axes[1], "ssim"), (axes[2], "dyncorr")):
            ax.axhline(float(np.nanmean([v[key] for v in vals])), color=c, ls="--", lw=1, label=f"{m} (baseline)")
    if any(not r.get("history") for r in results):
        axes[2].legend(fontsize=7, loc="best")
    losses = sorted({r.get("loss", "ssim+mse") for r in results if r.get("history")})
    axes[0].set(title="training loss: " + ", ".join(losses), xlabel="epoch")
    sel_split = "selection set"
    axes[1].set(title=f"SSIM on the {sel_split}", xlabel="epoch")
    axes[2].set(title=f"dynamic correlation on the {sel_split}", xlabel="epoch")
    if models:
        axes[0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def _pick(arr_d: int, n: int) -> list[int]:
    if arr_d <= n:
        return list(range(arr_d))
    return [int(round(v)) for v in np.linspace(arr_d * 0.2, arr_d * 0.8, n)]


def example_slices_figure(examples: Mapping[str, Mapping[str, np.ndarray]], *, n_slices: int = 4,
                          title: str = ""):
    """Rows: measured, then one row per model (predicted); columns: axial slices.

    ``examples`` maps a model name to ``{"pred": [D, X, Y], "target": [D, X, Y]}`` for the same test volume.
    """
    plt = _plt()
    names = list(examples)
    target = next(iter(examples.values()))["target"]
    sl = _pick(target.shape[0], n_slices)
    rows = [("measured", target)] + [(f"{m} (predicted)", examples[m]["pred"]) for m in names]
    lo, hi = float(np.percentile(target, 1)), float(np.percentile(target, 99.5))
    fig, axes = plt.subplots(len(rows), len(sl), figsize=(2.1 * len(sl), 2.1 * len(rows)), squeeze=False)
    for i, (label, vol) in enumerate(rows):
        for j, z in enumerate(sl):
            ax = axes[i, j]
            ax.imshow(np.rot90(vol[z]), cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"slice {z}", fontsize=8)
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _load_examples(model_dir: Path, results: Sequence[Mapping[str, Any]]) -> tuple[dict, str]:
    folds = list(dict.fromkeys(r["fold"] for r in results))
    for fold in folds:
        out = {}
        for r in results:
            if r["fold"] != fold:
                continue
            f = Path(r["checkpoints"]["last"]).parent / "examples.npz"
            if f.exists():
                with np.load(f) as z:
                    out[r["model"]] = {"pred": z["pred"], "target": z["target"], "run": str(z["run"]),
                                       "pair": int(z["pair"])}
        if out:
            return out, fold
    return {}, ""


def training_report(model_dir: str | os.PathLike, results: Sequence[Mapping[str, Any]], *, protocol: str,
                    noise_ceiling: Mapping[str, float] | None = None, main_model: str | None = None,
                    config: Mapping[str, Any] | None = None, data: Mapping[str, Any] | None = None,
                    provenance=None) -> Path:
    """Write ``learning_curves.png``, ``example_slices.png`` and ``report.html`` into ``model_dir``.

    ``provenance`` is the About section (:func:`spec2vol_bids.reports.provenance.provenance`; default: made
    here); paths in the settings are shown relative to ``model_dir``. Returns the path of the HTML report.
    """
    from .provenance import about_section, scrub
    from .provenance import provenance as make_provenance

    model_dir = Path(model_dir)
    if provenance is None:
        provenance = make_provenance(model_dir)
    sections = []
    warn = ""
    if "test-selected" in protocol:
        warn = ('<p class="warn">Checkpoints were selected on the TEST subjects (the paper\'s protocol): the '
                '"best" results are optimistic. Use the last-epoch rows, or train with --select-on val.</p>')
    # ---- results summary
    summary: dict[tuple, list] = {}
    for r in results:
        for ck in ("last", "best"):
            for split in ("test", "val"):
                m = r["results"][ck].get(split)
                if m is not None:
                    summary.setdefault((r["model"], ck, split), []).append(m)
    rows = []
    for (model, ck, split), ms in summary.items():
        cells = []
        for key, _ in _METRICS:
            v = np.array([m[key] for m in ms], dtype=float)
            v = v[np.isfinite(v)]
            cells.append("n/a" if v.size == 0 else f"{v.mean():.4f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.4f}")
        label = f"<b>{esc(model)}</b>" if model == main_model else esc(model)
        rows.append((_Raw(label), ck, split, len(ms), *cells))
    rows.sort(key=lambda r: (r[2] != "test", r[1], str(r[0])))
    if noise_ceiling:
        rows.append(("noise ceiling", "", "test", "", *(f"{noise_ceiling.get(k, math.nan):.4f}"
                                                      for k, _ in _METRICS)))
    body = warn + f"<p>Protocol: <b>{esc(protocol)}</b>. Mean ± standard deviation over folds. " \
                  "<i>last</i>: the final epoch; <i>best</i>: the epoch chosen on the selection set. " \
                  "Dynamic r is the per-voxel correlation of predicted and measured time courses inside the " \
                  "brain mask (0 for a constant prediction such as the mean volume).</p>"
    body += table_html(rows, ["model", "checkpoint", "split", "folds", *(t for _, t in _METRICS)])
    sections.append(Section("results", "Results", body))
    # ---- per fold
    frows = []
    for r in results:
        for ck in ("last", "best"):
            m = r["results"][ck].get("test") or r["results"][ck].get("val")
            if m is None:
                continue
            frows.append((r["fold"], r["model"], ck, "+".join(m["subjects"]), m["n_samples"],
                          *(float(m[k]) for k, _ in _METRICS)))
    sections.append(Section("folds", "Per fold", table_html(frows, ["fold", "model", "checkpoint", "subjects",
                                                                    "volumes", *(t for _, t in _METRICS)])))
    # ---- curves
    if any(r.get("history") for r in results):
        png = to_png(learning_curves_figure(results))
        save_figure(png, model_dir / "learning_curves.png")
        sections.append(Section("curves", "Learning curves", img_tag(png, "learning curves",
                                                                     link="learning_curves.png")))
    # ---- example slices
    ex, fold = _load_examples(model_dir, results)
    if ex:
        order = ([main_model] if main_model in ex else []) + [m for m in ex if m != main_model]
        first = ex[order[0]]
        png = to_png(example_slices_figure({m: ex[m] for m in order},
                                           title=f"fold {fold}: {first['run']}, test pair {first['pair']}"))
        save_figure(png, model_dir / "example_slices.png")
        sections.append(Section("examples", "Example slices", "<p>One test volume, measured and predicted by "
                                "each model (same grey scale).</p>" + img_tag(png, "example slices",
                                                                               link="example_slices.png")))
    # ---- settings
    if config or data:
        items = {**({"data": {k: v for k, v in (data or {}).items() if k != "runs"}} if data else {}),
                 **({"training": config} if config else {})}
        pre = "\n".join(f"{k}: {v}" for k, v in items.items())
        pre = scrub(pre, {**getattr(provenance, "paths", {}), str(model_dir.absolute()): "."})
        sections.append(Section("settings", "Settings", f"<pre>{esc(pre)}</pre>"))
    sections.append(about_section(provenance))
    html_text = render_page("spec2vol-bids training report", sections, subtitle=protocol)
    return atomic_write(model_dir / "report.html", html_text)


class _Raw(str):
    """Pre-escaped HTML for a table cell."""


# the shared table helper inserts RawHTML unescaped; reuse its class when available
try:  # pragma: no cover - trivial
    from .html import RawHTML as _Raw  # noqa: F811
except ImportError:  # pragma: no cover
    pass
