"""Readers for the napari plugin: BIDS EEG recordings, spectrogram derivatives and BOLD NIfTI images.

napari calls :func:`napari_get_reader` with a path; it returns a reader function only for files this plugin can
read, judged by their content, and ``None`` otherwise so that another plugin (napari-nibabel, an HDF5 viewer, an
EEG plugin) gets them: a spectrogram ``.h5`` with the datasets of the spectrogram derivative, a 4-D NIfTI (a BOLD
series), a 3-D NIfTI only inside a spec2vol-bids derivatives dataset (its masks), and BIDS EEG recordings
(``*_eeg.vhdr``/``.edf``/``.bdf``/``.set``):

================================  =====================================================================
file                              layers
================================  =====================================================================
``*_eeg.vhdr`` / ``.edf`` /       one image ``(channel, time)`` (each channel robust-z-scored for display;
``.bdf`` / ``.set``               time in seconds) plus, when the recording has volume markers, a shapes
                                  layer with one vertical line per volume onset
spectrogram ``.h5``               one image ``(volume, channel, frequency)``: time in seconds (TR per row),
                                  frequency in Hz; every attribute of the file in ``metadata``
``*.nii`` / ``*.nii.gz``          4-D BOLD as an image ``(t, z, y, x)`` in the closest canonical (RAS+)
                                  orientation with the voxel zooms as ``scale``; 3-D images as ``(z, y, x)``;
                                  ``*_mask.nii*`` as a labels layer
================================  =====================================================================

The layer-data functions (:func:`read_eeg`, :func:`read_spectrogram`, :func:`read_nifti`) are plain functions
usable without napari; they return napari ``LayerDataTuple`` lists.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spec2vol_bids.errors import DataError, Spec2VolError

LayerDataTuple = tuple[Any, dict, str]
PathLike = str | os.PathLike

EEG_SUFFIXES = (".vhdr", ".edf", ".bdf", ".set")
#: BIDS EEG recordings: the only EEG files the reader claims
BIDS_EEG_SUFFIXES = tuple(f"_eeg{ext}" for ext in EEG_SUFFIXES)
#: the datasets that make an HDF5 file a spectrogram derivative (CONTRIBUTING.md, data contracts)
SPECTROGRAM_DATASETS = ("spectrogram", "valid", "frequencies", "volume_onsets", "pairs/windows", "pairs/targets")
NIFTI_SUFFIXES = (".nii", ".nii.gz")

#: Recordings larger than this many samples (channels x time) are block-averaged in time for display.
MAX_DISPLAY_SAMPLES = 40_000_000


def napari_get_reader(path: PathLike | Sequence[PathLike]) -> Callable[[Any], list[LayerDataTuple]] | None:
    """Return a reader for ``path`` when this plugin understands it, else ``None``.

    Parameters
    ----------
    path : str | os.PathLike | list of str
        A file path, or a list of paths (napari's stack mode; every path must be of a supported kind).

    Returns
    -------
    reader : callable | None
        A function taking the same ``path`` and returning a list of ``(data, kwargs, layer_type)`` tuples.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or any(claims(p) is None for p in paths):
        return None
    return read_paths


def claims(path: PathLike) -> str | None:
    """The kind of file (``eeg``, ``spectrogram``, ``nifti``) when this plugin can read ``path``, else ``None``.

    Judged by content, cheaply (headers only): an HDF5 file holding the spectrogram derivative's datasets (any
    name), a NIfTI image that is 4-D or lies in a spec2vol-bids derivatives dataset (its 3-D masks), a BIDS EEG
    recording (``*_eeg.vhdr``, ``.edf``, ``.bdf``, ``.set``) that exists. Unreadable files are not claimed.
    """
    p = Path(path)
    if not p.is_file():
        return None
    name = p.name.lower()
    if name.endswith(BIDS_EEG_SUFFIXES):
        return "eeg"
    if name.endswith((".h5", ".hdf5")):
        return "spectrogram" if _is_spectrogram(p) else None
    if name.endswith(NIFTI_SUFFIXES):
        try:
            import nibabel as nib

            ndim = len(nib.load(p).shape)
        except Exception:  # not a NIfTI header: another reader's file, or a broken one
            return None
        return "nifti" if ndim == 4 or (ndim == 3 and _in_spec2vol_dataset(p)) else None
    return None


def _is_spectrogram(path: Path) -> bool:
    try:
        import h5py

        with h5py.File(path, "r") as h5:
            return all(key in h5 for key in SPECTROGRAM_DATASETS) and h5["spectrogram"].ndim == 3
    except Exception:  # not HDF5, or unreadable
        return False


def _in_spec2vol_dataset(path: Path) -> bool:
    """Whether a folder above ``path`` is a derivatives dataset of the spec2vol-bids BIDS-App."""
    from spec2vol_bids.io.dataset import DERIVATIVE_DATASET_NAME, dataset_generator

    for folder in list(path.parents)[:6]:
        exists, name = dataset_generator(folder)
        if exists:
            return name == DERIVATIVE_DATASET_NAME
    return False


def read_paths(path: PathLike | Sequence[PathLike]) -> list[LayerDataTuple]:
    """Read one or several supported files into napari layer-data tuples.

    Parameters
    ----------
    path : str | os.PathLike | list of str
        The file(s) to read.

    Returns
    -------
    layers : list of tuple
        ``(data, kwargs, layer_type)`` tuples, in file order.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: list[LayerDataTuple] = []
    for p in paths:
        kind = _kind(p)
        if kind == "eeg":
            layers.extend(read_eeg(p))
        elif kind == "spectrogram":
            layers.extend(read_spectrogram(p))
        elif kind == "nifti":
            layers.extend(read_nifti(p))
        else:
            raise DataError(f"{p} is not a file this plugin reads", hint="Open an EEG, spectrogram .h5 or NIfTI file.")
    return layers


def _kind(path: PathLike) -> str | None:
    name = os.fspath(path).lower()
    if name.endswith(EEG_SUFFIXES):
        return "eeg"
    if name.endswith((".h5", ".hdf5")):
        return "spectrogram"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    return None


def _strip_ext(path: PathLike) -> str:
    name = Path(path).name
    for ext in (".nii.gz", ".nii", ".h5", ".vhdr", ".edf", ".bdf", ".set"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _sidecar(path: PathLike) -> dict:
    """The JSON sidecar of a BIDS file (same name, ``.json``), or ``{}``."""
    from spec2vol_bids.io.names import sidecar_path

    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        return json.loads(side.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        warnings.warn(f"Could not read the sidecar {side}: {exc}", stacklevel=2)
        return {}


def _require_file(path: PathLike) -> Path:
    from spec2vol_bids.utils import require_path

    return require_path(path, "the file", hint="Check the path and open an existing file.")


# --------------------------------------------------------------------------------------------- NIfTI / BOLD


def nifti_kind(path: PathLike) -> str:
    """Classify a NIfTI file by its BIDS name: ``bold-predicted``, ``bold-target``, ``mask`` or ``image``."""
    name = Path(path).name
    if "_desc-spec2vol_" in name:
        return "bold-predicted"
    if "_desc-target_" in name:
        return "bold-target"
    if re.search(r"_(mask|dseg)\.nii(\.gz)?$", name):
        return "mask"
    return "image"


def load_bold(path: PathLike) -> tuple[np.ndarray, dict]:
    """Load a 3-D or 4-D NIfTI in the closest canonical orientation as a napari array and its geometry.

    Parameters
    ----------
    path : str | os.PathLike
        The NIfTI file.

    Returns
    -------
    data : ndarray
        ``(t, z, y, x)`` for 4-D images, ``(z, y, x)`` for 3-D ones (the RAS+ voxel axes reversed).
    info : dict
        ``scale`` and ``translate`` (time axis first for 4-D: ``repetition_time`` seconds per volume),
        ``affine`` (canonical voxel-to-world, 4x4 list), ``native_affine``, ``repetition_time``, ``zooms``,
        ``sidecar``, ``volume_indices`` (predicted derivatives: the target volume of each volume), ``kind``.
    """
    import nibabel as nib

    p = _require_file(path)
    try:
        img = nib.load(p)
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise DataError(f"{p} is not a readable NIfTI image ({exc})", hint="Check that the file is complete.") from exc
    try:
        # the voxels are read here (nib.load reads the header only): a truncated .nii.gz fails now
        return image_to_napari(img, sidecar=_sidecar(p), kind=nifti_kind(p), name=p.name, path=p)
    except Spec2VolError:
        raise
    except Exception as exc:  # EOFError, zlib.error, OSError, ValueError: truncated or corrupt voxel data
        raise DataError(f"the voxels of {p.name} cannot be read ({type(exc).__name__}: {exc})",
                        hint="The file is truncated or corrupt; check that it is complete (copy it again).") from exc


def image_to_napari(img, *, sidecar: dict | None = None, kind: str = "image", name: str = "image",
                    path: PathLike | None = None) -> tuple[np.ndarray, dict]:
    """Convert a nibabel image (file-backed or in memory) to a napari array and its geometry.

    See :func:`load_bold` for the outputs; ``sidecar`` supplies ``RepetitionTime`` and ``VolumeIndices``.
    """
    import nibabel as nib

    sidecar = dict(sidecar or {})
    p = Path(path) if path is not None else Path(name)
    if img.ndim not in (3, 4):
        raise DataError(f"{name} has {img.ndim} dimensions; 3-D or 4-D images are expected")
    canon = nib.as_closest_canonical(img)
    if kind == "mask":
        vol = np.asanyarray(canon.dataobj).astype(np.int32)
    else:
        vol = np.asarray(canon.get_fdata(dtype=np.float32), dtype=np.float32)
    zooms = tuple(float(z) for z in canon.header.get_zooms()[:3])
    origin = canon.affine[:3, 3]
    # napari axes are the voxel axes reversed: (x, y, z) -> (z, y, x); world origin likewise.
    scale = [zooms[2], zooms[1], zooms[0]]
    translate = [float(origin[2]), float(origin[1]), float(origin[0])]
    info: dict[str, Any] = {
        "path": str(path) if path is not None else None,
        "kind": kind,
        "affine": canon.affine.tolist(),
        "native_affine": img.affine.tolist(),
        "zooms": list(zooms),
        "sidecar": sidecar,
    }
    if vol.ndim == 4:
        tr = _repetition_time(canon, sidecar)
        indices = sidecar.get("VolumeIndices")
        start = 0.0
        if indices is not None:
            indices = np.asarray(indices, dtype=int)
            if indices.size != vol.shape[3]:
                raise DataError(
                    f"{p.name}: the sidecar lists {indices.size} VolumeIndices for {vol.shape[3]} volumes",
                    hint="The prediction and its sidecar do not belong together; re-run the prediction.",
                )
            if indices.size and not np.all(np.diff(indices) == 1):
                warnings.warn(
                    f"{p.name}: the predicted volumes are not consecutive; the time axis shows them in order "
                    "from the first index, so later volumes are not aligned with the measured run.",
                    stacklevel=2,
                )
            start = float(indices[0]) * tr if indices.size else 0.0
            info["volume_indices"] = indices.tolist()
        data = np.ascontiguousarray(vol.transpose(3, 2, 1, 0))
        scale = [tr, *scale]
        translate = [start, *translate]
        info["repetition_time"] = tr
    else:
        data = np.ascontiguousarray(vol.transpose(2, 1, 0))
    info["scale"] = scale
    info["translate"] = translate
    return data, info


def _repetition_time(img, sidecar: dict) -> float:
    tr = sidecar.get("RepetitionTime")
    if tr is not None and float(tr) > 0:
        return float(tr)
    zooms = img.header.get_zooms()
    if len(zooms) > 3 and float(zooms[3]) > 0:
        t_unit = img.header.get_xyzt_units()[1]
        factor = {"msec": 1e-3, "usec": 1e-6}.get(t_unit, 1.0)
        return float(zooms[3]) * factor
    return 1.0


def read_nifti(path: PathLike) -> list[LayerDataTuple]:
    """Read a NIfTI file as one napari layer (image, or labels for masks).

    Parameters
    ----------
    path : str | os.PathLike
        A 3-D or 4-D NIfTI file (``.nii`` or ``.nii.gz``).

    Returns
    -------
    layers : list of tuple
        One ``(data, kwargs, "image" | "labels")`` tuple; ``kwargs["metadata"]`` holds the geometry of
        :func:`load_bold`.
    """
    data, info = load_bold(path)
    axis_labels = ("time", "z", "y", "x") if data.ndim == 4 else ("z", "y", "x")
    units = ("s", "mm", "mm", "mm") if data.ndim == 4 else ("mm", "mm", "mm")
    kwargs: dict[str, Any] = {
        "name": _strip_ext(path),
        "scale": info["scale"],
        "translate": info["translate"],
        "metadata": info,
        "axis_labels": axis_labels,
        "units": units,
    }
    if info["kind"] == "mask":
        kwargs["opacity"] = 0.4
        return [(data, kwargs, "labels")]
    kwargs["colormap"] = "gray"
    kwargs["contrast_limits"] = _robust_limits(data)
    return [(data, kwargs, "image")]


def _robust_limits(data: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> tuple[float, float]:
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return (0.0, 1.0)
    a, b = np.percentile(finite, [lo, hi])
    if not b > a:
        a, b = float(finite.min()), float(finite.max())
        if not b > a:
            b = a + 1.0
    return (float(a), float(b))


# --------------------------------------------------------------------------------------- spectrogram (.h5)


def load_spectrogram(path: PathLike) -> tuple[np.ndarray, dict]:
    """Load a ``*_spectrogram.h5`` derivative (see CONTRIBUTING.md, data contracts) for display.

    Parameters
    ----------
    path : str | os.PathLike
        The HDF5 file.

    Returns
    -------
    spectrogram : ndarray, float32, shape (n_volumes, n_channels, n_freqs)
    meta : dict
        Every attribute (read by :func:`spec2vol_bids.io.spectrogram.load_spectrogram`) plus the
        ``frequencies``, ``volume_onsets``, ``valid``, ``pairs_windows`` and ``pairs_targets`` arrays.
    """
    from spec2vol_bids.io.spectrogram import load_spectrogram as load_derivative

    p = _require_file(path)
    try:
        content = load_derivative(p)
    except (OSError, KeyError) as exc:
        raise DataError(f"{p.name} is not a readable spectrogram derivative ({type(exc).__name__}: {exc})",
                        hint="Open a *_desc-stft_spectrogram.h5 written by spec2vol-bids.") from exc
    spec = content.spectrogram
    if spec.ndim != 3:
        raise DataError(f"{p.name}: the spectrogram has shape {spec.shape}; [n_volumes, n_channels, n_freqs] expected")
    meta: dict[str, Any] = dict(content.attrs)
    meta.update(frequencies=content.frequencies, volume_onsets=content.volume_onsets, valid=content.valid,
                pairs_windows=np.asarray(content.pair_windows), pairs_targets=np.asarray(content.pair_targets),
                path=str(p))
    return spec, meta


def read_spectrogram(path: PathLike) -> list[LayerDataTuple]:
    """Read a spectrogram derivative as an image layer ``(volume, channel, frequency)``.

    The first axis is time in seconds (one repetition time per row, starting at 0 like the BOLD volumes), the
    last is frequency in Hz (the ``frequencies`` dataset); rows whose window is not valid are zeros.

    Parameters
    ----------
    path : str | os.PathLike
        The ``*_spectrogram.h5`` file.

    Returns
    -------
    layers : list of tuple
        One ``(data, kwargs, "image")`` tuple.
    """
    spec, meta = load_spectrogram(path)
    tr = float(meta.get("repetition_time") or 1.0)
    freqs = np.asarray(meta.get("frequencies", np.arange(spec.shape[2])), dtype=float)
    df = float(np.median(np.diff(freqs))) if freqs.size > 1 else 1.0
    f0 = float(freqs[0]) if freqs.size else 0.0
    valid = np.asarray(meta.get("valid", np.ones(spec.shape[0], bool)), dtype=bool)
    shown = spec[valid] if valid.any() else spec
    kwargs = {
        "name": _strip_ext(path),
        "scale": [tr, 1.0, df if df > 0 else 1.0],
        "translate": [0.0, 0.0, f0],
        "axis_labels": ("time", "channel", "frequency"),
        "units": ("s", "pixel", "Hz"),
        "colormap": "magma",
        "contrast_limits": _robust_limits(shown, 1.0, 99.0),
        "metadata": {**meta, "kind": "spectrogram"},
    }
    return [(spec, kwargs, "image")]


# ---------------------------------------------------------------------------------------------------- EEG


def _bids_companion(path: Path, suffix: str) -> Path:
    """``sub-01_task-x_eeg.vhdr`` -> ``sub-01_task-x_<suffix>``."""
    stem = _strip_ext(path)
    stem = stem[: -len("_eeg")] if stem.endswith("_eeg") else stem
    return path.with_name(f"{stem}_{suffix}")


def _read_decimated(raw, picks: list[int], n_samples: int, decim: int,
                    block: int = 2_000_000) -> np.ndarray:
    """``raw``'s ``picks`` as float32, averaged over blocks of ``decim`` samples, read a few seconds at a time.

    Only the (decimated) output is held in memory, so a long high-rate recording opens without loading it whole.
    """
    n_out = n_samples // decim
    out = np.empty((len(picks), n_out), dtype=np.float32)
    step = max(1, block // max(1, len(picks)) // decim) * decim  # samples per read, a multiple of decim
    for start in range(0, n_out * decim, step):
        stop = min(start + step, n_out * decim)
        seg = raw.get_data(picks=picks, start=start, stop=stop)  # [C, stop - start]
        out[:, start // decim: stop // decim] = seg.reshape(len(picks), -1, decim).mean(axis=2)
    return out


def read_eeg(path: PathLike) -> list[LayerDataTuple]:
    """Read an EEG recording as an image ``(channel, time)`` plus its volume markers.

    The recording is opened with :class:`spec2vol_bids.bids.eeg.EEGRecording` (channel types from the BIDS
    ``channels.tsv`` when present) and the volume markers are found as the BIDS-App finds them
    (:func:`~spec2vol_bids.bids.eeg.marker_onsets`, then the run's ``events.tsv``). Each channel is shown as a
    robust z-score (median removed, divided by 1.4826 x the median absolute deviation), so that channels of
    different amplitude share one colour scale; the raw data stay in the file. Very long recordings are
    block-averaged in time for display (``metadata["decimation"]``).

    Parameters
    ----------
    path : str | os.PathLike
        A BrainVision ``.vhdr``, EDF ``.edf`` or EEGLAB ``.set`` file.

    Returns
    -------
    layers : list of tuple
        ``(data, kwargs, "image")`` and, when volume markers were found, ``(lines, kwargs, "shapes")`` with one
        vertical line per volume onset.
    """
    from spec2vol_bids.bids.eeg import EEGRecording, events_tsv_onsets, marker_onsets

    p = Path(path)
    rec = EEGRecording(p, channels_tsv=_bids_companion(p, "channels.tsv"))
    idx = [i for i, t in enumerate(rec.ch_types) if t.upper() not in ("TRIG", "STIM")]
    picks = [rec.ch_names[i] for i in idx]
    if not picks:
        raise DataError(f"{p.name} has no data channels", hint="Open a recording with EEG channels.")
    sfreq = rec.sfreq
    decim = max(1, int(np.ceil(len(picks) * rec.n_samples / MAX_DISPLAY_SAMPLES)))
    data = _read_decimated(rec.raw, idx, rec.n_samples, decim)  # [C, n_samples // decim], volts
    med = np.median(data, axis=1, keepdims=True)
    mad = np.median(np.abs(data - med), axis=1, keepdims=True) * 1.4826
    mad[mad == 0] = 1.0
    shown = ((data - med) / mad).astype(np.float32)
    onsets, marker = marker_onsets(rec)
    source = "markers"
    if onsets.size == 0:
        onsets, marker = events_tsv_onsets(_bids_companion(p, "events.tsv"))
        source = "events.tsv" if onsets.size else "none"
    meta = {
        "kind": "eeg",
        "path": str(p),
        "sfreq": sfreq,
        "channels": picks,
        "channel_types": [rec.ch_types[i] for i in idx],
        "n_times": rec.n_samples,
        "decimation": decim,
        "display_scaling": "per-channel robust z-score",
        "volume_onsets": np.asarray(onsets, dtype=float),
        "onset_source": source,
        "volume_marker": marker,
        "sidecar": _sidecar(p),
    }
    name = _strip_ext(p)
    layers: list[LayerDataTuple] = [
        (
            shown,
            {
                "name": name,
                "scale": [1.0, decim / sfreq],
                "axis_labels": ("channel", "time"),
                "units": ("pixel", "s"),
                "colormap": "twilight_shifted",
                "contrast_limits": (-4.0, 4.0),
                "metadata": meta,
            },
            "image",
        )
    ]
    if onsets.size:
        top, bottom = -0.5, shown.shape[0] - 0.5
        lines = [np.array([[top, t], [bottom, t]]) for t in onsets]
        layers.append(
            (
                lines,
                {
                    "name": f"{name} volume markers",
                    "shape_type": "line",
                    "edge_color": "yellow",
                    "edge_width": 0.15,
                    "scale": [1.0, 1.0],
                    "metadata": {"kind": "volume-markers", "volume_onsets": onsets, "onset_source": source},
                },
                "shapes",
            )
        )
    return layers
