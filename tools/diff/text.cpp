// The terminal report. Layout: the two files, then one block per section,
// then a verdict line that says what the exit code will be.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "common/keys.hpp"
#include "diff/render.hpp"

namespace ckpt::tools::diff {

namespace {

using Align = Table::Align;
constexpr size_t kDefaultTop = 20;

size_t top_of(const Options& o) {
  if (!o.top) return kDefaultTop;
  return *o.top == 0 ? SIZE_MAX : *o.top;
}

std::string plural(uint64_t n, std::string_view one, std::string_view many = {}) {
  std::string s = std::to_string(n) + " ";
  if (n == 1) return s + std::string(one);
  return s + (many.empty() ? std::string(one) + "s" : std::string(many));
}

std::string fmt(double v) { return format_short(v); }

// Flat element index -> "[i, j, k]" in `shape`.
std::string index_str(uint64_t flat, const std::vector<int64_t>& shape) {
  if (flat == Metrics::no_index) return "";
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    uint64_t ext = static_cast<uint64_t>(std::max<int64_t>(shape[d], 1));
    idx[d] = static_cast<int64_t>(flat % ext);
    flat /= ext;
  }
  return shape_str(idx);
}

std::string verdict_text(Verdict v, const Style& st) {
  switch (v) {
    case Verdict::identical: return st.green("identical");
    case Verdict::within_tolerance: return st.yellow("within tol");
    case Verdict::changed: return st.red("changed");
  }
  return "";
}

std::string value_text(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  return fmt(v);
}

// "938 → 1876" for one-element tensors ("" otherwise).
std::string scalar_change(const TensorResult& r) {
  if (r.int_a && r.int_b) return std::to_string(*r.int_a) + " → " + std::to_string(*r.int_b);
  if (r.value_a && r.value_b) return value_text(*r.value_a) + " → " + value_text(*r.value_b);
  return "";
}

// What a row's last column says: the verdict and anything structural.
std::string status_text(const TensorResult& r, const Style& st) {
  std::string s;
  if (r.status == Status::shape_changed) return st.red("shape changed");
  s = verdict_text(r.verdict, st);
  if (r.status == Status::grown) {
    int64_t added = r.rows_b() - r.rows_a();
    s += st.red(", grew +" + plural(static_cast<uint64_t>(added), "row"));
  }
  if (r.status == Status::undecodable) s += " (bytes only: " + std::string(dtype_name(r.dtype_a)) + ")";
  if (r.dtype_changed())
    s += st.red(", dtype " + std::string(dtype_name(r.dtype_a)) + "→" + std::string(dtype_name(r.dtype_b)));
  if (r.m.nan_pairs) s += ", " + plural(r.m.nan_pairs, "NaN pair");
  if (r.verdict == Verdict::changed && r.m.mismatched && r.m.mismatched < r.m.elements)
    s += st.dim(" (" + grouped(r.m.mismatched) + "/" + grouped(r.m.elements) + ")");
  return s;
}

std::string shape_text(const TensorResult& r) {
  if (r.shape_a == r.shape_b) return shape_str(r.shape_a);
  return shape_str(r.shape_a) + "→" + shape_str(r.shape_b);
}

std::string key_text(const TensorResult& r) {
  std::string k = escape(r.pair.key);
  if (!r.pair.aliases.empty()) k += " (+" + plural(r.pair.aliases.size(), "alias", "aliases") + ")";
  if (!r.pair.note.empty()) k += " (" + escape(r.pair.note) + ")";
  return k;
}

// "58 changed, 2 within tolerance, 2 identical"
std::string verdict_counts(size_t changed, size_t within, size_t identical) {
  std::vector<std::string> parts;
  if (changed) parts.push_back(std::to_string(changed) + " changed");
  if (within) parts.push_back(std::to_string(within) + " within tolerance");
  if (identical) parts.push_back(std::to_string(identical) + " identical");
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? ", " : "") + parts[i];
  return s.empty() ? "none" : s;
}

template <class R>
std::string counts_of(const std::vector<R>& rows) {
  size_t c = 0, w = 0, i = 0;
  for (const auto& r : rows) {
    bool structural;
    if constexpr (std::is_same_v<R, TensorResult>) structural = r.status == Status::shape_changed;
    else structural = r.shape_changed;
    if (structural || r.verdict == Verdict::changed) ++c;
    else if (r.verdict == Verdict::within_tolerance) ++w;
    else ++i;
  }
  return verdict_counts(c, w, i);
}

void more_line(std::string& out, size_t hidden, size_t identical_hidden, const Style& st, size_t indent) {
  if (!hidden && !identical_hidden) return;
  std::string s(indent, ' ');
  std::vector<std::string> parts;
  if (hidden) parts.push_back("… " + std::to_string(hidden) + " more (--top 0 lists all)");
  if (identical_hidden) parts.push_back(std::to_string(identical_hidden) + " identical not listed (--all lists them)");
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? "; " : "") + parts[i];
  out += st.dim(s) + "\n";
}

