#!/usr/bin/python3
"""Builds the seed corpora of the fuzz targets: make_seeds.py OUT [--targets t1,t2].

Sources: ../shared/corpus (real third-party checkpoints, malicious ones too),
tests/fixtures, tests/regressions, and the interop fixtures written by a real
torch.save (tests/interop/gen_fixtures.py, when /usr/bin/python3 has torch).
Each target gets OUT/<target>/, one file per distinct input, named by its
SHA-1:

  fuzz_open       every file
  fuzz_zip        the zip files
  fuzz_legacy     everything that is not a zip or zstd (legacy streams, TAR, pickles)
  fuzz_unpickler  every *.pkl record of every zip, and every non-zip file
  fuzz_zstd       every file up to 1 MiB, zstd-compressed (needs the zstd CLI)
  fuzz_tensor     hand-made tensor descriptions (see fuzz_tensor.cpp)
  fuzz_safetensors  safetensors files written here byte by byte
  fuzz_hdf5       HDF5 files written by h5py (when installed)

Only the standard library is needed; torch, h5py and zstd add seeds when
present, and CKPT_CONVERT=<ckpt-convert> adds that tool's HDF5 and
safetensors outputs.
"""
import argparse
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ALL = ["fuzz_open", "fuzz_zip", "fuzz_legacy", "fuzz_unpickler", "fuzz_zstd", "fuzz_tensor",
       "fuzz_safetensors", "fuzz_hdf5"]
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def files_under(d):
    out = []
    if os.path.isdir(d):
        for base, _, names in os.walk(d):
            for n in sorted(names):
                if n != "MANIFEST.txt":
                    out.append(os.path.join(base, n))
    return sorted(out)


def torch_fixtures(work):
    """Real torch.save outputs (every dtype, legacy, views, ...), if torch runs."""
    out = os.path.join(work, "torch")
    gen = os.path.join(ROOT, "tests", "interop", "gen_fixtures.py")
    if not os.path.exists("/usr/bin/python3") or not os.path.exists(gen):
        return []
    r = subprocess.run(["/usr/bin/python3", gen, out], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        print("make_seeds: no torch fixtures (%s)" % r.stderr.decode(errors="replace").strip().splitlines()[-1:],
              file=sys.stderr)
        return []
    return files_under(out)


def raw_inputs(corpus, work):
    paths = files_under(corpus) + files_under(os.path.join(ROOT, "tests", "fixtures")) + \
        files_under(os.path.join(ROOT, "tests", "regressions")) + torch_fixtures(work)
    return [open(p, "rb").read() for p in paths]


def pickles_of(data):
    if not data.startswith(b"PK"):
        return [data]
    out = []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for info in z.infolist():
                if info.filename.endswith(".pkl") and info.file_size < (16 << 20):
                    try:
                        out.append(z.read(info))
                    except Exception:
                        pass
    except Exception:
        pass
    return out


def zstd_of(data):
    if not shutil.which("zstd"):
        return []
    r = subprocess.run(["zstd", "-q", "-c", "-3"], input=data, stdout=subprocess.PIPE)
    return [r.stdout] if r.returncode == 0 else []


def tensor_seeds():
    """Inputs in fuzz_tensor's encoding: dtype byte, ndim byte, storage size
    (2 bytes), offset, then (size, stride) pairs; numbers < 0x60 are literal."""
    def t(dtype, storage, offset, dims, big=False, ndim=None):
        b = bytes([dtype | (0x80 if big else 0), len(dims) if ndim is None else ndim])
        b += struct.pack(">H", storage) + bytes([offset])
        for size, stride in dims:
            b += bytes([size, stride])
        return b
    return [
        t(1, 24, 0, [(2, 3), (3, 1)]),           # float32 2x3 contiguous
        t(1, 24, 0, [(3, 1), (2, 3)]),           # its transpose
        t(0, 8, 0, [(5, 0), (4, 0)]),            # float64 expanded (stride 0)
        t(4, 64, 2, [(3, 2)]),                   # int64 strided, offset
        t(10, 64, 0, [(2, 1)], big=True),        # complex128, big-endian
        t(1, 0, 0, [(0, 1), (7, 1)]),            # empty
        t(1, 4, 0, []),                          # 0-d
        t(8, 1, 0, [(1, 9)] * 6),                # uint8 of size-1 dims
        t(1, 16, 0, [(2, 2), (2, 1)], ndim=0x7f),  # stride list shorter than shape
    ]


def safetensors_seeds():
    def st(tensors, meta=None, pad=b""):
        header, data, off = {}, b"", 0
        for name, (dtype, shape, payload) in tensors.items():
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(payload)]}
            data += payload
            off += len(payload)
        if meta is not None:
            header["__metadata__"] = meta
        h = json.dumps(header).encode() + pad
        return struct.pack("<Q", len(h)) + h + data
    f32 = lambda xs: struct.pack("<%df" % len(xs), *xs)
    return [
        st({}),
        st({"w": ("F32", [2, 2], f32([1, 2, 3, 4]))}),
        st({"w": ("F32", [2], f32([1, 2])), "b": ("I64", [1], struct.pack("<q", 7))}, meta={"format": "pt"}),
        st({"x": ("BF16", [3], b"\0\x3f" * 3), "y": ("BOOL", [2], b"\x01\x00"), "z": ("U8", [0], b"")}, pad=b"   "),
        st({"e": ("F64", [], struct.pack("<d", 3.5)), "f": ("F16", [1, 1, 2], b"\0<\0<")}),
    ]


