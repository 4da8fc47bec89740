"""The spectrogram derivative ``*_desc-stft_spectrogram.h5`` and its JSON sidecar: one writer, one reader.

The format is the data contract of ``CONTRIBUTING.md`` ("Spectrogram derivative"): datasets ``spectrogram``
``[n_volumes, n_channels, n_freqs]`` (float32), ``valid`` ``[n_volumes]``, ``frequencies`` (Hz),
``volume_onsets`` (s), ``pairs/windows`` ``[n_pairs, n_windows]`` and ``pairs/targets`` ``[n_pairs]``, and the
attributes ``channels``, ``channel_types``, ``sfreq``, ``repetition_time``, ``window_length``, ``taper``, ``units``,
``onset_source``, ``config``, ``spec2vol_version`` and ``format_version``. The sidecar repeats the attributes under
BIDS-style keys.

>>> spec = load_spectrogram("sub-01_task-rest_desc-stft_spectrogram.h5")   # doctest: +SKIP
>>> spec.channels, spec.repetition_time, spec.windows().shape              # doctest: +SKIP
(['Fp1', ...], 2.0, (46, 20, 16, 249))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..utils import atomic_path, write_json
from .hdf5 import LazyH5, decode_attr, encode_attr
from .names import sidecar_path

__all__ = ["SPECTROGRAM_FORMAT_VERSION", "BIDS_TO_MNE_TYPES", "SpectrogramFile", "load_spectrogram",
           "read_spectrogram", "write_spectrogram", "SpectrogramRows"]

SPECTROGRAM_FORMAT_VERSION = 1
#: BIDS ``channels.tsv`` types -> MNE channel types
BIDS_TO_MNE_TYPES = {
    "EEG": "eeg", "REF": "eeg", "ECG": "ecg", "EOG": "eog", "VEOG": "eog", "HEOG": "eog", "EMG": "emg",
    "TRIG": "stim", "MISC": "misc", "RESP": "resp", "GSR": "gsr", "PPG": "bio", "SYSCLOCK": "syst",
    "TEMP": "temperature", "AUDIO": "misc", "PD": "misc", "EYEGAZE": "misc", "PUPIL": "misc",
    "SEEG": "seeg", "ECOG": "ecog", "DBS": "dbs",
}
#: MNE spectra hold data channels only: other channels of a spectrogram (ECG, EOG, ...) are stored as "eeg"
_MNE_SPECTRUM_TYPES = ("eeg", "seeg", "ecog", "dbs")


@dataclass
class SpectrogramFile:
    """The content of one spectrogram derivative, attributes decoded.

    Attributes
    ----------
    path : Path or None
        The file it was read from.
    spectrogram : ndarray of float32, shape (n_volumes, n_channels, n_freqs), or None
        Row ``k`` is the spectrum of the window anchored at volume ``k``; ``None`` when read with ``data=False``.
    shape : tuple of int
        Shape of the ``spectrogram`` dataset (also known without its data).
    valid : ndarray of bool, shape (n_volumes,)
    frequencies : ndarray of float64, shape (n_freqs,)
        Hz.
    volume_onsets : ndarray of float64, shape (n_volumes,)
        Seconds from the first EEG sample.
    pair_windows : ndarray of int, shape (n_pairs, n_windows)
        Rows of each pair's model input, as stored (int32).
    pair_targets : ndarray of int, shape (n_pairs,)
        The target volume of each pair.
    attrs : dict
        Every attribute of the file, decoded (:func:`~spec2vol_bids.io.hdf5.decode_attr`).
    """

    path: Path | None
    spectrogram: np.ndarray | None
    shape: tuple[int, ...]
    valid: np.ndarray
    frequencies: np.ndarray
    volume_onsets: np.ndarray
    pair_windows: np.ndarray
    pair_targets: np.ndarray
    attrs: dict = field(default_factory=dict)

    @property
    def channels(self) -> list[str]:
        """Channel names in row order (empty when the file names none)."""
        return [str(c) for c in (self.attrs.get("channels") or [])]

    @property
    def channel_types(self) -> list[str]:
        return [str(c) for c in (self.attrs.get("channel_types") or [])]

    @property
    def config(self) -> dict:
        """The preprocessing settings the file was made with (``{}`` when absent)."""
        config = self.attrs.get("config")
        return config if isinstance(config, dict) else {}

    @property
    def repetition_time(self) -> float | None:
        tr = self.attrs.get("repetition_time")
        return float(tr) if tr is not None else None

    @property
    def n_volumes(self) -> int:
        return int(self.shape[0])

    @property
    def n_pairs(self) -> int:
        return int(self.pair_targets.size)

    def windows(self) -> np.ndarray:
        """The model inputs of every pair, ``spectrogram[pair_windows]``: ``[n_pairs, n_windows, C, F]``."""
        if self.spectrogram is None:
            raise ValueError(f"{self.path} was read without its data (load_spectrogram(..., data=False))")
        return self.spectrogram[self.pair_windows]


def load_spectrogram(path: str | os.PathLike, *, data: bool = True) -> SpectrogramFile:
    """Read a spectrogram derivative.

    Parameters
    ----------
    path : path-like
        A ``*_desc-stft_spectrogram.h5`` file.
    data : bool
        Read the ``spectrogram`` dataset (``False``: everything else only, e.g. to check a file cheaply).

    Returns
    -------
    SpectrogramFile

    Raises
    ------
    OSError, KeyError
        Not an HDF5 file, or a dataset of the format is missing (callers say what to do about it).
    """
    import h5py

    with h5py.File(path, "r") as h5:
        ds = h5["spectrogram"]
        return SpectrogramFile(
            path=Path(path),
            spectrogram=np.asarray(ds[()], dtype=np.float32) if data else None,
            shape=tuple(int(n) for n in ds.shape),
            valid=h5["valid"][()].astype(bool),
            frequencies=np.asarray(h5["frequencies"][()], dtype=np.float64),
            volume_onsets=np.asarray(h5["volume_onsets"][()], dtype=np.float64),
            pair_windows=h5["pairs/windows"][()],
            pair_targets=h5["pairs/targets"][()],
            attrs={key: decode_attr(value) for key, value in h5.attrs.items()},
        )


def read_spectrogram(path: str | os.PathLike, *, verbose: str | bool | None = "error"):
    """Open a spectrogram derivative as an MNE-Python :class:`~mne.time_frequency.EpochsSpectrumArray`.

    One "epoch" per BOLD volume (row ``k`` is the spectrum of the EEG window anchored at volume ``k``), with the
    channel names and types, the frequencies (Hz) and the sampling rate of the EEG, one event per volume onset,
    and per-volume metadata (a :class:`pandas.DataFrame`)::

        volume  onset  valid  pair  target
        0       2.176  True   -1    False      # onset: s from the first EEG sample; pair: the pair it is the
        ...                                    # target of (-1: none); valid: window inside the recording

    Parameters
    ----------
    path : path-like
        A ``*_desc-stft_spectrogram.h5`` written by spec2vol-bids.
    verbose : str | bool | None
        MNE's logging level while the object is built (default: errors only).

    Returns
    -------
    spectrum : mne.time_frequency.EpochsSpectrumArray
        ``get_data(picks="all", exclude=[])`` is the file's ``spectrogram`` array ``[n_volumes, n_channels, n_freqs]``
        (float32 values as stored: scaled as the settings say, see ``spectrum.info["description"]``). Events are
        ``[sample of the volume onset on the EEG clock, 0, 1]`` with ``event_id = {"volume": 1}``. Channels that
        ``channels.tsv`` marked bad and that were kept (``--keep-bad-channels``) are in ``info["bads"]``; those
        left out (the default) are not in the file. MNE spectra hold data channels only, so non-EEG channels of
        the spectrogram (ECG, EOG, ...) are typed ``eeg`` (their BIDS types stay in :func:`load_spectrogram`'s
        ``channel_types``).

    Raises
    ------
    OSError, KeyError
        Not an HDF5 file, or not a spectrogram derivative.

    Examples
    --------
    >>> spec = read_spectrogram("sub-01_task-rest_desc-stft_spectrogram.h5")  # doctest: +SKIP
    >>> spec["valid"].average().plot()                                        # doctest: +SKIP
    """
    import mne
    import pandas as pd
    from mne.time_frequency import EpochsSpectrumArray

    content = load_spectrogram(path)
    data = content.spectrogram  # [n_volumes, C, F]
    names = content.channels or [f"ch{i:03d}" for i in range(data.shape[1])]
    bids_types = content.channel_types or ["EEG"] * len(names)
    types = [BIDS_TO_MNE_TYPES.get(str(t).upper(), "misc") for t in bids_types]
    types = [t if t in _MNE_SPECTRUM_TYPES else "eeg" for t in types]
    sfreq = float(content.attrs.get("sfreq") or 1.0)
    with mne.utils.use_log_level(verbose):
        info = mne.create_info(names, sfreq, types)
        info["bads"] = [n for n in (content.attrs.get("kept_bad_channels") or []) if n in names]
        info["description"] = (f"spec2vol-bids spectrogram {content.path.name if content.path else ''}: one row per "
                               f"BOLD volume; units: {content.attrs.get('units', 'n/a')}; BIDS channel types: "
                               f"{', '.join(map(str, bids_types))}")
        onsets = content.volume_onsets
        samples = np.round(onsets * sfreq).astype(np.int64)
        events = np.column_stack([samples, np.zeros_like(samples), np.ones_like(samples)])
        spectrum = EpochsSpectrumArray(np.asarray(data, dtype=np.float64), info, content.frequencies,
                                       events=events, event_id={"volume": 1})
        pair = np.full(len(onsets), -1, dtype=np.int64)
        pair[np.asarray(content.pair_targets, dtype=int)] = np.arange(content.n_pairs)
        spectrum.metadata = pd.DataFrame({"volume": np.arange(len(onsets)), "onset": onsets,
                                          "valid": content.valid, "pair": pair, "target": pair >= 0})
    return spectrum


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
        ``spec2vol_version`` and ``format_version`` are added.
    sidecar : mapping, optional
        The sidecar's own fields (``Description``, ``Sources``, ...; see
        :data:`spec2vol_bids.io.derivatives.SPECTROGRAM`); the attributes are repeated after them.

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
                h5.attrs[key] = encode_attr(value)
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


class SpectrogramRows:
    """Rows of a spectrogram derivative read on demand (only the rows asked for; one handle per process).

    Used by the training datasets: a pair's input is ``n_windows`` rows of a file that may not fit in memory.
    """

    def __init__(self, path: str | os.PathLike):
        self._h5 = LazyH5(path)

    @property
    def path(self) -> Path:
        return self._h5.path

    def read(self, rows: np.ndarray) -> np.ndarray:
        """``spectrogram[rows]`` as float32 ``[len(rows), C, F]`` (rows in any order, repeats allowed)."""
        ds = self._h5.get()["spectrogram"]
        if np.all(np.diff(rows) == 1):
            x = ds[int(rows[0]): int(rows[-1]) + 1]
        else:
            order = np.argsort(rows)
            uniq, inv = np.unique(rows[order], return_inverse=True)
            got = ds[uniq.tolist()]
            x = np.empty((rows.size, *got.shape[1:]), dtype=got.dtype)
            x[order] = got[inv]
        return np.asarray(x, dtype=np.float32)

    def close(self) -> None:
        self._h5.close()
