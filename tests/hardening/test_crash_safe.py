#!/usr/bin/python3
"""Crash-safe writes and concurrent readers (reliability.md T1, T2, T9):
test_crash_safe.py CRASH_TOOL [--convert EXE] [--trainer EXE] [--trials N]

1. SIGKILL: N times (default 200), a writer saves an 8 MiB checkpoint
   (durable: fsync, rename, folder fsync) over the previous one and is
   killed at a uniformly random time within a save's duration. After each
   kill the final name must hold the previous file byte for byte, or the new
   one complete (every CRC verified, content digest equal). Debris policy:
   the only other file allowed is the killed writer's own temp file,
   .<name>.tmp.<pid>.<random>; readers never look at it, and the test
   removes it (a dead writer cannot). With --convert, the same for
   `ckpt-convert IN OUT.pt` writing over OUT.pt; with --trainer, ckpt-train
   killed within 20 ms of its save's temp file appearing (--trainer-trials,
   default 20: each run loads its data): every checkpoint under a final
   name must be complete.
2. ENOSPC for real: a 8 MiB tmpfs (needs mount rights; otherwise skipped,
   and said so): a 16 MiB save over a 4 MiB checkpoint must fail with
   no_space (exit 2), the old file intact, no temp file left.
3. Concurrency: 4 reader processes loop open (mmap) / walk / verify while
   the writer rewrites the file for 8 s; no reader may fail or die (SIGBUS),
   and one keeps its mapping across renames and re-reads it whole.
"""
import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import shutil

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL", msg, flush=True)


