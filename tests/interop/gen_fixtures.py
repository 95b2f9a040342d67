#!/usr/bin/python3
"""Writes interop fixtures with real torch.save: gen_fixtures.py OUTDIR.

Every fixture is a (name, builder, save kwargs) entry of FIXTURES; the tests
import this module and call write_all(). Builders are deterministic.
"""
import argparse
import collections
import dataclasses
import enum
import io
import math
import os
import pickle
import struct
import sys
import zipfile

import numpy as np
import torch

LEGACY = {"_use_new_zipfile_serialization": False}
PROTO4 = {"pickle_protocol": 4}
PROTO3 = {"pickle_protocol": 3}

# Every dtype torch 1.13 can torch.save (complex32 has no storage class there).
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16,
          torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
          torch.complex64, torch.complex128]


def _dname(dt):
    return str(dt).replace("torch.", "")


def all_dtypes():
    out = {}
    for dt in DTYPES:
        if dt == torch.bool:
            t = torch.tensor([[True, False, True], [False, False, True]])
        elif dt.is_complex:
            t = torch.complex(torch.tensor([1.5, -0.0, float("inf")]),
                              torch.tensor([-2.25, float("nan"), 3.0])).to(dt)
        elif dt.is_floating_point:
            fi = torch.finfo(dt)
            t = torch.tensor([0.0, -0.0, 1.0, -1.5, fi.max, fi.min, fi.tiny, fi.eps,
                              float("inf"), float("-inf"), float("nan"), 3.140625], dtype=dt)
            t = t.reshape(3, 4)
        else:
            ii = torch.iinfo(dt)
            t = torch.tensor([ii.min, ii.max, 0, 1, ii.max // 3, 7], dtype=dt).reshape(2, 3)
        out[_dname(dt)] = t
    return out


def scalars_and_empty():
    d = {}
    for dt in DTYPES:
        name = _dname(dt)
        v = True if dt == torch.bool else (1 - 2j if dt.is_complex else 5)
        d["scalar_" + name] = torch.tensor(v, dtype=dt)
        d["empty_" + name] = torch.zeros(0, dtype=dt)
    d["empty_3x0"] = torch.zeros(3, 0)
    d["empty_0x4x0"] = torch.zeros(0, 4, 0, dtype=torch.int64)
    d["empty_view_of_data"] = torch.arange(5.0)[2:2]
    return d


def views():
    base = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    return {
        "base": base,
        "transpose": base.transpose(0, 2),
        "permute": base.permute(1, 2, 0),
        "slice_offset": base[1, 1:, 1:3],
        "step": base.reshape(-1)[3::5],
        "expand": torch.arange(4, dtype=torch.float32)[None, :].expand(3, 4),
        "expand_scalar": torch.tensor(7.0).expand(2, 2),
        "diagonal": base[0].diagonal(),
        "narrow_last": base.reshape(-1)[-1:],
        "int_t": torch.arange(6, dtype=torch.int64).reshape(2, 3).t(),
        "unsqueeze": base[0, 0].unsqueeze(1),
        "zero_d_view": base[1, 2, 3],
        "size1_dims": base[:1, 1:2, :],
    }


def shared():
    w = torch.linspace(-1, 1, 12).reshape(3, 4)
    other = torch.arange(10, dtype=torch.int32)
    return {
        "encoder.weight": w,
        "decoder.weight": w,             # the same tensor twice (tied weights)
        "decoder.weight_t": w.t(),        # a view of the same storage
        "row1": w[1],
        "ints_a": other[:5],
        "ints_b": other[5:],
        "list": [w, other, w[2:]],
        "tuple": (other, w),
    }


def nested():
    return {
        "a": {"b": {"c": [1, 2, (3, 4, [5, {"d": torch.ones(2)}])]}},
        "int_keys": {0: "zero", 1: "one", -5: "minus five", 10**20: "big"},
        "tuple_key": {(1, "x"): "tuple key", None: "none key", True: "bool key", 1.5: "float key",
                      b"k": "bytes key", frozenset([1]): "frozenset key"},
        "empty": {"list": [], "tuple": (), "dict": {}, "str": ""},
        "deep": [[[[[[["deep"]]]]]]],
        "t1": (1,), "t2": (1, 2), "t3": (1, 2, 3), "t4": (1, 2, 3, 4),
        "lists": list(range(40)),
        "repeat_str": ["same", "same", "same"],
    }


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3)
        self.bn = torch.nn.BatchNorm2d(3)
        self.fc = torch.nn.Sequential(torch.nn.Linear(12, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
        self.register_buffer("mask", torch.tensor([True, False]))


def _net():
    torch.manual_seed(0)
    return _Net()


def state_dict():
    return _net().state_dict()


def namespace():
    ns = argparse.Namespace(lr=0.03, batch_size=32, model="derpp", nowand=True,
                            seed=None, milestones=[35, 45], alpha=0.1)
    return {"args": ns, "empty_ns": argparse.Namespace()}


def numpy_values():
    return {
        "f4": np.arange(6, dtype=np.float32).reshape(2, 3),
        "f8_fortran": np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
        "i8": np.array([-(2**63), 2**63 - 1, 0], dtype=np.int64),
        "u1": np.array([0, 255, 7], dtype=np.uint8),
        "b1": np.array([True, False]),
        "f2": np.array([1.5, -2.0], dtype=np.float16),
        "c16": np.array([1 + 2j], dtype=np.complex128),
        "zero_d": np.array(3.5),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "be": np.array([1, 2], dtype=">i4"),
        "scalar_f8": np.float64(0.001),
        "scalar_i8": np.int64(-7),
        "scalar_f4": np.float32(1.25),
        "scalar_bool": np.bool_(True),
        "dtype": np.dtype("float32"),
    }


def python_values():
    dd = collections.defaultdict(list)
    dd["x"].append(1)
    od = collections.OrderedDict([("z", 1), ("a", 2)])
    return {
        "floats": [0.1, -0.0, 0.0, 1e308, -1e-308, 5e-324, math.inf, -math.inf, math.nan, 1.0 / 3,
                   struct.unpack(">d", bytes.fromhex("fff8000000000001"))[0],   # -nan with payload
                   struct.unpack(">d", bytes.fromhex("7ff0000000000123"))[0]],  # signalling nan
        "ints": [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), 2**31, 2**63 - 1,
                 -(2**63), 2**63, -(2**63) - 1, 2**64, 2**70, -(2**70), 10**40, -(10**40)],
        "bytes": [b"", b"\x00\xff\x80abc", bytes(range(256))],
        "bytearray": bytearray(b"\x01\x02"),
        "strs": ["", "ascii", "h\u00e9llo \u2713", "\U0001f600 emoji", "quote\"back\\slash\nnl\t\x01"],
        "complex": [complex(1, -2), complex(0.0, -0.0)],
        "bools": [True, False, None],
        "set": {3, 1, 2},
        "frozenset": frozenset(["b", "a"]),
        "counter": collections.Counter({"x": 3, "y": 1}),
        "defaultdict": dd,
        "plain_ordereddict": od,
        "size": torch.Size([2, 3, 0]),
        "empty_size": torch.Size([]),
        "device_cuda": torch.device("cuda", 0),
        "device_cpu": torch.device("cpu"),
        "dtypes": [torch.float16, torch.bfloat16, torch.int64, torch.bool, torch.complex64],
        "version_str": torch.__version__ if isinstance(torch.__version__, str) else str(torch.__version__),
    }


def parameters():
    torch.manual_seed(1)
    p = torch.nn.Parameter(torch.randn(3, 2))
    q = torch.nn.Parameter(torch.randn(2), requires_grad=False)
    g = torch.randn(2, 2).requires_grad_(True)
    return {"param": p, "frozen": q, "leaf_requires_grad": g, "plain": torch.ones(1)}


def mammoth():
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(5, 4)
    loss = net(x).pow(2).mean()
    loss.backward()
    opt.step()
    args = argparse.Namespace(model="er", dataset="seq-cifar10", lr=0.1, buffer_size=200,
                              n_epochs=1, seed=None, nowand=1, non_verbose=False,
                              conf_jobnum="4f1e", milestones=[35, 45])
    buf_x = torch.randn(6, 4)
    return {
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": None,
        "args": args,
        "results": [[[91.25, 80.5], [70.0]], [[55.125]]],
        "buffer": {"examples": buf_x, "labels": torch.tensor([0, 1, 2, 3, 4, 5]),
                   "logits": buf_x[:, :2], "task_labels": torch.zeros(6, dtype=torch.int64),
                   "num_seen_examples": 1234},
    }


def big_memo():
    # More than 256 memo entries: LONG_BINPUT / LONG_BINGET.
    return collections.OrderedDict(("layer%03d.weight" % i, torch.full((2,), float(i))) for i in range(300))


def large_tensor():
    torch.manual_seed(3)
    return {"w": torch.randn(512, 512), "h": torch.randn(300, 7).half()}


def full_model():
    torch.manual_seed(4)
    return torch.nn.Linear(3, 2)


def bare_tensor():
    return torch.arange(10, dtype=torch.int16)[2:8:2]


def bare_list():
    return [torch.ones(2), 1, "two", 3.0]


def storage_object():
    return {"storage": torch.arange(4, dtype=torch.float32).storage()}


Point = collections.namedtuple("Point", ["x", "y"])


class Color(enum.Enum):
    RED = 1
    GREEN = 2


@dataclasses.dataclass
class Config:
    name: str = "cfg"
    depth: int = 3


def objects():
    # Classes from this module: opaque objects for libckpt, real ones for torch.
    return {"point": Point(1, 2.5), "config": Config(), "after": torch.ones(3)}


def enum_value():
    # Python >= 3.11 pickles an Enum member as REDUCE(builtins.getattr, (cls, name)).
    return {"color": Color.GREEN}


def tensor_state():
    # Tensors with Python attributes: _rebuild_from_type_v2 / _rebuild_parameter_with_state.
    t = torch.arange(4, dtype=torch.float32)
    t.tag = "with-dict"
    p = torch.nn.Parameter(torch.ones(2, 2))
    p.note = "param-with-state"
    return {"tensor_with_attr": t, "param_with_attr": p, "plain": torch.zeros(1)}


def shared_containers():
    inner = {"lr": 0.5, "w": torch.ones(2)}
    lst = [1, 2, inner]
    deep = "leaf"
    for _ in range(300):
        deep = [deep]
    return {"a": inner, "b": inner, "lists": [lst, lst], "deep": deep,
            "long_str": "x" * 70000, "long_bytes": b"\x01" * 70000}


def many_items():
    # More than 1000 items: pickle splits SETITEMS / APPENDS / ADDITEMS into batches.
    return {"dict": {i: i * i for i in range(2500)}, "list": list(range(2500)),
            "set": set(range(2500)), "tensors": [torch.tensor(i) for i in range(1100)]}


# ---- fixtures crafted byte by byte (things torch 1.13 reads but cannot write)

class _FakeStorage:
    def __init__(self, pid):
        self.pid = pid


class _FakeTensor:
    def __init__(self, st, off, size, stride):
        self.args = (st, off, size, stride)

    def __reduce__(self):
        st, off, size, stride = self.args
        return (torch._utils._rebuild_tensor_v2, (st, off, size, stride, False, collections.OrderedDict()))


class _PidPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _FakeStorage) else None


def write_legacy_storage_views(path, outdir):
    """Pre-0.4 legacy stream whose pids carry view_metadata (view_key, offset, size)."""
    def pid(view):
        return ("storage", torch.FloatStorage, "94279043900432", "cpu", 6, view)
    root = _FakeStorage(pid(None))
    v1 = _FakeStorage(pid(("94279043900500", 1, 3)))
    v2 = _FakeStorage(pid(("94279043900600", 4, 2)))
    obj = {"view_a": _FakeTensor(v1, 0, (3,), (1,)), "view_b": _FakeTensor(v1, 1, (2,), (1,)),
           "root": _FakeTensor(root, 0, (2, 3), (3, 1)), "view_c": _FakeTensor(v2, 0, (2,), (1,))}
    f = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
    pickle.dump(1001, f, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True,
                 "type_sizes": {"short": 2, "int": 4, "long": 8}}, f, protocol=2)
    _PidPickler(f, protocol=2).dump(obj)
    pickle.dump(["94279043900432"], f, protocol=2)
    f.write(struct.pack("<q", 6))
    f.write(struct.pack("<6f", 0.0, 1.0, 2.0, 3.0, 4.0, 5.0))
    with open(path, "wb") as out:
        out.write(f.getvalue())


