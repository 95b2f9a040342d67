#!/usr/bin/python3
"""ckpt-train computes what Mammoth's Python loop computes, bit for bit.

A Python re-implementation of Mammoth's sgd training on seq-fashion-mnist
(torch.manual_seed(seed) before building MNISTMLP, a fresh optimizer and
scheduler per task, a DataLoader per task shuffled by
torch.Generator().manual_seed(seed), F.cross_entropy, torch.optim) must end
with exactly the weights and accuracies ckpt-train saves: same initial
weights, same data order, same SGD/Adam/MultiStepLR/CosineAnnealingLR
arithmetic. Small runs (--max_samples_per_task 200). These run ckpt-train's
autograd path (--fused 0); the fused MLP path (the default) is checked
against it to float rounding.

Both sides run single-threaded with one BLAS thread (ckpt-train's setting for
the MLP): a multi-threaded OpenBLAS sums in another order and differs in the
last bits.
"""
import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before torch loads OpenBLAS

import gzip  # noqa: E402

import numpy as np  # noqa: E402
import torch
import torch.nn.functional as F

import trainer_lib as tl
from trainer_lib import mammoth_ref

N = 200
_data = None


def fashion():
    global _data
    if _data is None:
        def idx(name):
            with gzip.open(os.path.join(tl.FASHION, name)) as f:
                raw = f.read()
            return np.frombuffer(raw, dtype=np.uint8, offset=16 if "images" in name else 8).copy()
        x = torch.from_numpy(idx("train-images-idx3-ubyte.gz")).view(-1, 1, 28, 28).float().div(255)
        y = torch.from_numpy(idx("train-labels-idx1-ubyte.gz")).long()
        tx = torch.from_numpy(idx("t10k-images-idx3-ubyte.gz")).view(-1, 1, 28, 28).float().div(255)
        ty = torch.from_numpy(idx("t10k-labels-idx1-ubyte.gz")).long()
        _data = (x, y, tx, ty)
    return _data


def task_subset(x, y, t):
    keep = ((y >= 2 * t) & (y < 2 * t + 2)).nonzero().view(-1)[:N]
    return x[keep], y[keep]


def python_run(seed, lr, bs, epochs=1, optimizer="sgd", mom=0.0, wd=0.0, nesterov=False, scheduler=None, milestones=()):
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    net = mammoth_ref.make_backbone("mnistmlp")
    x, y, tx, ty = fashion()
    results = []
    for t in range(5):
        if optimizer == "sgd":
            opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=mom, weight_decay=wd, nesterov=nesterov)
        else:
            opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=wd)
        sched = None
        if scheduler == "multisteplr":
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=0.1)
        elif scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        tx_t, ty_t = task_subset(x, y, t)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(tx_t, ty_t), batch_size=bs, shuffle=True,
                                             generator=torch.Generator().manual_seed(seed))
        for _ in range(epochs):
            for bx, by in loader:
                opt.zero_grad()
                loss = F.cross_entropy(net(bx), by)
                loss.backward()
                opt.step()
            if sched is not None:
                sched.step()
        accs = []
        with torch.no_grad():
            for k in range(t + 1):
                ex, ey = task_subset(tx, ty, k)
                out = net(ex)
                _, pred = torch.max(out[:, :2 * (t + 1)].data, 1)
                accs.append(torch.sum(pred == ey).item() / ey.shape[0] * 100)
        results.append(accs)
    return net, results


def compare(cli, **py):
    d = tl.tmpdir("parity")
    tl.run(cli + ["--max_samples_per_task", N, "--savecheck", "last", "--non_verbose", 1, "--num_threads", 1, "--fused", 0], d)
    ck = tl.load(tl.only(os.path.join(d, "checkpoints"), "_last.pt"))
    net, results = python_run(**py)
    for k, v in net.state_dict().items():
        assert torch.equal(ck["model"]["net." + k], v), "weights differ from the Python loop at %s (max |diff| %g)" % (
            k, (ck["model"]["net." + k] - v).abs().max())
    assert ck["results"][0] == results, (ck["results"][0], results)


def test_sgd_matches_python():
    compare(["--lr", 0.03, "--batch_size", 10, "--seed", 21], seed=21, lr=0.03, bs=10)


def test_sgd_momentum_nesterov_wd_multistep_matches_python():
    compare(["--lr", 0.05, "--batch_size", 16, "--seed", 22, "--optim_mom", 0.9, "--optim_nesterov", 1, "--optim_wd", 5e-4,
             "--n_epochs", 3, "--lr_scheduler", "multisteplr", "--lr_milestones", 1, 2],
            seed=22, lr=0.05, bs=16, epochs=3, mom=0.9, nesterov=True, wd=5e-4, scheduler="multisteplr", milestones=(1, 2))


def test_adam_cosine_matches_python():
    compare(["--lr", 0.002, "--batch_size", 32, "--seed", 23, "--optimizer", "adam", "--optim_wd", 1e-4, "--n_epochs", 3,
             "--lr_scheduler", "cosine"],
            seed=23, lr=0.002, bs=32, epochs=3, optimizer="adam", wd=1e-4, scheduler="cosine")


def test_fused_path_agrees_with_autograd():
    """The hand-written MLP forward/backward computes the same updates up to float rounding."""
    for model in (["--model", "sgd"], ["--model", "derpp", "--buffer_size", 30, "--alpha", 0.3, "--beta", 0.5]):
        cks = []
        for fused in (1, 0):
            d = tl.tmpdir("fused")
            tl.run(model + ["--lr", 0.03, "--batch_size", 10, "--seed", 24, "--stop_after", 2, "--max_samples_per_task", N,
                            "--savecheck", "last", "--non_verbose", 1, "--fused", fused], d)
            cks.append(tl.load(tl.only(os.path.join(d, "checkpoints"), "_last.pt")))
        for k, v in cks[1]["model"].items():
            assert torch.allclose(cks[0]["model"][k], v, rtol=1e-4, atol=1e-5), "%s %s: max |diff| %g" % (
                model[1], k, (cks[0]["model"][k] - v).abs().max())
        assert cks[0]["args"]["fused"] == 1 and cks[1]["args"]["fused"] == 0


if __name__ == "__main__":
    tl.main([test_sgd_matches_python, test_sgd_momentum_nesterov_wd_multistep_matches_python, test_adam_cosine_matches_python,
             test_fused_path_agrees_with_autograd])
