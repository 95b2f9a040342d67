// The zip container: hostile and broken archives always give a typed error.
#include <doctest/doctest.h>

#include <ckpt/ckpt.hpp>
#include <cstring>
#include <zlib.h>

#include "test_util.hpp"

using namespace ckpt;

namespace {

std::vector<uint8_t> small_checkpoint() {
  testutil::TempDir dir;
  Document doc;
  Value* d = doc.ordered_dict();
  std::vector<uint8_t> w(24);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<uint8_t>(i * 7);
  d->set("fc.weight", doc.tensor(Tensor::from_bytes(DType::float32, {2, 3}, w)));
  d->set("fc.bias", doc.tensor(Tensor::from_bytes(DType::int64, {1}, std::vector<uint8_t>(8, 1))));
  d->set("step", int64_t{5});
  save(dir / "small.pt", *d, SaveOptions{{}, false});
  return testutil::read_file(dir / "small.pt");
}

// Opens bytes; returns the error code, or internal when it opened fine.
ErrorCode try_open(const std::vector<uint8_t>& b, bool verify = false) {
  try {
    auto ck = Checkpoint::open(Source::from_bytes(b, "mem.pt"));
    for (const auto& t : ck.tensors()) (void)t.tensor().to_contiguous();
    if (verify) ck.verify();
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode::internal;
}

uint32_t rd32(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24); }
void wr32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
// Offsets of every central directory record.
std::vector<size_t> central_records(const std::vector<uint8_t>& b) {
  std::vector<size_t> out;
  for (size_t i = 0; i + 4 <= b.size(); ++i)
    if (rd32(&b[i]) == 0x02014b50) out.push_back(i);
  return out;
}

}  // namespace

TEST_CASE("truncation at every length is a typed error") {
  auto full = small_checkpoint();
  REQUIRE(try_open(full) == ErrorCode::internal);
  for (size_t len = 0; len < full.size(); ++len) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
    ErrorCode c = try_open(cut);
    INFO("length " << len);
    CHECK(c != ErrorCode::internal);
  }
  // The EOCD message says what happened.
  std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(full.size() / 2));
  try {
    Checkpoint::open(Source::from_bytes(cut, "half.pt"));
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::truncated);
    CHECK(std::string(e.what()).find("end-of-central-directory not found") != std::string::npos);
  }
}

TEST_CASE("every single-bit flip gives a typed error or a verified-identical file") {
  auto full = small_checkpoint();
  auto ck = Checkpoint::open(Source::from_bytes(full, "ref.pt"));
  std::vector<std::vector<uint8_t>> ref;
  for (const auto& t : ck.tensors()) ref.push_back(t.tensor().to_contiguous());
  size_t caught = 0, same = 0;
  for (size_t i = 0; i < full.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto b = full;
      b[i] ^= static_cast<uint8_t>(1u << bit);
      ErrorCode c = try_open(b, /*verify=*/true);
      if (c != ErrorCode::internal) {
        ++caught;
        continue;
      }
      // Opened and verified: only flips in bytes nothing reads (padding,
      // unused header fields) may get here, and the data must be unchanged.
      auto ck2 = Checkpoint::open(Source::from_bytes(b, "flip.pt"));
      auto ts = ck2.tensors();
      REQUIRE(ts.size() == ref.size());
      for (size_t k = 0; k < ts.size(); ++k) CHECK(ts[k].tensor().to_contiguous() == ref[k]);
      ++same;
    }
  }
  CHECK(caught > same);
  MESSAGE("bit flips: " << caught << " caught, " << same << " harmless");
}

TEST_CASE("payload flips are caught by verify() through the CRC") {
  auto full = small_checkpoint();
  auto ck = Checkpoint::open(Source::from_bytes(full, "ref.pt"));
  const auto& st = ck.storages()[0];
  auto b = full;
  b[st->file_offset() + 3] ^= 0x10;
  CHECK(try_open(b, false) == ErrorCode::internal);  // opening reads no payload
  CHECK(try_open(b, true) == ErrorCode::crc_mismatch);
}

