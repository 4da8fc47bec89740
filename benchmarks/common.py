"""Shared helpers for the benchmarks: machine information, timing and the JSON + Markdown result writer.

Every benchmark module ``benchmarks/bench_<name>.py`` exposes ``main(quick: bool = False) -> dict`` and ends by
calling :func:`write_results`, which writes ``benchmarks/results/<name>.json`` (records, metadata and machine
information, for machines) and ``benchmarks/results/<name>.md`` (a Markdown table, for people)::

    from benchmarks.common import machine_info, time_call, write_results

    records = [{"case": "a", "seconds": 0.12, "speedup": 30.5}]
    write_results("scan", records, meta={"quick": quick}, md_table_columns=["case", "seconds", "speedup"])

Benchmarks are never part of the test run; timings belong here, not in tests.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from spec2vol_bids.utils import atomic_write, versions, write_json

RESULTS_DIR = Path(__file__).resolve().parent / "results"

__all__ = ["RESULTS_DIR", "machine_info", "time_call", "format_value", "markdown_table", "write_results"]


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


def write_results(name: str, records: list[dict], meta: dict | None = None,
                  md_table_columns: Sequence[str] | None = None, *, title: str | None = None,
                  notes: str | None = None, results_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write ``<results_dir>/<name>.json`` and ``<results_dir>/<name>.md`` atomically.

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
        Output folder; default ``benchmarks/results``.

    Returns
    -------
    paths : dict
        ``{"json": Path, "md": Path}``.
    """
    out = Path(results_dir) if results_dir is not None else RESULTS_DIR
    meta = dict(meta or {})
    machine = machine_info()
    payload = {"benchmark": name, "meta": meta, "machine": machine, "records": records}
    json_path = write_json(out / f"{name}.json", payload)

    columns = list(md_table_columns) if md_table_columns else (list(records[0]) if records else [])
    md = [f"# {title or f'Benchmark: {name}'}", ""]
    if notes:
        md += [notes.strip(), ""]
    md += [f"Machine: {machine['cpu_model']}, {machine['usable_cpus']} usable CPU(s) "
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
