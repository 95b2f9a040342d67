#!/usr/bin/python3
"""Checkpoints for the ckpt-diff tests, written by real torch.save.

Values come from numpy's legacy RandomState (a frozen stream) and elementwise
arithmetic only, so every file is bit-for-bit the same on every run and the
golden outputs stay stable.

    fixtures.py OUTDIR [series|pairs|edge|stats|all]

series  Mammoth safe-mode checkpoints of one run, task 0..4
        (derpp_seq-cifar10_None_20_1_20260101-000000_0a1b2c3d_<t>.pt):
        a tiny CIFAR ResNet (conv1, bn1, layer1.0.{conv1,bn1}, classifier);
        conv1 drifts less each task, layer1.0.conv1 freezes after task 2 (bit
        identical), BatchNorm statistics drift, num_batches_tracked counts,
        the classifier grows by 2 classes per task (old rows nudged, frozen at
        the last step), SGD momentum state follows; results grow one row per
        task; a 20-slot reservoir buffer replaces some slots each task; tasks 3
        and 4 come from a resumed run (args start_from=3).
pairs   dp_1.pt: task 1's checkpoint with DataParallel keys (net.module.*);
        plain_1.pt: its backbone as a plain state dict (no net. prefix).
edge    edge_a.pt / edge_b.pt: NaN, Inf, -0.0, integers, bool, f16/bf16/f64,
        complex, strided views, dtype/shape changes, growth, keys on one side.
stats   stats_a.pt / stats_b.pt: random tensors of many dtypes and layouts for
        the statistics-against-torch test.
"""
import collections
import os
import sys

import numpy as np
import torch

SERIES_STEM = 'derpp_seq-cifar10_None_20_1_20260101-000000_0a1b2c3d'
N_TASKS = 5
CPT = 2            # classes per task
BUFFER = 20


def rs(seed):
    return np.random.RandomState(seed)


