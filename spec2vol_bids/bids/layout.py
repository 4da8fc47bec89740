"""Find the simultaneous EEG-fMRI runs of a BIDS dataset and pair each EEG recording with its BOLD series.

BIDS has no dedicated section for simultaneous EEG-fMRI: an EEG run and the BOLD run recorded at the same time
carry **identical entities** (``sub``, ``ses``, ``task``, ``acq``, ``run``) in ``eeg/`` and ``func/``. This module
indexes a dataset with PyBIDS, applies the BIDS-App filters (``--participant-label``, ``--session-label``,
``-t/--task-id``, ``--bids-filter-file``) and returns one :class:`RunPair` per matched run. Runs present in only one
modality are reported as warnings, never as errors (public datasets such as ds002336 have them).

With ``-d/--derivatives NAME=PATH`` (fMRIPrep's option), :func:`match_preproc_bold` then attaches to every pair the
preprocessed BOLD series of the same run from a derivatives dataset (fMRIPrep's ``desc-preproc_bold`` in the
``--bold-space`` space, and its ``desc-brain_mask``), from which the targets are made instead of the raw BOLD.

Example
-------
>>> pairs = collect_pairs("/data/ds002336", participant_label=["xp101"])  # doctest: +SKIP
>>> pairs[0].eeg_file, pairs[0].bold_file, pairs[0].repetition_time  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import DataError, NoInputError, NoMatchError, UsageError
from ..utils import require_path

__all__ = [
    "EEG_EXTENSIONS",
    "BOLD_EXTENSIONS",
    "PAIRING_ENTITIES",
    "DEFAULT_BOLD_SPACE",
    "NATIVE_BOLD_SPACES",
    "PreprocBold",
    "RunPair",
    "parse_entities",
    "strip_prefix",
    "check_labels",
    "load_filter_file",
    "load_layout",
    "collect_pairs",
    "parse_bold_space",
    "check_dataset_name",
    "check_derivatives_dataset",
    "match_preproc_bold",
    "bids_uri",
]

LOGGER = logging.getLogger("spec2vol_bids.bids")

#: EEG data files BIDS allows, in order of preference when a run has several (BrainVision first)
EEG_EXTENSIONS = (".vhdr", ".edf", ".bdf", ".set")
#: BOLD image extensions
BOLD_EXTENSIONS = (".nii.gz", ".nii")
#: BIDS entity keys (short form, as in file names) that must be identical for an EEG run and its BOLD run
PAIRING_ENTITIES = ("sub", "ses", "task", "acq", "run")
#: short entity key -> PyBIDS entity name
_LONG = {"sub": "subject", "ses": "session", "task": "task", "acq": "acquisition", "run": "run"}

#: default of ``--bold-space``: fMRIPrep's default output space
DEFAULT_BOLD_SPACE = "MNI152NLin2009cAsym"
#: ``--bold-space`` values meaning the BOLD run's own grid: derivative files without a ``space`` entity
#: (fMRIPrep's ``func`` output space)
NATIVE_BOLD_SPACES = ("func", "native")
#: modifiers of a ``--bold-space`` value (fMRIPrep's ``--output-spaces`` syntax, e.g. ``MNI152NLin2009cAsym:res-2``)
SPACE_MODIFIERS = ("res", "cohort")
_LABEL = re.compile(r"[A-Za-z0-9]+")
#: a ``-d NAME=PATH`` name: the dataset name of BIDS URIs (``bids:<name>:sub-01/...``)
_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

_DOCKER_HINT = (
    "If you run spec2vol-bids in a container (Docker, Apptainer), check that the dataset is mounted, "
    "e.g. `docker run -v /path/to/bids:/data:ro spec2vol-bids /data /out participant`"
)


@dataclass(frozen=True)
class PreprocBold:
    """The preprocessed BOLD series of one run in a derivatives dataset (e.g. fMRIPrep's), used for the targets.

    Attributes
    ----------
    file : Path
        The ``..._desc-preproc_bold.nii.gz`` image (absolute path).
    dataset : str
        The dataset's name (``-d NAME=PATH``), also its name in BIDS URIs (``bids:<dataset>:sub-01/...``).
    root : Path
        Root folder of the derivatives dataset.
    space : str
        The ``--bold-space`` value it was found for (``MNI152NLin2009cAsym``, ``T1w:res-2``, ``func``, ...).
    repetition_time : float
        ``RepetitionTime`` of the preprocessed series (its sidecar, else its NIfTI header), in seconds.
    mask : Path or None
        The run's ``..._desc-brain_mask.nii.gz`` in the same space, when the dataset has one.
    """

    file: Path
    dataset: str
    root: Path
    space: str
    repetition_time: float
    mask: Path | None = None

    def uri(self, path: str | os.PathLike | None = None) -> str:
        """BIDS URI of ``path`` (default: the BOLD file) in this dataset, e.g. ``bids:fmriprep:sub-01/func/...``."""
        target = Path(path) if path is not None else self.file
        return f"bids:{self.dataset}:{target.relative_to(self.root).as_posix()}"

    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-serialisable description (paths as strings; no mask key when there is none)."""
        out: dict[str, Any] = {"dataset": self.dataset, "root": str(self.root), "file": str(self.file),
                               "space": self.space, "repetition_time": self.repetition_time}
        if self.mask is not None:
            out["mask"] = str(self.mask)
        return out


@dataclass(frozen=True)
class RunPair:
    """One simultaneous EEG-fMRI run: the EEG recording and the BOLD series that share all entities.

    Attributes
    ----------
    entities : dict of str to str
        Short BIDS entities of the run (``{"sub": "01", "task": "rest", "run": "1"}``); absent entities are
        omitted. Values keep the spelling of the file names (e.g. zero padding).
    eeg_file, bold_file : Path
        Absolute paths of the EEG data file (``.vhdr``, ``.edf``, ``.bdf`` or ``.set``) and the BOLD image.
    repetition_time : float
        ``RepetitionTime`` of the BOLD series, in seconds.
    n_volumes : int
        Number of volumes of the BOLD series (from the NIfTI header, nothing else is read).
    channels_tsv, events_tsv : Path or None
        The EEG run's ``channels.tsv`` and ``events.tsv`` (inheritance principle applied), if any.
    eeg_metadata, bold_metadata : dict
        Sidecar metadata of each file (inheritance principle applied).
    preproc : PreprocBold or None
        The run's preprocessed BOLD series from ``-d/--derivatives`` (:func:`match_preproc_bold`); the targets
        are then made from it instead of ``bold_file``.
    """

    entities: dict
    eeg_file: Path
    bold_file: Path
    repetition_time: float
    n_volumes: int
    channels_tsv: Path | None = None
    events_tsv: Path | None = None
    eeg_metadata: dict = field(default_factory=dict)
    bold_metadata: dict = field(default_factory=dict)
    preproc: PreprocBold | None = None

    @property
    def target_bold(self) -> Path:
        """The BOLD series the targets are made from: the preprocessed one (``-d``) or else the raw one."""
        return self.preproc.file if self.preproc is not None else self.bold_file

    @property
    def subject(self) -> str:
        return self.entities["sub"]

    @property
    def session(self) -> str | None:
        return self.entities.get("ses")

    @property
    def name(self) -> str:
        """The BIDS stem shared by both files, e.g. ``sub-01_ses-1_task-rest_run-1``."""
        return "_".join(f"{k}-{self.entities[k]}" for k in PAIRING_ENTITIES if k in self.entities)

    @property
    def wf_name(self) -> str:
        """A nipype-safe workflow name without the subject, e.g. ``ses_1_task_rest_run_1_wf``."""
        parts = [f"{k}_{self.entities[k]}" for k in PAIRING_ENTITIES[1:] if k in self.entities]
        return re.sub(r"[^0-9a-zA-Z_]", "_", "_".join(parts) or "run") + "_wf"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (paths as strings)."""
        return {
            "entities": dict(self.entities),
            "eeg_file": str(self.eeg_file),
            "bold_file": str(self.bold_file),
            "repetition_time": self.repetition_time,
            "n_volumes": self.n_volumes,
            "channels_tsv": str(self.channels_tsv) if self.channels_tsv else None,
            "events_tsv": str(self.events_tsv) if self.events_tsv else None,
            "preproc": self.preproc.to_dict() if self.preproc is not None else None,
        }

    def bold_source(self) -> dict[str, Any]:
        """Where the target BOLD comes from, as recorded with the run's settings: ``dataset`` (``raw`` or the
        ``-d`` name), ``file`` and, for a derivative, ``space``, ``repetition_time`` and ``mask``."""
        if self.preproc is None:
            return {"dataset": "raw", "file": str(self.bold_file)}
        return self.preproc.to_dict()


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


def strip_prefix(labels: Iterable[str] | str | None, prefix: str) -> list[str] | None:
    """Normalise entity labels from the command line: split on white space and drop an optional prefix.

    ``["sub-01 sub-02", "03"]`` with ``prefix="sub-"`` gives ``["01", "02", "03"]``; ``None`` stays ``None``.
    """
    if labels is None:
        return None
    if isinstance(labels, str):
        labels = [labels]
    out: list[str] = []
    for item in labels:
        for label in str(item).split():
            label = label.removeprefix(prefix)
            if label and label not in out:
                out.append(label)
    return out or None


def check_labels(labels: Iterable[str] | str | None, prefix: str, option: str) -> list[str] | None:
    """:func:`strip_prefix` for a command-line option, refusing empty labels.

    ``--participant-label ""`` (an unset ``$SUBJ`` in an array job), ``" "`` or a bare ``sub-`` must not mean
    "every subject": each value given has to hold at least one label.

    Raises
    ------
    UsageError
        A value of ``labels`` is empty, blank or only the prefix.
    """
    if labels is None:
        return None
    if isinstance(labels, str):
        labels = [labels]
    labels = list(labels)
    noun = {"sub-": "participant", "ses-": "session", "task-": "task"}.get(prefix, "label")
    for item in labels:
        tokens = str(item).split()
        if not tokens or any(not t.removeprefix(prefix) for t in tokens):
            raise UsageError(f"{option} was given an empty label ({str(item)!r}), which must not mean every {noun}",
                             hint=f"Give labels such as {prefix}01 or 01, or leave out {option} to process all "
                                  "(in a job script, check that the variable holding the label is set)")
    return strip_prefix(labels, prefix)


def load_filter_file(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read an fMRIPrep-style ``--bids-filter-file``.

    The file is a JSON object keyed by query name (``"eeg"``, ``"bold"``), each holding PyBIDS filters, e.g.
    ``{"bold": {"session": "1", "acquisition": null}}``. ``null`` means "the entity must be absent"
    (``Query.NONE``) and ``"*"`` means "any value" (``Query.ANY``), as in fMRIPrep.

    Raises
    ------
    NoInputError
        The file does not exist.
    UsageError
        The file is not a JSON object of objects, or uses query names other than ``eeg`` and ``bold``.
    """
    path = require_path(path, "the BIDS filter file", hint="Check the --bids-filter-file path")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UsageError(f"the BIDS filter file {path} is not valid JSON ({err.msg} at line {err.lineno})",
                         hint="Write it as {\"bold\": {\"session\": \"1\"}, \"eeg\": {...}}") from None
    if not isinstance(spec, dict) or not all(isinstance(v, dict) for v in spec.values()):
        raise UsageError(f"the BIDS filter file {path} must hold a JSON object of objects",
                         hint="Write it as {\"bold\": {\"session\": \"1\"}, \"eeg\": {...}}")
    unknown = sorted(set(spec) - {"eeg", "bold"})
    if unknown:
        raise UsageError(f"the BIDS filter file {path} has unknown query names {unknown}",
                         hint="spec2vol-bids reads the 'eeg' and 'bold' queries only")
    return spec


