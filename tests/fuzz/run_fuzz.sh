#!/usr/bin/env bash
# Runs one libFuzzer target for a while: run_fuzz.sh BUILD TARGET SECONDS [WORK]
#
#   BUILD    a build folder configured for libFuzzer (docs/fuzzing.md), e.g. build-fuzz
#   TARGET   fuzz_zip, fuzz_legacy, fuzz_unpickler, fuzz_tensor, fuzz_zstd, fuzz_open, ...
#   SECONDS  -max_total_time
#   WORK     where corpora, crashers and logs go (default BUILD/fuzz-work):
#              WORK/seeds/TARGET      seeds (made by make_seeds.py when missing)
#              WORK/corpus/TARGET     the growing corpus (reused by the next run)
#              WORK/artifacts/TARGET  crash-*, leak-*, timeout-*, oom-* inputs
#              WORK/logs/TARGET-<time>.log  libFuzzer's output
# Environment: FUZZ_TIMEOUT (s per input, default 1), FUZZ_RSS_MB (default
# 2048), FUZZ_EXTRA (more corpus folders to read), FUZZ_FLAGS (more flags).
# Prints one summary line; exits 1 when the run left a crasher.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1 target=$2 seconds=$3
work=${4:-$build/fuzz-work}
exe=$build/tests/hardening/$target
[ -x "$exe" ] || { echo "run_fuzz: $exe not built (see docs/fuzzing.md)" >&2; exit 2; }
mkdir -p "$work/corpus/$target" "$work/artifacts/$target" "$work/logs"
[ -d "$work/seeds/$target" ] || /usr/bin/python3 "$here/make_seeds.py" "$work/seeds" --targets "$target" >/dev/null

case $target in
  fuzz_tensor) max_len=512; dict=() ;;
  fuzz_unpickler) max_len=65536; dict=(-dict="$here/ckpt.dict") ;;
  *) max_len=262144; dict=(-dict="$here/ckpt.dict") ;;
esac
log=$work/logs/$target-$(date +%Y%m%d-%H%M%S).log
status=0
# shellcheck disable=SC2086
LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/lsan.supp} \
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
"$exe" -max_total_time="$seconds" -timeout="${FUZZ_TIMEOUT:-1}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" \
  -max_len=$max_len "${dict[@]}" -print_final_stats=1 -artifact_prefix="$work/artifacts/$target/" \
  ${FUZZ_FLAGS:-} "$work/corpus/$target" "$work/seeds/$target" ${FUZZ_EXTRA:-} >"$log" 2>&1 || status=$?

execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
cov=$(grep -oE '(#[0-9]+\s+(DONE|pulse|NEW|REDUCE|INITED)).*cov: [0-9]+' "$log" | grep -oE 'cov: [0-9]+' | tail -1 | grep -oE '[0-9]+')
ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
corpus=$(find "$work/corpus/$target" -type f | wc -l)
found=$(find "$work/artifacts/$target" -type f | wc -l)
echo "$target: ${seconds}s execs=${execs:-?} cov=${cov:-?} ft=${ft:-?} corpus=$corpus crashers=$found exit=$status"
[ "$found" -eq 0 ] && [ "$status" -eq 0 ]
