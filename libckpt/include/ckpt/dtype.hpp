// ckpt/dtype.hpp - PyTorch element types, their sizes and their pickle names.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace ckpt {

/// Every dtype torch.save can write. The order is ours, not torch's.
enum class DType : uint8_t {
  float64, float32, float16, bfloat16,
  int64, int32, int16, int8, uint8, bool_,
  complex128, complex64, complex32,
  uint16, uint32, uint64,
  float8_e5m2, float8_e4m3fn, float8_e5m2fnuz, float8_e4m3fnuz, float8_e8m0fnu,
  float4_e2m1fn_x2,
  bits8, bits16, bits1x8, bits2x4, bits4x2,
  qint8, quint8, qint32, quint4x2, quint2x4,
};
inline constexpr int kDTypeCount = 32;

/// Bytes per element (4 for float32, 1 for float4_e2m1fn_x2 which packs two).
int dtype_size(DType t) noexcept;
/// The unit byte swapping works in: the element size, or half of it for complex.
int dtype_swap_unit(DType t) noexcept;
/// torch's name: "float32", "bfloat16", "bool", "float8_e4m3fn", ...
std::string_view dtype_name(DType t) noexcept;
/// Parses a torch dtype name, also the aliases torch accepts ("float", "half",
/// "long", "double", "int", "short", "cfloat", "cdouble", "chalf").
std::optional<DType> dtype_from_name(std::string_view name) noexcept;
/// The legacy typed-storage class for a dtype ("FloatStorage"), if there is one.
std::optional<std::string_view> dtype_storage_class(DType t) noexcept;
/// The dtype of a legacy typed-storage class name ("HalfStorage" -> float16).
/// "UntypedStorage" maps to uint8 (its numel counts bytes).
std::optional<DType> dtype_from_storage_class(std::string_view name) noexcept;
bool dtype_is_floating(DType t) noexcept;  ///< f64/f32/f16/bf16 and the float8 kinds
bool dtype_is_complex(DType t) noexcept;
bool dtype_is_quantized(DType t) noexcept;
/// Dtypes that torch pickles with _rebuild_tensor_v3 and an UntypedStorage
/// (torch.storage._new_dtypes()).
bool dtype_is_new_style(DType t) noexcept;

}  // namespace ckpt
