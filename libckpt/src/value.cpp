#include "ckpt/value.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>

#include "ckpt/error.hpp"

namespace ckpt {

const char* kind_name(Kind k) noexcept {
  switch (k) {
    case Kind::none: return "None";
    case Kind::boolean: return "bool";
    case Kind::integer: return "int";
    case Kind::bigint: return "int";
    case Kind::floating: return "float";
    case Kind::complex: return "complex";
    case Kind::string: return "str";
    case Kind::bytes: return "bytes";
    case Kind::list: return "list";
    case Kind::tuple: return "tuple";
    case Kind::dict: return "dict";
    case Kind::set: return "set";
    case Kind::frozenset: return "frozenset";
    case Kind::global: return "global";
    case Kind::object: return "object";
    case Kind::tensor: return "tensor";
    case Kind::storage: return "storage";
    case Kind::ndarray: return "ndarray";
    case Kind::np_dtype: return "numpy.dtype";
    case Kind::torch_dtype: return "torch.dtype";
    case Kind::device: return "torch.device";
  }
  return "?";
}

namespace {

[[noreturn]] void type_fail(const Value& v, const char* wanted) {
  throw Error(ErrorCode::type_error,
              std::string("expected ") + wanted + ", found " + kind_name(v.kind()) +
                  (v.type_name().empty() ? "" : " (" + std::string(v.type_name()) + ")"));
}

}  // namespace

bool Value::as_bool() const {
  if (kind_ == Kind::boolean) return i_ != 0;
  type_fail(*this, "bool");
}
int64_t Value::as_int() const {
  if (kind_ == Kind::integer || kind_ == Kind::boolean) return i_;
  type_fail(*this, "int");
}
double Value::as_float() const {
  if (kind_ == Kind::floating) return f_;
  if (kind_ == Kind::integer || kind_ == Kind::boolean) return static_cast<double>(i_);
  type_fail(*this, "float");
}
const std::string& Value::as_str() const {
  if (kind_ == Kind::string) return s_;
  type_fail(*this, "str");
}
const std::string& Value::as_bytes() const {
  if (kind_ == Kind::bytes) return s_;
  type_fail(*this, "bytes");
}
const std::string& Value::bigint_text() const {
  if (kind_ == Kind::bigint) return s_;
  type_fail(*this, "big int");
}

size_t Value::size() const noexcept {
  switch (kind_) {
    case Kind::list: case Kind::tuple: case Kind::set: case Kind::frozenset: return elems_.size();
    case Kind::dict: return items_.size();
    default: return 0;
  }
}

Value::Value(Document* d, Kind k) : doc_(d), kind_(k), elems_(&d->pool_), items_(&d->pool_) {}

void Value::set_type_name(std::string_view t) { type_ = doc_->intern(t); }

std::string_view Document::intern(std::string_view s) {
  static constexpr std::string_view kKnown[] = {
      "collections.OrderedDict", "collections.Counter", "collections.defaultdict", "argparse.Namespace",
      "torch.Size", "torch.torch_version.TorchVersion", "builtins.bytearray"};
  for (auto k : kKnown)
    if (k == s) return k;
  for (const auto& i : interned_)
    if (i == s) return i;
  interned_.emplace_back(s);
  return interned_.back();
}

Value::Elements Value::elements() const {
  if (kind_ == Kind::list || kind_ == Kind::tuple || kind_ == Kind::set || kind_ == Kind::frozenset) return elems_;
  type_fail(*this, "list, tuple or set");
}
Value::Items Value::items() const {
  if (kind_ == Kind::dict) return items_;
  type_fail(*this, "dict");
}

namespace {
// Canonical text of a hashable key. Tuples of shared tuples form DAGs whose
// expansion is exponential, so the text has a budget; past it the key is
// compared by identity instead.
bool index_key_into(const Value& k, std::string& out, size_t& budget);
}  // namespace

std::optional<std::string> Value::find_index_key(const Value& k) const {
  std::string out;
  size_t budget = 4096;
  if (!index_key_into(k, out, budget)) return std::nullopt;
  return out;
}

namespace {
bool index_key_into(const Value& k, std::string& out, size_t& budget) {
  if (budget == 0) return false;
  --budget;
  switch (k.kind()) {
    case Kind::string: out += 's'; out += k.as_str(); break;
    case Kind::integer: case Kind::boolean: out += 'i'; out += std::to_string(k.as_int()); break;
    case Kind::bigint: out += 'i'; out += k.bigint_text(); break;
    case Kind::none: out += 'n'; break;
    case Kind::bytes: out += 'b'; out += k.as_bytes(); break;
    case Kind::floating: {
      double f = k.as_float();
      if (std::isfinite(f) && f == std::floor(f) && std::fabs(f) < 9.2e18) {
        out += 'i';
        out += std::to_string(static_cast<int64_t>(f));
      } else {
        char buf[40];
        std::snprintf(buf, sizeof buf, "f%a", f);
        out += buf;
      }
      break;
    }
    case Kind::tuple: {
      out += "t(";
      for (const Value* e : k.elements()) {
        std::string sub;
        if (!index_key_into(*e, sub, budget)) return false;
        out += std::to_string(sub.size()) + ":" + sub;
        if (out.size() > 4096) return false;
      }
      out += ')';
      break;
    }
    case Kind::global: out += 'g'; out += k.module() + "." + k.name(); break;
    case Kind::torch_dtype: out += 'd'; out += dtype_name(k.torch_dtype()); break;
    default: return false;
  }
  return out.size() <= 1 << 20;
}
}  // namespace

std::unique_ptr<Value::Index> Value::build_index() const {
  auto ix = std::make_unique<Index>();
  ix->strings.reserve(items_.size() * 2);
  for (size_t i = 0; i < items_.size(); ++i) {
    const Value* k = items_[i].first;
    if (k->kind_ == Kind::string) {
      ix->strings[std::string_view(k->s_)] = i;
    } else if (auto c = find_index_key(*k)) {
      ix->others[*c] = i;
    }
  }
  return ix;
}

const Value::Index& Value::index() const {
  Index* cur = index_.load(std::memory_order_acquire);
  if (cur) return *cur;
  Index* fresh = build_index().release();
  if (index_.compare_exchange_strong(cur, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;  // another reader published first
  return *cur;
}

Value* Value::get(const Value& key) const noexcept {
  if (kind_ != Kind::dict) return nullptr;
  if (key.kind_ == Kind::string) return get(std::string_view(key.s_));
  auto k = find_index_key(key);
  if (!k) {
    for (const auto& [kk, vv] : items_)
      if (kk == &key) return vv;
    return nullptr;
  }
  const Index& ix = index();
  auto it = ix.others.find(*k);
  return it == ix.others.end() ? nullptr : items_[it->second].second;
}

Value* Value::get(std::string_view key) const noexcept {
  if (kind_ != Kind::dict) return nullptr;
  if (items_.size() <= 8 && !index_.load(std::memory_order_acquire)) {
    for (const auto& [kk, vv] : items_)
      if (kk->kind_ == Kind::string && kk->s_ == key) return vv;
    return nullptr;
  }
  const Index& ix = index();
  auto it = ix.strings.find(key);
  return it == ix.strings.end() ? nullptr : items_[it->second].second;
}

void Value::merge_duplicate_keys() {
  pending_dedupe_ = false;
  if (items_.size() < 2) return;
  // Sort item indices by key text; equal neighbours are duplicates. One
  // allocation per dict instead of an index node per key.
  struct K {
    std::string_view text;
    size_t pos;
  };
  std::vector<K> keys;
  std::vector<std::string> canon;  // texts of non-string keys; reserved, so views stay valid
  keys.reserve(items_.size());
  canon.reserve(items_.size());
  for (size_t i = 0; i < items_.size(); ++i) {
    const Value* k = items_[i].first;
    if (k->kind_ == Kind::string) {
      keys.push_back(K{std::string_view(k->s_), i});
    } else if (auto c = find_index_key(*k)) {
      canon.push_back("\x01" + *c);  // never equal to a str key's text
      keys.push_back(K{std::string_view(canon.back()), i});
    }
  }
  std::sort(keys.begin(), keys.end(), [](const K& a, const K& b) { return a.text != b.text ? a.text < b.text : a.pos < b.pos; });
  bool dups = false;
  for (size_t i = 1; i < keys.size() && !dups; ++i) dups = keys[i].text == keys[i - 1].text;
  if (!dups) return;
  std::vector<char> drop(items_.size(), 0);
  for (size_t i = 0; i < keys.size();) {
    size_t j = i;
    while (j + 1 < keys.size() && keys[j + 1].text == keys[i].text) ++j;
    if (j > i) {
      items_[keys[i].pos].second = items_[keys[j].pos].second;  // last value, first position
      for (size_t d = i + 1; d <= j; ++d) drop[keys[d].pos] = 1;
    }
    i = j + 1;
  }
  size_t w = 0;
  for (size_t r = 0; r < items_.size(); ++r)
    if (!drop[r]) items_[w++] = items_[r];
  items_.resize(w);
  drop_index();
}

Value& Value::at(std::string_view key) const {
  if (kind_ != Kind::dict) type_fail(*this, "dict");
  Value* v = get(key);
  if (!v) throw Error(ErrorCode::key_not_found, "no key '" + std::string(key) + "'");
  return *v;
}

Value& Value::at(size_t index) const {
  const auto& e = elements();
  if (index >= e.size())
    throw Error(ErrorCode::key_not_found,
                "index " + std::to_string(index) + " out of range (size " + std::to_string(e.size()) + ")");
  return *e[index];
}

const std::string& Value::module() const {
  if (kind_ == Kind::global) return s_;
  type_fail(*this, "global");
}
const std::string& Value::name() const {
  if (kind_ == Kind::global) return s2_;
  type_fail(*this, "global");
}
std::string Value::qualified_name() const {
  if (kind_ == Kind::global) return s_ + "." + s2_;
  if (kind_ == Kind::object && a_) {
    if (a_->kind_ == Kind::global) return a_->qualified_name();
    return "<computed>";
  }
  return {};
}

const Tensor& Value::tensor() const {
  if (kind_ == Kind::tensor) return *tensor_;
  type_fail(*this, "tensor");
}
Tensor& Value::tensor() {
  if (kind_ == Kind::tensor) return *tensor_;
  type_fail(*this, "tensor");
}
const std::shared_ptr<Storage>& Value::storage() const {
  if (kind_ == Kind::storage) return storage_;
  type_fail(*this, "storage");
}
const NdArray& Value::ndarray() const {
  if (kind_ == Kind::ndarray) return *nd_;
  type_fail(*this, "numpy array");
}
DType Value::torch_dtype() const {
  if (kind_ == Kind::torch_dtype) return dtype_;
  type_fail(*this, "torch dtype");
}
const std::string& Value::device() const {
  if (kind_ == Kind::device) return s_;
  type_fail(*this, "torch.device");
}
const std::string& Value::np_descr() const {
  if (kind_ == Kind::np_dtype) return s_;
  type_fail(*this, "numpy dtype");
}

Value* Value::append(Value* v) {
  if (kind_ != Kind::list && kind_ != Kind::set) type_fail(*this, "list or set");
  elems_.push_back(v);
  if (v->depth_ + 1 > depth_) depth_ = v->depth_ + 1;
  return this;
}

Value* Value::set(Value* key, Value* v) {
  if (kind_ != Kind::dict) type_fail(*this, "dict");
  if (items_.size() >= 8) (void)index();
  if (Index* ix = index_.load(std::memory_order_relaxed)) {
    size_t* slot = nullptr;
    if (key->kind_ == Kind::string) {
      auto [it, fresh] = ix->strings.emplace(std::string_view(key->s_), items_.size());
      if (!fresh) slot = &it->second;
    } else if (auto c = find_index_key(*key)) {
      auto [it, fresh] = ix->others.emplace(std::move(*c), items_.size());
      if (!fresh) slot = &it->second;
    }
    size_t identity = items_.size();
    if (!slot && key->kind_ != Kind::string && !find_index_key(*key)) {  // unhashable by value: same object
      for (size_t i = 0; i < items_.size(); ++i)
        if (items_[i].first == key) identity = i;
    }
    if (slot) items_[*slot].second = v;
    else if (identity < items_.size()) items_[identity].second = v;
    else items_.emplace_back(key, v);
  } else {
    bool found = false;
    auto k = key->kind_ == Kind::string ? std::nullopt : find_index_key(*key);
    for (auto& kv : items_) {
      bool same;
      if (key->kind_ == Kind::string) same = kv.first->kind_ == Kind::string && kv.first->s_ == key->s_;
      else if (k) {
        auto s = kv.first->kind_ == Kind::string ? std::nullopt : find_index_key(*kv.first);
        same = s && *s == *k;
      } else same = kv.first == key;
      if (same) {
        kv.second = v;
        found = true;
        break;
      }
    }
    if (!found) items_.emplace_back(key, v);
  }
  uint32_t d = std::max(key->depth_, v->depth_) + 1;
  if (d > depth_) depth_ = d;
  return this;
}

Value* Value::set(std::string_view key, Value* v) { return set(doc_->str(key), v); }
Value* Value::set(std::string_view key, std::string_view v) { return set(doc_->str(key), doc_->str(v)); }
Value* Value::set(std::string_view key, int64_t v) { return set(doc_->str(key), doc_->integer(v)); }
Value* Value::set(std::string_view key, double v) { return set(doc_->str(key), doc_->floating(v)); }
Value* Value::set(std::string_view key, bool v) { return set(doc_->str(key), doc_->boolean(v)); }

bool Value::erase(std::string_view key) {
  if (kind_ != Kind::dict) type_fail(*this, "dict");
  for (auto it = items_.begin(); it != items_.end(); ++it) {
    if (it->first->kind_ == Kind::string && it->first->s_ == key) {
      items_.erase(it);
      drop_index();
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------- Document

// An arena of chunks that double in size (64 values up to 4096): a few
// allocations per document, and no moves (Value* stay valid).
Value* Document::make(Kind k) {
  if (chunks_.empty() || used_ == chunks_.back().capacity) {
    const size_t cap = chunks_.empty() ? 64 : std::min<size_t>(chunks_.back().capacity * 2, 4096);
    chunks_.push_back(Chunk{static_cast<Value*>(::operator new(cap * sizeof(Value), std::align_val_t(alignof(Value)))), cap});
    used_ = 0;
  }
  Value* v = new (chunks_.back().base + used_) Value(this, k);
  ++used_;
  ++count_;
  return v;
}

Document::~Document() {
  for (size_t c = 0; c < chunks_.size(); ++c) {
    const size_t n = c + 1 == chunks_.size() ? used_ : chunks_[c].capacity;
    for (size_t i = 0; i < n; ++i) chunks_[c].base[i].~Value();
    ::operator delete(chunks_[c].base, std::align_val_t(alignof(Value)));
  }
}

Value* Document::none() {
  if (!none_) {
    none_ = make(Kind::none);
    none_->shared_ = true;
  }
  return none_;
}
Value* Document::boolean(bool b) {
  Value*& slot = bools_[b ? 1 : 0];
  if (!slot) {
    slot = make(Kind::boolean);
    slot->i_ = b;
    slot->shared_ = true;
  }
  return slot;
}
Value* Document::integer(int64_t i) {
  if (i >= 0 && i < 256) {
    Value*& slot = small_ints_[i];
    if (!slot) {
      slot = make(Kind::integer);
      slot->i_ = i;
      slot->shared_ = true;
    }
    return slot;
  }
  Value* v = make(Kind::integer);
  v->i_ = i;
  return v;
}
Value* Document::bigint(std::string decimal) {
  Value* v = make(Kind::bigint);
  v->s_ = std::move(decimal);
  return v;
}
Value* Document::floating(double f) {
  Value* v = make(Kind::floating);
  v->f_ = f;
  return v;
}
Value* Document::complex(double re, double im) {
  Value* v = make(Kind::complex);
  v->f_ = re;
  v->f2_ = im;
  return v;
}
Value* Document::str(std::string_view s) {
  Value* v = make(Kind::string);
  v->s_ = s;
  return v;
}
Value* Document::bytes(std::string_view b) {
  Value* v = make(Kind::bytes);
  v->s_ = b;
  return v;
}
Value* Document::list(std::vector<Value*> elems) {
  Value* v = make(Kind::list);
  for (Value* e : elems) v->append(e);
  return v;
}
Value* Document::tuple(std::vector<Value*> elems) { return tuple(std::span<Value* const>(elems)); }

Value* Document::tuple(std::span<Value* const> elems) {
  Value* v = make(Kind::tuple);
  uint32_t d = 0;
  for (Value* e : elems) d = std::max(d, e->depth_ + 1);
  v->depth_ = d;
  v->elems_.assign(elems.begin(), elems.end());
  return v;
}
Value* Document::dict() { return make(Kind::dict); }
Value* Document::ordered_dict() {
  Value* v = make(Kind::dict);
  v->type_ = "collections.OrderedDict";
  return v;
}
Value* Document::namespace_() {
  Value* v = make(Kind::dict);
  v->type_ = "argparse.Namespace";
  return v;
}
Value* Document::set(std::vector<Value*> elems) {
  Value* v = make(Kind::set);
  for (Value* e : elems) v->append(e);
  return v;
}
Value* Document::frozenset(std::vector<Value*> elems) {
  Value* v = make(Kind::frozenset);
  v->elems_.assign(elems.begin(), elems.end());
  return v;
}
Value* Document::global(std::string module, std::string name) {
  Value* v = make(Kind::global);
  v->s_ = std::move(module);
  v->s2_ = std::move(name);
  return v;
}
Value* Document::object(Value* callable, Value* args, bool newobj) {
  Value* v = make(Kind::object);
  v->a_ = callable;
  v->b_ = args;
  v->flag_ = newobj;
  if (args) v->depth_ = args->depth_ + 1;
  return v;
}
Value* Document::tensor(Tensor t) {
  Value* v = make(Kind::tensor);
  v->tensor_ = std::make_shared<Tensor>(std::move(t));
  return v;
}
Value* Document::storage(std::shared_ptr<Storage> s) {
  Value* v = make(Kind::storage);
  v->storage_ = std::move(s);
  return v;
}
Value* Document::ndarray(NdArray a) {
  Value* v = make(Kind::ndarray);
  v->nd_ = std::make_shared<NdArray>(std::move(a));
  return v;
}
Value* Document::np_dtype(std::string descr) {
  Value* v = make(Kind::np_dtype);
  v->s_ = std::move(descr);
  return v;
}
Value* Document::torch_dtype(DType t) {
  Value* v = make(Kind::torch_dtype);
  v->dtype_ = t;
  return v;
}
Value* Document::device(std::string spec) {
  Value* v = make(Kind::device);
  v->s_ = std::move(spec);
  return v;
}
Value* Document::size(const std::vector<int64_t>& dims) {
  std::vector<Value*> e;
  e.reserve(dims.size());
  for (int64_t d : dims) e.push_back(integer(d));
  Value* v = tuple(std::move(e));
  v->type_ = "torch.Size";
  return v;
}

// ---------------------------------------------------------------- walking

std::string key_component(const Value& key) {
  switch (key.kind()) {
    case Kind::string: return key.as_str();
    case Kind::integer: return std::to_string(key.as_int());
    case Kind::boolean: return key.as_bool() ? "True" : "False";
    case Kind::none: return "None";
    default: return repr(key, 60);
  }
}

namespace {

struct Walker {
  const std::function<bool(const TensorVisit&)>& fn;
  uint32_t max_depth;
  uint64_t max_nodes;
  uint64_t visited = 0;
  std::string path;

  bool visit(const Value& v, uint32_t depth) {
    if (++visited > max_nodes)
      throw Error(ErrorCode::limit_exceeded,
                  "tree walk visited more than " + std::to_string(max_nodes) +
                      " nodes (shared sub-trees expand exponentially: a memo bomb?)",
                  {}, {}, Error::no_offset, path);
    if (depth > max_depth)
      throw Error(ErrorCode::limit_exceeded,
                  "value tree deeper than " + std::to_string(max_depth) + " levels (or cyclic)", {}, {},
                  Error::no_offset, path);
    switch (v.kind()) {
      case Kind::tensor: return fn(TensorVisit{path, &v});
      case Kind::dict:
        for (const auto& [k, val] : v.items()) {
          if (k->kind() == Kind::string) {
            if (!descend(*val, std::string_view(k->as_str()), depth)) return false;
          } else if (!descend(*val, key_component(*k), depth)) {
            return false;
          }
        }
        return true;
      case Kind::list: case Kind::tuple: {
        const auto& e = v.elements();
        for (size_t i = 0; i < e.size(); ++i) {
          char buf[24];
          int n = std::snprintf(buf, sizeof buf, "%zu", i);
          if (!descend(*e[i], std::string_view(buf, static_cast<size_t>(n)), depth)) return false;
        }
        return true;
      }
      case Kind::object: {
        if (v.state() && !descend(*v.state(), "__state__", depth)) return false;
        for (const auto& [k, val] : v.object_items())
          if (!descend(*val, key_component(*k), depth)) return false;  // rare: opaque dict subclasses
        return true;
      }
      default: return true;
    }
  }
  bool descend(const Value& v, std::string_view comp, uint32_t depth) {
    // Only containers can hold tensors; skip scalars cheaply.
    switch (v.kind()) {
      case Kind::tensor: case Kind::dict: case Kind::list: case Kind::tuple: case Kind::object: break;
      default: return true;
    }
    size_t old = path.size();
    if (!path.empty()) path += '/';
    path += comp;
    bool r = visit(v, depth + 1);
    path.resize(old);
    return r;
  }
};

void append_escaped(std::string& out, const std::string& s, char quote, bool escape_high = false) {
  if (quote) out += quote;
  for (unsigned char c : s) {
    if (c == '\\' || (quote && c == static_cast<unsigned char>(quote))) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f || (escape_high && c >= 0x80)) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (quote) out += quote;
}

std::string escaped(const std::string& s) {
  std::string out;
  append_escaped(out, s, 0);
  return out;
}

void repr_into(std::string& out, const Value& v, size_t max_len, uint32_t depth) {
  if (out.size() > max_len) return;
  if (depth > 20) {
    out += "...";
    return;
  }
  switch (v.kind()) {
    case Kind::none: out += "None"; return;
    case Kind::boolean: out += v.as_bool() ? "True" : "False"; return;
    case Kind::integer: out += std::to_string(v.as_int()); return;
    case Kind::bigint: out += v.bigint_text(); return;
    case Kind::floating: {
      char buf[40];
      double f = v.as_float();
      if (std::isnan(f)) out += "nan";
      else if (std::isinf(f)) out += f > 0 ? "inf" : "-inf";
      else {
        std::snprintf(buf, sizeof buf, "%.17g", f);
        // Shortest representation that round-trips.
        for (int p = 1; p <= 17; ++p) {
          char b2[40];
          std::snprintf(b2, sizeof b2, "%.*g", p, f);
          if (std::strtod(b2, nullptr) == f) {
            std::memcpy(buf, b2, sizeof b2);
            break;
          }
        }
        out += buf;
        if (!std::strpbrk(buf, ".eE")) out += ".0";
      }
      return;
    }
    case Kind::complex: {
      char buf[80];
      std::snprintf(buf, sizeof buf, "(%g%+gj)", v.real(), v.imag());
      out += buf;
      return;
    }
    case Kind::string: append_escaped(out, v.as_str(), '\''); return;
    case Kind::bytes: out += 'b'; append_escaped(out, v.as_bytes(), '\'', true); return;
    case Kind::list: case Kind::tuple: case Kind::set: case Kind::frozenset: {
      const char* open = v.kind() == Kind::list ? "[" : v.kind() == Kind::tuple ? "(" : "{";
      const char* close = v.kind() == Kind::list ? "]" : v.kind() == Kind::tuple ? ")" : "}";
      if (v.type_name() == "torch.Size") out += "torch.Size(";
      if (v.kind() == Kind::frozenset) out += "frozenset(";
      if (v.kind() == Kind::set && v.size() == 0) { out += "set()"; return; }
      out += open;
      bool first = true;
      for (const Value* e : v.elements()) {
        if (!first) out += ", ";
        first = false;
        if (out.size() > max_len) { out += "..."; break; }
        repr_into(out, *e, max_len, depth + 1);
      }
      if (v.kind() == Kind::tuple && v.size() == 1) out += ",";
      out += close;
      if (v.type_name() == "torch.Size" || v.kind() == Kind::frozenset) out += ")";
      return;
    }
    case Kind::dict: {
      bool ns = v.type_name() == "argparse.Namespace";
      if (ns) out += "Namespace(";
      else if (!v.type_name().empty()) out += escaped(std::string(v.type_name().substr(v.type_name().rfind('.') + 1))) + "(";
      out += ns ? "" : "{";
      bool first = true;
      for (const auto& [k, val] : v.items()) {
        if (!first) out += ", ";
        first = false;
        if (out.size() > max_len) { out += "..."; break; }
        if (ns) {
          out += key_component(*k);
          out += "=";
        } else {
          repr_into(out, *k, max_len, depth + 1);
          out += ": ";
        }
        repr_into(out, *val, max_len, depth + 1);
      }
      out += ns ? ")" : "}";
      if (!ns && !v.type_name().empty()) out += ")";
      return;
    }
    case Kind::global: out += escaped(v.module() + "." + v.name()); return;
    case Kind::object: {
      out += "<" + escaped(v.qualified_name());
      if (!v.unsupported_reason().empty()) out += ": " + v.unsupported_reason();
      out += ">";
      return;
    }
    case Kind::tensor: {
      const Tensor& t = v.tensor();
      out += "tensor(";
      out += dtype_name(t.dtype);
      out += ", [";
      for (size_t i = 0; i < t.shape.size(); ++i) {
        if (i) out += ", ";
        out += std::to_string(t.shape[i]);
      }
      out += "])";
      return;
    }
    case Kind::storage: out += "storage(" + std::string(dtype_name(v.storage()->dtype())) + ", " + std::to_string(v.storage()->numel()) + ")"; return;
    case Kind::ndarray: {
      const NdArray& a = v.ndarray();
      out += a.is_scalar ? "numpy.scalar(" : "numpy.ndarray(";
      out += escaped(a.descr);
      if (!a.is_scalar) {
        out += ", [";
        for (size_t i = 0; i < a.shape.size(); ++i) {
          if (i) out += ", ";
          out += std::to_string(a.shape[i]);
        }
        out += "]";
      }
      out += ")";
      return;
    }
    case Kind::np_dtype: out += "dtype(";
      append_escaped(out, v.np_descr(), '\'');
      out += ")";
      return;
    case Kind::torch_dtype: out += "torch."; out += dtype_name(v.torch_dtype()); return;
    case Kind::device: out += "device(";
      append_escaped(out, v.device(), '\'');
      out += ")";
      return;
  }
}

}  // namespace

void walk_tensors(const Value& root, const std::function<bool(const TensorVisit&)>& fn, uint32_t max_depth,
                  uint64_t max_nodes) {
  Walker w{fn, max_depth, max_nodes, 0, {}};
  w.visit(root, 0);
}

std::string repr(const Value& v, size_t max_len) {
  std::string out;
  repr_into(out, v, max_len, 0);
  if (out.size() > max_len + 3) {
    out.resize(max_len);
    out += "...";
  }
  return out;
}

}  // namespace ckpt
