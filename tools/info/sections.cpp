#include "info/sections.hpp"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string_view>

#include "ckpt/error.hpp"
#include "common/numeric.hpp"
#include "common/term.hpp"

namespace ckpt::info {

namespace {

bool has(const std::vector<std::string>& keys, std::string_view k) {
  return std::find(keys.begin(), keys.end(), k) != keys.end();
}
bool has_all(const std::vector<std::string>& keys, std::initializer_list<std::string_view> ks) {
  return std::all_of(ks.begin(), ks.end(), [&](std::string_view k) { return has(keys, k); });
}

std::vector<std::string> string_keys(const Value& d) {
  std::vector<std::string> out;
  if (!d.is_dict()) return out;
  for (const auto& [k, _] : d.items())
    if (k->is(Kind::string)) out.push_back(k->as_str());
  return out;
}

/// The optimizer class torch uses for these param-group (g) and state (s) keys.
std::pair<std::string, std::string> optimizer_kind(const std::vector<std::string>& g, const std::vector<std::string>& s,
                                                   const Value* group0) {
  if (has(g, "momentum_decay")) return {"NAdam", "momentum_decay"};
  if (has(g, "etas")) return {"Rprop", "etas, step_sizes"};
  if (has_all(g, {"lambd", "t0"})) return {"ASGD", "lambd, alpha, t0"};
  if (has(g, "history_size")) return {"LBFGS", "history_size, line_search_fn"};
  if (has(g, "lr_decay")) return {"Adagrad", "lr_decay, initial_accumulator_value"};
  if (has(g, "rho")) return {"Adadelta", "rho"};
  if (has(g, "centered")) return {"RMSprop", "alpha, centered"};
  if (has(g, "betas")) {
    if (has(s, "exp_inf")) return {"Adamax", "betas, state exp_inf"};
    if (has(g, "amsgrad")) {
      if (const Value* d = group0 ? group0->get("decoupled_weight_decay") : nullptr; d && d->is(Kind::boolean))
        return {d->as_bool() ? "AdamW" : "Adam", "betas, amsgrad, decoupled_weight_decay"};
      return {"Adam or AdamW", "betas, amsgrad; both classes have these keys, AdamW defaults to weight_decay 0.01"};
    }
    if (has(g, "decoupled_weight_decay")) return {"RAdam", "betas, decoupled_weight_decay, no amsgrad"};
    if (!has(g, "weight_decay")) return {"SparseAdam", "betas, no weight_decay"};
    return {"Adam-like", "betas"};
  }
  if (has_all(g, {"momentum", "dampening", "nesterov"})) return {"SGD", "momentum, dampening, nesterov"};
  return {"unknown", "no known param-group keys"};
}

bool is_buffer_name(std::string_view n) {
  return n.ends_with("running_mean") || n.ends_with("running_var") || n.ends_with("num_batches_tracked");
}

/// Model rows that are parameters, in state-dict order (what named_parameters() yields).
std::vector<const Row*> parameter_rows(const TensorTable& model) {
  std::vector<const Row*> out;
  for (const Row& r : model.rows)
    if (r.alias_of.empty() && !is_buffer_name(r.name) && dtype_is_floating(r.tensor().dtype)) out.push_back(&r);
  return out;
}

std::optional<double> scalar_tensor_value(const Tensor& t) {
  if (t.numel() != 1 || !tools::decodable(t.dtype) || tools::components(t.dtype) != 1) return std::nullopt;
  double v;
  try {
    tools::read_doubles(t, 0, 1, &v);
  } catch (const Error&) {
    return std::nullopt;
  }
  return v;
}

void add_distinct(std::vector<std::string>& vals, std::string v) {
  if (vals.size() < 5 && !has(vals, v)) vals.push_back(std::move(v));
}

void summarise_state(OptimizerInfo& o, const Value& state) {
  for (const auto& [_, entry] : state.items()) {
    if (!entry->is_dict()) continue;
    for (const auto& [k, v] : entry->items()) {
      std::string key = k->is(Kind::string) ? k->as_str() : repr(*k, 40);
      auto it = std::find_if(o.state_keys.begin(), o.state_keys.end(), [&](const auto& s) { return s.key == key; });
      if (it == o.state_keys.end()) {
        OptimizerInfo::StateKey fresh;
        fresh.key = key;
        it = o.state_keys.insert(o.state_keys.end(), std::move(fresh));
      }
      if (v->is(Kind::tensor)) {
        const Tensor& t = v->tensor();
        ++it->tensors;
        it->numel += t.numel();
        it->bytes += t.nbytes();
        if (std::find(it->dtypes.begin(), it->dtypes.end(), t.dtype) == it->dtypes.end()) it->dtypes.push_back(t.dtype);
        if (auto x = scalar_tensor_value(t)) add_distinct(it->scalar_values, tools::format_double(*x));
      } else if (v->is_none()) {
        ++it->nones;
      } else {
        ++it->scalars;
        add_distinct(it->scalar_values, repr(*v, 40));
      }
    }
  }
}

/// Names optimizer parameters after the model's, when counts and shapes agree.
void name_parameters(OptimizerInfo& o, const Value& state, const TensorTable& model) {
  auto params = parameter_rows(model);
  if (params.size() != o.params || params.empty()) return;
  std::vector<int64_t> order;  // param id -> position
  for (const Value* g : o.groups)
    if (const Value* ps = g->get("params"); ps && ps->is_sequence())
      for (const Value* p : ps->elements())
        if (p->is(Kind::integer)) order.push_back(p->as_int());
  if (order.size() != params.size()) return;
  for (const auto& [k, entry] : state.items()) {
    if (!k->is(Kind::integer) || !entry->is_dict()) continue;
    auto pos = std::find(order.begin(), order.end(), k->as_int());
    if (pos == order.end()) return;
    const Tensor& p = params[static_cast<size_t>(pos - order.begin())]->tensor();
    for (const auto& [_, v] : entry->items()) {
      if (!v->is(Kind::tensor) || v->tensor().numel() <= 1) continue;
      if (v->tensor().shape != p.shape) return;
      o.shapes_checked = true;
    }
  }
  for (const Row* r : params) o.param_names.push_back(r->name);
}

const Value* object_state_dict(const Value& v) {
  const Value* st = v.state();
  if (st && st->is(Kind::tuple) && st->size() > 0) st = st->elements()[0];  // (state, slotstate)
  return st && st->is_dict() ? st : nullptr;
}

const Value* buffer_dict(const Value& b) {
  if (b.is_dict()) return &b;
  if (b.is(Kind::object)) return object_state_dict(b);
  return nullptr;
}

}  // namespace

OptimizerInfo analyze_optimizer(const Value& opt, const TensorTable* model) {
  OptimizerInfo o;
  o.value = &opt;
  std::vector<std::string> gkeys;
  if (const Value* pg = opt.get("param_groups"); pg && pg->is_sequence()) {
    for (const Value* g : pg->elements()) {
      if (!g->is_dict()) continue;
      o.groups.push_back(g);
      for (const std::string& k : string_keys(*g)) {
        if (!has(gkeys, k)) gkeys.push_back(k);
        if (k != "params" && !has(o.hyper_keys, k)) o.hyper_keys.push_back(k);
      }
      if (const Value* ps = g->get("params"); ps && ps->is_sequence()) o.params += ps->size();
    }
  }
  const Value* state = opt.get("state");
  if (state && state->is_dict()) {
    o.with_state = state->size();
    summarise_state(o, *state);
  }
  std::vector<std::string> skeys;
  for (const auto& s : o.state_keys) skeys.push_back(s.key);
  std::tie(o.kind, o.why) = optimizer_kind(gkeys, skeys, o.groups.empty() ? nullptr : o.groups[0]);
  if (model && state && state->is_dict()) name_parameters(o, *state, *model);
  return o;
}

std::string scheduler_kind(const Value& s) {
  auto k = string_keys(s);
  if (has(k, "milestones")) return "MultiStepLR";
  if (has(k, "T_0")) return "CosineAnnealingWarmRestarts";
  if (has(k, "T_max")) return "CosineAnnealingLR";
  if (has(k, "step_size") && has(k, "gamma")) return "StepLR";
  if (has_all(k, {"patience", "mode", "factor"})) return "ReduceLROnPlateau";
  if (has(k, "total_steps") && has(k, "anneal_func")) return "OneCycleLR";
  if (has(k, "total_steps")) return "OneCycleLR";
  if (has(k, "max_lrs")) return "CyclicLR";
  if (has_all(k, {"start_factor", "end_factor"})) return "LinearLR";
  if (has(k, "power") && has(k, "total_iters")) return "PolynomialLR";
  if (has(k, "factor") && has(k, "total_iters")) return "ConstantLR";
  if (has(k, "lr_lambdas")) return has(k, "last_epoch") ? "LambdaLR or MultiplicativeLR" : "LambdaLR";
  if (has(k, "_schedulers")) return has(k, "_milestones") ? "SequentialLR" : "ChainedScheduler";
  if (has(k, "gamma") && has(k, "base_lrs")) return "ExponentialLR";
  if (has(k, "base_lrs")) return "LR scheduler";
  return "unknown";
}

ResultsInfo analyze_results(const Value& v) {
  ResultsInfo r;
  r.value = &v;
  if (!v.is_sequence() || v.size() < 2) return r;
  auto matrix = [](const Value& m, std::vector<std::vector<double>>& out) {
    if (!m.is_sequence()) return false;
    for (const Value* row : m.elements()) {
      if (!row->is_sequence()) return false;
      std::vector<double> vals;
      for (const Value* x : row->elements()) {
        auto d = number_of(*x);
        if (!d) return false;
        vals.push_back(*d);
      }
      out.push_back(std::move(vals));
    }
    return true;
  };
  if (!matrix(v.at(0), r.class_il) || !matrix(v.at(1), r.task_il)) {
    r.class_il.clear();
    r.task_il.clear();
    return r;
  }
  r.parsed = true;
  for (const auto& row : r.task_il)
    for (double x : row)
      if (x != 0) r.task_il_measured = true;
  if (v.size() >= 3 && v.at(2).is_dict()) {
    const Value& lg = v.at(2);
    auto list = [&](const char* key, std::vector<double>& out) {
      if (const Value* l = lg.get(key); l && l->is_sequence())
        for (const Value* x : l->elements())
          if (auto d = number_of(*x)) out.push_back(*d);
    };
    list("accs", r.logger_accs);
    list("accs_mask_classes", r.logger_accs_mask);
    for (const char* key : {"bwt", "forgetting", "fwt", "bwt_mask_classes", "forgetting_mask_classes", "fwt_mask_classes"})
      if (const Value* m = lg.get(key))
        if (auto d = number_of(*m)) r.logger_metrics.emplace_back(key, *d);
  }
  // Mammoth's utils/metrics.py: BWT = mean_i(R[T-1][i] - R[i][i]),
  // forgetting = mean_i(max_t R[t][i] - R[T-1][i]), over i < T-1.
  auto transfer = [](const std::vector<std::vector<double>>& R, std::optional<double>& bwt, std::optional<double>& fgt) {
    size_t T = R.size();
    if (T < 2) return;
    for (size_t t = 0; t < T; ++t)
      if (R[t].size() != t + 1) return;  // not the triangular per-task matrix
    double b = 0, f = 0;
    for (size_t i = 0; i + 1 < T; ++i) {
      b += R[T - 1][i] - R[i][i];
      double best = 0;
      for (size_t t = i; t < T; ++t) best = std::max(best, R[t][i]);
      f += best - R[T - 1][i];
    }
    bwt = b / static_cast<double>(T - 1);
    fgt = f / static_cast<double>(T - 1);
  };
  transfer(r.class_il, r.bwt, r.forgetting);
  if (r.task_il_measured) transfer(r.task_il, r.bwt_task_il, r.forgetting_task_il);
  return r;
}

std::vector<std::pair<std::string, const Value*>> buffer_tensors(const Value& b) {
  std::vector<std::pair<std::string, const Value*>> out;
  if (const Value* d = buffer_dict(b))
    for (const auto& [k, v] : d->items())
      if (v->is(Kind::tensor)) out.emplace_back(k->is(Kind::string) ? k->as_str() : repr(*k, 40), v);
  return out;
}

BufferInfo analyze_buffer(const Value& b) {
  BufferInfo info;
  info.value = &b;
  info.table.title = "buffer";
  info.type = b.is_dict() ? "dict" : b.is(Kind::object) ? b.qualified_name() : kind_name(b.kind());
  if (const Value* d = buffer_dict(b))
    for (const auto& [k, v] : d->items())
      if (!v->is(Kind::tensor))
        info.scalars.emplace_back(k->is(Kind::string) ? k->as_str() : repr(*k, 40), repr(*v, 60));
  return info;
}

void read_histograms(BufferInfo& b) {
  constexpr uint64_t kMaxLabels = 1ull << 24;
  for (const Row& r : b.table.rows) {
    const Tensor& t = r.tensor();
    if (r.name == "examples" && !t.shape.empty()) b.examples = static_cast<uint64_t>(t.shape[0]);
    if (r.name != "labels" && r.name != "task_labels" && r.name != "true_labels") continue;
    bool integral = !dtype_is_floating(t.dtype) && !dtype_is_complex(t.dtype) && tools::decodable(t.dtype);
    if (!integral) {
      b.notes.push_back(r.name + ": no histogram for " + std::string(dtype_name(t.dtype)) + " values");
      continue;
    }
    if (t.numel() > kMaxLabels) {
      b.notes.push_back(r.name + ": no histogram (more than 16M values)");
      continue;
    }
    constexpr size_t kMaxClasses = 4096;
    std::map<int64_t, uint64_t> h;
    try {
      tools::for_each_chunk(t, [&](uint64_t, std::span<const double> vals) {
        for (double v : vals)
          if (h.size() <= kMaxClasses) ++h[static_cast<int64_t>(v)];
      });
    } catch (const Error& e) {
      b.notes.push_back(r.name + ": no histogram (" + e.detail() + ")");
      continue;
    }
    if (h.size() > kMaxClasses) {
      b.notes.push_back(r.name + ": no histogram (more than 4096 distinct values)");
      continue;
    }
    b.histograms.emplace_back(r.name, std::move(h));
  }
}

}  // namespace ckpt::info
