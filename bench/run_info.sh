#!/usr/bin/env bash
# bench/run_info.sh - ckpt-info against torch.load + the same walk, side by side.
#
#   bench/run_info.sh        (env: BUILD=build-info, REPS=7, REPS_BIG=3, PAD_GB=2, PY=/usr/bin/python3, NO_BUILD=1)
#
# 1. Builds ckpt-info in $BUILD (configures it with -Dtrainer=disabled if absent).
# 2. Makes the Mammoth checkpoints with bench/make_mammoth_ckpt.py, cached in
#    bench/out/ (gitignored): resnet18.pt, resnet50.pt and resnet50_pad${PAD_GB}gb.pt
#    (ResNet-50 plus >= PAD_GB GB of extra tensors under a top-level key).
# 3. For each file, in this one run, alternately (one warm-up each, then REPS
#    runs, medians): `ckpt-info FILE` vs `info_torch.py FILE` (torch.load plus
#    the same walk and text), and `ckpt-info --stats FILE` vs
#    `info_torch.py FILE --stats` (the same statistics, in float64, per view).
#    Wall time and peak RSS of each whole process come from os.wait4() (the
#    rusage /usr/bin/time -v reports as "Maximum resident set size"), with
#    the CPU time (user + system) beside the wall time: on a busy machine
#    it is the steadier figure. The torch side includes `import torch`:
#    that is what a user waits for.
# 4. Checks that both sides see the same tensors and the same NaN/zero counts.
# 5. Prints a markdown table against the targets: without --stats >= 100x
#    faster and <= 20 MiB peak RSS whatever the size; with --stats >= 5x faster.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${BUILD:-$ROOT/build-info}
REPS=${REPS:-7}
REPS_BIG=${REPS_BIG:-3}
PAD_GB=${PAD_GB:-2}
PY=${PY:-/usr/bin/python3}
OUT=$HERE/out
mkdir -p "$OUT"

if [[ ! -d $BUILD ]]; then
  echo "== configuring $BUILD" >&2
  (cd "$ROOT" && meson setup "$BUILD" -Dtrainer=disabled >&2)
fi
if [[ ${NO_BUILD:-0} != 1 ]]; then
  echo "== ninja -C $BUILD tools/info/ckpt-info" >&2
  ninja -C "$BUILD" tools/info/ckpt-info >&2
fi
INFO=$BUILD/tools/info/ckpt-info
[[ -x $INFO ]] || { echo "no $INFO" >&2; exit 1; }

make_file() {  # OUTFILE ARGS...
  local f=$1; shift
  if [[ ! -s $f || $HERE/make_mammoth_ckpt.py -nt $f ]]; then
    echo "== making $f" >&2
    "$PY" "$HERE/make_mammoth_ckpt.py" "$f" "$@" >&2
  fi
}
make_file "$OUT/resnet18.pt" --arch resnet18
make_file "$OUT/resnet50.pt" --arch resnet50
make_file "$OUT/resnet50_pad${PAD_GB}gb.pt" --arch resnet50 --pad-gb "$PAD_GB"

export INFO PY HERE OUT REPS REPS_BIG PAD_GB
exec "$PY" - <<'PYEOF'
import json, os, statistics, subprocess, sys, tempfile, time

E = os.environ
INFO, PY, HERE, OUT = E['INFO'], E['PY'], E['HERE'], E['OUT']
REPS, REPS_BIG, PAD_GB = int(E['REPS']), int(E['REPS_BIG']), E['PAD_GB']
FILES = [('ResNet-18', os.path.join(OUT, 'resnet18.pt'), REPS),
         ('ResNet-50', os.path.join(OUT, 'resnet50.pt'), REPS),
         ('ResNet-50 + pad', os.path.join(OUT, 'resnet50_pad%sgb.pt' % PAD_GB), REPS_BIG)]
ENV = dict(os.environ, CKPT_NO_PROGRESS='1')
ENV.pop('NO_COLOR', None)


def run(cmd):
    """(wall s, peak RSS MiB, stdout, CPU s) of one process, stdout to a file."""
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=so, stderr=se, env=ENV)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        so.seek(0); se.seek(0)
        out, err = so.read().decode('utf-8', 'replace'), se.read().decode('utf-8', 'replace')
    if code != 0:
        sys.exit('FAILED (%d): %s\n%s' % (code, ' '.join(cmd), err[-2000:]))
    return wall, ru.ru_maxrss / 1024.0, out, ru.ru_utime + ru.ru_stime