TEST_CASE("archive abuse: encrypted, overlapping, duplicate and traversal entries") {
  auto full = small_checkpoint();
  auto cds = central_records(full);
  REQUIRE(cds.size() == 8);

  SUBCASE("encrypted flag") {
    auto b = full;
    b[cds[0] + 8] |= 1;
    CHECK(try_open(b) == ErrorCode::unsupported_zip);
  }
  SUBCASE("unknown compression method") {
    auto b = full;
    b[cds[4] + 10] = 12;  // bzip2
    CHECK(try_open(b) == ErrorCode::unsupported_zip);
  }
  SUBCASE("two entries pointing at the same bytes") {
    auto b = full;
    uint32_t off0 = rd32(&b[cds[4] + 42]);
    wr32(&b[cds[5] + 42], off0);
    ErrorCode c = try_open(b);
    CHECK((c == ErrorCode::corrupt_zip));
  }
  SUBCASE("declared size of 2^32-1 on a STORED entry") {
    auto b = full;
    wr32(&b[cds[4] + 20], 0xFFFFFFFEu);
    wr32(&b[cds[4] + 24], 0xFFFFFFFEu);
    CHECK(try_open(b) == ErrorCode::corrupt_zip);
  }
  SUBCASE("central directory offset past the end") {
    auto b = full;
    for (size_t i = b.size() - 22; i > 0; --i)
      if (rd32(&b[i]) == 0x06064b50) {  // the ZIP64 end record's cd offset
        b[i + 48] = 0xFF;
        b[i + 49] = 0xFF;
        break;
      }
    CHECK(try_open(b) == ErrorCode::corrupt_zip);
  }
  SUBCASE("path traversal in a name") {
    auto b = full;
    // Rename "small/version" to "../xx/version" in both headers.
    std::string from = "small/version", to = "../xx/version";
    for (size_t i = 0; i + from.size() <= b.size(); ++i)
      if (std::memcmp(&b[i], from.data(), from.size()) == 0) std::memcpy(&b[i], to.data(), to.size());
    CHECK(try_open(b) == ErrorCode::corrupt_zip);
  }
  SUBCASE("duplicate names") {
    // Rename data/1 to data/0 in both headers.
    auto c = full;
    std::string d0 = "small/data/0", d1 = "small/data/1";
    size_t hits = 0;
    for (size_t i = 0; i + d1.size() <= c.size(); ++i)
      if (std::memcmp(&c[i], d1.data(), d1.size()) == 0) {
        std::memcpy(&c[i], d0.data(), d0.size());
        ++hits;
      }
    REQUIRE(hits == 2);
    CHECK(try_open(c) == ErrorCode::corrupt_zip);
  }
  SUBCASE("junk appended after the end record is tolerated and reported") {
    auto b = full;
    b.insert(b.end(), {'j', 'u', 'n', 'k'});
    // The EOCD comment length (0) no longer reaches the end: still found, junk counted.
    auto ck = Checkpoint::open(Source::from_bytes(b, "junk.pt"));
    CHECK(ck.zip()->trailing_bytes() == 4);
  }
}

TEST_CASE("storage records must match their declared sizes") {
  auto full = small_checkpoint();
  // Shrink the pickle's numel for storage 0 from 6 to 5: record holds 24 bytes.
  auto ck = Checkpoint::open(Source::from_bytes(full, "ref.pt"));
  std::vector<uint8_t> b = full;
  // The pid tuple ends with BININT1 6 followed by TUPLE 't' and BINPERSID 'Q'.
  bool patched = false;
  for (size_t i = 0; i + 3 < b.size(); ++i)
    if (b[i] == 'K' && b[i + 1] == 6 && b[i + 2] == 't' && b[i + 3] == 'Q') {
      b[i + 1] = 5;
      patched = true;
      break;
    }
  REQUIRE(patched);
  // data.pkl's CRC now fails first: the reader checks it on open.
  CHECK(try_open(b) == ErrorCode::crc_mismatch);
}

TEST_CASE("crc32 equals zlib's for every length, alignment and starting value") {
  // The carry-less-multiply path handles 16-byte blocks of inputs >= 64
  // bytes; zlib takes the rest. Both must compose to zlib's answer.
  std::vector<uint8_t> b(70'000);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (auto& c : b) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<uint8_t>(x);
  }
  int mismatches = 0;
  for (size_t len = 0; len <= 1100; ++len)
    for (size_t off = 0; off < 4; ++off) {
      const uint32_t init = static_cast<uint32_t>(len * 2654435761u + off);
      if (ckpt::crc32(init, b.data() + off, len) != ::crc32(init, b.data() + off, static_cast<uInt>(len))) ++mismatches;
    }
  CHECK(mismatches == 0);
  CHECK(ckpt::crc32(0, b.data(), b.size()) == ::crc32(0, b.data(), static_cast<uInt>(b.size())));
  // Chained calls equal one call.
  uint32_t chained = ckpt::crc32(0, b.data(), 1000);
  chained = ckpt::crc32(chained, b.data() + 1000, b.size() - 1000);
  CHECK(chained == ckpt::crc32(0, b.data(), b.size()));
  CHECK(ckpt::crc32(0, "123456789", 9) == 0xCBF43926u);  // the CRC-32 check value
}

TEST_CASE("fuzzer-found inputs stay fixed (tests/regressions)") {
  // Each file once made a fuzzer report (crash, leak, timeout). Each must
  // now open, or fail with a typed error, cleanly. Under the sanitizer build
  // a leak or overflow here fails the run.
  const std::string dir = std::string(CKPT_SOURCE_ROOT) + "/tests/regressions";
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".bin") continue;
    ++n;
    INFO(e.path().filename().string());
    auto bytes = testutil::read_file(e.path().string());
    try {
      auto ck = Checkpoint::open(Source::from_bytes(bytes, e.path().filename().string()));
      for (const auto& t : ck.tensors()) (void)t.tensor().to_contiguous();
      ck.verify();
    } catch (const Error& err) {
      CHECK(err.code() != ErrorCode::internal);
    }
  }
  CHECK(n >= 1);
}
