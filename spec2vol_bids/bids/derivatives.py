"""Write BIDS derivatives: names, data files with JSON sidecars, ``dataset_description.json`` and ``.bidsignore``.

File names follow the BIDS derivatives rules and niworkflows' ``DerivativesDataSink``: the source entities in
canonical order, then ``desc-<label>``, then the suffix, in the datatype folder of the source run::

    sub-01/[ses-1/]eeg/sub-01[_ses-1]_task-rest[_acq-a][_run-1]_desc-stft_spectrogram.h5   (+ .json)
    sub-01/[ses-1/]func/sub-01[_ses-1]_task-rest[_acq-a][_run-1]_desc-target_bold.nii.gz   (+ .json)
    sub-01/[ses-1/]func/sub-01[_ses-1]_task-rest[_acq-a][_run-1]_desc-brain_mask.nii.gz    (+ .json)
    sub-01/[ses-1/]func/sub-01[_ses-1]_task-rest[_acq-a][_run-1]_desc-spec2vol_bold.nii.gz (+ .json)

The formats are the data contracts of ``CONTRIBUTING.md``. Every write is atomic (temporary file + rename), so
an interrupted or failed run never leaves a half-written derivative, and parallel participant runs writing into
one output folder cannot corrupt each other's files.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..utils import atomic_path, write_json

__all__ = [
    "ENTITY_ORDER",
    "DERIVATIVE_DATASET_NAME",
    "BIDSIGNORE",
    "derivative_path",
    "sidecar_path",
    "write_spectrogram",
    "read_spectrogram",
    "write_nifti",
    "copy_atomic",
    "write_dataset_description",
    "write_bidsignore",
]

#: BIDS entity order for derivative names (subset relevant to functional/EEG data)
ENTITY_ORDER = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "space", "res", "desc")
DERIVATIVE_DATASET_NAME = "spec2vol-bids"
#: non-standard outputs the BIDS validator must skip (no trailing slashes: bids-validator-deno does not
#: match folders written as ``name/``)
BIDSIGNORE = ("*.html", "logs", "**/figures", "**/log", "*_spectrogram.h5", "*_spectrogram.json",
              "group_metrics.tsv", "group_metrics.json")
CODE_URL = "https://github.com/spec2vol-bids/spec2vol-bids"
SPECTROGRAM_FORMAT_VERSION = 1


def derivative_path(out_dir: str | os.PathLike, entities: Mapping[str, str], *, desc: str | None, suffix: str,
                    extension: str, datatype: str) -> Path:
    """Path of a derivative file: ``OUT_DIR/sub-X/[ses-Y/]<datatype>/<entities>_desc-<desc>_<suffix><ext>``.

    Parameters
    ----------
    out_dir : path-like
        Root of the derivative dataset.
    entities : mapping
        Short entities of the source run (``{"sub": "01", "task": "rest", "run": "1"}``); unknown keys are
        appended after the known ones, in their given order.
    desc, suffix, extension, datatype : str
        ``desc`` label (alphanumeric; ``None`` for none), suffix (``bold``, ``mask``, ``spectrogram``),
        extension with its dot (``.nii.gz``) and datatype folder (``func``, ``eeg``).
    """
    if "sub" not in entities:
        raise ValueError("a derivative needs the 'sub' entity")
    ents = {k: v for k, v in entities.items() if k != "desc"}
    if desc:
        if not str(desc).isalnum():
            raise ValueError(f"desc must be alphanumeric, got {desc!r}")
        ents["desc"] = desc
    ordered = [k for k in ENTITY_ORDER if k in ents] + [k for k in ents if k not in ENTITY_ORDER]
    stem = "_".join(f"{k}-{ents[k]}" for k in ordered)
    folder = Path(out_dir) / f"sub-{ents['sub']}"
    if "ses" in ents:
        folder = folder / f"ses-{ents['ses']}"
    return folder / datatype / f"{stem}_{suffix}{extension}"


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a data file (``x.nii.gz`` -> ``x.json``)."""
    path = Path(path)
    return path.with_name(path.name.split(".", 1)[0] + ".json")


