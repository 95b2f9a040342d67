#include "diff/report.hpp"

#include <algorithm>
#include <map>
#include <numeric>
#include <unordered_set>

#include "ckpt/error.hpp"
#include "common/open.hpp"
#include "common/term.hpp"

namespace ckpt::tools::diff {

const char* section_name(Section s) noexcept {
  switch (s) {
    case sec_model: return "model";
    case sec_optimizer: return "optimizer";
    case sec_scheduler: return "scheduler";
    case sec_args: return "args";
    case sec_results: return "results";
    case sec_buffer: return "buffer";
    case sec_extra: return "extra";
    default: return "all";
  }
}

unsigned parse_sections(const std::string& list) {
  unsigned bits = 0;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    std::string name = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    start = comma == std::string::npos ? list.size() + 1 : comma + 1;
    if (name.empty()) continue;
    if (name == "all") {
      bits |= sec_all;
      continue;
    }
    unsigned bit = 0;
    for (Section s : kSections)
      if (name == section_name(s)) bit = s;
    if (name == "tensors") bit = sec_model;
    if (!bit)
      throw Error(ErrorCode::invalid_argument,
                  "unknown section '" + name + "' (model, optimizer, scheduler, args, results, buffer, extra, all)");
    bits |= bit;
  }
  return bits ? bits : static_cast<unsigned>(sec_all);
}

// ---- inputs -----------------------------------------------------------------------

std::optional<int64_t> Input::task() const { return name ? name->task_index() : std::nullopt; }

std::string Input::description() const {
  std::string s = schema.description();
  if (name && !name->paused) s += ", task " + name->task;
  s += ", " + human_bytes(ck.file_size());
  return s;
}

Input load_input(const std::string& path) {
  Input in{path, open_input(path)};
  in.schema = recognise(in.ck.root());
  in.name = parse_mammoth_name(path);
  if (in.schema.model) {
    in.model = in.schema.model;
  } else if (in.schema.layout != Layout::optimizer_state) {
    in.model = &in.ck.root();
    in.model_title = "tensors";
  }
  if (in.model) in.named = collect(*in.model);
  // Top-level keys outside the layout (only when the model is not the whole file).
  if (in.model != &in.ck.root()) {
    for (const std::string& key : in.schema.extra_keys) {
      const Value* v = in.ck.root().get(key);
      if (!v) continue;
      for (Named& n : collect(*v)) {
        n.key = n.key.empty() ? key : key + "/" + n.key;
        n.orig = n.key;
        in.extra.push_back(std::move(n));
      }
      for (auto& [k, val] : flatten(*v)) {
        if (val.is_object() && val.contains("tensor")) continue;  // compared as tensors
        in.extra_values.emplace_back(k.empty() ? key : key + "." + k, std::move(val));
      }
    }
  }
  return in;
}

// ---- pairs ------------------------------------------------------------------------

bool ModelDiff::differs() const noexcept {
  if (present_a != present_b || !only_a.empty() || !only_b.empty()) return true;
  return std::any_of(tensors.begin(), tensors.end(), [](const TensorResult& r) { return r.differs(); });
}

size_t ModelDiff::count(Verdict v) const noexcept {
  return std::count_if(tensors.begin(), tensors.end(), [&](const TensorResult& r) { return r.verdict == v; });
}
size_t ModelDiff::count(Status s) const noexcept {
  return std::count_if(tensors.begin(), tensors.end(), [&](const TensorResult& r) { return r.status == s; });
}
size_t ModelDiff::dtype_changes() const noexcept {
  return std::count_if(tensors.begin(), tensors.end(), [](const TensorResult& r) { return r.dtype_changed(); });
}

bool PairReport::section_differs(Section s) const noexcept {
  if (!(sections & s)) return false;
  switch (s) {
    case sec_model: return model.differs();
    case sec_optimizer: return optimizer.differs();
    case sec_scheduler: return scheduler.differs();
    case sec_args: return args.differs();
    case sec_results: return results.differs();
    case sec_buffer: return buffer.differs();
    case sec_extra: return extra.differs() || extra_values.differs();
    default: return false;
  }
}

