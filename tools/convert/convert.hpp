// tools/convert/convert.hpp - ckpt-convert's engine: key mapping, dtype casts, writers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/checkpoint.hpp"
#include "ckpt/hdf5.hpp"
#include "common/keys.hpp"
#include "common/schema.hpp"

namespace ckpt::tools {

enum class OutFormat { pt, pt_zst, h5, safetensors };
const char* out_format_name(OutFormat f) noexcept;
/// "pt", "pt.zst", "h5", "safetensors" (and aliases "pth", "hdf5", "zst").
std::optional<OutFormat> parse_out_format(std::string_view s) noexcept;
/// From the output file's extension; nullopt when it says nothing.
std::optional<OutFormat> format_from_extension(std::string_view path) noexcept;

struct ConvertOptions {
  std::optional<OutFormat> to;
  bool backbone = false;
  bool keep_aliases = false;
  bool drop_classifier = false;
  std::vector<std::string> classifier_names;  ///< empty: classifier, else fc/head
  std::vector<std::string> strip_prefix;      ///< "auto", "none" or leading prefixes
  std::vector<RenameRule> renames;
  std::optional<DType> dtype;                 ///< cast floating tensors
  Hdf5Compression compression = Hdf5Compression::gzip;
  int level = -1;
  bool compression_given = false;
  Hdf5BF16 bf16 = Hdf5BF16::float32;
  bool dry_run = false;
  bool force = false;
  bool quiet = false;
  bool durable = true;
  unsigned threads = 0;
};

/// One line of the key mapping.
struct KeyMapping {
  std::string from;
  std::string to;       ///< empty when dropped
  std::string dropped;  ///< why ("alias of fc1.weight", "classifier", "not in the backbone")
};

/// The plan for the state dict: every key, in order.
struct KeyPlan {
  std::vector<KeyMapping> keys;
  size_t kept = 0, renamed = 0, dropped = 0;
};

/// Computes the mapping of a state dict's keys (throws on a collision,
/// naming both keys).
KeyPlan plan_keys(const Value& state_dict, const ConvertOptions& o);

/// The whole conversion (CLI semantics; see docs/cli-convert.md). Returns
/// the exit code.
int run_convert(const std::string& in, const std::string& out, const ConvertOptions& o);

}  // namespace ckpt::tools
