"""Find the runs of an experiment: the paired runs of a derivatives folder, or the official h5 files given.

:func:`discover_runs` refuses folders without derivatives and a spectrogram without its target;
:func:`check_consistent` refuses runs that cannot share one model (channels, frequency axis, window count, grid).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError, NoInputError
from ..io.derivatives import MASK, SPECTROGRAM, TARGET, run_key
from ..utils import require_path
from .runs import DerivativeRun, OfficialH5Run, RunSource, subject_of

__all__ = ["discover_runs", "load_official_h5", "check_consistent"]


def discover_runs(deriv_dir: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                  subjects: Sequence[str] | None = None) -> list[DerivativeRun]:
    """Find every paired run (spectrogram + target) under a derivatives folder.

    Parameters
    ----------
    deriv_dir : path
        The BIDS-App output folder (or any folder above the ``sub-*`` folders).
    cache_dir : path, optional
        Where to keep the memory-mappable target caches (``MODEL_DIR/cache``).
    subjects : list of str, optional
        Keep only these participant labels (without ``sub-``).

    Returns
    -------
    list of DerivativeRun, sorted by file name.

    Raises
    ------
    NoInputError
        The folder does not exist, holds no spectrogram derivatives, or a spectrogram lacks its target.
    DataError
        The runs disagree on channels, frequencies, window count or grid (:func:`check_consistent`).
    """
    root = require_path(deriv_dir, "the derivatives folder", folder=True,
                        hint="pass the OUT_DIR of `spec2vol_bids BIDS_DIR OUT_DIR participant`")
    # BIDS layout only (sub-<label>[/ses-<label>]/eeg/): skips hidden folders and nipype work directories
    specs = sorted(p for p in root.rglob(SPECTROGRAM.pattern)
                   if not any(part.startswith(".") for part in p.relative_to(root).parts)
                   and p.parent.name == "eeg" and p.parent.parent.name.startswith(("sub-", "ses-")))
    if not specs:
        raise NoInputError(f"no {SPECTROGRAM.pattern} files under {root}",
                           hint="run `spec2vol_bids BIDS_DIR OUT_DIR participant` first and pass its OUT_DIR "
                                "(or use --official-h5 for files from the official scripts)")
    wanted = None if not subjects else {s.removeprefix("sub-") for s in subjects}
    runs = []
    for spec in specs:
        base = spec.name[: -len(SPECTROGRAM.name_suffix)]
        if wanted is not None and subject_of(base) not in wanted:
            continue
        target = _find_target(spec, base)
        if target is None:
            raise NoInputError(f"{spec.name} has no matching {base + TARGET.name_suffix}",
                               hint="re-run the BIDS-App participant level for this subject")
        mask = MASK.sibling(target)
        mask = mask if mask.exists() else None
        runs.append(DerivativeRun(spectrogram=spec, target=target, mask_path=mask,
                                  cache_dir=Path(cache_dir) if cache_dir else None))
    if not runs:
        raise NoInputError(f"none of the requested subjects ({', '.join(sorted(wanted))}) has derivatives "
                           f"under {root}", hint="check the participant labels")
    check_consistent(runs)
    return runs


def _find_target(spec: Path, base: str) -> Path | None:
    """The target of a spectrogram, in whatever space it was made (``space-``/``res-`` entities); refuses a run
    with targets in several spaces (e.g. two ``--bold-space`` runs into one OUT_DIR)."""
    exact = _find_sibling(spec, base + TARGET.name_suffix)
    folders = [spec.parent.parent / "func", spec.parent]
    found = {p for folder in folders if folder.is_dir() for p in folder.glob(f"{base}_*{TARGET.name_suffix}")
             if run_key(p) == base}
    if exact is not None:
        found.add(exact)
    if len(found) > 1:
        names = ", ".join(sorted(p.name for p in found))
        raise DataError(f"the run {base} has targets in several spaces ({names})",
                        hint="train on the outputs of one --bold-space: give each space its own OUT_DIR")
    return next(iter(found), None)


def _find_sibling(spec: Path, filename: str) -> Path | None:
    """The target/mask file of a spectrogram: ``../func/`` first, then the same folder, then the subject tree."""
    for cand in (spec.parent.parent / "func" / filename, spec.parent / filename):
        if cand.exists():
            return cand
    sub_dir = next((p for p in spec.parents if p.name.startswith("sub-")), spec.parent)
    return next(iter(sorted(sub_dir.rglob(filename))), None)


def load_official_h5(paths: Sequence[str | os.PathLike]) -> list[OfficialH5Run]:
    """Open the official code's per-subject h5 files (one :class:`OfficialH5Run` each), checked for consistency."""
    if not paths:
        raise NoInputError("no official h5 files given", hint="pass --official-h5 FILE [FILE ...]")
    runs = []
    for p in paths:
        require_path(p, "the official h5 file", hint="check the path")
        runs.append(OfficialH5Run(path=Path(p)))
    check_consistent(runs)
    return runs


def check_consistent(runs: Sequence[RunSource]) -> None:
    """Refuse runs that cannot share one model: different channels, frequencies, window counts or grids.

    Raises
    ------
    DataError
        Naming the first run that differs from the first one and what differs.
    """
    if not runs:
        return
    ref = runs[0]
    for run in runs[1:]:
        if list(run.channels) != list(ref.channels):
            missing = [c for c in ref.channels if c not in run.channels]
            extra = [c for c in run.channels if c not in ref.channels]
            detail = (f"missing {missing[:5]}, extra {extra[:5]}" if (missing or extra)
                      else "same names in a different order")
            raise DataError(f"{run.name} has {len(run.channels)} channels and {ref.name} has {len(ref.channels)}"
                            f" ({detail})", hint="preprocess every subject with the same channel selection "
                                                 "(BIDS-App --include-channels / --exclude-channels) or train on "
                                                 "a subset of subjects")
        if (ref.frequencies is None) != (run.frequencies is None) or (
                ref.frequencies is not None and (ref.frequencies.shape != run.frequencies.shape
                                                 or not np.allclose(ref.frequencies, run.frequencies,
                                                                    rtol=1e-6, atol=1e-9))):
            raise DataError(f"{run.name} and {ref.name} have different frequency axes",
                            hint="preprocess every subject with the same TR, --window-length and frequency "
                                 "settings (--freq-axis, --n-freqs, --fmin, --fmax)")
        if run.n_windows != ref.n_windows:
            raise DataError(f"{run.name} uses {run.n_windows} windows per pair and {ref.name} {ref.n_windows}",
                            hint="preprocess every subject with the same --n-windows")
        if tuple(run.grid_shape) != tuple(ref.grid_shape):
            raise DataError(f"{run.name} has target grid {tuple(run.grid_shape)} and {ref.name} "
                            f"{tuple(ref.grid_shape)}",
                            hint="preprocess every subject to the same model grid (--bold-resize dct, --n-slices)")
        if getattr(run, "n_freqs", None) != getattr(ref, "n_freqs", None):
            raise DataError(f"{run.name} and {ref.name} have different numbers of frequency bins")
