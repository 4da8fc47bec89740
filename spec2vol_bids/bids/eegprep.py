"""Preprocessed EEG from a derivatives dataset (``-d NAME=PATH`` with ``--eeg-desc LABEL``).

BIDS allows preprocessed EEG in a derivatives dataset under the raw file's name with a ``desc`` entity, e.g.
``sub-01/eeg/sub-01_task-rest_desc-preproc_eeg.vhdr`` (a recording whose gradient and pulse artefacts were removed
by the vendor's software, EEGLAB/FMRIB, BERGEN, ...). A ``-d`` dataset that holds EEG files (:func:`dataset_holds`)
is searched for every paired run's ``desc-<label>`` EEG (:func:`match_preproc_eeg`), and the spectrogram is made
from it instead of the raw EEG, with the same rules as the preprocessed BOLD of ``-d fmriprep=PATH``
(:mod:`spec2vol_bids.bids.fmriprep`): there is no fallback to the raw EEG, a run without a match is an error, and
the sidecars name the file with a BIDS URI of its dataset (``bids:<name>:sub-01/eeg/...``).

Companion files of a preprocessed recording: its channel types come from a ``channels.tsv`` next to it
(``<stem>_desc-<label>_channels.tsv``, else ``<stem>_channels.tsv``), else from the raw run's; its volume onsets
from its own markers, else its own ``events.tsv``, else the raw run's ``events.tsv`` (which then must share its
time zero: a warning says so).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import NoInputError, UsageError
from ..io.names import parse_entities
from .fmriprep import _same_run, check_dataset_name, check_derivatives_dataset
from .runs import EEG_EXTENSIONS, RunPair

__all__ = ["DEFAULT_EEG_DESC", "PreprocEEG", "dataset_holds", "check_eeg_desc", "match_preproc_eeg"]

LOGGER = logging.getLogger("spec2vol_bids.bids")

#: default of ``--eeg-desc``
DEFAULT_EEG_DESC = "preproc"
_LABEL = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True)
class PreprocEEG:
    """The preprocessed EEG of one run in a derivatives dataset, used for the spectrogram.

    Attributes
    ----------
    file : Path
        The ``..._desc-<label>_eeg.<ext>`` recording (absolute path).
    dataset : str
        The dataset's name (``-d NAME=PATH``), also its name in BIDS URIs.
    root : Path
        Root folder of the derivatives dataset.
    desc : str
        The ``desc`` label it was found for (``--eeg-desc``).
    channels_tsv, events_tsv : Path or None
        Its ``channels.tsv`` and ``events.tsv`` (see the module docstring).
    """

    file: Path
    dataset: str
    root: Path
    desc: str
    channels_tsv: Path | None = None
    events_tsv: Path | None = None

    def uri(self, path: str | os.PathLike | None = None) -> str:
        """BIDS URI of ``path`` (default: the EEG file), e.g. ``bids:eegprep:sub-01/eeg/...``."""
        target = Path(path) if path is not None else self.file
        return f"bids:{self.dataset}:{target.relative_to(self.root).as_posix()}"

    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-serialisable description (paths as strings; absent companions left out)."""
        out: dict[str, Any] = {"dataset": self.dataset, "root": str(self.root), "file": str(self.file),
                               "desc": self.desc}
        for key in ("channels_tsv", "events_tsv"):
            if getattr(self, key) is not None:
                out[key] = str(getattr(self, key))
        return out


def check_eeg_desc(label: str) -> str:
    """An ``--eeg-desc`` label, checked (letters and digits, as every BIDS label).

    Raises
    ------
    UsageError
        Not a BIDS label (or given with its ``desc-`` prefix).
    """
    value = str(label).strip()
    value = value[5:] if value.startswith("desc-") else value
    if not _LABEL.fullmatch(value):
        raise UsageError(f"--eeg-desc {label!r} is not a BIDS label (letters and digits)",
                         hint="Give the desc label of the preprocessed EEG files, e.g. --eeg-desc preproc")
    return value


def dataset_holds(root: str | os.PathLike) -> dict[str, bool]:
    """What a derivatives dataset offers: ``{"bold": ..., "eeg": ...}``.

    ``bold``: a ``sub-*/[ses-*/]func/*_desc-preproc_bold.nii[.gz]`` file (fMRIPrep's outputs); ``eeg``: a
    ``sub-*/[ses-*/]eeg/*_eeg.<ext>`` recording of any ``desc``.
    """
    root = Path(root)
    holds = {"bold": False, "eeg": False}
    for sub in sorted(root.glob("sub-*")):
        if not sub.is_dir():
            continue
        folders = [sub] + [p for p in sorted(sub.glob("ses-*")) if p.is_dir()]
        for folder in folders:
            if not holds["bold"] and (any((folder / "func").glob("*_desc-preproc_bold.nii.gz"))
                                      or any((folder / "func").glob("*_desc-preproc_bold.nii"))):
                holds["bold"] = True
            if not holds["eeg"] and any(f.name.endswith(tuple(f"_eeg{e}" for e in EEG_EXTENSIONS))
                                        for f in (folder / "eeg").glob("*_eeg.*")):
                holds["eeg"] = True
        if all(holds.values()):
            break
    return holds