def write_spectrogram(dest: str | os.PathLike, *, spectrogram: np.ndarray, valid: np.ndarray,
                      frequencies: np.ndarray, volume_onsets: np.ndarray, pair_windows: np.ndarray,
                      pair_targets: np.ndarray, attrs: Mapping[str, Any],
                      sidecar: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """Write the spectrogram derivative (HDF5) and its JSON sidecar, atomically.

    Parameters
    ----------
    dest : path-like
        The ``..._desc-stft_spectrogram.h5`` path.
    spectrogram : ndarray, shape (n_volumes, n_channels, n_freqs)
        Stored as float32.
    valid : ndarray of bool, shape (n_volumes,)
    frequencies : ndarray, shape (n_freqs,)
        In Hz (float64).
    volume_onsets : ndarray, shape (n_volumes,)
        Seconds from the first EEG sample (float64).
    pair_windows : ndarray of int, shape (n_pairs, n_windows)
    pair_targets : ndarray of int, shape (n_pairs,)
    attrs : mapping
        HDF5 attributes (``channels``, ``channel_types``, ``sfreq``, ``repetition_time``, ``window_length``,
        ``taper``, ``units``, ``onset_source``, ``config``); lists and dicts are stored as JSON text.
        ``spec2vol_version`` is added.
    sidecar : mapping, optional
        Extra sidecar fields (``Sources``, ``Description``, ...); the attributes are repeated there.

    Returns
    -------
    h5_path, json_path : Path
    """
    import h5py

    dest = Path(dest)
    spectrogram = np.asarray(spectrogram, dtype=np.float32)
    n_vol = spectrogram.shape[0]
    valid = np.asarray(valid, dtype=bool)
    if spectrogram.ndim != 3 or valid.shape != (n_vol,) or np.asarray(volume_onsets).shape != (n_vol,):
        raise ValueError(f"inconsistent spectrogram shapes: spectrogram {spectrogram.shape}, valid {valid.shape}, "
                         f"onsets {np.asarray(volume_onsets).shape}")
    if np.asarray(frequencies).shape != (spectrogram.shape[2],):
        raise ValueError(f"frequencies {np.asarray(frequencies).shape} do not match {spectrogram.shape[2]} bins")
    attrs = {**attrs, "spec2vol_version": __version__, "format_version": SPECTROGRAM_FORMAT_VERSION}
    with atomic_path(dest) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.create_dataset("spectrogram", data=spectrogram, chunks=(1, *spectrogram.shape[1:]))
            h5.create_dataset("valid", data=valid)
            h5.create_dataset("frequencies", data=np.asarray(frequencies, dtype=np.float64))
            h5.create_dataset("volume_onsets", data=np.asarray(volume_onsets, dtype=np.float64))
            grp = h5.create_group("pairs")
            n_win = np.asarray(pair_windows).shape[1] if np.asarray(pair_windows).ndim == 2 else 0
            grp.create_dataset("windows", data=np.asarray(pair_windows, dtype=np.int32).reshape(-1, n_win))
            grp.create_dataset("targets", data=np.asarray(pair_targets, dtype=np.int32).reshape(-1))
            for key, value in attrs.items():
                h5.attrs[key] = _h5_attr(value)
    meta = dict(sidecar or {})
    meta.update({
        "Units": attrs.get("units"),
        "SamplingFrequency": attrs.get("sfreq"),
        "RepetitionTime": attrs.get("repetition_time"),
        "WindowLength": attrs.get("window_length"),
        "Window": attrs.get("taper"),
        "ChannelNames": list(attrs.get("channels", [])),
        "ChannelTypes": list(attrs.get("channel_types", [])),
        "FrequencyAxis": np.asarray(frequencies, dtype=float).tolist(),
        "VolumeOnsets": np.asarray(volume_onsets, dtype=float).tolist(),
        "VolumeOnsetSource": attrs.get("onset_source"),
        "NumberOfVolumes": int(n_vol),
        "NumberOfValidWindows": int(valid.sum()),
        "NumberOfPairs": int(np.asarray(pair_targets).size),
        "Preprocessing": attrs.get("config"),
        "SoftwareVersion": __version__,
    })
    json_path = write_json(sidecar_path(dest), meta)
    return dest, json_path


def _h5_attr(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    if value is None:
        return "n/a"
    return value


def read_spectrogram(path: str | os.PathLike) -> dict[str, Any]:
    """Read a spectrogram derivative back into a dictionary of arrays and decoded attributes."""
    import h5py

    with h5py.File(path, "r") as h5:
        out: dict[str, Any] = {
            "spectrogram": h5["spectrogram"][()],
            "valid": h5["valid"][()].astype(bool),
            "frequencies": h5["frequencies"][()],
            "volume_onsets": h5["volume_onsets"][()],
            "pair_windows": h5["pairs/windows"][()],
            "pair_targets": h5["pairs/targets"][()],
        }
        attrs = {}
        for key, value in h5.attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            if key in ("channels", "channel_types", "config") and isinstance(value, str):
                value = json.loads(value)
            attrs[key] = value.item() if isinstance(value, np.generic) else value
        out["attrs"] = attrs
    return out


def write_nifti(dest: str | os.PathLike, data: np.ndarray, affine: np.ndarray, *, sidecar: Mapping[str, Any],
                dtype: Any = np.float32, repetition_time: float | None = None) -> tuple[Path, Path]:
    """Write a NIfTI image and its JSON sidecar atomically.

    Parameters
    ----------
    dest : path-like
        ``.nii.gz`` path.
    data : ndarray, shape (X, Y, Z[, T])
    affine : ndarray, shape (4, 4)
    sidecar : mapping
        JSON sidecar content.
    dtype : numpy dtype
        On-disk data type (float32 for images, uint8 for masks).
    repetition_time : float, optional
        Stored in ``pixdim[4]`` (seconds) for 4-D images.
    """
    import nibabel as nib

    arr = np.asarray(data).astype(dtype, copy=False)
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=float))
    img.header.set_data_dtype(dtype)
    img.header.set_qform(img.affine, code=1)
    img.header.set_sform(img.affine, code=1)
    if arr.ndim == 4 and repetition_time is not None:
        zooms = img.header.get_zooms()
        img.header.set_zooms((*zooms[:3], float(repetition_time)))
        img.header.set_xyzt_units(xyz="mm", t="sec")
    else:
        img.header.set_xyzt_units(xyz="mm")
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        nib.save(img, str(tmp))
    return dest, write_json(sidecar_path(dest), dict(sidecar))


