"""Small shared helpers: atomic writes, path checks, provenance (versions, seeds) and hashing.

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
import shutil
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


def copy_atomic(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy a file into place atomically (temporary copy in the destination folder, then rename)."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)


#: what to do when an output folder cannot be created or written (the usual Docker mistakes)
WRITE_HINT = ("Check the permissions, and that the folder is not on a read-only mount (in Docker, run with "
              "-u $(id -u) and mount the output folder without :ro)")


def check_writable(path: str | os.PathLike, what: str, *, hint: str | None = None) -> Path:
    """Refuse a folder that cannot be written, before anything is written.

    An existing folder is probed by creating and deleting a temporary file in it (what fails on a read-only
    mount, a folder of another user or an immutable folder, also for root); for a folder that does not exist yet,
    its nearest existing parent must be a writable folder (checked with ``os.access``, nothing is created).

    Parameters
    ----------
    path : path-like
        The folder.
    what : str
        How the message names it, e.g. ``"OUT_DIR"`` or ``"the work directory"``.
    hint : str, optional
        What to do (default: check the permissions and the mount).

    Raises
    ------
    CantCreateError
        The folder (or its nearest existing parent) is not a writable folder.
    """
    from .errors import CantCreateError

    hint = hint or WRITE_HINT
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise CantCreateError(f"{what} {p} is a file, not a folder", hint=hint)
        try:
            fd, probe = tempfile.mkstemp(prefix=".spec2vol-write-test-", dir=p)
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            raise CantCreateError(f"{what} {p} is not writable ({err.strerror or err})", hint=hint) from None
        return p
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise CantCreateError(f"cannot create {what} {p}: {parent} is a file, not a folder", hint=hint)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CantCreateError(f"cannot create {what} {p}: {parent} is not writable", hint=hint)
    return p


def require_module(module: str, *, extra: str, what: str):
    """Import an optional dependency, or raise the one-line error that says which extra installs it.

    Parameters
    ----------
    module : str
        The module to import (``"diffusers"``).
    extra : str
        The spec2vol-bids extra that provides it (``"e2fnet"``).
    what : str
        What needs it, for the message (``"the E2fNet baseline"``).

    Raises
    ------
    UsageError
        The module cannot be imported.
    """
    import importlib

    from .errors import UsageError

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise UsageError(f"{what} needs the optional package {module} ({err.__class__.__name__}: {err})",
                         hint=f'Install it with pip install "spec2vol-bids[{extra}]"') from None


def require_path(path: str | os.PathLike, what: str, *, folder: bool = False, expected: str | None = None,
                 hint: str | None = None) -> Path:
    """Return ``path`` if it is an existing file (``folder=False``) or folder (``folder=True``).

    Otherwise raise :class:`~spec2vol_bids.errors.NoInputError` saying what is there instead: nothing, a folder
    where a file is expected, or a file where a folder is expected. ``what`` names the argument (e.g.
    ``"the checkpoint"``), ``expected`` what it should be (default ``"a file"`` / ``"a folder"``), e.g.
    ``"the checkpoint /m is a folder, not a checkpoint file"``.
    """
    from .errors import NoInputError

    p = Path(path)
    if (p.is_dir() if folder else p.is_file()):
        return p
    expected = expected or ("a folder" if folder else "a file")
    if p.is_dir():
        found = "a folder"
    elif p.is_file():
        found = "a file"
    elif p.is_symlink():
        found = "a broken symbolic link"
    elif p.exists():
        found = "not a regular file"
    else:
        raise NoInputError(f"{what} {p} does not exist", hint=hint)
    raise NoInputError(f"{what} {p} is {found}, not {expected}", hint=hint)


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


#: the ``--device`` choices of every command, and of the napari widget
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto", *, gpu_count=None, strict: bool = True) -> str:
    """The device to run a model on: ``"cpu"`` or ``"cuda"`` (or ``"cuda:N"``) for a requested name.

    The one device resolution of spec2vol-bids (training, prediction, the BIDS-App, its workflows and the napari
    widget): ``"auto"`` means the GPU when one is visible, else the CPU.

    Parameters
    ----------
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (case and surrounding blanks ignored).
    gpu_count : callable, optional
        How to count the visible GPUs, e.g. nipype's ``gpu_count`` (``nvidia-smi``, which needs no torch);
        default: ``torch.cuda.device_count()``.
    strict : bool
        Refuse ``"cuda"`` when no GPU is visible. ``False`` when the device is only recorded for later, e.g. a
        workflow built on a login node and run on a GPU node.

    Returns
    -------
    str

    Raises
    ------
    UsageError
        An unknown name, or (``strict``) ``"cuda"`` on a machine without a visible CUDA GPU.
    """
    from .errors import UsageError

    name = str(device).strip().lower()
    if name not in DEVICES and not name.startswith("cuda:"):
        raise UsageError(f"unknown device {device!r}", hint=f"Use one of {', '.join(DEVICES)}")
    if name == "cpu" or (name != "auto" and not strict):
        return name
    if gpu_count is None:
        import torch

        n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    else:
        n_gpus = int(gpu_count())
    if name == "auto":
        return "cuda" if n_gpus > 0 else "cpu"
    if n_gpus == 0:
        raise UsageError(f"device {name!r} was requested but no CUDA GPU is available",
                         hint="Use device cpu or auto; in a container, run the GPU image with --gpus all "
                              "(Apptainer: --nv)")
    return name


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
