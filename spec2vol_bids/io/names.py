"""BIDS file names: entities, derivative paths, JSON sidecar paths and BIDS URIs.

Derivative names follow the BIDS derivatives rules and niworkflows' ``DerivativesDataSink``: the source entities
in canonical order, then ``desc-<label>``, then the suffix, in the datatype folder of the source run. They are
built with pybids' path patterns (:func:`bids.layout.writing.build_path`) from :data:`PATH_PATTERN`::

    sub-01/[ses-1/]eeg/sub-01[_ses-1]_task-rest[_acq-a][_run-1]_desc-stft_spectrogram.h5

Images resampled into a template or another reference add ``space-<label>`` (with fMRIPrep's ``cohort-<label>``)
and ``res-<label>`` after the run entities (:data:`SPACE_ENTITIES`); ``cohort`` sits after ``ses``, where the BIDS
schema orders it. Which derivatives exist, and what their sidecars hold, is declared once in
:mod:`spec2vol_bids.io.derivatives`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "ENTITY_ORDER",
    "RUN_ENTITIES",
    "SPACE_ENTITIES",
    "STANDARD_SPACES",
    "PATH_PATTERN",
    "parse_entities",
    "run_entities",
    "derivative_path",
    "relative_derivative_path",
    "sidecar_path",
    "bids_uri",
]

#: BIDS entity order for derivative names (subset relevant to functional/EEG data), short keys
ENTITY_ORDER = ("sub", "ses", "cohort", "task", "acq", "ce", "rec", "dir", "run", "echo", "space", "res", "desc")
#: the entities that name a run (its derivatives add ``desc``, and for resampled images ``space``/``res``)
RUN_ENTITIES = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo")
#: the entities that say which space and grid an image is on (absent on the BOLD run's own grid, as in fMRIPrep)
SPACE_ENTITIES = ("space", "cohort", "res")
#: short entity key (as in file names) -> pybids entity name
LONG_NAMES = {"sub": "subject", "ses": "session", "cohort": "cohort", "task": "task", "acq": "acquisition",
              "ce": "ceagent", "rec": "reconstruction", "dir": "direction", "run": "run", "echo": "echo",
              "space": "space", "res": "resolution", "desc": "desc"}
#: pybids path pattern of every derivative file of this project
PATH_PATTERN = ("sub-{subject}[/ses-{session}]/{datatype}/sub-{subject}[_ses-{session}][_cohort-{cohort}]"
                "[_task-{task}][_acq-{acquisition}][_ce-{ceagent}][_rec-{reconstruction}][_dir-{direction}]"
                "[_run-{run}][_echo-{echo}][_space-{space}][_res-{resolution}][_desc-{desc}]_{suffix}{extension}")
#: standard template identifiers (the BIDS specification's and TemplateFlow's volumetric templates): a
#: ``space-<label>`` among them needs no ``SpatialReference``, and its NIfTI xform codes are MNI (4), as
#: niworkflows writes them; other spaces (``T1w``, ...) are "aligned" (2), the BOLD run's own grid "scanner" (1)
STANDARD_SPACES = frozenset({
    "ICBM452AirSpace", "ICBM452Warp5Space", "IXI549Space", "MNIColin27", "MNI152Lin", "MNI152NLin2009aSym",
    "MNI152NLin2009bSym", "MNI152NLin2009cSym", "MNI152NLin2009aAsym", "MNI152NLin2009bAsym",
    "MNI152NLin2009cAsym", "MNI152NLin6Sym", "MNI152NLin6Asym", "MNI305", "NIHPD", "OASIS30AntsOASISAnts",
    "OASIS30Atropos", "Talairach", "UNCInfant", "MNIInfant", "MNIPediatricAsym", "OASIS30ANTs", "NKI", "PNC",
    "WHS", "Fischer344", "MouseIn", "RESILIENT", "dhcpAsym", "dhcpSym", "dhcpVol", "fsaverage", "fsLR",
})


def parse_entities(filename: str | os.PathLike) -> dict[str, str]:
    """Parse the ``key-value`` entities of a BIDS file name (the suffix and extension are left out).

    Parameters
    ----------
    filename : str or path-like
        A BIDS file name or path, e.g. ``sub-01/eeg/sub-01_task-rest_run-1_eeg.vhdr``.

    Returns
    -------
    entities : dict of str to str
        In file-name order, e.g. ``{"sub": "01", "task": "rest", "run": "1"}``.
    """
    stem = Path(filename).name.split(".", 1)[0]
    out: dict[str, str] = {}
    for part in stem.split("_"):
        key, sep, value = part.partition("-")
        if sep and key and value:
            out[key] = value
    return out


def run_entities(path: str | os.PathLike) -> dict[str, str]:
    """The entities of ``path`` that name its run (:data:`RUN_ENTITIES`: no ``desc``, ``space``, ...)."""
    return {k: v for k, v in parse_entities(path).items() if k in RUN_ENTITIES}


def derivative_path(out_dir: str | os.PathLike, entities: Mapping[str, str], *, desc: str | None, suffix: str,
                    extension: str, datatype: str) -> Path:
    """Path of a derivative file: ``OUT_DIR/sub-X/[ses-Y/]<datatype>/<entities>_desc-<desc>_<suffix><ext>``.

    Parameters
    ----------
    out_dir : path-like
        Root of the derivative dataset.
    entities : mapping
        Short entities of the source run (``{"sub": "01", "task": "rest", "run": "1"}``); keys that are not in
        :data:`ENTITY_ORDER` are appended after the known ones, in their given order.
    desc, suffix, extension, datatype : str
        ``desc`` label (alphanumeric; ``None`` for none), suffix (``bold``, ``mask``, ``spectrogram``),
        extension with its dot (``.nii.gz``) and datatype folder (``func``, ``eeg``).

    Raises
    ------
    ValueError
        No ``sub`` entity, or a ``desc`` label that is not alphanumeric.
    """
    from bids.layout.writing import build_path

    if "sub" not in entities:
        raise ValueError("a derivative needs the 'sub' entity")
    ents = {k: str(v) for k, v in entities.items() if k != "desc"}
    if desc:
        if not str(desc).isalnum():
            raise ValueError(f"desc must be alphanumeric, got {desc!r}")
        ents["desc"] = str(desc)
    known = {LONG_NAMES[k]: v for k, v in ents.items() if k in LONG_NAMES}
    relative = build_path({**known, "datatype": datatype, "suffix": suffix, "extension": extension},
                          [PATH_PATTERN], strict=False)
    extra = "".join(f"_{k}-{v}" for k, v in ents.items() if k not in LONG_NAMES)
    if extra:  # not in the pattern: after the known entities, before the suffix
        relative = relative[: -len(f"_{suffix}{extension}")] + f"{extra}_{suffix}{extension}"
    return Path(out_dir) / relative


def relative_derivative_path(path: str | os.PathLike) -> Path:
    """``sub-X/[ses-Y/]<datatype>/<name>`` of a file written under its derivative name in any folder.

    Raises
    ------
    ValueError
        The path does not end in such a layout.
    """
    parts = Path(path).parts
    if len(parts) >= 4 and parts[-3].startswith("ses-") and parts[-4].startswith("sub-"):
        return Path(*parts[-4:])
    if len(parts) >= 3 and parts[-3].startswith("sub-"):
        return Path(*parts[-3:])
    raise ValueError(f"{path} is not laid out as sub-<label>/[ses-<label>/]<datatype>/<file>")


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a data file: the same name with every extension replaced (``x.nii.gz`` -> ``x.json``)."""
    path = Path(path)
    return path.with_name(path.name.split(".", 1)[0] + ".json")


def bids_uri(path: str | os.PathLike, dataset: str = "raw") -> str:
    """The BIDS URI of a file of a dataset, e.g. ``bids:raw:sub-01/eeg/sub-01_task-rest_eeg.vhdr``.

    The path is taken from its first ``sub-<label>`` folder on, so the result does not depend on where the
    dataset is mounted. Files outside a subject folder are given by their name only.
    """
    parts = Path(path).parts
    for i, part in enumerate(parts):
        if part.startswith("sub-") and i < len(parts) - 1:
            return f"bids:{dataset}:" + "/".join(parts[i:])
    return f"bids:{dataset}:{Path(path).name}"
