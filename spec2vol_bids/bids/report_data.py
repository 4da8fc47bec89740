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

from .derivatives import read_spectrogram
from .process import RunInfo, prediction_name, spectrogram_name, target_names

__all__ = ["run_report"]


def run_report(output_dir: str | os.PathLike, pair, info: RunInfo | None = None):
    """A :class:`~spec2vol_bids.reports.participant.RunReport` for one run, or ``None`` if nothing was written.

    Parameters
    ----------
    output_dir : path-like
        The derivative dataset.
    pair : RunPair
        The run.
    info : RunInfo, optional
        Header information gathered before processing (volume markers, EEG duration).
    """
    import nibabel as nib

    from ..reports.participant import RunReport

    out = Path(output_dir)
    spec_path = spectrogram_name(out, pair.eeg_file)
    target_path, mask_path = target_names(out, pair.bold_file)
    pred_path = prediction_name(out, pair.eeg_file)
    if not spec_path.is_file():
        return None
    spec = read_spectrogram(spec_path)
    attrs = spec["attrs"]
    side = json.loads(spec_path.with_suffix(".json").read_text(encoding="utf-8"))
    kwargs: dict[str, Any] = {
        "name": pair.name,
        "repetition_time": float(pair.repetition_time),
        "n_volumes": int(spec["spectrogram"].shape[0]),
        "volume_onsets": spec["volume_onsets"],
        "onset_source": str(attrs.get("onset_source", "markers")),
        "sfreq": float(attrs.get("sfreq")),
        "channels": list(attrs.get("channels", [])),
        "spectrogram": spec["spectrogram"],  # [n_volumes, C, F], as written (scaled)
        "frequencies": spec["frequencies"],
        "valid": spec["valid"],
        "n_pairs": int(spec["pair_targets"].size),
        "warnings": list(side.get("AlignmentWarnings", [])),
        "files": {"spectrogram": spec_path},
    }
    if info is not None:
        kwargs["eeg_duration"] = float(info.eeg_duration) or None
        if info.onsets.markers.size:
            kwargs["marker_onsets"] = info.onsets.markers
    if target_path.is_file():
        kwargs["target"] = np.asarray(nib.load(str(target_path)).dataobj, dtype=np.float32)  # [X, Y, Z, T]
        kwargs["files"]["target"] = target_path
    if mask_path.is_file():
        kwargs["mask"] = np.asarray(nib.load(str(mask_path)).dataobj).astype(bool)  # [X, Y, Z]
        kwargs["files"]["mask"] = mask_path
    if pred_path.is_file():
        kwargs["prediction"] = np.asarray(nib.load(str(pred_path)).dataobj, dtype=np.float32)  # [X, Y, Z, N]
        pred_side = json.loads(pred_path.with_name(pred_path.name.replace(".nii.gz", ".json")).read_text())
        kwargs["prediction_indices"] = np.asarray(pred_side.get("VolumeIndices", []), dtype=int)
        kwargs["files"]["prediction"] = pred_path
    return RunReport(**kwargs)
