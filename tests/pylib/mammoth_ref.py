#!/usr/bin/python3
"""Reference re-implementation of the Mammoth pieces our tests compare against.

Written from ../shared/docs/mammoth.md (Mammoth 0.2.2 semantics), for
/usr/bin/python3 (Debian torch 1.13 + torchvision). Import it with
``sys.path.insert(0, "<repo>/tests/pylib"); import mammoth_ref``.

What it provides
----------------
* Backbones with Mammoth's exact state-dict keys, order and init:
  ``MNISTMLP`` (784-100-100-10, 16 keys incl. the ``_features.*`` and ``net.*``
  aliases, Glorot-uniform weights, zero biases; mammoth.md §2.1) and
  ``resnet18(num_classes=10, nf=64)`` (the CIFAR ResNet-18: 3x3 stem, no
  max-pool, ``shortcut.{0,1}`` naming, 122 keys; §2.2).
  ``ContinualModel(backbone)`` holds it in ``self.net`` so every key gets the
  ``net.`` prefix (§2.3). ``Buffer`` is Mammoth's reservoir buffer.
* ``mammoth_load_checkpoint(path, model, args=None, ignore_classifier=False)``:
  Mammoth's loader (§1.4, §6.3): ``'args' in obj`` means a full checkpoint
  (``module.`` substrings removed, *strict* ``load_state_dict`` of the
  ContinualModel, buffer through ``load_buffer``), anything else is a plain
  backbone state dict (``_load_net``: ``module.`` removed, classifier replaced
  or dropped, the ``'net' in k -> k[4:]`` rewrite, strict load with Mammoth's
  non-strict fallback). Raises ``LoadError`` (with ``.missing`` and
  ``.unexpected``) where Mammoth raises. Returns ``(model, results_or_None)``.
* ``load_weights_only(path)``: ``torch.load(weights_only=True)`` on torch>=2.1;
  on torch 1.13 (no BINFLOAT in its weights_only unpickler) it first runs
  ``check_globals_allowlisted(path)`` -- a static pickletools scan (never
  executes the pickle) requiring every GLOBAL to be on torch 2.x's
  weights_only allowlist and every opcode to be one that unpickler implements
  -- then ``torch.load(weights_only=False)``.
* ``save_mammoth_checkpoint(path, model, optimizer, scheduler, args, results,
  buffer, mode='safe'|'old_pickle')``: Mammoth's layout (§1.3): safe key order
  ``model, optimizer, scheduler, args, results[, buffer]`` with ``args`` and
  ``results`` through ``to_parsable_obj`` (so numpy-float logger means become
  str, quirk Q3); old_pickle order ``model, args, results, optimizer,
  scheduler[, buffer]`` with a Namespace and a pickled ``utils.buffer.Buffer``.
  ``make_results(class_il, task_il)`` builds ``[results, results_mask_classes,
  logger.dump()]`` the way Mammoth's train loop does.
* ``mammoth_ckpt_name(...)`` / ``mammoth_ckpt_filename(...)`` / ``parse_ckpt_name``
  for the file names of §1.2; ``mammoth_args(...)`` a plain args dict.

CLI (exit codes: 0 ok, 1 load failed / not allowlisted, 2 usage or I/O error)
---------------------------------------------------------------------------
  mammoth_ref.py write --arch mnistmlp|resnet18 --out X.pt
        [--kind mammoth|backbone]   full Mammoth checkpoint (default) or a plain
                                    backbone state dict
        [--prefix P]                prepend P to every model key (e.g. module.)
        [--keys all|unique]         backbone kind: all 16 MNISTMLP keys or only
                                    fc1/fc2/classifier (default all)
        [--no-classifier]           drop the classifier keys
        [--model sgd|er|der|derpp] [--buffer-size N] [--mode safe|old_pickle]
        [--tasks N] [--momentum M] [--seed S] [--ckpt-name NAME]
      Prints the path written.
  mammoth_ref.py load X.pt --arch mnistmlp|resnet18
        [--model M] [--buffer-size N] [--ignore-classifier] [--json]
      Loads X.pt through mammoth_load_checkpoint into a fresh ContinualModel.
      Exit 0 when it loads; otherwise prints the missing/unexpected keys (or
      the weights_only refusal) and exits 1. --json prints one JSON object:
      {"ok", "kind", "error", "missing", "unexpected", "results", "buffer"}.
  mammoth_ref.py globals X.pt
      Lists the pickle globals; exit 0 when all are on torch 2.x's
      weights_only allowlist (and every opcode is supported), else 1.
"""
import argparse
import collections
import collections.abc
import copy
import io
import json
import math
import os
import pickletools
import sys
import tarfile
import time
import types
import uuid
import zipfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "MNISTMLP", "ResNet", "BasicBlock", "resnet18", "make_backbone", "ContinualModel", "Buffer",
    "LoadError", "WeightsOnlyError", "check_globals_allowlisted", "pickle_globals", "load_weights_only",
    "mammoth_load_checkpoint", "save_mammoth_checkpoint", "to_parsable_obj", "make_results",
    "mammoth_args", "mammoth_ckpt_name", "mammoth_ckpt_filename", "parse_ckpt_name",
    "REHEARSAL_MODELS", "BUFFER_ATTRIBUTES",
]

