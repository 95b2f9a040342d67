#!/usr/bin/python3
"""The Python side of bench/run_info.sh: what ckpt-info shows, done with torch.

    /usr/bin/python3 bench/info_torch.py FILE [--stats]

torch.load(map_location='cpu'), then the same walk ckpt-info does: the model
table (dtype, shape, numel, bytes, shared storages as aliases, totals by
dtype, wrapper prefixes), the optimizer (param-group hyper-parameters,
per-key state totals), the scheduler, args as key = value, the results
matrices with their means, BWT and forgetting, the buffer's label
histograms, and every other tensor by key path; printed as text. With
--stats, also min/max/mean/std over the finite values and the NaN/Inf/zero
counts of every distinct tensor view, in float64 as ckpt-info computes them.

The last line on stdout is JSON: {"tensors", "views", "numel", "nan", "zeros",
"seconds" (load + walk, without `import torch`), "import_seconds"}.
"""
import json
import math
import sys
import time

t0 = time.perf_counter()
import torch  # noqa: E402
IMPORT_SECONDS = time.perf_counter() - t0


def stats(t):
    x = t.detach().reshape(-1)
    if x.dtype.is_floating_point:
        finite = torch.isfinite(x)
        nfin = int(finite.sum())
        nan = int(torch.isnan(x).sum())
        posinf, neginf = int((x == math.inf).sum()), int((x == -math.inf).sum())
        f = x if nfin == x.numel() else x[finite]
    else:
        f, nfin, nan, posinf, neginf = x, x.numel(), 0, 0, 0
    s = {'count': x.numel(), 'finite': nfin, 'nan': nan, 'posinf': posinf, 'neginf': neginf,
         'zeros': int((x == 0).sum())}
    if nfin:
        fd = f.to(torch.float64)
        std, mean = torch.std_mean(fd) if nfin > 1 else (torch.tensor(float('nan')), fd.mean())
        s.update(min=float(fd.min()), max=float(fd.max()), mean=float(mean), std=float(std))
    return s


def view_key(t):
    return (t.storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


def walk(o, path, out, seen):
    if isinstance(o, torch.Tensor):
        out.append((path, o))
    elif isinstance(o, dict):
        for k, v in o.items():
            walk(v, path + '/' + str(k) if path else str(k), out, seen)
    elif isinstance(o, (list, tuple)):
        for i, v in enumerate(o):
            walk(v, path + '/' + str(i) if path else str(i), out, seen)
    elif hasattr(o, '__dict__') and id(o) not in seen:
        seen.add(id(o))
        walk(vars(o), path, out, seen)


def table(name, items, lines, want_stats, done):
    first, by_dtype = {}, {}
    for k, t in items:
        ptr = t.storage().data_ptr()
        alias = first.setdefault(ptr, k)
        d = str(t.dtype).replace('torch.', '')
        agg = by_dtype.setdefault(d, [0, 0, 0])
        agg[0] += 1
        agg[1] += t.numel()
        agg[2] += t.numel() * t.element_size()
        line = '%s  %s  %s  %d  %d  %s' % (k, d, list(t.shape), t.numel(), t.numel() * t.element_size(),
                                           '' if alias == k else '= ' + alias)
        if want_stats:
            vk = view_key(t)
            if vk not in done:
                done[vk] = stats(t)
            line += '  ' + json.dumps(done[vk])
        lines.append(line)
    lines.append('%s: %d tensors on %d storages, %r' % (name, len(items), len(first), by_dtype))


def results_view(res, lines):
    if not (isinstance(res, (list, tuple)) and len(res) >= 2):
        lines.append(repr(res)[:200])
        return
    for label, m in (('Class-IL', res[0]), ('Task-IL', res[1])):
        rows = [[float(x) for x in r] for r in m]
        lines.append(label)
        for t, r in enumerate(rows):
            lines.append('  after task %d: %s  mean %.2f' % (t, ' '.join('%.2f' % x for x in r), sum(r) / len(r)))
        T = len(rows)
        if T > 1 and all(len(rows[t]) == t + 1 for t in range(T)):
            bwt = sum(rows[-1][i] - rows[i][i] for i in range(T - 1)) / (T - 1)
            fgt = sum(max(rows[t][i] for t in range(i, T)) - rows[-1][i] for i in range(T - 1)) / (T - 1)
            lines.append('  BWT %.2f forgetting %.2f' % (bwt, fgt))


def main():
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] != '--stats'):
        sys.exit('usage: info_torch.py FILE [--stats]')
    want_stats = len(sys.argv) == 3
    t1 = time.perf_counter()
    obj = torch.load(sys.argv[1], map_location='cpu')
    lines, done = [], {}
    everything = []
    walk(obj, '', everything, set())
    covered = set()
    mammoth = isinstance(obj, dict) and 'model' in obj and 'args' in obj and 'results' in obj
    if mammoth:
        model = obj['model']
        items = [(k, v) for k, v in model.items() if isinstance(v, torch.Tensor)]
        covered.update(id(v) for _, v in items)
        prefixes = {p: sum(1 for k, _ in items if k.startswith(p)) for p in ('net.', 'module.', '_orig_mod.')}
        lines.append('prefixes %r' % prefixes)
        table('model', items, lines, want_stats, done)
        opt = obj.get('optimizer')
        if isinstance(opt, dict):
            for i, g in enumerate(opt.get('param_groups', [])):
                lines.append('group %d: %s' % (i, {k: v for k, v in g.items() if k != 'params'}))
            per_key = {}
            for st in opt.get('state', {}).values():
                for k, v in st.items():
                    agg = per_key.setdefault(k, [0, 0, 0])
                    if isinstance(v, torch.Tensor):
                        agg[0] += 1
                        agg[1] += v.numel()
                        covered.add(id(v))
                        if want_stats:
                            vk = view_key(v)
                            if vk not in done:
                                done[vk] = stats(v)
                    else:
                        agg[2] += 1
            lines.append('optimizer state %r' % per_key)
        lines.append('scheduler %r' % (obj.get('scheduler'),))
        args = obj['args'] if isinstance(obj['args'], dict) else vars(obj['args'])
        for k, v in args.items():
            lines.append('%s = %r' % (k, v))
        results_view(obj['results'], lines)
        buf = obj.get('buffer')
        if buf is not None:
            tensors = buf if isinstance(buf, dict) else vars(buf)
            items = [(k, v) for k, v in tensors.items() if isinstance(v, torch.Tensor)]
            covered.update(id(v) for _, v in items)
            table('buffer', items, lines, want_stats, done)
            for k in ('labels', 'task_labels', 'true_labels'):
                if k in tensors:
                    lines.append('%s histogram %r' % (k, torch.bincount(tensors[k]).tolist()))
    rest = [(p, t) for p, t in everything if id(t) not in covered]
    table('other tensors', rest, lines, want_stats, done)
    sys.stdout.write('\n'.join(lines) + '\n')
    dt = time.perf_counter() - t1
    views = {view_key(t): t for _, t in everything}
    summary = {'tensors': len(everything), 'views': len(views), 'numel': sum(t.numel() for t in views.values()),
               'nan': sum(s['nan'] for s in done.values()), 'zeros': sum(s['zeros'] for s in done.values()),
               'seconds': dt, 'import_seconds': IMPORT_SECONDS}
    print(json.dumps(summary))


if __name__ == '__main__':
    main()
