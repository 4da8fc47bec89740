"""The runs training reads: a paired run of the participant-level derivatives, or an official per-subject h5 file.

Both kinds give the same things to the datasets (:class:`RunSource`): the subject, the pairs, and one pair's input
``x [n_windows, C, F]`` and target ``y [D, X, Y]`` read lazily, so that a dataset of many runs stays small in
memory and DataLoader workers each open their own file handles.

* :class:`DerivativeRun` reads ``..._desc-stft_spectrogram.h5`` through :mod:`spec2vol_bids.io.spectrogram` (only
  the 20 rows of a pair) and ``..._desc-target_bold.nii.gz`` through a :class:`~.target_cache.TargetCache`;
* :class:`OfficialH5Run` reads the official code's per-subject h5 files (``eeg [N, 20, C, 249]``,
  ``fmri [N, D, 64, 64]``), so data prepared with the official scripts can be compared on identical tensors.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io.derivatives import SPECTROGRAM
from ..io.hdf5 import LazyH5
from ..io.spectrogram import SpectrogramRows, load_spectrogram
from .target_cache import TargetCache

__all__ = ["RunSource", "DerivativeRun", "OfficialH5Run", "subject_of"]

_SUB_RE = re.compile(r"(?:^|_)sub-([a-zA-Z0-9]+)")
_SES_RE = re.compile(r"(?:^|_)ses-([a-zA-Z0-9]+)")


def subject_of(name: str) -> str | None:
    """The participant label in a file name or stem (``sub-01_task-rest`` -> ``01``), or None."""
    m = _SUB_RE.search(name)
    return m.group(1) if m else None


@dataclass(kw_only=True)
class RunSource(ABC):
    """What every run source provides: subject, pairs, and lazily read samples.

    The fields below are filled from the files when a run is opened (keyword arguments override them).
    """

    subject: str = ""
    name: str = ""
    channels: list[str] = field(default_factory=list)
    frequencies: np.ndarray | None = None
    grid_shape: tuple[int, int, int] = (0, 0, 0)  # (X, Y, Z)
    affine: np.ndarray | None = None
    config: dict = field(default_factory=dict)
    repetition_time: float | None = None
    sfreq: float | None = None  # EEG sampling frequency of the spectrogram's recording (Hz), when known

    @property
    @abstractmethod
    def n_pairs(self) -> int:
        """Number of (input, target) pairs."""

    @property
    @abstractmethod
    def n_windows(self) -> int:
        """Spectrogram windows per model input."""

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
class DerivativeRun(RunSource):
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
    session: str | None = None
    channel_types: list[str] = field(default_factory=list)
    windows: np.ndarray | None = None  # [n_pairs, n_windows] int
    targets: np.ndarray | None = None  # [n_pairs] int
    n_volumes: int = 0

    def __post_init__(self):
        import nibabel as nib

        self.spectrogram = Path(self.spectrogram)
        self.target = Path(self.target)
        base = self.spectrogram.name[: -len(SPECTROGRAM.name_suffix)]
        self.name = self.name or base
        self.subject = self.subject or subject_of(base) or base
        s = _SES_RE.search(base)
        self.session = self.session or (s.group(1) if s else None)
        try:
            spec = load_spectrogram(self.spectrogram, data=False)
        except (OSError, KeyError) as err:
            raise DataError(f"cannot read the spectrogram derivative {self.spectrogram}: {err}",
                            hint="re-run the BIDS-App participant level for this subject") from err
        shape = spec.shape
        self.n_volumes = int(shape[0])
        self.frequencies = spec.frequencies
        self.windows = np.asarray(spec.pair_windows, dtype=np.int64)
        self.targets = np.asarray(spec.pair_targets, dtype=np.int64)
        self.channels = spec.channels
        self.channel_types = spec.channel_types
        self.config = spec.config
        self.repetition_time = spec.repetition_time
        self.sfreq = float(spec.attrs["sfreq"]) if spec.attrs.get("sfreq") else None
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
        self._rows = SpectrogramRows(self.spectrogram)
        self._cache = TargetCache(self.target, self.name, self.cache_dir)

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
        return self._rows.read(self.windows[k])  # [n_windows, C, F]

    def target_array(self) -> np.ndarray:
        """The whole target as a memory-mapped ``[T, Z, X, Y]`` float32 array (cached ``.npy``)."""
        return self._cache.array()

    def read_y(self, k: int) -> np.ndarray:
        """Target volume of pair ``k``, ``[D, X, Y]`` (one positioned read from the target cache)."""
        return self._cache.volume(int(self.targets[k]))

    def input_values(self) -> np.ndarray:
        return load_spectrogram(self.spectrogram).spectrogram[self.window_rows()]

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


@dataclass
class OfficialH5Run(RunSource):
    """A per-subject h5 file written by the official preprocessing scripts (``eeg``, ``fmri``).

    ``eeg`` is ``[N, n_windows, C, F]`` (already grouped into pairs, z-scored across electrodes); ``fmri`` is
    ``[N, D, 64, 64]``. Channel names and frequencies are not stored in these files: channels are named
    ``ch000...`` and the frequency axis is unknown (``None``), so checkpoints trained on them can only be checked
    for the channel count.
    """

    path: Path

    def __post_init__(self):
        import h5py

        self.path = Path(self.path)
        self.name = self.name or self.path.stem
        self.subject = self.subject or subject_of(self.path.stem) or self.path.stem
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
        self._h5 = LazyH5(self.path)

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
