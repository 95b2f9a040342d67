// --json: one object, stable key order, NaN/Inf as null (docs/cli-diff.md, "JSON").
#include <cmath>

#include "diff/render.hpp"

namespace ckpt::tools::diff {

namespace {

size_t json_top(const Options& o) { return o.top && *o.top ? *o.top : SIZE_MAX; }

// A metric: a number, or null plus an entry in `nonfinite` ("inf", "-inf", "nan").
void metric(json& obj, json& nonfinite, const char* name, double v) {
  obj[name] = json_number(v);
  if (!std::isfinite(v)) nonfinite[name] = std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf";
}

json unravel(uint64_t flat, const std::vector<int64_t>& shape) {
  if (flat == Metrics::no_index) return nullptr;
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    uint64_t ext = static_cast<uint64_t>(std::max<int64_t>(shape[d], 1));
    idx[d] = static_cast<int64_t>(flat % ext);
    flat /= ext;
  }
  return idx;
}

json metrics_json(const Metrics& m, json& nonfinite, const std::vector<int64_t>* shape = nullptr) {
  json j = json::object();
  j["elements"] = m.elements;
  j["differing"] = m.differing;
  j["mismatched"] = m.mismatched;
  metric(j, nonfinite, "max_abs", m.max_abs);
  if (shape) j["max_abs_index"] = unravel(m.max_abs_at, *shape);
  metric(j, nonfinite, "l2", m.l2());
  metric(j, nonfinite, "rel_change", m.rel_change());
  metric(j, nonfinite, "cosine", m.cosine());
  metric(j, nonfinite, "mean_abs", m.mean_abs());
  metric(j, nonfinite, "norm_a", m.norm_a());
  metric(j, nonfinite, "norm_b", m.norm_b());
  j["nan_pairs"] = m.nan_pairs;
  j["nonfinite_a"] = m.nonfinite_a;
  j["nonfinite_b"] = m.nonfinite_b;
  return j;
}

json tensor_json(const TensorResult& r) {
  json j = json::object();
  j["key"] = r.pair.key;
  j["key_a"] = r.pair.key_a;
  j["key_b"] = r.pair.key_b;
  j["aliases"] = r.pair.aliases;
  if (!r.pair.note.empty()) j["param"] = r.pair.note;
  j["category"] = category_id(r.pair.category);
  j["status"] = status_id(r.status);
  j["verdict"] = verdict_id(r.verdict);
  j["differs"] = r.differs();
  j["dtype_a"] = std::string(dtype_name(r.dtype_a));
  j["dtype_b"] = std::string(dtype_name(r.dtype_b));
  j["shape_a"] = r.shape_a;
  j["shape_b"] = r.shape_b;
  j["rtol"] = r.tol.rtol;
  j["atol"] = r.tol.atol;
  json nonfinite = json::object();
  if (r.status == Status::compared || r.status == Status::grown) {
    json m = metrics_json(r.m, nonfinite, &r.shape_a);
    for (auto& [k, v] : m.items()) j[k] = v;
  }
  if (r.status == Status::grown) {
    j["rows_a"] = r.rows_a();
    j["rows_b"] = r.rows_b();
    j["added_rows"] = r.rows_b() - r.rows_a();
  }
  if (r.int_a && r.int_b) {
    j["value_a"] = *r.int_a;
    j["value_b"] = *r.int_b;
  } else if (r.value_a && r.value_b) {
    metric(j, nonfinite, "value_a", *r.value_a);
    metric(j, nonfinite, "value_b", *r.value_b);
  }
  j["nonfinite"] = nonfinite;
  return j;
}

json named_json(const Named& n) {
  return json{{"key", n.key},
              {"key_orig", n.orig},
              {"dtype", std::string(dtype_name(n.tensor->dtype))},
              {"shape", n.tensor->shape}};
}

json named_list(const std::vector<Named>& v) {
  json a = json::array();
  for (const auto& n : v) a.push_back(named_json(n));
  return a;
}

json tensor_list(const std::vector<TensorResult>& v, const Options& o) {
  json a = json::array();
  size_t top = json_top(o);
  for (const auto& r : v) {
    if (a.size() >= top) break;
    a.push_back(tensor_json(r));
  }
  return a;
}

json module_list(const std::vector<TensorResult>& v, const Options& o) {
  auto mods = by_module(v);
  sort_by_change(mods);
  json a = json::array();
  for (const auto& m : mods) {
    if (a.size() >= json_top(o)) break;
    json nonfinite = json::object();
    json j{{"module", m.module},
           {"category", category_id(m.category)},
           {"tensors", m.tensors},
           {"verdict", verdict_id(m.verdict)},
           {"differs", m.differs()},
           {"grown", m.grown},
           {"shape_changed", m.shape_changed},
           {"dtype_changed", m.dtype_changed}};
    json mj = metrics_json(m.m, nonfinite);
    for (auto& [k, val] : mj.items()) j[k] = val;
    j["nonfinite"] = nonfinite;
    a.push_back(std::move(j));
  }
  return a;
}

json summary_json(const std::vector<TensorResult>& v, size_t only_a, size_t only_b) {
  size_t counts[3] = {0, 0, 0}, grown = 0, shape = 0, dtype = 0, differ = 0;
  for (const auto& r : v) {
    ++counts[static_cast<int>(r.verdict)];
    grown += r.status == Status::grown;
    shape += r.status == Status::shape_changed;
    dtype += r.dtype_changed();
    differ += r.differs();
  }
  return json{{"compared", v.size()},       {"identical", counts[0]},  {"within_tolerance", counts[1]},
              {"changed", counts[2]},       {"differ", differ},        {"grown", grown},
              {"shape_changed", shape},     {"dtype_changed", dtype},  {"only_in_a", only_a},
              {"only_in_b", only_b}};
}

json config_json(const ConfigDiff& d) {
  json entries = json::array();
  for (const auto& e : d.entries) {
    const char* kind = e.kind == ConfigEntry::Kind::changed ? "changed"
                       : e.kind == ConfigEntry::Kind::only_a ? "only_in_a"
                                                             : "only_in_b";
    entries.push_back(json{{"key", e.key}, {"change", kind}, {"a", e.a}, {"b", e.b}});
  }
  return json{{"present", {d.present_a, d.present_b}},
              {"differs", d.differs()},
              {"equal", d.equal},
              {"entries", entries}};
}

json matrix_json(const Matrix& m) {
  json a = json::array();
  for (const auto& row : m) {
    json r = json::array();
    for (double v : row) r.push_back(json_number(v));
    a.push_back(r);
  }
  return a;
}

json model_json(const ModelDiff& m, const Options& o) {
  json j{{"present", {m.present_a, m.present_b}},
         {"differs", m.differs()},
         {"summary", summary_json(m.tensors, m.only_a.size(), m.only_b.size())},
         {"only_in_a", named_list(m.only_a)},
         {"only_in_b", named_list(m.only_b)},
         {"strip_prefix_auto_would_match", m.strip_hint},
         {"tensors", tensor_list(m.tensors, o)}};
  if (o.by_module) j["modules"] = module_list(m.tensors, o);
  return j;
}

json optimizer_json(const OptimizerDiff& d, const Options& o) {
  json state = json::array();
  for (const auto& k : d.state)
    state.push_back(json{{"name", k.name},
                         {"tensors", {k.tensors_a, k.tensors_b}},
                         {"none", {k.nones_a, k.nones_b}},
                         {"numbers", {k.scalars_a, k.scalars_b}}});
  return json{{"present", {d.present_a, d.present_b}},
              {"differs", d.differs()},
              {"param_groups", {d.groups_a, d.groups_b}},
              {"params", {d.params_a, d.params_b}},
              {"hyperparameters", config_json(d.hyper)},
              {"state", state},
              {"summary", summary_json(d.tensors, d.matching.only_a.size(), d.matching.only_b.size())},
              {"only_in_a", named_list(d.matching.only_a)},
              {"only_in_b", named_list(d.matching.only_b)},
              {"tensors", tensor_list(d.tensors, o)}};
}

json results_json(const ResultsDiff& d) {
  json j{{"present", {d.present_a, d.present_b}}, {"differs", d.differs()}, {"mammoth", d.mammoth}};
  if (!d.mammoth) {
    j["generic"] = config_json(d.generic);
    return j;
  }
  auto last_delta = [](const Matrix& a, const Matrix& b) {
    json r = json::array();
    if (a.empty() || b.empty()) return r;
    for (size_t c = 0; c < std::min(a.back().size(), b.back().size()); ++c)
      r.push_back(json_number(b.back()[c] - a.back()[c]));
    return r;
  };
  j["class_il"] = {{"a", matrix_json(d.class_a)}, {"b", matrix_json(d.class_b)},
                   {"last_row_delta", last_delta(d.class_a, d.class_b)}};
  j["task_il"] = {{"a", matrix_json(d.task_a)}, {"b", matrix_json(d.task_b)},
                  {"last_row_delta", last_delta(d.task_a, d.task_b)}};
  j["history"] = {{"rows", d.history_rows},
                  {"cells_changed", d.history_cells_changed},
                  {"max_abs_delta", json_number(d.history_max_delta)}};
  j["logger"] = config_json(d.logger);
  return j;
}

json histogram_json(const Histogram& h) {
  json counts = json::array();
  for (const auto& [v, c] : h.counts)
    counts.push_back(json{{"value", v}, {"a", h.ok_a ? json(c.first) : json(nullptr)},
                          {"b", h.ok_b ? json(c.second) : json(nullptr)}});
  return json{{"name", h.name}, {"readable", {h.ok_a, h.ok_b}}, {"counts", counts}};
}

json buffer_json(const BufferDiff& d, const Options& o) {
  json hists = json::array();
  for (const auto& h : d.histograms) hists.push_back(histogram_json(h));
  return json{{"present", {d.present_a, d.present_b}},
              {"differs", d.differs()},
              {"size", {d.size_a < 0 ? json(nullptr) : json(d.size_a), d.size_b < 0 ? json(nullptr) : json(d.size_b)}},
              {"slots_changed", d.slots_changed < 0 ? json(nullptr) : json(d.slots_changed)},
              {"histograms", hists},
              {"meta", config_json(d.meta)},
              {"summary", summary_json(d.tensors, d.matching.only_a.size(), d.matching.only_b.size())},
              {"only_in_a", named_list(d.matching.only_a)},
              {"only_in_b", named_list(d.matching.only_b)},
              {"tensors", tensor_list(d.tensors, o)}};
}

json file_json(const Input& in) {
  json j{{"path", in.path},
         {"layout", layout_name(in.schema.layout)},
         {"description", in.schema.description()},
         {"size", in.ck.file_size()},
         {"task", in.task() ? json(*in.task()) : json(nullptr)}};
  if (in.strip.keys) j["stripped"] = {{"prefix", in.strip.removed}, {"keys", in.strip.keys}};
  return j;
}

json sections_json(unsigned bits) {
  json a = json::array();
  for (Section s : kSections)
    if (bits & s) a.push_back(section_name(s));
  return a;
}

json header(const char* mode, const Options& o) {
  json tol{{"rtol", o.policy.rtol ? json(*o.policy.rtol) : json(nullptr)},
           {"atol", o.policy.atol ? json(*o.policy.atol) : json(nullptr)},
           {"equal_nan", o.policy.equal_nan},
           {"defaults", "torch.testing.assert_close"},
           {"reference", "a"}};
  const char* strip = o.strip.mode == StripSpec::Mode::none        ? "none"
                      : o.strip.mode == StripSpec::Mode::automatic ? "auto"
                                                                   : "prefix";
  json j{{"schema_version", kJsonSchemaVersion}, {"tool", "ckpt-diff"}, {"mode", mode}};
  j["tolerance"] = tol;
  j["strip_prefix"] = {{"mode", strip}, {"prefix", o.strip.prefix}};
  j["sections"] = sections_json(o.sections);
  return j;
}

json pair_body(const PairReport& r, const Options& o) {
  json j = json::object();
  if (r.sections & sec_model) j["model"] = model_json(r.model, o);
  if (r.sections & sec_optimizer) j["optimizer"] = optimizer_json(r.optimizer, o);
  if (r.sections & sec_scheduler) j["scheduler"] = config_json(r.scheduler);
  if (r.sections & sec_args) j["args"] = config_json(r.args);
  if (r.sections & sec_results) j["results"] = results_json(r.results);
  if (r.sections & sec_buffer) j["buffer"] = buffer_json(r.buffer, o);
  if (r.sections & sec_extra) {
    j["extra"] = model_json(r.extra, o);
    j["extra"]["values"] = config_json(r.extra_values);
  }
  return j;
}

}  // namespace

