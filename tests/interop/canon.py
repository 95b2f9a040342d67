"""Canonical JSON of a loaded PyTorch checkpoint (the Python half of ckpt_canon).

Both sides turn a value tree into the same JSON so that an interop test is a
plain JSON equality:

  None -> null                 bool -> true/false
  int -> {"int": "<decimal>"}  float -> {"float": "<16 hex digits, IEEE-754 bits>"}
  complex -> {"complex": [bits_re, bits_im]}
  str -> "..."                 bytes/bytearray -> {"bytes": "<hex>"}
  list -> {"list": [...]}      tuple -> {"tuple": [...]}   torch.Size -> {"size": [ints]}
  dict -> {"dict": [[k, v], ...], "type": "dict|OrderedDict|Counter|defaultdict"
           [, "metadata": <OrderedDict _metadata attribute>]}
  set/frozenset -> {"set": [...]} sorted by the JSON text of each element
  argparse.Namespace -> {"namespace": [[k, v], ...]} sorted by key
  tensor -> {"tensor": {dtype, shape, stride, offset, storage, storage_nbytes,
                        crc32, nbytes, requires_grad[, parameter]}}
  storage -> {"storage": {"dtype", "index", "nbytes", "crc32"}}
  numpy array -> {"ndarray": {"dtype": "<f4", "shape": [..], "crc32": ..}}
                 (object arrays: "items" instead of "crc32")
  numpy scalar -> {"npscalar": {"dtype": "<f8", "hex": ".."}}
  numpy dtype -> {"npdtype": "<f8"}
  torch.device -> {"device": "cuda:0"}   torch.dtype -> {"dtype": "float32"}
  a class or function -> {"global": "module.qualname"}
  anything else -> {"object": "module.qualname"}

"storage" in a tensor is the index of the first appearance of that storage in
a depth-first walk (dict: key then value per item, then metadata; namespace:
sorted by key), so aliasing is part of the comparison.
"""
import argparse
import collections
import json
import struct
import types
import zlib

import numpy as np
import torch


