#!/usr/bin/env bash
# Installs every Debian 12 package ckpt builds, tests and benchmarks with.
# Idempotent: when everything is present it does nothing (no apt-get update).
set -euo pipefail

PKGS=(
  # build
  build-essential meson ninja-build pkg-config
  # libckpt and the tools
  zlib1g-dev libzstd-dev zstd libhdf5-dev libdeflate-dev libcli11-dev nlohmann-json3-dev libcurl4-openssl-dev
  # the trainer
  libtorch-dev libopenblas0-pthread dataset-fashion-mnist
  # tests: doctest, and real PyTorch / h5py on the other side of the interop tests
  doctest-dev python3-torch python3-torchvision python3-numpy python3-h5py python3-hdf5plugin
  # benchmarks and fuzzing
  time hyperfine clang libclang-rt-14-dev
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
