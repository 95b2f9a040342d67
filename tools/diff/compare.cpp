#include "diff/compare.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "ckpt/error.hpp"
#include "common/numeric.hpp"

namespace ckpt::tools::diff {

Tolerance default_tolerance(DType t) noexcept {
  switch (t) {
    case DType::float16: case DType::complex32: return {1e-3, 1e-5};
    case DType::bfloat16: return {1.6e-2, 1e-5};
    case DType::float32: case DType::complex64: return {1.3e-6, 1e-5};
    case DType::float64: case DType::complex128: return {1e-7, 1e-7};
    default: return {0, 0};
  }
}

Tolerance TolerancePolicy::for_dtypes(DType a, DType b) const noexcept {
  Tolerance ta = default_tolerance(a), tb = default_tolerance(b);
  Tolerance t{std::max(ta.rtol, tb.rtol), std::max(ta.atol, tb.atol), equal_nan};
  if (rtol) t.rtol = *rtol;
  if (atol) t.atol = *atol;
  return t;
}

// ---- metrics ------------------------------------------------------------------

void Metrics::merge(const Metrics& o) noexcept {
  elements += o.elements;
  differing += o.differing;
  mismatched += o.mismatched;
  nan_pairs += o.nan_pairs;
  nonfinite_a += o.nonfinite_a;
  nonfinite_b += o.nonfinite_b;
  sum_a2 += o.sum_a2;
  sum_b2 += o.sum_b2;
  sum_ab += o.sum_ab;
  sum_d2 += o.sum_d2;
  sum_abs += o.sum_abs;
  if (o.max_abs > max_abs) {
    max_abs = o.max_abs;
    max_abs_at = o.max_abs_at;
  }
}

double Metrics::l2() const noexcept { return std::sqrt(sum_d2); }
double Metrics::norm_a() const noexcept { return std::sqrt(sum_a2); }
double Metrics::norm_b() const noexcept { return std::sqrt(sum_b2); }

double Metrics::rel_change() const noexcept {
  if (sum_d2 == 0 && nan_pairs == 0) return 0;
  if (sum_a2 == 0) return std::numeric_limits<double>::infinity();
  return l2() / norm_a();
}

double Metrics::cosine() const noexcept {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  double na = norm_a(), nb = norm_b();
  if (!(na > 0) || !(nb > 0) || !std::isfinite(na) || !std::isfinite(nb)) return nan;
  if (bit_identical()) return 1;
  // Rounding can push |cos| a hair past 1; torch's float64 result is clamped too.
  return std::clamp(sum_ab / na / nb, -1.0, 1.0);
}

double Metrics::mean_abs() const noexcept {
  uint64_t n = elements - nan_pairs;
  return n ? sum_abs / static_cast<double>(n) : 0;
}

// ---- element comparison ----------------------------------------------------------

namespace {

inline bool same_bits(double x, double y) noexcept {
  return std::bit_cast<uint64_t>(x) == std::bit_cast<uint64_t>(y);
}

// Local accumulators (kept in registers across the loop, merged once).
struct Acc {
  uint64_t differing = 0, mismatched = 0, nan_pairs = 0, nfa = 0, nfb = 0;
  double sa2 = 0, sb2 = 0, sab = 0, sd2 = 0, sabs = 0, max_abs = 0;
  uint64_t at = Metrics::no_index;

  // One pair that is not bit-identical. x, y are the values (moduli for
  // complex are passed through d and ref).
  inline void differ(bool equal, bool nan_x, bool nan_y, double d, double ref, uint64_t index,
                     const Tolerance& tol) noexcept {
    ++differing;
    if (equal) return;  // -0.0 vs 0.0, or two different NaN-free encodings of one value
    if (nan_x || nan_y) {
      ++nan_pairs;
      if (!(tol.equal_nan && nan_x && nan_y)) ++mismatched;
      return;
    }
    sd2 += d * d;
    sabs += d;
    if (d > max_abs) {
      max_abs = d;
      at = index;
    }
    if (!(std::isfinite(d) && d <= tol.atol + tol.rtol * ref)) ++mismatched;
  }

