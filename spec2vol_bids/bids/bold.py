"""BOLD images of a BIDS dataset: the one header check, and the repetition time.

Every place that opens a BOLD series (pairing runs, fMRIPrep's preprocessed series, the run-level steps) checks it
here first: a corrupt or truncated file, or an image that is not 4-D, is a :class:`~spec2vol_bids.errors.DataError`
that names the file and says how to exclude the run, before any processing starts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import DataError

__all__ = ["load_bold_header", "read_bold_header"]

LOGGER = logging.getLogger("spec2vol_bids.bids")


def load_bold_header(bold_file: str | os.PathLike, *, keep_file_open: bool = False):
    """Open a 4-D BOLD image without reading its voxels.

    Parameters
    ----------
    bold_file : path-like
        A NIfTI image.
    keep_file_open : bool
        Keep one file handle open for the voxel reads that follow (nibabel's ``keep_file_open``): a gzip
        stream is then decompressed once, front to back.

    Returns
    -------
    nibabel.Nifti1Image
        File-backed; ``img.dataobj`` reads the voxels on demand.

    Raises
    ------
    DataError
        The file cannot be read (corrupt, truncated, not NIfTI) or the image is not 4-D.
    """
    import nibabel as nib

    name = Path(bold_file).name
    try:
        img = nib.load(str(bold_file), keep_file_open=keep_file_open)
        shape = img.header.get_data_shape()
    except Exception as err:  # nibabel raises several types for corrupt files
        raise DataError(f"cannot read the BOLD image {name} ({type(err).__name__}: {err})",
                        hint="Replace the corrupt file, or exclude the run with --bids-filter-file") from None
    if len(shape) != 4:
        raise DataError(f"the BOLD image {name} is {len(shape)}-D, expected 4-D [X, Y, Z, T]",
                        hint="Exclude the run with --bids-filter-file")
    return img


def read_bold_header(bold_file: str | os.PathLike, metadata: Mapping[str, Any]) -> tuple[tuple[int, ...], float]:
    """Shape and repetition time of a 4-D BOLD image (sidecar ``RepetitionTime``, else the NIfTI header).

    Parameters
    ----------
    bold_file : path-like
        The image.
    metadata : mapping
        Its sidecar metadata (inheritance principle applied).

    Returns
    -------
    shape : tuple of int
        ``(X, Y, Z, T)``.
    repetition_time : float
        Seconds.

    Raises
    ------
    DataError
        Unreadable or not 4-D (:func:`load_bold_header`), or no positive repetition time anywhere.
    """
    bold_path = Path(bold_file)
    img = load_bold_header(bold_path)
    shape = img.shape
    tr = metadata.get("RepetitionTime")
    if tr is None:
        zoom_t = float(img.header.get_zooms()[3]) if len(img.header.get_zooms()) > 3 else 0.0
        units = img.header.get_xyzt_units()[1]
        tr = zoom_t / 1000.0 if units == "msec" else zoom_t
        if tr > 0:
            LOGGER.warning("%s: no RepetitionTime in the sidecar; using %.4g s from the NIfTI header",
                           bold_path.name, tr)
    if not tr or float(tr) <= 0:
        raise DataError(f"the BOLD run {bold_path.name} has no RepetitionTime",
                        hint="Add RepetitionTime (seconds) to its JSON sidecar")
    return tuple(int(n) for n in shape), float(tr)
