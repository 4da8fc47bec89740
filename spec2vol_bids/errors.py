"""Errors with documented exit codes.

Every error a user can cause is raised as a :class:`Spec2VolError` subclass. The command-line program prints
its message on one line (``spec2vol_bids: error: <what is wrong>. <what to do>``) and exits with the class's
``exit_code``. The codes follow the BIDS-Apps execution-spec draft and fMRIPrep:

====  ============================  ========================================================================
code  class                         meaning
====  ============================  ========================================================================
0                                   success
1     :class:`Spec2VolError`        generic failure (a processing step failed; see the crash file)
2                                   command-line syntax error (argparse)
16    :class:`ValidationError`      the input dataset failed BIDS validation
17    :class:`AnalysisLevelError`   unknown analysis level
18    :class:`NoMatchError`         the entity filters selected no files
64    :class:`UsageError`           a wrong combination of arguments (e.g. OUT_DIR equal to BIDS_DIR)
65    :class:`DataError`            bad data (corrupt file, NaNs, EEG shorter than BOLD, mismatched channels)
66    :class:`NoInputError`         valid input but a required file or folder is missing
70    :class:`SoftwareError`        the workflow could not be built (a bug: please report it)
73    :class:`CantCreateError`      an output cannot be created (exists, not writable)
74    :class:`IOFailure`            an I/O error while reading or writing
75    :class:`BusyError`            another run holds the work directory of this participant (try again later)
130                                 interrupted (Ctrl-C); outputs already written are complete
====  ============================  ========================================================================
"""

from __future__ import annotations


class Spec2VolError(Exception):
    """Base class of every error a user can cause; ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message.rstrip()
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = self.message
        if self.hint:
            text = f"{text.rstrip('.')}. {self.hint}"
        return " ".join(text.split())


class ValidationError(Spec2VolError):
    exit_code = 16


class AnalysisLevelError(Spec2VolError):
    exit_code = 17


class NoMatchError(Spec2VolError):
    exit_code = 18


class UsageError(Spec2VolError, ValueError):
    exit_code = 64


class DataError(Spec2VolError, ValueError):
    exit_code = 65


class NoInputError(Spec2VolError, FileNotFoundError):
    exit_code = 66


class SoftwareError(Spec2VolError):
    exit_code = 70


class CantCreateError(Spec2VolError):
    exit_code = 73


class IOFailure(Spec2VolError, OSError):
    exit_code = 74


class BusyError(Spec2VolError):
    """A resource is held by another run (sysexits' EX_TEMPFAIL: the same command may succeed later)."""

    exit_code = 75


EXIT_CODES = {
    0: "success",
    1: "a processing step failed (see the crash file under OUT_DIR/sub-<label>/log/)",
    2: "command-line syntax error",
    16: "BIDS validation failed",
    17: "unknown analysis level",
    18: "the filters selected no files",
    64: "usage error",
    65: "bad data",
    66: "missing input",
    70: "internal error (please report it)",
    73: "cannot create output",
    74: "I/O error",
    75: "another run is using the work directory for the same participant (try again later)",
    130: "interrupted (Ctrl-C); outputs already written are complete",
}
