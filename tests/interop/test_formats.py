#!/usr/bin/env python3
"""Detection by content and what libckpt reports about each format, on files
real PyTorch writes here: TorchScript archives, legacy streams, protocol 4,
files renamed to misleading extensions, a pickle with bytes after STOP, and
the weights_only verdict. Usage: test_formats.py CKPT_CANON"""
import collections
import os
import shutil
import sys
import tempfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.require_torch()
import torch  # noqa: E402

exe = common.canon_exe()
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + detail))
    passed += bool(ok)
    failed += not ok


def info(path):
    r = common.run([exe, "info", path])
    return r.json() if r.rc == 0 else {"error": r.out or r.err}


with tempfile.TemporaryDirectory() as d:
    p = lambda name: os.path.join(d, name)  # noqa: E731

    m = torch.jit.script(torch.nn.Linear(3, 2))
    torch.jit.save(m, p("scripted.pt"))
    i = info(p("scripted.pt"))
    check("TorchScript archive recognised", i.get("container") == "TorchScript archive", str(i)[:300])
    check("TorchScript parameters described (weight, bias)", i.get("tensors") == 2, str(i)[:300])
    check("TorchScript is not weights_only-compatible", i.get("weights_only_compatible") is False, str(i)[:300])

    sd = torch.nn.Linear(2, 2).state_dict()
    torch.save(sd, p("legacy.pt"), _use_new_zipfile_serialization=False)
    i = info(p("legacy.pt"))
    check("legacy stream recognised", i.get("container", "").startswith("legacy torch stream"), str(i)[:300])
    check("legacy stream byte order", i.get("byteorder") == "little", str(i)[:300])
    wo_ok = True
    try:
        torch.load(p("legacy.pt"), weights_only=True)
    except Exception:
        wo_ok = False
    check("legacy state dict: weights_only verdict agrees with torch.load(weights_only=True)",
          i.get("weights_only_compatible") is wo_ok and wo_ok, str(i)[:300])

    torch.save({"a": torch.ones(2)}, p("p4.pt"), pickle_protocol=4)
    i = info(p("p4.pt"))
    check("protocol 4 reported", i.get("protocol") == 4, str(i)[:300])
    check("protocol 4 is not weights_only-compatible (FRAME, STACK_GLOBAL, MEMOIZE)",
          i.get("weights_only_compatible") is False, str(i)[:300])

    torch.save(collections.OrderedDict(w=torch.ones(2)), p("plain.pt"))
    i = info(p("plain.pt"))
    check("torch 1.13 zip: version 3, aligned records", i.get("version") == "3" and i.get("aligned") is True, str(i)[:300])
    check("state dict is weights_only-compatible", i.get("weights_only_compatible") is True, str(i)[:300])
    check("zip root is the file stem", i.get("root") == "plain", str(i)[:300])

    # The name says nothing: a zip renamed .bin, a legacy file renamed .pkl.
    shutil.copy(p("plain.pt"), p("weights.bin"))
    shutil.copy(p("legacy.pt"), p("model.pkl"))
    check("zip renamed .bin still a torch zip", info(p("weights.bin")).get("container") == "torch zip")
    check("legacy renamed .pkl still legacy", info(p("model.pkl")).get("container", "").startswith("legacy"))

    # Bytes after the object's STOP are reported, not silently ignored.
    with zipfile.ZipFile(p("plain.pt")) as z, zipfile.ZipFile(p("trailing.pt"), "w") as out:
        for e in z.infolist():
            data = z.read(e)
            if e.filename.endswith("/data.pkl"):
                data += b"\x80\x02N."  # a second pickle after STOP
            out.writestr(e.filename, data)
    i = info(p("trailing.pt"))
    check("trailing bytes after STOP reported", i.get("trailing_bytes") == 4, str(i)[:300])

    # A full-model save: opaque classes, shown and never called.
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), p("module.pt"))
    i = info(p("module.pt"))
    verdicts = {g["global"]: g["verdict"] for g in i.get("globals", [])}
    check("full-model save opens with opaque classes",
          verdicts.get("torch.nn.modules.container.Sequential") == "unknown" and i.get("tensors") == 2, str(i)[:300])
    check("weights_only verdict is no for a full-model save", i.get("weights_only_compatible") is False)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
