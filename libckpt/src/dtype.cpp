#include "ckpt/dtype.hpp"

#include <array>

namespace ckpt {
namespace {

struct DTypeInfo {
  DType t;
  std::string_view name;
  int size;
  std::string_view storage;  // legacy typed-storage class, empty if none
};

constexpr std::array<DTypeInfo, kDTypeCount> kInfo{{
    {DType::float64, "float64", 8, "DoubleStorage"},
    {DType::float32, "float32", 4, "FloatStorage"},
    {DType::float16, "float16", 2, "HalfStorage"},
    {DType::bfloat16, "bfloat16", 2, "BFloat16Storage"},
    {DType::int64, "int64", 8, "LongStorage"},
    {DType::int32, "int32", 4, "IntStorage"},
    {DType::int16, "int16", 2, "ShortStorage"},
    {DType::int8, "int8", 1, "CharStorage"},
    {DType::uint8, "uint8", 1, "ByteStorage"},
    {DType::bool_, "bool", 1, "BoolStorage"},
    {DType::complex128, "complex128", 16, "ComplexDoubleStorage"},
    {DType::complex64, "complex64", 8, "ComplexFloatStorage"},
    {DType::complex32, "complex32", 4, ""},
    {DType::uint16, "uint16", 2, ""},
    {DType::uint32, "uint32", 4, ""},
    {DType::uint64, "uint64", 8, ""},
    {DType::float8_e5m2, "float8_e5m2", 1, ""},
    {DType::float8_e4m3fn, "float8_e4m3fn", 1, ""},
    {DType::float8_e5m2fnuz, "float8_e5m2fnuz", 1, ""},
    {DType::float8_e4m3fnuz, "float8_e4m3fnuz", 1, ""},
    {DType::float8_e8m0fnu, "float8_e8m0fnu", 1, ""},
    {DType::float4_e2m1fn_x2, "float4_e2m1fn_x2", 1, ""},
    {DType::bits8, "bits8", 1, ""},
    {DType::bits16, "bits16", 2, ""},
    {DType::bits1x8, "bits1x8", 1, ""},
    {DType::bits2x4, "bits2x4", 1, ""},
    {DType::bits4x2, "bits4x2", 1, ""},
    {DType::qint8, "qint8", 1, "QInt8Storage"},
    {DType::quint8, "quint8", 1, "QUInt8Storage"},
    {DType::qint32, "qint32", 4, "QInt32Storage"},
    {DType::quint4x2, "quint4x2", 1, "QUInt4x2Storage"},
    {DType::quint2x4, "quint2x4", 1, "QUInt2x4Storage"},
}};

const DTypeInfo& info(DType t) noexcept { return kInfo[static_cast<size_t>(t)]; }

}  // namespace

int dtype_size(DType t) noexcept { return info(t).size; }

int dtype_swap_unit(DType t) noexcept {
  return dtype_is_complex(t) ? info(t).size / 2 : info(t).size;
}

std::string_view dtype_name(DType t) noexcept { return info(t).name; }

std::optional<DType> dtype_from_name(std::string_view n) noexcept {
  for (const auto& i : kInfo)
    if (i.name == n) return i.t;
  struct Alias { std::string_view a; DType t; };
  static constexpr Alias aliases[] = {
      {"float", DType::float32},   {"double", DType::float64}, {"half", DType::float16},
      {"long", DType::int64},      {"int", DType::int32},      {"short", DType::int16},
      {"cfloat", DType::complex64}, {"cdouble", DType::complex128}, {"chalf", DType::complex32},
  };
  for (const auto& a : aliases)
    if (a.a == n) return a.t;
  return std::nullopt;
}

std::optional<std::string_view> dtype_storage_class(DType t) noexcept {
  if (info(t).storage.empty()) return std::nullopt;
  return info(t).storage;
}

std::optional<DType> dtype_from_storage_class(std::string_view n) noexcept {
  if (n == "UntypedStorage") return DType::uint8;
  for (const auto& i : kInfo)
    if (!i.storage.empty() && i.storage == n) return i.t;
  return std::nullopt;
}

bool dtype_is_floating(DType t) noexcept {
  switch (t) {
    case DType::float64: case DType::float32: case DType::float16: case DType::bfloat16:
    case DType::float8_e5m2: case DType::float8_e4m3fn: case DType::float8_e5m2fnuz:
    case DType::float8_e4m3fnuz: case DType::float8_e8m0fnu:
      return true;
    default:
      return false;
  }
}

bool dtype_is_complex(DType t) noexcept {
  return t == DType::complex128 || t == DType::complex64 || t == DType::complex32;
}

bool dtype_is_quantized(DType t) noexcept {
  return t == DType::qint8 || t == DType::quint8 || t == DType::qint32 || t == DType::quint4x2 ||
         t == DType::quint2x4;
}

bool dtype_is_new_style(DType t) noexcept {
  switch (t) {
    case DType::complex32: case DType::uint16: case DType::uint32: case DType::uint64:
    case DType::float8_e5m2: case DType::float8_e4m3fn: case DType::float8_e5m2fnuz:
    case DType::float8_e4m3fnuz: case DType::float8_e8m0fnu: case DType::float4_e2m1fn_x2:
    case DType::bits8: case DType::bits16: case DType::bits1x8: case DType::bits2x4: case DType::bits4x2:
      return true;
    default:
      return false;
  }
}

}  // namespace ckpt