  void into(Metrics& m, uint64_t n) const noexcept {
    Metrics c;
    c.elements = n;
    c.differing = differing;
    c.mismatched = mismatched;
    c.nan_pairs = nan_pairs;
    c.nonfinite_a = nfa;
    c.nonfinite_b = nfb;
    c.sum_a2 = sa2;
    c.sum_b2 = sb2;
    c.sum_ab = sab;
    c.sum_d2 = sd2;
    c.sum_abs = sabs;
    c.max_abs = max_abs;
    c.max_abs_at = at;
    m.merge(c);
  }
};

}  // namespace

namespace {

// The common case, finite real values, in kLanes independent accumulators the
// compiler can vectorise (a fixed summation order: the result does not depend
// on threads or chunking). Returns false, having added nothing, when a value
// is not finite: the exact element-by-element loop handles those.
constexpr size_t kLanes = 8;

bool compare_finite(const double* a, const double* b, size_t n, const Tolerance& tol, uint64_t first,
                    const uint8_t* bits_equal, double max_so_far, Acc& acc) {
  double sa2[kLanes] = {}, sb2[kLanes] = {}, sab[kLanes] = {}, sd2[kLanes] = {}, sabs[kLanes] = {};
  double mx[kLanes] = {}, mism[kLanes] = {}, nonfinite[kLanes] = {};
  const size_t blocks = n / kLanes * kLanes;
  for (size_t i = 0; i < blocks; i += kLanes) {
    for (size_t l = 0; l < kLanes; ++l) {
      const double x = a[i + l], y = b[i + l], d = std::fabs(y - x);
      sa2[l] += x * x;
      sb2[l] += y * y;
      sab[l] += x * y;
      sd2[l] += d * d;
      sabs[l] += d;
      mx[l] = d > mx[l] ? d : mx[l];
      mism[l] += d > tol.atol + tol.rtol * std::fabs(x) ? 1.0 : 0.0;
      nonfinite[l] += x * 0.0 + y * 0.0;  // NaN as soon as one value is NaN or Inf
    }
  }
  double bad = 0;
  for (size_t l = 0; l < kLanes; ++l) bad += nonfinite[l];
  if (bad != 0 || std::isnan(bad)) return false;
  for (size_t i = blocks; i < n; ++i)
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return false;
  double lane_max = 0;
  for (size_t l = 0; l < kLanes; ++l) {
    acc.sa2 += sa2[l];
    acc.sb2 += sb2[l];
    acc.sab += sab[l];
    acc.sd2 += sd2[l];
    acc.sabs += sabs[l];
    acc.mismatched += static_cast<uint64_t>(mism[l]);
    lane_max = std::max(lane_max, mx[l]);
  }
  for (size_t i = blocks; i < n; ++i) {  // the tail, one by one
    const double x = a[i], y = b[i], d = std::fabs(y - x);
    acc.sa2 += x * x;
    acc.sb2 += y * y;
    acc.sab += x * y;
    acc.sd2 += d * d;
    acc.sabs += d;
    lane_max = std::max(lane_max, d);
    acc.mismatched += d > tol.atol + tol.rtol * std::fabs(x);
  }
  if (lane_max > max_so_far) {  // a new greatest difference: find the first element reaching it
    for (size_t i = 0; i < n; ++i)
      if (std::fabs(b[i] - a[i]) == lane_max) {
        acc.max_abs = lane_max;
        acc.at = first + i;
        break;
      }
  }
  // Pairs whose bits differ (equal values can differ in bits: -0.0 and 0.0).
  uint64_t differing = 0;
  if (bits_equal) {
    for (size_t i = 0; i < n; ++i) differing += !bits_equal[i];
  } else {
    for (size_t i = 0; i < n; ++i) differing += !same_bits(a[i], b[i]);
  }
  acc.differing += differing;
  return true;
}

}  // namespace

void compare_values(std::span<const double> a, std::span<const double> b, int comps, const Tolerance& tol,
                    uint64_t first, Metrics& m, const uint8_t* bits_equal, bool integers) {
  const size_t n = a.size() / static_cast<size_t>(comps);
  Acc acc;
  if (comps == 1 && !integers && compare_finite(a.data(), b.data(), n, tol, first, bits_equal, m.max_abs, acc)) {
    acc.into(m, n);
    return;
  }
  if (comps == 1) {
    for (size_t i = 0; i < n; ++i) {
      const double x = a[i], y = b[i];
      acc.sa2 += x * x;
      acc.sb2 += y * y;
      acc.sab += x * y;
      acc.nfa += !std::isfinite(x);
      acc.nfb += !std::isfinite(y);
      if (bits_equal ? bits_equal[i] : same_bits(x, y)) continue;
      if (integers) {
        acc.differ(false, false, false, std::max(std::fabs(y - x), 1.0), std::fabs(x), first + i, tol);
        continue;
      }
      acc.differ(x == y, std::isnan(x), std::isnan(y), std::fabs(y - x), std::fabs(x), first + i, tol);
    }
  } else {  // complex: (re, im) pairs; |.| is the modulus, as torch.isclose uses
    for (size_t i = 0; i < n; ++i) {
      const double xr = a[2 * i], xi = a[2 * i + 1], yr = b[2 * i], yi = b[2 * i + 1];
      acc.sa2 += xr * xr + xi * xi;
      acc.sb2 += yr * yr + yi * yi;
      acc.sab += xr * yr + xi * yi;
      acc.nfa += !(std::isfinite(xr) && std::isfinite(xi));
      acc.nfb += !(std::isfinite(yr) && std::isfinite(yi));
      bool same = bits_equal ? bits_equal[i] : same_bits(xr, yr) && same_bits(xi, yi);
      if (same) continue;
      acc.differ(xr == yr && xi == yi, std::isnan(xr) || std::isnan(xi), std::isnan(yr) || std::isnan(yi),
                 std::hypot(yr - xr, yi - xi), std::hypot(xr, xi), first + i, tol);
    }
  }
  acc.into(m, n);
}

void add_identical(std::span<const double> a, uint64_t n, Metrics& m) {
  Acc acc;
  const int comps = n ? static_cast<int>(a.size() / n) : 1;
  for (size_t i = 0; i < a.size(); ++i) acc.sa2 += a[i] * a[i];
  for (size_t i = 0; i < n; ++i) {
    bool finite = true;
    for (int c = 0; c < comps; ++c) finite &= std::isfinite(a[i * comps + c]);
    acc.nfa += !finite;
  }
  acc.sb2 = acc.sab = acc.sa2;
  acc.nfb = acc.nfa;
  acc.into(m, n);
}

// ---- streaming two tensors ---------------------------------------------------------

namespace {

constexpr uint64_t kChunk = 1 << 15;            // elements per chunk (256 KiB of doubles)
constexpr uint64_t kReleaseEvery = 2ull << 20;  // bytes between page releases

// Drops the whole pages of [p, p + n) from the resident set. The mapping is
// read-only and private, so they fault back in from the page cache if read
// again (possibly by another thread working on a neighbouring tensor).
void drop_pages(const uint8_t* p, uint64_t n) noexcept {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + n) & ~(page - 1);
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

// Releases a contiguous tensor's mapped pages behind the read cursor, and the
// whole storage at the end.
class PageReleaser {
 public:
  explicit PageReleaser(const Tensor& t)
      : storage_(t.storage.get()),
        base_(storage_ && storage_->mapped() && t.is_contiguous()
                  ? storage_->bytes().data() + t.storage_offset * dtype_size(t.dtype)
                  : nullptr),
        es_(static_cast<uint64_t>(dtype_size(t.dtype))) {}
  ~PageReleaser() {
    if (storage_ && storage_->mapped()) storage_->release_pages();
  }
  void advance(uint64_t elements_done) noexcept {
    if (!base_) return;
    uint64_t upto = elements_done * es_;
    if (upto - released_ < kReleaseEvery) return;
    drop_pages(base_ + released_, upto - released_);
    released_ = upto;
  }