def _to_query(filters: Mapping[str, Any]) -> dict[str, Any]:
    from bids.layout import Query

    out: dict[str, Any] = {}
    for key, value in filters.items():
        if value is None:
            out[key] = Query.NONE
        elif value == "*":
            out[key] = Query.ANY
        else:
            out[key] = value
    return out


def load_layout(bids_dir: str | os.PathLike, *, database_dir: str | os.PathLike | None = None):
    """Index a raw BIDS dataset with PyBIDS, quickly.

    Validation is off (the BIDS validator runs separately) and the folders that never hold raw data
    (``derivatives/``, ``sourcedata/``, ``code/``, ``stimuli/``, hidden folders) are not indexed, which keeps
    indexing fast on large datasets. ``database_dir`` caches the index in SQLite (PyBIDS ``database_path``).

    Raises
    ------
    NoInputError
        ``bids_dir`` does not exist or has no ``dataset_description.json``.
    """
    from bids import BIDSLayout
    from bids.layout import BIDSLayoutIndexer

    root = require_path(Path(bids_dir).resolve(), "the BIDS dataset folder", folder=True, hint=_DOCKER_HINT)
    if not (root / "dataset_description.json").is_file():
        raise NoInputError(f"{root} is not a BIDS dataset (no dataset_description.json)",
                           hint="Pass the root folder of the raw dataset as BIDS_DIR")
    ignore = [re.compile(r"^/(derivatives|sourcedata|code|stimuli|models|work|log|logs)(/|$)"),
              re.compile(r"/\.")]
    indexer = BIDSLayoutIndexer(validate=False, ignore=ignore, index_metadata=True)
    kwargs: dict[str, Any] = {}
    if database_dir is not None:
        kwargs["database_path"] = str(database_dir)
    return BIDSLayout(str(root), validate=False, derivatives=False, indexer=indexer, **kwargs)


