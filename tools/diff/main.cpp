// ckpt-diff: what changed between two checkpoints, or across a task series.
// See docs/cli-diff.md.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "ckpt/error.hpp"
#include "common/cli.hpp"
#include "common/term.hpp"
#include "diff/render.hpp"
#include "diff/report.hpp"

namespace {

using namespace ckpt::tools;
using namespace ckpt::tools::diff;

constexpr const char* kDescription = R"(ckpt-diff - what changed between two checkpoints, or across a task series

  ckpt-diff A.pt B.pt               two files: keys, shapes, dtypes, per-tensor change
  ckpt-diff X_0.pt X_1.pt ... X_4.pt a task series: per-layer drift, step by step and
                                    cumulative from the first file
Per tensor: bit-identical or not, max |b-a| and where, ||b-a||, ||b-a||/||a||,
cosine similarity, and a verdict (identical / within tolerance / changed) with
torch.testing.assert_close's per-dtype tolerances (A is the reference).
Parameters, BatchNorm running statistics and integer buffers are reported
apart; Mammoth sections (optimizer, scheduler, args, results, buffer) each get
their own diff. A classifier that grew is compared on its old rows and the new
rows are reported as added classes.

Exit status: 0 nothing differs beyond tolerance, 1 something differs, 2 error.)";

constexpr const char* kFooter = R"(
Examples:
  ckpt-diff run/model_0.pt run/model_1.pt --top 10
  ckpt-diff plain.pt dataparallel.pt --strip-prefix auto --section model
  ckpt-diff a.pt b.pt --quiet && echo same       # CI: exit status only
  ckpt-diff checkpoints/derpp_*_{0..4}.pt --by module
  ckpt-diff a.pt b.pt --json | jq '.model.tensors[] | select(.differs) | .key'
Environment: CKPT_THREADS (worker threads), NO_COLOR. Docs: docs/cli-diff.md)";

int run(int argc, char** argv) {
  CLI::App app{kDescription, "ckpt-diff"};
  app.footer(kFooter);
  app.get_formatter()->column_width(34);
  std::vector<std::string> files;
  std::string sections = "all", by, strip_text = "none";
  std::optional<double> rtol, atol;
  size_t top = 0;
  Options opts;
  bool keep_order = false;
  app.add_option("files", files, "Checkpoints: two to compare, or three or more as a series")
      ->required()
      ->expected(2, CLI::detail::expected_max_vector_size)
      ->type_name("FILE");
  app.add_option("-s,--section", sections,
                 "Sections to compare, comma-separated: model, optimizer, scheduler, args, results, buffer, extra "
                 "(other top-level keys), all (default)");
  app.add_option("--rtol", rtol, "Relative tolerance for every dtype (default: assert_close's per dtype)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--atol", atol, "Absolute tolerance for every dtype (default: assert_close's per dtype)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--equal-nan", opts.policy.equal_nan, "NaN matches NaN (assert_close's equal_nan)");
  auto* section_opt = app.get_option("--section");
  auto* top_opt = app.add_option("--top", top, "Rows per table (default 20 in text, all in JSON; 0: all)");
  app.add_option("--by", by, "tensor or module (per layer); default: tensor for two files, module for a series")
      ->check(CLI::IsMember({"tensor", "module"}));
  app.add_option("--strip-prefix", strip_text,
                 "Match keys across wrappers: auto (module./_orig_mod. anywhere, Mammoth's net. when only one "
                 "side has it), none, or a leading PREFIX (default none)");
  app.add_flag("--all", opts.show_identical, "List identical tensors too");
  app.add_flag("--json", opts.json, "One JSON object on stdout (schema in docs/cli-diff.md)");
  app.add_flag("-q,--quiet", opts.quiet, "Print nothing; only the exit status tells");
  app.add_flag("--keep-order", keep_order, "Series: keep the order given (default: by Mammoth task index)");
  app.set_version_flag("--version", "ckpt-diff 0.1.0");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? exit_ok : exit_error;
  }
  opts.sections = parse_sections(sections);
  opts.sections_explicit = section_opt->count() > 0;
  opts.policy.rtol = rtol;
  opts.policy.atol = atol;
  opts.strip = StripSpec::parse(strip_text);
  if (top_opt->count()) opts.top = top;
  opts.sort_series = !keep_order;
  const bool series = files.size() > 2;
  opts.by_module = by.empty() ? series : by == "module";

  std::vector<Input> inputs;
  inputs.reserve(files.size());
  for (const auto& f : files) inputs.push_back(load_input(f));
  std::vector<std::vector<Named>*> sets;
  for (auto& in : inputs) sets.push_back(&in.named);
  auto notes = strip(sets, opts.strip);
  for (size_t i = 0; i < inputs.size(); ++i) inputs[i].strip = notes[i];

  // A progress bar on stderr (TTY only) over the bytes the model comparison reads.
  uint64_t total = 0;
  for (size_t i = 1; i < inputs.size(); ++i) total += model_bytes(inputs[i - 1], inputs[i]) * (series ? 2 : 1);
  Progress progress("comparing", total);
  std::mutex mu;
  ProgressFn tick = [&](uint64_t n) {
    std::lock_guard lock(mu);
    progress.advance(n);
  };

  const Style style(want_color(stdout));
  bool differs;
  std::string text;
  if (!series) {
    PairReport r = diff_pair(inputs[0], inputs[1], opts, opts.sections, tick);
    progress.finish();
    differs = r.differs();
    if (!opts.quiet) text = opts.json ? pair_json(r, opts).dump(2) + "\n" : render_pair(r, opts, style);
  } else {
    SeriesReport s = diff_series(inputs, opts, tick);
    progress.finish();
    differs = s.differs();
    if (!opts.quiet) text = opts.json ? series_json(s, opts).dump(2) + "\n" : render_series(s, opts, style);
  }
  std::fwrite(text.data(), 1, text.size(), stdout);
  if (std::fflush(stdout) != 0) throw ckpt::Error(ckpt::ErrorCode::io_error, "cannot write to stdout");
  return differs ? exit_problem : exit_ok;
}

}  // namespace

int main(int argc, char** argv) {
  return run_tool("ckpt-diff", [&] { return run(argc, argv); });
}
