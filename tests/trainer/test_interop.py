#!/usr/bin/python3
"""ckpt-train's files against real PyTorch and Mammoth's loader, both ways.

* Saved checkpoints pass the weights_only allowlist check and load through
  the re-implemented mammoth_load_checkpoint with a strict load_state_dict
  (MNISTMLP with its 16 aliased keys; CIFAR ResNet-18 with 122 keys; the
  rehearsal buffer).
* The optimizer and scheduler entries have torch's exact structure: real
  torch.optim objects load them, and their own state_dict() has the same
  keys, order and value kinds.
* --loadcheck takes a Mammoth-written checkpoint and plain backbone .pt
  files with module./net. prefixes, with or without a classifier.
* The issue's seed command runs (on generated CIFAR-10 binary files) and,
  without data, fails naming the files it expects.
* Every dataset and --joint run; domain-IL results follow Mammoth's shape.
* --model_config best (and --load_best_args) fill in the best arguments below
  the command line, and the saved args record them.
"""
import http.server
import json
import os
import subprocess
import sys
import threading

import torch

import trainer_lib as tl
from trainer_lib import mammoth_ref

sys.path.insert(0, os.path.join(tl.ROOT, "tests", "pylib"))
import make_cifar_bin  # noqa: E402

SMALL = ["--max_samples_per_task", 200, "--batch_size", 10, "--non_verbose", 1]
MREF = os.path.join(tl.ROOT, "tests", "pylib", "mammoth_ref.py")