def dumps(j):
    """The JSON text used for sorting (matches nlohmann::json::dump())."""
    return json.dumps(j, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def float_bits(x):
    return struct.pack(">d", float(x)).hex()


def dtype_name(dt):
    return str(dt).replace("torch.", "")


def _storage_identity(t):
    if hasattr(t, "untyped_storage"):  # torch >= 2.0
        return t.untyped_storage()._cdata
    st = t.storage()
    inner = getattr(st, "_storage", st)  # 1.13: TypedStorage wraps UntypedStorage
    return inner._cdata


def _storage_nbytes(t):
    if hasattr(t, "untyped_storage"):
        return t.untyped_storage().nbytes()
    return t.storage().nbytes()


def tensor_bytes(t):
    """Row-major little-endian bytes of the tensor's logical values."""
    t = t.detach()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    if t.dtype == torch.complex32:
        return t.view(torch.int32).numpy().tobytes()
    return t.numpy().tobytes()


def crc_hex(b):
    return "%08x" % (zlib.crc32(b) & 0xFFFFFFFF)


_DICT_TYPES = {
    dict: "dict",
    collections.OrderedDict: "OrderedDict",
    collections.Counter: "Counter",
    collections.defaultdict: "defaultdict",
}


class Canon:
    def __init__(self):
        self.storages = {}

    def storage_index(self, ident):
        if ident not in self.storages:
            self.storages[ident] = len(self.storages)
        return self.storages[ident]

    def tensor(self, t):
        data = tensor_bytes(t)
        d = {
            "dtype": dtype_name(t.dtype),
            "shape": list(t.shape),
            "stride": list(t.stride()),
            "offset": int(t.storage_offset()),
            "storage": self.storage_index(_storage_identity(t)),
            "storage_nbytes": int(_storage_nbytes(t)),
            "crc32": crc_hex(data),
            "nbytes": len(data),
            "requires_grad": bool(t.requires_grad),
        }
        if isinstance(t, torch.nn.Parameter):
            d["parameter"] = True
        return {"tensor": d}

    def storage(self, s):
        if isinstance(s, torch.storage.TypedStorage):
            dt = s.dtype
            inner = getattr(s, "_storage", s)
        else:
            dt = torch.uint8
            inner = s
        t = torch.tensor([], dtype=dt).set_(s if isinstance(s, torch.storage.TypedStorage)
                                           else torch.storage.TypedStorage(wrap_storage=s, dtype=dt))
        data = tensor_bytes(t)
        return {"storage": {"dtype": dtype_name(dt), "index": self.storage_index(inner._cdata),
                            "nbytes": int(inner.nbytes()), "crc32": crc_hex(data)}}

    def ndarray(self, a):
        # Byte order is normalised to little-endian on both sides (numpy 1.24
        # itself returns '>i4' pickles as '<i4' arrays).
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        d = {"dtype": a.dtype.str, "shape": list(a.shape)}
        if a.dtype.hasobject:
            d["items"] = [self(x) for x in a.flatten(order="C").tolist()]
        else:
            d["crc32"] = crc_hex(np.ascontiguousarray(a).tobytes())
        return {"ndarray": d}

    def __call__(self, x):
        if x is None:
            return None
        if isinstance(x, bool) and type(x) is bool:
            return x
        if isinstance(x, torch.Tensor):
            return self.tensor(x)
        if isinstance(x, np.ndarray):
            return self.ndarray(x)
        if isinstance(x, np.generic):
            if x.dtype.byteorder == ">":
                x = x.astype(x.dtype.newbyteorder("<"))
            return {"npscalar": {"dtype": x.dtype.str, "hex": x.tobytes().hex()}}
        t = type(x)
        if t is int:
            return {"int": str(x)}
        if t is float:
            return {"float": float_bits(x)}
        if t is complex:
            return {"complex": [float_bits(x.real), float_bits(x.imag)]}
        if isinstance(x, str):
            return str(x)
        if t is bytes or t is bytearray:
            return {"bytes": bytes(x).hex()}
        if t is torch.Size:
            return {"size": [int(v) for v in x]}
        if t is tuple:
            return {"tuple": [self(v) for v in x]}
        if t is list:
            return {"list": [self(v) for v in x]}
        if t in _DICT_TYPES:
            items = [[self(k), self(v)] for k, v in x.items()]
            d = {"dict": items, "type": _DICT_TYPES[t]}
            attrs = getattr(x, "__dict__", None) or {}
            if "_metadata" in attrs:
                d["metadata"] = self(attrs["_metadata"])
            return d
        if t is set or t is frozenset:
            elems = [self(v) for v in x]
            return {"set": sorted(elems, key=dumps)}
        if t is argparse.Namespace:
            return {"namespace": [[k, self(v)] for k, v in sorted(vars(x).items())]}
        if t is torch.device:
            return {"device": str(x)}
        if t is torch.dtype:
            return {"dtype": dtype_name(x)}
        if isinstance(x, np.dtype):
            return {"npdtype": x.str}
        if isinstance(x, (torch.storage.TypedStorage, torch.storage.UntypedStorage)):
            return self.storage(x)
        if isinstance(x, (type, types.FunctionType, types.BuiltinFunctionType)):
            return {"global": "%s.%s" % (x.__module__, x.__qualname__)}
        return {"object": "%s.%s" % (t.__module__, t.__qualname__)}


def canon(obj):
    return Canon()(obj)


def tensor_stats(obj):
    """(tensors, distinct storages) reachable the way Canon walks."""
    c = Canon()
    n = [0]

    def walk(j):
        if isinstance(j, dict):
            if "tensor" in j and isinstance(j["tensor"], dict) and "storage" in j["tensor"]:
                n[0] += 1
                return
            for v in j.values():
                walk(v)
        elif isinstance(j, list):
            for v in j:
                walk(v)

    walk(c(obj))
    return n[0], len(c.storages)


def first_difference(a, b, path="$"):
    """A readable description of where two canonical JSON values differ."""
    if type(a) is not type(b):
        return "%s: %s vs %s" % (path, _short(a), _short(b))
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return "%s: key %r only on %s side" % (path, k, "right" if k not in a else "left")
            d = first_difference(a[k], b[k], "%s.%s" % (path, k))
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return "%s: length %d vs %d (%s vs %s)" % (path, len(a), len(b), _short(a), _short(b))
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    if a != b:
        return "%s: %s vs %s" % (path, _short(a), _short(b))
    return None


def _short(x, n=160):
    s = dumps(x)
    return s if len(s) <= n else s[:n] + "..."


if __name__ == "__main__":
    # Debug helper; weights_only so that it can never run a pickle's code.
    import sys
    for p in sys.argv[1:]:
        print(dumps(canon(torch.load(p, map_location="cpu", weights_only=True))))
