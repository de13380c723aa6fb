#!/usr/bin/env bash
# The three font families `msavq-bench curves --model ppocr` renders text lines in, from Debian's packages
# (DejaVu Sans, Liberation Serif, FreeSans): installed, never committed.
set -euo pipefail
have() { [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] && [ -f /usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf ] && [ -f /usr/share/fonts/truetype/freefont/FreeSans.ttf ]; }
if have; then exit 0; fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf
have