// One table of float tensors (parameters, BN statistics, optimizer or buffer state).
void tensor_table(std::string& out, const std::vector<const TensorResult*>& rows, const Options& o,
                  const Style& st, size_t indent) {
  Table t({"key", "shape", "rel.change", "max|Δ|", "at", "‖Δ‖", "cosine", "verdict"},
          {Align::left, Align::left, Align::right, Align::right, Align::left, Align::right, Align::right, Align::left});
  size_t shown = 0, hidden = 0, identical_hidden = 0;
  const size_t top = top_of(o);
  for (const TensorResult* r : rows) {
    if (!o.show_identical && !r->differs() && r->verdict == Verdict::identical) {
      ++identical_hidden;
      continue;
    }
    if (shown >= top) {
      ++hidden;
      continue;
    }
    ++shown;
    bool metrics = r->status == Status::compared || r->status == Status::grown;
    t.add({key_text(*r), shape_text(*r), metrics ? fmt(r->m.rel_change()) : "",
           metrics ? fmt(r->m.max_abs) : "", metrics ? index_str(r->m.max_abs_at, r->shape_a) : "",
           metrics ? fmt(r->m.l2()) : "", metrics ? fmt(r->m.cosine()) : "", status_text(*r, st)});
  }
  if (t.rows()) out += t.render(st, indent);
  more_line(out, hidden, identical_hidden, st, indent);
}

void module_table(std::string& out, const std::vector<ModuleResult>& mods, const Options& o, const Style& st,
                  size_t indent) {
  Table t({"module", "tensors", "elements", "rel.change", "max|Δ|", "‖Δ‖", "cosine", "verdict"},
          {Align::left, Align::right, Align::right, Align::right, Align::right, Align::right, Align::right, Align::left});
  size_t shown = 0, hidden = 0, identical_hidden = 0;
  const size_t top = top_of(o);
  for (const auto& m : mods) {
    if (!o.show_identical && !m.differs() && m.verdict == Verdict::identical) {
      ++identical_hidden;
      continue;
    }
    if (shown++ >= top) {
      ++hidden;
      continue;
    }
    std::string v = m.shape_changed ? st.red("shape changed") : verdict_text(m.verdict, st);
    if (m.grown) v += st.red(", grown");
    if (m.dtype_changed) v += st.red(", dtype changed");
    t.add({escape(m.module), std::to_string(m.tensors), human_count(m.m.elements), fmt(m.m.rel_change()),
           fmt(m.m.max_abs), fmt(m.m.l2()), fmt(m.m.cosine()), v});
  }
  if (t.rows()) out += t.render(st, indent);
  more_line(out, hidden, identical_hidden, st, indent);
}

// Integer tensors: one-element ones as "A → B", folded when many make the
// same move (every num_batches_tracked of a net goes 938 → 1876).
void int_table(std::string& out, const std::vector<const TensorResult*>& rows, const Options& o, const Style& st,
               size_t indent) {
  std::vector<const TensorResult*> shown_rows;
  size_t identical_hidden = 0;
  for (const auto* r : rows) {
    if (!o.show_identical && !r->differs() && r->verdict == Verdict::identical) ++identical_hidden;
    else shown_rows.push_back(r);
  }
  std::vector<std::string> names, sigs;
  for (const auto* r : shown_rows) {
    names.push_back(r->pair.key);
    std::string sig = shape_text(*r) + '|' + std::string(dtype_name(r->dtype_a)) + '|' +
                      std::string(dtype_name(r->dtype_b)) + '|';
    std::string sc = scalar_change(*r);
    sig += sc.empty() ? r->pair.key : sc;  // multi-element tensors never fold
    sigs.push_back(sig);
  }
  Table t({"key", "shape", "dtype", "change", "verdict"});
  size_t shown = 0, hidden = 0;
  const size_t top = top_of(o);
  for (const auto& f : fold_names(names, sigs)) {
    if (shown++ >= top) {
      ++hidden;
      continue;
    }
    const TensorResult& r = *shown_rows[f.members[0]];
    std::string change;
    if (r.status == Status::shape_changed) change = "";
    else if (!scalar_change(r).empty()) change = scalar_change(r);
    else if (r.m.differing) change = grouped(r.m.differing) + "/" + grouped(r.m.elements) + " differ, max|Δ| " + fmt(r.m.max_abs);
    std::string key = escape(f.pattern);
    if (f.members.size() > 1) key += " (×" + std::to_string(f.members.size()) + ")";
    std::string dtype(dtype_name(r.dtype_a));
    if (r.dtype_changed()) dtype += "→" + std::string(dtype_name(r.dtype_b));
    t.add({key, shape_text(r), dtype, change, status_text(r, st)});
  }
  if (t.rows()) out += t.render(st, indent);
  more_line(out, hidden, identical_hidden, st, indent);
}

