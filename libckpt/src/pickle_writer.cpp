// Protocol-2 pickle writer, shaped like torch.save's output so that
// torch.load(weights_only=True) accepts it (torch 1.13 ... 2.x).
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "ckpt/error.hpp"
#include "ckpt/pickle.hpp"

namespace ckpt {
namespace {

class Writer {
 public:
  Writer(const std::function<std::string(const std::shared_ptr<Storage>&)>& key_fn, uint32_t max_depth)
      : key_fn_(key_fn), max_depth_(max_depth) {}

  std::string run(const Value& root) {
    count_refs(root, 0);
    out_ += "\x80\x02";
    save(root, 0);
    out_ += '.';
    return std::move(out_);
  }

 private:
  // ---- reference counting: values reached twice are memoised ----
  void count_refs(const Value& v, uint32_t depth) {
    if (depth > max_depth_)
      throw Error(ErrorCode::limit_exceeded, "value tree deeper than " + std::to_string(max_depth_) + " levels (or cyclic through tuples)");
    if (++refs_[&v] > 1) return;
    switch (v.kind()) {
      case Kind::list: case Kind::tuple: case Kind::set: case Kind::frozenset:
        for (const Value* e : v.elements()) count_refs(*e, depth + 1);
        break;
      case Kind::dict:
        for (const auto& [k, val] : v.items()) {
          count_refs(*k, depth + 1);
          count_refs(*val, depth + 1);
        }
        if (v.attrs()) count_refs(*v.attrs(), depth + 1);
        break;
      case Kind::object:
        if (v.callable()) count_refs(*v.callable(), depth + 1);
        if (v.args()) count_refs(*v.args(), depth + 1);
        if (v.state()) count_refs(*v.state(), depth + 1);
        for (const auto& [k, val] : v.object_items()) {
          count_refs(*k, depth + 1);
          count_refs(*val, depth + 1);
        }
        for (const Value* e : v.object_elements()) count_refs(*e, depth + 1);
        break;
      case Kind::ndarray:
        if (v.ndarray().dtype) count_refs(*v.ndarray().dtype, depth + 1);
        if (v.ndarray().data) count_refs(*v.ndarray().data, depth + 1);
        break;
      case Kind::tensor:
        if (v.tensor().metadata) count_refs(*v.tensor().metadata, depth + 1);
        break;
      default: break;
    }
  }

