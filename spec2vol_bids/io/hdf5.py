"""HDF5 helpers of the project's files: attribute encoding and decoding, and per-process lazy file handles.

Attributes that are lists or dictionaries are stored as JSON text and ``None`` as ``"n/a"``
(:func:`encode_attr`); :func:`decode_attr` is the one place where attributes are read back, whoever wrote them
(h5py returns bytes, NumPy scalars or arrays depending on the writer).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["encode_attr", "decode_attr", "LazyH5"]


def encode_attr(value: Any) -> Any:
    """An HDF5 attribute value: lists, tuples and dicts as JSON text, ``None`` as ``"n/a"``, others unchanged."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    if value is None:
        return "n/a"
    return value


def decode_attr(value: Any) -> Any:
    """A plain Python value from an HDF5 attribute.

    Bytes are decoded as UTF-8; text holding a JSON list or object (``[...]``, ``{...}``) is parsed (other text
    stays text); NumPy scalars become Python scalars and arrays lists (of ``str`` for arrays of bytes).
    """
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        if value.strip()[:1] in ("[", "{"):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
        return value
    if isinstance(value, np.ndarray):
        return [v.decode("utf-8") if isinstance(v, bytes) else v for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


class LazyH5:
    """An h5py file opened read-only on first use in the current process (safe with DataLoader workers).

    Pickling drops the handle, so a copy sent to a worker process opens its own.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = None
        self._pid = None

    def get(self):
        """The open ``h5py.File`` of this process."""
        import h5py

        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self):
        return {"path": self.path, "_file": None, "_pid": None}
