// fuzz_zstd: `.zst` input. Every input is read as a zstd frame (the magic is
// prepended when the mutator lost it), decompressed within the inflate limit,
// and the result opened as a checkpoint.
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static constexpr std::string_view kMagic = "\x28\xb5\x2f\xfd";
  std::span<const uint8_t> d(data, size);
  std::vector<uint8_t> buf;
  if (!fuzz::starts_with(d, kMagic)) {
    buf.assign(kMagic.begin(), kMagic.end());
    buf.insert(buf.end(), data, data + size);
    d = buf;
  }
  fuzz::open_and_exercise(d);
  return 0;
}