_STORAGE_UNIT = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
                 "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
                 "ByteStorage": 1, "BoolStorage": 1, "ComplexFloatStorage": 4,
                 "ComplexDoubleStorage": 8}


def _storage_units(pkl):
    """{record key: byte-swap unit}, read statically from a torch data.pkl."""
    import pickletools
    ops = list(pickletools.genops(pkl))
    units = {}
    for k, (op, arg, _) in enumerate(ops):
        if op.name == "GLOBAL" and arg.startswith("torch ") and arg.split()[1] in _STORAGE_UNIT:
            key = next(a for o, a, _ in ops[k + 1:k + 6] if o.name in ("BINUNICODE", "SHORT_BINUNICODE"))
            units[key] = _STORAGE_UNIT[arg.split()[1]]
    return units


def write_deflated(path, outdir):
    """dtypes.pt re-zipped by Python's zipfile: DEFLATE, unaligned (like TorchSharp)."""
    with zipfile.ZipFile(os.path.join(outdir, "dtypes.pt")) as zin, \
            zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename.replace("dtypes/", "deflated/", 1), zin.read(info))


def write_big_endian(path, outdir):
    """dtypes.pt with every storage byte-swapped and a byteorder record saying "big"."""
    with zipfile.ZipFile(os.path.join(outdir, "dtypes.pt")) as zin, zipfile.ZipFile(path, "w") as zout:
        units = _storage_units(zin.read("dtypes/data.pkl"))
        for info in zin.infolist():
            rel = info.filename.split("/", 1)[1]
            data = zin.read(info)
            if rel.startswith("data/"):
                u = units[rel[len("data/"):]]
                data = b"".join(data[i:i + u][::-1] for i in range(0, len(data), u))
            zout.writestr("big_endian/" + rel, data)
            if rel == "data.pkl":
                zout.writestr("big_endian/byteorder", b"big")


