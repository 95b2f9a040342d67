#include "info/report.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <cmath>
#include <set>
#include <unordered_set>

#include "ckpt/error.hpp"
#include "info/sections.hpp"

namespace ckpt::info {

namespace {

/// Storage numbers in order of first use: the file's storage list first.
class StorageIds {
 public:
  explicit StorageIds(const Checkpoint& ck) {
    for (const auto& s : ck.storages()) id(s.get());
  }
  size_t id(const Storage* s) {
    auto [it, fresh] = ids_.try_emplace(s, ids_.size());
    return it->second;
  }

 private:
  std::unordered_map<const Storage*, size_t> ids_;
};

std::string key_text(const Value& k) { return k.is(Kind::string) ? k.as_str() : repr(k, 80); }

std::string join_path(const std::string& base, const std::string& name) {
  return base.empty() ? name : base + "/" + name;
}

/// Adds a tensor row, marking it as an alias of an earlier row on the same storage.
void add_row(std::vector<Row>& rows, StorageIds& ids, std::string name, std::string path, const Value* v) {
  Row r;
  r.name = std::move(name);
  r.path = std::move(path);
  r.value = v;
  const Tensor& t = v->tensor();
  r.storage = t.storage ? ids.id(t.storage.get()) : SIZE_MAX;
  for (const Row& prev : rows) {
    if (prev.storage != r.storage || r.storage == SIZE_MAX) continue;
    r.alias_of = prev.name;
    r.same_view = view_key(prev.tensor()) == view_key(t);
    break;
  }
  rows.push_back(std::move(r));
}

Totals totals_of(const std::vector<Row>& rows) {
  Totals t;
  std::unordered_set<std::string> views;
  std::unordered_set<const Storage*> storages;
  for (const Row& r : rows) {
    const Tensor& x = r.tensor();
    ++t.tensors;
    auto it = std::find_if(t.by_dtype.begin(), t.by_dtype.end(), [&](const DTypeTotal& d) { return d.dtype == x.dtype; });
    if (it == t.by_dtype.end()) it = t.by_dtype.insert(t.by_dtype.end(), DTypeTotal{x.dtype});
    ++it->tensors;
    if (x.storage && storages.insert(x.storage.get()).second) {
      ++t.storages;
      t.storage_bytes += x.storage->nbytes();
    }
    if (!views.insert(view_key(x)).second) continue;
    ++t.views;
    t.numel += x.numel();
    t.bytes += x.nbytes();
    it->numel += x.numel();
    it->bytes += x.nbytes();
  }
  return t;
}

void finish_table(TensorTable& table, const Options& opt, const Prefixes& p) {
  table.unfiltered = table.rows.size();
  if (!opt.filters.empty())
    std::erase_if(table.rows, [&](const Row& r) { return !selected(opt, r, p); });
  table.totals = totals_of(table.rows);
}

/// The state dict's tensors; non-tensor values are noted.
TensorTable model_table(const tools::Schema& s, StorageIds& ids, std::vector<std::string>& notes) {
  TensorTable t;
  t.title = "model";
  std::vector<std::string> odd;
  for (const auto& [k, v] : s.model->items()) {
    std::string name = key_text(*k);
    if (v->is(Kind::tensor)) add_row(t.rows, ids, name, join_path(s.model_key, name), v);
    else odd.push_back(name);
  }
  if (!odd.empty()) {
    std::string list;
    for (size_t i = 0; i < odd.size() && i < 5; ++i) list += (i ? ", " : "") + odd[i];
    if (odd.size() > 5) list += ", ...";
    notes.push_back(std::to_string(odd.size()) + " value(s) of the state dict are not tensors (" + list +
                    "): load_state_dict needs a module that expects them");
  }
  return t;
}

Prefixes prefixes_of(const TensorTable& t) {
  Prefixes p;
  std::vector<std::string> keys;
  keys.reserve(t.rows.size());
  for (const Row& r : t.rows) keys.push_back(r.name);
  p.report = tools::detect_wrappers(keys);
  p.leading = p.report.common_prefix;
  return p;
}

void prefix_notes(const Prefixes& p, const tools::Schema& s, std::vector<std::string>& notes) {
  const auto& w = p.report;
  if (w.with_module)
    notes.push_back("DataParallel/DDP prefix 'module.' in " + std::to_string(w.with_module) + " of " +
                    std::to_string(w.keys) + " keys: strip it to load into an unwrapped model" +
                    (s.layout == tools::Layout::mammoth ? " (Mammoth's loader removes it)" : ""));
  if (w.with_orig_mod)
    notes.push_back("torch.compile prefix '_orig_mod.' in " + std::to_string(w.with_orig_mod) + " of " +
                    std::to_string(w.keys) + " keys: strip it to load into an uncompiled model");
}

void name_notes(const tools::MammothName& n, const Value* args, std::vector<std::string>& notes) {
  if (!args || !args->is_dict() || n.paused) return;
  auto check = [&](const char* key, const std::string& from_name) {
    const Value* v = args->get(key);
    if (!v) return;
    std::string a;
    if (v->is(Kind::string)) a = v->as_str();
    else if (v->is(Kind::integer)) a = std::to_string(v->as_int());
    else if (v->is_none()) a = key == std::string_view("buffer_size") ? "0" : "None";
    else return;
    if (std::string_view(key) == "model" || std::string_view(key) == "dataset") std::replace(a.begin(), a.end(), '_', '-');
    if (a != from_name)
      notes.push_back(std::string("the file name says ") + key + " " + from_name + " but args say " + a);
  };
  check("model", n.model);
  check("dataset", n.dataset);
  check("buffer_size", std::to_string(n.buffer_size));
  check("n_epochs", std::to_string(n.n_epochs));
}

/// Tensors the sections above do not show, by key path.
TensorTable other_table(const Checkpoint& ck, StorageIds& ids, const std::unordered_set<const Value*>& covered,
                        const char* title, std::vector<std::string>& notes) {
  TensorTable t;
  t.title = title;
  std::vector<TensorVisit> visits;
  try {
    visits = ck.tensors();
  } catch (const Error& e) {
    notes.push_back(std::string("tensor walk stopped: ") + e.detail());
  }
  std::unordered_set<std::string> seen;
  for (const auto& v : visits) {
    if (covered.count(v.value) || !seen.insert(v.path).second) continue;
    std::string name = v.path.empty() ? "(root)" : v.path;
    add_row(t.rows, ids, name, name, v.value);
  }
  return t;
}

}  // namespace

std::string view_key(const Tensor& t) {
  std::string k = std::to_string(reinterpret_cast<uintptr_t>(t.storage.get())) + '/';
  k += dtype_name(t.dtype);
  k += '/' + std::to_string(t.storage_offset) + '/';
  for (auto d : t.shape) k += std::to_string(d) + ',';
  k += '/';
  for (auto d : t.stride) k += std::to_string(d) + ',';
  return k;
}

bool selected(const Options& opt, const Row& row, const Prefixes& p) {
  if (opt.filters.empty()) return true;
  std::string stripped = row.name;
  if (!p.leading.empty() && stripped.starts_with(p.leading)) stripped.erase(0, p.leading.size());
  for (const auto& f : opt.filters)
    if (fnmatch(f.c_str(), row.name.c_str(), 0) == 0 || fnmatch(f.c_str(), row.path.c_str(), 0) == 0 ||
        fnmatch(f.c_str(), stripped.c_str(), 0) == 0)
      return true;
  return false;
}

std::optional<double> number_of(const Value& v) {
  switch (v.kind()) {
    case Kind::floating: case Kind::integer: return v.as_float();
    case Kind::string: {
      const std::string& s = v.as_str();
      double d;
      auto r = std::from_chars(s.data(), s.data() + s.size(), d);
      if (r.ec == std::errc() && r.ptr == s.data() + s.size()) return d;
      return std::nullopt;
    }
    case Kind::ndarray: {
      const NdArray& a = v.ndarray();
      if (a.is_scalar && a.data && a.data->is(Kind::bytes) && a.descr == "<f8" && a.data->as_bytes().size() == 8) {
        double d;
        std::memcpy(&d, a.data->as_bytes().data(), 8);
        return d;
      }
      return std::nullopt;
    }
    default: return std::nullopt;
  }
}

Report analyze(const Checkpoint& ck, const Options& opt) {
  Report r;
  r.ck = &ck;
  r.path = ck.path();
  r.data_size = ck.file_size();
  std::error_code ec;
  r.size = std::filesystem::file_size(r.path, ec);
  if (ec) r.size = r.data_size;
  r.format = ck.format();
  r.zstd = r.format.era.find("zstd") != std::string::npos;
  r.schema = tools::recognise(ck.root());
  r.name = tools::parse_mammoth_name(r.path);
  r.weights_only = ck.weights_only_compatible();
  r.globals = ck.globals();
  const tools::Schema& s = r.schema;
  StorageIds ids(ck);
  std::unordered_set<const Value*> covered;

  if (s.model) {
    r.model = model_table(s, ids, r.notes);
    r.prefixes = prefixes_of(*r.model);
    prefix_notes(r.prefixes, s, r.notes);
    for (const Row& row : r.model->rows) covered.insert(row.value);
  }
  if (s.optimizer) {
    r.optimizer = analyze_optimizer(*s.optimizer, r.model ? &*r.model : nullptr);
    walk_tensors(*s.optimizer, [&](const TensorVisit& v) { return covered.insert(v.value), true; });
  }
  if (s.scheduler) r.scheduler = SchedulerInfo{scheduler_kind(*s.scheduler), s.scheduler};
  r.args = s.args;
  if (s.results) r.results = analyze_results(*s.results);
  if (s.buffer) {
    r.buffer = analyze_buffer(*s.buffer);
    for (const auto& [name, v] : buffer_tensors(*s.buffer)) {
      add_row(r.buffer->table.rows, ids, name, "buffer/" + name, v);
      covered.insert(v);
    }
    read_histograms(*r.buffer);
    finish_table(r.buffer->table, opt, r.prefixes);
  }
  if (s.layout == tools::Layout::mammoth) {
    if (r.name) name_notes(*r.name, s.args, r.notes);
    if (s.mode == "old_pickle")
      r.notes.push_back("old_pickle mode: current Mammoth loads with weights_only=True and cannot read it (quirk Q4)");
  }
  if (s.layout != tools::Layout::other && s.layout != tools::Layout::tensor && ck.root().is_dict()) {
    for (const auto& [k, v] : ck.root().items()) {
      std::string key = key_text(*k);
      if (std::find(s.extra_keys.begin(), s.extra_keys.end(), key) != s.extra_keys.end()) r.extra.emplace_back(key, v);
    }
  }
  bool generic = !s.model;
  r.other = other_table(ck, ids, covered, generic ? "tensors" : "other tensors", r.notes);
  finish_table(*r.other, opt, r.prefixes);
  if (r.other->unfiltered == 0 && !generic) r.other.reset();
  if (r.model) finish_table(*r.model, opt, r.prefixes);
  if (opt.stats) compute_all_stats(r, opt);
  return r;
}

}  // namespace ckpt::info
