#!/usr/bin/env bash
# bench/run_diff.sh - ckpt-diff against PyTorch computing the same statistics.
#
#   bench/run_diff.sh            (from anywhere; env: BUILD, REPS, REPS_BIG, PAD_GB, PY, NO_BUILD=1, BIG=0)
#
# 1. Builds ckpt-diff (ninja -C $BUILD tools/diff/ckpt-diff; BUILD defaults to
#    build-diff, configured with -Dtrainer=disabled if missing).
# 2. Makes two ResNet-50 Mammoth checkpoints of different seeds (cached in
#    bench/out/, gitignored; bench/make_mammoth_ckpt.py):
#      diff_resnet50_s{0,1}.pt          ~195 MB each
#      diff_resnet50_pad2gb_s{0,1}.pt   the same plus >= PAD_GB GB of float32
#                                       tensors under a top-level 'pad' key
#                                       (BIG=0 skips this pair)
# 3. Runs, side by side in this one run, a warm-up of each side and then REPS
#    alternating runs (median reported):
#      ckpt-diff A B --json                 (every statistic of every tensor)
#      /usr/bin/python3 bench/diff_torch.py A B   (torch.load both, the same
#                                           statistics per tensor in float64)
#    Wall time and peak RSS of each child come from os.wait4 in a driver that
#    never imports torch (a forked child's ru_maxrss counts its parent's pages
#    until exec).
# 4. Checks that both sides compared the same tensors and agree on every
#    metric to 1e-6 relative.
# 5. Prints a markdown table against the targets: >= 10x faster wall time,
#    ckpt-diff peak RSS <= 64 MiB on both pairs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${BUILD:-$ROOT/build-diff}
OUT=$HERE/out
PY=${PY:-/usr/bin/python3}
REPS=${REPS:-5}
REPS_BIG=${REPS_BIG:-2}
PAD_GB=${PAD_GB:-2}
BIG=${BIG:-1}
mkdir -p "$OUT"

if [[ ! -d $BUILD ]]; then
  (cd "$ROOT" && meson setup "$BUILD" -Dtrainer=disabled >&2)
fi
if [[ ${NO_BUILD:-0} != 1 ]]; then
  ninja -C "$BUILD" tools/diff/ckpt-diff >&2
fi
CKPT_DIFF=$BUILD/tools/diff/ckpt-diff
[[ -x $CKPT_DIFF ]] || { echo "no $CKPT_DIFF" >&2; exit 1; }

make_file() {  # OUTFILE ARGS...
  local f=$1; shift
  if [[ ! -s $f || $HERE/make_mammoth_ckpt.py -nt $f ]]; then
    echo "== making $f" >&2
    "$PY" "$HERE/make_mammoth_ckpt.py" "$f" "$@" >&2
  fi
}
make_file "$OUT/diff_resnet50_s0.pt" --arch resnet50 --seed 0
make_file "$OUT/diff_resnet50_s1.pt" --arch resnet50 --seed 1
if [[ $BIG == 1 ]]; then
  make_file "$OUT/diff_resnet50_pad${PAD_GB}gb_s0.pt" --arch resnet50 --seed 0 --pad-gb "$PAD_GB"
  make_file "$OUT/diff_resnet50_pad${PAD_GB}gb_s1.pt" --arch resnet50 --seed 1 --pad-gb "$PAD_GB"
fi

export CKPT_DIFF PY HERE OUT REPS REPS_BIG PAD_GB BIG
exec "$PY" - <<'PYEOF'
import json, math, os, statistics, subprocess, sys, tempfile, time

E = os.environ
CKPT_DIFF, PY, HERE, OUT = E['CKPT_DIFF'], E['PY'], E['HERE'], E['OUT']
REPS, REPS_BIG, PAD_GB = int(E['REPS']), int(E['REPS_BIG']), E['PAD_GB']
env = dict(os.environ, CKPT_NO_PROGRESS='1', NO_COLOR='1')


def measure(cmd, out_path):
    """(wall seconds, peak RSS KiB, exit code) of one child writing stdout to out_path."""
    with open(out_path, 'w') as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    return wall, usage.ru_maxrss, os.waitstatus_to_exitcode(status)


def close(x, y, rel=1e-6):
    if x is None or y is None:
        return (x is None or (isinstance(x, float) and not math.isfinite(x))) and \
               (y is None or (isinstance(y, float) and not math.isfinite(y)))
    return abs(x - y) <= max(1e-12, rel * max(abs(x), abs(y)))


