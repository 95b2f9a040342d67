#include "info/tree.hpp"

#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "common/keys.hpp"

namespace ckpt::info {

namespace {

bool is_container(const Value& v) {
  switch (v.kind()) {
    case Kind::dict: case Kind::list: case Kind::tuple: case Kind::set: case Kind::frozenset: case Kind::object:
      return true;
    default:
      return false;
  }
}

bool is_scalar(const Value& v) { return !is_container(v) && !v.is(Kind::tensor); }

std::string short_type(const Value& v) {
  std::string_view t = v.type_name();
  if (t.empty()) return kind_name(v.kind());
  size_t dot = t.rfind('.');
  return std::string(dot == std::string_view::npos ? t : t.substr(dot + 1));
}

/// A list/tuple/set of a few scalars, or a dict of a few scalar items, is
/// shown inline, as Python would print it.
bool inline_sequence(const Value& v) {
  if (v.is(Kind::object) || !is_container(v)) return false;
  if (v.is_dict()) {
    if (v.size() == 0 || v.size() > 6 || v.attrs()) return false;
    for (const auto& [k, val] : v.items())
      if (!is_scalar(*k) || !is_scalar(*val)) return false;
    return true;
  }
  if (v.size() > 16) return false;
  for (const Value* e : v.elements())
    if (!is_scalar(*e)) return false;
  return true;
}

std::string key_label(const Value& k) { return tools::escape(k.is(Kind::string) ? k.as_str() : repr(k, 60)); }

struct Child {
  std::string label;  // escaped
  std::string key;    // key-path component (raw)
  const Value* value;
};

std::vector<Child> children(const Value& v) {
  std::vector<Child> out;
  auto seq = [&](Value::Elements els) {
    size_t i = 0;
    for (const Value* e : els) {
      std::string k = std::to_string(i++);
      out.push_back({"[" + k + "]", k, e});
    }
  };
  switch (v.kind()) {
    case Kind::dict:
      for (const auto& [k, val] : v.items()) out.push_back({key_label(*k), key_component(*k), val});
      break;
    case Kind::list: case Kind::tuple: case Kind::set: case Kind::frozenset:
      seq(v.elements());
      break;
    case Kind::object:
      if (v.callable() && !v.callable()->is(Kind::global)) out.push_back({"(callable)", "callable", v.callable()});
      if (v.args() && v.args()->size() > 0) out.push_back({"(args)", "args", v.args()});
      if (v.state() && !v.state()->is_none()) out.push_back({"(state)", "state", v.state()});
      for (const auto& [k, val] : v.object_items()) out.push_back({key_label(*k), key_component(*k), val});
      seq(v.object_elements());
      break;
    default:
      break;
  }
  return out;
}

std::string tensor_signature(const Value& v) {
  const Tensor& t = v.tensor();
  return std::string(dtype_name(t.dtype)) + tools::shape_str(t.shape);
}

class TreeWriter {
 public:
  TreeWriter(const TreeLimits& lim, const tools::Style& st) : lim_(lim), st_(st) {}

  void node(const Value& v, const std::string& label, const std::string& path, int depth, size_t indent) {
    if (cut_) return;
    auto seen = seen_.find(&v);
    if (is_container(v) && !v.is_shared_scalar() && seen != seen_.end()) {
      line(indent, label, st_.dim("same as " + (seen->second.empty() ? "(root)" : tools::escape(seen->second))));
      return;
    }
    bool expand = is_container(v) && !inline_sequence(v);
    auto kids = expand ? children(v) : std::vector<Child>{};
    bool deeper = !kids.empty() && lim_.depth >= 0 && depth >= lim_.depth;
    line(indent, label, summary(v) + (deeper ? st_.dim(" ...") : ""));
    if (kids.empty() || deeper) return;
    seen_.emplace(&v, path);
    emit_children(v, kids, path, depth, indent + 2);
  }

  std::string take() {
    if (cut_)
      out_ += std::string(2, ' ') +
              st_.dim("... output cut at " + std::to_string(lim_.max_lines) + " lines (--full shows everything)") + "\n";
    return std::move(out_);
  }

 private:
  void line(size_t indent, const std::string& label, const std::string& text) {
    if (lim_.max_lines && lines_ >= lim_.max_lines) {
      cut_ = true;
      return;
    }
    out_.append(indent, ' ');
    out_ += label;
    if (!text.empty()) out_ += ": " + text;
    out_ += '\n';
    ++lines_;
  }

