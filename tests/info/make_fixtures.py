#!/usr/bin/python3
"""Writes the ckpt-info test fixtures, deterministically, with real torch.

    /usr/bin/python3 tests/info/make_fixtures.py OUTDIR [--stamp FILE]

Every file comes out byte-identical on every run: fixed seeds, fixed
timestamps and uids in the Mammoth names and args, torch.save's zip has no
dates. Mammoth files are written in Mammoth's exact layout by
tests/pylib/mammoth_ref.py (mammoth.md §1.2, §1.3, §1.6). Files:

  derpp_seq-mnist_None_200_1_20260101-120000_0badcafe_2.pt
        Mammoth safe mode, current name form: MNIST MLP (16 keys on 6
        storages), SGD with momentum after a step, MultiStepLR (Counter),
        args, 3 tasks of results, DER++ buffer of 200 (labels/logits/task_labels)
  er_seq-mnist_200_1_20260101-120000_1.pt
        Mammoth old_pickle mode, documented name form: argparse.Namespace
        args, numpy-float logger means, a pickled utils.buffer.Buffer
  sgd_seq-cifar10_None_0_50_20260101-120000_deadbeef_last.pt
        Mammoth safe mode: CIFAR ResNet-18 (nf=4, Mammoth's key names), 5 tasks
  derpp_..._2.pt.zst       the first file, zstd-compressed (needs /usr/bin/zstd)
  mammoth_export.{h5,safetensors}  the first file exported by ckpt-convert (with --convert)
  legacy_mlp.pt            the MLP state dict in the legacy (< 1.6) stream
  plain_state_dict.pt      f32/f16/bf16/f64/int8/bool tensors, NaN/Inf/zeros, all-NaN, a transposed view
  dataparallel.pt          nn.DataParallel(...).state_dict(): every key under module.
  compiled_dp.pt           keys under module._orig_mod. (DDP around torch.compile)
  lightning.ckpt           a PyTorch Lightning checkpoint (Adam, StepLR, hyper_parameters)
  adam_state.pt            an optimizer state_dict alone (Adam, amsgrad)
  control_chars.pt         keys and strings holding ESC, newline, tab and C1 controls
  scripted.pt              torch.jit.save of a small module (TorchScript)
  truncated.pt             the first file cut at 60 %
  download.pt              an HTML page saved under a checkpoint name
  lfs_pointer.pt           a git-LFS pointer file
  empty.pt                 0 bytes
  corrupt_crc.pt           plain_state_dict.pt with one payload byte flipped (CRC mismatch)
  evil_reduce.pkl          GLOBAL posix.system + REDUCE (hand-assembled; never executed)
  evil_zip.pt              a torch zip whose data.pkl calls builtins.eval via getattr
"""
import argparse
import collections
import io
import os
import pickle
import pickletools
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'pylib'))
import mammoth_ref as mr  # noqa: E402

STAMP = '20260101-120000'
JOBNUM = '0badcafe-0000-4000-8000-000000000001'


def seed(s):
    torch.manual_seed(s)
    np.random.seed(s)


def one_step(model, opt, x, y):
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


def triangular(tasks, base, drop, gain):
    rows = [[round(base - drop * (t - i) + gain * i, 2) for i in range(t + 1)] for t in range(tasks)]
    masked = [[round(min(99.9, base + 3 - 0.7 * (t - i) + 0.1 * i), 2) for i in range(t + 1)] for t in range(tasks)]
    return rows, masked


