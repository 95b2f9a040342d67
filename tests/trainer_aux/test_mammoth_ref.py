#!/usr/bin/python3
"""Tests of tests/pylib/mammoth_ref.py against real torch (and mammoth.md).

    /usr/bin/python3 tests/trainer_aux/test_mammoth_ref.py
"""
import collections
import io
import os
import pickle
import subprocess
import sys
import tempfile
import unittest
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
PYLIB = os.path.join(HERE, "..", "pylib")
sys.path.insert(0, PYLIB)

try:
    import torch
    import numpy as np
except ImportError as e:  # pragma: no cover
    print("SKIP: no torch in %s: %s" % (sys.executable, e))
    sys.exit(77)

import mammoth_ref as mr  # noqa: E402

MLP_KEYS = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "_features.0.weight", "_features.0.bias",
            "_features.2.weight", "_features.2.bias", "classifier.weight", "classifier.bias", "net.0.0.weight",
            "net.0.0.bias", "net.0.2.weight", "net.0.2.bias", "net.1.weight", "net.1.bias"]


def tensors_equal(a, b):
    return list(a.keys()) == list(b.keys()) and all(torch.equal(a[k], b[k]) for k in a)


class Backbones(unittest.TestCase):
    def test_mnistmlp_keys_aliases_init(self):
        torch.manual_seed(1)
        net = mr.MNISTMLP()
        sd = net.state_dict()
        self.assertEqual(list(sd.keys()), MLP_KEYS)
        self.assertEqual(len({t.data_ptr() for t in sd.values()}), 6)
        self.assertEqual(sd["net.0.0.weight"].data_ptr(), sd["fc1.weight"].data_ptr())
        self.assertEqual(sd["net.1.bias"].data_ptr(), sd["classifier.bias"].data_ptr())
        self.assertEqual(sum(p.numel() for p in net.parameters()), 89610)
        self.assertEqual([n for n, _ in net.named_parameters()],
                         ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "classifier.weight", "classifier.bias"])
        bound = (3 ** 0.5) * (2.0 / (784 + 100)) ** 0.5
        w = sd["fc1.weight"]
        self.assertLessEqual(w.abs().max().item(), bound)
        self.assertGreater(w.abs().max().item(), 0.99 * bound)
        self.assertAlmostEqual(w.std().item(), bound / 3 ** 0.5, delta=0.02 * bound)
        self.assertTrue(all(sd[k].abs().sum() == 0 for k in ("fc1.bias", "fc2.bias", "classifier.bias")))
        self.assertEqual(net(torch.rand(3, 1, 28, 28)).shape, (3, 10))

    def test_resnet18_keys(self):
        net = mr.resnet18()
        sd = net.state_dict()
        keys = list(sd.keys())
        self.assertEqual(len(keys), 122)
        self.assertEqual(sum(p.numel() for p in net.parameters()), 11173962)
        self.assertEqual(len(list(net.parameters())), 62)
        self.assertEqual(keys[:6], ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                                    "bn1.running_var", "bn1.num_batches_tracked"])
        self.assertEqual(keys[-2:], ["classifier.weight", "classifier.bias"])
        for layer, (cout, cin) in {2: (128, 64), 3: (256, 128), 4: (512, 256)}.items():
            self.assertEqual(tuple(sd["layer%d.0.shortcut.0.weight" % layer].shape), (cout, cin, 1, 1))
            self.assertIn("layer%d.0.shortcut.1.num_batches_tracked" % layer, sd)
        self.assertNotIn("layer1.0.shortcut.0.weight", sd)
        self.assertEqual(sd["layer4.1.bn2.num_batches_tracked"].dtype, torch.int64)
        self.assertEqual(sd["layer4.1.bn2.num_batches_tracked"].dim(), 0)
        # block order: conv1, bn1 (5), conv2, bn2 (5), shortcut.0, shortcut.1 (5)
        i = keys.index("layer2.0.conv1.weight")
        self.assertEqual(keys[i + 6], "layer2.0.conv2.weight")
        self.assertEqual(keys[i + 12], "layer2.0.shortcut.0.weight")
        self.assertEqual(net(torch.randn(2, 3, 32, 32)).shape, (2, 10))

    def test_continual_model_prefix(self):
        m = mr.ContinualModel(mr.MNISTMLP())
        self.assertEqual(list(m.state_dict().keys()), ["net." + k for k in MLP_KEYS])


