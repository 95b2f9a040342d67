#!/usr/bin/env bash
# The main job, end to end on a fresh Debian 12 machine:
#   installs the packages, builds ckpt, writes a Mammoth-style checkpoint with
#   real PyTorch, then inspects it and re-saves it with libckpt (no LibTorch),
#   and checks that PyTorch loads the copy bit for bit.
# As the tools and the trainer land, this script grows into: train a few
# tasks with checkpoints, then inspect, convert and diff them.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${CKPT_BUILD_DIR:-build}
OUT=${CKPT_DEMO_DIR:-demo-out}

bash tools/scripts/install-deps.sh
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" --buildtype=release
ninja -C "$BUILD"
mkdir -p "$OUT"

CK="$OUT/sgd_seq-cifar10_None_0_1_20261129-000000_demo0001_0.pt"
if [ ! -f "$CK" ]; then
  echo "== writing a Mammoth-style ResNet-18 checkpoint with PyTorch ($(/usr/bin/python3 -c 'import torch; print(torch.__version__)'))"
  /usr/bin/python3 bench/make_mammoth_ckpt.py "$CK" --arch resnet18
fi

echo "== libckpt reads it (no Python, no LibTorch)"
"$BUILD/libckpt/ckpt_walk" "$CK" "$OUT/resaved.pt"

echo "== PyTorch loads libckpt's copy and finds every tensor bit-identical"
/usr/bin/python3 - "$CK" "$OUT/resaved.pt" <<'PY'
import sys, torch
a = torch.load(sys.argv[1], map_location="cpu")
b = torch.load(sys.argv[2], map_location="cpu")
def tensors(x, p=""):
    if isinstance(x, torch.Tensor):
        yield p, x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from tensors(v, f"{p}/{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            yield from tensors(v, f"{p}/{i}")
ta, tb = dict(tensors(a)), dict(tensors(b))
assert ta.keys() == tb.keys(), "key sets differ"
same = all(ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape and torch.equal(ta[k], tb[k]) for k in ta)
print(f"{len(ta)} tensors, bit-identical: {same}; args equal: {a['args'] == b['args']}; results equal: {a['results'] == b['results']}")
sys.exit(0 if same else 1)
PY
