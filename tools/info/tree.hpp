// tools/info/tree.hpp - any value tree, readably: one-line summaries, the
// nested text view (--tree, and files with no known layout) and its JSON.
//
// Shared containers (pickle memo references) are shown once; later uses say
// "same as <path>", so cycles and exponential DAGs print in linear size.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ckpt/value.hpp"
#include "common/json.hpp"
#include "common/term.hpp"

namespace ckpt::info {

/// One line for a value: "tensor float32 [2, 3] (24 B)", "dict, 3 items",
/// "0.1", "'seq-mnist'", "<utils.buffer.Buffer>". Escaped.
std::string summary(const Value& v);

struct TreeLimits {
  int depth = -1;             ///< levels below the root (-1: unlimited)
  size_t max_children = 64;   ///< per container (0: unlimited)
  size_t max_lines = 4000;    ///< whole view (0: unlimited)
  bool fold = true;           ///< fold tensor names (layer1.{0,1}.conv{1,2}.weight)
};

/// The nested view, each line indented by `indent` + 2 per level.
std::string render_tree(const Value& root, std::string_view label, const TreeLimits& lim, const tools::Style& st,
                        size_t indent = 2);

/// The value tree as JSON: dicts as objects (non-string keys as their repr),
/// sequences as arrays, tensors {"tensor": {...}}, objects {"object": name, ...},
/// a container met again {"same_as": "<path>"}. Non-finite floats become null
/// and their key paths are appended to `nonfinite` (if given).
tools::json tree_json(const Value& root, const std::string& path, std::vector<std::string>* nonfinite,
                      size_t max_nodes = 1'000'000);

}  // namespace ckpt::info
