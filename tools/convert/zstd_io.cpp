#include "convert/zstd_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <memory>
#include <thread>
#include <vector>

#include "ckpt/atomic_file.hpp"
#include "ckpt/error.hpp"

namespace ckpt::tools {

namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

/// Reads up to n bytes (fewer only at the end of the file).
size_t read_some(int fd, uint8_t* buf, size_t n, const std::string& path) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::io_error, "read failed", path, {}, Error::no_offset, {}, errno);
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

Fd open_in(const std::string& path, uint64_t& size) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) throw Error(ErrorCode::io_error, "cannot open", path, {}, Error::no_offset, {}, errno);
  struct stat st {};
  ::fstat(f.fd, &st);
  size = static_cast<uint64_t>(st.st_size);
  ::posix_fadvise(f.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return f;
}

}  // namespace

uint64_t zstd_compress_file(const std::string& in, const std::string& out, const ZstdOptions& o) {
  uint64_t size = 0;
  Fd f = open_in(in, size);
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (!cctx) throw Error(ErrorCode::internal, "cannot create a zstd encoder");
  unsigned threads = o.threads ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, o.level);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);
  if (threads > 1) ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_nbWorkers, static_cast<int>(threads));  // ignored without MT support
  ZSTD_CCtx_setPledgedSrcSize(cctx.get(), size);
  AtomicFile af(out, o.durable);
  std::vector<uint8_t> ibuf(size_t{4} << 20), obuf(ZSTD_CStreamOutSize());
  uint64_t done = 0;
  for (;;) {
    size_t n = read_some(f.fd, ibuf.data(), ibuf.size(), in);
    const bool last = done + n >= size || n < ibuf.size();
    ZSTD_inBuffer ib{ibuf.data(), n, 0};
    ZSTD_EndDirective mode = last ? ZSTD_e_end : ZSTD_e_continue;
    for (;;) {
      ZSTD_outBuffer ob{obuf.data(), obuf.size(), 0};
      size_t rem = ZSTD_compressStream2(cctx.get(), &ob, &ib, mode);
      if (ZSTD_isError(rem)) throw Error(ErrorCode::internal, std::string("zstd: ") + ZSTD_getErrorName(rem), in);
      af.write(obuf.data(), ob.pos);
      if (last ? rem == 0 : ib.pos == ib.size) break;
    }
    done += n;
    if (o.progress) o.progress(done);
    ::posix_fadvise(f.fd, 0, static_cast<off_t>(done), POSIX_FADV_DONTNEED);
    if (last) break;
  }
  if (done != size) throw Error(ErrorCode::io_error, "the file changed size while it was read", in);
  uint64_t written = af.bytes_written();
  af.commit();
  return written;
}

uint64_t zstd_decompress_file(const std::string& in, const std::string& out, const ZstdOptions& o) {
  uint64_t size = 0;
  Fd f = open_in(in, size);
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!dctx) throw Error(ErrorCode::internal, "cannot create a zstd decoder");
  AtomicFile af(out, o.durable);
  std::vector<uint8_t> ibuf(ZSTD_DStreamInSize()), obuf(ZSTD_DStreamOutSize());
  uint64_t done = 0;
  size_t rc = 0;
  for (;;) {
    size_t n = read_some(f.fd, ibuf.data(), ibuf.size(), in);
    if (n == 0) break;
    ZSTD_inBuffer ib{ibuf.data(), n, 0};
    for (;;) {  // until the input is used and the decoder has nothing more to flush
      ZSTD_outBuffer ob{obuf.data(), obuf.size(), 0};
      rc = ZSTD_decompressStream(dctx.get(), &ob, &ib);
      if (ZSTD_isError(rc)) throw Error(ErrorCode::corrupt_compressed, std::string("invalid zstd data: ") + ZSTD_getErrorName(rc), in, {}, done + ib.pos);
      af.write(obuf.data(), ob.pos);
      if (ib.pos == ib.size && ob.pos < ob.size) break;
    }
    done += n;
    if (o.progress) o.progress(done);
  }
  if (rc != 0) throw Error(ErrorCode::truncated, "the zstd frame is truncated", in, {}, size);
  uint64_t written = af.bytes_written();
  af.commit();
  return written;
}

}  // namespace ckpt::tools
