#!/bin/bash
# The issue-12 ablation (benchmarks/bench_variants.py) on a lent GPU machine, which has torch, numpy, scipy, h5py and
# pandas but none of our other dependencies: the pure-Python ones the training path needs (nibabel, packaging, tqdm,
# filelock, tomli-w) are installed beside it with `pip install --no-deps --target .gpu/site ...`, and the
# participant derivatives of the simulation are copied in (DERIVS, and BIDS/derivatives/simulation for the oracles
# and the noise ceiling).
#
# Usage: bash benchmarks/gpu_variants.sh DERIVS BIDS OUT [TRAIN_SECONDS]
#   trains the candidates in seed-major order for at most TRAIN_SECONDS (default 360; every finished run is in
#   OUT/variants_runs.jsonl), then writes the tables of what finished (OUT/variants_gpu*.md|json), with the
#   training throughput and inference time of the variants and the published network on the GPU.
set -u
DERIVS=$1 BIDS=$2 OUT=$3 BUDGET=${4:-360}
export PYTHONPATH=".gpu/site:.${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=8
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python -c "import torch; print(torch.__version__, torch.cuda.is_available())" >> "$OUT/gpu.txt" 2>&1
args=(--derivatives "$DERIVS" --bids "$BIDS" --volumes 150 --epochs 5 --runs-file "$OUT/variants_runs.jsonl"
      --cache-dir /tmp/s2v_cache --threads 8)
timeout "$BUDGET" python -m benchmarks.bench_variants "${args[@]}" --device cuda --only-runs \
  > "$OUT/variants_train.log" 2>&1
echo "training exit code $?" >> "$OUT/variants_train.log"
python -m benchmarks.bench_variants "${args[@]}" --device cuda --only-tables --name variants_gpu \
  --results-dir "$OUT" > "$OUT/variants_tables.log" 2>&1
echo "tables exit code $?" >> "$OUT/variants_tables.log"
