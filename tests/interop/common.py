"""Shared helpers of the interop and corpus tests (run by /usr/bin/python3)."""
import io
import json
import os
import re
import resource
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile

SKIP = 77  # meson's "skipped" exit code


def require_torch():
    """Exits 77 (skip) when this interpreter has no torch."""
    try:
        import torch  # noqa: F401
        import numpy  # noqa: F401
    except Exception as e:  # pragma: no cover - environment dependent
        print("SKIP: %s cannot import torch/numpy: %s" % (sys.executable, e))
        sys.exit(SKIP)


def canon_exe():
    if len(sys.argv) < 2:
        print("usage: %s PATH/TO/ckpt_canon" % os.path.basename(sys.argv[0]), file=sys.stderr)
        sys.exit(2)
    exe = os.path.abspath(sys.argv[1])
    if not os.access(exe, os.X_OK):
        print("ckpt_canon not executable: %s" % exe, file=sys.stderr)
        sys.exit(2)
    return exe


class Result:
    def __init__(self, rc, out, err, wall, maxrss_kib, timed_out):
        self.rc = rc
        self.out = out
        self.err = err
        self.wall = wall
        self.maxrss_kib = maxrss_kib
        self.timed_out = timed_out

    def json(self):
        return json.loads(self.out)

    def error(self):
        """The {"code", "name", "what"} object of a typed failure, else None."""
        if self.rc != 2:
            return None
        try:
            j = json.loads(self.out)
        except ValueError:
            return None
        if isinstance(j, dict) and isinstance(j.get("error"), dict):
            return j["error"]
        return None

    def describe(self):
        s = "rc=%s wall=%.2fs rss=%dKiB" % (self.rc, self.wall, self.maxrss_kib)
        if self.timed_out:
            s += " TIMED OUT"
        if self.rc is not None and self.rc < 0:
            s += " (killed by signal %d)" % -self.rc
        out = self.out.decode("utf-8", "replace") if isinstance(self.out, bytes) else self.out
        if out and len(out) < 400:
            s += " out=" + out.strip()
        if self.err:
            s += " stderr=" + self.err.strip()[-400:]
        return s


GNU_TIME = "/usr/bin/time"


def run(argv, timeout=60.0, cwd=None, mem_limit=None):
    """Runs argv; returns a Result with wall time and the child's own peak RSS.

    A child forked from this (torch-sized) Python process inherits its peak
    RSS in ru_maxrss, so when GNU time exists the command runs under it: time
    forks the real child from a small process and reports that child's %M.
    """
    use_time = os.access(GNU_TIME, os.X_OK)
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f, \
            tempfile.NamedTemporaryFile(prefix="ckpt_time_") as time_f:
        def limits():
            # Under AddressSanitizer (CKPT_SANITIZED=1, tests/hardening/ci_sanitize.sh)
            # the shadow memory reserves terabytes of address space: no RLIMIT_AS.
            if mem_limit and not os.environ.get("CKPT_SANITIZED"):
                resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        cmd = list(argv)
        if use_time:
            cmd = [GNU_TIME, "-o", time_f.name, "-f", "ckpt-rss %M"] + cmd
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, stdin=subprocess.DEVNULL,
                             cwd=cwd, preexec_fn=limits, start_new_session=True)
        timed_out = [False]

        def kill():
            timed_out[0] = True
            try:
                os.killpg(p.pid, 9)
            except OSError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        wall = time.monotonic() - t0
        rc = os.waitstatus_to_exitcode(status)
        p.returncode = rc
        maxrss = ru.ru_maxrss
        if use_time:
            report = open(time_f.name, encoding="utf-8", errors="replace").read()
            m = re.search(r"ckpt-rss (\d+)", report)
            maxrss = int(m.group(1)) if m else -1
            m = re.search(r"terminated by signal (\d+)", report)
            if m:
                rc = -int(m.group(1))
        out_f.seek(0)
        err_f.seek(0)
        out = out_f.read().decode("utf-8", "replace")
        err = err_f.read().decode("utf-8", "replace")
        return Result(rc, out, err, wall, maxrss, timed_out[0])


