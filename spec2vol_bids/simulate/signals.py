"""Pure NumPy/SciPy building blocks of the simulator: source power, HRF, EEG blocks, BOLD volumes.

Nothing here does I/O. The EEG of a run is produced block by block (:meth:`EEGRun.iter_blocks`) with the
filter states carried from one block to the next and a random stream per block, so the signal does not depend
on how the blocks are grouped for writing and memory stays bounded for 5 kHz recordings.

Units: EEG in microvolts, time in seconds, positions of BOLD maps in MNI millimetres.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy import signal as sps
from scipy.ndimage import gaussian_filter1d
from scipy.stats import gamma as gamma_dist

from .presets import Preset

__all__ = [
    "CONTROL_RATE", "HISTORY_S", "canonical_hrf", "smooth_process", "scalp_patterns", "spatial_mixing",
    "RunTiming", "make_timing", "SourcePower", "make_source_power", "bold_regressors", "EEGRun", "stream_rng",
    "ARTEFACTS", "SLICE_MARKER", "GradientArtefact", "PulseArtefact",
]

#: sampling rate (Hz) of the slow latent processes (source log-power), interpolated to EEG samples
CONTROL_RATE = 10.0
#: seconds of latent history simulated before the first EEG sample, so the HRF has a past at volume 0
HISTORY_S = 40.0
#: time scale (s, Gaussian kernel sigma) of the slow band-power fluctuations
POWER_TIMESCALE_S = 3.0
#: standard deviation of the natural log of the band power (so power varies about e^{+-1.6} over a run)
LOG_POWER_SD = 0.8
#: seconds per EEG generation block (fixed, so output does not depend on chunking)
BLOCK_S = 1.0


def stream_rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator for one named random stream: ``default_rng(SeedSequence([seed, *keys]))``.

    Every quantity of the simulator draws from its own stream (keys: kind of quantity, subject, session,
    task, run, block), so the result does not depend on the order in which things are generated.
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, keys)]))


def canonical_hrf(dt: float, duration: float = 32.0) -> np.ndarray:
    """SPM's canonical double-gamma haemodynamic response, sampled every ``dt`` seconds.

    ``h(t) = G(t; 6, 1) - G(t; 16, 1) / 6`` with ``G`` the gamma density (shape, scale 1 s): a peak at 5 s
    and an undershoot near 15 s. Normalised to unit sum, so convolving a constant leaves it unchanged.

    Returns
    -------
    hrf : ndarray, shape (n,)
        ``n = round(duration / dt)`` samples starting at t = 0.
    """
    t = np.arange(int(round(duration / dt))) * dt
    h = gamma_dist.pdf(t, 6.0) - gamma_dist.pdf(t, 16.0) / 6.0
    return h / h.sum()


def smooth_process(rng: np.random.Generator, n: int, dt: float, timescale: float) -> np.ndarray:
    """A smooth stationary Gaussian process with zero mean and unit variance.

    White noise smoothed by a Gaussian kernel of standard deviation ``timescale`` seconds, then standardised.

    Returns
    -------
    x : ndarray, shape (n,)
    """
    pad = int(4 * timescale / dt) + 1
    x = gaussian_filter1d(rng.standard_normal(n + 2 * pad), timescale / dt, mode="constant")[pad:pad + n]
    return (x - x.mean()) / x.std()


def _unit_positions(ch_names: list[str]) -> np.ndarray:
    """Unit vectors (from the head centre) of easycap-M1 electrodes, shape (C, 3)."""
    import mne

    pos = mne.channels.make_standard_montage("easycap-M1").get_positions()["ch_pos"]
    xyz = np.array([pos[c] for c in ch_names], dtype=float)
    return xyz / np.linalg.norm(xyz, axis=1, keepdims=True)


def scalp_patterns(ch_names: list[str], centres: list[str], width_rad: float = 0.55) -> np.ndarray:
    """Smooth scalp patterns: a Gaussian of the great-circle angle to each source's peak electrode.

    Parameters
    ----------
    ch_names : list of str
        Electrodes (easycap-M1 names), in file order.
    centres : list of str
        Peak electrode of each source.
    width_rad : float
        Standard deviation of the Gaussian, in radians (0.55 rad ~ 32 degrees).

    Returns
    -------
    patterns : ndarray, shape (C, K)
        Peak value 1 at the centre electrode (or the nearest one when it is not recorded).
    """
    import mne

    pos = mne.channels.make_standard_montage("easycap-M1").get_positions()["ch_pos"]
    u = _unit_positions(ch_names)  # (C, 3)
    out = np.empty((len(ch_names), len(centres)))
    for k, name in enumerate(centres):
        c = np.asarray(pos[name], float)
        c /= np.linalg.norm(c)
        ang = np.arccos(np.clip(u @ c, -1.0, 1.0))  # (C,)
        out[:, k] = np.exp(-0.5 * (ang / width_rad) ** 2)
    return out / out.max(axis=0, keepdims=True)


def spatial_mixing(ch_names: list[str], width_rad: float = 0.35) -> np.ndarray:
    """Mixing matrix that makes the background noise of neighbouring electrodes correlated.

    Returns
    -------
    mix : ndarray, shape (C, C)
        Rows have unit Euclidean norm, so every channel keeps the variance of the white input.
    """
    u = _unit_positions(ch_names)
    ang = np.arccos(np.clip(u @ u.T, -1.0, 1.0))
    mix = np.exp(-0.5 * (ang / width_rad) ** 2)
    return mix / np.linalg.norm(mix, axis=1, keepdims=True)


@dataclass(frozen=True)
class RunTiming:
    """Sample-exact timing of one run.

    Attributes
    ----------
    sfreq : float
        EEG sampling frequency (Hz).
    n_samples : int
        EEG samples in the recording.
    first_volume : int
        Sample index (0-based) of the first volume marker.
    samples_per_tr : int
        Samples between volume markers.
    n_volumes : int
        Number of volumes.
    """

    sfreq: float
    n_samples: int
    first_volume: int
    samples_per_tr: int
    n_volumes: int

    @property
    def volume_samples(self) -> np.ndarray:
        """Sample index of each volume marker, shape (n_volumes,)."""
        return self.first_volume + self.samples_per_tr * np.arange(self.n_volumes)

    @property
    def volume_onsets(self) -> np.ndarray:
        """Onset of each volume in seconds from the first EEG sample, shape (n_volumes,)."""
        return self.volume_samples / self.sfreq

    @property
    def tr(self) -> float:
        return self.samples_per_tr / self.sfreq

    @property
    def first_volume_onset(self) -> float:
        """Seconds from the first EEG sample to the first volume marker."""
        return self.first_volume / self.sfreq


def make_timing(preset: Preset, rng: np.random.Generator) -> RunTiming:
    """Draw the lead-in (EEG before the first volume) and lay out the run."""
    lo, hi = preset.lead_in
    first = int(round(rng.uniform(lo, hi) * preset.sfreq))
    spt = preset.samples_per_tr
    n_samples = first + spt * preset.n_volumes + int(round(preset.lead_out * preset.sfreq))
    return RunTiming(sfreq=preset.sfreq, n_samples=n_samples, first_volume=first, samples_per_tr=spt,
                     n_volumes=preset.n_volumes)


@dataclass
class SourcePower:
    """Slow band power of every latent source on the control grid.

    Attributes
    ----------
    times : ndarray, shape (n,)
        Seconds from the first EEG sample (negative before the recording: simulated history).
    log_power : ndarray, shape (K, n)
        Natural log of each source's power relative to its median.
    events : list of tuple
        Task events ``(onset_s, code)`` inside the recording (code 1 standard, 2 target).
    """

    times: np.ndarray
    log_power: np.ndarray
    events: list[tuple[float, int]] = field(default_factory=list)

    @property
    def power(self) -> np.ndarray:
        """Relative band power, shape (K, n)."""
        return np.exp(self.log_power)

    def amplitude_at(self, t: np.ndarray) -> np.ndarray:
        """Amplitude envelope ``sqrt(power)`` interpolated at times ``t`` (s), shape (K, len(t))."""
        return np.stack([np.exp(0.5 * np.interp(t, self.times, lp)) for lp in self.log_power])

    def mean_power(self, starts: np.ndarray, length: float) -> np.ndarray:
        """Mean relative power over windows ``[start, start + length)``, shape (len(starts), K)."""
        dt = 1.0 / CONTROL_RATE
        n_sub = max(int(round(length / dt)), 1)
        offsets = (np.arange(n_sub) + 0.5) * (length / n_sub)
        t = starts[:, None] + offsets[None, :]  # (V, n_sub)
        p = np.stack([np.exp(np.interp(t, self.times, lp)) for lp in self.log_power])  # (K, V, n_sub)
        return p.mean(axis=2).T


def make_source_power(preset: Preset, timing: RunTiming, rng: np.random.Generator,
                      event_rng: np.random.Generator) -> SourcePower:
    """Slow random log-power of each source plus, for task presets, evoked power bumps after each stimulus."""
    dt = 1.0 / CONTROL_RATE
    duration = timing.n_samples / timing.sfreq
    times = np.arange(-HISTORY_S, duration + 1.0, dt)
    n = times.size
    log_power = np.stack([LOG_POWER_SD * smooth_process(rng, n, dt, POWER_TIMESCALE_S) for _ in preset.bands])
    events: list[tuple[float, int]] = []
    if preset.task_events:
        # oddball paradigm: a stimulus every 2-3 s within the scanned period, 20 % targets
        t = timing.first_volume_onset + event_rng.uniform(2.0, 3.0)
        end = timing.first_volume_onset + timing.n_volumes * timing.tr - 1.0
        while t < end:
            events.append((round(t * timing.sfreq) / timing.sfreq, 2 if event_rng.random() < 0.2 else 1))
            t += event_rng.uniform(2.0, 3.0)
        # targets raise theta and gamma power for about a second (an evoked power increase)
        for onset, code in events:
            if code == 2:
                bump = 0.6 * np.exp(-0.5 * ((times - onset - 0.5) / 0.5) ** 2)
                for k, band in enumerate(preset.bands):
                    if band.name in ("theta", "gamma"):
                        log_power[k] += bump
    return SourcePower(times=times, log_power=log_power, events=events)


def bold_regressors(power: SourcePower, acquisition_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HRF-convolved source power sampled at the volume acquisition times.

    Parameters
    ----------
    power : SourcePower
        Band power on the control grid (which starts ``HISTORY_S`` before the recording).
    acquisition_times : ndarray, shape (V,)
        Time of each volume (s from the first EEG sample), usually onset + TR / 2.

    Returns
    -------
    raw : ndarray, shape (V, K)
        ``(power * hrf)(t_v)``, in relative power units.
    standardised : ndarray, shape (V, K)
        The same, z-scored over the run's volumes (the regressors that modulate BOLD).
    """
    dt = 1.0 / CONTROL_RATE
    hrf = canonical_hrf(dt)
    p = power.power  # (K, n)
    conv = np.stack([np.convolve(pk, hrf)[: pk.size] for pk in p])  # causal: (K, n)
    raw = np.stack([np.interp(acquisition_times, power.times, ck) for ck in conv], axis=1)  # (V, K)
    std = raw.std(axis=0)
    standardised = (raw - raw.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return raw, standardised


# Pink (1/f) noise: Paul Kellet's 3-pole, 4-zero approximation; accurate over ~3 decades below fs/2.
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


def _noise_gain(sos: np.ndarray | None = None, b=None, a=None, n_freqs: int = 1 << 15) -> float:
    """RMS output of a filter for unit-variance white noise: ``sqrt(mean |H(w)|^2)`` over ``[0, pi)`` (Parseval)."""
    if sos is not None:
        _, h = sps.sosfreqz(sos, worN=n_freqs)
    else:
        _, h = sps.freqz(b, a, worN=n_freqs)
    return float(np.sqrt(np.mean(np.abs(h) ** 2)))


class EEGRun:
    """The EEG of one run, generated block by block.

    Parameters
    ----------
    preset : Preset
        Recording settings.
    ch_names : list of str
        EEG electrode names (easycap-M1), without the ECG channel.
    timing : RunTiming
        Samples, lead-in and volume markers.
    power : SourcePower
        Slow band power of each source (and task events).
    patterns : ndarray, shape (C, K)
        Scalp pattern of each source (peak 1).
    seed : int
        Dataset seed.
    keys : tuple of int
        Identify the run (subject, session, task, run) in the random streams.

    Notes
    -----
    Each EEG channel is the sum of: spatially correlated 1/f background (12 uV RMS) and white amplifier noise
    (1 uV); the K band-limited sources, each a band-pass filtered noise carrier scaled by the square root of its
    slowly varying power and projected through its scalp pattern; evoked responses after task stimuli;
    line noise at ``preset.line_freq`` (random amplitude and phase per channel); and, when enabled, a residue of
    the MR gradient artefact locked to the slices of each TR. The optional ECG channel holds a synthetic ECG
    (P-QRS-T waves) at 60-75 beats per minute with beat-to-beat variability.
    """

    BACKGROUND_UV = 12.0
    WHITE_UV = 1.0
    #: the cardiac field on the EEG (ECG picked up by the electrodes), per uV of line-noise amplitude and of ECG
    CARDIAC_FIELD = 0.002

    def __init__(self, preset: Preset, ch_names: list[str], timing: RunTiming, power: SourcePower,
                 patterns: np.ndarray, seed: int, keys: tuple[int, ...]):
        self.preset = preset
        self.ch_names = list(ch_names)
        self.timing = timing
        self.power = power
        self.seed = int(seed)
        self.keys = tuple(int(k) for k in keys)
        sf = preset.sfreq
        self.block = max(int(round(BLOCK_S * sf)), 1)
        n_ch, n_src = len(ch_names), len(preset.bands)
        amps = np.array([b.amplitude_uv for b in preset.bands])
        self.patterns = patterns * amps[None, :]  # (C, K), uV at median power
        self.mixing = spatial_mixing(ch_names)  # (C, C)
        # filters and their states (carried across blocks)
        self.sos = [sps.butter(4, [b.low, b.high], btype="bandpass", fs=sf, output="sos") for b in preset.bands]
        self.sos_gain = np.array([_noise_gain(s) for s in self.sos])
        self.sos_zi = [np.zeros((s.shape[0], 2)) for s in self.sos]
        self.pink_gain = _noise_gain(None, _PINK_B, _PINK_A)
        self.pink_zi = np.zeros((n_ch, max(len(_PINK_A), len(_PINK_B)) - 1))
        # fixed per-run nuisance parameters
        rng = stream_rng(seed, 11, *self.keys)
        self.line_amp = rng.uniform(2.0, 10.0, n_ch)  # uV
        self.line_phase = rng.uniform(0, 2 * np.pi, n_ch)
        self.line_weights = np.stack([self.line_amp * np.cos(self.line_phase),
                                      self.line_amp * np.sin(self.line_phase)], axis=1)  # (C, 2)
        self.grad_amp = rng.uniform(5.0, 25.0, n_ch) if preset.gradient_residue else np.zeros(n_ch)
        self.grad_phase = rng.uniform(0, 2 * np.pi, 3)
        self.erp_pattern = patterns[:, 0] * 0.5 + patterns[:, min(1, n_src - 1)] * 0.5  # centro-parietal-ish
        self.beats = self._ecg_beats(rng) if preset.ecg else np.empty(0)
        self.ecg_amp = rng.uniform(600.0, 1200.0)
        self.n_src = n_src

    # ------------------------------------------------------------------ deterministic components
    @property
    def cardiac_field_weights(self) -> np.ndarray:
        """Weight of the ECG in each EEG channel (the clean EEG carries ``weight x ECG``: the cardiac field)."""
        return self.CARDIAC_FIELD * self.line_amp

    def _ecg_beats(self, rng: np.random.Generator) -> np.ndarray:
        duration = self.timing.n_samples / self.preset.sfreq
        rr_mean = 60.0 / rng.uniform(60.0, 75.0)
        t, beats = rng.uniform(0.0, rr_mean), []
        while t < duration + 1.0:
            beats.append(t)
            t += rr_mean * (1.0 + 0.05 * rng.standard_normal())
        return np.asarray(beats)

    def _ecg(self, t: np.ndarray) -> np.ndarray:
        """Synthetic ECG (uV) at times ``t``: Gaussian P, Q, R, S and T waves around each beat."""
        out = np.zeros_like(t)
        lo = np.searchsorted(self.beats, t[0] - 0.6)
        hi = np.searchsorted(self.beats, t[-1] + 0.4)
        waves = ((-0.16, 0.025, 0.12), (-0.03, 0.008, -0.1), (0.0, 0.010, 1.0), (0.03, 0.008, -0.25),
                 (0.25, 0.040, 0.3))  # (delay s, width s, relative amplitude)
        for beat in self.beats[lo:hi]:
            for delay, width, amp in waves:
                out += amp * np.exp(-0.5 * ((t - beat - delay) / width) ** 2)
        return self.ecg_amp * out

    def _gradient(self, s: np.ndarray) -> np.ndarray:
        """Gradient-artefact residue waveform (unit amplitude) at sample indices ``s``, shape (len(s),)."""
        tm = self.timing
        rel = s - tm.first_volume
        inside = (rel >= 0) & (rel < tm.n_volumes * tm.samples_per_tr)
        slice_period = tm.tr / self.preset.grid[2]
        phase = ((rel % tm.samples_per_tr) / tm.sfreq % slice_period) / slice_period  # [0, 1) within a slice
        w = sum(np.sin(2 * np.pi * h * phase + self.grad_phase[h - 1]) / h for h in (1, 2, 3))
        return np.where(inside, w, 0.0)

    def _erp(self, t: np.ndarray) -> np.ndarray:
        """Evoked response (uV, before the scalp pattern) at times ``t``: N1 and P3 after each stimulus."""
        out = np.zeros_like(t)
        for onset, code in self.power.events:
            if onset > t[-1] + 0.1 or onset < t[0] - 1.0:
                continue
            d = t - onset
            p3 = 8.0 if code == 2 else 2.0
            out += -3.0 * np.exp(-0.5 * ((d - 0.1) / 0.02) ** 2) + p3 * np.exp(-0.5 * ((d - 0.35) / 0.07) ** 2)
        return out

    # ------------------------------------------------------------------ generation
    @property
    def n_blocks(self) -> int:
        return -(-self.timing.n_samples // self.block)

    def iter_blocks(self) -> Iterator[np.ndarray]:
        """Yield the recording as consecutive float32 blocks of shape (C_total, n) in microvolts.

        ``C_total`` is the number of EEG electrodes plus one ECG channel when the preset has one; ``n`` is
        one second of samples except for the last block. Must be consumed in order (filter states carry on).
        """
        sf = self.preset.sfreq
        n_ch = len(self.ch_names)
        for b in range(self.n_blocks):
            s0 = b * self.block
            s = np.arange(s0, min(s0 + self.block, self.timing.n_samples))
            t = s / sf
            n = s.size
            rng = stream_rng(self.seed, 12, *self.keys, b)
            # 1/f background, spatially correlated, plus white amplifier noise        (C, n)
            pink, self.pink_zi = sps.lfilter(_PINK_B, _PINK_A, rng.standard_normal((n_ch, n)), axis=1,
                                             zi=self.pink_zi)
            x = (self.BACKGROUND_UV / self.pink_gain) * (self.mixing @ pink)
            x += self.WHITE_UV * rng.standard_normal((n_ch, n))
            # latent sources: band-limited carriers with slowly varying amplitude    (K, n)
            carriers = np.empty((self.n_src, n))
            white = rng.standard_normal((self.n_src, n))
            for k, sos in enumerate(self.sos):
                carriers[k], self.sos_zi[k] = sps.sosfilt(sos, white[k], zi=self.sos_zi[k])
                carriers[k] /= self.sos_gain[k]
            # every other component is (C x 1 spatial weights) x (1 x n waveform): one matrix product
            weights = [self.patterns]  # (C, K)
            rows = [carriers * self.power.amplitude_at(t)]  # (K, n)
            omega_t = 2 * np.pi * self.preset.line_freq * t
            weights.append(self.line_weights)  # line noise A sin(wt + phi) = A cos(phi) sin(wt) + A sin(phi) cos(wt)
            rows.append(np.stack([np.sin(omega_t), np.cos(omega_t)]))
            if self.power.events:
                weights.append(self.erp_pattern[:, None])
                rows.append(self._erp(t)[None, :])
            if self.preset.gradient_residue:
                weights.append(self.grad_amp[:, None])
                rows.append(self._gradient(s)[None, :])
            if self.preset.ecg:
                ecg = self._ecg(t)
                weights.append(self.cardiac_field_weights[:, None])  # a faint cardiac trace on the EEG
                rows.append(ecg[None, :])
            x += np.hstack(weights) @ np.vstack(rows)
            if self.preset.ecg:
                x = np.vstack([x, ecg[None, :] + self.WHITE_UV * rng.standard_normal((1, n))])
            yield x.astype(np.float32)


# ------------------------------------------------------------------------------------------------ scanner artefacts
#: artefacts the simulator can add to the EEG of an "inside the scanner" recording
ARTEFACTS = ("gradient", "bcg")
#: description of the slice-trigger markers written with the gradient artefact (BrainVision type ``Response``;
#: MNE reads them as ``Response/Slice``)
SLICE_MARKER = "Slice"
#: the amplifier's anti-aliasing low-pass seen by the gradient artefact: cut-off (fraction of the sampling rate) and
#: Butterworth order
ANTIALIAS_CUTOFF, ANTIALIAS_ORDER = 0.2, 5
#: samples per period of the tabulated gradient waveform (linearly interpolated)
_TABLE = 1 << 14


class GradientArtefact:
    """The MR gradient artefact of the EPI acquisition of one run, in microvolts (see the Notes).

    Parameters
    ----------
    preset : Preset
        Recording settings (``grid[2]`` slices per volume, sequential, filling the TR as in ``SliceTiming``).
    n_channels : int
        Channels of the recording (the EEG electrodes and the ECG, which picks up the artefact too).
    timing : RunTiming
        Volume markers of the run.
    rng : numpy.random.Generator
        The run's artefact stream.

    Notes
    -----
    Each of the three gradient axes induces a periodic waveform locked to the slices: a sum of harmonics of the
    slice frequency with random amplitudes (falling as ``1/sqrt(h)``) and phases, seen through the amplifier's
    anti-aliasing filter (Butterworth, order 5, at 0.2 x the sampling rate), with a slowly varying gain (2 %,
    head motion). Every channel mixes the three axes with its own weights; its RMS is 0.3-1.2 mV (millivolts, a
    hundred times the EEG). Timing: the scanner runs on its own clock, which gains 0.2-0.9 samples on the EEG clock
    over the run, and a trigger is logged at the first EEG sample after it arrives. The artefact of volume ``v``
    therefore starts up to one sample *before* its ``R128`` marker, by an amount that changes over the run; the
    slice triggers (``Response/Slice`` markers, one per slice, the first with each ``R128``) have the same
    sub-sample jitter. This is what AAS must align to a fraction of a sample.
    """

    def __init__(self, preset: Preset, n_channels: int, timing: RunTiming, rng: np.random.Generator):
        sf = preset.sfreq
        n_vol, n_slices = timing.n_volumes, int(preset.grid[2])
        self.n_channels, self.n_slices = int(n_channels), n_slices
        self.drift = float(rng.uniform(0.2, 0.9))  # samples gained by the scanner clock over the run
        u0 = float(rng.uniform(self.drift, 1.0))  # the first volume starts u0 samples before its marker
        span = max(n_vol - 1, 1)
        self.volume_period = timing.samples_per_tr + self.drift / span  # samples, on the EEG clock
        self.t0 = timing.first_volume - u0  # true start of the first volume (samples, fractional)
        self.slice_period = self.volume_period / n_slices
        self.end = self.t0 + n_vol * self.volume_period
        f_slice = sf / self.slice_period
        n_harm = max(1, int(0.45 * sf / f_slice))
        h = np.arange(1, n_harm + 1)
        gain = 1.0 / np.sqrt(1.0 + (h * f_slice / (ANTIALIAS_CUTOFF * sf)) ** (2 * ANTIALIAS_ORDER))
        amps = rng.standard_normal((3, n_harm)) / np.sqrt(h) * gain  # (3 axes, H)
        phases = rng.uniform(0, 2 * np.pi, (3, n_harm))
        grid = np.arange(_TABLE) / _TABLE
        table = np.zeros((3, _TABLE + 1))
        for k in range(n_harm):  # one period of each axis' waveform, closed (table[:, -1] == table[:, 0])
            table[:, :-1] += amps[:, k:k + 1] * np.cos(2 * np.pi * h[k] * grid[None, :] + phases[:, k:k + 1])
        table[:, -1] = table[:, 0]
        self.table = table / table[:, :-1].std(axis=1, keepdims=True)  # unit RMS per axis
        weights = rng.standard_normal((self.n_channels, 3))
        self.channel_rms = rng.uniform(300.0, 1200.0, self.n_channels)  # uV
        # the axes have unit RMS and are nearly uncorrelated: unit-norm weights give each channel its RMS
        self.weights = weights / np.linalg.norm(weights, axis=1, keepdims=True) * self.channel_rms[:, None]
        # slow gain of each axis (head motion), on the control grid
        dt = 1.0 / CONTROL_RATE
        n_ctrl = int(timing.n_samples / sf / dt) + 2
        self.gain_t = np.arange(n_ctrl) * dt
        self.gain = 1.0 + 0.02 * np.stack([smooth_process(rng, n_ctrl, dt, 20.0) for _ in range(3)])
        self.f_slice = f_slice

    def slice_markers(self) -> np.ndarray:
        """Sample of each logged slice trigger (the first EEG sample at or after the slice starts)."""
        onsets = self.t0 + np.arange(int(round((self.end - self.t0) / self.slice_period))) * self.slice_period
        return np.ceil(onsets - 1e-9).astype(np.int64)

    def block(self, s: np.ndarray, sfreq: float) -> np.ndarray:
        """The artefact (uV) at sample indices ``s``: ``[n_channels, len(s)]``."""
        s = np.asarray(s, dtype=np.float64)
        inside = (s >= self.t0) & (s < self.end)
        phase = np.mod((s - self.t0) / self.slice_period, 1.0) * _TABLE
        i0 = np.minimum(phase.astype(np.int64), _TABLE - 1)
        w = phase - i0
        wave = self.table[:, i0] * (1.0 - w) + self.table[:, i0 + 1] * w  # (3, n)
        wave *= np.stack([np.interp(s / sfreq, self.gain_t, g) for g in self.gain])
        return (self.weights @ wave) * inside


class PulseArtefact:
    """The pulse (ballistocardiogram, BCG) artefact: head and electrode motion with each heartbeat, in microvolts.

    Parameters
    ----------
    eeg_names : list of str
        EEG electrodes (easycap-M1 names); the ECG channel gets no BCG.
    n_channels : int
        Channels of the recording (the ECG last).
    beats : ndarray
        R-peak times (s) of the run's ECG.
    rng : numpy.random.Generator

    Notes
    -----
    Three components follow each R peak, at 0.20, 0.30 and 0.45 s (Gaussian bumps of 35, 50 and 80 ms); each has
    a smooth scalp map (around T7, T8 and Oz) mixed at random, so channels see different shapes. Each channel's
    BCG peaks at 40-150 uV. Every component's amplitude drifts slowly (10 %, over some thirty beats) and
    varies at random by 5 % from beat to beat, its latency by 2 ms: the shape varies.
    """

    COMPONENTS = ((0.20, 0.035), (0.30, 0.05), (0.45, 0.08))  # (latency s, width s)

    def __init__(self, eeg_names: list[str], n_channels: int, beats: np.ndarray, rng: np.random.Generator):
        k = len(self.COMPONENTS)
        maps = scalp_patterns(list(eeg_names), ["T7", "T8", "Oz"], width_rad=0.7) @ rng.standard_normal((k, k))
        peak = rng.uniform(40.0, 150.0, len(eeg_names))
        maps *= (peak / np.maximum(np.abs(maps).max(axis=1), 1e-12))[:, None]
        self.weights = np.zeros((int(n_channels), k))
        self.weights[: len(eeg_names)] = maps  # (C, K); the ECG row stays 0
        self.beats = np.asarray(beats, dtype=float)
        n_b = self.beats.size
        slow = np.stack([smooth_process(rng, max(n_b, 2), 1.0, 30.0)[:n_b] for _ in range(k)], axis=1)
        self.amp = 1.0 + 0.05 * rng.standard_normal((n_b, k)) + 0.1 * slow  # (beats, K)
        self.lat = np.array([c[0] for c in self.COMPONENTS])[None, :] + 0.002 * rng.standard_normal((n_b, k))
        self.width = np.array([c[1] for c in self.COMPONENTS])
        self.peak_uv = peak

    def block(self, t: np.ndarray) -> np.ndarray:
        """The artefact (uV) at times ``t`` (s): ``[n_channels, len(t)]``."""
        t = np.asarray(t, dtype=float)
        waves = np.zeros((len(self.COMPONENTS), t.size))
        lo = np.searchsorted(self.beats, t[0] - 1.0)
        hi = np.searchsorted(self.beats, t[-1] + 0.1)
        for b in range(lo, hi):
            d = t - self.beats[b]
            near = (d > -0.1) & (d < 1.0)
            if not near.any():
                continue
            for m in range(len(self.COMPONENTS)):
                waves[m, near] += self.amp[b, m] * np.exp(-0.5 * ((d[near] - self.lat[b, m]) / self.width[m]) ** 2)
        return self.weights @ waves
