#include "common/keys.hpp"

#include <algorithm>
#include <map>
#include <unordered_map>

#include "ckpt/error.hpp"

namespace ckpt::tools {

std::vector<std::string_view> split_components(std::string_view key) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts;
}

std::string join_components(std::span<const std::string_view> parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += '.';
    out += parts[i];
  }
  return out;
}

namespace {
bool is_wrapper(std::string_view c) { return c == kDataParallel || c == kCompiled; }
}  // namespace

WrapperReport detect_wrappers(std::span<const std::string> keys) {
  WrapperReport r;
  r.keys = keys.size();
  std::vector<std::string_view> common;
  bool first = true;
  for (const auto& k : keys) {
    auto parts = split_components(k);
    bool m = false, o = false;
    for (auto c : parts) {
      m |= c == kDataParallel;
      o |= c == kCompiled;
    }
    r.with_module += m;
    r.with_orig_mod += o;
    r.with_net += parts.size() > 1 && parts[0] == kMammothNet;
    // Leading run of net/module/_orig_mod components (never the last one: the leaf name).
    std::vector<std::string_view> lead;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      if (is_wrapper(parts[i]) || (i == 0 && parts[i] == kMammothNet)) lead.push_back(parts[i]);
      else break;
    }
    if (first) {
      common = lead;
      first = false;
    } else {
      size_t n = 0;
      while (n < common.size() && n < lead.size() && common[n] == lead[n]) ++n;
      common.resize(n);
    }
  }
  bool has_wrapper = std::any_of(common.begin(), common.end(), is_wrapper);
  if (has_wrapper || (!common.empty() && r.with_net == r.keys))
    for (auto c : common) (r.common_prefix += c) += '.';
  return r;
}

std::string strip_components(std::string_view key, std::span<const std::string_view> components) {
  auto parts = split_components(key);
  std::vector<std::string_view> kept;
  kept.reserve(parts.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    bool drop = i + 1 < parts.size() &&  // never the leaf name itself
                std::find(components.begin(), components.end(), parts[i]) != components.end();
    if (!drop) kept.push_back(parts[i]);
  }
  return join_components(kept);
}

std::string strip_wrappers(std::string_view key) {
  static constexpr std::string_view wrappers[] = {kDataParallel, kCompiled};
  return strip_components(key, wrappers);
}

std::optional<std::string> strip_leading(std::string_view key, std::string_view prefix) {
  if (!prefix.empty() && prefix.back() == '.') prefix.remove_suffix(1);
  if (prefix.empty()) return std::string(key);
  if (key.size() > prefix.size() && key.starts_with(prefix) && key[prefix.size()] == '.')
    return std::string(key.substr(prefix.size() + 1));
  return std::nullopt;
}

RenameRule RenameRule::parse(std::string_view text) {
  size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0)
    throw Error(ErrorCode::invalid_argument,
                "rename rule '" + std::string(text) + "' is not FROM=TO (e.g. backbone.=net.)");
  return RenameRule{std::string(text.substr(0, eq)), std::string(text.substr(eq + 1))};
}

std::string apply_renames(std::string_view key, std::span<const RenameRule> rules) {
  for (const auto& r : rules) {
    std::string_view from = r.from;
    bool whole = key == from || (from.ends_with('.') && key.starts_with(from)) ||
                 (key.starts_with(from) && key.size() > from.size() && key[from.size()] == '.');
    if (!whole) continue;
    std::string_view rest = key.substr(from.size());
    std::string out = r.to;
    // "a=b" on "a.x" gives "b.x"; "a.=" on "a.x" gives "x".
    if (!rest.empty() && rest.front() == '.' && (out.empty() || out.back() == '.')) rest.remove_prefix(1);
    out += rest;
    return out;
  }
  return std::string(key);
}

// ---- folding ----------------------------------------------------------------

