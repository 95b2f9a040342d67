// ckpt/safetensors.hpp - the safetensors format, read and written (docs/safetensors.md).
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of
// UTF-8 JSON ({"__metadata__": {str: str}, name: {"dtype", "shape",
// "data_offsets": [begin, end]}, ...}), then the tensor bytes, row-major and
// little-endian, whose offsets (relative to the end of the header) cover the
// data exactly: no gap, no overlap, nothing after the last tensor.
//
//   ckpt::Checkpoint ck = ckpt::read_safetensors("model.safetensors");
//   // ck.root() is an OrderedDict name -> tensor (zero-copy views of the mapped file)
//   ckpt::save_safetensors("out.safetensors", state_dict, {});
//
// Reading treats the file as hostile: every number in the header is checked
// (header length <= 100 MB and inside the file, known dtype, shape products
// and offsets without overflow, offsets matching the sizes and covering the
// data) and any problem is a ckpt::Error, never a crash.
//
// Shared tensors are written as the safetensors library does: of the names
// whose tensors overlap in one storage, the lexicographically smallest name
// that covers the whole storage is kept; each other name that is the very same
// view is dropped and recorded in __metadata__ as `name: kept_name`; when no
// name covers the storage, saving is refused. A view that overlaps another but
// is not identical to it (a slice, a transpose) is written as its own tensor.
// On reading, such `name: kept_name` entries become aliases again (the name
// shares the kept tensor), in the order `ckpt.keys` records.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ckpt/checkpoint.hpp"
#include "ckpt/dtype.hpp"
#include "ckpt/source.hpp"
#include "ckpt/value.hpp"

namespace ckpt {

/// The safetensors dtype name ("F32", "BF16", "F8_E4M3") of a torch dtype, if
/// the format has one.
std::optional<std::string_view> safetensors_dtype_name(DType t) noexcept;
std::optional<DType> dtype_from_safetensors_name(std::string_view name) noexcept;

/// A parsed, validated header.
struct SafetensorsHeader {
  struct Entry {
    std::string name;
    DType dtype = DType::float32;
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;  ///< relative to data_start
  };
  std::vector<std::pair<std::string, std::string>> metadata;  ///< __metadata__, in file order
  std::vector<Entry> tensors;  ///< in header order
  uint64_t header_bytes = 0;   ///< N
  uint64_t data_start = 0;     ///< 8 + N
  uint64_t data_bytes = 0;     ///< file size - data_start
};

/// Largest header the reference implementation accepts (100 MB).
inline constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;

/// True when `head` (the first bytes of a file of `file_size` bytes) starts
/// like a safetensors file: a plausible header length followed by '{'.
bool looks_like_safetensors(std::span<const uint8_t> head, uint64_t file_size) noexcept;

/// Parses and validates the header of a whole file in memory. `name` is used
/// in error messages. Throws ckpt::Error (unknown_format, truncated,
/// limit_exceeded, invalid_tensor) on anything malformed.
SafetensorsHeader parse_safetensors_header(std::span<const uint8_t> file, const std::string& name = "<memory>");

/// Reads a safetensors file into a Checkpoint whose root is an OrderedDict
/// name -> tensor. Tensors view the mapped file (no copy).
Checkpoint read_safetensors(const std::string& path, const OpenOptions& opts = {});
Checkpoint read_safetensors(std::shared_ptr<const Source> source, const OpenOptions& opts = {});
/// Same, from bytes in memory (copied; for fuzzing and embedded data).
Checkpoint read_safetensors(std::span<const uint8_t> bytes, const OpenOptions& opts = {});

struct SafetensorsSaveOptions {
  /// __metadata__ entries (str -> str). "format" = "pt" is added when absent.
  std::vector<std::pair<std::string, std::string>> metadata;
  /// fsync the file and its folder.
  bool durable = true;
  /// Called with the payload bytes written so far, after each tensor.
  std::function<void(uint64_t)> progress;
};

struct SafetensorsSaveResult {
  uint64_t bytes = 0;  ///< file size
  /// Names dropped as identical views of a kept name: {dropped, kept}.
  std::vector<std::pair<std::string, std::string>> aliases;
  size_t tensors = 0;  ///< tensors written
};

/// Writes the dict `state_dict` (str -> tensor; any other value is an error
/// naming its key) atomically. Non-contiguous tensors are written contiguous;
/// big-endian storages are swapped.
SafetensorsSaveResult save_safetensors(const std::string& path, const Value& state_dict,
                                       const SafetensorsSaveOptions& opts = {});

}  // namespace ckpt
