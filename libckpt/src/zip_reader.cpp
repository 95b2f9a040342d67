#include <algorithm>
#include <cstring>
#include <zlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "ckpt/detail/checked.hpp"
#include "ckpt/error.hpp"
#include "ckpt/zip.hpp"
#include "internal.hpp"

namespace ckpt {

namespace {

uint32_t crc32_zlib(uint32_t crc, const uint8_t* p, size_t n) noexcept {
  while (n > 0) {
    uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    crc = static_cast<uint32_t>(::crc32(crc, p, chunk));
    p += chunk;
    n -= chunk;
  }
  return crc;
}

#if defined(__x86_64__)
// CRC-32 by carry-less multiplication (Intel, "Fast CRC Computation for
// Generic Polynomials Using PCLMULQDQ", 2009): fold 64 bytes per step with
// x^(512+-64) mod P, then 16 at a time, then reduce 128 -> 64 -> 32 bits and
// finish with a Barrett reduction. Works on the raw (non-inverted) register;
// n must be a multiple of 16 and at least 64. Over 10 GB/s against zlib's
// ~3.7: checksums are half of a save's work.
#define CKPT_CLMUL __attribute__((target("pclmul,sse4.1")))
CKPT_CLMUL inline __m128i load16(const uint8_t* q) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)); }
CKPT_CLMUL inline __m128i fold16(__m128i x, __m128i k) {
  return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

CKPT_CLMUL uint32_t crc32_clmul_raw(uint32_t crc, const uint8_t* p, size_t n) {
  const __m128i k1k2 = _mm_set_epi64x(0x1c6e41596, 0x154442bd4);  // x^(4*128+32), x^(4*128-32) mod P
  const __m128i k3k4 = _mm_set_epi64x(0x0ccaa009e, 0x1751997d0);  // x^(128+32), x^(128-32) mod P
  const __m128i k5 = _mm_set_epi64x(0, 0x163cd6124);              // x^64 mod P
  const __m128i poly = _mm_set_epi64x(0x1f7011641, 0x1db710641);  // u = floor(x^64 / P), P'
  const __m128i mask32 = _mm_set_epi32(0, 0, 0, -1);
  __m128i x1 = _mm_xor_si128(load16(p), _mm_cvtsi32_si128(static_cast<int>(crc)));
  __m128i x2 = load16(p + 16), x3 = load16(p + 32), x4 = load16(p + 48);
  p += 64;
  n -= 64;
  while (n >= 64) {
    x1 = _mm_xor_si128(fold16(x1, k1k2), load16(p));
    x2 = _mm_xor_si128(fold16(x2, k1k2), load16(p + 16));
    x3 = _mm_xor_si128(fold16(x3, k1k2), load16(p + 32));
    x4 = _mm_xor_si128(fold16(x4, k1k2), load16(p + 48));
    p += 64;
    n -= 64;
  }
  x1 = _mm_xor_si128(fold16(x1, k3k4), x2);
  x1 = _mm_xor_si128(fold16(x1, k3k4), x3);
  x1 = _mm_xor_si128(fold16(x1, k3k4), x4);
  while (n >= 16) {
    x1 = _mm_xor_si128(fold16(x1, k3k4), load16(p));
    p += 16;
    n -= 16;
  }
  // 128 -> 64 bits (appending 32 zero bits), then 64 -> 32.
  x1 = _mm_xor_si128(_mm_clmulepi64_si128(k3k4, x1, 0x01), _mm_srli_si128(x1, 8));
  __m128i hi = _mm_srli_si128(x1, 4);
  x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, mask32), k5, 0x00), hi);
  // Barrett reduction.
  __m128i t = _mm_and_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, mask32), poly, 0x10), mask32);
  x1 = _mm_xor_si128(_mm_clmulepi64_si128(t, poly, 0x00), x1);
  return static_cast<uint32_t>(_mm_extract_epi32(x1, 1));
}

