#include "ckpt/tensor.hpp"
#include "internal.hpp"

#include <algorithm>
#include <cstring>
#include <sys/mman.h>
#include <unistd.h>

#include "ckpt/detail/checked.hpp"
#include "ckpt/error.hpp"
#include "byteswap.hpp"

namespace ckpt {

namespace {
// make_shared needs a public constructor; this derived type lends one, so a
// storage and its control block are one allocation.
struct StorageAlloc : Storage {
  StorageAlloc() = default;
};
}  // namespace

std::shared_ptr<Storage> Storage::make() { return std::make_shared<StorageAlloc>(); }

std::shared_ptr<Storage> Storage::from_bytes(DType dtype, std::vector<uint8_t> bytes, std::string location) {
  std::shared_ptr<Storage> s = make();
  s->dtype_ = dtype;
  s->nbytes_ = bytes.size();
  s->owned_ = std::move(bytes);
  s->data_ = s->owned_.data();
  s->location_ = std::move(location);
  return s;
}

std::shared_ptr<Storage> Storage::from_external(DType dtype, const void* data, uint64_t nbytes,
                                                std::shared_ptr<const void> keepalive, std::string location) {
  std::shared_ptr<Storage> s = make();
  s->dtype_ = dtype;
  s->nbytes_ = nbytes;
  s->data_ = static_cast<const uint8_t*>(data);
  s->keepalive_ = std::move(keepalive);
  s->location_ = std::move(location);
  return s;
}

std::shared_ptr<Storage> Storage::lazy(DType dtype, uint64_t nbytes, std::function<std::vector<uint8_t>()> loader,
                                       std::string location) {
  std::shared_ptr<Storage> s = make();
  s->dtype_ = dtype;
  s->nbytes_ = nbytes;
  s->loader_ = std::move(loader);
  s->location_ = std::move(location);
  return s;
}

std::shared_ptr<Storage> Storage::unbound(DType dtype, uint64_t nbytes, std::string location) {
  std::shared_ptr<Storage> s = make();
  s->dtype_ = dtype;
  s->nbytes_ = nbytes;
  s->location_ = std::move(location);
  return s;
}

std::shared_ptr<Storage> Storage::located(DType dtype, uint64_t nbytes,
                                          std::function<std::pair<const uint8_t*, uint64_t>()> locate,
                                          std::shared_ptr<const void> keepalive, bool mapped, std::string location) {
  std::shared_ptr<Storage> s = make();
  s->dtype_ = dtype;
  s->nbytes_ = nbytes;
  s->locate_ = std::move(locate);
  s->keepalive_ = std::move(keepalive);
  s->mapped_ = mapped;
  s->location_ = std::move(location);
  return s;
}

uint64_t Storage::file_offset() const {
  if (locate_) (void)bytes();
  return file_offset_;
}

namespace {
// madvise on the whole pages inside [p, p + n): the storage is a read-only
// private file mapping, so dropped pages can always be faulted back.
void advise_pages(const uint8_t* p, uint64_t n, int advice) noexcept {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + n) & ~(page - 1);
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, advice);
}
constexpr int kMadvPopulateRead = 22;  // MADV_POPULATE_READ; Debian 12's headers predate it
}  // namespace

void drop_whole_pages(const uint8_t* p, uint64_t n) noexcept { advise_pages(p, n, MADV_DONTNEED); }

void Storage::release_pages(uint64_t offset, uint64_t length) const noexcept {
  if (!mapped_ || !data_ || offset >= nbytes_) return;
  advise_pages(data_ + offset, std::min(length, nbytes_ - offset), MADV_DONTNEED);
}

void Storage::prefetch_pages(uint64_t offset, uint64_t length) const noexcept {
  if (!mapped_ || !data_ || offset >= nbytes_) return;
  // Whole pages around the range: populating never drops anything.
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t n = std::min(length, nbytes_ - offset);
  uintptr_t lo = reinterpret_cast<uintptr_t>(data_ + offset) & ~(page - 1);
  uintptr_t hi = (reinterpret_cast<uintptr_t>(data_ + offset + n) + page - 1) & ~(page - 1);
  ::madvise(reinterpret_cast<void*>(lo), hi - lo, kMadvPopulateRead);
}

void Storage::verify() const {
  if (check_) std::call_once(verified_, check_);  // a throw leaves it unverified: the next call checks again
}

std::span<const uint8_t> Storage::bytes() const {
  if (locate_) {
    std::call_once(once_, [this] {
      auto [p, off] = locate_();
      data_ = p;
      file_offset_ = off;
    });
  }
  if (loader_) {
    std::call_once(once_, [this] {
      owned_ = loader_();
      if (owned_.size() != nbytes_)
        throw Error(ErrorCode::corrupt_compressed,
                    "storage " + key + " inflated to " + std::to_string(owned_.size()) + " bytes, expected " +
                        std::to_string(nbytes_),
                    {}, entry);
      data_ = owned_.data();
    });
  }
  if (!data_ && nbytes_ > 0)
    throw Error(ErrorCode::internal, "storage " + key + " has no bytes bound", {}, entry);
  return {data_, static_cast<size_t>(nbytes_)};
}

uint64_t Tensor::numel() const noexcept {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

bool Tensor::is_contiguous() const noexcept {
  // An empty tensor is contiguous (as in torch). Checking that first keeps
  // the running product below numel, so it cannot overflow.
  for (int64_t d : shape)
    if (d == 0) return true;
  uint64_t expected = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && static_cast<uint64_t>(stride[i]) != expected) return false;
    expected *= static_cast<uint64_t>(shape[i]);
  }
  return true;
}

