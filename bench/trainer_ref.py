#!/usr/bin/python3
"""Python PyTorch reference training for the ckpt-train benchmark (Mammoth's procedure).

    /usr/bin/python3 bench/trainer_ref.py [--model sgd|er|der|derpp]
        [--dataset seq-fashion-mnist|seq-mnist|seq-cifar10] [--backbone mnistmlp|resnet18]
        [--batch_size N] [--lr F] [--n_epochs N] [--seed N] [--threads N] [--blas_threads N]
        [--buffer_size N] [--minibatch_size N] [--alpha F] [--beta F]
        [--max_steps N] [--max_samples_per_task N] [--stop_after T] [--eval 0|1]
        [--data_path DIR] [--cifar_per_batch N] [--non_verbose]

Prints ONE JSON line on stdout (human log on stderr unless --non_verbose):
  {"impl": "python", "torch": ..., "model", "dataset", "backbone", "batch_size",
   "minibatch_size", "lr", "n_epochs", "seed", "buffer_size", "alpha", "beta",
   "threads": {"torch_intra_op", "torch_inter_op", "OMP_NUM_THREADS",
               "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "blas", "cpus"},
   "train_samples", "train_steps", "train_seconds", "samples_per_s",
   "load_seconds", "eval_seconds",
   "class_il": [[acc of task 0..t after task t] ...], "task_il": [...],
   "mean_class_il", "mean_task_il"  (mean of the last row, Mammoth's number),
   "bwt", "bwt_task_il", "forgetting", "forgetting_task_il"}
samples/s counts the current-task samples trained on (replayed buffer samples
are not counted) over the training loop only: no data loading, no evaluation.

Procedure (mammoth.md §1.4, §1.5, §5), the rules ckpt-train follows too:
* seeding: random, numpy and torch seeded with --seed once at start (as
  Mammoth's parse-time set_random_seed), then the backbone is built (Glorot
  init for mnistmlp, PyTorch default for resnet18: tests/pylib/mammoth_ref.py);
* class-IL, 5 tasks x 2 classes ({0,1},{2,3},...); task t trains only on the
  training samples with label in its classes, in their file order;
* data order: Mammoth's DataLoader(shuffle=True,
  generator=torch.Generator().manual_seed(seed)) is re-created for every task
  (Q20), so every task's shuffle restarts from the seed. With num_workers=0
  torch 1.13 draws, per epoch and from that generator: one int64 (random_,
  the iterator's base seed), randperm(n) (the order), and one more
  randperm(n) that RandomSampler discards at the epoch's end -- reproduced
  exactly by mammoth_order() (tests/trainer_aux checks it against a real
  DataLoader); LibTorch's CPU randperm/random_ give the same numbers;
  drop_last=0 (the last batch may be short);
* a fresh SGD(lr, momentum 0, weight decay 0) at every task start;
* sgd: CE on the batch. er: the batch concatenated with minibatch_size buffer
  samples (examples+labels), one CE. der: CE + alpha*MSE(net(buf_x), buf_logits).
  derpp: der + beta*CE(net(buf_x2), buf_y2) on a second buffer draw. The buffer
  is Mammoth's reservoir (numpy RNG), filled after the step with the
  non-augmented inputs (and labels / the pre-step logits). minibatch_size
  defaults to batch_size (Mammoth's extend_args, Q2);
* seq-(fashion-)mnist: pixels/255, no augmentation. seq-cifar10: random crop 32
  with zero padding 4 + horizontal flip + Normalize(MEAN, STD) for the batch and
  for replayed buffer samples (Mammoth's kornia transform), Normalize only at test;
* evaluation after every task on the test sets of all tasks so far, batch
  size = batch_size, eval mode: Class-IL = argmax over the logits of the classes
  seen so far, Task-IL = argmax within the task's own 2 classes; % correct.

Data: seq-fashion-mnist reads /usr/share/datasets/fashion-mnist/*.gz (IDX);
seq-mnist reads the four MNIST IDX files (plain or .gz) from --data_path;
seq-cifar10 reads CIFAR-10 binary batches from --data_path (the folder holding
data_batch_1.bin.., or its parent); without --data_path it generates them with
tests/pylib/make_cifar_bin.py (--cifar_per_batch records per batch, seeded).

Threads: never oversubscribed. --threads N (default 1) sets torch's intra-op
threads and OMP_NUM_THREADS=N, inter-op threads 1; --blas_threads M (default 1)
sets OPENBLAS_NUM_THREADS/MKL_NUM_THREADS. N*M must not exceed the CPUs (refused
otherwise). The variables are set before torch is imported; the JSON reports
them and the BLAS library actually loaded.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYLIB = os.path.join(HERE, "..", "tests", "pylib")
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
MNIST_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2615)
N_TASKS, CLASSES_PER_TASK = 5, 2
DATASET_DEFAULTS = {  # backbone, batch_size, n_epochs (Mammoth's dataset defaults)
    "seq-fashion-mnist": ("mnistmlp", 64, 1),
    "seq-mnist": ("mnistmlp", 64, 1),
    "seq-cifar10": ("resnet18", 32, 50),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", choices=["sgd", "er", "der", "derpp"], default="sgd")
    p.add_argument("--dataset", choices=sorted(DATASET_DEFAULTS), default="seq-fashion-mnist")
    p.add_argument("--backbone", choices=["mnistmlp", "resnet18"], default=None)
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--minibatch_size", type=int, default=None, help="buffer batch (default: batch_size)")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--n_epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--buffer_size", type=int, default=200)
    p.add_argument("--alpha", type=float, default=0.3)
    p.add_argument("--beta", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op / OpenMP threads")
    p.add_argument("--blas_threads", type=int, default=1, help="OpenBLAS/MKL threads")
    p.add_argument("--max_steps", type=int, default=None, help="cap on optimizer steps per task")
    p.add_argument("--max_samples_per_task", type=int, default=None, help="cap on samples per task and epoch")
    p.add_argument("--stop_after", type=int, default=N_TASKS, help="train tasks 0..T-1 (default 5)")
    p.add_argument("--eval", type=int, choices=[0, 1], default=1)
    p.add_argument("--data_path", default=None)
    p.add_argument("--cifar_per_batch", type=int, default=1000)
    p.add_argument("--non_verbose", action="store_true")
    a = p.parse_args(argv)
    backbone, batch, epochs = DATASET_DEFAULTS[a.dataset]
    a.backbone = a.backbone or backbone
    a.batch_size = a.batch_size or batch
    a.n_epochs = a.n_epochs or epochs
    a.minibatch_size = a.minibatch_size or a.batch_size
    if not 1 <= a.stop_after <= N_TASKS:
        p.error("--stop_after must be in 1..%d" % N_TASKS)
    cpus = len(os.sched_getaffinity(0))
    if a.threads < 1 or a.blas_threads < 1 or a.threads * a.blas_threads > cpus:
        p.error("--threads %d x --blas_threads %d would oversubscribe %d CPUs" % (a.threads, a.blas_threads, cpus))
    return a


def set_thread_env(a):
    """Before `import torch`: OpenMP and BLAS pools sized so they never oversubscribe."""
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(a.blas_threads)
    os.environ["MKL_NUM_THREADS"] = str(a.blas_threads)


# Set in main() after the environment is prepared.
torch = np = F = mr = mk = None


def import_libs():
    global torch, np, F, mr, mk
    import numpy
    import torch as torch_
    import torch.nn.functional as functional
    sys.path.insert(0, PYLIB)
    import mammoth_ref
    import make_cifar_bin
    torch, np, F, mr, mk = torch_, numpy, functional, mammoth_ref, make_cifar_bin


def loaded_blas():
    """The BLAS shared object mapped into this process (after a matmul)."""
    torch.ones(64, 64) @ torch.ones(64, 64)
    names = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            base = os.path.basename(path)
            if any(k in base for k in ("openblas", "libblas", "mkl_rt", "libmkl", "blis")):
                names.add(os.path.realpath(path))
    return sorted(names)


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

def find_idx(folder, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.exists(path):
            return path
    return None


def load_idx_dataset(folder):
    """(x_train u8 [n,28,28], y_train, x_test, y_test) from the four IDX files."""
    paths = {n: find_idx(folder, n) for split in MNIST_NAMES.values() for n in split}
    missing = [n for n, p in paths.items() if p is None]
    if missing:
        raise SystemExit("error: %s lacks the IDX files %s (plain or .gz)" % (folder, ", ".join(missing)))
    out = []
    for split in ("train", "test"):
        images, labels = (mk.read_idx(paths[n]) for n in MNIST_NAMES[split])
        out += [images, labels]
    return out


def load_cifar(a):
    folder = a.data_path
    if folder is None:
        import tempfile
        tmp = tempfile.mkdtemp(prefix="trainer_ref_cifar_")
        folder = mk.write_cifar10_bin(tmp, per_batch=a.cifar_per_batch, test=a.cifar_per_batch, seed=a.seed)
    if os.path.isdir(os.path.join(folder, mk.CIFAR_FOLDER)):
        folder = os.path.join(folder, mk.CIFAR_FOLDER)
    names = ["data_batch_%d.bin" % i for i in range(1, 6)]
    missing = [n for n in names + ["test_batch.bin"] if not os.path.exists(os.path.join(folder, n))]
    if missing:
        raise SystemExit("error: %s lacks the CIFAR-10 binary files %s" % (folder, ", ".join(missing)))
    parts = [mk.read_cifar10_bin(os.path.join(folder, n)) for n in names]
    ytr = np.concatenate([p[0] for p in parts])
    xtr = np.concatenate([p[1] for p in parts])
    yte, xte = mk.read_cifar10_bin(os.path.join(folder, "test_batch.bin"))
    return xtr, ytr, xte, yte


def load_data(a):
    if a.dataset == "seq-cifar10":
        xtr, ytr, xte, yte = load_cifar(a)
        shape = (3, 32, 32)
    else:
        folder = FASHION_DIR if a.dataset == "seq-fashion-mnist" else (a.data_path or ".")
        xtr, ytr, xte, yte = load_idx_dataset(folder)
        shape = (1, 28, 28)
    to_float = lambda u8: torch.from_numpy(np.array(u8, copy=True)).reshape(-1, *shape).float().div(255)
    return (to_float(xtr), torch.from_numpy(ytr.astype(np.int64)),
            to_float(xte), torch.from_numpy(yte.astype(np.int64)))


def task_indices(labels, task):
    lo, hi = task * CLASSES_PER_TASK, (task + 1) * CLASSES_PER_TASK
    return torch.nonzero((labels >= lo) & (labels < hi)).flatten()


def mammoth_order(n, seed, epochs):
    """Index order of DataLoader(range(n), shuffle=True, generator=Generator().manual_seed(seed),
    num_workers=0) over `epochs` epochs, as torch 1.13 draws it. Per epoch:
    one int64 (random_) for the iterator's base seed; randperm(n), the order;
    and a second randperm(n) that RandomSampler draws and discards at the end
    of the epoch (its `randperm(n)[:num_samples % n]` tail)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        torch.empty((), dtype=torch.int64).random_(generator=g)
        order = torch.randperm(n, generator=g)
        yield order
        torch.randperm(n, generator=g)


