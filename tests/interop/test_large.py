#!/usr/bin/env python3
"""A > 4 GiB checkpoint written by libckpt (ZIP64 sizes, offsets and data
descriptors) is read by Python's zipfile and by torch.load, with the tensor
stored past the 4 GiB mark intact.  Usage: test_large.py WRITE_LARGE"""
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

try:
    import torch
except ImportError:
    print("torch not importable by", sys.executable)
    sys.exit(77)

writer = sys.argv[1]
failed = 0
tmp = os.environ.get("CKPT_LARGE_TMP", "/tmp")
free = shutil.disk_usage(tmp).free
if free < 12 << 30:
    print(f"SKIP: {tmp} has {free >> 30} GiB free; this test needs 12 (a 4.3 GB file, plus torch.load's copy in RAM)")
    sys.exit(77)
with tempfile.TemporaryDirectory(dir=tmp) as d:
    path = os.path.join(d, "large.pt")
    out = subprocess.run([writer, path], capture_output=True, text=True)
    if out.returncode != 0:
        print("write_large failed:", out.stderr)
        sys.exit(1)
    size = os.path.getsize(path)
    checks = []
    checks.append(("file is larger than 4 GiB", size > 4 << 30))
    checks.append(("writer reports the file size", int(out.stdout.strip()) == size))
    with zipfile.ZipFile(path) as z:
        infos = {i.filename: i for i in z.infolist()}
        checks.append(("zipfile sees the records", "large/data/1" in infos and "large/version" in infos))
        checks.append(("big record size", infos["large/data/0"].file_size == (4 << 30) + 12345))
        checks.append(("second record past 4 GiB", infos["large/data/1"].header_offset > 4 << 30))
        checks.append(("zipfile reads (and CRC-checks) a record past 4 GiB",
                       z.read("large/data/1") == torch.tensor([1.5, 3.0, 4.5, 6.0]).numpy().tobytes()))
    obj = torch.load(path)
    checks.append(("torch.load: small tensor after the big one",
                   torch.equal(obj["after"], torch.tensor([1.5, 3.0, 4.5, 6.0]))))
    checks.append(("torch.load: big tensor shape", obj["big"].shape == ((4 << 30) + 12345,)))
    checks.append(("torch.load: big tensor zero at both ends", int(obj["big"][0]) == 0 and int(obj["big"][-1]) == 0))
    checks.append(("torch.load: string", obj["note"] == "written past 4 GiB"))
    del obj
    for name, ok in checks:
        print(("ok   " if ok else "FAIL ") + name)
        failed += 0 if ok else 1
print(f"{len(checks) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
