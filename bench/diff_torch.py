#!/usr/bin/python3
"""The Python side of bench/run_diff.sh: what ckpt-diff computes, done with torch.

    /usr/bin/python3 bench/diff_torch.py A.pt B.pt > out.json

Loads both Mammoth checkpoints with torch.load and, for every tensor pair that
ckpt-diff compares (model state dict, optimizer state, replay buffer, and
tensors under other top-level keys), computes in float64: bit identity, max
|b-a| and its index, ||b-a||, ||a||, ||b||, ||b-a||/||a||, cosine, mean
|b-a|, and the elements beyond torch.testing.assert_close's default tolerance
(torch.isclose). Prints one JSON object keyed like ckpt-diff's --json keys.
Timings (import, load, compute) go in "seconds".
"""
import json
import sys
import time

t0 = time.perf_counter()
import torch  # noqa: E402
import torch.testing._comparison as tc  # noqa: E402

MAMMOTH = {'model', 'optimizer', 'scheduler', 'args', 'results', 'buffer'}


def walk(prefix, obj, out):
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            walk(f'{prefix}/{k}' if prefix else str(k), v, out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            walk(f'{prefix}/{i}' if prefix else str(i), v, out)


def tensors(ck):
    out = {}
    for k, v in ck['model'].items():
        out[('model', k)] = v
    opt = ck.get('optimizer') or {}
    for i, st in opt.get('state', {}).items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                out[('optimizer', f'state.{i}.{name}')] = v
    for k, v in (ck.get('buffer') or {}).items():
        if isinstance(v, torch.Tensor):
            out[('buffer', k)] = v
    for key in ck:
        if key not in MAMMOTH:
            extra = {}
            walk('', ck[key], extra)
            for k, v in extra.items():
                out[('extra', f'{key}/{k}' if k else key)] = v
    return out


def stats(x, y):
    rtol, atol = tc.default_tolerances(x, y)
    x64, y64 = x.double(), y.double()
    d = y64 - x64
    ad = d.abs().flatten()
    mx, idx = ad.max(0) if ad.numel() else (torch.tensor(0.0), torch.tensor(0))
    l2 = d.norm().item()
    na, nb = x64.norm().item(), y64.norm().item()
    dot = (x64 * y64).sum().item()
    close = torch.isclose(y64, x64, rtol=rtol, atol=atol) if x.is_floating_point() else x == y
    return {
        'identical': bool(torch.equal(x, y)),
        'max_abs': mx.item(),
        'max_abs_index': divmod_all(int(idx), list(x.shape)) if x.dim() else [],
        'l2': l2, 'norm_a': na, 'norm_b': nb,
        'rel_change': l2 / na if na else (0.0 if l2 == 0 else float('inf')),
        'cosine': dot / (na * nb) if na and nb else float('nan'),
        'mean_abs': ad.mean().item() if ad.numel() else 0.0,
        'mismatched': int((~close).sum().item()),
    }


def divmod_all(flat, shape):
    idx = []
    for ext in reversed(shape):
        idx.append(flat % max(ext, 1))
        flat //= max(ext, 1)
    return list(reversed(idx))


def main():
    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    a = torch.load(sys.argv[1], map_location='cpu')
    b = torch.load(sys.argv[2], map_location='cpu')
    t_load = time.perf_counter() - t1
    t2 = time.perf_counter()
    ta, tb = tensors(a), tensors(b)
    out = {}
    for key, x in ta.items():
        y = tb.get(key)
        if y is None or x.shape != y.shape or x.is_complex() or y.is_complex():
            continue
        out['/'.join(key)] = stats(x, y)
    t_compute = time.perf_counter() - t2
    json.dump({'tensors': len(out), 'metrics': out,
               'seconds': {'import': t_import, 'load': t_load, 'compute': t_compute}},
              sys.stdout, allow_nan=True)


if __name__ == '__main__':
    main()