class CifarAugment:
    """RandomCrop(32, padding=4) + RandomHorizontalFlip + Normalize on float [0,1] batches."""

    def __init__(self):
        self.mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)

    def normalize(self, x):
        return (x - self.mean) / self.std

    def __call__(self, x):
        n = x.shape[0]
        padded = F.pad(x, (4, 4, 4, 4))
        offsets = torch.randint(0, 9, (n, 2))
        flips = torch.rand(n) < 0.5
        out = torch.empty_like(x)
        for k in range(n):
            i, j = int(offsets[k, 0]), int(offsets[k, 1])
            crop = padded[k, :, i:i + 32, j:j + 32]
            out[k] = crop.flip(2) if flips[k] else crop
        return self.normalize(out)


# --------------------------------------------------------------------------
# Methods (Mammoth's observe())
# --------------------------------------------------------------------------

class Learner:
    def __init__(self, a, net, augment):
        self.a, self.net, self.augment = a, net, augment
        self.buffer = mr.Buffer(a.buffer_size) if a.model != "sgd" else None
        self.opt = None

    def begin_task(self):
        self.opt = torch.optim.SGD(self.net.parameters(), lr=self.a.lr)

    def _buffer_batch(self):
        return self.buffer.get_data(self.a.minibatch_size)

    def _replay_input(self, x):
        return self.augment(x) if self.augment else x

    def observe(self, inputs, labels, not_aug):
        a, net = self.a, self.net
        self.opt.zero_grad()
        if a.model == "er":
            real = inputs.shape[0]
            if not self.buffer.is_empty():
                buf_x, buf_y = self._buffer_batch()
                inputs = torch.cat((inputs, self._replay_input(buf_x)))
                labels = torch.cat((labels, buf_y))
            loss = F.cross_entropy(net(inputs), labels)
            loss.backward()
            self.opt.step()
            self.buffer.add_data(not_aug, labels=labels[:real])
            return loss
        outputs = net(inputs)
        loss = F.cross_entropy(outputs, labels)
        if a.model in ("der", "derpp") and not self.buffer.is_empty():
            batch = self._buffer_batch()
            buf_x, buf_logits = batch[0], batch[-1]
            loss = loss + a.alpha * F.mse_loss(net(self._replay_input(buf_x)), buf_logits)
            if a.model == "derpp":
                buf_x, buf_y, _ = self._buffer_batch()
                loss = loss + a.beta * F.cross_entropy(net(self._replay_input(buf_x)), buf_y)
        loss.backward()
        self.opt.step()
        if a.model == "der":
            self.buffer.add_data(not_aug, logits=outputs.data)
        elif a.model == "derpp":
            self.buffer.add_data(not_aug, labels=labels, logits=outputs.data)
        return loss


