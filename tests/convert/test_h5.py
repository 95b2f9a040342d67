#!/usr/bin/python3
"""HDF5 export read by h5py (+ hdf5plugin for zstd): every dataset bit-equal to
torch's tensor, the attributes and groups of docs/hdf5-layout.md; and
.pt -> .h5 -> .pt bit-exact (tensors, names, order, aliasing, the whole tree)."""
import collections
import hashlib
import json
import os

from common import check, convert, deep_equal, finish, load, mammoth_ref, rmtree, tmpdir, write_mammoth  # noqa: I001 (sets HDF5_PLUGIN_PATH)

import h5py
import hdf5plugin  # noqa: F401  (upstream hdf5plugin registers zstd; Debian's does not: our plugin then)
import numpy as np
import torch


def rich_checkpoint():
    g = torch.Generator().manual_seed(7)
    sd = collections.OrderedDict()
    sd["net.conv.weight"] = torch.randn(64, 3, 3, 3, generator=g)
    sd["net.fc.weight"] = torch.randn(1000, 300, generator=g)          # 1.2 MB: several chunks, a partial edge chunk
    sd["net.big.weight"] = torch.randn(3, 700, 701, generator=g)       # split on the second dimension
    sd["net.half"] = torch.randn(5000, generator=g).half()
    sd["net.bf16"] = torch.randn(3000, generator=g).bfloat16()
    sd["net.f64"] = torch.randn(700, generator=g).double()
    sd["net.i8"] = torch.randint(-128, 127, (2000,), dtype=torch.int8, generator=g)
    sd["net.i16"] = torch.randint(-30000, 30000, (2000,), dtype=torch.int16, generator=g)
    sd["net.i32"] = torch.randint(-2**31, 2**31 - 1, (2000,), dtype=torch.int32, generator=g)
    sd["net.u8"] = torch.randint(0, 255, (5000,), dtype=torch.uint8, generator=g)
    sd["net.mask"] = torch.rand(3000, generator=g) > 0.5
    sd["net.cplx"] = torch.randn(600, dtype=torch.complex64, generator=g)
    sd["net.cplx128"] = torch.randn(10, dtype=torch.complex128, generator=g)
    sd["net.bn.num_batches_tracked"] = torch.tensor(17)
    sd["net.empty"] = torch.zeros(0, 3)
    base = torch.randn(40, 30, generator=g)
    sd["net.transposed"] = base.t()                                    # non-contiguous view
    sd["net.slice"] = base[5:9]                                        # a view sharing base's storage
    sd["net.base"] = base
    sd["net.alias"] = base                                             # an identical alias: a hard link
    nan = torch.tensor([float("nan"), float("inf"), -0.0, 1e-45, -float("inf")])
    sd["net.special"] = nan
    sd["net.special_bf16"] = nan.bfloat16()
    opt = {"state": {0: {"momentum_buffer": torch.randn(64, 3, 3, 3, generator=g)}, 1: {"momentum_buffer": None}},
           "param_groups": [{"lr": 0.03, "momentum": 0.9, "params": [0, 1]}]}
    args = {"model": "derpp", "lr": 0.03, "notes": "x" * 70000, "seed": 1993, "nested": [1, 2.5, None, True]}
    results = [[[95.5, 90.25]], [[98.0, 97.5]], {"accs": ["95.5"], "fwt": None}]
    buffer = {"examples": torch.randn(20, 3, 8, 8, generator=g), "labels": torch.arange(20)}
    return {"model": sd, "optimizer": opt, "scheduler": None, "args": args, "results": results, "buffer": buffer}


