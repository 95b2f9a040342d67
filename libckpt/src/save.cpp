// torch.save's zip layout, streamed through an AtomicFile.
#include <algorithm>
#include <future>
#include <random>

#include "ckpt/atomic_file.hpp"
#include "ckpt/checkpoint.hpp"
#include "ckpt/error.hpp"
#include "ckpt/zip.hpp"
#include "byteswap.hpp"

namespace ckpt {
namespace {

constexpr uint64_t k32 = 0xFFFFFFFFull;

void le(std::string& s, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
}

struct Written {
  std::string name;
  uint64_t offset, size;
  uint32_t crc;
};

class ZipWriter {
 public:
  ZipWriter(AtomicFile& f, std::string root) : f_(f), root_(std::move(root)) {}

  void add(const std::string& name, const void* data, uint64_t size) {
    begin(name, size);
    f_.write(data, static_cast<size_t>(size));
    end(crc32(0, data, static_cast<size_t>(size)));
  }
  void add(const std::string& name, const std::string& s) { add(name, s.data(), s.size()); }

  // A storage, little-endian. Large little-endian storages are CRC'd on a
  // second thread while this one writes them (the two passes cost about the
  // same, so the save takes about the time of one); the pages of a mapped
  // input are released once both are done, so peak RSS is bounded by the
  // largest storage, not the checkpoint.
  void add_storage(const std::string& name, const Storage& st) {
    const uint64_t size = st.nbytes();
    begin(name, size);
    auto bytes = st.bytes();
    uint32_t crc = 0;
    st.prefetch_pages();  // one call instead of faults from both passes: ~30% of a save
    if (!st.big_endian()) {
      if (bytes.size() >= (size_t{4} << 20)) {
        auto job = std::async(std::launch::async, [&bytes] { return crc32(0, bytes.data(), bytes.size()); });
        try {
          f_.write(bytes.data(), bytes.size());
        } catch (...) {
          job.wait();
          throw;
        }
        crc = job.get();
      } else {
        crc = crc32(0, bytes.data(), bytes.size());
        f_.write(bytes.data(), bytes.size());
      }
    } else {
      const int unit = dtype_swap_unit(st.dtype());
      std::vector<uint8_t> buf;
      const size_t c = (size_t{8} << 20) / static_cast<size_t>(unit) * static_cast<size_t>(unit);
      for (size_t off = 0; off < bytes.size(); off += c) {
        size_t n = std::min(c, bytes.size() - off);
        buf.assign(bytes.data() + off, bytes.data() + off + n);
        detail::swap_units(buf.data(), n, unit);
        crc = crc32(crc, buf.data(), n);
        f_.write(buf.data(), n);
      }
    }
    st.release_pages();
    // A storage read from a STORED zip record is checked against the CRC-32
    // its archive declares, so a damaged payload is never copied into a new
    // file under a fresh, valid CRC: for free when the record is exactly the
    // storage (the CRC is computed anyway), by a separate pass otherwise.
    if (auto want = st.record_crc(); want && !st.big_endian()) {
      if (crc != *want) {
        st.verify();  // throws crc_mismatch naming the file, entry and offset
        throw Error(ErrorCode::crc_mismatch, "storage " + st.key + ": the bytes read do not match the CRC-32 of " + st.entry);
      }
    } else {
      st.verify();
    }
    end(crc);
  }

  void finish() {
    const uint64_t cd_off = pos();
    std::string cd;
    for (const auto& w : files_) {
      std::string full = root_ + "/" + w.name;
      bool big_size = w.size >= k32, big_off = w.offset >= k32;
      std::string extra;
      if (big_size || big_off) {
        std::string z;
        if (big_size) {
          le(z, w.size, 8);
          le(z, w.size, 8);
        }
        if (big_off) le(z, w.offset, 8);
        le(extra, 1, 2);
        le(extra, z.size(), 2);
        extra += z;
      }
      le(cd, 0x02014b50, 4);
      le(cd, (big_size || big_off) ? 0x2d : 0, 2);  // version made by
      le(cd, (big_size || big_off) ? 0x2d : 0, 2);  // version needed
      le(cd, 0x0808, 2);
      le(cd, 0, 2);  // STORED
      le(cd, 0, 4);  // time, date
      le(cd, w.crc, 4);
      le(cd, big_size ? k32 : w.size, 4);
      le(cd, big_size ? k32 : w.size, 4);
      le(cd, full.size(), 2);
      le(cd, extra.size(), 2);
      le(cd, 0, 2);  // comment
      le(cd, 0, 2);  // disk
      le(cd, 0, 2);  // internal attributes
      le(cd, 0, 4);  // external attributes
      le(cd, big_off ? k32 : w.offset, 4);
      cd += full;
      cd += extra;
    }
    f_.write(cd.data(), cd.size());
    const uint64_t z64_off = pos();
    const uint64_t n = files_.size();
    std::string tail;
    le(tail, 0x06064b50, 4);
    le(tail, 44, 8);
    le(tail, 0x031e, 2);
    le(tail, 0x2d, 2);
    le(tail, 0, 4);
    le(tail, 0, 4);
    le(tail, n, 8);
    le(tail, n, 8);
    le(tail, cd.size(), 8);
    le(tail, cd_off, 8);
    le(tail, 0x07064b50, 4);
    le(tail, 0, 4);
    le(tail, z64_off, 8);
    le(tail, 1, 4);
    le(tail, 0x06054b50, 4);
    le(tail, 0, 2);
    le(tail, 0, 2);
    le(tail, std::min<uint64_t>(n, 0xFFFF), 2);
    le(tail, std::min<uint64_t>(n, 0xFFFF), 2);
    le(tail, std::min<uint64_t>(cd.size(), k32), 4);
    le(tail, std::min<uint64_t>(cd_off, k32), 4);
    le(tail, 0, 2);
    f_.write(tail.data(), tail.size());
  }

