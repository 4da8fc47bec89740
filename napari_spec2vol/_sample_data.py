"""Sample data: a simulated EEG-fMRI run and its BOLD predicted by the tiny default model, in one click.

napari's *File > Open Sample* entries load a small file shipped with the plugin (:data:`SAMPLE_FILE`, a
few MB), so they open at once and compute nothing in napari's GUI thread, as napari asks of sample data; they only
return layers (no widget is docked):

* :func:`make_sample_data` ("Simulated EEG-fMRI run + tiny model"): measured and predicted BOLD of the held-out run
  and their difference, side by side in one canvas (one time and one z slider), with linked contrast, and the
  map of the dynamic correlation;
* :func:`make_sample_eeg` ("Simulated EEG recording"): that run's EEG with its volume markers.

The file is made by :func:`build_sample_file` (``python -m napari_spec2vol._sample_data``), from the real
pipeline: :func:`prepare_sample` simulates a small BIDS dataset (:func:`spec2vol_bids.simulate.simulate_dataset`,
preset ``tiny``), computes its derivatives with the BIDS-App's own functions (:mod:`spec2vol_bids.pipeline.steps`)
and trains the default model (``tiny`` preset) on every subject but the last
(:func:`spec2vol_bids.train.loop.train_fold`); the widget then predicts the held-out subject's run. The widget's
*Try the sample data* button runs the same steps in a worker thread, with progress (cached under
``~/.cache/spec2vol-bids/sample/``; ``$SPEC2VOL_CACHE`` or ``$XDG_CACHE_HOME`` move it).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spec2vol_bids._version import __version__

from ._pipeline import Progress, cache_root

#: the sample's settings: the default model (``spec2vol-lowrank``, ``tiny`` preset) trained on 4 simulated subjects
#: x 300 volumes and shown on a fifth, held out; a few minutes on two CPU cores (simulation and derivatives one or
#: two, training 2 epochs of 69 steps). With much less data the model does no better than ridge (docs/models.rst)
SAMPLE = {"preset": "tiny", "subjects": 5, "volumes": 300, "seed": 7, "epochs": 2, "batch_size": 16, "lr": 1e-3}
#: volumes of the held-out run kept in the shipped file (the first ones; the correlation map uses them all)
SHIPPED_VOLUMES = 100
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


#: the shipped sample (see :func:`build_sample_file`)
SAMPLE_FILE = Path(__file__).with_name("data") / "sample_run.npz"
#: gap between the side-by-side panels of :func:`make_sample_data`, in mm
PANEL_GAP_MM = 8.0
#: display rate of the shipped EEG (Hz): block averages of the recording
EEG_DISPLAY_RATE = 50.0


def _quantize(data: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """uint8 codes of ``data`` on ``[lo, hi]`` (clipped)."""
    return np.round(np.clip((np.asarray(data, dtype=np.float64) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def build_sample_file(dest: str | os.PathLike = SAMPLE_FILE, *, settings: dict | None = None,
                      report: Callable[[Progress], None] | None = None) -> Path:
    """Make the shipped sample from the real pipeline (a minute or two on a CPU) and write it atomically.

    :func:`prepare_sample` (simulation, derivatives, training), then the widget's own prediction of the held-out
    run (:func:`napari_spec2vol._pipeline.predict_run`) and the reader's EEG display
    (:func:`napari_spec2vol._reader.read_eeg`). Stored compactly: the BOLD panels cropped to the head and
    quantized to 8 bits on one shared range, the EEG (robust z-scores) averaged to :data:`EEG_DISPLAY_RATE` Hz
    and quantized to 8 bits, the correlation map in float16, and a JSON header with the geometry, the metrics,
    the settings and the checkpoint's SHA-256.
    """
    import tempfile

    from spec2vol_bids.utils import atomic_path

    from . import _pipeline
    from ._reader import read_eeg

    paths = prepare_sample(settings=settings, report=report)
    pair = _pipeline.find_run(_pipeline.list_runs(paths.bids_dir), paths.run)
    with tempfile.TemporaryDirectory(prefix="spec2vol-sample-") as tmp:
        gen = _pipeline.predict_run(pair, paths.checkpoint, out_dir=tmp, device="cpu")
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                result = stop.value
                break
    keep = slice(0, SHIPPED_VOLUMES)
    measured, predicted = result.measured[keep], result.predicted[keep]  # (t, z, y, x)
    head = np.nonzero(np.isfinite(result.correlation_map).any(axis=0))  # the brain mask (NaN outside)
    (y0, y1), (x0, x1) = ((max(0, int(a.min()) - 2), int(a.max()) + 3) for a in head)
    translate = list(result.translate)
    translate[2] += y0 * float(result.scale[2])
    translate[3] += x0 * float(result.scale[3])
    lo, hi = (float(v) for v in np.percentile(measured, [0.5, 99.5]))
    eeg_layers = read_eeg(pair.eeg_file)
    eeg, eeg_kw = eeg_layers[0][0], eeg_layers[0][1]
    step = max(1, int(round(eeg_kw["metadata"]["sfreq"] / eeg_kw["metadata"]["decimation"] / EEG_DISPLAY_RATE)))
    n = eeg.shape[1] // step
    eeg = eeg[:, : n * step].reshape(eeg.shape[0], n, step).mean(axis=2)
    header = {
        "spec2vol_bids_version": __version__, "run": result.run, "settings": _settings(settings),
        "model_name": result.metadata.get("model_name"), "checkpoint_sha256": result.metadata.get("checkpoint_sha256"),
        "scale": [float(v) for v in result.scale], "translate": translate, "range": [lo, hi],
        "volume_indices": [int(i) for i in result.volume_indices[keep]], "ssim": result.ssim[keep].tolist(),
        "psnr": result.psnr[keep].tolist(), "spatial_r": result.spatial_r[keep].tolist(),
        "dynamic_r": float(result.dynamic_r), "volumes_in_run": int(len(result.volume_indices)),
        "repetition_time": float(result.scale[0]), "eeg_rate": float(eeg_kw["metadata"]["sfreq"])
        / float(eeg_kw["metadata"]["decimation"]) / step, "channels": list(eeg_kw["metadata"]["channels"]),
        "volume_onsets": [float(t) for t in eeg_kw["metadata"]["volume_onsets"]],
        "onset_source": eeg_kw["metadata"]["onset_source"],
    }
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp_file:
        with open(tmp_file, "wb") as fh:
            np.savez_compressed(
                fh, measured=_quantize(measured[:, :, y0:y1, x0:x1], lo, hi),
                predicted=_quantize(predicted[:, :, y0:y1, x0:x1], lo, hi),
                correlation=result.correlation_map[:, y0:y1, x0:x1].astype(np.float16),
                eeg=np.round(np.clip(eeg, -4, 4) * 31.75).astype(np.int8),
                header=np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8))
    return dest


def load_sample_file(path: str | os.PathLike = SAMPLE_FILE) -> dict:
    """The shipped sample: ``measured``, ``predicted`` (float32, ``(t, z, y, x)``), ``correlation`` (float32,
    ``(z, y, x)``), ``eeg`` (float32 robust z-scores, ``(channel, time)``) and ``header`` (dict)."""
    with np.load(path) as z:
        header = json.loads(bytes(z["header"]).decode("utf-8"))
        lo, hi = header["range"]

        def volumes(name):
            return (z[name].astype(np.float32) / 255.0) * np.float32(hi - lo) + np.float32(lo)

        return {"measured": volumes("measured"), "predicted": volumes("predicted"),
                "correlation": z["correlation"].astype(np.float32), "eeg": z["eeg"].astype(np.float32) / 31.75,
                "header": header}


def make_sample_data():
    """napari sample data: a simulated run's measured and predicted BOLD, side by side, from the shipped file.

    Measured, predicted (same contrast limits) and their difference are placed next to each other along x in
    one canvas, so one time slider and one z slider move all three; the dynamic-correlation map follows. Nothing
    is computed or trained, and no widget is docked.

    Returns
    -------
    layers : list of tuple
        ``(data, kwargs, "image")`` tuples, ``metadata["spec2vol_role"]`` ``measured``, ``predicted``,
        ``difference``, ``correlation``.
    """
    from ._layers import comparison_layers

    sample = load_sample_file()
    h = sample["header"]
    scale, translate = h["scale"], h["translate"]
    meta = {"run": h["run"], "model_name": h["model_name"], "checkpoint_sha256": h["checkpoint_sha256"],
            "volume_indices": h["volume_indices"], "dynamic_r": h["dynamic_r"], "source": "spec2vol-bids sample",
            "metrics": {"volume": h["volume_indices"], "SSIM": h["ssim"], "PSNR (dB)": h["psnr"],
                        "r": h["spatial_r"]}}
    layers = comparison_layers(sample["measured"], sample["predicted"], scale=scale, translate=translate,
                               metadata=meta, prefix=h["run"])
    width = sample["measured"].shape[3] * float(scale[3]) + PANEL_GAP_MM
    layers.append((sample["correlation"], {
        "name": f"{h['run']} dynamic correlation (r)", "colormap": "bwr", "contrast_limits": (-1.0, 1.0),
        "scale": list(scale[1:]), "translate": list(translate[1:]), "axis_labels": ("z", "y", "x"),
        "units": ("mm", "mm", "mm"), "metadata": {**meta, "spec2vol_role": "correlation"}}, "image"))
    for k, (_, kwargs, _) in enumerate(layers):  # side by side along x
        kwargs["translate"] = [*kwargs["translate"][:-1], float(kwargs["translate"][-1]) + k * width]
    return layers


def make_sample_eeg():
    """napari sample data: the EEG of the sample run (robust z-scores) with a line per volume marker.

    Returns
    -------
    layers : list of tuple
        An image ``(channel, time)`` and a shapes layer, as :func:`napari_spec2vol._reader.read_eeg` makes them.
    """
    sample = load_sample_file()
    h = sample["header"]
    eeg = sample["eeg"]
    meta = {"kind": "eeg", "channels": h["channels"], "run": h["run"], "display_rate": h["eeg_rate"],
            "display_scaling": "per-channel robust z-score", "volume_onsets": np.asarray(h["volume_onsets"]),
            "onset_source": h["onset_source"], "source": "spec2vol-bids sample"}
    onsets = np.asarray(h["volume_onsets"], dtype=float)
    top, bottom = -0.5, eeg.shape[0] - 0.5
    return [
        (eeg, {"name": f"{h['run']} EEG", "scale": [1.0, 1.0 / h["eeg_rate"]], "axis_labels": ("channel", "time"),
               "units": ("pixel", "s"), "colormap": "twilight_shifted", "contrast_limits": (-4.0, 4.0),
               "metadata": meta}, "image"),
        ([np.array([[top, t], [bottom, t]]) for t in onsets],
         {"name": f"{h['run']} volume markers", "shape_type": "line", "edge_color": "yellow", "edge_width": 0.15,
          "metadata": {"kind": "volume-markers", "volume_onsets": onsets, "onset_source": h["onset_source"]}},
         "shapes"),
    ]


if __name__ == "__main__":  # pragma: no cover - the developer's command that makes the shipped file
    print(build_sample_file())
