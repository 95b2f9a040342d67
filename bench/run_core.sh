#!/usr/bin/env bash
# bench/run_core.sh - libckpt core benchmark: walk and save, libckpt vs PyTorch.
#
#   bench/run_core.sh            (from anywhere; env: BUILD, REPS, REPS_BIG, PAD_GB, PY, NO_BUILD=1)
#
# 1. Builds build/bench/bench_core (ninja -C $BUILD; configure first with
#    `meson setup build -Dtrainer=disabled` if $BUILD does not exist).
# 2. Makes the test files, cached in bench/out/ (gitignored):
#      resnet50.pt         Mammoth safe-mode checkpoint, torchvision ResNet-50 (~195 MB)
#      resnet50_padNgb.pt  the same plus >= N GB of extra tensors (PAD_GB, default 2)
#    They are rebuilt when bench/make_mammoth_ckpt.py is newer.
# 3. Runs, in this one run, each side once as a warm-up (page cache warm) and
#    then REPS times alternately (median reported):
#      walk:  bench_core walk FILE      vs  torch_walk.py FILE   (torch.load + walk)
#      save:  bench_core save FILE OUT  vs  torch_save.py FILE OUT
#    Wall time and peak RSS of each process come from os.wait4() on the child
#    (the same rusage /usr/bin/time -f '%M' reports), with a perf_counter wall
#    clock (sub-ms; /usr/bin/time's %e has 10 ms resolution, too coarse here).
#    "in-process" times are what each program reports about itself:
#      walk: ckpt open + tensors() walk  |  torch.load + recursive walk (no `import torch`)
#      save: the save call only, no load/open, for both sides. ckpt::save is
#            durable by default: it fsyncs the file and its folder; torch.save
#            does not, so torch.save+fsync is shown too, and ckpt without fsync.
# 4. Checks that both walks agree (tensor count, numel) and that torch.load of
#    the ckpt-saved file equals the original (values, key order, types, aliasing).
# 5. Prints a markdown table with ratios against the targets:
#      walk >= 100x faster than torch.load, walk peak RSS <= 20 MiB (also on the
#      >= 2 GB file), save no slower than torch.save.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
OUT=$HERE/out
PY=${PY:-/usr/bin/python3}          # the interpreter with torch 1.13 + torchvision
REPS=${REPS:-7}
REPS_BIG=${REPS_BIG:-3}
PAD_GB=${PAD_GB:-2}

mkdir -p "$OUT"

# ---- build ------------------------------------------------------------------
if [[ ! -d $BUILD ]]; then
  echo "== configuring $BUILD" >&2
  (cd "$ROOT" && meson setup "$BUILD" -Dtrainer=disabled >&2)
fi
if [[ ${NO_BUILD:-0} != 1 ]]; then   # NO_BUILD=1: use the bench_core already built
  echo "== ninja -C $BUILD bench/bench_core" >&2
  ninja -C "$BUILD" bench/bench_core >&2
fi
BENCH_CORE=$BUILD/bench/bench_core
[[ -x $BENCH_CORE ]] || { echo "no $BENCH_CORE (configured with -Dbench=false?)" >&2; exit 1; }

# ---- test files -------------------------------------------------------------
make_file() {  # OUTFILE ARGS...
  local f=$1; shift
  if [[ ! -s $f || $HERE/make_mammoth_ckpt.py -nt $f ]]; then
    echo "== making $f" >&2
    "$PY" "$HERE/make_mammoth_ckpt.py" "$f" "$@" >&2
  fi
}
SMALL=$OUT/resnet50.pt
BIG=$OUT/resnet50_pad${PAD_GB}gb.pt
make_file "$SMALL" --arch resnet50
make_file "$BIG" --arch resnet50 --pad-gb "$PAD_GB"

# ---- measure, check, report -------------------------------------------------
export BENCH_CORE PY HERE OUT SMALL BIG REPS REPS_BIG PAD_GB
exec "$PY" - <<'PYEOF'
import json, os, statistics, subprocess, sys, tempfile, time