# --------------------------------------------------------------------------
# Backbones (mammoth.md §2)
# --------------------------------------------------------------------------


def xavier(m):
    """Mammoth's init for Linear layers: Glorot-uniform weights, zero bias."""
    if m.__class__.__name__ == "Linear":
        fan_out, fan_in = m.weight.data.shape
        bound = math.sqrt(3.0) * math.sqrt(2.0 / (fan_in + fan_out))
        m.weight.data.uniform_(-bound, bound)
        if m.bias is not None:
            m.bias.data.fill_(0.0)


class MNISTMLP(nn.Module):
    """Mammoth's BaseMNISTMLP(784, 10, 100): 16 state-dict keys, 6 storages."""

    def __init__(self, input_size=784, output_size=10, hidden_size=100):
        super().__init__()
        self.input_size = input_size
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.fc2 = nn.Linear(hidden_size, hidden_size)
        self._features = nn.Sequential(self.fc1, nn.ReLU(), self.fc2, nn.ReLU())
        self.classifier = nn.Linear(hidden_size, output_size)
        self.net = nn.Sequential(self._features, self.classifier)
        self.net.apply(xavier)  # children first: fc1, fc2, classifier

    def forward(self, x, returnt="out"):
        feats = self._features(x.reshape(-1, self.input_size))
        if returnt == "features":
            return feats
        out = self.classifier(feats)
        return (out, feats) if returnt == "both" else out


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Mammoth's CIFAR ResNet (backbone/ResNetBlock.py), default PyTorch init."""

    def __init__(self, block, num_blocks, num_classes=10, nf=64):
        super().__init__()
        self.in_planes = nf
        self.conv1 = conv3x3(3, nf)
        self.bn1 = nn.BatchNorm2d(nf)
        self.layer1 = self._make_layer(block, nf, num_blocks[0], 1)
        self.layer2 = self._make_layer(block, nf * 2, num_blocks[1], 2)
        self.layer3 = self._make_layer(block, nf * 4, num_blocks[2], 2)
        self.layer4 = self._make_layer(block, nf * 8, num_blocks[3], 2)
        self.classifier = nn.Linear(nf * 8 * block.expansion, num_classes)

    def _make_layer(self, block, planes, n, stride):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x, returnt="out"):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        feats = F.avg_pool2d(out, out.shape[2]).view(out.size(0), -1)
        if returnt == "features":
            return feats
        logits = self.classifier(feats)
        return (logits, feats) if returnt == "both" else logits


def resnet18(num_classes=10, nf=64):
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, nf)


def make_backbone(arch, num_classes=10):
    if arch == "mnistmlp":
        return MNISTMLP(784, num_classes, 100)
    if arch == "resnet18":
        return resnet18(num_classes)
    raise ValueError("unknown backbone %r (mnistmlp, resnet18)" % arch)


# --------------------------------------------------------------------------
# ContinualModel and Buffer (mammoth.md §2.3, §1.4)
# --------------------------------------------------------------------------

REHEARSAL_MODELS = ("er", "der", "derpp")
BUFFER_ATTRIBUTES = ("examples", "labels", "logits", "task_labels", "true_labels")


class Buffer:
    """Mammoth's reservoir buffer (utils/buffer.py), numpy RNG as in Mammoth."""

    def __init__(self, buffer_size, device="cpu"):
        self.buffer_size = buffer_size
        self.device = device
        self.num_seen_examples = 0
        self.attributes = list(BUFFER_ATTRIBUTES)

    def __len__(self):
        return min(self.num_seen_examples, self.buffer_size)

    def is_empty(self):
        return self.num_seen_examples == 0

    def _reservoir(self):
        if self.num_seen_examples < self.buffer_size:
            return self.num_seen_examples
        rand = np.random.randint(0, self.num_seen_examples + 1)
        return rand if rand < self.buffer_size else -1

    def add_data(self, examples, labels=None, logits=None, task_labels=None):
        given = {"examples": examples, "labels": labels, "logits": logits, "task_labels": task_labels}
        for name, t in given.items():
            if t is not None and not hasattr(self, name):
                dtype = torch.int64 if name.endswith("els") else torch.float32
                setattr(self, name, torch.zeros((self.buffer_size, *t.shape[1:]), dtype=dtype))
        for i in range(examples.shape[0]):
            index = self._reservoir()
            self.num_seen_examples += 1
            if index >= 0:
                for name, t in given.items():
                    if t is not None:
                        getattr(self, name)[index] = t[i]

    def get_data(self, size, transform=None):
        n = min(self.num_seen_examples, self.examples.shape[0])
        size = min(size, n)
        choice = np.random.choice(n, size=size, replace=False)
        ex = self.examples[choice]
        if transform is not None:
            ex = torch.stack([transform(e) for e in ex])
        out = (ex,)
        for name in self.attributes[1:]:
            if hasattr(self, name):
                out += (getattr(self, name)[choice],)
        return out

    def serialize(self):
        return {a: getattr(self, a).cpu() for a in self.attributes if hasattr(self, a)}