// Tables of one section's tensor results, one per category.
void category_tables(std::string& out, const std::vector<TensorResult>& results, const Options& o,
                     const Style& st, size_t indent) {
  for (Category c : {Category::parameter, Category::bn_stat, Category::int_buffer, Category::optimizer_state,
                     Category::buffer, Category::other}) {
    std::vector<const TensorResult*> rows;
    for (const auto& r : results)
      if (r.pair.category == c) rows.push_back(&r);
    if (rows.empty()) continue;
    std::string pad(indent, ' ');
    std::vector<TensorResult> copy;
    for (auto* r : rows) copy.push_back(*r);
    out += pad + st.bold(category_title(c)) + " (" + std::to_string(rows.size()) + "): " + counts_of(copy);
    bool all_identical = std::all_of(rows.begin(), rows.end(), [](const TensorResult* r) {
      return !r->differs() && r->verdict == Verdict::identical;
    });
    if (all_identical && !o.show_identical) {
      out += "\n";
      continue;
    }
    if (c == Category::int_buffer) {
      out += "\n";
      int_table(out, rows, o, st, indent + 2);
      continue;
    }
    if (o.by_module) {
      auto mods = by_module(copy);
      sort_by_change(mods);
      out += "; " + plural(mods.size(), "module") + ", by relative change\n";
      module_table(out, mods, o, st, indent + 2);
    } else {
      out += "; by relative change\n";
      tensor_table(out, rows, o, st, indent + 2);
    }
  }
}

std::string named_text(const Named& n) {
  const Tensor& t = *n.tensor;
  return escape(n.key) + "  " + shape_str(t.shape) + " " + std::string(dtype_name(t.dtype));
}

void only_lines(std::string& out, const std::vector<Named>& only, const char* side, const Options& o,
                const Style& st) {
  if (only.empty()) return;
  const size_t top = top_of(o);
  out += "  " + st.bold(std::string("only in ") + side) + " (" + std::to_string(only.size()) + "):\n";
  for (size_t i = 0; i < only.size() && i < top; ++i) out += "    " + named_text(only[i]) + "\n";
  if (only.size() > top) more_line(out, only.size() - top, 0, st, 4);
}

// The dtypes compared and their tolerances, once per report.
std::string tolerance_line(const std::vector<const TensorResult*>& rows, const Options& o) {
  std::map<std::string, Tolerance> seen;
  for (const auto* r : rows) {
    std::string name(dtype_name(r->dtype_a));
    if (r->dtype_changed()) name += "→" + std::string(dtype_name(r->dtype_b));
    seen.emplace(name, r->tol);
  }
  if (seen.empty()) return "";
  std::string s = "tolerance (|b−a| ≤ atol + rtol·|a|, A is the reference; ";
  s += o.policy.rtol || o.policy.atol ? "--rtol/--atol, else " : "";
  s += "assert_close defaults):";
  bool first = true;
  for (const auto& [name, t] : seen) {
    s += (first ? " " : ", ") + name + " " + (t.rtol == 0 && t.atol == 0 ? "exact" : "rtol " + fmt(t.rtol) + " atol " + fmt(t.atol));
    first = false;
  }
  if (o.policy.equal_nan) s += "; NaN == NaN";
  return s + "\n";
}

void model_block(std::string& out, const ModelDiff& m, const std::string& title, const Options& o, const Style& st) {
  if (!m.present_a && !m.present_b) {
    out += st.bold(title) + ": none in either file\n";
    return;
  }
  size_t aliases = 0;
  for (const auto& t : m.tensors) aliases += t.pair.aliases.size();
  out += st.bold(title) + ": " + plural(m.tensors.size(), "tensor") + " compared";
  if (aliases) out += " (+" + plural(aliases, "alias key") + ")";
  out += ": " + counts_of(m.tensors);
  size_t grown = m.count(Status::grown), shape = m.count(Status::shape_changed), dt = m.dtype_changes();
  if (grown) out += "; " + std::to_string(grown) + " grown";
  if (shape) out += "; " + std::to_string(shape) + " shape changed";
  if (dt) out += "; " + std::to_string(dt) + " dtype changed";
  out += "; " + std::to_string(m.only_a.size()) + " only in A, " + std::to_string(m.only_b.size()) + " only in B\n";
  only_lines(out, m.only_a, "A", o, st);
  only_lines(out, m.only_b, "B", o, st);
  if (m.strip_hint)
    out += st.yellow("  note: " + plural(m.strip_hint, "more key") + " pair up with --strip-prefix auto") + "\n";
  for (const auto& t : m.tensors) {
    if (t.status != Status::grown) continue;
    int64_t added = t.rows_b() - t.rows_a();
    out += "  grown: " + escape(t.pair.key) + " " + shape_text(t) + ": " + std::to_string(t.rows_a()) +
           " old rows compared (" + verdict_text(t.verdict, st) + "), rows " + std::to_string(t.rows_a()) + "–" +
           std::to_string(t.rows_b() - 1) + " new (+" + plural(static_cast<uint64_t>(added), "added class", "added classes") + ")\n";
  }
  std::vector<const TensorResult*> all;
  for (const auto& t : m.tensors) all.push_back(&t);
  if (auto tl = tolerance_line(all, o); !tl.empty()) out += "  " + st.dim(tl);
  category_tables(out, m.tensors, o, st, 2);
}

std::string json_text(const json& j) { return escape(j.dump()); }

