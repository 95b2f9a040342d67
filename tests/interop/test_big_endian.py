#!/usr/bin/env python3
"""A zip checkpoint saved on a big-endian host (torch >= 2.1 writes a
`byteorder` record of "big" and native-order storages) reads in libckpt with
the same values as the little-endian original. torch 1.13 predates the
record, so the big-endian file is made from a little-endian one by swapping
every storage per element (per component for complex) and rewriting
`byteorder`. Usage: test_big_endian.py CKPT_CANON"""
import os
import sys
import tempfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.require_torch()
import numpy as np  # noqa: E402
import torch  # noqa: E402

import canon  # noqa: E402

exe = common.canon_exe()
obj = {
    "f32": torch.tensor([1.5, -2.0, 3.25]),
    "f64": torch.tensor([[1e300, -0.0]], dtype=torch.float64),
    "f16": torch.tensor([0.5, 65504.0], dtype=torch.float16),
    "bf16": torch.tensor([1.0, -3.0], dtype=torch.bfloat16),
    "i64": torch.tensor([1, -2**40]),
    "i16": torch.tensor([258, -2], dtype=torch.int16),
    "c64": torch.tensor([1 + 2j, -3.5j], dtype=torch.complex64),
    "c128": torch.tensor([1e10 + 1j], dtype=torch.complex128),
    "u8": torch.tensor([1, 2, 255], dtype=torch.uint8),
    "bool": torch.tensor([True, False]),
    "view": torch.arange(6, dtype=torch.int32).reshape(2, 3).t(),
}

passed = failed = 0
with tempfile.TemporaryDirectory() as d:
    little = os.path.join(d, "le.pt")
    big = os.path.join(d, "be.pt")
    torch.save(obj, little)
    # Which storage type does each key hold? Read it off the pickle.
    import pickletools
    with zipfile.ZipFile(little) as z:
        root = z.namelist()[0].split("/")[0]
        pkl = z.read(root + "/data.pkl")
        ops = list(pickletools.genops(pkl))
        storage_of = {}
        for i, (op, arg, pos) in enumerate(ops):
            if op.name == "GLOBAL" and arg.startswith("torch ") and arg.endswith("Storage"):
                stype = arg.split()[1]
                key = ops[i + 2][1] if ops[i + 1][0].name in ("BINPUT", "LONG_BINPUT", "MEMOIZE") else ops[i + 1][1]
                storage_of[key] = stype
        unit = {"FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
                "ShortStorage": 2, "IntStorage": 4, "ComplexFloatStorage": 4, "ComplexDoubleStorage": 8,
                "ByteStorage": 1, "BoolStorage": 1}
        with zipfile.ZipFile(big, "w", zipfile.ZIP_STORED) as out:
            for info in z.infolist():
                data = z.read(info)
                rel = info.filename[len(root) + 1:]
                if rel.startswith("data/"):
                    u = unit[storage_of[rel[5:]]]
                    if u > 1:
                        data = np.frombuffer(data, dtype=np.dtype("<u%d" % u)).byteswap().tobytes()
                out.writestr(info.filename, data)
            out.writestr(root + "/byteorder", b"big")
    truth = canon.canon(torch.load(little))
    r = common.run([exe, "dump", big])
    ok = r.rc == 0 and r.json() == truth
    if not ok and r.rc == 0:
        print("first difference:", canon.first_difference(truth, r.json()))
    print(("ok   " if ok else "FAIL ") + "big-endian zip reads as the little-endian original" + ("" if ok else ": " + r.out[:300]))
    passed += ok
    failed += not ok
    # And libckpt's re-save of it is little-endian again, which torch reads.
    resaved = os.path.join(d, "resaved.pt")
    r2 = common.run([exe, "resave", big, resaved])
    ok = r2.rc == 0 and canon.canon(torch.load(resaved)) == truth
    print(("ok   " if ok else "FAIL ") + "re-saved big-endian file loads in torch with the original values")
    passed += ok
    failed += not ok
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