class ContinualModel(nn.Module):
    """Just Mammoth's wrapper structure: the backbone is ``self.net``."""

    def __init__(self, backbone, args=None):
        super().__init__()
        self.net = backbone
        self.args = argparse.Namespace(**(args or {}))
        if getattr(self.args, "buffer_size", None):
            self.buffer = Buffer(self.args.buffer_size)

    def forward(self, x):
        return self.net(x)

    def load_buffer(self, buffer):
        """mammoth.md §1.4: a dict becomes the buffer's attributes; num_seen_examples
        is reset to the buffer size (Mammoth's Q7); a Buffer object replaces it."""
        if isinstance(buffer, dict):
            if not hasattr(self, "buffer"):
                self.buffer = Buffer(getattr(self.args, "buffer_size", 0) or 0)
            for k, v in buffer.items():
                setattr(self.buffer, k, v)
            self.buffer.attributes = list(buffer.keys())
            self.buffer.num_seen_examples = buffer["examples"].shape[0]
            if self.buffer.buffer_size != buffer["examples"].shape[0]:
                raise LoadError("Buffer size mismatch. Expected %d got %d"
                                % (self.buffer.buffer_size, buffer["examples"].shape[0]))
        else:
            self.buffer = buffer


# --------------------------------------------------------------------------
# weights_only: torch 2.x allowlist, checked statically
# --------------------------------------------------------------------------

class WeightsOnlyError(Exception):
    """The file would be refused by torch.load(weights_only=True) on torch 2.x."""

    def __init__(self, message, bad_globals=(), bad_opcodes=()):
        super().__init__(message)
        self.bad_globals = list(bad_globals)
        self.bad_opcodes = list(bad_opcodes)


# torch 2.x _weights_only_unpickler: the opcodes it implements (pytorch-format.md §2.1).
WEIGHTS_ONLY_OPCODES = frozenset("""
PROTO STOP GLOBAL NEWOBJ REDUCE BUILD APPEND APPENDS SETITEM SETITEMS MARK TUPLE TUPLE1 TUPLE2 TUPLE3
NONE NEWFALSE NEWTRUE EMPTY_TUPLE EMPTY_LIST EMPTY_DICT EMPTY_SET BININT BININT1 BININT2 BINFLOAT
BINUNICODE SHORT_BINSTRING BINPERSID BINGET LONG_BINGET BINPUT LONG_BINPUT LONG1""".split())

_STORAGE_NAMES = """Double Float Half BFloat16 Long Int Short Char Byte Bool ComplexFloat ComplexDouble
QUInt8 QInt8 QInt32 QUInt4x2 QUInt2x4""".split()
_TENSOR_NAMES = "Double Float Half BFloat16 Long Int Short Char Byte Bool".split()
_DTYPE_NAMES = """float32 float float64 double float16 half bfloat16 complex32 chalf complex64 cfloat
complex128 cdouble uint8 int8 int16 short int32 int int64 long bool qint8 quint8 qint32 quint4x2
quint2x4 uint16 uint32 uint64 float8_e4m3fn float8_e5m2 float8_e4m3fnuz float8_e5m2fnuz
bits1x8 bits2x4 bits4x2 bits8 bits16""".split() + ["uint%d" % i for i in range(1, 8)] + \
    ["int%d" % i for i in range(1, 8)]
_REBUILD_FUNCTIONS = """_rebuild_tensor _rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_parameter
_rebuild_parameter_with_state _rebuild_qtensor _rebuild_sparse_tensor _rebuild_meta_tensor_no_storage
_rebuild_nested_tensor _rebuild_wrapper_subclass _rebuild_device_tensor_from_cpu_tensor
_rebuild_device_tensor_from_numpy""".split()


def _build_allowlist():
    allowed = {
        "collections.OrderedDict", "collections.Counter", "torch.nn.parameter.Parameter",
        "torch.serialization._get_layout", "torch.Size", "torch.Tensor", "torch.device",
        "_codecs.encode", "builtins.bytearray", "builtins.set", "builtins.complex",
        "torch._tensor._rebuild_from_type_v2", "torch.storage.TypedStorage", "torch.storage.UntypedStorage",
        "torch.UntypedStorage",
    }
    allowed.update("torch." + d for d in _DTYPE_NAMES)
    allowed.update("torch._utils." + f for f in _REBUILD_FUNCTIONS)
    for prefix in ("torch.", "torch.cuda."):
        allowed.update(prefix + n + "Storage" for n in _STORAGE_NAMES)
        allowed.update(prefix + n + "Tensor" for n in _TENSOR_NAMES)
    for prefix in ("torch.sparse.", "torch.cuda.sparse."):
        allowed.update(prefix + n + "Tensor" for n in _TENSOR_NAMES if n != "Bool")
    allowed.update("torch." + q for q in ("per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
                                          "per_channel_symmetric", "per_channel_affine_float_qparams"))
    try:  # whatever this torch's own weights_only unpickler allows (a subset on 1.13)
        from torch import _weights_only_unpickler as wou
        allowed.update(wou._get_allowed_globals().keys())
    except Exception:
        pass
    return frozenset(allowed)


