#!/usr/bin/env bash
# Sequence-level knowledge distillation (Kim and Rush 2016) on Multi30k English->German, as Bergamot's and Firefox's
# local translation models are made: a teacher translates the training sources with beam search, its least likely
# translations are dropped (`nmt logprob --keep-prefix`), and a narrower student with a one-layer decoder learns
# from the rest. For comparison the same student trains the same minutes on the original targets. Each is averaged
# and scored on test_2016_flickr; the distilled student ends as a CTranslate2 int8 model with a lexical shortlist,
# scored too.
#
#   bash examples/distillation/run.sh        # teacher: the README's model, trained first (20 min) if it is absent
#   TEACHER=runs/big/averaged.pt bash examples/distillation/run.sh      # your own teacher (an ensemble: average it)
#   STUDENT_ARGS="--encoder-layers 6 --decoder-layers 1" bash examples/distillation/run.sh   # 6+1 layers, 256 wide
#   VARIANTS="original distilled mixed" bash examples/distillation/run.sh   # mixed: original + teacher's targets
#   RUNS=runs/d256 STUDENT_ARGS="--decoder-layers 1" bash examples/distillation/run.sh  # 3+1 layers, 256 wide
#   SOURCE_LINES=2000 MINUTES=2 bash examples/distillation/run.sh        # a quick look: 2,000 sentences distilled
#
# A rerun goes on where a stopped one left off (the teacher's translation resumes from its last finished window).
set -euo pipefail
cd "$(dirname "$0")/../.."

WORK=${WORK:-runs/distillation}
MINUTES=${MINUTES:-20}                            # per student
STUDENT_ARCH=${STUDENT_ARCH:-small_corpus}
# A shallow, narrower decoder: decoding spends its time in the decoder and the output layer.
STUDENT_ARGS=${STUDENT_ARGS:---decoder-layers 1 --d-model 192 --d-ff 768}
SEED=${SEED:-1}
# Pairs whose per-piece log-probability under the teacher is below this are dropped (docs/synthetic-data.md).
MIN_PER_TOKEN=${MIN_PER_TOKEN:--1.0}
VARIANTS=${VARIANTS:-original distilled}
SOURCE_LINES=${SOURCE_LINES:-29000}  # training sentences the teacher translates (all 29,000 by default)
DEFAULT_TEACHER=runs/multi30k-en-de/checkpoints/averaged.pt
TEACHER=${TEACHER:-$DEFAULT_TEACHER}
MIRROR=${MIRROR:-$( [ -d ../shared/data/multi30k ] && echo ../shared/data/multi30k || true )}

source examples/install.sh   # nmt on PATH: an active environment's, else .venv (installed on first use)

if [ ! -f "$TEACHER" ]; then
  [ "$TEACHER" = "$DEFAULT_TEACHER" ] || { echo "error: TEACHER=$TEACHER: no such checkpoint" >&2; exit 1; }
  echo "no teacher yet: training the README's model first (examples/multi30k/run.sh)" >&2
  MINUTES=${TEACHER_MINUTES:-20} WORK=runs/multi30k-en-de bash examples/multi30k/run.sh
fi

nmt prepare multi30k-en-de --out "$WORK/full" ${MIRROR:+--mirror "$MIRROR"}
RAW=${MIRROR:-$WORK/full/downloads}
TEXT=$WORK/text
mkdir -p "$TEXT"
for lang in en de; do
  if [ ! -f "$TEXT/train.$lang" ] || [ "$(wc -l < "$TEXT/train.$lang")" -ne "$SOURCE_LINES" ]; then
    gzip -dc "$RAW/train.$lang.gz" | sed -n "1,${SOURCE_LINES}p" > "$TEXT/train.$lang.tmp"
    mv "$TEXT/train.$lang.tmp" "$TEXT/train.$lang"
    rm -f "$TEXT"/teacher.de* "$TEXT/distilled.threshold"  # translations of other lines
  fi
done

# 1. The teacher translates the training sources with its tuned beam and length penalty; its least likely
#    translations are dropped.
if [ "$(cat "$TEXT/teacher.de.from" 2>/dev/null)" != "$TEACHER" ]; then  # another teacher's, or none yet
  rm -f "$TEXT/teacher.de" "$TEXT/teacher.de.partial" "$TEXT/teacher.de.partial.json"
  echo "$TEACHER" > "$TEXT/teacher.de.from"
