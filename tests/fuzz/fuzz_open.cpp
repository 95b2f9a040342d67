// fuzz_open: Checkpoint::open end to end on any bytes (format detection, every
// container, the unpickler, tensor validation), then every accessor a tool
// calls: tensor payloads, repr, verify(), re-serialisation.
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::open_and_exercise(std::span<const uint8_t>(data, size));
  return 0;
}