std::vector<int64_t> Tensor::contiguous_strides(const std::vector<int64_t>& shape) {
  // Saturates instead of overflowing: only a shape with a 0 in it can have
  // a product of the other sizes past 2^63 and still be valid (it is empty).
  std::vector<int64_t> s(shape.size());
  int64_t acc = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    s[i] = acc;
    if (__builtin_mul_overflow(acc, std::max<int64_t>(shape[i], 1), &acc)) acc = INT64_MAX;
  }
  return s;
}

void Tensor::validate(uint32_t max_ndim) const {
  auto bad = [&](const std::string& what) { throw Error(ErrorCode::invalid_tensor, what); };
  if (!storage) bad("tensor has no storage");
  if (shape.size() != stride.size())
    bad("shape has " + std::to_string(shape.size()) + " dimensions but stride has " + std::to_string(stride.size()));
  if (shape.size() > max_ndim)
    throw Error(ErrorCode::limit_exceeded,
                "tensor has " + std::to_string(shape.size()) + " dimensions, limit is " + std::to_string(max_ndim));
  if (storage_offset < 0) bad("negative storage_offset " + std::to_string(storage_offset));
  uint64_t n = 1;
  bool empty = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) bad("negative size " + std::to_string(shape[i]) + " in dimension " + std::to_string(i));
    if (stride[i] < 0) bad("negative stride " + std::to_string(stride[i]) + " in dimension " + std::to_string(i));
    if (shape[i] == 0) empty = true;
    auto m = detail::checked_mul(n, static_cast<uint64_t>(shape[i]));
    if (!m) bad("number of elements overflows 64 bits");
    n = *m;
  }
  const uint64_t item = static_cast<uint64_t>(dtype_size(dtype));
  if (!detail::checked_mul(n, item)) bad("size in bytes overflows 64 bits");
  const uint64_t sbytes = storage->nbytes();
  if (empty) return;  // torch accepts any non-negative offset for a zero-element tensor
  uint64_t last = static_cast<uint64_t>(storage_offset);
  for (size_t i = 0; i < shape.size(); ++i) {
    auto span = detail::checked_mul(static_cast<uint64_t>(shape[i] - 1), static_cast<uint64_t>(stride[i]));
    if (!span) bad("extent of dimension " + std::to_string(i) + " overflows 64 bits");
    auto s = detail::checked_add(last, *span);
    if (!s) bad("extent overflows 64 bits");
    last = *s;
  }
  auto end = detail::checked_add(last, 1);
  auto end_bytes = end ? detail::checked_mul(*end, item) : std::nullopt;
  if (!end_bytes || *end_bytes > sbytes)
    bad("storage_offset " + std::to_string(storage_offset) + " + extent needs " +
        (end_bytes ? std::to_string(*end_bytes) : std::string("> 2^64")) + " bytes but the storage has " +
        std::to_string(sbytes));
}

std::span<const uint8_t> Tensor::contiguous_bytes() const {
  if (!is_contiguous()) throw Error(ErrorCode::invalid_argument, "tensor is not contiguous");
  if (storage->big_endian()) throw Error(ErrorCode::invalid_argument, "tensor storage is big-endian");
  const uint64_t item = static_cast<uint64_t>(dtype_size(dtype));
  auto all = storage->bytes();
  const uint64_t n = numel();
  if (n == 0) return {};
  return all.subspan(static_cast<size_t>(static_cast<uint64_t>(storage_offset) * item), static_cast<size_t>(n * item));
}


void Tensor::copy_to(void* dst_v) const {
  uint8_t* dst = static_cast<uint8_t*>(dst_v);
  const uint64_t n = numel();
  if (n == 0) return;
  const size_t item = static_cast<size_t>(dtype_size(dtype));
  auto src = storage->bytes();
  const uint8_t* base = src.data() + static_cast<uint64_t>(storage_offset) * item;
  if (is_contiguous()) {
    std::memcpy(dst, base, static_cast<size_t>(n * item));
  } else {
    // Collapse to an index loop; the innermost dimension is copied as a run
    // when its stride is 1.
    const size_t nd = shape.size();
    std::vector<int64_t> idx(nd, 0);
    const int64_t inner = nd ? shape[nd - 1] : 1;
    const int64_t inner_stride = nd ? stride[nd - 1] : 1;
    const uint64_t rows = n / static_cast<uint64_t>(inner);
    uint8_t* out = dst;
    for (uint64_t r = 0; r < rows; ++r) {
      int64_t off = 0;
      for (size_t d = 0; d + 1 < nd; ++d) off += idx[d] * stride[d];
      const uint8_t* row = base + static_cast<uint64_t>(off) * item;
      if (inner_stride == 1) {
        std::memcpy(out, row, static_cast<size_t>(inner) * item);
        out += static_cast<size_t>(inner) * item;
      } else {
        for (int64_t j = 0; j < inner; ++j) {
          std::memcpy(out, row + static_cast<uint64_t>(j * inner_stride) * item, item);
          out += item;
        }
      }
      for (size_t d = nd - 1; d-- > 0;) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
  }
  if (storage->big_endian()) detail::swap_units(dst, n * item, dtype_swap_unit(dtype));
}

std::vector<uint8_t> Tensor::to_contiguous() const {
  std::vector<uint8_t> out(static_cast<size_t>(nbytes()));
  copy_to(out.data());
  return out;
}

Tensor Tensor::from_bytes(DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  Tensor t;
  t.dtype = dtype;
  t.stride = contiguous_strides(shape);
  t.shape = std::move(shape);
  t.storage = Storage::from_bytes(dtype, std::move(bytes));
  t.validate();
  if (t.nbytes() != t.storage->nbytes())
    throw Error(ErrorCode::invalid_argument, "byte count " + std::to_string(t.storage->nbytes()) +
                                                 " does not match shape (" + std::to_string(t.nbytes()) + " bytes)");
  return t;
}

}  // namespace ckpt
