"""The target cache of a derivative run: its 4-D NIfTI converted once into an uncompressed ``.npy``.

A gzip-compressed NIfTI cannot be read one volume at a time cheaply; the cache is ``[T, Z, X, Y]`` float32
(model layout), keyed by the target's path, size and modification time, written atomically, and read with one
positioned read per volume, so memory stays flat however many runs there are (the official loader holds
everything in RAM).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..utils import atomic_path

__all__ = ["TargetCache"]


class TargetCache:
    """The volumes of one target NIfTI, from a ``.npy`` cache.

    Parameters
    ----------
    target : Path
        The ``..._desc-target_bold.nii.gz``.
    name : str
        The run's name (the cache file's prefix).
    cache_dir : Path or None
        Where the cache goes (``MODEL_DIR/cache``); ``None``: a ``.spec2vol_cache`` folder next to the target.
    """

    def __init__(self, target: str | os.PathLike, name: str, cache_dir: str | os.PathLike | None = None):
        self.target = Path(target)
        self.name = name
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._y = None
        self._npy = None

    def path(self) -> Path:
        """The cache file (its name changes when the target changes)."""
        st = self.target.stat()
        key = hashlib.sha1(f"{self.target.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        root = self.cache_dir if self.cache_dir else self.target.parent / ".spec2vol_cache"
        return root / f"{self.name}_{key}_target.npy"

    def array(self) -> np.ndarray:
        """The whole target as a memory-mapped ``[T, Z, X, Y]`` float32 array (the cache is made if needed)."""
        if self._y is None:
            cache = self.path()
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

    def volume(self, t: int) -> np.ndarray:
        """Target volume ``t``, ``[D, X, Y]``: one positioned read from the ``.npy`` cache.

        A read (not a slice of the memory map) keeps the process's resident memory flat: pages of a memory map
        stay counted in its RSS once touched, read pages only live in the kernel's page cache.
        """
        if self._npy is None or self._npy[0] != os.getpid():
            self.array()  # creates the cache if needed
            path = self.path()
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
        fh.seek(offset + int(t) * count * dtype.itemsize)
        vol = np.fromfile(fh, dtype=dtype, count=count)
        if vol.size != count:
            raise DataError(f"the target cache of {self.name} is truncated", hint="delete MODEL_DIR/cache")
        return vol.reshape(vshape).astype(np.float32, copy=False)  # [D, X, Y]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_y"] = None  # workers re-open their own memory map and file handle
        state["_npy"] = None
        return state
