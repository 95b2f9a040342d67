// ckpt_canon - the C++ half of the interop tests.
//
//   ckpt_canon dump FILE            canonical JSON of the checkpoint (see tests/interop/canon.py)
//   ckpt_canon resave IN OUT        open IN, ckpt::save(OUT, root)
//   ckpt_canon build OUT [VARIANT]  build a checkpoint with the Document API and save it;
//                                   VARIANT is "mammoth" (default: every value kind) or
//                                   "weights" (no Python float, no LONG_BINPUT: loadable by
//                                   torch 1.13's weights_only unpickler)
//
// On a ckpt::Error it prints {"error": {"code", "name", "what"}} and exits 2; any
// other exception exits 3, bad usage 64.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ckpt/checkpoint.hpp"
#include "ckpt/dtype.hpp"
#include "ckpt/error.hpp"
#include "ckpt/tensor.hpp"
#include "ckpt/value.hpp"

using nlohmann::json;

namespace {

// ---------------------------------------------------------------- helpers

uint32_t crc32(const uint8_t* p, size_t n) {
  static const auto table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::string crc_hex(const std::vector<uint8_t>& b) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", crc32(b.data(), b.size()));
  return buf;
}

std::string float_bits(double d) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx",
                static_cast<unsigned long long>(std::bit_cast<uint64_t>(d)));
  return buf;
}

