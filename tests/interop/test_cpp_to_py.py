#!/usr/bin/python3
"""ckpt_canon build -> real torch.load, and the zip layout torch.save writes.

usage: test_cpp_to_py.py PATH/TO/ckpt_canon

For each build variant:
  * the zip layout matches torch >= 2.7's writer (record order, 64-byte aligned
    STORED payloads, flags 0x808, ZIP64 end record, version "3\\n", ...);
  * data.pkl, read with pickletools only, uses only opcodes and globals that
    torch 2.x's weights_only unpickler allows;
  * torch.load(weights_only=True) succeeds when the pickle holds no Python
    float (torch 1.13 lacks BINFLOAT there); otherwise, after the static
    check passed, torch.load(weights_only=False);
  * canon(loaded) equals canon(expected object), and ckpt_canon dump of the
    same file equals it too.
"""
import collections
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

TORCH_VERSION = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
          torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64, torch.complex128]


def expected(variant):
    """The object ckpt_canon build writes (see build() in tests/tools/ckpt_canon.cpp)."""
    w = (torch.arange(12, dtype=torch.float32) * 0.5 - 1.0).reshape(4, 3)
    model = collections.OrderedDict()
    model["backbone.weight"] = w
    model["head.weight"] = w
    model["backbone.weight_t"] = w.t()
    model["backbone.col1"] = w[:2, 1]
    model["backbone.bias"] = torch.tensor([0.25, -0.5, 1.0, 2.0])
    model["bn.num_batches_tracked"] = torch.tensor(7)
    model["param"] = torch.nn.Parameter(torch.tensor([1.5, -2.5]))
    model._metadata = collections.OrderedDict((k, {"version": 1}) for k in ["", "backbone", "head", "bn"])
    dtypes = {}
    for dt in DTYPES:
        if dt == torch.bool:
            t = torch.tensor([True, False, True, True])
        elif dt.is_complex:
            t = torch.complex(torch.tensor([0.0, 1, 2, 3]), torch.tensor([-0.0, -1, -2, -3])).to(dt)
        else:
            t = torch.arange(4).to(dt)
        dtypes[str(dt).replace("torch.", "")] = t.reshape(2, 2)
    root = {
        "model": model,
        "dtypes": dtypes,
        "zero_d": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "empty_i64": torch.zeros(0, dtype=torch.int64),
        "views": {
            "partial": torch.arange(10.0).as_strided((2, 2), (1, 2), 3),
            "empty_offset": None,
            "requires_grad": torch.tensor([0.5, -0.25], dtype=torch.float64).requires_grad_(True),
        },
        "misc": {
            "name": "libckpt", "epoch": 42, "negative": -5,
            "int64_max": 2**63 - 1, "int64_min": -(2**63),
            "big": 2**70, "neg_big": -(2**70),
            "flag": True, "off": False, "nothing": None,
            "list": [1, "two", None], "tuple": (1, ("nested",)),
            "unicode": "h\u00e9llo \u2713", "int_keys": {0: "zero", 1: "one"},
        },
    }
    root["views"]["empty_offset"] = root["views"]["partial"].as_strided((0,), (1,), 5)
    if variant == "mammoth":
        root["optimizer"] = {
            "state": {0: {"momentum_buffer": torch.full((4, 3), 0.125)},
                      1: {"momentum_buffer": torch.tensor([1.0, 2, 3, 4])}},
            "param_groups": [{"lr": 0.1, "momentum": 0.9, "dampening": 0, "weight_decay": 1e-4,
                              "nesterov": False, "maximize": False, "foreach": None,
                              "params": [0, 1]}],
        }
        root["scheduler"] = None
        root["args"] = {"model": "derpp", "lr": 0.03, "batch_size": 32, "alpha": 0.1,
                        "nowand": True, "seed": None, "milestones": [35, 45]}
        root["results"] = [[91.25, 80.5], [70.0], []]
        root["extra"] = {
            "neg_zero": -0.0, "tiny": 5e-324, "third": 1.0 / 3.0, "complex": complex(1.5, -2.0),
            "bytes": b"\x00\xffab", "size": torch.Size([2, 3]), "device": torch.device("cuda:0"),
            "dtype": torch.float16, "set": {3, 1}, "counter": collections.Counter({"a": 2}),
        }
    return root


