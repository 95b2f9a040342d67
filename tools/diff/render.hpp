// tools/diff/render.hpp - the report as text for a terminal, or as JSON (docs/cli-diff.md).
#pragma once

#include <string>

#include "common/json.hpp"
#include "common/term.hpp"
#include "diff/report.hpp"

namespace ckpt::tools::diff {

std::string render_pair(const PairReport& r, const Options& opts, const Style& style);
std::string render_series(const SeriesReport& s, const Options& opts, const Style& style);

/// Version of the --json schema; bumped on incompatible changes.
inline constexpr int kJsonSchemaVersion = 1;
json pair_json(const PairReport& r, const Options& opts);
json series_json(const SeriesReport& s, const Options& opts);

}  // namespace ckpt::tools::diff
