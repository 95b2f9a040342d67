// tools/common/schema.hpp - what a checkpoint is: Mammoth, Lightning, a state dict...
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/value.hpp"

namespace ckpt::tools {

enum class Layout : uint8_t {
  mammoth,          ///< Mammoth's save_mammoth_checkpoint (safe or old_pickle mode)
  lightning,        ///< a PyTorch Lightning checkpoint (state_dict, epoch, global_step, ...)
  state_dict,       ///< a plain state dict: every value a tensor
  wrapped_state_dict, ///< a dict holding a state dict under a known key ("state_dict", "model", "net", ...)
  optimizer_state,  ///< an optimizer's state_dict(): {state, param_groups}
  tensor,           ///< a single tensor
  other,
};
const char* layout_name(Layout l) noexcept;  ///< "mammoth", "state_dict", ...

struct Schema {
  Layout layout = Layout::other;
  /// Mammoth: "safe" (args a plain dict) or "old_pickle" (argparse.Namespace).
  std::string mode;
  /// Where the state dict is ("model", "state_dict"; "" for the root itself).
  std::string model_key;
  const Value* model = nullptr;      ///< the state dict (tensors by dotted name)
  const Value* optimizer = nullptr;  ///< optimizer state_dict, or nullptr
  const Value* scheduler = nullptr;  ///< scheduler state_dict; nullptr if absent or None
  const Value* args = nullptr;       ///< dict or argparse.Namespace
  const Value* results = nullptr;    ///< Mammoth [results, results_mask_classes, logger]
  const Value* buffer = nullptr;     ///< Mammoth buffer (dict of tensors, or a pickled Buffer object)
  bool has_scheduler_key = false;    ///< the key exists (possibly None)
  /// Top-level keys the layout does not explain (e.g. a trainer's resume state).
  std::vector<std::string> extra_keys;
  /// One line: "Mammoth checkpoint (safe mode)", "plain state dict", ...
  std::string description() const;
};

/// Recognises the layout of a loaded checkpoint's root value.
Schema recognise(const Value& root);

/// True when every value of the dict is a tensor (an empty dict is not).
bool is_state_dict(const Value& v);

/// A Mammoth checkpoint file name, parsed (mammoth.md §1.2). Two variants:
///   docs:    [<ckpt_name>_]<model>_<dataset>_<buffer_size>_<n_epochs>_<timestamp>_<task>.pt
///   current: [<ckpt_name>_]<model>_<dataset>_<dataset_config>_<buffer_size>_<n_epochs>_<timestamp>_<uid8>_<task>.pt
/// <task> is a 0-based task index, "last" or "joint"; SIGINT pauses are "<uuid4>.pt".
struct MammothName {
  bool current_variant = false;  ///< has dataset_config and uid
  bool paused = false;           ///< a checkpoints/paused/<uuid4>.pt file
  std::string ckpt_name;         ///< the optional --ckpt_name prefix ("" if none)
  std::string model, dataset, dataset_config, uid, timestamp;
  int64_t buffer_size = 0, n_epochs = 0;
  std::string task;              ///< "3", "last" or "joint"
  std::optional<int64_t> task_index() const;
};
/// Parses a file name (any directory part is ignored; ".pt" and ".pt.zst" accepted).
std::optional<MammothName> parse_mammoth_name(std::string_view filename);
/// The file name (with ".pt") for `n`; round-trips parse_mammoth_name.
std::string format_mammoth_name(const MammothName& n);

}  // namespace ckpt::tools
