#!/usr/bin/env bash
# bench/run_convert.sh - ckpt-convert against Python doing the same job, side by side.
#
#   bench/run_convert.sh     (env: BUILD [build-convert], REPS [3], PAD_GB [2], PY, NO_BUILD=1, SKIP_BIG=1)
#
# On bench/out/resnet50.pt (a Mammoth safe-mode checkpoint of torchvision's
# ResNet-50, ~195 MB, made by bench/make_mammoth_ckpt.py and cached):
#   backbone:  ckpt-convert IN OUT --backbone      vs  convert_backbone.py (torch.load + dict filter + torch.save)
#   h5 none / gzip:4 (+shuffle, our default) / zstd:3:
#              ckpt-convert IN OUT.h5 --compress X vs  convert_h5py.py (torch.load + h5py, same datasets,
#                                                      attributes and filters; zstd through our HDF5 plugin)
# and, on resnet50_pad2gb.pt (the same plus >= 2 GB of 256 MiB tensors), the
# peak RSS of both ckpt-convert jobs, which must stay near the largest tensor
# (not the file size). Each side runs once as a warm-up, then REPS times
# alternately; medians of wall time (perf_counter) and peak RSS (wait4) are
# reported. ckpt-convert runs with --no-fsync, since neither torch.save nor
# h5py fsyncs (one extra row shows the default, durable run). Outputs are
# checked: the backbones load equal in torch, the HDF5 files hold equal data.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${BUILD:-$ROOT/build-convert}
OUT=$HERE/out
PY=${PY:-/usr/bin/python3}
REPS=${REPS:-3}
PAD_GB=${PAD_GB:-2}
mkdir -p "$OUT"

if [[ ! -d $BUILD ]]; then
  (cd "$ROOT" && meson setup "$BUILD" -Dtrainer=disabled >&2)
fi
if [[ ${NO_BUILD:-0} != 1 ]]; then
  ninja -C "$BUILD" tools/convert/ckpt-convert libckpt/hdf5-plugin/libH5Zckpt_zstd.so >&2
fi
CONVERT=$BUILD/tools/convert/ckpt-convert
[[ -x $CONVERT ]] || { echo "no $CONVERT" >&2; exit 1; }

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
[[ ${SKIP_BIG:-0} == 1 ]] || make_file "$BIG" --arch resnet50 --pad-gb "$PAD_GB"

export CONVERT PY HERE OUT SMALL BIG REPS SKIP_BIG=${SKIP_BIG:-0}
export HDF5_PLUGIN_PATH=$BUILD/libckpt/hdf5-plugin CKPT_NO_PROGRESS=1
exec "$PY" - <<'PYEOF'
import json, os, statistics, subprocess, sys, tempfile, time

E = os.environ
CONVERT, PY, HERE, OUT, SMALL, BIG = E['CONVERT'], E['PY'], E['HERE'], E['OUT'], E['SMALL'], E['BIG']
REPS = int(E['REPS'])


def run(cmd):
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=so, stderr=se)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        cpu = ru.ru_utime + ru.ru_stime
        so.seek(0); se.seek(0)
        out, err = so.read().decode(), se.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit('FAILED: %s\n%s%s' % (' '.join(cmd), err, out))
    return wall, ru.ru_maxrss / 1024.0, cpu


def rm(*paths):
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def bench(sides, reps, outs):
    """outs: (ckpt output, Python output); each side removes its own before it runs."""
    samples = {k: [] for k in sides}
    for i in range(reps + 1):
        for name, cmd in sides.items():
            rm(outs[0] if name.startswith('ckpt') else outs[1])
            r = run(cmd)
            if i > 0:
                samples[name].append(r)
    return {k: {'wall': statistics.median(x[0] for x in v), 'rss': statistics.median(x[1] for x in v),
                'cpu': statistics.median(x[2] for x in v)} for k, v in samples.items()}


ck_out, py_out = os.path.join(OUT, 'conv_ckpt.out'), os.path.join(OUT, 'conv_py.out')
rows = []
print('== backbone (%d reps)' % REPS, file=sys.stderr)
bb = bench({'ckpt': [CONVERT, SMALL, ck_out, '--backbone', '--to', 'pt', '--no-fsync', '--force', '-q'],
            'ckpt_fsync': [CONVERT, SMALL, ck_out, '--backbone', '--to', 'pt', '--force', '-q'],
            'python': [PY, HERE + '/convert_backbone.py', SMALL, py_out]}, REPS, [ck_out, py_out])
