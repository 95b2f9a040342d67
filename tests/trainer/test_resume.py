#!/usr/bin/python3
"""Exact resume: a resumed run ends bit-identical to an uninterrupted one.

For sgd and derpp (and er/adam/cosine, sgd/momentum/multisteplr variants that
exercise optimizer and scheduler state), on CPU:
  * tasks 0-2 with --stop_after 3, then --loadcheck for tasks 3-4;
  * a SIGINT mid-task (raised by the test hook CKPT_TRAIN_SIGINT_AFTER_STEPS
    through the real handler, and once from outside with kill), then
    --loadcheck of the checkpoints/paused/ file;
must give the same final weights, optimizer and scheduler state, results,
buffer (with its true num_seen_examples) and random-generator states as the
uninterrupted run's last checkpoint.

Runs are small: --max_samples_per_task 300 (30 steps of 10 per task). Both
MLP paths are covered: the fused default and LibTorch autograd (--fused 0).
"""
import os
import signal
import subprocess

import trainer_lib as tl

SMALL = ["--max_samples_per_task", 300, "--batch_size", 10, "--non_verbose", 1]
SETUPS = {
    "sgd": ["--model", "sgd", "--lr", 0.03, "--seed", 11] + SMALL,
    "derpp": ["--model", "derpp", "--buffer_size", 50, "--alpha", 0.2, "--beta", 0.5, "--lr", 0.03, "--seed", 12] + SMALL,
    # two epochs: momentum buffers and the scheduler live across the interruption; LibTorch's autograd path
    "sgd_mom_multistep": ["--model", "sgd", "--lr", 0.05, "--optim_mom", 0.9, "--optim_nesterov", 1, "--optim_wd", 1e-4,
                          "--lr_scheduler", "multisteplr", "--lr_milestones", 1, "--n_epochs", 2, "--seed", 13,
                          "--fused", 0] + SMALL,
    "er_adam_cosine": ["--model", "er", "--buffer_size", 40, "--optimizer", "adam", "--lr", 0.001,
                       "--lr_scheduler", "cosine", "--n_epochs", 2, "--seed", 14] + SMALL,
}
_straight = {}


def straight(name):
    """The uninterrupted run of a setup (cached): the folder of its _4.pt."""
    if name not in _straight:
        d = tl.tmpdir("straight_" + name)
        tl.run(SETUPS[name] + ["--savecheck", "task", "--ckpt_name", "straight"], d)
        _straight[name] = d
    return tl.only(os.path.join(_straight[name], "checkpoints"), "_4.pt")


def stop_and_resume(name):
    d = tl.tmpdir("split_" + name)
    tl.run(SETUPS[name] + ["--savecheck", "last", "--stop_after", 3, "--ckpt_name", "part"], d)
    first = tl.only(os.path.join(d, "checkpoints"), "_last.pt")
    ck = tl.load(first)
    assert ck["task_state"]["completed_tasks"] == 3 and not ck["task_state"]["mid_task"], ck["task_state"]
    assert len(ck["results"][0]) == 3
    # the file after task 2 is the uninterrupted run's _2.pt
    tl.assert_same_state(first, os.path.join(os.path.dirname(straight(name)),
                                              os.path.basename(straight(name)).replace("_4.pt", "_2.pt")))
    os.rename(first, os.path.join(d, "first.pt"))
    p = tl.run(["--loadcheck", "first.pt"], d)  # everything else comes from the file
    assert "at task 4" in p.stderr, p.stderr
    tl.assert_same_state(straight(name), tl.only(os.path.join(d, "checkpoints"), "_last.pt"))


def sigint_and_resume(name, steps):
    d = tl.tmpdir("sigint_" + name)
    p = tl.run(SETUPS[name] + ["--savecheck", "last"], d, env={"CKPT_TRAIN_SIGINT_AFTER_STEPS": str(steps)})
    assert p.returncode == 0
    paused = os.path.join(d, "checkpoints", "paused")
    files = os.listdir(paused)
    assert len(files) == 1 and files[0].endswith(".pt"), files
    assert not any(f.endswith("_last.pt") for f in os.listdir(os.path.join(d, "checkpoints")))
    ck = tl.load(os.path.join(paused, files[0]))
    ts = ck["task_state"]
    assert ts["mid_task"] is True and ts["task"] == ts["completed_tasks"], ts
    assert len(ck["results"][0]) == ts["completed_tasks"]
    tl.run(["--loadcheck", os.path.join(paused, files[0])], d)
    tl.assert_same_state(straight(name), tl.only(os.path.join(d, "checkpoints"), "_last.pt"))
    return ts


def test_sgd_stop_after_3_then_resume():
    stop_and_resume("sgd")


def test_derpp_stop_after_3_then_resume():
    stop_and_resume("derpp")


def test_sgd_sigint_mid_task():
    ts = sigint_and_resume("sgd", 45)  # task 1 (0-based), batch 15 of 30
    assert (ts["task"], ts["epoch"], ts["batch"]) == (1, 0, 15), ts


def test_derpp_sigint_mid_task():
    ts = sigint_and_resume("derpp", 77)
    assert (ts["task"], ts["epoch"], ts["batch"]) == (2, 0, 17), ts


def test_sgd_momentum_multistep_sigint_in_second_epoch():
    ts = sigint_and_resume("sgd_mom_multistep", 60 + 30 + 7)  # task 1, epoch 1, batch 7
    assert (ts["task"], ts["epoch"], ts["batch"]) == (1, 1, 7), ts


def test_er_adam_cosine_sigint_at_epoch_end():
    ts = sigint_and_resume("er_adam_cosine", 60 + 30)  # task 1 after its first epoch's last batch
    assert (ts["task"], ts["epoch"], ts["batch"]) == (1, 0, 30), ts


def test_sigint_from_outside():
    """A real SIGINT, sent once task 1's accuracy line is out: saved, exit 0, exact resume."""
    d = tl.tmpdir("kill")
    proc = subprocess.Popen([tl.binary()] + [str(a) for a in SETUPS["derpp"] + ["--savecheck", "last"]], cwd=d,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("task 1:"), line
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (proc.returncode, err)
    assert "saved checkpoints/paused/" in err, err
    paused = os.path.join(d, "checkpoints", "paused")
    (name,) = os.listdir(paused)
    tl.run(["--loadcheck", os.path.join(paused, name)], d)
    tl.assert_same_state(straight("derpp"), tl.only(os.path.join(d, "checkpoints"), "_last.pt"))


def test_second_signal_exits_at_once():
    d = tl.tmpdir("twice")
    proc = subprocess.Popen([tl.binary(), "--lr", "0.03", "--batch_size", "10", "--non_verbose", "1"], cwd=d,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("task 1:"), line
    # Two different signals: two of the same kind may merge while pending.
    os.kill(proc.pid, signal.SIGTERM)
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode in (128 + signal.SIGTERM, 128 + signal.SIGINT), proc.returncode


if __name__ == "__main__":
    tl.main([test_sgd_stop_after_3_then_resume, test_derpp_stop_after_3_then_resume, test_sgd_sigint_mid_task,
             test_derpp_sigint_mid_task, test_sgd_momentum_multistep_sigint_in_second_epoch,
             test_er_adam_cosine_sigint_at_epoch_end, test_sigint_from_outside, test_second_signal_exits_at_once])
