#!/usr/bin/env bash
# Converged Instruments on one GPU in about 10 minutes: SASRec, TIGER (published LLaMA codes) and
# BBQRec (code-derived modalities), seed 2020, trained in parallel under
# benchmarks/configs/instruments_gpu.yaml, then one table -> OUT_DIR/results/Instruments/
# (comparison.md with each run's stop reason, curves.png) and the published-number check.
#
# Usage: bash benchmarks/instruments_gpu.sh OUT_DIR
# Env:   PYTHON (python3), DATA (/tmp/bench-data: converted datasets), JOB_SECONDS (540: hard stop
#        of each run), RECBOLE_BBQ_SHARED_DATA (../shared/data),
#        SMOKE=1: tiny backbone and budgets, for the CPU check in tests/test_benchmark_scripts.py.
set -u
OUT=${1:?usage: instruments_gpu.sh OUT_DIR}
REPO=$(cd "$(dirname "$0")/.." && pwd)  # runs from any folder (RecBole writes ./log there)
CONFIGS=$REPO/benchmarks/configs
PY=${PYTHON:-python3}
DATA=${DATA:-/tmp/bench-data}
JOB_SECONDS=${JOB_SECONDS:-540}
RES=$OUT/results
LOGS=$OUT/logs
MODELS="SASRec TIGER BBQRec"
mkdir -p "$RES" "$LOGS"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
ARGS=(--dataset=Instruments "--config_files=$CONFIGS/instruments.yaml $CONFIGS/instruments_gpu.yaml"
      --seeds=2020 --results_dir="$RES" --data_path="$DATA" --show_progress=False --checkpoint_dir="$OUT/saved")
if [ "${SMOKE:-0}" = 1 ]; then
  ARGS+=(--epochs=1 --eval_step=1 "--behaviour={'epochs': 1}" "--tokenizer={'epochs': 2}"
         --d_model=16 --n_layers=1 --n_decoder_layers=1 --d_ff=32 --n_heads=2 --d_kv=8 --hidden_size=16)
fi

$PY -c "import torch; print('torch', torch.__version__, '| device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU')" || exit 1
$PY "$REPO/benchmarks/_bench.py" Instruments "$DATA" || exit 1
for m in $MODELS; do
  timeout "$JOB_SECONDS" $PY "$REPO/run_recbole_bbq.py" --model="$m" "${ARGS[@]}" >"$LOGS/$m.log" 2>&1 &
done
wait
$PY "$REPO/run_recbole_bbq.py" --report_only --model="$(echo $MODELS | tr ' ' ',')" "${ARGS[@]}" >"$LOGS/table.log" 2>&1 || { tail -20 "$LOGS/table.log"; exit 1; }
sed -n '/^# Comparison/,/^## Protocol/p;/^| model/,/^$/p' "$RES/Instruments/comparison.md"
$PY "$REPO/benchmarks/published_check.py" --results "$RES/Instruments"