def mammoth_safe(out):
    seed(1993)
    name = 'derpp_seq-mnist_None_200_1_%s_0badcafe' % STAMP
    args = mr.mammoth_args('derpp', 'seq-mnist', 'mnistmlp', buffer_size=200, seed=1993, optim_mom=0.9,
                           lr=0.03, lr_scheduler='multisteplr', lr_milestones=[35, 45], batch_size=10,
                           ckpt_name=name, conf_jobnum=JOBNUM, conf_timestamp=STAMP, conf_host='fixture-host')
    model = mr.ContinualModel(mr.MNISTMLP(), args)
    opt = torch.optim.SGD(model.net.parameters(), lr=0.03, momentum=0.9)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[35, 45], gamma=0.1)
    one_step(model, opt, torch.rand(10, 1, 28, 28), torch.randint(0, 6, (10,)))
    sched.step()
    x = torch.rand(300, 1, 28, 28)
    y = torch.randint(0, 6, (300,))
    with torch.no_grad():
        logits = model(x)
    model.buffer.add_data(x, labels=y, logits=logits, task_labels=y // 2)
    rows, masked = triangular(3, 97.0, 12.5, 0.4)
    path = os.path.join(out, name + '_2.pt')
    mr.save_mammoth_checkpoint(path, model, opt, sched, args, mr.make_results(rows, masked), model.buffer, 'safe')
    return path


def mammoth_old_pickle(out):
    seed(7)
    args = mr.mammoth_args('er', 'seq-mnist', 'mnistmlp', buffer_size=200, seed=7, lr=0.1,
                           save_checkpoint_mode='old_pickle', conf_jobnum=JOBNUM, conf_timestamp=STAMP,
                           conf_host='fixture-host')
    model = mr.ContinualModel(mr.MNISTMLP(), args)
    opt = torch.optim.SGD(model.net.parameters(), lr=0.1)
    one_step(model, opt, torch.rand(8, 1, 28, 28), torch.randint(0, 4, (8,)))
    x = torch.rand(250, 1, 28, 28)
    y = torch.randint(0, 4, (250,))
    model.buffer.add_data(x, labels=y)
    rows, masked = triangular(2, 96.0, 20.0, 0.5)
    path = os.path.join(out, 'er_seq-mnist_200_1_%s_1.pt' % STAMP)
    mr.save_mammoth_checkpoint(path, model, opt, None, args, mr.make_results(rows, masked), model.buffer, 'old_pickle')
    return path


def mammoth_resnet(out):
    seed(11)
    name = 'sgd_seq-cifar10_None_0_50_%s_deadbeef' % STAMP
    args = mr.mammoth_args('sgd', 'seq-cifar10', 'resnet18', seed=11, lr=0.1, num_filters=4, savecheck='last',
                           ckpt_name=name, conf_jobnum=JOBNUM, conf_timestamp=STAMP, conf_host='fixture-host')
    model = mr.ContinualModel(mr.resnet18(10, nf=4), args)
    opt = torch.optim.SGD(model.net.parameters(), lr=0.1)
    model.train()
    one_step(model, opt, torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    rows, masked = triangular(5, 93.0, 18.0, 0.3)
    path = os.path.join(out, name + '_last.pt')
    mr.save_mammoth_checkpoint(path, model, opt, None, args, mr.make_results(rows, masked), None, 'safe')
    return path


def legacy(out):
    """The legacy stream names storages by address (str(storage._cdata)) and
    writes them in the sorted order of those names. They are renamed 1000,
    1001, ... in order of first use and rewritten in that order, so the file
    is the same on every run (every storage here is float32)."""
    seed(3)
    buf = io.BytesIO()
    torch.save(mr.MNISTMLP().state_dict(), buf, _use_new_zipfile_serialization=False)
    data = buf.getvalue()

    def pickle_end(at):
        return at + next(p for op, _, p in pickletools.genops(data[at:]) if op.name == 'STOP') + 1

    main = 0
    for _ in range(3):  # magic, protocol, sys_info
        main = pickle_end(main)
    keys_at = pickle_end(main)
    payload_at = pickle_end(keys_at)
    keys = pickle.loads(data[keys_at:payload_at])  # a plain list of str
    payloads, at = {}, payload_at
    for k in keys:  # int64 element count, then the float32 elements
        n = int.from_bytes(data[at:at + 8], 'little')
        payloads[k] = data[at:at + 8 + 4 * n]
        at += 8 + 4 * n
    first_use = [a for op, a, _ in pickletools.genops(data[main:keys_at]) if isinstance(a, str) and a in payloads]
    order = list(dict.fromkeys(first_use))
    body = data[main:keys_at]
    for i, k in enumerate(order):
        old, new = k.encode(), str(1000 + i).encode()
        body = body.replace(b'X' + len(old).to_bytes(4, 'little') + old, b'X' + len(new).to_bytes(4, 'little') + new)
    renamed = [str(1000 + i) for i in range(len(order))]
    out_bytes = (data[:main] + body + pickle.dumps(renamed, protocol=2) + b''.join(payloads[k] for k in order))
    with open(os.path.join(out, 'legacy_mlp.pt'), 'wb') as f:
        f.write(out_bytes)


def plain_state_dict(out):
    seed(5)
    w = torch.randn(8, 4)
    w[0, 0], w[1, 1], w[2, 2] = float('nan'), float('inf'), float('-inf')
    sd = collections.OrderedDict()
    sd['encoder.weight'] = w
    sd['encoder.bias'] = torch.zeros(8)
    sd['encoder.weight_t'] = w.t()  # a transposed view of the same storage
    sd['head.weight'] = torch.randn(3, 8).half()
    sd['head.bias'] = torch.tensor([0.5, -0.25, 0.0]).bfloat16()
    sd['scale'] = torch.tensor(2.0, dtype=torch.float64)
    sd['codebook'] = torch.arange(-4, 4, dtype=torch.int8)
    sd['mask'] = torch.tensor([True, False, True])
    sd['all_nan'] = torch.full((2,), float('nan'))
    for i in range(3):
        sd['blocks.%d.attn.weight' % i] = torch.randn(4, 4)
        sd['blocks.%d.mlp.weight' % i] = torch.randn(4, 4)
    torch.save(sd, os.path.join(out, 'plain_state_dict.pt'))


def dataparallel(out):
    seed(9)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    torch.save(nn.DataParallel(net).state_dict(), os.path.join(out, 'dataparallel.pt'))
    sd = collections.OrderedDict(('module._orig_mod.' + k, v) for k, v in net.state_dict().items())
    torch.save(sd, os.path.join(out, 'compiled_dp.pt'))


def lightning(out):
    seed(13)
    net = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    one_step(net, opt, torch.randn(5, 4), torch.randint(0, 2, (5,)))
    sched.step()
    ck = collections.OrderedDict([
        ('epoch', 3), ('global_step', 120), ('pytorch-lightning_version', '2.1.0'),
        ('state_dict', collections.OrderedDict(('model.' + k, v) for k, v in net.state_dict().items())),
        ('loops', {'fit_loop': {'epoch_progress': {'current': 3}}}),
        ('callbacks', {}), ('optimizer_states', [opt.state_dict()]), ('lr_schedulers', [sched.state_dict()]),
        ('hparams_name', 'kwargs'), ('hyper_parameters', {'lr': 1e-3, 'hidden': 3, 'name': 'tiny'}),
    ])
    torch.save(ck, os.path.join(out, 'lightning.ckpt'))


def adam_state(out):
    seed(17)
    net = nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.01, amsgrad=True)
    for _ in range(2):
        one_step(net, opt, torch.randn(4, 3), torch.randint(0, 2, (4,)))
    torch.save(opt.state_dict(), os.path.join(out, 'adam_state.pt'))


def control_chars(out):
    seed(19)
    sd = collections.OrderedDict()
    sd['evil\x1b[31mred\x1b[0m.weight'] = torch.ones(2)
    sd['line\nbreak\ttab.bias'] = torch.zeros(1)
    sd['c1\u0085next\u009b.weight'] = torch.ones(1)
    sd['ok.weight'] = torch.ones(1)
    torch.save({'model': sd, 'note': 'clear\x1b[2J screen\x07bell'}, os.path.join(out, 'control_chars.pt'))


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x).relu()


