// ckpt/source.hpp - the bytes of an input file: memory-mapped, or in memory.
//
// Readers take a Source and never assume more than its size() bytes exist.
// A mapped file is mapped read-only and privately; writers in this library
// never modify a file in place (they rename a new file over it), so a reader's
// mapping stays valid and complete while a checkpoint is replaced.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace ckpt {

class Source {
 public:
  /// Maps `path` (or reads it, when `use_mmap` is false or mapping fails).
  /// Throws ErrorCode::io_error naming the path and errno.
  static std::shared_ptr<const Source> open_file(const std::string& path, bool use_mmap = true);
  /// Wraps bytes already in memory; `name` appears in error messages.
  static std::shared_ptr<const Source> from_bytes(std::vector<uint8_t> bytes, std::string name = "<memory>");

  ~Source();
  Source(const Source&) = delete;
  Source& operator=(const Source&) = delete;

  const uint8_t* data() const noexcept { return data_; }
  uint64_t size() const noexcept { return size_; }
  std::span<const uint8_t> span() const noexcept { return {data_, static_cast<size_t>(size_)}; }
  /// Bounds-checked sub-range; throws ErrorCode::truncated when it does not fit.
  std::span<const uint8_t> slice(uint64_t offset, uint64_t length, const char* what) const;
  const std::string& path() const noexcept { return path_; }
  bool mapped() const noexcept { return mapped_; }

 private:
  Source() = default;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool mapped_ = false;
  std::vector<uint8_t> owned_;
  std::string path_;
};

}  // namespace ckpt