class Report:
    """Counts checks; prints "N passed, M failed" and exits accordingly."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def ok(self, what, detail=""):
        self.passed += 1
        print("PASS %s%s" % (what, (": " + detail) if detail else ""))

    def fail(self, what, detail=""):
        self.failed += 1
        print("FAIL %s%s" % (what, (": " + detail) if detail else ""))

    def check(self, cond, what, detail=""):
        if cond:
            self.ok(what)
        else:
            self.fail(what, detail)
        return cond

    def skip(self, what, detail=""):
        self.skipped += 1
        print("SKIP %s%s" % (what, (": " + detail) if detail else ""))

    def guard(self, what, fn, *args):
        """Runs fn; an unexpected Python exception counts as a failure."""
        try:
            return fn(*args)
        except Exception:
            self.fail(what, "exception:\n" + traceback.format_exc())
            return None

    def finish(self):
        sys.stdout.flush()
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.exit(1 if self.failed else 0)


def check_dump(rep, what, r, truth, against="torch", detail=""):
    """Compares the Result r of `ckpt_canon dump` with truth (canon.canon of what
    Python loaded): one PASS, or one FAIL naming the first difference.

    Returns False when the dump failed or printed no JSON, so there was nothing
    to compare."""
    import canon  # imports torch; only the torch tests get here

    if r.rc != 0:
        rep.fail(what, "ckpt_canon dump failed: " + r.describe())
        return False
    try:
        got = r.json()
    except ValueError as e:
        rep.fail(what, "ckpt_canon printed invalid JSON: %s" % e)
        return False
    diff = canon.first_difference(got, truth)
    if diff is None:
        rep.ok(what, detail)
    else:
        rep.fail(what, "C++ vs %s differ at %s" % (against, diff))
    return True


# ---------------------------------------------------------------- zip layout

def zip_layout_problems(path, expect_root=None):
    """Checks the facts torch.save's writer guarantees; returns a list of problems."""
    problems = []
    with open(path, "rb") as f:
        data = f.read()
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        return ["not a zip: %s" % e]
    infos = z.infolist()
    if not infos:
        return ["empty zip"]
    root = infos[0].filename.split("/", 1)[0]
    if expect_root is not None and root != expect_root:
        problems.append("root folder %r, expected %r" % (root, expect_root))
    rel = []
    for i in infos:
        if not i.filename.startswith(root + "/"):
            problems.append("entry %r outside root %r" % (i.filename, root))
            rel.append(i.filename)
        else:
            rel.append(i.filename[len(root) + 1:])
    n_data = sum(1 for r in rel if r.startswith("data/"))
    expected = (["data.pkl", ".format_version", ".storage_alignment", "byteorder"]
                + ["data/%d" % k for k in range(n_data)] + ["version", ".data/serialization_id"])
    if rel != expected:
        problems.append("record order %s, expected %s" % (rel, expected))
    for i in infos:
        off = i.header_offset
        if data[off:off + 4] != b"PK\x03\x04":
            problems.append("%s: no local header at %d" % (i.filename, off))
            continue
        n, e = struct.unpack_from("<HH", data, off + 26)
        payload = off + 30 + n + e
        if payload % 64:
            problems.append("%s: payload at %d is not 64-byte aligned" % (i.filename, payload))
        if i.compress_type != zipfile.ZIP_STORED:
            problems.append("%s: compression method %d" % (i.filename, i.compress_type))
        if i.flag_bits != 0x0808:
            problems.append("%s: flags 0x%x, torch writes 0x808" % (i.filename, i.flag_bits))
    bad = z.testzip()
    if bad is not None:
        problems.append("CRC mismatch in %s" % bad)
    if b"PK\x06\x06" not in data[-200:] or b"PK\x06\x07" not in data[-200:]:
        problems.append("no ZIP64 end-of-central-directory record/locator")

    def rec(name):
        try:
            return z.read(root + "/" + name)
        except KeyError:
            return None

    for name, want in (("version", b"3\n"), (".format_version", b"1"),
                       (".storage_alignment", b"64"), ("byteorder", b"little")):
        got = rec(name)
        if got != want:
            problems.append("%s = %r, expected %r" % (name, got, want))
    sid = rec(".data/serialization_id")
    if sid is None or not re.fullmatch(rb"[0-9]{40}", sid):
        problems.append(".data/serialization_id = %r, expected 40 digits" % (sid,))
    return problems


# Globals torch 2.x's weights_only unpickler allows by default.
_WO_EXACT = {
    "collections.OrderedDict", "collections.Counter", "torch.nn.parameter.Parameter",
    "torch.serialization._get_layout", "torch.Size", "torch.Tensor", "torch.device",
    "_codecs.encode", "builtins.bytearray", "builtins.set", "builtins.complex",
    "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state", "torch._utils._rebuild_sparse_tensor",
    "torch._utils._rebuild_meta_tensor_no_storage", "torch._utils._rebuild_qtensor",
    "torch._utils._rebuild_wrapper_subclass", "torch._tensor._rebuild_from_type_v2",
}
_WO_DTYPES = {
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8",
    "bool", "complex128", "complex64", "complex32", "uint16", "uint32", "uint64",
    "float8_e5m2", "float8_e4m3fn", "float8_e5m2fnuz", "float8_e4m3fnuz", "float8_e8m0fnu",
    "float4_e2m1fn_x2", "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2",
    "qint8", "quint8", "qint32", "quint4x2", "quint2x4",
}
# Opcodes torch 2.x's weights_only unpickler implements.
WO_OPCODES = {
    "PROTO", "STOP", "GLOBAL", "NEWOBJ", "REDUCE", "BUILD", "APPEND", "APPENDS", "SETITEM",
    "SETITEMS", "MARK", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "NONE", "NEWFALSE", "NEWTRUE",
    "EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "BININT", "BININT1", "BININT2",
    "BINFLOAT", "BINUNICODE", "SHORT_BINSTRING", "BINPERSID", "BINGET", "LONG_BINGET",
    "BINPUT", "LONG_BINPUT", "LONG1",
}


def wo_allowed_global(qual):
    if qual in _WO_EXACT:
        return True
    mod, _, name = qual.rpartition(".")
    if mod == "torch" and (name in _WO_DTYPES or re.fullmatch(r"\w*Storage", name)
                           or re.fullmatch(r"\w*Tensor", name)):
        return True
    return False


def static_pickle_check(pkl_bytes):
    """pickletools over a pickle (never executed): (globals, problems)."""
    import pickletools
    problems = []
    globals_ = []
    try:
        for op, arg, pos in pickletools.genops(pkl_bytes):
            if op.name not in WO_OPCODES:
                problems.append("opcode %s at %d is not in torch's weights_only set" % (op.name, pos))
            if op.name == "GLOBAL":
                qual = arg.replace(" ", ".")
                globals_.append(qual)
                if not wo_allowed_global(qual):
                    problems.append("GLOBAL %s at %d is not on the weights_only allowlist" % (qual, pos))
    except Exception as e:
        problems.append("pickletools: %s" % e)
    return globals_, problems


def data_pkl(path):
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        name = next(n for n in names if n.endswith("/data.pkl") or n == "data.pkl")
        return z.read(name)


def float_free(pkl_bytes):
    import pickletools
    return all(op.name != "BINFLOAT" for op, _, _ in pickletools.genops(pkl_bytes))
