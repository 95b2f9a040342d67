// tests/hardening/hostile_check.cpp - opens hostile inputs and reports what
// libckpt made of them; test_hostile.py runs it in a subprocess under a
// memory limit (RLIMIT_AS) and a timer, in an empty working folder.
//
//   hostile_check open FILE...      open + read every tensor + verify(), one line per file:
//                                   FILE <tab> ok|error|FOREIGN <tab> code name <tab> seconds <tab> detail
//   hostile_check truncate FILE     every length in [0,4096] and [S-4096,S), the zip record
//                                   boundaries +-1 and 200 random lengths: a typed error (for a
//                                   zip: `truncated`), or the very same checkpoint when only
//                                   padding was cut (a TAR's trailing zero blocks)
//   hostile_check bitflip FILE      every bit of the zip headers (local, central, end records),
//                                   data.pkl, version and byteorder: a typed error or the very same
//                                   checkpoint (same tree, same tensor layouts, same payloads)
//   hostile_check payload FILE N    N random bit flips in tensor payloads: verify() must say crc_mismatch
//   hostile_check sample OUT        writes a small multi-tensor checkpoint with ckpt::save
//   hostile_check sanitized         prints 1 when built with AddressSanitizer (no RLIMIT_AS then)
//
// Every mode uses limits sized for a 256 MiB process (see options()) and
// checks each case takes at most 1 s. A
// sweep prints one summary line and exits 1 when any case broke a rule.
// "FOREIGN" means an exception that is not a ckpt::Error escaped (a defect).
#include <ckpt/ckpt.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

using Bytes = std::vector<uint8_t>;
constexpr double kMaxSeconds = 1.0;
constexpr uint64_t kMaxCopy = 64u << 20;

/// Limits for a process with 256 MiB and 1 s per file (docs/security.md,
/// "Limits for a memory budget"): inflated records, pickles and strings to
/// 64 MiB; the VM stack to 100,000 values (each value costs ~260 bytes, so
/// the default 50 M would allow 13 GB); tree walks to 200,000 nodes (a walk
/// keeps a path string per tensor it lists).
ckpt::OpenOptions options() {
  ckpt::OpenOptions o;
  o.limits.max_inflate_bytes = 64u << 20;
  o.limits.max_pickle_bytes = 64u << 20;
  o.limits.max_string_bytes = 64u << 20;
  o.limits.max_stack = 100'000;
  o.limits.max_walk_nodes = 200'000;
  return o;
}

Bytes slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "hostile_check: cannot read %s\n", p.c_str());
    std::exit(3);
  }
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// Everything a reader can observe of an opened checkpoint: the tree as our
/// writer serialises it, then each tensor's layout and payload checksum.
std::string digest(const ckpt::Checkpoint& ck) {
  std::string d = ckpt::container_name(ck.format().container);
  std::map<const ckpt::Storage*, std::string> keys;
  try {
    d += ckpt::pickle_dumps(ck.root(), [&](const std::shared_ptr<ckpt::Storage>& s) {
      return keys.emplace(s.get(), std::to_string(keys.size())).first->second;
    });
  } catch (const ckpt::Error&) {
    d += ckpt::repr(ck.root(), 1u << 20);
  }
  for (const auto& v : ck.tensors()) {
    const ckpt::Tensor& t = v.tensor();
    d += '\n';
    d += v.path;
    d += ' ';
    d += ckpt::dtype_name(t.dtype);
    d += " off=";
    d += std::to_string(t.storage_offset);
    for (size_t i = 0; i < t.shape.size(); ++i) {
      d += ' ';
      d += std::to_string(t.shape[i]);
      d += '/';
      d += std::to_string(t.stride[i]);
    }
    if (t.nbytes() <= kMaxCopy) {
      auto b = t.to_contiguous();
      d += " crc=" + std::to_string(ckpt::crc32(0, b.data(), b.size()));
    }
  }
  return d;
}

