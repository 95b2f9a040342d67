#!/usr/bin/python3
"""Tests of bench/trainer_ref.py (the Python reference the trainer benchmark runs beside).

    /usr/bin/python3 tests/trainer_aux/test_trainer_ref.py
"""
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "tests", "pylib"))

try:
    import torch
except ImportError as e:  # pragma: no cover
    print("SKIP: no torch: %s" % e)
    sys.exit(77)

import make_cifar_bin as mk  # noqa: E402
import trainer_ref  # noqa: E402

trainer_ref.import_libs()


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = trainer_ref.main(list(argv))
    lines = out.getvalue().strip().splitlines()
    return rc, json.loads(lines[-1]) if lines else None, err.getvalue()


class DataOrder(unittest.TestCase):
    def test_matches_a_real_dataloader(self):
        n, seed = 37, 1993
        loader = torch.utils.data.DataLoader(list(range(n)), batch_size=5, shuffle=True,
                                             generator=torch.Generator().manual_seed(seed))
        real = [torch.cat(list(loader)).tolist() for _ in range(3)]  # 3 epochs, one loader
        ours = [p.tolist() for p in trainer_ref.mammoth_order(n, seed, 3)]
        self.assertEqual(ours, real)
        self.assertNotEqual(ours[0], ours[1])
        # a new loader (a new task) restarts the stream from the seed (Q20)
        self.assertEqual(next(trainer_ref.mammoth_order(n, seed, 1)).tolist(), real[0])

    def test_task_split(self):
        y = torch.tensor([0, 3, 2, 1, 9, 8, 2, 5])
        self.assertEqual(trainer_ref.task_indices(y, 0).tolist(), [0, 3])
        self.assertEqual(trainer_ref.task_indices(y, 1).tolist(), [1, 2, 6])
        self.assertEqual(trainer_ref.task_indices(y, 4).tolist(), [4, 5])


class Training(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.mnist = mk.write_mnist_idx(os.path.join(cls.tmp.name, "mnist"), train=1000, test=200, seed=1, gz=True)
        cls.cifar = mk.write_cifar10_bin(os.path.join(cls.tmp.name, "cifar"), per_batch=20, test=20, seed=1)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_sgd_on_generated_mnist(self):
        rc, r, log = run("--dataset", "seq-mnist", "--data_path", self.mnist, "--batch_size", "10", "--seed", "3")
        self.assertEqual(rc, 0)
        self.assertEqual([len(row) for row in r["class_il"]], [1, 2, 3, 4, 5])
        self.assertEqual(r["train_samples"], 1000)
        self.assertEqual(r["train_steps"], 5 * 20)
        self.assertGreater(r["class_il"][0][0], 90.0)      # the generated classes are learnable
        for c_row, t_row in zip(r["class_il"], r["task_il"]):
            for c, t in zip(c_row, t_row):
                self.assertGreaterEqual(t, c)               # Task-IL can only help
        self.assertLess(r["class_il"][-1][0], 50.0)         # sgd forgets task 0 (class-IL)
        self.assertAlmostEqual(r["mean_class_il"], sum(r["class_il"][-1]) / 5)
        self.assertEqual(r["threads"]["OMP_NUM_THREADS"], "1")
        self.assertIn("task 5:", log)
        rc, again, _ = run("--dataset", "seq-mnist", "--data_path", self.mnist, "--batch_size", "10", "--seed", "3")
        self.assertEqual((again["class_il"], again["task_il"]), (r["class_il"], r["task_il"]))
        rc, other, _ = run("--dataset", "seq-mnist", "--data_path", self.mnist, "--batch_size", "10", "--seed", "4")
        self.assertNotEqual(other["class_il"], r["class_il"])

    def test_rehearsal_beats_sgd(self):
        args = ["--dataset", "seq-mnist", "--data_path", self.mnist, "--batch_size", "10", "--seed", "2",
                "--lr", "0.05", "--non_verbose"]
        _, sgd, _ = run(*args)
        for model in ("er", "der", "derpp"):
            rc, r, _ = run(*args, "--model", model, "--buffer_size", "100")
            self.assertEqual(rc, 0)
            self.assertEqual(r["buffer_size"], 100)
            self.assertGreater(r["mean_class_il"], sgd["mean_class_il"] + 10, model)

    def test_limits_and_cifar(self):
        rc, r, _ = run("--dataset", "seq-cifar10", "--data_path", self.cifar, "--batch_size", "2", "--max_steps", "2",
                       "--stop_after", "2", "--model", "derpp", "--buffer_size", "2", "--non_verbose")
        self.assertEqual(rc, 0)
        self.assertEqual(r["backbone"], "resnet18")
        self.assertEqual(r["train_steps"], 4)
        self.assertEqual(r["train_samples"], 8)
        self.assertEqual(len(r["class_il"]), 2)
        rc, r, _ = run("--dataset", "seq-mnist", "--data_path", self.mnist, "--max_samples_per_task", "30",
                       "--batch_size", "7", "--eval", "0", "--non_verbose")
        self.assertEqual(r["train_samples"], 5 * 30)
        self.assertEqual(r["train_steps"], 5 * 5)
        self.assertEqual(r["class_il"], [])

    def test_augment_shapes_and_normalisation(self):
        aug = trainer_ref.CifarAugment()
        x = torch.rand(6, 3, 32, 32)
        y = aug(x)
        self.assertEqual(tuple(y.shape), (6, 3, 32, 32))
        zeros = aug(torch.zeros(4, 3, 32, 32))  # every pixel is -mean/std after any crop or flip
        expect = (-torch.tensor(trainer_ref.CIFAR_MEAN) / torch.tensor(trainer_ref.CIFAR_STD)).view(1, 3, 1, 1)
        self.assertTrue(torch.allclose(zeros, expect.expand_as(zeros)))


class Cli(unittest.TestCase):
    def test_errors(self):
        script = os.path.join(REPO, "bench", "trainer_ref.py")
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([sys.executable, script, "--dataset", "seq-mnist", "--data_path", d],
                               capture_output=True, text=True, timeout=120)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("train-images-idx3-ubyte", r.stderr)
            self.assertIn("t10k-labels-idx1-ubyte", r.stderr)
        cpus = len(os.sched_getaffinity(0))
        with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
            trainer_ref.parse_args(["--threads", str(cpus), "--blas_threads", "2"])


if __name__ == "__main__":
    unittest.main(verbosity=1)
