#!/usr/bin/python3
"""Reference for `bench_core save`: torch.load FILE, then time only torch.save to OUT.

    /usr/bin/python3 bench/torch_save.py FILE OUT [--fsync]

Prints one line of JSON: {"seconds":..,"bytes":..,"fsync_seconds":..,"load_seconds":..}
`seconds` is torch.save alone (torch.save does not fsync). With --fsync the
file is then fsync'ed and `fsync_seconds` is the save+fsync time, comparable
with ckpt::save's durable mode (file + folder fsync).
"""
import json
import os
import sys
import time

import torch


def main():
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    do_fsync = '--fsync' in sys.argv[1:]
    if len(args) != 2:
        sys.exit('usage: torch_save.py FILE OUT [--fsync]')
    src, out = args
    t0 = time.perf_counter()
    obj = torch.load(src, map_location='cpu')
    t_load = time.perf_counter() - t0

    t1 = time.perf_counter()
    torch.save(obj, out)
    t_save = time.perf_counter() - t1
    res = {'seconds': t_save, 'bytes': os.path.getsize(out), 'load_seconds': t_load}
    if do_fsync:
        fd = os.open(out, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        dfd = os.open(os.path.dirname(os.path.abspath(out)), os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        res['fsync_seconds'] = time.perf_counter() - t1
    print(json.dumps(res, separators=(',', ':')))


if __name__ == '__main__':
    main()