def t32(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def save(obj, path):
    torch.save(obj, path)


# ---- series ------------------------------------------------------------------------

def base_model(r):
    return collections.OrderedDict([
        ('conv1.weight', r.standard_normal((8, 3, 3, 3)) * 0.2),
        ('bn1.weight', np.ones(8)),
        ('bn1.bias', np.zeros(8)),
        ('bn1.running_mean', np.zeros(8)),
        ('bn1.running_var', np.ones(8)),
        ('layer1.0.conv1.weight', r.standard_normal((8, 8, 3, 3)) * 0.1),
        ('layer1.0.bn1.weight', np.ones(8)),
        ('layer1.0.bn1.bias', np.zeros(8)),
        ('layer1.0.bn1.running_mean', np.zeros(8)),
        ('layer1.0.bn1.running_var', np.ones(8)),
        ('classifier.weight', r.standard_normal((CPT, 8)) * 0.3),
        ('classifier.bias', np.zeros(CPT)),
    ])


def evolve(prev, t, r):
    """The float state after task t from the state after task t-1."""
    cur = collections.OrderedDict()
    for k, v in prev.items():
        if k.startswith('layer1.0.conv1') and t >= 3:
            cur[k] = v                                     # frozen after task 2
        elif k == 'conv1.weight':
            cur[k] = v + r.standard_normal(v.shape) * (0.1 / t)   # drift decays
        elif k.endswith('running_mean'):
            cur[k] = v * 0.5 + r.standard_normal(v.shape) * 0.2   # BN statistics drift
        elif k.endswith('running_var'):
            cur[k] = v * 0.5 + 0.5 + np.abs(r.standard_normal(v.shape)) * 0.1
        elif k.startswith('classifier'):
            nudge = 0.0 if t == N_TASKS - 1 else 1e-3
            old = v + r.standard_normal(v.shape) * nudge
            new_rows = r.standard_normal((CPT,) + v.shape[1:]) * (0.3 if k.endswith('weight') else 0.0)
            cur[k] = np.concatenate([old, new_rows], axis=0)
        else:
            cur[k] = v + r.standard_normal(v.shape) * 0.05
    return cur


def mammoth_args(t):
    return {
        'dataset': 'seq-cifar10', 'model': 'derpp', 'backbone': 'resnet18', 'lr': 0.03,
        'batch_size': 32, 'minibatch_size': 32, 'buffer_size': BUFFER, 'alpha': 0.1, 'beta': 0.5,
        'n_epochs': 1, 'optimizer': 'sgd', 'optim_mom': 0.9, 'optim_wd': 0.0, 'seed': 1993,
        'lr_milestones': [35, 45], 'savecheck': 'task', 'save_checkpoint_mode': 'safe',
        'ckpt_name': SERIES_STEM, 'start_from': 3 if t >= 3 else None, 'stop_after': None,
        'loadcheck': SERIES_STEM + '_2.pt' if t >= 3 else None, 'device': 'cpu',
        'conf_host': 'fixture-host', 'class_order': list(range(10)),
    }


def accuracy(t, i):
    # forgetting on old tasks, high on the newest one: deterministic two-decimal numbers
    return round(97.5 - 9.25 * (t - i) + 0.37 * i, 2)


def mammoth_results(t):
    results = [[accuracy(s, i) for i in range(s + 1)] for s in range(t + 1)]
    masked = [[round(min(99.9, accuracy(s, i) + 4.5), 2) for i in range(s + 1)] for s in range(t + 1)]
    mean = lambda xs: sum(xs) / len(xs)
    logger = {
        'accs': [repr(mean(x)) for x in results],       # Mammoth writes these as str (quirk Q3)
        'fullaccs': results, 'fwt': None, 'bwt': None, 'forgetting': None,
        'fwt_mask_classes': None, 'bwt_mask_classes': None, 'forgetting_mask_classes': None,
        'accs_mask_classes': [repr(mean(x)) for x in masked], 'fullaccs_mask_classes': masked,
    }
    return [results, masked, logger]


def series_states():
    """[(model OrderedDict of tensors, momentum list, buffer dict)] for tasks 0..4."""
    r = rs(1234)
    floats = base_model(r)
    mom = {k: np.zeros_like(v) for k, v in floats.items() if 'running' not in k}
    buf_ex = r.standard_normal((BUFFER, 3, 4, 4))
    buf_lab = np.zeros(BUFFER, dtype=np.int64) + r.randint(0, CPT, BUFFER)
    buf_task = np.zeros(BUFFER, dtype=np.int64)
    buf_logits = r.standard_normal((BUFFER, 10))
    out = []
    for t in range(N_TASKS):
        if t > 0:
            floats = evolve(floats, t, r)
            for k in list(mom):
                v = floats[k]
                grad = r.standard_normal(v.shape) * 0.01
                old = mom[k]
                if old.shape != v.shape:                    # the head grew: new rows start at 0
                    old = np.concatenate([old, np.zeros((v.shape[0] - old.shape[0],) + v.shape[1:])])
                mom[k] = 0.9 * old + grad if not (k.startswith('layer1.0.conv1') and t >= 3) else old
            # reservoir: replace a few slots with samples of the new task's classes
            for slot in r.choice(BUFFER, size=6 - t, replace=False):
                buf_ex[slot] = r.standard_normal((3, 4, 4))
                buf_lab[slot] = CPT * t + r.randint(0, CPT)
                buf_task[slot] = t
                buf_logits[slot] = r.standard_normal(10)
        model = collections.OrderedDict()
        for k, v in floats.items():
            model['net.' + k] = t32(v)
            if k.startswith('bn1.running_var') or k.startswith('layer1.0.bn1.running_var'):
                model['net.' + k.replace('running_var', 'num_batches_tracked')] = torch.tensor(100 * (t + 1))
        momentum = [t32(mom[k]) for k in floats if 'running' not in k]
        buffer = {
            'examples': t32(buf_ex), 'labels': torch.from_numpy(buf_lab.copy()),
            'logits': t32(buf_logits), 'task_labels': torch.from_numpy(buf_task.copy()),
        }
        out.append((model, momentum, buffer))
    return out


def optimizer_state(momentum):
    n = len(momentum)
    return {
        'state': {i: {'momentum_buffer': m} for i, m in enumerate(momentum)},
        'param_groups': [{'lr': 0.03, 'momentum': 0.9, 'dampening': 0, 'weight_decay': 0.0,
                          'nesterov': False, 'maximize': False, 'foreach': None,
                          'differentiable': False, 'params': list(range(n))}],
    }


def series_name(t):
    return f'{SERIES_STEM}_{t}.pt'


def write_series(out):
    states = series_states()
    for t, (model, momentum, buffer) in enumerate(states):
        obj = {
            'model': model,
            'optimizer': optimizer_state(momentum),
            'scheduler': None,
            'args': mammoth_args(t),
            'results': mammoth_results(t),
            'buffer': buffer,
        }
        save(obj, os.path.join(out, series_name(t)))
    return states


def write_pairs(out, states=None):
    states = states or series_states()
    model, momentum, buffer = states[1]
    dp = collections.OrderedDict(('net.module.' + k[len('net.'):], v) for k, v in model.items())
    save({'model': dp, 'optimizer': optimizer_state(momentum), 'scheduler': None,
          'args': mammoth_args(1), 'results': mammoth_results(1), 'buffer': buffer},
         os.path.join(out, 'dp_1.pt'))
    plain = collections.OrderedDict((k[len('net.'):], v) for k, v in model.items())
    save(plain, os.path.join(out, 'plain_1.pt'))


# ---- edge cases --------------------------------------------------------------------

def f32_bits(words):
    return torch.from_numpy(np.array(words, dtype=np.uint32).view(np.float32).copy())


def edge_tensors():
    nan, inf = float('nan'), float('inf')
    a, b = collections.OrderedDict(), collections.OrderedDict()

    def pair(k, x, y):
        a[k], b[k] = x, y

    pair('nan_same', torch.tensor([1.0, nan, 3.0]), torch.tensor([1.0, nan, 3.0]))
    pair('nan_vs_number', torch.tensor([1.0, nan]), torch.tensor([1.0, 2.0]))
    pair('nan_payload', f32_bits([0x7FC00000, 0x3F800000]), f32_bits([0x7FC00001, 0x3F800000]))
    pair('inf_same', torch.tensor([inf, -inf, 0.5]), torch.tensor([inf, -inf, 0.5]))
    pair('inf_vs_finite', torch.tensor([inf, 1.0]), torch.tensor([3.0e38, 1.0]))
    pair('inf_sign', torch.tensor([inf]), torch.tensor([-inf]))
    pair('neg_zero', torch.tensor([0.0, -0.0, 2.0]), torch.tensor([-0.0, 0.0, 2.0]))
    pair('f32_within_atol', torch.tensor([0.0, 1.0]), torch.tensor([5e-6, 1.0]))
    pair('f32_beyond', torch.tensor([1.0, 2.0]), torch.tensor([1.001, 2.0]))
    pair('f16_within', torch.tensor([1.0, 2.0], dtype=torch.float16),
         torch.tensor([1.0009765625, 2.0], dtype=torch.float16))        # 1 ulp at 1.0: 9.8e-4 <= 1e-5 + 1e-3
    pair('f16_beyond', torch.tensor([1.0], dtype=torch.float16), torch.tensor([1.00390625], dtype=torch.float16))
    pair('bf16_within', torch.tensor([1.0], dtype=torch.bfloat16), torch.tensor([1.0078125], dtype=torch.bfloat16))
    pair('bf16_beyond', torch.tensor([1.0], dtype=torch.bfloat16), torch.tensor([1.03125], dtype=torch.bfloat16))
    pair('f64_within', torch.tensor([1.0], dtype=torch.float64), torch.tensor([1.0 + 5e-8], dtype=torch.float64))
    pair('f64_beyond', torch.tensor([1.0], dtype=torch.float64), torch.tensor([1.0 + 5e-7], dtype=torch.float64))
    pair('c64_within', torch.tensor([1 + 1j], dtype=torch.complex64), torch.tensor([1 + 1.000001j], dtype=torch.complex64))
    pair('c64_beyond', torch.tensor([1 + 1j], dtype=torch.complex64), torch.tensor([1 + 1.01j], dtype=torch.complex64))
    pair('int_same', torch.tensor([1, 2, 3]), torch.tensor([1, 2, 3]))
    pair('int_off_by_one', torch.tensor([1, 2, 3]), torch.tensor([1, 2, 4]))
    pair('int64_beyond_2p53', torch.tensor([2 ** 53]), torch.tensor([2 ** 53 + 1]))
    pair('uint8_same', torch.tensor([0, 255], dtype=torch.uint8), torch.tensor([0, 255], dtype=torch.uint8))
    pair('bool_flip', torch.tensor([True, False]), torch.tensor([True, True]))
    pair('bool_same', torch.tensor([True, False]), torch.tensor([True, False]))
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    pair('strided_vs_contiguous', base.t(), base.t().contiguous())   # same values, different layout
    pair('dtype_f32_to_f64', torch.tensor([0.5, 1.5]), torch.tensor([0.5, 1.5], dtype=torch.float64))
    pair('shape_change', torch.zeros(2, 3), torch.zeros(3, 2))
    pair('head.weight', torch.tensor([[1.0, 2.0], [3.0, 4.0]]),
         torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]))
    pair('zeros_to_ones', torch.zeros(4), torch.ones(4))
    a['only_in_a'] = torch.ones(2)
    b['only_in_b'] = torch.ones(2)
    return a, b


