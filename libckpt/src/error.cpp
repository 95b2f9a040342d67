#include "ckpt/error.hpp"

#include <cstdio>
#include <cstring>

namespace ckpt {

const char* error_code_name(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::truncated: return "truncated";
    case ErrorCode::unknown_format: return "unknown_format";
    case ErrorCode::html_page: return "html_page";
    case ErrorCode::lfs_pointer: return "lfs_pointer";
    case ErrorCode::unsupported_version: return "unsupported_version";
    case ErrorCode::corrupt_zip: return "corrupt_zip";
    case ErrorCode::unsupported_zip: return "unsupported_zip";
    case ErrorCode::crc_mismatch: return "crc_mismatch";
    case ErrorCode::missing_record: return "missing_record";
    case ErrorCode::corrupt_legacy: return "corrupt_legacy";
    case ErrorCode::corrupt_compressed: return "corrupt_compressed";
    case ErrorCode::corrupt_hdf5: return "corrupt_hdf5";
    case ErrorCode::unsafe_global: return "unsafe_global";
    case ErrorCode::malformed_pickle: return "malformed_pickle";
    case ErrorCode::unsupported_opcode: return "unsupported_opcode";
    case ErrorCode::invalid_tensor: return "invalid_tensor";
    case ErrorCode::unsupported_tensor: return "unsupported_tensor";
    case ErrorCode::limit_exceeded: return "limit_exceeded";
    case ErrorCode::io_error: return "io_error";
    case ErrorCode::no_space: return "no_space";
    case ErrorCode::durability_uncertain: return "durability_uncertain";
    case ErrorCode::invalid_argument: return "invalid_argument";
    case ErrorCode::type_error: return "type_error";
    case ErrorCode::key_not_found: return "key_not_found";
    case ErrorCode::internal: return "internal";
  }
  return "unknown_error";
}

Error::Error(ErrorCode code, std::string detail, std::string path, std::string entry,
             uint64_t byte_offset, std::string key_path, int sys_errno)
    : std::runtime_error(detail),
      code_(code),
      detail_(std::move(detail)),
      path_(std::move(path)),
      entry_(std::move(entry)),
      byte_offset_(byte_offset),
      key_path_(std::move(key_path)),
      errno_(sys_errno) {
  render();
}

void Error::render() {
  std::string w = "ckpt: ";
  w += error_code_name(code_);
  w += " [" + std::to_string(static_cast<int>(code_)) + "]";
  if (!path_.empty() || !entry_.empty() || has_offset()) {
    w += " at ";
    w += path_.empty() ? "<input>" : path_;
    if (!entry_.empty()) w += ":" + entry_;
    if (has_offset()) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "+0x%llx", static_cast<unsigned long long>(byte_offset_));
      w += buf;
    }
  }
  if (!key_path_.empty()) w += " (" + key_path_ + ")";
  w += ": " + detail_;
  if (errno_ != 0) {
    w += " (";
    w += std::strerror(errno_);
    w += ")";
  }
  what_ = std::move(w);
}

Error Error::with_path(const std::string& path) const {
  Error e = *this;
  if (e.path_.empty()) {
    e.path_ = path;
    e.render();
  }
  return e;
}

Error Error::with_entry(const std::string& entry, uint64_t byte_offset) const {
  Error e = *this;
  if (e.entry_.empty()) {
    e.entry_ = entry;
    if (!e.has_offset()) e.byte_offset_ = byte_offset;
    e.render();
  }
  return e;
}

Error Error::with_key_path(const std::string& key_path) const {
  Error e = *this;
  if (e.key_path_.empty()) {
    e.key_path_ = key_path;
    e.render();
  }
  return e;
}

}  // namespace ckpt
