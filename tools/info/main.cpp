// ckpt-info: everything a checkpoint holds, at a glance (docs/cli-info.md).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/version.hpp"
#include "common/cli.hpp"
#include "common/open.hpp"
#include "common/term.hpp"
#include "info/report.hpp"
#include "info/views.hpp"

namespace {

using namespace ckpt;
using namespace ckpt::info;
using tools::json;

constexpr const char* kDescription =
    "ckpt-info: everything a PyTorch or Mammoth checkpoint holds, at a glance, without Python.\n"
    "Reads torch zip (any era), legacy (< 1.6) and TAR files, plain pickles, TorchScript archives\n"
    "(described, never run), safetensors and HDF5 exports, and any of them zstd-compressed.\n"
    "Nothing in a file is ever executed.";

constexpr const char* kFooter =
    "\nExit status: 0 ok; 1 a problem was found (--verify failed, a file refused under --globals,\n"
    "some files of several unreadable); 2 error (bad usage, no file readable).\n"
    "Colour only on a terminal, never under NO_COLOR. Docs: docs/cli-info.md, --json schema: docs/json.md.\n"
    "Examples:\n"
    "  ckpt-info derpp_seq-cifar10_None_500_50_20261129-030314_fb0c44a0_4.pt\n"
    "  ckpt-info --filter 'layer4.*' --stats model.pt\n"
    "  ckpt-info --globals suspicious.pt\n"
    "  ckpt-info --json checkpoints/*.pt | jq '.files[].results.class_il_mean'";

/// Errors that mean the file's bytes are damaged (what --verify reports as a problem).
bool content_error(ErrorCode c) {
  switch (c) {
    case ErrorCode::io_error: case ErrorCode::invalid_argument: case ErrorCode::no_space:
    case ErrorCode::internal: case ErrorCode::limit_exceeded:
      return false;
    default:
      return true;
  }
}

void run_verify(const Checkpoint& ck, Report& r) {
  VerifyResult& v = r.verify;
  v.ran = true;
  v.entries = ck.zip() ? ck.zip()->entries().size() : 0;
  v.storages = ck.storages().size();
  try {
    ck.verify();
    if (ck.zip()) v.aligned = ck.records_aligned();
    std::string msg;
    if (ck.zip()) msg = std::to_string(v.entries) + " zip entries match their CRC-32; ";
    msg += std::to_string(v.storages) + " storages have all their bytes";
    if (v.aligned) msg += *v.aligned ? "; data records 64-byte aligned" : "; data records not 64-byte aligned (not torch.save's layout, still readable)";
    if (r.format.trailing_bytes) msg += "; " + std::to_string(r.format.trailing_bytes) + " unexpected bytes after the pickle";
    v.message = msg;
  } catch (const Error& e) {
    v.ok = false;
    v.message = tools::describe_error(e);
    v.error_code = error_code_name(e.code());
  }
}

struct Outcome {
  int errors = 0, problems = 0;
};

void out(const std::string& s) { std::fwrite(s.data(), 1, s.size(), stdout); }

/// A file refused for a denied global, audited under --globals: the pickle
/// runs again in audit mode (still calling nothing) to list every global.
bool audit_refused(const std::string& path, const Error& refusal, const Options& opt, json& files, bool first) {
  OpenOptions ao;
  ao.audit = true;
  std::vector<GlobalRef> partial;
  ao.globals_on_error = &partial;
  Refusal r{path, &refusal, {}, nullptr};
  std::optional<Error> stopped;
  try {
    Checkpoint ck = tools::open_input(path, ao);
    r.globals = ck.globals();
  } catch (const Error& e) {
    stopped = e;
    r.globals = std::move(partial);
    r.audit_stopped = &*stopped;
  }
  if (r.globals.empty()) return false;
  if (opt.json) files.push_back(refused_json(r));
  else out((first ? "" : "\n") + render_refused_text(r, opt));
  return true;
}

void one_file(const std::string& path, const Options& opt, json& files, Outcome& o, bool first) {
  try {
    Checkpoint ck = tools::open_input(path);
    Report r = analyze(ck, opt);
    if (opt.verify) run_verify(ck, r);
    if (!r.verify.ok) ++o.problems;
    if (opt.json) files.push_back(render_json(r, opt));
    else out((first ? "" : "\n") + render_text(r, opt));
  } catch (const Error& e) {
    if (e.code() == ErrorCode::unsafe_global && opt.globals && audit_refused(path, e, opt, files, first)) {
      ++o.problems;
      return;
    }
    std::fprintf(stderr, "ckpt-info: error: %s\n", tools::describe_error(e).c_str());
    if (opt.json) files.push_back(error_json(path, e));
    if (opt.verify && content_error(e.code())) ++o.problems;
    else ++o.errors;
  }
}

int run(int argc, char** argv) {
  CLI::App app(kDescription, "ckpt-info");
  app.footer(kFooter);
  Options opt;
  std::vector<std::string> paths;
  std::string color = "auto";
  app.add_option("FILE", paths, "checkpoint files (.pt, .pth, .bin, .ckpt, .tar, .pkl, .safetensors, .h5, any .zst)")
      ->required();
  app.add_flag("--json", opt.json, "one JSON document on stdout (schema: docs/json.md)");
  app.add_flag("--tree", opt.tree, "the nested view of the whole value tree instead of the sections");
  app.add_option("--depth", opt.depth, "levels of the value tree to show (--tree: default all; files of no known layout: default 3)")->check(CLI::NonNegativeNumber);
  app.add_option("--filter", opt.filters, "only tensors whose name matches GLOB (repeatable; `*` crosses dots)")
      ->type_name("GLOB")
      ->take_all();
  app.add_flag("--stats", opt.stats, "read the payloads: min, max, mean, std, NaN/Inf/zero counts per tensor");
  app.add_flag("--globals", opt.globals, "audit every global the pickle references (allowed/known/unknown/denied)");
  app.add_flag("--verify", opt.verify, "check CRCs and structure; exit 1 on corruption");
  app.add_flag("--full", opt.full, "every row: no folding of repeated names, no elision");
  app.add_option("--color", color, "when to colour: auto (a terminal without NO_COLOR), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  app.set_version_flag("--version", std::string("ckpt-info ") + version_string());
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "ckpt-info: error: %s (see ckpt-info --help)\n", tools::escape(e.what()).c_str());
    return tools::exit_error;
  }
  opt.color = color == "always" || (color == "auto" && tools::want_color(stdout));
  if (opt.json) opt.color = false;

  json files = json::array();
  Outcome o;
  for (size_t i = 0; i < paths.size(); ++i) {
    one_file(paths[i], opt, files, o, i == 0);
    std::fflush(stdout);
  }
  if (opt.json) {
    json doc = {{"schema", "ckpt-info"}, {"schema_version", kJsonSchemaVersion},
                {"tool_version", version_string()}, {"files", files}};
    out(doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  }
  if (o.errors == static_cast<int>(paths.size())) return tools::exit_error;
  if (o.errors || o.problems) return tools::exit_problem;
  return tools::exit_ok;
}

}  // namespace

int main(int argc, char** argv) {
  return ckpt::tools::run_tool("ckpt-info", [&] { return run(argc, argv); });
}