def scripted(out):
    seed(23)
    torch.jit.save(torch.jit.script(Tiny()), os.path.join(out, 'scripted.pt'))


def broken(out, mammoth_path):
    data = open(mammoth_path, 'rb').read()
    with open(os.path.join(out, 'truncated.pt'), 'wb') as f:
        f.write(data[:len(data) * 6 // 10])
    with open(os.path.join(out, 'download.pt'), 'w') as f:
        f.write('<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n'
                '<body>Please sign in to download this file.</body></html>\n')
    with open(os.path.join(out, 'lfs_pointer.pt'), 'w') as f:
        f.write('version https://git-lfs.github.com/spec/v1\n'
                'oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n'
                'size 194765982\n')
    open(os.path.join(out, 'empty.pt'), 'wb').close()
    # One byte of the first tensor payload flipped: opens fine, --verify fails.
    src = os.path.join(out, 'plain_state_dict.pt')
    dst = os.path.join(out, 'corrupt_crc.pt')
    shutil.copyfile(src, dst)
    with zipfile.ZipFile(src) as z:
        info = next(i for i in z.infolist() if i.filename.endswith('/data/0'))
    with open(dst, 'r+b') as f:
        f.seek(info.header_offset + 26)
        n, m = int.from_bytes(f.read(2), 'little'), int.from_bytes(f.read(2), 'little')
        at = info.header_offset + 30 + n + m + 5
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x40]))