struct Outcome {
  bool ok = false;
  bool foreign = false;   // a non-ckpt exception escaped
  ckpt::ErrorCode code{};
  std::string detail;
  double seconds = 0;
  std::string digest;
};

/// Opens, reads every tensor and verifies: what a careful tool does.
Outcome attempt(const Bytes& bytes, const std::string& name, bool want_digest) {
  Outcome o;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    auto ck = ckpt::Checkpoint::open(ckpt::Source::from_bytes(bytes, name), options());
    for (const auto& v : ck.tensors())
      if (v.tensor().nbytes() <= kMaxCopy) (void)v.tensor().to_contiguous();
    ck.verify();
    (void)ckpt::repr(ck.root());
    if (want_digest) o.digest = digest(ck);
    o.ok = true;
  } catch (const ckpt::Error& e) {
    o.code = e.code();
    o.detail = e.what();
  } catch (const std::exception& e) {
    o.foreign = true;
    o.detail = std::string("foreign exception: ") + e.what();
  }
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return o;
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\t' || c == '\r') c = ' ';
  return s;
}

int mode_open(int argc, char** argv) {
  int bad = 0;
  for (int i = 2; i < argc; ++i) {
    std::fprintf(stderr, "opening %s\n", argv[i]);  // names the culprit if the process dies
    Outcome o = attempt(slurp(argv[i]), argv[i], false);
    const char* verdict = o.foreign ? "FOREIGN" : o.ok ? "ok" : "error";
    std::printf("%s\t%s\t%d %s\t%.4f\t%s\n", argv[i], verdict, o.ok ? 0 : static_cast<int>(o.code),
                o.ok || o.foreign ? "-" : ckpt::error_code_name(o.code), o.seconds, one_line(o.detail).c_str());
    std::fflush(stdout);
    if (o.foreign) ++bad;
  }
  return bad ? 1 : 0;
}

uint16_t le16(const Bytes& b, size_t p) { return static_cast<uint16_t>(b[p] | b[p + 1] << 8); }
uint32_t le32(const Bytes& b, size_t p) { return le16(b, p) | static_cast<uint32_t>(le16(b, p + 2)) << 16; }

/// Byte ranges of a zip's structures, found by scanning for signatures and
/// cross-checked by the reader itself (only meaningful for valid files).
struct Layout {
  std::vector<std::pair<uint64_t, uint64_t>> headers;  // [begin, end): local headers, central, end records
  std::vector<std::pair<uint64_t, uint64_t>> records;  // data.pkl, version, byteorder payloads
  std::vector<std::pair<uint64_t, uint64_t>> payloads; // data/<key> payloads
  std::set<uint64_t> boundaries;                       // every record start/end
};

Layout layout_of(const Bytes& file) {
  Layout L;
  auto src = ckpt::Source::from_bytes(file, "layout");
  ckpt::ZipArchive z(src);
  uint64_t cd_begin = 0;  // the central directory starts where the last entry's room ends
  for (const auto& e : z.entries()) {
    const uint64_t data = z.data_offset(e);
    L.headers.push_back({e.local_header_offset, data});
    const std::string_view rel = z.relative_name(e);
    auto& bucket = rel.substr(0, 5) == "data/" ? L.payloads : L.records;
    if (rel.substr(0, 5) == "data/" || rel == "data.pkl" || rel == "version" || rel == "byteorder")
      bucket.push_back({data, data + e.compressed_size});
    L.boundaries.insert(e.local_header_offset);
    L.boundaries.insert(data);
    L.boundaries.insert(data + e.compressed_size);
    cd_begin = std::max<uint64_t>(cd_begin, e.limit);
  }
  // Central directory and end records: from the first central header to EOF.
  for (uint64_t p = cd_begin; p + 4 <= file.size(); ++p)
    if (le32(file, p) == 0x02014b50 || le32(file, p) == 0x06054b50 || le32(file, p) == 0x06064b50 ||
        le32(file, p) == 0x07064b50)
      L.boundaries.insert(p);
  L.headers.push_back({cd_begin, file.size()});
  L.boundaries.insert(file.size());
  return L;
}

