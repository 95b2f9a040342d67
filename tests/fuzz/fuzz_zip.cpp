// fuzz_zip: the zip reader alone (ckpt::ZipArchive): directory parsing, name
// index, local headers, stored views, DEFLATE within its cap, CRC checks.
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto src = ckpt::Source::from_bytes(std::vector<uint8_t>(data, data + size), "fuzz.zip");
    ckpt::ZipArchive z(src, fuzz::limits());
    (void)z.root();
    (void)z.trailing_bytes();
    for (const auto& e : z.entries()) {
      // Every name inside the root folder is found again by the index, as
      // that very entry (names are unique).
      const std::string_view rel = z.relative_name(e);
      if (z.root().empty() || rel.size() != e.name.size()) FUZZ_CHECK(z.find(rel) == &e);
      FUZZ_CHECK(e.compressed_size <= src->size());
      try {
        const uint64_t off = z.data_offset(e);
        FUZZ_CHECK(ckpt::detail::fits(off, e.compressed_size, src->size()));
        if (e.method == 0) {
          auto v = z.stored_bytes(e);
          FUZZ_CHECK(v.size() == e.compressed_size);
          FUZZ_CHECK(v.data() >= src->data() && v.data() + v.size() <= src->data() + src->size());
        }
        auto b = z.read(e, true);
        FUZZ_CHECK(b.size() == e.uncompressed_size);
        z.verify_crc(e);
      } catch (const ckpt::Error& err) {
        fuzz::check_error(err);
      }
    }
  } catch (const ckpt::Error& e) {
    fuzz::check_error(e);
  }
  return 0;
}