def check_variant(rep, exe, tmp, variant):
    path = os.path.join(tmp, "built_%s.pt" % variant)
    r = common.run([exe, "build", path, variant], timeout=60)
    if not rep.check(r.rc == 0 and os.path.exists(path), "%s: ckpt_canon build" % variant, r.describe()):
        return
    want = canon.canon(expected(variant))

    problems = common.zip_layout_problems(path, expect_root="built_%s" % variant)
    rep.check(not problems, "%s: zip layout" % variant, "; ".join(problems))

    pkl = common.data_pkl(path)
    globals_, problems = common.static_pickle_check(pkl)
    rep.check(not problems, "%s: data.pkl opcodes/globals on the weights_only allowlist" % variant,
              "; ".join(problems))
    rep.check("torch._utils._rebuild_tensor_v2" in globals_ and "collections.OrderedDict" in globals_,
              "%s: tensors via _rebuild_tensor_v2, OrderedDict present" % variant, str(globals_))
    proto_ok = pkl[:2] == b"\x80\x02"
    rep.check(proto_ok, "%s: pickle protocol 2" % variant, repr(pkl[:2]))

    has_float = not common.float_free(pkl)
    rep.check(has_float == (variant == "mammoth"), "%s: BINFLOAT present iff the variant has floats" % variant)

    loaded = None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        rep.ok("%s: torch.load(weights_only=True)" % variant)
    except Exception as e:
        if has_float and TORCH_VERSION < (2, 0) and "Unsupported operand 71" in str(e):
            rep.ok("%s: torch %s weights_only refuses BINFLOAT as expected" % (variant, torch.__version__),
                   str(e)[:80])
        else:
            rep.fail("%s: torch.load(weights_only=True)" % variant, repr(e))
    if loaded is None and not problems:
        # Static check passed above: the pickle names only allowlisted globals.
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=False)
            rep.ok("%s: torch.load(weights_only=False) after the static check" % variant)
        except Exception as e:
            rep.fail("%s: torch.load(weights_only=False)" % variant, repr(e))
    if loaded is not None:
        got = canon.canon(loaded)
        diff = canon.first_difference(got, want)
        rep.check(diff is None, "%s: torch sees the expected values" % variant, "torch vs expected: %s" % diff)
        # Aliasing survives: tied weights share storage, the view shares it too.
        m = loaded["model"]
        same = (m["backbone.weight"].storage().data_ptr() == m["head.weight"].storage().data_ptr()
                == m["backbone.weight_t"].storage().data_ptr() == m["backbone.col1"].storage().data_ptr())
        rep.check(same, "%s: aliased tensors share one storage in torch" % variant)
        rep.check(isinstance(m["param"], torch.nn.Parameter) and m["param"].requires_grad,
                  "%s: nn.Parameter with requires_grad" % variant)
        rep.check(getattr(m, "_metadata", None) == expected(variant)["model"]._metadata,
                  "%s: OrderedDict _metadata attribute" % variant, repr(getattr(m, "_metadata", None)))

    r = common.run([exe, "dump", path], timeout=60)
    if rep.check(r.rc == 0, "%s: ckpt_canon dump of its own output" % variant, r.describe()):
        diff = canon.first_difference(r.json(), want)
        rep.check(diff is None, "%s: C++ reads back the expected values" % variant, "C++ vs expected: %s" % diff)


def main():
    exe = common.canon_exe()
    rep = common.Report("cpp_to_py")
    tmp = tempfile.mkdtemp(prefix="ckpt_cpp2py_")
    try:
        for variant in ("weights", "mammoth"):
            rep.guard(variant, check_variant, rep, exe, tmp, variant)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rep.finish()


if __name__ == "__main__":
    main()
