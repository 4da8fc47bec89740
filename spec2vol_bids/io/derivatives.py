"""Every derivative the BIDS-App writes, declared once: its entities, its ``Description`` and the sidecar metadata
BIDS requires of it (as fMRIPrep declares its outputs in ``workflows/bold/outputs.py``).

The run-level steps (:mod:`spec2vol_bids.pipeline.steps`) compute arrays and the fields only they know (``Sources``,
``RepetitionTime``, ...); the file names and the rest of each sidecar come from here::

    SPECTROGRAM  eeg/ *_desc-stft_spectrogram.h5      (+ .json)   the EEG spectrogram, one row per BOLD volume
    TARGET       func/*_desc-target_bold.nii.gz       (+ .json)   the BOLD series on the model grid
    MASK         func/*_desc-brain_mask.nii.gz        (+ .json)   its brain mask
    PREDICTION   func/*_desc-spec2vol_bold.nii.gz     (+ .json)   the BOLD volumes predicted from EEG

Image derivatives of BOLD carry ``SkullStripped`` (REQUIRED by BIDS for preprocessed images); masks carry
``Type``. The formats themselves are the data contracts of ``CONTRIBUTING.md``.

The images (target, mask, prediction) are named in the space of the BOLD series they were made from
(:func:`space_entities`), as fMRIPrep names its outputs: none on the BOLD run's own grid (the raw BOLD, or
fMRIPrep's ``func`` outputs), ``space-<label>`` (and ``cohort-<label>``) for a series in a template or another
reference (``-d fmriprep=... --bold-space MNI152NLin2009cAsym``), and ``res-<label>``: the source's own when the grid
is kept, :data:`MODEL_RESOLUTION` with a ``Resolution`` description when it was resampled to the model grid::

    sub-01_task-rest_space-MNI152NLin2009cAsym_res-model_desc-target_bold.nii.gz
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .names import SPACE_ENTITIES, STANDARD_SPACES, derivative_path, parse_entities, run_entities

__all__ = ["Derivative", "SPECTROGRAM", "TARGET", "MASK", "PREDICTION", "DERIVATIVES", "GROUP_METRICS",
           "MODEL_RESOLUTION", "derivative_kind", "run_derivatives", "run_key", "space_entities",
           "resolution_description", "xform_code"]

#: ``res-<label>`` of images resampled to the model grid (its ``Resolution`` says which grid)
MODEL_RESOLUTION = "model"


@dataclass(frozen=True)
class Derivative:
    """One kind of derivative file.

    Attributes
    ----------
    kind : str
        Its key in :data:`DERIVATIVES` (``spectrogram``, ``target``, ``mask``, ``prediction``).
    datatype, desc, suffix, extension : str
        Where it goes and how it is named (``func``, ``target``, ``bold``, ``.nii.gz``).
    description : str
        The sidecar's ``Description``.
    metadata : mapping
        Sidecar fields every file of this kind carries (required or fixed by BIDS), written after the others.
    spatial : bool
        An image in a space: its names carry the :data:`~spec2vol_bids.io.names.SPACE_ENTITIES` of the series
        it was made from (the spectrogram, on the EEG side, never does).
    """

    kind: str
    datatype: str
    desc: str
    suffix: str
    extension: str
    description: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    spatial: bool = False

    @property
    def name_suffix(self) -> str:
        """The end of its file names, e.g. ``_desc-target_bold.nii.gz``."""
        return f"_desc-{self.desc}_{self.suffix}{self.extension}"

    @property
    def pattern(self) -> str:
        """A glob pattern matching its file names (``*_desc-target_bold.nii.gz``)."""
        return f"*{self.name_suffix}"

    def matches(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` is named as this derivative."""
        return Path(path).name.endswith(self.name_suffix)

    def path(self, out_dir: str | os.PathLike, source: str | os.PathLike | Mapping[str, str], *,
             space: Mapping[str, str] | None = None) -> Path:
        """Its path in the derivative dataset ``out_dir`` for the run of ``source``.

        Parameters
        ----------
        out_dir : path-like
            Root of the derivative dataset (or a node's working directory).
        source : path-like or mapping
            A file of the run (raw EEG or BOLD, another derivative; its run entities name the file) or the
            run's entities.
        space : mapping, optional
            Only for the images (:attr:`spatial`): their ``space``/``cohort``/``res`` entities
            (:func:`space_entities`). Default: those of ``source`` itself, which is right when ``source`` is
            another image of this dataset (e.g. the target of a prediction); for a series of another dataset
            (fMRIPrep's), pass :func:`space_entities` of it.
        """
        if isinstance(source, Mapping):
            given = {str(k): str(v) for k, v in source.items()}
        else:
            given = parse_entities(source)
        entities = {k: v for k, v in (given if isinstance(source, Mapping) else run_entities(source)).items()
                    if k not in SPACE_ENTITIES}
        if self.spatial:
            chosen = given if space is None else dict(space)
            entities.update({k: str(chosen[k]) for k in SPACE_ENTITIES if chosen.get(k)})
        return derivative_path(out_dir, entities, desc=self.desc, suffix=self.suffix, extension=self.extension,
                               datatype=self.datatype)

    def sibling(self, path: str | os.PathLike) -> Path:
        """This derivative of the run of ``path``, another derivative file of the same dataset.

        Raises
        ------
        ValueError
            ``path`` is not named as a derivative of :data:`DERIVATIVES`.
        """
        path = Path(path)
        other = derivative_kind(path)
        stem = path.name[: -len(other.name_suffix)]
        if not self.spatial:  # the spectrogram of an image: the run's name without its space
            stem = "_".join(part for part in stem.split("_") if part.split("-", 1)[0] not in SPACE_ENTITIES)
        folder = path.parent if other.datatype == self.datatype else path.parent.parent / self.datatype
        return folder / f"{stem}{self.name_suffix}"

    def sidecar(self, fields: Mapping[str, Any], *, description: str | None = None) -> dict[str, Any]:
        """The JSON sidecar: ``Description``, then ``fields`` (what the step knows), then :attr:`metadata`."""
        return {"Description": description or self.description, **fields, **self.metadata}


