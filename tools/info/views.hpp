// tools/info/views.hpp - the two renderings of a Report.
#pragma once

#include <string>
#include <vector>

#include "ckpt/error.hpp"
#include "common/json.hpp"
#include "common/term.hpp"
#include "info/report.hpp"

namespace ckpt::info {

/// The human view (docs/cli-info.md). Every name and string is escaped.
std::string render_text(const Report& r, const Options& opt);

/// The --json object of one file (docs/json.md).
tools::json render_json(const Report& r, const Options& opt);

/// The --json object of a file that could not be read.
tools::json error_json(const std::string& path, const Error& e);

/// A file refused for a denied global, audited under --globals: the refusal,
/// every global the audit saw, and what stopped the audit early (if anything).
struct Refusal {
  std::string path;
  const Error* error = nullptr;
  std::vector<GlobalRef> globals;
  const Error* audit_stopped = nullptr;
};
std::string render_refused_text(const Refusal& r, const Options& opt);
tools::json refused_json(const Refusal& r);

/// The --globals table and its JSON.
std::string globals_table(const std::vector<GlobalRef>& globals, const tools::Style& st);
tools::json globals_json(const std::vector<GlobalRef>& globals);

/// Version of the JSON schema (docs/json.md); bumped on incompatible changes.
inline constexpr int kJsonSchemaVersion = 1;

/// Why torch.load(weights_only=True) would refuse the file ("" if it would not).
std::string weights_only_reason(const Report& r);

/// The one-line meaning of a global's verdict.
const char* verdict_meaning(GlobalVerdict v);

}  // namespace ckpt::info
