#!/usr/bin/env bash
# The main job on one machine, no scheduler: set up, train LeNet on Fashion-MNIST for a few
# epochs, compute the topology of every saved epoch, draw the plots, print the summary table.
# Extra arguments go to `dnntopo run` (e.g. --epochs 20 --save-epochs 0 1 5 10 20).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/dnntopo run --net lenet --dataset fashion_mnist --epochs 3 --lr 0.01 \
  --save-epochs 0 1 2 3 --run-dir runs --max-dim 2 --max-distance 0.6 "$@"