def bench(sides, reps):
    samples = {k: [] for k in sides}
    for i in range(reps + 1):  # the first round warms the page cache
        for name, cmd in sides.items():
            r = run(cmd)
            if i:
                samples[name].append(r)
    return {k: {'wall': statistics.median(r[0] for r in v), 'rss': max(r[1] for r in v), 'out': v[-1][2],
                'cpu': statistics.median(r[3] for r in v)} for k, v in samples.items()}


def ckpt_counts(doc):
    """Tensors reached and NaN/zero totals over distinct views, from --json --stats."""
    f = doc['files'][0]
    tables = [t for t in (f['model'], f['buffer'] and f['buffer']['tensors'], f['other_tensors']) if t]
    tensors = sum(t['tensors'] for t in tables)
    nan = zeros = 0
    seen = set()
    for t in tables:
        for r in t['rows']:
            key = (r['storage'], r['storage_offset'], tuple(r['shape']), tuple(r['stride']), r['dtype'])
            if key in seen or not r['stats']:
                continue
            seen.add(key)
            nan += r['stats']['nan']
            zeros += r['stats']['zeros']
    if f['optimizer']:
        for k in f['optimizer']['state_keys']:
            tensors += k['tensors']
            if k['stats']:
                nan += k['stats']['nan']
                zeros += k['stats']['zeros']
    return tensors, nan, zeros


rows, problems = [], []
for label, path, reps in FILES:
    size = os.path.getsize(path)
    print('== %s (%s, %d reps)' % (label, path, reps), file=sys.stderr)
    plain = bench({'ckpt': [INFO, path], 'torch': [PY, os.path.join(HERE, 'info_torch.py'), path]}, reps)
    st = bench({'ckpt': [INFO, '--stats', path],
                'torch': [PY, os.path.join(HERE, 'info_torch.py'), path, '--stats']}, reps)
    # Both sides saw the same thing.
    js = run([INFO, '--json', '--stats', path])[2]
    ct, cnan, czeros = ckpt_counts(json.loads(js))
    tj = json.loads(st['torch']['out'].strip().splitlines()[-1])
    if (ct, cnan, czeros) != (tj['tensors'], tj['nan'], tj['zeros']):
        problems.append('%s: ckpt-info sees tensors/nan/zeros %r, torch %r'
                        % (label, (ct, cnan, czeros), (tj['tensors'], tj['nan'], tj['zeros'])))
    for mode, r, target, ratio_goal, rss_goal in (('view', plain, '≥100×, ≤20 MiB', 100, 20),
                                                   ('--stats', st, '≥5×', 5, None)):
        ratio = r['torch']['wall'] / r['ckpt']['wall']
        met = ratio >= ratio_goal and (rss_goal is None or r['ckpt']['rss'] <= rss_goal)
        rows.append((label if mode == 'view' else '', '%.0f MB' % (size / 1e6) if mode == 'view' else '', mode,
                     '%.1f ms' % (r['ckpt']['wall'] * 1e3), '%.2f s' % r['torch']['wall'], '%.0f×' % ratio,
                     '%.1f ms' % (r['ckpt']['cpu'] * 1e3), '%.2f s' % r['torch']['cpu'],
                     '%.0f×' % (r['torch']['cpu'] / max(r['ckpt']['cpu'], 1e-4)),
                     '%.1f MiB' % r['ckpt']['rss'], '%.0f MiB' % r['torch']['rss'], target,
                     '**yes**' if met else '**NO**'))

import torch  # noqa: only for the version in the heading
print('\n### ckpt-info vs torch.load + the same walk (median of %d runs, %d for the %s GB file; whole processes, '
      'warm page cache; torch %s; %d CPUs; load average %.1f)\n'
      % (REPS, REPS_BIG, PAD_GB, torch.__version__, os.cpu_count(), os.getloadavg()[0]))
print('| file | size | mode | ckpt-info wall | torch wall | ratio | ckpt-info CPU | torch CPU | ratio | '
      'ckpt-info peak RSS | torch peak RSS | target (wall, RSS) | met |')
print('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|')
for r in rows:
    print('| ' + ' | '.join(r) + ' |')
print('\nchecks: ' + ('both sides see the same tensors, NaN and zero counts: OK' if not problems else 'PROBLEMS'))
for p in problems:
    print('  - ' + p)
sys.exit(1 if problems else 0)
PYEOF