def agree(ck_json, py_json):
    ck = json.load(open(ck_json))
    py = json.load(open(py_json))
    mine = {}
    for section in ('model', 'optimizer', 'buffer', 'extra'):
        for t in ck.get(section, {}).get('tensors', []):
            mine[f'{section}/{t["key"]}'] = t
    bad, n = [], 0
    for key, r in py['metrics'].items():
        t = mine.get(key)
        if t is None:
            bad.append(f'{key}: not compared by ckpt-diff')
            continue
        n += 1
        if (t['verdict'] == 'identical') != r['identical']:
            bad.append(f'{key}: identical {t["verdict"]} vs {r["identical"]}')
        for m in ('max_abs', 'l2', 'norm_a', 'norm_b', 'rel_change', 'cosine', 'mean_abs'):
            if not close(t.get(m), r[m]):
                bad.append(f'{key}.{m}: {t.get(m)} vs torch {r[m]}')
        if t['mismatched'] != r['mismatched']:
            bad.append(f'{key}.mismatched: {t["mismatched"]} vs torch {r["mismatched"]}')
    if len(mine) != len(py['metrics']):
        bad.append(f'ckpt-diff compared {len(mine)} tensors, torch {len(py["metrics"])}')
    return n, bad, py['seconds']


def bench(label, a, b, reps):
    tmp = tempfile.mkdtemp(prefix='bench-diff-')
    ck_out, py_out = os.path.join(tmp, 'ck.json'), os.path.join(tmp, 'py.json')
    ck_cmd = [CKPT_DIFF, a, b, '--json']
    py_cmd = [PY, os.path.join(HERE, 'diff_torch.py'), a, b]
    measure(ck_cmd, ck_out)            # warm-up: page cache
    measure(py_cmd, py_out)
    ck, py = [], []
    for _ in range(reps):
        ck.append(measure(ck_cmd, ck_out))
        py.append(measure(py_cmd, py_out))
    n, bad, secs = agree(ck_out, py_out)
    rc = {r[2] for r in ck}
    size = os.path.getsize(a) + os.path.getsize(b)
    res = {
        'label': label, 'bytes': size, 'tensors': n, 'disagreements': bad, 'exit': sorted(rc),
        'ck_wall': statistics.median(r[0] for r in ck), 'ck_rss': max(r[1] for r in ck) / 1024,
        'py_wall': statistics.median(r[0] for r in py), 'py_rss': max(r[1] for r in py) / 1024,
        'py_seconds': secs,
    }
    for f in (ck_out, py_out):
        os.unlink(f)
    os.rmdir(tmp)
    return res


pairs = [('ResNet-50 pair', f'{OUT}/diff_resnet50_s0.pt', f'{OUT}/diff_resnet50_s1.pt', REPS)]
if E['BIG'] == '1':
    pairs.append((f'ResNet-50 + {PAD_GB} GB pair', f'{OUT}/diff_resnet50_pad{PAD_GB}gb_s0.pt',
                  f'{OUT}/diff_resnet50_pad{PAD_GB}gb_s1.pt', REPS_BIG))
results = []
for label, a, b, reps in pairs:
    print(f'== {label}: {reps} runs each side', file=sys.stderr)
    results.append(bench(label, a, b, reps))

print(f'\nckpt-diff vs PyTorch, {os.cpu_count()} cores, CKPT_THREADS={E.get("CKPT_THREADS", "(all)")}; '
      f'medians; peak RSS = max over runs\n')
print('| pair | files | tensors | ckpt-diff wall | torch wall (import+load+compute) | speed-up | ckpt-diff peak RSS | torch peak RSS | agree (1e-6) |')
print('|---|---|---|---|---|---|---|---|---|')
ok = True
for r in results:
    sp = r['py_wall'] / r['ck_wall']
    s = r['py_seconds']
    agree_txt = 'yes' if not r['disagreements'] else f'NO ({len(r["disagreements"])})'
    print(f'| {r["label"]} | {r["bytes"] / 1e9:.2f} GB | {r["tensors"]} | {r["ck_wall"]:.2f} s | '
          f'{r["py_wall"]:.2f} s ({s["import"]:.1f}+{s["load"]:.1f}+{s["compute"]:.1f}) | {sp:.1f}x | '
          f'{r["ck_rss"]:.1f} MiB | {r["py_rss"]:.0f} MiB | {agree_txt} |')
    ok &= sp >= 10 and r['ck_rss'] <= 64 and not r['disagreements'] and r['exit'] == [1]
    for d in r['disagreements'][:10]:
        print('   -', d, file=sys.stderr)
print(f'\ntargets: >= 10x faster, ckpt-diff peak RSS <= 64 MiB, same statistics: {"MET" if ok else "NOT MET"}')
PYEOF