def _pick_one(files: Sequence[Any], extensions: Sequence[str]) -> Any:
    """When a run has several data files (e.g. .nii and .nii.gz), keep the preferred extension."""
    def rank(f):
        name = Path(f.path).name
        for i, ext in enumerate(extensions):
            if name.endswith(ext):
                return i
        return len(extensions)

    return sorted(files, key=rank)[0]


def collect_pairs(
    bids_dir: str | os.PathLike,
    *,
    participant_label: Iterable[str] | None = None,
    session_label: Iterable[str] | None = None,
    task_id: Iterable[str] | None = None,
    bids_filters: Mapping[str, Mapping[str, Any]] | None = None,
    layout=None,
    database_dir: str | os.PathLike | None = None,
) -> list[RunPair]:
    """Find the EEG and BOLD runs of a dataset and pair them by identical entities.

    Parameters
    ----------
    bids_dir : path-like
        Root of the raw BIDS dataset.
    participant_label, session_label, task_id : iterable of str, optional
        Keep only these subjects, sessions and tasks. Labels may carry their prefix (``sub-01``) or not.
    bids_filters : dict, optional
        PyBIDS filters per query (``{"eeg": {...}, "bold": {...}}``), see :func:`load_filter_file`.
    layout : bids.BIDSLayout, optional
        A layout already indexed (otherwise :func:`load_layout` is called).
    database_dir : path-like, optional
        PyBIDS database folder for a cached index.

    Returns
    -------
    pairs : list of RunPair
        Sorted by subject, session, task, acquisition and run.

    Raises
    ------
    NoInputError
        The dataset has no subjects, or no EEG or no BOLD runs at all.
    NoMatchError
        A requested participant, session or task does not exist, or the filters leave no paired run.
    DataError
        A BOLD run has no usable ``RepetitionTime`` or its header cannot be read.

    Notes
    -----
    Runs found in only one modality (EEG without BOLD or BOLD without EEG) are logged as warnings and skipped.
    """
    root = Path(bids_dir).resolve()
    if layout is None:
        layout = load_layout(root, database_dir=database_dir)
    subjects = sorted(layout.get_subjects())
    if not subjects:
        raise NoInputError(f"the BIDS dataset {root} has no subjects (no sub-<label> folders)", hint=_DOCKER_HINT)

    participants = strip_prefix(participant_label, "sub-")
    sessions = strip_prefix(session_label, "ses-")
    tasks = strip_prefix(task_id, "task-")
    _check_exist("participant", participants, subjects, root)
    _check_exist("session", sessions, layout.get_sessions(), root)
    _check_exist("task", tasks, layout.get_tasks(), root)

    base: dict[str, Any] = {}
    if participants:
        base["subject"] = participants
    if sessions:
        base["session"] = sessions
    if tasks:
        base["task"] = tasks
    bids_filters = bids_filters or {}
    eeg_query = {**base, **_to_query(bids_filters.get("eeg", {})), "datatype": "eeg", "suffix": "eeg",
                 "extension": list(EEG_EXTENSIONS)}
    bold_query = {**base, **_to_query(bids_filters.get("bold", {})), "datatype": "func", "suffix": "bold",
                  "extension": list(BOLD_EXTENSIONS)}
    eeg_runs = _group_by_entities(layout.get(**eeg_query), EEG_EXTENSIONS)
    bold_runs = _group_by_entities(layout.get(**bold_query), BOLD_EXTENSIONS)

    if not eeg_runs and not bold_runs:
        all_eeg = layout.get(datatype="eeg", suffix="eeg", extension=list(EEG_EXTENSIONS))
        if not all_eeg:
            raise NoInputError(f"the BIDS dataset {root} has no EEG recordings (sub-*/[ses-*/]eeg/*_eeg.*)",
                               hint=_DOCKER_HINT)
        raise NoMatchError("the filters selected no EEG or BOLD runs",
                           hint="Check --participant-label, --session-label, --task-id and --bids-filter-file")

    for key in sorted(set(eeg_runs) - set(bold_runs)):
        LOGGER.warning("EEG run %s has no BOLD run with the same entities; it is skipped",
                       Path(eeg_runs[key].path).name)
    for key in sorted(set(bold_runs) - set(eeg_runs)):
        LOGGER.warning("BOLD run %s has no EEG run with the same entities; it is skipped",
                       Path(bold_runs[key].path).name)

    pairs = []
    for key in sorted(set(eeg_runs) & set(bold_runs)):
        eeg, bold = eeg_runs[key], bold_runs[key]
        pairs.append(_make_pair(layout, dict(key), eeg, bold))
    if not pairs:
        raise NoMatchError(f"no EEG run in {root} has a BOLD run with the same entities (sub, ses, task, acq, run)"
                           " among the selected files",
                           hint="Simultaneous runs must share all entities; check the file names and filters")
    LOGGER.info("found %d paired EEG-fMRI run(s) in %d subject(s)", len(pairs),
                len({p.subject for p in pairs}))
    return pairs


