#!/usr/bin/env bash
# meson install puts libckpt, its headers and ckpt.pc where pkg-config finds
# them, and a program built only from those opens a checkpoint.
# Usage: test_install.sh BUILD_DIR CHECKPOINT
set -euo pipefail
build=$1
ckpt=$2
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >/dev/null
pc=$(dirname "$(find "$dest" -name ckpt.pc | head -1)")
[ -n "$pc" ] || { echo "FAIL: no ckpt.pc installed"; exit 1; }
export PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$dest
cat > "$dest/use.cpp" <<'CPP'
#include <ckpt/ckpt.hpp>
#include <cstdio>
int main(int argc, char** argv) {
  auto ck = ckpt::Checkpoint::open(argv[1]);
  std::printf("%zu tensors, libckpt %s\n", ck.tensors().size(), ckpt::version_string());
  return ck.tensors().empty();
}
CPP
libdir=$(pkg-config --variable=libdir ckpt)
# A sanitized libckpt (the CI's ASan+UBSan stage) needs a sanitized program.
san=()
[ "${CKPT_SANITIZED:-0}" = 1 ] && san=(-fsanitize=address,undefined)
c++ -std=c++20 "${san[@]}" "$dest/use.cpp" -o "$dest/use" $(pkg-config --cflags --libs ckpt) -Wl,-rpath,"$dest$libdir"
out=$("$dest/use" "$ckpt")
echo "$out"
case "$out" in
  *"tensors, libckpt "*) echo "1 passed, 0 failed" ;;
  *) echo "0 passed, 1 failed"; exit 1 ;;
esac
