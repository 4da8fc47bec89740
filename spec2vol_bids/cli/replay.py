"""``spec2vol_bids replay``: stream an EEG recording and its markers over Lab Streaming Layer in real time."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._version import __version__
from .argtypes import nonnegative_int, positive_float, positive_int


def build_parser(prog: str = "spec2vol_bids replay") -> argparse.ArgumentParser:
    """Command-line parser of ``spec2vol_bids replay``."""
    from .main import add_verbosity_options

    p = argparse.ArgumentParser(
        prog=prog,
        description="Stream a BrainVision/EDF/BDF/EEGLAB recording over Lab Streaming Layer at its own pace "
                    "(mne-lsl PlayerLSL): the EEG as stream NAME and its markers (strings, e.g. Response/R128) as "
                    "NAME-annotations, each marker with the timestamp of the sample it marks. With `spec2vol_bids "
                    "realtime` the whole loop runs on one machine, for tests and demos.",
        epilog="example: spec2vol_bids replay sub-01/eeg/sub-01_task-rest_eeg.vhdr --name eeg & "
               "spec2vol_bids realtime --model model.ckpt --stream eeg --marker-stream eeg-annotations --out rt/",
    )
    p.add_argument("eeg_file", metavar="BIDS_EEG_FILE", type=Path, help="the recording (.vhdr, .edf, .bdf, .set)")
    p.add_argument("--name", default="spec2vol-replay", help="name of the EEG stream (default: spec2vol-replay)")
    p.add_argument("--chunk-size", type=positive_int, default=10, metavar="N", help="samples per LSL chunk")
    p.add_argument("--repeat", type=positive_int, default=1, metavar="N", help="play the recording N times")
    p.add_argument("--duration", type=positive_float, default=None, metavar="S", help="stop after S seconds")
    p.add_argument("--drop-marker", type=nonnegative_int, action="append", default=[], metavar="I",
                   help="leave out the I-th marker (0-based; repeatable), to rehearse a missed trigger")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_verbosity_options(p)
    p.add_argument("--version", action="version", version=f"spec2vol-bids {__version__}")
    return p


def run(args: argparse.Namespace) -> int:
    """Play the recording; returns 0, or 130 when interrupted."""
    from ..pipeline.lsl import replay
    from .main import setup_logging

    setup_logging(args.verbose, args.quiet)
    result = replay(args.eeg_file, name=args.name, chunk_size=args.chunk_size, n_repeat=args.repeat,
                    duration=args.duration, drop_markers=args.drop_marker, progress=args.progress)
    return 130 if result["stopped_by"] == "interrupt" else 0
