"""Provenance of a report: the "About" section (command line, date, version, environment, input datasets).

Every path a report shows is relative to the folder the report is in (``OUT_DIR``, ``MODEL_DIR``), so a report
moved or shared with its folder names no machine path: :func:`relative_command` rewrites the paths of a command
line, :func:`scrub` those inside free text (crash files, settings).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from .html import Section, esc, table_html

__all__ = ["Provenance", "provenance", "relative_command", "relative_path", "scrub", "about_section"]

#: libraries listed in the About section, in this order (versions keys of :func:`spec2vol_bids.utils.versions`)
_LIBRARIES = ("numpy", "scipy", "torch", "nibabel", "nilearn", "mne", "mne-bids", "pybids", "nipype", "h5py",
              "mamba-ssm")


def relative_path(path: str | os.PathLike, base: str | os.PathLike) -> str:
    """``path`` relative to ``base`` (POSIX separators), e.g. ``../bids``; ``.`` for ``base`` itself."""
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(base))).as_posix()


def _looks_like_path(token: str) -> bool:
    return os.path.isabs(token) or os.sep in token or os.path.exists(token)


def relative_command(argv: Sequence[str], base: str | os.PathLike) -> str:
    """A command line with every path argument made relative to ``base`` (also ``NAME=PATH`` values), quoted
    for a POSIX shell; the program is shown by its name."""
    out = []
    for i, token in enumerate(map(str, argv)):
        if i == 0:
            out.append(Path(token).name)
            continue
        name, sep, value = token.partition("=")
        if sep and not token.startswith("-") and value and _looks_like_path(value):
            out.append(f"{name}={relative_path(value, base)}")
        elif not token.startswith("-") and _looks_like_path(token):
            out.append(relative_path(token, base))
        else:
            out.append(token)
    return shlex.join(out)


def scrub(text: str, paths: Mapping[str, str]) -> str:
    """Replace each absolute path of ``paths`` (path -> label) in ``text``, longest first."""
    for path in sorted(paths, key=len, reverse=True):
        if path:
            text = text.replace(path, paths[path])
    return text


class Provenance(dict):
    """The About table (label -> value, in order) plus ``paths``: absolute path -> label, to :func:`scrub`."""

    def __init__(self, items: Mapping[str, str], paths: Mapping[str, str]):
        super().__init__(items)
        self.paths = dict(paths)


def _dataset(root: Path, base: Path) -> str:
    """``<Name> (doi:...), at <relative path>`` of a BIDS dataset."""
    desc: dict[str, Any] = {}
    try:
        desc = json.loads((root / "dataset_description.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    name = str(desc.get("Name") or root.name) if isinstance(desc, dict) else root.name
    doi = desc.get("DatasetDOI") if isinstance(desc, dict) else None
    return f"{name}{f' ({doi})' if doi else ''}, at {relative_path(root, base)}"


def provenance(base: str | os.PathLike, *, argv: Sequence[str] | None = None, started: _dt.datetime | None = None,
               inputs: Mapping[str, str | os.PathLike] | None = None, device: str | None = None,
               extra: Mapping[str, Any] | None = None) -> Provenance:
    """What the About section of a report in ``base`` shows.

    Parameters
    ----------
    base : path-like
        The folder of the report (``OUT_DIR``, ``MODEL_DIR``); every path is shown relative to it.
    argv : sequence of str, optional
        The command line (default: ``sys.argv``).
    started : datetime, optional
        When the run started (default: now).
    inputs : mapping, optional
        Label -> root of each input dataset (``{"BIDS_DIR": ..., "fmriprep": ...}``), shown with its
        ``dataset_description.json`` name and DOI.
    device : str, optional
        The torch device, when a model ran.
    extra : mapping, optional
        More rows (e.g. the run's identifier).
    """
    import sys

    from ..utils import versions

    base = Path(base).absolute()
    argv = list(sys.argv if argv is None else argv)
    started = started or _dt.datetime.now().astimezone()
    found = versions()
    items: dict[str, str] = {
        "Command": relative_command(argv, base),
        "Date": started.isoformat(timespec="seconds"),
        "spec2vol-bids": __version__,
        "Python": found.get("python", platform.python_version()),
        "Platform": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "CPUs": str(os.cpu_count() or "n/a"),
        "Container": os.environ.get("SPEC2VOL_DOCKER_TAG") or "none",
        "Libraries": ", ".join(f"{name} {found[name]}" for name in _LIBRARIES if name in found),
    }
    if device:
        items["Device"] = device
    paths = {str(base): "."}
    for label, root in (inputs or {}).items():
        root = Path(root).absolute()
        items[f"Input dataset ({label})"] = _dataset(root, base)
        paths[str(root)] = relative_path(root, base)
    items.update({str(k): str(v) for k, v in (extra or {}).items()})
    home = str(Path.home())
    if home not in ("/", ""):
        paths.setdefault(home, "~")
    return Provenance(items, paths)


def about_section(prov: Mapping[str, str] | None) -> Section:
    """The "About" section of a report (``<section id="about">``)."""
    if not prov:
        return Section("about", "About", '<p class="meta">No provenance recorded.</p>')
    rows = [[key, value] for key, value in prov.items()]
    body = table_html(rows, ["", ""]).replace("<thead><tr><th></th><th></th></tr></thead>", "")
    return Section("about", "About", body + f'<p class="meta">Paths are relative to the folder of this report. '
                                            f'Generated by spec2vol-bids {esc(__version__)}.</p>')