bool have_clmul() noexcept {
  static const bool yes = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  return yes;
}
#endif

}  // namespace

uint32_t crc32(uint32_t crc, const void* data, size_t n) noexcept {
  const auto* p = static_cast<const uint8_t*>(data);
#if defined(__x86_64__)
  if (n >= 64 && have_clmul()) {
    const size_t bulk = n & ~size_t{15};
    crc = ~crc32_clmul_raw(~crc, p, bulk);
    p += bulk;
    n -= bulk;
  }
#endif
  return crc32_zlib(crc, p, n);
}

namespace {

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEocdSig = 0x06054b50,
                   kZip64EocdSig = 0x06064b50, kZip64LocSig = 0x07064b50;
constexpr uint64_t kMaxComment = 65535;

uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t rd64(const uint8_t* p) { return static_cast<uint64_t>(rd32(p)) | (static_cast<uint64_t>(rd32(p + 4)) << 32); }

}  // namespace

ZipArchive::ZipArchive(std::shared_ptr<const Source> source, const Limits& limits)
    : src_(std::move(source)), limits_(limits) {
  parse();
}

void ZipArchive::parse() {
  const uint8_t* d = src_->data();
  const uint64_t size = src_->size();
  const std::string& path = src_->path();
  auto corrupt = [&](const std::string& msg, uint64_t off, const std::string& entry = {}) -> Error {
    return Error(ErrorCode::corrupt_zip, msg, path, entry, off);
  };

  if (size < 22)
    throw Error(ErrorCode::truncated, "file of " + std::to_string(size) + " bytes is too small to be a zip archive", path, {}, 0);

  // 1. End of central directory, searched backwards over the comment window.
  uint64_t eocd = UINT64_MAX;
  const uint64_t lo = size > 22 + kMaxComment ? size - 22 - kMaxComment : 0;
  for (uint64_t off = size - 22 + 1; off-- > lo;) {
    if (rd32(d + off) == kEocdSig) {
      uint64_t clen = rd16(d + off + 20);
      if (off + 22 + clen <= size) {
        eocd = off;
        break;
      }
    }
  }
  if (eocd == UINT64_MAX)
    throw Error(ErrorCode::truncated,
                "end-of-central-directory not found in the last 65,557 bytes (file size " + std::to_string(size) +
                    "): the file is truncated or not a zip archive",
                path, {}, size);
  const uint8_t* e = d + eocd;
  uint64_t disk = rd16(e + 4), cd_disk = rd16(e + 6);
  uint64_t n_disk = rd16(e + 8), n_total = rd16(e + 10);
  uint64_t cd_size = rd32(e + 12), cd_off = rd32(e + 16);
  trailing_ = size - (eocd + 22 + rd16(e + 20));
  uint64_t cd_limit = eocd;  // the central directory must end before this

  // 2. ZIP64 locator and end record.
  if (eocd >= 20 && rd32(d + eocd - 20) == kZip64LocSig) {
    const uint8_t* loc = d + eocd - 20;
    uint64_t z64 = rd64(loc + 8);
    if (!detail::fits(z64, 56, eocd - 20)) throw corrupt("ZIP64 end record offset " + std::to_string(z64) + " is out of bounds", eocd - 20);
    const uint8_t* z = d + z64;
    if (rd32(z) != kZip64EocdSig) throw corrupt("ZIP64 end record signature not found where the locator points", z64);
    uint64_t z_disk = rd32(z + 16), z_cd_disk = rd32(z + 20), z_n_disk = rd64(z + 24), z_n_total = rd64(z + 32),
             z_cd_size = rd64(z + 40), z_cd_off = rd64(z + 48);
    auto agree = [&](uint64_t v32, uint64_t sentinel, uint64_t v64, const char* what) {
      if (v32 != sentinel && v32 != v64)
        throw corrupt(std::string("ZIP64 and classic end records disagree on the ") + what, eocd);
    };
    agree(n_disk, 0xFFFF, z_n_disk, "entry count");
    agree(n_total, 0xFFFF, z_n_total, "entry count");
    agree(cd_size, 0xFFFFFFFF, z_cd_size, "central directory size");
    agree(cd_off, 0xFFFFFFFF, z_cd_off, "central directory offset");
    disk = z_disk, cd_disk = z_cd_disk, n_disk = z_n_disk, n_total = z_n_total, cd_size = z_cd_size, cd_off = z_cd_off;
    zip64_end_ = true;
    cd_limit = z64;
  }
  if ((disk != 0 && disk != 0xFFFF) || (cd_disk != 0 && cd_disk != 0xFFFF) || n_disk != n_total)
    throw Error(ErrorCode::unsupported_zip, "multi-disk (spanned) archives are not supported", path, {}, eocd);
  if (n_total > limits_.max_entries)
    throw Error(ErrorCode::limit_exceeded,
                std::to_string(n_total) + " zip entries exceed the limit of " + std::to_string(limits_.max_entries), path,
                {}, eocd);
  if (cd_size > limits_.max_central_directory)
    throw Error(ErrorCode::limit_exceeded, "central directory of " + std::to_string(cd_size) + " bytes exceeds the limit",
                path, {}, eocd);
  if (!detail::fits(cd_off, cd_size, cd_limit))
    throw corrupt("central directory [" + std::to_string(cd_off) + ", +" + std::to_string(cd_size) +
                      ") runs past the end record at " + std::to_string(cd_limit),
                  eocd);
  if (n_total > cd_size / 46) throw corrupt(std::to_string(n_total) + " entries cannot fit in a central directory of " + std::to_string(cd_size) + " bytes", eocd);

  // 3. Central directory entries.
  entries_.reserve(static_cast<size_t>(n_total));
  uint64_t p = cd_off;
  const uint64_t cd_end = cd_off + cd_size;
  for (uint64_t i = 0; i < n_total; ++i) {
    if (!detail::fits(p, 46, cd_end)) throw corrupt("central directory entry " + std::to_string(i) + " is truncated", p);
    const uint8_t* c = d + p;
    if (rd32(c) != kCentralSig) throw corrupt("bad central directory signature for entry " + std::to_string(i), p);
    ZipEntry en;
    en.flags = rd16(c + 8);
    en.method = rd16(c + 10);
    en.crc32 = rd32(c + 16);
    en.compressed_size = rd32(c + 20);
    en.uncompressed_size = rd32(c + 24);
    uint64_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
    en.local_header_offset = rd32(c + 42);
    if (!detail::fits(p + 46, nlen + xlen + clen, cd_end)) throw corrupt("central directory entry " + std::to_string(i) + " runs past the directory", p);
    en.name = std::string_view(reinterpret_cast<const char*>(c + 46), static_cast<size_t>(nlen));
    // ZIP64 extra field.
    const uint8_t* x = c + 46 + nlen;
    for (uint64_t xo = 0; xo + 4 <= xlen;) {
      uint16_t id = rd16(x + xo), len = rd16(x + xo + 2);
      if (xo + 4 + len > xlen) throw corrupt("extra field overruns entry " + std::string(en.name), p, std::string(en.name));
      if (id == 0x0001) {
        const uint8_t* z = x + xo + 4;
        uint64_t zo = 0;
        auto next = [&](uint64_t& field) {
          if (zo + 8 > len) throw corrupt("ZIP64 extra field too short in " + std::string(en.name), p, std::string(en.name));
          field = rd64(z + zo);
          zo += 8;
        };
        if (en.uncompressed_size == 0xFFFFFFFF) next(en.uncompressed_size);
        if (en.compressed_size == 0xFFFFFFFF) next(en.compressed_size);
        if (en.local_header_offset == 0xFFFFFFFF) next(en.local_header_offset);
        en.zip64 = true;
      }
      xo += 4u + len;
    }
    p += 46 + nlen + xlen + clen;

    if (en.name.empty()) throw corrupt("entry " + std::to_string(i) + " has an empty name", p);
    if (en.name.find('\0') != std::string_view::npos || en.name.find('\\') != std::string_view::npos || en.name[0] == '/' ||
        en.name.find("../") != std::string_view::npos || en.name == ".." ||
        (en.name.size() >= 3 && en.name.compare(en.name.size() - 3, 3, "/..") == 0))
      throw corrupt("unsafe entry name '" + std::string(en.name) + "'", p, std::string(en.name));
    if (en.flags & 0x41) throw Error(ErrorCode::unsupported_zip, "entry is encrypted", path, std::string(en.name), en.local_header_offset);
    if (en.method != 0 && en.method != 8)
      throw Error(ErrorCode::unsupported_zip, "compression method " + std::to_string(en.method) + " is not supported (only STORED and DEFLATE)", path, std::string(en.name), en.local_header_offset);
    if (en.method == 0 && en.compressed_size != en.uncompressed_size)
      throw corrupt("STORED entry with different compressed (" + std::to_string(en.compressed_size) + ") and uncompressed (" +
                        std::to_string(en.uncompressed_size) + ") sizes",
                    en.local_header_offset, std::string(en.name));
    if (!detail::fits(en.local_header_offset, 30 + nlen, cd_off) ||
        !detail::fits(en.local_header_offset + 30 + nlen, en.compressed_size, cd_off))
      throw corrupt("entry [" + std::to_string(en.local_header_offset) + ", +" + std::to_string(30 + nlen + en.compressed_size) +
                        ") runs into the central directory",
                    en.local_header_offset, std::string(en.name));
    entries_.push_back(en);
  }

  // Name index: open addressing over a power-of-two table, no allocation per
  // entry. A name found twice is a duplicate entry.
  size_t cap = 16;
  while (cap < entries_.size() * 2) cap <<= 1;
  by_name_.assign(cap, UINT32_MAX);
  for (size_t i = 0; i < entries_.size(); ++i) {
    size_t h = std::hash<std::string_view>{}(entries_[i].name) & (cap - 1);
    while (by_name_[h] != UINT32_MAX) {
      if (entries_[by_name_[h]].name == entries_[i].name)
        throw corrupt("duplicate entry name", entries_[i].local_header_offset, std::string(entries_[i].name));
      h = (h + 1) & (cap - 1);
    }
    by_name_[h] = static_cast<uint32_t>(i);
  }

  // 4. No two entries may share bytes (overlapping-entry zip bombs). The
  // local extra field is read lazily (data_offset()), so here each entry
  // must fit its header, name and payload before the next one starts, and
  // data_offset() later checks the exact span against `limit`.
  std::vector<ZipEntry*> order;
  for (auto& en : entries_) order.push_back(&en);
  std::sort(order.begin(), order.end(),
            [](const ZipEntry* a, const ZipEntry* b) { return a->local_header_offset < b->local_header_offset; });
  for (size_t i = 0; i < order.size(); ++i) {
    ZipEntry* a = order[i];
    a->limit = i + 1 < order.size() ? order[i + 1]->local_header_offset : cd_off;
    if (a->local_header_offset + 30 + a->name.size() + a->compressed_size > a->limit)
      throw corrupt("entries '" + std::string(a->name) + "' and '" + (i + 1 < order.size() ? std::string(order[i + 1]->name) : std::string("central directory")) +
                        "' overlap",
                    a->local_header_offset, std::string(a->name));
  }

  if (!entries_.empty()) {
    const std::string_view first = entries_.front().name;
    size_t slash = first.find('/');
    root_ = slash == std::string_view::npos ? std::string() : std::string(first.substr(0, slash));
  }
}

