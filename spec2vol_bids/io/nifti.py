"""NIfTI images written by spec2vol-bids (targets, masks, predictions), each with its JSON sidecar."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import atomic_path, write_json
from .names import sidecar_path

__all__ = ["write_nifti"]


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