  void emit_children(const Value& v, const std::vector<Child>& kids, const std::string& path, int depth,
                     size_t indent) {
    // Fold the tensor entries of a dict by name pattern and signature.
    std::vector<size_t> tensor_idx;
    if (lim_.fold && v.is_dict())
      for (size_t i = 0; i < kids.size(); ++i)
        if (kids[i].value->is(Kind::tensor)) tensor_idx.push_back(i);
    std::unordered_map<size_t, std::pair<std::string, size_t>> folded_at;  // first index -> (pattern, count)
    std::unordered_set<size_t> skip;
    if (tensor_idx.size() > 4) {
      std::vector<std::string> names, sigs;
      for (size_t i : tensor_idx) {
        names.push_back(kids[i].key);
        sigs.push_back(tensor_signature(*kids[i].value));
      }
      for (const auto& f : tools::fold_names(names, sigs)) {
        if (f.members.size() < 2) continue;
        folded_at[tensor_idx[f.members[0]]] = {f.pattern, f.members.size()};
        for (size_t m = 1; m < f.members.size(); ++m) skip.insert(tensor_idx[f.members[m]]);
      }
    }
    size_t shown = 0;
    for (size_t i = 0; i < kids.size() && !cut_; ++i) {
      if (skip.count(i)) continue;
      if (lim_.max_children && shown == lim_.max_children) {
        size_t rest = 0;
        for (size_t j = i; j < kids.size(); ++j) rest += !skip.count(j);
        line(indent, st_.dim("..."), st_.dim(std::to_string(rest) + " more (--full shows them)"));
        return;
      }
      ++shown;
      const Child& c = kids[i];
      if (auto f = folded_at.find(i); f != folded_at.end()) {
        line(indent, tools::escape(f->second.first),
             summary(*c.value) + " " + st_.dim("×" + std::to_string(f->second.second)));
        continue;
      }
      node(*c.value, c.label, path.empty() ? c.key : path + "/" + c.key, depth + 1, indent);
    }
  }

  const TreeLimits& lim_;
  const tools::Style& st_;
  std::string out_;
  size_t lines_ = 0;
  bool cut_ = false;
  std::unordered_map<const Value*, std::string> seen_;
};

class JsonWriter {
 public:
  JsonWriter(std::vector<std::string>* nonfinite, size_t budget) : nonfinite_(nonfinite), budget_(budget) {}

  tools::json node(const Value& v, const std::string& path) {
    if (budget_ == 0) return "...";
    --budget_;
    if (v.is(Kind::floating) && !std::isfinite(v.as_float())) {
      if (nonfinite_) nonfinite_->push_back(path);
      return nullptr;
    }
    if (!is_container(v)) return tools::to_json(v, 1);
    if (!v.is_shared_scalar()) {
      auto [it, fresh] = seen_.try_emplace(&v, path);
      if (!fresh) return tools::json{{"same_as", it->second}};
    }
    auto sub = [&](const std::string& k) { return path.empty() ? k : path + "/" + k; };
    if (v.is_dict()) {
      tools::json o = tools::json::object();
      for (const auto& [k, val] : v.items()) {
        std::string key = k->is(Kind::string) ? tools::escape(k->as_str()) : repr(*k, 200);
        o[key] = node(*val, sub(key_component(*k)));
      }
      return o;
    }
    if (v.is(Kind::object)) {
      tools::json o = {{"object", v.qualified_name()}};
      if (!v.unsupported_reason().empty()) o["unsupported"] = v.unsupported_reason();
      for (const auto& c : children(v)) {
        if (c.label.front() == '(') o[c.key] = node(*c.value, sub(c.key));
        else o["items"][c.label] = node(*c.value, sub(c.key));
      }
      return o;
    }
    tools::json a = tools::json::array();
    size_t i = 0;
    for (const Value* e : v.elements()) a.push_back(node(*e, sub(std::to_string(i++))));
    return a;
  }

 private:
  std::vector<std::string>* nonfinite_;
  size_t budget_;
  std::unordered_map<const Value*, std::string> seen_;
};

}  // namespace

std::string summary(const Value& v) {
  switch (v.kind()) {
    case Kind::tensor: {
      const Tensor& t = v.tensor();
      std::string s = "tensor " + std::string(dtype_name(t.dtype)) + " " + tools::shape_str(t.shape) + " (" +
                      tools::human_bytes(t.nbytes()) + ")";
      if (t.is_parameter) s += " parameter";
      return s;
    }
    case Kind::dict: {
      if (inline_sequence(v)) return repr(v, 160);
      size_t tensors = 0;
      for (const auto& [_, val] : v.items()) tensors += val->is(Kind::tensor);
      std::string s = short_type(v) + ", " + std::to_string(v.size()) + (v.size() == 1 ? " item" : " items");
      if (tensors) s += " (" + std::to_string(tensors) + (tensors == 1 ? " tensor)" : " tensors)");
      return s;
    }
    case Kind::list: case Kind::tuple: case Kind::set: case Kind::frozenset:
      if (inline_sequence(v)) return repr(v, 160);
      return short_type(v) + ", " + std::to_string(v.size()) + (v.size() == 1 ? " item" : " items");
    case Kind::object: {
      std::string s = "<";
      s += tools::escape(v.qualified_name());
      if (!v.unsupported_reason().empty()) s.append(": ").append(v.unsupported_reason());
      s += '>';
      return s;
    }
    case Kind::storage:
      return "storage " + std::string(dtype_name(v.storage()->dtype())) + " (" +
             tools::human_bytes(v.storage()->nbytes()) + ")";
    default:
      return repr(v, 160);
  }
}

std::string render_tree(const Value& root, std::string_view label, const TreeLimits& lim, const tools::Style& st,
                        size_t indent) {
  TreeWriter w(lim, st);
  w.node(root, std::string(label), "", 0, indent);
  return w.take();
}

tools::json tree_json(const Value& root, const std::string& path, std::vector<std::string>* nonfinite,
                      size_t max_nodes) {
  JsonWriter w(nonfinite, max_nodes);
  return w.node(root, path);
}

}  // namespace ckpt::info
