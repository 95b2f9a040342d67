// fuzz_legacy: the pre-1.6 readers, end to end: the legacy pickle stream
// (magic, protocol, sys_info, object pickle, storage keys, raw storages) and
// the torch <= 0.1.9 TAR layout. Zip and zstd inputs are left to their own
// targets, so the mutations spent here stay on these readers.
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> d(data, size);
  if (fuzz::starts_with(d, "PK") || fuzz::starts_with(d, "\x28\xb5\x2f\xfd")) return 0;
  fuzz::open_and_exercise(d);
  return 0;
}
