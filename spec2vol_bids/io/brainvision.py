"""BrainVision EEG files (``.vhdr`` + ``.vmrk`` + ``.eeg``, multiplexed IEEE float32, microvolts), streamed.

pybv (and so ``mne_bids.write_raw_bids(format="BrainVision")``) needs the whole recording in memory and writes
every marker as ``Stimulus``. :class:`BrainVisionWriter` keeps only one block in memory and writes markers of any
type (the scanner's volume triggers as ``Response,R128``, as Brain Products recorders do). The simulator writes its
recordings with it, and the artefact correction its corrected EEG (in the working directory), which any BrainVision
reader (MNE, the BIDS-App itself) opens. :func:`read_block` reads samples of such a file back without MNE, and
of any multiplexed binary BrainVision recording in a voltage unit (16- or 32-bit integers, float32: what Brain
Products recorders write; :func:`binary_layout`), several times faster than MNE's reader.
Identical inputs give byte-identical files (no time stamps).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Marker", "BrainVisionWriter", "BinaryLayout", "binary_layout", "read_block", "float32_data_file",
           "markers_from_annotations"]

#: (type, description, 0-based sample) of one BrainVision marker, e.g. ``("Response", "R128", 1250)``
Marker = tuple[str, str, int]


class BrainVisionWriter:
    """Write a BrainVision recording (``.vhdr``, ``.vmrk``, ``.eeg``: multiplexed IEEE float32, microvolts).

    Parameters
    ----------
    vhdr : path-like
        Header path; the ``.eeg`` and ``.vmrk`` files are written next to it with the same stem.
    ch_names : sequence of str
        Channel names in file order.
    sfreq : float
        Sampling frequency (Hz).
    markers : sequence of Marker
        ``(type, description, sample)`` with 0-based samples; written sorted by sample after a
        ``New Segment`` marker at sample 0 that carries ``meas_date``.
    meas_date : str
        Recording start as ``YYYYMMDDhhmmssuuuuuu`` (BrainVision's New Segment date field).
    software : str
        Named in the header's comment line.

    Examples
    --------
    >>> with BrainVisionWriter(path, ["Cz"], 250.0, [("Response", "R128", 500)],
    ...                        meas_date="20000101120000000000") as w:  # doctest: +SKIP
    ...     w.write(block)  # block: (n_channels, n_samples) in microvolts
    """

    def __init__(self, vhdr: str | os.PathLike, ch_names: Sequence[str], sfreq: float,
                 markers: Sequence[Marker], *, meas_date: str, software: str = "spec2vol-bids simulate"):
        self.vhdr = Path(vhdr)
        self.eeg = self.vhdr.with_suffix(".eeg")
        self.vmrk = self.vhdr.with_suffix(".vmrk")
        self.ch_names = list(ch_names)
        self.sfreq = float(sfreq)
        self.n_written = 0
        self.software = software
        self._write_header()
        self._write_markers(markers, meas_date)
        # an empty file (atomic_path's temporary) is written without truncating it first: ext4 writes a file that
        # was truncated to zero back to disk when it is closed (auto_da_alloc), holding the close for about 0.25 s
        # per 600 MB
        empty = self.eeg.is_file() and self.eeg.stat().st_size == 0
        self._fh = open(self.eeg, "r+b" if empty else "wb")  # noqa: SIM115 - closed in close()

    def _write_header(self) -> None:
        interval_us = 1e6 / self.sfreq
        interval = f"{interval_us:.6f}".rstrip("0").rstrip(".")
        lines = [
            "Brain Vision Data Exchange Header File Version 1.0",
            f"; Data created by {self.software}",
            "",
            "[Common Infos]",
            "Codepage=UTF-8",
            f"DataFile={self.eeg.name}",
            f"MarkerFile={self.vmrk.name}",
            "DataFormat=BINARY",
            "; Data orientation: MULTIPLEXED=ch1,pt1, ch2,pt1 ...",
            "DataOrientation=MULTIPLEXED",
            f"NumberOfChannels={len(self.ch_names)}",
            "; Sampling interval in microseconds",
            f"SamplingInterval={interval}",
            "",
            "[Binary Infos]",
            "BinaryFormat=IEEE_FLOAT_32",
            "",
            "[Channel Infos]",
            "; Each entry: Ch<Channel number>=<Name>,<Reference channel name>,",
            "; <Resolution in \"Unit\">,<Unit>, Future extensions..",
            "; Fields are delimited by commas, some fields might be omitted (empty).",
            "; Commas in channel names are coded as \"\\1\".",
        ]
        lines += [f"Ch{i}={name.replace(',', chr(92) + '1')},,1,µV" for i, name in enumerate(self.ch_names, 1)]
        self.vhdr.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _write_markers(self, markers: Sequence[Marker], meas_date: str) -> None:
        lines = [
            "Brain Vision Data Exchange Marker File, Version 1.0",
            "",
            "[Common Infos]",
            "Codepage=UTF-8",
            f"DataFile={self.eeg.name}",
            "",
            "[Marker Infos]",
            "; Each entry: Mk<Marker number>=<Type>,<Description>,<Position in data points>,",
            "; <Size in data points>, <Channel number (0 = marker is related to all channels)>",
            "; Fields are delimited by commas, some fields might be omitted (empty).",
            "; Commas in type or description text are coded as \"\\1\".",
            f"Mk1=New Segment,,1,1,0,{meas_date}",
        ]
        ordered = sorted(markers, key=lambda m: (int(m[2]), m[0], m[1]))
        lines += [f"Mk{i}={typ},{desc},{int(pos) + 1},1,0" for i, (typ, desc, pos) in enumerate(ordered, 2)]
        self.vmrk.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` of shape (n_channels, n_samples), in microvolts."""
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[0] != len(self.ch_names):
            raise ValueError(f"expected a block of shape ({len(self.ch_names)}, n), got {block.shape}")
        self._fh.write(np.ascontiguousarray(block.T, dtype="<f4").data)  # multiplexed: (n, C)
        self.n_written += block.shape[1]

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> BrainVisionWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: BrainVision binary formats read without MNE (little-endian)
BINARY_FORMATS = {"INT_16": "<i2", "INT_32": "<i4", "IEEE_FLOAT_32": "<f4"}
#: voltage units of the channel infos, in microvolts
UNIT_UV = {"µV": 1.0, "uV": 1.0, "μV": 1.0, "mV": 1e3, "V": 1e6, "nV": 1e-3}


@dataclass(frozen=True)
class BinaryLayout:
    """Where and how the samples of a multiplexed binary BrainVision recording lie (:func:`binary_layout`).

    Attributes
    ----------
    data_file : Path
    n_channels : int
    dtype : str
        Numpy type of a stored sample (``"<i2"``, ``"<i4"`` or ``"<f4"``).
    scale : ndarray of float32, shape (n_channels,), or None
        Factor from a stored value to microvolts (resolution x unit) per channel; None when it is 1 everywhere
        and the samples are float32 (:class:`BrainVisionWriter`'s files).
    """

    data_file: Path
    n_channels: int
    dtype: str
    scale: np.ndarray | None

    @property
    def n_samples(self) -> int:
        return self.data_file.stat().st_size // (np.dtype(self.dtype).itemsize * self.n_channels)


def binary_layout(vhdr: str | os.PathLike) -> BinaryLayout | None:
    """The layout of a BrainVision recording that :func:`read_block` reads directly: binary, multiplexed, 16- or
    32-bit integers or IEEE float32, every channel in a voltage unit. None for any other header (vectorised or
    text data, other units, a missing data file), which MNE reads instead."""
    path = Path(vhdr)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    fields, channels = {}, []
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or line.startswith(";"):
            continue
        if key.startswith("Ch") and key[2:].isdigit():
            channels.append(value.split(","))
        else:
            fields[key.strip()] = value.strip()
    dtype = BINARY_FORMATS.get(fields.get("BinaryFormat", ""))
    if fields.get("DataFormat") != "BINARY" or fields.get("DataOrientation") != "MULTIPLEXED" or dtype is None \
            or "DataFile" not in fields:
        return None
    try:
        n_channels = int(fields.get("NumberOfChannels", ""))
        # resolution (empty: 1) times the unit (empty: microvolts)
        scale = np.array([float(c[2]) if len(c) > 2 and c[2].strip() else 1.0 for c in channels])
        scale *= [UNIT_UV[c[3].strip() if len(c) > 3 and c[3].strip() else "µV"] for c in channels]
    except (ValueError, KeyError):
        return None
    data = path.with_name(fields["DataFile"])
    if len(channels) != n_channels or not data.is_file():
        return None
    unit = dtype == "<f4" and bool(np.all(scale == 1.0))
    return BinaryLayout(data, n_channels, dtype, None if unit else scale.astype(np.float32))


def read_block(eeg_file: str | os.PathLike, n_channels: int, start: int, stop: int, *, dtype: str = "<f4",
               scale: np.ndarray | None = None, channels=None) -> np.ndarray:
    """Samples ``start:stop`` of a multiplexed binary BrainVision data file (by default float32 in microvolts, as
    :class:`BrainVisionWriter` writes them; else ``dtype`` and ``scale`` of its :func:`binary_layout`), of every
    channel or of ``channels`` (indices, in that order: only those are converted).

    Returns
    -------
    ndarray of float32, shape (n_channels or len(channels), stop - start)
        In microvolts.
    """
    count = (int(stop) - int(start)) * int(n_channels)
    item = np.dtype(dtype).itemsize
    offset = int(start) * int(n_channels) * item
    if channels is None:
        data = np.fromfile(eeg_file, dtype=dtype, count=count, offset=offset)
    else:  # mapped: only the channels' values are copied (reading would copy the whole block first)
        available = max(0, (os.path.getsize(eeg_file) - offset) // item)
        data = np.memmap(eeg_file, dtype=dtype, mode="r", offset=offset, shape=(min(count, available),)) \
            if min(count, available) else np.zeros(0, dtype)
    if data.size != count:
        raise ValueError(f"{Path(eeg_file).name} holds fewer than {stop} samples")
    data = np.asarray(data).reshape(-1, int(n_channels)).T
    if channels is not None:
        channels = np.asarray(channels, dtype=np.int64)
        data = data[channels]  # a copy
        scale = None if scale is None else scale[channels]
    if scale is None:
        return data if data.dtype == np.float32 else data.astype(np.float32)
    return np.multiply(data, scale[:, None], dtype=np.float32)


def float32_data_file(vhdr: str | os.PathLike) -> tuple[Path, int] | None:
    """``(data file, number of channels)`` of a BrainVision recording laid out as :class:`BrainVisionWriter` writes
    it (binary, multiplexed, IEEE float32, every channel at a resolution of 1 microvolt), which :func:`read_block`
    reads with its defaults; None for any other header (or a missing data file)."""
    layout = binary_layout(vhdr)
    return (layout.data_file, layout.n_channels) if layout is not None and layout.scale is None else None


def markers_from_annotations(annotations: Sequence[tuple[float, str]], sfreq: float) -> list[Marker]:
    """BrainVision markers from ``(onset in s from the first sample, description)`` pairs (as MNE names them).

    MNE names a BrainVision marker ``Type/Description`` (``Response/R128``); other descriptions become
    ``Comment`` markers. Onsets are rounded to the nearest sample; negative ones are dropped.
    """
    out: list[Marker] = []
    for onset, desc in annotations:
        sample = int(round(float(onset) * float(sfreq)))
        if sample < 0 or str(desc).startswith("New Segment"):
            continue
        typ, sep, rest = str(desc).partition("/")
        out.append((typ, rest, sample) if sep else ("Comment", str(desc), sample))
    return out
