"""Datasets over the participant-level derivatives (and the official code's per-subject h5 files).

The BIDS-App writes, per paired run, ``..._desc-stft_spectrogram.h5`` (``eeg/``) and ``..._desc-target_bold.nii.gz``
(``func/``), plus ``..._desc-brain_mask.nii.gz`` (see CONTRIBUTING.md, "Data contracts"). This module

* finds those pairs under a derivatives folder (:func:`discover_runs`), one :class:`DerivativeRun` per run, and
  refuses folders without derivatives, a spectrogram without its target, and runs whose channels, frequency axis,
  window count or grid disagree (:func:`check_consistent`);
* reads lazily: the spectrogram file is opened on first use in each process (DataLoader workers get their own
  handle) and only the 20 rows of a pair are read; the 4-D target NIfTI is converted once into an uncompressed
  ``[T, Z, X, Y]`` float32 ``.npy`` cache and memory-mapped (``np.load(mmap_mode='r')``), so memory stays flat
  however many runs there are (the official loader holds everything in RAM);
* scales the EEG input with statistics from the **training subjects only** (:func:`compute_scaling`,
  ``method='train-minmax'``); the official code's global min-max over train **and test** EEG is available as
  ``method='global-leaky'`` to reproduce the paper, and ``'none'`` leaves the spectrogram as written;
* reads the official code's per-subject h5 files (``eeg [N, 20, C, 249]``, ``fmri [N, D, 64, 64]``) as
  :class:`OfficialH5Run`, so data prepared with the official scripts can be compared on identical tensors.

Shapes: a sample is ``x [n_windows, n_channels, n_freqs]`` (float32) and ``y [D, X, Y]`` (float32), the model
layout (a NIfTI volume ``vol[X, Y, Z]`` is ``vol.transpose(2, 0, 1)``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, NoInputError, UsageError
from ..utils import atomic_path, require_path

logger = logging.getLogger("spec2vol_bids.train")

__all__ = [
    "SPECTROGRAM_SUFFIX",
    "TARGET_SUFFIX",
    "MASK_SUFFIX",
    "SCALING_METHODS",
    "DerivativeRun",
    "OfficialH5Run",
    "discover_runs",
    "load_official_h5",
    "check_consistent",
    "compute_scaling",
    "apply_scaling",
    "PairDataset",
    "read_spectrogram",
    "target_statistics",
    "input_statistics",
]

SPECTROGRAM_SUFFIX = "_desc-stft_spectrogram.h5"
TARGET_SUFFIX = "_desc-target_bold.nii.gz"
MASK_SUFFIX = "_desc-brain_mask.nii.gz"
#: EEG input scaling: statistics from the training subjects only (default), the official leaky global min-max
#: over every subject including the test subjects, or no scaling.
SCALING_METHODS = ("train-minmax", "global-leaky", "none")

_SUB_RE = re.compile(r"(?:^|_)sub-([a-zA-Z0-9]+)")
_SES_RE = re.compile(r"(?:^|_)ses-([a-zA-Z0-9]+)")


# --------------------------------------------------------------------------------------------------- readers
def read_spectrogram(path: str | os.PathLike) -> np.ndarray:
    """Read the whole ``spectrogram`` dataset ``[n_volumes, n_channels, n_freqs]`` of one derivative file.

    Used for the scaling statistics; the hook through which the tests check that no test subject is read.
    """
    import h5py

    with h5py.File(path, "r") as f:
        return np.asarray(f["spectrogram"][()], dtype=np.float32)


def _json_attr(value, default=None):
    if value is None:
        return default
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.ndarray):
        return [v.decode() if isinstance(v, bytes) else v for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


class _LazyH5:
    """An h5py file opened on first use in the current process (safe with DataLoader workers)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = None
        self._pid = None

    def get(self):
        import h5py

        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def close(self):
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self):
        return {"path": self.path, "_file": None, "_pid": None}


