// tools/convert/sha256.hpp - SHA-256 of a file or of bytes (SHA-NI when the
// CPU has it, ~2 GB/s; a portable version otherwise), for the HDF5 export's
// source_sha256 attribute.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace ckpt::tools {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  /// The digest as 64 lowercase hex digits; the object is spent afterwards.
  std::string hex();

 private:
  void blocks(const uint8_t* p, size_t n);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t used_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(std::span<const uint8_t> bytes);
/// Hashes a file through a read-only mapping, dropping its pages as it goes.
std::string sha256_file(const std::string& path);

}  // namespace ckpt::tools
