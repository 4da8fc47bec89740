"""Run the benchmarks: ``python -m benchmarks.run [--quick] [--only NAME ...] [--list]`` (``make bench``).

Every module ``benchmarks/bench_<name>.py`` exposing ``main(quick: bool = False)`` is a benchmark; it writes
``benchmarks/results/<name>.json`` and ``.md`` through :func:`benchmarks.common.write_results`. Benchmarks run one
after the other in this process, in name order; one that fails is reported and the others still run (the exit
code is then 1).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def discover() -> dict[str, str]:
    """Map benchmark name (``scan`` for ``bench_scan.py``) to its module name, sorted by name."""
    found = {}
    for info in pkgutil.iter_modules([str(PACKAGE_DIR)]):
        if info.name.startswith("bench_") and not info.ispkg:
            found[info.name[len("bench_"):]] = f"benchmarks.{info.name}"
    return dict(sorted(found.items()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller cases (a smoke run)")
    parser.add_argument("--only", action="append", metavar="NAME", default=[],
                        help="run only this benchmark (name without 'bench_'; repeatable, or comma-separated)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    available = discover()
    if args.list:
        print("\n".join(available))
        return 0
    wanted = [name.strip().removeprefix("bench_") for item in args.only for name in item.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in available]
    if unknown:
        print(f"benchmarks.run: error: unknown benchmark(s) {', '.join(unknown)}; "
              f"choose from {', '.join(available)}", file=sys.stderr)
        return 2
    selected = wanted or list(available)
    failed = []
    for name in selected:
        print(f"== benchmark {name} ({'quick' if args.quick else 'full'}) ==", flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(available[name])
            if not hasattr(module, "main"):
                raise AttributeError(f"{available[name]} has no main(quick) function")
            module.main(quick=args.quick)
        except Exception:  # report and carry on with the other benchmarks
            traceback.print_exc()
            failed.append(name)
            print(f"== {name}: FAILED after {time.perf_counter() - t0:.1f} s ==", flush=True)
        else:
            print(f"== {name}: done in {time.perf_counter() - t0:.1f} s ==", flush=True)
    if failed:
        print(f"benchmarks.run: {len(failed)} benchmark(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
