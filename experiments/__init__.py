"""Research experiments: scripts that answered a question once about the models (see ``experiments/README.md``).

Unlike ``benchmarks/`` (speed, memory and quality targets that are re-measured), each experiment here records what
it showed; results go to ``experiments/results/``.
"""

from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
