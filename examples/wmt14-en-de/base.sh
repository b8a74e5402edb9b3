#!/usr/bin/env bash
# Transformer base on WMT14 English->German, 8 GPUs, as in the paper (27.3 BLEU): see train.sh.
#   bash examples/wmt14-en-de/base.sh          NMT_DRY_RUN=1 bash examples/wmt14-en-de/base.sh
MODEL=base exec bash "$(dirname "$0")/train.sh"