SPECTROGRAM = Derivative(
    "spectrogram", "eeg", "stft", "spectrogram", ".h5",
    description="Volume-locked EEG spectrogram: one row per BOLD volume, the spectrum of the EEG window "
                "anchored at the volume's onset")
TARGET = Derivative(
    "target", "func", "target", "bold", ".nii.gz",
    description="BOLD series on the model grid, scaled per volume: the training target of Spec2VolCAMU-Net",
    metadata={"SkullStripped": False}, spatial=True)
MASK = Derivative(
    "mask", "func", "brain", "mask", ".nii.gz",
    description="Brain mask on the model grid (for the dynamic-correlation metric)",
    metadata={"Type": "Brain"}, spatial=True)
PREDICTION = Derivative(
    "prediction", "func", "spec2vol", "bold", ".nii.gz",
    description="BOLD volumes predicted from EEG spectrograms by Spec2VolCAMU-Net",
    metadata={"SkullStripped": False}, spatial=True)

#: every run-level derivative, by kind
DERIVATIVES: dict[str, Derivative] = {d.kind: d for d in (SPECTROGRAM, TARGET, MASK, PREDICTION)}
#: the group level's table (``OUT_DIR/group_metrics.tsv`` + ``.json``)
GROUP_METRICS = "group_metrics.tsv"


def derivative_kind(path: str | os.PathLike) -> Derivative:
    """The :class:`Derivative` ``path`` is named as.

    Raises
    ------
    ValueError
        It is none of :data:`DERIVATIVES`.
    """
    for derivative in DERIVATIVES.values():
        if derivative.matches(path):
            return derivative
    raise ValueError(f"{Path(path).name} is not named as a spec2vol-bids derivative")