def evil(out):
    # cposix\nsystem\n (GLOBAL) 'echo pwned' (BINUNICODE) TUPLE1 REDUCE STOP
    cmd = b'echo pwned'
    pkl = (b'\x80\x02cposix\nsystem\nX' + len(cmd).to_bytes(4, 'little') + cmd + b'\x85R.')
    with open(os.path.join(out, 'evil_reduce.pkl'), 'wb') as f:
        f.write(pkl)
    # {'model': getattr(object, 'eval')(expr), 'weights': OrderedDict()}
    expr = b'__import__("os").getcwd()'
    pkl = (b'\x80\x02}(X\x05\x00\x00\x00model'
           b'cbuiltins\ngetattr\n(cbuiltins\nobject\nX\x04\x00\x00\x00evaltR'
           b'X' + len(expr).to_bytes(4, 'little') + expr + b'\x85R'
           b'X\x07\x00\x00\x00weightsccollections\nOrderedDict\n)Ru.')
    path = os.path.join(out, 'evil_zip.pt')
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
        for name, data in (('evil_zip/data.pkl', pkl), ('evil_zip/version', b'3\n')):
            zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            z.writestr(zi, data)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('out')
    ap.add_argument('--stamp', help='file to touch when every fixture is written (for meson)')
    ap.add_argument('--convert', help='ckpt-convert: also export the first file as HDF5 and safetensors')
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(1)
    first = mammoth_safe(a.out)
    mammoth_old_pickle(a.out)
    mammoth_resnet(a.out)
    legacy(a.out)
    plain_state_dict(a.out)
    dataparallel(a.out)
    lightning(a.out)
    adam_state(a.out)
    control_chars(a.out)
    scripted(a.out)
    broken(a.out, first)
    evil(a.out)
    if shutil.which('zstd'):
        subprocess.run(['zstd', '-q', '-f', '-19', first, '-o', first + '.zst'], check=True)
    if a.convert:
        for ext in ('h5', 'safetensors'):
            subprocess.run([a.convert, '-q', '--force', '--no-fsync', first, os.path.join(a.out, 'mammoth_export.' + ext)],
                           check=True)
    if a.stamp:
        with open(a.stamp, 'w') as f:
            f.write('fixtures in %s\n' % a.out)
    print(a.out)


if __name__ == '__main__':
    main()
