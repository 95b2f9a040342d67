// tools/common/numeric.hpp - tensor elements as doubles, statistics, threading.
//
// Every decodable dtype is read into double: floats (f64/f32/f16/bf16 and the
// float8 kinds, decoded in C++), integers, bool, and complex (as two
// components: real, imaginary). Strides, storage offsets and big-endian
// storages are honoured. Reads go through the storage's bytes() (zero-copy on
// a mapped file), in bounded chunks, so memory stays flat.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <vector>

#include "ckpt/tensor.hpp"

namespace ckpt::tools {

float half_to_float(uint16_t h) noexcept;
float bf16_to_float(uint16_t b) noexcept;
/// Round to nearest even, as torch's .half() / .bfloat16() do (NaN stays NaN,
/// overflow goes to infinity).
uint16_t float_to_half(float f) noexcept;
uint16_t float_to_bf16(float f) noexcept;
double float8_to_double(uint8_t v, DType t) noexcept;

/// True when read_doubles() can decode the dtype (not quantized, not bits*).
bool decodable(DType t) noexcept;
/// Doubles per element: 2 for complex and float4_e2m1fn_x2, else 1.
int components(DType t) noexcept;

/// Decodes logical (row-major) elements [first, first + count) of `t` into
/// `out`, which holds count * components(t.dtype) doubles.
void read_doubles(const Tensor& t, uint64_t first, uint64_t count, double* out);

/// Calls fn(first_element, values, n_elements) over the whole tensor in chunks
/// of at most `chunk` elements.
void for_each_chunk(const Tensor& t, const std::function<void(uint64_t, std::span<const double>)>& fn,
                    uint64_t chunk = 1 << 16);

/// Summary statistics. min/max/mean/std are over the finite values (NaN and
/// ±Inf are counted apart); std is the sample standard deviation (n-1), as
/// torch.std() computes it. Complex tensors are summarised over their
/// components.
struct TensorStats {
  uint64_t count = 0;    ///< values seen (elements x components)
  uint64_t finite = 0;
  uint64_t nan = 0, posinf = 0, neginf = 0, zeros = 0;
  double min = std::numeric_limits<double>::quiet_NaN();
  double max = std::numeric_limits<double>::quiet_NaN();
  double mean = std::numeric_limits<double>::quiet_NaN();
  double std = std::numeric_limits<double>::quiet_NaN();
  double m2 = 0;  ///< sum of squared deviations (for merging)

  void add(double v) noexcept;
  void merge(const TensorStats& o) noexcept;  ///< Chan et al. parallel merge
  void finish() noexcept;                      ///< computes std from m2
};
/// Statistics of a run of values, in two passes over it (sum, then squared
/// deviations): the same result as add() on each value, several times faster.
TensorStats stats_of(std::span<const double> values) noexcept;
/// Statistics of the whole tensor, or of logical elements [first, first+count).
TensorStats compute_stats(const Tensor& t);
TensorStats compute_stats(const Tensor& t, uint64_t first, uint64_t count);

/// Threads to use: CKPT_THREADS if set, else the hardware concurrency (>= 1).
unsigned worker_threads();
/// Runs fn(i) for i in [0, n) on up to `threads` threads, work-stealing by an
/// atomic counter. The first exception thrown is rethrown after all finish.
void parallel_for(size_t n, const std::function<void(size_t)>& fn, unsigned threads = worker_threads());

}  // namespace ckpt::tools
