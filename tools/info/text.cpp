// The human view of a Report: a header, then one block per section.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/cli.hpp"
#include "common/term.hpp"
#include "info/tree.hpp"
#include "info/views.hpp"

namespace ckpt::info {

using tools::escape;
using tools::grouped;
using tools::human_bytes;
using tools::Style;
using tools::Table;

namespace {

using Align = Table::Align;

std::string fixed2(double v) {
  if (!std::isfinite(v)) return tools::format_double(v);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string signed2(double v) { return (v > 0 ? "+" : "") + fixed2(v); }

std::string plural(uint64_t n, const char* one, const char* many) {
  return grouped(n) + " " + (n == 1 ? one : many);
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

class TextView {
 public:
  TextView(const Report& r, const Options& o) : r_(r), o_(o), st_(o.color) {}

  std::string render() {
    header();
    if (o_.globals) globals();
    if (r_.verify.ran) verify();
    for (const auto& n : r_.notes) out_ += "  " + st_.yellow("note:") + " " + escape(n) + "\n";
    if (o_.tree) {
      section("tree", "");
      TreeLimits lim;
      lim.depth = o_.depth;
      if (o_.full) lim.max_children = lim.max_lines = 0, lim.fold = false;
      out_ += render_tree(r_.ck->root(), "(root)", lim, st_);
      return std::move(out_);
    }
    if (r_.name) file_name();
    if (r_.model) tensor_section(*r_.model, "model");
    if (r_.optimizer) optimizer();
    if (r_.schema.has_scheduler_key || r_.scheduler) scheduler();
    if (r_.args) args();
    if (r_.results) results();
    if (r_.buffer) buffer();
    if (!r_.extra.empty()) extra();
    bool generic = r_.schema.layout == tools::Layout::other || r_.schema.layout == tools::Layout::tensor;
    if (generic) value_tree();
    if (r_.other && (generic || r_.other->unfiltered)) tensor_section(*r_.other, r_.other->title);
    if (!r_.stats_skipped.empty())
      out_ += "\n  " + st_.dim("no statistics for: " + escape(join(r_.stats_skipped, ", "))) + "\n";
    return std::move(out_);
  }

 private:
  void section(const std::string& title, const std::string& rest) {
    out_ += "\n" + st_.bold(st_.cyan(title));
    if (!rest.empty()) out_ += "  " + rest;
    out_ += "\n";
  }
  void field(const char* name, const std::string& value) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "  %-13s ", name);
    out_ += st_.dim(buf) + value + "\n";
  }

  // ---- header ----
  void header() {
    out_ += st_.bold(escape(r_.path)) + "\n";
    std::string size = human_bytes(r_.size) + " (" + grouped(r_.size) + " bytes)";
    if (r_.data_size != r_.size) size += ", " + human_bytes(r_.data_size) + " decompressed";
    field("size", size);
    field("container", container());
    field("layout", escape(r_.schema.description()));
    if (r_.ck->root().is_dict()) {
      std::vector<std::string> keys;
      for (const auto& [k, _] : r_.ck->root().items()) {
        if (keys.size() == 12) {
          keys.push_back("... (" + grouped(r_.ck->root().size()) + " in all)");
          break;
        }
        keys.push_back(escape(k->is(Kind::string) ? k->as_str() : repr(*k, 40)));
      }
      if (r_.schema.layout != tools::Layout::state_dict) field("keys", join(keys, ", "));
    }
    std::string why = weights_only_reason(r_);
    field("weights_only", why.empty() ? st_.green("yes") + " (torch.load(weights_only=True), torch >= 2.1, accepts it)"
                                      : st_.yellow("no") + ": " + escape(why));
  }

  std::string container() const {
    const FormatInfo& f = r_.format;
    std::vector<std::string> parts{container_name(f.container)};
    if (!f.era.empty() && f.era != parts[0]) parts.push_back(escape(f.era));
    if (f.container == Container::torch_zip || f.container == Container::torchscript) {
      parts.push_back("root '" + escape(f.root) + "'");
      if (!f.version.empty()) parts.push_back("version " + escape(f.version));
    }
    bool pickled = f.container != Container::safetensors && f.container != Container::hdf5;
    if (f.pickle_protocol && pickled) parts.push_back("pickle protocol " + std::to_string(f.pickle_protocol));
    if (!f.little_endian) parts.push_back("big-endian data");
    if (f.trailing_bytes) parts.push_back(grouped(f.trailing_bytes) + " bytes after the pickle");
    return join(parts, ", ");
  }

  void file_name() {
    const auto& n = *r_.name;
    if (n.paused) {
      section("file name", "Mammoth SIGINT/SIGTERM checkpoint (checkpoints/paused/<uuid4>.pt)");
      return;
    }
    section("file name", n.current_variant ? "Mammoth's current form (with dataset_config and uid)"
                                           : "Mammoth's documented form (no dataset_config, no uid)");
    std::vector<std::string> a{"model " + escape(n.model), "dataset " + escape(n.dataset)};
    if (n.current_variant) a.push_back("dataset_config " + escape(n.dataset_config));
    a.push_back("buffer_size " + std::to_string(n.buffer_size));
    a.push_back("n_epochs " + std::to_string(n.n_epochs));
    out_ += "  " + join(a, " · ") + "\n";
    const std::string& ts = n.timestamp;
    std::vector<std::string> b;
    if (!n.ckpt_name.empty()) b.push_back("ckpt_name " + escape(n.ckpt_name));
    b.push_back("timestamp " + ts.substr(0, 4) + "-" + ts.substr(4, 2) + "-" + ts.substr(6, 2) + " " + ts.substr(9, 2) +
                ":" + ts.substr(11, 2) + ":" + ts.substr(13, 2));
    if (n.current_variant) b.push_back("uid " + escape(n.uid));
    auto idx = n.task_index();
    b.push_back(idx ? "task " + n.task + " (saved after task " + n.task + ", 0-based)"
                    : n.task == "last" ? std::string("task last (--savecheck last)") : std::string("joint (--joint 1)"));
    out_ += "  " + join(b, " · ") + "\n";
  }

  // ---- tensor tables ----
  std::string totals_line(const TensorTable& t) const {
    const Totals& x = t.totals;
    std::string s;
    if (!o_.filters.empty()) s += grouped(t.rows.size()) + " of " + plural(t.unfiltered, "tensor", "tensors") + " match";
    else s += plural(x.tensors, "tensor", "tensors");
    if (x.storages != x.tensors) s += " on " + plural(x.storages, "storage", "storages");
    if (x.tensors == 0) return s;
    s += " · " + tools::human_count(x.numel) + (x.numel == 1 ? " value" : " values");
    if (x.numel >= 1000) s += " (" + grouped(x.numel) + ")";
    s += " · " + human_bytes(x.bytes);
    if (x.storage_bytes > x.bytes) s += " (storages " + human_bytes(x.storage_bytes) + ")";
    return s;
  }

  void tensor_section(const TensorTable& t, const std::string& title) {
    const bool is_model = r_.model && &t == &*r_.model;
    std::string where;
    if (is_model && !r_.schema.model_key.empty()) where = "under '" + escape(r_.schema.model_key) + "' · ";
    section(title, where + totals_line(t));
    if (is_model) prefix_line();
    if (!t.rows.empty()) out_ += tensor_table(t.rows).render(st_);
    dtype_totals(t.totals);
  }

  void prefix_line() {
    const auto& w = r_.prefixes.report;
    if (w.keys == 0) return;
    std::vector<std::string> parts;
    auto count = [&](uint64_t n) { return n == w.keys ? std::string("every key") : grouped(n) + " of " + grouped(w.keys) + " keys"; };
    if (w.with_net == w.keys) parts.push_back("net. (Mammoth's ContinualModel.net) on every key");
    if (w.with_module) parts.push_back("module. (DataParallel/DDP) on " + count(w.with_module));
    if (w.with_orig_mod) parts.push_back("_orig_mod. (torch.compile) on " + count(w.with_orig_mod));
    if (parts.empty()) return;
    out_ += "  " + st_.dim("prefixes:") + " " + join(parts, "; ") + "\n";
  }

  void dtype_totals(const Totals& x) {
    if (x.by_dtype.size() < 2) return;
    std::vector<std::string> parts;
    for (const auto& d : x.by_dtype)
      parts.push_back(std::string(dtype_name(d.dtype)) + " " + plural(d.tensors, "tensor", "tensors") + ", " +
                      tools::human_count(d.numel) + (d.numel == 1 ? " value, " : " values, ") + human_bytes(d.bytes));
    out_ += "  " + st_.dim("by dtype:") + " " + join(parts, "; ") + "\n";
  }

  /// Rows folded by name pattern (same dtype, shape and alias status), or all with --full.
  Table tensor_table(const std::vector<Row>& rows) {
    std::vector<std::vector<const Row*>> groups;
    std::vector<std::string> labels;
    if (o_.full) {
      for (const Row& r : rows) {
        groups.push_back({&r});
        labels.push_back(r.name);
      }
    } else {
      std::vector<std::string> names, sigs;
      for (const Row& r : rows) {
        names.push_back(r.name);
        sigs.push_back(std::string(dtype_name(r.tensor().dtype)) + tools::shape_str(r.tensor().shape) +
                       (r.alias_of.empty() ? "" : r.same_view ? "=" : "~"));
      }
      for (const auto& f : tools::fold_names(names, sigs)) {
        std::vector<const Row*> g;
        for (size_t m : f.members) g.push_back(&rows[m]);
        groups.push_back(std::move(g));
        labels.push_back(f.pattern);
      }
    }
    // The columns "n" and "alias" only when some row uses them.
    bool any_n = std::any_of(groups.begin(), groups.end(), [](const auto& g) { return g.size() > 1; });
    bool any_alias = std::any_of(rows.begin(), rows.end(), [](const Row& r) { return !r.alias_of.empty(); });
    std::vector<std::string> head{"name", "dtype", "shape"};
    std::vector<Align> align{Align::left, Align::left, Align::left};
    auto col = [&](const char* h, Align a) { head.push_back(h), align.push_back(a); };
    if (any_n) col("n", Align::right);
    col("numel", Align::right);
    col("bytes", Align::right);
    if (any_alias) col("alias", Align::left);
    if (o_.stats)
      for (const char* h : {"min", "max", "mean", "std", "nan", "inf", "zeros"}) col(h, Align::right);
    Table table(head, align);
    for (size_t i = 0; i < groups.size(); ++i) {
      const auto& g = groups[i];
      const Tensor& t = g[0]->tensor();
      uint64_t numel = 0, bytes = 0;
      for (const Row* r : g) numel += r->tensor().numel(), bytes += r->tensor().nbytes();
      std::vector<std::string> row{escape(labels[i]), std::string(dtype_name(t.dtype)), tools::shape_str(t.shape)};
      if (any_n) row.push_back(g.size() > 1 ? "×" + std::to_string(g.size()) : "");
      row.push_back(grouped(numel));
      row.push_back(human_bytes(bytes));
      if (any_alias) {
        std::string alias;
        if (!g[0]->alias_of.empty())
          alias = g.size() > 1 ? std::string(g[0]->same_view ? "aliases" : "views of other tensors")
                               : (g[0]->same_view ? "= " : "view of ") + escape(g[0]->alias_of);
        row.push_back(st_.dim(alias));
      }
      if (o_.stats) stats_cells(row, merged_stats(r_, g));
      table.add(std::move(row));
    }
    return table;
  }

  void stats_cells(std::vector<std::string>& row, const std::optional<tools::TensorStats>& s) {
    if (!s) {
      row.insert(row.end(), 7, "-");
      return;
    }
    auto num = [](double v) { return std::isnan(v) ? std::string("-") : tools::format_short(v); };
    uint64_t inf = s->posinf + s->neginf;
    row.push_back(num(s->min));
    row.push_back(num(s->max));
    row.push_back(num(s->mean));
    row.push_back(num(s->std));
    row.push_back(s->nan ? st_.red(grouped(s->nan)) : "0");
    row.push_back(inf ? st_.red(grouped(inf)) : "0");
    row.push_back(grouped(s->zeros));
  }

  // ---- optimizer / scheduler / args ----
  void optimizer() {
    const OptimizerInfo& o = *r_.optimizer;
    section("optimizer", st_.bold(o.kind) + " · " + plural(o.groups.size(), "param group", "param groups") + " · " +
                             plural(o.params, "parameter", "parameters") + " " + st_.dim("(from the keys " + o.why + ")"));
    if (!o.groups.empty()) {
      std::vector<std::string> head{"group", "params"};
      for (const auto& k : o.hyper_keys) head.push_back(escape(k));
      Table t(head, {Align::right, Align::right});
      size_t limit = o_.full ? o.groups.size() : std::min<size_t>(o.groups.size(), 8);
      for (size_t i = 0; i < limit; ++i) {
        const Value* g = o.groups[i];
        const Value* ps = g->get("params");
        std::vector<std::string> row{std::to_string(i), ps && ps->is_sequence() ? grouped(ps->size()) : "-"};
        for (const auto& k : o.hyper_keys) {
          const Value* v = g->get(k);
          row.push_back(v ? repr(*v, 40) : "-");
        }
        t.add(std::move(row));
      }
      out_ += t.render(st_);
      if (limit < o.groups.size())
        out_ += "  " + st_.dim("... " + grouped(o.groups.size() - limit) + " more groups (--full shows them)") + "\n";
    }
    if (o.state_keys.empty()) {
      out_ += "  state: " + std::string(o.with_state ? "entries without tensors" : "empty (no step taken yet)") + "\n";
    } else {
      out_ += "  state of " + plural(o.with_state, "parameter", "parameters") + ":\n";
      Table t({"key", "tensors", "dtype", "numel", "bytes", "values"},
              {Align::left, Align::right, Align::left, Align::right, Align::right, Align::left});
      for (const auto& s : o.state_keys) {
        std::vector<std::string> dts;
        for (DType d : s.dtypes) dts.emplace_back(dtype_name(d));
        std::string values;
        if (s.nones) values += "None ×" + grouped(s.nones) + (s.key == "momentum_buffer" ? " (no momentum)" : "");
        if (!s.scalar_values.empty())
          values += (values.empty() ? "" : "; ") + escape(join(s.scalar_values, ", ")) + (s.scalar_values.size() == 5 ? ", ..." : "");
        if (s.stats) values += (values.empty() ? "" : "; ") + stats_text(*s.stats);
        t.add({escape(s.key), s.tensors ? grouped(s.tensors) : "-", join(dts, ","), s.tensors ? grouped(s.numel) : "-",
               s.tensors ? human_bytes(s.bytes) : "-", values});
      }
      out_ += t.render(st_, 4);
    }
    if (!o.param_names.empty()) {
      std::string how = o.shapes_checked ? "state shapes agree with" : "same count as";
      out_ += "  parameters 0.." + std::to_string(o.param_names.size() - 1) + ": " + how + " the model's parameters (" +
              escape(o.param_names.front()) + " ... " + escape(o.param_names.back()) + ")\n";
      if (o_.full) {
        Table t({"index", "parameter"}, {Align::right, Align::left});
        for (size_t i = 0; i < o.param_names.size(); ++i) t.add({std::to_string(i), escape(o.param_names[i])});
        out_ += t.render(st_, 4);
      }
    }
  }

  std::string stats_text(const tools::TensorStats& s) {
    std::string t = "min " + tools::format_short(s.min) + " max " + tools::format_short(s.max) + " mean " +
                    tools::format_short(s.mean) + " std " + tools::format_short(s.std);
    if (s.nan) t += " " + st_.red("nan " + grouped(s.nan));
    if (s.posinf + s.neginf) t += " " + st_.red("inf " + grouped(s.posinf + s.neginf));
    return t;
  }

  void scheduler() {
    if (!r_.scheduler) {
      section("scheduler", "none (no --lr_scheduler)");
      return;
    }
    section("scheduler", st_.bold(r_.scheduler->kind));
    key_values(*r_.scheduler->value, 0);
  }

  /// A dict as a key = value table; None values folded into one line.
  void key_values(const Value& d, size_t hide_none_after) {
    if (!d.is_dict()) {
      out_ += render_tree(d, "(value)", tree_limits(), st_);
      return;
    }
    Table t({"key", "value"});
    std::vector<std::string> nones;
    for (const auto& [k, v] : d.items()) {
      std::string key = escape(k->is(Kind::string) ? k->as_str() : repr(*k, 40));
      if (v->is_none() && hide_none_after && !o_.full) {
        nones.push_back(key);
        continue;
      }
      t.add({key, summary(*v)});
    }
    out_ += t.render(st_);
    if (!nones.empty()) out_ += "  " + st_.dim("None: " + join(nones, ", ")) + "\n";
  }

  void args() {
    const Value& a = *r_.args;
    std::string what = a.is_dict() ? plural(a.size(), "entry", "entries") : std::string(kind_name(a.kind()));
    if (!a.type_name().empty()) what += " · " + std::string(a.type_name());
    section(r_.schema.layout == tools::Layout::lightning ? "hyper_parameters" : "args", what);
    key_values(a, 1);
  }

  // ---- results ----
  void matrix(const char* title, const std::vector<std::vector<double>>& m) {
    size_t T = m.size(), cols = 0;
    for (const auto& row : m) cols = std::max(cols, row.size());
    std::vector<std::string> head{"after"};
    std::vector<Align> align{Align::left};
    for (size_t i = 0; i < cols; ++i) head.push_back("task " + std::to_string(i)), align.push_back(Align::right);
    head.push_back("mean");
    align.push_back(Align::right);
    Table t(head, align);
    for (size_t r = 0; r < T; ++r) {
      std::vector<std::string> row{"task " + std::to_string(r)};
      double sum = 0;
      for (size_t i = 0; i < cols; ++i) {
        row.push_back(i < m[r].size() ? fixed2(m[r][i]) : "");
        if (i < m[r].size()) sum += m[r][i];
      }
      row.push_back(m[r].empty() ? "" : st_.bold(fixed2(sum / static_cast<double>(m[r].size()))));
      t.add(std::move(row));
    }
    out_ += "  " + std::string(title) + "\n" + t.render(st_, 4);
  }

  void results() {
    const ResultsInfo& x = *r_.results;
    if (!x.parsed) {
      section("results", "not Mammoth's [results, results_mask_classes, logger] shape");
      out_ += render_tree(*x.value, "results", tree_limits(), st_);
      return;
    }
    section("results", plural(x.class_il.size(), "task", "tasks") +
                           " · accuracy (%) on each task's test set (columns) after training each task (rows)");
    if (x.class_il.empty()) return;
    matrix(x.task_il_measured ? "Class-IL" : "Class-IL (Domain-IL for domain-il settings)", x.class_il);
    if (x.task_il_measured) matrix("Task-IL", x.task_il);
    else out_ += "  " + st_.dim("Task-IL: not measured (all zero: a domain-il setting)") + "\n";
    std::vector<std::string> m;
    if (x.bwt) m.push_back("BWT " + signed2(*x.bwt) + (x.bwt_task_il ? " / " + signed2(*x.bwt_task_il) : ""));
    if (x.forgetting)
      m.push_back("forgetting " + fixed2(*x.forgetting) + (x.forgetting_task_il ? " / " + fixed2(*x.forgetting_task_il) : ""));
    if (!m.empty())
      out_ += "  " + join(m, " · ") + " " +
              st_.dim(std::string("(") + (x.bwt_task_il ? "Class-IL / Task-IL, " : "") +
                      "computed from the matrix as Mammoth's utils/metrics.py)") + "\n";
    if (!x.logger_metrics.empty()) {
      std::vector<std::string> lm;
      for (const auto& [k, v] : x.logger_metrics) lm.push_back(k + " " + fixed2(v));
      out_ += "  logger: " + join(lm, " · ") + "\n";
    }
  }

  // ---- buffer ----
  void buffer() {
    const BufferInfo& b = *r_.buffer;
    std::string what = escape(b.type);
    if (b.examples) what += " · " + plural(b.examples, "example", "examples");
    section("buffer", what + " · " + totals_line(b.table));
    if (!b.table.rows.empty()) out_ += tensor_table(b.table.rows).render(st_);
    if (!b.scalars.empty()) {
      Table t({"attribute", "value"});
      for (const auto& [k, v] : b.scalars) t.add({escape(k), v});
      out_ += t.render(st_);
    }
    for (const auto& [name, h] : b.histograms) histogram(name, h);
    for (const auto& n : b.notes) out_ += "  " + st_.dim(escape(n)) + "\n";
  }

  void histogram(const std::string& name, const std::map<int64_t, uint64_t>& h) {
    uint64_t total = 0, top = 0;
    for (const auto& [_, c] : h) total += c, top = std::max(top, c);
    out_ += "  " + escape(name) + ": " + plural(h.size(), "distinct value", "distinct values") + " in " + grouped(total) + "\n";
    if (h.size() > 24 && !o_.full) {
      std::string line = "    ";
      for (const auto& [v, c] : h) {
        std::string cell = std::to_string(v) + ":" + grouped(c) + " ";
        if (line.size() + cell.size() > 100) out_ += line + "\n", line = "    ";
        line += cell;
      }
      out_ += line + "\n";
      return;
    }
    size_t label_w = 0;
    for (const auto& [v, _] : h) label_w = std::max(label_w, std::to_string(v).size());
    for (const auto& [v, c] : h) {
      std::string label = std::to_string(v);
      size_t cells = top ? static_cast<size_t>(std::llround(24.0 * static_cast<double>(c) / static_cast<double>(top))) : 0;
      std::string bar;
      for (size_t i = 0; i < cells; ++i) bar += "█";
      out_ += "    " + std::string(label_w - label.size(), ' ') + label + " " + st_.blue(bar) + (bar.empty() ? "" : " ") +
              grouped(c) + "\n";
    }
  }

  // ---- other keys and other layouts ----
  TreeLimits tree_limits() const {
    TreeLimits lim;
    if (o_.full) lim.max_children = lim.max_lines = 0, lim.fold = false;
    return lim;
  }

  void extra() {
    section("other keys", "top-level keys the layout does not explain");
    TreeLimits lim = tree_limits();
    lim.depth = o_.full ? -1 : 1;
    if (!o_.full) lim.max_children = 12;
    for (const auto& [k, v] : r_.extra) out_ += render_tree(*v, escape(k), lim, st_);
  }

  void value_tree() {
    section("value tree", o_.full ? "" : "(--tree for every level, --full for every entry)");
    TreeLimits lim = tree_limits();
    if (!o_.full) lim.depth = 3, lim.max_lines = 200;
    if (o_.depth >= 0) lim.depth = o_.depth;
    out_ += render_tree(r_.ck->root(), "(root)", lim, st_);
  }

  // ---- audit ----
  void globals() {
    section("globals", plural(r_.globals.size(), "global", "globals") + " the pickle references, in first-use order");
    if (!r_.globals.empty()) out_ += globals_table(r_.globals, st_);
  }

  void verify() {
    const VerifyResult& v = r_.verify;
    section("verify", v.ok ? st_.green("OK") : st_.red("FAILED"));
    out_ += "  " + escape(v.message) + "\n";
  }

  const Report& r_;
  const Options& o_;
  Style st_;
  std::string out_;
};

}  // namespace

std::string render_text(const Report& r, const Options& opt) { return TextView(r, opt).render(); }

std::string globals_table(const std::vector<GlobalRef>& globals, const Style& st) {
  Table t({"verdict", "global", "uses", "first at", "meaning"},
          {Align::left, Align::left, Align::right, Align::right, Align::left});
  for (const auto& g : globals) {
    std::string v = global_verdict_name(g.verdict);
    std::string colored = g.verdict == GlobalVerdict::allowed ? st.green(v)
                          : g.verdict == GlobalVerdict::denied ? st.red(v)
                                                               : st.yellow(v);
    char at[32];
    std::snprintf(at, sizeof at, "0x%llx", static_cast<unsigned long long>(g.first_offset));
    t.add({colored, escape(g.module + "." + g.name), grouped(g.count), at, st.dim(verdict_meaning(g.verdict))});
  }
  return t.render(st);
}

std::string render_refused_text(const Refusal& r, const Options& opt) {
  Style st(opt.color);
  std::string s = st.bold(escape(r.path)) + "\n  " + st.red("refused") + "       " + tools::describe_error(*r.error) + "\n";
  s += "\n" + st.bold(st.cyan("globals")) + "  " + plural(r.globals.size(), "global", "globals") +
       " the pickle references (audit: nothing was called)\n";
  if (!r.globals.empty()) s += globals_table(r.globals, st);
  if (r.audit_stopped)
    s += "  " + st.yellow("audit stopped early:") + " " + tools::describe_error(*r.audit_stopped) + "\n";
  return s;
}

}  // namespace ckpt::info
