"""``spec2vol_bids simulate``: write a synthetic simultaneous EEG-fMRI BIDS dataset with known ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._version import __version__
from .argtypes import nonnegative_int, positive_float, positive_int

#: preset names (kept here so ``--help`` does not import the simulator)
PRESET_NAMES = ("tiny", "noddi-like", "oddball-like", "cnepfl-like")


def build_parser(prog: str = "spec2vol_bids simulate") -> argparse.ArgumentParser:
    """Command-line parser of ``spec2vol_bids simulate``."""
    from .main import add_verbosity_options

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write a synthetic simultaneous EEG-fMRI BIDS dataset whose BOLD signal is driven by the band "
                    "power of latent EEG sources (through the canonical HRF), with the noise-free ground truth and "
                    "the noise ceiling under OUT_DIR/derivatives/simulation.",
        epilog="presets: tiny (tests and demos: 4 subjects, 16 ch, 250 Hz, TR 2 s, 64x64x8, 72 volumes); "
               "noddi-like (16 subjects, 63 ch + ECG, 250 Hz, TR 2.16 s, 64x64x30, 300 volumes); "
               "oddball-like (17 subjects, 43 ch, 1000 Hz, TR 2 s, 64x64x32, 170 volumes, 2 tasks x 3 runs, "
               "stimulus events); cnepfl-like (20 subjects, 63 ch + ECG, 5000 Hz, TR 1.28 s, 108x108x64, "
               "370 volumes, 6 runs).",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="dataset root to create (new or empty)")
    parser.add_argument("--preset", choices=PRESET_NAMES, default="tiny", help="dataset preset (default: tiny)")
    parser.add_argument("--subjects", type=positive_int, metavar="N", help="number of subjects (default: preset)")
    parser.add_argument("--sessions", type=positive_int, metavar="S", help="sessions per subject (default: preset)")
    parser.add_argument("--runs", type=positive_int, metavar="R", help="runs per task and session (default: preset)")
    parser.add_argument("--volumes", type=positive_int, metavar="V", help="BOLD volumes per run (default: preset)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, metavar="K", help="random seed (default: 0)")
    parser.add_argument("--artefacts", metavar="LIST", default=None,
                        help="EEG recorded inside the scanner: a comma-separated list of gradient (the MR gradient "
                             "artefact, slice-locked, millivolts, with Response/Slice slice-trigger markers) and bcg "
                             "(the pulse artefact, locked to the ECG; an ECG channel is added when the preset has "
                             "none). The EEG without them goes to derivatives/simulation (desc-clean). "
                             "Default: none")
    parser.add_argument("--sfreq", type=positive_float, metavar="HZ",
                        help="EEG sampling frequency (default: preset); the gradient artefact needs a rate that "
                             "holds the slice harmonics, e.g. 1000")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    add_verbosity_options(parser)
    parser.add_argument("--version", action="version", version=f"spec2vol-bids {__version__}")
    return parser


def run(args: argparse.Namespace) -> int:
    """Simulate the dataset described by ``args``; returns the exit code (0)."""
    from .main import setup_logging

    setup_logging(args.verbose, args.quiet)
    from ..simulate import simulate_dataset

    root = simulate_dataset(args.out_dir, preset=args.preset, subjects=args.subjects, sessions=args.sessions,
                            runs=args.runs, volumes=args.volumes, seed=args.seed, overwrite=args.overwrite,
                            progress=args.progress, artefacts=args.artefacts, sfreq=args.sfreq)
    ceiling = root / "derivatives" / "simulation" / "noise_ceiling.tsv"
    print(f"wrote {root} (ground truth and noise ceiling: {ceiling.relative_to(root)})")
    return 0
