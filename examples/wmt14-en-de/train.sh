#!/usr/bin/env bash
# The paper's Transformer on WMT14 English->German on one node of 8 GPUs: prepare -> train -> average the last
# checkpoints -> translate newstest2014 with beam 4 and length penalty 0.6 -> score (detokenized sacreBLEU and the
# paper's tokenized BLEU) -> report. base.sh and big.sh call it with the paper's settings for each model:
#
#   base: 100k updates, the last 5 checkpoints averaged (paper: 27.3 BLEU; 12 hours on 8 P100s)
#   big:  300k updates, dropout 0.3, the last 20 averaged (paper: 28.4 BLEU; 3.5 days on 8 P100s)
#
#   MODEL=base bash examples/wmt14-en-de/train.sh
#   MODEL=base GPUS=4 UPDATE_FREQ=2 bash examples/wmt14-en-de/train.sh   # the same batch on 4 GPUs
#   NMT_DRY_RUN=1 MODEL=big bash examples/wmt14-en-de/train.sh           # check every command's options, run nothing
#
# Batch size: the paper's ~25,000 target tokens per update is MAX_TOKENS x UPDATE_FREQ x GPUS (3,200 x 1 x 8 =
# 25,600 here). Rerunning resumes an interrupted run. For English->French (paper: 38.1 / 41.8) use
# `nmt prepare wmt14-en-fr` and, for big, --dropout 0.1.
set -euo pipefail

MODEL=${MODEL:?set MODEL=base or MODEL=big}
case "$MODEL" in
  base) UPDATES=100000; AVERAGE=5 ;;
  big)  UPDATES=300000; AVERAGE=20 ;;
  *) echo "MODEL must be base or big, got $MODEL" >&2; exit 2 ;;
esac
DATA=${DATA:-data/wmt14-en-de}
RUN=${RUN:-runs/wmt14-en-de-$MODEL}
GPUS=${GPUS:-8}
MAX_TOKENS=${MAX_TOKENS:-3200}
UPDATE_FREQ=${UPDATE_FREQ:-1}
mkdir -p "$RUN"  # score.json is written into it by the shell, also in a dry run

# Download (checksummed, resumable; or --mirror DIR_OR_URL), clean, learn a 37k joint BPE, binarize.
nmt prepare wmt14-en-de --out "$DATA"

RESUME=$( [ -f "$RUN/checkpoint_last.pt" ] && echo --resume || true )
torchrun --standalone --nproc-per-node "$GPUS" -m nmt train "$DATA" --arch "transformer_$MODEL" --save-dir "$RUN" \
  --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ" --max-updates "$UPDATES" --precision bf16 \
  --save-interval-updates 1000 --keep-last $((AVERAGE + 5)) $RESUME

# The paper averages the last checkpoints written every 10 minutes; here every 1,000 updates.
nmt average-checkpoints "$RUN" --last "$AVERAGE" --output "$RUN/averaged.pt" --force
nmt translate --checkpoint "$RUN/averaged.pt" --beam 4 --lenpen 0.6 --max-len-a 1 --max-len-b 50 \
  --input "$DATA/test.en" --output "$RUN/newstest2014.hyp.de"
nmt score --ref "$DATA/test.de" --hyp "$RUN/newstest2014.hyp.de" --paper --json > "$RUN/score.json"
nmt score --ref "$DATA/test.de" --hyp "$RUN/newstest2014.hyp.de" --paper
nmt report "$RUN"
