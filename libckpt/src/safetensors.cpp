// safetensors: a strict header parser (its own small JSON reader: no new
// dependency, bounded depth, every number checked) and a streaming writer.
#include "ckpt/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "ckpt/atomic_file.hpp"
#include "ckpt/detail/checked.hpp"
#include "ckpt/error.hpp"
#include "byteswap.hpp"
#include "utf8.hpp"

namespace ckpt {

namespace {

struct DTypeName {
  DType dtype;
  std::string_view name;
};
constexpr DTypeName kNames[] = {
    {DType::bool_, "BOOL"},         {DType::uint8, "U8"},          {DType::int8, "I8"},
    {DType::int16, "I16"},          {DType::uint16, "U16"},        {DType::float16, "F16"},
    {DType::bfloat16, "BF16"},      {DType::int32, "I32"},         {DType::uint32, "U32"},
    {DType::float32, "F32"},        {DType::float64, "F64"},       {DType::int64, "I64"},
    {DType::uint64, "U64"},         {DType::float8_e5m2, "F8_E5M2"}, {DType::float8_e4m3fn, "F8_E4M3"},
    {DType::float8_e8m0fnu, "F8_E8M0"}, {DType::complex64, "C64"},
};

}  // namespace

std::optional<std::string_view> safetensors_dtype_name(DType t) noexcept {
  for (const auto& n : kNames)
    if (n.dtype == t) return n.name;
  return std::nullopt;
}

std::optional<DType> dtype_from_safetensors_name(std::string_view name) noexcept {
  for (const auto& n : kNames)
    if (n.name == name) return n.dtype;
  return std::nullopt;
}

// ---------------------------------------------------------------- JSON reader

namespace {

/// A JSON value. Objects keep their members in file order.
struct JsonMember;
struct Json {
  enum class T : uint8_t { null, boolean, number, string, array, object } t = T::null;
  bool b = false;
  bool is_uint = false;  ///< the number is a non-negative integer that fits uint64
  uint64_t u = 0;
  std::string s;         ///< string value, or the number's text
  std::vector<Json> items;
  std::vector<JsonMember> members;  // not std::pair: clang rejects pair<string, Json> inside Json
};
struct JsonMember {
  std::string first;
  Json second;
};

class JsonParser {
 public:
  JsonParser(std::string_view text, const std::string& file) : p_(text.data()), end_(text.data() + text.size()), begin_(text.data()), file_(file) {}