  // ---- primitives ----
  void u32(uint32_t x) {
    for (int i = 0; i < 4; ++i) out_ += static_cast<char>((x >> (8 * i)) & 0xFF);
  }
  void put_memo(const Value& v) {
    uint32_t id = next_memo_++;
    memo_[&v] = id;
    put_id(id);
  }
  void put_id(uint32_t id) {
    if (id < 256) {
      out_ += 'q';
      out_ += static_cast<char>(id);
    } else {
      out_ += 'r';
      u32(id);
    }
  }
  void get_id(uint32_t id) {
    if (id < 256) {
      out_ += 'h';
      out_ += static_cast<char>(id);
    } else {
      out_ += 'j';
      u32(id);
    }
  }
  void memo_if_shared(const Value& v) {
    auto it = refs_.find(&v);
    if (it != refs_.end() && it->second > 1) put_memo(v);
  }
  void global(std::string_view module, std::string_view name) {
    std::string k = std::string(module) + "\n" + std::string(name);
    auto it = global_memo_.find(k);
    if (it != global_memo_.end()) {
      get_id(it->second);
      return;
    }
    out_ += 'c';
    out_ += k;
    out_ += '\n';
    uint32_t id = next_memo_++;
    global_memo_[k] = id;
    put_id(id);
  }
  void str(std::string_view s) {
    out_ += 'X';
    u32(static_cast<uint32_t>(s.size()));
    out_ += s;
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      out_ += 'K';
      out_ += static_cast<char>(v);
    } else if (v >= 0 && v < 65536) {
      out_ += 'M';
      out_ += static_cast<char>(v & 0xFF);
      out_ += static_cast<char>(v >> 8);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      out_ += 'J';
      u32(static_cast<uint32_t>(static_cast<int32_t>(v)));
    } else {
      // LONG1: minimal little-endian two's complement
      std::string b;
      uint64_t u = static_cast<uint64_t>(v);
      for (int i = 0; i < 8; ++i) b += static_cast<char>((u >> (8 * i)) & 0xFF);
      while (b.size() > 1) {
        unsigned char last = static_cast<unsigned char>(b[b.size() - 1]);
        unsigned char prev = static_cast<unsigned char>(b[b.size() - 2]);
        if ((last == 0x00 && !(prev & 0x80)) || (last == 0xFF && (prev & 0x80))) b.pop_back();
        else break;
      }
      out_ += '\x8a';
      out_ += static_cast<char>(b.size());
      out_ += b;
    }
  }
  void bigint(const std::string& text) {
    // Decimal (or 0x-hex) text -> little-endian two's complement.
    bool neg = !text.empty() && text[0] == '-';
    std::string t = neg ? text.substr(1) : text;
    std::vector<uint32_t> w{0};
    auto mul_add = [&](uint32_t m, uint32_t a) {
      uint64_t carry = a;
      for (auto& x : w) {
        uint64_t cur = static_cast<uint64_t>(x) * m + carry;
        x = static_cast<uint32_t>(cur);
        carry = cur >> 32;
      }
      if (carry) w.push_back(static_cast<uint32_t>(carry));
    };
    if (t.rfind("0x", 0) == 0) {
      for (size_t i = 2; i < t.size(); ++i) {
        char c = t[i];
        uint32_t d = c >= 'a' ? static_cast<uint32_t>(c - 'a' + 10) : static_cast<uint32_t>(c - '0');
        mul_add(16, d);
      }
    } else {
      for (char c : t) {
        if (c < '0' || c > '9') throw Error(ErrorCode::invalid_argument, "malformed big integer '" + text + "'");
        mul_add(10, static_cast<uint32_t>(c - '0'));
      }
    }
    std::string b;
    for (auto x : w)
      for (int i = 0; i < 4; ++i) b += static_cast<char>((x >> (8 * i)) & 0xFF);
    b += '\0';  // room for the sign bit
    if (neg) {
      for (auto& c : b) c = static_cast<char>(~static_cast<unsigned char>(c));
      for (auto& c : b)
        if (++reinterpret_cast<unsigned char&>(c) != 0) break;
    }
    while (b.size() > 1) {
      unsigned char last = static_cast<unsigned char>(b[b.size() - 1]);
      unsigned char prev = static_cast<unsigned char>(b[b.size() - 2]);
      if ((last == 0x00 && !(prev & 0x80)) || (last == 0xFF && (prev & 0x80))) b.pop_back();
      else break;
    }
    if (b.size() < 256) {
      out_ += '\x8a';
      out_ += static_cast<char>(b.size());
    } else {
      out_ += '\x8b';
      u32(static_cast<uint32_t>(b.size()));
    }
    out_ += b;
  }
  void floating(double d) {
    uint64_t bits;
    std::memcpy(&bits, &d, 8);
    out_ += 'G';
    for (int i = 7; i >= 0; --i) out_ += static_cast<char>((bits >> (8 * i)) & 0xFF);
  }
  std::string latin1(std::string_view b) {
    std::string s;
    for (unsigned char c : b) {
      if (c < 0x80) s += static_cast<char>(c);
      else {
        s += static_cast<char>(0xC0 | (c >> 6));
        s += static_cast<char>(0x80 | (c & 0x3F));
      }
    }
    return s;
  }
  void bytes_value(std::string_view b) {
    if (b.empty()) {
      global("builtins", "bytes");
      out_ += ")R";
      return;
    }
    global("_codecs", "encode");
    str(latin1(b));
    str("latin1");
    out_ += '\x86';
    out_ += 'R';
  }
  void batch_appends(Value::Elements items, uint32_t depth) {
    for (size_t i = 0; i < items.size(); i += 1000) {
      size_t n = std::min<size_t>(1000, items.size() - i);
      if (n == 1) {
        save(*items[i], depth + 1);
        out_ += 'a';
        continue;
      }
      out_ += '(';
      for (size_t k = 0; k < n; ++k) save(*items[i + k], depth + 1);
      out_ += 'e';
    }
  }
  void batch_setitems(Value::Items items, uint32_t depth) {
    for (size_t i = 0; i < items.size(); i += 1000) {
      size_t n = std::min<size_t>(1000, items.size() - i);
      if (n == 1) {
        save(*items[i].first, depth + 1);
        save(*items[i].second, depth + 1);
        out_ += 's';
        continue;
      }
      out_ += '(';
      for (size_t k = 0; k < n; ++k) {
        save(*items[i + k].first, depth + 1);
        save(*items[i + k].second, depth + 1);
      }
      out_ += 'u';
    }
  }
  void tuple_of(Value::Elements items, uint32_t depth) {
    if (items.empty()) {
      out_ += ')';
      return;
    }
    if (items.size() > 3) out_ += '(';
    for (const Value* e : items) save(*e, depth + 1);
    if (items.size() == 1) out_ += '\x85';
    else if (items.size() == 2) out_ += '\x86';
    else if (items.size() == 3) out_ += '\x87';
    else out_ += 't';
  }
  void int_tuple(const std::vector<int64_t>& xs) {
    if (xs.empty()) {
      out_ += ')';
      return;
    }
    if (xs.size() > 3) out_ += '(';
    for (int64_t x : xs) integer(x);
    if (xs.size() == 1) out_ += '\x85';
    else if (xs.size() == 2) out_ += '\x86';
    else if (xs.size() == 3) out_ += '\x87';
    else out_ += 't';
  }

