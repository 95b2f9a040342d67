// tools/common/cli.hpp - what every ckpt tool does the same way: exit codes,
// one-line errors that say where and what to do.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "ckpt/error.hpp"

namespace ckpt::tools {

/// Exit codes shared by every tool (docs/cli.md).
enum Exit : int {
  exit_ok = 0,       ///< nothing wrong (ckpt-diff: no difference beyond tolerance)
  exit_problem = 1,  ///< a problem was found (--verify failed; ckpt-diff: files differ)
  exit_error = 2,    ///< the tool could not do its job (bad usage, unreadable input)
};

/// One line for a user: the file, what is wrong in plain words, what to do,
/// then where exactly ("archive/data.pkl+0x1a3, key model/fc.weight") and the
/// stable code name. No "ckpt:" prefix; the caller adds the tool name.
///   "x.pt: this is an HTML page, not a checkpoint: the download probably failed
///    (html_page)"
std::string describe_error(const Error& e);

/// Runs a tool's body and turns escaping exceptions into one line on stderr
/// ("<tool>: error: ...") and exit_error. The body returns the exit code.
int run_tool(std::string_view tool, const std::function<int()>& body);

}  // namespace ckpt::tools
