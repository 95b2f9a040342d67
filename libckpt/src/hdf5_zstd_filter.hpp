// Internal: HDF5 filter 32015 (zstd), shared by libckpt_hdf5 (registered
// in-process) and the loadable plugin libH5Zckpt_zstd.so (HDF5_PLUGIN_PATH),
// which lets any HDF5 program, h5py included, read and write it. Not installed.
#pragma once

#include <hdf5.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

namespace ckpt::detail {

inline constexpr unsigned kZstdFilterId = 32015;

// The zstd filter, as hdf5plugin / HDF5Plugin-Zstandard define it: the chunk
// is one or more zstd frames; cd_values[0] is the compression level.
inline constexpr size_t kMaxChunkOut = size_t{4} << 30;  // HDF5 chunks are < 4 GiB

inline size_t zstd_filter(unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes, size_t* buf_size, void** buf) {
  if (flags & H5Z_FLAG_REVERSE) {
    unsigned long long n = ZSTD_getFrameContentSize(*buf, nbytes);
    if (n == ZSTD_CONTENTSIZE_ERROR) return 0;
    const size_t first = ZSTD_findFrameCompressedSize(*buf, nbytes);
    if (ZSTD_isError(first)) return 0;
    if (n == ZSTD_CONTENTSIZE_UNKNOWN || first != nbytes) {  // unknown size, or several frames: stream  // streamed frames: grow up to the chunk limit
      std::unique_ptr<ZSTD_DStream, size_t (*)(ZSTD_DStream*)> z(ZSTD_createDStream(), ZSTD_freeDStream);
      if (!z) return 0;
      std::vector<uint8_t> out;
      ZSTD_inBuffer in{*buf, nbytes, 0};
      std::vector<uint8_t> tmp(ZSTD_DStreamOutSize());
      size_t rc = 1;
      while (in.pos < in.size) {
        ZSTD_outBuffer ob{tmp.data(), tmp.size(), 0};
        rc = ZSTD_decompressStream(z.get(), &ob, &in);
        if (ZSTD_isError(rc) || out.size() + ob.pos > kMaxChunkOut) return 0;
        out.insert(out.end(), tmp.data(), tmp.data() + ob.pos);
        if (ob.pos == 0 && in.pos == in.size && rc != 0) return 0;
      }
      if (rc != 0) return 0;
      void* o = H5allocate_memory(std::max<size_t>(out.size(), 1), false);
      if (!o) return 0;
      std::memcpy(o, out.data(), out.size());
      H5free_memory(*buf);
      *buf = o;
      *buf_size = std::max<size_t>(out.size(), 1);
      return out.size();
    }
    if (n > kMaxChunkOut) return 0;
    void* o = H5allocate_memory(std::max<size_t>(static_cast<size_t>(n), 1), false);
    if (!o) return 0;
    size_t r = ZSTD_decompress(o, static_cast<size_t>(n), *buf, nbytes);
    if (ZSTD_isError(r) || r != n) {
      H5free_memory(o);
      return 0;
    }
    H5free_memory(*buf);
    *buf = o;
    *buf_size = std::max<size_t>(static_cast<size_t>(n), 1);
    return static_cast<size_t>(n);
  }
  int level = cd_nelmts > 0 ? static_cast<int>(cd_values[0]) : 3;
  level = std::clamp(level, 1, ZSTD_maxCLevel());
  size_t bound = ZSTD_compressBound(nbytes);
  void* o = H5allocate_memory(bound, false);
  if (!o) return 0;
  size_t r = ZSTD_compress(o, bound, *buf, nbytes, level);
  if (ZSTD_isError(r)) {
    H5free_memory(o);
    return 0;
  }
  H5free_memory(*buf);
  *buf = o;
  *buf_size = bound;
  return r;
}

inline const H5Z_class2_t kZstdFilterClass = {H5Z_CLASS_T_VERS, static_cast<H5Z_filter_t>(kZstdFilterId), 1, 1, "zstd (ckpt)",
                                             nullptr, nullptr, zstd_filter};

}  // namespace ckpt::detail
