#!/usr/bin/env bash
# Equal-budget comparison on Scientific-MM, CPU (2 cores): tuning on valid, the tuned models over
# three seeds, then the ablations around the tuned BBQRec. Every step resumes from what is stored
# (trials, run records, per-cell training state), so rerun the script after an interruption.
# Each step runs two processes, one per core, and waits for both.
#   bash benchmarks/scientific_tuned_cpu.sh [tune|compare|ablate|all]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1
BASE="benchmarks/configs/scientific.yaml benchmarks/configs/cpu_small.yaml benchmarks/configs/scientific_converged_cpu.yaml"
TUNED=results/scientific-tuned-cpu
ABLATIONS=results/scientific-ablations-cpu
SEEDS=2020,2021,2022
# The ablation rows (benchmarks/configs/scientific_ablations_tuned.yaml) in two halves, one per
# core. The ranking rows only evaluate BBQRec's weights, so they go with BBQRec and the five
# training rows that use its tokenizer; the other half has the four rows that fit a tokenizer.
# Both halves list BBQRec, the row every other is tested against (its cells are reused).
FIRST_ROWS=BBQRec,BBQRec-beam,BBQRec-dense,BBQRec-fused,BBQRec-interpolate,BBQRec-no_s2i,BBQRec-s2i_batch,BBQRec-no_sim,BBQRec-codes,BBQRec-buckets16
SECOND_ROWS=BBQRec,BBQRec-no_club,BBQRec-no_align,BBQRec-align_x3,BBQRec-mi_x3

# Runs "$@ --model=A" and "$@ --model=B" side by side.
side_by_side() {
    local first=$1 second=$2
    shift 2
    "$PY" run_recbole_bbq.py "$@" --model="$first" &
    "$PY" run_recbole_bbq.py "$@" --model="$second" &
    wait
}

tune() {
    side_by_side SASRec,UniSRec TIGER,BBQRec --tune --dataset=Scientific --results_dir=$TUNED \
        --config_files="$BASE benchmarks/configs/tuning/scientific.yaml"
}

compare() {
    local files="$BASE $TUNED/Scientific/tuned.yaml"
    side_by_side SASRec,UniSRec TIGER,BBQRec --dataset=Scientific --seeds=$SEEDS --results_dir=$TUNED --config_files="$files"
    "$PY" run_recbole_bbq.py --dataset=Scientific --seeds=$SEEDS --results_dir=$TUNED --config_files="$files" \
        --model=SASRec,UniSRec,TIGER,BBQRec --report_only
}

ablate() {
    local files="$BASE $TUNED/Scientific/tuned.yaml benchmarks/configs/scientific_ablations_tuned.yaml"
    # The reference row is the tuned BBQRec, with the same config: reuse its three finished cells
    # (the runner skips them, noting that their settings list one YAML file less).
    mkdir -p $ABLATIONS/Scientific/runs
    cp -n $TUNED/Scientific/runs/BBQRec-seed*.json $ABLATIONS/Scientific/runs/
    side_by_side $FIRST_ROWS $SECOND_ROWS --dataset=Scientific --seeds=$SEEDS --results_dir=$ABLATIONS --config_files="$files"
    "$PY" run_recbole_bbq.py --dataset=Scientific --seeds=$SEEDS --results_dir=$ABLATIONS --config_files="$files" \
        --model=$FIRST_ROWS,${SECOND_ROWS#BBQRec,} --report_only
}

case "${1:-all}" in
    tune) tune ;;
    compare) compare ;;
    ablate) ablate ;;
    all) tune && compare && ablate ;;
    *) echo "usage: $0 [tune|compare|ablate|all]" >&2; exit 2 ;;
esac
