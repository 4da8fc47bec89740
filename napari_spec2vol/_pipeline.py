"""What the widget runs in its worker thread: one paired BIDS run and a checkpoint -> predicted vs measured BOLD.

No science lives here: every step calls the function the BIDS-App uses (run pairing from
:mod:`spec2vol_bids.bids.runs`; header checks, spectrogram, BOLD targets and prediction from
:mod:`spec2vol_bids.pipeline.steps`, which write the same derivatives as ``spec2vol_bids ... participant``; checkpoint
checks from :mod:`spec2vol_bids.train.checkpoint`; device resolution from :func:`spec2vol_bids.utils.resolve_device`;
the run's scores from :func:`spec2vol_bids.pipeline.group.score_run`, as in ``group_metrics.tsv``). This module only wires them together as a generator that reports
:class:`Progress` and can be stopped, and converts the results to napari's ``(t, z, y, x)`` layout.
Nothing here imports napari or Qt, so it is usable (and tested) without a viewer; torch is imported only when the
model runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spec2vol_bids.errors import NoInputError, NoMatchError, UsageError
from spec2vol_bids.utils import DEVICES, require_path, resolve_device

__all__ = ["DEVICES", "SCAN_BACKENDS", "Progress", "Cancelled", "RunResult", "list_runs", "resolve_device",
           "predict_run", "default_output_dir", "cache_root", "find_run", "describe"]
#: choices of the widget's scan-backend box (checked against spec2vol_bids.model.scan.BACKENDS in the tests;
#: spelled out here so that building the widget does not import torch)
SCAN_BACKENDS = ("auto", "chunked", "reference", "mamba_ssm")
#: environment variable read by spec2vol_bids.model.scan.resolve_backend when a layer has no fixed backend
SCAN_ENV = "SPEC2VOL_SCAN_BACKEND"


@dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` of ``total`` units of ``stage`` (a short human-readable label)."""

    stage: str
    done: int = 0
    total: int = 1

    @property
    def fraction(self) -> float:
        """Completed fraction of this stage in [0, 1]."""
        return min(1.0, max(0.0, self.done / self.total)) if self.total else 1.0


class Cancelled(Exception):
    """Raised inside a long step when the user asked to stop; the generator then returns ``None``."""


@dataclass
class RunResult:
    """Measured and predicted volumes of one run in napari layout, with their metrics.

    Attributes
    ----------
    run : str
        The BIDS run name (``sub-01_task-rest_run-1``).
    measured, predicted : ndarray of float32, shape (t, z, y, x)
        The target volumes at ``volume_indices`` and the model's predictions of them, in the closest canonical
        (RAS+) orientation of the model grid.
    volume_indices : ndarray of int
        BOLD volume index of each time point.
    scale, translate : list of float
        napari geometry of the 4-D layers: ``[TR, dz, dy, dx]`` and ``[t0, z0, y0, x0]`` (seconds, mm).
    ssim, psnr : ndarray of float64, shape (t,)
        Per-volume SSIM and PSNR (dB), the published definitions.
    spatial_r : ndarray of float64, shape (t,)
        Per-volume Pearson correlation of predicted and measured voxel values inside the brain mask.
    dynamic_r : float
        Mean over brain voxels of the correlation of predicted and measured time courses.
    correlation_map : ndarray of float32, shape (z, y, x)
        That correlation per voxel (NaN outside the brain mask).
    metadata : dict
        Paths, repetition time, device, scan backend, model name and checkpoint SHA-256, onset source.
    """

    run: str
    measured: np.ndarray
    predicted: np.ndarray
    volume_indices: np.ndarray
    scale: list
    translate: list
    ssim: np.ndarray
    psnr: np.ndarray
    spatial_r: np.ndarray
    dynamic_r: float
    correlation_map: np.ndarray
    metadata: dict = field(default_factory=dict)

    @property
    def times(self) -> np.ndarray:
        """Onset of each compared volume in seconds from the first BOLD volume."""
        return self.volume_indices * float(self.scale[0])

    def table(self) -> dict[str, list]:
        """Per-volume metrics as columns (``volume``, ``time (s)``, ``SSIM``, ``PSNR (dB)``, ``r``)."""
        return {
            "volume": [int(i) for i in self.volume_indices],
            "time (s)": [round(float(t), 3) for t in self.times],
            "SSIM": [round(float(v), 4) for v in self.ssim],
            "PSNR (dB)": [round(float(v), 2) for v in self.psnr],
            "r": [round(float(v), 4) for v in self.spatial_r],
        }

    def layer_data(self) -> list[tuple[np.ndarray, dict, str]]:
        """napari layer-data tuples: measured, predicted, difference and the dynamic-correlation map."""
        from ._layers import comparison_layers

        meta = {**self.metadata, "run": self.run, "volume_indices": self.volume_indices.tolist(),
                "metrics": self.table(), "dynamic_r": self.dynamic_r}
        layers = comparison_layers(self.measured, self.predicted, scale=self.scale, translate=self.translate,
                                   metadata=meta)
        layers.append((self.correlation_map, {
            "name": "dynamic correlation (r)",
            "scale": list(self.scale[1:]),
            "translate": list(self.translate[1:]),
            "colormap": "bwr",
            "contrast_limits": (-1.0, 1.0),
            "axis_labels": ("z", "y", "x"),
            "units": ("mm", "mm", "mm"),
            "metadata": {**meta, "spec2vol_role": "correlation"},
        }, "image"))
        return layers


