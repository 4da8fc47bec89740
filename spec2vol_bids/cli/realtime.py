"""``spec2vol_bids realtime``: predict each fMRI volume from a live EEG stream (Lab Streaming Layer)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from .._version import __version__
from .argtypes import positive_float, positive_int


def build_parser(prog: str = "spec2vol_bids realtime") -> argparse.ArgumentParser:
    """Command-line parser of ``spec2vol_bids realtime``."""
    from .main import add_verbosity_options

    p = argparse.ArgumentParser(
        prog=prog,
        description="Connect to an EEG stream over Lab Streaming Layer (mne-lsl), take the volume triggers from a "
                    "marker stream (or a trigger channel, or a TR clock), and predict every BOLD volume as soon as "
                    "the EEG of its input windows has arrived, with the BIDS-App's own spectrogram and model code. "
                    "Each prediction is appended to a 4-D NIfTI (valid after every volume) and pushed on an LSL "
                    "outlet. Ctrl-C closes the outputs cleanly.",
        epilog="exit codes: 0 done, 64 usage, 65 the stream's channels or rate do not match the checkpoint, 66 no "
               "such stream or checkpoint, 130 interrupted (Ctrl-C or SIGTERM; outputs complete). Needs the realtime extra: "
               "pip install \"spec2vol-bids[realtime]\".",
    )
    p.add_argument("--model", required=True, type=Path, metavar="CKPT", help="a checkpoint of `spec2vol_bids train`")
    p.add_argument("--stream", required=True, metavar="NAME", help="name of the EEG stream")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--marker-stream", metavar="NAME",
                   help="name of the marker stream with the volume triggers (`replay` names it NAME-annotations)")
    g.add_argument("--trigger-channel", metavar="CH",
                   help="a channel of the EEG stream whose rising edges are the volume triggers")
    p.add_argument("--volume-marker", default=None, metavar="NAME",
                   help="description of the volume trigger in the marker stream (default: R128 or Response/R128)")
    p.add_argument("--tr", type=positive_float, default=None, metavar="SECONDS",
                   help="repetition time (default: the checkpoint's training data)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="write DIR/<name>_desc-spec2vol_bold.nii (+ .json) after every volume")
    p.add_argument("--name", default="sub-realtime_task-realtime", metavar="BIDS_NAME",
                   help="entities of the output file name (default: sub-realtime_task-realtime)")
    p.add_argument("--outlet", default="spec2vol", metavar="NAME",
                   help="name of the LSL outlet of the predictions ('none': no outlet)")
    p.add_argument("--roi-mask", type=Path, default=None, metavar="NIFTI",
                   help="a mask or label image on the model grid: the outlet carries the mean of each label "
                        "instead of the whole volume")
    p.add_argument("--napari", action="store_true",
                   help="open a live napari view of the predictions (needs --out and the napari extra): the newest "
                        "volume and the time courses, updated as volumes arrive; it runs in its own process and "
                        "stays open after the session")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--connect-timeout", type=positive_float, default=10.0, metavar="S",
                   help="seconds to wait for the streams")
    p.add_argument("--stall-timeout", type=positive_float, default=None, metavar="S",
                   help="report a stall after S seconds without EEG (default: one TR, at least 1 s)")
    p.add_argument("--idle-timeout", type=positive_float, default=None, metavar="S",
                   help="end the session after S seconds without EEG (default: run until Ctrl-C)")
    p.add_argument("--max-volumes", type=positive_int, default=None, metavar="N", help="stop after N predictions")
    p.add_argument("--duration", type=positive_float, default=None, metavar="S", help="stop after S seconds")
    add_verbosity_options(p)
    p.add_argument("--version", action="version", version=f"spec2vol-bids {__version__}")
    return p


@contextlib.contextmanager
def _interrupt_on_signals():
    """While the session runs, end it as Ctrl-C does (outputs closed, exit 130) on SIGINT and on SIGTERM
    (``docker stop``, systemd, ``kill``), also when SIGINT came ignored from the parent (a shell starts background
    jobs so, and Python then installs no handler for it). The previous handlers come back afterwards; nothing is
    changed outside the main thread (an embedding application's choice)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    """Run a real-time session; returns 0, or 130 when interrupted (SIGINT, or SIGTERM)."""
    import json

    import numpy as np

    from ..errors import DataError
    from ..pipeline.lsl import run_realtime
    from ..train.checkpoint import load_checkpoint
    from .main import setup_logging

    setup_logging(args.verbose, args.quiet)
    if args.napari:
        check_live_view(args)
    ckpt = load_checkpoint(args.model)
    out_file = None
    if args.out is not None:
        out_file = args.out / f"{args.name}_desc-spec2vol_bold.nii"
    roi = None
    if args.roi_mask is not None:
        import nibabel as nib

        roi = np.asarray(nib.load(str(args.roi_mask)).dataobj).astype(np.int64)
        if tuple(roi.shape[:3]) != tuple(int(v) for v in ckpt["grid"]["shape"]):
            raise DataError(f"the ROI mask is {tuple(roi.shape)}, the model predicts {tuple(ckpt['grid']['shape'])}",
                            hint="use a mask on the model grid (e.g. the run's desc-brain_mask of the BIDS-App)")
        roi = roi.reshape(roi.shape[:3])
    viewer = start_live_view(out_file, roi_mask=args.roi_mask) if args.napari else None
    try:
        with _interrupt_on_signals():
            result = run_realtime(ckpt, stream=args.stream, marker_stream=args.marker_stream,
                                  volume_marker=args.volume_marker, trigger_channel=args.trigger_channel,
                                  out_file=out_file, outlet=None if args.outlet == "none" else args.outlet,
                                  roi_mask=roi, repetition_time=args.tr, device=args.device,
                                  connect_timeout=args.connect_timeout, stall_timeout=args.stall_timeout,
                                  idle_timeout=args.idle_timeout, max_volumes=args.max_volumes,
                                  duration=args.duration, info={"ModelFile": str(args.model)})
    except BaseException:
        if viewer is not None and not _has_volumes(out_file):  # nothing to show: do not leave an empty window
            viewer.terminate()
        raise
    if viewer is not None:
        _report_live_view(viewer)
    summary = {k: result[k] for k in ("volumes", "latency_median_s", "latency_p99_s", "stopped_by")}
    summary["events"] = len(result["events"])
    print(json.dumps(summary))
    return 130 if result["stopped_by"] == "interrupt" else 0


def check_live_view(args: argparse.Namespace) -> None:
    """``--napari`` needs ``--out`` (the view follows that file) and napari with a Qt binding."""
    import importlib.util

    from ..errors import UsageError

    if args.out is None:
        raise UsageError("--napari shows the predictions written to --out, and no --out was given",
                         hint="add --out DIR (the view follows DIR/<name>_desc-spec2vol_bold.nii)")
    missing = [m for m in ("napari", "qtpy") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"--napari needs the optional package {missing[0]}",
                         hint='install it with pip install "spec2vol-bids[napari]" pyqt6')


def start_live_view(out_file: Path, *, roi_mask: Path | None = None):
    """Start the live viewer (``python -m napari_spec2vol._live``) in its own process; returns the process.

    A separate process: drawing never delays a prediction, and closing (or crashing) the window leaves the
    session running.
    """
    import logging
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "napari_spec2vol._live", str(out_file), "--title",
           f"spec2vol-bids realtime: {out_file.name}"]
    if roi_mask is not None:
        cmd += ["--roi-mask", str(roi_mask)]
    logging.getLogger("spec2vol_bids.realtime").info("live view: %s", " ".join(cmd))
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL)


def _has_volumes(out_file: Path) -> bool:
    """Whether the prediction file holds a volume (more than its header)."""
    from ..io.nifti import IncrementalNifti

    try:
        return out_file.stat().st_size > IncrementalNifti.HEADER_BYTES
    except OSError:
        return False


def _report_live_view(proc) -> None:
    import logging

    log = logging.getLogger("spec2vol_bids.realtime")
    code = proc.poll()
    if code is None:
        log.info("the live view stays open until you close its window")
    elif code != 0:
        log.warning("the live view exited with code %s (its messages are above); the predictions are on disk", code)
