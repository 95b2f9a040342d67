#!/usr/bin/python3
"""Generate CIFAR-10 binary files and MNIST IDX files in their real formats.

The trainer's seq-cifar10 and seq-mnist loaders are tested on these instead of
the real (unavailable, 170 MB) downloads. Plain Python + numpy; no torch.

CIFAR-10 binary version (https://www.cs.toronto.edu/~kriz/cifar.html):
  <out>/cifar-10-batches-bin/data_batch_1.bin .. data_batch_5.bin, test_batch.bin
    each a sequence of 3073-byte records: 1 label byte (0..9), then 3072 pixel
    bytes: the 1024 red, 1024 green, 1024 blue values of a 32x32 image, rows first;
  <out>/cifar-10-batches-bin/batches.meta.txt: the 10 class names, one a line.
MNIST IDX (http://yann.lecun.com/exdb/mnist/), big-endian headers:
  train-images-idx3-ubyte  magic 0x00000803, n, 28, 28, then n*784 bytes
  train-labels-idx1-ubyte  magic 0x00000801, n, then n label bytes
  t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte  the same for the test set
  (with --gz each file is gzip-compressed and named *.gz, like the downloads).

Labels are balanced (every class the same count +-1) and shuffled with the
seed. --pattern class (default) draws class-dependent images (a per-class
colour / bright bar plus noise) so a few hundred steps learn them; --pattern
noise draws uniform noise. Same seed, same bytes.

CLI:
  make_cifar_bin.py cifar OUT [--per-batch N=100] [--test N=100] [--seed S=0] [--pattern class|noise]
  make_cifar_bin.py mnist OUT [--train N=600] [--test N=100] [--seed S=0] [--gz] [--pattern class|noise]
Both print the folder they wrote.

Python:
  write_cifar10_bin(out, per_batch=100, test=100, seed=0, pattern='class') -> folder
  read_cifar10_bin(path) -> (labels uint8 [n], images uint8 [n,3,32,32])
  write_mnist_idx(out, train=600, test=100, seed=0, gz=False, pattern='class') -> folder
  read_idx(path) -> numpy array (handles .gz)
"""
import argparse
import gzip
import os
import struct
import sys

import numpy as np

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR_FOLDER = "cifar-10-batches-bin"
CIFAR_RECORD = 1 + 3 * 32 * 32
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def balanced_labels(n, rng, n_classes=10):
    labels = (np.arange(n) % n_classes).astype(np.uint8)
    rng.shuffle(labels)
    return labels


def _cifar_images(labels, rng, pattern):
    n = len(labels)
    if pattern == "noise":
        return rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    # class c: a base colour from c's bits, a bright horizontal band at row 3c, noise on top
    base = np.stack([(labels & 1) * 150 + 50, ((labels >> 1) & 1) * 150 + 50, ((labels >> 2) & 1) * 150 + 50], 1)
    img = base[:, :, None, None].astype(np.int16) + rng.integers(-40, 41, size=(n, 3, 32, 32), dtype=np.int16)
    for i, c in enumerate(labels):
        img[i, :, 3 * int(c):3 * int(c) + 3, :] = 250
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_cifar_batch(path, labels, images):
    records = np.empty((len(labels), CIFAR_RECORD), dtype=np.uint8)
    records[:, 0] = labels
    records[:, 1:] = images.reshape(len(labels), -1)  # channel, row, column order
    with open(path, "wb") as f:
        f.write(records.tobytes())


def write_cifar10_bin(out, per_batch=100, test=100, seed=0, pattern="class"):
    """Writes <out>/cifar-10-batches-bin/ with 5 training batches of `per_batch`
    records and a test batch of `test` records. Returns that folder."""
    folder = os.path.join(out, CIFAR_FOLDER)
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = ["data_batch_%d.bin" % i for i in range(1, 6)] + ["test_batch.bin"]
    for name, n in zip(names, [per_batch] * 5 + [test]):
        labels = balanced_labels(n, rng)
        _write_cifar_batch(os.path.join(folder, name), labels, _cifar_images(labels, rng, pattern))
    with open(os.path.join(folder, "batches.meta.txt"), "w") as f:
        f.write("\n".join(CIFAR10_CLASSES) + "\n\n")
    return folder


def read_cifar10_bin(path):
    data = np.fromfile(path, dtype=np.uint8)
    if data.size % CIFAR_RECORD:
        raise ValueError("%s: %d bytes is not a multiple of %d" % (path, data.size, CIFAR_RECORD))
    records = data.reshape(-1, CIFAR_RECORD)
    return records[:, 0].copy(), records[:, 1:].reshape(-1, 3, 32, 32).copy()


def _mnist_images(labels, rng, pattern):
    n = len(labels)
    if pattern == "noise":
        return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    img = rng.integers(0, 60, size=(n, 28, 28), dtype=np.int16)
    for i, c in enumerate(labels):  # class c: a bright bar at rows 2c+4.., columns shifted by c
        r = 4 + 2 * int(c)
        img[i, r:r + 3, 2 + int(c):20 + int(c)] += 180
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_idx(path, array, gz):
    magic = {1: 0x0801, 3: 0x0803}[array.ndim]  # unsigned byte, 1 or 3 dims
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    opener = gzip.open if gz else open
    with opener(path + (".gz" if gz else ""), "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_mnist_idx(out, train=600, test=100, seed=0, gz=False, pattern="class"):
    """Writes the four MNIST IDX files into `out`. Returns `out`."""
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        labels = balanced_labels(n, rng)
        images_name, labels_name = MNIST_FILES[split]
        _write_idx(os.path.join(out, images_name), _mnist_images(labels, rng, pattern), gz)
        _write_idx(os.path.join(out, labels_name), labels, gz)
    return out


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    if magic >> 8 != 0x08:
        raise ValueError("%s: not an unsigned-byte IDX file (magic %#x)" % (path, magic))
    ndim = magic & 0xFF
    dims = struct.unpack(">%dI" % ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main(argv=None):
    p = argparse.ArgumentParser(prog="make_cifar_bin.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cifar", help="CIFAR-10 binary batches under OUT/cifar-10-batches-bin")
    c.add_argument("out")
    c.add_argument("--per-batch", type=int, default=100)
    c.add_argument("--test", type=int, default=100)
    m = sub.add_parser("mnist", help="MNIST IDX files in OUT")
    m.add_argument("out")
    m.add_argument("--train", type=int, default=600)
    m.add_argument("--test", type=int, default=100)
    m.add_argument("--gz", action="store_true")
    for s in (c, m):
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--pattern", choices=["class", "noise"], default="class")
    a = p.parse_args(argv)
    if a.cmd == "cifar":
        print(write_cifar10_bin(a.out, a.per_batch, a.test, a.seed, a.pattern))
    else:
        print(write_mnist_idx(a.out, a.train, a.test, a.seed, a.gz, a.pattern))
    return 0


if __name__ == "__main__":
    sys.exit(main())