 private:
  const Storage* storage_;
  const uint8_t* base_;
  uint64_t es_, released_ = 0;
};

bool same_layout_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype == b.dtype && a.is_contiguous() && b.is_contiguous() && a.storage && b.storage &&
         a.storage->big_endian() == b.storage->big_endian();
}

// out[i] = element i of pa equals element i of pb, byte for byte.
template <class U>
void eq_elems(const uint8_t* pa, const uint8_t* pb, uint64_t n, uint8_t* out) {
  for (uint64_t i = 0; i < n; ++i) {
    U x, y;
    std::memcpy(&x, pa + i * sizeof(U), sizeof(U));
    std::memcpy(&y, pb + i * sizeof(U), sizeof(U));
    out[i] = x == y;
  }
}

void bytes_equal_per_element(const uint8_t* pa, const uint8_t* pb, uint64_t n, uint64_t es, uint8_t* out) {
  switch (es) {
    case 1: eq_elems<uint8_t>(pa, pb, n, out); break;
    case 2: eq_elems<uint16_t>(pa, pb, n, out); break;
    case 4: eq_elems<uint32_t>(pa, pb, n, out); break;
    case 8: eq_elems<uint64_t>(pa, pb, n, out); break;
    default:
      for (uint64_t i = 0; i < n; ++i) out[i] = std::memcmp(pa + i * es, pb + i * es, es) == 0;
  }
}

// Every payload ckpt-diff reads is first checked against its zip record's
// CRC-32 (once per storage; a no-op where the format has none): a damaged
// file is an error, never a silently wrong difference.
void verify_payloads(const Tensor& a, const Tensor& b) {
  if (a.storage) a.storage->verify();
  if (b.storage) b.storage->verify();
}

const uint8_t* contiguous_base(const Tensor& t) {
  return t.storage->bytes().data() + t.storage_offset * dtype_size(t.dtype);
}

}  // namespace

