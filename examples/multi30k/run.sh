#!/usr/bin/env bash
# Multi30k English->German on a CPU, end to end: prepare -> train small_corpus (transformer_small's model, bf16 where
# the CPU has it natively; 20 minutes) -> average the checkpoints that did best on the valid split -> choose the
# length penalty on the valid split -> translate test_2016_flickr -> score with sacreBLEU -> a report with the run's
# curves (runs/multi30k-en-de/checkpoints/report/report.md).
#
#   bash examples/multi30k/run.sh                 # everything, into runs/multi30k-en-de/
#   SEED=2 WORK=runs/seed2 bash examples/multi30k/run.sh
#   MINUTES=2 bash examples/multi30k/run.sh       # a quick look
#   ARCH=transformer_tiny MINUTES=0.5 bash examples/multi30k/run.sh   # seconds (what the tests run)
#
# Rerunning resumes an interrupted training run instead of starting over.
set -euo pipefail
cd "$(dirname "$0")/../.."

WORK=${WORK:-runs/multi30k-en-de}
MINUTES=${MINUTES:-20}
ARCH=${ARCH:-small_corpus}
SEED=${SEED:-1}
# ../shared/data/multi30k is a verified copy of the upstream files; without it they are downloaded from GitHub.
MIRROR=${MIRROR:-$( [ -d ../shared/data/multi30k ] && echo ../shared/data/multi30k || true )}

source examples/install.sh   # nmt on PATH: an active environment's, else .venv (installed on first use)

nmt prepare multi30k-en-de --out "$WORK/data" ${MIRROR:+--mirror "$MIRROR"}
RESUME=$( [ -f "$WORK/checkpoints/checkpoint_last.pt" ] && echo --resume || true )
# --valid-bleu: greedy BLEU on the valid split at each validation, for the report's curve (about 5% of the time).
# TRAIN_ARGS: more options for nmt train (e.g. TRAIN_ARGS="--ema-decay 0.999").
nmt train "$WORK/data" --arch "$ARCH" --save-dir "$WORK/checkpoints" --max-time "$MINUTES" \
  --seed "$SEED" --valid-bleu $RESUME ${TRAIN_ARGS:-}
# Checkpoint choice looks at the valid split only; the test set is touched once, below.
nmt average-checkpoints "$WORK/checkpoints" --best 5 --output "$WORK/checkpoints/averaged.pt" --force
# Beam and length penalty chosen on the valid split too, stored in averaged.pt; translate uses them.
nmt tune "$WORK/checkpoints/averaged.pt" "$WORK/data" ${TUNE_LENPEN:+--lenpen "$TUNE_LENPEN"}
nmt translate --checkpoint "$WORK/checkpoints/averaged.pt" < "$WORK/data/test.en" > "$WORK/test.hyp.de"
nmt score --ref "$WORK/data/test.de" --hyp "$WORK/test.hyp.de" | tee "$WORK/score.txt"
nmt score --ref "$WORK/data/test.de" --hyp "$WORK/test.hyp.de" --json > "$WORK/checkpoints/score.json"
nmt report "$WORK/checkpoints"