  // ---- storages and tensors ----
  void storage_pid(const std::shared_ptr<Storage>& s, DType as) {
    auto it = storage_dtype_.find(s.get());
    if (it != storage_dtype_.end() && it->second != as && !dtype_is_new_style(as) && !dtype_is_new_style(it->second))
      throw Error(ErrorCode::invalid_argument, "cannot save tensors that view one storage as different dtypes (" +
                                                   std::string(dtype_name(it->second)) + " and " + std::string(dtype_name(as)) + "), as torch.save refuses too");
    auto kit = keys_.find(s.get());
    if (kit == keys_.end()) {
      kit = keys_.emplace(s.get(), key_fn_(s)).first;
      storage_dtype_.emplace(s.get(), as);
    }
    const bool untyped = dtype_is_new_style(as) || !dtype_storage_class(as);
    const uint64_t esize = untyped ? 1 : static_cast<uint64_t>(dtype_size(as));
    if (s->nbytes() % esize != 0)
      throw Error(ErrorCode::invalid_argument, "storage of " + std::to_string(s->nbytes()) + " bytes is not a whole number of " +
                                                   std::string(dtype_name(as)) + " elements");
    out_ += '(';
    str("storage");
    if (untyped) global("torch", "UntypedStorage");
    else global("torch", *dtype_storage_class(as));
    str(kit->second);
    str(s->location().empty() ? "cpu" : s->location());
    integer(static_cast<int64_t>(s->nbytes() / esize));
    out_ += 't';
    out_ += 'Q';
  }
  void tensor_core(const Tensor& t, bool requires_grad, uint32_t depth) {
    if (!t.storage) throw Error(ErrorCode::invalid_argument, "tensor without a storage");
    t.validate();
    const bool v3 = dtype_is_new_style(t.dtype);
    if (v3) {
      // v3 offsets count tensor elements over an UntypedStorage.
      global("torch._utils", "_rebuild_tensor_v3");
    } else {
      global("torch._utils", "_rebuild_tensor_v2");
    }
    out_ += '(';
    storage_pid(t.storage, t.dtype);
    integer(t.storage_offset);
    int_tuple(t.shape);
    int_tuple(t.stride);
    out_ += requires_grad ? '\x88' : '\x89';
    global("collections", "OrderedDict");
    out_ += ")R";
    if (v3) {
      global("torch", dtype_name(t.dtype));
    }
    if (t.metadata) save(*t.metadata, depth + 1);
    out_ += 't';
    out_ += 'R';
  }

