// tools/info/report.hpp - what ckpt-info finds in one file, before any rendering.
//
// analyze() turns an opened checkpoint into a Report: the header facts, the
// schema's sections (model, optimizer, scheduler, args, results, buffer) and
// every tensor grouped by section. The text and JSON views (text.cpp,
// json_view.cpp) render the same Report, so they never disagree.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ckpt/checkpoint.hpp"
#include "common/keys.hpp"
#include "common/numeric.hpp"
#include "common/schema.hpp"

namespace ckpt::info {

struct Options {
  bool json = false;
  bool tree = false;     ///< nested view of the whole value tree
  bool full = false;     ///< no folding, no elision
  bool stats = false;    ///< read payloads: min/max/mean/std, NaN/Inf/zero counts
  bool globals = false;  ///< audit of the pickle's globals
  bool verify = false;   ///< CRCs and structure; exit 1 on corruption
  std::vector<std::string> filters;  ///< globs on tensor names (any may match)
  int depth = -1;        ///< --tree depth (-1: unlimited)
  bool color = false;
};

/// One tensor in a table.
struct Row {
  std::string name;        ///< key inside its section ("net.fc1.weight"), raw
  std::string path;        ///< full key path ("model/net.fc1.weight")
  const Value* value = nullptr;
  size_t storage = 0;      ///< storage number (order of first use in the file)
  /// Name of the first row of the same table on the same storage ("" if none).
  std::string alias_of;
  bool same_view = false;  ///< ...with the same dtype, shape, strides and offset
  const Tensor& tensor() const { return value->tensor(); }
};

struct DTypeTotal {
  DType dtype;
  uint64_t tensors = 0, numel = 0, bytes = 0;
};

/// Totals over a table's rows. numel/bytes count each distinct view once
/// (aliases with the same view are not counted twice); storage_bytes sums
/// the distinct storages the rows use.
struct Totals {
  uint64_t tensors = 0, views = 0, storages = 0, numel = 0, bytes = 0, storage_bytes = 0;
  std::vector<DTypeTotal> by_dtype;  ///< in first-appearance order
};

struct TensorTable {
  std::string title;      ///< "model", "buffer", "tensors", "other tensors"
  std::vector<Row> rows;  ///< after --filter
  size_t unfiltered = 0;  ///< rows before --filter
  Totals totals;
};

/// Wrapper prefixes found in state-dict keys.
struct Prefixes {
  tools::WrapperReport report;
  std::string leading;  ///< common leading wrapper components ("net.", "module.", "net.module.")
};

struct OptimizerInfo {
  std::string kind;  ///< "SGD", "Adam", "Adam or AdamW", ... or "unknown"
  std::string why;   ///< the keys that tell
  const Value* value = nullptr;
  std::vector<const Value*> groups;      ///< param_groups dicts
  std::vector<std::string> hyper_keys;   ///< union of group keys but "params", in order
  uint64_t params = 0;                   ///< parameters over all groups
  uint64_t with_state = 0;               ///< entries of `state`
  struct StateKey {
    std::string key;
    uint64_t tensors = 0, numel = 0, bytes = 0, nones = 0, scalars = 0;
    std::vector<DType> dtypes;
    std::vector<std::string> scalar_values;  ///< distinct scalar values (up to 4)
    std::optional<tools::TensorStats> stats;  ///< with --stats
  };
  std::vector<StateKey> state_keys;
  /// Optimizer parameter i named after the model's i-th parameter, when the
  /// state shapes agree with the model's parameters (not BN buffers/aliases).
  std::vector<std::string> param_names;
  bool shapes_checked = false;  ///< some state tensor shape was compared
};

struct SchedulerInfo {
  std::string kind;  ///< "MultiStepLR", ... or "unknown"
  const Value* value = nullptr;
};

struct ResultsInfo {
  bool parsed = false;  ///< the Mammoth [results, results_mask_classes, logger] shape
  const Value* value = nullptr;
  std::vector<std::vector<double>> class_il, task_il;  ///< [after task t][on task i]
  bool task_il_measured = false;  ///< false for domain-il (all zeros) or absent
  std::vector<double> logger_accs, logger_accs_mask;  ///< logger means (parsed from str, quirk Q3)
  /// Logger metrics when present (not None): bwt, forgetting, fwt and their _mask_classes.
  std::vector<std::pair<std::string, double>> logger_metrics;
  std::optional<double> bwt, forgetting;            ///< computed from class_il (>= 2 tasks)
  std::optional<double> bwt_task_il, forgetting_task_il;
};

struct BufferInfo {
  const Value* value = nullptr;
  std::string type;  ///< "dict" or "utils.buffer.Buffer"
  TensorTable table;
  std::vector<std::pair<std::string, std::string>> scalars;  ///< num_seen_examples, ... (object form)
  uint64_t examples = 0;  ///< leading dimension of `examples`
  /// Histograms of `labels` / `task_labels` / `true_labels`: value -> count.
  std::vector<std::pair<std::string, std::map<int64_t, uint64_t>>> histograms;
  std::vector<std::string> notes;  ///< why a histogram is missing
};

struct VerifyResult {
  bool ran = false, ok = true;
  std::string message;       ///< what was checked, or what failed
  std::string error_code;    ///< on failure
  uint64_t entries = 0, storages = 0;
  std::optional<bool> aligned;
};

struct Report {
  std::string path;
  uint64_t size = 0;       ///< on disk
  uint64_t data_size = 0;  ///< the checkpoint's bytes (decompressed, for .zst)
  FormatInfo format;
  bool zstd = false;
  tools::Schema schema;
  std::optional<tools::MammothName> name;
  bool weights_only = false;
  std::vector<GlobalRef> globals;
  std::vector<std::string> notes;     ///< things worth a look (DataParallel prefix, name/args mismatch)

  std::optional<TensorTable> model;
  Prefixes prefixes;
  std::optional<OptimizerInfo> optimizer;
  std::optional<SchedulerInfo> scheduler;
  const Value* args = nullptr;
  std::optional<ResultsInfo> results;
  std::optional<BufferInfo> buffer;
  /// Tensors outside the sections above (or all tensors, for other layouts).
  std::optional<TensorTable> other;
  std::vector<std::pair<std::string, const Value*>> extra;  ///< top-level keys the layout does not explain

  /// --stats: statistics of each distinct tensor view, by Value.
  std::unordered_map<const Value*, tools::TensorStats> stats;
  std::vector<std::string> stats_skipped;  ///< tensors whose dtype cannot be decoded
  VerifyResult verify;
  const Checkpoint* ck = nullptr;
};

/// Builds the report (reads tensor payloads only for --stats, buffer label
/// histograms and scalar optimizer steps).
Report analyze(const Checkpoint& ck, const Options& opt);

/// True when a name passes the --filter globs (none given: every name).
bool selected(const Options& opt, const Row& row, const Prefixes& p);

/// Statistics for every row of the report's tables (threaded across tensors).
void compute_all_stats(Report& r, const Options& opt);

/// Merged statistics of several rows (folded rows); nullopt if none has stats.
std::optional<tools::TensorStats> merged_stats(const Report& r, const std::vector<const Row*>& rows);

/// Identity of a tensor view: storage, dtype, offset, shape and strides.
std::string view_key(const Tensor& t);

/// Parses a Mammoth accuracy value: a float, an int, or a str holding a float (quirk Q3).
std::optional<double> number_of(const Value& v);

}  // namespace ckpt::info