const ZipEntry* ZipArchive::find(std::string_view name) const noexcept {
  char buf[256];
  std::string big;
  std::string_view full;
  if (root_.empty()) {
    full = name;
  } else if (root_.size() + 1 + name.size() <= sizeof buf) {
    std::memcpy(buf, root_.data(), root_.size());
    buf[root_.size()] = '/';
    std::memcpy(buf + root_.size() + 1, name.data(), name.size());
    full = std::string_view(buf, root_.size() + 1 + name.size());
  } else {
    big = root_ + "/" + std::string(name);
    full = big;
  }
  if (by_name_.empty()) return nullptr;
  const size_t mask = by_name_.size() - 1;
  for (size_t h = std::hash<std::string_view>{}(full) & mask; by_name_[h] != UINT32_MAX; h = (h + 1) & mask)
    if (entries_[by_name_[h]].name == full) return &entries_[by_name_[h]];
  return nullptr;
}

std::string_view ZipArchive::relative_name(const ZipEntry& e) const noexcept {
  std::string_view n = e.name;
  if (!root_.empty() && n.size() > root_.size() && n.substr(0, root_.size()) == root_ && n[root_.size()] == '/')
    n.remove_prefix(root_.size() + 1);
  return n;
}

uint64_t ZipArchive::data_offset(const ZipEntry& e) const {
  const uint8_t* d = src_->data();
  const std::string& path = src_->path();
  const uint64_t lh = e.local_header_offset;
  auto corrupt = [&](const std::string& msg) { return Error(ErrorCode::corrupt_zip, msg, path, std::string(e.name), lh); };
  if (!detail::fits(lh, 30, e.limit)) throw corrupt("local header runs into the next entry");
  const uint8_t* l = d + lh;
  if (rd32(l) != kLocalSig) throw corrupt("local header signature not found");
  const uint64_t lnlen = rd16(l + 26), lxlen = rd16(l + 28);
  if (!detail::fits(lh + 30, lnlen + lxlen, e.limit)) throw corrupt("local header runs into the next entry");
  if (lnlen != e.name.size() || std::memcmp(l + 30, e.name.data(), e.name.size()) != 0)
    throw corrupt("local header name '" + std::string(reinterpret_cast<const char*>(l + 30), static_cast<size_t>(lnlen)) +
                  "' differs from the central directory name");
  if (rd16(l + 8) != e.method) throw corrupt("local and central compression methods differ");
  if ((rd16(l + 6) & 0x41) != 0) throw Error(ErrorCode::unsupported_zip, "entry is encrypted", path, std::string(e.name), lh);
  const uint64_t off = lh + 30 + lnlen + lxlen;
  if (!detail::fits(off, e.compressed_size, e.limit))
    throw corrupt("entry data [" + std::to_string(off) + ", +" + std::to_string(e.compressed_size) + ") runs into the next entry");
  return off;
}