std::string hex(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string dump_text(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// numpy descr -> element size ("<f4" -> 4, "<c16" -> 16, "|b1" -> 1); 0 if unknown.
size_t descr_itemsize(const std::string& d) {
  if (d.size() < 3) return 0;
  try {
    return static_cast<size_t>(std::stoul(d.substr(2)));
  } catch (...) {
    return 0;
  }
}

// Normalise a big-endian numpy descr and its bytes to little-endian, like canon.py.
void normalise_numpy(std::string& descr, std::string& bytes) {
  if (descr.empty() || descr[0] != '>') return;
  size_t item = descr_itemsize(descr);
  if (descr.size() > 1 && (descr[1] == 'U')) item = 4;  // UCS-4 code units
  size_t unit = (descr.size() > 1 && descr[1] == 'c') ? item / 2 : item;
  if (unit > 1) {
    for (size_t i = 0; i + unit <= bytes.size(); i += unit) std::reverse(bytes.begin() + i, bytes.begin() + i + unit);
  }
  descr[0] = '<';
}

// Fortran-ordered element bytes -> C order.
std::string fortran_to_c(const std::string& src, const std::vector<int64_t>& shape, size_t item) {
  size_t n = 1;
  for (auto d : shape) n *= static_cast<size_t>(d);
  if (n == 0 || item == 0 || shape.size() < 2 || src.size() != n * item) return src;
  std::string out(src.size(), '\0');
  size_t nd = shape.size();
  std::vector<size_t> fstride(nd);
  size_t s = 1;
  for (size_t k = 0; k < nd; ++k) {
    fstride[k] = s;
    s *= static_cast<size_t>(shape[k]);
  }
  std::vector<size_t> idx(nd, 0);
  for (size_t c = 0; c < n; ++c) {
    size_t f = 0;
    for (size_t k = 0; k < nd; ++k) f += idx[k] * fstride[k];
    std::memcpy(&out[c * item], &src[f * item], item);
    for (size_t k = nd; k-- > 0;) {
      if (++idx[k] < static_cast<size_t>(shape[k])) break;
      idx[k] = 0;
    }
  }
  return out;
}

// ---------------------------------------------------------------- canonical JSON

class Canon {
 public:
  json operator()(const ckpt::Value& v, int depth = 0) {
    if (depth > 5000) throw std::runtime_error("ckpt_canon: value tree too deep");
    using ckpt::Kind;
    switch (v.kind()) {
      case Kind::none: return nullptr;
      case Kind::boolean: return v.as_bool();
      case Kind::integer: return json{{"int", std::to_string(v.as_int())}};
      case Kind::bigint: return json{{"int", v.bigint_text()}};
      case Kind::floating: return json{{"float", float_bits(v.as_float())}};
      case Kind::complex: return json{{"complex", json::array({float_bits(v.real()), float_bits(v.imag())})}};
      case Kind::string: return v.as_str();
      case Kind::bytes: return json{{"bytes", hex(v.as_bytes())}};
      case Kind::list: return json{{"list", seq(v, depth)}};
      case Kind::tuple: {
        if (v.type_name() == "torch.Size") {
          json dims = json::array();
          for (const ckpt::Value* e : v.elements()) dims.push_back(e->as_int());
          return json{{"size", dims}};
        }
        return json{{"tuple", seq(v, depth)}};
      }
      case Kind::dict: return dict(v, depth);
      case Kind::set:
      case Kind::frozenset: {
        std::vector<std::pair<std::string, json>> elems;
        for (const ckpt::Value* e : v.elements()) {
          json j = (*this)(*e, depth + 1);
          elems.emplace_back(dump_text(j), std::move(j));
        }
        std::stable_sort(elems.begin(), elems.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        json arr = json::array();
        for (auto& e : elems) arr.push_back(std::move(e.second));
        return json{{"set", arr}};
      }
      case Kind::global: return json{{"global", v.qualified_name()}};
      case Kind::object: return json{{"object", v.qualified_name()}};
      case Kind::tensor: return tensor(v.tensor());
      case Kind::storage: return storage(v.storage());
      case Kind::ndarray: return ndarray(v.ndarray(), depth);
      case Kind::np_dtype: return json{{"npdtype", v.np_descr()}};
      case Kind::torch_dtype: return json{{"dtype", std::string(ckpt::dtype_name(v.torch_dtype()))}};
      case Kind::device: return json{{"device", v.device()}};
    }
    return json{{"unknown_kind", ckpt::kind_name(v.kind())}};
  }

 private:
  json seq(const ckpt::Value& v, int depth) {
    json arr = json::array();
    for (const ckpt::Value* e : v.elements()) arr.push_back((*this)(*e, depth + 1));
    return arr;
  }

  json dict(const ckpt::Value& v, int depth) {
    const std::string t(v.type_name());
    if (t == "argparse.Namespace") {
      std::vector<std::pair<std::string, const ckpt::Value*>> items;
      for (const auto& [k, val] : v.items()) items.emplace_back(k->is(ckpt::Kind::string) ? k->as_str() : ckpt::repr(*k), val);
      std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      json arr = json::array();
      for (const auto& [k, val] : items) arr.push_back(json::array({k, (*this)(*val, depth + 1)}));
      return json{{"namespace", arr}};
    }
    json arr = json::array();
    for (const auto& [k, val] : v.items()) {
      json jk = (*this)(*k, depth + 1);
      json jv = (*this)(*val, depth + 1);
      arr.push_back(json::array({std::move(jk), std::move(jv)}));
    }
    std::string type = "dict";
    if (t == "collections.OrderedDict") type = "OrderedDict";
    else if (t == "collections.Counter") type = "Counter";
    else if (t == "collections.defaultdict") type = "defaultdict";
    else if (!t.empty()) type = t;
    json out{{"dict", arr}, {"type", type}};
    if (const ckpt::Value* a = v.attrs(); a && a->is_dict()) {
      if (const ckpt::Value* md = a->get("_metadata")) out["metadata"] = (*this)(*md, depth + 1);
    }
    return out;
  }

  int storage_index(const ckpt::Storage* s) {
    auto it = storages_.find(s);
    if (it != storages_.end()) return it->second;
    int idx = static_cast<int>(storages_.size());
    storages_.emplace(s, idx);
    return idx;
  }

  json tensor(const ckpt::Tensor& t) {
    std::vector<uint8_t> bytes = t.to_contiguous();
    json d;
    d["dtype"] = std::string(ckpt::dtype_name(t.dtype));
    d["shape"] = t.shape;
    d["stride"] = t.stride;
    d["offset"] = t.storage_offset;
    d["storage"] = t.storage ? storage_index(t.storage.get()) : -1;
    d["storage_nbytes"] = t.storage ? t.storage->nbytes() : 0;
    d["crc32"] = crc_hex(bytes);
    d["nbytes"] = bytes.size();
    d["requires_grad"] = t.requires_grad;
    if (t.is_parameter) d["parameter"] = true;
    return json{{"tensor", d}};
  }

  json storage(const std::shared_ptr<ckpt::Storage>& s) {
    ckpt::Tensor t;
    t.dtype = s->dtype();
    t.shape = {static_cast<int64_t>(s->numel())};
    t.stride = {1};
    t.storage = s;
    std::vector<uint8_t> bytes = t.to_contiguous();
    json d;
    d["dtype"] = std::string(ckpt::dtype_name(s->dtype()));
    d["index"] = storage_index(s.get());
    d["nbytes"] = s->nbytes();
    d["crc32"] = crc_hex(bytes);
    return json{{"storage", d}};
  }

  json ndarray(const ckpt::NdArray& a, int depth) {
    std::string descr = a.descr;
    if (a.data && a.data->is_sequence()) {  // object array: its items
      json d{{"dtype", descr}, {"shape", a.shape}};
      d["items"] = seq(*a.data, depth);
      return json{{"ndarray", d}};
    }
    std::string bytes = a.data ? a.data->as_bytes() : std::string();
    if (a.fortran_order) bytes = fortran_to_c(bytes, a.shape, descr_itemsize(descr));
    normalise_numpy(descr, bytes);
    if (a.is_scalar) return json{{"npscalar", {{"dtype", descr}, {"hex", hex(bytes)}}}};
    std::vector<uint8_t> b(bytes.begin(), bytes.end());
    return json{{"ndarray", {{"dtype", descr}, {"shape", a.shape}, {"crc32", crc_hex(b)}}}};
  }

  std::unordered_map<const ckpt::Storage*, int> storages_;
};

// ---------------------------------------------------------------- build

template <typename T>
std::vector<uint8_t> raw(const std::vector<T>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

ckpt::Tensor make_tensor(ckpt::DType dt, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  ckpt::Tensor t;
  t.dtype = dt;
  t.shape = std::move(shape);
  t.stride = ckpt::Tensor::contiguous_strides(t.shape);
  t.storage_offset = 0;
  t.storage = ckpt::Storage::from_bytes(dt, std::move(bytes));
  return t;
}

// 4 elements (shape [2,2]) with the values 0,1,2,3 for every dtype
// (bool: T,F,T,T; complex: k - k*i); canon-side expectation in test_cpp_to_py.py.
std::vector<uint8_t> dtype_values(ckpt::DType dt) {
  using ckpt::DType;
  switch (dt) {
    case DType::float64: return raw<double>({0, 1, 2, 3});
    case DType::float32: return raw<float>({0, 1, 2, 3});
    case DType::float16: return raw<uint16_t>({0x0000, 0x3c00, 0x4000, 0x4200});
    case DType::bfloat16: return raw<uint16_t>({0x0000, 0x3f80, 0x4000, 0x4040});
    case DType::int64: return raw<int64_t>({0, 1, 2, 3});
    case DType::int32: return raw<int32_t>({0, 1, 2, 3});
    case DType::int16: return raw<int16_t>({0, 1, 2, 3});
    case DType::int8: return raw<int8_t>({0, 1, 2, 3});
    case DType::uint8: return raw<uint8_t>({0, 1, 2, 3});
    case DType::bool_: return raw<uint8_t>({1, 0, 1, 1});
    case DType::complex64: return raw<float>({0, -0.0f, 1, -1, 2, -2, 3, -3});
    case DType::complex128: return raw<double>({0, -0.0, 1, -1, 2, -2, 3, -3});
    default: return {};
  }
}

ckpt::Value* str(ckpt::Document& doc, std::string_view s) { return doc.str(s); }
ckpt::Value* i64(ckpt::Document& doc, int64_t i) { return doc.integer(i); }

uint64_t build(const std::string& out, const std::string& variant) {
  using ckpt::DType;
  const bool floats = variant != "weights";
  ckpt::Document doc;
  ckpt::Value* root = doc.dict();

  // ---- model: an OrderedDict state_dict with _metadata, aliasing and views
  ckpt::Value* model = doc.ordered_dict();
  std::vector<float> w(12);
  for (int i = 0; i < 12; ++i) w[i] = 0.5f * static_cast<float>(i) - 1.0f;
  ckpt::Tensor weight = make_tensor(DType::float32, {4, 3}, raw(w));
  model->set("backbone.weight", doc.tensor(weight));
  model->set("head.weight", doc.tensor(weight));  // tied: a second tensor on one storage
  ckpt::Tensor wt = weight;                        // non-contiguous view: weight.t()
  wt.shape = {3, 4};
  wt.stride = {1, 3};
  model->set("backbone.weight_t", doc.tensor(wt));
  ckpt::Tensor col = weight;  // weight[:2, 1]: offset 1, stride 3
  col.shape = {2};
  col.stride = {3};
  col.storage_offset = 1;
  model->set("backbone.col1", doc.tensor(col));
  model->set("backbone.bias", doc.tensor(make_tensor(DType::float32, {4}, raw<float>({0.25f, -0.5f, 1.0f, 2.0f}))));
  model->set("bn.num_batches_tracked", doc.tensor(make_tensor(DType::int64, {}, raw<int64_t>({7}))));
  ckpt::Tensor p = make_tensor(DType::float32, {2}, raw<float>({1.5f, -2.5f}));
  p.is_parameter = true;
  p.requires_grad = true;
  model->set("param", doc.tensor(p));
  ckpt::Value* meta = doc.ordered_dict();
  for (const char* k : {"", "backbone", "head", "bn"}) {
    ckpt::Value* ver = doc.dict();
    ver->set("version", i64(doc, 1));
    meta->set(k, ver);
  }
  ckpt::Value* attrs = doc.dict();
  attrs->set("_metadata", meta);
  model->set_attrs(attrs);
  root->set("model", model);

  // ---- every dtype, 0-d and 0-element tensors
  ckpt::Value* dtypes = doc.dict();
  for (DType dt : {DType::float64, DType::float32, DType::float16, DType::bfloat16, DType::int64, DType::int32,
                   DType::int16, DType::int8, DType::uint8, DType::bool_, DType::complex64, DType::complex128}) {
    dtypes->set(ckpt::dtype_name(dt), doc.tensor(make_tensor(dt, {2, 2}, dtype_values(dt))));
  }
  root->set("dtypes", dtypes);
  root->set("zero_d", doc.tensor(make_tensor(DType::float32, {}, raw<float>({2.5f}))));
  root->set("empty", doc.tensor(make_tensor(DType::float32, {0, 3}, {})));
  root->set("empty_i64", doc.tensor(make_tensor(DType::int64, {0}, {})));

  // ---- views of a storage larger than any of them; requires_grad without Parameter
  ckpt::Value* views = doc.dict();
  std::vector<float> ten(10);
  for (int i = 0; i < 10; ++i) ten[i] = static_cast<float>(i);
  ckpt::Tensor base = make_tensor(DType::float32, {10}, raw(ten));
  ckpt::Tensor partial = base;  // as_strided((2, 2), (1, 2), 3)
  partial.shape = {2, 2};
  partial.stride = {1, 2};
  partial.storage_offset = 3;
  views->set("partial", doc.tensor(partial));
  ckpt::Tensor empty_off = base;  // base[5:5]
  empty_off.shape = {0};
  empty_off.stride = {1};
  empty_off.storage_offset = 5;
  views->set("empty_offset", doc.tensor(empty_off));
  ckpt::Tensor grad = make_tensor(DType::float64, {2}, raw<double>({0.5, -0.25}));
  grad.requires_grad = true;
  views->set("requires_grad", doc.tensor(grad));
  root->set("views", views);

  // ---- plain values torch 1.13's weights_only accepts
  ckpt::Value* misc = doc.dict();
  misc->set("name", str(doc, "libckpt"));
  misc->set("epoch", i64(doc, 42));
  misc->set("negative", i64(doc, -5));
  misc->set("int64_max", i64(doc, INT64_MAX));
  misc->set("int64_min", i64(doc, INT64_MIN));
  misc->set("big", doc.bigint("1180591620717411303424"));    // 2**70
  misc->set("neg_big", doc.bigint("-1180591620717411303424"));
  misc->set("flag", doc.boolean(true));
  misc->set("off", doc.boolean(false));
  misc->set("nothing", doc.none());
  misc->set("list", doc.list({i64(doc, 1), str(doc, "two"), doc.none()}));
  misc->set("tuple", doc.tuple({i64(doc, 1), doc.tuple({str(doc, "nested")})}));
  misc->set("unicode", str(doc, "h\xc3\xa9llo \xe2\x9c\x93"));
  ckpt::Value* ikeys = doc.dict();
  ikeys->set(i64(doc, 0), str(doc, "zero"));
  ikeys->set(i64(doc, 1), str(doc, "one"));
  misc->set("int_keys", ikeys);
  root->set("misc", misc);

  if (floats) {
    // ---- Mammoth-like training state
    ckpt::Value* opt = doc.dict();
    ckpt::Value* state = doc.dict();
    ckpt::Value* s0 = doc.dict();
    s0->set("momentum_buffer", doc.tensor(make_tensor(DType::float32, {4, 3}, raw(std::vector<float>(12, 0.125f)))));
    state->set(i64(doc, 0), s0);
    ckpt::Value* s1 = doc.dict();
    s1->set("momentum_buffer", doc.tensor(make_tensor(DType::float32, {4}, raw<float>({1, 2, 3, 4}))));
    state->set(i64(doc, 1), s1);
    opt->set("state", state);
    ckpt::Value* group = doc.dict();
    group->set("lr", doc.floating(0.1));
    group->set("momentum", doc.floating(0.9));
    group->set("dampening", i64(doc, 0));
    group->set("weight_decay", doc.floating(1e-4));
    group->set("nesterov", doc.boolean(false));
    group->set("maximize", doc.boolean(false));
    group->set("foreach", doc.none());
    group->set("params", doc.list({i64(doc, 0), i64(doc, 1)}));
    opt->set("param_groups", doc.list({group}));
    root->set("optimizer", opt);
    root->set("scheduler", doc.none());
    ckpt::Value* args = doc.dict();
    args->set("model", str(doc, "derpp"));
    args->set("lr", doc.floating(0.03));
    args->set("batch_size", i64(doc, 32));
    args->set("alpha", doc.floating(0.1));
    args->set("nowand", doc.boolean(true));
    args->set("seed", doc.none());
    args->set("milestones", doc.list({i64(doc, 35), i64(doc, 45)}));
    root->set("args", args);
    root->set("results", doc.list({doc.list({doc.floating(91.25), doc.floating(80.5)}),
                                   doc.list({doc.floating(70.0)}),
                                   doc.list({})}));
    ckpt::Value* extra = doc.dict();
    extra->set("neg_zero", doc.floating(-0.0));
    extra->set("tiny", doc.floating(5e-324));
    extra->set("third", doc.floating(1.0 / 3.0));
    extra->set("complex", doc.complex(1.5, -2.0));
    extra->set("bytes", doc.bytes(std::string_view("\x00\xff" "ab", 4)));
    extra->set("size", doc.size({2, 3}));
    extra->set("device", doc.device("cuda:0"));
    extra->set("dtype", doc.torch_dtype(DType::float16));
    extra->set("set", doc.set({i64(doc, 3), i64(doc, 1)}));
    ckpt::Value* counter = doc.dict();
    counter->set_type_name("collections.Counter");
    counter->set("a", i64(doc, 2));
    extra->set("counter", counter);
    root->set("extra", extra);
  }

  ckpt::SaveOptions so;
  so.durable = false;
  return ckpt::save(out, *root, so);
}

int usage() {
  std::cerr << "usage: ckpt_canon dump FILE | info FILE | resave IN OUT | build OUT [mammoth|weights]\n";
  return 64;
}

}  // namespace

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  if (argc < 3) return usage();
  const std::string cmd = argv[1];
  try {
    if (cmd == "dump" && argc == 3) {
      ckpt::Checkpoint ck = ckpt::Checkpoint::open(argv[2]);
      Canon canon;
      json j = canon(ck.root());
      std::cout << dump_text(j) << "\n";
      return 0;
    }
    if (cmd == "info" && argc == 3) {  // what the container and its pickle say about the file
      ckpt::Checkpoint ck = ckpt::Checkpoint::open(argv[2]);
      const ckpt::FormatInfo& f = ck.format();
      json globals = json::array();
      for (const auto& g : ck.globals())
        globals.push_back({{"global", g.module + "." + g.name}, {"verdict", ckpt::global_verdict_name(g.verdict)}, {"count", g.count}});
      json j{{"container", ckpt::container_name(f.container)}, {"era", f.era}, {"root", f.root},
             {"protocol", f.pickle_protocol}, {"version", f.version}, {"byteorder", f.byteorder},
             {"little_endian", f.little_endian}, {"trailing_bytes", f.trailing_bytes},
             {"tensors", ck.tensors().size()}, {"storages", ck.storages().size()},
             {"weights_only_compatible", ck.weights_only_compatible()}, {"globals", globals}};
      if (ck.zip()) j["aligned"] = ck.records_aligned();
      ck.verify();
      std::cout << dump_text(j) << "\n";
      return 0;
    }
    if (cmd == "resave" && argc == 4) {
      ckpt::Checkpoint ck = ckpt::Checkpoint::open(argv[2]);
      ckpt::SaveOptions so;
      so.durable = false;
      ckpt::save(argv[3], ck.root(), so);
      return 0;
    }
    if (cmd == "build" && (argc == 3 || argc == 4)) {
      std::string variant = argc == 4 ? argv[3] : "mammoth";
      if (variant != "mammoth" && variant != "weights") return usage();
      build(argv[2], variant);
      return 0;
    }
    return usage();
  } catch (const ckpt::Error& e) {
    json j{{"error", {{"code", static_cast<int>(e.code())}, {"name", ckpt::error_code_name(e.code())}, {"what", e.what()}}}};
    std::cout << dump_text(j) << "\n";
    return 2;
  } catch (const std::exception& e) {
    json j{{"error", {{"code", -1}, {"name", "std::exception"}, {"what", e.what()}}}};
    std::cout << dump_text(j) << "\n";
    return 3;
  }
}