void config_lines(std::string& out, const ConfigDiff& d, const Style& st, size_t indent, size_t top) {
  std::string pad(indent, ' ');
  size_t shown = 0;
  for (const auto& e : d.entries) {
    if (shown++ >= top) break;
    switch (e.kind) {
      case ConfigEntry::Kind::changed:
        out += pad + st.yellow("~ ") + escape(e.key) + ": " + json_text(e.a) + " → " + json_text(e.b) + "\n";
        break;
      case ConfigEntry::Kind::only_a:
        out += pad + st.red("- ") + escape(e.key) + ": " + json_text(e.a) + st.dim("  (only in A)") + "\n";
        break;
      case ConfigEntry::Kind::only_b:
        out += pad + st.green("+ ") + escape(e.key) + ": " + json_text(e.b) + st.dim("  (only in B)") + "\n";
        break;
    }
  }
  if (d.entries.size() > top) more_line(out, d.entries.size() - top, 0, st, indent);
}

void config_block(std::string& out, const char* title, const ConfigDiff& d, const Options& o, const Style& st) {
  out += st.bold(title) + ": ";
  if (!d.present_a || !d.present_b) {  // present on one side only: no point listing every key
    if (!d.present_a && !d.present_b) out += "none in either file\n";
    else out += std::string("only in ") + (d.present_a ? "A" : "B") + " (" + plural(d.entries.size(), "key") + ")\n";
    return;
  }
  size_t changed = 0, oa = 0, ob = 0;
  for (const auto& e : d.entries)
    (e.kind == ConfigEntry::Kind::changed ? changed : e.kind == ConfigEntry::Kind::only_a ? oa : ob)++;
  if (d.entries.empty()) out += "identical (" + plural(d.equal, "key") + ")\n";
  else
    out += std::to_string(changed) + " differ, " + std::to_string(oa) + " only in A, " + std::to_string(ob) +
           " only in B, " + std::to_string(d.equal) + " equal\n";
  config_lines(out, d, st, 4, top_of(o) == SIZE_MAX ? SIZE_MAX : std::max<size_t>(top_of(o), 40));
}

void optimizer_block(std::string& out, const OptimizerDiff& d, const Options& o, const Style& st) {
  if (!d.present_a && !d.present_b) {
    out += st.bold("optimizer") + ": none in either file\n";
    return;
  }
  if (!d.present_a || !d.present_b) {
    out += st.bold("optimizer") + ": only in " + (d.present_a ? "A" : "B") + " (" +
           plural(d.present_a ? d.params_a : d.params_b, "param") + ")\n";
    return;
  }
  out += st.bold("optimizer") + ": ";
  auto pair_text = [](uint64_t a, uint64_t b) {
    return a == b ? std::to_string(a) : std::to_string(a) + " → " + std::to_string(b);
  };
  out += pair_text(d.groups_a, d.groups_b) + " param group(s), " + pair_text(d.params_a, d.params_b) + " params; ";
  out += d.hyper.entries.empty() ? "hyper-parameters identical\n"
                                 : plural(d.hyper.entries.size(), "hyper-parameter") + " differ\n";
  config_lines(out, d.hyper, st, 4, SIZE_MAX);
  if (!d.state.empty()) {
    out += "  state:";
    for (size_t i = 0; i < d.state.size(); ++i) {
      const StateKind& k = d.state[i];
      auto side = [](uint64_t t, uint64_t n, uint64_t s) {
        std::vector<std::string> parts;
        if (t) parts.push_back(std::to_string(t) + " tensors");
        if (n) parts.push_back(std::to_string(n) + " None");
        if (s) parts.push_back(std::to_string(s) + " numbers");
        std::string x;
        for (size_t j = 0; j < parts.size(); ++j) x += (j ? " + " : "") + parts[j];
        return x.empty() ? std::string("absent") : x;
      };
      std::string a = side(k.tensors_a, k.nones_a, k.scalars_a), b = side(k.tensors_b, k.nones_b, k.scalars_b);
      out += (i ? "," : "") + std::string(" ") + escape(k.name) + " " + (a == b ? a : a + " → " + b);
    }
    out += "\n";
  }
  only_lines(out, d.matching.only_a, "A", o, st);
  only_lines(out, d.matching.only_b, "B", o, st);
  category_tables(out, d.tensors, o, st, 2);
}

