#!/usr/bin/env bash
# Installs what the tests need, builds, and runs every test (meson test).
# Usage: bash tests/run.sh [extra meson test args]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${CKPT_BUILD_DIR:-build}

bash tools/scripts/install-deps.sh

if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" --buildtype=release
fi
ninja -C "$BUILD"

status=0
meson test -C "$BUILD" --print-errorlogs --num-processes 2 "$@" || status=$?

# One summary line that any CI can read.
/usr/bin/python3 - "$BUILD/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = skipped = 0
with open(sys.argv[1]) as f:
    for line in f:
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed += 1
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
