// ckpt/tensor.hpp - storages and tensor references.
//
// A Storage is one block of raw bytes (a `data/<key>` zip record, a legacy
// storage, or memory the caller owns). A Tensor is a view of a storage:
// dtype, shape, strides and an element offset, exactly as torch describes it.
// Several tensors may share one storage (aliases, views); that sharing is
// visible as the same std::shared_ptr<Storage>.
//
// Reading never copies payloads: Storage::bytes() points into the mapped file.
// Only DEFLATE-compressed records are inflated, once, on first access.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "ckpt/dtype.hpp"

namespace ckpt {

class Value;

class Storage {
 public:
  /// A storage that owns its bytes.
  static std::shared_ptr<Storage> from_bytes(DType dtype, std::vector<uint8_t> bytes,
                                             std::string location = "cpu");
  /// A storage over memory owned elsewhere; `keepalive` is held as long as the
  /// storage lives (e.g. a LibTorch tensor, or a mapped file).
  static std::shared_ptr<Storage> from_external(DType dtype, const void* data, uint64_t nbytes,
                                                std::shared_ptr<const void> keepalive,
                                                std::string location = "cpu");
  /// A storage whose bytes are produced on first access (used for compressed
  /// zip records). `loader` must return exactly `nbytes` bytes.
  static std::shared_ptr<Storage> lazy(DType dtype, uint64_t nbytes,
                                       std::function<std::vector<uint8_t>()> loader,
                                       std::string location = "cpu");
  /// A zero-copy storage located on first access: `locate` returns the
  /// address of the bytes and their offset in the file (a stored zip record,
  /// whose local header is read only then). `keepalive` owns that memory;
  /// `mapped` says it is a read-only file mapping that may be released.
  static std::shared_ptr<Storage> located(DType dtype, uint64_t nbytes,
                                          std::function<std::pair<const uint8_t*, uint64_t>()> locate,
                                          std::shared_ptr<const void> keepalive, bool mapped,
                                          std::string location = "cpu");

  DType dtype() const noexcept { return dtype_; }
  /// Number of elements of dtype() (for UntypedStorage: bytes).
  uint64_t numel() const noexcept { return nbytes_ / static_cast<uint64_t>(dtype_size(dtype_)); }
  uint64_t nbytes() const noexcept { return nbytes_; }
  const std::string& location() const noexcept { return location_; }
  /// True when the bytes are stored big-endian (zip `byteorder` = "big", or a
  /// legacy file saved on a big-endian host). bytes() is then in file order.
  bool big_endian() const noexcept { return big_endian_; }

  /// The raw bytes, in file byte order. Zero-copy for stored records.
  std::span<const uint8_t> bytes() const;

  // Provenance, for messages and tools. Empty/0 for in-memory storages.
  std::string key;          ///< record key ("0", "94279043900432")
  std::string entry;        ///< zip entry or legacy section that holds it
  bool compressed = false;  ///< stored DEFLATE-compressed
  /// Where the bytes start in the file (locates a lazily located storage).
  uint64_t file_offset() const;
  /// The bytes are pages of a read-only file mapping (see release_pages()).
  bool mapped() const noexcept { return mapped_; }
  /// Drops this storage's whole pages from the process's resident set (the
  /// page cache keeps them; the next access faults them back in). Only for
  /// mapped() storages; a no-op otherwise. Used by streaming writers.
  /// With a byte range: only the whole pages inside [offset, offset + length).
  void release_pages(uint64_t offset = 0, uint64_t length = UINT64_MAX) const noexcept;
  /// Maps all of a mapped() storage's pages in one call (MADV_POPULATE_READ,
  /// Linux 5.14+; a no-op elsewhere) instead of a fault per 64 KiB read.
  /// With a byte range: the pages that hold [offset, offset + length).
  void prefetch_pages(uint64_t offset = 0, uint64_t length = UINT64_MAX) const noexcept;

  // Internal setters used by the readers.
  void set_big_endian(bool b) noexcept { big_endian_ = b; }
  /// Points an already-described storage at its bytes (legacy readers learn
  /// where the payload is only after the object pickle).
  void bind(const uint8_t* data, std::shared_ptr<const void> keepalive, uint64_t file_offset = 0,
            bool mapped = false) noexcept {
    data_ = data;
    keepalive_ = std::move(keepalive);
    file_offset_ = file_offset;
    mapped_ = mapped;
  }
  /// A storage whose bytes are bound later with bind().
  static std::shared_ptr<Storage> unbound(DType dtype, uint64_t nbytes, std::string location = "cpu");

