#!/usr/bin/env bash
# Bring your own parallel corpus: plain or gzipped text files, one sentence per line, the two sides line-aligned.
#
#   corpus/train.en corpus/train.de     (or .en.gz / .de.gz)
#   corpus/dev.en   corpus/dev.de
#   corpus/test.en  corpus/test.de      (optional)
#
#   CORPUS=corpus SRC=en TGT=de bash examples/custom-corpus/run.sh   # from the clone's root, in any shell
#   ARCH=transformer_base MINUTES=600 CORPUS=corpus bash examples/custom-corpus/run.sh   # a GPU run
#
# Sides of different lengths, bytes that are not UTF-8 and missing files stop the preparation with the file and line
# named; empty and over-long training pairs are dropped and counted.
set -euo pipefail

CORPUS=${CORPUS:?set CORPUS to the folder holding train.SRC/TGT, dev.SRC/TGT and optionally test.SRC/TGT}
SRC=${SRC:-en}
TGT=${TGT:-de}
WORK=${WORK:-runs/custom-$SRC-$TGT}
ARCH=${ARCH:-transformer_small}
MINUTES=${MINUTES:-20}
VOCAB=${VOCAB:-8000}
# nmt on PATH: an active environment's, else the clone's .venv (installed on first use).
source "$(dirname "$0")/../install.sh"

TEST=$( [ -f "$CORPUS/test.$SRC" ] || [ -f "$CORPUS/test.$SRC.gz" ] && echo "--test $CORPUS/test" || true )
nmt prepare custom --src "$SRC" --tgt "$TGT" --train "$CORPUS/train" --valid "$CORPUS/dev" $TEST \
  --vocab-size "$VOCAB" --out "$WORK/data"

RESUME=$( [ -f "$WORK/checkpoints/checkpoint_last.pt" ] && echo --resume || true )
nmt train "$WORK/data" --arch "$ARCH" --save-dir "$WORK/checkpoints" --max-time "$MINUTES" $RESUME
# Average the checkpoints that did best on the dev split (never look at the test split to choose).
nmt average-checkpoints "$WORK/checkpoints" --best 3 --output "$WORK/checkpoints/averaged.pt" --force

SPLIT=$( [ -f "$WORK/data/test.$SRC" ] && echo test || echo valid )
nmt translate --checkpoint "$WORK/checkpoints/averaged.pt" --input "$WORK/data/$SPLIT.$SRC" \
  --output "$WORK/$SPLIT.hyp.$TGT"
nmt score --ref "$WORK/data/$SPLIT.$TGT" --hyp "$WORK/$SPLIT.hyp.$TGT" --json > "$WORK/checkpoints/score.json"
nmt score --ref "$WORK/data/$SPLIT.$TGT" --hyp "$WORK/$SPLIT.hyp.$TGT"
nmt report "$WORK/checkpoints"   # needs matplotlib: pip install -e ".[plot]"
