// tools/diff/compare.hpp - comparing two tensors element by element.
//
// A is the reference (the earlier file): tolerances and the relative change
// are taken against A, so `ckpt-diff A B` agrees with
// torch.testing.assert_close(B, A) (actual=B, expected=A).
//
// Everything is accumulated in double while both tensors stream through in
// bounded chunks (tools/common/numeric.hpp decodes every dtype, f16/bf16 and
// float8 included); a mapped file's pages are released behind the cursor, so
// memory stays flat whatever the tensor's size.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <span>

#include "ckpt/tensor.hpp"

namespace ckpt::tools::diff {

/// An element of B matches its element of A when their bits are identical,
/// their values are equal (-0.0 == 0.0, inf == inf), both are NaN and
/// equal_nan is set, or |b - a| <= atol + rtol * |a| (finite). This is
/// torch.isclose(b, a, rtol, atol, equal_nan), plus "identical bits match".
struct Tolerance {
  double rtol = 0, atol = 0;
  bool equal_nan = false;
};

/// torch.testing.assert_close's defaults for a dtype (torch/testing/_comparison.py
/// _DTYPE_PRECISIONS): f16 (1e-3, 1e-5), bf16 (1.6e-2, 1e-5), f32 (1.3e-6, 1e-5),
/// f64 (1e-7, 1e-7), complex32/64/128 like f16/f32/f64. Every other dtype,
/// integers, bool and the float8 kinds included, gets (0, 0): exact.
Tolerance default_tolerance(DType t) noexcept;

/// The user's overrides (--rtol, --atol, --equal-nan) on top of the defaults.
/// Two dtypes (a dtype change) get the looser of the two, as assert_close does.
struct TolerancePolicy {
  std::optional<double> rtol, atol;
  bool equal_nan = false;
  Tolerance for_dtypes(DType a, DType b) const noexcept;
};

/// Sums over the compared elements. Every field merges by addition (max for
/// max_abs), so chunks, threads and whole modules combine exactly.
struct Metrics {
  uint64_t elements = 0;    ///< element pairs compared
  uint64_t differing = 0;   ///< pairs whose bits differ
  uint64_t mismatched = 0;  ///< pairs that do not match within tolerance
  uint64_t nan_pairs = 0;   ///< pairs with a NaN on either side whose bits differ
  uint64_t nonfinite_a = 0, nonfinite_b = 0;  ///< NaN/Inf elements of A, of B
  double sum_a2 = 0, sum_b2 = 0, sum_ab = 0;  ///< sum a^2, b^2, a*b (component-wise)
  double sum_d2 = 0, sum_abs = 0;             ///< sum |b-a|^2 and |b-a| (NaN pairs left out)
  double max_abs = 0;                         ///< greatest |b-a| (NaN pairs left out)
  uint64_t max_abs_at = no_index;             ///< its flat (row-major) element index
  static constexpr uint64_t no_index = ~uint64_t{0};

  void merge(const Metrics& o) noexcept;
  bool bit_identical() const noexcept { return differing == 0; }
  double l2() const noexcept;           ///< ||b - a||
  double norm_a() const noexcept;       ///< ||a||
  double norm_b() const noexcept;       ///< ||b||
  /// ||b - a|| / ||a||: 0 when nothing differs, +inf when ||a|| = 0 and b != a.
  double rel_change() const noexcept;
  /// <a, b> / (||a|| ||b||); 1 for bit-identical non-zero tensors, NaN when a
  /// norm is 0 (undefined) or not finite.
  double cosine() const noexcept;
  double mean_abs() const noexcept;     ///< mean |b - a| over the compared pairs
};

/// Compares n element pairs of decoded values (`comps` doubles per element:
/// 2 for complex) into m. `bits_equal`, when given, says per element that the
/// raw bytes are identical (otherwise the doubles' bits decide). `first` is
/// the flat index of the first element (for max_abs_at). `integers`: the
/// elements are integers whose bits decide equality (int64 beyond 2^53 can
/// round to equal doubles; such a pair still differs by at least 1).
void compare_values(std::span<const double> a, std::span<const double> b, int comps, const Tolerance& tol,
                    uint64_t first, Metrics& m, const uint8_t* bits_equal = nullptr, bool integers = false);

/// Accumulates only A (a chunk whose raw bytes equal B's).
void add_identical(std::span<const double> a, uint64_t n, Metrics& m);

/// Compares the first `count` logical elements of a and b (row-major), which
/// must have the same number of components per element. Streams in chunks,
/// releases mapped pages behind itself, and uses raw bytes to decide bit
/// identity when both tensors are contiguous with the same dtype and byte
/// order. Throws ckpt::Error for dtypes that cannot be decoded.
Metrics compare_tensors(const Tensor& a, const Tensor& b, uint64_t count, const Tolerance& tol);

/// True when the first `count` logical elements of a and b have identical
/// bytes (any dtype, also those compare_tensors cannot decode).
bool raw_equal(const Tensor& a, const Tensor& b, uint64_t count);

/// Calls changed(r) for every row r (index along dimension 0) whose bytes
/// differ between a and b, which must have the same dtype and shape (ndim >= 1).
/// Streams like compare_tensors: memory stays flat.
void for_each_changed_row(const Tensor& a, const Tensor& b, const std::function<void(uint64_t)>& changed);

}  // namespace ckpt::tools::diff
