// trainer/bridge.hpp - LibTorch <-> libckpt, for the trainer only.
//
// Saving is zero-copy: a ckpt::Tensor points into the at::Tensor's memory
// (Storage::from_external) and holds the at::Tensor as its keepalive, so the
// bytes stream from the live tensor into the zip. Tensors that share an
// at::Storage (Mammoth's MNISTMLP aliases, views) share one ckpt::Storage
// and are written once, as torch.save does. The tensors must not change
// until ckpt::save returns.
//
// Loading copies: a checkpoint's storage may be a mapped file that goes away
// with its Checkpoint, and the destination tensors already exist.
//
// Structures follow PyTorch 1.13's Python objects exactly (key names, key
// order, int/float/None/tuple kinds), because Python code reads them:
//   optimizer  {'state': {i: {...}}, 'param_groups': [{..., 'params': [0..n-1]}]}
//   scheduler  the scheduler's __dict__ minus 'optimizer' (Counter milestones)
//   generator  torch.Generator.get_state(): a uint8 tensor (5056 bytes on CPU)
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/Generator.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ckpt/value.hpp"
#include "model.hpp"

namespace ckpt::train {

/// Exports at::Tensors as ckpt tensor values; one ckpt::Storage per distinct
/// at::Storage, so aliases stay aliases in the file.
class TensorExporter {
 public:
  explicit TensorExporter(ckpt::Document& doc) : doc_(doc) {}
  /// A tensor value viewing `t` (CPU, strided, any dtype libckpt names).
  ckpt::Value* tensor(const at::Tensor& t);
  ckpt::Document& document() noexcept { return doc_; }

 private:
  ckpt::Document& doc_;
  std::unordered_map<const void*, std::shared_ptr<ckpt::Storage>> storages_;
};

/// A new at::Tensor holding a copy of `t` (any strides, any byte order).
at::Tensor to_torch(const ckpt::Tensor& t);

/// Copies `src` into `dst` (same shape; the dtype is converted when both are
/// floating or both integral). Throws ckpt::Error naming `key` on a shape
/// or kind mismatch.
void copy_into(const at::Tensor& dst, const ckpt::Tensor& src, const std::string& key);

/// An OrderedDict of `prefix + name` -> tensor, in order, aliases sharing storage.
ckpt::Value* state_dict_value(TensorExporter& ex, const std::vector<NamedTensor>& state, const std::string& prefix);

/// torch.optim.SGD / Adam state_dict().
ckpt::Value* optimizer_value(TensorExporter& ex, const Optimizer& opt);
/// Restores per-parameter state and lr (load_state_dict); checks the kind,
/// parameter count and shapes.
void load_optimizer(Optimizer& opt, const ckpt::Value& v);

/// lr_scheduler state_dict(), or None for a null scheduler.
ckpt::Value* scheduler_value(ckpt::Document& doc, const Scheduler* s);
/// Reads a MultiStepLR / CosineAnnealingLR state dict (kind from its keys).
Scheduler load_scheduler(const ckpt::Value& v);

/// A generator's state as a uint8 tensor value; and its restoration.
ckpt::Value* generator_value(TensorExporter& ex, at::Generator gen);
void load_generator(at::Generator& gen, const ckpt::Value& v, const std::string& key);

}  // namespace ckpt::train
