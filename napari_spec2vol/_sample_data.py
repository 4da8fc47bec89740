"""Sample data: a simulated EEG-fMRI run and a tiny Spec2VolCAMU-Net trained on the fly, shown in one click.

:func:`prepare_sample` simulates a small BIDS dataset (:func:`spec2vol_bids.simulate.simulate_dataset`, preset
``tiny``), computes its derivatives with the BIDS-App's own functions (:mod:`spec2vol_bids.bids.process`) and
trains a ``tiny`` model for a few epochs on the first subject (:func:`spec2vol_bids.train.loop.train_fold`). The
result is cached under ``~/.cache/spec2vol-bids/sample/`` (``$SPEC2VOL_CACHE`` or ``$XDG_CACHE_HOME`` move it), so
only the first use takes time (about half a minute on a laptop CPU). :func:`make_sample_data` (napari's
*File > Open Sample* entry) then predicts the held-out subject's run and shows it with the widget.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spec2vol_bids._version import __version__

from ._pipeline import Progress, cache_root

#: sizes of the sample (kept small: the whole thing runs in well under a minute on one CPU core)
SAMPLE = {"preset": "tiny", "subjects": 2, "volumes": 48, "seed": 7, "epochs": 4, "batch_size": 4, "lr": 5e-3}
_DONE = "sample.json"


@dataclass(frozen=True)
class SamplePaths:
    """Where the sample lives.

    Attributes
    ----------
    bids_dir : Path
        The simulated raw BIDS dataset.
    derivatives : Path
        Its spectrogram and target derivatives (training data of the model).
    checkpoint : Path
        The trained tiny model.
    run : str
        The held-out run to predict (``sub-02_task-rest``).
    """

    bids_dir: Path
    derivatives: Path
    checkpoint: Path
    run: str


def sample_dir(root: str | os.PathLike | None = None, settings: dict | None = None) -> Path:
    """The sample's folder: ``<cache>/sample/v<version>-<settings hash>``."""
    import hashlib

    key = hashlib.sha256(json.dumps(_settings(settings), sort_keys=True).encode()).hexdigest()[:8]
    base = Path(root) if root is not None else cache_root()
    return base / "sample" / f"v{__version__}-{key}"


def _settings(settings: dict | None) -> dict:
    unknown = set(settings or {}) - set(SAMPLE)
    if unknown:
        from spec2vol_bids.errors import UsageError

        raise UsageError(f"unknown sample setting(s) {', '.join(sorted(unknown))}",
                         hint=f"Use {', '.join(SAMPLE)}.")
    return {**SAMPLE, **(settings or {})}


def prepare_sample(root: str | os.PathLike | None = None, *, settings: dict | None = None,
                   report: Callable[[Progress], None] | None = None, rebuild: bool = False) -> SamplePaths:
    """Build (or reuse) the simulated dataset and the tiny trained model.

    Parameters
    ----------
    root : path-like, optional
        Cache root (default: :func:`napari_spec2vol._pipeline.cache_root`).
    settings : dict, optional
        Overrides of :data:`SAMPLE` (e.g. ``{"epochs": 1}`` for a faster, less trained model).
    report : callable, optional
        Called with a :class:`~napari_spec2vol._pipeline.Progress` as the work advances.
    rebuild : bool
        Build again even when a complete sample is cached.

    Returns
    -------
    SamplePaths
    """
    cfg = _settings(settings)
    folder = sample_dir(root, cfg)
    done = folder / _DONE
    if done.is_file() and not rebuild:
        try:
            info = json.loads(done.read_text(encoding="utf-8"))
            paths = SamplePaths(Path(info["bids_dir"]), Path(info["derivatives"]), Path(info["checkpoint"]),
                                info["run"])
            if paths.checkpoint.is_file() and paths.bids_dir.is_dir():
                return paths
        except (OSError, KeyError, json.JSONDecodeError):
            pass
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    say = report or (lambda p: None)
    try:
        return _build(folder, cfg, say)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _build(folder: Path, cfg: dict, say: Callable[[Progress], None]) -> SamplePaths:
    from spec2vol_bids.bids import process
    from spec2vol_bids.bids.layout import collect_pairs
    from spec2vol_bids.simulate import simulate_dataset
    from spec2vol_bids.utils import write_json

    say(Progress("simulating an EEG-fMRI dataset", 0, 1))
    bids = simulate_dataset(folder / "bids", preset=cfg["preset"], subjects=cfg["subjects"],
                            volumes=cfg["volumes"], seed=cfg["seed"], progress=False)
    pairs = collect_pairs(bids)
    deriv = folder / "derivatives"
    for k, pair in enumerate(pairs):
        say(Progress("computing spectrograms and targets", k, len(pairs)))
        process.compute_spectrogram(pair.eeg_file, n_volumes=pair.n_volumes, repetition_time=pair.repetition_time,
                                    out_file=process.spectrogram_name(deriv, pair.eeg_file),
                                    channels_tsv=pair.channels_tsv, events_tsv=pair.events_tsv,
                                    bold_file=pair.bold_file)
        target, mask = process.target_names(deriv, pair.bold_file)
        process.compute_target(pair.bold_file, out_file=target, mask_file=mask,
                               repetition_time=pair.repetition_time)
    checkpoint = _train(deriv, folder / "model", pairs, cfg, say)
    held_out = pairs[-1]
    paths = SamplePaths(bids, deriv, checkpoint, held_out.name)
    write_json(folder / _DONE, {"bids_dir": str(bids), "derivatives": str(deriv), "checkpoint": str(checkpoint),
                                "run": held_out.name, "settings": cfg, "version": __version__})
    return paths