namespace {

// A name split into literal text and digit slots: "layer1.0.conv2.weight" ->
// template "layer#.#.conv#.weight", slots {"1","0","2"}.
struct Split {
  std::string templ;
  std::vector<std::string> slots;
};

Split split_digits(std::string_view name) {
  Split s;
  auto parts = split_components(name);
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) s.templ += '.';
    std::string_view c = parts[i];
    size_t d = c.size();
    while (d > 0 && c[d - 1] >= '0' && c[d - 1] <= '9') --d;
    if (d == c.size()) {
      s.templ += c;
      continue;
    }
    s.templ += c.substr(0, d);
    s.templ += '\x01';  // slot marker (never in a rendered pattern)
    s.slots.emplace_back(c.substr(d));
  }
  return s;
}

struct Item {
  size_t first;                                 // first member index (ordering)
  std::vector<std::vector<std::string>> sets;   // per slot, values in appearance order
  std::vector<size_t> members;
};

std::string render(const std::string& templ, const Item& item, size_t max_list) {
  std::string out;
  size_t slot = 0;
  for (char ch : templ) {
    if (ch != '\x01') {
      out += ch;
      continue;
    }
    const auto& vals = item.sets[slot++];
    if (vals.size() == 1) out += vals[0];
    else if (vals.size() > max_list) out += '#';
    else {
      out += '{';
      for (size_t i = 0; i < vals.size(); ++i) {
        if (i) out += ',';
        out += vals[i];
      }
      out += '}';
    }
  }
  return out;
}

// Merges items that agree on every slot but `p` (each item stays an exact
// cartesian product of its sets, so the pattern never over-claims).
bool merge_on(std::vector<Item>& items, size_t p) {
  bool changed = false;
  std::vector<Item> out;
  std::map<std::vector<std::vector<std::string>>, size_t> by_rest;
  for (auto& it : items) {
    auto rest = it.sets;
    rest[p].clear();
    auto [pos, fresh] = by_rest.try_emplace(std::move(rest), out.size());
    if (fresh) {
      out.push_back(std::move(it));
      continue;
    }
    Item& into = out[pos->second];
    bool overlap = std::any_of(it.sets[p].begin(), it.sets[p].end(), [&](const std::string& v) {
      return std::find(into.sets[p].begin(), into.sets[p].end(), v) != into.sets[p].end();
    });
    if (overlap) {  // a duplicate name: keep it apart
      out.push_back(std::move(it));
      continue;
    }
    into.sets[p].insert(into.sets[p].end(), it.sets[p].begin(), it.sets[p].end());
    into.members.insert(into.members.end(), it.members.begin(), it.members.end());
    changed = true;
  }
  items = std::move(out);
  return changed;
}

}  // namespace

std::vector<Folded> fold_names(std::span<const std::string> names, std::span<const std::string> signature,
                               size_t max_list) {
  // Group by template + signature, in first-appearance order.
  std::unordered_map<std::string, size_t> group_of;
  std::vector<std::pair<std::string, std::vector<Item>>> groups;
  for (size_t i = 0; i < names.size(); ++i) {
    Split s = split_digits(names[i]);
    std::string gkey = s.templ;
    gkey += '\0';
    if (!signature.empty()) gkey += signature[i];
    auto [pos, fresh] = group_of.try_emplace(gkey, groups.size());
    if (fresh) groups.emplace_back(s.templ, std::vector<Item>{});
    Item it{i, {}, {i}};
    for (auto& v : s.slots) it.sets.push_back({std::move(v)});
    groups[pos->second].second.push_back(std::move(it));
  }
  std::vector<std::pair<size_t, Folded>> out;
  for (auto& [templ, items] : groups) {
    size_t nslots = items.front().sets.size();
    // Fold the innermost slots first ("conv{1,2}" before "layer1.{0,1}").
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t p = nslots; p-- > 0;) changed |= merge_on(items, p);
    }
    for (auto& it : items) {
      std::sort(it.members.begin(), it.members.end());
      out.push_back({it.members.front(), Folded{render(templ, it, max_list), it.members}});
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<Folded> result;
  result.reserve(out.size());
  for (auto& [_, f] : out) result.push_back(std::move(f));
  return result;
}

}  // namespace ckpt::tools