def _check_exist(what: str, requested: list[str] | None, available: Iterable[Any], root: Path) -> None:
    if not requested:
        return
    available = sorted(str(a) for a in available)
    missing = [label for label in requested if label not in available]
    if missing:
        shown = ", ".join(available[:20]) + (" ..." if len(available) > 20 else "")
        raise NoMatchError(
            f"{what} label(s) {', '.join(missing)} not found in {root} (available: {shown or 'none'})",
            hint=_DOCKER_HINT if what == "participant" else f"Check the --{what}-label/--task-id value")


def _group_by_entities(files: Sequence[Any], extensions: Sequence[str]) -> dict[tuple, Any]:
    grouped: dict[tuple, list[Any]] = {}
    for f in files:
        ents = parse_entities(f.path)
        key = tuple((k, ents[k]) for k in PAIRING_ENTITIES if k in ents)
        grouped.setdefault(key, []).append(f)
    return {key: _pick_one(group, extensions) for key, group in grouped.items()}


def _bold_header(bold_path: Path, meta: Mapping[str, Any]) -> tuple[tuple[int, ...], float]:
    """Shape and repetition time of a 4-D BOLD image (sidecar ``RepetitionTime``, else the NIfTI header)."""
    import nibabel as nib

    try:
        img = nib.load(str(bold_path))
        shape = img.shape
    except Exception as err:  # nibabel raises several types for corrupt files
        raise DataError(f"cannot read the BOLD image {bold_path.name} ({type(err).__name__}: {err})",
                        hint="Replace the corrupt file, or exclude the run with --bids-filter-file") from None
    if len(shape) != 4:
        raise DataError(f"the BOLD image {bold_path.name} is {len(shape)}-D, expected 4-D [X, Y, Z, T]",
                        hint="Exclude the run with --bids-filter-file")
    tr = meta.get("RepetitionTime")
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


