"""nipype's text crash files: find those a run wrote, and turn the spec2vol-bids error inside back into an error.

A node that raises a :class:`~spec2vol_bids.errors.Spec2VolError` makes nipype write a crash file with the
traceback; :func:`error_from_crash` rebuilds the error from its last ``spec2vol_bids.errors.<Class>: message``
line, so the command line exits with the error's own code and message (a :class:`~spec2vol_bids.errors.DataError`
in a node exits 65, as it would outside nipype). Nothing here imports nipype.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import Spec2VolError

__all__ = ["crash_files", "error_from_crash"]

_ERROR_LINE = re.compile(r"spec2vol_bids\.errors\.(\w+): (.+)")


def crash_files(dirs: list[Path], since: float) -> list[Path]:
    """The ``crash-*`` files written in ``dirs`` since ``since`` (a ``time.time()``), oldest first."""
    found = []
    for d in dirs:
        if d.is_dir():
            found += [p for p in d.glob("crash-*") if p.stat().st_mtime >= since - 1]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def error_from_crash(path: Path) -> Spec2VolError | None:
    """The spec2vol error recorded in a nipype text crash file, rebuilt with its exit code (None if other)."""
    from .. import errors

    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    matches = _ERROR_LINE.findall(text)
    if not matches:
        return None
    name, message = matches[-1]
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Spec2VolError)):
        return None
    node = re.search(r"Node: (\S+)", text)
    where = f" (step {node.group(1)})" if node else ""
    return cls(f"{message.strip()}{where}", hint=f"Crash file: {path}")
