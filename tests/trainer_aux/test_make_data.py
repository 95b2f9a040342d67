#!/usr/bin/python3
"""Tests of tests/pylib/make_cifar_bin.py: real CIFAR-10 binary and MNIST IDX layouts.

    /usr/bin/python3 tests/trainer_aux/test_make_data.py
"""
import gzip
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PYLIB = os.path.join(HERE, "..", "pylib")
sys.path.insert(0, PYLIB)
import make_cifar_bin as mk  # noqa: E402


def read_bytes(path):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        return f.read()


def nearest_mean_accuracy(xtr, ytr, xte, yte):
    xtr, xte = xtr.reshape(len(xtr), -1).astype(np.float32), xte.reshape(len(xte), -1).astype(np.float32)
    means = np.stack([xtr[ytr == c].mean(0) for c in range(10)])
    pred = ((xte[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    return (pred == yte).mean()


class Cifar(unittest.TestCase):
    def test_layout(self):
        with tempfile.TemporaryDirectory() as d:
            folder = mk.write_cifar10_bin(d, per_batch=30, test=20, seed=4)
            self.assertEqual(folder, os.path.join(d, "cifar-10-batches-bin"))
            names = sorted(os.listdir(folder))
            self.assertEqual(names, ["batches.meta.txt"] + ["data_batch_%d.bin" % i for i in range(1, 6)]
                             + ["test_batch.bin"])
            for i in range(1, 6):
                self.assertEqual(os.path.getsize(os.path.join(folder, "data_batch_%d.bin" % i)), 30 * 3073)
            self.assertEqual(os.path.getsize(os.path.join(folder, "test_batch.bin")), 20 * 3073)
            with open(os.path.join(folder, "batches.meta.txt")) as f:
                self.assertEqual([l for l in f.read().split("\n") if l], mk.CIFAR10_CLASSES)
            raw = read_bytes(os.path.join(folder, "data_batch_1.bin"))
            labels, images = mk.read_cifar10_bin(os.path.join(folder, "data_batch_1.bin"))
            self.assertEqual(raw[0], labels[0])
            self.assertEqual(raw[1:1025], images[0, 0].tobytes())        # red plane first, row-major
            self.assertEqual(raw[3073 + 1 + 1024 + 32 * 5 + 7], images[1, 1, 5, 7])  # green, row 5, col 7
            self.assertEqual(np.bincount(labels, minlength=10).tolist(), [3] * 10)
            # label 1: red bit set (base 200), green/blue base 50 -> the planes come in R, G, B order
            i = int(np.nonzero(labels == 1)[0][0])
            self.assertGreater(images[i, 0].mean(), images[i, 1].mean() + 60)

    def test_seeded_and_learnable(self):
        with tempfile.TemporaryDirectory() as d:
            a = mk.write_cifar10_bin(os.path.join(d, "a"), per_batch=40, test=100, seed=1)
            b = mk.write_cifar10_bin(os.path.join(d, "b"), per_batch=40, test=100, seed=1)
            c = mk.write_cifar10_bin(os.path.join(d, "c"), per_batch=40, test=100, seed=2)
            rd = lambda f, n: read_bytes(os.path.join(f, n))
            self.assertEqual(rd(a, "data_batch_3.bin"), rd(b, "data_batch_3.bin"))
            self.assertNotEqual(rd(a, "data_batch_3.bin"), rd(c, "data_batch_3.bin"))
            self.assertNotEqual(rd(a, "data_batch_1.bin"), rd(a, "data_batch_2.bin"))
            ytr, xtr = mk.read_cifar10_bin(os.path.join(a, "data_batch_1.bin"))
            yte, xte = mk.read_cifar10_bin(os.path.join(a, "test_batch.bin"))
            self.assertGreater(nearest_mean_accuracy(xtr, ytr, xte, yte), 0.9)
            n = mk.write_cifar10_bin(os.path.join(d, "n"), per_batch=40, test=100, seed=1, pattern="noise")
            ytr, xtr = mk.read_cifar10_bin(os.path.join(n, "data_batch_1.bin"))
            yte, xte = mk.read_cifar10_bin(os.path.join(n, "test_batch.bin"))
            self.assertLess(nearest_mean_accuracy(xtr, ytr, xte, yte), 0.4)


class Mnist(unittest.TestCase):
    def test_balanced_labels_past_256(self):  # no uint8 wrap-around
        self.assertEqual(np.bincount(mk.balanced_labels(1003, np.random.default_rng(0))).tolist(),
                         [101] * 3 + [100] * 7)

    def test_idx_against_torchvision(self):
        try:
            from torchvision.datasets.mnist import read_image_file, read_label_file
        except ImportError:
            self.skipTest("no torchvision")
        with tempfile.TemporaryDirectory() as d:
            mk.write_mnist_idx(d, train=50, test=20, seed=3)
            self.assertEqual(sorted(os.listdir(d)), sorted(sum(mk.MNIST_FILES.values(), ())))
            imgs = read_image_file(os.path.join(d, "train-images-idx3-ubyte"))
            labels = read_label_file(os.path.join(d, "train-labels-idx1-ubyte"))
            self.assertEqual(tuple(imgs.shape), (50, 28, 28))
            self.assertEqual(tuple(labels.shape), (50,))
            self.assertTrue(np.array_equal(imgs.numpy(), mk.read_idx(os.path.join(d, "train-images-idx3-ubyte"))))
            self.assertEqual(np.bincount(labels.numpy(), minlength=10).tolist(), [5] * 10)
            self.assertEqual(os.path.getsize(os.path.join(d, "t10k-images-idx3-ubyte")), 16 + 20 * 784)
            self.assertEqual(read_bytes(os.path.join(d, "t10k-labels-idx1-ubyte"))[:8],
                             b"\x00\x00\x08\x01\x00\x00\x00\x14")

    def test_gz_cli_and_learnable(self):
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([sys.executable, os.path.join(PYLIB, "make_cifar_bin.py"), "mnist", d,
                                "--train", "300", "--test", "100", "--gz", "--seed", "9"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.strip(), d)
            plain = read_bytes(os.path.join(d, "train-images-idx3-ubyte.gz"))
            self.assertEqual(plain[:16], b"\x00\x00\x08\x03\x00\x00\x01\x2c\x00\x00\x00\x1c\x00\x00\x00\x1c")
            xtr = mk.read_idx(os.path.join(d, "train-images-idx3-ubyte.gz"))
            ytr = mk.read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz"))
            xte = mk.read_idx(os.path.join(d, "t10k-images-idx3-ubyte.gz"))
            yte = mk.read_idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz"))
            self.assertGreater(nearest_mean_accuracy(xtr, ytr, xte, yte), 0.9)

    def test_real_fashion_mnist_reads(self):
        path = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"
        if not os.path.exists(path):
            self.skipTest("dataset-fashion-mnist not installed")
        self.assertEqual(mk.read_idx(path).shape, (10000,))


if __name__ == "__main__":
    unittest.main(verbosity=1)
