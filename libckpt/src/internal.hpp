// Internal glue shared by the container loaders. Not installed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ckpt/checkpoint.hpp"

namespace ckpt {

/// Friend of Checkpoint: fills it from a Source.
struct CheckpointLoader {
  Checkpoint& ck;
  const OpenOptions& opts;

  void load();
  void load_zip();
  void load_legacy_stream(uint64_t first_end);
  void load_tar();
  void load_pickle(const UnpickleResult& r);
  void merge_globals(const std::vector<GlobalRef>& g);
  UnpickleOptions unpickle_options(const std::string& entry) const;
};

/// madvise(MADV_DONTNEED) on the whole pages inside [p, p + n) of a
/// read-only private file mapping (they fault back in from the page cache).
void drop_whole_pages(const uint8_t* p, uint64_t n) noexcept;

/// Checks for a POSIX/GNU/v7 tar header at the start of `data`.
bool looks_like_tar(const uint8_t* data, uint64_t size);

}  // namespace ckpt