  Json parse_document() {
    Json v = value(0);
    ws();
    if (p_ != end_) fail("unexpected text after the header's JSON object");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 64;

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorCode::unknown_format, "invalid safetensors header: " + what, file_, {},
                8 + static_cast<uint64_t>(p_ - begin_));
  }
  void ws() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  bool eat(char c) {
    ws();
    if (p_ != end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  bool literal(std::string_view word) {
    if (static_cast<size_t>(end_ - p_) >= word.size() && std::memcmp(p_, word.data(), word.size()) == 0) {
      p_ += word.size();
      return true;
    }
    return false;
  }

  Json value(int depth) {
    if (depth > kMaxDepth) fail("nested deeper than 64 levels");
    ws();
    if (p_ == end_) fail("unexpected end");
    Json v;
    switch (*p_) {
      case '{': {
        ++p_;
        v.t = Json::T::object;
        if (eat('}')) return v;
        do {
          ws();
          if (p_ == end_ || *p_ != '"') fail("expected a member name");
          std::string k = string();
          expect(':');
          v.members.push_back({std::move(k), value(depth + 1)});
        } while (eat(','));
        expect('}');
        return v;
      }
      case '[': {
        ++p_;
        v.t = Json::T::array;
        if (eat(']')) return v;
        do v.items.push_back(value(depth + 1));
        while (eat(','));
        expect(']');
        return v;
      }
      case '"':
        v.t = Json::T::string;
        v.s = string();
        return v;
      case 't': case 'f': case 'n':
        if (literal("true")) {
          v.t = Json::T::boolean;
          v.b = true;
        } else if (literal("false")) {
          v.t = Json::T::boolean;
        } else if (literal("null")) {
          v.t = Json::T::null;
        }
        else fail("unknown literal");
        return v;
      default:
        return number();
    }
  }

  Json number() {
    const char* start = p_;
    if (p_ != end_ && *p_ == '-') ++p_;
    const char* digits = p_;
    while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    if (p_ == digits) fail("expected a value");
    if (p_ - digits > 1 && *digits == '0') fail("a number with a leading zero");
    bool integral = true;
    if (p_ != end_ && *p_ == '.') {
      integral = false;
      ++p_;
      const char* f = p_;
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
      if (p_ == f) fail("a number without digits after '.'");
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      integral = false;
      ++p_;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      const char* e = p_;
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
      if (p_ == e) fail("a number without exponent digits");
    }
    Json v;
    v.t = Json::T::number;
    v.s.assign(start, p_);
    if (integral && *start != '-') {
      uint64_t u = 0;
      bool ok = true;
      for (const char* c = digits; c != p_ && ok; ++c) {
        auto m = detail::checked_mul(u, 10);
        auto a = m ? detail::checked_add(*m, static_cast<uint64_t>(*c - '0')) : std::nullopt;
        ok = a.has_value();
        if (ok) u = *a;
      }
      v.is_uint = ok;
      v.u = u;
    }
    return v;
  }


  uint32_t hex4() {
    if (end_ - p_ < 4) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i, ++p_) {
      char c = *p_;
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<uint32_t>(c - 'A' + 10);
      else fail("bad \\u escape");
    }
    return v;
  }

  std::string string() {
    ++p_;  // opening quote
    std::string out;
    for (;;) {
      if (p_ == end_) fail("unterminated string");
      unsigned char c = static_cast<unsigned char>(*p_++);
      if (c == '"') return out;
      if (c < 0x20) fail("a control character inside a string");
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      if (p_ == end_) fail("unterminated escape");
      char e = *p_++;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (end_ - p_ < 6 || p_[0] != '\\' || p_[1] != 'u') fail("a lone surrogate in a \\u escape");
            p_ += 2;
            uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("a lone surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("a lone surrogate in a \\u escape");
          }
          put_utf8(out, cp);
          break;
        }
        default: fail("unknown escape");
      }
    }
  }

