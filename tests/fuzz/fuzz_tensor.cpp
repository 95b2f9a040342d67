// fuzz_tensor: tensor extent checks. The input is decoded into a dtype, a
// shape, strides, a storage offset and a storage size (biased toward edge
// values: 0, 1, -1, 2^31, 2^32, 2^62, INT64_MIN/MAX), then
//   - Tensor::validate() must agree with an independent 128-bit reference;
//   - for a valid tensor, copy_to() must gather exactly the elements the
//     reference addresses (byte-swapped for a big-endian storage);
//   - is_contiguous()/contiguous_bytes() must agree with that copy.
#include <cstring>
#include <limits>

#include "fuzz_common.hpp"

namespace {

struct Reader {
  const uint8_t* p;
  size_t n;
  uint8_t byte() {
    if (!n) return 0;
    --n;
    return *p++;
  }
  int64_t number() {
    const uint8_t b = byte();
    switch (b >> 5) {
      case 0: case 1: case 2: return b & 0x3f;           // small, non-negative
      case 3: return -static_cast<int64_t>(b & 0x1f);     // small, non-positive
      case 4: {                                           // powers of two, +-1
        const int e = b & 0x3f;
        const int64_t v = e >= 63 ? std::numeric_limits<int64_t>::max() : int64_t{1} << e;
        return (b & 0x40) ? v - 1 : v;
      }
      case 5: return std::numeric_limits<int64_t>::min() + (b & 0x1f);
      default: {                                          // any 64-bit value
        uint64_t v = 0;
        for (int i = 0; i < 8; ++i) v = (v << 8) | byte();
        return static_cast<int64_t>(v);
      }
    }
  }
};

using i128 = __int128;

/// What validate() must decide, computed independently in 128 bits.
bool reference_valid(const ckpt::Tensor& t, uint32_t max_ndim) {
  if (t.shape.size() != t.stride.size() || t.shape.size() > max_ndim || t.storage_offset < 0) return false;
  const i128 item = ckpt::dtype_size(t.dtype);
  const i128 u64max = static_cast<i128>(std::numeric_limits<uint64_t>::max());
  bool empty = false;
  for (size_t i = 0; i < t.shape.size(); ++i) {
    if (t.shape[i] < 0 || t.stride[i] < 0) return false;
    if (t.shape[i] == 0) empty = true;
  }
  // Partial products in order, as documented: an element count that
  // overflows 64 bits on the way is refused even if a later size is 0.
  i128 numel = 1;
  for (int64_t d : t.shape) {
    numel *= d;
    if (numel > u64max) return false;
  }
  if (numel * item > u64max) return false;
  if (empty) return true;
  i128 last = t.storage_offset;
  for (size_t i = 0; i < t.shape.size(); ++i) last += static_cast<i128>(t.shape[i] - 1) * t.stride[i];
  return (last + 1) * item <= static_cast<i128>(t.storage->nbytes());
}

/// The element at row-major index `k`, gathered by hand.
void gather(const ckpt::Tensor& t, uint64_t k, uint8_t* out) {
  const size_t item = static_cast<size_t>(ckpt::dtype_size(t.dtype));
  uint64_t off = static_cast<uint64_t>(t.storage_offset);
  for (size_t d = t.shape.size(); d-- > 0;) {
    const uint64_t s = static_cast<uint64_t>(t.shape[d]);
    off += (k % s) * static_cast<uint64_t>(t.stride[d]);
    k /= s;
  }
  std::memcpy(out, t.storage->bytes().data() + off * item, item);
  if (t.storage->big_endian()) {
    const int unit = ckpt::dtype_swap_unit(t.dtype);
    for (size_t u = 0; u < item; u += static_cast<size_t>(unit)) std::reverse(out + u, out + u + unit);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader r{data, size};
  const uint8_t head = r.byte();
  const auto dtype = static_cast<ckpt::DType>(head % ckpt::kDTypeCount);
  const bool big = head & 0x80;
  const uint8_t nd_byte = r.byte();
  const size_t ndim = (nd_byte & 0x80) ? nd_byte & 0x7f : nd_byte % 7;
  const bool stride_mismatch = (nd_byte & 0x7f) == 0x7f;
  const uint64_t storage_bytes = (uint64_t{r.byte()} << 8 | r.byte()) % 8192;

  ckpt::Tensor t;
  t.dtype = dtype;
  std::vector<uint8_t> bytes(storage_bytes);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 131 + 7);
  t.storage = ckpt::Storage::from_bytes(dtype, std::move(bytes));
  t.storage->set_big_endian(big);
  t.storage_offset = r.number();
  for (size_t i = 0; i < ndim; ++i) {
    t.shape.push_back(r.number());
    t.stride.push_back(r.number());
  }
  if (stride_mismatch && !t.stride.empty()) t.stride.pop_back();

  const uint32_t max_ndim = 64;
  bool valid = true;
  try {
    t.validate(max_ndim);
  } catch (const ckpt::Error& e) {
    FUZZ_CHECK(e.code() == ckpt::ErrorCode::invalid_tensor || e.code() == ckpt::ErrorCode::limit_exceeded);
    valid = false;
  }
  FUZZ_CHECK(valid == reference_valid(t, max_ndim));
  if (!valid) return 0;

  (void)ckpt::Tensor::contiguous_strides(t.shape);
  const uint64_t nbytes = t.nbytes();
  if (nbytes > (64u << 10)) return 0;
  std::vector<uint8_t> out = t.to_contiguous();
  FUZZ_CHECK(out.size() == nbytes);
  const size_t item = static_cast<size_t>(ckpt::dtype_size(t.dtype));
  uint8_t want[16];
  for (uint64_t k = 0; k < t.numel(); ++k) {
    gather(t, k, want);
    FUZZ_CHECK(std::memcmp(want, out.data() + k * item, item) == 0);
  }
  if (t.is_contiguous() && !big) {
    auto view = t.contiguous_bytes();
    FUZZ_CHECK(view.size() == nbytes);
    FUZZ_CHECK(nbytes == 0 || std::memcmp(view.data(), out.data(), nbytes) == 0);
  }
  return 0;
}