bool is_zip(const Bytes& b) { return b.size() >= 4 && le32(b, 0) == 0x04034b50; }

struct Tally {
  uint64_t cases = 0, errors = 0, same = 0, bad = 0;
  std::map<std::string, uint64_t> codes;
  double slowest = 0;
  void add(const Outcome& o) {
    ++cases;
    slowest = std::max(slowest, o.seconds);
    if (!o.ok && !o.foreign) {
      ++errors;
      ++codes[ckpt::error_code_name(o.code)];
    }
  }
  void fail(const std::string& what) {
    if (bad++ < 20) std::printf("FAIL %s\n", what.c_str());
  }
  int finish(const char* mode, const std::string& file) {
    std::string c;
    for (const auto& [k, v] : codes) c += " " + k + "=" + std::to_string(v);
    std::printf("%s %s: %llu cases, %llu typed errors, %llu identical, %llu failures, slowest %.3f s; codes:%s\n", mode,
                file.c_str(), static_cast<unsigned long long>(cases), static_cast<unsigned long long>(errors),
                static_cast<unsigned long long>(same), static_cast<unsigned long long>(bad), slowest, c.c_str());
    return bad ? 1 : 0;
  }
};

void check_common(Tally& t, const Outcome& o, const std::string& label) {
  t.add(o);
  if (o.foreign) t.fail(label + ": " + o.detail);
  if (o.seconds > kMaxSeconds) t.fail(label + ": took " + std::to_string(o.seconds) + " s");
  if (!o.ok && o.code == ckpt::ErrorCode::internal) t.fail(label + ": internal error " + o.detail);
}

int mode_truncate(const std::string& path) {
  const Bytes file = slurp(path);
  const uint64_t S = file.size();
  std::set<uint64_t> lengths;
  for (uint64_t L = 0; L <= 4096 && L < S; ++L) lengths.insert(L);
  for (uint64_t L = S > 4096 ? S - 4096 : 0; L < S; ++L) lengths.insert(L);
  if (is_zip(file))
    for (uint64_t b : layout_of(file).boundaries)
      for (uint64_t L : {b - 1, b, b + 1})
        if (b > 0 && L < S) lengths.insert(L);
  std::mt19937_64 rng(S);
  for (int i = 0; i < 200 && S > 0; ++i) lengths.insert(rng() % S);
  const Outcome base = attempt(file, path, true);
  Tally t;
  for (uint64_t L : lengths) {
    Bytes cut(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(L));
    Outcome o = attempt(cut, path, true);
    const std::string label = "length " + std::to_string(L);
    check_common(t, o, label);
    // Only padding may go (a TAR's zero blocks): then it is the same checkpoint.
    if (o.ok) {
      if (base.ok && o.digest == base.digest) ++t.same;
      else t.fail(label + ": a truncated file opened as a different checkpoint");
    }
    // The end-of-central-directory record is gone: say "truncated", not a generic zip error.
    // Every cut of a zip loses (part of) its end records, which sit last.
    if (!o.ok && is_zip(cut) && o.code != ckpt::ErrorCode::truncated) t.fail(label + ": " + o.detail);
  }
  return t.finish("truncate", path);
}