def write_edge(out):
    a, b = edge_tensors()
    save(a, os.path.join(out, 'edge_a.pt'))
    save(b, os.path.join(out, 'edge_b.pt'))


# ---- statistics --------------------------------------------------------------------

def stats_tensors():
    r = rs(77)
    a, b = collections.OrderedDict(), collections.OrderedDict()

    def pair(k, x, y):
        a[k], b[k] = x, y

    def drift(shape, scale=0.01):
        x = r.standard_normal(shape)
        return x, x + r.standard_normal(shape) * scale

    x, y = drift((64, 3, 7, 7))
    pair('conv.weight', t32(x), t32(y))
    x, y = drift((300_000,), 0.1)                   # several chunks
    pair('big.weight', t32(x), t32(y))
    x, y = drift((1000,))
    pair('half', torch.from_numpy(x.astype(np.float16)), torch.from_numpy(y.astype(np.float16)))
    x, y = drift((513,), 0.05)
    pair('bfloat', t32(x).bfloat16(), t32(y).bfloat16())
    x, y = drift((33, 17), 1e-6)
    pair('double', torch.from_numpy(x), torch.from_numpy(y))
    pair('ints', torch.from_numpy(r.randint(-1000, 1000, 100).astype(np.int32)),
         torch.from_numpy(r.randint(-1000, 1000, 100).astype(np.int32)))
    x, y = drift((20, 30))
    pair('transposed', t32(x).t(), t32(y).t().contiguous())     # strided vs contiguous
    x, y = drift((40, 50))
    pair('sliced', t32(x)[::2, 5:45], t32(y)[::2, 5:45])        # views with offsets and strides
    re, im = drift((50,))
    pair('complex', torch.complex(t32(re), t32(im)), torch.complex(t32(im), t32(re)))
    x, y = drift((10, 20))
    pair('grown.weight', t32(x), torch.cat([t32(y), t32(r.standard_normal((2, 20)))]))
    x = r.standard_normal(100)
    pair('opposite', t32(x), t32(-x))
    return a, b


def write_stats(out):
    a, b = stats_tensors()
    save(a, os.path.join(out, 'stats_a.pt'))
    save(b, os.path.join(out, 'stats_b.pt'))


def main():
    out = sys.argv[1]
    what = sys.argv[2] if len(sys.argv) > 2 else 'all'
    os.makedirs(out, exist_ok=True)
    states = None
    if what in ('series', 'all'):
        states = write_series(out)
    if what in ('pairs', 'all'):
        write_pairs(out, states)
    if what in ('edge', 'all'):
        write_edge(out)
    if what in ('stats', 'all'):
        write_stats(out)


if __name__ == '__main__':
    main()
