"""Shared helpers for the benchmarks: provenance, machine information, timing and the JSON + Markdown writer.

Every benchmark module ``benchmarks/bench_<name>.py`` exposes ``main(quick: bool = False) -> dict`` and ends by
calling :func:`write_results`, which writes ``benchmarks/results/<name>.json`` (records, metadata, how it was run
and the machine, for machines) and ``benchmarks/results/<name>.md`` (a Markdown table, for people)::

    from benchmarks.common import machine_info, time_call, write_results

    records = [{"case": "a", "seconds": 0.12, "speedup": 30.5}]
    write_results("scan", records, meta={"quick": quick}, md_table_columns=["case", "seconds", "speedup"])

Every result records its command line, the git commit of the code (and whether the tree had uncommitted
changes) and the machine (:func:`run_info`, :func:`machine_info`). A ``--quick`` run (``meta["quick"]``) is a
smoke run: it goes to ``benchmarks/results/quick/`` (ignored by git), never over the committed full results.

Benchmarks are never part of the test run; timings belong here, not in tests.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from spec2vol_bids.utils import atomic_write, versions, write_json

PACKAGE_DIR = Path(__file__).resolve().parent
RESULTS_DIR = PACKAGE_DIR / "results"
#: where ``--quick`` (smoke) runs write, so they never overwrite the committed full results (ignored by git)
QUICK_DIR = RESULTS_DIR / "quick"

__all__ = ["RESULTS_DIR", "QUICK_DIR", "run_info", "machine_info", "time_call", "format_value", "markdown_table",
           "write_results", "bench_parser"]


def command_line(argv: list[str] | None = None) -> str:
    """The command that ran this process, e.g. ``python -m benchmarks.run --quick --only scan``."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]) if argv else Path()
    if script.suffix == ".py" and script.resolve().parent == PACKAGE_DIR:
        argv = ["python", "-m", f"benchmarks.{script.stem}", *argv[1:]]
    return shlex.join(argv)


def git_commit(repo: str | os.PathLike = PACKAGE_DIR.parent) -> dict[str, Any]:
    """``commit`` (full hash, or None outside a git checkout) and ``dirty`` (uncommitted changes) of ``repo``."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30,
                                 check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def run_info(*, quick: bool = False) -> dict[str, Any]:
    """How a result was made: ``command`` (the command line), ``git`` (commit, dirty) and ``quick``."""
    return {"command": command_line(), "git": git_commit(), "quick": bool(quick)}


def bench_parser(doc: str | None, **kwargs) -> argparse.ArgumentParser:
    """The command-line parser of a benchmark module (``--quick`` included); add the module's own options."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None, **kwargs)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: fewer repeats, smaller cases; results in benchmarks/results/quick/")
    return parser


def machine_info() -> dict[str, Any]:
    """Describe the machine a benchmark ran on: CPU, core counts, memory, threads, GPU and software versions.

    Returns
    -------
    info : dict
        JSON-serialisable; ``cpu_model``, ``logical_cpus``, ``usable_cpus`` (the affinity mask), ``memory_gb``,
        ``torch_threads``, ``cuda_device`` (``None`` without a GPU), ``versions`` and a UTC ``timestamp``.
    """
    info: dict[str, Any] = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": _memory_gb(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is a main dependency
        info["torch_threads"] = None
        info["cuda_device"] = None
    info["versions"] = versions(extra=("mambapy", "psutil"))
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def time_call(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1, min_time: float = 0.0,
              sync: Callable[[], Any] | None = None) -> dict[str, float]:
    """Time ``fn()`` and return the median, minimum and spread of the per-call wall time in seconds.

    Parameters
    ----------
    fn : callable
        Called with no argument; its result is discarded.
    repeats : int
        Number of timed calls (at least 1).
    warmup : int
        Untimed calls first (allocator, caches, lazy initialisation).
    min_time : float
        Keep calling (beyond ``repeats``) until this many seconds have been timed in total.
    sync : callable, optional
        Called after each call before the clock stops (e.g. ``torch.cuda.synchronize``).

    Returns
    -------
    stats : dict
        ``median``, ``min``, ``max``, ``mean``, ``stdev`` (seconds) and ``n`` (number of timed calls).
    """
    for _ in range(warmup):
        fn()
        if sync is not None:
            sync()
    times: list[float] = []
    total = 0.0
    while len(times) < max(1, repeats) or total < min_time:
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "mean": statistics.fmean(times),
        "stdev": statistics.stdev(times) if len(times) > 1 else 0.0,
        "n": len(times),
    }


