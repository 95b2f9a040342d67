// The --json view of a Report (schema: docs/json.md). Key order is fixed;
// every field is always present (null when it does not apply), so jq
// filters do not need to test for absence.
#include <cmath>

#include "ckpt/error.hpp"
#include "common/cli.hpp"
#include "common/term.hpp"
#include "info/tree.hpp"
#include "info/views.hpp"

namespace ckpt::info {

using tools::json;

namespace {

const char* container_id(Container c) {
  switch (c) {
    case Container::torch_zip: return "torch_zip";
    case Container::torchscript: return "torchscript";
    case Container::legacy_stream: return "legacy_stream";
    case Container::legacy_tar: return "legacy_tar";
    case Container::pickle: return "pickle";
    default: break;
  }
  // Containers added later (safetensors, HDF5): a lower-case id from the name.
  std::string_view n = container_name(c);
  static thread_local std::string id;
  id.clear();
  for (char ch : n) id += (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch - 'A' + 'a') : ch == ' ' ? '_' : ch;
  return id.c_str();
}

json str_or_null(const std::string& s) { return s.empty() ? json(nullptr) : json(tools::escape(s)); }
json text(const std::string& s) { return tools::escape(s); }

class JsonView {
 public:
  JsonView(const Report& r, const Options& o) : r_(r), o_(o) {}

  json render() {
    json j;
    j["path"] = text(r_.path);
    j["ok"] = true;
    j["size_bytes"] = r_.size;
    j["data_bytes"] = r_.data_size;
    j["format"] = format();
    j["layout"] = layout();
    std::string why = weights_only_reason(r_);
    j["weights_only"] = {{"compatible", why.empty()}, {"reason", str_or_null(why)}};
    j["file_name"] = file_name();
    j["notes"] = json::array();
    for (const auto& n : r_.notes) j["notes"].push_back(text(n));
    j["model"] = r_.model ? table(*r_.model, true) : json(nullptr);
    j["optimizer"] = r_.optimizer ? optimizer() : json(nullptr);
    j["scheduler"] = r_.scheduler ? json{{"kind", r_.scheduler->kind}, {"state", tree(*r_.scheduler->value, "scheduler")}}
                                  : json(nullptr);
    j["args"] = r_.args ? tree(*r_.args, args_key()) : json(nullptr);
    j["results"] = r_.results ? results() : json(nullptr);
    j["buffer"] = r_.buffer ? buffer() : json(nullptr);
    j["other_keys"] = json::object();
    for (const auto& [k, v] : r_.extra) j["other_keys"][tools::escape(k)] = tree(*v, k);
    j["other_tensors"] = r_.other ? table(*r_.other, false) : json(nullptr);
    j["globals"] = globals();
    j["verify"] = r_.verify.ran ? verify() : json(nullptr);
    j["tree"] = o_.tree ? tree(r_.ck->root(), "") : json(nullptr);
    j["stats_skipped"] = json::array();
    for (const auto& s : r_.stats_skipped) j["stats_skipped"].push_back(text(s));
    j["nonfinite"] = json::array();
    for (const auto& p : nonfinite_) j["nonfinite"].push_back(text(p));
    return j;
  }

 private:
  json tree(const Value& v, const std::string& path) { return tree_json(v, path, &nonfinite_); }

  json num(double v, const std::string& path) {
    if (!std::isfinite(v)) nonfinite_.push_back(path);
    return tools::json_number(v);
  }

  std::string args_key() const {
    if (r_.schema.layout == tools::Layout::lightning) return "hyper_parameters";
    if (r_.ck->root().is_dict())
      for (const auto& [k, v] : r_.ck->root().items())
        if (v == r_.args) return key_component(*k);
    return "args";
  }

  json format() const {
    const FormatInfo& f = r_.format;
    bool zip = f.container == Container::torch_zip || f.container == Container::torchscript;
    return {{"container", container_id(f.container)},
            {"container_name", container_name(f.container)},
            {"era", text(f.era)},
            {"root", zip ? json(text(f.root)) : json(nullptr)},
            {"version", str_or_null(f.version)},
            {"byteorder", str_or_null(f.byteorder)},
            {"pickle_protocol", f.pickle_protocol},
            {"little_endian", f.little_endian},
            {"zstd", r_.zstd},
            {"trailing_bytes", f.trailing_bytes}};
  }

