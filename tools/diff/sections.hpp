// tools/diff/sections.hpp - the non-model parts of a checkpoint: args, scheduler,
// optimizer, results (the accuracy matrix) and the replay buffer.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ckpt/value.hpp"
#include "common/json.hpp"
#include "diff/tensors.hpp"

namespace ckpt::tools::diff {

/// A config-style diff of two value trees flattened to dotted leaves
/// ("lr", "param_groups.0.momentum"); lists of scalars are one leaf.
struct ConfigEntry {
  enum class Kind : uint8_t { changed, only_a, only_b } kind = Kind::changed;
  std::string key;
  json a, b;  ///< JSON renderings (null when absent)
};
struct ConfigDiff {
  bool present_a = false, present_b = false;
  uint64_t equal = 0;
  std::vector<ConfigEntry> entries;  ///< in A's key order, then B-only keys
  bool differs() const noexcept { return present_a != present_b || !entries.empty(); }
};
/// Leaves of a value, in order: dicts (and argparse.Namespace) by key, lists
/// of containers by index, everything else (scalars, lists of scalars,
/// tensors as {"tensor": ...}) as one JSON leaf.
std::vector<std::pair<std::string, json>> flatten(const Value& v, int max_depth = 16);
ConfigDiff diff_config(const Value* a, const Value* b);
ConfigDiff diff_flat(const std::vector<std::pair<std::string, json>>* a,
                     const std::vector<std::pair<std::string, json>>* b);

/// The optimizer's state_dict: hyper-parameters per param group, which state
/// each parameter has, and the state tensors themselves.
struct StateKind {
  std::string name;                        ///< "momentum_buffer", "exp_avg", "step"
  uint64_t tensors_a = 0, tensors_b = 0;   ///< parameters holding a tensor
  uint64_t nones_a = 0, nones_b = 0;       ///< ... None (SGD without momentum)
  uint64_t scalars_a = 0, scalars_b = 0;   ///< ... a number (old Adam's step)
};
struct OptimizerDiff {
  bool present_a = false, present_b = false;
  uint64_t groups_a = 0, groups_b = 0, params_a = 0, params_b = 0;
  ConfigDiff hyper;                 ///< param_groups without "params" (+ scalar state values)
  std::vector<StateKind> state;     ///< in first-seen order
  Matching matching;                ///< state tensors keyed "state.<param>.<name>"
  std::vector<TensorResult> tensors;
  bool differs() const noexcept;
};
OptimizerDiff diff_optimizer(const Value* a, const Value* b, const TolerancePolicy& policy);

/// Mammoth's results: [results, results_mask_classes, logger.dump()] (mammoth.md §1.6).
using Matrix = std::vector<std::vector<double>>;  ///< rows: after task t; columns: task i
struct ResultsDiff {
  bool present_a = false, present_b = false;
  bool mammoth = false;             ///< both sides have the Mammoth shape
  Matrix class_a, class_b, task_a, task_b;
  uint64_t history_rows = 0;        ///< rows both have
  uint64_t history_cells_changed = 0;
  double history_max_delta = 0;
  ConfigDiff logger;                ///< the logger dict, flattened
  ConfigDiff generic;               ///< not Mammoth-shaped: a config diff of the whole value
  bool differs() const noexcept;
};
ResultsDiff diff_results(const Value* a, const Value* b);
/// Reads a Mammoth results value (matrices of float or numeric str); false if it is not one.
bool read_results(const Value& v, Matrix& class_il, Matrix& task_il, const Value** logger);

/// The replay buffer (safe mode: a dict of tensors; old_pickle: a Buffer
/// object whose state holds them).
struct Histogram {
  std::string name;                                  ///< "labels", "task_labels", "true_labels"
  bool ok_a = false, ok_b = false;                   ///< read (integer tensor, few distinct values)
  std::map<int64_t, std::pair<uint64_t, uint64_t>> counts;  ///< value -> (count in A, count in B)
};
struct BufferDiff {
  bool present_a = false, present_b = false;
  int64_t size_a = -1, size_b = -1;  ///< rows of `examples` (or of the first tensor)
  Matching matching;
  std::vector<TensorResult> tensors;
  /// Buffer slots (rows) whose bytes differ in at least one attribute, when
  /// every attribute has the same shape on both sides; -1 otherwise.
  int64_t slots_changed = -1;
  std::vector<Histogram> histograms;
  ConfigDiff meta;                   ///< non-tensor attributes (num_seen_examples, ...)
  bool differs() const noexcept;
};
BufferDiff diff_buffer(const Value* a, const Value* b, const TolerancePolicy& policy);
/// Tallies an integer tensor's values; false when it is not an integer
/// tensor or holds more than `max_distinct` distinct values.
bool histogram(const Tensor& t, std::map<int64_t, uint64_t>& counts, size_t max_distinct = 4096);
/// The buffer's attributes as a dict value (the Buffer object's state in old_pickle files).
const Value* buffer_attributes(const Value* buffer);

}  // namespace ckpt::tools::diff
