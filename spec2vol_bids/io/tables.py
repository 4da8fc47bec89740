"""TSV tables (``group_metrics.tsv``, ``metrics.tsv``, ``participants.tsv``, ``noise_ceiling.tsv``, ...).

One writer and one reader for every table spec2vol-bids writes or reads: tab-separated, a header row, ``n/a``
for missing and non-finite values, floats with six significant digits, and (when given) a JSON sidecar describing
the columns, as BIDS asks for tabular files.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..utils import atomic_write, write_json
from .names import sidecar_path

__all__ = ["format_cell", "write_tsv", "read_tsv", "read_tsv_frame"]


def format_cell(value: Any) -> str:
    """One TSV cell: ``n/a`` for ``None`` and non-finite floats, floats with 6 significant digits, else ``str``."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else "n/a"
    return str(value)


def write_tsv(dest: str | os.PathLike, rows: Sequence[Mapping[str, Any] | Sequence[Any]],
              columns: Sequence[str], *, sidecar: Mapping[str, Any] | None = None) -> Path:
    """Write a TSV table atomically (and its JSON sidecar, when given).

    Parameters
    ----------
    dest : path-like
        The ``.tsv`` file.
    rows : sequence of mapping or sequence
        One row each: a mapping (its values for ``columns``; a missing key is ``n/a``) or the cells in column order.
    columns : sequence of str
        The header.
    sidecar : mapping, optional
        Column descriptions, written to the ``.json`` of the same name.

    Returns
    -------
    Path
        ``dest``.
    """
    cells = [[r.get(c) for c in columns] if isinstance(r, Mapping) else list(r) for r in rows]
    text = "\t".join(columns) + "\n" + "".join("\t".join(format_cell(v) for v in row) + "\n" for row in cells)
    dest = atomic_write(dest, text)
    if sidecar is not None:
        write_json(sidecar_path(dest), dict(sidecar))
    return dest


def read_tsv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a TSV table as dictionaries of text (``n/a`` kept as is)."""
    text = Path(path).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def read_tsv_frame(path: str | os.PathLike):
    """A TSV table as a :class:`pandas.DataFrame` (numbers parsed, ``n/a`` as missing)."""
    import pandas as pd

    return pd.read_csv(path, sep="\t", na_values=["n/a"])