def digest(tool, path):
    r = subprocess.run([tool, "digest", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return r.stdout.decode().strip() if r.returncode == 0 else "ERROR " + r.stderr.decode().strip()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def kill_trials(name, cmd_for, check_new, d, final, trials, seed=7):
    """cmd_for(i) -> argv writing over `final`; check_new(i) -> True when `final` is the complete new file."""
    rng = random.Random(seed)
    durations = []
    for i in range(3):
        t0 = time.monotonic()
        subprocess.run(cmd_for(i), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        durations.append(time.monotonic() - t0)
    span = max(durations) * 1.2
    old_n = new_n = debris = 0
    for i in range(trials):
        before = read(final)
        p = subprocess.Popen(cmd_for(i), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, span))
        p.send_signal(signal.SIGKILL)
        p.wait()
        now = read(final)
        if now == before:
            old_n += 1
        elif check_new(i):
            new_n += 1
        else:
            fail("%s trial %d: the final file is neither the old nor a complete new one" % (name, i))
        base = os.path.basename(final)
        for n in os.listdir(d):
            if n == base or n.startswith("input"):
                continue
            if n.startswith(".%s.tmp.%d." % (base, p.pid)):
                debris += 1
                os.remove(os.path.join(d, n))
            else:
                fail("%s trial %d: unexpected file %s" % (name, i, n))
    print("%s: %d SIGKILLs in [0, %.0f ms]: old file %d, new file %d, wrong 0; temp files left by killed writers: %d "
          "(removed)" % (name, trials, span * 1000, old_n, new_n, debris), flush=True)
    if old_n == 0 or new_n == 0:
        fail("%s: the kills never landed on both sides of the commit (old %d, new %d)" % (name, old_n, new_n))


def sigkill_save(tool, work, trials):
    d = os.path.join(work, "kill")
    os.makedirs(d)
    final = os.path.join(d, "ck.pt")
    refs = {}
    for seed in (1, 2):
        ref = os.path.join(work, "ref%d.pt" % seed)
        subprocess.run([tool, "save", ref, str(seed), "8", "0"], check=True)
        refs[seed] = digest(tool, ref)
    subprocess.run([tool, "save", final, "1", "8", "0"], check=True)
    seed_of = lambda i: 2 - (i % 2)  # alternate the content written

    def check_new(i):
        return digest(tool, final) == refs[seed_of(i)]
    kill_trials("ckpt::save", lambda i: [tool, "save", final, str(seed_of(i)), "8", "1"], check_new, d, final, trials)


def sigkill_convert(tool, convert, work, trials):
    d = os.path.join(work, "convert")
    os.makedirs(d)
    src = {s: os.path.join(d, "input%d.pt" % s) for s in (1, 2)}
    for s, p in src.items():
        subprocess.run([tool, "save", p, str(s), "8", "0"], check=True)
    refs = {s: digest(tool, p) for s, p in src.items()}
    final = os.path.join(d, "out.pt")
    shutil.copy(src[1], final)
    seed_of = lambda i: 2 - (i % 2)

    def check_new(i):
        return digest(tool, final) == refs[seed_of(i)]
    kill_trials("ckpt-convert", lambda i: [convert, src[seed_of(i)], final, "--force"], check_new, d, final, trials)


def sigkill_trainer(tool, train, work, trials):
    """ckpt-train saving a Mammoth checkpoint, killed while the save runs:
    the kill waits for the save's temp file to appear, then lands within
    20 ms. Mammoth names carry a timestamp, so a save creates a name rather
    than replacing one: every *.pt under its final name must be complete."""
    d = os.path.join(work, "trainer")
    os.makedirs(d)
    args = [train, "--model=sgd", "--lr=0.1", "--n_epochs=1", "--max_samples_per_task=64", "--savecheck=task",
            "--stop_after=1", "--ckpt_name=k", "--checkpoint_path=" + d, "--seed=1", "--non_verbose=1"]
    rng = random.Random(11)
    killed = finished = complete = debris = 0
    for i in range(trials):
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline:
            if any(".tmp." in n for n in os.listdir(d)):
                time.sleep(rng.uniform(0, 0.02))
                p.send_signal(signal.SIGKILL)
                killed += 1
                break
            time.sleep(0.0005)
        if p.wait() == 0:
            finished += 1
        for n in sorted(os.listdir(d)):
            path = os.path.join(d, n)
            if n.endswith(".pt") and not n.startswith("."):
                if digest(tool, path).startswith("ERROR"):
                    fail("ckpt-train trial %d: %s is under its final name but incomplete" % (i, n))
                complete += 1
                os.remove(path)
            elif ".tmp.%d." % p.pid in n:
                debris += 1
                os.remove(path)
            else:
                fail("ckpt-train trial %d: unexpected file %s" % (i, n))
    print("ckpt-train: %d runs, %d killed during a save, %d finished first; %d checkpoints under a final name, "
          "all complete; temp files left by killed writers: %d (removed)" % (trials, killed, finished, complete, debris),
          flush=True)
    if killed == 0:
        fail("ckpt-train: no kill landed during a save")


def enospc(tool, work, convert=None):
    d = os.path.join(work, "tmpfs")
    os.makedirs(d)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", d], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    if r.returncode != 0:
        print("ENOSPC on tmpfs: SKIPPED (cannot mount a tmpfs here: %s); the FsOps seam test covers ENOSPC"
              % r.stdout.decode().strip()[:100], flush=True)
        return
    try:
        final = os.path.join(d, "ck.pt")
        subprocess.run([tool, "save", final, "1", "4"], check=True)
        before = read(final)
        r = subprocess.run([tool, "save", final, "2", "16"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        err = r.stderr.decode().strip()
        if r.returncode != 2 or "no_space" not in err:
            fail("ENOSPC: exit %d, %s" % (r.returncode, err))
        if read(final) != before:
            fail("ENOSPC: the old file changed")
        if os.listdir(d) != ["ck.pt"]:
            fail("ENOSPC: left %s" % os.listdir(d))
        print("ENOSPC on an 8 MiB tmpfs: %s; old file intact; no temp file" % err, flush=True)
        if convert:
            big = os.path.join(work, "big.pt")
            subprocess.run([tool, "save", big, "3", "16", "0"], check=True)
            r = subprocess.run([convert, big, final, "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            err = r.stderr.decode().strip()
            if r.returncode != 2 or "no_space" not in err:
                fail("ckpt-convert ENOSPC: exit %d, %s" % (r.returncode, err))
            if read(final) != before or os.listdir(d) != ["ck.pt"]:
                fail("ckpt-convert ENOSPC: the old file changed or debris is left: %s" % os.listdir(d))
            print("ckpt-convert ENOSPC: exit %d, %s; old file intact; no temp file" % (r.returncode, err), flush=True)
    finally:
        subprocess.run(["umount", d])


def concurrency(tool, work):
    r = subprocess.run([tool, "concurrency", os.path.join(work, "shared.pt"), "4", "8"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    print(r.stdout.decode().strip(), flush=True)
    if r.returncode != 0:
        fail("concurrency: %s" % r.stderr.decode().strip()[-500:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tool")
    ap.add_argument("--convert")
    ap.add_argument("--trainer")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--trainer-trials", type=int, default=20)
    ap.add_argument("--only", default="kill,convert,trainer,enospc,concurrency")
    a = ap.parse_args()
    only = a.only.split(",")
    tool = os.path.abspath(a.tool)
    work = tempfile.mkdtemp(prefix="ckpt-crash-")
    t0 = time.monotonic()
    try:
        if "kill" in only:
            sigkill_save(tool, work, a.trials)
        if "convert" in only and a.convert and os.path.exists(a.convert):
            sigkill_convert(tool, os.path.abspath(a.convert), work, a.trials)
        if "trainer" in only and a.trainer and os.path.exists(a.trainer):
            sigkill_trainer(tool, os.path.abspath(a.trainer), work, a.trainer_trials)
        if "enospc" in only:
            enospc(tool, work, os.path.abspath(a.convert) if a.convert and os.path.exists(a.convert) else None)
        if "concurrency" in only:
            concurrency(tool, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("crash-safe: %.1f s, %d failures" % (time.monotonic() - t0, len(failures)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