def match_preproc_eeg(pairs: Sequence[RunPair], derivatives: Mapping[str, str | os.PathLike], *,
                      desc: str = DEFAULT_EEG_DESC) -> list[RunPair]:
    """Attach to every paired run its preprocessed EEG (``desc-<desc>``) from derivatives datasets.

    For each run, the ``*_desc-<desc>_eeg.<ext>`` recording with the same subject, session, task, acquisition and
    run entities is looked up in each dataset in turn (BrainVision first when a run has several formats). There
    is no fallback to the raw EEG.

    Parameters
    ----------
    pairs : sequence of RunPair
    derivatives : mapping of str to path-like
        ``{name: root}`` of the datasets searched, in order; the first with a match provides the run's EEG.
    desc : str
        The ``desc`` label (``--eeg-desc``; default ``preproc``).

    Returns
    -------
    pairs : list of RunPair
        Copies with ``eeg_preproc`` set (:class:`PreprocEEG`), in the same order.

    Raises
    ------
    NoInputError
        A run has no such recording in any of the datasets (the message lists the ``desc`` labels found).
    UsageError
        An invalid name or label, or a folder that is not a derivatives dataset.
    """
    desc = check_eeg_desc(desc)
    if not pairs:
        return []
    indexed = []
    for name, root in derivatives.items():
        name = check_dataset_name(name)
        root = check_derivatives_dataset(root)
        files = sorted(f for f in root.glob("sub-*/**/eeg/*_eeg.*")
                       if f.name.endswith(tuple(f"_eeg{e}" for e in EEG_EXTENSIONS)))
        indexed.append((name, root, files))
    out = [replace(pair, eeg_preproc=_find_eeg(pair, indexed, desc)) for pair in pairs]
    LOGGER.info("using the preprocessed EEG (desc-%s) of %d run(s) from %s", desc, len(out),
                ", ".join(sorted({p.eeg_preproc.dataset for p in out if p.eeg_preproc is not None})))
    return out


def _rank(path: Path) -> int:
    for i, ext in enumerate(EEG_EXTENSIONS):
        if path.name.endswith(ext):
            return i
    return len(EEG_EXTENSIONS)


def _find_eeg(pair: RunPair, indexed, desc: str) -> PreprocEEG:
    searched = []
    for name, root, files in indexed:
        runs = [f for f in files if _same_run(parse_entities(f), pair.entities)]
        found = sorted((f for f in runs if parse_entities(f).get("desc") == desc), key=_rank)
        if found:
            return _preproc_eeg(pair, name, root, found[0], desc)
        others = sorted({parse_entities(f).get("desc", "none") for f in runs})
        searched.append(f"{name}={root}" + (f" (it has desc {', '.join(others)})" if others else ""))
    raise NoInputError(f"no preprocessed EEG of {pair.name} (desc-{desc}, eeg, "
                       f"{'/'.join(EEG_EXTENSIONS)}) in {'; '.join(searched)}",
                       hint="Check --eeg-desc (the desc label of the preprocessed EEG files), or drop the -d dataset "
                            "holding EEG to use the raw EEG")


def _companion(path: Path, desc: str, suffix: str) -> Path | None:
    stem = path.name.split("_desc-")[0]
    for name in (f"{stem}_desc-{desc}_{suffix}.tsv", f"{stem}_{suffix}.tsv"):
        if (path.parent / name).is_file():
            return path.parent / name
    return None


def _preproc_eeg(pair: RunPair, name: str, root: Path, path: Path, desc: str) -> PreprocEEG:
    channels = _companion(path, desc, "channels") or pair.channels_tsv
    events = _companion(path, desc, "events")
    if events is None and pair.events_tsv is not None:
        LOGGER.info("%s: no events.tsv beside it; volume markers missing from the file are looked up in the raw "
                    "run's %s, which must have the same time zero", path.name, pair.events_tsv.name)
        events = pair.events_tsv
    return PreprocEEG(file=path.resolve(), dataset=name, root=root, desc=desc, channels_tsv=channels,
                      events_tsv=events)
