// ckpt/value.hpp - the value tree a pickle describes, built without running it.
//
// A Document owns every Value (an arena), so shared references from the pickle
// memo stay shared (the same Value*), cycles cost nothing, and a tree is freed
// at once. Values are created only through a Document.
//
// Kinds map onto Python's types. Known library types keep their kind and carry
// their class in type_name():
//   dict   + "collections.OrderedDict" | "collections.Counter" |
//            "collections.defaultdict" | "argparse.Namespace"
//   tuple  + "torch.Size"
//   string + "torch.torch_version.TorchVersion"
//   bytes  + "builtins.bytearray"
// Anything else becomes an opaque `object`: the global it names, the arguments
// it would be called with and the state BUILD would give it. It is shown,
// never called.
#pragma once

#include <cstdint>
#include <atomic>
#include <deque>
#include <functional>
#include <memory_resource>
#include <span>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ckpt/dtype.hpp"
#include "ckpt/limits.hpp"
#include "ckpt/tensor.hpp"

namespace ckpt {

class Document;

enum class Kind : uint8_t {
  none, boolean, integer, bigint, floating, complex, string, bytes,
  list, tuple, dict, set, frozenset,
  global,       ///< a module.name reference (GLOBAL / STACK_GLOBAL)
  object,       ///< an opaque call or instance of a global we do not interpret
  tensor, storage,
  ndarray,      ///< numpy array or numpy scalar
  np_dtype,     ///< numpy.dtype
  torch_dtype,  ///< torch.float32, ...
  device,       ///< torch.device
};
const char* kind_name(Kind k) noexcept;

/// numpy array or scalar (numpy.core.multiarray._reconstruct + BUILD, or .scalar).
struct NdArray {
  std::string descr;             ///< "<f4", "|b1", "<U3", "|O" ...
  std::vector<int64_t> shape;    ///< empty for a scalar
  bool fortran_order = false;
  bool is_scalar = false;
  const Value* dtype = nullptr;  ///< the np_dtype value
  const Value* data = nullptr;   ///< bytes, or a list for object arrays
};

class Value {
 public:
  Kind kind() const noexcept { return kind_; }
  bool is(Kind k) const noexcept { return kind_ == k; }
  bool is_none() const noexcept { return kind_ == Kind::none; }
  bool is_dict() const noexcept { return kind_ == Kind::dict; }
  bool is_sequence() const noexcept { return kind_ == Kind::list || kind_ == Kind::tuple; }
  Document& document() const noexcept { return *doc_; }

  // ---- scalars (throw ErrorCode::type_error on the wrong kind) ----
  bool as_bool() const;
  int64_t as_int() const;             ///< integer (and boolean)
  double as_float() const;            ///< floating, integer or boolean
  const std::string& as_str() const;  ///< string (UTF-8)
  const std::string& as_bytes() const;
  /// Decimal text of a bigint ("-1180591620717411303424"); beyond 256 bytes
  /// the text is hexadecimal ("0x1f...") to keep conversion linear.
  const std::string& bigint_text() const;
  double real() const noexcept { return f_; }
  double imag() const noexcept { return f2_; }

  // ---- containers ----
  size_t size() const noexcept;  ///< elements, items or 0
  using Elements = std::span<Value* const>;
  using Items = std::span<const std::pair<Value*, Value*>>;
  Elements elements() const;  ///< list, tuple, set, frozenset
  Items items() const;        ///< dict, in insertion order
  /// dict lookup by string key; nullptr when absent (or not a dict).
  Value* get(std::string_view key) const noexcept;
  Value* get(const Value& key) const noexcept;
  /// dict lookup that throws ErrorCode::key_not_found.
  Value& at(std::string_view key) const;
  Value& at(size_t index) const;  ///< list/tuple element, throws when out of range

  /// Python class of a subclassed container or string ("collections.OrderedDict").
  std::string_view type_name() const noexcept { return type_; }
  /// Instance attributes: OrderedDict's __dict__ (with `_metadata`), a
  /// defaultdict's factory under "default_factory". nullptr if none.
  Value* attrs() const noexcept { return a_; }

  // ---- global / object ----
  const std::string& module() const;  ///< global
  const std::string& name() const;    ///< global
  std::string qualified_name() const; ///< "module.name" of a global, or of an object's class
  Value* callable() const noexcept { return kind_ == Kind::object ? a_ : nullptr; }
  Value* args() const noexcept { return kind_ == Kind::object ? b_ : nullptr; }
  Value* state() const noexcept { return kind_ == Kind::object ? c_ : nullptr; }
  bool is_newobj() const noexcept { return flag_; }
  /// Why an object that looks like a tensor is not decoded ("quantized tensor").
  const std::string& unsupported_reason() const noexcept { return s2_; }
  /// Items SETITEM(S) stored into an opaque object (a dict subclass).
  Items object_items() const noexcept { return items_; }
  /// Elements APPEND(S) stored into an opaque object (a list subclass).
  Elements object_elements() const noexcept { return elems_; }

  // ---- tensors and friends ----
  const Tensor& tensor() const;
  Tensor& tensor();
  const std::shared_ptr<Storage>& storage() const;
  const NdArray& ndarray() const;
  DType torch_dtype() const;
  const std::string& device() const;   ///< "cpu", "cuda:0"
  const std::string& np_descr() const; ///< np_dtype: "<f8"

  /// Byte offset in the pickle where this value was created (0 for built
  /// ones, and for the shared scalars None, True, False and 0..255).
  uint64_t offset() const noexcept { return offset_; }
  /// True for the scalars a Document shares between all their uses.
  bool is_shared_scalar() const noexcept { return shared_; }

