// ckpt/error.hpp - the one exception type of libckpt.
//
// Every failure the library reports is a ckpt::Error. It carries a stable,
// numbered ErrorCode (docs/errors.md lists them; a code never changes meaning)
// and the place where the problem was found:
//   - path:        the file being read or written;
//   - entry:       the zip member (or legacy section) inside it, if any;
//   - byte_offset: the offset inside that entry (or the file when entry is empty);
//   - key_path:    the position in the value tree, e.g. "model/net.fc.weight";
//   - detail:      what was expected and what was found.
//
// what() is one line in a fixed shape:
//   ckpt: invalid_tensor [40] at a.pt:archive/data.pkl+0x1a3 (model/fc.weight): <detail>
//
// The library never prints, never exits and never aborts on input; diagnostics
// travel only in this object.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace ckpt {

/// Stable error codes. Grouped by the stage that detects them.
enum class ErrorCode : int {
  // 1x: recognising the file
  truncated = 10,          ///< the input ends before a structure does
  unknown_format = 11,     ///< not a checkpoint this library reads
  html_page = 12,          ///< an HTML page saved under a checkpoint name
  lfs_pointer = 13,        ///< a git-LFS pointer file instead of the data
  unsupported_version = 14,///< a format version newer than this reader knows
  // 2x: containers
  corrupt_zip = 20,        ///< inconsistent or out-of-bounds zip structure
  unsupported_zip = 21,    ///< encrypted entries, unknown compression methods
  crc_mismatch = 22,       ///< an entry's bytes do not match its CRC-32
  missing_record = 23,     ///< a record the format requires is absent
  corrupt_legacy = 24,     ///< inconsistent legacy (pre-1.6) stream or TAR layout
  corrupt_compressed = 25, ///< a DEFLATE or zstd stream is invalid
  corrupt_hdf5 = 26,       ///< libhdf5 crashed on the file's structure (in an isolated child)
  // 3x: pickle
  unsafe_global = 30,      ///< a global on the deny list (os.system, eval, ...)
  malformed_pickle = 31,   ///< stack/memo misuse, bad operands, missing STOP
  unsupported_opcode = 32, ///< an opcode that cannot be honoured without code
  // 4x: tensors
  invalid_tensor = 40,     ///< shape/stride/offset/storage inconsistent
  unsupported_tensor = 41, ///< quantized, sparse, meta, nested, ... tensors
  // 5x: resource limits (ckpt::Limits)
  limit_exceeded = 50,
  // 6x: the operating system
  io_error = 60,
  no_space = 61,
  durability_uncertain = 62, ///< renamed into place but the directory fsync failed
  // 7x: API misuse by the caller
  invalid_argument = 70,
  type_error = 71,         ///< a value accessed as the wrong kind
  key_not_found = 72,
  // 9x
  internal = 99,
};

/// The short stable name of a code ("invalid_tensor").
const char* error_code_name(ErrorCode code) noexcept;

class Error : public std::runtime_error {
 public:
  static constexpr uint64_t no_offset = ~uint64_t{0};

  Error(ErrorCode code, std::string detail, std::string path = {}, std::string entry = {},
        uint64_t byte_offset = no_offset, std::string key_path = {}, int sys_errno = 0);

  ErrorCode code() const noexcept { return code_; }
  const std::string& detail() const noexcept { return detail_; }
  const std::string& path() const noexcept { return path_; }
  const std::string& entry() const noexcept { return entry_; }
  uint64_t byte_offset() const noexcept { return byte_offset_; }
  bool has_offset() const noexcept { return byte_offset_ != no_offset; }
  const std::string& key_path() const noexcept { return key_path_; }
  int sys_errno() const noexcept { return errno_; }

  const char* what() const noexcept override { return what_.c_str(); }

  /// Copies that add context known only to an outer layer. A field that is
  /// already set is kept: the innermost layer knows best.
  Error with_path(const std::string& path) const;
  Error with_entry(const std::string& entry, uint64_t byte_offset) const;
  Error with_key_path(const std::string& key_path) const;

 private:
  void render();
  ErrorCode code_;
  std::string detail_, path_, entry_;
  uint64_t byte_offset_;
  std::string key_path_;
  int errno_;
  std::string what_;
};

}  // namespace ckpt
