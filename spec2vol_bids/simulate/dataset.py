"""Write a synthetic simultaneous EEG-fMRI BIDS dataset with known ground truth.

The entry point is :func:`simulate_dataset`. For every run it

1. lays out the recording: EEG starts a random few seconds (``Preset.lead_in``) before the first volume marker;
2. draws the slowly varying band power of K latent sources (theta, alpha, beta, gamma);
3. writes the EEG block by block as BrainVision (``R128`` volume markers, stimulus markers for task presets) and
   hands it to ``mne_bids.write_raw_bids`` for the BIDS sidecars (channels, electrodes, coordsystem, events);
4. convolves each source's power with the canonical HRF and lets it modulate the BOLD signal in its own brain map,
   adds drift and thermal noise, and streams the 4-D NIfTI to disk one volume at a time;
5. writes the ground truth under ``derivatives/simulation/`` (see CONTRIBUTING.md, "Simulated dataset ground
   truth") and the noise ceiling: SSIM, PSNR and dynamic correlation of the noise-free against the measured
   BOLD after the official per-volume min-max scaling.

Everything is written into a temporary folder next to ``out_dir`` and moved into place at the end, so an
interrupted run leaves nothing behind. The same seed gives the same bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import CantCreateError, UsageError
from ..io.names import sidecar_path
from ..io.tables import write_tsv
from ..utils import atomic_path, atomic_write, write_json
from .anatomy import MAP_SIGMA_MM, SubjectAnatomy, make_anatomy
from .presets import Preset, electrode_names, get_preset
from .signals import (
    ARTEFACTS,
    CONTROL_RATE,
    HISTORY_S,
    LOG_POWER_SD,
    POWER_TIMESCALE_S,
    SLICE_MARKER,
    EEGRun,
    GradientArtefact,
    PulseArtefact,
    bold_regressors,
    make_source_power,
    make_timing,
    scalp_patterns,
    stream_rng,
)
from .writers import BrainVisionWriter, NiftiStreamWriter

__all__ = ["simulate_dataset", "BOLD_AMPLITUDE", "NOISE_FRACTION", "DRIFT_FRACTION", "SIMULATION_DIR"]

logger = logging.getLogger("spec2vol_bids.simulate")

#: derivatives folder of the ground truth, relative to the dataset root
SIMULATION_DIR = Path("derivatives") / "simulation"
#: BOLD signal change (fraction of baseline) per standard deviation of a source's HRF-convolved power, at the
#: peak of its map
BOLD_AMPLITUDE = 0.04
#: standard deviation of the thermal noise, as a fraction of the mean baseline intensity in the brain
NOISE_FRACTION = 0.01
#: amplitude of the slow scanner drift, as a fraction of the local baseline
DRIFT_FRACTION = 0.01
#: EEG reference and ground electrodes written to eeg.json (not recorded channels)
EEG_REFERENCE, EEG_GROUND = "FCz", "AFz"
#: fixed recording date (BIDS data are often date-shifted anyway); one day per subject, one hour per run
_BASE_DATE = (2000, 1, 1)

# streams of stream_rng(seed, STREAM, ...): one per kind of random quantity
_S_TIMING, _S_POWER, _S_EVENTS, _S_ANATOMY, _S_BOLD, _S_PARTICIPANT, _S_GRADIENT, _S_PULSE = 1, 2, 3, 4, 5, 6, 7, 8


def _label(i: int) -> str:
    return f"{i:02d}"


def _meas_date(sub_i: int, run_index: int) -> str:
    """BrainVision date stamp ``YYYYMMDDhhmmssuuuuuu``: 2000-01-01 + sub_i days, 09:00 + run_index hours."""
    import datetime as dt

    t = dt.datetime(*_BASE_DATE, 9, 0, 0) + dt.timedelta(days=sub_i, hours=run_index)
    return t.strftime("%Y%m%d%H%M%S") + "000000"


def _iso_time(meas_date: str, offset_s: float) -> str:
    """``meas_date`` (BrainVision stamp) plus ``offset_s`` seconds, as a BIDS datetime with microseconds."""
    import datetime as dt

    t = dt.datetime.strptime(meas_date[:14], "%Y%m%d%H%M%S") + dt.timedelta(seconds=float(offset_s))
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise CantCreateError(f"{out_dir} exists and is not a folder",
                              hint="Choose another OUT_DIR or remove the file")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise CantCreateError(f"{out_dir} exists and is not empty",
                              hint="Choose an empty or new OUT_DIR, or pass --overwrite (overwrite=True) to replace it")
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CantCreateError(f"Cannot create {parent} ({err.strerror})", hint="Choose a writable OUT_DIR") from None
    if not os.access(parent, os.W_OK):
        raise CantCreateError(f"Cannot write to {parent}", hint="Choose a writable OUT_DIR")


def _resolve_preset(preset: str | Preset, subjects, sessions, runs, volumes) -> Preset:
    p = preset if isinstance(preset, Preset) else get_preset(str(preset))
    changes = {}
    for field_name, value in (("n_subjects", subjects), ("n_sessions", sessions), ("n_runs", runs),
                              ("n_volumes", volumes)):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise UsageError(f"{field_name[2:]} must be a whole number (got {value!r})",
                                 hint="Pass a positive integer")
            changes[field_name] = int(value)
    return p.replace(**changes) if changes else p.check()


def parse_artefacts(artefacts) -> tuple[str, ...]:
    """The artefacts to simulate, checked and in canonical order: ``"gradient,bcg"`` or a sequence of names.

    ``None``, ``""`` and ``"none"`` mean no artefact.

    Raises
    ------
    UsageError
        An unknown name.
    """
    if artefacts is None:
        return ()
    names = artefacts.split(",") if isinstance(artefacts, str) else list(artefacts)
    names = [str(n).strip().lower() for n in names if str(n).strip()]
    names = [n for n in names if n != "none"]
    unknown = [n for n in names if n not in ARTEFACTS]
    if unknown:
        raise UsageError(f"unknown artefact(s) {', '.join(unknown)}",
                         hint=f"Use a comma-separated list of {', '.join(ARTEFACTS)}, e.g. --artefacts gradient,bcg")
    return tuple(a for a in ARTEFACTS if a in names)


def simulate_dataset(out_dir: str | os.PathLike, *, preset: str | Preset = "tiny", subjects: int | None = None,
                     sessions: int | None = None, runs: int | None = None, volumes: int | None = None,
                     seed: int = 0, overwrite: bool = False, progress: bool = True, artefacts=None,
                     sfreq: float | None = None) -> Path:
    """Write a synthetic simultaneous EEG-fMRI BIDS dataset whose BOLD is driven by its EEG.

    Parameters
    ----------
    out_dir : path-like
        Dataset root to create. Must not exist, or be empty, unless ``overwrite`` is True.
    preset : str or Preset
        ``"tiny"`` (tests and demos: 4 subjects, 16 channels, 250 Hz, TR 2 s, 64 x 64 x 8, 72 volumes),
        ``"noddi-like"``, ``"oddball-like"`` or ``"cnepfl-like"`` (see :data:`~spec2vol_bids.simulate.PRESETS`).
    subjects, sessions, runs, volumes : int, optional
        Override the preset's number of subjects, sessions per subject, runs per task and session, and volumes
        per run.
    seed : int
        Seed of every random quantity; the same seed (and settings) gives byte-identical files.
    artefacts : str or sequence of str, optional
        Record the EEG "inside the scanner": ``"gradient"`` adds the MR gradient artefact (slice-locked, millivolts,
        with ``Response/Slice`` slice-trigger markers; :class:`~spec2vol_bids.simulate.signals.GradientArtefact`),
        ``"bcg"`` the pulse artefact locked to the ECG
        (:class:`~spec2vol_bids.simulate.signals.PulseArtefact`; an ECG channel is added when the preset has
        none). The EEG without them is written to ``derivatives/simulation/`` as ``*_desc-clean_eeg.vhdr``.
        Default: none.
    sfreq : float, optional
        Override the preset's EEG sampling frequency (Hz); the gradient artefact needs a rate that holds the slice
        harmonics (e.g. 1000 Hz or more).
    overwrite : bool
        Replace an existing non-empty ``out_dir`` (only once the new dataset is complete).
    progress : bool
        Show progress bars (tqdm) on stderr.

    Returns
    -------
    root : Path
        The dataset root (``out_dir``).

    Raises
    ------
    UsageError
        Unknown preset or a size below 1.
    CantCreateError
        ``out_dir`` exists and is not empty (without ``overwrite``), or cannot be written.

    Notes
    -----
    Layout (``tiny``; ``ses-``/``run-`` entities appear when there is more than one)::

        dataset_description.json  README  participants.tsv/.json  task-rest_bold.json
        sub-01/sub-01_scans.tsv/.json  (EEG and BOLD acq_time on one clock)
        sub-01/eeg/sub-01_task-rest_eeg.{vhdr,vmrk,eeg,json}  _channels.tsv  _events.tsv/.json
                   sub-01_space-CapTrak_electrodes.tsv/.json  _coordsystem.json
        sub-01/func/sub-01_task-rest_bold.nii.gz  .json  (task presets: _events.tsv/.json)
        derivatives/simulation/dataset_description.json  README  .bidsignore  noise_ceiling.tsv/.json
        derivatives/simulation/sub-01/func/sub-01_task-rest_desc-noisefree_bold.nii.gz  .json
                                           sub-01_task-rest_desc-sources_timeseries.tsv  .json
                                           sub-01_task-rest_desc-simulation_params.json
                                           sub-01_task-rest_desc-brain_mask.nii.gz  .json
                                           sub-01_desc-sources_map.nii.gz  .json

    The EEG ``events.tsv`` lists the ``Response/R128`` volume markers (and stimuli), with onsets in seconds from
    the first EEG sample; ``FirstVolumeOnset`` in the params file is the onset of the first marker.

    Examples
    --------
    >>> from spec2vol_bids.simulate import simulate_dataset
    >>> root = simulate_dataset("/tmp/sim", preset="tiny", subjects=2, seed=1)  # doctest: +SKIP
    """
    p = _resolve_preset(preset, subjects, sessions, runs, volumes)
    if sfreq is not None:
        if isinstance(sfreq, bool) or not isinstance(sfreq, (int, float)) or not sfreq > 0:
            raise UsageError(f"the sampling frequency must be a positive number (got {sfreq!r})",
                             hint="Pass e.g. --sfreq 1000")
        p = p.replace(sfreq=float(sfreq))
    arts = parse_artefacts(artefacts)
    if "bcg" in arts and not p.ecg:
        p = p.replace(ecg=True)  # the pulse artefact is corrected from the ECG: record one
    seed = int(seed)
    if seed < 0:
        raise UsageError(f"The seed must be a non-negative integer (got {seed})", hint="Pass --seed 0 or more")
    out_dir = Path(out_dir).expanduser().absolute()
    _check_out_dir(out_dir, overwrite)

    tmp_root = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.simulate-", dir=out_dir.parent))
    tmp_root.chmod(0o755)
    try:
        sim = _Simulation(p, tmp_root, seed, progress, artefacts=arts)
        try:
            sim.run()
        finally:
            sim._close_scratch()
        if out_dir.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, trash / "old")
            os.replace(tmp_root, out_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp_root, out_dir)
    except BaseException:
        shutil.rmtree(tmp_root, ignore_errors=True)
        raise
    return out_dir


# ----------------------------------------------------------------------------------------------------- internals
def _fmt(x: float, digits: int = 6) -> str:
    return f"{float(x):.{digits}f}".rstrip("0").rstrip(".") if np.isfinite(x) else "n/a"


def _minmax(vol: np.ndarray) -> np.ndarray:
    """Official per-volume scaling: (v - min) / (max - min) over all voxels."""
    lo, hi = float(vol.min()), float(vol.max())
    return (vol - lo) / (hi - lo) if hi > lo else np.zeros_like(vol)


class _CeilingAccumulator:
    """Noise-ceiling metrics over a run, fed one scaled volume pair at a time (slices first, [Z, X, Y]).

    Scores batches of volumes with :class:`spec2vol_bids.train.metrics.RunMetrics` (the metrics of training and
    evaluation): SSIM in float32 (the float64 grouped convolution is ~30x slower on CPU; the difference is below
    1e-5), PSNR in float64 and the dynamic correlation with the streaming accumulator.
    """

    def __init__(self, spatial_shape: tuple[int, int, int], max_bytes: int = 8 << 20):
        from ..train.metrics import RunMetrics

        self.batch = max(1, max_bytes // (4 * int(np.prod(spatial_shape))))
        self.scores = RunMetrics(spatial_shape, ssim_dtype=np.float32)
        self.buf_a: list[np.ndarray] = []
        self.buf_b: list[np.ndarray] = []

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        self.buf_a.append(a)
        self.buf_b.append(b)
        if len(self.buf_a) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        if not self.buf_a:
            return
        # (n, Z, X, Y); the best possible prediction (noise-free) scored against the target (measured)
        a, b = np.stack(self.buf_a), np.stack(self.buf_b)
        self.buf_a, self.buf_b = [], []
        self.scores.update(a, b)

    def result(self, mask: np.ndarray) -> dict:
        self._flush()
        res = self.scores.result(mask)
        return {k: res[k] for k in ("ssim", "psnr", "dynamic_correlation")}


class _Simulation:
    """State of one dataset being written (internal; use :func:`simulate_dataset`)."""

    def __init__(self, preset: Preset, root: Path, seed: int, progress: bool, artefacts: tuple[str, ...] = ()):
        import mne

        self.p = preset
        self.artefacts = tuple(artefacts)
        self.root = root
        self.seed = seed
        self.progress = progress
        self.deriv = root / SIMULATION_DIR
        montage = mne.channels.make_standard_montage("easycap-M1")
        self.montage = montage
        self.eeg_names = electrode_names(preset.n_eeg)
        self.ch_names = self.eeg_names + (["ECG"] if preset.ecg else [])
        self.patterns = scalp_patterns(self.eeg_names, [b.scalp_centre for b in preset.bands])  # (C, K)
        self.ceiling_rows: list[list] = []
        self.func_scans: dict[Path, list[tuple[str, str]]] = {}  # scans.tsv -> [(filename, acq_time)]
        self.participants: list[list] = []
        self._scratch_dir: Path | None = None

    # ------------------------------------------------------------------ driver
    def run(self) -> None:
        from tqdm.auto import tqdm

        p = self.p
        self._write_top_level()
        units = [(s, se, t, r) for s in range(1, p.n_subjects + 1) for se in range(1, p.n_sessions + 1)
                 for t in range(len(p.tasks)) for r in range(1, p.n_runs + 1)]
        bar = tqdm(units, desc=f"simulate {p.name}", unit="run", disable=not self.progress, leave=True)
        anatomy: dict[int, SubjectAnatomy] = {}
        for sub_i, ses_i, task_i, run_i in bar:
            if sub_i not in anatomy:
                anatomy.clear()
                anatomy[sub_i] = make_anatomy(p, stream_rng(self.seed, _S_ANATOMY, sub_i))
                self._write_subject(sub_i, anatomy[sub_i])
            self._write_run(sub_i, ses_i, task_i, run_i, anatomy[sub_i])
        self._write_participants()
        self._write_scans()
        self._write_ceiling()
        # mne-bids leaves these behind; ours (written first) must win
        self._write_dataset_description()
        self._close_scratch()

    # ------------------------------------------------------------------ scratch folder for the EEG files
    def _scratch(self) -> Path:
        """Folder where each run's BrainVision files are written before mne-bids copies them into the dataset.

        ``write_raw_bids`` guesses the format from substrings of the *whole* path (``.ds`` anywhere in the
        folder names means CTF; ``.eeg``, ``.dat`` and ``.fdt`` are replaced), so the folder must not contain
        them: inside the temporary dataset folder when its path is clean, else in the system temp folder.
        """
        if self._scratch_dir is None:
            candidates = [self.root / "scratch-eeg", Path(tempfile.gettempdir())]
            for cand in candidates:
                if not any(tok in str(cand.absolute()) for tok in (".ds", ".eeg", ".dat", ".fdt")):
                    break
            else:
                raise CantCreateError(f"The temporary path {self.root} contains '.ds', '.eeg', '.dat' or '.fdt', "
                                      "which mne-bids misreads", hint="Choose an OUT_DIR whose path avoids them, "
                                      "or set TMPDIR to a folder that does")
            if cand == self.root / "scratch-eeg":
                cand.mkdir()
                self._scratch_dir = cand
            else:
                self._scratch_dir = Path(tempfile.mkdtemp(prefix="spec2vol_simulate_", dir=cand))
        return self._scratch_dir

    def _close_scratch(self) -> None:
        if self._scratch_dir is not None:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
            self._scratch_dir = None

    # ------------------------------------------------------------------ top level files
    def _write_dataset_description(self) -> None:
        write_json(self.root / "dataset_description.json", {
            "Name": f"spec2vol-bids synthetic EEG-fMRI ({self.p.name})",
            "BIDSVersion": "1.10.0",
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["spec2vol-bids developers"],
            "Acknowledgements": "Anatomy from the MNI ICBM152 2009 template as distributed with nilearn.",
            "HowToAcknowledge": "Cite spec2vol-bids and state the preset and seed of the simulation.",
            "GeneratedBy": [{"Name": "spec2vol-bids", "Version": __version__,
                             "Description": f"spec2vol_bids simulate --preset {self.p.name} --seed {self.seed}"}],
        })

    def _write_top_level(self) -> None:
        p = self.p
        self._write_dataset_description()
        tasks = ", ".join(p.tasks)
        atomic_write(self.root / "README", "\n".join([
            f"# Synthetic simultaneous EEG-fMRI dataset ({p.name})",
            "",
            "Generated by `spec2vol_bids simulate` (spec2vol-bids) with a known ground truth: the BOLD signal is",
            "driven by the EEG. K latent sources (theta, alpha, beta, gamma) have slowly varying band power; each",
            "projects to the electrodes through a smooth scalp pattern, and its power, convolved with the canonical",
            "double-gamma HRF, modulates the BOLD signal in its own smooth brain map. Drift and thermal noise are added.",
            "",
            f"- {p.n_subjects} subject(s), {p.n_sessions} session(s), task(s): {tasks}, {p.n_runs} run(s) per task",
            f"- EEG: {p.n_eeg} electrodes (easycap-M1){' + ECG' if p.ecg else ''}, {p.sfreq:g} Hz, BrainVision;"
            f" line noise at {p.line_freq:g} Hz",
            f"- BOLD: {p.grid[0]}x{p.grid[1]}x{p.grid[2]} voxels, TR {p.tr:g} s, {p.n_volumes} volumes per run",
            "- Each scanner volume is marked `Response/R128` in the .vmrk files and in the EEG events.tsv files; the",
            "  EEG starts a few seconds before the first volume (see FirstVolumeOnset in the ground truth).",
            *self._artefact_readme(),
            "",
            "The ground truth (noise-free BOLD, source powers, maps, parameters, noise ceiling) is in",
            "derivatives/simulation/. Anatomy: MNI ICBM152 template (nilearn). No real participant data.",
            "",
        ]))
        for task in p.tasks:
            desc = (f"Simulated {task}: an oddball paradigm (20 % targets, S  2; standards S  1)"
                    if p.task_events else "Simulated resting state, eyes closed")
            write_json(self.root / f"task-{task}_bold.json", {
                "TaskName": task, "TaskDescription": desc, "RepetitionTime": p.tr,
                "SliceTiming": [round(i * p.tr / p.grid[2], 6) for i in range(p.grid[2])],
                "MagneticFieldStrength": 3.0, "EchoTime": 0.03, "FlipAngle": 80,
                "Manufacturer": "spec2vol-bids (simulated)", "ManufacturersModelName": "simulate",
            })
        write_json(self.deriv / "dataset_description.json", {
            "Name": f"spec2vol-bids simulation ground truth ({p.name})",
            "BIDSVersion": "1.10.0",
            "DatasetType": "derivative",
            "License": "CC0",
            "GeneratedBy": [{"Name": "spec2vol-bids", "Version": __version__,
                             "Description": "simulate: noise-free BOLD, latent source powers and maps"}],
            "Authors": ["spec2vol-bids developers"],
            "DatasetLinks": {"raw": "../../"},
            "SourceDatasets": [{"URL": "../../"}],
        })
        atomic_write(self.deriv / "README", "\n".join([
            "# Ground truth of the simulated dataset",
            "",
            "Per run (in `sub-<label>/[ses-<label>/]func/`):",
            "- `*_desc-noisefree_bold.nii.gz`: the BOLD without drift and thermal noise (float32, same grid,",
            "  affine and TR as the raw BOLD): baseline x (1 + A sum_k sign_k map_k r_k(t)).",
            "- `*_desc-sources_timeseries.tsv`: per volume, each source's mean relative band power over the TR",
            "  window starting at the volume marker (`<band>_power`) and its HRF-convolved, z-scored regressor",
            "  (`<band>_hrf`, r_k above).",
            "- `*_desc-simulation_params.json`: every parameter and the seed; `FirstVolumeOnset` is the time (s)",
            "  from the first EEG sample to the first `Response/R128` volume marker.",
            "- `*_desc-brain_mask.nii.gz`: brain mask on the BOLD grid.",
            "",
            "Per subject: `sub-<label>_desc-sources_map.nii.gz`, the BOLD map of each source (4-D, one volume per",
            "source in the order of its sidecar's `Sources`).",
            "",
            *(["Per run (in `sub-<label>/[ses-<label>/]eeg/`): `*_desc-clean_eeg.vhdr` (+ .vmrk, .eeg, .json), the EEG",
               "without the simulated scanner artefacts (the ground truth of artefact correction).", ""]
              if self.artefacts else []),
            "`noise_ceiling.tsv`: SSIM, PSNR and dynamic correlation of the noise-free against the measured BOLD",
            "after per-volume min-max scaling: the best score an EEG-to-fMRI model can reach on this dataset.",
            "",
        ]))
        # ground-truth files that BIDS has no name for (the validator applies this file when the derivative
        # dataset is validated on its own)
        atomic_write(self.deriv / ".bidsignore", "\n".join([
            "noise_ceiling.*", "*_desc-simulation_params.json", "*_desc-sources_timeseries.*",
            "*_desc-sources_map.*", ""]))

    def _artefact_readme(self) -> list[str]:
        lines = []
        if "gradient" in self.artefacts:
            lines += ["- The EEG was recorded inside the scanner: it holds the MR gradient artefact (slice-locked,",
                      f"  millivolts); every slice trigger is marked `Response/{SLICE_MARKER}`."]
        if "bcg" in self.artefacts:
            lines += ["- It holds the pulse (ballistocardiogram) artefact, locked to the heartbeat of the ECG channel."]
        if self.artefacts:
            lines += ["- The EEG without these artefacts is in derivatives/simulation/ (`*_desc-clean_eeg.vhdr`)."]
        return lines

    def _write_scans(self) -> None:
        """Add the BOLD runs to the scans.tsv files mne-bids wrote for the EEG (acq_time shows concurrency)."""
        for path, rows in self.func_scans.items():
            lines = path.read_text(encoding="utf-8").splitlines()
            header, body = lines[0].split("\t"), [ln.split("\t") for ln in lines[1:] if ln.strip()]
            for fname, acq in rows:
                body.append([fname, acq] + ["n/a"] * (len(header) - 2))
            body.sort(key=lambda r: (r[1], r[0]))
            write_tsv(path, body, header)
        for path in self.func_scans:
            write_json(sidecar_path(path), {
                "filename": {"Description": "File name relative to the session (or subject) folder"},
                "acq_time": {"Description": "Acquisition start: first EEG sample for EEG files, first volume "
                                            "for BOLD files (simultaneous recording)"}})

    def _write_participants(self) -> None:
        write_json(self.root / "participants.json", {
            "participant_id": {"Description": "Unique participant label"},
            "age": {"Description": "Age of the (simulated) participant", "Units": "year"},
            "sex": {"Description": "Sex of the (simulated) participant",
                    "Levels": {"F": "female", "M": "male"}},
            "handedness": {"Description": "Handedness", "Levels": {"R": "right", "L": "left"}},
        })
        write_tsv(self.root / "participants.tsv", self.participants,
                  ["participant_id", "age", "sex", "handedness"])

    def _write_ceiling(self) -> None:
        header = ["participant_id", "session", "task", "run", "n_volumes", "ssim", "psnr", "dynamic_correlation"]
        write_tsv(self.deriv / "noise_ceiling.tsv", self.ceiling_rows, header)
        write_json(self.deriv / "noise_ceiling.json", {
            "Description": "Best score any EEG-to-fMRI model can reach on this dataset: the noise-free BOLD "
                           "compared with the measured BOLD, both min-max scaled to [0, 1] per volume "
                           "(the official preprocessing), on the native BOLD grid (before any resize to the "
                           "model grid), with spec2vol_bids.train.metrics.",
            "ssim": {"Description": "Mean over volumes of the published 2-D SSIM (slices as channels)"},
            "psnr": {"Description": "Mean over volumes of the PSNR (data range 1)", "Units": "dB"},
            "dynamic_correlation": {"Description": "Mean over brain voxels of the Pearson correlation of the "
                                                   "noise-free and measured time courses"},
        })

    # ------------------------------------------------------------------ per subject
    def _write_subject(self, sub_i: int, anat: SubjectAnatomy) -> None:
        import nibabel as nib

        rng = stream_rng(self.seed, _S_PARTICIPANT, sub_i)
        self.participants.append([f"sub-{_label(sub_i)}", int(rng.integers(19, 45)),
                                  "F" if rng.random() < 0.5 else "M", "R" if rng.random() < 0.9 else "L"])
        fdir = self.deriv / f"sub-{_label(sub_i)}" / "func"
        base = f"sub-{_label(sub_i)}"
        maps = np.moveaxis(anat.maps, 0, -1).astype(np.float32)  # (X, Y, Z, K)
        img = nib.Nifti1Image(maps, anat.affine)
        img.header.set_xyzt_units("mm")
        self._save_nifti(img, fdir / f"{base}_desc-sources_map.nii.gz")
        write_json(fdir / f"{base}_desc-sources_map.json", {
            "Description": "BOLD map of each latent source (volumes in the order of Sources), in [0, 1]",
            "Sources": [b.name for b in self.p.bands], "SigmaMM": MAP_SIGMA_MM,
            "CentresMNI": {b.name: list(b.centre_mm) for b in self.p.bands}})

    @staticmethod
    def _save_nifti(img, dest: Path) -> None:
        """Save with a deterministic gzip header (nibabel writes mtime 0 for .gz)."""
        import nibabel as nib

        with atomic_path(dest) as tmp:
            nib.save(img, tmp)

    # ------------------------------------------------------------------ per run
    def _entities(self, sub_i: int, ses_i: int, task_i: int, run_i: int) -> dict:
        p = self.p
        return {"subject": _label(sub_i), "session": _label(ses_i) if p.n_sessions > 1 else None,
                "task": p.tasks[task_i], "run": _label(run_i) if p.n_runs > 1 else None}

    @staticmethod
    def _stem(ent: dict) -> str:
        parts = [f"sub-{ent['subject']}"]
        if ent["session"]:
            parts.append(f"ses-{ent['session']}")
        parts.append(f"task-{ent['task']}")
        if ent["run"]:
            parts.append(f"run-{ent['run']}")
        return "_".join(parts)

    def _subdir(self, root: Path, ent: dict, datatype: str) -> Path:
        d = root / f"sub-{ent['subject']}"
        if ent["session"]:
            d = d / f"ses-{ent['session']}"
        return d / datatype

    def _write_run(self, sub_i: int, ses_i: int, task_i: int, run_i: int, anat: SubjectAnatomy) -> None:
        p = self.p
        keys = (sub_i, ses_i, task_i, run_i)
        ent = self._entities(*keys)
        stem = self._stem(ent)
        timing = make_timing(p, stream_rng(self.seed, _S_TIMING, *keys))
        power = make_source_power(p, timing, stream_rng(self.seed, _S_POWER, *keys),
                                  stream_rng(self.seed, _S_EVENTS, *keys))
        run_index = ((ses_i - 1) * len(p.tasks) + task_i) * p.n_runs + (run_i - 1)
        meas_date = _meas_date(sub_i, run_index)
        self._artefact_params: dict = {}
        self._write_eeg(ent, stem, keys, timing, power, meas_date)
        # the BOLD run starts at the first volume marker: same clock as the EEG, FirstVolumeOnset later
        scans = self._subdir(self.root, ent, "func").parent / f"{self._stem(ent).split('_task-')[0]}_scans.tsv"
        bold_start = _iso_time(meas_date, timing.first_volume_onset)
        self.func_scans.setdefault(scans, []).append((f"func/{stem}_bold.nii.gz", bold_start))
        acq = timing.volume_onsets + timing.tr / 2.0  # mid-volume acquisition time (s from first EEG sample)
        raw_reg, z_reg = bold_regressors(power, acq)  # (V, K) each
        window_power = power.mean_power(timing.volume_onsets, timing.tr)  # (V, K)
        ceiling = self._write_bold(ent, stem, keys, anat, z_reg)
        if power.events:
            self._write_func_events(ent, stem, timing, power)
        self._write_truth(ent, stem, timing, power, window_power, raw_reg, z_reg, anat)
        self.ceiling_rows.append([f"sub-{ent['subject']}", ent["session"] or "n/a", ent["task"],
                                  ent["run"] or "n/a", p.n_volumes, _fmt(ceiling["ssim"]),
                                  _fmt(ceiling["psnr"]), _fmt(ceiling["dynamic_correlation"])])
        logger.info("%s: %d volumes, first volume at %.3f s; noise ceiling SSIM %.3f, PSNR %.1f dB, dynamic "
                    "correlation %.3f", stem, p.n_volumes, timing.first_volume_onset, ceiling["ssim"],
                    ceiling["psnr"], ceiling["dynamic_correlation"])

    # ------------------------------------------------------------------ EEG
    def _write_eeg(self, ent: dict, stem: str, keys, timing, power, meas_date: str) -> None:
        import mne
        from mne_bids import BIDSPath, write_raw_bids
        from tqdm.auto import tqdm

        p = self.p
        markers = [("Response", "R128", int(s)) for s in timing.volume_samples]
        markers += [("Stimulus", f"S{code:>3d}", int(round(onset * p.sfreq))) for onset, code in power.events]
        scratch = self._scratch()
        vhdr = scratch / f"{stem}_eeg.vhdr"
        gen = EEGRun(p, self.eeg_names, timing, power, self.patterns, self.seed, keys)
        artefacts = []
        if "gradient" in self.artefacts:
            grad = GradientArtefact(p, len(self.ch_names), timing, stream_rng(self.seed, _S_GRADIENT, *keys))
            artefacts.append(lambda s, t, grad=grad: grad.block(s, p.sfreq))
            markers += [("Response", SLICE_MARKER, int(s)) for s in grad.slice_markers() if s < timing.n_samples]
            self._artefact_params["Gradient"] = {
                "Description": "MR gradient artefact: slice-locked, three gradient axes mixed per channel, through "
                               "the amplifier's anti-aliasing filter; slices fill the TR sequentially",
                "SliceMarker": f"Response/{SLICE_MARKER}", "SlicesPerVolume": grad.n_slices,
                "SlicePeriod": grad.slice_period / p.sfreq, "SliceFrequency": grad.f_slice,
                "FirstSliceOnsetSample": grad.t0, "ClockDriftSamples": grad.drift,
                "ChannelRMS": {ch: float(v) for ch, v in zip(self.ch_names, grad.channel_rms)},
                "Units": "uV"}
        if "bcg" in self.artefacts:
            pulse = PulseArtefact(self.eeg_names, len(self.ch_names), gen.beats,
                                  stream_rng(self.seed, _S_PULSE, *keys))
            artefacts.append(lambda s, t, pulse=pulse: pulse.block(t))
            self._artefact_params["BCG"] = {
                "Description": "pulse (ballistocardiogram) artefact locked to the ECG R peaks: three components at "
                               "0.20, 0.30 and 0.45 s with beat-to-beat amplitude and latency variation",
                "RPeaks": [float(b) for b in gen.beats],
                "PeakAmplitude": {ch: float(v) for ch, v in zip(self.eeg_names, pulse.peak_uv)},
                # the clean EEG keeps the cardiac field (the ECG the electrodes pick up, in and out of the
                # scanner); a correction locked to the R peaks removes it with the pulse artefact
                "CardiacField": {"Description": "clean EEG channel = brain signal + weight x the ECG channel's "
                                                "clean trace (without its white noise)",
                                 "Weights": {ch: float(v) for ch, v in
                                             zip(self.eeg_names, gen.cardiac_field_weights)}},
                "Units": "uV"}
        clean = None
        with contextlib.ExitStack() as stack:
            w = stack.enter_context(BrainVisionWriter(vhdr, self.ch_names, p.sfreq, markers, meas_date=meas_date))
            if artefacts:
                clean_dir = self._subdir(self.deriv, ent, "eeg")
                clean_dir.mkdir(parents=True, exist_ok=True)
                clean = clean_dir / f"{stem}_desc-clean_eeg.vhdr"
                wc = stack.enter_context(BrainVisionWriter(clean, self.ch_names, p.sfreq, markers,
                                                           meas_date=meas_date))
            s0 = 0
            for block in tqdm(gen.iter_blocks(), total=gen.n_blocks, desc=f"  EEG {stem}", unit="s",
                              disable=not self.progress, leave=False):
                if artefacts:
                    wc.write(block)
                    s = np.arange(s0, s0 + block.shape[1])
                    block = (block + sum(a(s, s / p.sfreq) for a in artefacts)).astype(np.float32)
                    s0 += block.shape[1]
                w.write(block)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = mne.io.read_raw_brainvision(vhdr, preload=False, verbose="error")
            if p.ecg:
                raw.set_channel_types({"ECG": "ecg"}, verbose="error")
            raw.set_montage(self.montage, on_missing="ignore", verbose="error")
            raw.info["line_freq"] = p.line_freq
            keep = [i for i, d in enumerate(raw.annotations.description) if not d.startswith("New Segment")]
            raw.set_annotations(raw.annotations[keep])
            bids_path = BIDSPath(root=self.root, datatype="eeg", **ent)
            event_id = {"Response/R128": 128, "Stimulus/S  1": 1, "Stimulus/S  2": 2,
                        f"Response/{SLICE_MARKER}": 129}
            present = set(raw.annotations.description)
            write_raw_bids(raw, bids_path, event_id={k: v for k, v in event_id.items() if k in present},
                           overwrite=True, verbose="error")
        for f in scratch.glob(f"{stem}_eeg.*"):
            f.unlink()
        eeg_dir = self._subdir(self.root, ent, "eeg")
        sidecar = eeg_dir / f"{stem}_eeg.json"
        import json

        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        meta.update({
            "TaskDescription": ("Simulated oddball paradigm with EEG-fMRI" if p.task_events
                                else "Simulated resting state with EEG-fMRI"),
            "EEGReference": EEG_REFERENCE,
            "EEGGround": EEG_GROUND,
            "EEGPlacementScheme": "10-10 (easycap-M1 positions)",
            "CapManufacturer": "EasyCap",
            "CapManufacturersModelName": "M1",
            "Manufacturer": "Brain Products",
            "ManufacturersModelName": "BrainAmp MR plus (simulated)",
            "SoftwareFilters": "n/a",
            "HardwareFilters": "n/a",
            "InstitutionName": "n/a",
            "SoftwareVersions": f"spec2vol-bids {__version__}",
            "DeviceSerialNumber": "n/a",
            "Instructions": "Keep your eyes closed and relax" if not p.task_events
            else "Press the button for target stimuli",
            "InstitutionAddress": "n/a",
            "InstitutionalDepartmentName": "n/a",
            "MISCChannelCount": 0,
            "HeadCircumference": 58,
            "SubjectArtefactDescription": "n/a (simulated)",
            "RecordingType": "continuous",
        })
        write_json(sidecar, meta)
        if clean is not None:  # the EEG without the scanner artefacts: the oracle of artefact correction
            names = {"gradient": "MR gradient", "bcg": "pulse (BCG)"}
            write_json(sidecar_path(clean), {
                **meta,
                "Description": "The simulated EEG without the " + " and ".join(names[a] for a in self.artefacts)
                               + " artefacts that the raw recording holds (the ground truth of artefact "
                                 "correction); same channels, samples and markers",
                "Sources": [f"bids:raw:{(eeg_dir / f'{stem}_eeg.vhdr').relative_to(self.root).as_posix()}"],
            })
        levels = {"Response/R128": "MR scanner volume trigger (one per TR)",
                  "Stimulus/S  1": "standard stimulus", "Stimulus/S  2": "target stimulus"}
        if "gradient" in self.artefacts:
            levels[f"Response/{SLICE_MARKER}"] = "MR scanner slice trigger (one per slice)"
        events_json = eeg_dir / f"{stem}_events.json"
        write_json(events_json, {
            "onset": {"Description": "Seconds from the first EEG sample", "Units": "s"},
            "duration": {"Description": "Duration of the marker", "Units": "s"},
            "trial_type": {"Description": "BrainVision marker type/description", "Levels": levels},
            "value": {"Description": "Numeric marker code"},
            "sample": {"Description": "EEG sample index (0-based) of the onset"},
        })

    # ------------------------------------------------------------------ BOLD
    def _write_bold(self, ent: dict, stem: str, keys, anat: SubjectAnatomy, z_reg: np.ndarray) -> dict:
        import nibabel as nib
        from tqdm.auto import tqdm

        p = self.p
        n_vol = p.n_volumes
        shape = (*p.grid, n_vol)
        zooms = (*p.voxel_mm, p.tr)
        rng = stream_rng(self.seed, _S_BOLD, *keys)
        signs = np.array([b.bold_sign for b in p.bands], dtype=np.float32)
        signed_maps = (anat.maps * signs[:, None, None, None]).reshape(len(p.bands), -1)  # (K, N)
        brain_mean = float(anat.baseline[anat.mask].mean())
        sigma = NOISE_FRACTION * brain_mean
        # smooth spatial weights of the two drift components (linear gradients across the field of view)
        ijk = np.indices(p.grid, dtype=np.float32)
        grads = [(ijk[a] / max(p.grid[a] - 1, 1) - 0.5) * 2.0 for a in range(3)]
        w_drift = rng.uniform(-1.0, 1.0, (2, 3))
        drift_maps = [sum(w_drift[j, a] * grads[a] for a in range(3)) / 3.0 for j in range(2)]
        v = np.arange(n_vol)
        drift_t = np.stack([v / max(n_vol - 1, 1) - 0.5, np.cos(np.pi * v / max(n_vol - 1, 1))])  # (2, V)

        func_dir = self._subdir(self.root, ent, "func")
        deriv_dir = self._subdir(self.deriv, ent, "func")
        func_dir.mkdir(parents=True, exist_ok=True)
        deriv_dir.mkdir(parents=True, exist_ok=True)
        ceiling = _CeilingAccumulator((p.grid[2], p.grid[0], p.grid[1]))
        with contextlib.ExitStack() as stack:
            tmp_meas = stack.enter_context(atomic_path(func_dir / f"{stem}_bold.nii.gz"))
            tmp_nf = stack.enter_context(atomic_path(deriv_dir / f"{stem}_desc-noisefree_bold.nii.gz"))
            meas_w = stack.enter_context(NiftiStreamWriter(tmp_meas, shape, anat.affine, zooms, np.int16))
            nf_w = stack.enter_context(NiftiStreamWriter(tmp_nf, shape, anat.affine, zooms, np.float32))
            for t in tqdm(range(n_vol), desc=f"  BOLD {stem}", unit="vol", disable=not self.progress,
                          leave=False):
                modulation = (z_reg[t].astype(np.float32) @ signed_maps).reshape(p.grid)  # (X, Y, Z)
                noisefree = anat.baseline * (1.0 + BOLD_AMPLITUDE * modulation)
                drift = anat.baseline * DRIFT_FRACTION * (drift_t[0, t] * drift_maps[0]
                                                          + drift_t[1, t] * drift_maps[1])
                measured = noisefree + drift + sigma * rng.standard_normal(p.grid, dtype=np.float32)
                measured = np.clip(np.rint(measured), 0, np.iinfo(np.int16).max)
                nf_w.write(noisefree)
                meas_w.write(measured)
                # noise ceiling on what a user loads: per-volume min-max, slices first (Z, X, Y)
                ceiling.add(_minmax(noisefree.astype(np.float64)).transpose(2, 0, 1),
                            _minmax(measured.astype(np.float64)).transpose(2, 0, 1))
            nf_w.close()
            meas_w.close()
        sidecar = {"RepetitionTime": p.tr, "TaskName": ent["task"]}
        write_json(func_dir / f"{stem}_bold.json", sidecar)
        mask = nib.Nifti1Image(anat.mask.astype(np.uint8), anat.affine)
        mask.header.set_xyzt_units("mm")
        self._save_nifti(mask, deriv_dir / f"{stem}_desc-brain_mask.nii.gz")
        write_json(deriv_dir / f"{stem}_desc-brain_mask.json", {
            "Type": "Brain", "Description": "MNI152 brain mask moved to the subject's head position",
            "SpatialReference": f"bids:raw:{(func_dir / f'{stem}_bold.nii.gz').relative_to(self.root).as_posix()}",
            "Sources": [f"bids:raw:{(func_dir / f'{stem}_bold.nii.gz').relative_to(self.root).as_posix()}"]})
        write_json(deriv_dir / f"{stem}_desc-noisefree_bold.json", {
            **sidecar, "SkullStripped": True, "Description": "BOLD without drift and thermal noise: baseline x (1 + coupled signal)",
            "Sources": [f"bids:raw:{(func_dir / f'{stem}_bold.nii.gz').relative_to(self.root).as_posix()}"]})
        return ceiling.result(anat.mask.transpose(2, 0, 1))

    def _write_func_events(self, ent: dict, stem: str, timing, power) -> None:
        """BOLD events.tsv: the task stimuli with onsets from the first volume (the BOLD file's time zero)."""
        func_dir = self._subdir(self.root, ent, "func")
        rows = [[_fmt(onset - timing.first_volume_onset), "0.1", "target" if code == 2 else "standard", code]
                for onset, code in power.events]
        write_tsv(func_dir / f"{stem}_events.tsv", rows, ["onset", "duration", "trial_type", "value"])
        write_json(func_dir / f"{stem}_events.json", {
            "onset": {"Description": "Seconds from the first volume (same stimuli as Stimulus/S  1 and "
                                     "Stimulus/S  2 in the EEG events, which count from the first EEG sample)",
                      "Units": "s"},
            "duration": {"Description": "Stimulus duration", "Units": "s"},
            "trial_type": {"Description": "Oddball stimulus class",
                           "Levels": {"standard": "frequent stimulus (80 %)", "target": "rare stimulus (20 %)"}},
            "value": {"Description": "Stimulus marker code (S  1 standard, S  2 target)"},
        })

    # ------------------------------------------------------------------ ground truth
    def _write_truth(self, ent, stem, timing, power, window_power, raw_reg, z_reg, anat) -> None:
        p = self.p
        deriv_dir = self._subdir(self.deriv, ent, "func")
        names = [b.name for b in p.bands]
        header = ["volume", "onset"] + [f"{n}_power" for n in names] + [f"{n}_hrf" for n in names]
        rows = []
        for v in range(p.n_volumes):
            rows.append([v, _fmt(timing.volume_onsets[v])] + [_fmt(x) for x in window_power[v]]
                        + [_fmt(x) for x in z_reg[v]])
        write_tsv(deriv_dir / f"{stem}_desc-sources_timeseries.tsv", rows, header)
        cols = {"volume": {"Description": "BOLD volume index (0-based)"},
                "onset": {"Description": "Volume marker onset, seconds from the first EEG sample", "Units": "s"}}
        for b in p.bands:
            cols[f"{b.name}_power"] = {
                "Description": f"Mean relative {b.name} ({b.low:g}-{b.high:g} Hz) source power over the TR window "
                               "starting at the volume marker (1 = median power)"}
            cols[f"{b.name}_hrf"] = {
                "Description": f"{b.name} power convolved with the canonical HRF, sampled mid-volume and "
                               "z-scored over the run: the regressor that modulates the BOLD map"}
        write_json(deriv_dir / f"{stem}_desc-sources_timeseries.json", cols)

        def rel(folder: Path, name: str) -> str:
            return (folder / name).relative_to(self.root).as_posix()

        eeg_dir = self._subdir(self.root, ent, "eeg")
        func_dir = self._subdir(self.root, ent, "func")
        sub_fdir = self.deriv / f"sub-{ent['subject']}" / "func"
        write_json(deriv_dir / f"{stem}_desc-simulation_params.json", {
            "Seed": self.seed,
            "Preset": asdict(p),
            "Entities": ent,
            "FirstVolumeOnset": timing.first_volume_onset,
            "FirstVolumeSample": timing.first_volume,
            "RepetitionTime": timing.tr,
            "NumberOfVolumes": timing.n_volumes,
            "RecordingSamples": timing.n_samples,
            "SamplingFrequency": p.sfreq,
            "VolumeMarker": "Response/R128",
            "AcquisitionTime": "mid-volume: volume onset + RepetitionTime / 2",
            "Channels": self.ch_names,
            "Sources": [{"name": b.name, "band_hz": [b.low, b.high], "amplitude_uv": b.amplitude_uv,
                         "bold_sign": b.bold_sign, "map_centre_mni": list(b.centre_mm),
                         "scalp_centre": b.scalp_centre} for b in p.bands],
            "ScalpPatterns": {ch: [float(x) for x in self.patterns[i]] for i, ch in enumerate(self.eeg_names)},
            "LogPowerSD": LOG_POWER_SD,
            "PowerTimescale": POWER_TIMESCALE_S,
            "ControlRate": CONTROL_RATE,
            "HistorySeconds": HISTORY_S,
            "HRF": "SPM canonical double gamma: G(6,1) - G(16,1)/6, peak 5 s, unit sum",
            "BoldAmplitude": BOLD_AMPLITUDE,
            "NoiseFraction": NOISE_FRACTION,
            "DriftFraction": DRIFT_FRACTION,
            "MapSigmaMM": MAP_SIGMA_MM,
            "SubjectGain": anat.gain,
            "HeadTransform": anat.head_transform,
            "BackgroundRMS": EEGRun.BACKGROUND_UV,
            "TaskEvents": [{"onset": o, "code": c} for o, c in power.events],
            **({"Artefacts": self._artefact_params} if self._artefact_params else {}),
            "Files": {
                "eeg": rel(eeg_dir, f"{stem}_eeg.vhdr"),
                "bold": rel(func_dir, f"{stem}_bold.nii.gz"),
                "noisefree_bold": rel(deriv_dir, f"{stem}_desc-noisefree_bold.nii.gz"),
                "sources_timeseries": rel(deriv_dir, f"{stem}_desc-sources_timeseries.tsv"),
                "maps": rel(sub_fdir, f"sub-{ent['subject']}_desc-sources_map.nii.gz"),
                "brain_mask": rel(deriv_dir, f"{stem}_desc-brain_mask.nii.gz"),
                **({"clean_eeg": rel(self._subdir(self.deriv, ent, "eeg"), f"{stem}_desc-clean_eeg.vhdr")}
                   if self.artefacts else {}),
            },
        })
