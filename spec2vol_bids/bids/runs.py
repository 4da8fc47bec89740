"""Find the simultaneous EEG-fMRI runs of a BIDS dataset and pair each EEG recording with its BOLD series.

BIDS has no dedicated section for simultaneous EEG-fMRI: an EEG run and the BOLD run recorded at the same time
carry **identical entities** (``sub``, ``ses``, ``task``, ``acq``, ``run``) in ``eeg/`` and ``func/``. This module
indexes a dataset with PyBIDS, applies the BIDS-App filters (``--participant-label``, ``--session-label``,
``-t/--task-id``, ``--bids-filter-file``; :mod:`spec2vol_bids.bids.filters`) and returns one :class:`RunPair` per
matched run. Runs present in only one modality are reported as warnings, never as errors (public datasets such as
ds002336 have them). :func:`spec2vol_bids.bids.fmriprep.match_preproc_bold` then attaches fMRIPrep's preprocessed
series to the pairs when ``-d/--derivatives`` is given.

Example
-------
>>> pairs = collect_pairs("/data/ds002336", participant_label=["xp101"])  # doctest: +SKIP
>>> pairs[0].eeg_file, pairs[0].bold_file, pairs[0].repetition_time  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NoInputError, NoMatchError
from ..io.names import parse_entities
from ..utils import require_path
from .bold import read_bold_header
from .filters import strip_prefix, to_query

if TYPE_CHECKING:  # pragma: no cover
    from .eegprep import PreprocEEG
    from .fmriprep import PreprocBold

__all__ = [
    "EEG_EXTENSIONS",
    "BOLD_EXTENSIONS",
    "PAIRING_ENTITIES",
    "DOCKER_HINT",
    "RunPair",
    "load_layout",
    "collect_pairs",
]

LOGGER = logging.getLogger("spec2vol_bids.bids")

#: EEG data files BIDS allows, in order of preference when a run has several (BrainVision first)
EEG_EXTENSIONS = (".vhdr", ".edf", ".bdf", ".set")
#: BOLD image extensions
BOLD_EXTENSIONS = (".nii.gz", ".nii")
#: BIDS entity keys (short form, as in file names) that must be identical for an EEG run and its BOLD run
PAIRING_ENTITIES = ("sub", "ses", "task", "acq", "run")

#: what to check when a dataset (or a label of it) cannot be found: usually a container mount
DOCKER_HINT = (
    "If you run spec2vol-bids in a container (Docker, Apptainer), check that the dataset is mounted, "
    "e.g. `docker run -v /path/to/bids:/data:ro spec2vol-bids /data /out participant`"
)


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
    eeg_preproc : PreprocEEG or None
        The run's preprocessed EEG from a ``-d`` dataset holding EEG
        (:func:`~spec2vol_bids.bids.eegprep.match_preproc_eeg`); the spectrogram is then made from it instead of
        ``eeg_file``.
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
    eeg_preproc: PreprocEEG | None = None

    @property
    def source_eeg(self) -> Path:
        """The EEG the spectrogram is made from: the preprocessed one (``-d``, ``--eeg-desc``) or the raw one."""
        return self.eeg_preproc.file if self.eeg_preproc is not None else self.eeg_file

    @property
    def source_channels_tsv(self) -> Path | None:
        """The ``channels.tsv`` of :attr:`source_eeg`."""
        return self.eeg_preproc.channels_tsv if self.eeg_preproc is not None else self.channels_tsv

    @property
    def source_events_tsv(self) -> Path | None:
        """The ``events.tsv`` of :attr:`source_eeg`."""
        return self.eeg_preproc.events_tsv if self.eeg_preproc is not None else self.events_tsv

    @property
    def eeg_dataset(self) -> str:
        """Name of the dataset holding :attr:`source_eeg` in BIDS URIs (``raw`` or the ``-d`` name)."""
        return self.eeg_preproc.dataset if self.eeg_preproc is not None else "raw"

    def eeg_source(self) -> dict[str, Any]:
        """Where the EEG comes from, as recorded with the run's settings: ``dataset``, ``file`` (and ``desc``)."""
        if self.eeg_preproc is None:
            return {"dataset": "raw", "file": str(self.eeg_file)}
        return self.eeg_preproc.to_dict()

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
            "eeg_preproc": self.eeg_preproc.to_dict() if self.eeg_preproc is not None else None,
        }

    def bold_source(self) -> dict[str, Any]:
        """Where the target BOLD comes from, as recorded with the run's settings: ``dataset`` (``raw`` or the
        ``-d`` name), ``file`` and, for a derivative, ``space``, ``repetition_time`` and ``mask``."""
        if self.preproc is None:
            return {"dataset": "raw", "file": str(self.bold_file)}
        return self.preproc.to_dict()


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

    root = require_path(Path(bids_dir).resolve(), "the BIDS dataset folder", folder=True, hint=DOCKER_HINT)
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
        raise NoInputError(f"the BIDS dataset {root} has no subjects (no sub-<label> folders)", hint=DOCKER_HINT)

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
    eeg_query = {**base, **to_query(bids_filters.get("eeg", {})), "datatype": "eeg", "suffix": "eeg",
                 "extension": list(EEG_EXTENSIONS)}
    bold_query = {**base, **to_query(bids_filters.get("bold", {})), "datatype": "func", "suffix": "bold",
                  "extension": list(BOLD_EXTENSIONS)}
    eeg_runs = _group_by_entities(layout.get(**eeg_query), EEG_EXTENSIONS)
    bold_runs = _group_by_entities(layout.get(**bold_query), BOLD_EXTENSIONS)

    if not eeg_runs and not bold_runs:
        all_eeg = layout.get(datatype="eeg", suffix="eeg", extension=list(EEG_EXTENSIONS))
        if not all_eeg:
            raise NoInputError(f"the BIDS dataset {root} has no EEG recordings (sub-*/[ses-*/]eeg/*_eeg.*)",
                               hint=DOCKER_HINT)
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
            hint=DOCKER_HINT if what == "participant" else f"Check the --{what}-label/--task-id value")


def _group_by_entities(files: Sequence[Any], extensions: Sequence[str]) -> dict[tuple, Any]:
    grouped: dict[tuple, list[Any]] = {}
    for f in files:
        ents = parse_entities(f.path)
        key = tuple((k, ents[k]) for k in PAIRING_ENTITIES if k in ents)
        grouped.setdefault(key, []).append(f)
    return {key: _pick_one(group, extensions) for key, group in grouped.items()}



def _make_pair(layout, entities: dict[str, str], eeg, bold) -> RunPair:
    bold_path = Path(bold.path)
    bold_meta = dict(bold.get_metadata())
    shape, tr = read_bold_header(bold_path, bold_meta)
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
