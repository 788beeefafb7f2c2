#!/usr/bin/env bash
# Sets up everything on a fresh machine, then runs the main job on Fashion-MNIST.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
python3 -m pip install --quiet -e ".[dev]"
exec python3 -m experiments.unlearn --config=experiments/configs/fashion_mnist.py --workdir="${WORKDIR:-runs/fmnist}" "$@"
