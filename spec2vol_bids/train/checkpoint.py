"""Safe checkpoints: plain containers and tensors, a SHA-256 of the payload, atomic writes.

File layout (``torch.save`` of one dict; loads with ``torch.load(weights_only=True)``, so a file holding pickled
code is refused by the unpickler itself)::

    format          "spec2vol-bids-checkpoint"
    format_version  1
    model           {"name": str, "kwargs": dict}        # rebuilt with spec2vol_bids.model registry build_model
    state_dict      {str: Tensor}
    preprocessing   dict                                 # the spectrogram derivative's `config`
    channels        [str]                                # input rows, in order
    frequencies     [float] | None                       # Hz; None for the official h5 files
    grid            {"shape": [X, Y, Z], "affine": 4x4 nested list}
    scaling         {"method", "min", "max", "subjects"} # EEG input statistics (training subjects only)
    acquisition     {"sfreq", "repetition_time"}         # optional: EEG rate (Hz) and TR (s) of the training data
    training        dict                                 # data summary, seed, protocol, fold, schedule
    metrics         dict
    versions        dict
    sha256          hex digest of the canonical serialisation of every other key (see `payload_sha256`)

Resume files (``resume.ckpt``) use the same envelope with ``format = "spec2vol-bids-resume"`` and carry the
optimiser, schedule and RNG states as well.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..utils import atomic_path, plain_value, require_path

__all__ = [
    "FORMAT",
    "RESUME_FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "payload_sha256",
    "save_checkpoint",
    "load_checkpoint",
    "check_compatible",
    "check_run_compatible",
    "to_plain",
]

FORMAT = "spec2vol-bids-checkpoint"
RESUME_FORMAT = "spec2vol-bids-resume"
FORMAT_VERSION = 1
_REQUIRED = ("format", "format_version", "model", "state_dict", "channels", "frequencies", "grid", "scaling")


# --------------------------------------------------------------------------------------------------- hashing
def _feed(h, obj: Any) -> None:
    """Canonical, type-tagged serialisation of a plain container into a hash."""
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(b"T" + str(t.dtype).encode() + repr(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, Mapping):
        h.update(b"D" + struct.pack("<q", len(obj)))
        for k in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            _feed(h, k)
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update((b"L" if isinstance(obj, list) else b"U") + struct.pack("<q", len(obj)))
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, bool) or obj is None:
        h.update(b"B" + repr(obj).encode())
    elif isinstance(obj, int):
        h.update(b"I" + str(obj).encode() + b";")
    elif isinstance(obj, float):
        h.update(b"F" + struct.pack("<d", obj))
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        h.update(b"S" + struct.pack("<q", len(b)) + b)
    elif isinstance(obj, bytes):
        h.update(b"Y" + struct.pack("<q", len(obj)) + obj)
    else:
        raise TypeError(f"checkpoints hold plain containers and tensors only, got {type(obj).__name__}")


def payload_sha256(payload: Mapping[str, Any]) -> str:
    """SHA-256 of every key except ``sha256`` (canonical: independent of dict order and pickle details)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "sha256"})
    return h.hexdigest()


