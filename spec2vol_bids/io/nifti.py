"""NIfTI images written by spec2vol-bids (targets, masks, predictions), each with its JSON sidecar."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import atomic_path, write_json
from .names import sidecar_path

__all__ = ["write_nifti", "IncrementalNifti"]


def write_nifti(dest: str | os.PathLike, data: np.ndarray, affine: np.ndarray, *, sidecar: Mapping[str, Any],
                dtype: Any = np.float32, repetition_time: float | None = None,
                xform_code: int = 1) -> tuple[Path, Path]:
    """Write a NIfTI image and its JSON sidecar atomically.

    Parameters
    ----------
    dest : path-like
        ``.nii.gz`` path.
    data : ndarray, shape (X, Y, Z[, T])
    affine : ndarray, shape (4, 4)
    sidecar : mapping
        JSON sidecar content (see :mod:`spec2vol_bids.io.derivatives` for what each derivative holds).
    dtype : numpy dtype
        On-disk data type (float32 for images, uint8 for masks).
    repetition_time : float, optional
        Stored in ``pixdim[4]`` (seconds) for 4-D images.
    xform_code : int
        The qform and sform codes: 1 (scanner, the BOLD run's own space), 2 (aligned to another image, e.g.
        ``space-T1w``) or 4 (MNI, a standard template), as fMRIPrep writes them
        (:func:`spec2vol_bids.io.derivatives.xform_code`).

    Returns
    -------
    nifti, json : Path
    """
    import nibabel as nib

    arr = np.asarray(data).astype(dtype, copy=False)
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=float))
    img.header.set_data_dtype(dtype)
    img.header.set_qform(img.affine, code=int(xform_code))
    img.header.set_sform(img.affine, code=int(xform_code))
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


class IncrementalNifti:
    """A 4-D float32 NIfTI-1 file (``.nii``, uncompressed) that grows by one volume at a time.

    The file is a valid image after every :meth:`append`: the new volume's voxels are appended and flushed to
    disk first, then the header's volume count (``dim[4]``) is rewritten in place and flushed. A process killed
    at any moment therefore leaves an image of every volume whose ``append`` returned (at most the bytes of a
    volume in flight trail the data and are ignored by readers). The JSON sidecar is replaced atomically after
    each volume.

    Parameters
    ----------
    dest : path-like
        ``.nii`` path (a gzip stream cannot be updated in place). An existing file is replaced.
    affine : ndarray, shape (4, 4)
    shape : tuple of int
        ``(X, Y, Z)`` of every volume.
    repetition_time : float, optional
        ``pixdim[4]`` in seconds.
    xform_code : int
        qform/sform code (see :func:`write_nifti`).

    Examples
    --------
    >>> with IncrementalNifti(path, affine, (64, 64, 8), repetition_time=2.0) as out:   # doctest: +SKIP
    ...     out.append(volume, sidecar={"VolumeIndices": [26]})
    """

    #: bytes before the first voxel: the 348-byte NIfTI-1 header and the empty extension flag
    HEADER_BYTES = 352
    #: byte offset of ``dim[4]`` (int16) in a NIfTI-1 header: ``sizeof_hdr`` (4) + 36 bytes + ``dim[0..3]``
    _DIM4_OFFSET = 40 + 4 * 2

    def __init__(self, dest: str | os.PathLike, affine: np.ndarray, shape: tuple[int, int, int], *,
                 repetition_time: float | None = None, xform_code: int = 1):
        import nibabel as nib

        self.path = Path(dest)
        if not self.path.name.endswith(".nii"):
            raise ValueError(f"{self.path.name}: an incremental image must be an uncompressed .nii file")
        self.shape = tuple(int(s) for s in shape)
        self.n_volumes = 0
        header = nib.Nifti1Header()
        header.set_data_dtype(np.float32)
        header.set_data_shape((*self.shape, 1))
        img = nib.Nifti1Image(np.zeros((*self.shape, 1), np.float32), np.asarray(affine, dtype=float), header)
        img.header.set_qform(img.affine, code=int(xform_code))
        img.header.set_sform(img.affine, code=int(xform_code))
        zooms = img.header.get_zooms()
        img.header.set_zooms((*zooms[:3], float(repetition_time or 1.0)))
        img.header.set_xyzt_units(xyz="mm", t="sec")
        hdr = img.header
        hdr["vox_offset"] = self.HEADER_BYTES
        hdr["dim"][4] = 0  # no volume yet: readers see an empty series until the first append
        raw = hdr.binaryblock + b"\x00" * 4  # 348-byte header + the empty extension flag
        with atomic_path(self.path) as tmp:
            Path(tmp).write_bytes(raw)
        self._fh = open(self.path, "r+b")  # noqa: SIM115 - closed in close()
        self._fh.seek(0, os.SEEK_END)

    def append(self, volume: np.ndarray, *, sidecar: Mapping[str, Any] | None = None) -> int:
        """Add one volume ``[X, Y, Z]``; returns the number of volumes now in the file."""
        vol = np.asarray(volume, dtype=np.float32)
        if vol.shape != self.shape:
            raise ValueError(f"volume shape {vol.shape} differs from the image's {self.shape}")
        fh = self._fh
        fh.seek(self.HEADER_BYTES + self.n_volumes * vol.nbytes)
        fh.write(np.asfortranarray(vol).tobytes(order="F"))  # NIfTI stores x fastest
        fh.flush()
        os.fsync(fh.fileno())
        self.n_volumes += 1
        fh.seek(self._DIM4_OFFSET)
        fh.write(np.int16(self.n_volumes).tobytes())
        fh.flush()
        os.fsync(fh.fileno())
        if sidecar is not None:
            write_json(sidecar_path(self.path), dict(sidecar))
        return self.n_volumes

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> IncrementalNifti:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