def _make_pair(layout, entities: dict[str, str], eeg, bold) -> RunPair:
    bold_path = Path(bold.path)
    bold_meta = dict(bold.get_metadata())
    shape, tr = _bold_header(bold_path, bold_meta)
    eeg_path = Path(eeg.path)
    channels = _nearest(layout, eeg_path, "channels")
    events = _nearest(layout, eeg_path, "events")
    return RunPair(entities=entities, eeg_file=eeg_path, bold_file=bold_path, repetition_time=tr,
                   n_volumes=shape[3], channels_tsv=channels, events_tsv=events,
                   eeg_metadata=dict(eeg.get_metadata()), bold_metadata=bold_meta)


def _nearest(layout, eeg_path: Path, suffix: str) -> Path | None:
    """The run's ``<suffix>.tsv`` by the inheritance principle (same folder first, then upwards)."""
    ents = parse_entities(eeg_path)
    stem = "_".join(f"{k}-{v}" for k, v in ents.items())
    direct = eeg_path.with_name(f"{stem}_{suffix}.tsv")
    if direct.is_file():
        return direct
    try:
        found = layout.get_nearest(str(eeg_path), suffix=suffix, extension=".tsv", strict=False,
                                   ignore_strict_entities=["suffix", "extension", "datatype"])
    except Exception:  # pybids raises on odd layouts; inheritance is best effort
        found = None
    if found and Path(found).is_file():
        found_ents = parse_entities(found)
        # an inherited file must not name a different run than ours
        if all(ents.get(k) == v for k, v in found_ents.items()):
            return Path(found)
    return None


