#!/usr/bin/python3
"""Build a Mammoth "safe mode" checkpoint for the libckpt benchmarks.

    /usr/bin/python3 bench/make_mammoth_ckpt.py OUT.pt --arch resnet50 [--pad-gb N]

Layout (mammoth.md §1.3, safe mode): a dict in key order
model, optimizer, scheduler, args, results, buffer
  model      ContinualModel.state_dict(): OrderedDict (with _metadata), keys `net.*`
  optimizer  SGD(lr=0.03, momentum=0.9).state_dict() after one real step (momentum buffers)
  scheduler  None
  args       plain dict of ~70 Mammoth-like args (str/int/float/bool/None/list)
  results    [results, results_mask_classes, logger.dump()]  (§1.6; logger accs are str, quirk Q3)
  buffer     {'examples','labels','logits','task_labels'} of a 500-sample buffer
--pad-gb N adds a top-level key 'pad' (Mammoth ignores unknown top-level keys)
holding float32 tensors of 256 MiB each until the file is >= N GB (10^9 bytes).
Saved with torch.save (zip format, pickle protocol 2). Needs torch + torchvision.
"""
import argparse
import os
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torchvision


class ContinualModel(nn.Module):
    """Just enough of Mammoth's wrapper: the backbone lives in self.net."""

    def __init__(self, net):
        super().__init__()
        self.net = net


def mammoth_args(arch, n_tasks):
    ts = time.strftime('%Y%m%d-%H%M%S')
    return {
        'dataset': 'seq-cifar10', 'model': 'derpp', 'backbone': arch,
        'load_best_args': False, 'dataset_config': None, 'model_config': 'default',
        'buffer_size': 500, 'minibatch_size': 32, 'alpha': 0.1, 'beta': 0.5,
        'lr': 0.03, 'batch_size': 32, 'label_perc': 1.0, 'label_perc_by_class': 1.0,
        'joint': 0, 'eval_future': 0, 'custom_task_order': None, 'custom_class_order': None,
        'permute_classes': 0, 'base_path': './data/', 'results_path': 'results/',
        'optimizer': 'sgd', 'optim_wd': 0.0, 'optim_mom': 0.9, 'optim_nesterov': False,
        'drop_last': 0, 'lr_scheduler': None, 'scheduler_mode': 'epoch',
        'lr_milestones': [35, 45], 'sched_multistep_lr_gamma': 0.1,
        'n_epochs': 50, 'n_iters': None, 'fitting_mode': 'epochs',
        'early_stopping_patience': 5, 'early_stopping_metric': 'loss',
        'early_stopping_freq': 1, 'early_stopping_epsilon': 1e-06,
        'num_filters': 64, 'num_classes': 10, 'seed': 1993, 'permute_classes_seed': None,
        'notes': None, 'eval_epochs': None, 'non_verbose': 0, 'disable_log': 0,
        'num_workers': 4, 'enable_other_metrics': 0, 'debug_mode': 0, 'inference_only': 0,
        'code_optimization': 0, 'distributed': 'no', 'savecheck': 'task',
        'save_checkpoint_mode': 'safe', 'loadcheck': None,
        'ckpt_name': f'derpp_seq-cifar10_None_500_50_{ts}_0b1f7c2e',
        'start_from': None, 'stop_after': None, 'wandb_name': None, 'wandb_entity': None,
        'wandb_project': None, 'validation': None, 'validation_mode': 'current',
        'nowand': 1, 'training_setting': 'class-il', 'validation_split': None,
        'checkpoint_path': 'checkpoints', 'save_after_interrupt': 1,
        'conf_jobnum': '0b1f7c2e-4c5b-4d0e-9d9b-1a2b3c4d5e6f', 'conf_timestamp': ts,
        'conf_host': 'bench-host', 'conf_git_hash': None, 'device': 'cpu',
        'class_order': list(range(10)),
    }