 private:
  uint64_t pos() const { return f_.bytes_written(); }

  void begin(const std::string& name, uint64_t size) {
    cur_ = Written{name, pos(), size, 0};
    std::string full = root_ + "/" + name;
    const uint64_t cursor = pos();
    const bool big_size = size >= k32, big_off = cursor >= k32;
    std::string z64;
    if (big_size || big_off) {
      std::string z;
      if (big_size) {
        le(z, size, 8);
        le(z, size, 8);
      }
      if (big_off) le(z, cursor, 8);
      le(z64, 1, 2);
      le(z64, z.size(), 2);
      z64 += z;
    }
    // Pad the payload to 64 bytes with an "FB" extra field, as torch does.
    uint64_t start = cursor + 30 + full.size() + z64.size() + 4;
    uint64_t pad = (64 - start % 64) % 64;
    std::string h;
    le(h, 0x04034b50, 4);
    le(h, (big_size || big_off) ? 0x2d : 0, 2);
    le(h, 0x0808, 2);
    le(h, 0, 2);
    le(h, 0, 4);
    le(h, 0, 4);  // crc
    le(h, big_size ? k32 : 0, 4);
    le(h, big_size ? k32 : 0, 4);
    le(h, full.size(), 2);
    le(h, z64.size() + 4 + pad, 2);
    h += full;
    h += z64;
    h += "FB";
    le(h, pad, 2);
    h.append(static_cast<size_t>(pad), 'Z');
    f_.write(h.data(), h.size());
  }

  void end(uint32_t crc) {
    cur_.crc = crc;
    std::string dd;
    le(dd, 0x08074b50, 4);
    le(dd, crc, 4);
    if (cur_.size >= k32) {
      le(dd, cur_.size, 8);
      le(dd, cur_.size, 8);
    } else {
      le(dd, cur_.size, 4);
      le(dd, cur_.size, 4);
    }
    f_.write(dd.data(), dd.size());
    files_.push_back(cur_);
  }

  AtomicFile& f_;
  std::string root_;
  Written cur_{};
  std::vector<Written> files_;
};

std::string default_archive_name(const std::string& path) {
  auto slash = path.rfind('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  auto dot = base.rfind('.');
  if (dot != std::string::npos && dot > 0) base = base.substr(0, dot);
  if (base.empty()) base = "archive";
  return base;
}

std::string serialization_id() {
  std::random_device rd;
  std::string s;
  for (int i = 0; i < 40; ++i) s += static_cast<char>('0' + rd() % 10);
  return s;
}

}  // namespace

uint64_t save(const std::string& path, const Value& root, const SaveOptions& opts) {
  std::vector<std::shared_ptr<Storage>> storages;
  std::string pkl = pickle_dumps(root, [&](const std::shared_ptr<Storage>& s) {
    storages.push_back(s);
    return std::to_string(storages.size() - 1);
  });
  std::string archive = opts.archive_name.empty() ? default_archive_name(path) : opts.archive_name;
  for (char c : archive)
    if (c == '/' || c == '\\' || c == '\0') throw Error(ErrorCode::invalid_argument, "archive name '" + archive + "' contains a path separator");
  AtomicFile f(path, opts.durable);
  ZipWriter z(f, archive);
  z.add("data.pkl", pkl);
  z.add(".format_version", std::string("1"));
  z.add(".storage_alignment", std::string("64"));
  z.add("byteorder", std::string("little"));
  uint64_t payload = 0;
  for (size_t i = 0; i < storages.size(); ++i) {
    z.add_storage("data/" + std::to_string(i), *storages[i]);
    payload += storages[i]->nbytes();
    if (opts.progress) opts.progress(payload);
  }
  z.add("version", std::string("3\n"));
  z.add(".data/serialization_id", serialization_id());
  z.finish();
  const uint64_t n = f.bytes_written();
  f.commit();
  return n;
}

}  // namespace ckpt
