// HDF5 export and import (docs/hdf5-layout.md), on libhdf5's C API.
//
// Writing: the tree is walked once to plan groups, datasets, hard links and
// JSON attributes; compressed datasets are then written chunk by chunk with
// H5Dwrite_chunk, the chunks shuffled and compressed on worker threads (the
// bytes are exactly what HDF5's shuffle + deflate / zstd filters produce), so
// the file is the same as libhdf5 would write but compression runs in
// parallel. Payloads stream from the (mapped) storages; each storage's pages
// are released once written, so memory stays near one tensor.
#include "ckpt/hdf5.hpp"

#include <hdf5.h>
#include <zlib.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <csignal>
#include <unistd.h>
#include <zstd.h>
#if CKPT_HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include "ckpt/detail/checked.hpp"
#include "ckpt/error.hpp"
#include "ckpt/pickle.hpp"
#include "byteswap.hpp"
#include "hdf5_zstd_filter.hpp"

namespace ckpt {

namespace {

// ---------------------------------------------------------------- libhdf5 glue

/// An HDF5 identifier closed by its matching H5*close.
class H {
 public:
  H() = default;
  H(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  H(H&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  H& operator=(H&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      close_ = o.close_;
      o.id_ = -1;
    }
    return *this;
  }
  H(const H&) = delete;
  H& operator=(const H&) = delete;
  ~H() { reset(); }
  void reset() noexcept {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }
  hid_t get() const noexcept { return id_; }
  operator hid_t() const noexcept { return id_; }  // NOLINT: C API glue
  bool valid() const noexcept { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

/// The innermost message of libhdf5's error stack (then cleared).
std::string hdf5_message() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, [](unsigned n, const H5E_error2_t* e, void* data) -> herr_t {
    auto* out = static_cast<std::string*>(data);
    if (n == 0 && e->desc) *out = e->desc;
    return 0;
  }, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg;
}

[[noreturn]] void fail(ErrorCode code, const std::string& what, const std::string& path, const std::string& key = {}) {
  std::string m = hdf5_message();
  throw Error(code, m.empty() ? what : what + " (libhdf5: " + m + ")", path, {}, Error::no_offset, key);
}

hid_t check(hid_t id, const char* what, const std::string& path, const std::string& key = {}) {
  if (id < 0) fail(ErrorCode::io_error, what, path, key);
  return id;
}

}  // namespace

namespace {

void init_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] {
    H5open();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // the library never prints
    // Registered directly: H5Zfilter_avail would first search the system's
    // plugin folder and dlopen every filter plugin there (Debian's ZFP one
    // leaks in its static initialiser), which nothing here needs.
    H5Zregister(&detail::kZstdFilterClass);
    H5Eclear2(H5E_DEFAULT);
  });
}

// ---------------------------------------------------------------- types

/// A file (and memory) type for a dtype, and what it is stored as when that
/// differs from the dtype ("" when the dataset holds the dtype itself).
struct StoredType {
  H type;
  std::string stored_as;
  int size = 0;  ///< bytes per stored element
};

H copy_type(hid_t t) { return H(H5Tcopy(t), H5Tclose); }

H half_type() {
  H t = copy_type(H5T_IEEE_F32LE);
  H5Tset_fields(t, 15, 10, 5, 0, 10);
  H5Tset_size(t, 2);
  H5Tset_ebias(t, 15);
  return t;
}

H bool_type() {
  H t(H5Tenum_create(H5T_NATIVE_INT8), H5Tclose);
  int8_t f = 0, tr = 1;
  H5Tenum_insert(t, "FALSE", &f);
  H5Tenum_insert(t, "TRUE", &tr);
  return t;
}

H complex_type(H part, size_t part_size) {
  H t(H5Tcreate(H5T_COMPOUND, 2 * part_size), H5Tclose);
  H5Tinsert(t, "r", 0, part);
  H5Tinsert(t, "i", part_size, part);
  return t;
}

H raw_uint(int size) {
  switch (size) {
    case 1: return copy_type(H5T_STD_U8LE);
    case 2: return copy_type(H5T_STD_U16LE);
    case 4: return copy_type(H5T_STD_U32LE);
    default: return copy_type(H5T_STD_U64LE);
  }
}

StoredType stored_type(DType d, Hdf5BF16 bf16) {
  const int es = dtype_size(d);
  switch (d) {
    case DType::float64: return {copy_type(H5T_IEEE_F64LE), "", 8};
    case DType::float32: return {copy_type(H5T_IEEE_F32LE), "", 4};
    case DType::float16: return {half_type(), "", 2};
    case DType::bfloat16:
      if (bf16 == Hdf5BF16::float32) return {copy_type(H5T_IEEE_F32LE), "float32", 4};
      return {copy_type(H5T_STD_U16LE), "bfloat16-bits", 2};
    case DType::int64: return {copy_type(H5T_STD_I64LE), "", 8};
    case DType::int32: return {copy_type(H5T_STD_I32LE), "", 4};
    case DType::int16: return {copy_type(H5T_STD_I16LE), "", 2};
    case DType::int8: return {copy_type(H5T_STD_I8LE), "", 1};
    case DType::uint8: return {copy_type(H5T_STD_U8LE), "", 1};
    case DType::uint16: return {copy_type(H5T_STD_U16LE), "", 2};
    case DType::uint32: return {copy_type(H5T_STD_U32LE), "", 4};
    case DType::uint64: return {copy_type(H5T_STD_U64LE), "", 8};
    case DType::bool_: return {bool_type(), "", 1};
    case DType::complex128: return {complex_type(copy_type(H5T_IEEE_F64LE), 8), "", 16};
    case DType::complex64: return {complex_type(copy_type(H5T_IEEE_F32LE), 4), "", 8};
    case DType::complex32: return {complex_type(half_type(), 2), "", 4};
    default:  // float8, float4, bits, quantized: their bits, unsigned
      return {raw_uint(es), "bits", es};
  }
}

// ---------------------------------------------------------------- attributes

H string_type() {
  H t = copy_type(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}

void attr_string(hid_t obj, const std::string& name, const std::string& value, const std::string& path) {
  H type = string_type();
  H space(H5Screate(H5S_SCALAR), H5Sclose);
  H a(check(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), "cannot create an attribute", path, name), H5Aclose);
  const char* p = value.c_str();
  if (H5Awrite(a, type, &p) < 0) fail(ErrorCode::io_error, "cannot write attribute " + name, path);
}

void attr_strings(hid_t obj, const std::string& name, const std::vector<std::string>& values, const std::string& path) {
  H type = string_type();
  hsize_t n = values.size();
  H space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  H a(check(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), "cannot create an attribute", path, name), H5Aclose);
  std::vector<const char*> p;
  for (const auto& v : values) p.push_back(v.c_str());
  if (H5Awrite(a, type, p.data()) < 0) fail(ErrorCode::io_error, "cannot write attribute " + name, path);
}

void attr_int(hid_t obj, const std::string& name, int64_t v, const std::string& path) {
  H space(H5Screate(H5S_SCALAR), H5Sclose);
  H a(check(H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT), "cannot create an attribute", path, name), H5Aclose);
  if (H5Awrite(a, H5T_NATIVE_INT64, &v) < 0) fail(ErrorCode::io_error, "cannot write attribute " + name, path);
}

void attr_ints(hid_t obj, const std::string& name, const std::vector<int64_t>& v, const std::string& path) {
  hsize_t n = v.size();
  H space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  H a(check(H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT), "cannot create an attribute", path, name), H5Aclose);
  if (!v.empty() && H5Awrite(a, H5T_NATIVE_INT64, v.data()) < 0) fail(ErrorCode::io_error, "cannot write attribute " + name, path);
}

/// JSON text as a string attribute; over 60,000 bytes it is split into
/// NAME.0, NAME.1, ... (cut at UTF-8 boundaries) with NAME.parts = count.
void attr_json(hid_t obj, const std::string& name, const std::string& text, const std::string& path) {
  constexpr size_t kPart = 60000;
  if (text.size() <= kPart) return attr_string(obj, name, text, path);
  size_t pos = 0;
  int64_t part = 0;
  while (pos < text.size()) {
    size_t n = std::min(kPart, text.size() - pos);
    while (n > 0 && pos + n < text.size() && (static_cast<unsigned char>(text[pos + n]) & 0xC0) == 0x80) --n;
    attr_string(obj, name + "." + std::to_string(part++), text.substr(pos, n), path);
    pos += n;
  }
  attr_int(obj, name + ".parts", part, path);
}

