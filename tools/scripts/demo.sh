#!/usr/bin/env bash
# The main job, end to end on a fresh Debian 12 machine:
#   1. install the packages and build everything (libckpt, tools, trainer);
#   2. train a continual-learning run (ER with a 200-sample buffer on
#      seq-fashion-mnist, 5 tasks) with a Mammoth checkpoint after every task;
#   3. inspect a checkpoint (ckpt-info), extract its backbone and export it
#      to HDF5 and back (ckpt-convert), compare two tasks and the whole series
#      (ckpt-diff);
#   4. check with real PyTorch that the files load (weights_only allowlist)
#      and that the backbone loads strictly into Mammoth's MNIST MLP.
# Re-running reuses the trained checkpoints (delete demo-out/ to start over).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=${CKPT_BUILD_DIR:-build}
OUT=${CKPT_DEMO_DIR:-demo-out}

bash tools/scripts/install-deps.sh
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" --buildtype=release
ninja -C "$BUILD"
B="$ROOT/$BUILD"
mkdir -p "$OUT"
cd "$OUT"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if ! ls checkpoints/demo_er_*_4.pt >/dev/null 2>&1; then
  step "training ER (buffer 200) on seq-fashion-mnist, 5 tasks, a checkpoint after each"
  "$B/trainer/ckpt-train" --model=er --dataset=seq-fashion-mnist --buffer_size=200 --lr=0.1 \
    --n_epochs=1 --batch_size=32 --seed=0 --savecheck=task --ckpt_name=demo_er \
    --checkpoint_path=checkpoints --results_json=results.json
fi
CKS=(checkpoints/demo_er_*_[0-4].pt)
FIRST=${CKS[0]}
LAST=${CKS[4]}

step "ckpt-info: what the last task's checkpoint holds"
"$B/tools/info/ckpt-info" "$LAST"

step "ckpt-info --globals: every global the pickle names, with its verdict"
"$B/tools/info/ckpt-info" --globals "$LAST" | sed -n '1,20p'  # sed reads to the end: no SIGPIPE under pipefail

step "ckpt-convert: backbone only, as a plain state dict"
"$B/tools/convert/ckpt-convert" --force "$LAST" backbone.pt --backbone

step "ckpt-convert: the whole checkpoint to HDF5 (zstd) and back"
"$B/tools/convert/ckpt-convert" --force "$LAST" last.h5 --compress zstd:3
"$B/tools/convert/ckpt-convert" --force last.h5 last_back.pt
"$B/tools/info/ckpt-info" last.h5 | sed -n '1,12p'  # sed reads to the end: no SIGPIPE under pipefail

step "ckpt-diff: task 0 against task 4"
"$B/tools/diff/ckpt-diff" "$FIRST" "$LAST" --top 10 || true   # exit 1: they differ, as expected

step "ckpt-diff: the whole series, layer by layer"
"$B/tools/diff/ckpt-diff" "${CKS[@]}" || true

step "ckpt-diff: the HDF5 round trip is exact"
"$B/tools/diff/ckpt-diff" --quiet "$LAST" last_back.pt && echo "last.pt == last_back.pt (bit for bit)"

step "PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)'): the files load, the backbone fits Mammoth's MNIST MLP strictly"
/usr/bin/python3 - "$ROOT/tests/pylib" "$LAST" backbone.pt <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import torch
import mammoth_ref as m
ckpt, backbone = sys.argv[2], sys.argv[3]
for f in (ckpt, backbone):
    m.check_globals_allowlisted(f)  # what torch >= 2.1's weights_only=True accepts
sd = torch.load(backbone, map_location="cpu")
net = m.MNISTMLP()
net.load_state_dict(sd, strict=False)  # the backbone file holds each tensor once
missing = [k for k in net.state_dict() if k not in sd and not k.startswith(("_features.", "net."))]
assert not missing, missing
full = torch.load(ckpt, map_location="cpu")
print(f"{ckpt}: keys {list(full)[:6]} ...; results after task 4 (Class-IL): {full['results'][0][-1]}")
print(f"{backbone}: {len(sd)} tensors, every parameter of Mammoth's MNISTMLP present")
PY