int mode_bitflip(const std::string& path) {
  const Bytes file = slurp(path);
  const Outcome base = attempt(file, path, true);
  if (!base.ok) {
    std::printf("FAIL the unmodified file does not open: %s\n", base.detail.c_str());
    return 1;
  }
  const Layout L = layout_of(file);
  std::set<uint64_t> bytes;
  for (const auto& ranges : {L.headers, L.records})
    for (auto [b, e] : ranges)
      for (uint64_t p = b; p < e; ++p) bytes.insert(p);
  Tally t;
  for (uint64_t p : bytes)
    for (int bit = 0; bit < 8; ++bit) {
      Bytes f = file;
      f[p] ^= static_cast<uint8_t>(1u << bit);
      Outcome o = attempt(f, path, true);
      const std::string label = "byte " + std::to_string(p) + " bit " + std::to_string(bit);
      check_common(t, o, label);
      if (o.ok) {
        if (o.digest == base.digest) ++t.same;
        else t.fail(label + ": opened as a different checkpoint");
      }
    }
  return t.finish("bitflip", path);
}

int mode_payload(const std::string& path, uint64_t n) {
  const Bytes file = slurp(path);
  const Layout L = layout_of(file);
  uint64_t total = 0;
  for (auto [b, e] : L.payloads) total += e - b;
  if (total == 0) {
    std::printf("FAIL no tensor payload in %s\n", path.c_str());
    return 1;
  }
  std::mt19937_64 rng(42);
  Tally t;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t k = rng() % (total * 8);
    uint64_t bit = k % 8, off = k / 8, pos = 0;
    for (auto [b, e] : L.payloads) {
      if (off < e - b) {
        pos = b + off;
        break;
      }
      off -= e - b;
    }
    Bytes f = file;
    f[pos] ^= static_cast<uint8_t>(1u << bit);
    Outcome o = attempt(f, path, false);
    const std::string label = "payload byte " + std::to_string(pos) + " bit " + std::to_string(bit);
    check_common(t, o, label);
    if (o.ok || o.code != ckpt::ErrorCode::crc_mismatch) t.fail(label + ": not reported as crc_mismatch: " + o.detail);
  }
  return t.finish("payload", path);
}

int mode_sample(const std::string& out) {
  ckpt::Document doc;
  ckpt::Value* sd = doc.ordered_dict();
  auto floats = [](size_t n, float scale) {
    Bytes b(n * 4);
    for (size_t i = 0; i < n; ++i) {
      float x = scale * static_cast<float>(i) - 1.5f;
      std::memcpy(b.data() + 4 * i, &x, 4);
    }
    return b;
  };
  sd->set("fc1.weight", doc.tensor(ckpt::Tensor::from_bytes(ckpt::DType::float32, {64, 32}, floats(2048, 0.25f))));
  sd->set("fc1.bias", doc.tensor(ckpt::Tensor::from_bytes(ckpt::DType::float32, {16}, floats(16, 0.5f))));
  Bytes ints(24);
  for (size_t i = 0; i < ints.size(); ++i) ints[i] = static_cast<uint8_t>(i * 7);
  sd->set("steps", doc.tensor(ckpt::Tensor::from_bytes(ckpt::DType::int64, {3}, ints)));
  ckpt::Value* root = doc.dict();
  root->set("model", sd);
  root->set("epoch", 3);
  root->set("args", doc.dict()->set("lr", 0.03)->set("dataset", "seq-cifar10"));
  ckpt::SaveOptions so;
  so.durable = false;
  ckpt::save(out, *root, so);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "open") return mode_open(argc, argv);
    if (mode == "truncate" && argc == 3) return mode_truncate(argv[2]);
    if (mode == "bitflip" && argc == 3) return mode_bitflip(argv[2]);
    if (mode == "payload" && argc == 4) return mode_payload(argv[2], std::stoull(argv[3]));
    if (mode == "sample" && argc == 3) return mode_sample(argv[2]);
    if (mode == "sanitized") {
#if defined(__SANITIZE_ADDRESS__)
      std::puts("1");
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
      std::puts("1");
#else
      std::puts("0");
#endif
#else
      std::puts("0");
#endif
      return 0;
    }
  } catch (const std::exception& e) {
    std::printf("FAIL %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr,
               "usage: hostile_check open FILE... | truncate FILE | bitflip FILE | payload FILE N | sample OUT | sanitized\n");
  return 2;
}
