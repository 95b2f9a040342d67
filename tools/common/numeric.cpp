#include "common/numeric.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#include "ckpt/error.hpp"

namespace ckpt::tools {

float half_to_float(uint16_t h) noexcept {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) bits = sign;
    else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  return std::bit_cast<float>(bits);
}

float bf16_to_float(uint16_t b) noexcept { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

uint16_t float_to_bf16(float f) noexcept {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

uint16_t float_to_half(float f) noexcept {
  uint32_t u = std::bit_cast<uint32_t>(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00;                // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00;               // overflow (>= 65520) -> inf
  if (a < 0x38800000u) {                                    // subnormal half or zero
    // Add 0.5 (as a float) so the FPU rounds to nearest even at 2^-24.
    float r = std::bit_cast<float>(a) + 0.5f;
    return sign | static_cast<uint16_t>(std::bit_cast<uint32_t>(r) - 0x3f000000u);
  }
  uint32_t mant_odd = (a >> 13) & 1;
  a += 0xc8000fffu + mant_odd;  // rebias exponent (-112 << 23) and round
  return sign | static_cast<uint16_t>(a >> 13);
}

double float8_to_double(uint8_t v, DType t) noexcept {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  bool neg = v & 0x80;
  auto make = [&](int exp_bits, int mant_bits, int bias) {
    int e = (v >> mant_bits) & ((1 << exp_bits) - 1);
    int m = v & ((1 << mant_bits) - 1);
    double x = e == 0 ? std::ldexp(m, 1 - bias - mant_bits)
                      : std::ldexp((1 << mant_bits) + m, e - bias - mant_bits);
    return neg ? -x : x;
  };
  switch (t) {
    case DType::float8_e5m2:
      return half_to_float(static_cast<uint16_t>(v << 8));
    case DType::float8_e4m3fn:
      if ((v & 0x7f) == 0x7f) return nan;
      return make(4, 3, 7);
    case DType::float8_e5m2fnuz:
      if (v == 0x80) return nan;
      return make(5, 2, 16);
    case DType::float8_e4m3fnuz:
      if (v == 0x80) return nan;
      return make(4, 3, 8);
    case DType::float8_e8m0fnu:
      if (v == 0xff) return nan;
      return std::ldexp(1.0, static_cast<int>(v) - 127);
    default:
      return nan;
  }
}

bool decodable(DType t) noexcept {
  switch (t) {
    case DType::bits8: case DType::bits16: case DType::bits1x8: case DType::bits2x4: case DType::bits4x2:
    case DType::qint8: case DType::quint8: case DType::qint32: case DType::quint4x2: case DType::quint2x4:
      return false;
    default:
      return true;
  }
}

int components(DType t) noexcept {
  return dtype_is_complex(t) || t == DType::float4_e2m1fn_x2 ? 2 : 1;
}

namespace {

template <class U>
U load(const uint8_t* p, bool swap) noexcept {
  U u;
  std::memcpy(&u, p, sizeof u);
  if (swap) {
    if constexpr (sizeof(U) == 2) u = static_cast<U>(__builtin_bswap16(u));
    else if constexpr (sizeof(U) == 4) u = static_cast<U>(__builtin_bswap32(u));
    else if constexpr (sizeof(U) == 8) u = static_cast<U>(__builtin_bswap64(u));
  }
  return u;
}

template <class T>
double as_double(const uint8_t* p, bool swap) noexcept {
  if constexpr (std::is_same_v<T, float>) return std::bit_cast<float>(load<uint32_t>(p, swap));
  else if constexpr (std::is_same_v<T, double>) return std::bit_cast<double>(load<uint64_t>(p, swap));
  else if constexpr (sizeof(T) == 1) return static_cast<double>(static_cast<T>(*p));
  else {
    using U = std::make_unsigned_t<T>;
    return static_cast<double>(static_cast<T>(load<U>(p, swap)));
  }
}

// Decodes n elements spaced `step` bytes apart into out (components() each).
void decode_run(const uint8_t* p, int64_t step, uint64_t n, DType t, bool swap, double* out) {
  auto loop = [&](auto one) {
    for (uint64_t i = 0; i < n; ++i, p += step) one(p);
  };
  switch (t) {
    case DType::float64: loop([&](const uint8_t* q) { *out++ = as_double<double>(q, swap); }); break;
    case DType::float32: loop([&](const uint8_t* q) { *out++ = as_double<float>(q, swap); }); break;
    case DType::float16: loop([&](const uint8_t* q) { *out++ = half_to_float(load<uint16_t>(q, swap)); }); break;
    case DType::bfloat16: loop([&](const uint8_t* q) { *out++ = bf16_to_float(load<uint16_t>(q, swap)); }); break;
    case DType::int64: loop([&](const uint8_t* q) { *out++ = as_double<int64_t>(q, swap); }); break;
    case DType::int32: loop([&](const uint8_t* q) { *out++ = as_double<int32_t>(q, swap); }); break;
    case DType::int16: loop([&](const uint8_t* q) { *out++ = as_double<int16_t>(q, swap); }); break;
    case DType::int8: loop([&](const uint8_t* q) { *out++ = as_double<int8_t>(q, swap); }); break;
    case DType::uint8: loop([&](const uint8_t* q) { *out++ = as_double<uint8_t>(q, swap); }); break;
    case DType::uint16: loop([&](const uint8_t* q) { *out++ = as_double<uint16_t>(q, swap); }); break;
    case DType::uint32: loop([&](const uint8_t* q) { *out++ = as_double<uint32_t>(q, swap); }); break;
    case DType::uint64: loop([&](const uint8_t* q) { *out++ = as_double<uint64_t>(q, swap); }); break;
    case DType::bool_: loop([&](const uint8_t* q) { *out++ = *q != 0 ? 1.0 : 0.0; }); break;
    case DType::complex128:
      loop([&](const uint8_t* q) {
        *out++ = as_double<double>(q, swap);
        *out++ = as_double<double>(q + 8, swap);
      });
      break;
    case DType::complex64:
      loop([&](const uint8_t* q) {
        *out++ = as_double<float>(q, swap);
        *out++ = as_double<float>(q + 4, swap);
      });
      break;
    case DType::complex32:
      loop([&](const uint8_t* q) {
        *out++ = half_to_float(load<uint16_t>(q, swap));
        *out++ = half_to_float(load<uint16_t>(q + 2, swap));
      });
      break;
    case DType::float8_e5m2: case DType::float8_e4m3fn: case DType::float8_e5m2fnuz:
    case DType::float8_e4m3fnuz: case DType::float8_e8m0fnu:
      loop([&](const uint8_t* q) { *out++ = float8_to_double(*q, t); });
      break;
    case DType::float4_e2m1fn_x2: {
      static constexpr double mag[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
      auto fp4 = [](unsigned nib) { return (nib & 8) ? -mag[nib & 7] : mag[nib & 7]; };
      loop([&](const uint8_t* q) {
        *out++ = fp4(*q & 0xf);
        *out++ = fp4(*q >> 4);
      });
      break;
    }
    default:
      throw Error(ErrorCode::unsupported_tensor,
                  "cannot decode " + std::string(dtype_name(t)) + " elements as numbers");
  }
}

}  // namespace

void read_doubles(const Tensor& t, uint64_t first, uint64_t count, double* out) {
  if (count == 0) return;
  if (!t.storage) throw Error(ErrorCode::invalid_argument, "tensor has no storage");
  if (!decodable(t.dtype))
    throw Error(ErrorCode::unsupported_tensor,
                "cannot decode " + std::string(dtype_name(t.dtype)) + " elements as numbers");
  if (first > t.numel() || count > t.numel() - first)
    throw Error(ErrorCode::invalid_argument, "element range past the end of the tensor");
  const auto bytes = t.storage->bytes();
  const int64_t es = dtype_size(t.dtype);
  const bool swap = t.storage->big_endian() && dtype_swap_unit(t.dtype) > 1;
  const uint8_t* base = bytes.data() + t.storage_offset * es;
  const int comps = components(t.dtype);
  const size_t nd = t.shape.size();
  if (nd == 0 || t.is_contiguous()) {
    decode_run(base + static_cast<int64_t>(first) * es, es, count, t.dtype, swap, out);
    return;
  }
  // Multi-index of `first`, then runs along the innermost dimension.
  std::vector<int64_t> idx(nd);
  uint64_t rem = first;
  for (size_t d = nd; d-- > 0;) {
    uint64_t extent = static_cast<uint64_t>(t.shape[d]);
    idx[d] = static_cast<int64_t>(rem % extent);
    rem /= extent;
  }
  const int64_t inner = t.shape[nd - 1];
  while (count > 0) {
    int64_t off = 0;
    for (size_t d = 0; d < nd; ++d) off += idx[d] * t.stride[d];
    uint64_t run = std::min<uint64_t>(count, static_cast<uint64_t>(inner - idx[nd - 1]));
    decode_run(base + off * es, t.stride[nd - 1] * es, run, t.dtype, swap, out);
    out += run * comps;
    count -= run;
    idx[nd - 1] += static_cast<int64_t>(run);
    for (size_t d = nd - 1; d > 0 && idx[d] == t.shape[d]; --d) {
      idx[d] = 0;
      ++idx[d - 1];
    }
  }
}

void for_each_chunk(const Tensor& t, const std::function<void(uint64_t, std::span<const double>)>& fn,
                    uint64_t chunk) {
  const uint64_t n = t.numel();
  const int comps = components(t.dtype);
  std::vector<double> buf(static_cast<size_t>(std::min<uint64_t>(n, chunk)) * comps);
  for (uint64_t first = 0; first < n; first += chunk) {
    uint64_t c = std::min(chunk, n - first);
    read_doubles(t, first, c, buf.data());
    fn(first, std::span<const double>(buf.data(), c * comps));
  }
}

void TensorStats::add(double v) noexcept {
  ++count;
  if (std::isnan(v)) {
    ++nan;
    return;
  }
  if (std::isinf(v)) {
    ++(v > 0 ? posinf : neginf);
    return;
  }
  if (v == 0) ++zeros;
  if (finite == 0) min = max = mean = v, m2 = 0;
  ++finite;
  if (finite > 1) {
    min = std::min(min, v);
    max = std::max(max, v);
    double d = v - mean;
    mean += d / static_cast<double>(finite);
    m2 += d * (v - mean);
  }
}

void TensorStats::merge(const TensorStats& o) noexcept {
  count += o.count;
  nan += o.nan;
  posinf += o.posinf;
  neginf += o.neginf;
  zeros += o.zeros;
  if (o.finite == 0) return;
  if (finite == 0) {
    min = o.min, max = o.max, mean = o.mean, m2 = o.m2, finite = o.finite;
    return;
  }
  double na = static_cast<double>(finite), nb = static_cast<double>(o.finite), n = na + nb;
  double d = o.mean - mean;
  mean += d * nb / n;
  m2 += o.m2 + d * d * na * nb / n;
  min = std::min(min, o.min);
  max = std::max(max, o.max);
  finite += o.finite;
}

void TensorStats::finish() noexcept {
  std = finite > 1 ? std::sqrt(m2 / static_cast<double>(finite - 1))
                   : std::numeric_limits<double>::quiet_NaN();
}

namespace {

// The common case: every value finite. Sums run in four lanes (independent
// additions the CPU overlaps); a NaN or Inf anywhere makes the sum non-finite,
// which sends the run to the exact path below.
struct FastPass {
  double sum = 0, lo = 0, hi = 0;
  uint64_t zeros = 0;
};

FastPass fast_pass(const double* v, size_t n) noexcept {
  double s[4] = {0, 0, 0, 0}, lo[4], hi[4];
  uint64_t z[4] = {0, 0, 0, 0};
  for (int k = 0; k < 4; ++k) lo[k] = hi[k] = v[0];
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) {
      double x = v[i + k];
      s[k] += x;
      lo[k] = x < lo[k] ? x : lo[k];
      hi[k] = x > hi[k] ? x : hi[k];
      z[k] += x == 0;
    }
  for (; i < n; ++i) {
    s[0] += v[i];
    lo[0] = v[i] < lo[0] ? v[i] : lo[0];
    hi[0] = v[i] > hi[0] ? v[i] : hi[0];
    z[0] += v[i] == 0;
  }
  FastPass f;
  f.sum = (s[0] + s[1]) + (s[2] + s[3]);
  f.lo = std::min(std::min(lo[0], lo[1]), std::min(lo[2], lo[3]));
  f.hi = std::max(std::max(hi[0], hi[1]), std::max(hi[2], hi[3]));
  f.zeros = z[0] + z[1] + z[2] + z[3];
  return f;
}

// Squared deviations from `mean` of the finite values / scale, with the
// compensation term of the corrected two-pass algorithm.
double deviations(const double* v, size_t n, double mean, double scale, uint64_t finite, bool all_finite) noexcept {
  double m2[4] = {0, 0, 0, 0}, c[4] = {0, 0, 0, 0};
  size_t i = 0;
  if (all_finite && scale == 1.0) {
    for (; i + 4 <= n; i += 4)
      for (int k = 0; k < 4; ++k) {
        double d = v[i + k] - mean;
        m2[k] += d * d;
        c[k] += d;
      }
  }
  for (; i < n; ++i) {
    double d = std::isfinite(v[i]) ? v[i] / scale - mean : 0.0;
    m2[0] += d * d;
    c[0] += d;
  }
  double sq = (m2[0] + m2[1]) + (m2[2] + m2[3]), comp = (c[0] + c[1]) + (c[2] + c[3]);
  return std::max(0.0, sq - comp * comp / static_cast<double>(finite));
}

}  // namespace

TensorStats stats_of(std::span<const double> values) noexcept {
  TensorStats s;
  const size_t n = values.size();
  s.count = n;
  if (n == 0) return s;
  const double* v = values.data();
  FastPass f = fast_pass(v, n);
  bool all_finite = std::isfinite(f.sum);
  double sum = f.sum, lo = f.lo, hi = f.hi;
  if (!all_finite) {  // NaN, Inf, or a sum that overflowed: one exact pass
    sum = 0, lo = std::numeric_limits<double>::infinity(), hi = -lo;
    uint64_t zeros = 0;
    for (size_t i = 0; i < n; ++i) {
      double x = v[i];
      bool fin = std::isfinite(x);
      s.finite += fin;
      zeros += x == 0;
      s.nan += std::isnan(x);
      s.posinf += x == std::numeric_limits<double>::infinity();
      s.neginf += x == -std::numeric_limits<double>::infinity();
      sum += fin ? x : 0.0;
      lo = fin && x < lo ? x : lo;
      hi = fin && x > hi ? x : hi;
    }
    f.zeros = zeros;
  } else {
    s.finite = n;
  }
  s.zeros = f.zeros;
  if (s.finite == 0) return s;
  s.min = lo, s.max = hi;
  // Values near DBL_MAX overflow the sum: work on values divided by the
  // largest magnitude (m2 may still be +inf when the spread is that large).
  double scale = 1.0;
  if (!std::isfinite(sum)) {
    scale = std::max(std::fabs(lo), std::fabs(hi));
    sum = 0;
    for (size_t i = 0; i < n; ++i) sum += std::isfinite(v[i]) ? v[i] / scale : 0.0;
  }
  const double mean = sum / static_cast<double>(s.finite);
  s.mean = mean * scale;
  s.m2 = deviations(v, n, mean, scale, s.finite, all_finite) * scale * scale;
  return s;
}

TensorStats compute_stats(const Tensor& t, uint64_t first, uint64_t count) {
  TensorStats s;
  const uint64_t chunk = 1 << 16;
  const int comps = components(t.dtype);
  std::vector<double> buf(static_cast<size_t>(std::min(count, chunk)) * comps);
  for (uint64_t done = 0; done < count; done += chunk) {
    uint64_t c = std::min(chunk, count - done);
    read_doubles(t, first + done, c, buf.data());
    s.merge(stats_of(std::span<const double>(buf.data(), c * comps)));
  }
  s.finish();
  return s;
}

TensorStats compute_stats(const Tensor& t) { return compute_stats(t, 0, t.numel()); }

unsigned worker_threads() {
  if (const char* e = std::getenv("CKPT_THREADS"); e && *e) {
    long n = std::strtol(e, nullptr, 10);
    if (n >= 1 && n <= 1024) return static_cast<unsigned>(n);
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

void parallel_for(size_t n, const std::function<void(size_t)>& fn, unsigned threads) {
  threads = static_cast<unsigned>(std::min<size_t>(std::max(1u, threads), n));
  if (threads <= 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<size_t> next{0};
  std::exception_ptr first_error;
  std::mutex mu;
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard lock(mu);
        if (!first_error) first_error = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned k = 1; k < threads; ++k) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace ckpt::tools
