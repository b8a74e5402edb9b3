#!/usr/bin/env bash
# Transformer big on WMT14 English->German, 8 GPUs, as in the paper (28.4 BLEU): see train.sh.
#   bash examples/wmt14-en-de/big.sh           NMT_DRY_RUN=1 bash examples/wmt14-en-de/big.sh
MODEL=big exec bash "$(dirname "$0")/train.sh"
