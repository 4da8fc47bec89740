"""Collect what the participant report shows about a run from its derivatives (the files just written).

The report builders of :mod:`spec2vol_bids.reports` take plain arrays; this module reads them back from the
output dataset, so the report shows exactly what was written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..io.derivatives import PREDICTION, SPECTROGRAM
from ..io.names import parse_entities, sidecar_path
from ..io.spectrogram import load_spectrogram
from .steps import RunInfo

__all__ = ["run_report", "run_report_from_files"]


def _stem(path: Path) -> str:
    ents = parse_entities(path)
    return "_".join(f"{k}-{v}" for k, v in ents.items() if k != "desc")


def run_report_from_files(spectrogram: str | os.PathLike, *, target: str | os.PathLike | None = None,
                          mask: str | os.PathLike | None = None, prediction: str | os.PathLike | None = None,
                          info: RunInfo | None = None):
    """A :class:`~spec2vol_bids.reports.participant.RunReport` from a run's derivative files.

    Parameters
    ----------
    spectrogram : path-like
        The run's ``*_desc-stft_spectrogram.h5``.
    target, mask, prediction : path-like, optional
        The run's target, brain mask and predicted BOLD (sections without them are skipped).
    info : RunInfo, optional
        Header information gathered before processing (all volume markers, EEG duration).
    """
    import nibabel as nib

    from ..reports.participant import RunReport

    spectrogram = Path(spectrogram)
    spec = load_spectrogram(spectrogram)
    side = json.loads(sidecar_path(spectrogram).read_text(encoding="utf-8"))
    kwargs: dict[str, Any] = {
        "name": _stem(spectrogram),
        "repetition_time": float(spec.repetition_time),
        "n_volumes": spec.n_volumes,
        "volume_onsets": spec.volume_onsets,
        "onset_source": str(spec.attrs.get("onset_source", "markers")),
        "sfreq": float(spec.attrs["sfreq"]),
        "channels": spec.channels,
        "spectrogram": spec.spectrogram,  # [n_volumes, C, F], as written (scaled)
        "frequencies": spec.frequencies,
        "valid": spec.valid,
        "n_pairs": spec.n_pairs,
        "warnings": list(side.get("AlignmentWarnings", [])) + _bad_channel_notes(side),
        "filled_volumes": [int(i) for i in side.get("FilledVolumeTriggers", [])],
        "files": {"spectrogram": spectrogram},
        "eeg_source": side.get("EEGSource"),
        "artefact_correction": side.get("ArtefactCorrection"),
        "artefact_qc": side.get("ArtefactQC"),
        "artefact_warnings": list(side.get("ArtefactWarnings", [])),
    }
    if info is not None:
        kwargs["eeg_duration"] = float(info.eeg_duration) or None
        if info.onsets.markers.size:
            kwargs["marker_onsets"] = info.onsets.markers
    if target is not None and Path(target).is_file():
        kwargs["target"] = np.asarray(nib.load(str(target)).dataobj, dtype=np.float32)  # [X, Y, Z, T]
        kwargs["files"]["target"] = Path(target)
    if mask is not None and Path(mask).is_file():
        kwargs["mask"] = np.asarray(nib.load(str(mask)).dataobj).astype(bool)  # [X, Y, Z]
        kwargs["files"]["mask"] = Path(mask)
    if prediction is not None and Path(prediction).is_file():
        kwargs["prediction"] = np.asarray(nib.load(str(prediction)).dataobj, dtype=np.float32)  # [X, Y, Z, N]
        pred_side = json.loads(sidecar_path(prediction).read_text(encoding="utf-8"))
        kwargs["prediction_indices"] = np.asarray(pred_side.get("VolumeIndices", []), dtype=int)
        kwargs["files"]["prediction"] = Path(prediction)
    return RunReport(**kwargs)


def _bad_channel_notes(sidecar: dict) -> list[str]:
    """The report's lines about the channels ``channels.tsv`` marks bad (from the spectrogram's sidecar)."""
    def listed(channels: dict) -> str:
        return ", ".join(f"{n} ({d})" if d else n for n, d in channels.items())

    notes = []
    excluded, kept = sidecar.get("ExcludedBadChannels") or {}, sidecar.get("KeptBadChannels") or {}
    if excluded:
        notes.append(f"{len(excluded)} channel(s) marked bad in channels.tsv left out of the spectrogram: "
                     f"{listed(excluded)}.")
    if kept:
        notes.append(f"{len(kept)} channel(s) marked bad in channels.tsv kept in the spectrogram "
                     f"(--keep-bad-channels): {listed(kept)}.")
    return notes


def run_report(output_dir: str | os.PathLike, pair, info: RunInfo | None = None, config=None):
    """The report data of one paired run found in ``output_dir``, or ``None`` if its spectrogram is missing.

    ``config`` (the preprocessing settings) tells which grid, hence which ``res`` entity, its images have."""
    from .steps import target_paths

    out = Path(output_dir)
    spec = SPECTROGRAM.path(out, pair.eeg_file)
    if not spec.is_file():
        return None
    target, mask = target_paths(out, pair.target_bold, config)
    return run_report_from_files(spec, target=target, mask=mask, prediction=PREDICTION.path(out, target), info=info)
