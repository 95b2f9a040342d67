#include "ckpt/source.hpp"

#include <cerrno>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/detail/checked.hpp"
#include "ckpt/error.hpp"

namespace ckpt {
namespace {

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::shared_ptr<const Source> Source::open_file(const std::string& path, bool use_mmap) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) throw Error(ErrorCode::io_error, "cannot open file", path, {}, Error::no_offset, {}, errno);
  struct stat st {};
  if (::fstat(f.fd, &st) != 0)
    throw Error(ErrorCode::io_error, "cannot stat file", path, {}, Error::no_offset, {}, errno);
  if (S_ISDIR(st.st_mode)) throw Error(ErrorCode::io_error, "is a directory, not a file", path);
  std::shared_ptr<Source> s(new Source());
  s->path_ = path;
  if (S_ISREG(st.st_mode) && use_mmap && st.st_size > 0) {
    void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, f.fd, 0);
    if (p != MAP_FAILED) {
      s->data_ = static_cast<const uint8_t*>(p);
      s->size_ = static_cast<uint64_t>(st.st_size);
      s->mapped_ = true;
      return s;
    }
  }
  // Plain reads: pipes, /dev/stdin, or when mapping is refused.
  std::vector<uint8_t> buf;
  if (S_ISREG(st.st_mode) && st.st_size > 0) buf.reserve(static_cast<size_t>(st.st_size));
  uint8_t chunk[1 << 16];
  for (;;) {
    ssize_t n = ::read(f.fd, chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::io_error, "read failed", path, {}, buf.size(), {}, errno);
    }
    if (n == 0) break;
    buf.insert(buf.end(), chunk, chunk + n);
  }
  s->owned_ = std::move(buf);
  s->data_ = s->owned_.data();
  s->size_ = s->owned_.size();
  return s;
}

std::shared_ptr<const Source> Source::from_bytes(std::vector<uint8_t> bytes, std::string name) {
  std::shared_ptr<Source> s(new Source());
  s->owned_ = std::move(bytes);
  s->data_ = s->owned_.data();
  s->size_ = s->owned_.size();
  s->path_ = std::move(name);
  return s;
}

Source::~Source() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(data_), static_cast<size_t>(size_));
}

std::span<const uint8_t> Source::slice(uint64_t offset, uint64_t length, const char* what) const {
  if (!detail::fits(offset, length, size_))
    throw Error(ErrorCode::truncated,
                std::string(what) + ": needs " + std::to_string(length) + " bytes at offset " +
                    std::to_string(offset) + " but the file has " + std::to_string(size_),
                path_, {}, offset);
  return {data_ + offset, static_cast<size_t>(length)};
}

}  // namespace ckpt
