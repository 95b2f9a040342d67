// ckpt/atomic_file.hpp - a write that is all or nothing, and durable.
//
// AtomicFile writes to ".<name>.tmp.<pid>.<random>" (permission bits of the
// file it replaces, else 0666 less the umask) in the destination's
// folder, and commit() does: fsync(file) -> close -> rename over the final
// name -> fsync(folder). Until commit() returns, the final name holds the old
// file or nothing. If anything fails, the temp file is removed and the error
// is thrown; fsync is never retried (after a failed fsync the kernel may have
// dropped the dirty pages: PostgreSQL's "fsyncgate"). The destructor of an
// uncommitted AtomicFile only removes its temp file and never throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <sys/types.h>
#include <vector>

namespace ckpt {

class AtomicFile {
 public:
  /// Creates the temp file. `durable` = false skips both fsyncs (tests, tmpfs).
  explicit AtomicFile(std::string final_path, bool durable = true);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  /// Buffered write; throws io_error or no_space (ENOSPC, EDQUOT).
  void write(const void* data, size_t n);
  uint64_t bytes_written() const noexcept { return written_; }
  /// Makes the file visible under its final name. Throws on failure: before
  /// the rename the old file is intact and the temp file gone; if only the
  /// folder fsync fails, the code is durability_uncertain.
  void commit();
  /// Drops the temp file without committing (also done by the destructor).
  void discard() noexcept;

  const std::string& final_path() const noexcept { return final_; }
  const std::string& temp_path() const noexcept { return temp_; }

 private:
  void flush_buffer();
  void kick_writeback();
  void fail(int err, const char* what);
  std::string final_, temp_, dir_;
  int fd_ = -1;
  bool durable_;
  bool committed_ = false;
  uint64_t written_ = 0;
  uint64_t kicked_ = 0;  // bytes handed to sync_file_range so far
  std::vector<char> buf_;
  size_t used_ = 0;
};

namespace detail {
/// The system calls AtomicFile uses. Tests replace them to inject ENOSPC, EIO
/// or a crash at the n-th call (the fmt posix-mock / LevelDB fault-env seam).
struct FsOps {
  int (*open)(const char* path, int flags, mode_t mode);
  ssize_t (*write)(int fd, const void* buf, size_t n);
  int (*fsync)(int fd);
  int (*close)(int fd);
  int (*rename)(const char* from, const char* to);
  int (*unlink)(const char* path);
  int (*sync_range)(int fd, off_t offset, off_t nbytes);  ///< start write-back (a hint)
};
FsOps& fs_ops() noexcept;
void reset_fs_ops() noexcept;
}  // namespace detail

}  // namespace ckpt
