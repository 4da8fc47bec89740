"""Streaming writers: BrainVision EEG and gzipped NIfTI-1, one block or one volume at a time.

A 5 kHz, 64-channel, 8-minute run is about 1 GB of float64: these writers keep only one block (or volume) in
memory. The BrainVision writer lives in :mod:`spec2vol_bids.io.brainvision` (the artefact correction writes with it
too) and is re-exported here. Both produce byte-identical files for identical inputs (no time stamps, gzip
``mtime`` 0).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ..io.brainvision import BrainVisionWriter, Marker  # noqa: F401 - re-exported (the simulator's writers)

__all__ = ["Marker", "BrainVisionWriter", "NiftiStreamWriter"]


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
