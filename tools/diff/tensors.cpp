#include "diff/tensors.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <cmath>
#include <mutex>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

#include "ckpt/error.hpp"
#include "common/keys.hpp"
#include "common/numeric.hpp"

namespace ckpt::tools::diff {

const char* category_id(Category c) noexcept {
  switch (c) {
    case Category::parameter: return "parameter";
    case Category::bn_stat: return "bn_stat";
    case Category::int_buffer: return "int_buffer";
    case Category::optimizer_state: return "optimizer_state";
    case Category::buffer: return "buffer";
    case Category::other: return "other";
  }
  return "parameter";
}

const char* category_title(Category c) noexcept {
  switch (c) {
    case Category::parameter: return "parameters";
    case Category::bn_stat: return "BatchNorm running statistics";
    case Category::int_buffer: return "integer buffers";
    case Category::optimizer_state: return "optimizer state";
    case Category::buffer: return "replay buffer";
    case Category::other: return "other tensors";
  }
  return "parameters";
}

namespace {
std::string_view leaf_of(std::string_view key) {
  size_t dot = key.find_last_of("./");
  return dot == std::string_view::npos ? key : key.substr(dot + 1);
}
}  // namespace

Category classify(std::string_view key, DType dtype) noexcept {
  if (!dtype_is_floating(dtype) && !dtype_is_complex(dtype)) return Category::int_buffer;
  std::string_view leaf = leaf_of(key);
  if (leaf == "running_mean" || leaf == "running_var") return Category::bn_stat;
  return Category::parameter;
}

std::vector<Named> collect(const Value& section) {
  std::vector<Named> out;
  walk_tensors(section, [&](const TensorVisit& v) {
    out.push_back(Named{v.path, v.path, &v.tensor()});
    return true;
  });
  return out;
}

// ---- prefix stripping ----------------------------------------------------------

StripSpec StripSpec::parse(std::string_view text) {
  StripSpec s;
  if (text == "none" || text.empty()) return s;
  if (text == "auto") {
    s.mode = Mode::automatic;
    return s;
  }
  s.mode = Mode::literal;
  s.prefix = std::string(text);
  if (s.prefix.back() != '.') s.prefix += '.';
  if (s.prefix == ".")
    throw Error(ErrorCode::invalid_argument, "--strip-prefix needs auto, none or a prefix like module.");
  return s;
}

namespace {

bool has_leading(std::string_view key, std::string_view prefix) { return strip_leading(key, prefix).has_value(); }

// Removes what the wrappers added, anywhere in the key; names the components removed.
void strip_wrapper_components(std::vector<Named>& set, StripNote& note) {
  bool module = false, orig = false;
  for (auto& n : set) {
    std::string s = strip_wrappers(n.key);
    if (s == n.key) continue;
    for (auto c : split_components(n.key)) {
      module |= c == kDataParallel;
      orig |= c == kCompiled;
    }
    n.key = std::move(s);
    ++note.keys;
  }
  if (module) note.removed += std::string(kDataParallel) + ".";
  if (orig) note.removed += std::string(kCompiled) + ".";
}

void strip_leading_prefix(std::vector<Named>& set, std::string_view prefix, StripNote& note) {
  bool any = false;
  for (auto& n : set) {
    if (auto s = strip_leading(n.key, prefix)) {
      n.key = std::move(*s);
      ++note.keys;
      any = true;
    }
  }
  if (any) note.removed += std::string(prefix);
}

void check_collisions(const std::vector<Named>& set) {
  std::unordered_map<std::string_view, const Named*> seen;
  for (const auto& n : set) {
    auto [it, fresh] = seen.emplace(n.key, &n);
    if (!fresh)
      throw Error(ErrorCode::invalid_argument, "stripping prefixes makes '" + it->second->orig + "' and '" +
                                                   n.orig + "' collide as '" + n.key +
                                                   "'; use --strip-prefix none or a narrower prefix");
  }
}

}  // namespace

std::vector<StripNote> strip(std::vector<std::vector<Named>*> sets, const StripSpec& spec) {
  std::vector<StripNote> notes(sets.size());
  if (spec.mode == StripSpec::Mode::none) return notes;
  if (spec.mode == StripSpec::Mode::literal) {
    for (size_t i = 0; i < sets.size(); ++i) strip_leading_prefix(*sets[i], spec.prefix, notes[i]);
  } else {
    for (size_t i = 0; i < sets.size(); ++i) strip_wrapper_components(*sets[i], notes[i]);
    // Mammoth's ContinualModel puts the backbone under `net.`; a plain backbone
    // state dict has no such prefix. Strip it only where some files have it on
    // every key and the others on none.
    auto all_net = [](const std::vector<Named>& s) {
      return !s.empty() && std::all_of(s.begin(), s.end(), [](const Named& n) { return has_leading(n.key, "net."); });
    };
    auto no_net = [](const std::vector<Named>& s) {
      return std::none_of(s.begin(), s.end(), [](const Named& n) { return has_leading(n.key, "net."); });
    };
    size_t with = 0, without = 0;
    for (auto* s : sets) with += all_net(*s), without += !s->empty() && no_net(*s);
    if (with > 0 && without > 0 && with + without == sets.size())
      for (size_t i = 0; i < sets.size(); ++i)
        if (all_net(*sets[i])) strip_leading_prefix(*sets[i], "net.", notes[i]);
  }
  for (auto* s : sets) check_collisions(*s);
  return notes;
}

namespace {
uint64_t count_matches(const std::vector<Named>& a, const std::vector<Named>& b) {
  std::unordered_set<std::string_view> keys;
  for (const auto& n : b) keys.insert(n.key);
  return static_cast<uint64_t>(std::count_if(a.begin(), a.end(), [&](const Named& n) { return keys.count(n.key); }));
}
}  // namespace

uint64_t auto_strip_gain(const std::vector<Named>& a, const std::vector<Named>& b) {
  uint64_t before = count_matches(a, b);
  std::vector<Named> x = a, y = b;
  try {
    strip({&x, &y}, StripSpec{StripSpec::Mode::automatic, {}});
  } catch (const Error&) {
    return 0;
  }
  uint64_t after = count_matches(x, y);
  return after > before ? after - before : 0;
}

// ---- matching ------------------------------------------------------------------

// Two keys alias when they are the same view of the same storage.
std::string view_id(const Tensor& t) {
  std::string s = std::to_string(reinterpret_cast<uintptr_t>(t.storage.get()));
  s += ':' + std::to_string(static_cast<int>(t.dtype)) + ':' + std::to_string(t.storage_offset);
  for (auto d : t.shape) s += ',' + std::to_string(d);
  s += ';';
  for (auto d : t.stride) s += ',' + std::to_string(d);
  return s;
}

Matching match(const std::vector<Named>& a, const std::vector<Named>& b,
               const std::function<Category(std::string_view, DType)>& category) {
  Matching out;
  std::unordered_map<std::string_view, size_t> in_b;
  for (size_t i = 0; i < b.size(); ++i) in_b.emplace(b[i].key, i);
  std::vector<bool> used(b.size(), false);
  std::unordered_map<std::string, size_t> by_view;  // pair identity -> index in out.pairs
  for (const auto& na : a) {
    auto it = in_b.find(na.key);
    if (it == in_b.end()) {
      out.only_a.push_back(na);
      continue;
    }
    const Named& nb = b[it->second];
    used[it->second] = true;
    std::string id = view_id(*na.tensor) + '|' + view_id(*nb.tensor);
    if (auto seen = by_view.find(id); seen != by_view.end()) {
      out.pairs[seen->second].aliases.push_back(na.key);
      continue;
    }
    by_view.emplace(std::move(id), out.pairs.size());
    Pair p;
    p.key = na.key;
    p.key_a = na.orig;
    p.key_b = nb.orig;
    p.a = na.tensor;
    p.b = nb.tensor;
    p.category = category(na.key, na.tensor->dtype);
    out.pairs.push_back(std::move(p));
  }
  for (size_t i = 0; i < b.size(); ++i)
    if (!used[i]) out.only_b.push_back(b[i]);
  return out;
}

// ---- comparing ----------------------------------------------------------------

const char* status_id(Status s) noexcept {
  switch (s) {
    case Status::compared: return "compared";
    case Status::grown: return "grown";
    case Status::shape_changed: return "shape_changed";
    case Status::undecodable: return "undecodable";
  }
  return "compared";
}

const char* verdict_id(Verdict v) noexcept {
  switch (v) {
    case Verdict::identical: return "identical";
    case Verdict::within_tolerance: return "within_tolerance";
    case Verdict::changed: return "changed";
  }
  return "changed";
}

namespace {

bool grew(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  return !a.empty() && a.size() == b.size() && b[0] > a[0] && std::equal(a.begin() + 1, a.end(), b.begin() + 1);
}

std::optional<double> scalar_value(const Tensor& t) {
  if (t.numel() != 1 || !decodable(t.dtype) || components(t.dtype) != 1) return std::nullopt;
  double v;
  read_doubles(t, 0, 1, &v);
  return v;
}

// One-element integer tensors, exactly (a double rounds int64 beyond 2^53).
std::optional<int64_t> scalar_int(const Tensor& t) {
  if (t.numel() != 1 || dtype_is_floating(t.dtype) || dtype_is_complex(t.dtype) || !decodable(t.dtype))
    return std::nullopt;
  uint8_t raw[8] = {};
  t.copy_to(raw);
  switch (t.dtype) {
    case DType::int64: { int64_t v; std::memcpy(&v, raw, 8); return v; }
    case DType::uint64: { uint64_t v; std::memcpy(&v, raw, 8); return v > INT64_MAX ? std::nullopt : std::optional<int64_t>(static_cast<int64_t>(v)); }
    case DType::int32: { int32_t v; std::memcpy(&v, raw, 4); return v; }
    case DType::uint32: { uint32_t v; std::memcpy(&v, raw, 4); return v; }
    case DType::int16: { int16_t v; std::memcpy(&v, raw, 2); return v; }
    case DType::uint16: { uint16_t v; std::memcpy(&v, raw, 2); return v; }
    case DType::int8: return static_cast<int8_t>(raw[0]);
    case DType::uint8: return raw[0];
    case DType::bool_: return raw[0] != 0;
    default: return std::nullopt;
  }
}

}  // namespace

TensorResult compare_pair(const Pair& p, const TolerancePolicy& policy) {
  TensorResult r;
  r.pair = p;
  const Tensor& a = *p.a;
  const Tensor& b = *p.b;
  r.dtype_a = a.dtype;
  r.dtype_b = b.dtype;
  r.shape_a = a.shape;
  r.shape_b = b.shape;
  r.tol = policy.for_dtypes(a.dtype, b.dtype);
  const bool same_shape = a.shape == b.shape;
  if (!decodable(a.dtype) || !decodable(b.dtype)) {
    r.status = Status::undecodable;
    r.verdict = same_shape && raw_equal(a, b, a.numel()) ? Verdict::identical : Verdict::changed;
    return r;
  }
  uint64_t count;
  if (components(a.dtype) != components(b.dtype)) {
    r.status = Status::shape_changed;  // complex against real: nothing to compare
    r.verdict = Verdict::changed;
    return r;
  }
  if (same_shape) {
    count = a.numel();
  } else if (grew(a.shape, b.shape)) {
    r.status = Status::grown;
    count = a.numel();  // row-major: A's rows are the first numel(A) elements of B
  } else {
    r.status = Status::shape_changed;
    r.verdict = Verdict::changed;
    return r;
  }
  r.m = compare_tensors(a, b, count, r.tol);
  r.verdict = r.m.bit_identical() ? Verdict::identical
              : r.m.mismatched == 0 ? Verdict::within_tolerance
                                    : Verdict::changed;
  r.value_a = scalar_value(a);
  r.value_b = scalar_value(b);
  r.int_a = scalar_int(a);
  r.int_b = scalar_int(b);
  return r;
}

std::vector<TensorResult> compare_pairs(const std::vector<Pair>& pairs, const TolerancePolicy& policy,
                                        const std::function<void(uint64_t)>& progress) {
  std::vector<TensorResult> out(pairs.size());
  std::vector<size_t> order(pairs.size());
  std::iota(order.begin(), order.end(), 0);
  auto cost = [&](size_t i) { return pairs[i].a->nbytes() + pairs[i].b->nbytes(); };
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return cost(x) > cost(y); });
  std::mutex mu;
  parallel_for(order.size(), [&](size_t k) {
    size_t i = order[k];
    try {
      out[i] = compare_pair(pairs[i], policy);
    } catch (const Error& e) {
      throw e.with_key_path(pairs[i].key_b);
    }
    if (progress) {
      std::lock_guard lock(mu);
      progress(cost(i));
    }
  });
  return out;
}