def mammoth_load(path, arch, model="sgd", buffer_size=None):
    cmd = ["/usr/bin/python3", MREF, "load", path, "--arch", arch, "--model", model, "--json"]
    if buffer_size:
        cmd += ["--buffer-size", str(buffer_size)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    report = json.loads(p.stdout)
    assert p.returncode == 0 and report["ok"], "Mammoth's loader refused %s: %s" % (path, report)
    return report


def test_mlp_checkpoint_loads_in_mammoth():
    d = tl.tmpdir("mlp")
    tl.run(["--lr", 0.03, "--seed", 1, "--savecheck", "task", "--stop_after", 2] + SMALL, d)
    files = sorted(os.listdir(os.path.join(d, "checkpoints")))
    assert len(files) == 2 and files[0].startswith("sgd_seq-fashion-mnist_0_1_") and files[0].endswith("_0.pt"), files
    path = os.path.join(d, "checkpoints", files[1])
    mammoth_load(path, "mnistmlp")
    ck = tl.load(path)
    assert list(ck.keys())[:5] == ["model", "optimizer", "scheduler", "args", "results"], list(ck.keys())
    ref = mammoth_ref.ContinualModel(mammoth_ref.make_backbone("mnistmlp"), {"model": "sgd"}).state_dict()
    assert list(ck["model"].keys()) == list(ref.keys()) and len(ref) == 16
    m = ck["model"]
    for a, b in [("net.fc1.weight", "net._features.0.weight"), ("net.fc1.weight", "net.net.0.0.weight"),
                 ("net.classifier.bias", "net.net.1.bias")]:
        assert m[a].data_ptr() == m[b].data_ptr(), "%s and %s do not share storage" % (a, b)
    assert ck["scheduler"] is None and isinstance(ck["args"], dict)
    results, masked, logger = ck["results"]
    assert len(results) == 2 and all(isinstance(x, float) for row in results for x in row)
    assert all(isinstance(x, float) for x in logger["accs"]), logger["accs"]
    assert set(logger) == {"accs", "fullaccs", "fwt", "bwt", "forgetting", "fwt_mask_classes", "bwt_mask_classes",
                           "forgetting_mask_classes", "accs_mask_classes", "fullaccs_mask_classes"}
    assert logger["bwt"] == results[1][0] - results[0][0]


def test_derpp_buffer_loads_in_mammoth():
    d = tl.tmpdir("derpp")
    tl.run(["--model", "derpp", "--buffer_size", 50, "--alpha", 0.1, "--beta", 0.5, "--lr", 0.03, "--seed", 2,
            "--savecheck", "last", "--stop_after", 2] + SMALL, d)
    path = tl.only(os.path.join(d, "checkpoints"), "_last.pt")
    report = mammoth_load(path, "mnistmlp", "derpp", 50)
    ck = tl.load(path)
    b = ck["buffer"]
    assert sorted(b) == ["examples", "labels", "logits"], sorted(b)
    assert b["examples"].shape == (50, 1, 28, 28) and b["labels"].dtype == torch.int64 and b["logits"].shape == (50, 10)
    assert ck["buffer_state"]["num_seen_examples"] == 400, ck["buffer_state"]  # the true count, 2 x 200
    assert report["buffer"] is not None


def test_optimizer_and_scheduler_have_torch_structure():
    for extra, opt_cls, sched in [
        (["--optim_mom", 0.9, "--lr_scheduler", "multisteplr", "--lr_milestones", 1, 3], torch.optim.SGD, "multistep"),
        (["--optimizer", "adam", "--lr_scheduler", "cosine"], torch.optim.Adam, "cosine")]:
        d = tl.tmpdir("optim")
        tl.run(["--lr", 0.01, "--n_epochs", 2, "--stop_after", 1, "--savecheck", "last", "--seed", 3] + extra + SMALL, d)
        ck = tl.load(tl.only(os.path.join(d, "checkpoints"), "_last.pt"))
        net = mammoth_ref.make_backbone("mnistmlp")
        if opt_cls is torch.optim.SGD:
            opt = opt_cls(net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0, nesterov=False)
            s = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1, 3], gamma=0.1)
        else:
            opt = opt_cls(net.parameters(), lr=0.01, weight_decay=0.0)
            s = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2)
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        for _ in range(2):
            opt.step()
            s.step()
        want, got = opt.state_dict(), ck["optimizer"]
        assert list(got["param_groups"][0].keys()) == list(want["param_groups"][0].keys()), (got["param_groups"], want["param_groups"])
        for k, v in want["param_groups"][0].items():
            assert type(got["param_groups"][0][k]) in (type(v), int, float) or v is None, k
        assert sorted(got["state"].keys()) == list(range(6))
        assert list(got["state"][0].keys()) == list(want["state"][0].keys())
        assert list(ck["scheduler"].keys()) == list(s.state_dict().keys()), (ck["scheduler"], s.state_dict())
        assert ck["scheduler"]["last_epoch"] == 2 and ck["scheduler"]["_step_count"] == 3
        assert ck["scheduler"]["_last_lr"] == s.state_dict()["_last_lr"], (ck["scheduler"], s.state_dict())
        if sched == "multistep":
            assert type(ck["scheduler"]["milestones"]).__name__ == "Counter"
        opt.load_state_dict(got)  # real torch accepts them
        s.load_state_dict(ck["scheduler"])


def test_seed_command_on_generated_cifar():
    d = tl.tmpdir("cifar")
    data = make_cifar_bin.write_cifar10_bin(os.path.join(d, "data"), per_batch=16, test=20, seed=0)
    # the seed command, plus the data folder; one epoch of 4 images a task instead of 50 of 10,000 (ResNet-18
    # trains at a few images per second on two cores)
    tl.run(["--savecheck=last", "--model=sgd", "--dataset=seq-cifar10", "--lr=0.1", "--data_path", data, "--n_epochs", 1,
            "--max_samples_per_task", 4, "--non_verbose", 1], d)
    path = tl.only(os.path.join(d, "checkpoints"), "_last.pt")
    assert os.path.basename(path).startswith("sgd_seq-cifar10_0_1_"), path
    mammoth_load(path, "resnet18")
    ck = tl.load(path)
    ref = mammoth_ref.ContinualModel(mammoth_ref.make_backbone("resnet18"), {"model": "sgd"}).state_dict()
    assert list(ck["model"].keys()) == list(ref.keys()) and len(ref) == 122
    for k, v in ref.items():
        assert ck["model"][k].shape == v.shape and ck["model"][k].dtype == v.dtype, k
    assert ck["model"]["net.bn1.num_batches_tracked"].item() > 0
    assert len(ck["results"][0]) == 5


