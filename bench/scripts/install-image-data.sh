#!/usr/bin/env bash
# Fashion-MNIST (Debian's dataset-fashion-mnist, 30 MB) for `msavq-bench curves --model resnet18`: installed, never committed.
set -euo pipefail
if [ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then exit 0; fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist
