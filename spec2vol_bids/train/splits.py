"""Cross-validation folds over subjects: leave-one-subject-out, a fixed split, or no test set.

Every fold holds out a **validation** subject drawn from its training subjects; checkpoint selection and early
decisions use it, never the test subjects. ``select_on='test'`` reproduces the official protocol (best epoch chosen
on the test subject, no validation subject) and is labelled in every output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import UsageError

__all__ = ["CV_SCHEMES", "SELECT_ON", "Fold", "make_folds"]

CV_SCHEMES = ("loso", "split", "none")
SELECT_ON = ("val", "test", "last")


@dataclass(frozen=True)
class Fold:
    """One train/validation/test partition of subject labels (without ``sub-``)."""

    name: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    select_on: str = "val"

    @property
    def selection_subjects(self) -> tuple[str, ...]:
        """Subjects whose data choose the best checkpoint (empty: the last epoch is kept)."""
        if self.select_on == "test":
            return self.test
        if self.select_on == "val":
            return self.val
        return ()

    @property
    def protocol(self) -> str:
        """A label for every output: ``validation-selected``, ``last-epoch`` or ``TEST-SELECTED (paper protocol,
        optimistic)``."""
        if self.select_on == "test":
            return "test-selected (paper protocol: optimistic, test subjects chose the checkpoint)"
        if self.select_on == "val" and self.val:
            return "validation-selected"
        return "last-epoch"

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(train=list(self.train), val=list(self.val), test=list(self.test), protocol=self.protocol)
        return d


def _clean(labels: Sequence[str] | None) -> list[str]:
    return [str(s).removeprefix("sub-") for s in (labels or [])]


def make_folds(
    subjects: Sequence[str],
    cv: str = "loso",
    *,
    test_subjects: Sequence[str] | None = None,
    val_subjects: Sequence[str] | None = None,
    n_val: int = 1,
    select_on: str = "val",
    seed: int = 0,
) -> list[Fold]:
    """Build the folds of an experiment.

    Parameters
    ----------
    subjects : list of str
        Every subject label with data.
    cv : {'loso', 'split', 'none'}
        ``'loso'``: one fold per subject, that subject is the test set. ``'split'``: one fold with
        ``test_subjects`` as test set (e.g. CN-EPFL 16/4). ``'none'``: one fold without a test set (train a model
        for deployment).
    test_subjects : list of str, optional
        Required for ``'split'``.
    val_subjects : list of str, optional
        Fixed validation subjects (those inside each fold's training pool are used). By default ``n_val``
        subjects are drawn from each fold's training pool with a seeded generator.
    select_on : {'val', 'test', 'last'}
        ``'test'`` (paper protocol) uses no validation subject: every non-test subject trains and the test
        subjects choose the checkpoint. ``'last'``: no validation subject, the last epoch is kept.
    seed : int
        Seeds the validation draw (fold ``i`` uses ``seed + i``).

    Returns
    -------
    list of Fold
    """
    subs = sorted(dict.fromkeys(_clean(subjects)))
    tests = _clean(test_subjects)
    vals = _clean(val_subjects)
    if cv not in CV_SCHEMES:
        raise UsageError(f"unknown --cv {cv!r}", hint=f"choose one of {', '.join(CV_SCHEMES)}")
    if select_on not in SELECT_ON:
        raise UsageError(f"unknown --select-on {select_on!r}", hint=f"choose one of {', '.join(SELECT_ON)}")
    unknown = sorted(set(tests + vals) - set(subs))
    if unknown:
        raise UsageError(f"subject(s) {', '.join(unknown)} have no derivatives",
                         hint=f"choose among {', '.join(subs)}")
    if set(tests) & set(vals):
        raise UsageError("a subject cannot be both a test and a validation subject",
                         hint="give disjoint --test-subjects and --val-subjects")
    if cv == "split" and not tests:
        raise UsageError("--cv split needs --test-subjects", hint="e.g. --test-subjects 17 18 19 20")
    if cv == "loso" and tests:
        raise UsageError("--test-subjects is for --cv split", hint="drop it, or use --cv split")
    if cv == "none" and select_on == "test":
        raise UsageError("--select-on test needs test subjects", hint="use --cv loso or --cv split")
    if cv == "loso" and len(subs) < 2:
        raise UsageError(f"--cv loso needs at least 2 subjects (one to test, one to train), found {len(subs)}: "
                         f"{', '.join(subs) or 'none'}",
                         hint="add subjects, or train on all the data without a test set: --cv none --select-on last")
    if cv == "split" and not set(subs) - set(tests):
        raise UsageError("--cv split: every subject is a test subject, none is left to train",
                         hint="leave at least one subject out of --test-subjects")

    if cv == "loso":
        partitions = [([s], [t for t in subs if t != s]) for s in subs]
    elif cv == "split":
        partitions = [(tests, [t for t in subs if t not in tests])]
    else:
        partitions = [([], subs)]

    folds = []
    for i, (test, pool) in enumerate(partitions):
        if select_on == "val":
            if vals:
                val = [v for v in vals if v in pool]
                if not val:
                    # a LOSO fold whose test subject is the fixed validation subject: draw one instead
                    val = _draw(pool, n_val, seed + i)
            else:
                val = _draw(pool, n_val, seed + i)
        else:
            val = []
        train = [s for s in pool if s not in val]
        if not train:
            # the pool is not empty here (checked above): the validation subjects took every training subject
            raise UsageError(f"fold {i}: no training subject left ({len(subs)} subjects, test {test}, "
                             f"validation {val})",
                             hint="give fewer --val-subjects, or --select-on last (no validation subject)")
        name = f"test-{'+'.join(test)}" if test else "all"
        folds.append(Fold(name=name, train=tuple(train), val=tuple(val), test=tuple(test), select_on=select_on))
    return folds


def _draw(pool: list[str], n: int, seed: int) -> list[str]:
    if len(pool) <= n:
        smaller = f"--n-val {len(pool) - 1}, " if len(pool) > 1 else ""
        raise UsageError(f"{len(pool)} training subject(s) cannot spare {n} for validation",
                         hint=f"use more subjects, {smaller}or --select-on last (keep the last epoch, no validation "
                              "subject)")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pool), size=n, replace=False)
    return sorted(pool[j] for j in pick)