  /// Checks the bytes against the CRC-32 of the zip record that holds them
  /// (the whole record, which may be longer than the storage), the first
  /// time it is called; throws crc_mismatch naming the file, the entry and
  /// the offset. A no-op for storages without a checksum (legacy streams,
  /// tar members, in-memory storages; compressed records are checked as
  /// they inflate). Mapped pages are released as it reads. Thread-safe.
  void verify() const;
  /// The CRC-32 the archive declares, when the storage is exactly one whole
  /// STORED record: a writer that checksums the bytes anyway compares for
  /// free (and calls verify() for the precise error on a mismatch).
  std::optional<uint32_t> record_crc() const noexcept {
    return has_crc_ ? std::optional<uint32_t>(crc_) : std::nullopt;
  }
  /// Set by the zip reader: `check` recomputes the record's CRC-32 and
  /// throws on a mismatch; `exact_crc` is the declared CRC when the record
  /// is exactly this storage's bytes.
  void set_checksum(std::function<void()> check, std::optional<uint32_t> exact_crc) {
    check_ = std::move(check);
    has_crc_ = exact_crc.has_value();
    crc_ = exact_crc.value_or(0);
  }

 protected:
  Storage() = default;

 private:
  static std::shared_ptr<Storage> make();
  DType dtype_ = DType::uint8;
  uint64_t nbytes_ = 0;
  std::string location_ = "cpu";
  bool big_endian_ = false;
  mutable const uint8_t* data_ = nullptr;
  std::shared_ptr<const void> keepalive_;
  mutable std::vector<uint8_t> owned_;
  std::function<std::vector<uint8_t>()> loader_;
  std::function<std::pair<const uint8_t*, uint64_t>()> locate_;
  mutable uint64_t file_offset_ = 0;
  bool mapped_ = false;
  mutable std::once_flag once_;
  std::function<void()> check_;
  mutable std::once_flag verified_;
  uint32_t crc_ = 0;
  bool has_crc_ = false;
};

/// How a tensor was (or will be) pickled.
enum class TensorForm : uint8_t {
  v2,         ///< torch._utils._rebuild_tensor_v2 (the common case)
  v3,         ///< torch._utils._rebuild_tensor_v3 (new dtypes, UntypedStorage)
  v1,         ///< torch._utils._rebuild_tensor (torch <= 0.3)
  tar,        ///< legacy TAR `tensors` table
};

class Tensor {
 public:
  DType dtype = DType::float32;
  std::vector<int64_t> shape;
  std::vector<int64_t> stride;
  int64_t storage_offset = 0;  ///< in elements of dtype
  std::shared_ptr<Storage> storage;
  bool requires_grad = false;
  bool is_parameter = false;   ///< pickled through _rebuild_parameter
  TensorForm form = TensorForm::v2;
  const Value* metadata = nullptr;  ///< the optional v2/v3 metadata dict (conj/neg bits)

  /// Product of the shape (1 for a 0-d tensor). Overflow was checked at build.
  uint64_t numel() const noexcept;
  uint64_t nbytes() const noexcept { return numel() * static_cast<uint64_t>(dtype_size(dtype)); }
  /// Row-major contiguous (size-1 dimensions may carry any stride).
  bool is_contiguous() const noexcept;
  /// Contiguous strides for a shape.
  static std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape);

  /// The tensor's bytes without copying. Requires is_contiguous() and a
  /// little-endian storage; throws ErrorCode::invalid_argument otherwise.
  std::span<const uint8_t> contiguous_bytes() const;
  /// Writes nbytes() bytes: row-major, little-endian, whatever the strides and
  /// storage byte order. `dst` needs no alignment.
  void copy_to(void* dst) const;
  std::vector<uint8_t> to_contiguous() const;

  /// Checks that shape, strides and offset lie inside the storage, with checked
  /// arithmetic. Throws ErrorCode::invalid_tensor naming the field.
  void validate(uint32_t max_ndim = 64) const;

  /// A fresh tensor owning a copy of `bytes` (row-major, little-endian).
  static Tensor from_bytes(DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes);
};

}  // namespace ckpt