def test_seed_command_without_data_names_the_files():
    d = tl.tmpdir("nodata")
    p = tl.run(["--savecheck=last", "--model=sgd", "--dataset=seq-cifar10", "--lr=0.1"], d, check=False)
    assert p.returncode == 2, p.returncode
    for f in ["data_batch_1.bin", "data_batch_5.bin", "test_batch.bin", "--data_path"]:
        assert f in p.stderr, p.stderr
    p = tl.run(["--dataset", "seq-mnist", "--lr", 0.1], d, check=False)
    assert p.returncode == 2 and "train-images-idx3-ubyte" in p.stderr and "t10k-labels-idx1-ubyte" in p.stderr, p.stderr


def test_loadcheck_mammoth_written_checkpoint():
    d = tl.tmpdir("from_mammoth")
    src = os.path.join(d, "mammoth.pt")
    subprocess.run(["/usr/bin/python3", MREF, "write", "--arch", "mnistmlp", "--model", "derpp", "--buffer-size", "50",
                    "--tasks", "2", "--out", src], check=True, capture_output=True)
    # Mammoth's args say seq-mnist; the command line picks the dataset at hand.
    p = tl.run(["--loadcheck", src, "--dataset", "seq-fashion-mnist", "--savecheck", "last"] + SMALL, d)
    assert "no exact-resume state" in p.stderr and "at task 3" in p.stderr, p.stderr
    ck = tl.load(tl.only(os.path.join(d, "checkpoints"), "_last.pt"))
    assert len(ck["results"][0]) == 5
    assert ck["args"]["alpha"] == 0.3 and ck["args"]["buffer_size"] == 50  # inherited from Mammoth's args
    assert ck["buffer_state"]["num_seen_examples"] == 50 + 3 * 200  # Mammoth's reset to buffer_size, then counted


def test_loadcheck_plain_backbones():
    d = tl.tmpdir("plain")
    for extra in [[], ["--prefix", "module."], ["--prefix", "net.", "--keys", "unique"],
                  ["--prefix", "module.net.", "--no-classifier"]]:
        src = os.path.join(d, "backbone.pt")
        subprocess.run(["/usr/bin/python3", MREF, "write", "--arch", "mnistmlp", "--kind", "backbone", "--seed", "7",
                        "--out", src] + extra, check=True, capture_output=True)
        want = torch.load(src)
        w = [v for k, v in want.items() if k.endswith("fc1.weight")][0]
        out = os.path.join(d, "out")
        p = tl.run(["--loadcheck", src, "--lr", 1e-30, "--stop_after", 1, "--savecheck", "last", "--checkpoint_path", out]
                   + SMALL, d)
        assert "initialised the mnistmlp backbone" in p.stderr, p.stderr
        ck = tl.load(tl.only(out, "_last.pt"))
        assert torch.equal(ck["model"]["net.fc1.weight"], w), extra  # lr 1e-30 leaves the weights as loaded
        for f in os.listdir(out):
            os.remove(os.path.join(out, f))
    bad = os.path.join(d, "bad.pt")
    torch.save({"fc1.weight": torch.zeros(3, 3)}, bad)
    p = tl.run(["--loadcheck", bad, "--lr", 0.1] + SMALL, d, check=False)
    assert p.returncode == 2 and "fc1.weight" in p.stderr, p.stderr