def to_plain(obj: Any) -> Any:
    """Convert NumPy arrays/scalars, paths and tuples to plain Python/torch values that load with
    ``weights_only=True`` (NumPy arrays become tensors only where they are arrays of numbers)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, (np.ndarray, np.generic, os.PathLike)):
        return plain_value(obj)
    if isinstance(obj, str):
        return str(obj)  # plain str (e.g. torch.__version__ is a str subclass the safe unpickler refuses)
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, Mapping):
        return {(k if isinstance(k, (int, str)) else str(k)): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------------- objects
class Checkpoint(dict):
    """A loaded (or about to be saved) checkpoint: a plain ``dict`` with convenience accessors.

    Use :func:`load_checkpoint` to read one; ``ckpt["channels"]`` and ``ckpt.channels`` are the same.
    """

    path: Path | None = None

    @property
    def channels(self) -> list[str]:
        return list(self["channels"])

    @property
    def frequencies(self) -> np.ndarray | None:
        f = self.get("frequencies")
        return None if f is None else np.asarray(f, dtype=np.float64)

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self["grid"]["shape"])

    @property
    def affine(self) -> np.ndarray:
        return np.asarray(self["grid"]["affine"], dtype=np.float64)

    @property
    def sha256(self) -> str:
        return self.get("sha256") or payload_sha256(self)

    @property
    def model_name(self) -> str:
        return str(self["model"]["name"])

    def build_model(self):
        """Rebuild the network (``build_model(name, **kwargs)``) and load the weights; returns it in eval mode."""
        from ..model.registry import build_model

        model = build_model(self["model"]["name"], **dict(self["model"].get("kwargs") or {}))
        model.load_state_dict(self["state_dict"])
        model.eval()
        return model


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any], *, fmt: str = FORMAT) -> str:
    """Write a checkpoint atomically; returns its payload SHA-256.

    ``payload`` holds the keys of the module docstring (``format``, ``format_version`` and ``sha256`` are
    filled in). NumPy values are converted to plain Python (:func:`to_plain`).
    """
    import torch

    data = {k: to_plain(v) for k, v in payload.items() if k not in ("sha256",)}
    if "state_dict" in data:
        data["state_dict"] = {k: v.detach().cpu().clone() for k, v in payload["state_dict"].items()}
    data["format"] = fmt
    data["format_version"] = FORMAT_VERSION
    digest = payload_sha256(data)
    data["sha256"] = digest
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    return digest


def load_checkpoint(path: str | os.PathLike, *, fmt: str = FORMAT, map_location: str = "cpu") -> Checkpoint:
    """Load and verify a checkpoint.

    Parameters
    ----------
    path : path
        A file written by :func:`save_checkpoint` (e.g. ``MODEL_DIR/model.ckpt``).

    Returns
    -------
    Checkpoint

    Raises
    ------
    NoInputError
        The file does not exist.
    DataError
        Not a spec2vol-bids checkpoint, pickled code inside (refused by ``weights_only=True``), a newer
        format, or a SHA-256 mismatch (the file was modified or corrupted).
    """
    import pickle

    import torch

    path = require_path(path, "the checkpoint", expected="a checkpoint file",
                        hint="pass MODEL_DIR/model.ckpt written by `spec2vol_bids train`")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "unsupported global" not in str(err).lower():
            raise DataError(f"{path.name} is not a readable checkpoint ({str(err).splitlines()[0][:80]})",
                            hint="the file is corrupted or incomplete; train again or copy it again") from err
        raise DataError(f"{path.name} holds pickled objects that are not plain tensors and containers "
                        f"(refused: loading them could run code)",
                        hint="use a checkpoint written by `spec2vol_bids train`") from err
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError) as err:
        raise DataError(f"{path.name} is not a readable checkpoint ({type(err).__name__})",
                        hint="the file is corrupted or incomplete; train again or copy it again") from err
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise DataError(f"{path.name} is not a {fmt} file",
                        hint="pass a checkpoint written by `spec2vol_bids train`")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise DataError(f"{path.name} uses checkpoint format {data['format_version']}, newer than this version "
                        f"of spec2vol-bids ({FORMAT_VERSION})", hint="upgrade spec2vol-bids")
    stored = data.get("sha256")
    actual = payload_sha256(data)
    if stored != actual:
        raise DataError(f"{path.name} fails its SHA-256 check (stored {str(stored)[:12]}..., computed "
                        f"{actual[:12]}...): it was modified or corrupted after it was written",
                        hint="do not edit checkpoints; use the original file or train again")
    if fmt == FORMAT:
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise DataError(f"{path.name} lacks {', '.join(missing)}", hint="train again with this version")
    ckpt = Checkpoint(data)
    ckpt.path = path
    return ckpt


def _as_bytes_io(ckpt) -> io.BytesIO:  # pragma: no cover - helper for callers that need a buffer
    import torch

    buf = io.BytesIO()
    torch.save(dict(ckpt), buf)
    buf.seek(0)
    return buf


def check_compatible(ckpt: Mapping[str, Any], *, channels=None, frequencies=None, grid=None) -> None:
    """Refuse data a checkpoint cannot be applied to.

    Parameters
    ----------
    ckpt : Checkpoint or dict
    channels : list of str, optional
        Channel names of the spectrogram, in row order; must equal the checkpoint's (names and order).
    frequencies : array, optional
        Frequency axis (Hz); must match within 1e-6 relative (skipped when the checkpoint has none).
    grid : tuple (X, Y, Z) or dict with ``shape``, optional
        Target grid; the shape must match. The affine may differ (each subject keeps its own).

    Raises
    ------
    DataError
        Naming the first mismatch.
    """
    if channels is not None:
        want = list(ckpt["channels"])
        got = [str(c) for c in channels]
        if got != want:
            missing = [c for c in want if c not in got]
            extra = [c for c in got if c not in want]
            if missing or extra:
                detail = f"missing {missing[:6]}{'...' if len(missing) > 6 else ''}, extra {extra[:6]}"
            else:
                detail = "same names in a different order"
            raise DataError(f"the data have {len(got)} channels, the model was trained on {len(want)} ({detail})",
                            hint="re-run the participant level with --include-channels listing the model's channels in "
                                 "its order (`channels` in the checkpoint)")
    if frequencies is not None and ckpt.get("frequencies") is not None:
        want = np.asarray(ckpt["frequencies"], dtype=np.float64)
        got = np.asarray(frequencies, dtype=np.float64)
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-6, atol=1e-9):
            raise DataError(f"the data have {got.size} frequency bins ({_frange(got)}), the model was trained on "
                            f"{want.size} ({_frange(want)})",
                            hint="re-run the participant level with the model's --window-length and frequency "
                                 "settings (--freq-axis, --n-freqs, --fmin, --fmax; `preprocessing` in the checkpoint)")
    if grid is not None:
        shape = grid.get("shape") if isinstance(grid, Mapping) else grid
        got = tuple(int(v) for v in shape)
        want = tuple(int(v) for v in ckpt["grid"]["shape"])
        if got != want:
            raise DataError(f"the target grid is {got}, the model predicts {want}",
                            hint="re-run the participant level with the model's grid (--bold-resize dct, --n-slices)")


def check_run_compatible(ckpt: Mapping[str, Any], *, channels, sfreq: float, repetition_time: float,
                         native_shape, config=None) -> None:
    """Refuse a run, before it is processed, whose spectrogram and target the checkpoint could not be applied to.

    The frequency axis and the target grid the run will have are derived from the preprocessing settings (as the
    run-level steps will compute them), then checked with :func:`check_compatible`.

    Parameters
    ----------
    ckpt : Checkpoint or dict
    channels : list of str
        The channels that enter the run's spectrogram, in row order.
    sfreq, repetition_time : float
        EEG sampling frequency (Hz) and the BOLD repetition time (s).
    native_shape : tuple of int
        Shape of the BOLD series the target is made from (``(X, Y, Z[, T])``).
    config : PreprocConfig or dict, optional
        The preprocessing settings of the run (default: the official pipeline).

    Raises
    ------
    DataError
        Naming the first mismatch.
    """
    from ..config import PreprocConfig
    from ..preproc.eeg import frequency_axis, window_samples
    from ..preproc.fmri import target_shape

    cfg = PreprocConfig.coerce(config)
    _, n_total = window_samples(sfreq, repetition_time, cfg.eeg.window_length, cfg.eeg.overlap)
    freqs = np.asarray(frequency_axis(n_total, sfreq, cfg.eeg))
    grid = tuple(int(s) for s in target_shape(tuple(native_shape)[:3], cfg.bold))
    check_compatible(ckpt, channels=channels, frequencies=freqs, grid=grid)


def _frange(f: np.ndarray) -> str:
    return f"{f[0]:.3g}-{f[-1]:.3g} Hz" if f.size else "empty"