class _RunBase(ABC):
    """What every run source provides: subject, pairs, and lazily read samples."""

    subject: str
    name: str
    n_pairs: int
    n_windows: int
    channels: list[str]
    frequencies: np.ndarray | None
    grid_shape: tuple[int, int, int]  # (X, Y, Z)
    affine: np.ndarray
    config: dict
    repetition_time: float | None

    @abstractmethod
    def window_rows(self) -> np.ndarray:
        """Sorted unique spectrogram rows used by the pairs (those the scaling statistics may read)."""

    @abstractmethod
    def read_x(self, k: int) -> np.ndarray:
        """Input of pair ``k``: ``[n_windows, C, F]``."""

    @abstractmethod
    def read_y(self, k: int) -> np.ndarray:
        """Target of pair ``k``: ``[D, X, Y]``."""

    @abstractmethod
    def input_values(self) -> np.ndarray:
        """All input values the statistics may use (any shape)."""

    def mask(self) -> np.ndarray | None:  # [D, X, Y] bool
        return None

    @property
    def n_slices(self) -> int:
        return int(self.grid_shape[2])

    def summary(self) -> dict:
        return {"name": self.name, "subject": self.subject, "n_pairs": int(self.n_pairs)}


@dataclass
class DerivativeRun(_RunBase):
    """One paired run of the participant-level derivatives.

    Parameters
    ----------
    spectrogram, target : Path
        ``..._desc-stft_spectrogram.h5`` and ``..._desc-target_bold.nii.gz``.
    mask : Path or None
        ``..._desc-brain_mask.nii.gz`` when present.
    cache_dir : Path or None
        Where the target's ``.npy`` cache goes (``MODEL_DIR/cache``); ``None``: a ``.spec2vol_cache`` folder next
        to the target.
    """

    spectrogram: Path
    target: Path
    mask_path: Path | None = None
    cache_dir: Path | None = None
    subject: str = ""
    session: str | None = None
    name: str = ""
    channels: list[str] = field(default_factory=list)
    channel_types: list[str] = field(default_factory=list)
    frequencies: np.ndarray | None = None
    windows: np.ndarray | None = None  # [n_pairs, n_windows] int
    targets: np.ndarray | None = None  # [n_pairs] int
    n_volumes: int = 0
    grid_shape: tuple[int, int, int] = (0, 0, 0)
    affine: np.ndarray | None = None
    config: dict = field(default_factory=dict)
    repetition_time: float | None = None

    def __post_init__(self):
        import h5py
        import nibabel as nib

        self.spectrogram = Path(self.spectrogram)
        self.target = Path(self.target)
        base = self.spectrogram.name[: -len(SPECTROGRAM_SUFFIX)]
        self.name = self.name or base
        m = _SUB_RE.search(base)
        self.subject = self.subject or (m.group(1) if m else base)
        s = _SES_RE.search(base)
        self.session = self.session or (s.group(1) if s else None)
        try:
            with h5py.File(self.spectrogram, "r") as f:
                shape = f["spectrogram"].shape
                self.n_volumes = int(shape[0])
                self.frequencies = np.asarray(f["frequencies"][()], dtype=np.float64)
                self.windows = np.asarray(f["pairs/windows"][()], dtype=np.int64)
                self.targets = np.asarray(f["pairs/targets"][()], dtype=np.int64)
                self.channels = [str(c) for c in _json_attr(f.attrs.get("channels"), [])]
                self.channel_types = [str(c) for c in _json_attr(f.attrs.get("channel_types"), [])]
                self.config = _json_attr(f.attrs.get("config"), {}) or {}
                tr = f.attrs.get("repetition_time")
                self.repetition_time = float(tr) if tr is not None else None
        except (OSError, KeyError) as err:
            raise DataError(f"cannot read the spectrogram derivative {self.spectrogram}: {err}",
                            hint="re-run the BIDS-App participant level for this subject") from err
        if len(shape) != 3:
            raise DataError(f"{self.spectrogram.name}: 'spectrogram' must be [n_volumes, n_channels, n_freqs], "
                            f"got shape {shape}", hint="re-run the BIDS-App participant level")
        if self.channels and len(self.channels) != shape[1]:
            raise DataError(f"{self.spectrogram.name}: {len(self.channels)} channel names for {shape[1]} rows")
        if not self.channels:
            self.channels = [f"ch{i:03d}" for i in range(shape[1])]
        if self.frequencies.shape != (shape[2],):
            raise DataError(f"{self.spectrogram.name}: 'frequencies' has {self.frequencies.size} values for "
                            f"{shape[2]} frequency bins")
        if self.windows.ndim != 2 or self.targets.shape != (self.windows.shape[0],):
            raise DataError(f"{self.spectrogram.name}: 'pairs/windows' must be [n_pairs, n_windows] and "
                            f"'pairs/targets' [n_pairs]")
        self._shape = tuple(int(v) for v in shape)
        try:
            img = nib.load(self.target)
        except Exception as err:  # nibabel raises several types for corrupt files
            raise DataError(f"cannot read the target derivative {self.target}: {err}",
                            hint="re-run the BIDS-App participant level for this subject") from err
        if len(img.shape) != 4:
            raise DataError(f"{self.target.name}: expected a 4-D [X, Y, Z, T] target, got shape {img.shape}")
        if img.shape[3] != self.n_volumes:
            raise DataError(f"{self.target.name} has {img.shape[3]} volumes but its spectrogram has "
                            f"{self.n_volumes} rows", hint="re-run the BIDS-App participant level for this run")
        if self.targets.size and (self.targets.max() >= self.n_volumes or self.windows.max() >= self.n_volumes
                                  or self.windows.min() < 0 or self.targets.min() < 0):
            raise DataError(f"{self.spectrogram.name}: pair indices outside the {self.n_volumes} volumes")
        self.grid_shape = tuple(int(v) for v in img.shape[:3])
        self.affine = np.asarray(img.affine, dtype=np.float64)
        self.mask_path = Path(self.mask_path) if self.mask_path else None
        self._h5 = _LazyH5(self.spectrogram)
        self._y = None
        self._npy = None

    # ---- pairs
    @property
    def n_pairs(self) -> int:
        return int(self.windows.shape[0])

    @property
    def n_windows(self) -> int:
        return int(self.windows.shape[1])

    def window_rows(self) -> np.ndarray:
        return np.unique(self.windows)

    # ---- lazy reads
    def read_x(self, k: int) -> np.ndarray:
        rows = self.windows[k]
        ds = self._h5.get()["spectrogram"]
        if np.all(np.diff(rows) == 1):
            x = ds[int(rows[0]): int(rows[-1]) + 1]
        else:
            order = np.argsort(rows)
            uniq, inv = np.unique(rows[order], return_inverse=True)
            got = ds[uniq.tolist()]
            x = np.empty((rows.size, *got.shape[1:]), dtype=got.dtype)
            x[order] = got[inv]
        return np.asarray(x, dtype=np.float32)  # [n_windows, C, F]

    def _cache_file(self) -> Path:
        st = self.target.stat()
        key = hashlib.sha1(f"{self.target.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        root = Path(self.cache_dir) if self.cache_dir else self.target.parent / ".spec2vol_cache"
        return root / f"{self.name}_{key}_target.npy"

    def target_array(self) -> np.ndarray:
        """The whole target as a memory-mapped ``[T, Z, X, Y]`` float32 array (cached ``.npy``)."""
        if self._y is None:
            cache = self._cache_file()
            if not cache.exists():
                import nibabel as nib

                vol = np.asarray(nib.load(self.target).dataobj, dtype=np.float32)  # [X, Y, Z, T]
                if not np.isfinite(vol).all():
                    raise DataError(f"{self.target.name} contains NaN or infinite values",
                                    hint="check the BOLD run and re-run the BIDS-App participant level")
                arr = np.ascontiguousarray(vol.transpose(3, 2, 0, 1))  # [T, Z, X, Y]
                cache.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(cache) as tmp:
                    np.save(tmp, arr)
                del vol, arr
            self._y = np.load(cache, mmap_mode="r")
        return self._y

    def read_y(self, k: int) -> np.ndarray:
        """Target volume of pair ``k``, ``[D, X, Y]``: one positioned read from the ``.npy`` cache.

        A read (not a slice of the memory map) keeps the process's resident memory flat: pages of a memory map
        stay counted in its RSS once touched, read pages only live in the kernel's page cache.
        """
        if self._npy is None or self._npy[0] != os.getpid():
            self.target_array()  # creates the cache if needed
            path = self._cache_file()
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(f)
                offset = f.tell()
            if fortran or len(shape) != 4:
                raise DataError(f"unexpected target cache layout in {path}", hint="delete MODEL_DIR/cache")
            self._npy = (os.getpid(), open(path, "rb"), offset, tuple(shape[1:]), np.dtype(dtype))
        _, fh, offset, vshape, dtype = self._npy
        count = int(np.prod(vshape))
        fh.seek(offset + int(self.targets[k]) * count * dtype.itemsize)
        vol = np.fromfile(fh, dtype=dtype, count=count)
        if vol.size != count:
            raise DataError(f"the target cache of {self.name} is truncated", hint="delete MODEL_DIR/cache")
        return vol.reshape(vshape).astype(np.float32, copy=False)  # [D, X, Y]

    def input_values(self) -> np.ndarray:
        return read_spectrogram(self.spectrogram)[self.window_rows()]

    def mask(self) -> np.ndarray | None:
        if self.mask_path is None or not self.mask_path.exists():
            return None
        import nibabel as nib

        m = np.asarray(nib.load(self.mask_path).dataobj) > 0
        if m.shape != self.grid_shape:
            raise DataError(f"{self.mask_path.name} has shape {m.shape}, the target grid is {self.grid_shape}")
        return m.transpose(2, 0, 1)  # [Z, X, Y]

    def summary(self) -> dict:
        out = super().summary()
        out.update(spectrogram=str(self.spectrogram), target=str(self.target))
        return out

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_y"] = None  # workers re-open their own memory map and file handle
        state["_npy"] = None
        return state


@dataclass
class OfficialH5Run(_RunBase):
    """A per-subject h5 file written by the official preprocessing scripts (``eeg``, ``fmri``).

    ``eeg`` is ``[N, n_windows, C, F]`` (already grouped into pairs, z-scored across electrodes); ``fmri`` is
    ``[N, D, 64, 64]``. Channel names and frequencies are not stored in these files: channels are named
    ``ch000...`` and the frequency axis is unknown (``None``), so checkpoints trained on them can only be checked
    for the channel count.
    """

    path: Path
    subject: str = ""
    name: str = ""
    channels: list[str] = field(default_factory=list)
    frequencies: np.ndarray | None = None
    grid_shape: tuple[int, int, int] = (0, 0, 0)
    affine: np.ndarray | None = None
    config: dict = field(default_factory=dict)
    repetition_time: float | None = None

    def __post_init__(self):
        import h5py

        self.path = Path(self.path)
        self.name = self.name or self.path.stem
        if not self.subject:
            m = _SUB_RE.search(self.path.stem)
            self.subject = m.group(1) if m else self.path.stem
        try:
            with h5py.File(self.path, "r") as f:
                eshape = tuple(f["eeg"].shape)
                fshape = tuple(f["fmri"].shape)
        except (OSError, KeyError) as err:
            raise DataError(f"{self.path} is not an official Spec2VolCAMU-Net h5 file (datasets 'eeg' and 'fmri'"
                            f" expected): {err}", hint="pass files written by the official process_data.py") from err
        if len(eshape) != 4 or len(fshape) != 4 or eshape[0] != fshape[0]:
            raise DataError(f"{self.path.name}: expected eeg [N, 20, C, F] and fmri [N, D, H, W] with the same N, "
                            f"got {eshape} and {fshape}")
        self._eshape, self._fshape = eshape, fshape
        self.channels = [f"ch{i:03d}" for i in range(eshape[2])]
        self.grid_shape = (int(fshape[2]), int(fshape[3]), int(fshape[1]))
        self.affine = np.eye(4)
        self.config = {"source": "official-h5", "file": str(self.path)}
        self._h5 = _LazyH5(self.path)

    @property
    def n_pairs(self) -> int:
        return int(self._eshape[0])

    @property
    def n_windows(self) -> int:
        return int(self._eshape[1])

    @property
    def n_freqs(self) -> int:
        return int(self._eshape[3])

    def window_rows(self) -> np.ndarray:
        return np.arange(self.n_pairs)

    def read_x(self, k: int) -> np.ndarray:
        return np.asarray(self._h5.get()["eeg"][int(k)], dtype=np.float32)

    def read_y(self, k: int) -> np.ndarray:
        return np.asarray(self._h5.get()["fmri"][int(k)], dtype=np.float32)

    def input_values(self) -> np.ndarray:
        import h5py

        with h5py.File(self.path, "r") as f:
            return np.asarray(f["eeg"][()], dtype=np.float32)

    def summary(self) -> dict:
        out = super().summary()
        out["file"] = str(self.path)
        return out


# --------------------------------------------------------------------------------------------------- discovery
def discover_runs(deriv_dir: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                  subjects: Sequence[str] | None = None) -> list[DerivativeRun]:
    """Find every paired run (spectrogram + target) under a derivatives folder.

    Parameters
    ----------
    deriv_dir : path
        The BIDS-App output folder (or any folder above the ``sub-*`` folders).
    cache_dir : path, optional
        Where to keep the memory-mappable target caches (``MODEL_DIR/cache``).
    subjects : list of str, optional
        Keep only these participant labels (without ``sub-``).

    Returns
    -------
    list of DerivativeRun, sorted by file name.

    Raises
    ------
    NoInputError
        The folder does not exist, holds no spectrogram derivatives, or a spectrogram lacks its target.
    DataError
        The runs disagree on channels, frequencies, window count or grid (:func:`check_consistent`).
    """
    root = require_path(deriv_dir, "the derivatives folder", folder=True,
                        hint="pass the OUT_DIR of `spec2vol_bids BIDS_DIR OUT_DIR participant`")
    # BIDS layout only (sub-<label>[/ses-<label>]/eeg/): skips hidden folders and nipype work directories
    specs = sorted(p for p in root.rglob(f"*{SPECTROGRAM_SUFFIX}")
                   if not any(part.startswith(".") for part in p.relative_to(root).parts)
                   and p.parent.name == "eeg" and p.parent.parent.name.startswith(("sub-", "ses-")))
    if not specs:
        raise NoInputError(f"no *{SPECTROGRAM_SUFFIX} files under {root}",
                           hint="run `spec2vol_bids BIDS_DIR OUT_DIR participant` first and pass its OUT_DIR "
                                "(or use --official-h5 for files from the official scripts)")
    wanted = None if not subjects else {s.removeprefix("sub-") for s in subjects}
    runs = []
    for spec in specs:
        base = spec.name[: -len(SPECTROGRAM_SUFFIX)]
        m = _SUB_RE.search(base)
        if wanted is not None and (m is None or m.group(1) not in wanted):
            continue
        target = _find_sibling(spec, base + TARGET_SUFFIX)
        if target is None:
            raise NoInputError(f"{spec.name} has no matching {base + TARGET_SUFFIX}",
                               hint="re-run the BIDS-App participant level for this subject")
        mask = _find_sibling(spec, base + MASK_SUFFIX)
        runs.append(DerivativeRun(spectrogram=spec, target=target, mask_path=mask,
                                  cache_dir=Path(cache_dir) if cache_dir else None))
    if not runs:
        raise NoInputError(f"none of the requested subjects ({', '.join(sorted(wanted))}) has derivatives "
                           f"under {root}", hint="check the participant labels")
    check_consistent(runs)
    return runs


def _find_sibling(spec: Path, filename: str) -> Path | None:
    """The target/mask file of a spectrogram: ``../func/`` first, then the same folder, then the subject tree."""
    for cand in (spec.parent.parent / "func" / filename, spec.parent / filename):
        if cand.exists():
            return cand
    sub_dir = next((p for p in spec.parents if p.name.startswith("sub-")), spec.parent)
    return next(iter(sorted(sub_dir.rglob(filename))), None)


def load_official_h5(paths: Sequence[str | os.PathLike]) -> list[OfficialH5Run]:
    """Open the official code's per-subject h5 files (one :class:`OfficialH5Run` each), checked for consistency."""
    if not paths:
        raise NoInputError("no official h5 files given", hint="pass --official-h5 FILE [FILE ...]")
    runs = []
    for p in paths:
        require_path(p, "the official h5 file", hint="check the path")
        runs.append(OfficialH5Run(path=Path(p)))
    check_consistent(runs)
    return runs


def check_consistent(runs: Sequence[_RunBase]) -> None:
    """Refuse runs that cannot share one model: different channels, frequencies, window counts or grids.

    Raises
    ------
    DataError
        Naming the first run that differs from the first one and what differs.
    """
    if not runs:
        return
    ref = runs[0]
    for run in runs[1:]:
        if list(run.channels) != list(ref.channels):
            missing = [c for c in ref.channels if c not in run.channels]
            extra = [c for c in run.channels if c not in ref.channels]
            detail = (f"missing {missing[:5]}, extra {extra[:5]}" if (missing or extra)
                      else "same names in a different order")
            raise DataError(f"{run.name} has {len(run.channels)} channels and {ref.name} has {len(ref.channels)}"
                            f" ({detail})", hint="preprocess every subject with the same channel selection "
                                                 "(BIDS-App --include-channels / --exclude-channels) or train on "
                                                 "a subset of subjects")
        if (ref.frequencies is None) != (run.frequencies is None) or (
                ref.frequencies is not None and (ref.frequencies.shape != run.frequencies.shape
                                                 or not np.allclose(ref.frequencies, run.frequencies,
                                                                    rtol=1e-6, atol=1e-9))):
            raise DataError(f"{run.name} and {ref.name} have different frequency axes",
                            hint="preprocess every subject with the same TR, --window-length and frequency "
                                 "settings (--freq-axis, --n-freqs, --fmin, --fmax)")
        if run.n_windows != ref.n_windows:
            raise DataError(f"{run.name} uses {run.n_windows} windows per pair and {ref.name} {ref.n_windows}",
                            hint="preprocess every subject with the same --n-windows")
        if tuple(run.grid_shape) != tuple(ref.grid_shape):
            raise DataError(f"{run.name} has target grid {tuple(run.grid_shape)} and {ref.name} "
                            f"{tuple(ref.grid_shape)}",
                            hint="preprocess every subject to the same model grid (--bold-resize dct, --n-slices)")
        if getattr(run, "n_freqs", None) != getattr(ref, "n_freqs", None):
            raise DataError(f"{run.name} and {ref.name} have different numbers of frequency bins")


# --------------------------------------------------------------------------------------------------- scaling
def compute_scaling(runs: Sequence[_RunBase], method: str = "train-minmax", *,
                    train_subjects: Sequence[str] | None = None) -> dict[str, Any]:
    """EEG input scaling statistics ``x' = (x - min) / (max - min)``.

    Parameters
    ----------
    runs : list of runs
        Every run of the experiment.
    method : {'train-minmax', 'global-leaky', 'none'}
        ``'train-minmax'``: min and max over the pair windows of the runs of ``train_subjects`` only.
        ``'global-leaky'``: the official code's min-max over **every** run (test subjects included: a leak,
        kept only to reproduce the paper). ``'none'``: identity.
    train_subjects : list of str
        Required for ``'train-minmax'``.

    Returns
    -------
    dict
        ``method``, ``min``, ``max`` (floats) and ``subjects`` (the labels whose data were read).
    """
    if method not in SCALING_METHODS:
        raise UsageError(f"unknown normalization {method!r}", hint=f"choose one of {', '.join(SCALING_METHODS)}")
    if method == "none":
        return {"method": "none", "min": 0.0, "max": 1.0, "subjects": []}
    if method == "train-minmax":
        if not train_subjects:
            raise UsageError("train-minmax scaling needs the training subjects")
        keep = set(train_subjects)
        used = [r for r in runs if r.subject in keep]
    else:
        used = list(runs)
    if not used:
        raise DataError("no run belongs to the training subjects", hint="check --test-subjects/--val-subjects")
    lo, hi = np.inf, -np.inf
    for run in used:
        vals = run.input_values()
        lo = min(lo, float(np.min(vals)))
        hi = max(hi, float(np.max(vals)))
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise DataError("the EEG spectrograms contain NaN or infinite values",
                        hint="re-run the BIDS-App participant level")
    if hi <= lo:
        hi = lo + 1.0
    return {"method": method, "min": lo, "max": hi, "subjects": sorted({r.subject for r in used})}


def apply_scaling(x, scaling: dict | None):
    """Apply :func:`compute_scaling`'s statistics to an array or tensor (any shape)."""
    if not scaling or scaling.get("method", "none") == "none":
        return x
    lo, hi = float(scaling["min"]), float(scaling["max"])
    return (x - lo) / (hi - lo)


# --------------------------------------------------------------------------------------------------- dataset
class PairDataset:
    """A map-style torch dataset over the pairs of some runs.

    Parameters
    ----------
    runs : list of runs
        :class:`DerivativeRun` or :class:`OfficialH5Run`.
    scaling : dict or None
        From :func:`compute_scaling`; applied to every input.

    Items are ``(x, y)`` float32 tensors ``[n_windows, C, F]`` and ``[D, X, Y]``. ``index`` maps item ``i`` to
    ``(run_index, pair_index)``; :meth:`run_slices` gives the items of each run in time order (for the
    per-run dynamic correlation).
    """

    def __init__(self, runs: Sequence[_RunBase], scaling: dict | None = None):
        self.runs = list(runs)
        self.scaling = scaling
        idx = [(ri, k) for ri, run in enumerate(self.runs) for k in range(run.n_pairs)]
        self.index = np.asarray(idx, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, i: int):
        import torch

        ri, k = self.index[int(i)]
        run = self.runs[int(ri)]
        x = apply_scaling(run.read_x(int(k)), self.scaling).astype(np.float32, copy=False)
        y = run.read_y(int(k))
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))

    def run_slices(self) -> list[tuple[int, range]]:
        """``(run_index, items)`` for each run, items in pair order."""
        out, start = [], 0
        for ri, run in enumerate(self.runs):
            out.append((ri, range(start, start + run.n_pairs)))
            start += run.n_pairs
        return out

    @property
    def subjects(self) -> list[str]:
        return sorted({r.subject for r in self.runs})

    @property
    def sample_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``((n_windows, C, F), (D, X, Y))``."""
        r = self.runs[0]
        n_freqs = r.frequencies.size if r.frequencies is not None else r.n_freqs
        x, y, z = r.grid_shape
        return (r.n_windows, len(r.channels), int(n_freqs)), (z, x, y)


def target_statistics(ds: PairDataset) -> dict[str, Any]:
    """Mean target volume of ``ds``, the mean volume of each of its runs, and the variance around the run means.

    One pass over the targets (float64 sums). Used by the trainer: the global-read-out models predict a deviation
    from ``mean_volume``, and the ``demeaned-mse`` loss compares deviations from ``run_means``.

    Returns
    -------
    dict
        ``mean_volume`` float32 ``[D, X, Y]`` (over every pair), ``run_means`` float32 ``[n_runs, D, X, Y]`` (over
        each run's pairs, in ``ds.runs`` order), ``dynamic_variance`` (mean over pairs and voxels of the squared
        deviation from the run mean; 1.0 when the targets never change) and ``n_samples``.
    """
    if len(ds) == 0:
        raise DataError("no training pairs to compute the target statistics from")
    run_means, sums, squares, counts = [], None, 0.0, 0
    for ri, items in ds.run_slices():
        run = ds.runs[ri]
        total, sq = None, None
        for k in range(run.n_pairs):
            y = run.read_y(k).astype(np.float64)  # [D, X, Y]
            total = y.copy() if total is None else total + y
            sq = y * y if sq is None else sq + y * y
        n = len(items)
        if n == 0:
            run_means.append(None)
            continue
        mean = total / n
        run_means.append(mean)
        squares += float((sq - n * mean * mean).sum())  # sum over pairs of (y - run mean)^2
        sums = total if sums is None else sums + total
        counts += n
    shape = next(m for m in run_means if m is not None).shape
    means = np.stack([m if m is not None else np.zeros(shape) for m in run_means]).astype(np.float32)
    variance = max(squares, 0.0) / (counts * int(np.prod(shape)))
    return {"mean_volume": (sums / counts).astype(np.float32), "run_means": means,
            "dynamic_variance": variance if variance > 0 else 1.0, "n_samples": counts}


def input_statistics(runs: Sequence[_RunBase], scaling: dict | None) -> dict[str, np.ndarray]:
    """Mean and standard deviation of the (scaled) input per channel and frequency over the window rows of ``runs``.

    Every spectrogram row used by a pair counts once (float64 sums). The trainer passes the training subjects' runs
    only; the global-read-out models standardise their input with these.

    Returns
    -------
    dict
        ``mean`` and ``std``, float32 ``[n_channels, n_freqs]``, and ``n_rows``.
    """
    total = squares = None
    n = 0
    for run in runs:
        vals = np.asarray(apply_scaling(run.input_values(), scaling), dtype=np.float64)  # [rows, C, F]
        if vals.ndim == 4:  # official h5: [pairs, windows, C, F]
            vals = vals.reshape(-1, *vals.shape[2:])
        total = vals.sum(0) if total is None else total + vals.sum(0)
        squares = (vals * vals).sum(0) if squares is None else squares + (vals * vals).sum(0)
        n += vals.shape[0]
    if not n:
        raise DataError("no training windows to compute the input statistics from")
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean * mean, 0.0))
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32), "n_rows": n}