# ------------------------------------------------------------------------------ preprocessed BOLD (-d/--derivatives)
def parse_bold_space(spec: str) -> tuple[str | None, dict[str, str]]:
    """Split a ``--bold-space`` value into the ``space`` entity and its modifiers.

    ``"MNI152NLin2009cAsym"`` gives ``("MNI152NLin2009cAsym", {})``; ``"MNI152NLin2009cAsym:res-2"`` gives
    ``("MNI152NLin2009cAsym", {"res": "2"})`` (fMRIPrep's ``--output-spaces`` syntax; ``res`` and ``cohort``);
    ``"func"`` or ``"native"`` give ``(None, {})``: the BOLD run's own grid, i.e. files without a ``space`` entity.

    Raises
    ------
    UsageError
        The value is not a space label with optional ``:res-<label>``/``:cohort-<label>`` modifiers.
    """
    hint = "Use e.g. MNI152NLin2009cAsym, MNI152NLin2009cAsym:res-2, T1w or func (the BOLD run's own grid)"
    label, *mods = str(spec).strip().split(":")
    if not _LABEL.fullmatch(label):
        raise UsageError(f"--bold-space {spec!r} is not a space label (letters and digits)", hint=hint)
    modifiers: dict[str, str] = {}
    for mod in mods:
        key, sep, value = mod.partition("-")
        if not sep or key not in SPACE_MODIFIERS or not _LABEL.fullmatch(value) or key in modifiers:
            raise UsageError(f"--bold-space {spec!r} has an invalid modifier {mod!r} (res-<label> or cohort-<label>)",
                             hint=hint)
        modifiers[key] = value
    if label in NATIVE_BOLD_SPACES:
        if modifiers:
            raise UsageError(f"--bold-space {spec!r}: the BOLD run's own grid takes no modifiers", hint=hint)
        return None, {}
    return label, modifiers


def check_dataset_name(name: str) -> str:
    """A ``-d NAME=PATH`` name, checked: it names the dataset in BIDS URIs (``bids:<name>:sub-01/...``).

    Raises
    ------
    UsageError
        Not letters, digits, ``.``, ``_`` or ``-``, or ``raw`` (the name of the input dataset).
    """
    if not _DATASET_NAME.fullmatch(str(name)) or name == "raw":
        raise UsageError(f"invalid derivatives name {name!r}",
                         hint="Use letters, digits, '.', '_' or '-' (not 'raw', the input dataset), e.g. fmriprep")
    return str(name)