WEIGHTS_ONLY_GLOBALS = _build_allowlist()
# Py2 names torch maps before the lookup (NAME_MAPPING / IMPORT_MAPPING).
_MODULE_RENAMES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _pickle_streams(path):
    """The pickles torch.load would unpickle: zip -> <archive>/data.pkl; legacy
    stream -> its leading pickles (magic, protocol, sys_info, object, keys)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if not names:
                raise WeightsOnlyError("%s: empty zip" % path)
            prefix = names[0].split("/", 1)[0]
            pkl = prefix + "/data.pkl"
            if pkl not in names:
                raise WeightsOnlyError("%s: no %s record" % (path, pkl))
            return [z.read(pkl)]
    if tarfile.is_tarfile(path):
        raise WeightsOnlyError("%s: legacy TAR checkpoints are refused by weights_only" % path)
    with open(path, "rb") as f:
        data = f.read()
    streams, pos = [], 0
    for _ in range(5):  # magic number, protocol, sys_info, object, storage keys
        if pos >= len(data):
            break
        end = _pickle_end(data, pos)
        streams.append(data[pos:end])
        pos = end
    return streams


def _pickle_end(data, pos):
    for op, _, p in pickletools.genops(io.BytesIO(data[pos:])):
        if op.name == "STOP":
            return pos + p + 1
    raise WeightsOnlyError("pickle without STOP")


def pickle_globals(path):
    """(globals, opcodes) used by the pickles of a checkpoint, by static scan."""
    found_globals, found_ops = [], set()
    for stream in _pickle_streams(path):
        try:
            for op, arg, _ in pickletools.genops(io.BytesIO(stream)):
                found_ops.add(op.name)
                if op.name in ("GLOBAL", "INST"):
                    module, name = arg.split(" ", 1)
                    g = "%s.%s" % (_MODULE_RENAMES.get(module, module), name)
                    if g not in found_globals:
                        found_globals.append(g)
        except WeightsOnlyError:
            raise
        except Exception as e:  # truncated or malformed pickle
            raise WeightsOnlyError("%s: unreadable pickle: %s" % (path, e))
    return found_globals, found_ops


def check_globals_allowlisted(path):
    """Raises WeightsOnlyError unless every pickle GLOBAL of `path` is on torch
    2.x's weights_only allowlist and every opcode is one its unpickler
    implements. Never executes the pickle. Returns the list of globals."""
    found_globals, found_ops = pickle_globals(path)
    bad_globals = [g for g in found_globals if g not in WEIGHTS_ONLY_GLOBALS]
    bad_ops = sorted(found_ops - WEIGHTS_ONLY_OPCODES)
    if bad_globals or bad_ops:
        parts = []
        if bad_globals:
            parts.append("unsupported globals: " + ", ".join(bad_globals))
        if bad_ops:
            parts.append("unsupported opcodes: " + ", ".join(bad_ops))
        raise WeightsOnlyError("%s: weights_only would refuse it (%s)" % (path, "; ".join(parts)),
                               bad_globals, bad_ops)
    return found_globals


def _torch_at_least(major, minor):
    parts = torch.__version__.split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except ValueError:
        return False


def load_weights_only(path):
    """torch.load(path, map_location='cpu', weights_only=True), emulated on torch<2.1."""
    if _torch_at_least(2, 1):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises UnpicklingError for refusals
            raise WeightsOnlyError("%s: %s" % (path, e))
    check_globals_allowlisted(path)
    return torch.load(path, map_location="cpu", weights_only=False)


# --------------------------------------------------------------------------
# The loader (mammoth.md §1.4, §6.3)
# --------------------------------------------------------------------------

class LoadError(Exception):
    """Mammoth's load failed (strict load_state_dict, or its assertions)."""

    def __init__(self, message, missing=(), unexpected=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)


def _strict_load(module, state):
    """module.load_state_dict(state) (strict); failures become LoadError with the key lists."""
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        own = list(module.state_dict().keys())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        raise LoadError(str(e), missing, unexpected)


def _load_mammoth_model(state, model):
    state = collections.OrderedDict((k.replace("module.", ""), v) for k, v in state.items())
    # Mammoth's `if '_features' in dict_keys` tests dict membership: nothing is dropped (Q1).
    _strict_load(model, state)
    return model


def _load_net(state, model, ignore_classifier=False):
    state = collections.OrderedDict((k.replace("module.", ""), v) for k, v in state.items())
    if not ignore_classifier:
        cl = [v for k, v in state.items() if "classifier" in k]
        if cl:  # Mammoth replaces the head by a fresh Linear sized from the file (Q15)
            model.net.classifier = nn.Linear(model.net.classifier.in_features, cl[-1].shape[0])
    else:
        state = collections.OrderedDict((k, v) for k, v in state.items() if "classifier" not in k)
    renamed = collections.OrderedDict()
    for k, v in state.items():  # `if 'net' in k: k = k[4:]` (mangles net.0.0.weight, Q15)
        k = k[4:] if "net" in k else k
        renamed[k.replace("wrappee.", "")] = v
    try:
        model.net.load_state_dict(renamed)
    except RuntimeError as e:
        try:
            missing, unexpected = model.net.load_state_dict(renamed, strict=False)
        except RuntimeError as e2:  # shape mismatches fail even non-strict
            raise LoadError(str(e2), [], [])
        unexpected = [k for k in unexpected if "_features" not in k and "linear" not in k]
        if ignore_classifier:
            bad = [k for k in unexpected if "classifier" not in k]
        else:
            bad = unexpected
        if bad:
            raise LoadError("Some of the keys not loaded were not classifier keys: %s (%s)" % (bad, e),
                            missing, bad)
    return model


