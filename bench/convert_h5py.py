#!/usr/bin/python3
"""The Python way to export a checkpoint to HDF5 (bench/run_convert.sh): torch.load,
then h5py: one group per dotted module path, one dataset per tensor with the
same attributes ckpt-convert writes (torch_dtype, shape, original_key), args
and results as JSON attributes, the same compression.

    /usr/bin/python3 bench/convert_h5py.py IN OUT none|gzip[:N]|zstd[:N]
zstd needs filter 32015 in h5py (HDF5_PLUGIN_PATH=<build>/libckpt/hdf5-plugin on Debian 12).
"""
import json
import sys
import time

t0 = time.perf_counter()
import h5py  # noqa: E402
import torch  # noqa: E402

src, out, comp = sys.argv[1], sys.argv[2], sys.argv[3]
name, _, level = comp.partition(":")
ck = torch.load(src, map_location="cpu")


def kwargs(nbytes, itemsize):
    if name == "none" or nbytes < 4096:
        return {}
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": int(level or 4), "shuffle": itemsize > 1}
    return {"compression": 32015, "compression_opts": (int(level or 3),), "shuffle": itemsize > 1}


def tensors(obj, path):
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from tensors(v, path + [str(k)] if not isinstance(k, str) else path + k.split("."))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from tensors(v, path + [str(i)])


n = 0
with h5py.File(out, "w", track_order=True) as f:
    for path, t in tensors(ck, []):
        a = t.detach().contiguous()
        if a.dtype == torch.bfloat16:
            a = a.float()
        arr = a.numpy()
        d = f.create_dataset("/".join(path), data=arr, **kwargs(arr.nbytes, arr.itemsize))
        d.attrs["torch_dtype"] = str(t.dtype).replace("torch.", "")
        d.attrs["shape"] = list(t.shape)
        d.attrs["original_key"] = path[-1]
        n += 1
    for k in ("args", "results"):
        if isinstance(ck, dict) and k in ck:
            f.attrs[k] = json.dumps(ck[k])
print('{"seconds": %.6f, "datasets": %d}' % (time.perf_counter() - t0, n))
