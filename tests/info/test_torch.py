#!/usr/bin/python3
"""What ckpt-info --json --stats reports agrees with torch.load of the same file.

For every fixture: each tensor's dtype, shape, numel and aliasing, and its
statistics (min/max/mean/std over the finite values, NaN/+Inf/-Inf/zero
counts) computed by torch in float64 -- this covers the C++ decoding of
f16, bf16, int8 and bool. For the Mammoth files also: the results matrices
and BWT/forgetting (Mammoth's utils/metrics.py formulas), the buffer label
histograms (torch.bincount), the optimizer state totals and the
parameter-name mapping (named_parameters order). Statistics must not depend
on the number of threads.
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import infotest as it  # noqa: E402

FILES = [it.MAMMOTH, it.OLD_PICKLE, it.RESNET, 'plain_state_dict.pt', 'legacy_mlp.pt', 'lightning.ckpt',
         'dataparallel.pt']


def torch_stats(t):
    import torch
    x = t.detach().reshape(-1).to(torch.float64)
    fin = x[torch.isfinite(x)]
    s = {'count': x.numel(), 'finite': fin.numel(), 'nan': int(torch.isnan(x).sum()),
         'posinf': int((x == math.inf).sum()), 'neginf': int((x == -math.inf).sum()), 'zeros': int((x == 0).sum())}
    s['min'] = float(fin.min()) if fin.numel() else None
    s['max'] = float(fin.max()) if fin.numel() else None
    s['mean'] = float(fin.mean()) if fin.numel() else None
    s['std'] = float(fin.std()) if fin.numel() > 1 else None
    return s


def close(a, b, rel):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= rel * max(1e-300, abs(b)) + 1e-15


def compare_stats(c, label, got, want):
    for k in ('count', 'finite', 'nan', 'posinf', 'neginf', 'zeros', 'min', 'max'):
        c.eq(got[k], want[k], '%s %s' % (label, k))
    c.check(close(got['mean'], want['mean'], 1e-9), '%s mean: %r vs torch %r' % (label, got['mean'], want['mean']))
    c.check(close(got['std'], want['std'], 1e-7), '%s std: %r vs torch %r' % (label, got['std'], want['std']))
    c.eq(got['nonfinite'], want['nan'] + want['posinf'] + want['neginf'] > 0, label + ' nonfinite flag')


def check_table(c, f, table, root):
    import torch
    for row in table['rows']:
        t = root.get(row['name'])
        label = '%s %s' % (f, row['path'])
        if not c.check(isinstance(t, torch.Tensor), label + ' is not a tensor in torch.load'):
            continue
        c.eq(row['dtype'], str(t.dtype).replace('torch.', ''), label + ' dtype')
        c.eq(row['shape'], list(t.shape), label + ' shape')
        c.eq(row['stride'], list(t.stride()), label + ' stride')
        c.eq(row['numel'], t.numel(), label + ' numel')
        compare_stats(c, label, row['stats'], torch_stats(t))


def check_aliases(c, f, table, root):
    """alias_of names the first key on the same storage, exactly as torch sees it."""
    first = {}
    for row in table['rows']:
        t = root[row['name']]
        ptr = t.storage().data_ptr()
        want = first.setdefault(ptr, row['name'])
        c.eq(row['alias_of'], None if want == row['name'] else want, '%s %s alias_of' % (f, row['name']))
    c.eq(table['storages'], len(first), f + ' storage count')


def check_mammoth(c, f, j, obj):
    import torch
    res = j['results']
    raw = obj['results']
    c.eq(res['class_il'], [[float(x) for x in r] for r in raw[0]], f + ' Class-IL matrix')
    c.eq(res['task_il'], [[float(x) for x in r] for r in raw[1]], f + ' Task-IL matrix')
    R = raw[0]
    T = len(R)
    if T > 1:
        bwt = sum(R[-1][i] - R[i][i] for i in range(T - 1)) / (T - 1)
        fgt = sum(max(R[t][i] for t in range(i, T)) - R[-1][i] for i in range(T - 1)) / (T - 1)
        c.check(close(res['bwt']['class_il'], bwt, 1e-12), '%s BWT %r vs %r' % (f, res['bwt']['class_il'], bwt))
        c.check(close(res['forgetting']['class_il'], fgt, 1e-12), '%s forgetting' % f)
    c.eq(res['logger']['accs'], [float(x) for x in raw[2]['accs']], f + ' logger accs (str -> float)')
    buf = obj.get('buffer')
    if buf is not None:
        tensors = buf if isinstance(buf, dict) else buf.__dict__
        for name in ('labels', 'task_labels'):
            if name in tensors:
                counts = torch.bincount(tensors[name])
                want = {str(i): int(n) for i, n in enumerate(counts.tolist()) if n}
                c.eq(j['buffer']['histograms'].get(name), want, '%s buffer %s histogram' % (f, name))
        c.eq(j['buffer']['examples'], tensors['examples'].shape[0], f + ' buffer examples')
    opt = obj['optimizer']
    names = [k for k in obj['model'] if not k.startswith(('net._features.', 'net.net.'))
             and not k.endswith(('running_mean', 'running_var', 'num_batches_tracked'))]
    c.eq(j['optimizer']['param_names'], names, f + ' optimizer parameter names (named_parameters order)')
    bufs = [s['momentum_buffer'] for s in opt['state'].values()
            if isinstance(s.get('momentum_buffer'), torch.Tensor)]
    mk = [k for k in j['optimizer']['state_keys'] if k['key'] == 'momentum_buffer']
    if bufs:
        compare_stats(c, f + ' momentum_buffer', mk[0]['stats'], torch_stats(torch.cat([b.reshape(-1) for b in bufs])))
        c.eq(mk[0]['numel'], sum(b.numel() for b in bufs), f + ' momentum numel')
    elif mk:
        c.eq(mk[0]['nones'], len(opt['state']), f + ' momentum None count')


def main():
    it.need(it.INFO, 'ckpt-info')
    it.need(os.path.join(it.FIXTURES, it.MAMMOTH), 'the fixtures')
    try:
        import torch
    except ImportError:
        print('SKIP: no torch')
        sys.exit(it.SKIP)
    sys.path.insert(0, os.path.join(it.TESTS, '..', 'pylib'))
    import mammoth_ref  # noqa: F401  (registers nothing; old_pickle needs utils.buffer below)
    c = it.Checks('info_torch')
    for f in FILES:
        code, doc, err = it.run_json(['--stats', f], env=it.clean_env(CKPT_THREADS='1'))
        c.eq(code, 0, f + ' exit code')
        j = doc['files'][0]
        _, doc4, _ = it.run_json(['--stats', f], env=it.clean_env(CKPT_THREADS='4'))
        c.check(doc4 == doc, f + ': statistics differ between 1 and 4 threads')
        path = os.path.join(it.FIXTURES, f)
        if f == it.OLD_PICKLE:
            with mammoth_ref._legacy_buffer_module():
                obj = torch.load(path, map_location='cpu')
        else:
            obj = torch.load(path, map_location='cpu')
        key = j['layout']['model_key']
        model = obj if key == '' else obj[key]
        check_table(c, f, j['model'], model)
        check_aliases(c, f, j['model'], model)
        if j['buffer']:
            bt = obj['buffer'] if isinstance(obj['buffer'], dict) else obj['buffer'].__dict__
            check_table(c, f, j['buffer']['tensors'], bt)
        if j['layout']['kind'] == 'mammoth':
            check_mammoth(c, f, j, obj)
        views = {(v.storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()), v.dtype): v
                 for v in model.values()}
        c.eq(j['model']['numel'], sum(v.numel() for v in views.values()), f + ' model numel over distinct views')
        c.eq(j['model']['views'], len(views), f + ' distinct views')
    # The HDF5 and safetensors exports (ckpt-convert) show the same model.
    _, ref, _ = it.run_json(['--stats', it.MAMMOTH])
    keep = ('name', 'dtype', 'shape', 'numel', 'alias_of', 'same_view', 'stats')
    want = [{k: r[k] for k in keep} for r in ref['files'][0]['model']['rows']]
    for f in ('mammoth_export.h5', 'mammoth_export.safetensors'):
        if not os.path.exists(os.path.join(it.FIXTURES, f)):
            print('note: %s not built (no ckpt-convert)' % f)
            continue
        code, doc, _ = it.run_json(['--stats', f])
        c.eq(code, 0, f + ' exit code')
        got = [{k: r[k] for k in keep} for r in doc['files'][0]['model']['rows']]
        c.check(got == want, f + ': model rows (names, dtypes, shapes, aliases, statistics) differ from the .pt')
    c.finish()


if __name__ == '__main__':
    main()
