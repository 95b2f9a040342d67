#include "convert/convert.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "ckpt/error.hpp"
#include "ckpt/safetensors.hpp"
#include "ckpt/version.hpp"
#include "common/cli.hpp"
#include "common/json.hpp"
#include "common/numeric.hpp"
#include "common/open.hpp"
#include "common/term.hpp"
#include "convert/sha256.hpp"
#include "convert/zstd_io.hpp"

namespace ckpt::tools {

const char* out_format_name(OutFormat f) noexcept {
  switch (f) {
    case OutFormat::pt: return "pt";
    case OutFormat::pt_zst: return "pt.zst";
    case OutFormat::h5: return "h5";
    case OutFormat::safetensors: return "safetensors";
  }
  return "?";
}

std::optional<OutFormat> parse_out_format(std::string_view s) noexcept {
  if (s == "pt" || s == "pth" || s == "torch") return OutFormat::pt;
  if (s == "pt.zst" || s == "zst" || s == "zstd") return OutFormat::pt_zst;
  if (s == "h5" || s == "hdf5") return OutFormat::h5;
  if (s == "safetensors" || s == "st") return OutFormat::safetensors;
  return std::nullopt;
}

std::optional<OutFormat> format_from_extension(std::string_view path) noexcept {
  auto slash = path.rfind('/');
  if (slash != std::string_view::npos) path.remove_prefix(slash + 1);
  auto ends = [&](std::string_view e) { return path.size() > e.size() && path.ends_with(e); };
  if (ends(".zst")) return OutFormat::pt_zst;
  if (ends(".h5") || ends(".hdf5") || ends(".hdf")) return OutFormat::h5;
  if (ends(".safetensors")) return OutFormat::safetensors;
  if (ends(".pt") || ends(".pth") || ends(".ckpt") || ends(".bin") || ends(".tar")) return OutFormat::pt;
  return std::nullopt;
}

// ---------------------------------------------------------------- key plan

namespace {

struct View {
  const Storage* s;
  DType d;
  int64_t off;
  std::vector<int64_t> shape, stride;
  bool operator<(const View& o) const { return std::tie(s, d, off, shape, stride) < std::tie(o.s, o.d, o.off, o.shape, o.stride); }
};

View view_of(const Tensor& t) { return View{t.storage.get(), t.dtype, t.storage_offset, t.shape, t.stride}; }

bool strips_auto(const ConvertOptions& o) {
  if (std::find(o.strip_prefix.begin(), o.strip_prefix.end(), "none") != o.strip_prefix.end()) return false;
  if (std::find(o.strip_prefix.begin(), o.strip_prefix.end(), "auto") != o.strip_prefix.end()) return true;
  return o.backbone && o.strip_prefix.empty();  // --backbone cleans wrappers too
}

/// A key through --strip-prefix, --backbone and --rename; nullopt when it
/// leaves the backbone.
std::optional<std::string> map_key(std::string key, const ConvertOptions& o, bool auto_strip) {
  if (auto_strip) key = strip_wrappers(key);
  for (bool changed = true; changed;) {
    changed = false;
    for (const auto& p : o.strip_prefix) {
      if (p == "auto" || p == "none") continue;
      if (auto s = strip_leading(key, p)) {
        key = std::move(*s);
        changed = true;
      }
    }
  }
  if (o.backbone) {
    auto s = strip_leading(key, kMammothNet);
    if (!s) return std::nullopt;
    key = std::move(*s);
  }
  return apply_renames(key, o.renames);
}

bool has_head_component(std::string_view key, const std::vector<std::string>& heads) {
  auto parts = split_components(key);
  for (size_t i = 0; i + 1 < parts.size(); ++i)
    for (const auto& h : heads)
      if (parts[i] == h) return true;
  return false;
}

}  // namespace

KeyPlan plan_keys(const Value& sd, const ConvertOptions& o) {
  KeyPlan plan;
  const bool auto_strip = strips_auto(o);
  // First pass: new names.
  struct Row {
    const Value* key;
    const Value* value;
    std::optional<std::string> to;
  };
  std::vector<Row> rows;
  for (const auto& [k, v] : sd.items()) {
    Row r{k, v, std::nullopt};
    if (k->is(Kind::string)) r.to = map_key(k->as_str(), o, auto_strip);
    else r.to = key_component(*k);  // int keys stay as they are
    rows.push_back(std::move(r));
  }
  // The head: --classifier names, else `classifier`, else fc/head.
  std::vector<std::string> heads = o.classifier_names;
  if (o.drop_classifier && heads.empty()) {
    auto any_with = [&](const std::vector<std::string>& names) {
      return std::any_of(rows.begin(), rows.end(), [&](const Row& r) { return r.to && has_head_component(*r.to, names); });
    };
    heads = {"classifier"};
    if (!any_with(heads)) heads = {"fc", "head", "heads"};
    if (!any_with(heads))
      throw Error(ErrorCode::invalid_argument,
                  "--drop-classifier: no classifier found (no module named classifier, fc or head); name it with --classifier NAME");
  } else if (o.drop_classifier &&
             std::none_of(rows.begin(), rows.end(), [&](const Row& r) { return r.to && has_head_component(*r.to, heads); })) {
    throw Error(ErrorCode::invalid_argument, "--drop-classifier: no key has a module named " + heads.front());
  }
  std::set<View> head_views;
  if (o.drop_classifier)
    for (const auto& r : rows)
      if (r.to && has_head_component(*r.to, heads) && r.value->is(Kind::tensor)) head_views.insert(view_of(r.value->tensor()));
  // Second pass: drops, aliases, collisions.
  std::map<View, std::string> first_view;
  std::unordered_map<std::string, std::string> taken;  // new name -> old name
  const bool drop_aliases = o.backbone && !o.keep_aliases;
  for (const auto& r : rows) {
    KeyMapping m;
    m.from = r.key->is(Kind::string) ? r.key->as_str() : key_component(*r.key);
    if (!r.to) {
      m.dropped = "not in the backbone (no net. prefix)";
    } else if (o.drop_classifier && has_head_component(*r.to, heads)) {
      m.dropped = "classifier";
    } else if (r.value->is(Kind::tensor) && head_views.count(view_of(r.value->tensor()))) {
      m.dropped = "classifier (an alias of it)";
    } else if (r.value->is(Kind::tensor) && drop_aliases && first_view.count(view_of(r.value->tensor()))) {
      m.dropped = "alias of " + first_view[view_of(r.value->tensor())];
    }
    if (m.dropped.empty()) {
      m.to = *r.to;
      if (r.value->is(Kind::tensor)) first_view.emplace(view_of(r.value->tensor()), m.to);
      auto [it, fresh] = taken.emplace(m.to, m.from);
      if (!fresh)
        throw Error(ErrorCode::invalid_argument,
                    "keys '" + it->second + "' and '" + m.from + "' would both become '" + m.to +
                        "' (a collision; nothing is overwritten: change --rename or --strip-prefix)",
                    {}, {}, Error::no_offset, m.to);
      ++plan.kept;
      if (m.to != m.from) ++plan.renamed;
    } else {
      ++plan.dropped;
    }
    plan.keys.push_back(std::move(m));
  }
  return plan;
}

// ---------------------------------------------------------------- tree edits

namespace {

bool changes_keys(const ConvertOptions& o) {
  bool strip = std::any_of(o.strip_prefix.begin(), o.strip_prefix.end(), [](const std::string& p) { return p != "none"; });
  return o.backbone || strip || !o.renames.empty() || o.drop_classifier;
}

/// The new state dict: kept values under their new names (the same tensor
/// values: zero-copy), with OrderedDict `_metadata` module paths mapped too.
Value* rebuild_state_dict(Document& doc, const Value& sd, const KeyPlan& plan, const ConvertOptions& o) {
  Value* out = sd.type_name() == "collections.OrderedDict" ? doc.ordered_dict() : doc.dict();
  auto items = sd.items();
  for (size_t i = 0; i < items.size(); ++i) {
    const KeyMapping& m = plan.keys[i];
    if (!m.dropped.empty()) continue;
    if (items[i].first->is(Kind::string)) out->set(m.to, items[i].second);
    else out->set(items[i].first, items[i].second);
  }
  const Value* attrs = sd.attrs();
  if (!attrs || !attrs->is_dict() || sd.type_name() != "collections.OrderedDict") return out;
  Value* na = doc.dict();
  const bool auto_strip = strips_auto(o);
  for (const auto& [ak, av] : attrs->items()) {
    if (!ak->is(Kind::string) || ak->as_str() != "_metadata" || !av->is_dict()) {
      na->set(ak, av);
      continue;
    }
    Value* meta = doc.ordered_dict();
    for (const auto& [mk, mv] : av->items()) {
      if (!mk->is(Kind::string)) continue;
      // A module path maps like a key with a placeholder leaf.
      constexpr std::string_view kLeaf = "\x01";
      std::string probe = mk->as_str().empty() ? std::string(kLeaf) : mk->as_str() + "." + std::string(kLeaf);
      auto mapped = map_key(probe, o, auto_strip);
      if (!mapped) continue;
      std::string path = *mapped == kLeaf ? "" : mapped->ends_with(std::string(".") + std::string(kLeaf))
                                                       ? mapped->substr(0, mapped->size() - 2)
                                                       : *mapped;
      if (!meta->get(path)) meta->set(path, mv);
    }
    na->set(ak, meta);
  }
  out->set_attrs(na);
  return out;
}

/// Casts every floating tensor reachable from `root` to `to`, one storage at
/// a time (views keep sharing their new storage), rounding as torch does.
size_t cast_floating(Value& root, DType to) {
  std::unordered_map<const Storage*, std::shared_ptr<Storage>> done;
  std::vector<Value*> tensors;
  walk_tensors(root, [&](const TensorVisit& v) {
    tensors.push_back(const_cast<Value*>(v.value));
    return true;
  });
  size_t cast = 0;
  for (Value* tv : tensors) {
    Tensor& t = tv->tensor();
    if (!dtype_is_floating(t.dtype) || t.dtype == to || !decodable(t.dtype)) continue;
    auto it = done.find(t.storage.get());
    if (it == done.end()) {
      const Storage& s = *t.storage;
      const uint64_t n = s.numel();
      Tensor flat;
      flat.dtype = s.dtype();
      flat.shape = {static_cast<int64_t>(n)};
      flat.stride = {1};
      flat.storage = t.storage;
      const int es = dtype_size(to);
      std::vector<uint8_t> out(static_cast<size_t>(n) * static_cast<size_t>(es));
      constexpr uint64_t kChunk = 1 << 18;
      const size_t chunks = static_cast<size_t>((n + kChunk - 1) / kChunk);
      parallel_for(chunks, [&](size_t c) {
        const uint64_t first = c * kChunk, cnt = std::min<uint64_t>(kChunk, n - first);
        std::vector<double> buf(static_cast<size_t>(cnt));
        read_doubles(flat, first, cnt, buf.data());
        uint8_t* dst = out.data() + first * static_cast<uint64_t>(es);
        for (uint64_t i = 0; i < cnt; ++i) {
          const float f = static_cast<float>(buf[i]);  // torch goes through float too
          if (to == DType::float32) {
            std::memcpy(dst + 4 * i, &f, 4);
          } else {
            uint16_t h = to == DType::float16 ? float_to_half(f) : float_to_bf16(f);
            std::memcpy(dst + 2 * i, &h, 2);
          }
        }
      });
      s.release_pages();
      it = done.emplace(t.storage.get(), Storage::from_bytes(to, std::move(out), s.location())).first;
    }
    t.dtype = to;
    t.storage = it->second;
    ++cast;
  }
  return cast;
}

uint64_t payload_bytes(const Value& root) {
  std::unordered_set<const Storage*> seen;
  uint64_t total = 0;
  walk_tensors(root, [&](const TensorVisit& v) {
    if (seen.insert(v.tensor().storage.get()).second) total += v.tensor().storage->nbytes();
    return true;
  });
  return total;
}

std::string basename_of(const std::string& p) {
  auto s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

std::string archive_name_for(const std::string& out) {
  std::string b = basename_of(out);
  for (std::string_view ext : {".zst", ".pt", ".pth"})
    if (b.size() > ext.size() && b.ends_with(ext)) b.resize(b.size() - ext.size());
  return b.empty() ? "archive" : b;
}

/// Removes a file when it goes out of scope (temporary intermediates).
struct Unlinker {
  std::string path;
  ~Unlinker() {
    if (!path.empty()) ::unlink(path.c_str());
  }
};

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

bool exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

void print_plan(std::FILE* f, const std::string& section, const KeyPlan& plan) {
  std::fprintf(f, "# %s: %zu keys -> %zu kept (%zu renamed), %zu dropped\n", section.c_str(), plan.keys.size(), plan.kept,
               plan.renamed, plan.dropped);
  for (const auto& m : plan.keys) {
    if (m.dropped.empty()) std::fprintf(f, "%s -> %s\n", escape(m.from).c_str(), escape(m.to).c_str());
    else std::fprintf(f, "%s -> (dropped: %s)\n", escape(m.from).c_str(), escape(m.dropped).c_str());
  }
}

std::string producer() { return std::string("ckpt-convert ") + CKPT_VERSION_STRING + " (HDF5 " + hdf5_library_version() + ")"; }

}  // namespace

// ---------------------------------------------------------------- run

int run_convert(const std::string& in, const std::string& out, const ConvertOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  std::optional<OutFormat> fmt = o.to ? o.to : format_from_extension(out);
  if (!fmt)
    throw Error(ErrorCode::invalid_argument, "cannot tell the output format from '" + out + "': add --to pt|pt.zst|h5|safetensors");
  if (!exists(in)) throw Error(ErrorCode::io_error, "no such file", in, {}, Error::no_offset, {}, ENOENT);
  if (in == out || same_file(in, out))
    throw Error(ErrorCode::invalid_argument, "the output is the input file; write to another path (the input is never replaced)", out);
  if (!o.dry_run && !o.force && exists(out))
    throw Error(ErrorCode::invalid_argument, "the output exists; add --force to replace it", out);

  Checkpoint ck = open_input(in);
  Schema schema = recognise(ck.root());
  Value* out_root = &ck.root();
  std::optional<KeyPlan> plan;
  if (changes_keys(o)) {
    if (!schema.model)
      throw Error(ErrorCode::invalid_argument,
                  "found no state dict to rename in it (" + schema.description() + "); key options need a state dict or a checkpoint holding one",
                  in);
    if (o.backbone && schema.layout != Layout::mammoth && !o.quiet)
      std::fprintf(stderr, "ckpt-convert: note: %s is not a Mammoth checkpoint (%s); taking the net.* keys of its state dict\n",
                   escape(in).c_str(), schema.description().c_str());
    plan = plan_keys(*schema.model, o);
    if (plan->kept == 0) throw Error(ErrorCode::invalid_argument, "no key is left after the key options (nothing to write)", in);
  }
  if (o.dry_run) {
    std::printf("# %s (%s, %s) -> %s (%s)\n", escape(basename_of(in)).c_str(), container_name(ck.format().container),
                schema.description().c_str(), escape(basename_of(out)).c_str(), out_format_name(*fmt));
    if (plan) {
      print_plan(stdout, schema.model_key.empty() ? std::string("state dict") : schema.model_key, *plan);
      if (!o.backbone && schema.model != &ck.root()) {
        std::string rest;
        for (const auto& [k, v] : ck.root().items())
          if (k->is(Kind::string) && k->as_str() != schema.model_key) rest += (rest.empty() ? "" : ", ") + k->as_str();
        if (!rest.empty()) std::printf("# unchanged: %s\n", escape(rest).c_str());
      }
    } else {
      std::printf("# keys unchanged\n");
    }
    if (o.dtype) std::printf("# floating tensors cast to %s\n", std::string(dtype_name(*o.dtype)).c_str());
    return exit_ok;
  }
  if (plan) {
    Document& doc = ck.document();
    Value* nd = rebuild_state_dict(doc, *schema.model, *plan, o);
    if (o.backbone || schema.model == &ck.root()) out_root = nd;
    else ck.root().set(schema.model_key, nd);
  }
  if (o.dtype) cast_floating(*out_root, *o.dtype);

  const bool untouched = !plan && !o.dtype;
  const bool zst_input = ck.format().era.find("zstd-compressed") != std::string::npos;
  Progress progress("ckpt-convert " + basename_of(out), payload_bytes(*out_root));
  uint64_t last = 0;
  auto tick = [&](uint64_t done) {
    if (done > last) progress.advance(done - last);
    last = std::max(last, done);
  };
  uint64_t bytes = 0;
  std::string detail;
  switch (*fmt) {
    case OutFormat::pt: {
      if (untouched && zst_input) {  // x.pt.zst -> x.pt: the exact original bytes
        bytes = zstd_decompress_file(in, out, ZstdOptions{3, o.threads, o.durable, {}});
        detail = "decompressed";
        break;
      }
      SaveOptions so;
      so.durable = o.durable;
      so.archive_name = archive_name_for(out);
      so.progress = tick;
      bytes = save(out, *out_root, so);
      break;
    }
    case OutFormat::pt_zst: {
      ZstdOptions zo{o.compression == Hdf5Compression::zstd && o.level > 0 ? o.level : 3, o.threads, o.durable, {}};
      const Container c = ck.format().container;
      if (untouched && !zst_input && (c == Container::torch_zip || c == Container::legacy_stream || c == Container::legacy_tar)) {
        zo.progress = tick;  // the input's own bytes, compressed as they are
        bytes = zstd_compress_file(in, out, zo);
        detail = "input bytes compressed";
        break;
      }
      std::string dir = out.find('/') == std::string::npos ? "." : out.substr(0, out.rfind('/'));
      Unlinker tmp{dir + "/." + basename_of(out) + ".tmp-" + std::to_string(::getpid()) + ".pt"};
      SaveOptions so;
      so.durable = false;
      so.archive_name = archive_name_for(out);
      so.progress = [&](uint64_t d) { tick(d / 2); };
      save(tmp.path, *out_root, so);
      zo.progress = [&, half = last](uint64_t d) { tick(half + d / 2); };
      bytes = zstd_compress_file(tmp.path, out, zo);
      break;
    }
    case OutFormat::h5: {
      auto hash = std::async(std::launch::async, [&] { return sha256_file(in); });
      Hdf5SaveOptions ho;
      ho.compression = o.compression;
      ho.level = o.level;
      ho.bf16 = o.bf16;
      ho.threads = o.threads;
      ho.durable = o.durable;
      ho.progress = tick;
      ho.to_json = [](const Value& v) { return to_json(v).dump(); };
      ho.root_attributes = {{"producer", producer()},
                            {"source_file", basename_of(in)},
                            {"source_format", container_name(ck.format().container)},
                            {"source_layout", layout_name(schema.layout)}};
      if (o.backbone) ho.root_attributes.emplace_back("content", "backbone state dict");
      ho.finish_attributes = [&](std::vector<std::pair<std::string, std::string>>& a) { a.emplace_back("source_sha256", hash.get()); };
      Hdf5SaveResult r = save_hdf5(out, *out_root, ho);
      bytes = r.bytes;
      detail = std::to_string(r.datasets) + " datasets";
      if (r.hard_links) detail += ", " + std::to_string(r.hard_links) + " alias links";
      break;
    }
    case OutFormat::safetensors: {
      Schema s2 = recognise(*out_root);
      const Value* sd = s2.model ? s2.model : (out_root->is_dict() ? out_root : nullptr);
      if (!sd) throw Error(ErrorCode::invalid_argument, "safetensors holds a dict of tensors, and this is " + s2.description(), in);
      SafetensorsSaveOptions so;
      so.durable = o.durable;
      so.progress = tick;
      so.metadata = {{"format", "pt"}, {"ckpt.producer", producer()}};
      if (s2.args) so.metadata.emplace_back("ckpt.args", to_json(*s2.args).dump());
      if (s2.results) so.metadata.emplace_back("ckpt.results", to_json(*s2.results).dump());
      if (sd != out_root && !o.quiet)
        std::fprintf(stderr, "ckpt-convert: note: safetensors holds tensors only: writing '%s' (%zu keys)%s\n",
                     escape(s2.model_key).c_str(), sd->size(), s2.args ? "; args and results go to __metadata__" : "");
      SafetensorsSaveResult r = save_safetensors(out, *sd, so);
      bytes = r.bytes;
      detail = std::to_string(r.tensors) + " tensors";
      if (!r.aliases.empty()) detail += ", " + std::to_string(r.aliases.size()) + " aliases recorded in __metadata__";
      break;
    }
  }
  progress.finish();
  if (!o.quiet) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::string what = plan ? ", " + std::to_string(plan->kept) + " keys" + (plan->dropped ? " (" + std::to_string(plan->dropped) + " dropped)" : "") : "";
    std::fprintf(stderr, "ckpt-convert: wrote %s (%s, %s%s%s) in %.2f s\n", escape(out).c_str(), out_format_name(*fmt),
                 human_bytes(bytes).c_str(), what.c_str(), detail.empty() ? "" : (", " + detail).c_str(), secs);
  }
  return exit_ok;
}

}  // namespace ckpt::tools