E = os.environ
BENCH_CORE, PY, HERE, OUT = E['BENCH_CORE'], E['PY'], E['HERE'], E['OUT']
SMALL, BIG = E['SMALL'], E['BIG']
REPS, REPS_BIG, PAD_GB = int(E['REPS']), int(E['REPS_BIG']), E['PAD_GB']
CK_OUT, TORCH_OUT = os.path.join(OUT, 'save_ckpt.pt'), os.path.join(OUT, 'save_torch.pt')


def run(cmd):
    """Runs cmd; returns (wall s, peak RSS KiB, parsed last JSON line of stdout)."""
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=so, stderr=se)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        so.seek(0); se.seek(0)
        out, err = so.read().decode(), se.read().decode()
    if p.returncode != 0:
        sys.exit(f'FAILED ({p.returncode}): {" ".join(cmd)}\n{err}{out}')
    return wall, ru.ru_maxrss, json.loads(out.strip().splitlines()[-1])


def rm(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def bench(sides, reps, before=None):
    """sides: {name: cmd}. Warm-up once each, then reps alternating. Medians."""
    samples = {k: [] for k in sides}
    for i in range(reps + 1):
        for name, cmd in sides.items():
            if before:
                before()
            r = run(cmd)
            if i > 0:
                samples[name].append(r)
    res = {}
    for name, rs in samples.items():
        res[name] = {
            'wall': statistics.median(r[0] for r in rs),
            'rss': statistics.median(r[1] for r in rs) / 1024.0,  # MiB
            'rss_max': max(r[1] for r in rs) / 1024.0,
            'json': rs[-1][2],
            'sec': statistics.median(r[2]['seconds'] for r in rs),
        }
        if 'fsync_seconds' in rs[0][2]:
            res[name]['fsync_sec'] = statistics.median(r[2]['fsync_seconds'] for r in rs)
    return res


def clean_outputs():
    rm(CK_OUT); rm(TORCH_OUT)


def before_save():
    clean_outputs()
    os.sync()  # start every save with no write-back pending from the previous one


print(f'== walk {SMALL} ({REPS} reps)', file=sys.stderr)
walk_s = bench({'ckpt': [BENCH_CORE, 'walk', SMALL], 'torch': [PY, f'{HERE}/torch_walk.py', SMALL]}, REPS)
print(f'== walk {BIG} ({REPS_BIG} reps)', file=sys.stderr)
walk_b = bench({'ckpt': [BENCH_CORE, 'walk', BIG], 'torch': [PY, f'{HERE}/torch_walk.py', BIG]}, REPS_BIG)
# Warm in-process repeats, in separate runs so they do not inflate the wall times above.
walk_r = bench({'ckpt': [BENCH_CORE, 'walk', SMALL, '--repeat'], 'torch': [PY, f'{HERE}/torch_walk.py', SMALL, '--repeat']}, 3)
print(f'== save {SMALL} ({REPS} reps)', file=sys.stderr)
save_s = bench({'ckpt': [BENCH_CORE, 'save', SMALL, CK_OUT],
                'ckpt_nofsync': [BENCH_CORE, 'save', SMALL, CK_OUT, '--no-fsync'],
                'torch': [PY, f'{HERE}/torch_save.py', SMALL, TORCH_OUT, '--fsync']},
               REPS, before=before_save)

# ---- correctness checks ------------------------------------------------------
problems = []
for label, w in (('resnet50', walk_s), (f'pad{PAD_GB}gb', walk_b)):
    a, b = w['ckpt']['json'], w['torch']['json']
    for k in ('tensors', 'numel', 'dtypes'):
        if a.get(k) != b.get(k):
            problems.append(f'walk {label}: {k} differs: ckpt {a.get(k)} vs torch {b.get(k)}')

run([BENCH_CORE, 'save', SMALL, CK_OUT])  # leave one ckpt-saved file for the check
check = r'''
import sys, torch, collections
a = torch.load(sys.argv[1], map_location="cpu"); b = torch.load(sys.argv[2], map_location="cpu")
bad = []
def cmp(x, y, p):
    if type(x) is not type(y):
        bad.append(f"{p}: type {type(x).__name__} vs {type(y).__name__}"); return
    if isinstance(x, torch.Tensor):
        if x.dtype != y.dtype or x.shape != y.shape or x.stride() != y.stride() or not torch.equal(x, y):
            bad.append(f"{p}: tensor differs")
    elif isinstance(x, dict):
        if list(x.keys()) != list(y.keys()):
            bad.append(f"{p}: keys/order differ"); return
        if getattr(x, "_metadata", None) != getattr(y, "_metadata", None):
            bad.append(f"{p}: _metadata differs")
        for k in x: cmp(x[k], y[k], f"{p}/{k}")
    elif isinstance(x, (list, tuple)):
        if len(x) != len(y): bad.append(f"{p}: length differs"); return
        for i, (u, v) in enumerate(zip(x, y)): cmp(u, v, f"{p}/{i}")
    elif x != y and not (x != x and y != y):
        bad.append(f"{p}: {x!r} vs {y!r}")
cmp(a, b, "")
def storages(o, acc):
    if isinstance(o, torch.Tensor): acc.append(o.storage().data_ptr())
    elif isinstance(o, dict): [storages(v, acc) for v in o.values()]
    elif isinstance(o, (list, tuple)): [storages(v, acc) for v in o]
    return acc
sa, sb = storages(a, []), storages(b, [])
if len(set(sa)) != len(set(sb)): bad.append(f"distinct storages {len(set(sa))} vs {len(set(sb))}")
print("\n".join(bad[:10]) if bad else "OK")
'''
r = subprocess.run([PY, '-c', check, SMALL, CK_OUT], capture_output=True, text=True)
if r.returncode != 0 or r.stdout.strip() != 'OK':
    problems.append('round trip torch.load(ckpt save) != torch.load(original): '
                    + (r.stdout.strip() or r.stderr.strip()[-500:]))
clean_outputs()

# ---- report ------------------------------------------------------------------
def ms(s): return f'{s * 1e3:.2f} ms' if s < 1 else f'{s:.3f} s'
def mib(m): return f'{m:.1f} MiB'
def x(r): return f'{r:.0f}×' if r >= 10 else f'{r:.2f}×'
def ok(b): return '**yes**' if b else '**NO**'

size_s, size_b = os.path.getsize(SMALL) / 1e6, os.path.getsize(BIG) / 1e9
ws, wb, ss = walk_s, walk_b, save_s
nt = ws['ckpt']['json']['tensors']
rows = []
rows.append((f'walk, ResNet-50 {size_s:.0f} MB ({nt} tensors)', 'in-process, first call: open+walk vs torch.load+walk',
             ms(ws['ckpt']['sec']), ms(ws['torch']['sec']), x(ws['torch']['sec'] / ws['ckpt']['sec']),
             '≥100× faster', ok(ws['torch']['sec'] / ws['ckpt']['sec'] >= 100)))
wc_, wt_ = walk_r['ckpt']['json']['warm_seconds'], walk_r['torch']['json']['warm_seconds']
rows.append(('', 'in-process, repeated (warm process): open+walk vs torch.load+walk', ms(wc_), ms(wt_), x(wt_ / wc_),
             '≥100× faster', ok(wt_ / wc_ >= 100)))
rows.append(('', 'process wall time (torch: incl. `import torch`)', ms(ws['ckpt']['wall']),
             ms(ws['torch']['wall']), x(ws['torch']['wall'] / ws['ckpt']['wall']), '≥100× faster',
             ok(ws['torch']['wall'] / ws['ckpt']['wall'] >= 100)))
rows.append(('', 'peak RSS', mib(ws['ckpt']['rss']), mib(ws['torch']['rss']),
             x(ws['torch']['rss'] / ws['ckpt']['rss']), '≤20 MiB', ok(ws['ckpt']['rss_max'] <= 20)))
rows.append((f'walk, ResNet-50 + pad, {size_b:.2f} GB', 'in-process: open+walk vs torch.load+walk',
             ms(wb['ckpt']['sec']), ms(wb['torch']['sec']), x(wb['torch']['sec'] / wb['ckpt']['sec']),
             '≥100× faster', ok(wb['torch']['sec'] / wb['ckpt']['sec'] >= 100)))
rows.append(('', f'peak RSS (flat vs the {size_s:.0f} MB file?)', mib(wb['ckpt']['rss']), mib(wb['torch']['rss']),
             x(wb['torch']['rss'] / wb['ckpt']['rss']), '≤20 MiB, flat',
             ok(wb['ckpt']['rss_max'] <= 20 and wb['ckpt']['rss'] <= ws['ckpt']['rss'] + 2)))
rows.append((f'save, ResNet-50 {size_s:.0f} MB', 'save call only: ckpt (fsync) vs torch.save (no fsync)',
             ms(ss['ckpt']['sec']), ms(ss['torch']['sec']), x(ss['torch']['sec'] / ss['ckpt']['sec']),
             'no slower (≥1×)', ok(ss['ckpt']['sec'] <= ss['torch']['sec'])))
rows.append(('', 'both with fsync: ckpt vs torch.save+fsync', ms(ss['ckpt']['sec']),
             ms(ss['torch']['fsync_sec']), x(ss['torch']['fsync_sec'] / ss['ckpt']['sec']), '≥1×',
             ok(ss['ckpt']['sec'] <= ss['torch']['fsync_sec'])))
rows.append(('', 'neither fsyncs: ckpt --no-fsync vs torch.save', ms(ss['ckpt_nofsync']['sec']),
             ms(ss['torch']['sec']), x(ss['torch']['sec'] / ss['ckpt_nofsync']['sec']), '≥1×',
             ok(ss['ckpt_nofsync']['sec'] <= ss['torch']['sec'])))
rows.append(('', 'process wall time (ckpt: open+save; torch: import+load+save+fsync)',
             ms(ss['ckpt']['wall']), ms(ss['torch']['wall']), x(ss['torch']['wall'] / ss['ckpt']['wall']),
             '–', ''))
rows.append(('', 'peak RSS (ckpt: mapped input pages count)', mib(ss['ckpt']['rss']),
             mib(ss['torch']['rss']), x(ss['torch']['rss'] / ss['ckpt']['rss']), '–', ''))

import torch  # noqa: only for the version in the header
print(f'\n### libckpt core benchmark (median of {REPS} runs, {REPS_BIG} for the {size_b:.1f} GB file; '
      f'warm page cache; torch {torch.__version__}; {os.cpu_count()} CPUs)\n')
print('| benchmark | metric | libckpt | torch | torch / libckpt | target | met |')
print('|---|---|---:|---:|---:|---|---|')
for r in rows:
    print('| ' + ' | '.join(r) + ' |')
print(f'\nsave output: ckpt {ss["ckpt"]["json"]["bytes"]} bytes, torch.save {ss["torch"]["json"]["bytes"]} bytes; '
      f'ckpt open before save: {ms(ss["ckpt"]["json"].get("open_seconds", 0))}; '
      f'ckpt walk open/walk split: {ms(ws["ckpt"]["json"].get("open_seconds", 0))} / {ms(ws["ckpt"]["json"].get("walk_seconds", 0))}')
print('\nchecks: ' + ('walk counts agree (tensors, numel, dtypes); torch.load(ckpt-saved) == original: OK'
                      if not problems else 'PROBLEMS'))
for p in problems:
    print('  - ' + p)
sys.exit(1 if problems else 0)
PYEOF
