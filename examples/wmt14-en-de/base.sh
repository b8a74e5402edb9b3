#!/usr/bin/env bash
# The paper's Transformer base on WMT14 English->German, on one node of 8 GPUs (about 12 hours on 8 P100s in the
# paper, a few hours on current GPUs): prepare -> train 100k updates -> average the last 5 checkpoints ->
# translate newstest2014 with beam 4 and length penalty 0.6 -> score, detokenized sacreBLEU and the paper's
# tokenized BLEU (paper: 27.3).
#
#   bash examples/wmt14-en-de/base.sh
#   GPUS=4 UPDATE_FREQ=2 bash examples/wmt14-en-de/base.sh        # the same batch on 4 GPUs
#   NMT_DRY_RUN=1 bash examples/wmt14-en-de/base.sh               # check every command's options, run nothing
#
# Batch size: the paper's ~25,000 target tokens per update is MAX_TOKENS x UPDATE_FREQ x GPUS
# (3,200 x 1 x 8 = 25,600 here). Rerunning resumes an interrupted run.
set -euo pipefail

DATA=${DATA:-data/wmt14-en-de}
RUN=${RUN:-runs/wmt14-en-de-base}
GPUS=${GPUS:-8}
MAX_TOKENS=${MAX_TOKENS:-3200}
UPDATE_FREQ=${UPDATE_FREQ:-1}

# Download (checksummed, resumable; or --mirror DIR_OR_URL), clean, learn a 37k joint BPE, binarize.
nmt prepare wmt14-en-de --out "$DATA"

RESUME=$( [ -f "$RUN/checkpoint_last.pt" ] && echo --resume || true )
torchrun --standalone --nproc-per-node "$GPUS" -m nmt train "$DATA" --arch transformer_base --save-dir "$RUN" \
  --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ" --max-updates 100000 --precision bf16 \
  --save-interval-updates 1000 --keep-last 10 $RESUME

# The paper averages the last 5 checkpoints (written every 10 minutes; here every 1,000 updates).
nmt average-checkpoints "$RUN" --last 5 --output "$RUN/averaged.pt"
nmt translate --checkpoint "$RUN/averaged.pt" --beam 4 --lenpen 0.6 --max-len-a 1 --max-len-b 50 \
  --input "$DATA/test.en" --output "$RUN/newstest2014.hyp.de"
nmt score --ref "$DATA/test.de" --hyp "$RUN/newstest2014.hyp.de" --paper --json > "$RUN/score.json"
nmt score --ref "$DATA/test.de" --hyp "$RUN/newstest2014.hyp.de" --paper
nmt report "$RUN"