# name -> (writer(path, outdir), fixture whose torch.load is the truth, or None for itself).
# torch 1.13 ignores the byteorder record, so the big-endian file is judged
# against the little-endian original.
CRAFTED = [
    ("legacy_storage_views.pt", write_legacy_storage_views, None),
    ("deflated.pt", write_deflated, None),
    ("big_endian.pt", write_big_endian, "dtypes.pt"),
]


def truth_source(name):
    """The fixture whose torch.load gives the expected values of `name`."""
    for n, _, src in CRAFTED:
        if n == name and src:
            return src
    return name


# name -> (builder, torch.save kwargs, to a buffer instead of a path)
FIXTURES = [
    ("dtypes.pt", all_dtypes, {}, False),
    ("scalars_empty.pt", scalars_and_empty, {}, False),
    ("views.pt", views, {}, False),
    ("shared.pt", shared, {}, False),
    ("nested.pt", nested, {}, False),
    ("state_dict.pt", state_dict, {}, False),
    ("namespace.pt", namespace, {}, False),
    ("numpy.pt", numpy_values, {}, False),
    ("pyvalues.pt", python_values, {}, False),
    ("parameters.pt", parameters, {}, False),
    ("mammoth.pt", mammoth, {}, False),
    ("big_memo.pt", big_memo, {}, False),
    ("large.pt", large_tensor, {}, False),
    ("full_model.pt", full_model, {}, False),
    ("bare_tensor.pt", bare_tensor, {}, False),
    ("bare_list.pt", bare_list, {}, False),
    ("storage.pt", storage_object, {}, False),
    ("buffer_saved.pt", mammoth, {}, True),
    ("objects.pt", objects, {}, False),
    ("tensor_state.pt", tensor_state, {}, False),
    ("enum.pt", enum_value, {}, False),
    ("many_items.pt", many_items, {}, False),
    ("shared_containers.pt", shared_containers, {}, False),
]

