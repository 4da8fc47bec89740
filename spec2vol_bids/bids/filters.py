"""What a run of the BIDS-App selects: participant, session and task labels, and ``--bids-filter-file`` queries.

Labels come from the command line with or without their prefix (``sub-01`` or ``01``, as fMRIPrep accepts them);
:func:`check_labels` refuses empty ones (an unset ``$SUBJ`` must not mean "every subject"). The filter file is
fMRIPrep's: PyBIDS filters per query, ``null`` for "absent" and ``"*"`` for "any value" (:func:`to_query`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import UsageError
from ..utils import require_path

__all__ = ["strip_prefix", "check_labels", "load_filter_file", "to_query"]


def strip_prefix(labels: Iterable[str] | str | None, prefix: str) -> list[str] | None:
    """Normalise entity labels from the command line: split on white space and drop an optional prefix.

    ``["sub-01 sub-02", "03"]`` with ``prefix="sub-"`` gives ``["01", "02", "03"]``; ``None`` stays ``None``.
    """
    if labels is None:
        return None
    if isinstance(labels, str):
        labels = [labels]
    out: list[str] = []
    for item in labels:
        for label in str(item).split():
            label = label.removeprefix(prefix)
            if label and label not in out:
                out.append(label)
    return out or None


def check_labels(labels: Iterable[str] | str | None, prefix: str, option: str) -> list[str] | None:
    """:func:`strip_prefix` for a command-line option, refusing empty labels.

    ``--participant-label ""`` (an unset ``$SUBJ`` in an array job), ``" "`` or a bare ``sub-`` must not mean
    "every subject": each value given has to hold at least one label.

    Raises
    ------
    UsageError
        A value of ``labels`` is empty, blank or only the prefix.
    """
    if labels is None:
        return None
    if isinstance(labels, str):
        labels = [labels]
    labels = list(labels)
    noun = {"sub-": "participant", "ses-": "session", "task-": "task"}.get(prefix, "label")
    for item in labels:
        tokens = str(item).split()
        if not tokens or any(not t.removeprefix(prefix) for t in tokens):
            raise UsageError(f"{option} was given an empty label ({str(item)!r}), which must not mean every {noun}",
                             hint=f"Give labels such as {prefix}01 or 01, or leave out {option} to process all "
                                  "(in a job script, check that the variable holding the label is set)")
    return strip_prefix(labels, prefix)


def load_filter_file(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read an fMRIPrep-style ``--bids-filter-file``.

    The file is a JSON object keyed by query name (``"eeg"``, ``"bold"``), each holding PyBIDS filters, e.g.
    ``{"bold": {"session": "1", "acquisition": null}}``. ``null`` means "the entity must be absent"
    (``Query.NONE``) and ``"*"`` means "any value" (``Query.ANY``), as in fMRIPrep.

    Raises
    ------
    NoInputError
        The file does not exist.
    UsageError
        The file is not a JSON object of objects, or uses query names other than ``eeg`` and ``bold``.
    """
    path = require_path(path, "the BIDS filter file", hint="Check the --bids-filter-file path")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UsageError(f"the BIDS filter file {path} is not valid JSON ({err.msg} at line {err.lineno})",
                         hint="Write it as {\"bold\": {\"session\": \"1\"}, \"eeg\": {...}}") from None
    if not isinstance(spec, dict) or not all(isinstance(v, dict) for v in spec.values()):
        raise UsageError(f"the BIDS filter file {path} must hold a JSON object of objects",
                         hint="Write it as {\"bold\": {\"session\": \"1\"}, \"eeg\": {...}}")
    unknown = sorted(set(spec) - {"eeg", "bold"})
    if unknown:
        raise UsageError(f"the BIDS filter file {path} has unknown query names {unknown}",
                         hint="spec2vol-bids reads the 'eeg' and 'bold' queries only")
    return spec



def to_query(filters: Mapping[str, Any]) -> dict[str, Any]:
    """PyBIDS query arguments from one query of a filter file (``None`` -> ``Query.NONE``, ``"*"`` -> ``Query.ANY``)."""
    from bids.layout import Query

    out: dict[str, Any] = {}
    for key, value in filters.items():
        if value is None:
            out[key] = Query.NONE
        elif value == "*":
            out[key] = Query.ANY
        else:
            out[key] = value
    return out