def test_loadcheck_url():
    """--loadcheck http://... downloads into the cache, then resumes exactly like the file."""
    d = tl.tmpdir("url")
    tl.run(["--lr", 0.03, "--seed", 5, "--savecheck", "last", "--stop_after", 2] + SMALL, d)
    src = tl.only(os.path.join(d, "checkpoints"), "_last.pt")
    os.rename(src, os.path.join(d, "served.pt"))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    handler = lambda *a, **k: Quiet(*a, directory=d, **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d/served.pt" % server.server_address[1]
        env = {k: "" for k in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")}
        tl.run(["--loadcheck", url, "--download_cache", os.path.join(d, "cache"), "--checkpoint_path", "from_url"], d, env=env)
        tl.run(["--loadcheck", "served.pt", "--checkpoint_path", "from_file"], d)
    finally:
        server.shutdown()
    assert os.listdir(os.path.join(d, "cache")), "nothing cached"
    tl.assert_same_state(tl.only(os.path.join(d, "from_url"), "_last.pt"), tl.only(os.path.join(d, "from_file"), "_last.pt"))


def test_joint_and_domain_il_datasets():
    d = tl.tmpdir("datasets")
    tl.run(["--joint", 1, "--lr", 0.03, "--savecheck", "task"] + SMALL, d)
    ck = tl.load(tl.only(os.path.join(d, "checkpoints"), "_joint.pt"))
    assert len(ck["results"][0]) == 1 and ck["args"]["joint"] == 1
    mnist = os.path.join(d, "mnist")
    make_cifar_bin.write_mnist_idx(mnist, train=300, test=100, seed=1, gz=True)
    tl.run(["--dataset", "seq-mnist", "--data_path", mnist, "--lr", 0.05, "--savecheck", "last"] + SMALL, d)
    for ds, src in [("perm-mnist", ["--source", "mnist", "--data_path", mnist]), ("rot-mnist", [])]:
        out = os.path.join(d, ds)
        tl.run(["--dataset", ds, "--n_tasks", 3, "--lr", 0.1, "--savecheck", "last", "--checkpoint_path", out] + src + SMALL, d)
        ck = tl.load(tl.only(out, "_last.pt"))
        results, masked, logger = ck["results"]
        assert len(results) == 3 and masked == [[0.0] * (t + 1) for t in range(3)], masked
        assert "accs_mask_classes" not in logger and logger["fullaccs"] == []
        trs = ck["data_state"]["task_transforms"]
        assert len(trs) == 3
        if ds == "perm-mnist":
            assert all(sorted(t.tolist()) == list(range(784)) for t in trs) and not torch.equal(trs[0], trs[1])
        else:
            assert all(0 <= float(t) < 180 for t in trs)
        mammoth_load(os.path.join(out, os.listdir(out)[0]), "mnistmlp")


def test_model_config_best():
    # No --lr: --model_config best supplies it, with the rest of the method's best arguments, and the
    # checkpoint's args say so; a value given on the command line wins over the table.
    d = tl.tmpdir("best")
    tl.run(["--model_config=best", "--model", "der", "--buffer_size", 200, "--savecheck", "last", "--stop_after", 1,
            "--max_samples_per_task", 50, "--non_verbose", 1], d)
    args = tl.load(tl.only(os.path.join(d, "checkpoints"), "_last.pt"))["args"]
    got = {k: args[k] for k in ("model_config", "lr", "batch_size", "n_epochs", "minibatch_size", "alpha")}
    assert got == {"model_config": "best", "lr": 0.01, "batch_size": 10, "n_epochs": 1, "minibatch_size": 10,
                   "alpha": 1.0}, got
    d = tl.tmpdir("best_cli")
    tl.run(["--load_best_args", "--model", "derpp", "--dataset", "seq-mnist", "--data_path", tl.FASHION, "--buffer_size", 500,
            "--minibatch_size", 7, "--savecheck", "last", "--stop_after", 1, "--max_samples_per_task", 50, "--non_verbose", 1], d)
    args = tl.load(tl.only(os.path.join(d, "checkpoints"), "_last.pt"))["args"]
    got = {k: args[k] for k in ("model_config", "lr", "minibatch_size", "alpha", "beta")}
    assert got == {"model_config": "best", "lr": 0.03, "minibatch_size": 7, "alpha": 1.0, "beta": 0.5}, got
    p = tl.run(["--model_config", "best", "--model", "der", "--buffer_size", 300], d, check=False)
    assert p.returncode != 0 and "they exist for 200, 500" in p.stderr, (p.returncode, p.stderr)


if __name__ == "__main__":
    tl.main([test_mlp_checkpoint_loads_in_mammoth, test_derpp_buffer_loads_in_mammoth,
             test_optimizer_and_scheduler_have_torch_structure, test_seed_command_on_generated_cifar,
             test_seed_command_without_data_names_the_files, test_loadcheck_mammoth_written_checkpoint,
             test_loadcheck_plain_backbones, test_loadcheck_url, test_joint_and_domain_il_datasets,
             test_model_config_best])