def run_key(path: str | os.PathLike) -> str:
    """The run a file belongs to, as its run entities (``sub-01_ses-1_task-rest_run-1``; no space, no desc)."""
    return "_".join(f"{k}-{v}" for k, v in run_entities(path).items())


def run_derivatives(files: Iterable[str | os.PathLike]) -> list[dict[str, Path]]:
    """Group derivative files by run: ``[{"spectrogram": ..., "target": ..., "mask": ..., "prediction": ...}]``.

    The images of a run are grouped by space (their :data:`~spec2vol_bids.io.names.SPACE_ENTITIES`): a run with
    targets in two spaces gives two entries sharing its spectrogram. Entries are sorted by name; only runs with a
    spectrogram are returned, and files that are not derivatives (sidecars, reports) are ignored.
    """
    spectrograms: dict[str, Path] = {}
    images: dict[tuple[str, str], dict[str, Path]] = {}
    for f in map(Path, files):
        for derivative in DERIVATIVES.values():
            if not derivative.matches(f):
                continue
            if derivative is SPECTROGRAM:
                spectrograms[run_key(f)] = f
            else:
                ents = parse_entities(f)
                space = "_".join(f"{k}-{ents[k]}" for k in SPACE_ENTITIES if k in ents)
                images.setdefault((run_key(f), space), {})[derivative.kind] = f
    out: dict[tuple[str, str], dict[str, Path]] = {(run, ""): {SPECTROGRAM.kind: spec}
                                                   for run, spec in spectrograms.items()}
    for (run, space), found in images.items():
        if run in spectrograms:
            out.pop((run, ""), None)
            out[(run, space)] = {SPECTROGRAM.kind: spectrograms[run], **found}
    return [out[k] for k in sorted(out)]


def space_entities(source: str | os.PathLike | Mapping[str, str], *, grid_changed: bool) -> dict[str, str]:
    """The ``space``/``cohort``/``res`` entities of an image made from the BOLD series ``source``.

    Parameters
    ----------
    source : path-like or mapping
        The series the image was made from (its file name or entities): the raw BOLD, or e.g. fMRIPrep's
        ``..._space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz``.
    grid_changed : bool
        Whether the image was resampled to another grid (the model grid) than the source's.

    Returns
    -------
    dict
        ``{}`` for a series on the BOLD run's own grid (no ``space`` entity: the raw BOLD, fMRIPrep's ``func``
        outputs), as fMRIPrep names native-grid outputs. Otherwise its ``space`` (and ``cohort``), and ``res``:
        the source's when the grid is kept, :data:`MODEL_RESOLUTION` when it changed.
    """
    ents = dict(source) if isinstance(source, Mapping) else parse_entities(source)
    if not ents.get("space"):
        return {}
    out = {k: str(ents[k]) for k in ("space", "cohort") if ents.get(k)}
    if grid_changed:
        out["res"] = MODEL_RESOLUTION
    elif ents.get("res"):
        out["res"] = str(ents["res"])
    return out


def resolution_description(shape, zooms, source: str | os.PathLike) -> str:
    """The ``Resolution`` sidecar field of an image resampled to the model grid (``res-model``)."""
    dims = " x ".join(str(int(n)) for n in shape[:3])
    mm = " x ".join(f"{float(z):.3g}" for z in zooms[:3])
    return (f"The spec2vol-bids model grid: {dims} voxels of {mm} mm over the field of view of "
            f"{Path(source).name}, resampled by truncating its 3-D discrete cosine transform")


def xform_code(entities: Mapping[str, str]) -> int:
    """NIfTI qform/sform code of an image named with ``entities``, as niworkflows' DerivativesDataSink sets it:
    1 (scanner) without a ``space``, 4 (MNI) for a standard template, 2 (aligned) for another space (``T1w``)."""
    space = entities.get("space")
    if not space:
        return 1
    return 4 if space in STANDARD_SPACES else 2
