#!/usr/bin/python3
"""Every corpus file that holds tensors converts to HDF5 and back bit-exact:
ckpt_canon's canonical dump (values by CRC and bits, types, key order,
aliasing, non-tensor values) of file -> .h5 -> .pt equals that of the file.
Files under malicious/ are never opened here (ckpt-convert's refusal of them
is the hardening suite's job); files that hold no tensor, or that libckpt
cannot open, are skipped with their reason.

usage: test_corpus.py CKPT_CONVERT CKPT_CANON [CORPUS_DIR]"""
import json
import os
import sys

from common import CANON, canon, check, convert, finish, rmtree, tmpdir

CORPUS = sys.argv[3] if len(sys.argv) > 3 else os.environ.get("CKPT_CORPUS", "/work/shared/corpus")


def has_tensor(j):
    if isinstance(j, dict):
        if "tensor" in j and isinstance(j["tensor"], dict):
            return True
        return any(has_tensor(v) for v in j.values())
    if isinstance(j, list):
        return any(has_tensor(v) for v in j)
    return False


def main():
    if not os.path.isdir(CORPUS) or not CANON:
        print("SKIP: no corpus at %s or no ckpt_canon" % CORPUS)
        sys.exit(77)
    d = tmpdir()
    converted, skipped = 0, []
    try:
        files = []
        for root, dirs, names in os.walk(CORPUS):
            dirs[:] = sorted(x for x in dirs if x != "malicious")
            files += [os.path.join(root, n) for n in sorted(names) if n != "MANIFEST.txt" and not n.endswith(".tsv")]
        for path in files:
            rel = os.path.relpath(path, CORPUS)
            want, err = canon(path)
            if want is None:
                skipped.append((rel, "libckpt cannot open it: " + err.splitlines()[-1][:100]))
                continue
            if not has_tensor(json.loads(want)):
                skipped.append((rel, "holds no tensor"))
                continue
            h5 = os.path.join(d, "x.h5")
            back = os.path.join(d, "x.pt")
            rc, _, err = convert(path, h5, "--force", ok=False)
            if rc != 0:
                # Only a documented refusal may stop the export: report it as a skip with its reason.
                documented = "quantized" in err or "cannot pickle" in err or "sparse" in err or "unsupported" in err
                check(documented, "%s: export to HDF5 failed: %s" % (rel, err.strip()))
                skipped.append((rel, err.strip()[:120]))
                continue
            convert(h5, back, "--force")
            got, err = canon(back)
            check(got == want, "%s: .h5 round trip is bit-exact (%s)" % (rel, err or "dumps differ"))
            converted += 1
    finally:
        rmtree(d)
    print("converted %d corpus files to HDF5 and back" % converted)
    for rel, why in skipped:
        print("skipped %s: %s" % (rel, why))
    check(converted >= 60, "most of the corpus converts (%d)" % converted)
    finish()


if __name__ == "__main__":
    main()