bool more_change(double x, double y) noexcept {
  if (std::isnan(x) != std::isnan(y)) return std::isnan(x);
  if (std::isnan(x)) return false;
  return x > y;
}

namespace {
template <class R>
int structural_rank(const R& r) {
  if constexpr (std::is_same_v<R, TensorResult>) return r.status == Status::shape_changed ? 0 : 1;
  else return r.shape_changed ? 0 : 1;
}
}  // namespace

void sort_by_change(std::vector<TensorResult>& results) {
  std::stable_sort(results.begin(), results.end(), [](const TensorResult& x, const TensorResult& y) {
    int rx = structural_rank(x), ry = structural_rank(y);
    if (rx != ry) return rx < ry;
    double cx = x.m.rel_change(), cy = y.m.rel_change();
    if (more_change(cx, cy)) return true;
    if (more_change(cy, cx)) return false;
    if (x.verdict != y.verdict) return x.verdict > y.verdict;
    return x.pair.key < y.pair.key;
  });
}

std::string module_of(std::string_view key) {
  size_t dot = key.find_last_of("./");
  return std::string(dot == std::string_view::npos ? key : key.substr(0, dot));
}

std::vector<ModuleResult> by_module(const std::vector<TensorResult>& results) {
  std::vector<ModuleResult> out;
  std::unordered_map<std::string, size_t> index;
  for (const auto& r : results) {
    std::string name = module_of(r.pair.key);
    std::string id = std::string(category_id(r.pair.category)) + '\0' + name;
    auto [it, fresh] = index.emplace(id, out.size());
    if (fresh) {
      out.push_back(ModuleResult{});
      out.back().module = name;
      out.back().category = r.pair.category;
    }
    ModuleResult& mr = out[it->second];
    ++mr.tensors;
    mr.m.merge(r.m);
    mr.verdict = std::max(mr.verdict, r.verdict);
    mr.grown |= r.status == Status::grown;
    mr.shape_changed |= r.status == Status::shape_changed;
    mr.dtype_changed |= r.dtype_changed();
  }
  return out;
}

void sort_by_change(std::vector<ModuleResult>& modules) {
  std::stable_sort(modules.begin(), modules.end(), [](const ModuleResult& x, const ModuleResult& y) {
    int rx = structural_rank(x), ry = structural_rank(y);
    if (rx != ry) return rx < ry;
    double cx = x.m.rel_change(), cy = y.m.rel_change();
    if (more_change(cx, cy)) return true;
    if (more_change(cy, cx)) return false;
    if (x.verdict != y.verdict) return x.verdict > y.verdict;
    return x.module < y.module;
  });
}

}  // namespace ckpt::tools::diff
