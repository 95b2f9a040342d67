#include "common/cli.hpp"

#include <cstdio>
#include <cstring>
#include <exception>
#include <new>

#include "common/term.hpp"

namespace ckpt::tools {

namespace {

std::string advice(const Error& e) {
  const std::string& d = e.detail();
  switch (e.code()) {
    case ErrorCode::html_page:
      return "this is an HTML page, not a checkpoint: the download probably failed or needed a login";
    case ErrorCode::lfs_pointer:
      return "this is a git-LFS pointer, not the checkpoint: fetch the real file with `git lfs pull`";
    case ErrorCode::truncated:
      return "the file is truncated (" + d + "): the copy or download was probably interrupted";
    case ErrorCode::unknown_format:
      return "not a checkpoint (" + d + ")";
    case ErrorCode::unsafe_global:
      return "refused: " + d + "; loading it in Python could run code (audit it with `ckpt-info --globals`)";
    case ErrorCode::crc_mismatch:
      return "the file is corrupt: " + d + " (it was damaged after it was written; use a fresh copy)";
    case ErrorCode::corrupt_zip:
    case ErrorCode::corrupt_legacy:
    case ErrorCode::corrupt_compressed:
    case ErrorCode::corrupt_hdf5:
      return "the file is corrupt: " + d;
    case ErrorCode::no_space:
      return "no space left on the device: " + d + " (nothing was replaced)";
    case ErrorCode::limit_exceeded:
      return d + " (a safety limit; see docs/security.md)";
    case ErrorCode::io_error:  // "cannot open file: No such file or directory"
      return e.sys_errno() ? d + ": " + std::strerror(e.sys_errno()) : d;
    default:
      return d;
  }
}

}  // namespace

std::string describe_error(const Error& e) {
  std::string out;
  if (!e.path().empty()) out += escape(e.path()) + ": ";
  out += escape(advice(e));
  std::string where;
  if (!e.entry().empty()) where += escape(e.entry());
  if (e.has_offset()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "+0x%llx", static_cast<unsigned long long>(e.byte_offset()));
    where += where.empty() ? std::string("byte ") + (buf + 1) : buf;
  }
  if (!e.key_path().empty()) where += (where.empty() ? "key " : ", key ") + escape(e.key_path());
  out += " (";
  if (!where.empty()) out += "at " + where + "; ";
  out += error_code_name(e.code());
  out += ")";
  return out;
}

int run_tool(std::string_view tool, const std::function<int()>& body) {
  const std::string name(tool);
  try {
    return body();
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: error: %s\n", name.c_str(), describe_error(e).c_str());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: error: out of memory\n", name.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", name.c_str(), escape(e.what()).c_str());
  }
  return exit_error;
}

}  // namespace ckpt::tools