  json layout() const {
    const tools::Schema& s = r_.schema;
    json keys = json::array();
    if (r_.ck->root().is_dict())
      for (const auto& [k, _] : r_.ck->root().items()) keys.push_back(text(k->is(Kind::string) ? k->as_str() : repr(*k, 80)));
    return {{"kind", tools::layout_name(s.layout)},
            {"mode", str_or_null(s.mode)},
            {"description", text(s.description())},
            {"model_key", s.model ? json(text(s.model_key)) : json(nullptr)},
            {"keys", keys}};
  }

  json file_name() const {
    if (!r_.name) return nullptr;
    const auto& n = *r_.name;
    if (n.paused) return {{"variant", "paused"}, {"uid", text(n.uid)}};
    auto idx = n.task_index();
    return {{"variant", n.current_variant ? "current" : "documented"},
            {"ckpt_name", str_or_null(n.ckpt_name)},
            {"model", text(n.model)},
            {"dataset", text(n.dataset)},
            {"dataset_config", n.current_variant ? json(text(n.dataset_config)) : json(nullptr)},
            {"buffer_size", n.buffer_size},
            {"n_epochs", n.n_epochs},
            {"timestamp", text(n.timestamp)},
            {"uid", str_or_null(n.uid)},
            {"task", text(n.task)},
            {"task_index", idx ? json(*idx) : json(nullptr)}};
  }

  static json stats(const std::optional<tools::TensorStats>& s) {
    if (!s) return nullptr;
    return {{"count", s->count}, {"finite", s->finite}, {"nan", s->nan}, {"posinf", s->posinf},
            {"neginf", s->neginf}, {"zeros", s->zeros},
            {"min", tools::json_number(s->min)}, {"max", tools::json_number(s->max)},
            {"mean", tools::json_number(s->mean)}, {"std", tools::json_number(s->std)},
            {"nonfinite", s->nan + s->posinf + s->neginf > 0}};
  }

  json row(const Row& x) {
    const Tensor& t = x.tensor();
    std::optional<tools::TensorStats> st;
    if (auto it = r_.stats.find(x.value); it != r_.stats.end()) st = it->second;
    return {{"name", text(x.name)},
            {"path", text(x.path)},
            {"escaped", tools::escape(x.name) != x.name},
            {"dtype", std::string(dtype_name(t.dtype))},
            {"shape", t.shape},
            {"stride", t.stride},
            {"storage_offset", t.storage_offset},
            {"contiguous", t.is_contiguous()},
            {"numel", t.numel()},
            {"bytes", t.nbytes()},
            {"storage", x.storage == SIZE_MAX ? json(nullptr) : json(x.storage)},
            {"alias_of", str_or_null(x.alias_of)},
            {"same_view", x.same_view},
            {"stats", stats(st)}};
  }

  json table(const TensorTable& t, bool with_prefixes) {
    const Totals& x = t.totals;
    json j = {{"tensors", x.tensors}, {"unfiltered", t.unfiltered}, {"views", x.views}, {"storages", x.storages},
              {"numel", x.numel}, {"bytes", x.bytes}, {"storage_bytes", x.storage_bytes}};
    json by = json::array();
    for (const auto& d : x.by_dtype)
      by.push_back({{"dtype", std::string(dtype_name(d.dtype))}, {"tensors", d.tensors}, {"numel", d.numel}, {"bytes", d.bytes}});
    j["by_dtype"] = by;
    if (with_prefixes) {
      const auto& w = r_.prefixes.report;
      j["prefixes"] = {{"keys", w.keys}, {"net", w.with_net}, {"module", w.with_module}, {"orig_mod", w.with_orig_mod},
                       {"leading", text(w.common_prefix)}};
    }
    j["rows"] = json::array();
    for (const Row& r : t.rows) j["rows"].push_back(row(r));
    return j;
  }

