// ckpt/hdf5.hpp - checkpoints as HDF5 files, both ways (docs/hdf5-layout.md).
//
// A separate library, libckpt_hdf5 (meson: libckpt_hdf5_dep), so that
// programs without HDF5 needs do not link libhdf5.
//
//   ckpt::Hdf5SaveOptions o;                       // gzip + shuffle, bf16 as float32
//   ckpt::save_hdf5("run.h5", ck.root(), o);        // one group per dotted module path
//   ckpt::Checkpoint back = ckpt::read_hdf5("run.h5");   // the same tree, bit-exact
//
// The layout (version kHdf5LayoutVersion) is documented in docs/hdf5-layout.md:
// one dataset per tensor in its own dtype, named by its key path split at the
// dots (/model/net/layer1/0/conv1/weight), identical aliases as hard links,
// attributes torch_dtype/shape/original_key/key_path on each dataset, and the
// non-tensor values as JSON attributes; /_ckpt/structure holds the whole tree
// as a protocol-2 pickle whose storages name the datasets, so reading back
// gives the original tree (containers, order, aliasing, non-tensor values).
// Files without /_ckpt/structure (written by other tools) read as a flat
// OrderedDict of their datasets, named by their paths with '/' -> '.'.
//
// Reading treats the file as hostile: every size and type from the file is
// checked before use and any problem is a ckpt::Error (libhdf5's own parser
// is trusted to reject corrupt metadata, which is what it is fuzzed for
// upstream). zstd chunks use the registered HDF5 filter 32015 (as hdf5plugin
// and h5py read it), registered in-process by this library.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ckpt/checkpoint.hpp"
#include "ckpt/value.hpp"

namespace ckpt {

inline constexpr int kHdf5LayoutVersion = 1;
inline constexpr unsigned kHdf5ZstdFilter = 32015;

enum class Hdf5Compression : uint8_t { none, gzip, zstd };
enum class Hdf5BF16 : uint8_t {
  float32,  ///< bf16 tensors stored as float32 (lossless), torch_dtype = bfloat16
  raw,      ///< the uint16 bits, stored_as = "bfloat16-bits"
};

struct Hdf5SaveOptions {
  Hdf5Compression compression = Hdf5Compression::gzip;
  int level = -1;                  ///< -1: gzip 4, zstd 3
  bool shuffle = true;             ///< byte shuffle before compressing (elements over 1 byte)
  Hdf5BF16 bf16 = Hdf5BF16::float32;
  uint64_t chunk_bytes = 1 << 20;  ///< target chunk size (compressed datasets)
  unsigned threads = 0;            ///< compression threads; 0: the hardware's
  /// Root attributes written as strings (producer, source_sha256, ...).
  std::vector<std::pair<std::string, std::string>> root_attributes;
  /// Called once the payload is written, to add root string attributes
  /// computed meanwhile (e.g. the source file's hash, on another thread).
  std::function<void(std::vector<std::pair<std::string, std::string>>&)> finish_attributes;
  /// JSON text for a non-tensor value (args, results, param_groups...): it
  /// becomes a string attribute named by its key on the group of its parent.
  /// Empty: no such attributes.
  std::function<std::string(const Value&)> to_json;
  std::function<void(uint64_t)> progress;  ///< payload bytes written so far
  bool durable = true;
};

struct Hdf5SaveResult {
  uint64_t bytes = 0;        ///< file size
  size_t datasets = 0;       ///< tensor datasets
  size_t hard_links = 0;     ///< extra names of identical aliases
  size_t raw_storages = 0;   ///< storages no dataset holds whole (/_ckpt/storages/<i>)
};

/// Writes `root` atomically (a temp file in the same folder, then rename).
Hdf5SaveResult save_hdf5(const std::string& path, const Value& root, const Hdf5SaveOptions& opts = {});

/// Reads an HDF5 file into a Checkpoint (Container::hdf5).
Checkpoint read_hdf5(const std::string& path, const OpenOptions& opts = {});

/// True when `head` starts with the HDF5 signature (\x89HDF\r\n\x1a\n).
bool looks_like_hdf5(std::span<const uint8_t> head) noexcept;

/// Registers the zstd filter (32015) with libhdf5; called by save/read. Idempotent.
void register_hdf5_zstd_filter();

/// "1.10.8": the libhdf5 this library runs with.
std::string hdf5_library_version();

}  // namespace ckpt
