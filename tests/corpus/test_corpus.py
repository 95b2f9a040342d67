#!/usr/bin/python3
"""Every file of the third-party corpus through ckpt_canon, judged against torch.

usage: test_corpus.py PATH/TO/ckpt_canon [CORPUS_DIR]
       test_corpus.py --print-actual PATH/TO/ckpt_canon [CORPUS_DIR]   (draft expectations)

CORPUS_DIR defaults to $CKPT_CORPUS or /work/shared/corpus; the test is
skipped (77) when it is absent. expectations.tsv, next to this script, lists
every corpus file with what must happen:

  match         torch 1.13 loads it (MANIFEST: WO or FULL OK); ckpt_canon dump
                must equal canon(torch.load(...)), with weights_only=True when
                the MANIFEST says WO is OK, else weights_only=False (FULL OK).
                Also: ckpt_canon resave must give a file with torch's zip
                layout that torch.load (same weights_only) reads as equal.
  match_pickle  a plain pickle torch.load refuses but a restricted
                pickle.Unpickler (numpy/builtins only) reads: dump must equal it.
  opens         ckpt_canon dump succeeds (prints JSON, exit 0).
  error:NAME    ckpt_canon dump fails with the typed error NAME (exit 2).

Files under malicious/ are NEVER loaded by Python (not even pickletools).
Each must fail with its typed error within 1 s and 256 MiB peak RSS, run in
an empty temporary cwd that must still be empty afterwards (canary:
picklescan__broken_model.pkl would create my_file.txt).
"""
import io
import os
import pickle
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "interop"))
import common  # noqa: E402

MAX_WALL_S = 1.0
MAX_RSS_KIB = 256 * 1024
EXPECTATIONS = os.path.join(HERE, "expectations.tsv")


def parse_manifest(path):
    """{relpath: {"wo": bool, "full": bool, "tensors": int|None, "shared": int|None}}"""
    entries = {}
    cur = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("== "):
                cur = {"wo": False, "full": False, "tensors": None, "shared": None}
                entries[line[3:].strip()] = cur
            elif cur is not None and "torch 1.13.1 WO:" in line:
                cur["wo"] = line.split("WO:", 1)[1].strip().startswith("OK")
                _counts(cur, line)
            elif cur is not None and "torch 1.13.1 FULL:" in line:
                cur["full"] = line.split("FULL:", 1)[1].strip().startswith("OK")
                _counts(cur, line)
    return entries


def _counts(cur, line):
    for part in line.split("|"):
        part = part.strip()
        for key in ("tensors", "shared"):
            if part.startswith(key + "="):
                try:
                    cur[key] = int(part[len(key) + 1:])
                except ValueError:
                    pass


def read_expectations(path):
    exp = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) < 2:
                raise SystemExit("%s:%d: expected 'file<TAB>expectation'" % (path, n))
            exp[cols[0]] = cols[1]
    return exp


def corpus_files(root):
    out = []
    for d, _, files in os.walk(root):
        for fn in files:
            rel = os.path.relpath(os.path.join(d, fn), root)
            if rel != "MANIFEST.txt":
                out.append(rel)
    return sorted(out)


