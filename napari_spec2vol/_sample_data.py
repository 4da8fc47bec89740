"""Sample data: a simulated EEG-fMRI run and a tiny Spec2VolCAMU-Net trained on the fly, shown in one click.

:func:`prepare_sample` simulates a small BIDS dataset (:func:`spec2vol_bids.simulate.simulate_dataset`, preset
``tiny``), computes its derivatives with the BIDS-App's own functions (:mod:`spec2vol_bids.pipeline.steps`) and
trains a ``tiny`` model for ten epochs on the first subject (:func:`spec2vol_bids.train.loop.train_fold`). The
result is cached under ``~/.cache/spec2vol-bids/sample/`` (``$SPEC2VOL_CACHE`` or ``$XDG_CACHE_HOME`` move it), so
only the first use takes time (about a minute on a laptop CPU). :func:`make_sample_data` (napari's
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

#: the sample's settings: about a minute on two CPU cores (simulation ~10 s, training ~110 steps of 2 pairs at a
#: high learning rate); the held-out run then reaches an SSIM of about 0.3, enough to see a brain, not a good model
SAMPLE = {"preset": "tiny", "subjects": 2, "volumes": 48, "seed": 7, "epochs": 10, "batch_size": 2, "lr": 2e-2}
_DONE = "sample.json"
_DATASET_DONE = "dataset.json"


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


def prepare_dataset(root: str | os.PathLike | None = None, *, settings: dict | None = None,
                    report: Callable[[Progress], None] | None = None) -> tuple[Path, str]:
    """Simulate (or reuse) the sample's raw BIDS dataset; the quick first half of :func:`prepare_sample`.

    Parameters
    ----------
    root, settings, report
        As for :func:`prepare_sample`.

    Returns
    -------
    bids_dir : Path
        The simulated dataset.
    run : str
        The held-out run the sample predicts (the last subject's).
    """
    cfg = _settings(settings)
    folder = sample_dir(root, cfg)
    bids, marker = folder / "bids", folder / _DATASET_DONE
    if not (marker.is_file() and bids.is_dir()):
        from spec2vol_bids.simulate import simulate_dataset
        from spec2vol_bids.utils import write_json

        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        (report or (lambda p: None))(Progress("simulating an EEG-fMRI dataset", 0, 1))
        try:
            simulate_dataset(bids, preset=cfg["preset"], subjects=cfg["subjects"], volumes=cfg["volumes"],
                             seed=cfg["seed"], progress=False)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        write_json(marker, {"settings": cfg, "version": __version__})
    return bids, _held_out_run(bids, cfg)


def _held_out_run(bids: Path, cfg: dict) -> str:
    """The first EEG run of the last subject (``sub-02_task-rest``), named as :attr:`RunPair.name`."""
    from spec2vol_bids.errors import DataError

    subjects = sorted(p for p in bids.glob("sub-*") if p.is_dir())
    eeg = sorted(subjects[-1].rglob("*_eeg.vhdr")) if subjects else []
    if not eeg:
        raise DataError(f"the sample dataset {bids} has no EEG recording", hint="Delete it to simulate it again.")
    return eeg[0].name[: -len("_eeg.vhdr")]


def prepare_sample(root: str | os.PathLike | None = None, *, settings: dict | None = None,
                   report: Callable[[Progress], None] | None = None, rebuild: bool = False) -> SamplePaths:
    """Build (or reuse) the simulated dataset, its derivatives and the tiny trained model.

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
    if rebuild and folder.exists():
        shutil.rmtree(folder)
    if done.is_file():
        try:
            info = json.loads(done.read_text(encoding="utf-8"))
            paths = SamplePaths(Path(info["bids_dir"]), Path(info["derivatives"]), Path(info["checkpoint"]),
                                info["run"])
            if paths.checkpoint.is_file() and paths.bids_dir.is_dir():
                return paths
        except (OSError, KeyError, json.JSONDecodeError):
            pass
    say = report or (lambda p: None)
    bids, run = prepare_dataset(root, settings=cfg, report=say)
    try:
        return _build(folder, bids, run, cfg, say)
    except BaseException:
        for part in ("derivatives", "model"):
            shutil.rmtree(folder / part, ignore_errors=True)
        raise


def _build(folder: Path, bids: Path, run: str, cfg: dict, say: Callable[[Progress], None]) -> SamplePaths:
    from spec2vol_bids.bids.runs import collect_pairs
    from spec2vol_bids.pipeline.steps import preprocess_run
    from spec2vol_bids.utils import write_json

    pairs = collect_pairs(bids)
    held_out = [p for p in pairs if p.name == run]
    if len(pairs) < 2 or not held_out:
        from spec2vol_bids.errors import DataError

        raise DataError(f"the sample dataset {bids} has {len(pairs)} paired run(s); two subjects are needed",
                        hint="Delete the folder to simulate it again.")
    deriv = folder / "derivatives"
    for k, pair in enumerate(pairs):
        say(Progress("computing spectrograms and targets", k, len(pairs)))
        preprocess_run(pair, deriv)
    train_pairs = [p for p in pairs if p.name != run]
    checkpoint = _train(deriv, folder / "model", train_pairs, held_out, cfg, say)
    paths = SamplePaths(bids, deriv, checkpoint, run)
    write_json(folder / _DONE, {"bids_dir": str(bids), "derivatives": str(deriv), "checkpoint": str(checkpoint),
                                "run": run, "settings": cfg, "version": __version__})
    return paths


def _train(deriv: Path, model_dir: Path, train_pairs, test_pairs, settings: dict,
           say: Callable[[Progress], None]) -> Path:
    import math

    from spec2vol_bids.train.data import discover_runs
    from spec2vol_bids.train.loop import TrainConfig, train_fold
    from spec2vol_bids.train.splits import Fold

    runs = discover_runs(deriv, cache_dir=model_dir / "cache")
    train_subjects = tuple(sorted({p.subject for p in train_pairs}))
    test_subjects = tuple(sorted({p.subject for p in test_pairs}))
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

    The simulated dataset is made first (a few seconds, cached) and the held-out run's EEG is returned at once:
    an image ``(channel, time)`` and its volume markers. With a viewer open, the prediction widget is docked and,
    in a background thread with its progress bar, computes the derivatives, trains the tiny model (both cached),
    predicts the run and shows the comparison in grid mode with linked contrast limits and the per-volume
    metrics. The viewer stays responsive meanwhile. Without a viewer the prediction runs here and its layers are
    returned after the EEG.

    Returns
    -------
    layers : list of tuple
        ``(data, kwargs, layer_type)`` tuples.
    """
    from napari.utils import progress

    from . import _pipeline
    from ._reader import read_eeg

    with progress(total=1, desc="spec2vol sample: simulating an EEG-fMRI dataset") as bar:
        bids, run = prepare_dataset()
        bar.update(1)
    layers = read_eeg(next(bids.rglob(f"{run}_eeg.vhdr")))  # no pybids indexing in the GUI thread
    widget = _dock_widget()
    if widget is not None:
        widget.load_sample(predict=True)
        return layers
    pair = _pipeline.find_run(_pipeline.list_runs(bids), run)
    paths = prepare_sample()
    gen = _pipeline.predict_run(pair, paths.checkpoint, out_dir=_pipeline.default_output_dir(paths.bids_dir))
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return layers + stop.value.layer_data()


def _unwrap(obj):
    return getattr(obj, "__wrapped__", obj)


def _dock_widget():
    """The prediction widget docked in the current viewer (reused if present; ``None`` without a viewer)."""
    import napari

    viewer = napari.current_viewer()
    if viewer is None:
        return None
    from ._widget import Spec2VolWidget

    for inner in list(viewer.window.dock_widgets.values()):  # the inner (magicgui) widgets
        # napari hands plugin widgets a PublicOnlyProxy of the viewer: compare the wrapped objects
        if isinstance(inner, Spec2VolWidget) and _unwrap(inner.viewer) is _unwrap(viewer):
            return inner
    widget = Spec2VolWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Spec2Vol prediction", area="right")
    return widget
