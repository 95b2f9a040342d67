// tools/convert/zstd_io.hpp - whole files through zstd, streamed, written atomically.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace ckpt::tools {

struct ZstdOptions {
  int level = 3;
  unsigned threads = 0;  ///< zstd worker threads; 0: the hardware's
  bool durable = true;
  std::function<void(uint64_t)> progress;  ///< input bytes consumed so far
};

/// Compresses `in` into one zstd frame at `out` (atomically), with the content
/// size and a checksum in the frame, so `zstd -d` gives back `in`'s bytes.
/// Memory stays at a few buffers whatever the file size. Returns bytes written.
uint64_t zstd_compress_file(const std::string& in, const std::string& out, const ZstdOptions& o);

/// Decompresses the zstd frames of `in` into `out` (atomically). Returns bytes written.
uint64_t zstd_decompress_file(const std::string& in, const std::string& out, const ZstdOptions& o);

}  // namespace ckpt::tools
