// tools/diff/report.hpp - what ckpt-diff found: two files, or a task series.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/checkpoint.hpp"
#include "common/schema.hpp"
#include "diff/sections.hpp"
#include "diff/tensors.hpp"

namespace ckpt::tools::diff {

/// The sections of a checkpoint, as --section names them.
enum Section : unsigned {
  sec_model = 1, sec_optimizer = 2, sec_scheduler = 4, sec_args = 8, sec_results = 16, sec_buffer = 32,
  sec_extra = 64,  ///< top-level keys outside the recognised layout (a trainer's resume state, padding)
  sec_all = 127,
};
inline constexpr Section kSections[] = {sec_model, sec_optimizer, sec_scheduler, sec_args, sec_results, sec_buffer,
                                        sec_extra};
const char* section_name(Section s) noexcept;  ///< "model", "optimizer", ...
/// "model,args" (or repeated flags joined by commas) -> bits; "all". Throws
/// ckpt::Error(invalid_argument) on an unknown name.
unsigned parse_sections(const std::string& list);

struct Options {
  unsigned sections = sec_all;
  bool sections_explicit = false; ///< --section given: say "none" for absent sections
  TolerancePolicy policy;
  StripSpec strip;
  bool by_module = false;         ///< --by module
  std::optional<size_t> top;      ///< --top N (0: all)
  bool show_identical = false;    ///< --all: list identical tensors too
  bool json = false, quiet = false;
  bool sort_series = true;        ///< order Mammoth files by task index
};

/// One opened file and what it is.
struct Input {
  Input(std::string p, Checkpoint c) : path(std::move(p)), ck(std::move(c)) {}
  std::string path;
  Checkpoint ck;
  Schema schema;
  std::optional<MammothName> name;
  /// Where the tensors compared as "model" live: the state dict, or the
  /// whole file when it has no recognised one (then titled "tensors").
  const Value* model = nullptr;
  std::string model_title = "model";
  std::vector<Named> named;  ///< the model's tensors, keys after --strip-prefix
  /// Tensors under top-level keys the layout does not explain ("pad/pad.0"),
  /// and the other values there, flattened.
  std::vector<Named> extra;
  std::vector<std::pair<std::string, json>> extra_values;
  StripNote strip;
  std::optional<int64_t> task() const;  ///< the Mammoth task index from the file name
  std::string description() const;     ///< "Mammoth checkpoint (safe mode), task 3, 1.2 MiB"
};
Input load_input(const std::string& path);

struct ModelDiff {
  bool present_a = false, present_b = false;
  std::vector<TensorResult> tensors;  ///< sorted by relative change
  std::vector<Named> only_a, only_b;
  uint64_t strip_hint = 0;            ///< more keys --strip-prefix auto would pair up
  bool differs() const noexcept;
  size_t count(Verdict v) const noexcept;
  size_t count(Status s) const noexcept;
  size_t dtype_changes() const noexcept;
};

struct PairReport {
  const Input* a = nullptr;
  const Input* b = nullptr;
  unsigned sections = 0;  ///< compared (selected and meaningful)
  ModelDiff model;
  OptimizerDiff optimizer;
  ConfigDiff scheduler, args;
  ResultsDiff results;
  BufferDiff buffer;
  ModelDiff extra;           ///< tensors under extra top-level keys
  ConfigDiff extra_values;   ///< non-tensor values there
  bool section_differs(Section s) const noexcept;
  /// The section exists in at least one of the files.
  bool section_present(Section s) const noexcept;
  unsigned differing() const noexcept;
  bool differs() const noexcept { return differing() != 0; }
};

using ProgressFn = std::function<void(uint64_t)>;
PairReport diff_pair(const Input& a, const Input& b, const Options& opts, unsigned sections,
                     const ProgressFn& progress = {});
/// Bytes the model comparison of a and b will read (for a progress bar).
uint64_t model_bytes(const Input& a, const Input& b);

struct SeriesReport {
  std::vector<const Input*> files;    ///< in series order
  bool reordered = false;             ///< sorted by Mammoth task index
  std::vector<PairReport> steps;      ///< files[i-1] -> files[i], every selected section
  std::vector<PairReport> cumulative; ///< files[0] -> files[i] for i >= 2, model only
  bool differs() const noexcept;
};
/// Orders inputs by Mammoth task index when every file name has one (and
/// `sort` is set); "last" after every number.
std::vector<const Input*> series_order(const std::vector<Input>& inputs, bool sort, bool& reordered);
SeriesReport diff_series(const std::vector<Input>& inputs, const Options& opts, const ProgressFn& progress = {});


/// One row of a series' drift matrix: a layer (or a tensor) of one category,
/// with its metrics per step (files[i-1] -> files[i]) and cumulatively
/// (files[0] -> files[i], i >= 2); empty where it is absent. Integer buffers
/// are left out (their change is counted, not measured).
struct DriftRow {
  std::string name;
  Category category = Category::parameter;
  std::vector<std::optional<Metrics>> step, cumulative;
};
std::vector<DriftRow> drift_rows(const SeriesReport& s, bool by_module);

}  // namespace ckpt::tools::diff
