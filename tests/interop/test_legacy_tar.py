#!/usr/bin/env python3
"""The torch <= 0.1.9 TAR layout, read by libckpt and by torch.load.

No real TAR checkpoint survives on GitHub (the corpus has only burn's
synthetic ones, which torch itself cannot load), so this test writes files in
exactly the layout torch.serialization.legacy_load reads -- sys_info,
storages (+ storage_views), tensors, pickle -- checks that torch 1.13 loads
them, and requires ckpt_canon to give the same canonical tree.
Usage: test_legacy_tar.py CKPT_CANON"""
import io
import os
import pickle
import struct
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.require_torch()
import torch  # noqa: E402

import canon  # noqa: E402

exe = common.canon_exe()


class Ref:
    """A placeholder the object pickle refers to by persistent id."""

    def __init__(self, key):
        self.key = key


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return str(obj.key) if isinstance(obj, Ref) else None


def p(obj):
    return pickle.dumps(obj, protocol=2)


def make_tar(path, storages, views, tensors, obj):
    """storages: [(key, storage_type, bytes)]; views: [(target, root, offset, numel)];
    tensors: [(key, storage_key, tensor_type, sizes, strides, offset)]."""
    members = {}
    members["sys_info"] = p(dict(protocol_version=1000, little_endian=True,
                                 type_sizes=dict(short=2, int=4, long=8)))
    s = io.BytesIO()
    s.write(p(len(storages)))
    for key, stype, raw in storages:
        s.write(p((key, "cpu", stype)))
        esize = torch._utils._element_size(stype.dtype)
        s.write(struct.pack("<q", len(raw) // esize))
        s.write(raw)
    s.write(p(views))
    members["storages"] = s.getvalue()
    t = io.BytesIO()
    t.write(p(len(tensors)))
    for key, skey, ttype, sizes, strides, off in tensors:
        t.write(p((key, skey, ttype)))
        t.write(struct.pack("<i", len(sizes)) + b"\0\0\0\0")
        t.write(struct.pack("<%dq" % len(sizes), *sizes))
        t.write(struct.pack("<%dq" % len(strides), *strides))
        t.write(struct.pack("<q", off))
    members["tensors"] = t.getvalue()
    o = io.BytesIO()
    Pickler(o, protocol=2).dump(obj)
    members["pickle"] = o.getvalue()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("sys_info", "storages", "tensors", "pickle"):
            data = members[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


cases = []
f32 = torch.arange(12, dtype=torch.float32).numpy().tobytes()
i64 = torch.tensor([7, -1, 2**40], dtype=torch.int64).numpy().tobytes()
cases.append(("state dict with a view and a transposed tensor",
              [(1, torch.FloatStorage, f32), (2, torch.LongStorage, i64)],
              [(3, 1, 4, 6)],  # storage 3 = elements 4..9 of storage 1
              [(10, 1, torch.FloatTensor, (3, 4), (4, 1), 0),
               (11, 1, torch.FloatTensor, (4, 3), (1, 4), 0),
               (12, 3, torch.FloatTensor, (2, 3), (3, 1), 0),
               (13, 2, torch.LongTensor, (3,), (1,), 0),
               (14, 1, torch.FloatTensor, (2,), (2,), 5)],
              {"weight": Ref(10), "weight_t": Ref(11), "view": Ref(12), "ids": Ref(13), "strided": Ref(14),
               "epoch": 3, "name": "legacy"}))
cases.append(("a bare tensor", [(5, torch.DoubleStorage, torch.tensor([1.0, 2.5]).double().numpy().tobytes())],
              [], [(6, 5, torch.DoubleTensor, (2,), (1,), 0)], Ref(6)))

passed = failed = 0
with tempfile.TemporaryDirectory() as d:
    for i, (name, st, views, ts, obj) in enumerate(cases):
        path = os.path.join(d, "legacy%d.tar" % i)
        make_tar(path, st, views, ts, obj)
        truth = canon.canon(torch.load(path))
        r = common.run([exe, "dump", path])
        ok = r.rc == 0 and r.json() == truth
        if not ok:
            print("FAIL %s: rc=%d %s" % (name, r.rc, (r.out or r.err)[:400]))
            if r.rc == 0:
                print("     first difference:", canon.first_difference(truth, r.json()))
        else:
            print("ok   %s" % name)
        passed += ok
        failed += not ok
    # A TAR missing its storages member is refused with a typed error.
    path = os.path.join(d, "broken.tar")
    with tarfile.open(path, "w") as tar:
        for name in ("sys_info", "tensors", "pickle"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"."))
    r = common.run([exe, "dump", path])
    err = r.error()
    ok = err is not None and err["name"] == "missing_record"
    print(("ok   " if ok else "FAIL ") + "TAR without a storages member -> missing_record")
    passed += ok
    failed += not ok
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