def list_runs(bids_dir: str | os.PathLike) -> list:
    """Paired EEG-BOLD runs of a raw BIDS dataset (:func:`spec2vol_bids.bids.runs.collect_pairs`).

    Raises
    ------
    NoInputError
        The folder does not exist or holds no EEG or no BOLD runs.
    NoMatchError
        No EEG run has a paired BOLD run.
    """
    from spec2vol_bids.bids.runs import collect_pairs

    root = Path(bids_dir)
    if not root.is_dir():
        raise NoInputError(f"the BIDS dataset folder {root} does not exist", hint="Choose the dataset's root folder.")
    return collect_pairs(root)


def predict_run(
    pair,
    checkpoint: str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    device: str = "auto",
    scan_backend: str = "auto",
    batch_size: int = 8,
    report: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[Progress, None, RunResult | None]:
    """Preprocess one run with the checkpoint's settings, predict its volumes and compare them to the measured ones.

    A generator: it yields a :class:`Progress` between steps (napari's ``thread_worker`` stops a generator at a
    yield when asked to quit) and returns the :class:`RunResult`. The steps are the BIDS-App's own
    (:mod:`spec2vol_bids.pipeline.steps`): header checks and volume onsets, the spectrogram, the BOLD targets and the
    prediction, each written as a BIDS derivative under ``out_dir``; then the metrics.

    Parameters
    ----------
    pair : spec2vol_bids.bids.runs.RunPair
        The paired EEG and BOLD run (see :func:`list_runs`).
    checkpoint : path-like
        A spec2vol-bids checkpoint (``spec2vol_bids train`` output).
    out_dir : path-like
        Root of the derivative dataset the spectrogram, target, mask and prediction are written to, with the
        BIDS-App's names (see :func:`default_output_dir` for the widget's default).
    device : {'auto', 'cpu', 'cuda'}
        Where the model runs.
    scan_backend : {'auto', 'chunked', 'reference', 'mamba_ssm'}
        Selective-scan backend of the Mamba blocks (``mamba_ssm`` needs CUDA).
    batch_size : int
        Pairs per forward pass.
    report : callable, optional
        Called with a :class:`Progress` from inside the spectrogram computation (window blocks), where the
        generator cannot yield.
    should_stop : callable, optional
        Polled there too; when it returns True the run stops and the generator returns ``None``.

    Yields
    ------
    Progress

    Returns
    -------
    RunResult or None
        ``None`` when stopped through ``should_stop``.

    Raises
    ------
    spec2vol_bids.errors.Spec2VolError
        Wrong channels or frequencies for the checkpoint (``DataError``), a missing file (``NoInputError``), no
        GPU for ``device='cuda'`` or an unusable scan backend (``UsageError``/``ScanBackendError``), ...
    """
    try:
        result = yield from _predict_run(pair, checkpoint, out_dir=out_dir, device=device, scan_backend=scan_backend,
                                         batch_size=batch_size, report=report, should_stop=should_stop)
    except Cancelled:
        return None
    return result


def _inner(stage: str, report, should_stop):
    def callback(done: int, total: int) -> None:
        if should_stop is not None and should_stop():
            raise Cancelled(stage)
        if report is not None:
            report(Progress(stage, int(done), int(total)))

    return callback


def default_output_dir(bids_dir: str | os.PathLike) -> Path:
    """Where the widget writes derivatives when no output folder is chosen.

    A folder per dataset under ``$XDG_CACHE_HOME/spec2vol-bids/napari`` (default ``~/.cache``), so that
    nothing is written into the raw dataset unless the user asks for it.
    """
    import hashlib

    root = Path(bids_dir).resolve()
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:10]
    return cache_root() / "napari" / f"{root.name}-{digest}"