std::span<const uint8_t> ZipArchive::stored_bytes(const ZipEntry& e) const {
  if (e.method != 0)
    throw Error(ErrorCode::unsupported_zip, "entry is compressed; read() inflates it", src_->path(), std::string(e.name), e.local_header_offset);
  return {src_->data() + data_offset(e), static_cast<size_t>(e.compressed_size)};
}

std::vector<uint8_t> ZipArchive::read(const ZipEntry& e, bool check_crc) const {
  std::vector<uint8_t> out;
  if (e.method == 0) {
    auto s = stored_bytes(e);
    out.assign(s.begin(), s.end());
  } else {
    if (e.uncompressed_size > limits_.max_inflate_bytes)
      throw Error(ErrorCode::limit_exceeded,
                  "entry declares " + std::to_string(e.uncompressed_size) + " uncompressed bytes, over the limit of " +
                      std::to_string(limits_.max_inflate_bytes),
                  src_->path(), std::string(e.name), e.local_header_offset);
    out.resize(static_cast<size_t>(e.uncompressed_size));
    const uint64_t data_off = data_offset(e);
    z_stream zs{};
    if (inflateInit2(&zs, -15) != Z_OK) throw Error(ErrorCode::internal, "zlib inflateInit2 failed", src_->path(), std::string(e.name));
    struct End {  // inflateEnd on every path out, exceptions included
      z_stream* z;
      ~End() { inflateEnd(z); }
    } end_guard{&zs};
    const uint8_t* in = src_->data() + data_off;
    uint64_t in_left = e.compressed_size, out_done = 0;
    int rc = Z_OK;
    uint8_t sink[64];
    while (rc != Z_STREAM_END) {
      if (zs.avail_in == 0 && in_left > 0) {
        uInt c = static_cast<uInt>(std::min<uint64_t>(in_left, 1u << 30));
        zs.next_in = const_cast<Bytef*>(in);
        zs.avail_in = c;
        in += c;
        in_left -= c;
      }
      bool into_sink = out_done >= out.size();
      if (into_sink) {  // output beyond the declared size: detect, never store
        zs.next_out = sink;
        zs.avail_out = sizeof sink;
      } else {
        zs.next_out = out.data() + out_done;
        zs.avail_out = static_cast<uInt>(std::min<uint64_t>(out.size() - out_done, 1u << 30));
      }
      uInt before = zs.avail_out;
      rc = inflate(&zs, Z_NO_FLUSH);
      uint64_t produced = before - zs.avail_out;
      if (into_sink && produced > 0) {
        throw Error(ErrorCode::corrupt_compressed, "DEFLATE data inflates past the declared size " + std::to_string(e.uncompressed_size),
                    src_->path(), std::string(e.name), data_off);
      }
      out_done += produced;
      if (rc == Z_STREAM_END) break;
      if (rc != Z_OK || (produced == 0 && zs.avail_in == 0 && in_left == 0)) {
        throw Error(ErrorCode::corrupt_compressed, std::string("invalid DEFLATE data") + (zs.msg ? std::string(": ") + zs.msg : std::string()),
                    src_->path(), std::string(e.name), data_off + zs.total_in);
      }
    }
    if (out_done != e.uncompressed_size)
      throw Error(ErrorCode::corrupt_compressed,
                  "DEFLATE data inflated to " + std::to_string(out_done) + " bytes, the directory says " + std::to_string(e.uncompressed_size),
                  src_->path(), std::string(e.name), data_off);
  }
  if (check_crc) {
    uint32_t c = crc32(0, out.data(), out.size());
    if (c != e.crc32) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "CRC-32 is %08x, the directory says %08x", c, e.crc32);
      throw Error(ErrorCode::crc_mismatch, buf, src_->path(), std::string(e.name), data_offset(e));
    }
  }
  return out;
}

void ZipArchive::verify_crc(const ZipEntry& e) const {
  uint32_t c;
  if (e.method == 0) {
    auto s = stored_bytes(e);
    if (!src_->mapped()) {
      c = crc32(0, s.data(), s.size());
    } else {
      // In 8 MiB steps, each step's whole pages dropped from the resident set
      // once summed (they stay in the page cache): flat memory for any size.
      constexpr size_t kStep = size_t{8} << 20;
      c = 0;
      for (size_t off = 0; off < s.size(); off += kStep) {
        const size_t n = std::min(kStep, s.size() - off);
        c = crc32(c, s.data() + off, n);
        drop_whole_pages(s.data() + off, n);
      }
    }
  } else {
    auto b = read(e, false);
    c = crc32(0, b.data(), b.size());
  }
  if (c != e.crc32) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "CRC-32 is %08x, the directory says %08x", c, e.crc32);
    throw Error(ErrorCode::crc_mismatch, buf, src_->path(), std::string(e.name), data_offset(e));
  }
}

}  // namespace ckpt
