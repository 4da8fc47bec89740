"""Speed and quality benchmarks of spec2vol-bids (``make bench`` / ``python -m benchmarks.run``).

Each ``bench_<name>.py`` module exposes ``main(quick: bool = False)`` and writes its results through
:func:`benchmarks.common.write_results` to ``benchmarks/results/<name>.json`` and ``.md``. Benchmarks are never part
of the test run.
"""
