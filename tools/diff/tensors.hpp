// tools/diff/tensors.hpp - which tensors pair up between two files, and how they differ.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/value.hpp"
#include "diff/compare.hpp"

namespace ckpt::tools::diff {

/// Reported apart, as a continual-learning user reads them: weights move by
/// gradients, BatchNorm statistics drift without any, counters just count.
enum class Category : uint8_t {
  parameter,        ///< float tensors of the model (weights, biases, other float buffers)
  bn_stat,          ///< *.running_mean, *.running_var
  int_buffer,       ///< integer and bool tensors (num_batches_tracked, masks, ...)
  optimizer_state,  ///< optimizer state tensors (momentum_buffer, exp_avg, ...)
  buffer,           ///< the replay buffer's tensors
  other,            ///< tensors under top-level keys outside the layout
};
const char* category_id(Category c) noexcept;     ///< "parameter", "bn_stat", ...
const char* category_title(Category c) noexcept;  ///< "parameters", "BatchNorm running statistics", ...
Category classify(std::string_view key, DType dtype) noexcept;

/// One named tensor of a file's section.
struct Named {
  std::string key;   ///< after prefix stripping: the name tensors are matched by
  std::string orig;  ///< as stored in the file
  const Tensor* tensor = nullptr;
};

/// The tensors under `section` (a state dict, or any container), keyed by
/// their path (walk_tensors; "/" between nested containers).
std::vector<Named> collect(const Value& section);

/// --strip-prefix: none, auto (the DataParallel / torch.compile wrappers
/// `module` and `_orig_mod` anywhere, then Mammoth's leading `net.` when only
/// some files have it), or a literal leading prefix ("module.").
struct StripSpec {
  enum class Mode : uint8_t { none, automatic, literal } mode = Mode::none;
  std::string prefix;
  static StripSpec parse(std::string_view text);  ///< "none", "auto", or a prefix
};

/// What stripping did to one file's keys: "module." on 122 keys.
struct StripNote {
  std::string removed;  ///< the components removed, e.g. "module." or "net."
  uint64_t keys = 0;    ///< keys that changed
};

/// Rewrites `key` of every set. Throws ckpt::Error(invalid_argument) when two
/// keys of one file would collide. Returns one note per set.
std::vector<StripNote> strip(std::vector<std::vector<Named>*> sets, const StripSpec& spec);

/// Keys of the other side that `--strip-prefix auto` would pair up, for a hint.
uint64_t auto_strip_gain(const std::vector<Named>& a, const std::vector<Named>& b);

/// A tensor of A and its counterpart in B, under one key. Aliases (more keys
/// naming the same views on both sides, like MNISTMLP's `_features.*`) are
/// folded into the first key.
struct Pair {
  std::string key, key_a, key_b;
  std::vector<std::string> aliases;
  const Tensor* a = nullptr;
  const Tensor* b = nullptr;
  Category category = Category::parameter;
  /// What the key stands for, when the file does not say it (optimizer
  /// state: the parameter, "net.conv1.weight").
  std::string note;
};

/// Identity of a view (storage, dtype, offset, shape, strides): keys with
/// equal ids alias.
std::string view_id(const Tensor& t);

struct Matching {
  std::vector<Pair> pairs;           ///< in A's order
  std::vector<Named> only_a, only_b; ///< unmatched keys (aliases folded too)
};
Matching match(const std::vector<Named>& a, const std::vector<Named>& b,
               const std::function<Category(std::string_view, DType)>& category = classify);

enum class Status : uint8_t {
  compared,       ///< same shape: every element compared
  grown,          ///< dim 0 grew (a classifier with new classes): the old rows compared
  shape_changed,  ///< shapes differ otherwise: nothing compared
  undecodable,    ///< quantized / bits dtypes: bytes compared only
};
enum class Verdict : uint8_t { identical, within_tolerance, changed };
const char* status_id(Status s) noexcept;
const char* verdict_id(Verdict v) noexcept;  ///< "identical", "within_tolerance", "changed"

struct TensorResult {
  Pair pair;
  DType dtype_a = DType::float32, dtype_b = DType::float32;
  std::vector<int64_t> shape_a, shape_b;
  Status status = Status::compared;
  /// Over the compared elements (the old rows of a grown tensor): identical
  /// bits, all within tolerance, or changed. A shape change is `changed`.
  Verdict verdict = Verdict::identical;
  Tolerance tol;
  Metrics m;
  /// The value of a one-element tensor on each side (num_batches_tracked).
  std::optional<double> value_a, value_b;
  /// The same, exactly, for integer dtypes (int64 beyond 2^53 included).
  std::optional<int64_t> int_a, int_b;

  bool dtype_changed() const noexcept { return dtype_a != dtype_b; }
  /// Anything a CI check should fail on: a changed verdict, a shape or dtype change.
  bool differs() const noexcept {
    return verdict == Verdict::changed || status == Status::grown || status == Status::shape_changed ||
           dtype_changed();
  }
  int64_t rows_a() const noexcept { return shape_a.empty() ? 1 : shape_a[0]; }
  int64_t rows_b() const noexcept { return shape_b.empty() ? 1 : shape_b[0]; }
};

/// Compares one pair (see Status for shapes).
TensorResult compare_pair(const Pair& p, const TolerancePolicy& policy);
/// Compares every pair on worker threads (largest first); `progress` is
/// called with the bytes done (from worker threads, serialised).
std::vector<TensorResult> compare_pairs(const std::vector<Pair>& pairs, const TolerancePolicy& policy,
                                        const std::function<void(uint64_t)>& progress = {});

/// Sorts by relative change, largest first (changed before identical; NaN
/// and infinite changes first of all), then by key.
void sort_by_change(std::vector<TensorResult>& results);

/// Tensors of one layer (the key without its last component), per category.
struct ModuleResult {
  std::string module;
  Category category = Category::parameter;
  uint64_t tensors = 0;
  Metrics m;
  Verdict verdict = Verdict::identical;  ///< the worst of its tensors
  bool grown = false, shape_changed = false, dtype_changed = false;
  bool differs() const noexcept { return verdict == Verdict::changed || grown || shape_changed || dtype_changed; }
};
std::string module_of(std::string_view key);
std::vector<ModuleResult> by_module(const std::vector<TensorResult>& results);
void sort_by_change(std::vector<ModuleResult>& modules);

/// Orders relative changes for sorting: NaN > +inf > finite, larger first.
bool more_change(double x, double y) noexcept;

}  // namespace ckpt::tools::diff
