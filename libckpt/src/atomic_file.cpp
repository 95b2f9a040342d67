#include "ckpt/atomic_file.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <random>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/error.hpp"

namespace ckpt {
namespace detail {
namespace {
int sys_open(const char* p, int f, mode_t m) { return ::open(p, f, m); }
ssize_t sys_write(int fd, const void* b, size_t n) { return ::write(fd, b, n); }
int sys_fsync(int fd) { return ::fsync(fd); }
int sys_close(int fd) { return ::close(fd); }
int sys_rename(const char* a, const char* b) { return ::rename(a, b); }
int sys_unlink(const char* p) { return ::unlink(p); }
int sys_sync_range(int fd, off_t off, off_t n) { return ::sync_file_range(fd, off, n, SYNC_FILE_RANGE_WRITE); }
FsOps g_ops{sys_open, sys_write, sys_fsync, sys_close, sys_rename, sys_unlink, sys_sync_range};
}  // namespace
FsOps& fs_ops() noexcept { return g_ops; }
void reset_fs_ops() noexcept { g_ops = FsOps{sys_open, sys_write, sys_fsync, sys_close, sys_rename, sys_unlink, sys_sync_range}; }
}  // namespace detail

namespace {
constexpr size_t kBuffer = 1 << 20;
}

AtomicFile::AtomicFile(std::string final_path, bool durable) : final_(std::move(final_path)), durable_(durable) {
  if (final_.empty()) throw Error(ErrorCode::invalid_argument, "empty output path");
  auto slash = final_.rfind('/');
  dir_ = slash == std::string::npos ? "." : (slash == 0 ? "/" : final_.substr(0, slash));
  std::string base = slash == std::string::npos ? final_ : final_.substr(slash + 1);
  if (base.empty() || base == "." || base == "..") throw Error(ErrorCode::invalid_argument, "output path names a directory", final_);
  std::random_device rd;
  for (int attempt = 0; attempt < 16; ++attempt) {
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, ".tmp.%d.%08x", static_cast<int>(::getpid()), rd());
    temp_ = (slash == std::string::npos ? std::string() : final_.substr(0, slash + 1)) + "." + base + suffix;
    fd_ = detail::fs_ops().open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ >= 0) break;
    if (errno != EEXIST) {
      int err = errno;
      throw Error(err == ENOSPC || err == EDQUOT ? ErrorCode::no_space : ErrorCode::io_error,
                  "cannot create a temporary file next to the output", temp_, {}, Error::no_offset, {}, err);
    }
  }
  if (fd_ < 0) throw Error(ErrorCode::io_error, "cannot create a unique temporary file", temp_);
  // Replacing a file keeps its permission bits (a 0600 checkpoint stays 0600).
  struct stat old {};
  if (::stat(final_.c_str(), &old) == 0 && S_ISREG(old.st_mode)) (void)::fchmod(fd_, old.st_mode & 07777);
  buf_.resize(kBuffer);
}

AtomicFile::~AtomicFile() { discard(); }

void AtomicFile::discard() noexcept {
  if (fd_ >= 0) {
    detail::fs_ops().close(fd_);
    fd_ = -1;
  }
  if (!committed_ && !temp_.empty()) {
    detail::fs_ops().unlink(temp_.c_str());
    temp_.clear();
  }
}

void AtomicFile::fail(int err, const char* what) {
  std::string tmp = temp_;
  discard();
  ErrorCode code = (err == ENOSPC || err == EDQUOT) ? ErrorCode::no_space : ErrorCode::io_error;
  throw Error(code, std::string(what) + " (after " + std::to_string(written_) + " bytes; the old file is untouched)", final_,
              {}, Error::no_offset, {}, err);
}

// Durable writes end in fsync, which then waits for every dirty page. Asking
// the kernel to start write-back every 32 MiB overlaps the disk with our
// writing, so the final fsync has little left to do. (A hint only: its
// errors are ignored; fsync reports any failure.)
void AtomicFile::kick_writeback() {
  constexpr uint64_t kStep = uint64_t{32} << 20;
  const uint64_t flushed = written_ - used_;
  if (durable_ && flushed >= kicked_ + kStep) {
    detail::fs_ops().sync_range(fd_, static_cast<off_t>(kicked_), static_cast<off_t>(flushed - kicked_));
    kicked_ = flushed;
  }
}

void AtomicFile::flush_buffer() {
  size_t off = 0;
  while (off < used_) {
    ssize_t n = detail::fs_ops().write(fd_, buf_.data() + off, used_ - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(errno, "write failed");
    }
    if (n == 0) fail(EIO, "write wrote nothing");
    off += static_cast<size_t>(n);
  }
  used_ = 0;
  kick_writeback();
}

void AtomicFile::write(const void* data, size_t n) {
  if (fd_ < 0) throw Error(ErrorCode::invalid_argument, "write after commit or failure", final_);
  if (n == 0) return;  // an empty storage's bytes may be a null pointer: memcpy must not see it
  const char* p = static_cast<const char*>(data);
  if (used_ + n <= buf_.size()) {
    std::memcpy(buf_.data() + used_, p, n);
    used_ += n;
    written_ += n;
    return;
  }
  flush_buffer();
  if (n < buf_.size()) {
    std::memcpy(buf_.data(), p, n);
    used_ = n;
    written_ += n;
    return;
  }
  size_t off = 0;
  while (off < n) {
    ssize_t w = detail::fs_ops().write(fd_, p + off, std::min<size_t>(n - off, size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(errno, "write failed");
    }
    if (w == 0) fail(EIO, "write wrote nothing");
    off += static_cast<size_t>(w);
    written_ += static_cast<size_t>(w);
  }
  kick_writeback();
}

void AtomicFile::commit() {
  if (fd_ < 0) throw Error(ErrorCode::invalid_argument, "commit after commit or failure", final_);
  flush_buffer();
  if (durable_ && detail::fs_ops().fsync(fd_) != 0) fail(errno, "fsync failed; not retried");
  int rc = detail::fs_ops().close(fd_);
  fd_ = -1;
  if (rc != 0) fail(errno, "close failed");
  if (detail::fs_ops().rename(temp_.c_str(), final_.c_str()) != 0) fail(errno, "cannot rename the temporary file into place");
  committed_ = true;
  temp_.clear();
  if (durable_) {
    int dfd = detail::fs_ops().open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    int err = 0;
    if (dfd < 0) err = errno;
    else {
      if (detail::fs_ops().fsync(dfd) != 0) err = errno;
      detail::fs_ops().close(dfd);
    }
    if (err != 0)
      throw Error(ErrorCode::durability_uncertain,
                  "the file is in place but fsync of its folder failed: a power loss could still undo the rename", final_, {},
                  Error::no_offset, {}, err);
  }
}

}  // namespace ckpt