  const char* p_;
  const char* end_;
  const char* begin_;
  const std::string& file_;
};

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) {
      unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

void json_string(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

// ---------------------------------------------------------------- reading

bool looks_like_safetensors(std::span<const uint8_t> head, uint64_t file_size) noexcept {
  if (head.size() < 9 || file_size < 10) return false;
  uint64_t n = read_le64(head.data());
  if (n < 2 || n > kSafetensorsMaxHeader || n > file_size - 8) return false;
  size_t i = 8;
  while (i < head.size() && (head[i] == ' ' || head[i] == '\n' || head[i] == '\r' || head[i] == '\t')) ++i;
  return i < head.size() && head[i] == '{';
}

SafetensorsHeader parse_safetensors_header(std::span<const uint8_t> file, const std::string& name) {
  if (file.size() < 8) throw Error(ErrorCode::truncated, "a safetensors file starts with an 8-byte header length; the file has " + std::to_string(file.size()) + " bytes", name, {}, 0);
  SafetensorsHeader h;
  h.header_bytes = read_le64(file.data());
  if (h.header_bytes > kSafetensorsMaxHeader)
    throw Error(ErrorCode::limit_exceeded, "safetensors header length " + std::to_string(h.header_bytes) + " exceeds the 100 MB limit", name, {}, 0);
  if (h.header_bytes > file.size() - 8)
    throw Error(ErrorCode::truncated, "the header is " + std::to_string(h.header_bytes) + " bytes but only " + std::to_string(file.size() - 8) + " follow the length", name, {}, 0);
  h.data_start = 8 + h.header_bytes;
  h.data_bytes = file.size() - h.data_start;
  std::string_view text(reinterpret_cast<const char*>(file.data() + 8), static_cast<size_t>(h.header_bytes));
  if (!valid_utf8(text)) throw Error(ErrorCode::unknown_format, "the safetensors header is not valid UTF-8", name, {}, 8);
  Json doc = JsonParser(text, name).parse_document();
  if (doc.t != Json::T::object) throw Error(ErrorCode::unknown_format, "the safetensors header is not a JSON object", name, {}, 8);

  std::unordered_set<std::string_view> seen;
  seen.reserve(doc.members.size());
  bool have_meta = false;
  for (const auto& [key, v] : doc.members) {
    if (!seen.insert(key).second)
      throw Error(ErrorCode::unknown_format, "the header names '" + key + "' twice", name, {}, 8, key);
    if (key == "__metadata__") {
      have_meta = true;
      if (v.t != Json::T::object) throw Error(ErrorCode::unknown_format, "__metadata__ is not an object of strings", name, {}, 8, key);
      for (const auto& [mk, mv] : v.members) {
        if (mv.t != Json::T::string)
          throw Error(ErrorCode::unknown_format, "__metadata__ value of '" + mk + "' is not a string (the format allows str -> str only)", name, {}, 8, key);
        h.metadata.emplace_back(mk, mv.s);
      }
      continue;
    }
    auto bad = [&, &k = key](const std::string& what) -> Error {  // clang 14 cannot capture a structured binding
      return Error(ErrorCode::invalid_tensor, "tensor '" + k + "': " + what, name, {}, 8, k);
    };
    if (v.t != Json::T::object) throw bad("its entry is not an object");
    const Json *dt = nullptr, *shape = nullptr, *offs = nullptr;
    for (const auto& [fk, fv] : v.members) {
      if (fk == "dtype") dt = &fv;
      else if (fk == "shape") shape = &fv;
      else if (fk == "data_offsets") offs = &fv;
    }
    if (!dt || !shape || !offs) throw bad("needs dtype, shape and data_offsets");
    SafetensorsHeader::Entry e;
    e.name = key;
    if (dt->t != Json::T::string) throw bad("dtype is not a string");
    auto d = dtype_from_safetensors_name(dt->s);
    if (!d) throw bad("unknown dtype '" + dt->s.substr(0, 40) + "'");
    e.dtype = *d;
    if (shape->t != Json::T::array) throw bad("shape is not an array");
    if (shape->items.size() > 64) throw bad("more than 64 dimensions");
    uint64_t numel = 1;
    for (const auto& s : shape->items) {
      if (s.t != Json::T::number || !s.is_uint || s.u > static_cast<uint64_t>(INT64_MAX))
        throw bad("shape holds '" + s.s.substr(0, 40) + "', not a non-negative integer");
      e.shape.push_back(static_cast<int64_t>(s.u));
      auto m = detail::checked_mul(numel, s.u);
      if (!m) throw bad("the shape's element count overflows");
      numel = *m;
    }
    if (offs->t != Json::T::array || offs->items.size() != 2) throw bad("data_offsets is not [begin, end]");
    for (const auto& o : offs->items)
      if (o.t != Json::T::number || !o.is_uint) throw bad("data_offsets holds '" + o.s.substr(0, 40) + "', not a non-negative integer");
    e.begin = offs->items[0].u;
    e.end = offs->items[1].u;
    if (e.end < e.begin) throw bad("data_offsets end before they begin");
    if (e.end > h.data_bytes)
      throw bad("data_offsets end at " + std::to_string(e.end) + ", past the " + std::to_string(h.data_bytes) + " bytes of data");
    auto nbytes = detail::checked_mul(numel, static_cast<uint64_t>(dtype_size(e.dtype)));
    if (!nbytes || *nbytes != e.end - e.begin)
      throw bad("shape and dtype make " + (nbytes ? std::to_string(*nbytes) : std::string("too many")) + " bytes but data_offsets span " +
                std::to_string(e.end - e.begin));
    h.tensors.push_back(std::move(e));
  }
  (void)have_meta;
  // The offsets must tile the data exactly, as the reference reader demands.
  std::vector<const SafetensorsHeader::Entry*> order;
  order.reserve(h.tensors.size());
  for (const auto& e : h.tensors) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  uint64_t at = 0;
  for (const auto* e : order) {
    if (e->begin != at)
      throw Error(ErrorCode::invalid_tensor,
                  "tensor '" + e->name + "' starts at data offset " + std::to_string(e->begin) + ", expected " + std::to_string(at) +
                      (e->begin < at ? " (it overlaps the previous tensor)" : " (a gap in the data)"),
                  name, {}, 8, e->name);
    at = e->end;
  }
  if (at != h.data_bytes)
    throw Error(ErrorCode::invalid_tensor,
                "the tensors cover " + std::to_string(at) + " of the " + std::to_string(h.data_bytes) + " data bytes (the offsets must cover the data exactly)",
                name, {}, h.data_start + at);
  return h;
}

Checkpoint read_safetensors(const std::string& path, const OpenOptions& opts) {
  return read_safetensors(Source::open_file(path, opts.use_mmap), opts);
}

Checkpoint read_safetensors(std::span<const uint8_t> bytes, const OpenOptions& opts) {
  return read_safetensors(Source::from_bytes(std::vector<uint8_t>(bytes.begin(), bytes.end())), opts);
}

Checkpoint read_safetensors(std::shared_ptr<const Source> source, const OpenOptions& opts) {
  (void)opts;
  const std::string& path = source->path();
  SafetensorsHeader h = parse_safetensors_header(source->span(), path);
  auto doc = std::make_unique<Document>();
  Value* root = doc->ordered_dict();
  std::vector<std::shared_ptr<Storage>> storages;
  std::unordered_map<std::string_view, Value*> by_name;
  by_name.reserve(h.tensors.size());
  const uint8_t* base = source->data();
  for (const auto& e : h.tensors) {
    const uint64_t off = h.data_start + e.begin;
    const uint8_t* p = base + off;
    auto st = Storage::located(e.dtype, e.end - e.begin, [p, off] { return std::make_pair(p, off); }, source,
                               source->mapped());
    st->key = e.name;
    storages.push_back(st);
    Tensor t;
    t.dtype = e.dtype;
    t.shape = e.shape;
    t.stride = Tensor::contiguous_strides(e.shape);
    t.storage = st;
    Value* tv = doc->tensor(std::move(t));
    root->set(e.name, tv);
    by_name.emplace(e.name, tv);
  }
  // Names dropped as identical aliases (`name: kept` in __metadata__) come back
  // as aliases, in the order `ckpt.keys` records when present.
  std::vector<std::pair<std::string, Value*>> aliases;
  std::vector<std::string> order;
  for (const auto& [k, v] : h.metadata) {
    if (k == "ckpt.keys") {
      Json arr;
      try {
        arr = JsonParser(v, path).parse_document();
      } catch (const Error&) {
        continue;  // not ours after all: ignore
      }
      if (arr.t != Json::T::array) continue;
      for (const auto& it : arr.items)
        if (it.t == Json::T::string) order.push_back(it.s);
      continue;
    }
    if (k == "format" || by_name.count(k) || k.find('.') == std::string::npos) continue;
    auto it = by_name.find(v);
    if (it != by_name.end()) aliases.emplace_back(k, it->second);
  }
  if (!aliases.empty()) {
    Value* full = doc->ordered_dict();
    std::unordered_map<std::string, Value*> alias_of(aliases.begin(), aliases.end());
    std::unordered_set<std::string> placed;
    for (const auto& name : order) {
      Value* v = nullptr;
      if (auto a = alias_of.find(name); a != alias_of.end()) v = a->second;
      else if (auto t = by_name.find(name); t != by_name.end()) v = t->second;
      if (v && placed.insert(name).second) full->set(name, v);
    }
    for (const auto& e : h.tensors)
      if (placed.insert(e.name).second) full->set(e.name, by_name[e.name]);
    for (const auto& [name, v] : aliases)
      if (placed.insert(name).second) full->set(name, v);
    root = full;
  }
  FormatInfo info;
  info.container = Container::safetensors;
  info.era = "safetensors";
  for (const auto& [k, v] : h.metadata) info.records.push_back("__metadata__." + k + "=" + v);
  return Checkpoint::adopt(std::move(source), std::move(doc), root, std::move(info), std::move(storages));
}

// ---------------------------------------------------------------- writing

namespace {

struct Item {
  std::string name;
  const Tensor* t;
  uint64_t lo = 0, hi = 0;  // byte range in the storage (hi == lo: empty)
};

bool same_view(const Tensor& a, const Tensor& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.stride == b.stride && a.storage_offset == b.storage_offset;
}

bool covers(const Tensor& t) {
  return t.storage_offset == 0 && t.is_contiguous() && t.nbytes() == t.storage->nbytes();
}

void byte_range(Item& it) {
  const Tensor& t = *it.t;
  const uint64_t es = static_cast<uint64_t>(dtype_size(t.dtype));
  it.lo = static_cast<uint64_t>(t.storage_offset) * es;
  if (t.numel() == 0) {
    it.hi = it.lo;
    return;
  }
  uint64_t span = 1;
  for (size_t d = 0; d < t.shape.size(); ++d) span += static_cast<uint64_t>(t.shape[d] - 1) * static_cast<uint64_t>(t.stride[d]);
  it.hi = it.lo + span * es;
}

}  // namespace

SafetensorsSaveResult save_safetensors(const std::string& path, const Value& state_dict, const SafetensorsSaveOptions& opts) {
  if (!state_dict.is_dict()) throw Error(ErrorCode::invalid_argument, "safetensors holds a dict of tensors; got a " + std::string(kind_name(state_dict.kind())));
  std::vector<Item> items;
  items.reserve(state_dict.size());
  for (const auto& [k, v] : state_dict.items()) {
    if (!k->is(Kind::string)) throw Error(ErrorCode::invalid_argument, "safetensors names are strings; key " + repr(*k, 60) + " is not");
    const std::string& name = k->as_str();
    if (!v->is(Kind::tensor))
      throw Error(ErrorCode::invalid_argument, "safetensors holds only tensors; '" + name + "' is a " + std::string(kind_name(v->kind())), {}, {}, Error::no_offset, name);
    if (name == "__metadata__") throw Error(ErrorCode::invalid_argument, "a tensor may not be named __metadata__", {}, {}, Error::no_offset, name);
    if (!valid_utf8(name)) throw Error(ErrorCode::invalid_argument, "tensor name is not valid UTF-8", {}, {}, Error::no_offset, name);
    const Tensor& t = v->tensor();
    if (!safetensors_dtype_name(t.dtype))
      throw Error(ErrorCode::invalid_argument, "safetensors has no dtype for " + std::string(dtype_name(t.dtype)), {}, {}, Error::no_offset, name);
    Item it{name, &t};
    byte_range(it);
    items.push_back(std::move(it));
  }
  // Shared storages: cluster overlapping byte ranges, keep the smallest name
  // that covers the storage, drop identical views of it.
  std::map<const Storage*, std::vector<size_t>> by_storage;
  for (size_t i = 0; i < items.size(); ++i)
    if (items[i].hi > items[i].lo) by_storage[items[i].t->storage.get()].push_back(i);  // empty tensors share nothing
  std::vector<bool> dropped(items.size(), false);
  SafetensorsSaveResult result;
  std::vector<std::pair<size_t, size_t>> recorded;  // {dropped, kept} item indices
  for (auto& [st, idx] : by_storage) {
    if (idx.size() < 2) continue;
    std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return items[a].lo < items[b].lo; });
    for (size_t s = 0; s < idx.size();) {
      size_t e = s + 1;
      uint64_t hi = items[idx[s]].hi;
      for (; e < idx.size() && items[idx[e]].lo < hi; ++e) hi = std::max(hi, items[idx[e]].hi);
      if (e - s > 1) {
        std::optional<size_t> keep;
        for (size_t k = s; k < e; ++k)
          if (covers(*items[idx[k]].t) && (!keep || items[idx[k]].name < items[*keep].name)) keep = idx[k];
        if (!keep) {
          std::string names;
          for (size_t k = s; k < e && k < s + 6; ++k) names += (names.empty() ? "" : ", ") + items[idx[k]].name;
          throw Error(ErrorCode::invalid_argument,
                      "tensors " + names + " share a storage but none of them covers all of it; safetensors would store " +
                          "more than they hold (clone them first)",
                      {}, {}, Error::no_offset, items[idx[s]].name);
        }
        for (size_t k = s; k < e; ++k) {
          size_t i = idx[k];
          if (i == *keep || !same_view(*items[i].t, *items[*keep].t)) continue;
          dropped[i] = true;
          recorded.emplace_back(i, *keep);
        }
      }
      s = e;
    }
  }
  // Header.
  std::vector<std::pair<std::string, std::string>> meta = opts.metadata;
  if (std::none_of(meta.begin(), meta.end(), [](const auto& m) { return m.first == "format"; }))
    meta.insert(meta.begin(), {"format", "pt"});
  std::unordered_set<std::string> meta_keys;
  for (const auto& [k, v] : meta) meta_keys.insert(k);
  // Record dropped names in state-dict order, and the full key order.
  std::sort(recorded.begin(), recorded.end());
  for (const auto& [from, to] : recorded)
    if (meta_keys.insert(items[from].name).second) meta.emplace_back(items[from].name, items[to].name);
  if (!recorded.empty() && !meta_keys.count("ckpt.keys")) {
    std::string keys = "[";
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) keys += ',';
      json_string(keys, items[i].name);
    }
    keys += ']';
    meta.emplace_back("ckpt.keys", keys);
  }
  for (const auto& [k, v] : meta)
    if (!valid_utf8(k) || !valid_utf8(v)) throw Error(ErrorCode::invalid_argument, "__metadata__ entry '" + k + "' is not valid UTF-8");

  std::string header = "{";
  json_string(header, "__metadata__");
  header += ":{";
  for (size_t i = 0; i < meta.size(); ++i) {
    if (i) header += ',';
    json_string(header, meta[i].first);
    header += ':';
    json_string(header, meta[i].second);
  }
  header += '}';
  uint64_t offset = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (dropped[i]) continue;
    const Tensor& t = *items[i].t;
    header += ',';
    json_string(header, items[i].name);
    header += ":{\"dtype\":\"";
    header += *safetensors_dtype_name(t.dtype);
    header += "\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (d) header += ',';
      header += std::to_string(t.shape[d]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + ',' + std::to_string(offset + t.nbytes()) + "]}";
    offset += t.nbytes();
    ++result.tensors;
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');  // aligned data, as the reference writer pads
  if (header.size() > kSafetensorsMaxHeader)
    throw Error(ErrorCode::limit_exceeded, "the safetensors header would be " + std::to_string(header.size()) + " bytes, over the 100 MB readers accept");

  AtomicFile f(path, opts.durable);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>((static_cast<uint64_t>(header.size()) >> (8 * i)) & 0xFF);
  f.write(len, 8);
  f.write(header.data(), header.size());
  uint64_t done = 0;
  std::vector<uint8_t> buf;
  for (size_t i = 0; i < items.size(); ++i) {
    if (dropped[i]) continue;
    const Tensor& t = *items[i].t;
    try {
      t.storage->verify();  // a damaged stored record is never copied under a fresh checksum
      if (t.is_contiguous() && !t.storage->big_endian()) {
        auto b = t.contiguous_bytes();
        f.write(b.data(), b.size());
      } else {
        buf.resize(static_cast<size_t>(t.nbytes()));
        t.copy_to(buf.data());
        f.write(buf.data(), buf.size());
      }
    } catch (const Error& e) {
      throw e.with_key_path(items[i].name);
    }
    t.storage->release_pages();
    done += t.nbytes();
    if (opts.progress) opts.progress(done);
  }
  result.bytes = f.bytes_written();
  f.commit();
  for (const auto& [from, to] : recorded) result.aliases.emplace_back(items[from].name, items[to].name);
  return result;
}

}  // namespace ckpt
