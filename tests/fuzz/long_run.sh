#!/usr/bin/env bash
# Long fuzzing campaign: long_run.sh BUILD SECONDS JOBS [TARGET...]
#
# Runs each target (default: every fuzz target tests/hardening/meson.build
# declares) for SECONDS of wall time, JOBS targets at a time, at nice 19 so
# builds and tests on the same machine keep the CPU. A run that stops on a
# crasher is restarted for the time that is left, so one finding does not
# end the campaign; the crashers stay in WORK/artifacts/TARGET.
# WORK is BUILD/fuzz-long (corpora grow there across campaigns).
# Prints one line per target: wall seconds, CPU seconds, executions,
# coverage, corpus size, restarts and crashers; the log of each run is under
# WORK/logs. docs/fuzzing.md has the figures of the last campaign.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1 seconds=$2 jobs=$3
shift 3
work=$build/fuzz-long
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(grep -oE "'fuzz_[a-z0-9_]+'" "$here/../hardening/meson.build" | tr -d "'" | sort -u)
fi
mkdir -p "$work"

one() {
  local t=$1 start now left runs=0 execs=0
  start=$(date +%s)
  local sum=$work/$t.summary
  : >"$sum"
  : >"$work/$t.cpu"
  while :; do
    now=$(date +%s)
    left=$((seconds - (now - start)))
    [ "$left" -ge 5 ] || break
    runs=$((runs + 1))
    /usr/bin/time -a -o "$work/$t.cpu" -f "%U %S" nice -n 19 bash "$here/run_fuzz.sh" "$build" "$t" "$left" "$work" >>"$sum" 2>&1
  done
  execs=$(grep -oE 'execs=[0-9]+' "$sum" | cut -d= -f2 | awk '{s += $1} END {print s + 0}')
  local last
  last=$(tail -1 "$sum")
  local cov=${last#*cov=}; cov=${cov%% *}
  local corpus=${last#*corpus=}; corpus=${corpus%% *}
  local crashers
  crashers=$(find "$work/artifacts/$t" -type f | wc -l)
  local cpu
  cpu=$(awk '{s += $1 + $2} END {printf "%d", s}' "$work/$t.cpu")
  echo "$t: wall=$(( $(date +%s) - start ))s cpu=${cpu}s runs=$runs execs=$execs cov=$cov corpus=$corpus crashers=$crashers"
}

running=0
for t in "${targets[@]}"; do
  one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait
