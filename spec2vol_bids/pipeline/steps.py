"""The run-level steps: one paired run from raw files to derivative files.

These functions are what the nipype interfaces (:mod:`spec2vol_bids.interfaces`), the command line and the napari
plugin call; each reads its inputs from files (:mod:`spec2vol_bids.bids`), runs the pure functions of
:mod:`spec2vol_bids.preproc` (or a trained model) and writes one derivative with :mod:`spec2vol_bids.io`, whose
name and sidecar metadata are declared in :mod:`spec2vol_bids.io.derivatives`:

* :func:`inspect_run`: cheap header-only checks of a run (used before any processing starts);
* :func:`compute_spectrogram`: EEG file -> ``*_desc-stft_spectrogram.h5`` (+ ``.json``), streamed window by window;
* :func:`compute_target`: BOLD file -> ``*_desc-target_bold.nii.gz`` and ``*_desc-brain_mask.nii.gz`` (+ ``.json``),
  named in the space of the BOLD file by :func:`target_paths`;
* :func:`predict_run`: spectrogram + target grid + checkpoint -> ``*_desc-spec2vol_bold.nii.gz`` (+ ``.json``);
* :func:`preprocess_run`: the first two for a :class:`~spec2vol_bids.bids.runs.RunPair`, into a derivative folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..bids.bold import load_bold_header
from ..bids.eeg import EEGRecording, VolumeOnsets, volume_onsets
from ..config import PreprocConfig
from ..errors import DataError, Spec2VolError
from ..io.derivatives import (
    MASK,
    MODEL_RESOLUTION,
    PREDICTION,
    SPECTROGRAM,
    TARGET,
    resolution_description,
    space_entities,
    xform_code,
)
from ..io.names import bids_uri, parse_entities, sidecar_path
from ..io.nifti import write_nifti
from ..io.spectrogram import load_spectrogram, write_spectrogram

__all__ = [
    "RunInfo",
    "inspect_run",
    "compute_spectrogram",
    "compute_target",
    "target_paths",
    "predict_run",
    "preprocess_run",
]

LOGGER = logging.getLogger("spec2vol_bids.pipeline")


@dataclass
class RunInfo:
    """What :func:`inspect_run` learned from the headers of a run.

    Attributes
    ----------
    channels, channel_types : list of str
        The channels that enter the spectrogram (after selection), in row order, and their BIDS types.
    sfreq : float
        EEG sampling frequency (Hz).
    onsets : VolumeOnsets
        Volume onsets on the EEG clock and where they came from.
    native_shape : tuple of int
        BOLD image shape ``(X, Y, Z, T)``.
    eeg_duration : float
        Length of the EEG recording (s).
    excluded_bad_channels, kept_bad_channels : list of str
        Channels marked ``status`` = ``bad`` in ``channels.tsv`` that were left out of the spectrogram (the
        default), or kept in it (``eeg.keep_bad_channels``).
    """

    channels: list[str]
    channel_types: list[str]
    sfreq: float
    onsets: VolumeOnsets
    native_shape: tuple[int, ...]
    eeg_duration: float = 0.0
    excluded_bad_channels: list[str] = field(default_factory=list)
    kept_bad_channels: list[str] = field(default_factory=list)


def _open_eeg(eeg_file, channels_tsv, cfg) -> tuple[EEGRecording, np.ndarray]:
    """The recording and the indices of its channels that enter the spectrogram, in row order.

    The channel selection of the settings (:func:`spec2vol_bids.preproc.eeg.select_channels`), then, unless
    ``eeg.keep_bad_channels``, without the channels ``channels.tsv`` marks bad.
    """
    from ..preproc.eeg import select_channels

    rec = EEGRecording(eeg_file, channels_tsv)
    picks = select_channels(rec.ch_names, rec.ch_types, cfg.eeg)
    if rec.bads and not cfg.eeg.keep_bad_channels:
        kept = np.asarray([i for i in picks if rec.ch_names[i] not in rec.bads], dtype=picks.dtype)
        if kept.size == 0:
            raise DataError(f"every selected channel of {Path(eeg_file).name} is marked bad in "
                            f"{Path(channels_tsv).name}", hint="Pass --keep-bad-channels to use them anyway, or "
                                                            "correct their status in channels.tsv")
        if cfg.eeg.include is not None:
            named = [n for n in cfg.eeg.include if n in rec.bads]
            if named:
                LOGGER.warning("%s: %s listed in --include-channels %s marked bad in channels.tsv and left out "
                               "(--keep-bad-channels keeps them)", Path(eeg_file).name, ", ".join(named),
                               "is" if len(named) == 1 else "are")
        picks = kept
    return rec, picks


def _bad_channels(rec: EEGRecording, picks, cfg) -> tuple[list[str], list[str]]:
    """(excluded, kept) channels marked bad: ``RunInfo.excluded_bad_channels`` / ``kept_bad_channels``."""
    used = {rec.ch_names[i] for i in picks}
    bads = list(rec.bads)
    if cfg.eeg.keep_bad_channels:
        return [], [n for n in bads if n in used]
    return bads, []


def inspect_run(eeg_file: str | os.PathLike, bold_file: str | os.PathLike, *, repetition_time: float,
                config=None, channels_tsv: str | os.PathLike | None = None,
                events_tsv: str | os.PathLike | None = None) -> RunInfo:
    """Check a run from its headers only (no samples or voxels are read) and describe it.

    Catches before any processing starts: unreadable EEG or BOLD headers, channel selections that do not
    match the recording, missing volume markers (warning), EEG shorter than the BOLD run, and, when artefacts are
    to be corrected (``correction.method``), a recording without scanner triggers or without an ECG channel.

    Raises
    ------
    DataError
        Any of the above problems.
    """
    cfg = PreprocConfig.coerce(config)
    img = load_bold_header(bold_file)
    rec, picks = _open_eeg(eeg_file, channels_tsv, cfg)
    onsets = volume_onsets(rec, n_volumes=int(img.shape[3]), repetition_time=float(repetition_time),
                           marker=cfg.eeg.volume_marker, events_tsv=events_tsv)
    excluded, kept = _bad_channels(rec, picks, cfg)
    if cfg.correction.method != "none":
        from .artefacts import check_correctable

        check_correctable(rec, cfg, onsets, events_tsv=events_tsv)
    return RunInfo(channels=[rec.ch_names[i] for i in picks], channel_types=[rec.ch_types[i] for i in picks],
                   sfreq=rec.sfreq, onsets=onsets, native_shape=tuple(int(s) for s in img.shape),
                   eeg_duration=rec.duration, excluded_bad_channels=excluded, kept_bad_channels=kept)


def compute_spectrogram(eeg_file: str | os.PathLike, *, n_volumes: int, repetition_time: float,
                        out_file: str | os.PathLike, config=None, channels_tsv: str | os.PathLike | None = None,
                        events_tsv: str | os.PathLike | None = None, bold_file: str | os.PathLike | None = None,
                        progress: bool = False, data_file: str | os.PathLike | None = None,
                        qc_files=(), eeg_dataset: str = "raw", eeg_desc: str | None = None) -> tuple[Path, Path]:
    """Compute and write the volume-locked spectrogram of one EEG run.

    Parameters
    ----------
    eeg_file : path-like
        Raw EEG data file of the run.
    n_volumes : int
        Number of volumes of the paired BOLD series (one spectrogram row per volume).
    repetition_time : float
        ``RepetitionTime`` of the BOLD series (s).
    out_file : path-like
        Destination ``..._desc-stft_spectrogram.h5`` (its ``.json`` sidecar is written next to it).
    config : PreprocConfig or dict, optional
        Preprocessing settings (default: the official pipeline).
    channels_tsv, events_tsv : path-like, optional
        The run's ``channels.tsv`` (channel types) and ``events.tsv`` (volume markers when the raw file has
        none).
    bold_file : path-like, optional
        The paired BOLD file, listed in ``Sources``.
    progress : bool
        Show a progress bar over the windows.
    data_file : path-like, optional
        Read the samples from this recording instead (the artefact-corrected copy of ``eeg_file``:
        :mod:`spec2vol_bids.pipeline.artefacts`); it must have the same channels, rate and length. The volume
        onsets and ``Sources`` still come from ``eeg_file``.
    qc_files : sequence of path-like
        The run's artefact QC files; their numbers go into the sidecar (``ArtefactCorrection``, ``ArtefactQC``,
        ``ArtefactWarnings``; :func:`~spec2vol_bids.pipeline.artefacts.merge_qc`).
    eeg_dataset : str
        Name of the dataset holding ``eeg_file`` in the BIDS URIs of the sidecar: ``raw`` (default) or the
        ``-d NAME`` of a derivatives dataset (preprocessed EEG).
    eeg_desc : str, optional
        The ``desc`` label of a preprocessed ``eeg_file`` (recorded in ``EEGSource``).

    Returns
    -------
    h5_path, json_path : Path

    Raises
    ------
    DataError
        Unreadable EEG, NaN samples, EEG shorter than the BOLD run, run too short for one pair, a ``data_file``
        that does not match ``eeg_file``.
    """
    from ..preproc.eeg import spectrogram_from_reader
    from ..preproc.pairs import pairs_for_config

    cfg = PreprocConfig.coerce(config)
    rec, picks = _open_eeg(eeg_file, channels_tsv, cfg)
    onsets = volume_onsets(rec, n_volumes=int(n_volumes), repetition_time=float(repetition_time),
                           marker=cfg.eeg.volume_marker, events_tsv=events_tsv)
    names = [rec.ch_names[i] for i in picks]
    source = rec
    if data_file is not None:
        source = EEGRecording(data_file)
        if (source.ch_names, source.sfreq, source.n_samples) != (rec.ch_names, rec.sfreq, rec.n_samples):
            raise DataError(f"the corrected EEG {Path(data_file).name} does not match {Path(eeg_file).name} "
                            f"(channels, sampling rate or length)",
                            hint="Delete the run's working directory and run again")
    spec, freqs, valid = spectrogram_from_reader(
        source.segment_reader(picks), onsets.onsets, rec.sfreq, rec.n_samples, cfg.eeg,
        tr=float(repetition_time), channel_names=names, progress=progress)
    # spec: [n_volumes, n_channels, n_freqs]; valid: [n_volumes]
    windows, targets = pairs_for_config(int(n_volumes), valid, float(repetition_time), cfg.pairing)
    core, total = cfg.eeg.window_seconds(float(repetition_time))
    excluded, kept = _bad_channels(rec, picks, cfg)
    attrs: dict[str, Any] = {
        "channels": names,
        "channel_types": [rec.ch_types[i] for i in picks],
        "sfreq": rec.sfreq,
        "repetition_time": float(repetition_time),
        "window_length": float(total),
        "taper": cfg.eeg.taper,
        "units": _units(cfg),
        "onset_source": onsets.source,
        "volume_marker": onsets.marker or "n/a",
        "config": cfg.to_dict(),
        # channels.tsv status=bad: left out (default) or kept (eeg.keep_bad_channels; MNE's info["bads"])
        "excluded_bad_channels": excluded,
        "kept_bad_channels": kept,
    }
    eeg_uri = bids_uri(eeg_file, eeg_dataset)
    sources = [eeg_uri] + ([bids_uri(bold_file)] if bold_file else [])
    eeg_source: dict[str, Any] = {"Dataset": eeg_dataset, "File": eeg_uri}
    if eeg_desc is not None:
        eeg_source["Desc"] = eeg_desc
    fields: dict[str, Any] = {
        "Sources": sources,
        "EEGSource": eeg_source,
        "VolumeMarker": onsets.marker,
        "NumberOfVolumeMarkers": onsets.n_markers,
        "AlignmentWarnings": list(onsets.messages),
        # volumes whose missing trigger was filled at the midpoint of its neighbours (bids.eeg policy)
        "FilledVolumeTriggers": [int(i) for i in onsets.filled],
        # channels marked status=bad in channels.tsv, with their status_description
        "ExcludedBadChannels": {n: rec.bads[n] for n in excluded},
        "KeptBadChannels": {n: rec.bads[n] for n in kept},
    }
    if qc_files or cfg.correction.method != "none":
        from .artefacts import merge_qc

        fields.update(merge_qc(list(qc_files), cfg))
        for warning in fields["ArtefactWarnings"]:
            LOGGER.warning("%s: %s", Path(eeg_file).name, warning)
    sidecar = SPECTROGRAM.sidecar(fields)
    LOGGER.info("%s: spectrogram %s, %d valid windows, %d pairs", Path(eeg_file).name, tuple(spec.shape),
                int(valid.sum()), len(targets))
    return write_spectrogram(out_file, spectrogram=spec, valid=valid, frequencies=freqs,
                             volume_onsets=onsets.onsets, pair_windows=windows, pair_targets=targets,
                             attrs=attrs, sidecar=sidecar)


def _units(cfg) -> str:
    base = "dB re 1 V^2" if cfg.eeg.log_power else "V"
    if cfg.eeg.scaling != "none":
        return f"z-score ({cfg.eeg.scaling}) of {base}"
    return base


def target_paths(out_dir: str | os.PathLike, bold_file: str | os.PathLike, config=None) -> tuple[Path, Path]:
    """Where the target and brain mask made from ``bold_file`` go in ``out_dir``, named in its space.

    The run entities come from ``bold_file``; its ``space`` (and ``cohort``) are kept, and ``res`` says whether
    the model grid is the source's (its ``res``) or a resampled one (``res-model``): see
    :func:`spec2vol_bids.io.derivatives.space_entities`. Only the header of ``bold_file`` is read.

    Returns
    -------
    target, mask : Path
    """
    from ..preproc.fmri import target_shape

    cfg = PreprocConfig.coerce(config)
    native = tuple(int(n) for n in load_bold_header(bold_file).shape[:3])
    space = space_entities(bold_file, grid_changed=target_shape(native, cfg.bold) != native)
    return TARGET.path(out_dir, bold_file, space=space), MASK.path(out_dir, bold_file, space=space)


def compute_target(bold_file: str | os.PathLike, *, out_file: str | os.PathLike, mask_file: str | os.PathLike,
                   repetition_time: float, config=None, task_name: str | None = None,
                   brain_mask: str | os.PathLike | None = None, dataset: str = "raw",
                   space: str | None = None) -> tuple[Path, Path, Path, Path]:
    """Resize and scale one BOLD series into the model's target grid and write it with its brain mask.

    Parameters
    ----------
    bold_file : path-like
        BOLD image ``[X, Y, Z, T]``: the raw series, or a preprocessed one from a derivatives dataset (e.g.
        fMRIPrep's ``desc-preproc_bold``).
    out_file, mask_file : path-like
        Destinations of ``..._desc-target_bold.nii.gz`` and ``..._desc-brain_mask.nii.gz``
        (:func:`target_paths`); their ``space`` entity sets the NIfTI xform codes (scanner without one, MNI for
        a standard template, aligned otherwise) and ``res-model`` adds a ``Resolution`` to the sidecars.
    repetition_time : float
        Stored in ``pixdim[4]`` and the sidecar.
    config : PreprocConfig or dict, optional
        Preprocessing settings (the ``bold`` section is used).
    task_name : str, optional
        ``TaskName`` for the sidecar (default: the ``task`` entity of the file name).
    brain_mask : path-like, optional
        A brain mask on the grid of ``bold_file`` (e.g. fMRIPrep's ``desc-brain_mask``), resampled to the model
        grid; default: a mask computed from the data.
    dataset : str
        Name of the dataset holding ``bold_file`` (and ``brain_mask``) in the sidecars' BIDS URIs: ``raw``
        (default) or the ``-d NAME`` of a derivatives dataset.
    space : str, optional
        The ``--bold-space`` the derivative was chosen for, recorded in the sidecar's ``BoldSource``
        (default: ``native``, the BOLD run's own space).

    Returns
    -------
    target, target_json, mask, mask_json : Path

    Raises
    ------
    DataError
        The image cannot be read (corrupt, truncated) or is not 4-D; the mask does not fit its grid.
    """
    from ..preproc.fmri import bold_target

    cfg = PreprocConfig.coerce(config)
    img = load_bold_header(bold_file, keep_file_open=True)
    native_mask = _read_mask(brain_mask) if brain_mask is not None else None
    try:
        # Volumes are read one at a time through one open file handle (a gzip stream is then decompressed
        # once, front to back), so the native series is never held in memory at once.
        result = bold_target(img.dataobj, img.affine, cfg.bold, mask=native_mask)
    except Spec2VolError:
        raise
    except Exception as err:  # zlib.error, EOFError, OSError, ValueError from a truncated or corrupt file
        raise DataError(f"cannot read the voxels of {Path(bold_file).name} ({type(err).__name__}: {err})",
                        hint="The file is truncated or corrupt; replace it or exclude the run") from None
    native_shape = (*result.native_shape, int(img.shape[3]))
    task = task_name or parse_entities(bold_file).get("task")
    resize = "dct" if result.resized else "none"
    bold_uri = bids_uri(bold_file, dataset)
    mask_uri = bids_uri(brain_mask, dataset) if brain_mask is not None else None
    source: dict[str, Any] = {"Dataset": dataset, "File": bold_uri, "Space": space or "native"}
    if mask_uri is not None:
        source["Mask"] = mask_uri
    scaled, affine, mask = result.data, result.affine, result.mask  # [X, Y, Z, T], (4, 4), [X, Y, Z]
    names = parse_entities(out_file)
    grid: dict[str, Any] = {"SpatialReference": bold_uri}  # the image the target is aligned with
    if names.get("res") == MODEL_RESOLUTION:
        zooms = np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
        grid["Resolution"] = resolution_description(scaled.shape, zooms, bold_file)
    sidecar = TARGET.sidecar({
        "RepetitionTime": float(repetition_time),
        "TaskName": task,
        "Sources": [bold_uri] + ([mask_uri] if mask_uri else []),
        "BoldSource": source,
        **grid,
        "Scaling": cfg.bold.scaling,
        "Resize": resize,
        "NativeShape": list(native_shape),
        "NativeAffine": np.asarray(img.affine, dtype=float).tolist(),
    })
    code = xform_code(names)
    target, target_json = write_nifti(out_file, scaled, affine, sidecar=sidecar, dtype=np.float32,
                                      repetition_time=float(repetition_time), xform_code=code)
    mask_sidecar = MASK.sidecar({"Sources": [mask_uri or bold_uri], **grid}, description=MASK.description + (
        f"; the {dataset} brain mask, nearest-neighbour resampled" if mask_uri else ""))
    mask_path, mask_json = write_nifti(mask_file, mask.astype(np.uint8), affine, sidecar=mask_sidecar,
                                       dtype=np.uint8, xform_code=code)
    LOGGER.info("%s: target %s (%s resize, %s scaling)", Path(bold_file).name, tuple(scaled.shape), resize,
                cfg.bold.scaling)
    return target, target_json, mask_path, mask_json


def _read_mask(path: str | os.PathLike) -> np.ndarray:
    """A 3-D brain mask as a bool array ``[X, Y, Z]`` (a trailing axis of length 1 is dropped)."""
    import nibabel as nib

    try:
        data = np.asarray(nib.load(str(path)).dataobj)
    except Exception as err:  # nibabel, zlib and OS errors for corrupt files
        raise DataError(f"cannot read the brain mask {Path(path).name} ({type(err).__name__}: {err})",
                        hint="Replace the corrupt file") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"the brain mask {Path(path).name} is {data.ndim}-D, expected 3-D [X, Y, Z]",
                        hint="Use the brain mask of this run's BOLD series")
    return data > 0


def predict_run(spectrogram_file: str | os.PathLike, target_file: str | os.PathLike,
                checkpoint: str | os.PathLike, *, out_file: str | os.PathLike, device: str = "auto",
                batch_size: int = 8, eeg_file: str | os.PathLike | None = None,
                bold_file: str | os.PathLike | None = None, progress=False,
                scan_backend: str | None = None) -> tuple[Path, Path]:
    """Predict the BOLD volumes of one run from its spectrogram with a trained checkpoint.

    Parameters
    ----------
    spectrogram_file : path-like
        The run's ``..._desc-stft_spectrogram.h5``.
    target_file : path-like
        The run's ``..._desc-target_bold.nii.gz`` (its grid and affine are used for the prediction).
    checkpoint : path-like
        A spec2vol-bids checkpoint (:mod:`spec2vol_bids.train.checkpoint`).
    out_file : path-like
        Destination ``..._desc-spec2vol_bold.nii.gz``.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    batch_size : int
        Pairs per forward pass.
    eeg_file, bold_file : path-like, optional
        Raw files listed in ``Sources``.
    progress : bool or callable
        Show a progress bar, or call ``progress(done, total)`` after every batch (see
        :func:`~spec2vol_bids.train.predict.predict_windows`).
    scan_backend : str, optional
        Selective-scan backend (default: automatic for the device).

    Returns
    -------
    nifti, json : Path

    Raises
    ------
    DataError
        The checkpoint does not fit the data (channels, frequency axis or grid).
    """
    import nibabel as nib

    from ..train.checkpoint import check_compatible, load_checkpoint
    from ..train.predict import predict_windows
    from ..utils import sha256_file

    spec = load_spectrogram(spectrogram_file)
    target = nib.load(str(target_file))
    ckpt = load_checkpoint(checkpoint)
    check_compatible(ckpt, channels=spec.channels, frequencies=spec.frequencies,
                     grid=tuple(int(s) for s in target.shape[:3]))
    x = spec.windows()  # [n_pairs, n_windows, C, F]
    pred = predict_windows(ckpt, x, device=device, batch_size=int(batch_size), progress=progress,
                           scan_backend=scan_backend)
    pred = np.asarray(pred, dtype=np.float32).transpose(2, 3, 1, 0)  # [n, D, X, Y] -> [X, Y, D, n]
    tr = float(spec.repetition_time)
    model = ckpt.get("model", {}) if isinstance(ckpt, Mapping) else {}
    sources = [bids_uri(p) for p in (eeg_file, bold_file) if p]
    # the target's grid: the same space, resolution and reference image
    grid = {k: v for k, v in _read_json(sidecar_path(target_file)).items() if k in ("SpatialReference", "Resolution")}
    sidecar = PREDICTION.sidecar({
        "RepetitionTime": tr,
        "TaskName": parse_entities(spectrogram_file).get("task"),
        "Sources": sources,
        **grid,
        "VolumeIndices": [int(t) for t in spec.pair_targets],
        "ModelName": model.get("name", "spec2vol"),
        "ModelSHA256": sha256_file(checkpoint),
        "Device": device,
    })
    LOGGER.info("%s: predicted %d volumes", Path(spectrogram_file).name, pred.shape[-1])
    return write_nifti(out_file, pred, target.affine, sidecar=sidecar, dtype=np.float32, repetition_time=tr,
                       xform_code=int(target.header["sform_code"]) or 1)


def _read_json(path: Path) -> dict:
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def preprocess_run(pair, out_dir: str | os.PathLike, *, config=None, progress=False) -> dict[str, Path]:
    """The spectrogram, target and brain-mask derivatives of one paired run, written under ``out_dir``.

    What the BIDS-App's workflow does for a run (without nipype): the artefact steps
    (:func:`~spec2vol_bids.pipeline.artefacts.run_artefact_steps`, in a temporary folder inside ``out_dir``,
    removed afterwards), :func:`compute_spectrogram` on the run's EEG (preprocessed EEG from ``-d`` when the pair
    has it), then :func:`compute_target` on the run's target BOLD (fMRIPrep's series with its mask when the pair
    has one).

    Parameters
    ----------
    pair : spec2vol_bids.bids.runs.RunPair
        The paired run.
    out_dir : path-like
        Root of the derivative dataset; the files get their names from :mod:`spec2vol_bids.io.derivatives`.
    config : PreprocConfig or dict, optional
        Preprocessing settings (default: the official pipeline).
    progress : bool or callable
        The spectrogram's progress (see :func:`compute_spectrogram`).

    Returns
    -------
    dict
        ``{"spectrogram": Path, "target": Path, "mask": Path}``.
    """
    import tempfile

    from .artefacts import run_artefact_steps

    cfg = PreprocConfig.coerce(config)
    eeg = getattr(pair, "source_eeg", pair.eeg_file)
    channels = getattr(pair, "source_channels_tsv", pair.channels_tsv)
    events = getattr(pair, "source_events_tsv", pair.events_tsv)
    preproc_eeg = getattr(pair, "eeg_preproc", None)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".spec2vol-artefacts-", dir=out_dir) as work:
        data_file, qc_files = run_artefact_steps(
            eeg, work, n_volumes=pair.n_volumes, repetition_time=pair.repetition_time, config=cfg,
            channels_tsv=channels, events_tsv=events, progress=progress if isinstance(progress, bool) else False)
        spectrogram, _ = compute_spectrogram(
            eeg, n_volumes=pair.n_volumes, repetition_time=pair.repetition_time,
            out_file=SPECTROGRAM.path(out_dir, pair.eeg_file), config=cfg, channels_tsv=channels,
            events_tsv=events, bold_file=pair.bold_file, progress=progress, data_file=data_file,
            qc_files=qc_files, eeg_dataset=getattr(pair, "eeg_dataset", "raw"),
            eeg_desc=preproc_eeg.desc if preproc_eeg is not None else None)
    preproc = pair.preproc
    target_file, mask_file = target_paths(out_dir, pair.target_bold, config)
    target, _, mask, _ = compute_target(
        pair.target_bold, out_file=target_file, mask_file=mask_file,
        repetition_time=preproc.repetition_time if preproc is not None else pair.repetition_time, config=config,
        brain_mask=preproc.mask if preproc is not None else None,
        dataset=preproc.dataset if preproc is not None else "raw",
        space=preproc.space if preproc is not None else None)
    return {"spectrogram": spectrogram, "target": target, "mask": mask}
