#!/usr/bin/python3
"""torch.save -> ckpt_canon resave -> torch.load: nothing changes.

usage: test_roundtrip.py PATH/TO/ckpt_canon

For every gen_fixtures fixture (zip, legacy and protocol-4 ones alike) the
resaved file must have torch's zip layout, load in torch, and give the same
canonical JSON as the original: tensors bit-identical (also compared byte for
byte), the same dtypes, shapes, strides, offsets, storage sizes and sharing,
and equal non-tensor values.
"""
import os
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.require_torch()
import torch  # noqa: E402

import canon  # noqa: E402
import gen_fixtures  # noqa: E402


class Collect(canon.Canon):
    """canon.Canon that also keeps every tensor's bytes and storage pointer, in walk order."""

    def __init__(self):
        super().__init__()
        self.blobs = []
        self.ptrs = []

    def tensor(self, t):
        self.blobs.append(canon.tensor_bytes(t))
        self.ptrs.append(t.storage().data_ptr())
        return super().tensor(t)


def deep_state(x):
    """Opaque objects by their data: nn.Module -> state_dict, namedtuple/dataclass -> fields."""
    import dataclasses
    if isinstance(x, torch.nn.Module):
        return {"__module__": type(x).__qualname__, "state": x.state_dict()}
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {"__dataclass__": type(x).__qualname__, "fields": deep_state(dataclasses.asdict(x))}
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return {"__namedtuple__": type(x).__qualname__, "fields": [deep_state(v) for v in x]}
    if type(x) is dict:
        return {k: deep_state(v) for k, v in x.items()}
    if type(x) is list:
        return [deep_state(v) for v in x]
    return x


def _wo_loads(path):
    try:
        torch.load(path, map_location="cpu", weights_only=True)
        return True
    except Exception:
        return False


def sharing(ptrs):
    """Partition of tensor positions by storage pointer (ignoring empty storages)."""
    groups = {}
    for i, p in enumerate(ptrs):
        if p:
            groups.setdefault(p, []).append(i)
    return sorted(v for v in groups.values())


def main():
    exe = common.canon_exe()
    rep = common.Report("roundtrip")
    tmp = tempfile.mkdtemp(prefix="ckpt_roundtrip_")
    try:
        src_dir = os.path.join(tmp, "src")
        out_dir = os.path.join(tmp, "out")
        os.makedirs(out_dir)
        names = gen_fixtures.write_all(src_dir)
        for name in names:
            src = os.path.join(src_dir, name)
            out = os.path.join(out_dir, name)
            orig = torch.load(os.path.join(src_dir, gen_fixtures.truth_source(name)),
                              map_location="cpu", weights_only=False)
            r = common.run([exe, "resave", src, out], timeout=120)
            if name in gen_fixtures.EXPECT_ERROR:
                err = r.error()
                want = gen_fixtures.EXPECT_ERROR[name]
                rep.check(err is not None and err.get("name") == want, name,
                          "expected typed error %s, got %s" % (want, r.describe()))
                continue
            if name in gen_fixtures.OPAQUE and r.error() is not None:
                rep.ok(name, "opaque objects refused with a typed error (%s)" % r.error()["name"])
                continue
            if r.rc != 0:
                rep.fail(name, "ckpt_canon resave failed: " + r.describe())
                continue
            problems = common.zip_layout_problems(out, expect_root=os.path.splitext(name)[0])
            if problems:
                rep.fail(name + " layout", "; ".join(problems))
                continue
            try:
                again = torch.load(out, map_location="cpu", weights_only=False)
            except Exception as e:
                rep.fail(name, "torch.load of the resaved file: %r" % e)
                continue
            a, b = Collect(), Collect()
            ja, jb = a(orig), b(again)
            diff = canon.first_difference(jb, ja)
            if diff is not None:
                rep.fail(name, "resaved vs original differ at " + diff)
                continue
            if a.blobs != b.blobs:
                bad = [i for i, (x, y) in enumerate(zip(a.blobs, b.blobs)) if x != y]
                rep.fail(name, "tensor bytes differ at tensors %s" % bad[:10])
                continue
            if sharing(a.ptrs) != sharing(b.ptrs):
                rep.fail(name, "storage sharing differs: %s vs %s" % (sharing(a.ptrs), sharing(b.ptrs)))
                continue
            # What torch's weights_only accepted before, it must accept after the resave.
            wo_src = _wo_loads(src)
            if wo_src and not _wo_loads(out):
                rep.fail(name, "torch.load(weights_only=True) accepts the original but not the resaved file")
                continue
            if name in gen_fixtures.OPAQUE:
                diff = canon.first_difference(canon.canon(deep_state(again)), canon.canon(deep_state(orig)))
                if diff is not None:
                    rep.fail(name, "opaque objects changed: " + diff)
                    continue
            rep.ok(name, "%d tensors, %d storages" % (len(a.blobs), len(a.storages)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rep.finish()


if __name__ == "__main__":
    main()