def _train(deriv: Path, model_dir: Path, pairs, settings: dict, say: Callable[[Progress], None]) -> Path:
    import math

    from spec2vol_bids.train.data import discover_runs
    from spec2vol_bids.train.loop import TrainConfig, train_fold
    from spec2vol_bids.train.splits import Fold

    runs = discover_runs(deriv, cache_dir=model_dir / "cache")
    train_subjects = tuple(sorted({p.subject for p in pairs[:-1]}))
    test_subjects = (pairs[-1].subject,)
    fold = Fold(name="sample", train=train_subjects, val=(), test=test_subjects)  # no validation: last epoch
    cfg = TrainConfig(preset="tiny", epochs=settings["epochs"], batch_size=settings["batch_size"], accumulation=1,
                      lr=settings["lr"], warmup_steps=2, restart_every=settings["epochs"], seed=settings["seed"],
                      device="cpu", eval_batch_size=8)
    n_train = sum(r.n_pairs for r in runs if r.subject in train_subjects)
    total = max(1, settings["epochs"] * math.ceil(n_train / settings["batch_size"]))

    def step(global_step: int) -> None:
        if global_step > 0:
            say(Progress("training a tiny model", global_step, total))

    say(Progress("training a tiny model", 0, total))
    result = train_fold(runs, fold, cfg, model_dir, progress=False, step_callback=step)
    return Path(result["checkpoints"]["last"])


def make_sample_data():
    """napari sample-data command: a simulated run predicted by a tiny model, compared with its measured BOLD.

    With a viewer open (the normal case) the prediction widget is docked and does the work in a background
    thread, with its progress bar: it builds or reuses the sample (:func:`prepare_sample`), fills in the dataset,
    run and checkpoint, predicts the held-out run and shows the comparison in grid mode with linked contrast
    limits and the per-volume metrics. The viewer stays responsive meanwhile.

    Without a viewer the same work runs here and the layer data are returned.

    Returns
    -------
    layers : list of tuple
        ``(data, kwargs, layer_type)`` tuples, or ``[]`` when the docked widget adds the layers.
    """
    widget = _dock_widget()
    if widget is not None:
        widget.load_sample(predict=True)
        return []
    from . import _pipeline

    paths = prepare_sample()
    pair = _pipeline.find_run(_pipeline.list_runs(paths.bids_dir), paths.run)
    gen = _pipeline.predict_run(pair, paths.checkpoint, out_dir=_pipeline.default_output_dir(paths.bids_dir))
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value.layer_data()


def _dock_widget():
    """The prediction widget docked in the current viewer (reused if present; ``None`` without a viewer)."""
    import napari

    viewer = napari.current_viewer()
    if viewer is None:
        return None
    from ._widget import Spec2VolWidget

    for inner in list(viewer.window.dock_widgets.values()):  # the inner (magicgui) widgets
        if isinstance(inner, Spec2VolWidget) and inner.viewer is viewer:
            return inner
    widget = Spec2VolWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Spec2Vol prediction", area="right")
    return widget