def cache_root() -> Path:
    """``$SPEC2VOL_CACHE`` or ``$XDG_CACHE_HOME/spec2vol-bids`` (default ``~/.cache/spec2vol-bids``)."""
    if os.environ.get("SPEC2VOL_CACHE"):
        return Path(os.environ["SPEC2VOL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "spec2vol-bids"


def _predict_run(pair, checkpoint, *, out_dir, device, scan_backend, batch_size, report, should_stop):
    import nibabel as nib

    from spec2vol_bids.config import PreprocConfig
    from spec2vol_bids.io.derivatives import PREDICTION
    from spec2vol_bids.pipeline import steps
    from spec2vol_bids.pipeline.group import score_run

    from ._reader import image_to_napari, load_bold

    if int(batch_size) < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")
    ckpt_path = require_path(checkpoint, "the checkpoint", expected="a checkpoint file",
                             hint="Choose a checkpoint written by 'spec2vol_bids train'.")
    yield Progress("loading the checkpoint", 0, 1)
    from spec2vol_bids.model.scan import resolve_backend
    from spec2vol_bids.train.checkpoint import check_compatible, load_checkpoint

    dev = resolve_device(device)
    backend = resolve_backend(scan_backend, dev)  # raises ScanBackendError for e.g. mamba_ssm on the CPU
    ckpt = load_checkpoint(ckpt_path)
    cfg = PreprocConfig.from_dict(ckpt.get("preprocessing") or {})
    tr = float(pair.repetition_time)

    yield Progress("checking the run", 0, 1)
    info = steps.inspect_run(pair.eeg_file, pair.bold_file, repetition_time=tr, config=cfg,
                             channels_tsv=pair.channels_tsv, events_tsv=pair.events_tsv)
    check_compatible(ckpt, channels=info.channels)  # before any heavy work: wrong channels -> DataError

    out_dir = Path(out_dir)
    yield Progress("EEG spectrogram", 0, pair.n_volumes)
    files = steps.preprocess_run(pair, out_dir, config=cfg, progress=_inner("EEG spectrogram", report, should_stop))
    spec_file, target_file, mask_file = files["spectrogram"], files["target"], files["mask"]
    pred_file = PREDICTION.path(out_dir, target_file)  # the target's space and grid
    stage = f"predicting on {dev}"
    yield Progress(stage, 0, 1)
    steps.predict_run(spec_file, target_file, ckpt_path, out_file=pred_file, device=dev,
                      batch_size=int(batch_size), eeg_file=pair.eeg_file, bold_file=pair.bold_file,
                      progress=_inner(stage, report, should_stop), scan_backend=backend)

    yield Progress("metrics", 0, 1)
    predicted, info_pred = load_bold(pred_file)  # (t, z, y, x), canonical
    scores = score_run(pred_file, target_file, mask_file, per_volume=True)
    idx = scores["volume_indices"]
    target_img = nib.load(str(target_file))
    target = np.asarray(target_img.dataobj, dtype=np.float32)[..., idx]  # [X, Y, Z, N] on the model grid
    sidecar = {"RepetitionTime": tr, "VolumeIndices": idx.tolist()}
    measured, _ = image_to_napari(nib.Nifti1Image(np.ascontiguousarray(target), target_img.affine),
                                  sidecar=sidecar, kind="bold-target", name=target_file.name)
    r_model = scores["correlation_map"]  # [Z, X, Y]
    r_map, _ = image_to_napari(nib.Nifti1Image(r_model.transpose(1, 2, 0).astype(np.float32), target_img.affine),
                               name="dynamic-correlation")
    model = ckpt.get("model", {})
    meta = {
        "eeg_file": str(pair.eeg_file),
        "bold_file": str(pair.bold_file),
        "spectrogram_file": str(spec_file),
        "target_file": str(target_file),
        "prediction_file": str(pred_file),
        "checkpoint": str(ckpt_path),
        "checkpoint_sha256": ckpt.get("sha256"),
        "model_name": model.get("name") if isinstance(model, dict) else None,
        "device": dev,
        "scan_backend": backend,
        "repetition_time": tr,
        "onset_source": info.onsets.source,
        "affine": info_pred["affine"],
    }
    yield Progress("metrics", 1, 1)
    return RunResult(run=pair.name, measured=measured, predicted=predicted, volume_indices=idx,
                     scale=info_pred["scale"], translate=info_pred["translate"],
                     ssim=np.asarray(scores["ssim_per_volume"], dtype=float),
                     psnr=np.asarray(scores["psnr_per_volume"], dtype=float),
                     spatial_r=np.asarray(scores["spatial_correlation"], dtype=float),
                     dynamic_r=float(scores["dynamic_correlation"]), correlation_map=r_map.astype(np.float32),
                     metadata=meta)


def find_run(pairs, name: str):
    """The pair called ``name`` (:attr:`RunPair.name`) among ``pairs``.

    Raises
    ------
    NoMatchError
        No pair has that name.
    """
    for pair in pairs:
        if pair.name == name:
            return pair
    raise NoMatchError(f"the dataset has no paired run {name!r}",
                       hint=f"Choose one of {', '.join(p.name for p in pairs) or 'none'}.")


def describe(result: RunResult) -> dict[str, Any]:
    """A one-line summary of a result (for the widget's status line and logs)."""
    return {
        "run": result.run,
        "volumes": int(len(result.volume_indices)),
        "SSIM": float(np.mean(result.ssim)),
        "PSNR (dB)": float(np.mean(result.psnr)),
        "r": float(np.nanmean(result.spatial_r)) if np.isfinite(result.spatial_r).any() else float("nan"),
        "dynamic r": result.dynamic_r,
        "device": result.metadata.get("device"),
    }
