#include "common/open.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "ckpt/error.hpp"
#include "ckpt/safetensors.hpp"

namespace ckpt::tools {

namespace {

constexpr size_t kSniff = 64;

/// The first bytes of a file (fewer if it is shorter).
std::vector<uint8_t> head_of(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorCode::io_error, "cannot open", path, {}, Error::no_offset, {}, errno);
  std::vector<uint8_t> buf(kSniff);
  ssize_t n = ::read(fd, buf.data(), buf.size());
  ::close(fd);
  buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return buf;
}

bool looks_like_hdf5(const std::vector<uint8_t>& h) {
  static constexpr uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  return h.size() >= 8 && std::equal(sig, sig + 8, h.begin());
}

// The HDF5 reader (ckpt::read_hdf5) is in libckpt_hdf5, which brings libhdf5
// and its own dependencies (curl, TLS, Kerberos: about 15 ms of loading at
// every start). It is loaded on the first HDF5 input only, from libckpt's
// folder (or the library path), so a tool starts in a few milliseconds.
using ReadHdf5 = Checkpoint (*)(const std::string&, const OpenOptions&);

ReadHdf5 hdf5_reader() {
  static const ReadHdf5 fn = []() -> ReadHdf5 {
    static constexpr const char* sym =  // ckpt::read_hdf5(std::string const&, ckpt::OpenOptions const&)
        "_ZN4ckpt9read_hdf5ERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEERKNS_11OpenOptionsE";
    if (void* p = ::dlsym(RTLD_DEFAULT, sym)) return reinterpret_cast<ReadHdf5>(p);  // linked in (ckpt-convert)
    std::vector<std::string> candidates;
    Dl_info info{};
    if (::dladdr(reinterpret_cast<void*>(&container_name), &info) && info.dli_fname) {
      std::string lib = info.dli_fname;
      size_t slash = lib.rfind('/');
      if (slash != std::string::npos) candidates.push_back(lib.substr(0, slash + 1) + "libckpt_hdf5.so.0");
    }
    candidates.push_back("libckpt_hdf5.so.0");
    candidates.push_back("libckpt_hdf5.so");
    for (const auto& c : candidates)
      if (void* h = ::dlopen(c.c_str(), RTLD_NOW | RTLD_GLOBAL))
        if (void* p = ::dlsym(h, sym)) return reinterpret_cast<ReadHdf5>(p);
    return nullptr;
  }();
  return fn;
}

Checkpoint read_hdf5(const std::string& path, const OpenOptions& opts) {
  ReadHdf5 read = hdf5_reader();
  if (!read)
    throw Error(ErrorCode::unknown_format, "an HDF5 file, but libckpt_hdf5 (the HDF5 reader) is not installed", path);
  return read(path, opts);
}

bool is_zstd(const std::vector<uint8_t>& h) { return h.size() >= 4 && h[0] == 0x28 && h[1] == 0xb5 && h[2] == 0x2f && h[3] == 0xfd; }

/// Decompresses a whole zstd file into memory (bounded by the inflate limit).
std::vector<uint8_t> zstd_all(const std::shared_ptr<const Source>& src, const Limits& lim, size_t stop_after = SIZE_MAX) {
  std::unique_ptr<ZSTD_DStream, size_t (*)(ZSTD_DStream*)> z(ZSTD_createDStream(), ZSTD_freeDStream);
  if (!z) throw Error(ErrorCode::internal, "cannot create a zstd decoder");
  std::vector<uint8_t> out, chunk(ZSTD_DStreamOutSize());
  ZSTD_inBuffer in{src->data(), static_cast<size_t>(src->size()), 0};
  size_t rc = 1;
  while ((in.pos < in.size || rc != 0) && out.size() < stop_after) {
    ZSTD_outBuffer ob{chunk.data(), chunk.size(), 0};
    rc = ZSTD_decompressStream(z.get(), &ob, &in);
    if (ZSTD_isError(rc))
      throw Error(ErrorCode::corrupt_compressed, std::string("invalid zstd data: ") + ZSTD_getErrorName(rc), src->path(), {}, in.pos);
    if (out.size() + ob.pos > lim.max_inflate_bytes)
      throw Error(ErrorCode::limit_exceeded, "zstd data inflates past the limit", src->path(), {}, in.pos);
    out.insert(out.end(), chunk.data(), chunk.data() + ob.pos);
    if (in.pos == in.size && ob.pos == 0 && rc != 0) throw Error(ErrorCode::truncated, "zstd frame is truncated", src->path(), {}, in.pos);
  }
  return out;
}

/// A temporary file that is removed when this goes out of scope.
struct TempFile {
  std::string path;
  ~TempFile() {
    if (!path.empty()) ::unlink(path.c_str());
  }
};

}  // namespace

Checkpoint open_input(const std::string& path, const OpenOptions& opts) {
  std::vector<uint8_t> head = head_of(path);
  if (looks_like_hdf5(head)) return read_hdf5(path, opts);
  if (head.size() >= 9) {
    auto src = Source::open_file(path, opts.use_mmap);
    if (looks_like_safetensors(head, src->size())) return read_safetensors(src, opts);
    if (is_zstd(head)) {
      // Peek inside: torch files go through libckpt's own zstd path; an
      // HDF5 or safetensors file is decompressed here first.
      std::vector<uint8_t> inner = zstd_all(src, opts.limits, kSniff);
      inner.resize(std::min(inner.size(), kSniff));
      const bool h5 = looks_like_hdf5(inner);
      if (h5 || (inner.size() >= 9 && inner[8] == '{')) {
        std::vector<uint8_t> all = zstd_all(src, opts.limits);
        if (!h5) {
          if (!looks_like_safetensors(all, all.size()))
            throw Error(ErrorCode::unknown_format, "a zstd frame holding neither a checkpoint nor safetensors", path);
          return read_safetensors(Source::from_bytes(std::move(all), path), opts);
        }
        // libhdf5 reads files: spill to a private temporary file.
        const char* tmpdir = std::getenv("TMPDIR");
        std::string tmpl = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/ckpt-h5-XXXXXX";
        int fd = ::mkstemp(tmpl.data());
        if (fd < 0) throw Error(ErrorCode::io_error, "cannot create a temporary file to decompress into", tmpl, {}, Error::no_offset, {}, errno);
        TempFile tmp{tmpl};
        size_t off = 0;
        while (off < all.size()) {
          ssize_t w = ::write(fd, all.data() + off, all.size() - off);
          if (w <= 0) {
            int err = errno;
            ::close(fd);
            throw Error(ErrorCode::io_error, "cannot write the decompressed file", tmpl, {}, Error::no_offset, {}, err);
          }
          off += static_cast<size_t>(w);
        }
        ::close(fd);
        all.clear();
        all.shrink_to_fit();
        OpenOptions o2 = opts;
        o2.use_mmap = false;  // the file goes away: read everything now
        return read_hdf5(tmp.path, o2);
      }
    }
  }
  return Checkpoint::open(path, opts);
}

}  // namespace ckpt::tools
