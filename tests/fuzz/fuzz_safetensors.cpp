// fuzz_safetensors: safetensors import (ckpt/safetensors.hpp): the header
// parser (JSON, dtypes, shapes, offsets, coverage) alone, then the whole
// read with every tensor's bytes copied out and re-checked against its
// header entry.
#include <ckpt/safetensors.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  try {
    ckpt::SafetensorsHeader h = ckpt::parse_safetensors_header(in, "fuzz.safetensors");
    FUZZ_CHECK(h.data_start == 8 + h.header_bytes);
    FUZZ_CHECK(h.data_start + h.data_bytes == size);
    for (const auto& e : h.tensors) {
      FUZZ_CHECK(e.begin <= e.end && e.end <= h.data_bytes);
      uint64_t n = static_cast<uint64_t>(ckpt::dtype_size(e.dtype));
      for (int64_t d : e.shape) n *= static_cast<uint64_t>(d);  // validated: no overflow
      FUZZ_CHECK(n == e.end - e.begin);
    }
  } catch (const ckpt::Error& e) {
    fuzz::check_error(e);
  }
  try {
    auto ck = ckpt::read_safetensors(in, fuzz::open_options());
    fuzz::exercise_tree(ck.root(), fuzz::limits());
    ck.verify();
  } catch (const ckpt::Error& e) {
    fuzz::check_error(e);
  }
  return 0;
}