def mammoth_load_checkpoint(path, model, args=None, ignore_classifier=False):
    """Mammoth's mammoth_load_checkpoint for a local path (distributed='no').

    Returns (model, results) for a Mammoth checkpoint, (model, None) for a plain
    state dict. Raises WeightsOnlyError when torch.load(weights_only=True) would
    refuse the file, LoadError when Mammoth's load fails."""
    if not os.path.exists(path):
        raise ValueError("The given checkpoint does not exist.")
    saved = load_weights_only(path)
    if isinstance(saved, dict) and "args" in saved:
        saved_args = argparse.Namespace(**saved["args"])
        model = _load_mammoth_model(saved["model"], model)
        if "buffer" in saved:
            if args is not None and getattr(args, "model", None) != getattr(saved_args, "model", None):
                print("WARNING: the loaded model was trained with a different model: %s"
                      % getattr(saved_args, "model", None), file=sys.stderr)
            model.load_buffer(saved["buffer"])
        return model, saved["results"]
    if not isinstance(saved, dict):
        raise LoadError("not a state dict: %s" % type(saved).__name__)
    return _load_net(saved, model, ignore_classifier), None


# --------------------------------------------------------------------------
# The writer (mammoth.md §1.2, §1.3, §1.6)
# --------------------------------------------------------------------------

def to_parsable_obj(r):
    """Mammoth's to_parsable_obj, quirks included (Q3): numpy scalars, devices,
    1-element sequences and other objects come back as str."""
    if isinstance(r, argparse.Namespace):
        return to_parsable_obj(vars(r))
    if isinstance(r, list):
        return [to_parsable_obj(x) for x in r]
    if isinstance(r, dict):
        return {k: to_parsable_obj(v) for k, v in r.items()}
    if r is None:
        return None
    if isinstance(r, torch.Tensor):
        r = r.detach().cpu().numpy().tolist()
    elif isinstance(r, np.ndarray):
        r = r.tolist()
    if not isinstance(r, str) and isinstance(r, collections.abc.Iterable) and len(r) > 1:
        return [to_parsable_obj(x) for x in r]
    if isinstance(r, (int, float, str, bool)):
        if not isinstance(r, np.generic):
            return r  # plain Python scalar: r.item() raises, returned as is
        r = r.item()  # numpy scalar: converted, then falls through to str (the quirk)
    return str(r)


def make_results(class_il, task_il, setting="class-il"):
    """[results, results_mask_classes, logger.dump()] as Mammoth's train loop
    keeps them: per-task lists of plain floats, logger means as numpy.float64."""
    results = [[float(a) for a in row] for row in class_il]
    masked = [[float(a) for a in row] for row in task_il]
    logger = collections.OrderedDict()
    logger["accs"] = [np.mean(row) for row in results]
    logger["fullaccs"] = [list(row) for row in results] if setting == "class-il" else []
    for k in ("fwt", "bwt", "forgetting", "fwt_mask_classes", "bwt_mask_classes", "forgetting_mask_classes"):
        logger[k] = None
    if setting == "class-il":
        logger["accs_mask_classes"] = [np.mean(row) for row in masked]
        logger["fullaccs_mask_classes"] = [list(row) for row in masked]
    return [results, masked, dict(logger)]


def _state(obj):
    if obj is None or isinstance(obj, dict):
        return obj
    return obj.state_dict()


class _FakeModule(types.ModuleType):
    pass


class _LegacyBuffer:
    """Pickled as GLOBAL `utils.buffer Buffer` (old_pickle mode); needs the
    `utils.buffer` module registered while saving (see _legacy_buffer_module)."""


class _LegacyReservoir:
    """Pickled as GLOBAL `utils.buffer ReservoirSampling`."""


class _legacy_buffer_module:
    """Registers a stand-in `utils.buffer` module so pickle can name Mammoth's
    Buffer class; removes it again (only if it was not there before)."""

    def __enter__(self):
        if "utils.buffer" in sys.modules:
            raise RuntimeError("a real `utils.buffer` module is imported; cannot stand in for Mammoth's")
        buf = _FakeModule("utils.buffer")
        buf.Buffer, buf.ReservoirSampling = _LegacyBuffer, _LegacyReservoir
        _LegacyBuffer.__module__ = _LegacyReservoir.__module__ = "utils.buffer"
        _LegacyBuffer.__qualname__ = _LegacyBuffer.__name__ = "Buffer"
        _LegacyReservoir.__qualname__ = _LegacyReservoir.__name__ = "ReservoirSampling"
        self.added = ["utils.buffer"]
        if "utils" not in sys.modules:  # leave a real `utils` package alone
            sys.modules["utils"] = _FakeModule("utils")
            self.added.append("utils")
        sys.modules["utils.buffer"] = buf
        return self

    def __exit__(self, *exc):
        for m in self.added:
            sys.modules.pop(m, None)
        _LegacyBuffer.__module__ = _LegacyReservoir.__module__ = __name__