# Plain fixtures saved again with other torch.save kwargs, as PREFIX + name.
_BUILDER = {name: builder for name, builder, _, _ in FIXTURES}
VARIANTS = [
    ("legacy_", LEGACY, ["dtypes.pt", "scalars_empty.pt", "views.pt", "shared.pt", "state_dict.pt", "mammoth.pt",
                         "pyvalues.pt", "numpy.pt", "big_memo.pt", "tensor_state.pt"]),
    ("proto4_", PROTO4, ["dtypes.pt", "views.pt", "shared.pt", "pyvalues.pt", "nested.pt", "numpy.pt", "mammoth.pt",
                         "big_memo.pt", "many_items.pt", "shared_containers.pt"]),
    ("proto3_", PROTO3, ["pyvalues.pt"]),
    ("proto5_", {"pickle_protocol": 5}, ["pyvalues.pt"]),
    ("proto1_", {"pickle_protocol": 1}, ["shared.pt", "pyvalues.pt"]),
]
FIXTURES += [(prefix + name, _BUILDER[name], kwargs, False)
             for prefix, kwargs, names in VARIANTS for name in names]
FIXTURES.append(("legacy_proto4.pt", shared, dict(LEGACY, **PROTO4), False))

# Fixtures whose values hold objects libckpt keeps opaque (a whole nn.Module):
# ckpt_canon must describe them, but a resave cannot reproduce the object.
OPAQUE = {"full_model.pt", "objects.pt"}

# Fixtures libckpt must refuse with this typed error (ckpt_canon exit 2).
EXPECT_ERROR = {}
if sys.version_info >= (3, 11):
    # builtins.getattr is on libckpt's deny list (and not on torch's weights_only list).
    EXPECT_ERROR["enum.pt"] = "unsafe_global"


def write_all(outdir):
    os.makedirs(outdir, exist_ok=True)
    names = []
    for name, builder, kwargs, to_buffer in FIXTURES:
        path = os.path.join(outdir, name)
        obj = builder()
        if to_buffer:
            buf = io.BytesIO()
            torch.save(obj, buf, **kwargs)
            with open(path, "wb") as f:
                f.write(buf.getvalue())
        else:
            torch.save(obj, path, **kwargs)
        names.append(name)
    for name, writer, _ in CRAFTED:
        writer(os.path.join(outdir, name), outdir)
        names.append(name)
    return names


def main():
    if len(sys.argv) != 2:
        print("usage: gen_fixtures.py OUTDIR", file=sys.stderr)
        return 2
    for n in write_all(sys.argv[1]):
        print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