  json optimizer() {
    const OptimizerInfo& o = *r_.optimizer;
    json groups = json::array();
    for (size_t i = 0; i < o.groups.size(); ++i) {
      const Value* g = o.groups[i];
      const Value* ps = g->get("params");
      json hp = json::object();
      for (const auto& [k, v] : g->items()) {
        std::string key = key_component(*k);
        if (key == "params") continue;
        hp[tools::escape(key)] = tree(*v, "optimizer/param_groups/" + std::to_string(i) + "/" + key);
      }
      groups.push_back({{"params", ps && ps->is_sequence() ? ps->size() : 0}, {"hyperparameters", hp}});
    }
    json keys = json::array();
    for (const auto& s : o.state_keys) {
      json dts = json::array();
      for (DType d : s.dtypes) dts.push_back(std::string(dtype_name(d)));
      json vals = json::array();
      for (const auto& v : s.scalar_values) vals.push_back(text(v));
      keys.push_back({{"key", text(s.key)}, {"tensors", s.tensors}, {"numel", s.numel}, {"bytes", s.bytes},
                      {"nones", s.nones}, {"scalars", s.scalars}, {"dtypes", dts}, {"values", vals},
                      {"stats", stats(s.stats)}});
    }
    json names = nullptr;
    if (!o.param_names.empty()) {
      names = json::array();
      for (const auto& n : o.param_names) names.push_back(text(n));
    }
    return {{"kind", o.kind}, {"why", o.why}, {"params", o.params}, {"param_groups", groups},
            {"state_entries", o.with_state}, {"state_keys", keys}, {"param_names", names},
            {"shapes_checked", o.shapes_checked}};
  }

  json matrix(const std::vector<std::vector<double>>& m, const char* name) {
    json a = json::array();
    for (size_t t = 0; t < m.size(); ++t) {
      json row = json::array();
      for (size_t i = 0; i < m[t].size(); ++i)
        row.push_back(num(m[t][i], std::string("results/") + name + "/" + std::to_string(t) + "/" + std::to_string(i)));
      a.push_back(row);
    }
    return a;
  }

  json means(const std::vector<std::vector<double>>& m, const char* name) {
    json a = json::array();
    for (size_t t = 0; t < m.size(); ++t) {
      double s = 0;
      for (double v : m[t]) s += v;
      a.push_back(m[t].empty() ? json(nullptr)
                               : num(s / static_cast<double>(m[t].size()),
                                     std::string("results/") + name + "_mean/" + std::to_string(t)));
    }
    return a;
  }

  json opt_num(const std::optional<double>& v, const std::string& path) { return v ? num(*v, path) : json(nullptr); }

  json results() {
    const ResultsInfo& x = *r_.results;
    if (!x.parsed) return {{"parsed", false}, {"raw", tree(*x.value, "results")}};
    json metrics = json::object();
    for (const auto& [k, v] : x.logger_metrics) metrics[k] = num(v, "results/logger/" + k);
    auto list = [&](const std::vector<double>& v, const char* key) {
      json a = json::array();
      for (size_t i = 0; i < v.size(); ++i) a.push_back(num(v[i], std::string("results/logger/") + key + "/" + std::to_string(i)));
      return a;
    };
    return {{"parsed", true},
            {"tasks", x.class_il.size()},
            {"class_il", matrix(x.class_il, "class_il")},
            {"task_il", matrix(x.task_il, "task_il")},
            {"task_il_measured", x.task_il_measured},
            {"class_il_mean", means(x.class_il, "class_il")},
            {"task_il_mean", means(x.task_il, "task_il")},
            {"logger", {{"accs", list(x.logger_accs, "accs")},
                        {"accs_mask_classes", list(x.logger_accs_mask, "accs_mask_classes")},
                        {"metrics", metrics}}},
            {"bwt", {{"class_il", opt_num(x.bwt, "results/bwt/class_il")},
                     {"task_il", opt_num(x.bwt_task_il, "results/bwt/task_il")}}},
            {"forgetting", {{"class_il", opt_num(x.forgetting, "results/forgetting/class_il")},
                            {"task_il", opt_num(x.forgetting_task_il, "results/forgetting/task_il")}}}};
  }