def _legacy_buffer_object(buffer):
    """A deep copy of the buffer as Mammoth 0.2.2's pickled Buffer object."""
    obj = _LegacyBuffer()
    tensors = buffer.serialize() if isinstance(buffer, Buffer) else dict(buffer)
    size = next(iter(tensors.values())).shape[0] if tensors else 0
    sampler = _LegacyReservoir()
    sampler.__dict__.update({"buffer_size": size, "device": "cpu"})
    obj.__dict__.update({
        "_buffer_size": size, "device": "cpu",
        "num_seen_examples": getattr(buffer, "num_seen_examples", size),
        "attributes": list(BUFFER_ATTRIBUTES), "attention_maps": [None] * size,
        "sample_selection_strategy": "reservoir", "sample_selection_fn": sampler,
    })
    obj.__dict__.update({k: v.clone() for k, v in tensors.items()})
    return obj


def save_mammoth_checkpoint(path, model, optimizer, scheduler, args, results, buffer=None, mode="safe"):
    """Writes `path` exactly as Mammoth's save_mammoth_checkpoint does (§1.3).

    model: a ContinualModel (its state_dict is saved) or a state dict;
    optimizer/scheduler: objects, their state dicts, or None;
    args: dict or Namespace; results: [results, results_mask_classes, logger];
    buffer: a Buffer, a dict of tensors, or None (no 'buffer' key)."""
    model_state = model.state_dict() if isinstance(model, nn.Module) else model
    if mode == "safe":
        obj = {
            "model": model_state,
            "optimizer": _state(optimizer),
            "scheduler": _state(scheduler),
            "args": to_parsable_obj(vars(args) if isinstance(args, argparse.Namespace) else dict(args)),
            "results": to_parsable_obj(results),
        }
        if buffer is not None:
            obj["buffer"] = buffer.serialize() if isinstance(buffer, Buffer) else dict(buffer)
        torch.save(obj, path)
    elif mode == "old_pickle":
        ns = args if isinstance(args, argparse.Namespace) else argparse.Namespace(**args)
        ns = copy.copy(ns)
        ns.device = torch.device("cpu")
        obj = {
            "model": model_state,
            "args": ns,
            "results": results,
            "optimizer": _state(optimizer),
            "scheduler": _state(scheduler),
        }
        with _legacy_buffer_module():
            if buffer is not None:
                obj["buffer"] = _legacy_buffer_object(buffer)
            torch.save(obj, path)
    else:
        raise ValueError("mode must be 'safe' or 'old_pickle', not %r" % mode)
    return path


def mammoth_ckpt_name(model, dataset, buffer_size=0, n_epochs=1, ckpt_name=None, dataset_config=None,
                      timestamp=None, uid=None):
    """args.ckpt_name as Mammoth composes it (§1.2), without the task suffix:
    [<ckpt_name>_]<model>_<dataset>_<dataset_config|None>_<buffer_size|0>_<n_epochs>_<%Y%m%d-%H%M%S>_<uid8>."""
    timestamp = timestamp or time.strftime("%Y%m%d-%H%M%S")
    uid = uid or str(uuid.uuid4())[:8]
    base = "%s_%s_%s_%s_%s_%s_%s" % (model.replace("_", "-"), dataset.replace("_", "-"), dataset_config,
                                     buffer_size or 0, n_epochs, timestamp, uid)
    return "%s_%s" % (ckpt_name, base) if ckpt_name else base


def mammoth_ckpt_filename(name, task=None, savecheck="task", joint=False):
    """<name>_<task>.pt (savecheck task), <name>_last.pt (last), <name>_joint.pt (--joint 1)."""
    if joint:
        return name + "_joint.pt"
    if savecheck == "last":
        return name + "_last.pt"
    return "%s_%d.pt" % (name, task)


_NAME_RES = None


def parse_ckpt_name(filename):
    """Splits a Mammoth file name; tries the code form (with <dataset_config>
    and <uid>) first, then the documented form (without). Returns a dict of
    prefix, model, dataset, dataset_config, buffer_size, n_epochs, timestamp,
    uid, task (missing parts None), or None when the name fits neither."""
    import re
    global _NAME_RES
    if _NAME_RES is None:
        head = r"^(?:(?P<prefix>.+)_)?(?P<model>[A-Za-z0-9-]+)_(?P<dataset>[A-Za-z0-9-]+)"
        tail = r"_(?P<task>\d+|last|joint)\.pt$"
        _NAME_RES = [
            re.compile(head + r"_(?P<dataset_config>[^_]+)_(?P<buffer_size>\d+)_(?P<n_epochs>\d+)"
                       r"_(?P<timestamp>\d{8}-\d{6})_(?P<uid>[0-9a-f]{8})" + tail),
            re.compile(head + r"_(?P<buffer_size>\d+)_(?P<n_epochs>\d+)_(?P<timestamp>\d{8}-\d{6})" + tail),
        ]
    base = os.path.basename(filename)
    for rx in _NAME_RES:
        m = rx.match(base)
        if m:
            d = dict.fromkeys(("prefix", "model", "dataset", "dataset_config", "buffer_size", "n_epochs",
                               "timestamp", "uid", "task"))
            d.update(m.groupdict())
            return d
    return None