std::optional<std::string> read_attr_string(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return std::nullopt;
  }
  H a(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  if (!a.valid()) return std::nullopt;
  H type(H5Aget_type(a), H5Tclose);
  H space(H5Aget_space(a), H5Sclose);
  if (!type.valid() || !space.valid() || H5Tget_class(type) != H5T_STRING || H5Sget_simple_extent_npoints(space) != 1) return std::nullopt;
  if (H5Tis_variable_str(type) > 0) {
    H mem = string_type();
    char* p = nullptr;
    if (H5Aread(a, mem, &p) < 0 || !p) return std::nullopt;
    std::string s(p);
    H5free_memory(p);
    return s;
  }
  size_t n = H5Tget_size(type);
  if (n == 0 || n > (size_t{1} << 20)) return std::nullopt;
  std::string s(n, '\0');
  H mem = copy_type(H5T_C_S1);
  H5Tset_size(mem, n);
  if (H5Aread(a, mem, s.data()) < 0) return std::nullopt;
  s.resize(std::strlen(s.c_str()));
  return s;
}

std::optional<int64_t> read_attr_int(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return std::nullopt;
  }
  H a(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  H type(H5Aget_type(a), H5Tclose);
  H space(H5Aget_space(a), H5Sclose);
  if (!type.valid() || H5Tget_class(type) != H5T_INTEGER || H5Sget_simple_extent_npoints(space) != 1) return std::nullopt;
  int64_t v = 0;
  if (H5Aread(a, H5T_NATIVE_INT64, &v) < 0) return std::nullopt;
  return v;
}

// ---------------------------------------------------------------- names

/// A key component as an HDF5 link name: '%', '/' and control characters
/// percent-encoded; "." and ".." (reserved) encoded; "" becomes "%".
std::string link_name(std::string_view c) {
  if (c.empty()) return "%";
  std::string out;
  for (unsigned char ch : c) {
    if (ch == '%' || ch == '/' || ch < 0x20 || ch == 0x7f) {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", ch);
      out += buf;
    } else {
      out += static_cast<char>(ch);
    }
  }
  if (out == "." || out == "..") {
    std::string e;
    for (size_t i = 0; i < out.size(); ++i) e += "%2E";
    return e;
  }
  return out;
}