def numpy_of(t, stored_as):
    """What the dataset must hold for tensor t."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.float().numpy() if stored_as == "float32" else t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def walk_tensors(obj, path=""):
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk_tensors(v, "%s/%s" % (path, k) if path else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from walk_tensors(v, "%s/%d" % (path, i) if path else str(i))


def json_attr(obj, name):
    if name in obj.attrs:
        return json.loads(obj.attrs[name])
    parts = int(obj.attrs[name + ".parts"])
    return json.loads("".join(obj.attrs["%s.%d" % (name, i)] for i in range(parts)))


def check_h5(h5, src, ck, compress, bf16):
    tag = "%s [%s, bf16 %s]" % (os.path.basename(h5), compress, bf16)
    with h5py.File(h5, "r") as f:
        check(f.attrs["ckpt_format"] == "ckpt-hdf5" and int(f.attrs["ckpt_format_version"]) == 1, tag + ": format and version")
        check(f.attrs["producer"].startswith("ckpt-convert "), tag + ": producer")
        with open(src, "rb") as s:
            check(f.attrs["source_sha256"] == hashlib.sha256(s.read()).hexdigest(), tag + ": source_sha256 is the input's")
        check(json_attr(f, "args") == ck["args"], tag + ": args as JSON (split over 64 KiB: %s)" % ("args" not in f.attrs))
        check(json_attr(f, "results") == ck["results"], tag + ": results as JSON")
        check(json_attr(f["optimizer"], "param_groups") == ck["optimizer"]["param_groups"], tag + ": optimizer param_groups")
        check(isinstance(f["optimizer/state/0/momentum_buffer"], h5py.Dataset) and isinstance(f["buffer/examples"], h5py.Dataset),
              tag + ": optimizer state and buffer in their own groups")
        check(list(f["/"].keys()) == ["model", "optimizer", "buffer", "_ckpt"], tag + ": creation order of the root: %s" % list(f["/"].keys()))
        check(f["/"].id.get_create_plist().get_link_creation_order() == 3, tag + ": link creation order tracked and indexed")
        check(list(f["model/net"].keys())[:4] == ["conv", "fc", "big", "half"], tag + ": creation order kept: %s" % list(f["model/net"].keys())[:4])
        by_path = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and "key_path" in obj.attrs:
                by_path[obj.attrs["key_path"]] = obj
                for a in obj.attrs.get("aliases", []):
                    by_path[a] = obj
        f.visititems(visit)
        n = 0
        for kp, t in walk_tensors(ck):
            d = by_path.get(kp)
            if d is None:
                check(False, tag + ": no dataset for " + kp)
                continue
            n += 1
            stored_as = d.attrs.get("stored_as", "")
            ok = same_bits(d[()], numpy_of(t, stored_as)) if t.dtype != torch.bool else np.array_equal(d[()], t.numpy())
            check(ok, tag + ": %s bit-equal to torch (%s, %s)" % (kp, d.dtype, t.dtype))
            check(d.attrs["torch_dtype"] == str(t.dtype).replace("torch.", "") and list(d.attrs["shape"]) == list(t.shape),
                  tag + ": %s torch_dtype and shape attributes" % kp)
            check(kp.endswith(d.attrs["original_key"]) or kp in list(d.attrs.get("aliases", [])), tag + ": %s original_key" % kp)
            if t.dtype == torch.bfloat16:
                check(d.dtype == (np.float32 if bf16 == "f32" else np.uint16), tag + ": bf16 stored as %s" % d.dtype)
        check(n == len(list(walk_tensors(ck))), tag + ": every tensor has a dataset")
        check(f["model/net/base"].id == f["model/net/alias"].id, tag + ": an identical alias is a hard link")
        fc = f["model/net/fc/weight"]
        if compress.startswith("gzip"):
            check(fc.compression == "gzip" and fc.shuffle and fc.chunks is not None, tag + ": gzip + shuffle, chunked")
        elif compress.startswith("zstd"):
            plist = fc.id.get_create_plist()
            ids = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
            check(32015 in ids, tag + ": zstd filter 32015 (%s)" % ids)
        else:
            check(fc.chunks is None and fc.compression is None, tag + ": uncompressed, contiguous")


def main():
    d = tmpdir()
    try:
        ck = rich_checkpoint()
        src = os.path.join(d, "rich.pt")
        torch.save(ck, src)
        orig = load(src)
        for compress, bf16 in [("gzip", "f32"), ("gzip:1", "raw"), ("zstd", "f32"), ("zstd:9", "raw"), ("none", "f32")]:
            h5 = os.path.join(d, "rich_%s_%s.h5" % (compress.replace(":", ""), bf16))
            convert(src, h5, "--compress", compress, "--bf16", bf16)
            check_h5(h5, src, ck, compress, bf16)
            back = os.path.join(d, "back_%s_%s.pt" % (compress.replace(":", ""), bf16))
            convert(h5, back)
            diffs = deep_equal(orig, load(back), sharing={})
            check(not diffs, "%s -> .pt bit-exact (tree, order, aliasing): %s" % (os.path.basename(h5), diffs[:5]))
            zst = h5 + ".zst"
            os.system("zstd -q -f %s -o %s" % (h5, zst))
            back2 = os.path.join(d, "back2.pt")
            convert(zst, back2, "--force")
            check(not deep_equal(orig, load(back2), sharing={}), "an .h5.zst reads the same")

        # A Mammoth checkpoint: the whole structure comes back and Mammoth loads it.
        mlp = write_mammoth(os.path.join(d, "mlp.pt"), "mnistmlp", model="derpp")
        h5 = os.path.join(d, "mlp.h5")
        convert(mlp, h5)
        with h5py.File(h5, "r") as f:
            check(f["model/net/fc1/weight"].id == f["model/net/net/0/0/weight"].id == f["model/net/_features/0/weight"].id,
                  "MNIST-MLP aliases are hard links to one dataset")
        back = os.path.join(d, "mlp_back.pt")
        convert(h5, back)
        check(not deep_equal(load(mlp), load(back), sharing={}), "Mammoth .pt -> .h5 -> .pt bit-exact")
        check(mammoth_ref.main(["load", back, "--arch", "mnistmlp", "--model", "derpp", "--buffer-size", "50"]) == 0,
              "Mammoth loads the round-tripped checkpoint")

        # Values edited with h5py flow back (the datasets are the source).
        with h5py.File(h5, "r+") as f:
            w = f["model/net/classifier/weight"]
            w[0, 0] = 42.0
        edited = os.path.join(d, "mlp_edited.pt")
        convert(h5, edited)
        e = load(edited)["model"]
        check(float(e["net.classifier.weight"][0, 0]) == 42.0 and float(e["net.net.1.weight"][0, 0]) == 42.0,
              "an h5py edit reaches the tensor and its alias")

        # An HDF5 file written by h5py alone: a flat state dict of its datasets.
        foreign = os.path.join(d, "foreign.h5")
        with h5py.File(foreign, "w", track_order=True) as f:
            f.create_dataset("layer1/conv/weight", data=np.arange(24, dtype=np.float32).reshape(2, 3, 4), compression="gzip")
            f.create_dataset("layer1/conv/bias", data=np.ones(2, dtype=np.float64))
            f.create_dataset("head/w", data=np.arange(6, dtype=np.int64).reshape(2, 3))
            f.create_dataset("flags", data=np.array([True, False]))
            f.create_dataset("names", data=np.array([b"a", b"b"]))  # not a tensor: skipped
        out = os.path.join(d, "foreign.pt")
        convert(foreign, out)
        fsd = torch.load(out, weights_only=True)
        check(list(fsd) == ["layer1.conv.bias", "layer1.conv.weight", "head.w", "flags"],
              "foreign keys in creation order where tracked, else by name: %s" % list(fsd))
        check(torch.equal(fsd["layer1.conv.weight"], torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)) and
              fsd["layer1.conv.bias"].dtype == torch.float64 and fsd["flags"].dtype == torch.bool, "foreign values and dtypes")

        # Hostile or wrong inputs fail cleanly.
        bad = os.path.join(d, "bad.h5")
        with open(bad, "wb") as f:
            f.write(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
        rc, _, err = convert(bad, os.path.join(d, "bad.pt"), ok=False)
        check(rc == 2 and "HDF5" in err, "a truncated HDF5 file: exit 2 (%s)" % err.strip())
    finally:
        rmtree(d)
    finish()


if __name__ == "__main__":
    main()