void matrix_block(std::string& out, const char* title, const Matrix& a, const Matrix& b, const Style& st) {
  if (a.empty() && b.empty()) return;
  size_t cols = 0;
  if (!a.empty()) cols = std::max(cols, a.back().size());
  if (!b.empty()) cols = std::max(cols, b.back().size());
  std::vector<std::string> head{title};
  std::vector<Align> align{Align::left};
  for (size_t c = 0; c < cols; ++c) head.push_back("task " + std::to_string(c)), align.push_back(Align::right);
  head.push_back("mean");
  align.push_back(Align::right);
  Table t(head, align);
  auto mean = [](const std::vector<double>& r) {
    double s = 0;
    for (double v : r) s += v;
    return r.empty() ? std::nan("") : s / static_cast<double>(r.size());
  };
  auto add_row = [&](const std::string& label, const std::vector<double>& r) {
    std::vector<std::string> cells{label};
    for (size_t c = 0; c < cols; ++c) cells.push_back(c < r.size() ? format_double(std::round(r[c] * 100) / 100) : "");
    cells.push_back(r.empty() ? "" : format_double(std::round(mean(r) * 100) / 100));
    t.add(cells);
  };
  if (!a.empty()) add_row("A after task " + std::to_string(a.size() - 1), a.back());
  if (!b.empty()) add_row("B after task " + std::to_string(b.size() - 1), b.back());
  if (!a.empty() && !b.empty()) {
    std::vector<std::string> cells{"Δ (B − A)"};
    const auto &ra = a.back(), &rb = b.back();
    for (size_t c = 0; c < cols; ++c) {
      if (c < ra.size() && c < rb.size()) {
        double d = std::round((rb[c] - ra[c]) * 100) / 100;
        std::string txt = (d > 0 ? "+" : "") + format_double(d == 0 ? 0.0 : d);
        cells.push_back(d < 0 ? st.red(txt) : d > 0 ? st.green(txt) : txt);
      } else {
        cells.push_back(c < rb.size() ? st.dim("new") : "");
      }
    }
    double d = std::round((mean(rb) - mean(ra)) * 100) / 100;
    cells.push_back((d > 0 ? "+" : "") + format_double(d == 0 ? 0.0 : d));
    t.add(cells);
  }
  out += t.render(st, 4);
}

void results_block(std::string& out, const ResultsDiff& d, const Options& o, const Style& st) {
  if (!d.present_a && !d.present_b) {
    out += st.bold("results") + ": none in either file\n";
    return;
  }
  if (!d.mammoth) {
    config_block(out, "results", d.generic, o, st);
    return;
  }
  out += st.bold("results") + ": accuracy (%) on each task's test set, last row of each file";
  out += d.class_a.size() == d.class_b.size() ? "\n" : " (A: " + plural(d.class_a.size(), "task") + ", B: " +
                                                         plural(d.class_b.size(), "task") + ")\n";
  matrix_block(out, "Class-IL", d.class_a, d.class_b, st);
  matrix_block(out, "Task-IL", d.task_a, d.task_b, st);
  if (d.history_rows) {
    out += "    history (rows after tasks 0–" + std::to_string(d.history_rows - 1) + "): ";
    out += d.history_cells_changed ? st.red(plural(d.history_cells_changed, "cell") + " differ, max |Δ| " +
                                            fmt(d.history_max_delta))
                                   : std::string("identical in both files");
    out += "\n";
  }
  if (d.logger.present_a || d.logger.present_b) {
    out += "    logger: ";
    out += d.logger.entries.empty() ? "identical\n" : plural(d.logger.entries.size(), "entry", "entries") + " differ\n";
    config_lines(out, d.logger, st, 6, top_of(o));
  }
}

void histogram_block(std::string& out, const Histogram& h, const Style& st) {
  if (!h.ok_a && !h.ok_b) {
    out += "    " + h.name + ": not an integer tensor with few distinct values\n";
    return;
  }
  std::vector<std::pair<int64_t, std::pair<uint64_t, uint64_t>>> rows(h.counts.begin(), h.counts.end());
  const size_t kMaxCols = 16;
  size_t hidden = 0;
  if (rows.size() > kMaxCols) {  // keep the labels that moved most, in label order
    std::stable_sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) {
      auto mx = std::llabs(static_cast<long long>(x.second.second) - static_cast<long long>(x.second.first));
      auto my = std::llabs(static_cast<long long>(y.second.second) - static_cast<long long>(y.second.first));
      return mx > my;
    });
    hidden = rows.size() - kMaxCols;
    rows.resize(kMaxCols);
    std::sort(rows.begin(), rows.end());
  }
  std::vector<std::string> head{h.name};
  std::vector<Align> align{Align::left};
  for (const auto& r : rows) head.push_back(std::to_string(r.first)), align.push_back(Align::right);
  Table t(head, align);
  std::vector<std::string> ra{"A"}, rb{"B"}, rd{"Δ"};
  for (const auto& [label, c] : rows) {
    ra.push_back(h.ok_a ? std::to_string(c.first) : "?");
    rb.push_back(h.ok_b ? std::to_string(c.second) : "?");
    long long d = static_cast<long long>(c.second) - static_cast<long long>(c.first);
    std::string txt = std::to_string(d);
    if (d > 0) txt.insert(txt.begin(), '+');
    rd.push_back(d > 0 ? st.green(txt) : d < 0 ? st.red(txt) : txt);
  }
  t.add(ra);
  t.add(rb);
  if (h.ok_a && h.ok_b) t.add(rd);
  out += t.render(st, 4);
  if (hidden) more_line(out, hidden, 0, st, 4);
}

