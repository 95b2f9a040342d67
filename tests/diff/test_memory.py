#!/usr/bin/python3
"""ckpt-diff streams: comparing two 256 MiB files keeps its peak RSS under
64 MiB (mapped pages are released behind the cursor; no tensor is copied
whole), and the result is still right (a single changed element is found).

This driver never imports torch: a forked child's peak RSS (wait4's
ru_maxrss) counts the parent's pages until exec, so the files are written by
a separate interpreter.

Under the sanitizer stage (CKPT_SANITIZED=1) ASan's shadow memory and
quarantine add ~40 MiB, so the bound there is 128 MiB: still a quarter of
the 512 MiB a version that keeps pages resident reaches."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CKPT_DIFF = os.environ.get('CKPT_DIFF') or os.path.join(HERE, '..', '..', 'build-diff', 'tools', 'diff', 'ckpt-diff')
N = 32 * 1024 * 1024          # float32 elements per tensor: 128 MiB
LIMIT_KIB = (128 if os.environ.get('CKPT_SANITIZED') == '1' else 64) * 1024

WRITER = f"""
import sys, torch
N = {N}
g = torch.Generator().manual_seed(5)
w = torch.rand(N, generator=g)
v = torch.rand(N, generator=g)
torch.save({{'w': w, 'v': v}}, sys.argv[1] + '/a.pt')
w[N - 3] += 1.0                       # one element near the end moves
torch.save({{'w': w, 'v': v}}, sys.argv[1] + '/b.pt')
"""


def main():
    work = tempfile.mkdtemp(prefix='ckpt-diff-mem-')
    errors = []
    try:
        subprocess.run([sys.executable, '-c', WRITER, work], check=True)
        size = os.path.getsize(os.path.join(work, 'a.pt'))
        if 2 * size < 2 * 2 * LIMIT_KIB * 1024:
            errors.append(f'the pair ({2 * size} B) should be much larger than the limit')
        env = dict(os.environ, CKPT_NO_PROGRESS='1')
        t0 = time.perf_counter()
        with open(os.path.join(work, 'out.json'), 'w+') as out, open(os.path.join(work, 'err.txt'), 'w+') as err:
            p = subprocess.Popen([CKPT_DIFF, 'a.pt', 'b.pt', '--json'], cwd=work, env=env, stdout=out, stderr=err)
            _, status, usage = os.wait4(p.pid, 0)      # this child's own peak RSS (KiB)
            wall = time.perf_counter() - t0
            rc = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            if rc != 1:
                errors.append(f'exit {rc}: {err.read()}')
            rep = json.load(out)
        t = {x['key']: x for x in rep['model']['tensors']}
        if not (t['w']['differing'] == 1 and t['w']['max_abs_index'] == [N - 3]):
            errors.append(f'w: expected one difference at {N - 3}: {t["w"]}')
        if t['v']['verdict'] != 'identical':
            errors.append(f'v: {t["v"]["verdict"]}')
        peak = usage.ru_maxrss
        if peak > LIMIT_KIB:
            errors.append(f'peak RSS {peak} KiB > {LIMIT_KIB} KiB')
        print(f'test_memory: 2 x {size / 2**20:.0f} MiB compared in {wall:.2f} s, peak RSS {peak / 1024:.1f} MiB')
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for e in errors:
        print('  - ' + e, file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == '__main__':
    main()