def evaluate(net, xte, yte, task, batch_size, normalize):
    """Class-IL and Task-IL accuracies (%) on the test sets of tasks 0..task."""
    net.eval()
    n_seen = (task + 1) * CLASSES_PER_TASK
    class_il, task_il = [], []
    with torch.no_grad():
        for k in range(task + 1):
            idx = task_indices(yte, k)
            correct_c = correct_t = 0
            for s in range(0, len(idx), batch_size):
                b = idx[s:s + batch_size]
                x = xte[b]
                out = net(normalize(x) if normalize else x)
                y = yte[b]
                correct_c += (out[:, :n_seen].argmax(1) == y).sum().item()
                masked = torch.full_like(out, float("-inf"))
                lo, hi = k * CLASSES_PER_TASK, (k + 1) * CLASSES_PER_TASK
                masked[:, lo:hi] = out[:, lo:hi]
                correct_t += (masked.argmax(1) == y).sum().item()
            class_il.append(correct_c / len(idx) * 100)
            task_il.append(correct_t / len(idx) * 100)
    net.train()
    return class_il, task_il


def transfer_metrics(rows):
    """Backward transfer and forgetting over the per-task accuracy rows (Mammoth's metrics)."""
    if len(rows) < 2:
        return None, None
    last = rows[-1]
    bwt = sum(last[i] - rows[i][i] for i in range(len(rows) - 1)) / (len(rows) - 1)
    forgetting = sum(max(rows[t][i] for t in range(i, len(rows) - 1)) - last[i]
                     for i in range(len(rows) - 1)) / (len(rows) - 1)
    return bwt, forgetting