void buffer_block(std::string& out, const BufferDiff& d, const Options& o, const Style& st) {
  if (!d.present_a && !d.present_b) {
    out += st.bold("buffer") + ": none in either file\n";
    return;
  }
  out += st.bold("buffer") + ": ";
  auto size = [](int64_t n) { return n < 0 ? std::string("?") : std::to_string(n); };
  if (!d.present_a || !d.present_b) {
    out += std::string("only in ") + (d.present_a ? "A" : "B") + ", " + size(d.present_a ? d.size_a : d.size_b) +
           " slots\n";
    return;
  }
  if (d.size_a == d.size_b) out += size(d.size_a) + " slots in both";
  else out += size(d.size_a) + " → " + size(d.size_b) + " slots";
  if (d.slots_changed >= 0) out += "; " + plural(static_cast<uint64_t>(d.slots_changed), "slot") + " changed";
  out += "\n";
  for (const auto& h : d.histograms) histogram_block(out, h, st);
  if (d.meta.differs()) config_lines(out, d.meta, st, 4, top_of(o));
  only_lines(out, d.matching.only_a, "A", o, st);
  only_lines(out, d.matching.only_b, "B", o, st);
  category_tables(out, d.tensors, o, st, 2);
}

std::string section_list(unsigned bits) {
  std::string s;
  for (Section sec : kSections)
    if (bits & sec) s += (s.empty() ? "" : ", ") + std::string(section_name(sec));
  return s;
}

std::string verdict_line(bool differs, unsigned where, const Style& st) {
  if (differs) return st.bold(st.red("verdict: the files differ")) + " (" + section_list(where) + "): exit 1\n";
  return st.bold(st.green("verdict: no difference beyond tolerance")) + ": exit 0\n";
}

std::string strip_lines(const std::vector<const Input*>& files, const char* const* labels) {
  std::string out;
  for (size_t i = 0; i < files.size(); ++i)
    if (files[i]->strip.keys)
      out += std::string("  ") + labels[i] + ": stripped '" + escape(files[i]->strip.removed) + "' from " +
             plural(files[i]->strip.keys, "key") + "\n";
  return out;
}

}  // namespace

std::string render_pair(const PairReport& r, const Options& o, const Style& st) {
  std::string out;
  out += st.bold("A: ") + escape(r.a->path) + "  " + st.dim("(" + r.a->description() + ")") + "\n";
  out += st.bold("B: ") + escape(r.b->path) + "  " + st.dim("(" + r.b->description() + ")") + "\n";
  static const char* const labels[] = {"A", "B"};
  out += strip_lines({r.a, r.b}, labels);
  for (Section s : kSections) {
    if (!(r.sections & s)) continue;
    if (!r.section_present(s) && !o.sections_explicit) continue;  // e.g. no optimizer in a state dict
    out += "\n";
    switch (s) {
      case sec_model: model_block(out, r.model, r.a->model_title, o, st); break;
      case sec_extra: {
        std::vector<std::string> keys = r.a->schema.extra_keys;
        for (const auto& k : r.b->schema.extra_keys)
          if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
        std::string title = "extra";
        for (size_t i = 0; i < keys.size(); ++i) title += (i ? ", " : " (top-level keys outside the layout: ") + escape(keys[i]);
        model_block(out, r.extra, title + ")", o, st);
        if (r.extra_values.differs()) config_lines(out, r.extra_values, st, 4, top_of(o));
        break;
      }
      case sec_optimizer: optimizer_block(out, r.optimizer, o, st); break;
      case sec_scheduler: config_block(out, "scheduler", r.scheduler, o, st); break;
      case sec_args: config_block(out, "args", r.args, o, st); break;
      case sec_results: results_block(out, r.results, o, st); break;
      case sec_buffer: buffer_block(out, r.buffer, o, st); break;
      default: break;
    }
  }
  out += "\n" + verdict_line(r.differs(), r.differing(), st);
  return out;
}

// ---- series -----------------------------------------------------------------------

namespace {

double sort_value(const DriftRow& r) {
  // The cumulative drift to the last file, else the last step.
  for (auto it = r.cumulative.rbegin(); it != r.cumulative.rend(); ++it)
    if (*it) return (*it)->rel_change();
  for (auto it = r.step.rbegin(); it != r.step.rend(); ++it)
    if (*it) return (*it)->rel_change();
  return 0;
}

}  // namespace

