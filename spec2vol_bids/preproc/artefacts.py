"""MR gradient and pulse (ballistocardiogram, BCG) artefacts of EEG recorded in the scanner: correction and QC.

Pure NumPy/SciPy: arrays in, arrays out; no file I/O, no MNE, no nipype. The correctors are *streams*: they are
fed consecutive blocks of a recording (``push``) and hand back consecutive corrected blocks, so a 5 kHz,
64-channel, 20-minute run is never held in memory; a reading callable drives them in
:func:`correct_stream`.

Gradient artefact: average artefact subtraction (AAS, Allen et al. 2000)
    The recording is cut into epochs at the scanner's triggers (slice triggers when the data have them, else
    volume triggers). Consecutive epochs tile the scanned period: epoch ``i`` runs from trigger ``i`` to trigger
    ``i + 1`` (a spacing longer than 1.5 x the median is a gap: only the median spacing after the trigger is
    corrected). For every epoch a template is the mean of its ``n_neighbours`` nearest epochs (half before, half
    after, itself excluded; shifted inwards at the ends of the run) and is subtracted.

    Sub-sample alignment: a trigger is logged on the EEG sample clock, so the true start of the artefact lies up
    to a sample before the logged one and differs from epoch to epoch. Each epoch is read with a margin
    (``pad`` samples on each side, chosen so that the segment holds a whole number of trigger periods and wraps
    round smoothly; none when the triggers are exactly a whole number of samples apart, as with synchronised
    clocks: the epoch is one period, at half the cost) and Fourier transformed; its delay ``delta`` (in samples,
    a fraction) against a reference (the mean of the first epochs) is the maximum of the cross-spectrum
    ``sum_c X_c conj(R_c)`` evaluated on a fine grid of delays and refined by a parabola. Epochs are averaged after
    the phase ramp ``exp(+2 pi i k delta / n)`` has moved them onto the reference, and the template is moved back
    onto the epoch (``exp(-2 pi i k delta / n)``) before it is subtracted. Only the template is resampled; the data are
    never interpolated.

    Optional residual removal by PCA, the optimal basis set of Niazy et al. (2005): the AAS residuals of each
    channel over a block of epochs (at least ``OBS_MIN_EPOCHS``) are decomposed and their first
    ``obs_components`` principal components are fitted to every epoch and subtracted. Niazy et al. compute one
    basis per channel over the whole run; here the basis is local to the block of epochs (bounded memory; it
    follows slow changes of the artefact).

    The template keeps no frequency below half the trigger frequency: a periodic artefact has no power there,
    while the neighbouring epochs' slow EEG does, and subtracting it would high-pass the EEG (about -1 dB of
    residual below 40 Hz on simulated data with slice triggers).

    Then a zero-phase low-pass (:class:`FIRFilter`, a linear-phase windowed-sinc FIR applied with its delay
    compensated) removes what is left above the EEG band.

Pulse artefact (BCG)
    R peaks found on the ECG (by MNE, outside this module: :mod:`spec2vol_bids.pipeline.artefacts`; the beats it
    missed are recovered here by :func:`search_back`) define beat epochs that tile the recording: beat ``k`` runs
    from ``pre`` seconds before its R peak to ``pre`` before the next one. The template of a beat is the mean, lag
    by lag from the start of the epoch, of its ``n_neighbours`` nearest beats (itself excluded) over the lags they
    cover (R-R intervals vary), and is subtracted from the EEG channels (the ECG channel itself is left as it is).

    The mean of ``n`` beats also carries ``1/sqrt(n)`` of their EEG, which the subtraction adds to every beat.
    The artefact itself, made by a few head movements, lives in a few spatio-temporal components (channels x
    lags); optionally (``template_rank``) the template keeps only those above the noise floor given by the +/-
    average of the same beats (alternating signs cancel the artefact and leave the EEG at the level it has in the
    mean: Schimmel 1967). On simulated data this gained 0.001-0.004 of spectrogram correlation with the clean EEG
    without its cardiac field, which it leaves partly in the EEG (``experiments/bcg_residual.py``).

QC
    :class:`WelchPSD` accumulates a Welch power spectrum over the stream; :func:`harmonic_power` sums it at the
    harmonics of the slice (or volume) frequency and compares it with the bins between the harmonics;
    :class:`LockedAverage` averages epochs locked to events (the R peaks) and :func:`locked_power` gives the power
    of that average and its ratio to the averaging noise. :func:`artefact_flags` turns them into "artefact
    present" decisions (thresholds :data:`GRADIENT_RATIO_DB`, :data:`CARDIAC_RATIO_DB`, :data:`CARDIAC_POWER_DB`).

Units: whatever the caller passes (the pipeline uses microvolts); powers in dB are ``10 log10`` of that unit
squared.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, UsageError

__all__ = [
    "EpochLayout",
    "epoch_layout",
    "window_bounds",
    "segment_geometry",
    "GradientAAS",
    "BCGSubtraction",
    "FIRFilter",
    "lowpass_filter",
    "correct_stream",
    "obs_fit",
    "search_back",
    "WelchPSD",
    "harmonic_power",
    "LockedAverage",
    "locked_power",
    "artefact_flags",
    "GRADIENT_RATIO_DB",
    "CARDIAC_RATIO_DB",
    "CARDIAC_POWER_DB",
    "LINE_FREQUENCIES",
]

#: a trigger spacing longer than this many median spacings is a gap (only the median spacing is corrected)
MAX_GAP = 1.5
#: smallest margin (samples) read on each side of an epoch for the sub-sample shift
MIN_PAD = 8
#: epochs longer than this (samples) get a fixed margin instead of a whole number of periods
LONG_EPOCH = 1024
#: margin (samples) of long epochs (volume triggers)
LONG_PAD = 64
#: step (samples) of the coarse grid of delays searched by the sub-sample alignment
SHIFT_STEP = 0.05
#: corrected samples are handed back in pieces of at most this many values (2 MB of float32)
PIECE_VALUES = 1 << 19
#: fewest epochs of one channel the local optimal basis set is computed from
OBS_MIN_EPOCHS = 64
#: a beat epoch starts this fraction of the median R-R interval before its R peak: enough for the QRS (the cardiac
#: field) up to 120 beats per minute, and the rest of the interval for the pulse artefact, which follows the R peak
#: by 0.1-0.7 s (a quarter of the interval cut its tail at 75-80 beats per minute: 0.90 instead of 0.94 spectrogram
#: correlation on such a simulated run, ``experiments/bcg_residual.py``)
BCG_PRE_FRACTION = 0.1
#: an R-R interval longer than this many median intervals holds a missed beat (Pan & Tompkins 1985: 1.66)
SEARCH_BACK_RR = 1.66
#: a missed beat is accepted at a peak of at least this fraction of the median R amplitude (Pan & Tompkins: the
#: lower of their two thresholds, half the signal threshold)
SEARCH_BACK_AMPLITUDE = 0.5
#: fewest neighbouring beats from which the auto rank of a pulse template is chosen (else the whole average)
AUTO_RANK_MIN_BEATS = 8
#: harmonics of the artefact frequency closer than this (Hz) to a multiple of a mains frequency are not used by
#: the QC (line noise is not gradient artefact)
LINE_TOLERANCE = 1.0
#: mains frequencies whose harmonics the QC skips
LINE_FREQUENCIES = (50.0, 60.0)
#: gradient artefact "present" when the median (over channels) power at the harmonics exceeds the power between
#: them by more than this (dB)
GRADIENT_RATIO_DB = 10.0
#: cardiac artefact "present" when the median (over channels) R-peak-locked average is above the averaging noise
#: by more than this (dB) ...
CARDIAC_RATIO_DB = 6.0
#: ... and its mean square is above this (dB re 1 unit^2; 20 dB re 1 uV^2 = 10 uV RMS)
CARDIAC_POWER_DB = 20.0


# ------------------------------------------------------------------------------------------------ epochs
@dataclass(frozen=True)
class EpochLayout:
    """Where the epochs of a trigger-locked artefact lie in a recording.

    Attributes
    ----------
    starts : ndarray of int64, shape (n_epochs,)
        First sample of each epoch (the trigger).
    lengths : ndarray of int64, shape (n_epochs,)
        Samples corrected in each epoch: up to the next trigger, or the median spacing after a gap or at the end.
    length : int
        Longest epoch (the template length).
    period : float
        Median spacing of the triggers in samples.
    """

    starts: np.ndarray
    lengths: np.ndarray
    length: int
    period: float

    @property
    def n_epochs(self) -> int:
        return int(self.starts.size)

    @property
    def exact(self) -> bool:
        """Whether the triggers are a whole number of samples apart, the same everywhere (gaps aside): the
        artefact repeats every ``length`` samples exactly, as when the scanner's clock is synchronised with the
        amplifier's."""
        spacing = np.diff(self.starts)
        regular = spacing[spacing <= self.lengths[:-1]]  # gaps left out
        return bool(regular.size) and bool(np.all(regular == self.length))

    @property
    def gaps(self) -> int:
        """Number of spacings longer than ``MAX_GAP`` x the median (left partly uncorrected)."""
        spacing = np.diff(self.starts)
        return int(np.count_nonzero(spacing > self.lengths[:-1])) if spacing.size else 0


