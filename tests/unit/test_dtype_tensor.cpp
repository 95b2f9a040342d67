// tests/unit/test_dtype_tensor.cpp - ckpt/dtype.hpp and ckpt/tensor.hpp:
// the 32 dtypes, Tensor::validate on absurd layouts (reliability.md T8), and
// copy_to over views, expands, big-endian storages and unaligned memory.
//
// Torch facts used below were checked on torch 1.13 (/usr/bin/python3):
// torch._utils._rebuild_tensor_v2 accepts a zero-element tensor with ANY
// non-negative storage offset (5, 10**6, 2**62 over a 4-element storage) and
// any stride; it rejects a negative offset, negative sizes and negative strides.
// (It silently *grows* the storage when a non-empty extent does not fit; we
// refuse that instead.)
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/dtype.hpp"
#include "ckpt/error.hpp"
#include "ckpt/tensor.hpp"
#include "pickle_builder.hpp"

using testpk::as_f32;
using testpk::f32_bytes;

namespace {

using ckpt::DType;
using ckpt::ErrorCode;
using ckpt::Storage;
using ckpt::Tensor;

struct DTypeRow {
  DType t;
  const char* name;
  int size;
  int swap_unit;
  const char* storage_class;  // "" when torch has no legacy typed storage for it
  bool floating, complex, quantized, new_style;
};

// floating is only asserted where torch.dtype.is_floating_point is settled (not float4).
const DTypeRow kRows[] = {
    {DType::float64, "float64", 8, 8, "DoubleStorage", true, false, false, false},
    {DType::float32, "float32", 4, 4, "FloatStorage", true, false, false, false},
    {DType::float16, "float16", 2, 2, "HalfStorage", true, false, false, false},
    {DType::bfloat16, "bfloat16", 2, 2, "BFloat16Storage", true, false, false, false},
    {DType::int64, "int64", 8, 8, "LongStorage", false, false, false, false},
    {DType::int32, "int32", 4, 4, "IntStorage", false, false, false, false},
    {DType::int16, "int16", 2, 2, "ShortStorage", false, false, false, false},
    {DType::int8, "int8", 1, 1, "CharStorage", false, false, false, false},
    {DType::uint8, "uint8", 1, 1, "ByteStorage", false, false, false, false},
    {DType::bool_, "bool", 1, 1, "BoolStorage", false, false, false, false},
    {DType::complex128, "complex128", 16, 8, "ComplexDoubleStorage", false, true, false, false},
    {DType::complex64, "complex64", 8, 4, "ComplexFloatStorage", false, true, false, false},
    {DType::complex32, "complex32", 4, 2, "", false, true, false, true},
    {DType::uint16, "uint16", 2, 2, "", false, false, false, true},
    {DType::uint32, "uint32", 4, 4, "", false, false, false, true},
    {DType::uint64, "uint64", 8, 8, "", false, false, false, true},
    {DType::float8_e5m2, "float8_e5m2", 1, 1, "", true, false, false, true},
    {DType::float8_e4m3fn, "float8_e4m3fn", 1, 1, "", true, false, false, true},
    {DType::float8_e5m2fnuz, "float8_e5m2fnuz", 1, 1, "", true, false, false, true},
    {DType::float8_e4m3fnuz, "float8_e4m3fnuz", 1, 1, "", true, false, false, true},
    {DType::float8_e8m0fnu, "float8_e8m0fnu", 1, 1, "", true, false, false, true},
    {DType::float4_e2m1fn_x2, "float4_e2m1fn_x2", 1, 1, "", false, false, false, true},
    {DType::bits8, "bits8", 1, 1, "", false, false, false, true},
    {DType::bits16, "bits16", 2, 2, "", false, false, false, true},
    {DType::bits1x8, "bits1x8", 1, 1, "", false, false, false, true},
    {DType::bits2x4, "bits2x4", 1, 1, "", false, false, false, true},
    {DType::bits4x2, "bits4x2", 1, 1, "", false, false, false, true},
    {DType::qint8, "qint8", 1, 1, "QInt8Storage", false, false, true, false},
    {DType::quint8, "quint8", 1, 1, "QUInt8Storage", false, false, true, false},
    {DType::qint32, "qint32", 4, 4, "QInt32Storage", false, false, true, false},
    {DType::quint4x2, "quint4x2", 1, 1, "QUInt4x2Storage", false, false, true, false},
    {DType::quint2x4, "quint2x4", 1, 1, "QUInt2x4Storage", false, false, true, false},
};

std::shared_ptr<Storage> storage_of(DType t, std::vector<uint8_t> bytes, bool big_endian = false) {
  auto s = Storage::from_bytes(t, std::move(bytes));
  s->set_big_endian(big_endian);
  return s;
}

std::vector<double> as_f64(const std::vector<uint8_t>& b) {
  std::vector<double> out(b.size() / 8);
  std::memcpy(out.data(), b.data(), out.size() * 8);
  return out;
}

/// `bytes` with every `unit`-byte group reversed (LE <-> BE).
std::vector<uint8_t> swapped(std::vector<uint8_t> bytes, int unit) {
  for (size_t i = 0; i + unit <= bytes.size(); i += unit)
    for (int a = 0, b = unit - 1; a < b; ++a, --b) std::swap(bytes[i + a], bytes[i + b]);
  return bytes;
}

Tensor make(DType t, std::vector<int64_t> shape, std::vector<int64_t> stride, int64_t offset,
            std::shared_ptr<Storage> s) {
  Tensor x;
  x.dtype = t;
  x.shape = std::move(shape);
  x.stride = std::move(stride);
  x.storage_offset = offset;
  x.storage = std::move(s);
  return x;
}

/// 0 when validate() accepts, else the error code.
int validate_code(const Tensor& t, uint32_t max_ndim = 64, std::string* what = nullptr) {
  try {
    t.validate(max_ndim);
    return 0;
  } catch (const ckpt::Error& e) {
    if (what) *what = e.what();
    return static_cast<int>(e.code());
  }
}

constexpr int kInvalid = static_cast<int>(ErrorCode::invalid_tensor);
constexpr int kLimit = static_cast<int>(ErrorCode::limit_exceeded);

/// Reference strided gather with per-unit byte swapping for big-endian storages.
std::vector<uint8_t> reference_copy(const Tensor& t) {
  const int es = ckpt::dtype_size(t.dtype);
  const int unit = ckpt::dtype_swap_unit(t.dtype);
  const auto src = t.storage->bytes();
  const size_t nd = t.shape.size();
  uint64_t n = 1;
  for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
  std::vector<uint8_t> out;
  out.reserve(n * es);
  std::vector<int64_t> idx(nd, 0);
  for (uint64_t k = 0; k < n; ++k) {
    int64_t e = t.storage_offset;
    for (size_t d = 0; d < nd; ++d) e += idx[d] * t.stride[d];
    std::vector<uint8_t> elem(src.begin() + e * es, src.begin() + (e + 1) * es);
    if (t.storage->big_endian()) elem = swapped(elem, unit);
    out.insert(out.end(), elem.begin(), elem.end());
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < t.shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

}  // namespace

TEST_SUITE_BEGIN("dtype-tensor");

// ---------------------------------------------------------------------------
// dtypes
// ---------------------------------------------------------------------------

TEST_CASE("all 32 dtypes: name, size, swap unit, storage class, classification") {
  static_assert(sizeof(kRows) / sizeof(kRows[0]) == ckpt::kDTypeCount);
  std::vector<bool> seen(ckpt::kDTypeCount, false);
  for (const auto& r : kRows) {
    CAPTURE(r.name);
    const int idx = static_cast<int>(r.t);
    REQUIRE(idx >= 0);
    REQUIRE(idx < ckpt::kDTypeCount);
    CHECK_FALSE(seen[idx]);
    seen[idx] = true;

    CHECK(ckpt::dtype_name(r.t) == std::string_view(r.name));
    CHECK(ckpt::dtype_size(r.t) == r.size);
    CHECK(ckpt::dtype_swap_unit(r.t) == r.swap_unit);
    const auto from_name = ckpt::dtype_from_name(r.name);
    REQUIRE(from_name.has_value());
    CHECK(*from_name == r.t);

    const auto cls = ckpt::dtype_storage_class(r.t);
    if (*r.storage_class) {
      REQUIRE(cls.has_value());
      CHECK(*cls == std::string_view(r.storage_class));
      const auto back = ckpt::dtype_from_storage_class(r.storage_class);
      REQUIRE(back.has_value());
      CHECK(*back == r.t);
    } else {
      CHECK_FALSE(cls.has_value());
    }
    if (r.t != DType::float4_e2m1fn_x2) CHECK(ckpt::dtype_is_floating(r.t) == r.floating);
    CHECK(ckpt::dtype_is_complex(r.t) == r.complex);
    CHECK(ckpt::dtype_is_quantized(r.t) == r.quantized);
    CHECK(ckpt::dtype_is_new_style(r.t) == r.new_style);
  }
}

TEST_CASE("dtype name aliases and unknown names") {
  struct A {
    const char* alias;
    DType t;
  };
  for (const A& a : {A{"float", DType::float32}, A{"half", DType::float16}, A{"long", DType::int64},
                     A{"double", DType::float64}, A{"int", DType::int32}, A{"short", DType::int16},
                     A{"cfloat", DType::complex64}, A{"cdouble", DType::complex128},
                     A{"chalf", DType::complex32}}) {
    CAPTURE(a.alias);
    const auto t = ckpt::dtype_from_name(a.alias);
    REQUIRE(t.has_value());
    CHECK(*t == a.t);
  }
  for (const char* bad : {"", "float33", "Float32", "float32 ", "torch.float32x", "bool_", "FloatStorage"}) {
    CAPTURE(bad);
    CHECK_FALSE(ckpt::dtype_from_name(bad).has_value());
  }
}

TEST_CASE("storage classes: UntypedStorage is bytes; unknown classes are not storages") {
  REQUIRE(ckpt::dtype_from_storage_class("UntypedStorage").has_value());
  CHECK(*ckpt::dtype_from_storage_class("UntypedStorage") == DType::uint8);
  CHECK(*ckpt::dtype_from_storage_class("HalfStorage") == DType::float16);
  for (const char* bad : {"", "Storage", "FloatStorageX", "ComplexHalfStorage", "float32", "TypedStorage"}) {
    CAPTURE(bad);
    CHECK_FALSE(ckpt::dtype_from_storage_class(bad).has_value());
  }
}

// ---------------------------------------------------------------------------
// Tensor basics
// ---------------------------------------------------------------------------

TEST_CASE("numel, nbytes, contiguous strides and is_contiguous") {
  auto s = storage_of(DType::float32, std::vector<uint8_t>(4 * 24, 0));
  CHECK(make(DType::float32, {}, {}, 0, s).numel() == 1);  // 0-d
  CHECK(make(DType::float32, {2, 3, 4}, {12, 4, 1}, 0, s).numel() == 24);
  CHECK(make(DType::float32, {2, 3, 4}, {12, 4, 1}, 0, s).nbytes() == 96);
  CHECK(make(DType::float32, {2, 0, 3}, {3, 3, 1}, 0, s).numel() == 0);

  CHECK(Tensor::contiguous_strides({2, 3, 4}) == std::vector<int64_t>{12, 4, 1});
  CHECK(Tensor::contiguous_strides({}).empty());
  CHECK(Tensor::contiguous_strides({5}) == std::vector<int64_t>{1});
  // torch: torch.empty(2, 0, 3).stride() == (3, 3, 1) (a zero size counts as 1)
  CHECK(Tensor::contiguous_strides({2, 0, 3}) == std::vector<int64_t>{3, 3, 1});

  CHECK(make(DType::float32, {2, 3}, {3, 1}, 0, s).is_contiguous());
  CHECK(make(DType::float32, {2, 3}, {3, 1}, 5, s).is_contiguous());  // offset does not matter
  CHECK_FALSE(make(DType::float32, {3, 2}, {1, 3}, 0, s).is_contiguous());
  CHECK_FALSE(make(DType::float32, {2, 3}, {0, 1}, 0, s).is_contiguous());
  // size-1 dimensions may carry any stride
  CHECK(make(DType::float32, {2, 1, 3}, {3, 999, 1}, 0, s).is_contiguous());
  CHECK(make(DType::float32, {}, {}, 3, s).is_contiguous());
}

TEST_CASE("Tensor::from_bytes owns a contiguous little-endian copy") {
  const auto bytes = f32_bytes({1, 2, 3, 4, 5, 6});
  Tensor t = Tensor::from_bytes(DType::float32, {2, 3}, bytes);
  CHECK(t.dtype == DType::float32);
  CHECK(t.shape == std::vector<int64_t>{2, 3});
  CHECK(t.stride == std::vector<int64_t>{3, 1});
  CHECK(t.storage_offset == 0);
  REQUIRE(t.storage != nullptr);
  CHECK(t.storage->nbytes() == 24);
  CHECK(t.storage->numel() == 6);
  CHECK_FALSE(t.storage->big_endian());
  CHECK_NOTHROW(t.validate());
  const auto span = t.contiguous_bytes();
  CHECK(std::vector<uint8_t>(span.begin(), span.end()) == bytes);
  CHECK(t.to_contiguous() == bytes);
}

TEST_CASE("Storage basics: numel by dtype, UntypedStorage counts bytes, lazy loads once") {
  auto s = storage_of(DType::float64, std::vector<uint8_t>(24, 0));
  CHECK(s->numel() == 3);
  CHECK(s->location() == "cpu");
  auto u = storage_of(DType::uint8, std::vector<uint8_t>(24, 0));
  CHECK(u->numel() == 24);
  int calls = 0;
  auto lazy = Storage::lazy(DType::int16, 4, [&] {
    ++calls;
    return std::vector<uint8_t>{1, 0, 2, 0};
  });
  CHECK(calls == 0);
  CHECK(lazy->nbytes() == 4);
  CHECK(lazy->bytes().size() == 4);
  CHECK(lazy->bytes()[2] == 2);
  CHECK(calls == 1);
  Tensor t = make(DType::int16, {2}, {1}, 0, lazy);
  CHECK(t.to_contiguous() == std::vector<uint8_t>{1, 0, 2, 0});
  CHECK(calls == 1);
}

// ---------------------------------------------------------------------------
// validate(): absurd shapes, strides and offsets (T8)
// ---------------------------------------------------------------------------

TEST_CASE("validate accepts ordinary layouts") {
  auto s = storage_of(DType::float32, f32_bytes({0, 1, 2, 3, 4, 5}));
  std::string what;
  CHECK(validate_code(make(DType::float32, {2, 3}, {3, 1}, 0, s), 64, &what) == 0);
  CHECK(validate_code(make(DType::float32, {3, 2}, {1, 3}, 0, s), 64, &what) == 0);  // transposed
  CHECK(validate_code(make(DType::float32, {3}, {2}, 1, s), 64, &what) == 0);        // 1,3,5: exact fit
  CHECK(validate_code(make(DType::float32, {}, {}, 5, s), 64, &what) == 0);          // 0-d, last element
  CHECK(validate_code(make(DType::float32, {1000000}, {0}, 5, s), 64, &what) == 0);  // expand
  CHECK(validate_code(make(DType::float32, {3, 2}, {0, 1}, 4, s), 64, &what) == 0);
  CHECK(validate_code(make(DType::float32, {2, 2}, {1, 1}, 0, s), 64, &what) == 0);  // overlapping view
  // ndim == max_ndim is allowed
  CHECK(validate_code(make(DType::float32, std::vector<int64_t>(64, 1), std::vector<int64_t>(64, 1), 0, s)) ==
        0);
  // v3 tensors view an UntypedStorage (bytes): the extent is checked in bytes.
  auto u = storage_of(DType::uint8, std::vector<uint8_t>(24, 0));
  CHECK(validate_code(make(DType::bfloat16, {12}, {1}, 0, u)) == 0);
  CHECK(validate_code(make(DType::float32, {5}, {1}, 1, u)) == 0);
  INFO(what);
}

TEST_CASE("validate refuses absurd layouts with invalid_tensor") {
  auto s = storage_of(DType::float32, f32_bytes({0, 1, 2, 3, 4, 5}));  // 6 elements
  const int64_t big = int64_t{1} << 40;
  const int64_t max = std::numeric_limits<int64_t>::max();
  struct Case {
    const char* what;
    std::vector<int64_t> shape, stride;
    int64_t offset;
  };
  const std::vector<Case> cases = {
      {"negative dim", {-1}, {1}, 0},
      {"negative dim after a positive one", {2, -3}, {3, 1}, 0},
      {"2^40 x 2^40 elements (numel overflows int64)", {big, big}, {big, 1}, 0},
      {"2^40 x 2^40 x 2^40", {big, big, big}, {1, 1, 1}, 0},
      {"stride x size overflows", {2, 2}, {max, 1}, 0},
      {"stride near INT64_MAX on a long dim", {3}, {max / 2 + 1}, 0},
      {"size near INT64_MAX", {max}, {1}, 0},
      {"negative stride", {2}, {-1}, 3},
      {"negative stride in a 2-d view", {2, 3}, {3, -1}, 2},
      {"negative offset", {1}, {1}, -1},
      {"offset == numel", {1}, {1}, 6},
      {"offset beyond storage", {1}, {1}, 1000},
      {"offset + extent overflows", {2}, {1}, max},
      {"extent one past the end", {7}, {1}, 0},
      {"extent past the end with an offset", {2, 3}, {3, 1}, 1},
      {"strided extent past the end", {3}, {3}, 0},
      {"0-d past the end", {}, {}, 6},
      // (offset + extent) x itemsize wraps to 4 bytes in uint64 arithmetic
      {"offset 2^62: byte offset wraps", {1}, {1}, int64_t{1} << 62},
      {"stride 2^62: byte extent wraps", {2}, {int64_t{1} << 62}, 0},
      {"offset 2^62 - 1 + stride: wraps", {2}, {1}, (int64_t{1} << 62) - 1},
      {"shape/stride rank mismatch", {2, 3}, {1}, 0},
      {"shape/stride rank mismatch (more strides)", {6}, {1, 1}, 0},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    std::string what;
    CHECK(validate_code(make(DType::float32, c.shape, c.stride, c.offset, s), 64, &what) == kInvalid);
    INFO(what);
  }
  // bytes, not elements: 6 float32 do not fit into 20 bytes of UntypedStorage
  auto u = storage_of(DType::uint8, std::vector<uint8_t>(20, 0));
  CHECK(validate_code(make(DType::float32, {6}, {1}, 0, u)) == kInvalid);
  CHECK(validate_code(make(DType::bfloat16, {2}, {1}, 9, u)) == kInvalid);
  // a tensor with elements needs a storage
  CHECK(validate_code(make(DType::float32, {1}, {1}, 0, nullptr)) == kInvalid);
}

TEST_CASE("validate: rank above max_ndim") {
  auto s = storage_of(DType::float32, f32_bytes({0}));
  const int c65 = validate_code(make(DType::float32, std::vector<int64_t>(65, 1), std::vector<int64_t>(65, 1), 0, s));
  CHECK((c65 == kInvalid || c65 == kLimit));
  const int c3 = validate_code(make(DType::float32, {1, 1, 1}, {1, 1, 1}, 0, s), 2);
  CHECK((c3 == kInvalid || c3 == kLimit));
  CHECK(validate_code(make(DType::float32, {1, 1}, {1, 1}, 0, s), 2) == 0);
}

TEST_CASE("validate: zero-element tensors accept any non-negative offset, as torch 1.13 does") {
  auto s = storage_of(DType::float32, f32_bytes({0, 1, 2, 3}));  // 4 elements
  std::string what;
  // offset == storage numel: x[4:] of a 4-element tensor
  CHECK(validate_code(make(DType::float32, {0}, {1}, 4, s), 64, &what) == 0);
  // torch 1.13 _rebuild_tensor_v2 accepts these too (see the file comment)
  CHECK(validate_code(make(DType::float32, {0}, {1}, 5, s), 64, &what) == 0);
  CHECK(validate_code(make(DType::float32, {0}, {1}, 1000000, s), 64, &what) == 0);
  CHECK(validate_code(make(DType::float32, {0, 3}, {3, 1}, int64_t{1} << 62, s), 64, &what) == 0);
  CHECK(validate_code(make(DType::float32, {0, int64_t{1} << 62}, {int64_t{1} << 62, int64_t{1} << 62}, 0, s), 64,
                      &what) == 0);
  CHECK(validate_code(make(DType::float32, {2, 0}, {1, 1}, 100, s), 64, &what) == 0);
  // an empty storage holds zero-element tensors
  auto empty = storage_of(DType::float32, {});
  CHECK(validate_code(make(DType::float32, {0}, {1}, 0, empty), 64, &what) == 0);
  CHECK(validate_code(make(DType::float32, {0}, {1}, 3, empty), 64, &what) == 0);
  INFO(what);
  // but torch still refuses a negative offset or a negative size
  CHECK(validate_code(make(DType::float32, {0}, {1}, -1, s)) == kInvalid);
  CHECK(validate_code(make(DType::float32, {0, -1}, {1, 1}, 0, s)) == kInvalid);
  // and a 0-d tensor is one element, not zero
  CHECK(validate_code(make(DType::float32, {}, {}, 4, s)) == kInvalid);
}

// ---------------------------------------------------------------------------
// copy_to / to_contiguous / contiguous_bytes
// ---------------------------------------------------------------------------

TEST_CASE("copy_to: transposed view, offset, expand (stride 0), 0-d, zero elements") {
  auto s = storage_of(DType::float32, f32_bytes({0, 1, 2, 3, 4, 5}));
  {
    Tensor t = make(DType::float32, {3, 2}, {1, 3}, 0, s);  // arange(6).reshape(2,3).t()
    CHECK(as_f32(t.to_contiguous()) == std::vector<float>{0, 3, 1, 4, 2, 5});
    CHECK(t.to_contiguous() == reference_copy(t));
  }
  {
    Tensor t = make(DType::float32, {2, 2}, {1, 3}, 1, s);
    CHECK(as_f32(t.to_contiguous()) == std::vector<float>{1, 4, 2, 5});
  }
  {
    Tensor t = make(DType::float32, {2, 3}, {0, 1}, 3, s);  // expand of [3, 4, 5]
    CHECK(as_f32(t.to_contiguous()) == std::vector<float>{3, 4, 5, 3, 4, 5});
  }
  {
    Tensor t = make(DType::float32, {3, 2}, {1, 0}, 0, s);  // expand along the last dim
    CHECK(as_f32(t.to_contiguous()) == std::vector<float>{0, 0, 1, 1, 2, 2});
  }
  {
    Tensor t = make(DType::float32, {}, {}, 4, s);
    CHECK(as_f32(t.to_contiguous()) == std::vector<float>{4});
  }
  {
    Tensor t = make(DType::float32, {2, 0}, {1, 1}, 100, s);
    CHECK(t.to_contiguous().empty());
    uint8_t sentinel = 0xab;
    t.copy_to(&sentinel);  // writes nothing
    CHECK(sentinel == 0xab);
  }
  {
    // a 3-d permutation with an offset, against the reference gather
    std::vector<uint8_t> b(2 * 60);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 7 + 1);
    auto s16 = storage_of(DType::int16, b);
    Tensor t = make(DType::int16, {3, 4, 2}, {1, 6, 24}, 2, s16);
    REQUIRE(validate_code(t) == 0);
    CHECK(t.to_contiguous() == reference_copy(t));
  }
}

TEST_CASE("contiguous_bytes is zero-copy for contiguous little-endian tensors, refuses the rest") {
  auto s = storage_of(DType::float32, f32_bytes({0, 1, 2, 3, 4, 5}));
  Tensor t = make(DType::float32, {2, 2}, {2, 1}, 1, s);
  const auto span = t.contiguous_bytes();
  CHECK(span.size() == 16);
  CHECK(span.data() == s->bytes().data() + 4);
  Tensor tr = make(DType::float32, {3, 2}, {1, 3}, 0, s);
  try {
    (void)tr.contiguous_bytes();
    FAIL("contiguous_bytes accepted a transposed view");
  } catch (const ckpt::Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
  }
  auto be = storage_of(DType::float32, f32_bytes({0, 1}), true);
  Tensor tb = make(DType::float32, {2}, {1}, 0, be);
  try {
    (void)tb.contiguous_bytes();
    FAIL("contiguous_bytes accepted a big-endian storage");
  } catch (const ckpt::Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
  }
}

TEST_CASE("copy_to from big-endian storages swaps per element, per component for complex") {
  {
    // float32 1.0, -2.5 stored big-endian
    auto s = storage_of(DType::float32, {0x3f, 0x80, 0x00, 0x00, 0xc0, 0x20, 0x00, 0x00}, true);
    Tensor t = make(DType::float32, {2}, {1}, 0, s);
    CHECK(as_f32(t.to_contiguous()) == std::vector<float>{1.0f, -2.5f});
  }
  {
    // float64 1.0, -0.1
    auto s = storage_of(DType::float64,
                        {0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xbf, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a}, true);
    Tensor t = make(DType::float64, {2}, {1}, 0, s);
    const auto out = t.to_contiguous();
    REQUIRE(out.size() == 16);
    const auto d = as_f64(out);
    CHECK(d[0] == 1.0);
    CHECK(d[1] == -0.1);
  }
  {
    // complex64 (1+2j): each float32 component is big-endian, real first
    auto s = storage_of(DType::complex64, {0x3f, 0x80, 0, 0, 0x40, 0, 0, 0}, true);
    Tensor t = make(DType::complex64, {1}, {1}, 0, s);
    CHECK(as_f32(t.to_contiguous()) == std::vector<float>{1.0f, 2.0f});
  }
  {
    // complex128 (1-1j)
    auto s = storage_of(DType::complex128,
                        {0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xbf, 0xf0, 0, 0, 0, 0, 0, 0}, true);
    Tensor t = make(DType::complex128, {1}, {1}, 0, s);
    const auto out = t.to_contiguous();
    REQUIRE(out.size() == 16);
    const auto d = as_f64(out);
    CHECK(d[0] == 1.0);
    CHECK(d[1] == -1.0);
  }
  {
    // bfloat16 1.0 (0x3f80), -2.0 (0xc000)
    auto s = storage_of(DType::bfloat16, {0x3f, 0x80, 0xc0, 0x00}, true);
    Tensor t = make(DType::bfloat16, {2}, {1}, 0, s);
    CHECK(t.to_contiguous() == std::vector<uint8_t>{0x80, 0x3f, 0x00, 0xc0});
  }
  {
    // complex32: two float16 components, swapped separately
    auto s = storage_of(DType::complex32, {0x3c, 0x00, 0x40, 0x00}, true);
    Tensor t = make(DType::complex32, {1}, {1}, 0, s);
    CHECK(t.to_contiguous() == std::vector<uint8_t>{0x00, 0x3c, 0x00, 0x40});
  }
  {
    // one-byte types are untouched
    for (DType d : {DType::uint8, DType::bool_, DType::int8, DType::float8_e4m3fn}) {
      auto s = storage_of(d, {1, 0, 2}, true);
      Tensor t = make(d, {3}, {1}, 0, s);
      CHECK(t.to_contiguous() == std::vector<uint8_t>{1, 0, 2});
    }
  }
  {
    // a big-endian transposed int32 view: gather and swap together
    std::vector<uint8_t> le(4 * 6);
    for (int i = 0; i < 6; ++i) {
      const int32_t v = 0x01020300 + i;
      std::memcpy(le.data() + 4 * i, &v, 4);
    }
    auto s = storage_of(DType::int32, swapped(le, 4), true);
    Tensor t = make(DType::int32, {3, 2}, {1, 3}, 0, s);
    const auto out = t.to_contiguous();
    REQUIRE(out.size() == 24);
    int32_t v[6];
    std::memcpy(v, out.data(), 24);
    CHECK(v[0] == 0x01020300);
    CHECK(v[1] == 0x01020303);
    CHECK(v[2] == 0x01020301);
    CHECK(v[5] == 0x01020305);
    CHECK(out == reference_copy(t));
  }
}

TEST_CASE("copy_to with unaligned source and destination pointers") {
  const std::vector<float> vals = {1.5f, -2.0f, 3.25f, 4.0f, -5.5f, 6.0f};
  for (size_t misalign : {size_t{1}, size_t{2}, size_t{3}}) {
    CAPTURE(misalign);
    std::vector<uint8_t> buf(misalign + 24 + 8, 0xee);
    std::memcpy(buf.data() + misalign, vals.data(), 24);
    auto s = Storage::from_external(DType::float32, buf.data() + misalign, 24, nullptr);
    REQUIRE(s->nbytes() == 24);
    CHECK(s->bytes().data() == buf.data() + misalign);
    Tensor t = make(DType::float32, {3, 2}, {1, 3}, 0, s);
    std::vector<uint8_t> dst(24 + 5, 0);
    t.copy_to(dst.data() + 5);
    std::vector<float> got(6);
    std::memcpy(got.data(), dst.data() + 5, 24);
    CHECK(got == std::vector<float>{1.5f, 4.0f, -2.0f, -5.5f, 3.25f, 6.0f});
    CHECK(dst[4] == 0);  // nothing written before dst

    // big-endian and unaligned at once, with doubles
    std::vector<uint8_t> bbuf(misalign + 16);
    const double dv[2] = {2.5, -7.0};
    std::vector<uint8_t> le(16);
    std::memcpy(le.data(), dv, 16);
    const auto be = swapped(le, 8);
    std::memcpy(bbuf.data() + misalign, be.data(), 16);
    auto bs = Storage::from_external(DType::float64, bbuf.data() + misalign, 16, nullptr);
    bs->set_big_endian(true);
    Tensor tb = make(DType::float64, {2}, {1}, 0, bs);
    std::vector<uint8_t> bdst(16 + 3);
    tb.copy_to(bdst.data() + 3);
    double got_d[2];
    std::memcpy(got_d, bdst.data() + 3, 16);
    CHECK(got_d[0] == 2.5);
    CHECK(got_d[1] == -7.0);
  }
}

TEST_SUITE_END();
