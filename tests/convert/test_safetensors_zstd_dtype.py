#!/usr/bin/python3
"""safetensors export/import checked against the format's specification (a
reader written here from the spec: python3-safetensors is not in Debian 12),
shared-tensor rules; .pt.zst (zstd -d gives the exact .pt bytes, every
format reads .zst input); --dtype casts bit-equal to torch's."""
import collections
import json
import os
import struct
import subprocess

import numpy as np
import torch

from common import check, convert, deep_equal, finish, load, rmtree, tmpdir, write_mammoth

ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64, "I64": torch.int64,
             "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
             "C64": torch.complex64}


def read_spec(path):
    """A strict reader of the safetensors specification."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = data[8 + n:]
    meta = header.pop("__metadata__", None)
    errors = []
    if meta is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        errors.append("metadata is not str -> str")
    if (8 + n) % 8:
        errors.append("data not 8-byte aligned (header %d)" % n)
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in header.items())
    pos = 0
    for b, e, k in spans:
        if b != pos:
            errors.append("%s starts at %d, expected %d" % (k, b, pos))
        pos = e
    if pos != len(body):
        errors.append("offsets cover %d of %d bytes" % (pos, len(body)))
    tensors = collections.OrderedDict()
    for k, v in header.items():
        dt = ST_DTYPES[v["dtype"]]
        b, e = v["data_offsets"]
        numel = int(np.prod(v["shape"])) if v["shape"] else 1
        if numel * torch.tensor([], dtype=dt).element_size() != e - b:
            errors.append("%s: size mismatch" % k)
        buf = bytearray(body[b:e])
        t = torch.frombuffer(buf, dtype=dt) if e > b else torch.empty(0, dtype=dt)
        tensors[k] = t.reshape(v["shape"])
    return tensors, meta, errors


def main():
    d = tmpdir()
    try:
        # ---- safetensors: every dtype, non-contiguous, 0-d, empty; read by the spec reader
        g = torch.Generator().manual_seed(3)
        base = torch.randn(6, 5, generator=g)
        sd = collections.OrderedDict([
            ("a.f32", torch.randn(4, 3, generator=g)), ("a.f16", torch.randn(7, generator=g).half()),
            ("a.bf16", torch.randn(7, generator=g).bfloat16()), ("a.f64", torch.randn(3, generator=g).double()),
            ("b.i64", torch.arange(5)), ("b.i32", torch.arange(5, dtype=torch.int32)), ("b.u8", torch.arange(9, dtype=torch.uint8)),
            ("b.bool", torch.tensor([True, False, True])), ("c.c64", torch.randn(3, dtype=torch.complex64, generator=g)),
            ("d.scalar", torch.tensor(3.5)), ("d.empty", torch.zeros(0, 4)), ("d.t", base.t()),
            ("d.bn.num_batches_tracked", torch.tensor(12))])
        src = os.path.join(d, "many.pt")
        torch.save(sd, src)
        st = os.path.join(d, "many.safetensors")
        convert(src, st)
        tensors, meta, errors = read_spec(st)
        check(not errors, "spec reader accepts it: %s" % errors)
        check(meta.get("format") == "pt", "__metadata__ has format=pt: %s" % meta)
        check(list(tensors) == list(sd), "names in order: %s" % list(tensors))
        for k, v in sd.items():
            check(torch.equal(tensors[k], v.contiguous()) and tensors[k].dtype == v.dtype, "safetensors %s equals torch" % k)
        back = os.path.join(d, "many_back.pt")
        convert(st, back)
        b = torch.load(back, weights_only=True)
        check(list(b) == list(sd) and all(torch.equal(b[k], sd[k]) for k in sd), "safetensors -> .pt keeps names, order, values")

        # ---- shared tensors: the MNIST-MLP aliases
        mlp = write_mammoth(os.path.join(d, "mlp.pt"), "mnistmlp")
        st = os.path.join(d, "mlp.safetensors")
        rc, _, err = convert(mlp, st)
        tensors, meta, errors = read_spec(st)
        check(not errors, "MLP safetensors valid: %s" % errors)
        check(sorted(tensors) == ["net._features.0.bias", "net._features.0.weight", "net._features.2.bias", "net._features.2.weight",
                                  "net.classifier.bias", "net.classifier.weight"],
              "keeps the smallest name covering each storage: %s" % sorted(tensors))
        check(meta.get("net.fc1.weight") == "net._features.0.weight" and meta.get("net.net.1.bias") == "net.classifier.bias",
              "dropped names recorded in __metadata__ as name: kept")
        check("ckpt.args" in meta and json.loads(meta["ckpt.args"])["model"] == "sgd", "Mammoth args in __metadata__")
        back = os.path.join(d, "mlp_st.pt")
        convert(st, back)
        m = load(mlp)["model"]
        bm = torch.load(back, weights_only=True)
        check(list(bm) == list(m), "aliases come back in the original order: %s" % list(bm)[:6])
        check(bm["net.fc1.weight"].data_ptr() == bm["net.net.0.0.weight"].data_ptr(), "and share storage again")
        check(all(torch.equal(bm[k], m[k]) for k in m), "values equal")

        # views: an overlapping slice no name covers is refused; a covered view is written as its own tensor
        big = torch.arange(20.0)
        torch.save(collections.OrderedDict([("x", big[0:10]), ("y", big[5:15])]), os.path.join(d, "views.pt"))
        rc, _, err = convert(os.path.join(d, "views.pt"), os.path.join(d, "views.safetensors"), ok=False)
        check(rc == 2 and "covers" in err and "'x'" in err or "x, y" in err, "no covering name: refused (%s)" % err.strip())
        torch.save(collections.OrderedDict([("full", big), ("half", big[:10]), ("tt", big.view(4, 5).t())]), os.path.join(d, "v2.pt"))
        convert(os.path.join(d, "v2.pt"), os.path.join(d, "v2.safetensors"))
        tensors, meta, errors = read_spec(os.path.join(d, "v2.safetensors"))
        check(not errors and torch.equal(tensors["half"], big[:10]) and torch.equal(tensors["tt"], big.view(4, 5).t()),
              "covered views written contiguous: %s" % errors)

        # hostile safetensors inputs: exit 2, never a crash
        good = open(os.path.join(d, "many.safetensors"), "rb").read()
        n = struct.unpack("<Q", good[:8])[0]
        cases = {"truncated": good[: len(good) // 2], "huge_header": struct.pack("<Q", 2**62) + good[8:],
                 "bad_json": good[:8] + b"{" + b" " * (n - 1) + good[8 + n:],
                 "gap": good + b"\0" * 8}
        hdr = json.loads(good[8:8 + n])
        first = [k for k in hdr if k != "__metadata__"][0]
        hdr[first]["data_offsets"] = [0, 2**63]
        h = json.dumps(hdr).encode()
        cases["offset_overflow"] = struct.pack("<Q", len(h)) + h + good[8 + n:]
        for name, blob in cases.items():
            p = os.path.join(d, name + ".safetensors")
            with open(p, "wb") as f:
                f.write(blob)
            rc, _, err = convert(p, os.path.join(d, name + ".pt"), ok=False)
            check(rc == 2 and "error" in err, "hostile %s: exit %d (%s)" % (name, rc, err.strip()[:120]))

        # ---- .pt.zst: a plain zstd frame of the .pt bytes; every format reads .zst
        r18 = write_mammoth(os.path.join(d, "r18.pt"), "resnet18")
        z = os.path.join(d, "r18.pt.zst")
        convert(r18, z)
        raw = subprocess.run(["zstd", "-d", "-q", "-c", z], capture_output=True).stdout
        check(raw == open(r18, "rb").read(), "zstd -d gives back the exact .pt bytes")
        zb = os.path.join(d, "r18_bb.pt.zst")
        convert(r18, zb, "--backbone")
        plain = os.path.join(d, "r18_bb_plain.pt")
        with open(plain, "wb") as f:
            f.write(subprocess.run(["zstd", "-d", "-q", "-c", zb], capture_output=True).stdout)
        check(len(torch.load(plain, weights_only=True)) == 122, "a converted .pt.zst decompresses to a loadable .pt")
        unz = os.path.join(d, "r18_unz.pt")
        convert(z, unz)
        check(open(unz, "rb").read() == open(r18, "rb").read(), ".pt.zst -> .pt restores the exact bytes")
        for src_fmt in ("h5", "safetensors"):
            f1 = os.path.join(d, "r18." + src_fmt)
            convert(r18, f1, "--backbone")
            subprocess.run(["zstd", "-q", "-f", f1], check=True)
            out = os.path.join(d, "from_%s_zst.pt" % src_fmt)
            convert(f1 + ".zst", out)
            check(len(torch.load(out, weights_only=True)) == 122, "a .%s.zst input is read transparently" % src_fmt)

        # ---- --dtype: bit-equal to torch's rounding (ties, subnormals, overflow, NaN, inf)
        vals = torch.tensor([1.0, 1.0 + 2**-11, 1.0 + 3 * 2**-11, 65504.0, 65520.0, 1e-8, 5.96e-8, -0.0, float("inf"),
                             float("nan"), 3.0e38, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 2**-133] + torch.randn(2000, generator=g).tolist())
        cast_src = collections.OrderedDict([("f32", vals), ("f64", vals.double() * 1.0000001), ("f16", vals.half()),
                                            ("bf16", vals.bfloat16()), ("i64", torch.arange(4)), ("alias", vals)])
        cp = os.path.join(d, "cast.pt")
        torch.save(cast_src, cp)
        for flag, dt, fn in [("f16", torch.float16, lambda t: t.half()), ("bf16", torch.bfloat16, lambda t: t.bfloat16()),
                             ("f32", torch.float32, lambda t: t.float())]:
            out = os.path.join(d, "cast_%s.pt" % flag)
            convert(cp, out, "--dtype", flag)
            c = torch.load(out, weights_only=True)
            for k, v in cast_src.items():
                want = fn(v) if v.is_floating_point() else v
                got = c[k]
                ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}
                # NaN bits are not part of torch's contract (its vector path writes
                # 0xffff for bf16, its scalar path 0x7fc0): any NaN matches a NaN.
                nan = torch.isnan(want) if want.is_floating_point() else torch.zeros_like(want, dtype=torch.bool)
                same = got.dtype == want.dtype and got.shape == want.shape and \
                    bool((torch.isnan(got) == nan).all()) and \
                    got[~nan].view(ints[got.element_size()]).equal(want[~nan].view(ints[want.element_size()]))
                check(same, "--dtype %s: %s bit-equal to torch's cast" % (flag, k))
            check(c["f32"].data_ptr() == c["alias"].data_ptr(), "--dtype %s keeps aliases shared" % flag)
    finally:
        rmtree(d)
    finish()


if __name__ == "__main__":
    main()