fi
[ -f "$TEXT/teacher.de" ] || nmt translate --checkpoint "$TEACHER" --input "$TEXT/train.en" \
  --output "$TEXT/teacher.de" --resume
if [ "$(cat "$TEXT/distilled.threshold" 2>/dev/null)" != "$MIN_PER_TOKEN $TEACHER" ]; then
  nmt logprob --checkpoint "$TEACHER" --source "$TEXT/train.en" --target "$TEXT/teacher.de" \
    --keep-prefix "$TEXT/distilled" --min-per-token "$MIN_PER_TOKEN" --output "$TEXT/teacher.scores"
  echo "$MIN_PER_TOKEN $TEACHER" > "$TEXT/distilled.threshold"
fi

# 2. The students' data, all in the teacher's vocabulary: the original targets, the teacher's, or both, cleaned
#    alike (the Multi30k recipe's length ratio of 3: captions are short).
nmt prepare multi30k-en-de --vocab "$TEACHER" --out "$WORK/data/original" ${MIRROR:+--mirror "$MIRROR"}
nmt prepare custom --src en --tgt de --train "$TEXT/distilled" --valid "$WORK/full/valid" --test "$WORK/full/test" \
  --vocab "$TEACHER" --max-ratio 3.0 --out "$WORK/data/distilled"
case " $VARIANTS " in *" mixed "*)
  nmt prepare custom --src en --tgt de --train "$TEXT/train" --valid "$WORK/full/valid" --test "$WORK/full/test" \
    --vocab "$TEACHER" --max-ratio 3.0 --synthetic "$TEXT/distilled" --out "$WORK/data/mixed" ;;
esac

# 3. Each student the same minutes, its last 5 checkpoints averaged (the paper's way; a distilled student's valid
#    loss against the human references rises while its BLEU still climbs, so `--best 5` would pick early ones),
#    scored with the paper's search.
RUNS=${RUNS:-$WORK/seed$SEED}  # the students' runs; the teacher's translations above are shared by every RUNS
for variant in $VARIANTS; do
  RESUME=$( [ -f "$RUNS/$variant/checkpoint_last.pt" ] && echo --resume || true )
  nmt train "$WORK/data/$variant" --arch "$STUDENT_ARCH" $STUDENT_ARGS --save-dir "$RUNS/$variant" \
    --max-time "$MINUTES" --seed "$SEED" $RESUME
  nmt average-checkpoints "$RUNS/$variant" --last 5 --output "$RUNS/$variant/averaged.pt" --force
  nmt translate --checkpoint "$RUNS/$variant/averaged.pt" --beam 4 --lenpen 0.6 --input "$WORK/full/test.en" \
    --output "$RUNS/$variant/test.hyp.de"
done

# 4. The distilled student for deployment: CTranslate2 with int8 weights (needs nmt[ctranslate2]) and a lexical
#    shortlist from its training data: each batch decodes over the target pieces its sources map to.
if [ -f "$RUNS/distilled/averaged.pt" ]; then
  if "$(dirname "$(command -v nmt)")/python" -c "import ctranslate2" 2>/dev/null; then
    nmt export ctranslate2 "$RUNS/distilled/averaged.pt" "$RUNS/distilled/ct2-int8" --quantization int8 \
      --shortlist "$WORK/data/distilled" --force
    nmt translate --engine ctranslate2 --checkpoint "$RUNS/distilled/ct2-int8" --quantize int8 --beam 4 \
      --lenpen 0.6 --input "$WORK/full/test.en" --output "$RUNS/distilled/test.ct2-int8.hyp.de"
  else
    echo "CTranslate2 is not installed: no int8 export (pip install -e '.[ctranslate2]')" >&2
  fi
fi
nmt translate --checkpoint "$TEACHER" --beam 4 --lenpen 0.6 --input "$WORK/full/test.en" \
  --output "$RUNS/teacher.test.hyp.de"
for hyp in "$RUNS/teacher.test.hyp.de" "$RUNS"/*/test*.hyp.de; do
  printf '%-50s' "${hyp#"$RUNS"/}"
  nmt score --ref "$WORK/full/test.de" --hyp "$hyp"
done | tee "$RUNS/scores.txt"