  // ---- building ----
  Value* append(Value* v);                       ///< list/set; returns this
  Value* set(Value* key, Value* v);              ///< dict: insert or replace; returns this
  Value* set(std::string_view key, Value* v);
  Value* set(std::string_view key, std::string_view v);
  Value* set(std::string_view key, const char* v) { return set(key, std::string_view(v)); }
  Value* set(std::string_view key, const std::string& v) { return set(key, std::string_view(v)); }
  Value* set(std::string_view key, int v) { return set(key, static_cast<int64_t>(v)); }
  Value* set(std::string_view key, int64_t v);
  Value* set(std::string_view key, double v);
  Value* set(std::string_view key, bool v);
  bool erase(std::string_view key);             ///< dict: remove a string key
  void set_type_name(std::string_view t);
  void set_attrs(Value* a) noexcept { a_ = a; }

 private:
  friend class Document;
  friend class Unpickler;
  Value(Document* d, Kind k);
 public:
  ~Value() { drop_index(); }
  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;

 private:
  /// Merges duplicate keys as Python does (first position, last value).
  void merge_duplicate_keys();
  std::optional<std::string> find_index_key(const Value& key) const;

  Document* doc_;
  Kind kind_;
  bool flag_ = false;
  bool shared_ = false;
  bool pending_dedupe_ = false;  // dict filled by the unpickler, duplicates not yet merged
  uint32_t depth_ = 0;
  uint64_t offset_ = 0;
  int64_t i_ = 0;
  double f_ = 0, f2_ = 0;
  std::string s_, s2_;
  std::string_view type_;  // a literal, or text interned in the Document
  // Containers allocate from their Document's monotonic pool: no malloc or
  // free per container, and all of it goes at once with the Document.
  std::pmr::vector<Value*> elems_;
  std::pmr::vector<std::pair<Value*, Value*>> items_;
  Value *a_ = nullptr, *b_ = nullptr, *c_ = nullptr;
  std::shared_ptr<Tensor> tensor_;
  std::shared_ptr<Storage> storage_;
  std::shared_ptr<NdArray> nd_;
  DType dtype_ = DType::float32;
  // Lazy index of a dict's keys: string keys by a view of the key value's own
  // text (values never move), other hashable keys by canonical text.
  struct Index {
    std::unordered_map<std::string_view, size_t> strings;
    std::unordered_map<std::string, size_t> others;
  };
  // Built on first lookup and published atomically, so concurrent readers
  // of one Document are safe; building and mutating are single-threaded.
  mutable std::atomic<Index*> index_{nullptr};
  const Index& index() const;
  std::unique_ptr<Index> build_index() const;
  void drop_index() noexcept { delete index_.exchange(nullptr, std::memory_order_acq_rel); }
};

/// The arena that owns a value tree. Immutable scalars (None, True, False,
/// ints 0..255) are shared like CPython shares them: do not mutate them.
class Document {
 public:
  Document() = default;
  ~Document();
  Document(const Document&) = delete;
  Document& operator=(const Document&) = delete;

  Value* none();
  Value* boolean(bool b);
  Value* integer(int64_t i);
  Value* bigint(std::string decimal);
  Value* floating(double f);
  Value* complex(double re, double im);
  Value* str(std::string_view s);
  Value* bytes(std::string_view b);
  Value* list(std::vector<Value*> elems = {});
  Value* tuple(std::vector<Value*> elems = {});
  Value* tuple(std::span<Value* const> elems);
  Value* dict();
  Value* ordered_dict();  ///< a collections.OrderedDict, as state_dict() returns
  Value* namespace_();     ///< an argparse.Namespace (attributes as items)
  Value* set(std::vector<Value*> elems = {});
  Value* frozenset(std::vector<Value*> elems = {});
  Value* global(std::string module, std::string name);
  Value* object(Value* callable, Value* args, bool newobj);
  Value* tensor(Tensor t);
  Value* storage(std::shared_ptr<Storage> s);
  Value* ndarray(NdArray a);
  Value* np_dtype(std::string descr);
  Value* torch_dtype(DType t);
  Value* device(std::string spec);
  /// torch.Size of `dims`.
  Value* size(const std::vector<int64_t>& dims);

  size_t node_count() const noexcept { return count_; }

 private:
  friend class Value;
  friend class Unpickler;
  std::string_view intern(std::string_view s);
  std::pmr::monotonic_buffer_resource pool_;
  std::deque<std::string> interned_;
  struct Chunk {
    Value* base;
    size_t capacity;
  };
  Value* make(Kind k);
  // Immutable scalars are shared, as in CPython: None, True, False and the
  // ints 0..255 (every tensor's offset, sizes and strides are mostly these).
  Value* none_ = nullptr;
  Value* bools_[2] = {nullptr, nullptr};
  Value* small_ints_[256] = {};
  std::vector<Chunk> chunks_;
  size_t used_ = 0;  // values constructed in the last chunk
  size_t count_ = 0;
};

/// Walks every tensor reachable from `root` in pickle order, with its key path
/// ("model/net.fc.weight", "optimizer/state/0/momentum_buffer"). Containers
/// reached twice are walked twice (each path is listed), within
/// Limits::max_walk_nodes and max_depth; the callback may return false to stop.
struct TensorVisit {
  std::string path;
  const Value* value;
  const Tensor& tensor() const { return value->tensor(); }
};
void walk_tensors(const Value& root, const std::function<bool(const TensorVisit&)>& fn,
                  uint32_t max_depth = 1000, uint64_t max_nodes = kDefaultMaxWalkNodes);

/// Key-path component for a dict key or list index ("net.fc.weight", "0").
std::string key_component(const Value& key);

/// A short, readable, one-line rendering of a value (like Python's repr, with
/// long containers elided). Control characters are escaped.
std::string repr(const Value& v, size_t max_len = 200);

}  // namespace ckpt
