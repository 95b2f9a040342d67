// tools/common/json.hpp - value trees as JSON (nlohmann::json), the way every tool writes them.
#pragma once

#include <nlohmann/json.hpp>

#include "ckpt/value.hpp"

namespace ckpt::tools {

using json = nlohmann::ordered_json;

/// A double as JSON: NaN and ±Inf become null (JSON has no such numbers);
/// callers that care add a flag beside it (see docs/json.md).
json json_number(double v);

/// A value tree as JSON, for args, results, hyper-parameters and other small
/// metadata: dicts become objects (non-string keys as their repr), lists,
/// tuples and sets arrays, bigints strings, bytes {"bytes": n}, tensors
/// {"tensor": {"dtype", "shape"}}, opaque objects {"object": "module.Class"}.
/// Depth is capped (deeper values become "..."); strings stay UTF-8 (nlohmann
/// escapes control characters).
json to_json(const Value& v, int max_depth = 64);

}  // namespace ckpt::tools
