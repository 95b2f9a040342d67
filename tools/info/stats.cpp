// --stats: value statistics of every tensor in the report's tables, read from
// the mapped payloads, threaded across tensors (big tensors are split into
// ranges so one huge tensor still uses every core). Results are merged in a
// fixed order, so the output does not depend on the number of threads.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "ckpt/error.hpp"
#include "common/term.hpp"
#include "info/report.hpp"

namespace ckpt::info {

namespace {

constexpr uint64_t kRange = 4ull << 20;  // elements per work item

struct View {
  const Value* value;                 // representative
  std::vector<const Value*> sharing;  // every Value with this view
  std::string name;
  std::string error;
};

struct Item {
  size_t view;
  uint64_t first, count;
};

void optimizer_tensors(const Report& r, std::vector<std::pair<std::string, const Value*>>& out) {
  if (!r.optimizer) return;
  const Value* state = r.optimizer->value->get("state");
  if (!state || !state->is_dict()) return;
  for (const auto& [k, entry] : state->items()) {
    if (!entry->is_dict()) continue;
    for (const auto& [sk, v] : entry->items())
      if (v->is(Kind::tensor)) out.emplace_back("optimizer/state/" + key_component(*k) + "/" + key_component(*sk), v);
  }
}

}  // namespace

void compute_all_stats(Report& r, const Options& opt) {
  std::vector<std::pair<std::string, const Value*>> wanted;
  for (const TensorTable* t : {r.model ? &*r.model : nullptr, r.buffer ? &r.buffer->table : nullptr,
                               r.other ? &*r.other : nullptr})
    if (t)
      for (const Row& row : t->rows) wanted.emplace_back(row.path, row.value);
  if (opt.filters.empty()) optimizer_tensors(r, wanted);

  std::vector<View> views;
  std::unordered_map<std::string, size_t> by_key;
  for (const auto& [name, v] : wanted) {
    const Tensor& t = v->tensor();
    if (!tools::decodable(t.dtype)) {
      r.stats_skipped.push_back(name + " (" + std::string(dtype_name(t.dtype)) + ")");
      continue;
    }
    auto [it, fresh] = by_key.try_emplace(view_key(t), views.size());
    if (fresh) views.push_back(View{v, {}, name, {}});
    views[it->second].sharing.push_back(v);
  }
  // Work items, biggest tensors first so the last ones to finish are small.
  std::vector<size_t> order(views.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return views[a].value->tensor().numel() > views[b].value->tensor().numel();
  });
  std::vector<Item> items;
  std::unordered_map<const Storage*, std::atomic<size_t>> pending;
  uint64_t total_bytes = 0;
  for (size_t vi : order) {
    const Tensor& t = views[vi].value->tensor();
    uint64_t n = t.numel();
    total_bytes += t.nbytes();
    uint64_t first = 0;
    do {  // one item even for an empty tensor
      items.push_back(Item{vi, first, std::min(kRange, n - first)});
      if (t.storage) ++pending[t.storage.get()];
      first += kRange;
    } while (first < n);
  }
  std::vector<tools::TensorStats> parts(items.size());
  std::vector<std::string> errors(items.size());
  tools::Progress progress("stats", total_bytes);
  std::mutex progress_mu;
  tools::parallel_for(items.size(), [&](size_t i) {
    const Item& it = items[i];
    const Tensor& t = views[it.view].value->tensor();
    // A contiguous range of a mapped file: map its pages in one call before
    // reading and drop them after, so memory stays at a few ranges per thread.
    const uint64_t es = static_cast<uint64_t>(dtype_size(t.dtype));
    const bool ranged = t.storage && t.is_contiguous();
    const uint64_t at = (static_cast<uint64_t>(t.storage_offset) + it.first) * es, len = it.count * es;
    try {
      if (ranged) {
        (void)t.storage->bytes();
        t.storage->prefetch_pages(at, len);
      }
      parts[i] = tools::compute_stats(t, it.first, it.count);
    } catch (const Error& e) {
      errors[i] = e.detail();
    }
    if (ranged) t.storage->release_pages(at, len);
    if (t.storage && --pending.find(t.storage.get())->second == 0) t.storage->release_pages();
    std::lock_guard lock(progress_mu);
    progress.advance(it.count * static_cast<uint64_t>(dtype_size(t.dtype)));
  });
  progress.finish();
  // Merge each view's ranges in element order: deterministic whatever the threads.
  std::vector<std::vector<size_t>> of_view(views.size());
  for (size_t i = 0; i < items.size(); ++i) of_view[items[i].view].push_back(i);
  for (size_t vi = 0; vi < views.size(); ++vi) {
    tools::TensorStats s;
    std::string err;
    for (size_t i : of_view[vi]) {
      if (!errors[i].empty()) err = errors[i];
      s.merge(parts[i]);
    }
    if (!err.empty()) {
      r.stats_skipped.push_back(views[vi].name + " (" + err + ")");
      continue;
    }
    s.finish();
    for (const Value* v : views[vi].sharing) r.stats[v] = s;
  }
  // Per-key totals of the optimizer state.
  if (r.optimizer && opt.filters.empty()) {
    std::vector<std::pair<std::string, const Value*>> opt_tensors;
    optimizer_tensors(r, opt_tensors);
    for (auto& key : r.optimizer->state_keys) {
      tools::TensorStats s;
      bool any = false;
      for (const auto& [path, v] : opt_tensors) {
        if (!path.ends_with("/" + key.key)) continue;
        auto it = r.stats.find(v);
        if (it == r.stats.end()) continue;
        s.merge(it->second);
        any = true;
      }
      if (any) {
        s.finish();
        key.stats = s;
      }
    }
  }
}

std::optional<tools::TensorStats> merged_stats(const Report& r, const std::vector<const Row*>& rows) {
  tools::TensorStats s;
  bool any = false;
  std::unordered_set<std::string> views;  // an alias's values count once
  for (const Row* row : rows) {
    if (!views.insert(view_key(row->tensor())).second) continue;
    auto it = r.stats.find(row->value);
    if (it == r.stats.end()) continue;
    s.merge(it->second);
    any = true;
  }
  if (!any) return std::nullopt;
  s.finish();
  return s;
}

}  // namespace ckpt::info
