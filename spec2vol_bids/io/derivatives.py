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
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .names import derivative_path, run_entities

__all__ = ["Derivative", "SPECTROGRAM", "TARGET", "MASK", "PREDICTION", "DERIVATIVES", "GROUP_METRICS",
           "derivative_kind", "run_derivatives"]


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
    """

    kind: str
    datatype: str
    desc: str
    suffix: str
    extension: str
    description: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

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

    def path(self, out_dir: str | os.PathLike, source: str | os.PathLike | Mapping[str, str]) -> Path:
        """Its path in the derivative dataset ``out_dir`` for the run of ``source``.

        Parameters
        ----------
        out_dir : path-like
            Root of the derivative dataset (or a node's working directory).
        source : path-like or mapping
            A file of the run (raw EEG or BOLD, another derivative; its run entities name the file) or the
            run's entities.
        """
        entities = dict(source) if isinstance(source, Mapping) else run_entities(source)
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
    metadata={"SkullStripped": False})
MASK = Derivative(
    "mask", "func", "brain", "mask", ".nii.gz",
    description="Brain mask on the model grid (for the dynamic-correlation metric)",
    metadata={"Type": "Brain"})
PREDICTION = Derivative(
    "prediction", "func", "spec2vol", "bold", ".nii.gz",
    description="BOLD volumes predicted from EEG spectrograms by Spec2VolCAMU-Net",
    metadata={"SkullStripped": False})

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


def run_derivatives(files: Iterable[str | os.PathLike]) -> list[dict[str, Path]]:
    """Group derivative files by run: ``[{"spectrogram": ..., "target": ..., "mask": ..., "prediction": ...}]``.

    Runs are sorted by name; only runs with a spectrogram are returned, and files that are not derivatives
    (sidecars, reports) are ignored.
    """
    runs: dict[str, dict[str, Path]] = {}
    for f in map(Path, files):
        for derivative in DERIVATIVES.values():
            if derivative.matches(f):
                runs.setdefault(f.name[: -len(derivative.name_suffix)], {})[derivative.kind] = f
    return [runs[k] for k in sorted(runs) if SPECTROGRAM.kind in runs[k]]
