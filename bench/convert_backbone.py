#!/usr/bin/python3
"""The Python way to extract a Mammoth backbone (bench/run_convert.sh):
torch.load + keep the net.* keys without net. + drop aliases + torch.save.

    /usr/bin/python3 bench/convert_backbone.py IN OUT [--fsync]
"""
import collections
import os
import sys
import time

t0 = time.perf_counter()
import torch  # noqa: E402

src, out = sys.argv[1], sys.argv[2]
ck = torch.load(src, map_location="cpu")
sd = collections.OrderedDict()
seen = set()
for k, v in ck["model"].items():
    if not k.startswith("net."):
        continue
    key = (v.data_ptr(), v.dtype, tuple(v.shape), v.stride())
    if key in seen:  # an alias of an earlier key
        continue
    seen.add(key)
    sd[k[4:]] = v
torch.save(sd, out)
if "--fsync" in sys.argv:
    fd = os.open(out, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
print('{"seconds": %.6f, "keys": %d}' % (time.perf_counter() - t0, len(sd)))