bool PairReport::section_present(Section s) const noexcept {
  if (!(sections & s)) return false;
  switch (s) {
    case sec_model: return model.present_a || model.present_b;
    case sec_optimizer: return optimizer.present_a || optimizer.present_b;
    case sec_scheduler: return scheduler.present_a || scheduler.present_b;
    case sec_args: return args.present_a || args.present_b;
    case sec_results: return results.present_a || results.present_b;
    case sec_buffer: return buffer.present_a || buffer.present_b;
    case sec_extra: return extra.present_a || extra.present_b;
    default: return false;
  }
}

unsigned PairReport::differing() const noexcept {
  unsigned bits = 0;
  for (Section s : kSections)
    if (section_differs(s)) bits |= s;
  return bits;
}

uint64_t model_bytes(const Input& a, const Input& b) {
  uint64_t n = 0;
  for (const auto& x : a.named) n += x.tensor->nbytes();
  for (const auto& x : b.named) n += x.tensor->nbytes();
  for (const auto& x : a.extra) n += x.tensor->nbytes();
  for (const auto& x : b.extra) n += x.tensor->nbytes();
  return n;
}

namespace {

// Optimizer state is keyed by parameter index (the order of model.parameters(),
// which is the state dict's order without buffers and aliases). Names the
// parameters when the counts and every state tensor's shape agree.
void name_optimizer_state(OptimizerDiff& d, const Input& in) {
  std::vector<const Named*> params;
  std::unordered_set<std::string> seen;
  for (const auto& n : in.named)
    if (classify(n.key, n.tensor->dtype) == Category::parameter && seen.insert(view_id(*n.tensor)).second)
      params.push_back(&n);
  if (params.empty() || params.size() != d.params_b) return;
  std::vector<std::pair<TensorResult*, const Named*>> named;
  for (auto& r : d.tensors) {
    const std::string& k = r.pair.key;  // "state.<index>.<name>"
    size_t dot = k.find('.', 6);
    if (!k.starts_with("state.") || dot == std::string::npos) return;
    size_t idx = 0;
    for (size_t i = 6; i < dot; ++i) {
      if (k[i] < '0' || k[i] > '9') return;
      idx = idx * 10 + static_cast<size_t>(k[i] - '0');
      if (idx >= params.size()) return;
    }
    if (dot == 6 || params[idx]->tensor->shape != r.shape_b) return;
    named.emplace_back(&r, params[idx]);
  }
  for (auto [r, p] : named) r->pair.note = p->key;
}

}  // namespace

PairReport diff_pair(const Input& a, const Input& b, const Options& opts, unsigned sections,
                     const ProgressFn& progress) {
  PairReport r;
  r.a = &a;
  r.b = &b;
  r.sections = sections;
  const Schema &sa = a.schema, &sb = b.schema;
  if (sections & sec_model) {
    r.model.present_a = a.model != nullptr;
    r.model.present_b = b.model != nullptr;
    Matching m = match(a.named, b.named);
    r.model.tensors = compare_pairs(m.pairs, opts.policy, progress);
    sort_by_change(r.model.tensors);
    r.model.only_a = std::move(m.only_a);
    r.model.only_b = std::move(m.only_b);
    if (opts.strip.mode == StripSpec::Mode::none && !r.model.only_a.empty() && !r.model.only_b.empty())
      r.model.strip_hint = auto_strip_gain(a.named, b.named);
  }
  if (sections & sec_optimizer) {
    r.optimizer = diff_optimizer(sa.optimizer, sb.optimizer, opts.policy);
    name_optimizer_state(r.optimizer, b);
  }
  if (sections & sec_scheduler) r.scheduler = diff_config(sa.scheduler, sb.scheduler);
  if (sections & sec_args) r.args = diff_config(sa.args, sb.args);
  if (sections & sec_results) r.results = diff_results(sa.results, sb.results);
  if (sections & sec_buffer) r.buffer = diff_buffer(sa.buffer, sb.buffer, opts.policy);
  if (sections & sec_extra) {
    r.extra.present_a = !a.extra.empty() || !a.extra_values.empty();
    r.extra.present_b = !b.extra.empty() || !b.extra_values.empty();
    Matching m = match(a.extra, b.extra, [](std::string_view, DType) { return Category::other; });
    r.extra.tensors = compare_pairs(m.pairs, opts.policy, progress);
    sort_by_change(r.extra.tensors);
    r.extra.only_a = std::move(m.only_a);
    r.extra.only_b = std::move(m.only_b);
    r.extra_values = diff_flat(&a.extra_values, &b.extra_values);
    if (!r.extra.present_a && !r.extra.present_b) r.extra_values.present_a = r.extra_values.present_b = false;
  }
  return r;
}

