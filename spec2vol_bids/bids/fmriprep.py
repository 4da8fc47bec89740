"""Preprocessed BOLD from a derivatives dataset (``-d/--derivatives NAME=PATH``, e.g. fMRIPrep's outputs).

With ``-d fmriprep=PATH`` the targets are made from each run's ``desc-preproc_bold`` in ``--bold-space`` (and its
``desc-brain_mask``) instead of the raw BOLD. :func:`match_preproc_bold` finds that series for every paired run,
checks it against the raw run (volumes, TR, mask grid) and attaches it as a :class:`PreprocBold`;
``--bold-space`` values use fMRIPrep's ``--output-spaces`` syntax (:func:`parse_bold_space`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import DataError, NoInputError, UsageError
from ..io.names import parse_entities, sidecar_path
from ..utils import require_path
from .bold import read_bold_header
from .runs import DOCKER_HINT, PAIRING_ENTITIES, RunPair

__all__ = [
    "DEFAULT_BOLD_SPACE",
    "NATIVE_BOLD_SPACES",
    "SPACE_MODIFIERS",
    "PreprocBold",
    "parse_bold_space",
    "check_dataset_name",
    "check_derivatives_dataset",
    "match_preproc_bold",
]

LOGGER = logging.getLogger("spec2vol_bids.bids")

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
    root = require_path(Path(path).expanduser().resolve(), "the derivatives folder", folder=True, hint=DOCKER_HINT)
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

    sidecar = sidecar_path(path)
    meta: dict[str, Any] = {}
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"the sidecar {sidecar} is not valid JSON ({err})",
                            hint="Repair or delete it (the TR is then read from the NIfTI header)") from None
    shape, tr = read_bold_header(path, meta if isinstance(meta, dict) else {})
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
