#include "diff/sections.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "common/numeric.hpp"

namespace ckpt::tools::diff {

namespace {

bool present(const Value* v) { return v && !v->is_none(); }

std::string component(const Value& key) { return key.is(Kind::string) ? key.as_str() : repr(key); }

std::string join(const std::string& prefix, const std::string& c) { return prefix.empty() ? c : prefix + "." + c; }

bool is_container(const Value& v) { return v.is_dict() || v.is_sequence(); }

void flatten_into(const Value& v, const std::string& prefix, int depth,
                  std::vector<std::pair<std::string, json>>& out) {
  if (depth <= 0) {
    out.emplace_back(prefix, "...");
    return;
  }
  if (v.is_dict() && v.size() > 0) {
    for (const auto& [k, val] : v.items()) flatten_into(*val, join(prefix, component(*k)), depth - 1, out);
    return;
  }
  if (v.is_sequence() && v.size() > 0) {
    auto elems = v.elements();
    if (std::any_of(elems.begin(), elems.end(), [](const Value* e) { return is_container(*e); })) {
      for (size_t i = 0; i < elems.size(); ++i) flatten_into(*elems[i], join(prefix, std::to_string(i)), depth - 1, out);
      return;
    }
  }
  out.emplace_back(prefix, to_json(v, 8));
}

}  // namespace

std::vector<std::pair<std::string, json>> flatten(const Value& v, int max_depth) {
  std::vector<std::pair<std::string, json>> out;
  flatten_into(v, "", max_depth, out);
  return out;
}

ConfigDiff diff_flat(const std::vector<std::pair<std::string, json>>* a,
                     const std::vector<std::pair<std::string, json>>* b) {
  ConfigDiff d;
  d.present_a = a != nullptr;
  d.present_b = b != nullptr;
  static const std::vector<std::pair<std::string, json>> none;
  const auto& fa = a ? *a : none;
  const auto& fb = b ? *b : none;
  std::unordered_map<std::string_view, size_t> in_b;
  for (size_t i = 0; i < fb.size(); ++i) in_b.emplace(fb[i].first, i);
  std::vector<bool> used(fb.size(), false);
  for (const auto& [k, va] : fa) {
    auto it = in_b.find(k);
    if (it == in_b.end()) {
      d.entries.push_back(ConfigEntry{ConfigEntry::Kind::only_a, k, va, nullptr});
      continue;
    }
    used[it->second] = true;
    const json& vb = fb[it->second].second;
    if (va == vb) ++d.equal;
    else d.entries.push_back(ConfigEntry{ConfigEntry::Kind::changed, k, va, vb});
  }
  for (size_t i = 0; i < fb.size(); ++i)
    if (!used[i]) d.entries.push_back(ConfigEntry{ConfigEntry::Kind::only_b, fb[i].first, nullptr, fb[i].second});
  return d;
}

ConfigDiff diff_config(const Value* a, const Value* b) {
  std::vector<std::pair<std::string, json>> fa, fb;
  if (present(a)) fa = flatten(*a);
  if (present(b)) fb = flatten(*b);
  return diff_flat(present(a) ? &fa : nullptr, present(b) ? &fb : nullptr);
}

// ---- optimizer ------------------------------------------------------------------

namespace {

struct OptimizerSide {
  uint64_t groups = 0, params = 0;
  std::vector<std::pair<std::string, json>> hyper;
  std::vector<Named> tensors;
  std::vector<std::string> kinds;  // state names in first-seen order
  std::unordered_map<std::string, StateKind> counts;
  std::unordered_map<std::string, std::pair<double, double>> scalar_range;
};

OptimizerSide read_optimizer(const Value& opt) {
  OptimizerSide s;
  if (const Value* groups = opt.get("param_groups"); groups && groups->is_sequence()) {
    s.groups = groups->size();
    auto elems = groups->elements();
    for (size_t g = 0; g < elems.size(); ++g) {
      const Value& group = *elems[g];
      if (!group.is_dict()) continue;
      std::string prefix = "param_groups." + std::to_string(g);
      for (const auto& [k, v] : group.items()) {
        std::string name = component(*k);
        if (name == "params") {
          s.params += v->is_sequence() ? v->size() : 0;
          s.hyper.emplace_back(prefix + ".params", json{{"count", v->is_sequence() ? v->size() : 0}});
          continue;
        }
        flatten_into(*v, prefix + "." + name, 8, s.hyper);
      }
    }
  }
  if (const Value* state = opt.get("state"); state && state->is_dict()) {
    for (const auto& [idx, per_param] : state->items()) {
      if (!per_param->is_dict()) continue;
      std::string param = component(*idx);
      for (const auto& [k, v] : per_param->items()) {
        std::string name = component(*k);
        auto [it, fresh] = s.counts.try_emplace(name);
        if (fresh) {
          s.kinds.push_back(name);
          it->second.name = name;
        }
        if (v->is(Kind::tensor)) {
          ++it->second.tensors_a;
          s.tensors.push_back(Named{"state." + param + "." + name, "state/" + param + "/" + name, &v->tensor()});
        } else if (v->is_none()) {
          ++it->second.nones_a;
        } else if (v->is(Kind::integer) || v->is(Kind::floating)) {
          ++it->second.scalars_a;
          double x = v->as_float();
          auto [r, first] = s.scalar_range.try_emplace(name, x, x);
          if (!first) r->second = {std::min(r->second.first, x), std::max(r->second.second, x)};
        }
      }
    }
  }
  // Scalar state (old Adam's `step`) as one hyper-parameter-like leaf per name.
  for (const auto& name : s.kinds) {
    auto it = s.scalar_range.find(name);
    if (it == s.scalar_range.end()) continue;
    auto [lo, hi] = it->second;
    s.hyper.emplace_back("state.*." + name, lo == hi ? json_number(lo) : json{{"min", json_number(lo)}, {"max", json_number(hi)}});
  }
  return s;
}

}  // namespace

bool OptimizerDiff::differs() const noexcept {
  if (present_a != present_b || hyper.differs() || groups_a != groups_b || params_a != params_b) return true;
  for (const auto& k : state)
    if (k.tensors_a != k.tensors_b || k.nones_a != k.nones_b || k.scalars_a != k.scalars_b) return true;
  if (!matching.only_a.empty() || !matching.only_b.empty()) return true;
  return std::any_of(tensors.begin(), tensors.end(), [](const TensorResult& r) { return r.differs(); });
}

OptimizerDiff diff_optimizer(const Value* a, const Value* b, const TolerancePolicy& policy) {
  OptimizerDiff d;
  d.present_a = present(a) && a->is_dict();
  d.present_b = present(b) && b->is_dict();
  OptimizerSide sa, sb;
  if (d.present_a) sa = read_optimizer(*a);
  if (d.present_b) sb = read_optimizer(*b);
  d.groups_a = sa.groups, d.groups_b = sb.groups;
  d.params_a = sa.params, d.params_b = sb.params;
  d.hyper = diff_flat(d.present_a ? &sa.hyper : nullptr, d.present_b ? &sb.hyper : nullptr);
  std::vector<std::string> names = sa.kinds;
  for (const auto& n : sb.kinds)
    if (!sa.counts.count(n)) names.push_back(n);
  for (const auto& n : names) {
    StateKind k{n};
    if (auto it = sa.counts.find(n); it != sa.counts.end())
      k.tensors_a = it->second.tensors_a, k.nones_a = it->second.nones_a, k.scalars_a = it->second.scalars_a;
    if (auto it = sb.counts.find(n); it != sb.counts.end())
      k.tensors_b = it->second.tensors_a, k.nones_b = it->second.nones_a, k.scalars_b = it->second.scalars_a;
    d.state.push_back(k);
  }
  d.matching = match(sa.tensors, sb.tensors, [](std::string_view, DType) { return Category::optimizer_state; });
  d.tensors = compare_pairs(d.matching.pairs, policy);
  sort_by_change(d.tensors);
  return d;
}

// ---- results ----------------------------------------------------------------------

namespace {

bool number(const Value& v, double& out) {
  if (v.is(Kind::floating) || v.is(Kind::integer) || v.is(Kind::boolean)) {
    out = v.as_float();
    return true;
  }
  if (v.is(Kind::string)) {  // Mammoth's logger writes numpy floats as str (quirk Q3)
    const std::string& s = v.as_str();
    char* end = nullptr;
    out = std::strtod(s.c_str(), &end);
    return !s.empty() && end == s.c_str() + s.size();
  }
  return false;
}

bool read_matrix(const Value& v, Matrix& m) {
  if (!v.is_sequence()) return false;
  for (const Value* row : v.elements()) {
    if (!row->is_sequence()) return false;
    std::vector<double> r;
    for (const Value* cell : row->elements()) {
      double x;
      if (!number(*cell, x)) return false;
      r.push_back(x);
    }
    m.push_back(std::move(r));
  }
  return true;
}

// Cells of the rows both matrices have that differ (a missing cell counts).
void compare_history(const Matrix& a, const Matrix& b, ResultsDiff& d) {
  size_t rows = std::min(a.size(), b.size());
  for (size_t r = 0; r < rows; ++r) {
    size_t cols = std::max(a[r].size(), b[r].size());
    for (size_t c = 0; c < cols; ++c) {
      if (c >= a[r].size() || c >= b[r].size()) {
        ++d.history_cells_changed;
        continue;
      }
      double delta = b[r][c] - a[r][c];
      if (delta != 0 || std::isnan(delta)) {
        ++d.history_cells_changed;
        d.history_max_delta = std::max(d.history_max_delta, std::fabs(delta));
      }
    }
  }
}

// "98.55000000000001" -> 98.55000000000001, inside arrays too.
json numeric_strings(const json& v) {
  if (v.is_array()) {
    json a = json::array();
    for (const auto& e : v) a.push_back(numeric_strings(e));
    return a;
  }
  if (!v.is_string()) return v;
  const std::string& s = v.get_ref<const std::string&>();
  char* end = nullptr;
  double x = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size() && std::isfinite(x) ? json(x) : v;
}

}  // namespace

bool read_results(const Value& v, Matrix& class_il, Matrix& task_il, const Value** logger) {
  if (!v.is_sequence() || v.size() < 2) return false;
  auto e = v.elements();
  class_il.clear();
  task_il.clear();
  if (!read_matrix(*e[0], class_il) || !read_matrix(*e[1], task_il)) return false;
  if (logger) *logger = e.size() > 2 && e[2]->is_dict() ? e[2] : nullptr;
  return true;
}

bool ResultsDiff::differs() const noexcept {
  if (present_a != present_b) return true;
  if (!mammoth) return generic.differs();
  return class_a.size() != class_b.size() || task_a.size() != task_b.size() || history_cells_changed > 0 ||
         logger.differs();
}

ResultsDiff diff_results(const Value* a, const Value* b) {
  ResultsDiff d;
  d.present_a = present(a);
  d.present_b = present(b);
  const Value *la = nullptr, *lb = nullptr;
  bool ok_a = d.present_a && read_results(*a, d.class_a, d.task_a, &la);
  bool ok_b = d.present_b && read_results(*b, d.class_b, d.task_b, &lb);
  if (ok_a && ok_b) {
    d.mammoth = true;
    d.history_rows = std::min(d.class_a.size(), d.class_b.size());
    compare_history(d.class_a, d.class_b, d);
    compare_history(d.task_a, d.task_b, d);
    // Mammoth's safe mode writes the logger means as str (quirk Q3), old_pickle
    // as numbers: compare them as numbers.
    std::vector<std::pair<std::string, json>> fa, fb;
    if (la) fa = flatten(*la);
    if (lb) fb = flatten(*lb);
    for (auto* f : {&fa, &fb})
      for (auto& [k, v] : *f) v = numeric_strings(v);
    d.logger = diff_flat(la ? &fa : nullptr, lb ? &fb : nullptr);
  } else {
    d.class_a.clear(), d.class_b.clear(), d.task_a.clear(), d.task_b.clear();
    d.generic = diff_config(a, b);
  }
  return d;
}

// ---- replay buffer ----------------------------------------------------------------

const Value* buffer_attributes(const Value* buffer) {
  if (!present(buffer)) return nullptr;
  if (buffer->is_dict()) return buffer;
  if (buffer->is(Kind::object) && buffer->state() && buffer->state()->is_dict()) return buffer->state();
  return nullptr;
}

bool histogram(const Tensor& t, std::map<int64_t, uint64_t>& counts, size_t max_distinct) {
  if (dtype_is_floating(t.dtype) || dtype_is_complex(t.dtype) || !decodable(t.dtype)) return false;
  bool ok = true;
  for_each_chunk(t, [&](uint64_t, std::span<const double> vals) {
    if (!ok) return;
    for (double v : vals) {
      ++counts[static_cast<int64_t>(v)];
      if (counts.size() > max_distinct) {
        ok = false;
        return;
      }
    }
  });
  if (!ok) counts.clear();
  return ok;
}

namespace {

std::vector<Named> buffer_tensors(const Value* attrs) {
  std::vector<Named> out;
  if (!attrs) return out;
  for (const auto& [k, v] : attrs->items())
    if (v->is(Kind::tensor)) out.push_back(Named{component(*k), component(*k), &v->tensor()});
  return out;
}

std::vector<std::pair<std::string, json>> buffer_meta(const Value* attrs) {
  std::vector<std::pair<std::string, json>> out;
  if (!attrs) return out;
  for (const auto& [k, v] : attrs->items())
    if (!v->is(Kind::tensor)) out.emplace_back(component(*k), to_json(*v, 4));
  return out;
}

int64_t rows_of(const std::vector<Named>& ts) {
  for (const auto& n : ts)
    if (n.key == "examples" && !n.tensor->shape.empty()) return n.tensor->shape[0];
  for (const auto& n : ts)
    if (!n.tensor->shape.empty()) return n.tensor->shape[0];
  return -1;
}

}  // namespace

bool BufferDiff::differs() const noexcept {
  if (present_a != present_b || meta.differs()) return true;
  if (!matching.only_a.empty() || !matching.only_b.empty()) return true;
  return std::any_of(tensors.begin(), tensors.end(), [](const TensorResult& r) { return r.differs(); });
}

BufferDiff diff_buffer(const Value* a, const Value* b, const TolerancePolicy& policy) {
  BufferDiff d;
  const Value* xa = buffer_attributes(a);
  const Value* xb = buffer_attributes(b);
  d.present_a = xa != nullptr;
  d.present_b = xb != nullptr;
  std::vector<Named> ta = buffer_tensors(xa), tb = buffer_tensors(xb);
  d.size_a = rows_of(ta);
  d.size_b = rows_of(tb);
  d.matching = match(ta, tb, [](std::string_view, DType) { return Category::buffer; });
  d.tensors = compare_pairs(d.matching.pairs, policy);
  sort_by_change(d.tensors);
  auto ma = buffer_meta(xa), mb = buffer_meta(xb);
  d.meta = diff_flat(xa ? &ma : nullptr, xb ? &mb : nullptr);

  // Slots replaced: only when every attribute lines up row for row.
  bool aligned = d.present_a && d.present_b && d.size_a == d.size_b && d.size_a > 0 && d.matching.only_a.empty() &&
                 d.matching.only_b.empty();
  for (const auto& p : d.matching.pairs)
    aligned = aligned && p.a->shape == p.b->shape && p.a->dtype == p.b->dtype && !p.a->shape.empty() &&
              p.a->shape[0] == d.size_a;
  if (aligned) {
    std::vector<bool> changed(static_cast<size_t>(d.size_a), false);
    for (const auto& p : d.matching.pairs) for_each_changed_row(*p.a, *p.b, [&](uint64_t r) { changed[r] = true; });
    d.slots_changed = std::count(changed.begin(), changed.end(), true);
  }

  for (const char* name : {"labels", "task_labels", "true_labels"}) {
    auto find = [&](const std::vector<Named>& ts) -> const Tensor* {
      for (const auto& n : ts)
        if (n.key == name) return n.tensor;
      return nullptr;
    };
    const Tensor* la = find(ta);
    const Tensor* lb = find(tb);
    if (!la && !lb) continue;
    Histogram h;
    h.name = name;
    std::map<int64_t, uint64_t> ca, cb;
    h.ok_a = la && histogram(*la, ca);
    h.ok_b = lb && histogram(*lb, cb);
    for (auto [v, n] : ca) h.counts[v].first = n;
    for (auto [v, n] : cb) h.counts[v].second = n;
    d.histograms.push_back(std::move(h));
  }
  return d;
}

}  // namespace ckpt::tools::diff