Metrics compare_tensors(const Tensor& a, const Tensor& b, uint64_t count, const Tolerance& tol) {
  verify_payloads(a, b);
  const int comps = components(a.dtype);
  if (components(b.dtype) != comps)
    throw Error(ErrorCode::invalid_argument, "cannot compare complex and real elements");
  if (count > a.numel() || count > b.numel())
    throw Error(ErrorCode::invalid_argument, "element range past the end of a tensor");
  Metrics m;
  if (count == 0) return m;
  const bool raw = same_layout_bytes(a, b);
  // Integer elements (not bool: any non-zero byte is True) are equal only
  // when their bits are; only the raw path sees the bits of int64 > 2^53.
  const bool integers = raw && !dtype_is_floating(a.dtype) && !dtype_is_complex(a.dtype) && a.dtype != DType::bool_;
  const uint64_t es = static_cast<uint64_t>(dtype_size(a.dtype));
  const uint8_t* ra = raw ? contiguous_base(a) : nullptr;
  const uint8_t* rb = raw ? contiguous_base(b) : nullptr;
  const uint64_t chunk = std::min(kChunk, count);
  std::vector<double> va(chunk * comps), vb(chunk * comps);
  std::vector<uint8_t> eq(raw ? chunk : 0);
  PageReleaser rel_a(a), rel_b(b);
  for (uint64_t first = 0; first < count; first += chunk) {
    const uint64_t n = std::min(chunk, count - first);
    read_doubles(a, first, n, va.data());
    const std::span<const double> sa(va.data(), n * comps);
    if (raw) {
      const uint8_t* pa = ra + first * es;
      const uint8_t* pb = rb + first * es;
      if (std::memcmp(pa, pb, n * es) == 0) {
        add_identical(sa, n, m);
      } else {
        bytes_equal_per_element(pa, pb, n, es, eq.data());
        read_doubles(b, first, n, vb.data());
        compare_values(sa, std::span<const double>(vb.data(), n * comps), comps, tol, first, m, eq.data(), integers);
      }
    } else {
      read_doubles(b, first, n, vb.data());
      compare_values(sa, std::span<const double>(vb.data(), n * comps), comps, tol, first, m);
    }
    rel_a.advance(first + n);
    rel_b.advance(first + n);
  }
  return m;
}

bool raw_equal(const Tensor& a, const Tensor& b, uint64_t count) {
  verify_payloads(a, b);
  if (a.dtype != b.dtype) return false;
  const uint64_t nbytes = count * static_cast<uint64_t>(dtype_size(a.dtype));
  if (same_layout_bytes(a, b)) return std::memcmp(contiguous_base(a), contiguous_base(b), nbytes) == 0;
  std::vector<uint8_t> x = a.to_contiguous(), y = b.to_contiguous();
  return std::memcmp(x.data(), y.data(), std::min<uint64_t>(nbytes, std::min(x.size(), y.size()))) == 0;
}

namespace {
Tensor row_view(const Tensor& t, int64_t r) {
  Tensor v = t;
  v.shape.erase(v.shape.begin());
  v.stride.erase(v.stride.begin());
  v.storage_offset += r * t.stride[0];
  return v;
}
}  // namespace

void for_each_changed_row(const Tensor& a, const Tensor& b, const std::function<void(uint64_t)>& changed) {
  verify_payloads(a, b);
  if (a.dtype != b.dtype || a.shape != b.shape || a.shape.empty())
    throw Error(ErrorCode::invalid_argument, "rows compared need one dtype and shape");
  const int64_t rows = a.shape[0];
  if (rows == 0) return;
  const uint64_t per_row = a.numel() / static_cast<uint64_t>(rows);
  if (same_layout_bytes(a, b)) {
    const uint64_t row_bytes = per_row * static_cast<uint64_t>(dtype_size(a.dtype));
    const uint8_t* pa = contiguous_base(a);
    const uint8_t* pb = contiguous_base(b);
    PageReleaser rel_a(a), rel_b(b);
    for (int64_t r = 0; r < rows; ++r) {
      if (std::memcmp(pa + r * row_bytes, pb + r * row_bytes, row_bytes) != 0) changed(static_cast<uint64_t>(r));
      rel_a.advance((static_cast<uint64_t>(r) + 1) * per_row);
      rel_b.advance((static_cast<uint64_t>(r) + 1) * per_row);
    }
    return;
  }
  PageReleaser rel_a(a), rel_b(b);  // strided or mixed byte order: one row at a time
  for (int64_t r = 0; r < rows; ++r)
    if (!raw_equal(row_view(a, r), row_view(b, r), per_row)) changed(static_cast<uint64_t>(r));
}

}  // namespace ckpt::tools::diff