def epoch_layout(triggers, n_samples: int, *, what: str = "triggers") -> EpochLayout:
    """Epochs that tile the recording from trigger to trigger (see the module docstring).

    Parameters
    ----------
    triggers : array-like of int
        Trigger samples (sorted or not; duplicates are merged). Triggers outside ``[0, n_samples)`` are dropped.
    n_samples : int
        Samples in the recording.
    what : str
        Name of the triggers in error messages.

    Raises
    ------
    DataError
        Fewer than 2 triggers inside the recording.
    """
    t = np.unique(np.asarray(triggers, dtype=np.int64))
    t = t[(t >= 0) & (t < int(n_samples))]
    if t.size < 2:
        raise DataError(f"{t.size} {what} inside the recording; artefact correction needs at least 2",
                        hint="Check the trigger markers of the recording (--volume-marker, --slice-marker)")
    spacing = np.diff(t)
    period = float(np.median(spacing))
    typical = int(math.ceil(period))
    lengths = np.where(spacing <= MAX_GAP * period, spacing, typical)
    last = min(typical, int(n_samples) - int(t[-1]))
    lengths = np.append(lengths, last).astype(np.int64)
    return EpochLayout(starts=t, lengths=lengths, length=int(lengths.max()), period=period)


def window_bounds(n_epochs: int, n_neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last epoch of the sliding window of every epoch (the epoch itself included).

    The window holds ``n_neighbours + 1`` epochs centred on the epoch, shifted inwards at the ends of the run (and
    all epochs when there are fewer).
    """
    if n_neighbours < 1:
        raise UsageError(f"the sliding template needs at least 1 neighbouring epoch (got {n_neighbours})")
    size = min(int(n_neighbours) + 1, int(n_epochs))
    e = np.arange(n_epochs)
    lo = np.clip(e - int(n_neighbours) // 2, 0, int(n_epochs) - size)
    return lo.astype(np.int64), (lo + size).astype(np.int64)


def segment_geometry(length: int, period: float, *, exact: bool = False) -> tuple[int, int]:
    """``(pad, n)`` of the Fourier segments of epochs of ``length`` samples with a trigger ``period``.

    ``exact`` triggers (:attr:`EpochLayout.exact`: the artefact repeats every ``length`` samples): one period,
    the epoch itself (``pad = 0``), which wraps round smoothly. Otherwise, short epochs (slices): ``n`` is the
    whole number of periods closest above ``length + 2 * MIN_PAD`` (so the periodic artefact wraps round
    smoothly, the fraction of a sample by which ``n`` misses a whole number of periods in the margin) and
    ``pad = (n - length) // 2``; long epochs (volumes) get ``pad = LONG_PAD``.
    """
    if exact:
        return 0, int(length)
    if length > LONG_EPOCH:
        return LONG_PAD, length + 2 * LONG_PAD
    k = max(1, math.ceil((length + 2 * MIN_PAD) / period - 1e-9))
    n = int(round(k * period))
    while n < length + 2 * MIN_PAD:
        k += 1
        n = int(round(k * period))
    return (n - length) // 2, n


# ------------------------------------------------------------------------------------------------ streams
def consecutive(picks) -> slice | np.ndarray:
    """Channel indices as a slice when they are consecutive and ascending (rows taken as a view of a block, not
    gathered into a copy), else as an index array."""
    picks = np.asarray(picks, dtype=np.int64)
    if picks.size and np.array_equal(picks, np.arange(picks[0], picks[0] + picks.size)):
        return slice(int(picks[0]), int(picks[0]) + picks.size)
    return picks


class SampleBuffer:
    """The recent samples ``[C, n]`` of a stream: appended at the end, dropped at the front.

    They live in one preallocated array: an append copies only the new block (concatenating would copy what is
    kept every time), and what is kept moves to the front when the space at the end runs out. When the array must
    grow, it is made large enough for what is kept and the block, and a quarter as much again (at least one more
    block), so that moves are a few blocks apart; it never shrinks (a smaller copy would briefly need both).
    ``reserve`` (samples kept at most) sizes it from the start, so that a stream that knows how many samples it
    keeps never grows it (growing briefly holds two arrays).

    Attributes
    ----------
    start : int
        Stream sample of ``data[:, 0]``.
    """

    def __init__(self, n_channels: int, dtype=np.float32, *, reserve: int = 0):
        self.store = np.empty((int(n_channels), 0), dtype=dtype)
        self.reserve = int(reserve)
        self.a = self.b = 0  # data = store[:, a:b]
        self.start = 0

    @property
    def data(self) -> np.ndarray:
        """The samples kept (a view: valid until the next :meth:`append`)."""
        return self.store[:, self.a:self.b]

    @property
    def end(self) -> int:
        """Stream sample one past the last one appended."""
        return self.start + self.b - self.a

    def append(self, block: np.ndarray) -> None:
        n, kept = block.shape[1], self.b - self.a
        if self.b + n > self.store.shape[1]:
            need = kept + n
            if need > self.store.shape[1]:  # grow
                base = max(need, self.reserve + n)
                size = base + max(n, base // 4)  # room for a few more blocks before the next move
                store = np.empty((self.store.shape[0], size), self.store.dtype)
                store[:, :kept] = self.data
                self.store = store
            else:  # move what is kept to the front, in pieces that do not overlap (numpy would copy twice); a > 0
                for i in range(0, kept, self.a):  # here, since kept + n fits the array and b + n does not
                    j = min(i + self.a, kept)
                    self.store[:, i:j] = self.store[:, self.a + i:self.a + j]
            self.a, self.b = 0, kept
        self.store[:, self.b:self.b + n] = block
        self.b += n

    def drop_before(self, sample: int) -> None:
        """Forget the samples before stream sample ``sample``."""
        cut = min(max(int(sample) - self.start, 0), self.b - self.a)
        self.a += cut
        self.start += cut


class _EpochStream(ABC):
    """Shared machinery of the epoch-locked correctors: a sample buffer, features and sliding-window templates.

    Subclasses implement ``_features(first, stop)`` (one feature per epoch of consecutive epochs, e.g. from their
    padded segments ``[E, C_picks, seg_len]``, :meth:`_segments`), ``_templates(epochs)`` (the templates of
    consecutive epochs, each from the features of its window ``lo[e]:hi[e]``, in samples: ``[E, C_picks, >=
    length]`` or a list of ``[C_picks, >= length of the epoch]``, epoch ``e``'s first sample at index 0, as
    ``_subtract`` takes them), and the running window sum that :meth:`_slide_to` moves:
    ``_reset(first)`` and ``_add(j, sign)``.

    Memory: the buffer (:class:`SampleBuffer`, sized from the layout for a window of epochs) holds the samples
    from the first one not handed back (:meth:`_keep_from`; or the first padded segment not yet transformed) to the
    end of the last block pushed, i.e. about ``n_neighbours / 2`` epochs plus one block; the features of one window
    of epochs are kept (the pulse stream's are copies of its beats, and its buffer keeps only what they miss).
    """

    #: templates are made only when this many epochs are ready (or at the end of the recording)
    min_batch = 1

    def __init__(self, layout: EpochLayout, n_samples: int, n_channels: int, *, n_neighbours: int, pad: int,
                 seg_len: int, picks=None):
        self.layout = layout
        self.n_samples = int(n_samples)
        self.n_channels = int(n_channels)
        self.picks = np.arange(n_channels) if picks is None else np.asarray(picks, dtype=np.int64)
        self.pad, self.seg_len = int(pad), int(seg_len)
        self.lo, self.hi = window_bounds(layout.n_epochs, n_neighbours)
        # float32 samples, as recorded: half the memory
        self.samples = SampleBuffer(self.n_channels, np.float32, reserve=self._reserve())
        self.received = 0
        self.next_feat = 0  # first epoch without a feature
        self.next_out = 0  # first epoch not yet corrected
        self.emitted = 0  # samples handed back so far
        self.features: dict[int, object] = {}
        self.win = (0, 0)  # epochs currently in the running sum (:meth:`_slide_to`)
        self.moved = 0  # epochs it has dropped since it was made from scratch
        # the corrected channels: a slice when they are all of them (in-place subtraction without a copy)
        self.rows = consecutive(self.picks)

    @property
    def buf(self) -> np.ndarray:
        """The samples kept ``[C, n]`` (the gradient stream corrects them in place, the pulse stream keeps them as
        recorded)."""
        return self.samples.data

    @property
    def buf0(self) -> int:
        """Sample index of ``buf[:, 0]``."""
        return self.samples.start

    def _reserve(self) -> int:
        """The most samples the buffer holds (but a block or two): from the pad before an epoch not yet corrected
        to the end of the padded segment of the last epoch of its window."""
        lay = self.layout
        span = lay.starts[self.hi - 1] + self.seg_len - lay.starts if lay.n_epochs else np.zeros(1)
        return int(span.max()) + self.pad

    def _batch(self) -> int:
        """Epochs transformed or corrected together: about 2 MB of float32 segments (at least 1)."""
        return max(1, (1 << 19) // (self.picks.size * self.seg_len))

    def _seg_bounds(self, j: int) -> tuple[int, int]:
        start = int(self.layout.starts[j]) - self.pad
        return start, start + self.seg_len

    def push(self, block: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Feed the next ``block[C, n]`` of the recording; returns corrected ``(first_sample, block)`` pieces (new
        float32 arrays)."""
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[0] != self.n_channels:
            raise UsageError(f"expected a block of shape ({self.n_channels}, n), got {block.shape}")
        if self.received + block.shape[1] > self.n_samples:
            raise UsageError("more samples pushed than the recording has")
        self.samples.append(block)
        self.received += block.shape[1]
        return self._advance(final=self.received == self.n_samples)

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """Correct and hand back what is left (every sample must have been pushed)."""
        if self.received != self.n_samples:
            raise UsageError(f"only {self.received} of {self.n_samples} samples were pushed")
        return self._advance(final=True)

    def _segments(self, first: int, last: int, dtype=np.float32) -> np.ndarray:
        """Padded segments ``[last - first, C_picks, seg_len]`` of epochs ``first..last-1`` (zeros outside the
        data), in ``dtype``."""
        starts = self.layout.starts[first:last] - self.pad - self.buf0
        width = self.buf.shape[1]
        if starts.size and starts[0] >= 0 and starts[-1] + self.seg_len <= width:  # all inside: one gather
            windows = np.lib.stride_tricks.sliding_window_view(self.buf, self.seg_len, axis=1)  # [C, n, seg_len]
            if isinstance(self.rows, slice):
                taken = windows[self.rows, starts]  # [C, E, seg_len]
            else:
                taken = windows[self.rows[:, None], starts[None, :]]
            return np.ascontiguousarray(taken.transpose(1, 0, 2), dtype=dtype)
        out = np.zeros((last - first, self.picks.size, self.seg_len), dtype=dtype)
        for i, a in enumerate(starts.tolist()):
            a0, b0 = max(a, 0), min(a + self.seg_len, width)
            if b0 > a0:
                out[i, :, a0 - a:b0 - a] = self.buf[self.rows, a0:b0]
        return out

    def _subtract(self, epochs: Sequence[int], templates: np.ndarray) -> None:
        """Subtract ``templates[i, :, :lengths[e]]`` from the buffer at epoch ``e = epochs[i]``'s samples (in place).

        Epochs that follow each other without a gap are done in one operation per run of epochs of one length.
        """
        lay = self.layout
        e = np.asarray(epochs, dtype=np.int64)
        starts, lengths = lay.starts[e] - self.buf0, lay.lengths[e]
        # runs of consecutive epochs of one length that tile the samples (start + length = next start)
        breaks = np.flatnonzero((starts[1:] != starts[:-1] + lengths[:-1]) | (lengths[1:] != lengths[:-1])) + 1
        bounds = np.concatenate([[0], breaks, [e.size]]).tolist()
        for i, j in zip(bounds[:-1], bounds[1:]):
            a, ln = int(starts[i]), int(lengths[i])
            target = self.buf[self.rows, a:a + (j - i) * ln]  # a view when the rows are a slice
            view = target.view()
            view.shape = (target.shape[0], j - i, ln)  # never a copy (raises instead)
            view -= templates[i:j, :, :ln].transpose(1, 0, 2)
            if not isinstance(self.rows, slice):
                self.buf[self.rows, a:a + (j - i) * ln] = target

    def _advance(self, *, final: bool) -> list[tuple[int, np.ndarray]]:
        lay = self.layout
        n = lay.n_epochs
        end = self.buf0 + self.buf.shape[1]
        # 1. features of every epoch whose padded segment is in the buffer (or past the end of the data)
        last = self.next_feat
        while last < n and (final or self._seg_bounds(last)[1] <= end):
            last += 1
        batch = self._batch()
        for first in range(self.next_feat, last, batch):  # bounded temporaries: a few MB of epochs at a time
            stop = min(first + batch, last)
            for i, feature in enumerate(self._features(first, stop)):
                self.features[first + i] = feature
        self.next_feat = max(self.next_feat, last)
        # 2. templates of every epoch whose whole window has features, subtracted in place
        stop = self.next_out
        while stop < n and self.hi[stop] <= self.next_feat:
            stop += 1
        if stop > self.next_out and (final or stop == n or stop - self.next_out >= self.min_batch):
            for first in range(self.next_out, stop, max(batch, self.min_batch)):
                ready = list(range(first, min(first + max(batch, self.min_batch), stop)))
                self._subtract(ready, self._templates(ready))
            self.next_out = stop
        # 3. hand back everything before the next epoch to correct; keep what pending segments still need
        done_to = self.n_samples if self.next_out >= n else int(lay.starts[self.next_out])
        done_to = min(done_to, end)
        pieces = []
        step = max(1, PIECE_VALUES // self.n_channels)  # pieces of a few MB, however far the stream advanced
        while done_to > self.emitted:
            stop = min(done_to, self.emitted + step)
            pieces.append((self.emitted, self._piece(self.emitted, stop)))
            self.emitted = stop
        if self.next_out:  # features before the last window used are no longer needed
            floor = int(self.lo[self.next_out - 1])
            for j in [j for j in self.features if j < floor]:
                del self.features[j]
        keep = self._keep_from()
        if self.next_feat < n:
            keep = min(keep, self._seg_bounds(self.next_feat)[0])
        self.samples.drop_before(keep)
        return pieces

    def _slide_to(self, e: int) -> None:
        """Move the running sum onto the window of epoch ``e`` (windows only move forwards): the epochs that enter
        are added, those that leave subtracted.

        The sum is kept in the samples' precision (single: half the cost of converting to double on every
        addition); it is made again from the window's features whenever the window has moved by its own length,
        so that its rounding never builds up beyond that of two windows of additions."""
        lo, hi = int(self.lo[e]), int(self.hi[e])
        wlo, whi = self.win
        if whi <= lo or whi == wlo or self.moved >= hi - lo:  # nothing in common (the first window), or renewed
            self._reset(lo)
            wlo = whi = lo
            self.moved = 0
        for j in range(whi, hi):
            self._add(j, +1)
        for j in range(wlo, lo):
            self._add(j, -1)
        self.moved += lo - wlo
        self.win = (lo, hi)

    def _piece(self, a: int, b: int) -> np.ndarray:
        """The corrected samples ``a:b`` handed back (a copy: the buffer's space is used again)."""
        return self.buf[:, a - self.buf0:b - self.buf0].copy()

    def _keep_from(self) -> int:
        """First sample the buffer must keep besides the segments not yet transformed: the first one not handed
        back."""
        return self.emitted

    # -- provided by subclasses
    @abstractmethod
    def _features(self, first, stop):
        ...

    @abstractmethod
    def _templates(self, epochs):
        ...

    @abstractmethod
    def _reset(self, first: int):
        """An empty running sum (its window starts at epoch ``first``)."""

    @abstractmethod
    def _add(self, j: int, sign: int):
        """Add (``sign`` +1) or subtract (-1) epoch ``j`` to the running sum."""


class GradientAAS(_EpochStream):
    """Average artefact subtraction of the MR gradient artefact, streamed (see the module docstring).

    Parameters
    ----------
    layout : EpochLayout
        Epochs at the slice or volume triggers (:func:`epoch_layout`).
    n_samples, n_channels : int
        Size of the recording fed with :meth:`push`.
    n_neighbours : int
        Epochs averaged into each template (default 30, half before and half after).
    align : bool
        Sub-sample alignment of the epochs (default True).
    max_shift : float
        Largest delay searched by the alignment, in samples (default 2).
    obs_components : int
        Principal components of the AAS residuals fitted and subtracted per channel (0: none, the default).
    picks : array-like of int, optional
        Channels to correct (default all); the others are passed through.

    Attributes
    ----------
    delays : dict of int to float
        The sub-sample delay found for every epoch (samples).
    """

    def __init__(self, layout: EpochLayout, n_samples: int, n_channels: int, *, n_neighbours: int = 30,
                 align: bool = True, max_shift: float = 2.0, obs_components: int = 0, picks=None):
        pad, seg_len = segment_geometry(layout.length, layout.period, exact=layout.exact)
        super().__init__(layout, n_samples, n_channels, n_neighbours=n_neighbours, pad=pad, seg_len=seg_len,
                         picks=picks)
        if obs_components < 0:
            raise UsageError(f"obs_components must be 0 or more (got {obs_components})")
        self.align, self.max_shift, self.obs = bool(align), float(max_shift), int(obs_components)
        if self.obs:
            self.min_batch = max(OBS_MIN_EPOCHS, 4 * self.obs)
        self.k = np.arange(seg_len // 2 + 1)  # rFFT bin indices
        # a periodic artefact has no power below its trigger frequency f0: template bins below f0 / 2 hold only
        # the slow EEG of the neighbouring epochs, which subtracting would remove from the data (a high-pass)
        self.keep = self.k >= 0.5 * seg_len / layout.period
        self.reference_conj: np.ndarray | None = None  # conj of the mean spectrum of the first epochs
        self.n_ref = min(int(n_neighbours) + 1, layout.n_epochs)
        self.pending: list[np.ndarray] = []  # spectra of the first epochs, waiting for the reference
        self.sum: np.ndarray | None = None  # of the aligned spectra of the window self.win
        self.delays: dict[int, float] = {}
        self.grid = np.arange(-self.max_shift, self.max_shift + SHIFT_STEP / 2, SHIFT_STEP)
        self.grid_phase = np.exp(2j * np.pi * np.outer(self.grid, self.k) / self.seg_len)  # [n_grid, F]

    def _phase(self, delays: np.ndarray) -> np.ndarray:
        """``exp(2 pi i k d / n)`` of every delay: ``[len(d), F]`` complex64 (from double-precision angles; a
        cosine and a sine cost a fraction of a complex exponential)."""
        angle = (2.0 * np.pi / self.seg_len) * np.outer(delays, self.k)
        out = np.empty(angle.shape, np.complex64)
        out.real, out.imag = np.cos(angle), np.sin(angle)
        return out

    def _delays(self, spectra: np.ndarray) -> np.ndarray:
        if not self.align:
            return np.zeros(spectra.shape[0])
        cross = (spectra * self.reference_conj[None]).sum(axis=1).astype(np.complex128)  # [E, F]
        cross[:, 1:] *= 2.0  # one-sided spectrum of a real signal
        scores = cross.real @ self.grid_phase.real.T - cross.imag @ self.grid_phase.imag.T  # Re(cross @ phase.T)
        best = np.clip(scores.argmax(axis=1), 1, self.grid.size - 2)
        rows = np.arange(scores.shape[0])
        y0, y1, y2 = scores[rows, best - 1], scores[rows, best], scores[rows, best + 1]
        denom = y0 - 2 * y1 + y2
        safe = np.where(denom < 0, denom, -1.0)
        offset = np.where(denom < 0, 0.5 * (y0 - y2) / safe, 0.0)
        return self.grid[best] + np.clip(offset, -1.0, 1.0) * SHIFT_STEP

    def _features(self, first, stop):
        from scipy import fft as sp_fft

        # single precision (as recorded), the transforms and the running sums: the artefact's few mV are kept to
        # about 1e-3 uV (the benchmark run's output is within 0.0011 uV of double-precision sums), at half the cost
        spectra = sp_fft.rfft(self._segments(first, stop), axis=-1)  # [E, C, F] complex64
        if self.reference_conj is None:
            self.pending.append(spectra)
            waiting = sum(len(s) for s in self.pending)
            if waiting < self.n_ref and first + len(spectra) < self.layout.n_epochs:
                return []
            spectra = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
            self.pending = []
            reference = spectra[: self.n_ref].astype(np.complex128).mean(axis=0)
            self.reference_conj = np.conj(reference).astype(spectra.dtype)
        start = stop - len(spectra)  # the epochs that waited for the reference come first
        d = self._delays(spectra)
        self.delays.update(zip(range(start, stop), d.tolist()))
        spectra *= self._phase(d)[:, None, :]  # aligned onto the reference
        rows = list(spectra.reshape(len(spectra), -1))  # one row [C * F] per epoch
        for j in range(start, first):
            self.features[j] = rows[j - start]
        return rows[first - start:]

    def _reset(self, first):
        self.sum = np.zeros(self.features[first].shape, np.complex64)

    def _add(self, j, sign):
        if sign > 0:
            self.sum += self.features[j]
        else:
            self.sum -= self.features[j]

    def _templates(self, epochs):
        """The mean of the aligned neighbours of every epoch (the running sum of its window, the epoch itself left
        out), moved onto the epoch, in samples."""
        e = np.asarray(epochs, dtype=np.int64)
        lo, hi = self.lo[e], self.hi[e]
        templates = np.empty((e.size, self.picks.size * self.k.size), np.complex64)
        for i, j in enumerate(e.tolist()):
            self._slide_to(j)
            np.subtract(self.sum, self.features[j], out=templates[i])  # not the epoch itself
        count = np.maximum(hi - lo - 1, 1).astype(np.float64)
        delays = np.array([self.delays[int(j)] for j in e])
        factor = self._phase(-delays) * (self.keep / count[:, None]).astype(np.float32)
        templates = templates.reshape(e.size, self.picks.size, -1)  # [E, C, F]
        templates *= factor[:, None, :]
        return self._to_time(epochs, templates)

    def _to_time(self, epochs, templates):
        from scipy import fft as sp_fft

        out = sp_fft.irfft(templates, n=self.seg_len, axis=-1)[..., self.pad:self.pad + self.layout.length]
        if self.obs and len(epochs) >= max(OBS_MIN_EPOCHS, 4 * self.obs):
            lay = self.layout
            resid = np.zeros_like(out)  # AAS residual of every epoch [E, C, length]
            for i, e in enumerate(epochs):
                a = int(lay.starts[e]) - self.buf0
                seg = self.buf[self.rows, a:a + lay.length]
                resid[i, :, :seg.shape[1]] = seg - out[i, :, :seg.shape[1]]
            for c in range(resid.shape[1]):
                out[:, c, :] += obs_fit(resid[:, c, :], self.obs)
        return out


class BCGSubtraction(_EpochStream):
    """Sliding-average subtraction of the pulse (BCG) artefact locked to the R peaks, streamed.

    The template of a beat is a running sum over its window (beats are added when they enter and subtracted when
    they leave, from a copy of each beat made when it arrives). The buffer keeps the samples as recorded until they
    are handed back, and the templates are subtracted from the pieces handed back.

    Parameters
    ----------
    r_peaks : array-like of int
        R-peak samples.
    n_samples, n_channels : int
        Size of the recording fed with :meth:`push`.
    sfreq : float
        Sampling frequency (Hz).
    picks : array-like of int
        Channels to correct (the EEG channels; not the ECG).
    n_neighbours : int
        Beats averaged into each template (default 20, half before and half after).
    pre : float or None
        Seconds before the R peak where a beat epoch starts (default: :data:`BCG_PRE_FRACTION` of the median R-R
        interval).
    obs_components : int
        Optimal basis set instead of the plain average: the neighbours' mean and their first ``obs_components``
        principal components (per channel) are fitted to the beat by least squares (0: the sliding average).
    template_rank : int or None
        With the sliding average: keep this many spatio-temporal components of each template (SVD over channels x
        lags, over the lags every beat of the window has); ``None`` (auto) keeps those above the noise floor of
        the window's +/- average (:meth:`_low_rank`); 0 (default) keeps the whole average. :attr:`ranks` lists
        the ranks used.
    """

    def __init__(self, r_peaks, n_samples: int, n_channels: int, sfreq: float, *, picks,
                 n_neighbours: int = 20, pre: float | None = None, obs_components: int = 0,
                 template_rank: int | None = 0):
        r = np.unique(np.asarray(r_peaks, dtype=np.int64))
        if r.size < 3:
            raise DataError(f"{r.size} R peaks; the pulse-artefact correction needs at least 3",
                            hint="Check the ECG channel (--ecg-channel) or use --eeg-correction gradient")
        rr = float(np.median(np.diff(r)))
        shift = int(round(BCG_PRE_FRACTION * rr if pre is None else pre * float(sfreq)))
        layout = epoch_layout(r - shift, n_samples, what="R peaks")
        super().__init__(layout, n_samples, n_channels, n_neighbours=n_neighbours, pad=0, seg_len=layout.length,
                         picks=picks)
        self.pre_samples = shift
        self.obs = int(obs_components)
        self.rank = None if template_rank is None else int(template_rank)
        self.ranks: list[int] = []
        self.lag_step = max(1, int(float(sfreq) // 500))
        self.sum = None
        self.alt = None  # the +/- sum of the window (beat j with sign (-1)^j): its noise, without the artefact
        self.count = None
        # every beat's samples as recorded are copied once, as its feature, for the running sum (which subtracts them
        # again when the beat leaves the window); the buffer keeps them as recorded too, until handed back: the
        # templates of the corrected beats are subtracted from the pieces handed back
        self.corrected: dict[int, np.ndarray] = {}  # epoch -> template [C_picks, length], until handed back
        self.other_rows = np.setdiff1d(np.arange(self.n_channels), self.picks)
        # the samples in no beat: [between[0][i], between[1][i]) (before the first beat, gaps, after the last)
        ends = layout.starts + layout.lengths
        lo = np.concatenate([[0], ends])
        hi = np.concatenate([layout.starts, [n_samples]])
        self.between = (lo[hi > lo], hi[hi > lo])

    def _templates(self, epochs):
        out = []
        for e in epochs:
            self._slide_to(e)
            out.append(self._template(e))
        return out  # [C_picks, >= length of the beat] each

    def _subtract(self, epochs, templates) -> None:
        for i, e in enumerate(epochs):
            self.corrected[e] = templates[i][:, :int(self.layout.lengths[e])].astype(np.float32, copy=False)

    def _piece(self, a: int, b: int) -> np.ndarray:
        """Samples ``a:b`` handed back: those of the beats from their copies, less their templates (the other
        channels as they are), those between beats from the buffer."""
        lay = self.layout
        out = np.empty((self.n_channels, b - a), np.float32)
        cursor = a  # samples before it are filled
        j = max(int(np.searchsorted(lay.starts, a, side="right")) - 1, 0)
        while j < lay.n_epochs and int(lay.starts[j]) < b:
            s0 = int(lay.starts[j])
            lo, hi = max(s0, a), min(s0 + int(lay.lengths[j]), b)
            if lo < hi:
                if lo > cursor:  # between beats
                    out[:, cursor - a:lo - a] = self.buf[:, cursor - self.buf0:lo - self.buf0]
                eeg, other = self.features[j]
                beat, template = eeg[:, lo - s0:hi - s0], self.corrected[j][:, lo - s0:hi - s0]
                if isinstance(self.rows, slice):  # into the output, no temporary
                    np.subtract(beat, template, out=out[self.rows, lo - a:hi - a])
                else:
                    out[self.rows, lo - a:hi - a] = beat - template
                out[self.other_rows, lo - a:hi - a] = other[:, lo - s0:hi - s0]
                cursor = hi
                if hi == s0 + int(lay.lengths[j]):  # handed back whole
                    del self.corrected[j]
            j += 1
        if cursor < b:
            out[:, cursor - a:] = self.buf[:, cursor - self.buf0:b - self.buf0]
        return out

    def _reserve(self) -> int:
        """The buffer holds the samples of the beats not yet copied, a beat at most (and those between beats not
        handed back)."""
        return self.seg_len

    def _keep_from(self) -> int:
        """The beats' samples are in their copies: the buffer keeps only from the first sample not handed back
        that lies in no beat (before the first, in a gap after a beat, after the last)."""
        i = int(np.searchsorted(self.between[1], self.emitted, side="right"))
        return max(int(self.between[0][i]), self.emitted) if i < self.between[0].size else self.n_samples

    def _raw(self, j: int) -> np.ndarray:
        """Beat ``j``'s samples as recorded, ``[C_picks, length_j]`` float32 (its copy)."""
        return self.features[j][0]

    def _reset(self, first):
        self.sum = np.zeros((self.picks.size, self.layout.length), np.float32)
        self.alt = np.zeros((self.picks.size, self.layout.length), np.float32) if self.rank is None else None
        self.count = np.zeros(self.layout.length)

    def _features(self, first, stop):
        # a copy of the beat's samples, the corrected channels apart from the others: the running sum needs them
        # until the beat leaves its window, the pieces handed back until the beat is corrected; the buffer lets them
        # go (it would otherwise keep a whole window of beats, and move it again and again)
        starts, lengths = self.layout.starts, self.layout.lengths
        out = []
        for j in range(first, stop):
            seg = self.buf[:, int(starts[j]) - self.buf0:int(starts[j] + lengths[j]) - self.buf0]
            eeg = seg[self.rows]
            out.append((eeg.copy() if isinstance(self.rows, slice) else eeg, seg[self.other_rows]))  # copies
        return out

    def _add(self, j, sign):
        x = self._raw(j)
        ln = x.shape[1]
        if sign > 0:
            self.sum[:, :ln] += x
        else:
            self.sum[:, :ln] -= x
        if self.rank is None:  # the +/- sum is the auto rank's noise floor
            if sign * _parity(j) > 0:
                self.alt[:, :ln] += x
            else:
                self.alt[:, :ln] -= x
        self.count[:ln] += sign

    def _padded(self, j: int) -> np.ndarray:
        x = self._raw(j)
        out = np.zeros((x.shape[0], self.layout.length), np.float32)
        out[:, :x.shape[1]] = x
        return out

    def _template(self, e):
        x = self._raw(e)
        ln = x.shape[1]
        if self.obs:
            neigh = [(self._padded(j), int(self.layout.lengths[j])) for j in range(int(self.lo[e]), int(self.hi[e]))
                     if j != e]
            return self._obs_template(self._padded(e), ln, neigh)
        if self.rank == 0:  # the plain average, over the beat's own lags only (all that is subtracted)
            out = np.subtract(self.sum[:, :ln], x)
            count = self.count[:ln] - 1  # beat e itself left out
            out *= np.divide(1.0, count, out=np.zeros(ln), where=count > 0.5).astype(np.float32)
            return out
        count = self.count.copy()
        count[:ln] -= 1
        total = self.sum.astype(np.float64)
        total[:, :ln] -= x
        template = np.divide(total, count, out=np.zeros_like(total), where=count > 0.5)
        return self._low_rank(template, e, x)

    def _low_rank(self, template: np.ndarray, e: int, x: np.ndarray) -> np.ndarray:
        """The template's leading spatio-temporal components over the lags every beat of the window has.

        The pulse artefact of all electrodes comes from a few head movements: a few components (channels x lags)
        carry it. The EEG of the ``n`` neighbours that the average carries (about 1/sqrt(n) of the EEG) spreads
        over every component. Auto rank: keep the components whose singular value exceeds the largest singular
        value of the window's +/- average (Schimmel 1967: the beats averaged with alternating signs, the
        artefact cancelled, the EEG left at the same level), i.e. the noise floor of the average.
        """
        lo, hi = int(self.lo[e]), int(self.hi[e])
        n = hi - lo - 1
        if self.rank is None and n < AUTO_RANK_MIN_BEATS:  # too few beats to measure the noise floor
            self.ranks.append(template.shape[0])
            return template
        common = int(self.layout.lengths[lo:hi].min())
        m = template[:, :common]
        # the components are estimated on lags at about 500 Hz (the pulse artefact lies below 30 Hz): the same
        # subsampling for the template and its noise floor keeps them comparable, at a tenth of the cost at 5 kHz
        lags = slice(0, common, self.lag_step)
        ms = m[:, lags]
        w, v = np.linalg.eigh(ms @ ms.T)  # squared singular values, ascending
        w, v = w[::-1], v[:, ::-1]
        if self.rank is None:
            d = sum(_parity(j) for j in range(lo, hi) if j != e)  # +1, 0 or -1 beats more of one sign
            alt = self.alt[:, lags] - _parity(e) * x[:, lags]  # the window without beat e
            p = (alt - d * ms) / n  # what is left of the artefact with an odd count is taken out with the mean
            k = int(np.sum(w > np.linalg.eigvalsh(p @ p.T)[-1]))
        else:
            k = min(self.rank, m.shape[0])
        self.ranks.append(k)
        basis = v[:, :k]
        out = template.copy()
        out[:, :common] = basis @ (basis.T @ m)
        return out

    def _obs_template(self, x, ln, neigh):
        """Least-squares fit of the neighbours' mean and first principal components to the beat, per channel.

        The fit covers the lags every neighbour has; later lags (R-R intervals vary) get the sliding average.
        """
        common = min([ln] + [m for _, m in neigh])
        total = sum(y.astype(np.float64) for y, _ in neigh)
        count = np.zeros(self.layout.length)
        for _, m in neigh:
            count[:m] += 1
        out = np.divide(total, count, out=np.zeros(total.shape), where=count > 0.5)
        stack = np.stack([y[:, :common] for y, _ in neigh], axis=1).astype(np.float64)  # [C, B, L]
        mean = stack.mean(axis=1, keepdims=True)  # [C, 1, L]
        basis = np.concatenate([mean, _principal_axes(stack - mean, self.obs)], axis=1)  # [C, 1 + K, L]
        out[:, :common] = _fit(basis, x[:, :common].astype(np.float64))
        return out


def search_back(peaks: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Add the beats a QRS detector missed, by the search-back of Pan & Tompkins (1985).

    Every R-R interval longer than :data:`SEARCH_BACK_RR` median intervals (and the stretches before the first
    and after the last peak) is searched for the largest peak of ``band`` (the band-passed ECG with the QRS
    pointing up) at least 0.3 median intervals from its neighbours (a refractory period); it is a beat when it
    reaches :data:`SEARCH_BACK_AMPLITUDE` of the median R amplitude. Repeated until no interval changes (an
    interval may hide several beats).

    Parameters
    ----------
    peaks : ndarray of int
        R-peak samples found, sorted.
    band : ndarray
        The band-passed ECG, QRS positive (intervals are in its samples).

    Returns
    -------
    ndarray of int
        The peaks with the recovered beats, sorted.
    """
    peaks = np.asarray(peaks, dtype=np.int64)
    if peaks.size < 3:
        return peaks
    rr = float(np.median(np.diff(peaks)))
    level = SEARCH_BACK_AMPLITUDE * float(np.median(band[peaks]))
    if not level > 0:
        return peaks
    guard = int(round(0.3 * rr))
    for _ in range(peaks.size + 2):
        bounds = np.concatenate([[-rr], peaks, [band.size - 1 + rr]])  # virtual beats one interval outside
        found = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b - a <= SEARCH_BACK_RR * rr:
                continue
            lo, hi = int(max(0, a + guard)), int(min(band.size, b - guard + 1))
            if hi - lo < 1:
                continue
            i = lo + int(np.argmax(band[lo:hi]))
            if band[i] >= level:
                found.append(i)
        if not found:
            break
        peaks = np.unique(np.concatenate([peaks, found]))
    return peaks


def _parity(j: int) -> int:
    """The sign of beat ``j`` in the +/- average."""
    return -1 if j % 2 else 1


def _principal_axes(x: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` principal axes of the rows of every matrix ``x[..., E, L]`` (not centred): ``[..., k, L]``.

    Computed from the smaller of the Gram (``E x E``) and scatter (``L x L``) matrices, batched over the leading
    axes, so many small decompositions cost one call.
    """
    e, n = x.shape[-2:]
    k = min(int(k), e, n)
    if e <= n:
        gram = x @ np.swapaxes(x, -1, -2)  # [..., E, E]
        w, u = np.linalg.eigh(gram)
        u, w = u[..., -k:][..., ::-1], w[..., -k:][..., ::-1]  # largest first
        axes = np.swapaxes(u, -1, -2) @ x  # [..., k, L]
        return axes / np.sqrt(np.maximum(w, 1e-300))[..., None]
    scatter = np.swapaxes(x, -1, -2) @ x  # [..., L, L]
    _, v = np.linalg.eigh(scatter)
    return np.swapaxes(v[..., -k:][..., ::-1], -1, -2)


def _fit(basis: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Least-squares fit of the rows of ``basis[..., K, L]`` to ``x[..., L]``: ``[..., L]``."""
    normal = basis @ np.swapaxes(basis, -1, -2)  # [..., K, K]
    rhs = (basis @ x[..., None])  # [..., K, 1]
    coef = np.linalg.solve(normal + 1e-12 * np.eye(normal.shape[-1]), rhs)
    return (np.swapaxes(coef, -1, -2) @ basis)[..., 0, :]


def obs_fit(epochs: np.ndarray, n_components: int) -> np.ndarray:
    """The part of every epoch explained by the first ``n_components`` principal components of all of them.

    The residual artefact left by AAS (optimal basis set, Niazy et al. 2005): the principal components of the
    centred epochs are fitted to each epoch by least squares (they are orthonormal: a projection); the fit is
    returned (subtract it).

    Parameters
    ----------
    epochs : ndarray, shape (E, L) or (E, C, L)
        Epochs of one channel, or of several channels (one basis per channel).
    n_components : int
    """
    x = np.asarray(epochs, dtype=np.float64)
    if n_components < 1 or x.shape[0] <= n_components:
        return np.zeros_like(x)
    stacked = x if x.ndim == 3 else x[:, None, :]
    per_channel = np.swapaxes(stacked, 0, 1)  # [C, E, L]
    centred = per_channel - per_channel.mean(axis=1, keepdims=True)
    axes = _principal_axes(centred, n_components)  # [C, K, L]
    fit = (per_channel @ np.swapaxes(axes, -1, -2)) @ axes  # [C, E, L]
    fit = np.swapaxes(fit, 0, 1)
    return fit if x.ndim == 3 else fit[:, 0, :]


# ------------------------------------------------------------------------------------------------ low-pass
def lowpass_filter(sfreq: float, cutoff: float, *, transition: float | None = None) -> np.ndarray:
    """Taps of a linear-phase low-pass FIR (windowed sinc, Hamming, odd length) at ``cutoff`` Hz.

    ``transition`` (Hz, default 20 % of the cutoff) sets the length: ``3.3 sfreq / transition`` taps.
    """
    from scipy.signal import firwin

    nyq = float(sfreq) / 2.0
    if not 0 < cutoff < nyq:
        raise UsageError(f"the low-pass cut-off {cutoff:g} Hz must be between 0 and {nyq:g} Hz (Nyquist)",
                         hint="Lower correction.lowpass (or set it to 0 for none)")
    n = int(math.ceil(3.3 * float(sfreq) / _transition(cutoff, transition))) | 1
    return firwin(n, cutoff, window="hamming", fs=float(sfreq))


def _transition(cutoff: float, transition: float | None) -> float:
    return float(transition) if transition else 0.2 * float(cutoff)


def lowpass_stop(cutoff: float, *, transition: float | None = None) -> float:
    """The frequency (Hz) above which :func:`lowpass_filter` attenuates by more than 55 dB: the cut-off plus the
    transition width (the Hamming design's stop band starts half a width above the cut-off, at about 52 dB)."""
    return float(cutoff) + _transition(cutoff, transition)


def alias_free_decimation(sfreq: float, nperseg: int, fmax: float, stop: float) -> int:
    """The largest factor by which :class:`WelchPSD` may decimate a signal with no power above ``stop`` Hz and
    still measure it up to ``fmax`` Hz: what folds onto ``[0, fmax]`` comes from ``sfreq / factor - fmax`` Hz
    and above, which must be ``stop`` or more; the factor divides ``nperseg / 2`` (1: no decimation)."""
    best = 1
    for d in range(2, int(nperseg) // 8 + 1):  # a decimated segment keeps at least 4 samples
        if int(nperseg) % (2 * d) == 0 and float(sfreq) / d - float(fmax) >= float(stop):
            best = d
    return best


class FIRFilter:
    """Zero-phase application of a linear-phase FIR to a stream of blocks ``[C, n]`` (delay compensated).

    The output has exactly the samples of the input; the ends are extended with the first and last sample. The
    convolution is an FFT overlap-save (segments of ``nfft`` samples, a power of two of at least 6 x the taps),
    in the precision of the blocks pushed (float32 blocks: single-precision transforms; anything else: float64).
    """

    def __init__(self, taps: np.ndarray, n_channels: int, n_samples: int):
        self.h = np.asarray(taps, dtype=np.float64)
        if self.h.size % 2 == 0:
            raise UsageError("the FIR filter needs an odd number of taps")
        self.delay = (self.h.size - 1) // 2
        self.n_samples = int(n_samples)
        self.hist: np.ndarray | None = None  # input not yet filtered, with its left context
        self.received = 0
        self.n_channels = int(n_channels)
        self.nfft = max(256, 1 << int(math.ceil(math.log2(6 * self.h.size))))
        self._spectra: dict = {}  # the taps' transform per dtype

    def _spectrum(self, dtype) -> np.ndarray:
        if dtype not in self._spectra:
            from scipy import fft as sp_fft

            self._spectra[dtype] = sp_fft.rfft(self.h.astype(dtype), self.nfft)
        return self._spectra[dtype]

    def _geometry(self, n_in: int) -> tuple[int, int, int]:
        """``(n_out, n_seg, need)`` of the convolution of ``n_in`` samples: the outputs of full overlap, the
        segments, and the samples they read (the input padded with zeros)."""
        m = self.h.size
        n_out = n_in - m + 1
        n_seg = -(-n_out // (self.nfft - m + 1))
        return n_out, n_seg, max(n_in, (n_seg - 1) * (self.nfft - m + 1) + self.nfft)

    def _convolve(self, x: np.ndarray, n_in: int) -> np.ndarray:
        """The first ``n_in`` samples of ``x[C, >= need]`` (zeros after them) convolved with the taps: the
        ``n_in - taps + 1`` samples of full overlap ('valid')."""
        from scipy import fft as sp_fft

        m = self.h.size
        n_out, n_seg, _ = self._geometry(n_in)
        step = self.nfft - m + 1  # outputs per segment
        spectrum = self._spectrum(x.dtype)
        out = np.empty((x.shape[0], n_seg, step), x.dtype)  # [C, n_seg * step] when reshaped (no copy)
        group = max(1, (1 << 20) // (self.nfft * max(x.shape[0], 1)))  # a few MB of segments at a time
        segments = np.lib.stride_tricks.sliding_window_view(x, self.nfft, axis=1)[:, ::step]  # [C, n_seg, nfft]
        for s in range(0, n_seg, group):
            seg = sp_fft.rfft(segments[:, s:s + group], axis=-1)
            seg *= spectrum
            out[:, s:s + seg.shape[1]] = sp_fft.irfft(seg, self.nfft, axis=-1)[..., m - 1:]  # [C, k, step]
        return out.reshape(x.shape[0], -1)[:, :n_out]

    def push(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block)
        if block.dtype != np.float32:
            block = block.astype(np.float64, copy=False)
        if self.hist is None:
            if block.shape[1] == 0:
                return block
            self.hist = np.repeat(block[:, :1], self.delay, axis=1)  # the start extended with the first sample
        self.received += block.shape[1]
        final = self.received == self.n_samples
        # the input not yet filtered, the block, at the end the last sample repeated, then the zeros the last
        # segment reads: one array, filled once
        n_in = self.hist.shape[1] + block.shape[1] + (self.delay if final else 0)
        n_out, _, need = self._geometry(n_in)
        if n_out <= 0:
            self.hist = np.concatenate([self.hist, block.astype(self.hist.dtype, copy=False)], axis=1)
            return np.empty((self.n_channels, 0), self.hist.dtype)
        x = np.empty((self.n_channels, need), self.hist.dtype)
        a = self.hist.shape[1]
        x[:, :a] = self.hist
        x[:, a:a + block.shape[1]] = block
        a += block.shape[1]
        if final:
            x[:, a:a + self.delay] = x[:, a - 1:a]
        x[:, n_in:] = 0.0
        out = self._convolve(x, n_in)  # [C, n_out]
        self.hist = x[:, n_out:n_in].copy()  # the last 2 x delay samples
        return out


def correct_stream(read_segment: Callable[[int, int], np.ndarray], n_samples: int, stages: Sequence,
                   *, block: int = 1 << 16, observers: Sequence[Callable[[int, np.ndarray], None]] = (),
                   progress=None, dtype=np.float64) -> Iterator[tuple[int, np.ndarray]]:
    """Read a recording block by block and run it through correction stages; yield ``(first_sample, block)``.

    Parameters
    ----------
    read_segment : callable ``(start, stop) -> ndarray [C, stop - start]``
        The recording.
    n_samples : int
        Its length.
    stages : sequence
        Objects with ``push(block)`` (and ``finish()``): :class:`GradientAAS`, :class:`BCGSubtraction` (returning
        lists of ``(start, block)``) or :class:`FIRFilter` (returning one block).
    block : int
        Samples read per call.
    observers : sequence of callable
        Called as ``observer(first_sample, raw_block)`` with every block read (e.g. the QC before correction).
    progress : callable, optional
        ``progress(done_samples, n_samples)`` after every block read.
    dtype : numpy dtype
        The samples read are converted to it (float32: half the memory traffic; the correctors keep their
        buffers in float32 either way).

    Yields
    ------
    first_sample, corrected : int, ndarray ``[C, n]``
        Consecutive pieces covering ``[0, n_samples)`` in order (possibly views of the block read: copy before
        changing).
    """
    def run(stage_i: int, pieces):
        if stage_i == len(stages):
            yield from pieces
            return
        stage = stages[stage_i]
        for start, data in pieces:
            out = stage.push(data)
            yield from run(stage_i + 1, out if isinstance(out, list) else [(start, out)])

    for a in range(0, int(n_samples), int(block)):
        b = min(a + int(block), int(n_samples))
        data = np.asarray(read_segment(a, b), dtype=dtype)
        for obs in observers:
            obs(a, data)
        yield from _renumber(run(0, [(a, data)]))
        if progress is not None:
            progress(b, int(n_samples))


def _renumber(pieces):
    for start, data in pieces:
        if data.shape[1]:
            yield start, data


# ------------------------------------------------------------------------------------------------ QC
class WelchPSD:
    """Welch power spectral density of a stream of blocks ``[C, n]`` (Hann window, 50 % overlap, one-sided).

    Each segment's mean is removed (``detrend="constant"``). The segments are transformed in the precision of the
    blocks pushed (float32 blocks: single-precision transforms, float64 sums) without the window: removing the
    mean zeroes bin 0, and the periodic Hann window is the three-bin convolution
    ``X_w[k] = X[k] / 2 - (X[k - 1] + X[k + 1]) / 4``, applied to the bins kept only (those up to ``fmax`` when it
    is given): no windowed copy of the samples is made.

    Parameters
    ----------
    n_channels : int
    sfreq : float
    nperseg : int
        Samples per segment (the frequency resolution is ``sfreq / nperseg``).
    fmax : float, optional
        Highest frequency (Hz) kept in the result (default: the Nyquist frequency).
    decimate : int
        Transform every ``decimate``-th sample only (default 1: all), for blocks already low-passed far below
        ``sfreq / (2 decimate)``: the segments, their Hann window and their frequencies are those of the full rate
        (``nperseg`` must be a multiple of ``2 decimate``), the cost is about ``1 / decimate`` of it, and the
        result differs from the full-rate one only by the power above ``sfreq / decimate - fmax`` folded onto the
        bins kept (the sampled periodic Hann window is the periodic Hann window of ``nperseg / decimate``). The
        caller chooses ``decimate`` so that the low-pass has removed that power (:func:`alias_free_decimation`).
        The mean removed is still that of all the samples of a segment (the mean of every ``decimate``-th sample
        differs from it by the rectangular window's leakage), summed at the full rate.
    """

    def __init__(self, n_channels: int, sfreq: float, nperseg: int, *, fmax: float | None = None,
                 decimate: int = 1):
        self.decimate = int(decimate)
        if self.decimate < 1 or (self.decimate > 1 and int(nperseg) % (2 * self.decimate)):
            raise UsageError(f"a Welch segment of {nperseg} samples cannot be decimated by {decimate} (it must be "
                             f"a multiple of twice the factor)")
        self.phase = 0  # of the next block: its first sample kept
        self.half_sums: list[np.ndarray] = []  # full-rate sums of the half segments not yet used (decimated)
        self.part, self.part_n = np.zeros(int(n_channels)), 0  # of the half segment being summed
        self.sfreq, self.nperseg = float(sfreq) / self.decimate, int(nperseg) // self.decimate
        if self.nperseg < 4:
            raise UsageError(f"a Welch segment needs at least 4 samples (got {self.nperseg})")
        self.step = max(1, self.nperseg // 2)
        window = np.hanning(self.nperseg + 1)[:-1]  # periodic Hann
        self.scale = 1.0 / (self.sfreq * np.sum(window ** 2))
        n_half = self.nperseg // 2 + 1
        n_bins = n_half
        if fmax is not None:
            n_bins = min(n_bins, int(math.floor(float(fmax) * self.nperseg / self.sfreq)) + 1)
        self.n_bins = max(n_bins, 1)
        self.n_half = n_half
        self.total = np.zeros((int(n_channels), self.n_bins))
        self.count = 0
        self.used = 0  # segments whose half sums were dropped (decimated)
        self.samples: SampleBuffer | None = None

    def _windowed(self, spec: np.ndarray) -> np.ndarray:
        """The bins ``0..n_bins-1`` of the Hann-windowed transform from the plain one ``spec[..., 0..n_half-1]``
        (bin 0 already zeroed: the mean removed). Bin ``-1`` is the conjugate of bin 1, bin ``n/2 + 1`` of bin
        ``n/2 - 1`` (even ``n``) or ``(n - 1)/2`` (odd ``n``)."""
        n, k = self.nperseg, self.n_bins
        out = spec[..., :k] * 0.5
        right = np.empty_like(out)  # X[k + 1]
        m = min(k, self.n_half - 1)
        right[..., :m] = spec[..., 1:m + 1]
        if m < k:  # the last bin kept is the last of the half spectrum
            mirror = n // 2 - 1 if n % 2 == 0 else (n - 1) // 2
            right[..., m:] = np.conj(spec[..., mirror:mirror + 1])
        out -= 0.25 * right
        out[..., 1:] -= 0.25 * spec[..., :k - 1]
        out[..., 0] -= 0.25 * np.conj(spec[..., 1])
        return out

    def push(self, block: np.ndarray) -> None:
        from scipy import fft as sp_fft

        block = np.asarray(block)
        if self.decimate > 1:
            self._sum_halves(block)
            n = block.shape[1]
            block = block[:, self.phase::self.decimate]
            self.phase = (self.phase - n) % self.decimate
        if block.dtype != np.float32:
            block = block.astype(np.float64, copy=False)
        if self.samples is None:  # the samples of the segments not yet complete (at most a segment and a block)
            self.samples = SampleBuffer(self.total.shape[0], block.dtype, reserve=self.nperseg)
        self.samples.append(block)
        buf = self.samples.data
        n_seg = (buf.shape[1] - self.nperseg) // self.step + 1 if buf.shape[1] >= self.nperseg else 0
        if self.decimate > 1:  # and whose samples at the full rate are all summed (up to decimate - 1 later)
            n_seg = min(n_seg, len(self.half_sums) - 1)
        if n_seg <= 0:
            return
        n_c = self.total.shape[0]
        segments = np.lib.stride_tricks.sliding_window_view(buf, self.nperseg, axis=1)[:, ::self.step][:, :n_seg]
        group = max(1, (1 << 21) // (self.nperseg * n_c))  # a few MB of samples at a time
        for s in range(0, n_seg, group):
            seg = segments[:, s:s + group]  # [C, k, nperseg] (a view)
            spec = sp_fft.rfft(seg, axis=-1)[..., :self.n_bins + 1]
            if self.decimate > 1:  # the mean of the segment's samples at the full rate removed
                first = self.count - self.used
                halves = np.stack(self.half_sums[first:first + seg.shape[1] + 1], axis=1)  # [C, k + 1]
                spec[..., 0] -= (halves[:, :-1] + halves[:, 1:]) / self.decimate  # nperseg x the mean
            else:
                spec[..., 0] = 0.0  # the segment's mean removed
            spec = self._windowed(spec)
            power = np.square(spec.real)
            power += np.square(spec.imag)
            self.total += power.sum(axis=1, dtype=np.float64)
            self.count += seg.shape[1]
        self.samples.drop_before(self.samples.start + n_seg * self.step)
        if self.decimate > 1:  # a half segment is used by two segments: keep the next one's first
            del self.half_sums[:self.count - self.used]
            self.used = self.count

    def _sum_halves(self, block: np.ndarray) -> None:
        """Add the full-rate samples of ``block`` to the sums of the half segments (``nperseg / 2`` samples)."""
        half = self.step * self.decimate
        a, n = 0, block.shape[1]
        while a < n:
            take = min(half - self.part_n, n - a)
            self.part += block[:, a:a + take].sum(axis=1)  # pairwise sums: float32 keeps ~1e-7 of the mean
            self.part_n += take
            a += take
            if self.part_n == half:
                self.half_sums.append(self.part)
                self.part, self.part_n = np.zeros_like(self.part), 0

    def __call__(self, start: int, block: np.ndarray) -> None:  # as an observer of correct_stream
        self.push(block)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``freqs [F]`` (Hz) and ``psd [C, F]`` (unit^2 / Hz); zeros when no segment was complete."""
        psd = self.total * self.scale / max(self.count, 1)
        last = self.nperseg // 2  # the Nyquist bin (even nperseg) is not doubled
        psd[:, 1:] *= 2.0
        if self.nperseg % 2 == 0 and self.n_bins > last:
            psd[:, last] /= 2.0
        return np.fft.rfftfreq(self.nperseg, 1.0 / self.sfreq)[:self.n_bins], psd


def harmonic_power(freqs, psd, f0: float, *, fmax: float, fmin: float = 0.0,
                   exclude: Sequence[float] = LINE_FREQUENCIES, line_tolerance: float = LINE_TOLERANCE) -> dict:
    """Power of a spectrum at the harmonics of ``f0`` and between them.

    For every harmonic ``h f0`` in ``(fmin, fmax]`` that is not within ``line_tolerance`` Hz of a multiple of an
    ``exclude`` frequency, the power in the bins within one bin width of it is summed (the line), and the same
    number of bins is taken at the median level of the bins between the harmonics (the background). When every
    harmonic is a mains harmonic (slices at 50 Hz, say), they are all used and ``mains_coincident`` is True: line
    noise then counts as artefact.

    Returns
    -------
    dict
        ``harmonics`` (Hz, the ones used), ``power`` ``[C]`` (unit^2, summed over the harmonics),
        ``background`` ``[C]`` (unit^2), ``power_db`` and ``ratio_db`` ``[C]`` (power over background),
        ``mains_coincident`` (bool).
    """
    freqs = np.asarray(freqs, dtype=float)
    psd = np.atleast_2d(np.asarray(psd, dtype=float))
    df = float(freqs[1] - freqs[0])
    n_c = psd.shape[0]
    if not f0 > 0 or fmax <= f0:
        nan = np.full(n_c, np.nan)
        return {"harmonics": [], "power": nan, "background": nan, "power_db": nan, "ratio_db": nan}
    candidates = [h * f0 for h in range(1, int(fmax // f0) + 1) if fmin < h * f0 < freqs[-1] - df]

    def mains(f):
        return any(abs(f - m * x) <= line_tolerance for x in exclude for m in range(1, int(f // x) + 2))

    harmonics = [float(f) for f in candidates if not mains(f)]
    coincident = not harmonics and bool(candidates)
    if coincident:  # every harmonic is a mains harmonic (e.g. 50 Hz slices): measure them anyway, line noise included
        harmonics = [float(f) for f in candidates]
    line_bins: list[int] = []
    for f in harmonics:
        centre = f / df
        line_bins.extend(b for b in range(int(math.floor(centre - 1)), int(math.ceil(centre + 1)) + 1)
                         if abs(b - centre) <= 1.0 + 1e-9 and 0 < b < freqs.size)
    if not harmonics:
        nan = np.full(n_c, np.nan)
        return {"harmonics": [], "power": nan, "background": nan, "power_db": nan, "ratio_db": nan,
                "mains_coincident": False}
    lines = np.zeros(freqs.size, bool)
    lines[line_bins] = True
    # background: bins at least 2 bin widths from every harmonic, between the first and the last one used
    all_h = np.arange(1, int(freqs[-1] // f0) + 2) * f0
    dist = np.min(np.abs(freqs[:, None] - all_h[None, :]), axis=1)
    lo_f, hi_f = min(harmonics) - f0, max(harmonics) + f0
    between = (dist >= 2 * df) & (freqs > max(lo_f, fmin)) & (freqs < hi_f) & (freqs > 0)
    power = psd[:, lines].sum(axis=1) * df
    if between.any():
        background = np.median(psd[:, between], axis=1) * lines.sum() * df
    else:  # harmonics closer than 4 bins: no bin between them
        background = np.full(n_c, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        power_db = 10 * np.log10(power)
        ratio_db = 10 * np.log10(power / background)
    return {"harmonics": harmonics, "power": power, "background": background, "power_db": power_db,
            "ratio_db": ratio_db, "mains_coincident": coincident}


class LockedAverage:
    """Average of the epochs ``[event - pre, event + post)`` of a stream of blocks, per channel and lag.

    Each epoch's own mean is removed first (slow drifts do not enter the average). The lags averaged of each epoch
    are copied from the blocks as they arrive (nothing else is kept), and the epochs centred and squared, in the
    blocks' precision (float32 stays float32; anything else becomes float64); the sums are in double precision.

    Parameters
    ----------
    events : array-like of int
        Event samples (e.g. R peaks), sorted.
    n_channels : int
    pre, post : int
        Samples before and after the event.
    lag_step : int
        Average every ``lag_step``-th lag only (default 1: all): the mean square and the variance of the
        average (:func:`locked_power`) are means over lags, which a regular subset estimates at a fraction of the
        cost.
    """

    def __init__(self, events, n_channels: int, pre: int, post: int, *, lag_step: int = 1):
        self.events = np.sort(np.asarray(events, dtype=np.int64))
        self.pre, self.post = int(pre), int(post)
        self.length = self.pre + self.post
        self.lag_step = max(1, int(lag_step))
        self.n_channels = int(n_channels)
        n_lags = len(range(0, self.length, self.lag_step))
        self.sum = np.zeros((self.n_channels, n_lags))
        self.sumsq = np.zeros((self.n_channels, n_lags))
        self.n = 0
        self.next = int(np.searchsorted(self.events, self.pre))  # events whose epoch starts before 0 are skipped
        self.partial: dict[int, np.ndarray] = {}  # event -> the lags of its epoch copied so far [C, L]

    def __call__(self, start: int, block: np.ndarray) -> None:
        """Add ``block`` (samples ``start`` on; blocks follow each other): the lags of the epochs it holds are copied
        into those epochs (only the lags averaged, not the samples between), and the epochs complete are added."""
        block = np.asarray(block)
        if block.dtype != np.float32:
            block = block.astype(np.float64, copy=False)
        start, end = int(start), int(start) + block.shape[1]
        n_lags = self.sum.shape[1]
        k = self.next
        while k < self.events.size and int(self.events[k]) - self.pre < end:
            first = int(self.events[k]) - self.pre  # the epoch's first sample
            lo = max(0, -(-(start - first) // self.lag_step))  # its first lag in the block
            hi = min(n_lags, -(-(end - first) // self.lag_step))  # one past its last
            if lo < hi:
                ep = self.partial.get(k)
                if ep is None:
                    ep = self.partial[k] = np.empty((self.n_channels, n_lags), block.dtype)
                a = first + lo * self.lag_step - start
                ep[:, lo:hi] = block[:, a:a + (hi - lo - 1) * self.lag_step + 1:self.lag_step]
                if hi == n_lags:
                    self._add(self.partial.pop(k))
            k += 1
        while self.next < self.events.size and self.next not in self.partial \
                and int(self.events[self.next]) + self.post <= end:  # complete (added) or never filled
            self.next += 1

    def _add(self, ep: np.ndarray) -> None:
        ep -= ep.mean(axis=-1, keepdims=True, dtype=np.float64).astype(ep.dtype)
        self.sum += ep
        ep *= ep
        self.sumsq += ep
        self.n += 1

    def result(self) -> tuple[np.ndarray, np.ndarray, int]:
        """``mean [C, L]``, across-epoch ``variance [C, L]`` and the number of epochs (``L``: the lags averaged)."""
        n = max(self.n, 1)
        mean = self.sum / n
        var = np.maximum(self.sumsq / n - mean ** 2, 0.0) * (n / max(n - 1, 1))
        return mean, var, self.n


def locked_power(mean: np.ndarray, var: np.ndarray, n: int) -> dict:
    """Power of an event-locked average and its ratio to the power expected from averaging noise alone.

    Returns
    -------
    dict
        ``power_db`` ``[C]``: ``10 log10`` of the mean square of the average; ``noise_db`` ``[C]``: of the mean
        across-epoch variance divided by ``n``; ``ratio_db = power_db - noise_db``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        power_db = 10 * np.log10(np.mean(np.asarray(mean) ** 2, axis=-1))
        noise_db = 10 * np.log10(np.mean(np.asarray(var), axis=-1) / max(int(n), 1))
    return {"power_db": power_db, "noise_db": noise_db, "ratio_db": power_db - noise_db}


def artefact_flags(*, gradient_ratio_db=None, cardiac_power_db=None, cardiac_ratio_db=None) -> dict:
    """Whether QC numbers (per channel) suggest gradient or cardiac artefact in the EEG (medians over channels).

    Returns
    -------
    dict
        ``gradient`` and ``cardiac``: True, False, or None where the numbers are missing.
    """
    def median(x):
        x = np.asarray(x, dtype=float) if x is not None else np.empty(0)
        x = x[np.isfinite(x)]
        return float(np.median(x)) if x.size else None

    g = median(gradient_ratio_db)
    p, r = median(cardiac_power_db), median(cardiac_ratio_db)
    return {"gradient": None if g is None else g > GRADIENT_RATIO_DB,
            "cardiac": None if p is None or r is None else (p > CARDIAC_POWER_DB and r > CARDIAC_RATIO_DB)}