def hdf5_seeds(work):
    code = r'''
import sys, h5py, numpy as np
d = sys.argv[1]
with h5py.File(d + "/a.h5", "w") as f:
    f["w"] = np.arange(6, dtype="<f4").reshape(2, 3)
    g = f.create_group("model"); g["b"] = np.ones(3, dtype="<f8"); g.attrs["lr"] = 0.1
with h5py.File(d + "/b.h5", "w") as f:
    f.create_dataset("c", data=np.arange(100, dtype="<i8"), chunks=(10,), compression="gzip")
    f["s"] = np.int32(3)
with h5py.File(d + "/c.h5", "w", libver="latest") as f:
    f.create_dataset("e", shape=(0,), dtype="<f2"); f["t/u/v"] = np.zeros((2, 2), dtype="u1")
'''
    out = os.path.join(work, "hdf5")
    os.makedirs(out, exist_ok=True)
    r = subprocess.run(["/usr/bin/python3", "-c", code, out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [open(p, "rb").read() for p in files_under(out)] if r.returncode == 0 else []


def converted_seeds(work, ext):
    """ckpt-convert's own outputs (its HDF5 layout with /_ckpt/structure, its
    safetensors), when CKPT_CONVERT names the tool."""
    exe = os.environ.get("CKPT_CONVERT")
    if not exe or not os.path.exists(exe):
        return []
    out = []
    for rel in ("burn/pytorch-tests/batch_norm__batch_norm2d.pt", "burn/pytorch-tests/complex_nested__complex_nested.pt",
                "burn/reader/legacy_shared_storage.pt", "burn/reader/bfloat16.pt"):
        src = os.path.join(os.path.dirname(ROOT), "shared", "corpus", rel)
        dst = os.path.join(work, os.path.basename(rel) + ext)
        if os.path.exists(src) and subprocess.run([exe, src, dst, "-q"], stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.DEVNULL).returncode == 0:
            out.append(open(dst, "rb").read())
    return out


def write_dir(d, blobs):
    os.makedirs(d, exist_ok=True)
    n = 0
    for b in blobs:
        name = hashlib.sha1(b).hexdigest()
        p = os.path.join(d, name)
        if not os.path.exists(p):
            with open(p, "wb") as f:
                f.write(b)
            n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--targets", default=",".join(ALL))
    ap.add_argument("--corpus", default=os.path.join(os.path.dirname(ROOT), "shared", "corpus"))
    args = ap.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    work = tempfile.mkdtemp(prefix="ckpt-seeds-")
    try:
        need_raw = any(t in ("fuzz_open", "fuzz_zip", "fuzz_legacy", "fuzz_unpickler", "fuzz_zstd") for t in targets)
        raw = raw_inputs(args.corpus, work) if need_raw else []
        for t in targets:
            if t == "fuzz_open":
                blobs = raw
            elif t == "fuzz_zip":
                blobs = [b for b in raw if b.startswith(b"PK")]
            elif t == "fuzz_legacy":
                blobs = [b for b in raw if not b.startswith(b"PK") and not b.startswith(ZSTD_MAGIC)]
            elif t == "fuzz_unpickler":
                blobs = [p for b in raw for p in pickles_of(b)]
            elif t == "fuzz_zstd":
                blobs = [z for b in raw if len(b) <= (1 << 20) for z in zstd_of(b)]
            elif t == "fuzz_tensor":
                blobs = tensor_seeds()
            elif t == "fuzz_safetensors":
                blobs = safetensors_seeds() + converted_seeds(work, ".safetensors")
            elif t == "fuzz_hdf5":
                blobs = hdf5_seeds(work) + converted_seeds(work, ".h5")
            else:
                sys.exit("make_seeds: unknown target " + t)
            n = write_dir(os.path.join(args.out, t), blobs)
            print("%-18s %4d seeds (%d new)" % (t, len(set(hashlib.sha1(b).digest() for b in blobs)), n))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
