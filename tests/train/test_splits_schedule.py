"""Cross-validation folds and the learning-rate schedule against its closed form."""

from __future__ import annotations

import math

import pytest
import torch

from spec2vol_bids.errors import UsageError
from spec2vol_bids.train.schedule import LRSchedule, cosine_restarts_multiplier
from spec2vol_bids.train.splits import make_folds

SUBS = [f"{i:02d}" for i in range(1, 7)]


def test_loso_folds_hold_out_a_validation_subject_from_training():
    folds = make_folds(SUBS, "loso", seed=3)
    assert [f.test for f in folds] == [(s,) for s in SUBS]
    for f in folds:
        assert len(f.val) == 1 and set(f.val) <= set(SUBS) - set(f.test)
        assert set(f.train) | set(f.val) | set(f.test) == set(SUBS)
        assert not (set(f.train) & set(f.val)) and not (set(f.train) & set(f.test))
        assert f.selection_subjects == f.val and f.protocol == "validation-selected"
    assert make_folds(SUBS, "loso", seed=3) == folds  # seeded
    fixed = make_folds(SUBS, "loso", val_subjects=["02"])
    assert all(f.val == ("02",) for f in fixed if f.test != ("02",))
    assert fixed[1].val != ("02",) and len(fixed[1].val) == 1  # the fold testing 02 draws another


def test_split_none_and_paper_protocol():
    (f,) = make_folds(["sub-" + s for s in SUBS], "split", test_subjects=["05", "06"], val_subjects=["04"])
    assert f.test == ("05", "06") and f.val == ("04",) and f.train == ("01", "02", "03")
    (p,) = make_folds(SUBS, "split", test_subjects=["06"], select_on="test")
    assert p.val == () and p.train == tuple(SUBS[:5]) and p.selection_subjects == ("06",)
    assert "test-selected" in p.protocol
    (n,) = make_folds(SUBS, "none", select_on="last")
    assert n.test == () and n.val == () and n.protocol == "last-epoch"


@pytest.mark.parametrize("kwargs, match", [
    ({"cv": "split"}, "needs --test-subjects"),
    ({"cv": "split", "test_subjects": ["99"]}, "no derivatives"),
    ({"cv": "split", "test_subjects": ["01"], "val_subjects": ["01"]}, "both a test and a validation"),
    ({"cv": "kfold"}, "unknown --cv"),
    ({"cv": "none", "select_on": "test"}, "needs test subjects"),
])
def test_split_refusals(kwargs, match):
    with pytest.raises(UsageError, match=match):
        make_folds(SUBS, **kwargs)
    with pytest.raises(UsageError, match="cannot spare"):
        make_folds(["01", "02"], "loso")


def _closed_form(step, warmup, total, cycles):
    """Independent statement of the schedule: linear warm-up, then cosine restarting every total/cycles."""
    if step < warmup:
        return step / warmup
    period = (total - warmup) / cycles
    if step >= total:
        return 0.0
    t = (step - warmup) % period  # steps since the last restart
    return 0.5 * (1 + math.cos(math.pi * t / period))


def test_schedule_epoch_boundaries_paper():
    steps_per_epoch, epochs = 30, 50
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sch = LRSchedule(opt, 1e-3, kind="paper", epochs=epochs, steps_per_epoch=steps_per_epoch,
                     micro_batches_per_epoch=60, warmup=50)
    assert sch.total == 1500 and sch.cycles == 5
    lrs = {}
    for step in range(epochs * steps_per_epoch + 1):
        if step % steps_per_epoch == 0:
            lrs[step // steps_per_epoch] = opt.param_groups[0]["lr"]
        sch.step()
    for e, lr in lrs.items():
        assert lr == pytest.approx(1e-3 * _closed_form(e * 30, 50, 1500, 5), abs=1e-12), e
    assert lrs[0] == 0.0  # warm-up starts at 0
    # hard restarts: one full cosine per (1500 - 50) / 5 = 290 steps, i.e. ~every 10 epochs
    assert cosine_restarts_multiplier(50 + 290, warmup=50, total=1500, cycles=5) == pytest.approx(1.0)
    assert cosine_restarts_multiplier(50 + 289, warmup=50, total=1500, cycles=5) < 1e-3


def test_schedule_official_runs_half_the_cycles():
    """The official effective schedule: num_training_steps counts micro-batches, the scheduler optimiser steps."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sch = LRSchedule(opt, 1e-3, kind="official", epochs=50, steps_per_epoch=30, micro_batches_per_epoch=60,
                     warmup=50)
    assert sch.total == 3000
    restarts = [s for s in range(51, 1501) if sch.multiplier(s) > sch.multiplier(s - 1) + 0.5]
    # ~2.5 cycles in 50 epochs: a restart every (3000 - 50) / 5 = 590 steps (~20 epochs), not every 10 epochs
    assert restarts == [50 + 590, 50 + 2 * 590]
    assert sch.lr_at(1500) == pytest.approx(1e-3 * _closed_form(1500, 50, 3000, 5))
    assert 1e-4 < sch.lr_at(1500) < 1e-3
    sd = sch.state_dict()
    sch2 = LRSchedule(opt, 1e-3, kind="official", epochs=50, steps_per_epoch=30, micro_batches_per_epoch=60)
    sd["step_count"] = 777
    sch2.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == pytest.approx(sch.lr_at(777))
