"""Group report ``OUT_DIR/group.html`` from a metrics table (one row per run).

The table is ``group_metrics.tsv`` (or a DataFrame / list of dicts) with a subject column (``subject`` or
``participant_id``) and numeric metric columns (by default every numeric column that is not an entity, e.g.
``ssim``, ``psnr``, ``dynamic_correlation``). The report shows box/strip plots per subject, a per-subject summary
table (mean ± SD) and the full table. Figures are embedded (base64 PNG) and saved under ``OUT_DIR/figures/``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import DataError, NoInputError
from .html import Section, esc, img_tag, render_page, table_html

__all__ = ["load_metrics", "group_report", "GROUP_REPORT"]

GROUP_REPORT = "group.html"
SUBJECT_COLUMNS = ("subject", "participant_id", "sub")
ENTITY_COLUMNS = {"subject", "participant_id", "sub", "session", "session_id", "ses", "task", "acq", "run",
                  "fold", "n_volumes", "n_pairs", "volume", "split", "bids_name", "level"}
PREFERRED = ("ssim", "psnr", "dynamic_correlation", "dyn_corr")


def load_metrics(table):
    """The metrics as a DataFrame with a ``subject`` column (label without ``sub-``).

    Parameters
    ----------
    table : path, pandas.DataFrame, or list of dict
        A TSV path (``group_metrics.tsv``), or the rows themselves.
    """
    import pandas as pd

    from ..io.tables import read_tsv_frame

    if isinstance(table, (str, os.PathLike)):
        path = Path(table)
        if not path.is_file():
            raise NoInputError(f"metrics table {path} does not exist",
                               hint="Run the participant level with --model first, or check OUT_DIR.")
        df = read_tsv_frame(path)
    elif isinstance(table, pd.DataFrame):
        df = table.copy()
    else:
        df = pd.DataFrame(list(table))
    if df.empty:
        raise DataError("the metrics table has no rows", hint="Check that predictions were made for some run.")
    col = next((c for c in SUBJECT_COLUMNS if c in df.columns), None)
    if col is None:
        raise DataError(f"the metrics table has no subject column (one of {', '.join(SUBJECT_COLUMNS)})",
                        hint="Add a subject column with the participant label.")
    df["subject"] = df[col].astype(str).str.replace(r"^sub-", "", regex=True)
    df.attrs["subject_column"] = col
    return df


def _metric_columns(df, metrics: Sequence[str] | None) -> list[str]:
    if metrics is not None:
        missing = [m for m in metrics if m not in df.columns]
        if missing:
            raise DataError(f"metric column(s) {', '.join(missing)} are not in the metrics table",
                            hint=f"Available columns: {', '.join(map(str, df.columns))}.")
        return list(metrics)
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    numeric = [c for c in df.columns if c not in ENTITY_COLUMNS and is_numeric_dtype(df[c])
               and not is_bool_dtype(df[c])]
    ordered = [c for c in PREFERRED if c in numeric] + [c for c in numeric if c not in PREFERRED]
    if not ordered:
        raise DataError("the metrics table has no numeric metric column",
                        hint="Expected columns such as ssim, psnr, dynamic_correlation.")
    return ordered


def group_report(out_dir: str | os.PathLike, metrics_table, *, metrics: Sequence[str] | None = None,
                 title: str = "spec2vol-bids group report", save_figures: bool = True, provenance=None) -> Path:
    """Write ``OUT_DIR/group.html`` atomically from a metrics table and return its path.

    Parameters
    ----------
    out_dir : path
        The derivatives folder.
    metrics_table : path, DataFrame or list of dict
        One row per run (see :func:`load_metrics`).
    metrics : sequence of str, optional
        Metric columns to show (default: every numeric non-entity column, SSIM/PSNR/dynamic correlation first).
    save_figures : bool
        Also save the figure as ``OUT_DIR/figures/group_desc-metrics.png``.
    provenance : Provenance, optional
        The About section (:func:`spec2vol_bids.reports.provenance.provenance`; default: made here).
    """
    from ..utils import atomic_write
    from .figures import group_metrics_figure, save_figure, to_png
    from .provenance import about_section
    from .provenance import provenance as make_provenance

    out = Path(out_dir)
    df = load_metrics(metrics_table)
    cols = _metric_columns(df, metrics)
    subjects = sorted(df["subject"].unique())

    png = to_png(group_metrics_figure(df, metrics=cols, by="subject"))
    link = None
    if save_figures:
        path = save_figure(png, out / "figures" / "group_desc-metrics.png")
        link = os.path.relpath(path, out)
    fig_html = (f"<figure>{img_tag(png, 'metrics per subject', link=link)}<figcaption class=\"meta\">Each dot is "
                f"one run; boxes show the median and quartiles per subject.</figcaption></figure>")

    per_sub = []
    for s in subjects:
        sub = df[df["subject"] == s]
        row = [f"sub-{s}", len(sub)]
        for c in cols:
            v = sub[c].astype(float).dropna()
            row.append(f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else
                       (f"{v.iloc[0]:.4f}" if len(v) else "n/a"))
        per_sub.append(row)
    overall = ["all", len(df)]
    for c in cols:
        v = df[c].astype(float).dropna()
        overall.append(f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else
                       (f"{v.iloc[0]:.4f}" if len(v) else "n/a"))
    summary = table_html(per_sub + [overall], ["subject", "runs", *[f"{c} (mean ± SD)" for c in cols]])
    derived = df.attrs.get("subject_column", "subject") != "subject"
    show = [c for c in df.columns if not (derived and c == "subject")]  # the table's own columns
    full_rows = [[None if (isinstance(v, float) and np.isnan(v)) else v for v in rec]
                 for rec in df[show].itertuples(index=False)]
    full = table_html(full_rows, [str(c) for c in show])

    sections = [
        Section("summary", "Summary",
                f"<p>{len(df)} runs from {len(subjects)} participants; metrics: {esc(', '.join(cols))}.</p>"
                + summary),
        Section("figures", "Metrics per subject", fig_html),
        Section("table", "All runs", f"<details open><summary>{len(df)} rows</summary>{full}</details>"),
        about_section(provenance if provenance is not None else make_provenance(out)),
    ]
    page = render_page(title, sections, subtitle=f"spec2vol-bids {__version__}")
    return atomic_write(out / GROUP_REPORT, page)