std::string render_series(const SeriesReport& s, const Options& o, const Style& st) {
  std::string out;
  out += st.bold("series") + ": " + plural(s.files.size(), "file");
  out += s.reordered ? ", ordered by Mammoth task index\n" : ", in the order given\n";
  std::vector<std::string> labels;
  for (size_t i = 0; i < s.files.size(); ++i) {
    labels.push_back("[" + std::to_string(i) + "]");
    out += "  " + st.bold(labels.back()) + " " + escape(s.files[i]->path) + "  " +
           st.dim("(" + s.files[i]->description() + ")") + "\n";
  }
  std::vector<const char*> lab;
  for (auto& l : labels) lab.push_back(l.c_str());
  out += strip_lines(s.files, lab.data());

  const size_t n = s.files.size();
  if (o.sections & sec_model) {
    out += "\n";
    // Per layer (default) or per tensor (--by tensor): the drift matrix.
    std::vector<DriftRow> rows = drift_rows(s, o.by_module);
    out += st.bold("model drift") + ": relative change ‖Δ‖/‖A‖ per " + (o.by_module ? "layer" : "tensor") +
           "; steps t−1→t, then cumulative 0→t (=: bit-identical, —: absent)\n";
    for (Category c : {Category::parameter, Category::bn_stat}) {
      std::vector<const DriftRow*> mine;
      for (const auto& r : rows)
        if (r.category == c) mine.push_back(&r);
      if (mine.empty()) continue;
      std::stable_sort(mine.begin(), mine.end(),
                       [](const DriftRow* x, const DriftRow* y) { return more_change(sort_value(*x), sort_value(*y)); });
      std::vector<std::string> head{category_title(c)};
      std::vector<Align> align{Align::left};
      for (size_t i = 1; i < n; ++i) head.push_back(std::to_string(i - 1) + "→" + std::to_string(i)), align.push_back(Align::right);
      for (size_t i = 2; i < n; ++i) head.push_back("0→" + std::to_string(i)), align.push_back(Align::right);
      Table t(head, align);
      size_t shown = 0;
      const size_t top = top_of(o);
      for (const DriftRow* r : mine) {
        if (shown++ >= top) continue;
        std::vector<std::string> cells{escape(r->name)};
        // "=": bit-identical (a frozen layer); "—": absent on one side.
        auto cell = [&](const std::optional<Metrics>& m) {
          if (!m) return st.dim("—");
          return m->bit_identical() ? st.dim("=") : fmt(m->rel_change());
        };
        for (const auto& m : r->step) cells.push_back(cell(m));
        for (const auto& m : r->cumulative) cells.push_back(cell(m));
        t.add(cells);
      }
      out += t.render(st, 2);
      if (mine.size() > top) more_line(out, mine.size() - top, 0, st, 2);
    }
    // Structure per step: grown heads, added/removed keys, shape changes, integer buffers.
    out += "\n" + st.bold("structure") + ":\n";
    bool any = false;
    for (size_t i = 0; i < s.steps.size(); ++i) {
      const ModelDiff& m = s.steps[i].model;
      std::string step = "  " + std::to_string(i) + "→" + std::to_string(i + 1) + ": ";
      for (const auto& t : m.tensors) {
        if (t.status == Status::grown) {
          int64_t added = t.rows_b() - t.rows_a();
          out += step + escape(t.pair.key) + " grew " + std::to_string(t.rows_a()) + "→" + std::to_string(t.rows_b()) +
                 " rows (+" + plural(static_cast<uint64_t>(added), "added class", "added classes") + "; old rows " +
                 verdict_text(t.verdict, st) + ")\n";
          any = true;
        } else if (t.status == Status::shape_changed) {
          out += step + escape(t.pair.key) + " shape " + shape_text(t) + "\n";
          any = true;
        }
      }
      if (!m.only_a.empty() || !m.only_b.empty()) {
        out += step + std::to_string(m.only_a.size()) + " keys removed, " + std::to_string(m.only_b.size()) + " added";
        auto first = !m.only_b.empty() ? m.only_b.front().key : m.only_a.front().key;
        out += " (e.g. " + escape(first) + ")\n";
        any = true;
      }
      size_t ints = 0;
      for (const auto& t : m.tensors) ints += t.pair.category == Category::int_buffer && t.differs();
      if (ints) {
        out += step + plural(ints, "integer buffer") + " changed\n";
        any = true;
      }
    }
    if (!any) out += "  no structural change\n";
  }

  if (o.sections & sec_results && !s.steps.empty()) {
    const ResultsDiff& last = s.steps.back().results;
    out += "\n";
    if (last.mammoth) {
      out += st.bold("results") + ": accuracy (%) matrix of " + escape(s.files.back()->path) +
             " (row: after task t; column: task i)\n";
      for (auto [title, mat] : {std::pair<const char*, const Matrix*>{"Class-IL", &last.class_b},
                                {"Task-IL", &last.task_b}}) {
        if (mat->empty()) continue;
        size_t cols = 0;
        for (const auto& r : *mat) cols = std::max(cols, r.size());
        std::vector<std::string> head{title};
        std::vector<Align> align{Align::left};
        for (size_t c = 0; c < cols; ++c) head.push_back("task " + std::to_string(c)), align.push_back(Align::right);
        Table t(head, align);
        for (size_t r = 0; r < mat->size(); ++r) {
          std::vector<std::string> cells{"after " + std::to_string(r)};
          for (size_t c = 0; c < cols; ++c)
            cells.push_back(c < (*mat)[r].size() ? format_double(std::round((*mat)[r][c] * 100) / 100) : "");
          t.add(cells);
        }
        out += t.render(st, 4);
      }
      size_t bad = 0;
      for (const auto& p : s.steps) bad += p.results.mammoth && p.results.history_cells_changed > 0;
      out += "    history: ";
      out += bad ? st.red("rewritten at " + plural(bad, "step")) : std::string("each file extends the previous one");
      out += "\n";
    } else {
      out += st.bold("results") + ": not in Mammoth's layout in every file\n";
    }
  }

  // Args, scheduler and optimizer hyper-parameters that vary across the series.
  auto varying = [&](const char* title, auto get) {
    std::vector<std::vector<std::pair<std::string, json>>> flat(n);
    std::vector<bool> has(n);
    for (size_t i = 0; i < n; ++i) {
      const Value* v = get(*s.files[i]);
      has[i] = v && !v->is_none();
      if (has[i]) flat[i] = flatten(*v);
    }
    std::vector<std::string> keys;
    std::map<std::string, std::vector<std::optional<json>>> vals;
    for (size_t i = 0; i < n; ++i)
      for (const auto& [k, v] : flat[i]) {
        auto [it, fresh] = vals.try_emplace(k, std::vector<std::optional<json>>(n));
        if (fresh) keys.push_back(k);
        it->second[i] = v;
      }
    std::vector<std::string> vary;
    for (const auto& k : keys) {
      const auto& v = vals[k];
      if (std::any_of(v.begin(), v.end(), [&](const std::optional<json>& x) { return x != v[0]; })) vary.push_back(k);
    }
    out += "\n" + st.bold(title) + ": ";
    if (std::none_of(has.begin(), has.end(), [](bool b) { return b; })) {
      out += "none in any file\n";
      return;
    }
    if (vary.empty()) {
      out += "identical in every file (" + plural(keys.size(), "key") + ")\n";
      return;
    }
    out += plural(vary.size(), "key") + " vary across the series\n";
    std::vector<std::string> head{"key"};
    for (const auto& l : labels) head.push_back(l);
    Table t(head);
    size_t shown = 0;
    for (const auto& k : vary) {
      if (shown++ >= top_of(o)) continue;
      std::vector<std::string> cells{escape(k)};
      for (const auto& v : vals[k]) cells.push_back(v ? json_text(*v) : st.dim("—"));
      t.add(cells);
    }
    out += t.render(st, 4);
    if (vary.size() > top_of(o)) more_line(out, vary.size() - top_of(o), 0, st, 4);
  };
  if (o.sections & sec_args) varying("args", [](const Input& in) { return in.schema.args; });
  if (o.sections & sec_scheduler) varying("scheduler", [](const Input& in) { return in.schema.scheduler; });
  if (o.sections & sec_optimizer) {
    varying("optimizer param_groups", [](const Input& in) -> const Value* {
      return in.schema.optimizer ? in.schema.optimizer->get("param_groups") : nullptr;
    });
    std::string line;
    for (size_t i = 0; i < s.steps.size(); ++i) {
      const OptimizerDiff& d = s.steps[i].optimizer;
      size_t changed = std::count_if(d.tensors.begin(), d.tensors.end(), [](const TensorResult& r) { return r.differs(); });
      line += (i ? ", " : "") + std::to_string(i) + "→" + std::to_string(i + 1) + ": " + std::to_string(changed) + "/" +
              std::to_string(d.tensors.size());
    }
    if (!s.steps.empty()) out += "    state tensors changed: " + line + "\n";
  }
  if (o.sections & sec_buffer) {
    out += "\n" + st.bold("buffer") + ":";
    bool any = false;
    for (size_t i = 0; i < s.steps.size(); ++i) {
      const BufferDiff& d = s.steps[i].buffer;
      if (!d.present_a && !d.present_b) continue;
      any = true;
      out += (i ? "," : "") + std::string(" ") + std::to_string(i) + "→" + std::to_string(i + 1) + ": ";
      out += d.slots_changed >= 0 ? std::to_string(d.slots_changed) + "/" + std::to_string(d.size_b) + " slots changed"
                                  : std::to_string(d.size_a) + "→" + std::to_string(d.size_b) + " slots";
    }
    out += any ? "\n" : " none in any file\n";
    // Label histogram per file.
    std::map<int64_t, std::vector<uint64_t>> hist;
    bool ok = any;
    for (size_t i = 0; i < n && ok; ++i) {
      const Value* attrs = buffer_attributes(s.files[i]->schema.buffer);
      const Value* labels_v = attrs ? attrs->get("labels") : nullptr;
      std::map<int64_t, uint64_t> c;
      if (labels_v && labels_v->is(Kind::tensor) && histogram(labels_v->tensor(), c, 64)) {
        for (auto [v, k] : c) {
          auto& row = hist[v];
          row.resize(n);
          row[i] = k;
        }
      } else if (labels_v) {
        ok = false;
      }
    }
    if (ok && !hist.empty()) {
      std::vector<std::string> head{"label"};
      std::vector<Align> align{Align::left};
      for (const auto& l : labels) head.push_back(l), align.push_back(Align::right);
      Table t(head, align);
      for (auto& [v, counts] : hist) {
        counts.resize(n);
        std::vector<std::string> cells{std::to_string(v)};
        for (auto k : counts) cells.push_back(std::to_string(k));
        t.add(cells);
      }
      out += t.render(st, 4);
    }
  }

  unsigned where = 0;
  for (const auto& p : s.steps) where |= p.differing();
  out += "\n" + verdict_line(s.differs(), where, st);
  return out;
}

}  // namespace ckpt::tools::diff