rows.append(('backbone .pt', bb, 10))
# correctness: both backbones equal
chk = subprocess.run([PY, '-c', r'''
import sys, torch
a = torch.load(sys.argv[1], weights_only=True); b = torch.load(sys.argv[2], weights_only=True)
assert list(a) == list(b), (list(a)[:5], list(b)[:5])
assert all(torch.equal(a[k], b[k]) for k in a)
print(len(a))''', ck_out, py_out], capture_output=True, text=True)
problems = [] if chk.returncode == 0 else ['backbones differ: ' + chk.stderr[-300:]]
sizes = {}
for comp in ('none', 'default', 'gzip:4', 'zstd:3'):
    print('== h5 %s (%d reps)' % (comp, REPS), file=sys.stderr)
    # 'default': each side's default gzip (ckpt-convert gzip:1 + shuffle, h5py's gzip:4 + shuffle)
    ck_comp = ['--compress', comp] if comp != 'default' else []
    sides = {'ckpt': [CONVERT, SMALL, ck_out, '--to', 'h5', *ck_comp, '--no-fsync', '--force', '-q'],
             'python': [PY, HERE + '/convert_h5py.py', SMALL, py_out, comp if comp != 'default' else 'gzip:4']}
    if comp == 'default':
        sides['ckpt_fsync'] = [CONVERT, SMALL, ck_out, '--to', 'h5', '--force', '-q']
    r = bench(sides, REPS, [ck_out, py_out])
    rows.append(('h5 ' + (comp if comp != 'default' else 'defaults: ckpt gzip:1 vs h5py gzip:4'), r, 5))
    sizes[comp] = (os.path.getsize(ck_out), os.path.getsize(py_out))
    chk = subprocess.run([PY, '-c', r'''
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
n = 0
def v(name, obj):
    global n
    if isinstance(obj, h5py.Dataset) and not name.startswith("_ckpt"):
        assert np.array_equal(obj[()], b[name][()]), name
        n += 1
a.visititems(v)
assert n > 300, n
''', ck_out, py_out], capture_output=True, text=True)
    if chk.returncode != 0:
        problems.append('h5 %s datasets differ: %s' % (comp, chk.stderr[-300:]))
zst = os.path.join(OUT, 'conv.pt.zst')
rm(zst)
t_zst = run([CONVERT, SMALL, zst, '--no-fsync', '--force', '-q'])
sizes['pt.zst'] = (os.path.getsize(zst), None)
rm(zst)

big = {}
if E.get('SKIP_BIG') != '1':
    for label, cmd in (('backbone', ['--backbone', '--to', 'pt']), ('h5 none', ['--to', 'h5', '--compress', 'none']),
                       ('h5 default (gzip:1)', ['--to', 'h5'])):
        print('== %s on %s' % (label, BIG), file=sys.stderr)
        rm(ck_out)
        big[label] = run([CONVERT, BIG, ck_out, *cmd, '--no-fsync', '--force', '-q'])
    rm(ck_out)
rm(ck_out, py_out)

largest = 256.0  # MiB: the pad tensors; ResNet-50's largest is fc (2048x10) / layer4 conv (2048x512x1x1 = 4 MiB)
print()
print('load average at the end: %s' % open('/proc/loadavg').read().split()[:3])
print()
print('| job (%s, %.0f MB) | ckpt-convert | Python | speed-up | target | CPU s ckpt / Python | ckpt RSS | Python RSS |' % (os.path.basename(SMALL), os.path.getsize(SMALL) / 1e6))
print('|---|---|---|---|---|---|---|---|')
for name, r, target in rows:
    c, p = r['ckpt'], r['python']
    sp = p['wall'] / c['wall']
    print('| %s | %.3f s | %.3f s | %.1fx | >= %dx %s | %.2f / %.2f | %.0f MiB | %.0f MiB |' % (
        name, c['wall'], p['wall'], sp, target, 'met' if sp >= target else 'NOT met', c['cpu'], p['cpu'], c['rss'], p['rss']))
    if 'ckpt_fsync' in r:
        print('| %s, ckpt durable (fsync) | %.3f s | | %.1fx | | %.2f | %.0f MiB | |' % (name, r['ckpt_fsync']['wall'], p['wall'] / r['ckpt_fsync']['wall'], r['ckpt_fsync']['cpu'], r['ckpt_fsync']['rss']))
print()
print('| output sizes | ckpt-convert | h5py |')
print('|---|---|---|')
print('| source .pt | %.1f MB | |' % (os.path.getsize(SMALL) / 1e6))
for k, (a, b) in sizes.items():
    print('| %s | %.1f MB (%.3f of the .pt) | %s |' % (k, a / 1e6, a / os.path.getsize(SMALL), '%.1f MB' % (b / 1e6) if b else ''))
print('| pt.zst time | %.3f s | |' % t_zst[0])
if big:
    print()
    print('| peak RSS on %s (%.2f GB; largest tensor 256 MiB) | wall | peak RSS | bounded by the largest tensor |' % (os.path.basename(BIG), os.path.getsize(BIG) / 1e9))
    print('|---|---|---|---|')
    for label, (w, m, _) in big.items():
        print('| %s | %.2f s | %.0f MiB | %s |' % (label, w, m, 'yes' if m <= largest * 1.5 + 64 else 'NO'))
for p in problems:
    print('PROBLEM:', p)
sys.exit(1 if problems else 0)
PYEOF
