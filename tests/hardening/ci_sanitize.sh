#!/usr/bin/env bash
# tests/hardening/ci_sanitize.sh - the sanitizer part of CI; .ci/run calls
# it after the main test run. Two stages, one summary line each:
#
# 1. An AddressSanitizer + UndefinedBehaviorSanitizer build of the whole
#    project (gcc, -Db_sanitize=address,undefined, trainer off: LibTorch is
#    not built with ASan) and its test suite, minus the `slow` suite (the
#    12 GiB interop file; the main run has it). Any sanitizer report fails
#    the test that made it (halt_on_error, abort_on_error). CKPT_SANITIZED=1
#    is exported: tests that bound memory with RLIMIT_AS / ulimit -v (which
#    cannot work under ASan: its shadow memory reserves terabytes of address
#    space) check it and bound peak RSS instead. Nothing else is skipped.
# 2. When clang and libFuzzer are installed: every fuzz target built with
#    -fsanitize=fuzzer,address,undefined runs CKPT_FUZZ_SECONDS (default 60)
#    from its seed corpus, two at a time (less, down to 20 s, when the whole
#    stage would otherwise pass CKPT_SANITIZE_BUDGET, 720 s, printed if so);
#    any crash, leak, timeout (> 1 s)
#    or OOM (> 2 GiB) fails, and the input is kept under
#    $CKPT_FUZZ_DIR/fuzz-ci/artifacts (see docs/fuzzing.md to replay it).
#
# Build folders: CKPT_ASAN_DIR (build-asan), CKPT_FUZZ_DIR (build-fuzz).
# CKPT_SANITIZE_ONLY=asan or =fuzz runs one stage (local use).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ASAN_DIR=${CKPT_ASAN_DIR:-build-asan}
FUZZ_DIR=${CKPT_FUZZ_DIR:-build-fuzz}
SECONDS_PER_TARGET=${CKPT_FUZZ_SECONDS:-60}
export CKPT_SANITIZED=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:quarantine_size_mb=32}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# libhdf5's own leaks on corrupt files are not ours (tests/fuzz/lsan.supp says why).
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/fuzz/lsan.supp}
# Debian's ZFP filter plugin (libh5zzfp.so), which libhdf5 loads from the
# system plugin folder, leaks in its static initialiser; nothing here needs
# the system's filter plugins (tests that need ckpt's own zstd plugin set
# HDF5_PLUGIN_PATH themselves).
export HDF5_PLUGIN_PATH=${CKPT_ASAN_HDF5_PLUGIN_PATH:-$ROOT/.no-system-hdf5-plugins}
t0=$(date +%s)
status=0

# ---------------------------------------------------------------- 1. ASan
san_line="sanitizers: build failed"
# -O1 and line tables only (-g1): the fastest build that still gives
# symbolized stack traces, since this stage has 12 minutes on 2 cores.
if [ "${CKPT_SANITIZE_ONLY:-asan}" != asan ]; then
  san_line="sanitizers: not run (CKPT_SANITIZE_ONLY=$CKPT_SANITIZE_ONLY)"
elif { [ -f "$ASAN_DIR/build.ninja" ] || meson setup "$ASAN_DIR" -Db_sanitize=address,undefined -Db_lundef=false \
       -Dtrainer=disabled -Dbench=false --buildtype=plain -Doptimization=1 \
       -Dcpp_args='-g1 -fno-omit-frame-pointer' >/dev/null; } && ninja -C "$ASAN_DIR"; then
  meson test -C "$ASAN_DIR" --no-rebuild --print-errorlogs --num-processes 2 --no-suite slow || status=1
  san_line=$(/usr/bin/python3 - "$ASAN_DIR/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = skipped = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"):
        passed += 1
    elif r == "SKIP":
        skipped += 1
    else:
        failed += 1
print(f"sanitizers (ASan+UBSan): {passed} passed, {failed} failed, {skipped} skipped")
PY
)
else
  status=1
fi
t1=$(date +%s)

# ---------------------------------------------------------------- 2. fuzz
have_libfuzzer() {
  command -v clang++ >/dev/null || return 1
  echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' >"$ROOT/.fuzzprobe.cpp"
  clang++ -fsanitize=fuzzer "$ROOT/.fuzzprobe.cpp" -o "$ROOT/.fuzzprobe" 2>/dev/null
  local ok=$?
  rm -f "$ROOT/.fuzzprobe.cpp" "$ROOT/.fuzzprobe"
  return $ok
}
fuzz_line="fuzz: skipped (no clang with libFuzzer: apt-get install clang libclang-rt-14-dev)"
if [ "${CKPT_SANITIZE_ONLY:-fuzz}" != fuzz ]; then
  fuzz_line="fuzz: not run (CKPT_SANITIZE_ONLY=$CKPT_SANITIZE_ONLY)"
elif have_libfuzzer; then
  fuzz_line="fuzz: build failed"
  if [ ! -f "$FUZZ_DIR/build.ninja" ]; then
    CXX=clang++ CC=clang meson setup "$FUZZ_DIR" -Dtrainer=disabled -Dbench=false \
      -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debugoptimized \
      -Dcpp_args='-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer' >/dev/null
  fi
  targets=$(grep -oE "'fuzz_[a-z0-9_]+'" tests/hardening/meson.build | tr -d "'" | sort -u)
  built=()
  for t in $targets; do
    grep -q "^build tests/hardening/$t:" "$FUZZ_DIR/build.ninja" 2>/dev/null && built+=("tests/hardening/$t")
  done
  if [ ${#built[@]} -gt 0 ] && ninja -C "$FUZZ_DIR" "${built[@]}"; then
    work=$FUZZ_DIR/fuzz-ci
    rm -rf "$work"
    summary=$work/summary.txt
    mkdir -p "$work"
    run_one() { bash tests/fuzz/run_fuzz.sh "$FUZZ_DIR" "$1" "$SECONDS_PER_TARGET" "$work" >>"$summary" 2>&1; }
    names=("${built[@]#tests/hardening/}")
    # Stay inside the stage's budget (CKPT_SANITIZE_BUDGET, default 720 s):
    # when the ASan stage left less than 60 s per target, run each for what
    # is left, never under 20 s, and say so.
    left=$(( ${CKPT_SANITIZE_BUDGET:-720} - ($(date +%s) - t0) - 15 ))
    fit=$(( left * 2 / ${#names[@]} ))
    if [ "$fit" -lt "$SECONDS_PER_TARGET" ]; then
      SECONDS_PER_TARGET=$(( fit < 20 ? 20 : fit ))
      echo "ci_sanitize: ${left} s left of the budget: fuzzing ${SECONDS_PER_TARGET} s per target"
    fi
    for ((i = 0; i < ${#names[@]}; i += 2)); do
      run_one "${names[i]}" &
      [ $((i + 1)) -lt ${#names[@]} ] && run_one "${names[i + 1]}" &
      wait
    done
    cat "$summary"
    crashers=$(find "$work/artifacts" -type f | wc -l)
    execs=$(grep -oE 'execs=[0-9]+' "$summary" | cut -d= -f2 | awk '{s += $1} END {print s + 0}')
    [ "$crashers" -eq 0 ] || { status=1; find "$work/artifacts" -type f; }
    fuzz_line="fuzz: ${#names[@]} targets x ${SECONDS_PER_TARGET} s, ${execs:-0} executions, $crashers crashers"
  else
    status=1
  fi
fi
t2=$(date +%s)
echo "$san_line ($((t1 - t0)) s)"
echo "$fuzz_line ($((t2 - t1)) s)"
exit $status