def copy_atomic(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy a file into place atomically (temporary copy in the destination folder, then rename)."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)


def write_dataset_description(out_dir: str | os.PathLike, *, bids_dir: str | os.PathLike,
                              models: Sequence[Mapping[str, Any]] = (),
                              derivatives: Mapping[str, str | os.PathLike] | None = None) -> Path:
    """Write ``OUT_DIR/dataset_description.json`` for the derivative dataset.

    ``GeneratedBy`` lists spec2vol-bids and, when predictions were made, each model (name, version and the
    checkpoint's SHA-256 in ``Description``). ``SourceDatasets`` names the raw dataset (its DOI when it has
    one) and ``DatasetLinks.raw`` points at it, so that the ``bids:raw:`` URIs of the sidecars resolve; each
    derivatives dataset the targets were made from (``-d NAME=PATH``) is linked as ``NAME`` in the same way.
    Models and dataset links already listed by an earlier run (e.g. another participant) are kept.

    Parameters
    ----------
    out_dir, bids_dir : path-like
        Output (derivative) dataset and raw dataset.
    models : sequence of dict
        ``{"Name": ..., "Version": ..., "Description": ...}`` per model used.
    derivatives : mapping of str to path-like, optional
        ``{name: root}`` of the derivatives datasets whose files are listed in the sidecars (``bids:<name>:...``).
    """
    out_dir, bids_dir = Path(out_dir), Path(bids_dir).resolve()
    raw_desc: dict[str, Any] = {}
    raw_path = bids_dir / "dataset_description.json"
    if raw_path.is_file():
        try:
            raw_desc = json.loads(raw_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raw_desc = {}
    generated = [{
        "Name": DERIVATIVE_DATASET_NAME,
        "Version": __version__,
        "CodeURL": CODE_URL,
        "Description": "EEG spectrograms and BOLD targets for Spec2VolCAMU-Net; predicted BOLD volumes",
    }]
    container = os.environ.get("SPEC2VOL_DOCKER_TAG")
    if container:
        generated[0]["Container"] = {"Type": "docker", "Tag": container}
    dest = out_dir / "dataset_description.json"
    previous_models: list[dict] = []
    links: dict[str, str] = {}
    if dest.is_file():
        try:
            previous = json.loads(dest.read_text(encoding="utf-8"))
            previous_models = [g for g in previous.get("GeneratedBy", []) if g.get("Name") != DERIVATIVE_DATASET_NAME]
            links = {str(k): str(v) for k, v in dict(previous.get("DatasetLinks") or {}).items() if k != "raw"}
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
            previous_models, links = [], {}
    for name, root in (derivatives or {}).items():
        links[str(name)] = Path(root).resolve().as_uri()
    for model in [*previous_models, *models]:
        if dict(model) not in generated:
            generated.append(dict(model))
    source: dict[str, Any] = {"URL": bids_dir.as_uri()}
    if raw_desc.get("DatasetDOI"):
        doi = str(raw_desc["DatasetDOI"])
        source = {"DOI": doi if doi.startswith("doi:") else f"doi:{doi}"}
    desc: dict[str, Any] = {
        "Name": f"spec2vol-bids derivatives of {raw_desc.get('Name', bids_dir.name)}",
        "BIDSVersion": raw_desc.get("BIDSVersion", "1.10.0"),
        "DatasetType": "derivative",
        "GeneratedBy": generated,
        "SourceDatasets": [source, *({"URL": uri} for uri in links.values())],
        "DatasetLinks": {"raw": bids_dir.as_uri(), **links},
        "HowToAcknowledge": "Cite Spec2VolCAMU-Net (see the spec2vol-bids documentation) and the raw dataset",
    }
    if raw_desc.get("License"):
        desc["License"] = raw_desc["License"]
    return write_json(dest, desc)


def write_bidsignore(out_dir: str | os.PathLike, extra: Sequence[str] = ()) -> Path:
    """Write ``OUT_DIR/.bidsignore`` listing the non-standard outputs (merged with an existing one)."""
    dest = Path(out_dir) / ".bidsignore"
    lines = list(BIDSIGNORE) + list(extra)
    if dest.is_file():
        lines = [*dest.read_text(encoding="utf-8").split(), *lines]
    unique = list(dict.fromkeys(line for line in lines if line.strip()))
    from ..utils import atomic_write

    return atomic_write(dest, "\n".join(unique) + "\n")