def mammoth_args(model="sgd", dataset="seq-mnist", backbone=None, **overrides):
    """A plain args dict shaped like Mammoth 0.2.2's vars(args) (§1.3, §7.4)."""
    backbone = backbone or ("resnet18" if dataset == "seq-cifar10" else "mnistmlp")
    defaults = {"seq-cifar10": (32, 50)}.get(dataset, (64, 1))
    batch_size = overrides.get("batch_size", defaults[0])
    args = collections.OrderedDict([
        ("dataset", dataset), ("model", model), ("backbone", backbone), ("load_best_args", False),
        ("dataset_config", None), ("model_config", "default"),
    ])
    if model in REHEARSAL_MODELS:
        args["buffer_size"] = overrides.pop("buffer_size", 200)
        args["minibatch_size"] = batch_size  # Q2: always overwritten by batch_size
    if model in ("der", "derpp"):
        args["alpha"] = overrides.pop("alpha", 0.3)
    if model == "derpp":
        args["beta"] = overrides.pop("beta", 0.5)
    args.update([
        ("lr", 0.1), ("batch_size", batch_size), ("label_perc", 1.0), ("label_perc_by_class", 1.0),
        ("joint", 0), ("eval_future", 0), ("custom_task_order", None), ("custom_class_order", None),
        ("permute_classes", 0), ("base_path", "./data/"), ("results_path", "results/"),
        ("optimizer", "sgd"), ("optim_wd", 0.0), ("optim_mom", 0.0), ("optim_nesterov", False),
        ("drop_last", 0), ("lr_scheduler", None), ("scheduler_mode", "epoch"), ("lr_milestones", []),
        ("sched_multistep_lr_gamma", 0.1), ("n_epochs", defaults[1]), ("n_iters", None),
        ("fitting_mode", "epochs"), ("early_stopping_patience", 5), ("early_stopping_metric", "loss"),
        ("early_stopping_freq", 1), ("early_stopping_epsilon", 1e-6), ("num_classes", 10),
        ("mlp_hidden_size" if backbone == "mnistmlp" else "num_filters", 100 if backbone == "mnistmlp" else 64),
        ("seed", None), ("permute_classes_seed", None), ("notes", None), ("eval_epochs", None),
        ("non_verbose", 0), ("disable_log", 0), ("num_workers", 0), ("enable_other_metrics", 0),
        ("debug_mode", 0), ("inference_only", 0), ("code_optimization", 0), ("distributed", "no"),
        ("savecheck", "task"), ("save_checkpoint_mode", "safe"), ("loadcheck", None), ("ckpt_name", None),
        ("start_from", None), ("stop_after", None), ("wandb_name", None), ("wandb_entity", None),
        ("wandb_project", None), ("validation", None), ("validation_mode", "current"), ("nowand", 1),
        ("training_setting", "class-il"), ("validation_split", None), ("checkpoint_path", "checkpoints"),
        ("save_after_interrupt", 1), ("conf_jobnum", str(uuid.uuid4())),
        ("conf_timestamp", time.strftime("%Y%m%d-%H%M%S")), ("conf_host", "localhost"), ("conf_git_hash", None),
        ("device", "cpu"),
    ])
    args.update(overrides)
    if "buffer_size" in args and model in REHEARSAL_MODELS:
        args["minibatch_size"] = args["batch_size"]
    return dict(args)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _example_inputs(arch, n):
    return torch.rand(n, 1, 28, 28) if arch == "mnistmlp" else torch.randn(n, 3, 32, 32)


def _fill_buffer(model, arch, buffer_size, with_labels, with_logits):
    n = buffer_size + buffer_size // 2  # more than fits: the reservoir draws
    x = _example_inputs(arch, n)
    y = torch.randint(0, 10, (n,))
    with torch.no_grad():
        logits = model.net(x) if with_logits else None
    model.buffer.add_data(x, labels=y if with_labels else None, logits=logits)
    return model.buffer


