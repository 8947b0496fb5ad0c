#!/usr/bin/env bash
# The GPU benchmark suite in one call of about 9 minutes on one GPU (H100/H200 class):
#   1. the Scientific-MM comparison (9 models x 3 seeds)      -> results/Scientific/
#   2. the Instruments published-number check (MQL4GRec protocol, SASRec/TIGER/MMTIGER/BBQRec)
#                                                             -> results/Instruments/
#   3. the BBQRec ablations on Scientific-MM (seed 2020)      -> results/ablations/Scientific/
#   4. beam-inference latency of TIGER and BBQRec (GPU alone) -> results/latency-gpu.txt
# Runs are independent processes sharing the GPU; every run has the same wall-time training
# budget (max_train_seconds in benchmarks/configs/*.yaml), so all models get the same conditions.
#
# Usage: bash benchmarks/gpu_suite.sh OUT_DIR
# Env:   PYTHON (python3), DATA (/tmp/bench-data), JOB_SECONDS (400: hard stop of the parallel runs),
#        RES (OUT_DIR/results), RECBOLE_BBQ_SHARED_DATA (../shared/data),
#        LIGHT / HEAVY / INSTRUMENTS / ABLATIONS (which runs to train; the tables always list all,
#        so finished runs from an earlier call are reused), LATENCY=0 (skip the latency step),
#        SMOKE=1 (tiny budgets, 2 models: checks the script).
set -u
OUT=${1:?usage: gpu_suite.sh OUT_DIR}
PY=${PYTHON:-python3}
DATA=${DATA:-/tmp/bench-data}
JOB_SECONDS=${JOB_SECONDS:-400}
RES=${RES:-$OUT/results}
LOGS=$OUT/logs
mkdir -p "$RES" "$LOGS"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
COMMON=(--data_path="$DATA" --show_progress=False --checkpoint_dir=/tmp/suite-saved)
SCI=(--dataset=Scientific --config_files=benchmarks/configs/scientific.yaml)
INS=(--dataset=Instruments "--config_files=benchmarks/configs/instruments.yaml benchmarks/configs/instruments_variants.yaml")
ABL=(--dataset=Scientific "--config_files=benchmarks/configs/scientific.yaml benchmarks/configs/ablations.yaml" --results_dir="$RES/ablations")
ALL_LIGHT="SASRec GRU4Rec BERT4Rec FDSA UniSRec"
ALL_HEAVY="TIGER MMTIGER BBQSASRec BBQRec"
ALL_INSTRUMENTS="SASRec TIGER MMTIGER BBQRec"
ALL_ABLATIONS="no_club no_align fragmented no_sim_attention no_s2i"
SEEDS="2020 2021 2022"
if [ "${SMOKE:-0}" = 1 ]; then
  ALL_LIGHT=SASRec; ALL_HEAVY=BBQRec; SEEDS=2020; ALL_INSTRUMENTS=SASRec; ALL_ABLATIONS=no_s2i
  COMMON+=(--epochs=1 "--behaviour={'epochs': 1}" "--tokenizer={'epochs': 2}" "--rqvae={'epochs': 2}"
           --d_model=32 --n_layers=1 --n_decoder_layers=1 --d_ff=64 --n_heads=2 --d_kv=16)
  LATENCY_ARGS="--tokenizer-epochs 2 --users 3 --repeats 1 --batch-size 32"
fi
LIGHT=${LIGHT-$ALL_LIGHT}; HEAVY=${HEAVY-$ALL_HEAVY}
INSTRUMENTS=${INSTRUMENTS-$ALL_INSTRUMENTS}; ABLATIONS=${ABLATIONS-$ALL_ABLATIONS}
csv() { echo "$*" | tr ' ' ','; }

echo "== smoke: environment =="
$PY -c "import torch, recbole, recbole_bbq.quick_start; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'recbole', recbole.__version__)" || exit 1
$PY benchmarks/_bench.py Scientific Instruments "$DATA" || exit 1

echo "== parallel runs (hard stop ${JOB_SECONDS}s) =="
run() {  # run LOG_NAME ARGS...: one background process, its log in $LOGS
  local name=$1; shift
  timeout "$JOB_SECONDS" $PY run_recbole_bbq.py "$@" "${COMMON[@]}" >"$LOGS/$name.log" 2>&1 &
}
for m in $LIGHT; do run "sci-$m" --model="$m" "${SCI[@]}" --seeds="$(csv $SEEDS)" --results_dir="$RES"; done
for m in $HEAVY; do for s in $SEEDS; do run "sci-$m-$s" --model="$m" "${SCI[@]}" --seeds="$s" --results_dir="$RES"; done; done
for m in $INSTRUMENTS; do run "ins-$m" --model="$m" "${INS[@]}" --seeds=2020 --results_dir="$RES"; done
for a in $ABLATIONS; do run "abl-$a" --model="BBQRec-$a" "${ABL[@]}" --seeds=2020; done
wait
[ "${LATENCY:-1}" = 1 ] && echo "== latency (GPU alone) ==" && timeout 90 $PY benchmarks/latency.py --data-path "$DATA" ${LATENCY_ARGS:---users 30} >"$RES/latency-gpu.txt" 2>"$LOGS/latency.log"
[ -f "$RES/latency-gpu.txt" ] && tail -5 "$RES/latency-gpu.txt"

echo "== tables (--report_only: from the finished runs) =="
mkdir -p "$RES/ablations/Scientific/runs"
cp "$RES/Scientific/runs/BBQRec-seed2020.json" "$RES/ablations/Scientific/runs/" 2>/dev/null  # the full-model row
timeout 120 $PY run_recbole_bbq.py --report_only --model="$(csv $ALL_LIGHT $ALL_HEAVY)" "${SCI[@]}" --seeds="$(csv $SEEDS)" --results_dir="$RES" "${COMMON[@]}" >"$LOGS/table-scientific.log" 2>&1
timeout 120 $PY run_recbole_bbq.py --report_only --model="$(csv $ALL_INSTRUMENTS)" "${INS[@]}" --seeds=2020 --results_dir="$RES" "${COMMON[@]}" >"$LOGS/table-instruments.log" 2>&1
timeout 120 $PY run_recbole_bbq.py --report_only --model="BBQRec,$(for a in $ALL_ABLATIONS; do printf 'BBQRec-%s,' $a; done | sed 's/,$//')" "${ABL[@]}" --seeds=2020 "${COMMON[@]}" >"$LOGS/table-ablations.log" 2>&1
for f in "$RES"/Scientific/comparison.md "$RES"/ablations/Scientific/comparison.md; do
  [ -f "$f" ] && sed -n '/^| model/,/^$/p' "$f"
done
[ -f "$RES/Instruments/comparison.csv" ] && $PY benchmarks/published_check.py --results "$RES/Instruments"
grep -h "failed" "$LOGS"/table-*.log | head -20
exit 0
