"""Entry point of the ``spec2vol_bids`` / ``spec2vol-bids`` program.

The program has one BIDS-App form and a few sub-commands::

    spec2vol_bids BIDS_DIR OUT_DIR {participant,group} [options]   # the BIDS-App
    spec2vol_bids simulate OUT_DIR [options]                       # synthetic EEG-fMRI BIDS dataset
    spec2vol_bids train DERIV_DIR MODEL_DIR [options]              # train on participant derivatives
    spec2vol_bids realtime --model CKPT --stream NAME [options]     # predict volumes from a live LSL stream
    spec2vol_bids replay BIDS_EEG_FILE [options]                    # stream a recording over LSL

Each sub-command lives in its own module (``spec2vol_bids.cli.<name>``) exposing ``build_parser(prog)`` and
``run(args) -> int``; modules are imported only when their command is used, so ``--help`` and ``--version``
never import torch.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import Spec2VolError

PROG = "spec2vol_bids"

#: sub-command name -> (module, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("spec2vol_bids.cli.simulate", "write a synthetic EEG-fMRI BIDS dataset with known ground truth"),
    "train": ("spec2vol_bids.cli.train", "train and cross-validate models on participant-level derivatives"),
    "realtime": ("spec2vol_bids.cli.realtime", "predict each volume from a live EEG stream (Lab Streaming Layer)"),
    "replay": ("spec2vol_bids.cli.replay", "stream an EEG recording and its markers over LSL in real time"),
}
#: the BIDS-App form (positional BIDS_DIR OUT_DIR LEVEL)
BIDSAPP_MODULE = "spec2vol_bids.cli.bidsapp"


def commands_epilog() -> str:
    lines = ["other commands (run `spec2vol_bids COMMAND --help`):"]
    lines += [f"  {name:<10} {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


#: environment the commands set for themselves (never on import), unless the user set it
COMMAND_ENVIRONMENT = {
    # OpenMP threads that spin while waiting make torch 10-30x slower as soon as the cores are shared (nipype
    # MultiProc workers, a second job on a laptop, a busy cluster node): measured here, a training step of the
    # tiny model took 6 s instead of 0.6 s. Passive waiting costs nothing measurable on an idle machine. It must
    # be set before the OpenMP runtime starts (the first torch import).
    "OMP_WAIT_POLICY": "PASSIVE",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the program; returns the exit code (see :mod:`spec2vol_bids.errors`).

    The entry point of ``spec2vol_bids``, ``spec2vol-bids`` and ``python -m spec2vol_bids``: it first sets
    :data:`COMMAND_ENVIRONMENT` (values the user set are kept), which importing the package never does.
    """
    import os

    for key, value in COMMAND_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    argv = list(sys.argv[1:] if argv is None else argv)
    original = list(argv)
    if argv and argv[0] in COMMANDS:
        module_name, _ = COMMANDS[argv[0]]
        prog = f"{PROG} {argv[0]}"
        argv = argv[1:]
    else:
        module_name, prog = BIDSAPP_MODULE, PROG
    module = importlib.import_module(module_name)
    parser = module.build_parser(prog)
    args = parser.parse_args(argv)  # argparse exits 2 on syntax errors, 0 on --help/--version
    # the command line recorded in the logs and reports is this command's, also when main() is called in-process
    saved_argv, sys.argv = sys.argv, [PROG, *original]
    try:
        return int(module.run(args) or 0)
    except Spec2VolError as err:
        logging.getLogger("spec2vol_bids").debug("error details", exc_info=True)
        print(f"{PROG}: error: {err.one_line()}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; outputs already written are complete, partial ones were removed",
              file=sys.stderr)
        return 130
    finally:
        sys.argv = saved_argv


class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` (which test runners and notebooks replace)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it; the current stderr is always used
        pass


#: what ``-v`` and ``-q`` mean, in every command (``spec2vol_bids ... -h`` shows it)
VERBOSITY_HELP = {
    "verbose": "more messages: -v adds debugging details, -vv also the libraries' own messages (nipype)",
    "quiet": "fewer messages: -q only warnings and errors, -qq only errors",
}


def add_verbosity_options(parser) -> None:
    """Add ``-v/--verbose`` and ``-q/--quiet`` (counted) to a command's parser or argument group."""
    parser.add_argument("-v", "--verbose", action="count", default=0, dest="verbose", help=VERBOSITY_HELP["verbose"])
    parser.add_argument("-q", "--quiet", action="count", default=0, dest="quiet", help=VERBOSITY_HELP["quiet"])


def log_level(verbose: int = 0, quiet: int = 0) -> int:
    """The level of spec2vol-bids' messages: INFO (the steps) by default, DEBUG with ``-v``, WARNING with ``-q``,
    ERROR with ``-qq``."""
    return min(logging.ERROR, max(logging.DEBUG, logging.INFO + 10 * (int(quiet) - int(verbose))))


def library_level(verbose: int = 0) -> int:
    """The level of the libraries' own loggers (nipype): WARNING, or DEBUG with ``-vv``."""
    return logging.DEBUG if int(verbose) >= 2 else logging.WARNING


def setup_logging(verbose: int = 0, quiet: int = 0) -> logging.Logger:
    """Send the ``spec2vol_bids`` loggers' messages at :func:`log_level` and above to stderr, once per process.

    Every command calls this with its ``-v``/``-q`` counts (never ``logging.basicConfig``), so the flags mean the
    same everywhere, and running several commands in one process (the demo, a notebook) neither duplicates lines
    nor changes the root logger of the caller.
    """
    logger = logging.getLogger("spec2vol_bids")
    logger.setLevel(log_level(verbose, quiet))
    if not any(getattr(h, "_spec2vol", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [spec2vol_bids %(levelname)s] %(message)s",
                                               "%H:%M:%S"))
        handler._spec2vol = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return logger


def version_string() -> str:
    return f"spec2vol-bids {__version__}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
