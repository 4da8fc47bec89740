"""Data helpers shared by the experiments: per-run tensors of the participant derivatives, z-scored inputs, and
noise-free control targets made from a known input feature."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["run_arrays", "zscored_sets", "CONTROLS", "control_signal", "control_standardiser", "control_blob",
           "NEAR", "FAR"]

#: output regions ``(rows, cols)`` of the 64 x 64 grid where a control is scored: ``NEAR`` holds the grid position
#: of the control feature in the published network (electrode 0 = image row 0, bins 16-24 = encoded columns 4-6),
#: ``FAR`` lies away from it (rows 4-11, cols 28-36, the old benchmarks' region)
NEAR = (slice(0, 4), slice(1, 9))
FAR = (slice(4, 12), slice(28, 37))

#: control features: (electrode index, first bin, last bin + 1, windows from the end), named for what they are in the
#: simulator's ``tiny`` montage (Fz, Cz, Pz, Oz, ...): the alpha source peaks at Pz, so the alpha band at Fz is
#: background power (a fair linear target, not a physiological one); ``alpha-pz`` is the source's own electrode
CONTROLS = {"alpha-fz": (0, 16, 25, 8), "alpha-pz": (2, 16, 25, 8)}


def run_arrays(runs, subjects: Sequence[str], scaling):
    """One ``(x, y)`` float32 tensor pair per run of ``subjects`` (every pair of the run, in time order)."""
    import torch

    from spec2vol_bids.train.data import PairDataset

    out = []
    for run in runs:
        if run.subject in subjects:
            ds = PairDataset([run], scaling)
            xs, ys = zip(*(ds[i] for i in range(len(ds))))
            out.append((torch.stack(xs), torch.stack(ys)))
    return out


def zscored_sets(runs, groups: dict, train: str = "train") -> dict:
    """``{name: [(x, y) per run]}`` for each ``{name: subjects}`` of ``groups``: the spectrogram min-max scaled
    with the ``train`` group's statistics (the trainer's default), then z-scored per (electrode, frequency) over
    the ``train`` group's windows."""
    import torch

    from spec2vol_bids.train.data import compute_scaling

    scaling = compute_scaling(runs, "train-minmax", train_subjects=groups[train])
    sets = {name: run_arrays(runs, subjects, scaling) for name, subjects in groups.items()}
    x_train = torch.cat([x for x, _ in sets[train]])
    mu = x_train.mean(dim=(0, 1), keepdim=True)
    sd = x_train.std(dim=(0, 1), keepdim=True) + 1e-6
    return {name: [((x - mu) / sd, y) for x, y in v] for name, v in sets.items()}


def control_signal(x, kind: str):
    """Per sample, the input feature of control ``kind`` (:data:`CONTROLS`): the mean over the last windows and a
    band of frequency bins of one electrode of the z-scored input ``x [N, W, C, F]``."""
    if kind not in CONTROLS:
        raise ValueError(f"unknown control {kind!r}; choose one of {', '.join(CONTROLS)}")
    e, lo, hi, last = CONTROLS[kind]
    return x[:, -last:, e, lo:hi].mean(dim=(1, 2))


def control_standardiser(kind: str, x_train):
    """``f(x)``: the control signal of ``x`` standardised with the mean and std of ``x_train``'s."""
    train_sig = control_signal(x_train, kind)
    m, s = train_sig.mean(), train_sig.std()
    return lambda x: (control_signal(x, kind) - m) / s


def control_blob(region, *, sigma: float = 2.5, grid: int = 64):
    """A Gaussian blob ``[grid, grid]`` centred on ``region`` (``(rows, cols)`` slices) and its core mask."""
    import torch

    rows, cols = region
    cy = (rows.start + rows.stop - 1) / 2
    cx = (cols.start + cols.stop - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    return blob, blob > 0.5


def experiment_parser(doc: str):
    """The command line every experiment shares: ``--quick``, the simulation's size, the steps, ``--derivatives``."""
    import argparse

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke run (results in experiments/results/quick/)")
    p.add_argument("--subjects", type=int, help="subjects of the tiny simulation")
    p.add_argument("--volumes", type=int, help="volumes per subject")
    p.add_argument("--steps", type=int, help="optimiser steps per run")
    p.add_argument("--derivatives", help="use these participant-level derivatives instead of simulating")
    return p