json pair_json(const PairReport& r, const Options& o) {
  json j = header("pair", o);
  j["files"] = json::array({file_json(*r.a), file_json(*r.b)});
  j["differs"] = r.differs();
  j["differs_in"] = sections_json(r.differing());
  json body = pair_body(r, o);
  for (auto& [k, v] : body.items()) j[k] = v;
  return j;
}

json series_json(const SeriesReport& s, const Options& o) {
  json j = header("series", o);
  json files = json::array();
  for (const Input* in : s.files) files.push_back(file_json(*in));
  j["files"] = files;
  j["reordered"] = s.reordered;
  j["differs"] = s.differs();
  unsigned where = 0;
  for (const auto& p : s.steps) where |= p.differing();
  j["differs_in"] = sections_json(where);
  // Every step as a full pairwise report, and the cumulative model comparisons.
  json steps = json::array();
  for (size_t i = 0; i < s.steps.size(); ++i) {
    json st{{"from", i}, {"to", i + 1}, {"differs", s.steps[i].differs()},
            {"differs_in", sections_json(s.steps[i].differing())}};
    json body = pair_body(s.steps[i], o);
    for (auto& [k, v] : body.items()) st[k] = v;
    steps.push_back(std::move(st));
  }
  j["steps"] = steps;
  json cumulative = json::array();
  for (size_t i = 0; i < s.cumulative.size(); ++i) {
    json c{{"from", 0}, {"to", i + 2}, {"differs", s.cumulative[i].differs()}};
    c["model"] = model_json(s.cumulative[i].model, o);
    cumulative.push_back(std::move(c));
  }
  j["cumulative"] = cumulative;
  // The drift matrix: per layer (or tensor), each step then each cumulative pair.
  json rows = json::array();
  auto cell = [](const std::optional<Metrics>& m) -> json {
    if (!m) return nullptr;
    json nonfinite = json::object();
    json c = json::object();
    metric(c, nonfinite, "rel_change", m->rel_change());
    metric(c, nonfinite, "cosine", m->cosine());
    metric(c, nonfinite, "max_abs", m->max_abs);
    metric(c, nonfinite, "l2", m->l2());
    c["differing"] = m->differing;
    c["nonfinite"] = nonfinite;
    return c;
  };
  for (const auto& r : drift_rows(s, o.by_module)) {
    json step = json::array(), cum = json::array();
    for (const auto& m : r.step) step.push_back(cell(m));
    for (const auto& m : r.cumulative) cum.push_back(cell(m));
    rows.push_back(json{{"name", r.name}, {"category", category_id(r.category)}, {"step", step}, {"cumulative", cum}});
  }
  j["drift"] = {{"by", o.by_module ? "module" : "tensor"}, {"rows", rows}};
  return j;
}

}  // namespace ckpt::tools::diff
