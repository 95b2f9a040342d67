#include "common/schema.hpp"

#include <algorithm>
#include <charconv>

namespace ckpt::tools {

const char* layout_name(Layout l) noexcept {
  switch (l) {
    case Layout::mammoth: return "mammoth";
    case Layout::lightning: return "lightning";
    case Layout::state_dict: return "state_dict";
    case Layout::wrapped_state_dict: return "wrapped_state_dict";
    case Layout::optimizer_state: return "optimizer_state";
    case Layout::tensor: return "tensor";
    case Layout::other: return "other";
  }
  return "other";
}

std::string Schema::description() const {
  switch (layout) {
    case Layout::mammoth: return "Mammoth checkpoint (" + mode + " mode)";
    case Layout::lightning: return "PyTorch Lightning checkpoint";
    case Layout::state_dict: return "plain state dict";
    case Layout::wrapped_state_dict: return "state dict under '" + model_key + "'";
    case Layout::optimizer_state: return "optimizer state dict";
    case Layout::tensor: return "a single tensor";
    case Layout::other: return "other (no known checkpoint layout)";
  }
  return "other";
}

bool is_state_dict(const Value& v) {
  if (!v.is_dict() || v.size() == 0) return false;
  for (const auto& [k, val] : v.items())
    if (!k->is(Kind::string) || !val->is(Kind::tensor)) return false;
  return true;
}

namespace {

bool is_str_keyed_dict(const Value* v) { return v && v->is_dict(); }

const Value* non_none(const Value* v) { return v && !v->is_none() ? v : nullptr; }

bool is_optimizer_state(const Value& v) {
  return v.is_dict() && v.get("state") && v.get("param_groups") && v.get("param_groups")->is(Kind::list);
}

// Keys under which training scripts commonly store a model's state dict.
constexpr std::string_view kModelKeys[] = {"state_dict", "model_state_dict", "model", "net",
                                           "network", "model_state", "weights", "params", "module"};

}  // namespace

Schema recognise(const Value& root) {
  Schema s;
  if (root.is(Kind::tensor)) {
    s.layout = Layout::tensor;
    return s;
  }
  if (!root.is_dict()) return s;
  if (is_state_dict(root)) {
    s.layout = Layout::state_dict;
    s.model = &root;
    return s;
  }
  auto explain = [&](std::initializer_list<std::string_view> known) {
    for (const auto& [k, _] : root.items()) {
      if (!k->is(Kind::string)) {
        s.extra_keys.push_back(repr(*k));
        continue;
      }
      const std::string& name = k->as_str();
      if (std::find(known.begin(), known.end(), name) == known.end()) s.extra_keys.push_back(name);
    }
  };
  const Value* model = root.get("model");
  const Value* args = root.get("args");
  const Value* results = root.get("results");
  if (model && model->is_dict() && args && results) {
    s.layout = Layout::mammoth;
    s.mode = args->type_name() == "argparse.Namespace" ? "old_pickle" : "safe";
    s.model_key = "model";
    s.model = model;
    s.args = args;
    s.results = results;
    s.optimizer = non_none(root.get("optimizer"));
    s.has_scheduler_key = root.get("scheduler") != nullptr;
    s.scheduler = non_none(root.get("scheduler"));
    s.buffer = non_none(root.get("buffer"));
    explain({"model", "optimizer", "scheduler", "args", "results", "buffer"});
    return s;
  }
  if (const Value* sd = root.get("state_dict");
      sd && sd->is_dict() && (root.get("pytorch-lightning_version") || root.get("global_step"))) {
    s.layout = Layout::lightning;
    s.model_key = "state_dict";
    s.model = sd;
    if (const Value* opts = root.get("optimizer_states"); opts && opts->is_sequence() && opts->size() > 0)
      s.optimizer = opts->elements()[0];
    if (const Value* sch = root.get("lr_schedulers"); sch && sch->is_sequence() && sch->size() > 0)
      s.scheduler = sch->elements()[0];
    s.args = non_none(root.get("hyper_parameters"));
    explain({"state_dict", "optimizer_states", "lr_schedulers", "hyper_parameters"});
    return s;
  }
  if (is_optimizer_state(root)) {
    s.layout = Layout::optimizer_state;
    s.optimizer = &root;
    return s;
  }
  for (auto key : kModelKeys) {
    const Value* sd = root.get(key);
    if (sd && is_state_dict(*sd)) {
      s.layout = Layout::wrapped_state_dict;
      s.model_key = std::string(key);
      s.model = sd;
      for (auto okey : {"optimizer", "optimizer_state_dict", "optim", "opt"})
        if (const Value* o = root.get(okey); o && is_optimizer_state(*o)) s.optimizer = o;
      for (auto skey : {"scheduler", "lr_scheduler", "scheduler_state_dict"})
        if (const Value* o = non_none(root.get(skey)); o && is_str_keyed_dict(o)) s.scheduler = o;
      for (auto akey : {"args", "config", "hparams", "hyper_parameters"})
        if (const Value* o = non_none(root.get(akey))) s.args = o;
      explain({});
      s.extra_keys.erase(std::remove(s.extra_keys.begin(), s.extra_keys.end(), s.model_key), s.extra_keys.end());
      return s;
    }
  }
  return s;
}

// ---- file names -------------------------------------------------------------

namespace {

std::vector<std::string_view> split_underscores(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t p = s.find('_', start);
    out.push_back(s.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start));
    if (p == std::string_view::npos) return out;
    start = p + 1;
  }
}

