#!/usr/bin/env bash
# The paper's Transformer big on WMT14 English->German, 8 GPUs (3.5 days on 8 P100s in the paper): 300k updates of
# ~25k target tokens, dropout 0.3, the last 20 checkpoints averaged, beam 4, length penalty 0.6 (paper: 28.4).
#
#   bash examples/wmt14-en-de/big.sh
#   NMT_DRY_RUN=1 bash examples/wmt14-en-de/big.sh                # check every command's options, run nothing
#
# For English->French (paper: 41.8) use `nmt prepare wmt14-en-fr` and --dropout 0.1.
set -euo pipefail

DATA=${DATA:-data/wmt14-en-de}
RUN=${RUN:-runs/wmt14-en-de-big}
GPUS=${GPUS:-8}
MAX_TOKENS=${MAX_TOKENS:-3200}
UPDATE_FREQ=${UPDATE_FREQ:-1}

nmt prepare wmt14-en-de --out "$DATA"

RESUME=$( [ -f "$RUN/checkpoint_last.pt" ] && echo --resume || true )
torchrun --standalone --nproc-per-node "$GPUS" -m nmt train "$DATA" --arch transformer_big --save-dir "$RUN" \
  --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ" --max-updates 300000 --precision bf16 \
  --save-interval-updates 1000 --keep-last 25 $RESUME

nmt average-checkpoints "$RUN" --last 20 --output "$RUN/averaged.pt"
nmt translate --checkpoint "$RUN/averaged.pt" --beam 4 --lenpen 0.6 --max-len-a 1 --max-len-b 50 \
  --input "$DATA/test.en" --output "$RUN/newstest2014.hyp.de"
nmt score --ref "$DATA/test.de" --hyp "$RUN/newstest2014.hyp.de" --paper --json > "$RUN/score.json"
nmt score --ref "$DATA/test.de" --hyp "$RUN/newstest2014.hyp.de" --paper
nmt report "$RUN"
