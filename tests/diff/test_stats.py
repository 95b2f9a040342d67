#!/usr/bin/python3
"""ckpt-diff's statistics against torch computing the same ones in float64.

For every tensor pair of stats_a.pt / stats_b.pt (float32/16, bfloat16,
float64, int32, complex64, strided views, a grown head, 300k elements over
several chunks) the JSON metrics must agree with torch to 1e-6 relative:
max |b-a| (and its index), ||b-a||, ||a||, ||b||, ||b-a||/||a||, cosine,
mean |b-a|; the count of elements beyond tolerance must equal
(~torch.isclose(b, a, rtol, atol)).sum(), the tolerances must be
torch.testing's defaults, and the verdict must agree with
torch.testing.assert_close(b, a).
"""
import math
import shutil

import numpy as np
import torch
import torch.testing._comparison as tc

from diffcommon import Failures, run_json, workdir

REL = 1e-6


def close(x, y, rel=REL, abs_=1e-12):
    if x is None or y is None:
        return x is None and y is None
    return abs(x - y) <= max(abs_, rel * max(abs(x), abs(y)))


def reference(a, b):
    """The metrics in float64 (complex128), as torch computes them."""
    rows = a.shape[0] if a.dim() else None
    if a.shape != b.shape:          # a grown head: the old rows
        b = b[:rows]
    wide = torch.complex128 if a.is_complex() else torch.float64
    a64, b64 = a.to(wide), b.to(wide)
    d = b64 - a64
    ad = d.abs().flatten()
    idx = int(np.argmax(ad.numpy()))            # first occurrence of the greatest
    na, nb = a64.abs().pow(2).sum().sqrt().item(), b64.abs().pow(2).sum().sqrt().item()
    l2 = ad.pow(2).sum().sqrt().item()
    dot = (a64.conj() * b64).sum().real.item() if a.is_complex() else (a64 * b64).sum().item()
    rtol, atol = tc.default_tolerances(a, b)
    if a.is_floating_point() or a.is_complex():
        close_mask = torch.isclose(b64, a64, rtol=rtol, atol=atol)
    else:
        close_mask = b.to(torch.int64) == a.to(torch.int64)
    return {
        'max_abs': ad.max().item(),
        'max_abs_index': list(np.unravel_index(idx, tuple(a.shape))) if a.dim() else [],
        'l2': l2, 'norm_a': na, 'norm_b': nb,
        'rel_change': l2 / na,
        'cosine': dot / (na * nb),
        'mean_abs': ad.mean().item(),
        'mismatched': int((~close_mask).sum().item()),
        'elements': a.numel(),
        'rtol': rtol, 'atol': atol,
    }


def assert_close_fails(a, b):
    if a.shape != b.shape:
        b = b[:a.shape[0]]
    try:
        torch.testing.assert_close(b, a)
        return False
    except AssertionError:
        return True


def main():
    work = workdir('stats')
    f = Failures()
    try:
        a = torch.load(f'{work}/stats_a.pt')
        b = torch.load(f'{work}/stats_b.pt')
        rc, rep = run_json(['stats_a.pt', 'stats_b.pt', '--section', 'model'], work)
        f.check(rc == 1, f'exit {rc}, expected 1')
        got = {t['key']: t for t in rep['model']['tensors']}
        f.check(set(got) == set(a), f'keys {sorted(got)} != {sorted(a)}')
        for key in a:
            if key not in got:
                continue
            g, r = got[key], reference(a[key], b[key])
            for m in ('max_abs', 'l2', 'norm_a', 'norm_b', 'rel_change', 'cosine', 'mean_abs'):
                f.check(close(g[m], r[m]), f'{key}.{m}: ckpt-diff {g[m]!r} vs torch {r[m]!r}')
            f.check([int(i) for i in g['max_abs_index']] == [int(i) for i in r['max_abs_index']],
                    f'{key}.max_abs_index: {g["max_abs_index"]} vs torch {r["max_abs_index"]}')
            for m in ('mismatched', 'elements'):
                f.check(g[m] == r[m], f'{key}.{m}: ckpt-diff {g[m]} vs torch {r[m]}')
            f.check(g['rtol'] == r['rtol'] and g['atol'] == r['atol'],
                    f'{key}: tolerance {g["rtol"]}/{g["atol"]} vs torch {r["rtol"]}/{r["atol"]}')
            fails = assert_close_fails(a[key], b[key])
            f.check((g['verdict'] == 'changed') == fails,
                    f'{key}: verdict {g["verdict"]} but assert_close {"fails" if fails else "passes"}')
            f.check(g['dtype_a'] == str(a[key].dtype).replace('torch.', ''), f'{key}: dtype {g["dtype_a"]}')
        f.check(got['grown.weight']['status'] == 'grown' and got['grown.weight']['added_rows'] == 2,
                'grown.weight is reported as grown by 2 rows')
        f.check(math.isclose(got['opposite']['cosine'], -1.0, rel_tol=1e-12), 'opposite tensors: cosine -1')
    finally:
        shutil.rmtree(work, ignore_errors=True)
    f.done('test_stats')


if __name__ == '__main__':
    main()