def check_derivatives_dataset(path: str | os.PathLike) -> Path:
    """The resolved root of a derivatives dataset (``-d NAME=PATH``) after checking its ``dataset_description.json``.

    Raises
    ------
    NoInputError
        The folder or its ``dataset_description.json`` does not exist.
    UsageError
        The description is not valid JSON or its ``DatasetType`` is not ``derivative``.
    """
    root = require_path(Path(path).expanduser().resolve(), "the derivatives folder", folder=True, hint=_DOCKER_HINT)
    desc_file = root / "dataset_description.json"
    hint = ("Pass the folder holding fMRIPrep's outputs and its dataset_description.json, "
            "e.g. -d fmriprep=BIDS_DIR/derivatives/fmriprep")
    if not desc_file.is_file():
        raise NoInputError(f"{root} is not a BIDS derivatives dataset (no dataset_description.json)", hint=hint)
    try:
        desc = json.loads(desc_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{desc_file} is not valid JSON ({err})", hint=hint) from None
    kind = desc.get("DatasetType", "raw") if isinstance(desc, dict) else None
    if kind != "derivative":
        raise UsageError(f"{root} is not a derivatives dataset (DatasetType is {kind!r}, not 'derivative')",
                         hint=hint)
    return root


def match_preproc_bold(pairs: Sequence[RunPair], derivatives: Mapping[str, str | os.PathLike], *,
                       space: str = DEFAULT_BOLD_SPACE) -> list[RunPair]:
    """Attach to every paired run its preprocessed BOLD series from derivatives datasets (e.g. fMRIPrep's).

    For each run, the ``desc-preproc`` ``bold`` image (``.nii.gz``) with the same subject, session, task,
    acquisition and run entities in the requested space is looked up with PyBIDS, and the ``desc-brain``
    ``mask`` of the same run and space next to it is used when present. There is no fallback to the raw BOLD:
    a run without a match is an error.

    Parameters
    ----------
    pairs : sequence of RunPair
        Paired runs (:func:`collect_pairs`).
    derivatives : mapping of str to path-like
        ``{name: root}`` of the derivatives datasets (``-d NAME=PATH``), searched in this order: the first with
        a match provides the run's series. The name is the dataset name of the BIDS URIs in the sidecars.
    space : str
        ``--bold-space`` (:func:`parse_bold_space`): a space label with optional modifiers, or ``func``/``native``
        for files without a ``space`` entity. Default: ``MNI152NLin2009cAsym``.

    Returns
    -------
    pairs : list of RunPair
        Copies of ``pairs`` with ``preproc`` set (:class:`PreprocBold`), in the same order.

    Raises
    ------
    NoInputError
        A dataset is missing, or a run has no preprocessed BOLD in the requested space in any of them.
    UsageError
        A name is invalid, a folder is not a derivatives dataset, or several files match one run (e.g. two
        resolutions of the space: add ``:res-<label>`` to ``space``).
    DataError
        The preprocessed series is unreadable, has another number of volumes or TR than the raw run, or its
        mask is not on its grid.
    """
    space_label, modifiers = parse_bold_space(space)
    if not pairs:
        return []
    subjects = sorted({p.subject for p in pairs})
    indexed = []
    for name, root in derivatives.items():
        name = check_dataset_name(name)
        root = check_derivatives_dataset(root)
        layout = _derivatives_layout(root, subjects)
        files = layout.get(subject=subjects, datatype="func", desc="preproc", suffix="bold", extension=".nii.gz")
        indexed.append((name, root, sorted(Path(f.path) for f in files)))
    out = [replace(pair, preproc=_find_preproc(pair, indexed, space, space_label, modifiers)) for pair in pairs]
    LOGGER.info("using the preprocessed BOLD (space %s) of %d run(s) from %s", space, len(out),
                ", ".join(sorted({p.preproc.dataset for p in out if p.preproc is not None})) or "none")
    return out


def _derivatives_layout(root: Path, subjects: Sequence[str]):
    """PyBIDS index of the ``func`` folders of ``subjects`` in a derivatives dataset (no metadata: fast)."""
    from bids import BIDSLayout
    from bids.layout import BIDSLayoutIndexer

    keep = "|".join(re.escape(s) for s in subjects)
    ignore = [re.compile(r"^/(sourcedata|code|figures|log|logs|work)(/|$)"), re.compile(r"/\."),
              re.compile(rf"^/sub-(?!(?:{keep})(?:/|$))"),
              re.compile(r"^/sub-[^/]+/(ses-[^/]+/)?(anat|fmap|dwi|perf|figures|log)(/|$)")]
    indexer = BIDSLayoutIndexer(validate=False, ignore=ignore, index_metadata=False)
    return BIDSLayout(str(root), validate=False, indexer=indexer)


def _same_run(ents: Mapping[str, str], run: Mapping[str, str]) -> bool:
    for key in PAIRING_ENTITIES:
        a, b = ents.get(key), run.get(key)
        if key == "run" and a and b and a.isdigit() and b.isdigit():
            if int(a) != int(b):
                return False
        elif a != b:
            return False
    return True


def _space_of(ents: Mapping[str, str]) -> str:
    """A file's space in ``--bold-space`` syntax (``func`` without a space entity)."""
    if "space" not in ents:
        return NATIVE_BOLD_SPACES[0]
    return ":".join([ents["space"], *(f"{k}-{ents[k]}" for k in SPACE_MODIFIERS if k in ents)])


def _find_preproc(pair: RunPair, indexed, spec: str, space_label: str | None,
                  modifiers: Mapping[str, str]) -> PreprocBold:
    searched = []
    for name, root, files in indexed:
        runs = [f for f in files if _same_run(parse_entities(f), pair.entities)]
        found = [f for f in runs if parse_entities(f).get("space") == space_label
                 and all(parse_entities(f).get(k) == v for k, v in modifiers.items())]
        if len(found) > 1:
            raise UsageError(f"{len(found)} preprocessed BOLD files of {pair.name} in {name}={root} match "
                             f"--bold-space {spec}: {', '.join(f.name for f in found)}",
                             hint=f"Choose one with a modifier, e.g. --bold-space {_space_of(parse_entities(found[0]))}")
        if found:
            return _preproc_bold(pair, name, root, found[0], spec)
        others = sorted({_space_of(parse_entities(f)) for f in runs})
        searched.append(f"{name}={root}" + (f" (it has space {', '.join(others)})" if others else ""))
    wanted = "_".join([f"space-{space_label}", *(f"{k}-{v}" for k, v in modifiers.items())]) if space_label \
        else "no space entity"
    raise NoInputError(f"no preprocessed BOLD of {pair.name} ({wanted}, desc-preproc, bold, .nii.gz) "
                       f"in {'; '.join(searched)}",
                       hint="Check --bold-space (and the spaces fMRIPrep was run with), or drop -d/--derivatives "
                            "to use the raw BOLD")


def _preproc_bold(pair: RunPair, name: str, root: Path, path: Path, spec: str) -> PreprocBold:
    """Check a preprocessed series against its raw run and find its brain mask."""
    import nibabel as nib

    sidecar = path.with_name(path.name[: -len(".nii.gz")] + ".json")
    meta: dict[str, Any] = {}
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"the sidecar {sidecar} is not valid JSON ({err})",
                            hint="Repair or delete it (the TR is then read from the NIfTI header)") from None
    shape, tr = _bold_header(path, meta if isinstance(meta, dict) else {})
    if shape[3] != pair.n_volumes:
        raise DataError(f"the preprocessed BOLD {path.name} has {shape[3]} volumes but the raw run "
                        f"{pair.bold_file.name} has {pair.n_volumes}",
                        hint="fMRIPrep keeps every volume, so these derivatives were not computed from this raw "
                             "run: pass the right folder with -d, or drop -d/--derivatives to use the raw BOLD")
    if abs(tr - pair.repetition_time) > 1e-3:
        raise DataError(f"the preprocessed BOLD {path.name} has a TR of {tr:g} s but the raw run "
                        f"{pair.bold_file.name} has {pair.repetition_time:g} s",
                        hint=f"Correct RepetitionTime in {sidecar.name} (or the NIfTI header), or drop "
                             "-d/--derivatives to use the raw BOLD")
    mask: Path | None = path.with_name(path.name.replace("_desc-preproc_bold.nii.gz", "_desc-brain_mask.nii.gz"))
    if mask.is_file():
        try:
            mshape = tuple(int(n) for n in nib.load(str(mask)).shape)
        except Exception as err:  # nibabel raises several types for corrupt files
            raise DataError(f"cannot read the brain mask {mask.name} ({type(err).__name__}: {err})",
                            hint="Replace the corrupt file") from None
        if mshape[:3] != shape[:3] or any(n != 1 for n in mshape[3:]):
            raise DataError(f"the brain mask {mask.name} has shape {mshape}, not the grid {shape[:3]} of "
                            f"{path.name}", hint="Use the mask fMRIPrep wrote for this run and space")
    else:
        LOGGER.info("%s: no %s next to it; the brain mask is computed from the data", path.name, mask.name)
        mask = None
    return PreprocBold(file=path, dataset=name, root=root, space=spec, repetition_time=tr, mask=mask)


def bids_uri(path: str | os.PathLike, dataset: str = "raw") -> str:
    """The BIDS URI of a file of the raw dataset, e.g. ``bids:raw:sub-01/eeg/sub-01_task-rest_eeg.vhdr``.

    The path is taken from its first ``sub-<label>`` folder on, so the result does not depend on where the
    dataset is mounted. Files outside a subject folder are given by their name only.
    """
    parts = Path(path).parts
    for i, part in enumerate(parts):
        if part.startswith("sub-") and i < len(parts) - 1:
            return f"bids:{dataset}:" + "/".join(parts[i:])
    return f"bids:{dataset}:{Path(path).name}"