class _Restricted(pickle.Unpickler):
    ALLOWED = {
        ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"),
        ("builtins", "bytearray"), ("__builtin__", "set"), ("_codecs", "encode"),
        ("collections", "OrderedDict"), ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError("global %s.%s not allowed" % (module, name))

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent id in a plain pickle")


def restricted_load(path):
    with open(path, "rb") as f:
        return _Restricted(io.BytesIO(f.read())).load()


def actual_status(r):
    if r.rc == 0:
        return "opens"
    err = r.error()
    if err is not None:
        return "error:%s" % err.get("name")
    return "crash(%s)" % r.rc


def check_malicious(rep, exe, root, rel, want):
    path = os.path.join(root, rel)
    cwd = tempfile.mkdtemp(prefix="ckpt_canary_")
    try:
        r = common.run([exe, "dump", path], timeout=10, cwd=cwd, mem_limit=2 << 30)
        leftovers = os.listdir(cwd)
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    err = r.error()
    problems = []
    if err is None:
        problems.append("not a typed error: " + r.describe())
    elif not want.startswith("error:") or err.get("name") != want[len("error:"):]:
        problems.append("got error:%s (%s), expected %s" % (err.get("name"), err.get("what"), want))
    if r.wall > MAX_WALL_S:
        problems.append("took %.2f s (limit %.1f s)" % (r.wall, MAX_WALL_S))
    if r.maxrss_kib > MAX_RSS_KIB:
        problems.append("peak RSS %d KiB (limit %d KiB)" % (r.maxrss_kib, MAX_RSS_KIB))
    if leftovers:
        problems.append("CANARY: files created in cwd: %s" % leftovers)
    if problems:
        rep.fail(rel, "; ".join(problems))
    else:
        rep.ok(rel, "%s in %.2f s, %d KiB" % (want, r.wall, r.maxrss_kib))
    return r


def check_resave(rep, exe, torch, canon, rel, path, truth, weights_only, resave_dir):
    """ckpt_canon resave of a real file: torch layout, and torch.load sees the same values."""
    what = rel + " (resave)"
    out = os.path.join(resave_dir, os.path.basename(rel))
    r = common.run([exe, "resave", path, out], timeout=60)
    if r.rc != 0:
        rep.fail(what, r.describe())
        return
    problems = common.zip_layout_problems(out)
    if problems:
        rep.fail(what, "layout: " + "; ".join(problems))
        return
    try:
        again = canon.canon(torch.load(out, map_location="cpu", weights_only=weights_only))
    except Exception as e:
        rep.fail(what, "torch.load(weights_only=%s) of the resaved file: %r" % (weights_only, e))
        return
    diff = canon.first_difference(again, truth)
    if diff is None:
        rep.ok(what)
    else:
        rep.fail(what, "resaved vs original differ at " + diff)
    os.unlink(out)


def main():
    args = sys.argv[1:]
    print_actual = False
    if args and args[0] == "--print-actual":
        print_actual = True
        args = args[1:]
    common.require_torch()
    import torch

    sys.argv = [sys.argv[0]] + args
    exe = common.canon_exe()
    import canon

    root = args[1] if len(args) > 1 else os.environ.get("CKPT_CORPUS", "/work/shared/corpus")
    if not os.path.isfile(os.path.join(root, "MANIFEST.txt")):
        print("SKIP: corpus not found at %s" % root)
        sys.exit(common.SKIP)
    manifest = parse_manifest(os.path.join(root, "MANIFEST.txt"))
    files = corpus_files(root)

    if print_actual:
        # Drafts expectations.tsv lines from today's behaviour (review before committing!).
        for rel in files:
            m = manifest.get(rel, {})
            r = common.run([exe, "dump", os.path.join(root, rel)], timeout=30,
                           cwd=tempfile.gettempdir() if not rel.startswith("malicious/") else None)
            st = actual_status(r)
            if not rel.startswith("malicious/") and (m.get("wo") or m.get("full")):
                st = "match"
            print("%s\t%s" % (rel, st))
        return

    rep = common.Report("corpus")
    resave_dir = tempfile.mkdtemp(prefix="ckpt_corpus_resave_")
    expectations = read_expectations(EXPECTATIONS)
    for rel in files:
        if rel not in expectations:
            rep.fail(rel, "not listed in expectations.tsv")
    for rel in expectations:
        if rel not in files:
            rep.fail(rel, "listed in expectations.tsv but not in the corpus")
    for rel in files:
        if rel not in manifest:
            rep.fail(rel, "not described in MANIFEST.txt")

    for rel in files:
        want = expectations.get(rel)
        if want is None:
            continue
        path = os.path.join(root, rel)
        if rel.startswith("malicious/"):
            check_malicious(rep, exe, root, rel, want)
            continue
        m = manifest.get(rel, {"wo": False, "full": False})
        torch_loads = m["wo"] or m["full"]
        if torch_loads and want != "match":
            rep.fail(rel, "torch 1.13 loads it (MANIFEST) but expectations.tsv says %s" % want)
            continue
        r = common.run([exe, "dump", path], timeout=60, cwd=tempfile.gettempdir())
        if want in ("match", "match_pickle"):
            if want == "match" and not torch_loads:
                rep.fail(rel, "expectation 'match' but torch 1.13 cannot load it (MANIFEST)")
                continue
            try:
                if want == "match":
                    obj = torch.load(path, map_location="cpu", weights_only=bool(m["wo"]))
                else:
                    obj = restricted_load(path)
            except Exception as e:
                rep.fail(rel, "Python could not load the truth: %r" % e)
                continue
            truth = canon.canon(obj)
            if want == "match" and m.get("tensors") is not None and m.get("shared") is not None:
                nt, ns = canon.tensor_stats(obj)
                if (nt, nt - ns) != (m["tensors"], m["shared"]):
                    rep.fail(rel + " (canon.py walk)", "tensors=%d shared=%d, MANIFEST says tensors=%d shared=%d"
                             % (nt, nt - ns, m["tensors"], m["shared"]))
            if not common.check_dump(rep, rel, r, truth, "torch" if want == "match" else "pickle", want):
                continue
            if want == "match":
                check_resave(rep, exe, torch, canon, rel, path, truth, bool(m["wo"]), resave_dir)
            continue
        st = actual_status(r)
        if st == want:
            if st == "opens":
                try:
                    r.json()
                except ValueError as e:
                    rep.fail(rel, "opens but printed invalid JSON: %s" % e)
                    continue
            rep.ok(rel, st)
        else:
            rep.fail(rel, "expected %s, got %s: %s" % (want, st, r.describe()))
    shutil.rmtree(resave_dir, ignore_errors=True)
    rep.finish()


if __name__ == "__main__":
    main()