bool all_of(std::string_view s, bool (*pred)(char)) {
  return !s.empty() && std::all_of(s.begin(), s.end(), pred);
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }

bool is_timestamp(std::string_view s) {  // %Y%m%d-%H%M%S
  return s.size() == 15 && s[8] == '-' && all_of(s.substr(0, 8), is_digit) && all_of(s.substr(9), is_digit);
}

bool parse_int(std::string_view s, int64_t& out) {
  if (!all_of(s, is_digit)) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

bool is_uuid4(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !is_hex(s[i])) return false;
  }
  return true;
}

std::string join_from(const std::vector<std::string_view>& t, size_t end) {
  std::string out;
  for (size_t i = 0; i < end; ++i) {
    if (i) out += '_';
    out += t[i];
  }
  return out;
}

}  // namespace

std::optional<int64_t> MammothName::task_index() const {
  int64_t v;
  if (parse_int(task, v)) return v;
  return std::nullopt;
}

std::optional<MammothName> parse_mammoth_name(std::string_view filename) {
  size_t slash = filename.find_last_of('/');
  if (slash != std::string_view::npos) filename.remove_prefix(slash + 1);
  for (std::string_view ext : {".zst", ".pt"})
    if (filename.ends_with(ext)) filename.remove_suffix(ext.size());
  MammothName n;
  if (is_uuid4(filename)) {
    n.paused = true;
    n.uid = std::string(filename);
    return n;
  }
  auto t = split_underscores(filename);
  auto task_ok = [](std::string_view s) { return s == "last" || s == "joint" || all_of(s, is_digit); };
  if (t.size() < 6 || !task_ok(t.back())) return std::nullopt;
  size_t k = t.size();
  // current: ..._<model>_<dataset>_<config>_<buffer>_<epochs>_<timestamp>_<uid8>_<task>
  if (k >= 8 && t[k - 2].size() == 8 && all_of(t[k - 2], is_hex) && is_timestamp(t[k - 3]) &&
      parse_int(t[k - 4], n.n_epochs) && parse_int(t[k - 5], n.buffer_size)) {
    n.current_variant = true;
    n.task = t[k - 1];
    n.uid = t[k - 2];
    n.timestamp = t[k - 3];
    n.dataset_config = t[k - 6];
    n.dataset = t[k - 7];
    n.model = t[k - 8];
    n.ckpt_name = join_from(t, k - 8);
  } else if (is_timestamp(t[k - 2]) && parse_int(t[k - 3], n.n_epochs) && parse_int(t[k - 4], n.buffer_size)) {
    n.task = t[k - 1];
    n.timestamp = t[k - 2];
    n.dataset = t[k - 5];
    n.model = t[k - 6];
    n.ckpt_name = join_from(t, k - 6);
  } else {
    return std::nullopt;
  }
  if (n.model.empty() || n.dataset.empty()) return std::nullopt;
  return n;
}

std::string format_mammoth_name(const MammothName& n) {
  if (n.paused) return n.uid + ".pt";
  std::string out;
  if (!n.ckpt_name.empty()) out += n.ckpt_name + "_";
  out += n.model + "_" + n.dataset + "_";
  if (n.current_variant) out += n.dataset_config + "_";
  out += std::to_string(n.buffer_size) + "_" + std::to_string(n.n_epochs) + "_" + n.timestamp + "_";
  if (n.current_variant) out += n.uid + "_";
  return out + n.task + ".pt";
}

}  // namespace ckpt::tools
