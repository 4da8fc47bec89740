"""How the correction settings resolve for a recording (no data needed)."""

from __future__ import annotations

from spec2vol_bids.config import PreprocConfig
from spec2vol_bids.pipeline.artefacts import gradient_neighbours


def _c(**kw):
    return PreprocConfig().replace(correction={"method": "gradient", **kw}).correction


def test_gradient_template_spans_six_seconds_below_40_hz():
    assert gradient_neighbours(_c(), 0.1) == 60  # 10 slices per second: harmonics at 10, 20, 30 Hz
    assert gradient_neighbours(_c(), 1 / 15) == 90
    assert gradient_neighbours(_c(), 0.02) == 30  # 50 Hz: harmonics above the EEG band, the epoch count only
    assert gradient_neighbours(_c(), 2.0) == 30  # volume triggers
    assert gradient_neighbours(_c(gradient_span=0), 0.1) == 30  # off
    assert gradient_neighbours(_c(gradient_span=3.0), 0.05) == 60
    assert gradient_neighbours(_c(gradient_neighbours=80), 0.1) == 80  # never fewer than asked for