def _cmd_write(a):
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    backbone = make_backbone(a.arch)
    if a.kind == "backbone":
        state = backbone.state_dict()
        if a.keys == "unique":
            state = collections.OrderedDict((k, v) for k, v in state.items()
                                            if not k.startswith(("_features.", "net.")))
        if a.no_classifier:
            state = collections.OrderedDict((k, v) for k, v in state.items() if "classifier" not in k
                                            and not (a.arch == "mnistmlp" and k.startswith("net.1.")))
        state = collections.OrderedDict((a.prefix + k, v) for k, v in state.items())
        torch.save(state, a.out)
        print(a.out)
        return 0
    extra = {"buffer_size": a.buffer_size} if a.model in REHEARSAL_MODELS else {}
    args = mammoth_args(a.model, "seq-cifar10" if a.arch == "resnet18" else "seq-mnist", a.arch,
                        optim_mom=a.momentum, seed=a.seed, ckpt_name=a.ckpt_name,
                        save_checkpoint_mode=a.mode, **extra)
    model = ContinualModel(backbone, args)
    opt = torch.optim.SGD(model.net.parameters(), lr=args["lr"], momentum=a.momentum)
    x, y = _example_inputs(a.arch, 8), torch.randint(0, 10, (8,))
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    buffer = None
    if a.model in REHEARSAL_MODELS:
        buffer = _fill_buffer(model, a.arch, a.buffer_size, a.model != "der", a.model != "er")
    rows = [[round(95.0 - 10.0 * (t - i) + 0.5 * i, 2) for i in range(t + 1)] for t in range(a.tasks)]
    masked = [[round(98.0 - 1.0 * (t - i), 2) for i in range(t + 1)] for t in range(a.tasks)]
    state = model.state_dict()
    if a.prefix:
        state = collections.OrderedDict((a.prefix + k, v) for k, v in state.items())
    save_mammoth_checkpoint(a.out, state, opt, None, args, make_results(rows, masked), buffer, a.mode)
    print(a.out)
    return 0


def _describe_buffer(model):
    buf = getattr(model, "buffer", None)
    if buf is None:
        return None
    d = {k: list(getattr(buf, k).shape) for k in BUFFER_ATTRIBUTES if hasattr(buf, k)}
    d["num_seen_examples"] = buf.num_seen_examples
    return d


def _cmd_load(a):
    args = {"model": a.model}
    if a.buffer_size:
        args["buffer_size"] = a.buffer_size
    model = ContinualModel(make_backbone(a.arch), args)
    report = {"ok": False, "kind": None, "error": None, "missing": [], "unexpected": [],
              "results": None, "buffer": None}
    try:
        _, results = mammoth_load_checkpoint(a.path, model, argparse.Namespace(**args), a.ignore_classifier)
        report.update(ok=True, kind="mammoth" if results is not None else "backbone", results=results,
                      buffer=_describe_buffer(model))
    except LoadError as e:
        report.update(error=str(e), missing=e.missing, unexpected=e.unexpected)
    except WeightsOnlyError as e:
        report.update(error=str(e))
    if a.json:
        print(json.dumps(report, default=str))
    elif report["ok"]:
        print("ok: %s checkpoint loaded into %s" % (report["kind"], a.arch))
    else:
        print("load failed: %s" % report["error"])
        for k in report["missing"]:
            print("missing: %s" % k)
        for k in report["unexpected"]:
            print("unexpected: %s" % k)
    return 0 if report["ok"] else 1


def _cmd_globals(a):
    try:
        found, ops = pickle_globals(a.path)
    except WeightsOnlyError as e:
        print("BAD %s" % e)
        return 1
    for g in found:
        print("%s %s" % ("ok " if g in WEIGHTS_ONLY_GLOBALS else "BAD", g))
    bad_ops = sorted(ops - WEIGHTS_ONLY_OPCODES)
    for op in bad_ops:
        print("BAD opcode %s" % op)
    return 1 if bad_ops or any(g not in WEIGHTS_ONLY_GLOBALS for g in found) else 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="mammoth_ref.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write a Mammoth checkpoint or a plain backbone state dict")
    w.add_argument("--arch", choices=["mnistmlp", "resnet18"], required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--kind", choices=["mammoth", "backbone"], default="mammoth")
    w.add_argument("--prefix", default="", help="prepended to every model key, e.g. module.")
    w.add_argument("--keys", choices=["all", "unique"], default="all")
    w.add_argument("--no-classifier", action="store_true")
    w.add_argument("--model", choices=["sgd", "er", "der", "derpp"], default="sgd")
    w.add_argument("--buffer-size", type=int, default=50)
    w.add_argument("--mode", choices=["safe", "old_pickle"], default="safe")
    w.add_argument("--tasks", type=int, default=5)
    w.add_argument("--momentum", type=float, default=0.0)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--ckpt-name", default=None)
    ld = sub.add_parser("load", help="load a file through mammoth_load_checkpoint")
    ld.add_argument("path")
    ld.add_argument("--arch", choices=["mnistmlp", "resnet18"], required=True)
    ld.add_argument("--model", default="sgd")
    ld.add_argument("--buffer-size", type=int, default=0)
    ld.add_argument("--ignore-classifier", action="store_true")
    ld.add_argument("--json", action="store_true")
    g = sub.add_parser("globals", help="list pickle globals; exit 1 if any is not weights_only-allowlisted")
    g.add_argument("path")
    a = p.parse_args(argv)
    try:
        return {"write": _cmd_write, "load": _cmd_load, "globals": _cmd_globals}[a.cmd](a)
    except (OSError, WeightsOnlyError, ValueError, zipfile.BadZipFile) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
