"""Shared helpers of the tests/trainer suite (run with /usr/bin/python3).

The tests drive the real ckpt-train binary and read its files with real
PyTorch. Every run is small (a few hundred samples per task through
--max_samples_per_task) so the whole suite stays within a few minutes on
two cores.
"""
import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "pylib"))

import mammoth_ref  # noqa: E402  (tests/pylib, written for these tests)

FASHION = "/usr/share/datasets/fashion-mnist"


def binary():
    """The ckpt-train under test: argv[1] when meson passes it, else $CKPT_TRAIN."""
    for a in sys.argv[1:]:
        if a.endswith("ckpt-train"):
            return os.path.abspath(a)  # meson passes it relative to the build folder
    return os.path.abspath(os.environ["CKPT_TRAIN"])


def run(args, cwd, env=None, check=True, timeout=300):
    """Runs ckpt-train with `args` in `cwd`; returns the CompletedProcess."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([binary()] + [str(a) for a in args], cwd=cwd, env=e, capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("ckpt-train %s failed (%d):\n%s\n%s" % (" ".join(map(str, args)), p.returncode, p.stdout,
                                                                      p.stderr))
    return p


def load(path):
    """torch.load of a file ckpt-train wrote, after the weights_only allowlist check."""
    return mammoth_ref.load_weights_only(path)


def only(pattern_dir, suffix):
    """The single file in `pattern_dir` whose name ends with `suffix`."""
    hits = [f for f in os.listdir(pattern_dir) if f.endswith(suffix)]
    assert len(hits) == 1, "expected one *%s in %s, found %s" % (suffix, pattern_dir, hits)
    return os.path.join(pattern_dir, hits[0])


def same(a, b, path="", diffs=None):
    """Bit-identical comparison of two loaded checkpoint trees; returns the differing paths."""
    diffs = [] if diffs is None else diffs
    if isinstance(a, torch.Tensor):
        if not (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)):
            diffs.append(path)
    elif isinstance(a, dict):
        if not isinstance(b, dict) or list(a.keys()) != list(b.keys()):
            diffs.append(path + " (keys)")
        else:
            for k in a:
                same(a[k], b[k], "%s/%s" % (path, k), diffs)
    elif isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            diffs.append(path + " (length)")
        else:
            for i, (x, y) in enumerate(zip(a, b)):
                same(x, y, "%s/%d" % (path, i), diffs)
    elif a != b and not (isinstance(a, float) and a != a and b != b):
        diffs.append("%s (%r != %r)" % (path, a, b))
    return diffs


# What an uninterrupted run and a resumed one must agree on, bit for bit.
RESUME_KEYS = ("model", "optimizer", "scheduler", "results", "buffer", "buffer_state", "rng_state", "data_state")


def assert_same_state(file_a, file_b, keys=RESUME_KEYS):
    a, b = load(file_a), load(file_b)
    diffs = []
    for k in keys:
        if k in a or k in b:
            same(a.get(k), b.get(k), k, diffs)
    assert not diffs, "%s and %s differ at: %s" % (file_a, file_b, ", ".join(diffs[:10]))


def tmpdir(name):
    return tempfile.mkdtemp(prefix="ckpt_train_%s_" % name)


def main(tests):
    """Runs the test functions; prints one line each; exit 1 on any failure."""
    failed = 0
    for t in tests:
        try:
            t()
            print("ok   %s" % t.__name__)
        except Exception as e:  # noqa: BLE001 - report every failure
            failed += 1
            print("FAIL %s: %s" % (t.__name__, e))
        sys.stdout.flush()
    print("%d passed, %d failed" % (len(tests) - failed, failed))
    sys.exit(1 if failed else 0)