// ---- series -----------------------------------------------------------------------

bool SeriesReport::differs() const noexcept {
  return std::any_of(steps.begin(), steps.end(), [](const PairReport& p) { return p.differs(); });
}

std::vector<const Input*> series_order(const std::vector<Input>& inputs, bool sort, bool& reordered) {
  std::vector<const Input*> order;
  for (const auto& in : inputs) order.push_back(&in);
  reordered = false;
  if (!sort) return order;
  // Rank: the task index, "last" after every index; any other file keeps the given order.
  auto rank = [](const Input* in) -> std::optional<int64_t> {
    if (!in->name || in->name->paused) return std::nullopt;
    if (auto t = in->task()) return *t;
    if (in->name->task == "last") return INT64_MAX;
    return std::nullopt;
  };
  if (!std::all_of(order.begin(), order.end(), [&](const Input* in) { return rank(in).has_value(); })) return order;
  auto sorted = order;
  std::stable_sort(sorted.begin(), sorted.end(), [&](const Input* x, const Input* y) { return *rank(x) < *rank(y); });
  reordered = sorted != order;
  return sorted;
}

SeriesReport diff_series(const std::vector<Input>& inputs, const Options& opts, const ProgressFn& progress) {
  SeriesReport s;
  s.files = series_order(inputs, opts.sort_series, s.reordered);
  for (size_t i = 1; i < s.files.size(); ++i)
    s.steps.push_back(diff_pair(*s.files[i - 1], *s.files[i], opts, opts.sections, progress));
  if (opts.sections & sec_model)
    for (size_t i = 2; i < s.files.size(); ++i)
      s.cumulative.push_back(diff_pair(*s.files[0], *s.files[i], opts, sec_model, progress));
  return s;
}

std::vector<DriftRow> drift_rows(const SeriesReport& s, bool by_mod) {
  std::vector<DriftRow> rows;
  std::map<std::pair<int, std::string>, size_t> index;
  const size_t n = s.files.size();
  auto add = [&](const std::vector<TensorResult>& results, bool cumulative, size_t col) {
    std::vector<std::pair<std::string, std::pair<Category, Metrics>>> items;
    if (by_mod) {
      for (const auto& m : by_module(results)) items.push_back({m.module, {m.category, m.m}});
    } else {
      for (const auto& r : results)
        if (r.status == Status::compared || r.status == Status::grown) items.push_back({r.pair.key, {r.pair.category, r.m}});
    }
    for (auto& [name, cm] : items) {
      if (cm.first == Category::int_buffer) continue;
      auto key = std::make_pair(static_cast<int>(cm.first), name);
      auto [it, fresh] = index.try_emplace(key, rows.size());
      if (fresh) {
        rows.push_back(DriftRow{name, cm.first, std::vector<std::optional<Metrics>>(n - 1),
                                std::vector<std::optional<Metrics>>(n > 2 ? n - 2 : 0)});
      }
      (cumulative ? rows[it->second].cumulative : rows[it->second].step)[col] = cm.second;
    }
  };
  for (size_t i = 0; i < s.steps.size(); ++i) add(s.steps[i].model.tensors, false, i);
  for (size_t i = 0; i < s.cumulative.size(); ++i) add(s.cumulative[i].model.tensors, true, i);
  return rows;
}


}  // namespace ckpt::tools::diff