class RoundTrip(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def _saved_model(self, model="sgd", buffer_size=0, mode="safe", arch="mnistmlp"):
        torch.manual_seed(3)
        np.random.seed(3)
        args = mr.mammoth_args(model, "seq-mnist", arch, **({"buffer_size": buffer_size} if buffer_size else {}))
        m = mr.ContinualModel(mr.make_backbone(arch), args)
        opt = torch.optim.SGD(m.net.parameters(), lr=0.1, momentum=0.9)
        x = torch.rand(4, 1, 28, 28) if arch == "mnistmlp" else torch.randn(4, 3, 32, 32)
        torch.nn.functional.cross_entropy(m(x), torch.tensor([0, 1, 2, 3])).backward()
        opt.step()
        buf = None
        if buffer_size:
            xs = torch.rand(buffer_size * 2, 1, 28, 28)
            with torch.no_grad():
                m.buffer.add_data(xs, labels=torch.randint(0, 10, (buffer_size * 2,)), logits=m.net(xs))
            buf = m.buffer
        res = mr.make_results([[99.0], [90.5, 97.25]], [[99.5], [98.0, 99.0]])
        p = self.path("%s_%s.pt" % (model, mode))
        mr.save_mammoth_checkpoint(p, m, opt, None, args, res, buf, mode)
        return m, p

    def test_safe_layout(self):
        m, p = self._saved_model("derpp", buffer_size=20)
        obj = torch.load(p, weights_only=False)
        self.assertEqual(list(obj.keys()), ["model", "optimizer", "scheduler", "args", "results", "buffer"])
        self.assertIsInstance(obj["model"], collections.OrderedDict)
        self.assertEqual(list(obj["model"].keys()), ["net." + k for k in MLP_KEYS])
        self.assertEqual(obj["model"]["net.net.0.0.weight"].data_ptr(), obj["model"]["net.fc1.weight"].data_ptr())
        self.assertIsNone(obj["scheduler"])
        self.assertEqual(obj["optimizer"]["param_groups"][0]["params"], [0, 1, 2, 3, 4, 5])
        self.assertIn("momentum_buffer", obj["optimizer"]["state"][0])
        self.assertIs(type(obj["args"]), dict)
        self.assertEqual(obj["args"]["minibatch_size"], obj["args"]["batch_size"])
        results, masked, logger = obj["results"]
        self.assertEqual(results, [[99.0], [90.5, 97.25]])
        self.assertEqual(masked, [[99.5], [98.0, 99.0]])
        self.assertEqual(logger["accs"], ["99.0", "93.875"])  # quirk Q3: numpy means become str
        self.assertEqual(logger["accs_mask_classes"], ["99.5", "98.5"])
        self.assertEqual(list(logger.keys())[:8], ["accs", "fullaccs", "fwt", "bwt", "forgetting",
                                                   "fwt_mask_classes", "bwt_mask_classes", "forgetting_mask_classes"])
        self.assertEqual(list(obj["buffer"].keys()), ["examples", "labels", "logits"])
        self.assertEqual(tuple(obj["buffer"]["examples"].shape), (20, 1, 28, 28))
        self.assertEqual(mr.check_globals_allowlisted(p),
                         ["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.FloatStorage",
                          "torch.LongStorage"])
        with zipfile.ZipFile(p) as z:
            stem = os.path.splitext(os.path.basename(p))[0]
            self.assertIn(stem + "/data.pkl", z.namelist())
            self.assertEqual(z.read(stem + "/version"), b"3\n")

    def test_write_then_load(self):
        m, p = self._saved_model("derpp", buffer_size=20)
        fresh = mr.ContinualModel(mr.MNISTMLP(), {"model": "derpp", "buffer_size": 20})
        self.assertFalse(tensors_equal(fresh.state_dict(), m.state_dict()))
        _, results = mr.mammoth_load_checkpoint(p, fresh)
        self.assertTrue(tensors_equal(fresh.state_dict(), m.state_dict()))
        self.assertEqual(results[0], [[99.0], [90.5, 97.25]])
        self.assertTrue(torch.equal(fresh.buffer.logits, m.buffer.logits))
        self.assertEqual(fresh.buffer.num_seen_examples, 20)  # Mammoth's reset (Q7), not the true 40
        self.assertEqual(m.buffer.num_seen_examples, 40)

    def test_buffer_size_mismatch_fails(self):
        _, p = self._saved_model("er", buffer_size=20)
        fresh = mr.ContinualModel(mr.MNISTMLP(), {"model": "er", "buffer_size": 10})
        with self.assertRaises(mr.LoadError):
            mr.mammoth_load_checkpoint(p, fresh)

    def test_missing_alias_key_fails(self):
        m, p = self._saved_model()
        obj = torch.load(p, weights_only=False)
        del obj["model"]["net._features.0.weight"]
        q = self.path("missing.pt")
        torch.save(obj, q)
        with self.assertRaises(mr.LoadError) as cm:
            mr.mammoth_load_checkpoint(q, mr.ContinualModel(mr.MNISTMLP()))
        self.assertEqual(cm.exception.missing, ["net._features.0.weight"])
        self.assertEqual(cm.exception.unexpected, [])

    def test_extra_key_fails_and_extra_toplevel_is_ignored(self):
        m, p = self._saved_model()
        obj = torch.load(p, weights_only=False)
        obj["cpp_state"] = {"num_seen_examples": torch.tensor(7)}  # unknown top-level keys are fine
        q = self.path("extra_top.pt")
        torch.save(obj, q)
        mr.mammoth_load_checkpoint(q, mr.ContinualModel(mr.MNISTMLP()))
        obj["model"]["net.extra.weight"] = torch.zeros(1)
        torch.save(obj, q)
        with self.assertRaises(mr.LoadError) as cm:
            mr.mammoth_load_checkpoint(q, mr.ContinualModel(mr.MNISTMLP()))
        self.assertEqual(cm.exception.unexpected, ["net.extra.weight"])

    def test_prefixes_and_plain_backbones(self):
        torch.manual_seed(5)
        net = mr.MNISTMLP()
        sd = net.state_dict()
        unique = collections.OrderedDict((k, v) for k, v in sd.items() if not k.startswith(("_features", "net.")))
        cases = {
            "module_unique": (collections.OrderedDict(("module." + k, v) for k, v in unique.items()), True),
            "net_full": (collections.OrderedDict(("net." + k, v) for k, v in sd.items()), True),
            "module_net_full": (collections.OrderedDict(("module.net." + k, v) for k, v in sd.items()), True),
            "raw_full": (sd, False),  # Q15: 'net' in k -> k[4:] mangles net.0.0.weight
        }
        for name, (state, ok) in cases.items():
            q = self.path(name + ".pt")
            torch.save(state, q)
            fresh = mr.ContinualModel(mr.MNISTMLP())
            if ok:
                _, res = mr.mammoth_load_checkpoint(q, fresh)
                self.assertIsNone(res)
                self.assertTrue(torch.equal(fresh.net.fc1.weight, net.fc1.weight), name)
                self.assertTrue(torch.equal(fresh.net.classifier.weight, net.classifier.weight), name)
            else:
                with self.assertRaises(mr.LoadError, msg=name):
                    mr.mammoth_load_checkpoint(q, fresh)
        # without the classifier: fine with ignore_classifier, the head keeps its init
        q = self.path("nohead.pt")
        torch.save(collections.OrderedDict((k, v) for k, v in unique.items() if "classifier" not in k), q)
        fresh = mr.ContinualModel(mr.MNISTMLP())
        head = fresh.net.classifier.weight.clone()
        mr.mammoth_load_checkpoint(q, fresh, ignore_classifier=True)
        self.assertTrue(torch.equal(fresh.net.fc2.weight, net.fc2.weight))
        self.assertTrue(torch.equal(fresh.net.classifier.weight, head))

    def test_old_pickle_is_refused(self):
        _, p = self._saved_model("er", buffer_size=10, mode="old_pickle")
        with zipfile.ZipFile(p) as z:
            stem = os.path.splitext(os.path.basename(p))[0]
            pkl = z.read(stem + "/data.pkl")
        self.assertIn(b"argparse\nNamespace", pkl)
        self.assertIn(b"utils.buffer\nBuffer", pkl)
        with self.assertRaises(mr.WeightsOnlyError) as cm:
            mr.mammoth_load_checkpoint(p, mr.ContinualModel(mr.MNISTMLP()))
        self.assertIn("argparse.Namespace", cm.exception.bad_globals)
        self.assertNotIn("utils", sys.modules)  # the stand-in module is gone again

    def test_resnet18_roundtrip_with_module_prefix(self):
        torch.manual_seed(2)
        m = mr.ContinualModel(mr.resnet18())
        state = collections.OrderedDict(("module." + k, v) for k, v in m.state_dict().items())
        p = self.path("r.pt")
        mr.save_mammoth_checkpoint(p, state, None, None, mr.mammoth_args("sgd", "seq-cifar10"),
                                   mr.make_results([[50.0]], [[90.0]]))
        fresh = mr.ContinualModel(mr.resnet18())
        mr.mammoth_load_checkpoint(p, fresh)
        self.assertTrue(tensors_equal(fresh.state_dict(), m.state_dict()))


class WeightsOnly(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def _zip_with_pickle(self, name, payload):
        p = os.path.join(self.dir, name + ".pt")
        with zipfile.ZipFile(p, "w") as z:
            z.writestr(name + "/data.pkl", payload)
            z.writestr(name + "/version", "3\n")
        return p

    def test_malicious_global_is_flagged_without_running(self):
        marker = os.path.join(self.dir, "pwned")
        payload = b"\x80\x02cposix\nsystem\nq\x00X" + len("touch " + marker).to_bytes(4, "little") + \
            ("touch " + marker).encode() + b"\x85R."
        p = self._zip_with_pickle("evil", payload)
        with self.assertRaises(mr.WeightsOnlyError) as cm:
            mr.check_globals_allowlisted(p)
        self.assertEqual(cm.exception.bad_globals, ["posix.system"])
        with self.assertRaises(mr.WeightsOnlyError):
            mr.load_weights_only(p)
        self.assertFalse(os.path.exists(marker))
        with self.assertRaises(Exception):  # torch 1.13's own weights_only refuses it too
            torch.load(p, weights_only=True)
        self.assertFalse(os.path.exists(marker))

    def test_protocol4_opcodes_are_flagged(self):
        p = os.path.join(self.dir, "p4.pt")
        torch.save({"w": torch.zeros(2)}, p, pickle_protocol=4)
        with self.assertRaises(mr.WeightsOnlyError) as cm:
            mr.check_globals_allowlisted(p)
        self.assertIn("STACK_GLOBAL", cm.exception.bad_opcodes)

    def test_agrees_with_torch_113_where_it_can(self):
        # files without Python floats: torch 1.13's weights_only unpickler is the oracle
        p = os.path.join(self.dir, "plain.pt")
        torch.save(collections.OrderedDict(w=torch.ones(3), n=torch.tensor(3)), p)
        mr.check_globals_allowlisted(p)
        torch.load(p, weights_only=True)
        q = os.path.join(self.dir, "ns.pt")
        import argparse
        torch.save({"args": argparse.Namespace(a=1)}, q)
        with self.assertRaises(mr.WeightsOnlyError):
            mr.check_globals_allowlisted(q)
        with self.assertRaises(pickle.UnpicklingError):
            torch.load(q, weights_only=True)

    def test_legacy_stream(self):
        p = os.path.join(self.dir, "legacy.pt")
        torch.save({"w": torch.ones(2)}, p, _use_new_zipfile_serialization=False)
        self.assertIn("torch.FloatStorage", mr.check_globals_allowlisted(p))

    def test_truncated_zip_record(self):
        p = self._zip_with_pickle("cut", b"\x80\x02}q\x00(X\x01\x00\x00")
        with self.assertRaises(mr.WeightsOnlyError):
            mr.check_globals_allowlisted(p)


class Helpers(unittest.TestCase):
    def test_to_parsable_obj_quirks(self):
        import argparse
        out = mr.to_parsable_obj({"a": np.float64(1.5), "b": 2.5, "c": [np.int64(3)], "d": None,
                                  "e": torch.device("cpu"), "f": (7,), "g": np.array([1, 2]),
                                  "h": argparse.Namespace(x=True)})
        self.assertEqual(out, {"a": "1.5", "b": 2.5, "c": ["3"], "d": None, "e": "cpu", "f": "(7,)",
                               "g": [1, 2], "h": {"x": True}})

    def test_names(self):
        n = mr.mammoth_ckpt_name("ewc_on", "seq_mnist", 0, 1, ckpt_name="A", timestamp="20261129-025403",
                                 uid="e887441c")
        self.assertEqual(n, "A_ewc-on_seq-mnist_None_0_1_20261129-025403_e887441c")
        self.assertEqual(mr.mammoth_ckpt_filename(n, 4), n + "_4.pt")
        self.assertEqual(mr.mammoth_ckpt_filename(n, 4, "last"), n + "_last.pt")
        self.assertEqual(mr.mammoth_ckpt_filename(n, 0, "task", joint=True), n + "_joint.pt")
        d = mr.parse_ckpt_name("C_derpp_safe_task_derpp_seq-mnist_None_50_1_20261129-030314_fb0c44a0_2.pt")
        self.assertEqual((d["prefix"], d["model"], d["dataset"], d["buffer_size"], d["uid"], d["task"]),
                         ("C_derpp_safe_task", "derpp", "seq-mnist", "50", "fb0c44a0", "2"))
        d = mr.parse_ckpt_name("sgd_seq-cifar10_0_50_20261129-030314_last.pt")  # the documented form
        self.assertEqual((d["model"], d["dataset"], d["buffer_size"], d["n_epochs"], d["task"]),
                         ("sgd", "seq-cifar10", "0", "50", "last"))
        self.assertIsNone(mr.parse_ckpt_name("model.pt"))


class Cli(unittest.TestCase):
    """The CLI in-process through main() (torch imports are slow here), plus one real subprocess."""

    def run_main(self, *args):
        import contextlib
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            rc = mr.main(list(args))
        return rc, out.getvalue()

    def test_write_load_globals(self):
        with tempfile.TemporaryDirectory() as d:
            a = os.path.join(d, "a.pt")
            r = subprocess.run([sys.executable, os.path.join(PYLIB, "mammoth_ref.py"), "write", "--arch", "mnistmlp",
                                "--out", a, "--prefix", "module.", "--model", "der", "--buffer-size", "8"],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.strip(), a)
            rc, out = self.run_main("load", a, "--arch", "mnistmlp", "--model", "der", "--buffer-size", "8", "--json")
            self.assertEqual(rc, 0, out)
            self.assertIn('"logits": [8, 10]', out)
            self.assertEqual(self.run_main("globals", a)[0], 0)
            b = os.path.join(d, "b.pt")
            self.assertEqual(self.run_main("write", "--arch", "mnistmlp", "--kind", "backbone", "--out", b)[0], 0)
            rc, out = self.run_main("load", b, "--arch", "mnistmlp")
            self.assertEqual(rc, 1)
            self.assertIn("unexpected: 0.0.weight", out)
            c = os.path.join(d, "c.pt")
            self.assertEqual(self.run_main("write", "--arch", "mnistmlp", "--kind", "backbone", "--keys", "unique",
                                           "--prefix", "module.", "--out", c)[0], 0)
            self.assertEqual(self.run_main("load", c, "--arch", "mnistmlp")[0], 0)
            o = os.path.join(d, "o.pt")
            self.assertEqual(self.run_main("write", "--arch", "mnistmlp", "--mode", "old_pickle", "--out", o)[0], 0)
            rc, out = self.run_main("globals", o)
            self.assertEqual(rc, 1)
            self.assertIn("BAD argparse.Namespace", out)
            self.assertEqual(self.run_main("load", os.path.join(d, "nope.pt"), "--arch", "mnistmlp")[0], 2)


if __name__ == "__main__":
    unittest.main(verbosity=1)
