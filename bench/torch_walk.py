#!/usr/bin/python3
"""Reference for `bench_core walk`: torch.load(map_location='cpu') + walk every tensor.

    /usr/bin/python3 bench/torch_walk.py FILE

Prints one line of JSON: {"tensors":N,"numel":..,"seconds":..,"import_seconds":..,"dtypes":{..}}
`seconds` covers torch.load + the walk (not `import torch`, reported separately).
The walk recurses over dict/list/tuple values (dict keys are not tensors in a
checkpoint) and visits a container each time it is reached, like ckpt's walk.
"""
import json
import sys
import time

t0 = time.perf_counter()
import torch  # noqa: E402
t_import = time.perf_counter() - t0


def walk(o, acc):
    if isinstance(o, torch.Tensor):
        acc['tensors'] += 1
        acc['numel'] += o.numel()
        d = str(o.dtype).replace('torch.', '')
        acc['dtypes'][d] = acc['dtypes'].get(d, 0) + 1
    elif isinstance(o, dict):
        for v in o.values():
            walk(v, acc)
    elif isinstance(o, (list, tuple)):
        for v in o:
            walk(v, acc)


def main():
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] != '--repeat'):
        sys.exit('usage: torch_walk.py FILE [--repeat]')
    repeat = len(sys.argv) == 3
    t1 = time.perf_counter()
    obj = torch.load(sys.argv[1], map_location='cpu')
    acc = {'tensors': 0, 'numel': 0, 'dtypes': {}}
    walk(obj, acc)
    dt = time.perf_counter() - t1
    del obj
    # Warm: the same load+walk repeated in this process, best of 2 (the
    # ckpt side repeats its open+walk the same way).
    warm = float('inf') if repeat else 0.0
    for _ in range(2 if repeat else 0):
        t2 = time.perf_counter()
        obj = torch.load(sys.argv[1], map_location='cpu')
        walk(obj, {'tensors': 0, 'numel': 0, 'dtypes': {}})
        warm = min(warm, time.perf_counter() - t2)
        del obj
    print(json.dumps({'tensors': acc['tensors'], 'numel': acc['numel'], 'seconds': dt, 'warm_seconds': warm,
                      'import_seconds': t_import, 'dtypes': dict(sorted(acc['dtypes'].items()))},
                     separators=(',', ':')))


if __name__ == '__main__':
    main()
