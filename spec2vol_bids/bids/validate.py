"""Run the official BIDS validator (``bids-validator-deno``) and return its findings.

The validator is the schema-based JavaScript validator of the BIDS project, shipped on PyPI as
``bids-validator-deno`` (it brings its own ``deno`` runtime and works offline). This module finds the executable,
runs it with ``--format json`` and parses the result into a :class:`ValidationReport`::

    from spec2vol_bids.bids.validate import run_validator, validator_available

    if validator_available():
        report = run_validator(bids_dir, ignore=("README_FILE_MISSING",))
        if not report.ok:
            print(report.summary())

Nothing here is imported by the command line at start-up; only :mod:`json`, :mod:`subprocess` and
:mod:`shutil` are used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NoInputError, SoftwareError

__all__ = ["EXECUTABLE", "Issue", "ValidationReport", "find_validator", "run_validator", "validator_available"]

#: name of the validator executable (PyPI package ``bids-validator-deno``)
EXECUTABLE = "bids-validator-deno"

_INSTALL_HINT = "Install it with `pip install bids-validator-deno` (it is part of the `test` extra)"


@dataclass(frozen=True)
class Issue:
    """One finding of the validator.

    Attributes
    ----------
    code : str
        Issue code, e.g. ``"SIDECAR_KEY_REQUIRED"``.
    severity : str
        ``"error"``, ``"warning"`` or ``"ignore"``.
    location : str
        File the issue is about, relative to the dataset root (``"/sub-01/eeg/..."``), or ``""``.
    sub_code : str
        Refinement of the code (e.g. the missing key), or ``""``.
    message : str
        Human-readable explanation, or ``""``.
    """

    code: str
    severity: str
    location: str = ""
    sub_code: str = ""
    message: str = ""

    def __str__(self) -> str:
        code = f"{self.code}[{self.sub_code}]" if self.sub_code else self.code
        return f"{self.severity.upper()} {code} {self.location}".rstrip()


@dataclass
class ValidationReport:
    """Parsed output of one validator run.

    Attributes
    ----------
    path : Path
        The validated dataset.
    errors, warnings : list of Issue
        Findings left after the ignore list was applied.
    ignored : list of Issue
        Findings dropped because their code (or ``CODE[subCode]``) was in the ignore list.
    returncode : int
        Exit status of the validator (0 without errors, 16 with errors).
    summary_info : dict
        The validator's ``summary`` block (subjects, tasks, modalities, schema version, ...).
    """

    path: Path
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    ignored: list[Issue] = field(default_factory=list)
    returncode: int = 0
    summary_info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no error is left (warnings do not count)."""
        return not self.errors

    def codes(self, severity: str = "error") -> list[str]:
        """Sorted unique issue codes of one severity (``"error"`` or ``"warning"``)."""
        issues = self.errors if severity == "error" else self.warnings
        return sorted({i.code for i in issues})

    def summary(self, max_lines: int = 20) -> str:
        """A short multi-line text: counts, then the first ``max_lines`` errors (then warnings)."""
        lines = [f"{self.path}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"
                 f"{f', {len(self.ignored)} ignored' if self.ignored else ''}"]
        shown = [*self.errors, *self.warnings][:max_lines]
        lines += [f"  {issue}" for issue in shown]
        hidden = len(self.errors) + len(self.warnings) - len(shown)
        if hidden > 0:
            lines.append(f"  ... and {hidden} more")
        return "\n".join(lines)


def find_validator() -> Path | None:
    """Path of the ``bids-validator-deno`` executable, or None when it is not installed.

    Looks next to the running Python interpreter first (a virtual environment's ``bin/`` need not be on
    ``PATH``), then on ``PATH``.
    """
    candidates = [Path(sys.executable).parent / EXECUTABLE]
    if os.name == "nt":  # pragma: no cover - not tested on Windows
        candidates.insert(0, Path(sys.executable).parent / f"{EXECUTABLE}.exe")
    for cand in candidates:
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    found = shutil.which(EXECUTABLE)
    return Path(found) if found else None


