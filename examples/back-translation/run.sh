#!/usr/bin/env bash
# Back-translation on Multi30k English->German, in the standard setting simulated honestly: the first half of the
# training pairs (14,500) is the parallel data; of the second half only the German is kept, as monolingual text.
#
#   1. a German->English model, trained on the parallel half, translates the monolingual German into English;
#   2. English->German models train for the same minutes each on the parallel half alone (baseline), on it plus
#      the back-translations with their sources tagged <BT> (Caswell et al. 2019), and on it plus them untagged;
#   3. each is averaged (best 5 by valid loss) and scored on test_2016_flickr (beam 4, length penalty 0.6).
#
#   bash examples/back-translation/run.sh                 # 20 minutes per model, into runs/back-translation/
#   SEED=2 bash examples/back-translation/run.sh          # another seed of the three English->German models
#   SAMPLING=1 WORK=runs/bt-sampling bash examples/back-translation/run.sh   # by sampling (--topk 10), not beam
#   MINUTES=2 MONO_LINES=2000 bash examples/back-translation/run.sh   # a quick look
#   REVERSE=opus-mt-de-en.pt bash examples/back-translation/run.sh      # back-translate with a model you have
#                                       (e.g. OPUS-MT's, through `nmt import huggingface`) instead of training one
#
# Every model, vocabulary and the reverse model's back-translations are shared by the seeds; a rerun goes on where a
# stopped one left off (the back-translation itself resumes from its last finished window).
set -euo pipefail
cd "$(dirname "$0")/../.."

WORK=${WORK:-runs/back-translation}
MINUTES=${MINUTES:-20}
ARCH=${ARCH:-small_corpus}
SEED=${SEED:-1}
MONO_LINES=${MONO_LINES:-14500}  # German sentences to back-translate (at most the second half's 14,500)
MONO_LINES=$(( MONO_LINES < 14500 ? MONO_LINES : 14500 ))
SEARCH=$( [ "${SAMPLING:-0}" = 1 ] && echo "--sampling --topk 10 --seed 1" || echo "--beam 4 --lenpen 0.6" )
MIRROR=${MIRROR:-$( [ -d ../shared/data/multi30k ] && echo ../shared/data/multi30k || true )}

source examples/install.sh   # nmt on PATH: an active environment's, else .venv (installed on first use)

# The recipe's files (downloaded and checked, or from the mirror) and its valid/test references.
nmt prepare multi30k-en-de --out "$WORK/full" ${MIRROR:+--mirror "$MIRROR"}
RAW=${MIRROR:-$WORK/full/downloads}
TEXT=$WORK/text
mkdir -p "$TEXT"
first_half() {  # LANG: the first 14,500 lines of the training side
  if [ ! -f "$TEXT/half.$1" ]; then  # sed reads to the end: no early exit for pipefail to trip on
    gzip -dc "$RAW/train.$1.gz" | sed -n '1,14500p' > "$TEXT/half.$1.tmp"
    mv "$TEXT/half.$1.tmp" "$TEXT/half.$1"
  fi
}
first_half en
first_half de
if [ ! -f "$TEXT/mono.de" ] || [ "$(wc -l < "$TEXT/mono.de")" -ne "$MONO_LINES" ]; then
  gzip -dc "$RAW/train.de.gz" | sed -n "14501,$((14500 + MONO_LINES))p" > "$TEXT/mono.de.tmp"
  mv "$TEXT/mono.de.tmp" "$TEXT/mono.de"
  rm -f "$TEXT/bt.en"  # back-translations of other lines
fi

# One vocabulary for every model: learned on the parallel half, with <BT> kept as a piece of its own.
nmt prepare custom --src en --tgt de --train "$TEXT/half" --valid "$WORK/full/valid" --test "$WORK/full/test" \
  --reserve-tag '<BT>' --out "$WORK/data/half"
VOCAB=$WORK/data/half/spm.model
[ -n "${REVERSE:-}" ] || nmt prepare custom --src de --tgt en --train "$TEXT/half" --valid "$WORK/full/valid" \
  --vocab "$VOCAB" --out "$WORK/data/reverse"

train() {  # SAVE_DIR DATA SEED: train for MINUTES (resuming a stopped run), then average the best 5
  local resume
  resume=$( [ -f "$1/checkpoint_last.pt" ] && echo --resume || true )
  nmt train "$2" --arch "$ARCH" --save-dir "$1" --max-time "$MINUTES" --seed "$3" $resume
  nmt average-checkpoints "$1" --best 5 --output "$1/averaged.pt" --force
}

# 1. The reverse model and its back-translations (the monolingual German is the synthetic corpus's target).
if [ -z "${REVERSE:-}" ]; then
  train "$WORK/reverse" "$WORK/data/reverse" 1
  REVERSE=$WORK/reverse/averaged.pt
fi
[ -f "$TEXT/bt.en" ] || nmt translate --checkpoint "$REVERSE" --input "$TEXT/mono.de" --output "$TEXT/bt.en" \
  --resume $SEARCH
cmp -s "$TEXT/mono.de" "$TEXT/bt.de" || cp "$TEXT/mono.de" "$TEXT/bt.de"
for variant in tagged untagged; do
  TAG=$( [ "$variant" = tagged ] && echo "--synthetic-tag <BT>" || true )
  nmt prepare custom --src en --tgt de --train "$TEXT/half" --valid "$WORK/full/valid" --test "$WORK/full/test" \
    --vocab "$VOCAB" --synthetic "$TEXT/bt" $TAG --out "$WORK/data/$variant"
done

# 2-3. The three English->German models, the same minutes each, scored on the test set.
RUNS=$WORK/seed$SEED
for variant in half tagged untagged; do
  train "$RUNS/$variant" "$WORK/data/$variant" "$SEED"
  nmt translate --checkpoint "$RUNS/$variant/averaged.pt" --beam 4 --lenpen 0.6 --input "$WORK/full/test.en" \
    --output "$RUNS/$variant/test.hyp.de"
  nmt score --ref "$WORK/full/test.de" --hyp "$RUNS/$variant/test.hyp.de" --json > "$RUNS/$variant/score.json"
done
for variant in half tagged untagged; do
  printf '%-10s' "$variant"
  nmt score --ref "$WORK/full/test.de" --hyp "$RUNS/$variant/test.hyp.de"
done | tee "$RUNS/scores.txt"