def mammoth_results(n_tasks):
    results, masked = [], []
    for t in range(n_tasks):
        results.append([round(90.0 - 15.0 * (t - i) / max(1, t) + 0.37 * i, 2) if t else 96.15
                        for i in range(t + 1)])
        masked.append([round(97.5 - 0.8 * (t - i) + 0.11 * i, 2) for i in range(t + 1)])
    mean = lambda xs: sum(xs) / len(xs)
    logger = {
        'accs': [repr(mean(r) + 1e-14) for r in results],          # quirk Q3: strings
        'fullaccs': [list(r) for r in results],
        'fwt': None, 'bwt': None, 'forgetting': None,
        'fwt_mask_classes': None, 'bwt_mask_classes': None, 'forgetting_mask_classes': None,
        'accs_mask_classes': [repr(mean(r) + 1e-14) for r in masked],
        'fullaccs_mask_classes': [list(r) for r in masked],
    }
    return [results, masked, logger]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('out')
    ap.add_argument('--arch', choices=['resnet50', 'resnet18'], default='resnet50')
    ap.add_argument('--pad-gb', type=float, default=0.0,
                    help='add 256 MiB float32 tensors under top-level "pad" until the file is >= N GB')
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    torch.set_num_threads(2)
    net = getattr(torchvision.models, a.arch)(num_classes=10)
    model = ContinualModel(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9)
    # one real step on random data: creates the momentum buffers, bumps BN stats
    model.train()
    x = torch.randn(8, 3, 64, 64)
    y = torch.randint(0, 10, (8,))
    opt.zero_grad()
    nn.functional.cross_entropy(model.net(x), y).backward()
    opt.step()

    n_tasks = 5
    buf = {
        'examples': torch.randn(500, 3, 32, 32),
        'labels': torch.randint(0, 10, (500,), dtype=torch.int64),
        'logits': torch.randn(500, 10),
        'task_labels': torch.randint(0, n_tasks, (500,), dtype=torch.int64),
    }
    obj = {
        'model': model.state_dict(),
        'optimizer': opt.state_dict(),
        'scheduler': None,
        'args': mammoth_args(a.arch, n_tasks),
        'results': mammoth_results(n_tasks),
        'buffer': buf,
    }
    assert hasattr(obj['model'], '_metadata') and all(k.startswith('net.') for k in obj['model'])

    if a.pad_gb > 0:
        def nbytes_of(o):
            if isinstance(o, torch.Tensor):
                return o.numel() * o.element_size()
            if isinstance(o, dict):
                return sum(nbytes_of(v) for v in o.values())
            if isinstance(o, (list, tuple)):
                return sum(nbytes_of(v) for v in o)
            return 0
        target = int(a.pad_gb * 1e9)
        have = nbytes_of(obj)
        pad = {}
        chunk = 64 * 1024 * 1024  # elements: 256 MiB of float32
        i = 0
        while have < target:
            n = min(chunk, max(1024, (target - have + 3) // 4 + 1024))
            pad[f'pad.{i}'] = torch.randn(n)
            have += n * 4
            i += 1
        obj['pad'] = pad

    # Write under the final file name (torch.save names the zip root folder
    # after the file stem, as in Mammoth's files), in a scratch folder, then move.
    out_dir = os.path.dirname(os.path.abspath(a.out))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix='.mk-') as td:
        tmp = os.path.join(td, os.path.basename(a.out))
        torch.save(obj, tmp)  # zip format, pickle protocol 2 (torch defaults)
        os.replace(tmp, a.out)
    print(f'{a.out}: {os.path.getsize(a.out) / 1e6:.1f} MB, arch={a.arch}, '
          f'model keys={len(obj["model"])}, optimizer states={len(obj["optimizer"]["state"])}, '
          f'args={len(obj["args"])}, pad tensors={len(obj.get("pad", {}))}', file=sys.stderr)


if __name__ == '__main__':
    main()
