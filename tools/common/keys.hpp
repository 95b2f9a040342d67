// tools/common/keys.hpp - state-dict key names: components, wrapper prefixes, folding.
//
// A key is a dotted module path ("net.layer1.0.conv1.weight"). Prefixes are
// always handled by whole components: "module." is stripped from
// "net.module.fc.weight" but never from "submodule.fc.weight".
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ckpt::tools {

/// "a.b.c" -> {"a","b","c"}. An empty key gives one empty component.
std::vector<std::string_view> split_components(std::string_view key);
std::string join_components(std::span<const std::string_view> parts);

/// Wrapper components inserted by training wrappers.
inline constexpr std::string_view kDataParallel = "module";   ///< DataParallel / DDP
inline constexpr std::string_view kCompiled = "_orig_mod";    ///< torch.compile
inline constexpr std::string_view kMammothNet = "net";        ///< Mammoth's ContinualModel.net

/// Which wrapper components occur in keys, and where.
struct WrapperReport {
  uint64_t keys = 0;
  uint64_t with_module = 0;     ///< keys holding a `module` component
  uint64_t with_orig_mod = 0;   ///< keys holding an `_orig_mod` component
  uint64_t with_net = 0;        ///< keys whose first component is `net`
  /// The common leading components of every key that are wrappers, in order
  /// ("net.module." for a Mammoth model trained with DataParallel).
  std::string common_prefix;
  bool any() const noexcept { return with_module || with_orig_mod; }
};
WrapperReport detect_wrappers(std::span<const std::string> keys);

/// Removes every component equal to one of `components` ("module",
/// "_orig_mod"), wherever it stands.
std::string strip_components(std::string_view key, std::span<const std::string_view> components);
/// The wrappers `--strip-prefix auto` removes: module and _orig_mod.
std::string strip_wrappers(std::string_view key);
/// Removes `prefix` ("net." or "net") when the key starts with it as whole
/// components; std::nullopt when it does not.
std::optional<std::string> strip_leading(std::string_view key, std::string_view prefix);

/// A FROM=TO rename rule on whole leading components ("backbone.=net.").
struct RenameRule {
  std::string from, to;
  static RenameRule parse(std::string_view text);  ///< throws ckpt::Error(invalid_argument)
};
/// Applies the first matching rule; the key unchanged when none match.
std::string apply_renames(std::string_view key, std::span<const RenameRule> rules);

/// Folds names that differ only in numeric components into patterns, keeping
/// first-appearance order: {"layer1.0.conv1.weight","layer1.1.conv1.weight"}
/// -> "layer1.{0,1}.conv1.weight"; runs of more than `max_list` distinct
/// numbers become "#" ("layers.#.attn.weight"). Also folds names that differ
/// in one non-numeric component with a shared suffix digit ("conv{1,2}").
/// `signature[i]` (e.g. dtype and shape) must be equal for names to fold
/// together; pass an empty span to fold on names alone.
struct Folded {
  std::string pattern;
  std::vector<size_t> members;  ///< indices into the input, in order
};
std::vector<Folded> fold_names(std::span<const std::string> names,
                               std::span<const std::string> signature = {}, size_t max_list = 4);

}  // namespace ckpt::tools
