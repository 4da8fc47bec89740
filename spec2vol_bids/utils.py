"""Small shared helpers: atomic writes, provenance (versions, seeds) and hashing.

Every file spec2vol-bids writes goes through :func:`atomic_write` (or :func:`atomic_path`), so an
interrupted run never leaves a half-written output behind: data are written to a temporary file in the
destination folder and renamed into place (``os.replace`` is atomic on POSIX file systems).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import random
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._version import __version__


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success rename it onto ``dest``, on error delete it.

    The temporary name keeps ``dest``'s full suffix (e.g. ``.nii.gz``) so libraries that choose a format
    from the extension (nibabel, h5py, matplotlib) behave as for ``dest`` itself.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(dest.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write(dest: str | os.PathLike, data: str | bytes) -> Path:
    """Write text or bytes to ``dest`` atomically and return the path."""
    with atomic_path(dest) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return Path(dest)


def write_json(dest: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (NumPy scalars and arrays allowed), atomically."""
    return atomic_write(dest, json.dumps(obj, indent=2, default=plain_value) + "\n")


def plain_value(obj: Any):
    """NumPy arrays -> lists, NumPy scalars -> Python scalars, paths -> str (JSON and checkpoints);
    anything else raises ``TypeError``."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if np is not None:
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, np.generic):
            return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of Python, the platform and the scientific stack (only packages already importable)."""
    from importlib import metadata

    out = {"spec2vol-bids": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for dist in ("numpy", "scipy", "torch", "nibabel", "nilearn", "mne", "mne-bids", "pybids", "nipype",
                 "h5py", "mamba-ssm", *extra):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        out["torch.cuda"] = str(torch.version.cuda)
    return out


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and (if imported or importable) torch; optionally ask torch for determinism."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