def validator_available() -> bool:
    """True when the ``bids-validator-deno`` executable can be found (see :func:`find_validator`)."""
    return find_validator() is not None


def _matches(issue: Issue, ignore: set[str]) -> bool:
    return issue.code in ignore or (bool(issue.sub_code) and f"{issue.code}[{issue.sub_code}]" in ignore)


def run_validator(path: str | os.PathLike, *, recursive: bool = False, ignore: Iterable[str] = (),
                  ignore_warnings: bool = False, timeout: float = 600.0) -> ValidationReport:
    """Validate a BIDS dataset with ``bids-validator-deno --format json``.

    Parameters
    ----------
    path : path-like
        Root of the dataset (the folder holding ``dataset_description.json``).
    recursive : bool
        Also validate the datasets under ``derivatives/`` (validator option ``-r``); their issues are
        included with locations relative to ``path`` (``/derivatives/<name>/...``). Note that the validator
        does not apply a derivative dataset's own ``.bidsignore`` in this mode; validate a derivative dataset
        directly (``run_validator(path / "derivatives" / name)``) for that.
    ignore : iterable of str
        Issue codes to drop (``"README_FILE_MISSING"``) or one sub-code of a code
        (``"SIDECAR_KEY_RECOMMENDED[Manufacturer]"``). Dropped issues are kept in ``report.ignored``.
    ignore_warnings : bool
        Ask the validator not to report warnings at all (``--ignoreWarnings``).
    timeout : float
        Seconds before the validator is stopped.

    Returns
    -------
    report : ValidationReport
        ``report.ok`` is True when no error is left.

    Raises
    ------
    NoInputError
        If ``path`` is not a folder, or the validator is not installed (check first with
        :func:`validator_available`).
    SoftwareError
        If the validator crashed or printed something that is not its JSON report.
    """
    root = Path(path)
    if not root.is_dir():
        raise NoInputError(f"Cannot validate {root}: it is not a folder",
                           hint="Give the root folder of a BIDS dataset")
    exe = find_validator()
    if exe is None:
        raise NoInputError(f"The BIDS validator ({EXECUTABLE}) is not installed", hint=_INSTALL_HINT)
    cmd = [os.fspath(exe), "--format", "json"]
    if recursive:
        cmd.append("--recursive")
    if ignore_warnings:
        cmd.append("--ignoreWarnings")
    cmd.append(os.fspath(root.resolve()))
    env = {**os.environ, "NO_COLOR": "1"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired as err:
        raise SoftwareError(f"The BIDS validator did not finish within {timeout:.0f} s on {root}",
                            hint="Validate a smaller dataset or raise the timeout") from err
    try:
        payload = json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SoftwareError(f"The BIDS validator exited with code {proc.returncode} without a JSON report "
                            f"({tail[0][:200]})", hint="Run it by hand to see the full message") from err

    ignore_set = set(ignore)
    report = ValidationReport(path=root, returncode=proc.returncode, summary_info=payload.get("summary", {}))
    # the root dataset's issues, then (with --recursive) each derivative dataset's, located from the root
    sources = [("", payload)]
    sources += [(str(prefix).rstrip("/"), sub) for prefix, sub in (payload.get("derivativesSummary") or {}).items()]
    for prefix, block in sources:
        for raw in (block.get("issues") or {}).get("issues", []):
            issue = Issue(code=str(raw.get("code", "")), severity=str(raw.get("severity", "error")),
                          location=prefix + str(raw.get("location", "")),
                          sub_code=str(raw.get("subCode", "") or ""), message=str(raw.get("issueMessage", "") or ""))
            _file_issue(report, issue, ignore_set)
    return report


def _file_issue(report: ValidationReport, issue: Issue, ignore_set: set[str]) -> None:
    """Put one issue into the right list of ``report``."""
    if _matches(issue, ignore_set):
        report.ignored.append(issue)
    elif issue.severity == "error":
        report.errors.append(issue)
    elif issue.severity == "warning":
        report.warnings.append(issue)
    else:  # "ignore" severity: the validator's own ignore list
        report.ignored.append(issue)
