#!/usr/bin/env bash
# The main job end to end on the bundled default capture (data/demo, recorded by this project with
# scripts/record_demo_capture.sh): extract -> split -> train -> sample -> evaluate.
# Usage: scripts/demo.sh [OUT_DIR]   (default demo-out/); `make demo` runs it inside .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-demo-out}
NS=${NETSYNTH:-.venv/bin/netsynth}
PY=${PYTHON:-.venv/bin/python}
MODEL=${DEMO_MODEL:-transformer}
# Training budget in seconds: the demo must finish in a few minutes on 2 CPU cores.
BUDGET=${DEMO_TRAIN_SECONDS:-120}
mkdir -p "$OUT"
start=$(date +%s)

echo "== 1/5 extract: data/demo/captures -> $OUT/flows.parquet"
"$NS" extract data/demo/captures --labels data/demo/labels.csv --packets 20 --min-packets 5 -o "$OUT/flows.parquet"

echo "== 2/5 split by capture (20 % test, seed 0)"
"$NS" split "$OUT/flows.parquet" -o "$OUT/split" --by capture --test-size 0.2 --seed 0

echo "== 3/5 train $MODEL (budget ${BUDGET} s)"
"$NS" train "$MODEL" "$OUT/split/train.parquet" -o "$OUT/model" --seed 0 --set "max_time=$BUDGET"

echo "== 4/5 sample as many flows as the training set, in its class proportions"
N=$("$PY" -c "import pyarrow.parquet as pq, sys; print(pq.read_metadata(sys.argv[1]).num_rows)" "$OUT/split/train.parquet")
"$NS" sample "$OUT/model" -n "$N" --seed 0 -o "$OUT/synthetic.parquet"

echo "== 5/5 evaluate: fidelity, TRTR vs TSTR, novelty"
"$NS" evaluate --train "$OUT/split/train.parquet" --test "$OUT/split/test.parquet" \
  --synthetic "$OUT/synthetic.parquet" -o "$OUT/report"

echo "demo finished in $(( $(date +%s) - start )) s; report: $OUT/report/report.md"
