"""Ground truth derived from a simulated dataset, for checking corrections against it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

__all__ = ["without_cardiac_field"]


def without_cardiac_field(clean_vhdr: str | os.PathLike, params_json: str | os.PathLike,
                          out_dir: str | os.PathLike) -> Path:
    """A copy of a simulated clean EEG recording without its cardiac field.

    The simulator's clean EEG (``derivatives/simulation/.../*_desc-clean_eeg.vhdr``) keeps the cardiac field, the
    ECG that the electrodes pick up in and out of the scanner: each EEG channel carries ``weight x`` the ECG
    channel's clean trace, the weights in the run's ``desc-simulation_params.json``
    (``Artefacts.BCG.CardiacField.Weights``). A correction locked to the R peaks removes it together with the
    pulse artefact, so what it should leave is this copy (the ECG's own white noise, 1 uV, is subtracted with
    it: at most 0.02 uV).

    Parameters
    ----------
    clean_vhdr : path-like
        The clean recording (float32 BrainVision, as the simulator writes it).
    params_json : path-like
        The run's simulation parameters (a dataset simulated with ``--artefacts bcg``).
    out_dir : path-like
        Folder for the copy (created; the header, marker and data files keep their names).

    Returns
    -------
    Path
        The copy's header.
    """
    from ..bids.eeg import EEGRecording
    from ..io.brainvision import float32_data_file

    clean_vhdr = Path(clean_vhdr)
    params = json.loads(Path(params_json).read_text())
    try:
        weights = params["Artefacts"]["BCG"]["CardiacField"]["Weights"]
    except KeyError:
        raise ValueError(f"{params_json} records no cardiac field (simulate with --artefacts bcg)") from None
    layout = float32_data_file(clean_vhdr)
    if layout is None:
        raise ValueError(f"{clean_vhdr} is not a float32 BrainVision recording written by the simulator")
    names = EEGRecording(clean_vhdr).ch_names
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for ext in (".vhdr", ".vmrk"):
        shutil.copy(clean_vhdr.with_suffix(ext), out_dir / clean_vhdr.with_suffix(ext).name)
    data = np.fromfile(layout[0], dtype="<f4").reshape(-1, layout[1])  # multiplexed: (samples, channels)
    ecg = data[:, names.index("ECG")].copy()
    for ch, w in weights.items():
        data[:, names.index(ch)] -= np.float32(w) * ecg
    data.tofile(out_dir / layout[0].name)
    return out_dir / clean_vhdr.name
