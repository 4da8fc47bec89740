"""Presets of the simulator: the size and recording settings of each synthetic dataset.

Three presets mirror the datasets of the paper (``notes/reference-implementation.md`` section 1.1); ``tiny`` is
small enough for tests and the demo. Every size can be overridden by :func:`~spec2vol_bids.simulate.simulate_dataset`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import UsageError

__all__ = ["Preset", "PRESETS", "get_preset", "Band", "electrode_names"]

#: electrodes taken first (a symmetric 16-channel 10-20 set with the midline), then easycap-M1 order
_PRIORITY = ("Fz", "Cz", "Pz", "Oz", "Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "T7", "T8",
             "F7", "F8", "P7", "P8")


def electrode_names(n: int) -> list[str]:
    """The ``n`` easycap-M1 electrodes a preset records: a symmetric 10-20 set first, then the 10-10 ones.

    ``n = 16`` gives Fz, Cz, Pz, Oz, Fp1/2, F3/4, C3/4, P3/4, O1/2, T7/8.
    """
    import mne

    montage = mne.channels.make_standard_montage("easycap-M1").ch_names
    order = list(_PRIORITY) + [c for c in montage if c not in _PRIORITY]
    return order[:n]


@dataclass(frozen=True)
class Band:
    """One latent EEG source: a frequency band whose power varies slowly and drives BOLD in one brain map.

    Attributes
    ----------
    name : str
        Label used in file names and TSV columns (``theta``, ``alpha``, ...).
    low, high : float
        Pass band of the source oscillation, in Hz.
    amplitude_uv : float
        RMS amplitude of the source at its peak electrode at median power, in microvolts.
    bold_sign : int
        Sign of the BOLD response to an increase of the band power (alpha power is anti-correlated with
        BOLD in visual cortex; the others are positive).
    centre_mm : tuple of float
        Centre of the source's BOLD map in MNI space (mm).
    scalp_centre : str
        Electrode (easycap-M1 name) under which the source's scalp pattern peaks.
    """

    name: str
    low: float
    high: float
    amplitude_uv: float
    bold_sign: int
    centre_mm: tuple[float, float, float]
    scalp_centre: str


#: the latent sources shared by every preset: band, amplitude, BOLD sign, map centre and scalp peak
DEFAULT_BANDS: tuple[Band, ...] = (
    Band("theta", 4.0, 8.0, 6.0, +1, (0.0, 30.0, 30.0), "Fz"),
    Band("alpha", 8.0, 13.0, 8.0, -1, (0.0, -80.0, 10.0), "Pz"),
    Band("beta", 15.0, 25.0, 4.0, +1, (-38.0, -22.0, 50.0), "C3"),
    Band("gamma", 30.0, 45.0, 3.0, +1, (40.0, -30.0, 20.0), "T8"),
)


@dataclass(frozen=True)
class Preset:
    """Settings of one synthetic dataset.

    Attributes
    ----------
    name : str
        Preset name (``tiny``, ``noddi-like``, ``oddball-like``, ``cnepfl-like``).
    n_subjects, n_sessions, n_runs : int
        Dataset size; ``n_sessions == 1`` writes no ``ses-`` entity, ``n_runs == 1`` no ``run-`` entity.
    tasks : tuple of str
        Task labels; every task has ``n_runs`` runs per session.
    n_eeg : int
        Number of EEG electrodes (easycap-M1 positions, see :func:`electrode_names`).
    ecg : bool
        Add an ECG channel (after the EEG channels), as in the NODDI and CN-EPFL recordings.
    sfreq : float
        EEG sampling frequency in Hz.
    tr : float
        Repetition time in seconds; ``tr * sfreq`` must be a whole number of samples.
    grid : tuple of int
        BOLD matrix ``(X, Y, Z)``.
    voxel_mm : tuple of float
        Voxel size in mm.
    n_volumes : int
        BOLD volumes per run (one ``R128`` marker each).
    line_freq : float
        Power-line frequency (Hz) of the line noise and of ``PowerLineFrequency``.
    gradient_residue : bool
        Add a TR-locked residue of the MR gradient artefact to the EEG (as after imperfect correction).
    task_events : bool
        Write stimulus markers (``Stimulus/S  1`` standard, ``Stimulus/S  2`` target) with evoked responses.
    lead_in : tuple of float
        Range (s) of the random delay from the first EEG sample to the first volume marker.
    lead_out : float
        Seconds of EEG recorded after the end of the last volume.
    bands : tuple of Band
        Latent sources.
    """

    name: str
    n_subjects: int
    n_sessions: int
    n_runs: int
    tasks: tuple[str, ...]
    n_eeg: int
    ecg: bool
    sfreq: float
    tr: float
    grid: tuple[int, int, int]
    voxel_mm: tuple[float, float, float]
    n_volumes: int
    line_freq: float = 50.0
    gradient_residue: bool = False
    task_events: bool = False
    lead_in: tuple[float, float] = (3.0, 8.0)
    lead_out: float = 2.0
    bands: tuple[Band, ...] = field(default=DEFAULT_BANDS)

    @property
    def samples_per_tr(self) -> int:
        """EEG samples in one TR (an integer by construction)."""
        return int(round(self.tr * self.sfreq))

    @property
    def n_channels(self) -> int:
        """Number of channels in the EEG file (EEG electrodes plus the optional ECG)."""
        return self.n_eeg + int(self.ecg)

    def replace(self, **changes) -> Preset:
        """A copy with some fields changed, checked again (see :meth:`check`)."""
        return dataclasses.replace(self, **changes).check()

    def check(self) -> Preset:
        """Raise :class:`~spec2vol_bids.errors.UsageError` on impossible settings; return ``self``."""
        for label, value in (("subjects", self.n_subjects), ("sessions", self.n_sessions),
                             ("runs", self.n_runs), ("volumes", self.n_volumes)):
            if int(value) < 1:
                raise UsageError(f"The number of {label} must be at least 1 (got {value})",
                                 hint=f"Pass --{label} 1 or more")
        if self.n_volumes < 2:
            raise UsageError(f"At least 2 volumes are needed per run (got {self.n_volumes})",
                             hint="Pass --volumes 2 or more")
        if abs(self.tr * self.sfreq - self.samples_per_tr) > 1e-6:
            raise UsageError(f"TR {self.tr} s is not a whole number of samples at {self.sfreq} Hz",
                             hint="Choose a TR that is a multiple of the sampling period")
        if not 1 <= self.n_eeg <= 74:
            raise UsageError(f"The number of EEG channels must be between 1 and 74 (got {self.n_eeg})",
                             hint="The easycap-M1 montage has 74 electrodes")
        if max(b.high for b in self.bands) >= self.sfreq / 2:
            raise UsageError(f"The sampling frequency {self.sfreq} Hz is too low for the simulated bands",
                             hint="Use at least 100 Hz")
        return self


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny", n_subjects=4, n_sessions=1, n_runs=1, tasks=("rest",), n_eeg=16, ecg=False, sfreq=250.0,
        tr=2.0, grid=(64, 64, 8), voxel_mm=(3.5, 3.5, 6.0), n_volumes=72, gradient_residue=False,
        lead_in=(2.0, 5.0)),
    "noddi-like": Preset(
        name="noddi-like", n_subjects=16, n_sessions=1, n_runs=1, tasks=("rest",), n_eeg=63, ecg=True,
        sfreq=250.0, tr=2.16, grid=(64, 64, 30), voxel_mm=(3.5, 3.5, 4.0), n_volumes=300,
        gradient_residue=True),
    "oddball-like": Preset(
        name="oddball-like", n_subjects=17, n_sessions=1, n_runs=3, tasks=("auditoryoddball", "visualoddball"),
        n_eeg=43, ecg=False, sfreq=1000.0, tr=2.0, grid=(64, 64, 32), voxel_mm=(3.5, 3.5, 4.0), n_volumes=170,
        line_freq=60.0, gradient_residue=True, task_events=True),
    "cnepfl-like": Preset(
        name="cnepfl-like", n_subjects=20, n_sessions=1, n_runs=6, tasks=("main",), n_eeg=63, ecg=True,
        sfreq=5000.0, tr=1.28, grid=(108, 108, 64), voxel_mm=(2.0, 2.0, 2.0), n_volumes=370,
        gradient_residue=True),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; raises :class:`~spec2vol_bids.errors.UsageError` for an unknown name."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"Unknown preset {name!r}",
                         hint=f"Choose one of: {', '.join(PRESETS)}") from None
