#!/usr/bin/python3
"""torch.save fixtures -> ckpt_canon dump == canon(torch.load(...)).

usage: test_py_to_cpp.py PATH/TO/ckpt_canon [FIXTURE_DIR]
Fixtures are written by gen_fixtures.py into a temporary folder (or into
FIXTURE_DIR when given, which is kept).
"""
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
import gen_fixtures  # noqa: E402


def main():
    exe = common.canon_exe()
    rep = common.Report("py_to_cpp")
    keep = len(sys.argv) > 2
    outdir = sys.argv[2] if keep else tempfile.mkdtemp(prefix="ckpt_py2cpp_")
    try:
        names = gen_fixtures.write_all(outdir)
        for name in names:
            path = os.path.join(outdir, name)
            truth = rep.guard(name + " (torch.load)",
                              lambda: canon.canon(torch.load(os.path.join(outdir, gen_fixtures.truth_source(name)),
                                                            map_location="cpu", weights_only=False)))
            if truth is None:
                continue
            r = common.run([exe, "dump", path], timeout=120)
            if name in gen_fixtures.EXPECT_ERROR:
                want = gen_fixtures.EXPECT_ERROR[name]
                err = r.error()
                rep.check(err is not None and err.get("name") == want, name,
                          "expected typed error %s, got %s" % (want, r.describe()))
                continue
            common.check_dump(rep, name, r, truth)
    finally:
        if not keep:
            shutil.rmtree(outdir, ignore_errors=True)
    rep.finish()


if __name__ == "__main__":
    main()
