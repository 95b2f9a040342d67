// ckpt/zip.hpp - a strict reader of the zip container torch.save writes.
//
// Follows PyTorchStreamReader where it matters and is stricter where it is
// lax: sizes come from the central directory (local headers hold zeros), the
// payload offset from the local header (torch pads there only), the root
// folder from the first entry. Every offset and size is bounds-checked, local
// and central names must agree, entries may not overlap, encrypted entries and
// unknown methods are refused, and DEFLATE output is capped.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ckpt/limits.hpp"
#include "ckpt/source.hpp"

namespace ckpt {

struct ZipEntry {
  std::string_view name;        ///< full name, root folder included (a view of the mapped file)
  uint16_t method = 0;          ///< 0 STORED, 8 DEFLATE
  uint16_t flags = 0;
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_header_offset = 0;
  uint64_t limit = 0;           ///< where the next entry (or the central directory) starts
  bool zip64 = false;           ///< sizes or offset came from a ZIP64 extra field
};

class ZipArchive {
 public:
  /// Parses and validates the whole directory. Throws corrupt_zip,
  /// unsupported_zip, truncated or limit_exceeded.
  ZipArchive(std::shared_ptr<const Source> source, const Limits& limits = {});

  const std::vector<ZipEntry>& entries() const noexcept { return entries_; }
  /// The top-level folder every entry lives in ("archive", a file stem, "").
  const std::string& root() const noexcept { return root_; }
  /// Finds `root()/name`; nullptr when absent.
  const ZipEntry* find(std::string_view name) const noexcept;
  /// An entry's name without the root folder.
  std::string_view relative_name(const ZipEntry& e) const noexcept;
  bool has_zip64_end() const noexcept { return zip64_end_; }
  /// Bytes between the end of the central directory records and the end of file.
  uint64_t trailing_bytes() const noexcept { return trailing_; }

  /// The entry's first payload byte: local header offset + 30 + local name
  /// and extra lengths (torch pads only there). Reads and cross-checks the
  /// local header on demand, so opening touches no local header at all.
  /// Throws corrupt_zip or unsupported_zip.
  uint64_t data_offset(const ZipEntry& e) const;
  /// Zero-copy view of a STORED entry; throws unsupported_zip for others.
  std::span<const uint8_t> stored_bytes(const ZipEntry& e) const;
  /// The entry's uncompressed bytes (inflated when DEFLATE'd, within
  /// Limits::max_inflate_bytes). Checks the CRC when `check_crc`.
  std::vector<uint8_t> read(const ZipEntry& e, bool check_crc = true) const;
  /// Recomputes the entry's CRC-32; throws crc_mismatch.
  void verify_crc(const ZipEntry& e) const;

  const Source& source() const noexcept { return *src_; }
  const std::shared_ptr<const Source>& source_ptr() const noexcept { return src_; }

 private:
  void parse();
  std::shared_ptr<const Source> src_;
  Limits limits_;
  std::vector<ZipEntry> entries_;
  std::vector<uint32_t> by_name_;  // open-addressing hash of entry indices (UINT32_MAX = empty)
  std::string root_;
  bool zip64_end_ = false;
  uint64_t trailing_ = 0;
};

/// CRC-32 (ISO-HDLC, as zip uses), continuing from `crc`.
uint32_t crc32(uint32_t crc, const void* data, size_t n) noexcept;

}  // namespace ckpt