  // ---- values ----
  void save(const Value& v, uint32_t depth) {
    if (depth > max_depth_) throw Error(ErrorCode::limit_exceeded, "value tree deeper than " + std::to_string(max_depth_) + " levels");
    auto m = memo_.find(&v);
    if (m != memo_.end()) {
      get_id(m->second);
      return;
    }
    switch (v.kind()) {
      case Kind::none: out_ += 'N'; return;
      case Kind::boolean: out_ += v.as_bool() ? '\x88' : '\x89'; return;
      case Kind::integer: integer(v.as_int()); return;
      case Kind::bigint: bigint(v.bigint_text()); return;
      case Kind::floating: floating(v.as_float()); return;
      case Kind::complex:
        global("builtins", "complex");
        floating(v.real());
        floating(v.imag());
        out_ += "\x86R";
        memo_if_shared(v);
        return;
      case Kind::string:
        if (v.type_name() == "torch.torch_version.TorchVersion") {
          global("torch.torch_version", "TorchVersion");
          str(v.as_str());
          out_ += "\x85R";
        } else {
          str(v.as_str());
        }
        memo_if_shared(v);
        return;
      case Kind::bytes:
        if (v.type_name() == "builtins.bytearray") {
          global("builtins", "bytearray");
          str(latin1(v.as_bytes()));
          str("latin-1");
          out_ += "\x86R";
        } else {
          bytes_value(v.as_bytes());
        }
        memo_if_shared(v);
        return;
      case Kind::list:
        out_ += ']';
        memo_if_shared(v);
        batch_appends(v.elements(), depth);
        return;
      case Kind::tuple: {
        if (in_progress_.count(&v)) throw Error(ErrorCode::invalid_argument, "a tuple contains itself");
        in_progress_.insert(&v);
        if (v.type_name() == "torch.Size") {
          global("torch", "Size");
          tuple_of(v.elements(), depth);
          out_ += "\x85R";
        } else {
          tuple_of(v.elements(), depth);
        }
        in_progress_.erase(&v);
        if (memo_.count(&v)) {  // reached through a list inside it: Python pops and re-gets
          out_ += '0';
          get_id(memo_[&v]);
          return;
        }
        memo_if_shared(v);
        return;
      }
      case Kind::set: case Kind::frozenset:
        global("builtins", v.kind() == Kind::set ? "set" : "frozenset");
        out_ += ']';
        if (!v.elements().empty()) batch_appends(v.elements(), depth);
        out_ += "\x85R";
        memo_if_shared(v);
        return;
      case Kind::dict: {
        const std::string_view ty = v.type_name();
        if (ty.empty()) {
          out_ += '}';
          memo_if_shared(v);
          batch_setitems(v.items(), depth);
        } else if (ty == "collections.OrderedDict" || ty == "collections.defaultdict") {
          global("collections", ty == "collections.OrderedDict" ? "OrderedDict" : "defaultdict");
          if (ty == "collections.defaultdict") {
            Value* f = v.attrs() ? v.attrs()->get("default_factory") : nullptr;
            if (f) save(*f, depth + 1);
            else out_ += 'N';
            out_ += "\x85R";
          } else {
            out_ += ")R";
          }
          memo_if_shared(v);
          batch_setitems(v.items(), depth);
          if (ty == "collections.OrderedDict" && v.attrs() && v.attrs()->size() > 0) {
            save(*v.attrs(), depth + 1);
            out_ += 'b';
          }
        } else if (ty == "collections.Counter") {
          global("collections", "Counter");
          out_ += '}';
          batch_setitems(v.items(), depth);
          out_ += "\x85R";
          memo_if_shared(v);
        } else if (ty == "argparse.Namespace") {
          global("argparse", "Namespace");
          out_ += ")\x81";
          memo_if_shared(v);
          out_ += '}';
          batch_setitems(v.items(), depth);
          out_ += 'b';
        } else {
          throw Error(ErrorCode::invalid_argument, "cannot pickle a dict of type " + std::string(ty));
        }
        return;
      }
      case Kind::global: global(v.module(), v.name()); return;
      case Kind::object: {
        const Value* c = v.callable();
        if (!c) throw Error(ErrorCode::invalid_argument, "object without a callable");
        save(*c, depth + 1);
        if (v.args()) save(*v.args(), depth + 1);
        else out_ += ')';
        out_ += v.is_newobj() ? '\x81' : 'R';
        memo_if_shared(v);
        if (!v.object_elements().empty()) batch_appends(v.object_elements(), depth);
        if (!v.object_items().empty()) batch_setitems(v.object_items(), depth);
        if (v.state()) {
          save(*v.state(), depth + 1);
          out_ += 'b';
        }
        return;
      }
      case Kind::tensor: {
        const Tensor& t = v.tensor();
        if (t.is_parameter) {
          global("torch._utils", "_rebuild_parameter");
          out_ += '(';
          tensor_core(t, false, depth);
          out_ += t.requires_grad ? '\x88' : '\x89';
          global("collections", "OrderedDict");
          out_ += ")Rt";
          out_ += 'R';
        } else {
          tensor_core(t, t.requires_grad, depth);
        }
        memo_if_shared(v);
        return;
      }
      case Kind::storage:
        storage_pid(v.storage(), v.storage()->dtype());
        memo_if_shared(v);
        return;
      case Kind::ndarray: {
        const NdArray& a = v.ndarray();
        if (!a.dtype) throw Error(ErrorCode::invalid_argument, "numpy value without a dtype");
        if (a.is_scalar) {
          global("numpy.core.multiarray", "scalar");
          save(*a.dtype, depth + 1);
          if (a.data) save(*a.data, depth + 1);
          else out_ += 'N';
          out_ += "\x86R";
          memo_if_shared(v);
          return;
        }
        global("numpy.core.multiarray", "_reconstruct");
        global("numpy", "ndarray");
        integer(0);
        out_ += '\x85';
        bytes_value("b");
        out_ += "\x87R";
        memo_if_shared(v);
        out_ += '(';
        integer(1);
        int_tuple(a.shape);
        save(*a.dtype, depth + 1);
        out_ += a.fortran_order ? '\x88' : '\x89';
        if (a.data) save(*a.data, depth + 1);
        else out_ += 'N';
        out_ += "tb";
        return;
      }
      case Kind::np_dtype: {
        std::string code = v.np_descr();
        std::string order = "|";
        if (!code.empty() && (code[0] == '<' || code[0] == '>' || code[0] == '|' || code[0] == '=')) {
          order = code.substr(0, 1);
          code = code.substr(1);
        }
        global("numpy", "dtype");
        str(code);
        out_ += '\x89';
        out_ += '\x88';
        out_ += "\x87R";
        memo_if_shared(v);
        if (v.attrs()) {
          save(*v.attrs(), depth + 1);
        } else {
          out_ += '(';
          integer(3);
          str(order);
          out_ += "NNN";
          integer(-1);
          integer(-1);
          integer(0);
          out_ += 't';
        }
        out_ += 'b';
        return;
      }
      case Kind::torch_dtype: global("torch", dtype_name(v.torch_dtype())); return;
      case Kind::device: {
        global("torch", "device");
        const std::string& d = v.device();
        auto colon = d.find(':');
        if (colon == std::string::npos) {
          str(d);
          out_ += '\x85';
        } else {
          str(d.substr(0, colon));
          char* end = nullptr;
          long idx = std::strtol(d.c_str() + colon + 1, &end, 10);
          integer(idx);
          out_ += '\x86';
        }
        out_ += 'R';
        memo_if_shared(v);
        return;
      }
    }
  }

  const std::function<std::string(const std::shared_ptr<Storage>&)>& key_fn_;
  uint32_t max_depth_;
  std::string out_;
  uint32_t next_memo_ = 0;
  std::unordered_map<const Value*, uint32_t> refs_;
  std::unordered_map<const Value*, uint32_t> memo_;
  std::unordered_map<std::string, uint32_t> global_memo_;
  std::unordered_map<const Storage*, std::string> keys_;
  std::unordered_map<const Storage*, DType> storage_dtype_;
  std::unordered_set<const Value*> in_progress_;
};

}  // namespace

std::string pickle_dumps(const Value& root,
                         const std::function<std::string(const std::shared_ptr<Storage>&)>& storage_key,
                         uint32_t max_depth) {
  Writer w(storage_key, max_depth);
  return w.run(root);
}

}  // namespace ckpt