std::string unescape_name(std::string_view s) {
  if (s == "%") return "";
  auto hexv = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hexv(s[i + 1]) >= 0 && hexv(s[i + 2]) >= 0) {
      out += static_cast<char>(hexv(s[i + 1]) * 16 + hexv(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string> dotted(std::string_view key) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t dot = key.find('.', start);
    parts.emplace_back(key.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (dot == std::string_view::npos) return parts;
    start = dot + 1;
  }
}

// ---------------------------------------------------------------- planning

/// The tree of HDF5 names: children by (key component, is-dataset), each with
/// a link name unique among its siblings (a clash gets "~1", "~2", ...).
struct NameNode {
  std::string path;  // absolute HDF5 path
  std::map<std::pair<std::string, bool>, std::unique_ptr<NameNode>> children;
  std::set<std::string> used;
  bool created = false;  // the group exists in the file
  std::vector<std::pair<std::string, const Value*>> json;  // attributes to write

  NameNode* child(const std::string& comp, bool dataset) {
    auto key = std::make_pair(comp, dataset);
    auto it = children.find(key);
    if (it != children.end() && !dataset) return it->second.get();
    std::string base = link_name(comp), name = base;
    for (int k = 1; used.count(name); ++k) name = base + "~" + std::to_string(k);
    used.insert(name);
    auto node = std::make_unique<NameNode>();
    node->path = (path == "/" ? "/" : path + "/") + name;
    NameNode* raw = node.get();
    if (it == children.end()) children.emplace(key, std::move(node));
    else extra.push_back(std::move(node));  // a second dataset with the same components
    return raw;
  }
  std::vector<std::unique_ptr<NameNode>> extra;
};

struct PlannedDataset {
  const Tensor* t = nullptr;
  std::string original_key, key_path;
  NameNode* name = nullptr;
  std::vector<NameNode*> groups;       // groups to create first, outermost first
  std::vector<std::string> aliases;    // key paths of the hard links
  std::vector<NameNode*> link_names;
  std::vector<std::vector<NameNode*>> link_groups;
};

struct ViewKey {
  const Storage* s;
  DType d;
  int64_t off;
  std::vector<int64_t> shape, stride;
  bool operator<(const ViewKey& o) const {
    return std::tie(s, d, off, shape, stride) < std::tie(o.s, o.d, o.off, o.shape, o.stride);
  }
};

class Planner {
 public:
  explicit Planner(bool json) : json_(json) {
    root_.path = "/";
    root_.used.insert("_ckpt");
  }

  void walk(const Value& v) { visit(v, {}, "", 0); }

  NameNode root_;
  std::vector<PlannedDataset> datasets;

 private:
  static constexpr uint64_t kMaxNodes = kDefaultMaxWalkNodes;
  static constexpr uint32_t kMaxDepth = 1000;

  // Returns true when `v` holds a tensor (it then has a group or dataset).
  bool visit(const Value& v, const std::vector<std::string>& comps, const std::string& key_path, uint32_t depth) {
    if (++visited_ > kMaxNodes) throw Error(ErrorCode::limit_exceeded, "tree walk visited more than " + std::to_string(kMaxNodes) + " nodes", {}, {}, Error::no_offset, key_path);
    if (depth > kMaxDepth) throw Error(ErrorCode::limit_exceeded, "value tree deeper than 1000 levels (or cyclic)", {}, {}, Error::no_offset, key_path);
    bool any = false;
    auto child = [&](const Value& c, const std::string& key, bool split) {
      std::vector<std::string> cc = comps;
      if (split) {
        for (auto& p : dotted(key)) cc.push_back(std::move(p));
      } else {
        cc.push_back(key);
      }
      std::string kp = key_path.empty() ? key : key_path + "/" + key;
      if (c.is(Kind::tensor)) {
        add_tensor(c.tensor(), cc, comps.size(), key, kp);
        any = true;
        return;
      }
      bool container = c.is_dict() || c.is_sequence() || c.is(Kind::object);
      size_t mark = pending_.size();
      if (container && visit(c, cc, kp, depth + 1)) {
        any = true;
        return;
      }
      pending_.resize(mark);
      pending_.push_back({comps, key, &c});
    };
    switch (v.kind()) {
      case Kind::tensor:
        add_tensor(v.tensor(), comps, comps.size(), key_path, key_path.empty() ? "" : key_path);
        return true;
      case Kind::dict:
        for (const auto& [k, c] : v.items())
          child(*c, k->is(Kind::string) ? k->as_str() : key_component(*k), k->is(Kind::string));
        break;
      case Kind::list: case Kind::tuple: {
        auto e = v.elements();
        for (size_t i = 0; i < e.size(); ++i) child(*e[i], std::to_string(i), false);
        break;
      }
      case Kind::object:
        if (v.state()) child(*v.state(), "__state__", false);
        for (const auto& [k, c] : v.object_items()) child(*c, key_component(*k), false);
        break;
      default:
        break;
    }
    return any;
  }

 public:
  struct Pending {
    std::vector<std::string> comps;
    std::string name;
    const Value* v;
  };
  std::vector<Pending> pending_;

  /// Resolves the pending JSON attributes onto their groups (root, or groups
  /// that hold tensors; others were folded into their parent's attribute).
  void place_json() {
    if (!json_) return;
    for (auto& p : pending_) {
      NameNode* n = &root_;
      bool ok = true;
      for (const auto& c : p.comps) {
        auto it = n->children.find({c, false});
        if (it == n->children.end()) {
          ok = false;
          break;
        }
        n = it->second.get();
      }
      if (ok) n->json.emplace_back(p.name, p.v);
    }
  }

 private:
  void add_tensor(const Tensor& t, const std::vector<std::string>& comps, size_t /*parent_len*/, const std::string& key,
                  const std::string& key_path) {
    std::vector<std::string> cc = comps;
    if (cc.empty()) cc.push_back("tensor");  // a bare tensor at the root
    ViewKey vk{t.storage.get(), t.dtype, t.storage_offset, t.shape, t.stride};
    std::vector<NameNode*> groups;
    NameNode* n = &root_;
    for (size_t i = 0; i + 1 < cc.size(); ++i) {
      n = n->child(cc[i], false);
      groups.push_back(n);
    }
    NameNode* leaf = n->child(cc.back(), true);
    auto it = views_.find(vk);
    if (it != views_.end()) {
      PlannedDataset& d = datasets[it->second];
      d.aliases.push_back(key_path);
      d.link_names.push_back(leaf);
      d.link_groups.push_back(std::move(groups));
      return;
    }
    views_.emplace(std::move(vk), datasets.size());
    PlannedDataset d;
    d.t = &t;
    d.original_key = key;
    d.key_path = key_path;
    d.name = leaf;
    d.groups = std::move(groups);
    datasets.push_back(std::move(d));
  }

  bool json_;
  uint64_t visited_ = 0;
  std::map<ViewKey, size_t> views_;
};

// ---------------------------------------------------------------- chunk pipeline

struct ChunkJob {
  hid_t dset = -1;
  std::vector<hsize_t> offset;
  const uint8_t* src = nullptr;
  size_t src_bytes = 0;    // bytes of data in this chunk
  size_t chunk_bytes = 0;  // full chunk (edge chunks padded with zeros)
  int elem = 1;
  std::shared_ptr<const void> hold;  // keeps a materialised tensor alive
  std::vector<uint8_t> out;
  bool last_of_dataset = false;
  std::function<void()> on_written;  // release pages, close the dataset
  uint64_t payload = 0;              // bytes counted for progress
  enum State { pending, running, done } state = pending;
  std::string error;
};

class ChunkPipeline {
 public:
  ChunkPipeline(Hdf5Compression c, int level, bool shuffle, unsigned threads, const std::string& path,
                std::function<void(uint64_t)> progress)
      : comp_(c), level_(level), shuffle_(shuffle), path_(path), progress_(std::move(progress)) {
    unsigned n = threads ? threads : std::max(1u, std::thread::hardware_concurrency());
    window_ = 4 * static_cast<size_t>(n) + 4;
    for (unsigned i = 0; i + 1 < n; ++i) workers_.emplace_back([this] { work(); });
  }
  ~ChunkPipeline() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }

  void push(std::unique_ptr<ChunkJob> job) {
    while (true) {
      std::unique_lock<std::mutex> l(m_);
      if (q_.size() < window_) break;
      l.unlock();
      write_front();
    }
    {
      std::lock_guard<std::mutex> l(m_);
      q_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

  void drain() {
    for (;;) {
      {
        std::lock_guard<std::mutex> l(m_);
        if (q_.empty()) return;
      }
      write_front();
    }
  }

  uint64_t written() const { return written_; }

 private:
  void compress(ChunkJob& j) const {
    std::vector<uint8_t> raw;
    const uint8_t* data = j.src;
    if (j.chunk_bytes != j.src_bytes || (shuffle_ && j.elem > 1)) {
      raw.assign(j.chunk_bytes, 0);
      if (shuffle_ && j.elem > 1) {  // HDF5's shuffle: byte k of every element, then byte k+1...
        const size_t n = j.chunk_bytes / static_cast<size_t>(j.elem);
        const size_t have = j.src_bytes / static_cast<size_t>(j.elem);
        const size_t es = static_cast<size_t>(j.elem);
        for (size_t b = 0; b < es; ++b) {
          uint8_t* dst = raw.data() + b * n;
          const uint8_t* s = j.src + b;
          for (size_t i = 0; i < have; ++i) dst[i] = s[i * es];
        }
      } else {
        std::memcpy(raw.data(), j.src, j.src_bytes);
      }
      data = raw.data();
    }
    if (comp_ == Hdf5Compression::gzip) {
#if CKPT_HAVE_LIBDEFLATE
      // libdeflate: the same zlib stream HDF5's deflate filter reads, 2-3x faster than zlib.
      if (level_ >= 1) {
        struct Compressor {
          libdeflate_compressor* c = nullptr;
          int level = -1;
          ~Compressor() { libdeflate_free_compressor(c); }
        };
        thread_local Compressor tc;
        if (tc.level != level_) {
          libdeflate_free_compressor(tc.c);
          tc.c = libdeflate_alloc_compressor(level_);
          tc.level = level_;
        }
        if (!tc.c) throw std::bad_alloc();
        j.out.resize(libdeflate_zlib_compress_bound(tc.c, j.chunk_bytes));
        size_t n = libdeflate_zlib_compress(tc.c, data, j.chunk_bytes, j.out.data(), j.out.size());
        if (n == 0) throw Error(ErrorCode::internal, "deflate failed");
        j.out.resize(n);
        return;
      }
#endif
      uLongf len = compressBound(static_cast<uLong>(j.chunk_bytes));
      j.out.resize(len);
      int rc = compress2(j.out.data(), &len, data, static_cast<uLong>(j.chunk_bytes), level_);
      if (rc != Z_OK) throw Error(ErrorCode::internal, "deflate failed (" + std::to_string(rc) + ")");
      j.out.resize(len);
    } else {
      size_t bound = ZSTD_compressBound(j.chunk_bytes);
      j.out.resize(bound);
      size_t r = ZSTD_compress(j.out.data(), bound, data, j.chunk_bytes, level_);
      if (ZSTD_isError(r)) throw Error(ErrorCode::internal, std::string("zstd failed: ") + ZSTD_getErrorName(r));
      j.out.resize(r);
    }
  }

  void run(ChunkJob& j) {
    try {
      compress(j);
    } catch (const std::exception& e) {
      j.error = e.what();
    }
  }

  void work() {
    std::unique_lock<std::mutex> l(m_);
    for (;;) {
      ChunkJob* job = nullptr;
      cv_.wait(l, [&] {
        if (stop_) return true;
        for (auto& j : q_)
          if (j->state == ChunkJob::pending) return true;
        return false;
      });
      if (stop_) return;
      for (auto& j : q_)
        if (j->state == ChunkJob::pending) {
          job = j.get();
          break;
        }
      job->state = ChunkJob::running;
      l.unlock();
      run(*job);
      l.lock();
      job->state = ChunkJob::done;
      done_cv_.notify_all();
    }
  }

  void write_front() {
    ChunkJob* j;
    {
      std::unique_lock<std::mutex> l(m_);
      j = q_.front().get();
      if (j->state == ChunkJob::pending) {  // nobody took it: compress it here
        j->state = ChunkJob::running;
        l.unlock();
        run(*j);
        l.lock();
        j->state = ChunkJob::done;
      }
      done_cv_.wait(l, [&] { return j->state == ChunkJob::done; });
    }
    if (!j->error.empty()) throw Error(ErrorCode::internal, j->error, path_);
    if (H5Dwrite_chunk(j->dset, H5P_DEFAULT, 0, j->offset.data(), j->out.size(), j->out.data()) < 0)
      fail(ErrorCode::io_error, "cannot write a chunk", path_);
    written_ += j->payload;
    if (j->on_written) j->on_written();
    if (progress_ && j->payload) progress_(written_);
    std::lock_guard<std::mutex> l(m_);
    q_.pop_front();
  }

  Hdf5Compression comp_;
  int level_;
  bool shuffle_;
  std::string path_;
  std::function<void(uint64_t)> progress_;
  size_t window_ = 8;
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::deque<std::unique_ptr<ChunkJob>> q_;
  std::vector<std::thread> workers_;
  bool stop_ = false;
  uint64_t written_ = 0;
};

// ---------------------------------------------------------------- writer

constexpr uint64_t kSmall = 4096;  // below this, datasets are compact and unfiltered

struct Source2 {
  const uint8_t* data = nullptr;
  std::shared_ptr<const void> hold;
};

/// The stored bytes of a tensor: zero-copy when it is contiguous, little-endian
/// and stored as itself; otherwise a materialised (converted) copy.
Source2 stored_bytes(const Tensor& t, const StoredType& st) {
  t.storage->verify();  // a damaged stored record is never copied under a fresh checksum
  const bool upcast = t.dtype == DType::bfloat16 && st.size == 4;
  if (!upcast && t.is_contiguous() && !t.storage->big_endian()) return {t.contiguous_bytes().data(), nullptr};
  auto buf = std::make_shared<std::vector<uint8_t>>(t.to_contiguous());
  if (upcast) {
    auto wide = std::make_shared<std::vector<uint8_t>>(buf->size() * 2);
    const size_t n = buf->size() / 2;
    for (size_t i = 0; i < n; ++i) {
      uint32_t bits = (static_cast<uint32_t>((*buf)[2 * i]) | (static_cast<uint32_t>((*buf)[2 * i + 1]) << 8)) << 16;
      std::memcpy(wide->data() + 4 * i, &bits, 4);
    }
    buf = wide;
  }
  return {buf->data(), buf};
}

class Writer {
 public:
  Writer(const std::string& path, const std::string& final_path, const Hdf5SaveOptions& o) : path_(final_path), o_(o) {
    level_ = o.level >= 0 ? o.level : (o.compression == Hdf5Compression::zstd ? 3 : 4);
    if (o.compression == Hdf5Compression::gzip) level_ = std::clamp(level_, 0, 9);
    if (o.compression == Hdf5Compression::zstd) level_ = std::clamp(level_, 1, ZSTD_maxCLevel());
    H fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
    H5Pset_link_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    H5Pset_attr_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    H fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    file_ = H(check(H5Fcreate(path.c_str(), H5F_ACC_EXCL, fcpl, fapl), "cannot create the HDF5 file", final_path), H5Fclose);
    gcpl_ = H(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
    H5Pset_link_creation_order(gcpl_, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    H5Pset_attr_creation_order(gcpl_, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    lcpl_ = H(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
    H5Pset_char_encoding(lcpl_, H5T_CSET_UTF8);
  }

  Hdf5SaveResult write(const Value& root) {
    Planner plan(static_cast<bool>(o_.to_json));
    plan.walk(root);
    plan.place_json();
    // The structure: the tree as a pickle, its storages numbered in pickle order.
    std::vector<std::shared_ptr<Storage>> storages;
    std::string pkl = pickle_dumps(root, [&](const std::shared_ptr<Storage>& s) {
      storages.push_back(s);
      return std::to_string(storages.size() - 1);
    });
    // Which dataset holds each storage whole.
    std::unordered_map<const Storage*, size_t> holder;
    for (size_t i = 0; i < plan.datasets.size(); ++i) {
      const Tensor& t = *plan.datasets[i].t;
      if (t.storage_offset == 0 && t.is_contiguous() && t.nbytes() == t.storage->nbytes() && t.dtype == t.storage->dtype())
        holder.emplace(t.storage.get(), i);
    }
    ChunkPipeline pipe(o_.compression, level_, o_.shuffle, o_.threads, path_, o_.progress);
    write_root_attributes(plan.root_);
    for (auto& d : plan.datasets) write_dataset(d, pipe);
    // Hard links for identical aliases.
    for (auto& d : plan.datasets)
      for (size_t k = 0; k < d.link_names.size(); ++k) {
        for (NameNode* g : d.link_groups[k]) make_group(g);
        if (H5Lcreate_hard(file_, d.name->path.c_str(), file_, d.link_names[k]->path.c_str(), lcpl_, H5P_DEFAULT) < 0)
          fail(ErrorCode::io_error, "cannot link " + d.link_names[k]->path, path_, d.aliases[k]);
        ++result_.hard_links;
      }
    // JSON attributes on the groups that hold tensors.
    write_json(plan.root_);
    // /_ckpt: structure, storage sources, raw storages.
    H ck(check(H5Gcreate2(file_, "_ckpt", lcpl_, gcpl_, H5P_DEFAULT), "cannot create /_ckpt", path_), H5Gclose);
    write_bytes(ck, "structure", pkl.data(), pkl.size());
    std::string sources;
    for (size_t i = 0; i < storages.size(); ++i) {
      auto it = holder.find(storages[i].get());
      if (it != holder.end()) sources += plan.datasets[it->second].name->path;
      else sources += "/_ckpt/storages/" + std::to_string(i);
      sources += '\n';
    }
    write_bytes(ck, "storage_sources", sources.data(), sources.size());
    H raw;
    for (size_t i = 0; i < storages.size(); ++i) {
      if (holder.count(storages[i].get())) continue;
      if (!raw.valid()) raw = H(check(H5Gcreate2(ck, "storages", lcpl_, gcpl_, H5P_DEFAULT), "cannot create /_ckpt/storages", path_), H5Gclose);
      write_raw_storage(raw, i, storages[i], pipe);
      ++result_.raw_storages;
    }
    pipe.drain();
    if (o_.finish_attributes) {
      std::vector<std::pair<std::string, std::string>> late;
      o_.finish_attributes(late);
      for (const auto& [k, v] : late) attr_string(file_, k, v, path_);
    }
    raw.reset();
    ck.reset();
    if (H5Fflush(file_, H5F_SCOPE_GLOBAL) < 0) fail(ErrorCode::io_error, "cannot flush the HDF5 file", path_);
    file_.reset();
    return result_;
  }

 private:
  void make_group(NameNode* g) {
    if (g->created) return;
    H grp(check(H5Gcreate2(file_, g->path.c_str(), lcpl_, gcpl_, H5P_DEFAULT), "cannot create group", path_, g->path), H5Gclose);
    g->created = true;
  }

  void write_root_attributes(const NameNode&) {
    attr_string(file_, "ckpt_format", "ckpt-hdf5", path_);
    attr_int(file_, "ckpt_format_version", kHdf5LayoutVersion, path_);
    for (const auto& [k, v] : o_.root_attributes) attr_string(file_, k, v, path_);
  }

  void write_json(NameNode& n) {
    if (!n.json.empty() && (n.created || n.path == "/")) {
      H obj(H5Oopen(file_, n.path.c_str(), H5P_DEFAULT), H5Oclose);
      for (const auto& [name, v] : n.json) {
        if (H5Aexists(obj, name.c_str()) > 0) continue;  // a reserved attribute name: the structure keeps the value
        H5Eclear2(H5E_DEFAULT);
        attr_json(obj, name, o_.to_json(*v), path_);
      }
    }
    for (auto& [k, c] : n.children) write_json(*c);
  }

  /// Dataset creation properties and, for chunked ones, the chunk shape.
  H dataset_plist(const std::vector<hsize_t>& dims, uint64_t nbytes, int elem, std::vector<hsize_t>& chunk, size_t& split) {
    H dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    H5Pset_attr_creation_order(dcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    chunk.clear();
    uint64_t numel = nbytes / static_cast<uint64_t>(elem);
    if (dims.empty() || numel == 0 || o_.compression == Hdf5Compression::none) return dcpl;  // contiguous
    if (nbytes < kSmall) {
      H5Pset_layout(dcpl, H5D_COMPACT);
      return dcpl;
    }
    chunk = dims;
    split = 0;
    const uint64_t target = std::max<uint64_t>(o_.chunk_bytes, static_cast<uint64_t>(elem));
    for (size_t d = 0; d < dims.size(); ++d) {
      split = d;
      uint64_t inner = static_cast<uint64_t>(elem);
      for (size_t k = d + 1; k < dims.size(); ++k) inner *= dims[k];
      if (inner * chunk[d] <= target) break;
      if (inner <= target) {
        chunk[d] = std::max<uint64_t>(1, target / inner);
        break;
      }
      chunk[d] = 1;
    }
    H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
    if (o_.shuffle && elem > 1) H5Pset_shuffle(dcpl);
    if (o_.compression == Hdf5Compression::gzip) {
      H5Pset_deflate(dcpl, static_cast<unsigned>(level_));
    } else {
      unsigned cd = static_cast<unsigned>(level_);
      H5Pset_filter(dcpl, static_cast<H5Z_filter_t>(kHdf5ZstdFilter), H5Z_FLAG_OPTIONAL, 1, &cd);
    }
    return dcpl;
  }

  /// Writes `nbytes` from `src` into dataset `dset` (created with `chunk`),
  /// through the pipeline when chunked; calls `done` once all is written.
  void write_payload(hid_t dset, const H& type, const std::vector<hsize_t>& dims, const std::vector<hsize_t>& chunk,
                     size_t split, Source2 src, uint64_t nbytes, int elem, std::function<void()> done, const std::string& key) {
    if (chunk.empty()) {
      if (nbytes > 0 && H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, src.data) < 0)
        fail(ErrorCode::io_error, "cannot write dataset", path_, key);
      pipe_written_ += nbytes;
      if (done) done();
      if (o_.progress && nbytes) o_.progress(pipe_written_ + pipe_->written());
      return;
    }
    // Chunks: leading dims of extent 1, one split dim, full trailing dims, so
    // every chunk is one contiguous byte range of the row-major data.
    uint64_t inner = static_cast<uint64_t>(elem);
    for (size_t k = split + 1; k < dims.size(); ++k) inner *= dims[k];
    const uint64_t per = chunk[split];
    const uint64_t steps = (dims[split] + per - 1) / per;
    uint64_t outer = 1;
    for (size_t k = 0; k < split; ++k) outer *= dims[k];
    const uint64_t chunk_bytes = per * inner;
    const uint64_t total = outer * steps;
    uint64_t n = 0;
    auto shared_done = std::make_shared<std::function<void()>>(std::move(done));
    for (uint64_t o = 0; o < outer; ++o) {
      // Multi-index of the leading dims.
      std::vector<hsize_t> lead(split);
      uint64_t rem = o;
      for (size_t k = split; k-- > 0;) {
        lead[k] = rem % dims[k];
        rem /= dims[k];
      }
      for (uint64_t s = 0; s < steps; ++s) {
        auto job = std::make_unique<ChunkJob>();
        job->dset = dset;
        job->offset.assign(dims.size(), 0);
        for (size_t k = 0; k < split; ++k) job->offset[k] = lead[k];
        job->offset[split] = s * per;
        const uint64_t start = (o * dims[split] + s * per) * inner;
        const uint64_t rows = std::min<uint64_t>(per, dims[split] - s * per);
        job->src = src.data + start;
        job->src_bytes = static_cast<size_t>(rows * inner);
        job->chunk_bytes = static_cast<size_t>(chunk_bytes);
        job->elem = elem;
        job->hold = src.hold;
        job->payload = rows * inner;
        if (++n == total) job->on_written = [shared_done] {
          if (*shared_done) (*shared_done)();
        };
        pipe_->push(std::move(job));
      }
    }
    (void)nbytes;
  }

  void write_dataset(PlannedDataset& d, ChunkPipeline& pipe) {
    pipe_ = &pipe;
    const Tensor& t = *d.t;
    for (NameNode* g : d.groups) make_group(g);
    StoredType st = stored_type(t.dtype, o_.bf16);
    std::vector<hsize_t> dims(t.shape.begin(), t.shape.end());
    H space(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
    const uint64_t nbytes = t.numel() * static_cast<uint64_t>(st.size);
    std::vector<hsize_t> chunk;
    size_t split = 0;
    H dcpl = dataset_plist(dims, nbytes, st.size, chunk, split);
    auto dset = std::make_shared<H>(check(H5Dcreate2(file_, d.name->path.c_str(), st.type, space, lcpl_, dcpl, H5P_DEFAULT),
                                          "cannot create dataset", path_, d.key_path),
                                    H5Dclose);
    attr_string(*dset, "torch_dtype", std::string(dtype_name(t.dtype)), path_);
    attr_ints(*dset, "shape", t.shape, path_);
    attr_string(*dset, "original_key", d.original_key, path_);
    attr_string(*dset, "key_path", d.key_path, path_);
    if (!st.stored_as.empty()) attr_string(*dset, "stored_as", st.stored_as, path_);
    if (!d.aliases.empty()) attr_strings(*dset, "aliases", d.aliases, path_);
    ++result_.datasets;
    Source2 src;
    try {
      t.storage->prefetch_pages();  // one call instead of a fault per page inside write()
      if (t.numel() > 0) src = stored_bytes(t, st);
    } catch (const Error& e) {
      throw e.with_key_path(d.key_path);
    }
    auto storage = t.storage;
    auto type = std::make_shared<H>(std::move(st.type));
    write_payload(*dset, *type, dims, chunk, split, src, nbytes, st.size, [dset, storage, type]() mutable {
      storage->release_pages();
      dset->reset();
    }, d.key_path);
  }

  void write_raw_storage(hid_t group, size_t index, const std::shared_ptr<Storage>& s, ChunkPipeline& pipe) {
    pipe_ = &pipe;
    const uint64_t nbytes = s->nbytes();
    std::vector<hsize_t> dims{nbytes};
    H space(H5Screate_simple(1, dims.data(), nullptr), H5Sclose);
    std::vector<hsize_t> chunk;
    size_t split = 0;
    H dcpl = dataset_plist(dims, nbytes, 1, chunk, split);
    H u8 = copy_type(H5T_STD_U8LE);
    const std::string name = std::to_string(index);
    auto dset = std::make_shared<H>(check(H5Dcreate2(group, name.c_str(), u8, space, lcpl_, dcpl, H5P_DEFAULT),
                                          "cannot create a storage dataset", path_), H5Dclose);
    attr_string(*dset, "torch_dtype", std::string(dtype_name(s->dtype())), path_);
    Source2 src;
    s->verify();
    auto bytes = s->bytes();
    if (s->big_endian()) {
      auto buf = std::make_shared<std::vector<uint8_t>>(bytes.begin(), bytes.end());
      detail::swap_units(buf->data(), buf->size(), dtype_swap_unit(s->dtype()));
      src = {buf->data(), buf};
    } else {
      src = {bytes.data(), nullptr};
    }
    auto type = std::make_shared<H>(std::move(u8));
    write_payload(*dset, *type, dims, chunk, split, src, nbytes, 1, [dset, s, type]() mutable {
      s->release_pages();
      dset->reset();
    }, "storage " + name);
  }

  void write_bytes(hid_t group, const char* name, const void* data, size_t n) {
    hsize_t dims = n;
    H space(H5Screate_simple(1, &dims, nullptr), H5Sclose);
    H dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    if (n < 60000) H5Pset_layout(dcpl, H5D_COMPACT);
    H d(check(H5Dcreate2(group, name, H5T_STD_U8LE, space, lcpl_, dcpl, H5P_DEFAULT), "cannot create dataset", path_, name), H5Dclose);
    if (n && H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) fail(ErrorCode::io_error, "cannot write dataset", path_, name);
  }

  std::string path_;
  const Hdf5SaveOptions& o_;
  int level_ = 4;
  H file_, gcpl_, lcpl_;
  Hdf5SaveResult result_;
  ChunkPipeline* pipe_ = nullptr;
  uint64_t pipe_written_ = 0;
};

}  // namespace

namespace {

/// The atomic-write protocol of AtomicFile (temp file in the same folder,
/// fsync, rename, fsync of the folder) for a file libhdf5 writes itself. The
/// temp file is created by libhdf5 (O_EXCL): reopening AtomicFile's file with
/// O_TRUNC would make ext4 flush it synchronously on close (auto_da_alloc).
class TempOutput {
 public:
  explicit TempOutput(const std::string& final_path) : final_(final_path) {
    auto slash = final_.rfind('/');
    dir_ = slash == std::string::npos ? "." : (slash == 0 ? "/" : final_.substr(0, slash));
    const std::string base = slash == std::string::npos ? final_ : final_.substr(slash + 1);
    if (base.empty() || base == "." || base == "..") throw Error(ErrorCode::invalid_argument, "output path names a directory", final_);
    char suffix[40];
    std::snprintf(suffix, sizeof suffix, ".tmp.%d.%08x", static_cast<int>(::getpid()), std::random_device{}());
    temp_ = (slash == std::string::npos ? std::string() : final_.substr(0, slash + 1)) + "." + base + suffix;
  }
  ~TempOutput() {
    if (!committed_) ::unlink(temp_.c_str());
  }
  const std::string& temp() const { return temp_; }

  void commit(bool durable) {
    struct stat old {};
    if (::stat(final_.c_str(), &old) == 0 && S_ISREG(old.st_mode)) (void)::chmod(temp_.c_str(), old.st_mode & 07777);
    if (durable) {
      int fd = ::open(temp_.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::fsync(fd) != 0) {
        int err = errno;
        if (fd >= 0) ::close(fd);
        throw Error(err == ENOSPC || err == EDQUOT ? ErrorCode::no_space : ErrorCode::io_error, "fsync failed; not retried", final_, {},
                    Error::no_offset, {}, err);
      }
      ::close(fd);
    }
    if (::rename(temp_.c_str(), final_.c_str()) != 0)
      throw Error(ErrorCode::io_error, "cannot rename the temporary file into place", final_, {}, Error::no_offset, {}, errno);
    committed_ = true;
    if (durable) {
      int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      int err = dfd < 0 ? errno : (::fsync(dfd) != 0 ? errno : 0);
      if (dfd >= 0) ::close(dfd);
      if (err) throw Error(ErrorCode::durability_uncertain, "renamed into place, but the folder fsync failed", final_, {}, Error::no_offset, {}, err);
    }
  }

 private:
  std::string final_, temp_, dir_;
  bool committed_ = false;
};

}  // namespace

Hdf5SaveResult save_hdf5(const std::string& path, const Value& root, const Hdf5SaveOptions& opts) {
  init_hdf5();
  TempOutput out(path);
  Hdf5SaveResult r;
  {
    Writer w(out.temp(), path, opts);
    r = w.write(root);
  }
  out.commit(opts.durable);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) r.bytes = static_cast<uint64_t>(st.st_size);
  return r;
}

// ---------------------------------------------------------------- reader

namespace {

struct Reader {
  std::shared_ptr<const Source> src;
  const OpenOptions& opts;
  std::string path;
  H file;
  /// The isolated child's read: every structure, attribute and check, but no
  /// dataset payload is read (H5Dread), so it takes the time of the metadata
  /// whatever the file's size.
  bool metadata_only = false;

  [[noreturn]] void bad(ErrorCode c, const std::string& what, const std::string& key = {}) const { fail(c, what, path, key); }

  H open_dataset(const std::string& name) const {
    if (name.empty() || name[0] != '/') bad(ErrorCode::unknown_format, "storage source '" + name.substr(0, 80) + "' is not an absolute dataset path");
    htri_t ok = H5Lexists(file, name.c_str(), H5P_DEFAULT);
    if (ok <= 0) {
      // H5Lexists needs every intermediate group to exist: check them too.
      bad(ErrorCode::missing_record, "the file has no dataset " + name);
    }
    H5O_info_t info;
    if (H5Oget_info_by_name2(file, name.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0 || info.type != H5O_TYPE_DATASET)
      bad(ErrorCode::missing_record, name + " is not a dataset");
    return H(check(H5Dopen2(file, name.c_str(), H5P_DEFAULT), "cannot open dataset", path, name), H5Dclose);
  }

  /// Bytes of a whole dataset as `want` (torch dtype) elements; `nbytes` the
  /// size expected, or UINT64_MAX to take it from the dataset.
  /// `as` is the dtype of the storage returned (the raw bytes of `want`
  /// elements reinterpreted), `location` its device string.
  std::shared_ptr<Storage> read_storage(hid_t dset, const std::string& name, DType want, uint64_t nbytes,
                                        std::vector<int64_t>* shape_out = nullptr, std::optional<DType> as = std::nullopt,
                                        const std::string& location = "cpu") const {
    const DType result = as.value_or(want);
    H space(H5Dget_space(dset), H5Sclose);
    if (!space.valid()) bad(ErrorCode::unknown_format, "cannot read the dataspace of " + name, name);
    H5S_class_t sc = H5Sget_simple_extent_type(space);
    int nd = sc == H5S_SIMPLE ? H5Sget_simple_extent_ndims(space) : 0;
    if (sc == H5S_NULL || nd < 0 || nd > static_cast<int>(opts.limits.max_ndim)) bad(ErrorCode::invalid_tensor, name + " has an unusable dataspace", name);
    std::vector<hsize_t> dims(static_cast<size_t>(nd));
    if (nd > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
    uint64_t numel = 1;
    for (hsize_t d : dims) {
      auto m = detail::checked_mul(numel, d);
      if (!m || d > static_cast<hsize_t>(INT64_MAX)) bad(ErrorCode::invalid_tensor, name + ": element count overflows", name);
      numel = *m;
    }
    if (shape_out) shape_out->assign(dims.begin(), dims.end());
    H ftype(H5Dget_type(dset), H5Tclose);
    if (!ftype.valid()) bad(ErrorCode::unknown_format, "cannot read the type of " + name, name);
    const H5T_class_t fc = H5Tget_class(ftype);
    const size_t fsize = H5Tget_size(ftype);
    const bool upcast_bf16 = want == DType::bfloat16 && fc == H5T_FLOAT && fsize == 4;
    StoredType mem = stored_type(want, upcast_bf16 ? Hdf5BF16::float32 : Hdf5BF16::raw);
    // The file's type class must match what the dtype is stored as.
    H5T_class_t mc = H5Tget_class(mem.type);
    bool compatible = fc == mc || (mc == H5T_INTEGER && fc == H5T_ENUM && want == DType::uint8);
    if (!compatible || (mc == H5T_COMPOUND && H5Tget_nmembers(ftype) != 2))
      bad(ErrorCode::invalid_tensor, name + " holds HDF5 class " + std::to_string(static_cast<int>(fc)) + ", which is not how " +
                                         std::string(dtype_name(want)) + " is stored",
          name);
    auto es = static_cast<uint64_t>(dtype_size(want));
    auto want_bytes = detail::checked_mul(numel, es);
    if (!want_bytes) bad(ErrorCode::invalid_tensor, name + ": byte size overflows", name);
    if (nbytes != UINT64_MAX && *want_bytes != nbytes)
      bad(ErrorCode::invalid_tensor, name + " holds " + std::to_string(numel) + " elements of " + std::string(dtype_name(want)) + " (" +
                                         std::to_string(*want_bytes) + " bytes) but its storage is " + std::to_string(nbytes) + " bytes",
          name);
    nbytes = *want_bytes;
    // Zero-copy: a contiguous, allocated dataset stored exactly as the dtype.
    {
      H dcpl(H5Dget_create_plist(dset), H5Pclose);
      haddr_t off = H5Dget_offset(dset);
      H5Eclear2(H5E_DEFAULT);
      if (dcpl.valid() && H5Pget_layout(dcpl) == H5D_CONTIGUOUS && !upcast_bf16 && H5Tequal(ftype, mem.type) > 0 &&
          off != HADDR_UNDEF && src->mapped() && H5Dget_storage_size(dset) == nbytes && nbytes > 0 &&
          detail::fits(off, nbytes, src->size())) {
        const uint8_t* p = src->data() + off;
        const uint64_t fo = off;
        auto st = Storage::located(result, nbytes, [p, fo] { return std::make_pair(p, fo); }, src, true, location);
        st->entry = name;
        return st;
      }
    }
    if (nbytes > opts.limits.max_inflate_bytes)
      bad(ErrorCode::limit_exceeded, name + " would take " + std::to_string(nbytes) + " bytes in memory, over the limit", name);
    // The stored chunks' sizes (libhdf5 sums them from the chunk index) must
    // fit in the file: libhdf5 allocates a read buffer of a chunk's declared
    // size before it reads it, so one corrupt entry could ask for 4 GB.
    {
      const hsize_t stored = H5Dget_storage_size(dset);
      H5Eclear2(H5E_DEFAULT);
      H dcpl(H5Dget_create_plist(dset), H5Pclose);
      if (dcpl.valid() && H5Pget_layout(dcpl) == H5D_CHUNKED && nd > 0) {
        std::vector<hsize_t> cdims(static_cast<size_t>(nd));
        uint64_t cbytes = fsize;
        if (H5Pget_chunk(dcpl, nd, cdims.data()) != nd) cbytes = UINT64_MAX;
        for (hsize_t c : cdims) cbytes = detail::checked_mul(cbytes, c).value_or(UINT64_MAX);
        if (cbytes > opts.limits.max_inflate_bytes)
          bad(ErrorCode::limit_exceeded, name + " has chunks of " + std::to_string(cbytes) + " bytes, over the limit", name);
      }
      H5Eclear2(H5E_DEFAULT);
      if (stored > src->size())
        bad(ErrorCode::corrupt_compressed, name + " declares " + std::to_string(stored) + " stored bytes in a file of " +
                                               std::to_string(src->size()),
            name);
    }
    if (metadata_only)  // the right size, never loaded: the child's tree is discarded
      return Storage::lazy(result, nbytes, [nbytes] { return std::vector<uint8_t>(static_cast<size_t>(nbytes)); }, location);
    std::vector<uint8_t> buf(static_cast<size_t>(upcast_bf16 ? nbytes * 2 : nbytes));
    if (!buf.empty() && H5Dread(dset, mem.type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0)
      bad(ErrorCode::corrupt_compressed, "cannot read " + name, name);
    if (upcast_bf16) {  // float32 back to bfloat16: exact when the low bits are zero (as written)
      std::vector<uint8_t> narrow(static_cast<size_t>(nbytes));
      for (size_t i = 0; i < narrow.size() / 2; ++i) {
        uint32_t bits;
        std::memcpy(&bits, buf.data() + 4 * i, 4);
        uint16_t h;
        if ((bits & 0xFFFF) == 0 || (bits & 0x7F800000) == 0x7F800000) {
          h = static_cast<uint16_t>(bits >> 16);
          if ((bits & 0x7FFFFFFF) > 0x7F800000 && (h & 0x7F) == 0) h |= 0x40;  // a NaN stays a NaN
        } else {
          uint32_t lsb = (bits >> 16) & 1;
          h = static_cast<uint16_t>((bits + 0x7FFF + lsb) >> 16);
        }
        narrow[2 * i] = static_cast<uint8_t>(h & 0xFF);
        narrow[2 * i + 1] = static_cast<uint8_t>(h >> 8);
      }
      buf = std::move(narrow);
    }
    auto st = Storage::from_bytes(result, std::move(buf), location);
    st->entry = name;
    return st;
  }

  std::vector<uint8_t> read_u8(const char* name, uint64_t limit) const {
    H d = open_dataset(name);
    auto st = read_storage(d, name, DType::uint8, UINT64_MAX);
    if (st->nbytes() > limit) bad(ErrorCode::limit_exceeded, std::string(name) + " exceeds " + std::to_string(limit) + " bytes", name);
    auto b = st->bytes();
    return std::vector<uint8_t>(b.begin(), b.end());
  }

  Checkpoint structured(FormatInfo info) {
    std::vector<uint8_t> pkl = read_u8("/_ckpt/structure", opts.limits.max_pickle_bytes);
    std::vector<uint8_t> text = read_u8("/_ckpt/storage_sources", 256ull << 20);
    std::vector<std::string> sources;
    {
      std::string cur;
      for (uint8_t c : text) {
        if (c == '\n') {
          sources.push_back(std::move(cur));
          cur.clear();
        } else {
          cur += static_cast<char>(c);
        }
      }
      if (!cur.empty()) bad(ErrorCode::unknown_format, "/_ckpt/storage_sources does not end with a newline");
    }
    auto doc = std::make_unique<Document>();
    std::vector<std::shared_ptr<Storage>> storages;
    std::unordered_map<size_t, std::shared_ptr<Storage>> cache;
    UnpickleOptions u;
    u.limits = opts.limits;
    u.allow_unknown_globals = opts.allow_unknown_globals;
    u.path = path;
    u.entry = "/_ckpt/structure";
    u.persistent_load = [&](Document& d, Value* pid, uint64_t) -> Value* {
      if (pid->kind() != Kind::tuple || pid->size() < 5 || !pid->elements()[0]->is(Kind::string) ||
          pid->elements()[0]->as_str() != "storage")
        throw Error(ErrorCode::malformed_pickle, "persistent id " + repr(*pid, 80) + " is not a ('storage', type, key, location, numel) tuple");
      auto id = pid->elements();
      const Value& type = *id[1];
      std::optional<DType> dt;
      if (type.is(Kind::global) && (type.module() == "torch" || type.module() == "torch.storage")) dt = dtype_from_storage_class(type.name());
      else if (type.is(Kind::torch_dtype)) dt = type.torch_dtype();
      if (!dt) throw Error(ErrorCode::malformed_pickle, "unknown storage type " + repr(type, 60));
      const Value& key = *id[2];
      const Value& loc = *id[3];
      const Value& numel = *id[4];
      if (!key.is(Kind::string) || !loc.is(Kind::string) || !numel.is(Kind::integer) || numel.as_int() < 0)
        throw Error(ErrorCode::malformed_pickle, "malformed storage id " + repr(*pid, 80));
      const std::string& k = key.as_str();
      if (k.empty() || k.size() > 12 || !std::all_of(k.begin(), k.end(), [](char c) { return c >= '0' && c <= '9'; }))
        throw Error(ErrorCode::malformed_pickle, "storage key '" + k.substr(0, 20) + "' is not an index");
      size_t idx = std::stoul(k);
      if (idx >= sources.size())
        throw Error(ErrorCode::missing_record, "storage " + k + " has no line in /_ckpt/storage_sources (" + std::to_string(sources.size()) + " lines)");
      if (auto it = cache.find(idx); it != cache.end()) return d.storage(it->second);
      auto nb = detail::checked_mul(static_cast<uint64_t>(numel.as_int()), static_cast<uint64_t>(dtype_size(*dt)));
      if (!nb) throw Error(ErrorCode::invalid_tensor, "storage " + k + " size overflows");
      H ds = open_dataset(sources[idx]);
      const bool raw = sources[idx].rfind("/_ckpt/storages/", 0) == 0;
      std::shared_ptr<Storage> st = raw ? read_storage(ds, sources[idx], DType::uint8, *nb, nullptr, *dt, loc.as_str())
                                          : read_storage(ds, sources[idx], *dt, *nb, nullptr, *dt, loc.as_str());
      st->key = k;
      st->entry = sources[idx];
      cache.emplace(idx, st);
      storages.push_back(st);
      return d.storage(st);
    };
    UnpickleResult r = unpickle(pkl, *doc, u);
    if (r.end != pkl.size()) info.trailing_bytes = pkl.size() - r.end;
    info.pickle_protocol = r.protocol;
    return Checkpoint::adopt(src, std::move(doc), r.value, std::move(info), std::move(storages));
  }

  // ---- files from other tools: a flat dict of every dataset

  struct Flat {
    Reader& rd;
    Document& doc;
    Value* dict;
    std::vector<std::shared_ptr<Storage>>& storages;
    FormatInfo& info;
    std::map<std::pair<unsigned long, haddr_t>, std::shared_ptr<Storage>> seen;
    std::set<haddr_t> groups_seen;
    uint64_t nodes = 0;

    std::optional<DType> dtype_of(hid_t dset, const std::string& name) {
      H t(H5Dget_type(dset), H5Tclose);
      H5T_class_t c = H5Tget_class(t);
      size_t sz = H5Tget_size(t);
      auto tag = read_attr_string(dset, "torch_dtype");
      std::optional<DType> tagged = tag ? dtype_from_name(*tag) : std::nullopt;
      if (tagged) {
        int es = dtype_size(*tagged);
        if (*tagged == DType::bfloat16 && c == H5T_FLOAT && sz == 4) return tagged;
        if (static_cast<size_t>(es) == sz) return tagged;
      }
      switch (c) {
        case H5T_FLOAT:
          if (sz == 2) return DType::float16;
          if (sz == 4) return DType::float32;
          if (sz == 8) return DType::float64;
          break;
        case H5T_INTEGER: {
          bool sgn = H5Tget_sign(t) == H5T_SGN_2;
          if (sz == 1) return sgn ? DType::int8 : DType::uint8;
          if (sz == 2) return sgn ? DType::int16 : DType::uint16;
          if (sz == 4) return sgn ? DType::int32 : DType::uint32;
          if (sz == 8) return sgn ? DType::int64 : DType::uint64;
          break;
        }
        case H5T_ENUM:
          if (sz == 1 && H5Tget_nmembers(t) == 2) return DType::bool_;
          break;
        case H5T_COMPOUND:
          if (H5Tget_nmembers(t) == 2) {
            if (sz == 8) return DType::complex64;
            if (sz == 16) return DType::complex128;
            if (sz == 4) return DType::complex32;
          }
          break;
        default:
          break;
      }
      info.records.push_back("skipped " + name + ": no torch dtype for its HDF5 type");
      return std::nullopt;
    }

    void visit_group(hid_t group, const std::string& hpath, const std::string& key, uint32_t depth) {
      if (depth > rd.opts.limits.max_depth) rd.bad(ErrorCode::limit_exceeded, "groups nested deeper than the limit", hpath);
      H gcpl(H5Gget_create_plist(group), H5Pclose);
      unsigned flags = 0;
      if (gcpl.valid()) H5Pget_link_creation_order(gcpl, &flags);
      H5_index_t index = (flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
      std::vector<std::string> names;
      hsize_t idx = 0;
      if (H5Literate(group, index, H5_ITER_INC, &idx, [](hid_t, const char* n, const H5L_info_t* li, void* data) -> herr_t {
            if (li->type == H5L_TYPE_HARD) static_cast<std::vector<std::string>*>(data)->emplace_back(n);
            return 0;
          }, &names) < 0)
        rd.bad(ErrorCode::unknown_format, "cannot list group " + hpath, hpath);
      for (const auto& n : names) {
        if (++nodes > rd.opts.limits.max_walk_nodes) rd.bad(ErrorCode::limit_exceeded, "more HDF5 objects than the walk limit", hpath);
        if (hpath == "/" && n == "_ckpt") continue;
        std::string child = (hpath == "/" ? "/" : hpath + "/") + n;
        std::string ckey = key.empty() ? unescape_name(n) : key + "." + unescape_name(n);
        H5O_info_t oi;
        if (H5Oget_info_by_name2(group, n.c_str(), &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0) rd.bad(ErrorCode::unknown_format, "cannot inspect " + child, child);
        if (oi.type == H5O_TYPE_GROUP) {
          if (!groups_seen.insert(oi.addr).second) continue;  // a group linked twice (or a cycle)
          H g(check(H5Gopen2(group, n.c_str(), H5P_DEFAULT), "cannot open group", rd.path, child), H5Gclose);
          visit_group(g, child, ckey, depth + 1);
        } else if (oi.type == H5O_TYPE_DATASET) {
          H d(check(H5Dopen2(group, n.c_str(), H5P_DEFAULT), "cannot open dataset", rd.path, child), H5Dclose);
          auto dt = dtype_of(d, child);
          if (!dt) continue;
          std::vector<int64_t> shape;
          std::shared_ptr<Storage> st;
          auto key_addr = std::make_pair(oi.fileno, oi.addr);
          if (auto it = seen.find(key_addr); it != seen.end()) {
            st = it->second;  // a hard link: the same tensor again (an alias)
            H space(H5Dget_space(d), H5Sclose);
            int nd = H5Sget_simple_extent_ndims(space);
            std::vector<hsize_t> dims(static_cast<size_t>(std::max(nd, 0)));
            if (nd > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
            shape.assign(dims.begin(), dims.end());
          } else {
            st = rd.read_storage(d, child, *dt, UINT64_MAX, &shape);
            seen.emplace(key_addr, st);
            storages.push_back(st);
          }
          Tensor t;
          t.dtype = *dt;
          t.shape = shape;
          t.stride = Tensor::contiguous_strides(shape);
          t.storage = st;
          try {
            t.validate(rd.opts.limits.max_ndim);
          } catch (const Error& e) {
            throw e.with_path(rd.path).with_key_path(ckey);
          }
          dict->set(ckey, doc.tensor(std::move(t)));
        }
      }
    }
  };

  Checkpoint flat(FormatInfo info) {
    auto doc = std::make_unique<Document>();
    Value* root = doc->ordered_dict();
    std::vector<std::shared_ptr<Storage>> storages;
    Flat f{*this, *doc, root, storages, info, {}, {}, 0};
    H g(check(H5Gopen2(file, "/", H5P_DEFAULT), "cannot open the root group", path), H5Gclose);
    f.visit_group(g, "/", "", 0);
    return Checkpoint::adopt(src, std::move(doc), root, std::move(info), std::move(storages));
  }
};

}  // namespace

bool looks_like_hdf5(std::span<const uint8_t> head) noexcept {
  static constexpr uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  return head.size() >= 8 && std::memcmp(head.data(), sig, 8) == 0;
}

void register_hdf5_zstd_filter() { init_hdf5(); }

std::string hdf5_library_version() {
  unsigned maj = 0, min = 0, rel = 0;
  H5get_libversion(&maj, &min, &rel);
  return std::to_string(maj) + "." + std::to_string(min) + "." + std::to_string(rel);
}

}  // namespace ckpt

// Set only in sanitizer builds (a weak reference is null otherwise).
extern "C" void __sanitizer_set_death_callback(void (*)(void)) __attribute__((weak));

namespace ckpt {
namespace {

Checkpoint read_hdf5_here(const std::string& path, const OpenOptions& opts, bool metadata_only);

// The child's exit status for "a typed error": not 1, which is what the
// sanitizers exit with after a report.
constexpr int kChildTypedError = 113;

// Reads the file's structure once in a forked child (no payload), so that a
// crash or endless loop inside libhdf5 on a crafted file ends the child, not
// the caller. The child's outcome (a tree or a typed error) is discarded:
// the same deterministic read then runs in this process. fork() copies only
// this thread; the child uses libhdf5 and malloc and leaves with _exit (no
// destructors, no atexit handlers, its stderr silenced).
void probe_hdf5_in_child(const std::string& path, const OpenOptions& opts) {
  const pid_t pid = ::fork();
  if (pid < 0) return;  // cannot isolate (out of processes): read in-process
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull >= 0) ::dup2(devnull, 2);
    // Die of the crash, quietly: no inherited handler (a fuzzer's, which
    // would record the parent's input as its own crash) may act for the child.
    if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(nullptr);
    for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGXCPU}) ::signal(sig, SIG_DFL);
    const rlim_t cpu = std::max<rlim_t>(1, opts.hdf5_probe_cpu_s);
    const struct rlimit rl{cpu, cpu + 1};
    ::setrlimit(RLIMIT_CPU, &rl);  // a loop in libhdf5 ends with SIGXCPU
    int code = 0;
    try {
      (void)read_hdf5_here(path, opts, true);
    } catch (...) {
      code = kChildTypedError;
    }
    ::_exit(code);
  }
  // The child reads metadata only: a libhdf5 loop on a crafted file (one
  // fuzz_hdf5 found spins in its global-heap reads) is cut at the deadline.
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(opts.hdf5_probe_ms);
  bool killed = false;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return;
    if (!killed && std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(killed ? 1000 : 200));
  }
  if (WIFSIGNALED(status) && ((killed && WTERMSIG(status) == SIGKILL) || WTERMSIG(status) == SIGXCPU))
    throw Error(ErrorCode::corrupt_hdf5,
                "libhdf5 did not finish reading this file's structure within " +
                    (WTERMSIG(status) == SIGXCPU ? std::to_string(std::max<uint32_t>(1, opts.hdf5_probe_cpu_s)) + " s of CPU time"
                                                 : std::to_string(opts.hdf5_probe_ms) + " ms") +
                    " (in an isolated child process): it is corrupt or crafted (OpenOptions::hdf5_probe_cpu_s, hdf5_probe_ms)",
                path);
  if (WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == kChildTypedError)) return;
  const std::string how = WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                              : "exit status " + std::to_string(WEXITSTATUS(status));
  throw Error(ErrorCode::corrupt_hdf5,
              "libhdf5 crashed reading this file's structure (" + how +
                  " in an isolated child process): it is corrupt or crafted; nothing was read",
              path);
}

}  // namespace

Checkpoint read_hdf5(const std::string& path, const OpenOptions& opts) {
  init_hdf5();
  if (opts.isolate_hdf5) probe_hdf5_in_child(path, opts);
  return read_hdf5_here(path, opts, false);
}

namespace {

Checkpoint read_hdf5_here(const std::string& path, const OpenOptions& opts, bool metadata_only) {
  auto src = Source::open_file(path, opts.use_mmap);
  if (!looks_like_hdf5(src->span()))
    throw Error(ErrorCode::unknown_format, "not an HDF5 file (no HDF5 signature at its start)", path, {}, 0);
  H fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
  Reader rd{src, opts, path, {}, metadata_only};
  rd.file = H(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl), H5Fclose);
  if (!rd.file.valid()) fail(ErrorCode::unknown_format, "libhdf5 cannot open it as an HDF5 file", path);
  {
    H fcpl(H5Fget_create_plist(rd.file), H5Pclose);
    hsize_t ub = 0;
    if (fcpl.valid()) H5Pget_userblock(fcpl, &ub);
    if (ub != 0) src = Source::from_bytes({}, path);  // addresses are offset: no zero-copy
    rd.src = src;
  }
  FormatInfo info;
  info.container = Container::hdf5;
  auto format = read_attr_string(rd.file, "ckpt_format");
  auto version = read_attr_int(rd.file, "ckpt_format_version");
  if (format && *format == "ckpt-hdf5") {
    if (!version || *version < 1)
      throw Error(ErrorCode::unknown_format, "ckpt_format_version is missing or invalid", path);
    if (*version > kHdf5LayoutVersion)
      throw Error(ErrorCode::unsupported_version, "ckpt-hdf5 layout version " + std::to_string(*version) + ", this reader knows <= " +
                                                      std::to_string(kHdf5LayoutVersion), path);
    info.version = std::to_string(*version);
    htri_t has = H5Lexists(rd.file, "/_ckpt", H5P_DEFAULT) > 0 ? H5Lexists(rd.file, "/_ckpt/structure", H5P_DEFAULT) : 0;
    H5Eclear2(H5E_DEFAULT);
    if (has > 0) {
      info.era = "ckpt-hdf5 layout v" + info.version;
      return rd.structured(std::move(info));
    }
    info.era = "ckpt-hdf5 layout v" + info.version + " without /_ckpt/structure (read as a flat state dict)";
  } else {
    info.era = "HDF5 (not written by ckpt; read as a flat state dict)";
  }
  return rd.flat(std::move(info));
}

}  // namespace

}  // namespace ckpt