  json buffer() {
    const BufferInfo& b = *r_.buffer;
    json attrs = json::object();
    for (const auto& [k, v] : b.scalars) attrs[tools::escape(k)] = v;
    json hist = json::object();
    for (const auto& [name, h] : b.histograms) {
      json counts = json::object();
      for (const auto& [v, c] : h) counts[std::to_string(v)] = c;
      hist[name] = counts;
    }
    json notes = json::array();
    for (const auto& n : b.notes) notes.push_back(text(n));
    return {{"type", text(b.type)}, {"examples", b.examples}, {"tensors", table(b.table, false)},
            {"attributes", attrs}, {"histograms", hist}, {"notes", notes}};
  }

  json globals() const { return globals_json(r_.globals); }

  json verify() const {
    const VerifyResult& v = r_.verify;
    return {{"ok", v.ok}, {"message", text(v.message)}, {"error_code", str_or_null(v.error_code)},
            {"entries", v.entries}, {"storages", v.storages},
            {"aligned", v.aligned ? json(*v.aligned) : json(nullptr)}};
  }

  const Report& r_;
  const Options& o_;
  std::vector<std::string> nonfinite_;
};

}  // namespace

tools::json render_json(const Report& r, const Options& opt) { return JsonView(r, opt).render(); }

tools::json error_json(const std::string& path, const Error& e) {
  return {{"path", tools::escape(path)},
          {"ok", false},
          {"error", {{"code", error_code_name(e.code())},
                     {"number", static_cast<int>(e.code())},
                     {"message", tools::describe_error(e)}}}};
}

json globals_json(const std::vector<GlobalRef>& globals) {
  json a = json::array();
  for (const auto& g : globals)
    a.push_back({{"module", text(g.module)}, {"name", text(g.name)}, {"verdict", global_verdict_name(g.verdict)},
                 {"count", g.count}, {"first_offset", g.first_offset}});
  return a;
}

json refused_json(const Refusal& r) {
  json j = error_json(r.path, *r.error);
  j["globals"] = globals_json(r.globals);
  j["audit_error"] = r.audit_stopped ? json(tools::describe_error(*r.audit_stopped)) : json(nullptr);
  return j;
}

std::string weights_only_reason(const Report& r) {
  Container c = r.format.container;
  if (c == Container::torchscript) return "torch.load(weights_only=True) refuses TorchScript archives (torch.jit.load runs their code)";
  if (c == Container::safetensors || c == Container::hdf5)
    return std::string("torch.load cannot read ") + container_name(c) + " (`ckpt-convert` turns it back into a .pt)";
  if (c == Container::legacy_tar)
    return "torch.load(weights_only=True) refuses the legacy TAR layout (a plain torch.load reads it, running its pickle)";
  if (c != Container::torch_zip && c != Container::legacy_stream)
    return std::string("not a torch.save file but a ") + container_name(c) + " (pickle.load, not torch.load)";
  if (r.weights_only) return "";
  std::string bad;
  size_t n = 0;
  for (const auto& g : r.globals) {
    if (g.verdict == GlobalVerdict::allowed) continue;
    if (n++ < 4) bad += (bad.empty() ? "" : ", ") + g.module + "." + g.name;
  }
  if (n > 4) bad += ", ...";
  if (n) return "needs " + bad + " (not on torch's allowlist; `--globals` lists them)";
  return "uses pickle opcodes torch's weights_only unpickler lacks (protocol 4 or later)";
}

const char* verdict_meaning(GlobalVerdict v) {
  switch (v) {
    case GlobalVerdict::allowed: return "on torch's weights_only allowlist";
    case GlobalVerdict::known: return "read by ckpt, not on torch's allowlist: weights_only refuses it";
    case GlobalVerdict::unknown: return "arbitrary class: torch.load would import and run its code";
    case GlobalVerdict::denied: return "runs code or touches the system: refused";
  }
  return "";
}

}  // namespace ckpt::info
