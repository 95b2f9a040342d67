#!/usr/bin/env python3
"""libckpt's weights_only verdict against what torch 1.13's
torch.load(weights_only=True) did on every corpus file (MANIFEST.txt).

torch 1.13 lacks BINFLOAT in its weights_only unpickler ('Unsupported
operand 71'); torch >= 2.1, whose rules libckpt follows, has it. So:
  WO OK                         -> libckpt must say compatible;
  WO FAIL: Unsupported operand 71 -> compatible unless something else rules it out
                                    (not checked either way);
  WO FAIL: anything else        -> libckpt must say not compatible (or refuse the file).
Usage: test_weights_only_verdict.py CKPT_CANON"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import common  # noqa: E402

exe = common.canon_exe()
corpus = os.environ.get("CKPT_CORPUS") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                                       "shared", "corpus")
manifest = os.path.join(corpus, "MANIFEST.txt")
if not os.path.exists(manifest):
    print("SKIP: no corpus at", corpus)
    sys.exit(77)

entries = {}
current = None
for line in open(manifest, encoding="utf-8"):
    m = re.match(r"^== (\S+)", line)
    if m:
        current = m.group(1)
    m = re.match(r"^\s+torch 1\.13\.1 WO:\s+(OK|FAIL)\|?(.*)$", line)
    if m and current:
        entries[current] = (m.group(1), m.group(2))

passed = failed = 0
for rel, (verdict, detail) in sorted(entries.items()):
    if rel.startswith("malicious/"):
        continue
    r = common.run([exe, "info", os.path.join(corpus, rel)])
    ours = r.json().get("weights_only_compatible") if r.rc == 0 else None  # None: refused
    if verdict == "OK":
        ok = ours is True
    elif "Unsupported operand 71" in detail:
        continue  # a torch 1.13 gap, not a verdict
    else:
        ok = ours is not True
    if not ok:
        print(f"FAIL {rel}: torch 1.13 WO {verdict} ({detail[:80]}), libckpt says {ours}")
    passed += ok
    failed += not ok
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
