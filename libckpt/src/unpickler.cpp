// The pickle virtual machine: every opcode of protocols 0-5, building a
// value tree in a Document. Nothing is imported, resolved or called: globals
// are names, and the few constructors we understand are interpreted here by
// exact name (see call_global). Every length is checked against the bytes
// that remain before anything is allocated.
#include <cctype>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "ckpt/detail/checked.hpp"
#include "ckpt/error.hpp"
#include "ckpt/pickle.hpp"
#include "utf8.hpp"

namespace ckpt {

class Unpickler {
 public:
  Unpickler(std::span<const uint8_t> in, Document& doc, const UnpickleOptions& o) : in_(in), doc_(doc), o_(o) {}

  UnpickleResult run();
  const std::vector<GlobalRef>& globals() const noexcept { return res_.globals; }

 private:
  // ---- input ----
  [[noreturn]] void fail(ErrorCode code, const std::string& msg) const;
  void need(uint64_t n, const char* what) const {
    if (n > in_.size() - pos_)
      fail(ErrorCode::truncated, std::string(what) + " needs " + std::to_string(n) + " bytes but only " +
                                     std::to_string(in_.size() - pos_) + " remain");
  }
  uint8_t u8() {
    need(1, "operand");
    return in_[pos_++];
  }
  uint64_t uint_le(int n) {
    need(static_cast<uint64_t>(n), "operand");
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(in_[pos_ + i]) << (8 * i);
    pos_ += static_cast<size_t>(n);
    return v;
  }
  std::string_view take(uint64_t n, const char* what) {
    if (n > o_.limits.max_string_bytes)
      fail(ErrorCode::limit_exceeded, std::string(what) + " of " + std::to_string(n) + " bytes exceeds the limit of " +
                                          std::to_string(o_.limits.max_string_bytes));
    need(n, what);
    std::string_view s(reinterpret_cast<const char*>(in_.data() + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }
  std::string_view line() {
    const uint8_t* start = in_.data() + pos_;
    const void* nl = std::memchr(start, '\n', in_.size() - pos_);
    if (!nl) fail(ErrorCode::truncated, "text operand has no terminating newline");
    size_t n = static_cast<size_t>(static_cast<const uint8_t*>(nl) - start);
    pos_ += n + 1;
    std::string_view s(reinterpret_cast<const char*>(start), n);
    if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
    return s;
  }

  // ---- stack ----
  void push(Value* v) {
    if (stack_.size() >= o_.limits.max_stack)
      fail(ErrorCode::limit_exceeded, "pickle stack exceeds " + std::to_string(o_.limits.max_stack) + " values");
    if (v->depth_ > o_.limits.max_depth)
      fail(ErrorCode::limit_exceeded, "values nested deeper than " + std::to_string(o_.limits.max_depth) + " levels");
    stack_.push_back(v);
  }
  Value* pop() {
    if (stack_.size() <= floor()) fail(ErrorCode::malformed_pickle, "stack underflow");
    Value* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value* top() {
    if (stack_.size() <= floor()) fail(ErrorCode::malformed_pickle, "stack underflow");
    return stack_.back();
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  // The values since the last MARK, in place; drop_mark() removes them.
  std::span<Value* const> mark_region() {
    if (marks_.empty()) fail(ErrorCode::malformed_pickle, "no MARK on the stack");
    const size_t m = marks_.back();
    return {stack_.data() + m, stack_.size() - m};
  }
  void drop_mark() {
    stack_.resize(marks_.back());
    marks_.pop_back();
  }
  // The value just below the last MARK (APPENDS/SETITEMS/ADDITEMS target).
  Value* below_mark() {
    const size_t m = marks_.back();
    const size_t floor_below = marks_.size() >= 2 ? marks_[marks_.size() - 2] : 0;
    if (m == 0 || m - 1 < floor_below) fail(ErrorCode::malformed_pickle, "stack underflow");
    return stack_[m - 1];
  }
  std::vector<Value*> pop_mark() {
    if (marks_.empty()) fail(ErrorCode::malformed_pickle, "no MARK on the stack");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Value*> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  void touch(Value* container, Value* child) {
    ++slots_;
    if (child->depth_ + 1 > container->depth_) container->depth_ = child->depth_ + 1;
    if (container->depth_ > o_.limits.max_depth)
      fail(ErrorCode::limit_exceeded, "values nested deeper than " + std::to_string(o_.limits.max_depth) + " levels");
  }

  // ---- values ----
  Value* mk(Value* v) {
    if (!v->shared_) v->offset_ = op_;
    return v;
  }
  Value* make_int_from_text(std::string_view s);
  Value* make_long_bytes(std::string_view b);
  std::string decode_py2_string(std::string_view raw);
  void check_utf8(std::string_view s, const char* what);
  Value* global(std::string module, std::string name);
  Value* call(Value* callable, Value* args, bool newobj);
  Value* call_global(Value* g, Value* args, bool newobj);
  Value* rebuild_tensor(const std::string& fn, Value* args);
  Value* unsupported_tensor(Value* g, Value* args, const std::string& why);
  void check_ndarray_bytes(const NdArray& arr);
  void check_hashable(const Value* v, const char* what) {
    if (v->kind_ == Kind::list || v->kind_ == Kind::dict || v->kind_ == Kind::set)
      fail(ErrorCode::malformed_pickle, std::string("unhashable ") + what + " of type " + kind_name(v->kind_));
  }
  void build(Value* obj, Value* state);
  void setitems(Value* target, std::span<Value* const> kv);
  void appends(Value* target, std::span<Value* const> items);
  Value* memo_get(uint64_t id);
  void memo_put(uint64_t id, Value* v);
  uint64_t memo_size() const { return memo_distinct_; }
  Value* persistent(Value* pid);
  std::string context_path() const;
  const Value& arg(Value* args, size_t i, const char* fn) {
    if (!args || args->kind_ != Kind::tuple || i >= args->elems_.size())
      fail(ErrorCode::malformed_pickle, std::string(fn) + ": missing argument " + std::to_string(i));
    return *args->elems_[i];
  }
  int64_t int_arg(Value* args, size_t i, const char* fn) {
    const Value& v = arg(args, i, fn);
    if (v.kind_ != Kind::integer && v.kind_ != Kind::boolean)
      fail(ErrorCode::invalid_tensor, std::string(fn) + ": argument " + std::to_string(i) + " must be an int, found " +
                                          kind_name(v.kind_));
    return v.i_;
  }
  std::vector<int64_t> int_tuple(const Value& v, const char* what) {
    if (v.kind_ != Kind::tuple && v.kind_ != Kind::list)
      fail(ErrorCode::invalid_tensor, std::string(what) + " must be a tuple, found " + kind_name(v.kind_));
    if (v.elems_.size() > o_.limits.max_ndim)
      fail(ErrorCode::limit_exceeded, std::string(what) + " has " + std::to_string(v.elems_.size()) +
                                          " dimensions, the limit is " + std::to_string(o_.limits.max_ndim));
    std::vector<int64_t> r;
    r.reserve(v.elems_.size());
    for (const Value* e : v.elems_) {
      if (e->kind_ == Kind::bigint)
        fail(ErrorCode::invalid_tensor, std::string(what) + " holds " + e->s_.substr(0, 40) + ", beyond 64 bits");
      if (e->kind_ != Kind::integer)
        fail(ErrorCode::invalid_tensor, std::string(what) + " holds a " + kind_name(e->kind_) + ", not an int");
      r.push_back(e->i_);
    }
    return r;
  }

  std::span<const uint8_t> in_;
  Document& doc_;
  uint64_t slots_ = 0;  // container slots filled (APPEND, SETITEM, BUILD...)
  [[noreturn]] void tree_too_big() {
    fail(ErrorCode::limit_exceeded,
         "the value tree needs more than " + std::to_string(o_.limits.max_tree_bytes >> 20) + " MiB (" +
             std::to_string(doc_.node_count()) + " values, " + std::to_string(slots_) +
             " container slots; Limits::max_tree_bytes)");
  }
  const UnpickleOptions& o_;
  size_t pos_ = 0;
  uint64_t op_ = 0;  // offset of the opcode being executed
  std::vector<Value*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value*> memo_;
  std::vector<Value*> memo_dense_;
  std::vector<Value*> dedupe_;  // dicts filled by SETITEM(S), merged at STOP
  uint64_t memo_distinct_ = 0;  // len(memo) in CPython: MEMOIZE's next id
  UnpickleResult res_;
  std::unordered_map<std::string, size_t> global_index_;
};

void Unpickler::fail(ErrorCode code, const std::string& msg) const {
  throw Error(code, msg, o_.path, o_.entry, op_, context_path());
}

// The key path of the value being built, read off the stack (a best effort
// for messages: the stack alone cannot always tell). The stack is split into
// regions by MARKs; a dict or list just before a MARK owns the next region.
// In a dict-owned region keys and values alternate, so the value in progress
// belongs to the last key. Elsewhere a dict followed by a string is a single
// SETITEM in progress, and in a list-owned region the element in progress is
// the first such dict, else the next element.
//
// The path is bounded (components to 256 bytes, the whole to 4 KiB): stack
// entries are attacker-chosen, and one memoised 1 MiB key pushed 100,000
// times must not turn an error message into a 100 GB allocation.
std::string Unpickler::context_path() const {
  constexpr size_t kMaxComponent = 256, kMaxPath = 512;
  auto clip = [](std::string_view comp) {
    return comp.size() <= kMaxComponent ? std::string(comp) : std::string(comp.substr(0, kMaxComponent)) + "...";
  };
  std::string path;
  bool full = false;
  auto add = [&](const std::string& comp) {
    if (comp.empty() || full) return;
    if (path.size() + comp.size() > kMaxPath) {
      path += path.empty() ? "..." : "/...";
      full = true;
      return;
    }
    if (!path.empty()) path += '/';
    path += comp;
  };
  std::vector<size_t> bounds(marks_.begin(), marks_.end());
  bounds.push_back(stack_.size());
  size_t start = 0;
  for (size_t r = 0; r < bounds.size(); ++r) {
    const size_t end = bounds[r];
    if (end < start || end > stack_.size()) break;
    const size_t len = end - start;
    const Value* owner = r > 0 && start > 0 ? stack_[start - 1] : nullptr;
    if (owner && owner->kind_ == Kind::dict) {
      if (len % 2 == 1) add(clip(key_component(*stack_[end - 1])));
      else if (len >= 2) add(clip(key_component(*stack_[end - 2])));
    } else {
      size_t first_open = end;
      std::vector<std::string> keys;
      for (size_t i = start; i + 1 < end; ++i) {
        if (stack_[i]->kind_ == Kind::dict && stack_[i + 1]->kind_ == Kind::string) {
          if (first_open == end) first_open = i;
          if (!full && keys.size() < kMaxPath) keys.push_back(clip(stack_[i + 1]->s_));
          ++i;
        } else if (stack_[i]->kind_ == Kind::list) {  // a single APPEND in progress
          if (first_open == end) first_open = i;
          if (!full && keys.size() < kMaxPath) keys.push_back(std::to_string(stack_[i]->elems_.size()));
        }
      }
      if (owner && owner->kind_ == Kind::list) add(std::to_string(owner->elems_.size() + (first_open - start)));
      for (const auto& k : keys) add(k);
    }
    start = end;
  }
  return path;
}

void Unpickler::check_utf8(std::string_view s, const char* what) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char c = p[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > n) fail(ErrorCode::malformed_pickle, std::string(what) + " is not valid UTF-8");
    for (size_t k = 1; k < len; ++k)
      if ((p[i + k] & 0xC0) != 0x80) fail(ErrorCode::malformed_pickle, std::string(what) + " is not valid UTF-8");
    i += len;
  }
}

namespace {

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char c = p[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > n) return false;
    for (size_t k = 1; k < len; ++k)
      if ((p[i + k] & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}


std::string latin1_to_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) put_utf8(out, c);
  return out;
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decimal text of a little-endian two's-complement integer.
std::string long_to_decimal(std::string_view b) {
  std::vector<uint8_t> mag(b.begin(), b.end());
  bool neg = !mag.empty() && (mag.back() & 0x80);
  if (neg) {  // two's complement negate
    for (auto& x : mag) x = static_cast<uint8_t>(~x);
    for (auto& x : mag)
      if (++x != 0) break;
  }
  if (mag.size() > 256) {  // too long for quadratic conversion: hexadecimal
    std::string s = neg ? "-0x" : "0x";
    static const char* hx = "0123456789abcdef";
    bool lead = true;
    for (size_t i = mag.size(); i-- > 0;) {
      if (lead && mag[i] == 0) continue;
      if (lead && mag[i] < 16) s += hx[mag[i]];
      else {
        s += hx[mag[i] >> 4];
        s += hx[mag[i] & 15];
      }
      lead = false;
    }
    return lead ? "0" : s;
  }
  std::vector<uint32_t> words;  // base 2^32, little-endian
  for (size_t i = 0; i < mag.size(); i += 4) {
    uint32_t w = 0;
    for (size_t k = 0; k < 4 && i + k < mag.size(); ++k) w |= static_cast<uint32_t>(mag[i + k]) << (8 * k);
    words.push_back(w);
  }
  std::string digits;
  auto nonzero = [&] {
    for (auto w : words)
      if (w) return true;
    return false;
  };
  while (nonzero()) {
    uint64_t rem = 0;
    for (size_t i = words.size(); i-- > 0;) {
      uint64_t cur = (rem << 32) | words[i];
      words[i] = static_cast<uint32_t>(cur / 1000000000u);
      rem = cur % 1000000000u;
    }
    for (int k = 0; k < 9; ++k) {
      digits += static_cast<char>('0' + rem % 10);
      rem /= 10;
    }
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  if (digits.empty()) digits = "0";
  if (neg) digits += '-';
  return std::string(digits.rbegin(), digits.rend());
}

}  // namespace

std::string Unpickler::decode_py2_string(std::string_view raw) {
  // torch.load decodes Python 2 str as UTF-8; anything else is taken as latin-1.
  if (valid_utf8(raw)) return std::string(raw);
  return latin1_to_utf8(raw);
}

Value* Unpickler::make_int_from_text(std::string_view s) {
  if (s.empty()) fail(ErrorCode::malformed_pickle, "empty integer");
  bool neg = s[0] == '-';
  size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
  if (i >= s.size()) fail(ErrorCode::malformed_pickle, "malformed integer '" + std::string(s) + "'");
  uint64_t v = 0;
  bool overflow = false;
  for (size_t k = i; k < s.size(); ++k) {
    if (s[k] < '0' || s[k] > '9') fail(ErrorCode::malformed_pickle, "malformed integer '" + std::string(s.substr(0, 40)) + "'");
    auto m = detail::checked_mul(v, 10);
    auto a = m ? detail::checked_add(*m, static_cast<uint64_t>(s[k] - '0')) : std::nullopt;
    if (!a) overflow = true;
    else v = *a;
  }
  if (overflow || (!neg && v > static_cast<uint64_t>(INT64_MAX)) || (neg && v > static_cast<uint64_t>(INT64_MAX) + 1)) {
    std::string t(s.substr(i));
    size_t nz = t.find_first_not_of('0');
    t = nz == std::string::npos ? "0" : t.substr(nz);
    return mk(doc_.bigint((neg ? "-" : "") + t));
  }
  int64_t r = neg ? static_cast<int64_t>(0 - v) : static_cast<int64_t>(v);
  return mk(doc_.integer(r));
}

Value* Unpickler::make_long_bytes(std::string_view b) {
  if (b.empty()) return mk(doc_.integer(0));
  bool neg = static_cast<unsigned char>(b.back()) & 0x80;
  // Fits in int64 when every byte past the 8th is pure sign extension.
  bool fits = true;
  for (size_t i = 8; i < b.size(); ++i)
    if (static_cast<unsigned char>(b[i]) != (neg ? 0xFF : 0x00)) fits = false;
  if (fits && b.size() > 8 && ((static_cast<unsigned char>(b[7]) & 0x80) != 0) != neg) fits = false;
  if (fits) {
    uint64_t v = neg ? ~uint64_t{0} : 0;
    size_t n = std::min<size_t>(b.size(), 8);
    for (size_t i = 0; i < n; ++i) {
      v &= ~(uint64_t{0xFF} << (8 * i));
      v |= static_cast<uint64_t>(static_cast<unsigned char>(b[i])) << (8 * i);
    }
    return mk(doc_.integer(static_cast<int64_t>(v)));
  }
  return mk(doc_.bigint(long_to_decimal(b)));
}

// Memo ids are dense in practice (0, 1, 2, ...): a vector holds them, and a
// hash map takes the rare sparse or huge ones, so an id of 2^32-1 costs
// nothing.
Value* Unpickler::memo_get(uint64_t id) {
  if (id < memo_dense_.size() && memo_dense_[id]) return memo_dense_[id];
  auto it = memo_.find(id);
  if (it == memo_.end()) fail(ErrorCode::malformed_pickle, "memo key " + std::to_string(id) + " was never stored");
  return it->second;
}

void Unpickler::memo_put(uint64_t id, Value* v) {
  if (id <= memo_dense_.size() + 1024 && id < (uint64_t{1} << 26)) {
    if (id >= memo_dense_.size()) memo_dense_.resize(static_cast<size_t>(id) + 1 + memo_dense_.size() / 2, nullptr);
    if (!memo_dense_[id] && !memo_.count(id)) ++memo_distinct_;
    memo_dense_[id] = v;
    memo_.erase(id);
    return;
  }
  if (memo_.emplace(id, v).second) {
    if (id >= memo_dense_.size() || !memo_dense_[id]) ++memo_distinct_;
  } else {
    memo_[id] = v;
  }
}

Value* Unpickler::global(std::string module, std::string name) {
  // Python 2 names, as _compat_pickle maps them.
  if (module == "__builtin__" || module == "exceptions") module = "builtins";
  if (module == "copy_reg") module = "copyreg";
  if (module == "builtins") {
    if (name == "unicode" || name == "basestring") name = "str";
    else if (name == "long") name = "int";
    else if (name == "xrange") name = "range";
    else if (name == "unichr") name = "chr";
  }
  if (module == "UserDict" && name == "UserDict") module = "collections";
  for (char c : module)
    if (static_cast<unsigned char>(c) < 0x20) fail(ErrorCode::malformed_pickle, "control character in a module name");
  for (char c : name)
    if (static_cast<unsigned char>(c) < 0x20) fail(ErrorCode::malformed_pickle, "control character in a global name");
  GlobalVerdict verdict = classify_global(module, name);
  std::string q = module + "." + name;
  auto it = global_index_.find(q);
  if (it == global_index_.end()) {
    global_index_.emplace(q, res_.globals.size());
    res_.globals.push_back(GlobalRef{module, name, verdict, 1, op_});
  } else {
    res_.globals[it->second].count++;
  }
  if (verdict == GlobalVerdict::denied && !o_.audit)
    fail(ErrorCode::unsafe_global, "refusing global " + q + ": it can run code or touch the system");
  if (verdict == GlobalVerdict::unknown && !o_.allow_unknown_globals && !o_.audit)
    fail(ErrorCode::unsafe_global, "global " + q + " is not on the allowlist (weights-only mode)");
  if (module == "torch") {
    if (auto t = dtype_from_name(name)) return mk(doc_.torch_dtype(*t));
  }
  return mk(doc_.global(std::move(module), std::move(name)));
}

Value* Unpickler::persistent(Value* pid) {
  if (!o_.persistent_load)
    fail(ErrorCode::malformed_pickle, "a persistent id (" + repr(*pid, 80) +
                                          ") needs a container that supplies tensor data: this is a bare pickle");
  try {
    Value* v = o_.persistent_load(doc_, pid, op_);
    if (!v) fail(ErrorCode::malformed_pickle, "persistent id not resolved");
    return v;
  } catch (const Error& e) {
    if (e.has_offset()) throw;
    throw Error(e.code(), e.detail(), o_.path, e.entry().empty() ? o_.entry : e.entry(),
                e.entry().empty() ? op_ : Error::no_offset, context_path());
  }
}

Value* Unpickler::call(Value* callable, Value* args, bool newobj) {
  if (callable->kind_ == Kind::torch_dtype)
    fail(ErrorCode::malformed_pickle, "a torch dtype is not callable");
  if (callable->kind_ != Kind::global && o_.audit) return mk(doc_.object(callable, args, newobj));
  if (callable->kind_ != Kind::global)
    fail(ErrorCode::unsafe_global,
         std::string("call of a computed ") + kind_name(callable->kind_) + " (only named globals may be called)");
  if (args->kind_ != Kind::tuple)
    fail(ErrorCode::malformed_pickle, std::string("call arguments must be a tuple, found ") + kind_name(args->kind_));
  return call_global(callable, args, newobj);
}

Value* Unpickler::unsupported_tensor(Value* g, Value* args, const std::string& why) {
  Value* o = mk(doc_.object(g, args, false));
  o->s2_ = why;
  return o;
}

Value* Unpickler::rebuild_tensor(const std::string& fn, Value* args) {
  const char* f = fn.c_str();
  const Value* svp = &arg(args, 0, f);
  if (o_.inline_storage_ids && svp->kind_ == Kind::tuple) svp = persistent(args->elems_[0]);
  const Value& sv = *svp;
  if (sv.kind_ != Kind::storage)
    fail(ErrorCode::invalid_tensor, fn + ": first argument must be a storage, found " + kind_name(sv.kind_));
  Tensor t;
  t.storage = sv.storage_;
  t.dtype = t.storage->dtype();
  t.storage_offset = int_arg(args, 1, f);
  t.shape = int_tuple(arg(args, 2, f), "size");
  t.stride = int_tuple(arg(args, 3, f), "stride");
  if (fn == "_rebuild_tensor") {
    t.form = TensorForm::v1;
  } else {
    const Value& rg = arg(args, 4, f);
    if (rg.kind_ != Kind::boolean && rg.kind_ != Kind::integer)
      fail(ErrorCode::invalid_tensor, fn + ": requires_grad must be a bool");
    t.requires_grad = rg.i_ != 0;
    size_t meta_at = 6;
    if (fn == "_rebuild_tensor_v3") {
      const Value& dt = arg(args, 6, f);
      if (dt.kind_ != Kind::torch_dtype) fail(ErrorCode::invalid_tensor, fn + ": argument 6 must be a torch dtype");
      t.dtype = dt.dtype_;
      t.form = TensorForm::v3;
      meta_at = 7;
    }
    if (args->elems_.size() > meta_at) {
      const Value* m = args->elems_[meta_at];
      if (m->kind_ == Kind::dict && m->size() > 0) t.metadata = m;
    }
  }
  try {
    t.validate(o_.limits.max_ndim);
  } catch (const Error& e) {
    fail(e.code(), e.detail());
  }
  return mk(doc_.tensor(std::move(t)));
}

Value* Unpickler::call_global(Value* g, Value* args, bool newobj) {
  const std::string& m = g->s_;
  const std::string& n = g->s2_;
  const auto& a = args->elems_;
  auto q = [&] { return m + "." + n; };

  if (m == "torch._utils") {
    if (n == "_rebuild_tensor" || n == "_rebuild_tensor_v2" || n == "_rebuild_tensor_v3") return rebuild_tensor(n, args);
    if (n == "_rebuild_parameter" || n == "_rebuild_parameter_with_state") {
      const Value& d = arg(args, 0, n.c_str());
      if (d.kind_ != Kind::tensor) {
        if (d.kind_ == Kind::object) return unsupported_tensor(g, args, "parameter of an unsupported tensor");
        fail(ErrorCode::invalid_tensor, n + ": data must be a tensor");
      }
      Tensor t = *d.tensor_;
      t.is_parameter = true;
      const Value& rg = arg(args, 1, n.c_str());
      t.requires_grad = rg.i_ != 0;
      return mk(doc_.tensor(std::move(t)));
    }
    if (n == "_rebuild_qtensor") return unsupported_tensor(g, args, "quantized tensor (not decoded)");
    if (n == "_rebuild_sparse_tensor") return unsupported_tensor(g, args, "sparse tensor (not decoded)");
    if (n == "_rebuild_meta_tensor_no_storage") return unsupported_tensor(g, args, "meta tensor (no data)");
    if (n == "_rebuild_wrapper_subclass") return unsupported_tensor(g, args, "tensor subclass (not decoded)");
    if (n == "_rebuild_nested_tensor") return unsupported_tensor(g, args, "nested tensor (not decoded)");
    if (n == "_rebuild_device_tensor_from_numpy" || n == "_rebuild_device_tensor_from_cpu_tensor")
      return unsupported_tensor(g, args, "device tensor (not decoded)");
  }
  if (m == "torch._tensor" && n == "_rebuild_from_type_v2") {
    const Value& fn = arg(args, 0, "_rebuild_from_type_v2");
    const Value& inner = arg(args, 2, "_rebuild_from_type_v2");
    if (fn.kind_ != Kind::global || inner.kind_ != Kind::tuple)
      fail(ErrorCode::malformed_pickle, "_rebuild_from_type_v2: expected (global, type, tuple, state)");
    Value* r = call_global(const_cast<Value*>(&fn), const_cast<Value*>(&inner), false);
    const Value& ty = arg(args, 1, "_rebuild_from_type_v2");
    if (r->kind_ == Kind::tensor && ty.kind_ == Kind::global && ty.s_ == "torch.nn.parameter" && ty.s2_ == "Parameter")
      r->tensor_->is_parameter = true;
    return r;
  }
  if (m == "collections") {
    if (n == "OrderedDict" || n == "Counter" || n == "defaultdict") {
      Value* d = mk(doc_.dict());
      d->type_ = n == "OrderedDict" ? "collections.OrderedDict" : n == "Counter" ? "collections.Counter" : "collections.defaultdict";
      if (n == "defaultdict") {
        Value* attrs = doc_.dict();
        attrs->set("default_factory", a.empty() ? doc_.none() : a[0]);
        d->a_ = attrs;
        return d;
      }
      if (!a.empty()) {
        const Value* src = a[0];
        if (src->kind_ == Kind::dict) {
          for (const auto& kv : src->items_) d->set(kv.first, kv.second);
        } else if (src->kind_ == Kind::list || src->kind_ == Kind::tuple) {
          for (const Value* pair : src->elems_) {  // Python 2 list-of-pairs form
            if ((pair->kind_ != Kind::list && pair->kind_ != Kind::tuple) || pair->elems_.size() != 2)
              fail(ErrorCode::malformed_pickle, q() + ": items must be (key, value) pairs");
            d->set(pair->elems_[0], pair->elems_[1]);
          }
        } else {
          fail(ErrorCode::malformed_pickle, q() + ": unexpected argument " + kind_name(src->kind_));
        }
        touch(d, const_cast<Value*>(src));
      }
      return d;
    }
  }
  if (m == "builtins") {
    if (n == "set" || n == "frozenset") {
      Value* s = mk(n == "set" ? doc_.set() : doc_.frozenset());
      if (!a.empty()) {
        if (a[0]->kind_ != Kind::list && a[0]->kind_ != Kind::tuple && a[0]->kind_ != Kind::set)
          fail(ErrorCode::malformed_pickle, q() + ": argument must be a list");
        for (const Value* e : a[0]->elems_) check_hashable(e, "set element");
        s->elems_ = a[0]->elems_;
        touch(s, a[0]);
      }
      return s;
    }
    if (n == "bytearray" || n == "bytes") {
      Value* b = mk(doc_.bytes(""));
      if (n == "bytearray") b->type_ = "builtins.bytearray";
      if (!a.empty()) {
        if (a[0]->kind_ == Kind::bytes) b->s_ = a[0]->s_;
        else if (a[0]->kind_ == Kind::string) {
          // bytearray(str, 'latin-1') from protocol 2
          std::string out;
          const std::string& s = a[0]->s_;
          for (size_t i = 0; i < s.size();) {
            unsigned char c = static_cast<unsigned char>(s[i]);
            if (c < 0x80) { out += static_cast<char>(c); ++i; }
            else if ((c >> 5) == 6 && i + 1 < s.size()) {
              out += static_cast<char>(((c & 0x1F) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3F));
              i += 2;
            } else fail(ErrorCode::malformed_pickle, q() + ": text is not latin-1");
          }
          b->s_ = out;
        } else if (a[0]->kind_ == Kind::list) {
          for (const Value* e : a[0]->elems_) {
            if (e->kind_ != Kind::integer || e->i_ < 0 || e->i_ > 255) fail(ErrorCode::malformed_pickle, q() + ": bad byte");
            b->s_ += static_cast<char>(e->i_);
          }
        }
      }
      return b;
    }
    if (n == "complex") {
      double re = a.size() > 0 ? a[0]->as_float() : 0, im = a.size() > 1 ? a[1]->as_float() : 0;
      return mk(doc_.complex(re, im));
    }
  }
  if (m == "_codecs" && n == "encode") {
    if (a.empty() || a[0]->kind_ != Kind::string) fail(ErrorCode::malformed_pickle, "_codecs.encode: expected a str");
    std::string enc = a.size() > 1 && a[1]->kind_ == Kind::string ? a[1]->s_ : "utf-8";
    const std::string& s = a[0]->s_;
    if (enc == "latin1" || enc == "latin-1" || enc == "iso-8859-1") {
      std::string out;
      out.reserve(s.size());
      for (size_t i = 0; i < s.size();) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
          out += static_cast<char>(c);
          ++i;
        } else if ((c >> 5) == 6 && i + 1 < s.size()) {
          uint32_t cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
          if (cp > 0xFF) fail(ErrorCode::malformed_pickle, "_codecs.encode: character beyond latin-1");
          out += static_cast<char>(cp);
          i += 2;
        } else {
          fail(ErrorCode::malformed_pickle, "_codecs.encode: character beyond latin-1");
        }
      }
      return mk(doc_.bytes(out));
    }
    if (enc == "utf-8" || enc == "utf8" || enc == "ascii") return mk(doc_.bytes(s));
    fail(ErrorCode::malformed_pickle, "_codecs.encode: unsupported encoding '" + enc + "'");
  }
  if (m == "torch") {
    if (n == "Size") {
      if (a.size() != 1) fail(ErrorCode::malformed_pickle, "torch.Size: expected one tuple");
      Value* t = mk(doc_.tuple(a[0]->elems_));
      for (const Value* e : a[0]->elems_)
        if (e->kind_ != Kind::integer) fail(ErrorCode::malformed_pickle, "torch.Size holds a non-integer");
      t->type_ = "torch.Size";
      return t;
    }
    if (n == "device") {
      if (a.empty() || a[0]->kind_ != Kind::string) fail(ErrorCode::malformed_pickle, "torch.device: expected a str");
      std::string spec = a[0]->s_;
      if (a.size() > 1 && a[1]->kind_ == Kind::integer) {
        if (a[1]->i_ < 0) fail(ErrorCode::malformed_pickle, "torch.device: negative index " + std::to_string(a[1]->i_));
        spec += ":" + std::to_string(a[1]->i_);
      } else if (a.size() > 1 && a[1]->kind_ != Kind::none) {
        fail(ErrorCode::malformed_pickle, "torch.device: the index must be an int");
      }
      // type[:index], the shapes torch.device accepts
      size_t i = 0;
      while (i < spec.size() && (std::islower(static_cast<unsigned char>(spec[i])) || spec[i] == '_' ||
                                 (i > 0 && std::isdigit(static_cast<unsigned char>(spec[i])))))
        ++i;
      bool ok = i > 0 && i <= 32;
      if (ok && i < spec.size()) {
        ok = spec[i] == ':' && i + 1 < spec.size() && spec.size() - i - 1 <= 9;
        for (size_t k = i + 1; ok && k < spec.size(); ++k) ok = std::isdigit(static_cast<unsigned char>(spec[k]));
      }
      if (!ok) fail(ErrorCode::malformed_pickle, "torch.device: '" + spec.substr(0, 40) + "' is not a device");
      return mk(doc_.device(spec));
    }
  }
  if (m == "torch.torch_version" && n == "TorchVersion") {
    if (a.size() != 1 || a[0]->kind_ != Kind::string) fail(ErrorCode::malformed_pickle, "TorchVersion: expected a str");
    Value* s = mk(doc_.str(a[0]->s_));
    s->type_ = "torch.torch_version.TorchVersion";
    return s;
  }
  if (m == "argparse" && n == "Namespace") {
    Value* d = mk(doc_.namespace_());
    if (!newobj && !a.empty()) fail(ErrorCode::malformed_pickle, "argparse.Namespace: unexpected positional arguments");
    return d;
  }
  if (m == "copyreg" && n == "_reconstructor") {
    // copyreg._reconstructor(cls, base, state) = base.__new__(cls, state):
    // protocol 0/1 object creation; `state` is the base-type value (the text
    // of a str subclass such as TorchVersion), None for plain objects.
    if (a.empty() || a[0]->kind_ != Kind::global) fail(ErrorCode::malformed_pickle, "_reconstructor: expected a class");
    const bool has_state = a.size() > 2 && a[2]->kind_ != Kind::none;
    return call_global(a[0], mk(has_state ? doc_.tuple({a[2]}) : doc_.tuple()), true);
  }
  if (m == "copyreg" && n == "__newobj__") {
    if (a.empty() || a[0]->kind_ != Kind::global) fail(ErrorCode::malformed_pickle, "__newobj__: expected a class");
    return call_global(a[0], mk(doc_.tuple(std::vector<Value*>(a.begin() + 1, a.end()))), true);
  }
  if (m == "numpy.core.multiarray" || m == "numpy._core.multiarray") {
    if (n == "_reconstruct") {
      NdArray arr;
      return mk(doc_.ndarray(std::move(arr)));  // filled by BUILD
    }
    if (n == "scalar") {
      if (a.empty() || a[0]->kind_ != Kind::np_dtype) fail(ErrorCode::malformed_pickle, "numpy scalar: expected a dtype");
      NdArray arr;
      arr.is_scalar = true;
      arr.dtype = a[0];
      arr.descr = a[0]->s_;
      arr.data = a.size() > 1 ? a[1] : nullptr;
      check_ndarray_bytes(arr);
      return mk(doc_.ndarray(std::move(arr)));
    }
  }
  if (m == "numpy" && n == "dtype") {
    if (a.empty() || a[0]->kind_ != Kind::string) fail(ErrorCode::malformed_pickle, "numpy.dtype: expected a type code");
    return mk(doc_.np_dtype(a[0]->s_));
  }
  // Anything else: an opaque object. Shown, never called.
  Value* o = mk(doc_.object(g, args, newobj));
  touch(o, args);
  return o;
}

// numpy refuses raw data whose length is not shape x itemsize; so do we,
// with checked arithmetic (a (2^32, 2^32) shape must not wrap around).
void Unpickler::check_ndarray_bytes(const NdArray& arr) {
  if (!arr.data || arr.data->kind_ != Kind::bytes) return;  // object arrays hold a list
  std::string_view d = arr.descr;
  if (!d.empty() && (d[0] == '<' || d[0] == '>' || d[0] == '|' || d[0] == '=')) d.remove_prefix(1);
  if (d.size() < 2) return;
  const char kind = d[0];
  uint64_t width = 0;
  for (char c : d.substr(1)) {
    if (c < '0' || c > '9' || width > 1'000'000'000) return;  // structured or unusual: not checked
    width = width * 10 + static_cast<uint64_t>(c - '0');
  }
  if (std::string_view("biufcmMSUV?").find(kind) == std::string_view::npos) return;
  uint64_t item = kind == 'U' ? width * 4 : width;
  uint64_t n = 1;
  for (int64_t dim : arr.shape) {
    auto m = detail::checked_mul(n, static_cast<uint64_t>(dim));
    if (!m) fail(ErrorCode::malformed_pickle, "numpy array shape overflows 64 bits");
    n = *m;
  }
  auto bytes = detail::checked_mul(n, item);
  if (!bytes || *bytes != arr.data->s_.size())
    fail(ErrorCode::malformed_pickle, "numpy " + std::string(arr.is_scalar ? "scalar" : "array") + " of dtype " + arr.descr +
                                          " needs " + (bytes ? std::to_string(*bytes) : std::string("> 2^64")) +
                                          " bytes of data, the pickle has " + std::to_string(arr.data->s_.size()));
}

void Unpickler::build(Value* obj, Value* state) {
  switch (obj->kind_) {
    case Kind::dict: {
      if (obj->type_ == "argparse.Namespace") {
        Value* st = state;
        if (st->kind_ == Kind::tuple && st->elems_.size() == 2) st = st->elems_[0];  // (dict, slots)
        if (st->kind_ != Kind::dict) fail(ErrorCode::malformed_pickle, "BUILD of a Namespace needs a dict");
        for (const auto& kv : st->items_) obj->set(kv.first, kv.second);
        touch(obj, st);
        return;
      }
      if (obj->type_.empty()) fail(ErrorCode::malformed_pickle, "BUILD on a plain dict");
      Value* st = state;
      if (st->kind_ == Kind::tuple && st->elems_.size() == 2) st = st->elems_[0];
      if (st->kind_ == Kind::none) return;
      if (st->kind_ != Kind::dict) fail(ErrorCode::malformed_pickle, "BUILD of a " + std::string(obj->type_) + " needs a dict");
      if (!obj->a_) obj->a_ = st;
      else
        for (const auto& kv : st->items_) obj->a_->set(kv.first, kv.second);
      touch(obj, st);
      return;
    }
    case Kind::object:
      obj->c_ = state;
      touch(obj, state);
      return;
    case Kind::tensor:
      // Tensor.__setstate__ with a dict of Python attributes (or None): the
      // data is already rebuilt; attributes do not change it.
      if (state->kind_ == Kind::dict || state->kind_ == Kind::none) return;
      if (state->kind_ == Kind::tuple) return;
      fail(ErrorCode::malformed_pickle, std::string("BUILD of a tensor with a ") + kind_name(state->kind_));
    case Kind::ndarray: {
      NdArray& arr = *obj->nd_;
      if (arr.is_scalar) fail(ErrorCode::malformed_pickle, "BUILD on a numpy scalar");
      // (version, shape, dtype, is_fortran, rawdata)
      if (state->kind_ != Kind::tuple || state->elems_.size() < 5)
        fail(ErrorCode::malformed_pickle, "numpy array state must be a 5-tuple");
      const auto& e = state->elems_;
      arr.shape = int_tuple(*e[1], "numpy shape");
      for (int64_t d : arr.shape)
        if (d < 0) fail(ErrorCode::malformed_pickle, "numpy shape has a negative dimension");
      if (e[2]->kind_ != Kind::np_dtype) fail(ErrorCode::malformed_pickle, "numpy array state: expected a dtype");
      arr.dtype = e[2];
      arr.descr = e[2]->s_;
      arr.fortran_order = e[3]->kind_ == Kind::boolean && e[3]->i_;
      arr.data = e[4];
      check_ndarray_bytes(arr);
      touch(obj, state);
      return;
    }
    case Kind::np_dtype: {
      // (version, byteorder, subdescr, names, fields, elsize, alignment, flags)
      if (state->kind_ != Kind::tuple || state->elems_.size() < 2)
        fail(ErrorCode::malformed_pickle, "numpy dtype state must be a tuple");
      const Value* bo = state->elems_[1];
      if (bo->kind_ == Kind::string && (bo->s_ == "<" || bo->s_ == ">" || bo->s_ == "|" || bo->s_ == "="))
        if (!obj->s_.empty() && obj->s_[0] != '<' && obj->s_[0] != '>' && obj->s_[0] != '|')
          obj->s_ = (bo->s_ == "=" ? std::string("<") : bo->s_) + obj->s_;
      obj->a_ = state;
      return;
    }
    default:
      fail(ErrorCode::malformed_pickle, std::string("BUILD on a ") + kind_name(obj->kind_));
  }
}

void Unpickler::setitems(Value* target, std::span<Value* const> kv) {
  if (kv.size() % 2) fail(ErrorCode::malformed_pickle, "SETITEMS with an odd number of items");
  if (target->kind_ == Kind::dict) {
    // Appended as they come; duplicate keys are merged once at STOP
    // (merge_duplicate_keys), instead of an index lookup per item.
    for (size_t i = 0; i < kv.size(); i += 2) {
      Value* k = kv[i];
      check_hashable(k, "dict key");
      target->items_.emplace_back(k, kv[i + 1]);
      touch(target, k);
      touch(target, kv[i + 1]);
    }
    target->drop_index();
    if (!target->pending_dedupe_) {
      target->pending_dedupe_ = true;
      dedupe_.push_back(target);
    }
    return;
  }
  if (target->kind_ == Kind::object) {  // a dict subclass we do not interpret
    for (size_t i = 0; i < kv.size(); i += 2) {
      target->items_.emplace_back(kv[i], kv[i + 1]);
      touch(target, kv[i + 1]);
    }
    return;
  }
  fail(ErrorCode::malformed_pickle, std::string("SETITEM on a ") + kind_name(target->kind_) + ", not a dict");
}

void Unpickler::appends(Value* target, std::span<Value* const> items) {
  if (target->kind_ == Kind::list || target->kind_ == Kind::object) {
    for (Value* v : items) {
      target->elems_.push_back(v);
      touch(target, v);
    }
    return;
  }
  fail(ErrorCode::malformed_pickle, std::string("APPEND on a ") + kind_name(target->kind_) + ", not a list");
}

UnpickleResult Unpickler::run() {
  if (in_.size() > o_.limits.max_pickle_bytes)
    throw Error(ErrorCode::limit_exceeded,
                "pickle of " + std::to_string(in_.size()) + " bytes exceeds the limit of " +
                    std::to_string(o_.limits.max_pickle_bytes),
                o_.path, o_.entry, 0);
  for (;;) {
    op_ = pos_;
    if (pos_ >= in_.size()) fail(ErrorCode::malformed_pickle, "pickle ends without STOP");
    if (doc_.node_count() * sizeof(Value) + slots_ * 16 > o_.limits.max_tree_bytes) tree_too_big();
    const uint8_t op = in_[pos_++];
    res_.opcodes.set(op);
    switch (op) {
      case 0x80: {  // PROTO
        uint8_t p = u8();
        if (p > 5) fail(ErrorCode::unsupported_version, "pickle protocol " + std::to_string(p) + ", supported <= 5");
        res_.protocol = p;
        break;
      }
      case 0x95: {  // FRAME
        uint64_t n = uint_le(8);
        if (n > in_.size() - pos_) fail(ErrorCode::truncated, "FRAME of " + std::to_string(n) + " bytes runs past the end");
        break;
      }
      case '.': {  // STOP (Python ignores marks left open, and so do we)
        Value* v = pop();
        for (Value* d : dedupe_) d->merge_duplicate_keys();
        res_.value = v;
        res_.end = pos_;
        return std::move(res_);
      }
      case '(':  // MARK
        if (marks_.size() >= o_.limits.max_depth)
          fail(ErrorCode::limit_exceeded, "more than " + std::to_string(o_.limits.max_depth) + " nested MARKs");
        marks_.push_back(stack_.size());
        break;
      case '0': pop(); break;  // POP
      case '1': pop_mark(); break;  // POP_MARK
      case '2': push(top()); break;  // DUP
      // ---- numbers ----
      case 'I': {  // INT (text); "01"/"00" are True/False
        std::string_view s = line();
        if (s == "01") push(mk(doc_.boolean(true)));
        else if (s == "00") push(mk(doc_.boolean(false)));
        else push(make_int_from_text(s));
        break;
      }
      case 'J': push(mk(doc_.integer(static_cast<int32_t>(uint_le(4))))); break;  // BININT
      case 'K': push(mk(doc_.integer(static_cast<int64_t>(uint_le(1))))); break;  // BININT1
      case 'M': push(mk(doc_.integer(static_cast<int64_t>(uint_le(2))))); break;  // BININT2
      case 'L': {  // LONG (text, trailing L)
        std::string_view s = line();
        if (!s.empty() && s.back() == 'L') s.remove_suffix(1);
        if (s.size() > o_.limits.max_bigint_bytes * 3) fail(ErrorCode::limit_exceeded, "LONG literal too long");
        push(make_int_from_text(s));
        break;
      }
      case 0x8a: {  // LONG1
        uint64_t n = uint_le(1);
        if (n > o_.limits.max_bigint_bytes)
          fail(ErrorCode::limit_exceeded, "LONG1 of " + std::to_string(n) + " bytes exceeds the limit of " +
                                              std::to_string(o_.limits.max_bigint_bytes));
        push(make_long_bytes(take(n, "LONG1")));
        break;
      }
      case 0x8b: {  // LONG4
        int32_t n = static_cast<int32_t>(uint_le(4));
        if (n < 0) fail(ErrorCode::malformed_pickle, "LONG4 with a negative byte count");
        if (static_cast<uint64_t>(n) > o_.limits.max_bigint_bytes)
          fail(ErrorCode::limit_exceeded, "LONG4 of " + std::to_string(n) + " bytes exceeds the limit of " +
                                              std::to_string(o_.limits.max_bigint_bytes));
        push(make_long_bytes(take(static_cast<uint64_t>(n), "LONG4")));
        break;
      }
      case 'F': {  // FLOAT (text)
        std::string s(line());
        char* end = nullptr;
        double d = std::strtod(s.c_str(), &end);
        if (s.empty() || end != s.c_str() + s.size()) fail(ErrorCode::malformed_pickle, "malformed FLOAT '" + s.substr(0, 40) + "'");
        push(mk(doc_.floating(d)));
        break;
      }
      case 'G': {  // BINFLOAT, big-endian
        need(8, "BINFLOAT");
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | in_[pos_ + i];
        pos_ += 8;
        double d;
        std::memcpy(&d, &bits, 8);
        push(mk(doc_.floating(d)));
        break;
      }
      // ---- strings ----
      case 'S': {  // STRING: a quoted Python 2 repr
        std::string_view s = line();
        if (s.size() < 2 || (s.front() != '\'' && s.front() != '"') || s.back() != s.front())
          fail(ErrorCode::malformed_pickle, "STRING operand is not quoted");
        s = s.substr(1, s.size() - 2);
        std::string out;
        for (size_t i = 0; i < s.size(); ++i) {
          char c = s[i];
          if (c != '\\' || i + 1 >= s.size()) {
            out += c;
            continue;
          }
          char e = s[++i];
          switch (e) {
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'a': out += '\a'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'v': out += '\v'; break;
            case '\\': out += '\\'; break;
            case '\'': out += '\''; break;
            case '"': out += '"'; break;
            case '\n': break;
            case 'x': {
              int h1 = i + 1 < s.size() ? hexval(s[i + 1]) : -1, h2 = i + 2 < s.size() ? hexval(s[i + 2]) : -1;
              if (h1 < 0 || h2 < 0) fail(ErrorCode::malformed_pickle, "bad \\x escape in STRING");
              out += static_cast<char>(h1 * 16 + h2);
              i += 2;
              break;
            }
            default:
              if (e >= '0' && e <= '7') {
                int v = e - '0';
                for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k) v = v * 8 + (s[++i] - '0');
                out += static_cast<char>(v & 0xFF);
              } else {
                out += '\\';
                out += e;
              }
          }
        }
        push(mk(doc_.str(decode_py2_string(out))));
        break;
      }
      case 'T': {  // BINSTRING
        int32_t n = static_cast<int32_t>(uint_le(4));
        if (n < 0) fail(ErrorCode::malformed_pickle, "BINSTRING with a negative length");
        push(mk(doc_.str(decode_py2_string(take(static_cast<uint64_t>(n), "BINSTRING")))));
        break;
      }
      case 'U': push(mk(doc_.str(decode_py2_string(take(uint_le(1), "SHORT_BINSTRING"))))); break;
      case 'V': {  // UNICODE: raw-unicode-escape
        std::string_view s = line();
        std::string out;
        for (size_t i = 0; i < s.size(); ++i) {
          unsigned char c = static_cast<unsigned char>(s[i]);
          if (c == '\\' && i + 1 < s.size() && (s[i + 1] == 'u' || s[i + 1] == 'U')) {
            int digits = s[i + 1] == 'u' ? 4 : 8;
            if (i + 2 + static_cast<size_t>(digits) > s.size())
              fail(ErrorCode::malformed_pickle, "truncated \\u escape in UNICODE");
            uint32_t cp = 0;
            for (int k = 0; k < digits; ++k) {
              int h = hexval(s[i + 2 + static_cast<size_t>(k)]);
              if (h < 0) fail(ErrorCode::malformed_pickle, "bad \\u escape in UNICODE");
              cp = cp * 16 + static_cast<uint32_t>(h);
            }
            if (cp > 0x10FFFF) fail(ErrorCode::malformed_pickle, "code point beyond U+10FFFF in UNICODE");
            put_utf8(out, cp);
            i += 1 + static_cast<size_t>(digits);
          } else {
            put_utf8(out, c);
          }
        }
        push(mk(doc_.str(out)));
        break;
      }
      case 'X': {  // BINUNICODE
        std::string_view s = take(uint_le(4), "BINUNICODE");
        check_utf8(s, "BINUNICODE");
        push(mk(doc_.str(s)));
        break;
      }
      case 0x8c: {  // SHORT_BINUNICODE
        std::string_view s = take(uint_le(1), "SHORT_BINUNICODE");
        check_utf8(s, "SHORT_BINUNICODE");
        push(mk(doc_.str(s)));
        break;
      }
      case 0x8d: {  // BINUNICODE8
        std::string_view s = take(uint_le(8), "BINUNICODE8");
        check_utf8(s, "BINUNICODE8");
        push(mk(doc_.str(s)));
        break;
      }
      case 'B': push(mk(doc_.bytes(take(uint_le(4), "BINBYTES")))); break;
      case 'C': push(mk(doc_.bytes(take(uint_le(1), "SHORT_BINBYTES")))); break;
      case 0x8e: push(mk(doc_.bytes(take(uint_le(8), "BINBYTES8")))); break;
      case 0x96: {  // BYTEARRAY8
        Value* b = mk(doc_.bytes(take(uint_le(8), "BYTEARRAY8")));
        b->type_ = "builtins.bytearray";
        push(b);
        break;
      }
      // ---- constants ----
      case 'N': push(mk(doc_.none())); break;
      case 0x88: push(mk(doc_.boolean(true))); break;
      case 0x89: push(mk(doc_.boolean(false))); break;
      // ---- containers ----
      case ']': push(mk(doc_.list())); break;
      case ')': push(mk(doc_.tuple())); break;
      case '}': push(mk(doc_.dict())); break;
      case 0x8f: push(mk(doc_.set())); break;
      case 'l': {  // LIST
        Value* l = mk(doc_.list());
        appends(l, mark_region());
        drop_mark();
        push(l);
        break;
      }
      case 't': {  // TUPLE
        Value* t = mk(doc_.tuple(mark_region()));
        drop_mark();
        push(t);
        break;
      }
      case 0x85: case 0x86: case 0x87: {  // TUPLE1/2/3
        const size_t n = static_cast<size_t>(op - 0x84);
        if (stack_.size() < floor() + n) fail(ErrorCode::malformed_pickle, "stack underflow");
        Value* t = mk(doc_.tuple(std::span<Value* const>(stack_.data() + stack_.size() - n, n)));
        stack_.resize(stack_.size() - n);
        push(t);
        break;
      }
      case 'd': {  // DICT
        Value* d = mk(doc_.dict());
        setitems(d, mark_region());
        drop_mark();
        push(d);
        break;
      }
      case 0x91: {  // FROZENSET
        auto items = pop_mark();
        Value* s = mk(doc_.frozenset());
        for (Value* v : items) {
          check_hashable(v, "frozenset element");
          s->elems_.push_back(v);
          touch(s, v);
        }
        push(s);
        break;
      }
      case 'a': {  // APPEND
        Value* v = pop();
        appends(top(), std::span<Value* const>(&v, 1));
        break;
      }
      case 'e': {  // APPENDS
        auto items = mark_region();
        appends(below_mark(), items);
        drop_mark();
        break;
      }
      case 's': {  // SETITEM
        Value* kv[2];
        kv[1] = pop();
        kv[0] = pop();
        setitems(top(), kv);
        break;
      }
      case 'u': {  // SETITEMS
        auto items = mark_region();
        setitems(below_mark(), items);
        drop_mark();
        break;
      }
      case 0x90: {  // ADDITEMS
        auto items = pop_mark();
        Value* s = top();
        if (s->kind_ != Kind::set) fail(ErrorCode::malformed_pickle, std::string("ADDITEMS on a ") + kind_name(s->kind_) + ", not a set");
        for (Value* v : items) {
          check_hashable(v, "set element");
          s->elems_.push_back(v);
          touch(s, v);
        }
        break;
      }
      // ---- memo ----
      case 'g': {
        std::string_view s = line();
        Value* n = make_int_from_text(s);
        if (n->kind_ != Kind::integer || n->i_ < 0) fail(ErrorCode::malformed_pickle, "bad GET index");
        push(memo_get(static_cast<uint64_t>(n->i_)));
        break;
      }
      case 'h': push(memo_get(uint_le(1))); break;
      case 'j': push(memo_get(uint_le(4))); break;
      case 'p': {
        std::string_view s = line();
        Value* n = make_int_from_text(s);
        if (n->kind_ != Kind::integer || n->i_ < 0) fail(ErrorCode::malformed_pickle, "bad PUT index");
        memo_put(static_cast<uint64_t>(n->i_), top());
        break;
      }
      case 'q': memo_put(uint_le(1), top()); break;
      case 'r': memo_put(uint_le(4), top()); break;
      case 0x94: memo_put(memo_size(), top()); break;  // MEMOIZE
      // ---- globals and calls ----
      case 'c': {  // GLOBAL
        std::string module(line());
        std::string name(line());
        push(global(std::move(module), std::move(name)));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        Value* name = pop();
        Value* module = pop();
        if (module->kind_ != Kind::string || name->kind_ != Kind::string)
          fail(ErrorCode::malformed_pickle, "STACK_GLOBAL needs two strings");
        push(global(module->s_, name->s_));
        break;
      }
      case 'R': {  // REDUCE
        Value* args = pop();
        Value* callable = pop();
        push(call(callable, args, false));
        break;
      }
      case 0x81: {  // NEWOBJ
        Value* args = pop();
        Value* cls = pop();
        push(call(cls, args, true));
        break;
      }
      case 0x92: {  // NEWOBJ_EX
        Value* kwargs = pop();
        Value* args = pop();
        Value* cls = pop();
        if (kwargs->kind_ != Kind::dict) fail(ErrorCode::malformed_pickle, "NEWOBJ_EX kwargs must be a dict");
        Value* o = call(cls, args, true);
        if (kwargs->size() && o->kind_ == Kind::object) o->items_ = kwargs->items_;
        push(o);
        break;
      }
      case 'i': {  // INST module\nname\n, args since MARK
        std::string module(line());
        std::string name(line());
        auto items = pop_mark();
        Value* cls = global(std::move(module), std::move(name));
        push(call(cls, mk(doc_.tuple(std::move(items))), true));
        break;
      }
      case 'o': {  // OBJ: MARK cls args...
        auto items = pop_mark();
        if (items.empty()) fail(ErrorCode::malformed_pickle, "OBJ without a class");
        Value* cls = items[0];
        items.erase(items.begin());
        push(call(cls, mk(doc_.tuple(std::move(items))), true));
        break;
      }
      case 'b': {  // BUILD
        Value* state = pop();
        build(top(), state);
        break;
      }
      case 'P': {  // PERSID (text)
        Value* pid = mk(doc_.str(line()));
        push(persistent(pid));
        break;
      }
      case 'Q': {  // BINPERSID
        Value* pid = pop();
        push(persistent(pid));
        break;
      }
      case 0x82: case 0x83: case 0x84:  // EXT1/2/4
        fail(ErrorCode::unsupported_opcode, "EXT opcodes need Python's copyreg extension registry");
      case 0x97: case 0x98:  // NEXT_BUFFER / READONLY_BUFFER
        fail(ErrorCode::unsupported_opcode, "out-of-band buffers (protocol 5) are not part of a checkpoint");
      default: {
        char buf[8];
        std::snprintf(buf, sizeof buf, "0x%02x", op);
        fail(ErrorCode::unsupported_opcode, std::string("unknown opcode ") + buf);
      }
    }
  }
}

bool weights_only_opcode(uint8_t op) noexcept {
  static constexpr std::string_view kAllowed =
      "\x80" ".cR" "\x81" "baeus(t" "\x85\x86\x87" "N" "\x89\x88" ")]}" "\x8f" "JKMGXUQhjqr" "\x8a";
  return kAllowed.find(static_cast<char>(op)) != std::string_view::npos;
}

UnpickleResult unpickle(std::span<const uint8_t> bytes, Document& doc, const UnpickleOptions& opts) {
  Unpickler u(bytes, doc, opts);
  if (!opts.globals_on_error) return u.run();
  try {
    return u.run();
  } catch (...) {
    *opts.globals_on_error = u.globals();
    throw;
  }
}

}  // namespace ckpt