def log(a, msg):
    if not a.non_verbose:
        print(msg, file=sys.stderr, flush=True)


def main(argv=None):
    a = parse_args(argv)
    set_thread_env(a)
    import_libs()
    torch.set_num_threads(a.threads)
    if torch.get_num_interop_threads() != 1:  # a second call aborts the process (c10::Error)
        torch.set_num_interop_threads(1)
    import random
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)

    t0 = time.perf_counter()
    xtr, ytr, xte, yte = load_data(a)
    load_seconds = time.perf_counter() - t0
    net = mr.make_backbone(a.backbone)
    augment = CifarAugment() if a.dataset == "seq-cifar10" else None
    learner = Learner(a, net, augment)
    net.train()

    train_seconds = eval_seconds = 0.0
    samples = steps = 0
    class_rows, task_rows = [], []
    for task in range(a.stop_after):
        idx = task_indices(ytr, task)
        learner.begin_task()
        task_steps = 0
        t_start = time.perf_counter()
        for perm in mammoth_order(len(idx), a.seed, a.n_epochs):
            order = idx[perm]
            if a.max_samples_per_task:
                order = order[:a.max_samples_per_task]
            for s in range(0, len(order), a.batch_size):
                if a.max_steps is not None and task_steps >= a.max_steps:
                    break
                b = order[s:s + a.batch_size]
                not_aug = xtr[b]
                inputs = augment(not_aug) if augment else not_aug
                learner.observe(inputs, ytr[b], not_aug)
                samples += len(b)
                task_steps += 1
        train_seconds += time.perf_counter() - t_start
        steps += task_steps
        if a.eval:
            t_eval = time.perf_counter()
            c, t = evaluate(net, xte, yte, task, a.batch_size, augment.normalize if augment else None)
            eval_seconds += time.perf_counter() - t_eval
            class_rows.append(c)
            task_rows.append(t)
            log(a, "task %d: Class-IL %s  Task-IL %s  (mean %.2f / %.2f)" % (
                task + 1, " ".join("%.2f" % v for v in c), " ".join("%.2f" % v for v in t),
                sum(c) / len(c), sum(t) / len(t)))

    bwt, forgetting = transfer_metrics(class_rows)
    bwt_t, forgetting_t = transfer_metrics(task_rows)
    result = {
        "impl": "python", "torch": torch.__version__,
        "model": a.model, "dataset": a.dataset, "backbone": a.backbone, "batch_size": a.batch_size,
        "minibatch_size": a.minibatch_size, "lr": a.lr, "n_epochs": a.n_epochs, "seed": a.seed,
        "buffer_size": a.buffer_size if a.model != "sgd" else 0,
        "alpha": a.alpha if a.model in ("der", "derpp") else None,
        "beta": a.beta if a.model == "derpp" else None,
        "threads": {
            "torch_intra_op": torch.get_num_threads(), "torch_inter_op": torch.get_num_interop_threads(),
            "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"],
            "OPENBLAS_NUM_THREADS": os.environ["OPENBLAS_NUM_THREADS"],
            "MKL_NUM_THREADS": os.environ["MKL_NUM_THREADS"],
            "blas": loaded_blas(), "cpus": len(os.sched_getaffinity(0)),
        },
        "train_samples": samples, "train_steps": steps, "train_seconds": round(train_seconds, 4),
        "samples_per_s": round(samples / train_seconds, 2) if train_seconds > 0 else None,
        "load_seconds": round(load_seconds, 4), "eval_seconds": round(eval_seconds, 4),
        "class_il": class_rows, "task_il": task_rows,
        "mean_class_il": sum(class_rows[-1]) / len(class_rows[-1]) if class_rows else None,
        "mean_task_il": sum(task_rows[-1]) / len(task_rows[-1]) if task_rows else None,
        "bwt": bwt, "bwt_task_il": bwt_t, "forgetting": forgetting, "forgetting_task_il": forgetting_t,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
