"""Shared helpers of the ckpt-convert tests (run with /usr/bin/python3: torch 1.13, h5py).

Each test script is called as  test_X.py CKPT_CONVERT [CKPT_CANON]  by meson.
"""
import collections
import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "pylib"))

import torch  # noqa: E402

import mammoth_ref  # noqa: E402

CONVERT = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "build", "tools", "convert", "ckpt-convert")
CANON = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else None
# h5py finds the zstd filter (32015) through our plugin: Debian 12's
# python3-hdf5plugin has none. Set before h5py (libhdf5) is first imported.
os.environ.setdefault("HDF5_PLUGIN_PATH", os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(CONVERT))), "libckpt", "hdf5-plugin"))
ENV = dict(os.environ, CKPT_NO_PROGRESS="1")

_failures = []
_checks = 0


def check(cond, what):
    """Records one assertion; the script fails at the end if any failed."""
    global _checks
    _checks += 1
    if not cond:
        _failures.append(what)
        print("FAIL:", what, flush=True)


def finish():
    print("%d checks, %d failed" % (_checks, len(_failures)))
    sys.exit(1 if _failures else 0)


def convert(*args, ok=True):
    """Runs ckpt-convert; returns (exit code, stdout, stderr). With ok=True a
    non-zero exit is a failed check."""
    p = subprocess.run([CONVERT, "--no-fsync", *map(str, args)], capture_output=True, text=True, env=ENV, timeout=300)
    if ok:
        check(p.returncode == 0, "ckpt-convert %s: exit %d: %s" % (" ".join(map(str, args)), p.returncode, p.stderr.strip()))
    return p.returncode, p.stdout, p.stderr


def tmpdir():
    d = tempfile.mkdtemp(prefix="ckpt-convert-test-")
    return d


def write_mammoth(path, arch, **kw):
    """A Mammoth checkpoint written by the reference implementation."""
    args = [sys.executable, os.path.join(ROOT, "tests", "pylib", "mammoth_ref.py"), "write", "--arch", arch, "--out", str(path)]
    for k, v in kw.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    subprocess.run(args, check=True, capture_output=True)
    return path


def load(path):
    """torch.load without executing code: weights_only where torch 1.13 can,
    else the allowlist check of mammoth_ref plus weights_only=False."""
    return mammoth_ref.load_weights_only(str(path))


def raw_bytes(t):
    t = t.detach().contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy().tobytes()
    if t.dtype == torch.complex32:
        return t.view(torch.int32).numpy().tobytes()
    return t.numpy().tobytes()


def _storage_id(t):
    st = t.storage()
    return getattr(st, "_storage", st)._cdata if hasattr(st, "_storage") or hasattr(st, "_cdata") else id(st)


def deep_equal(a, b, path="", sharing=None):
    """Bit-exact equality of two loaded trees: types, key order, tensor dtype /
    shape / stride / offset / bytes, floats by bits. Returns a list of differences.
    With sharing={} it also checks that tensors share storages the same way."""
    diffs = []
    if type(a) is not type(b):
        return ["%s: type %s vs %s" % (path, type(a).__name__, type(b).__name__)]
    if isinstance(a, torch.Tensor):
        if (a.dtype, tuple(a.shape), a.stride(), a.storage_offset()) != (b.dtype, tuple(b.shape), b.stride(), b.storage_offset()):
            diffs.append("%s: layout %s vs %s" % (path, (a.dtype, tuple(a.shape), a.stride(), a.storage_offset()),
                                                  (b.dtype, tuple(b.shape), b.stride(), b.storage_offset())))
        elif raw_bytes(a) != raw_bytes(b):
            diffs.append("%s: values differ" % path)
        if sharing is not None:
            ka, kb = _storage_id(a), _storage_id(b)
            if sharing.setdefault(("a", ka), kb) != kb or sharing.setdefault(("b", kb), ka) != ka:
                diffs.append("%s: storage sharing differs" % path)
    elif isinstance(a, dict):
        if list(a.keys()) != list(b.keys()):
            diffs.append("%s: keys %s vs %s" % (path, list(a.keys())[:8], list(b.keys())[:8]))
        else:
            for k in a:
                diffs += deep_equal(a[k], b[k], "%s/%s" % (path, k), sharing)
        if getattr(a, "_metadata", None) != getattr(b, "_metadata", None):
            diffs.append("%s: _metadata differs" % path)
    elif isinstance(a, (list, tuple)):
        if len(a) != len(b):
            diffs.append("%s: length %d vs %d" % (path, len(a), len(b)))
        else:
            for i, (x, y) in enumerate(zip(a, b)):
                diffs += deep_equal(x, y, "%s/%d" % (path, i), sharing)
    elif isinstance(a, float):
        import struct
        if struct.pack("<d", a) != struct.pack("<d", b):
            diffs.append("%s: %r vs %r" % (path, a, b))
    elif a != b:
        diffs.append("%s: %r vs %r" % (path, a, b))
    return diffs


def canon(path):
    """ckpt_canon's canonical JSON of a file (C++ reader; compares any tree)."""
    p = subprocess.run([CANON, "dump", str(path)], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        return None, (p.stderr.strip() or p.stdout.strip() or "exit %d" % p.returncode)
    return p.stdout, None


def rmtree(d):
    shutil.rmtree(d, ignore_errors=True)