def format_value(value: Any) -> str:
    """Format one table cell: floats with 4 significant digits (scientific when tiny or huge)."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(records: Sequence[dict], columns: Iterable[str]) -> str:
    """Render ``records`` as a GitHub Markdown table with the given ``columns`` (missing cells stay empty)."""
    columns = list(columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for rec in records:
        lines.append("| " + " | ".join(format_value(rec.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _provenance_line(run: dict) -> str:
    commit, dirty = run["git"]["commit"], run["git"]["dirty"]
    code = f"commit {commit[:12]}{' with uncommitted changes' if dirty else ''}" if commit else "commit unknown"
    return f"Command: `{run['command']}`; {code}{'; a quick (smoke) run' if run['quick'] else ''}."


def write_results(name: str, records: list[dict], meta: dict | None = None,
                  md_table_columns: Sequence[str] | None = None, *, title: str | None = None,
                  notes: str | None = None, results_dir: str | os.PathLike | None = None,
                  quick: bool | None = None) -> dict[str, Path]:
    """Write ``<results_dir>/<name>.json`` and ``<results_dir>/<name>.md`` atomically, with their provenance.

    Parameters
    ----------
    name : str
        Benchmark name (file stem), e.g. ``"scan"``.
    records : list of dict
        One row per measured case; JSON-serialisable values (NumPy scalars allowed).
    meta : dict, optional
        Settings and summary numbers (targets, pass/fail, units); stored under ``"meta"`` and listed in the
        Markdown file.
    md_table_columns : sequence of str, optional
        Columns of the Markdown table, in order; default: the keys of the first record.
    title, notes : str, optional
        Markdown heading (default ``"Benchmark: <name>"``) and a free-text paragraph under it.
    results_dir : path-like, optional
        Output folder; default ``benchmarks/results``, or :data:`QUICK_DIR` for a quick run.
    quick : bool, optional
        A smoke run (default: ``meta["quick"]``).

    Returns
    -------
    paths : dict
        ``{"json": Path, "md": Path}``.
    """
    meta = dict(meta or {})
    quick = bool(meta.get("quick", False)) if quick is None else bool(quick)
    out = Path(results_dir) if results_dir is not None else (QUICK_DIR if quick else RESULTS_DIR)
    run = run_info(quick=quick)
    machine = machine_info()
    payload = {"benchmark": name, "run": run, "meta": meta, "machine": machine, "records": records}
    json_path = write_json(out / f"{name}.json", payload)

    columns = list(md_table_columns) if md_table_columns else (list(records[0]) if records else [])
    md = [f"# {title or f'Benchmark: {name}'}", ""]
    if notes:
        md += [notes.strip(), ""]
    md += [_provenance_line(run), "",
           f"Machine: {machine['cpu_model']}, {machine['usable_cpus']} usable CPU(s) "
           f"(torch threads {machine['torch_threads']}), GPU: {machine['cuda_device'] or 'none'}; "
           f"torch {machine['versions'].get('torch', '?')}; {machine['timestamp']}.", ""]
    if meta:
        md += ["| setting | value |", "|---|---|"]
        md += [f"| {k} | {format_value(v)} |" for k, v in meta.items()]
        md.append("")
    if records:
        md += [markdown_table(records, columns), ""]
    md_path = atomic_write(out / f"{name}.md", "\n".join(md))
    return {"json": json_path, "md": md_path}
