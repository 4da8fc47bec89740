"""Streaming writers: BrainVision EEG and gzipped NIfTI-1, one block or one volume at a time.

pybv (and so ``mne_bids.write_raw_bids(format="BrainVision")``) needs the whole recording in memory and writes
every marker as ``Stimulus``; a 5 kHz, 64-channel, 8-minute run is about 1 GB of float64. These writers keep only
one block in memory and write the scanner volume markers as ``Response,R128``, as Brain Products recorders do.
Both produce byte-identical files for identical inputs (no time stamps, gzip ``mtime`` 0).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["Marker", "BrainVisionWriter", "NiftiStreamWriter"]

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

    Examples
    --------
    >>> with BrainVisionWriter(path, ["Cz"], 250.0, [("Response", "R128", 500)],
    ...                        meas_date="20000101120000000000") as w:  # doctest: +SKIP
    ...     w.write(block)  # block: (n_channels, n_samples) in microvolts
    """

    def __init__(self, vhdr: str | os.PathLike, ch_names: Sequence[str], sfreq: float,
                 markers: Sequence[Marker], *, meas_date: str):
        self.vhdr = Path(vhdr)
        self.eeg = self.vhdr.with_suffix(".eeg")
        self.vmrk = self.vhdr.with_suffix(".vmrk")
        self.ch_names = list(ch_names)
        self.sfreq = float(sfreq)
        self.n_written = 0
        self._write_header()
        self._write_markers(markers, meas_date)
        self._fh = open(self.eeg, "wb")  # noqa: SIM115 - closed in close()

    def _write_header(self) -> None:
        interval_us = 1e6 / self.sfreq
        interval = f"{interval_us:.6f}".rstrip("0").rstrip(".")
        lines = [
            "Brain Vision Data Exchange Header File Version 1.0",
            "; Data created by spec2vol-bids simulate",
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
        self._fh.write(np.ascontiguousarray(block.T, dtype="<f4").tobytes())  # multiplexed: (n, C)
        self.n_written += block.shape[1]

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> BrainVisionWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NiftiStreamWriter:
    """Write a gzipped 4-D NIfTI-1 image one 3-D volume at a time.

    NIfTI stores voxels in Fortran order with time slowest, so each volume is a contiguous run of bytes after
    the header: memory stays at one volume whatever the number of volumes.

    Parameters
    ----------
    path : path-like
        Output ``.nii.gz`` (already a temporary path when atomicity is wanted).
    shape : tuple of int
        ``(X, Y, Z, T)``.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine (written as both qform and sform, code 1 "scanner").
    zooms : tuple of float
        ``(dx, dy, dz, tr)``: voxel size in mm and the repetition time in seconds (``pixdim[4]``).
    dtype : numpy dtype
        On-disk type (``int16`` for measured BOLD, ``float32`` for noise-free ground truth).
    compresslevel : int
        gzip level (1 is fast; BOLD noise does not compress well anyway).
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int, int, int], affine: np.ndarray,
                 zooms: tuple[float, float, float, float], dtype=np.float32, *, compresslevel: int = 1,
                 description: str = "spec2vol-bids simulate"):
        import nibabel as nib

        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        hdr = nib.Nifti1Header()
        hdr.set_data_dtype(self.dtype)
        hdr.set_data_shape(self.shape)
        hdr.set_zooms(tuple(float(z) for z in zooms))
        hdr.set_xyzt_units("mm", "sec")
        hdr.set_qform(affine, code=1)
        hdr.set_sform(affine, code=1)
        hdr["descrip"] = description.encode()[:79]
        hdr.set_slope_inter(1.0, 0.0)
        hdr["vox_offset"] = 352
        self._raw = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=compresslevel, mtime=0)
        self._gz.write(hdr.binaryblock)
        self._gz.write(b"\x00" * 4)  # no extensions
        self.n_written = 0

    def write(self, volume: np.ndarray) -> None:
        """Append one volume of shape (X, Y, Z); values are cast (and rounded for integer types)."""
        volume = np.asarray(volume)
        if volume.shape != self.shape[:3]:
            raise ValueError(f"expected a volume of shape {self.shape[:3]}, got {volume.shape}")
        if self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            volume = np.clip(np.rint(volume), info.min, info.max)
        self._gz.write(np.asarray(volume, dtype=self.dtype).tobytes(order="F"))
        self.n_written += 1

    def close(self) -> None:
        if not self._raw.closed:
            self._gz.close()
            self._raw.close()
        if self.n_written != self.shape[3]:
            raise RuntimeError(f"{self.path.name}: wrote {self.n_written} of {self.shape[3]} volumes")

    def __enter__(self) -> NiftiStreamWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:  # leave the (temporary) file to the caller's clean-up; do not mask the error
            self._gz.close()
            self._raw.close()
