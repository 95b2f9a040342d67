#include "ckpt/checkpoint.hpp"

#include <cstring>
#include <unordered_map>
#include <zstd.h>

#include "ckpt/detail/checked.hpp"
#include "ckpt/error.hpp"
#include "internal.hpp"

namespace ckpt {

const char* container_name(Container c) noexcept {
  switch (c) {
    case Container::torch_zip: return "torch zip";
    case Container::torchscript: return "TorchScript archive";
    case Container::legacy_stream: return "legacy torch stream (< 1.6)";
    case Container::legacy_tar: return "legacy torch TAR (<= 0.1.9)";
    case Container::pickle: return "plain pickle";
    case Container::safetensors: return "safetensors";
    case Container::hdf5: return "HDF5";
  }
  return "?";
}

Checkpoint::Checkpoint() : doc_(std::make_unique<Document>()) {}
Checkpoint::Checkpoint(Checkpoint&&) noexcept = default;
Checkpoint& Checkpoint::operator=(Checkpoint&&) noexcept = default;
Checkpoint::~Checkpoint() = default;

const std::string& Checkpoint::path() const noexcept { return src_->path(); }
uint64_t Checkpoint::file_size() const noexcept { return src_->size(); }

bool Checkpoint::weights_only_compatible() const noexcept {
  // torch's weights_only loads zip and legacy-stream files; TAR it refuses
  // outright (PR #145020), TorchScript and bare pickles are not torch.load's.
  if (info_.container != Container::torch_zip && info_.container != Container::legacy_stream) return false;
  for (const auto& g : globals_)
    if (g.verdict != GlobalVerdict::allowed) return false;
  for (size_t op = 0; op < 256; ++op)
    if (opcodes_.test(op) && !weights_only_opcode(static_cast<uint8_t>(op))) return false;
  return true;
}

std::vector<TensorVisit> Checkpoint::tensors() const {
  std::vector<TensorVisit> out;
  out.reserve(storages_.size());
  walk_tensors(*root_, [&](const TensorVisit& v) {
    out.push_back(v);
    return true;
  }, opts_depth_, opts_nodes_);
  return out;
}

bool Checkpoint::records_aligned() const {
  if (!zip_) return false;
  for (const auto& e : zip_->entries())
    if (zip_->relative_name(e).substr(0, 5) == "data/" && zip_->data_offset(e) % 64 != 0) return false;
  return true;
}

void Checkpoint::verify() const {
  if (zip_) {
    for (const auto& e : zip_->entries()) zip_->verify_crc(e);
  }
  for (const auto& s : storages_) (void)s->bytes();  // inflates compressed records, checks their sizes
}

Checkpoint Checkpoint::open(const std::string& path, const OpenOptions& opts) {
  return open(Source::open_file(path, opts.use_mmap), opts);
}

Checkpoint Checkpoint::open(std::shared_ptr<const Source> source, const OpenOptions& opts) {
  Checkpoint ck;
  ck.src_ = std::move(source);
  ck.opts_depth_ = opts.limits.max_depth;
  ck.opts_nodes_ = opts.limits.max_walk_nodes;
  CheckpointLoader{ck, opts}.load();
  return ck;
}

Checkpoint Checkpoint::adopt(std::shared_ptr<const Source> source, std::unique_ptr<Document> doc, Value* root,
                             FormatInfo info, std::vector<std::shared_ptr<Storage>> storages) {
  if (!source || !doc || !root) throw Error(ErrorCode::invalid_argument, "Checkpoint::adopt needs a source, a document and a root");
  if (&root->document() != doc.get())
    throw Error(ErrorCode::invalid_argument, "Checkpoint::adopt: the root value belongs to another document");
  Checkpoint ck;
  ck.src_ = std::move(source);
  ck.doc_ = std::move(doc);
  ck.root_ = root;
  ck.info_ = std::move(info);
  ck.storages_ = std::move(storages);
  return ck;
}

// ------------------------------------------------------------------ loading

namespace {

bool starts_with(const uint8_t* d, uint64_t n, std::string_view p) {
  return n >= p.size() && std::memcmp(d, p.data(), p.size()) == 0;
}

bool icontains(std::string_view hay, std::string_view needle) {
  if (needle.size() > hay.size()) return false;
  for (size_t i = 0; i + needle.size() <= hay.size(); ++i) {
    bool ok = true;
    for (size_t k = 0; k < needle.size() && ok; ++k)
      ok = std::tolower(static_cast<unsigned char>(hay[i + k])) == needle[k];
    if (ok) return true;
  }
  return false;
}

bool plausible_pickle_start(uint8_t b) {
  static constexpr std::string_view ops = "(]})cNILSVXUKJMFGTBCdltpg";
  return b == 0x80 || b == 0x88 || b == 0x89 || b == 0x8c || b == 0x95 || ops.find(static_cast<char>(b)) != std::string_view::npos;
}

std::string hex_prefix(const uint8_t* d, uint64_t n) {
  std::string s;
  char buf[4];
  for (uint64_t i = 0; i < n && i < 8; ++i) {
    std::snprintf(buf, sizeof buf, "%02x ", d[i]);
    s += buf;
  }
  if (!s.empty()) s.pop_back();
  return s;
}

constexpr std::string_view kLegacyMagic = "119547037146038801333356";

}  // namespace

UnpickleOptions CheckpointLoader::unpickle_options(const std::string& entry) const {
  UnpickleOptions u;
  u.limits = opts.limits;
  u.allow_unknown_globals = opts.allow_unknown_globals;
  u.audit = opts.audit;
  u.globals_on_error = opts.globals_on_error;
  u.path = ck.src_->path();
  u.entry = entry;
  return u;
}

void CheckpointLoader::merge_globals(const std::vector<GlobalRef>& g) {
  for (const auto& r : g) {
    bool found = false;
    for (auto& x : ck.globals_)
      if (x.module == r.module && x.name == r.name) {
        x.count += r.count;
        found = true;
      }
    if (!found) ck.globals_.push_back(r);
  }
}

void CheckpointLoader::load() {
  const Source& s = *ck.src_;
  const uint8_t* d = s.data();
  const uint64_t n = s.size();
  const std::string& path = s.path();
  if (n == 0) throw Error(ErrorCode::unknown_format, "the file is empty", path, {}, 0);

  if (starts_with(d, n, "PK\x03\x04") || starts_with(d, n, "PK\x05\x06") || starts_with(d, n, "PK\x01\x02"))
    return load_zip();

  if (starts_with(d, n, "\x28\xb5\x2f\xfd")) {  // zstd frame: decompress and detect again
    std::unique_ptr<ZSTD_DStream, size_t (*)(ZSTD_DStream*)> z(ZSTD_createDStream(), ZSTD_freeDStream);
    if (!z) throw Error(ErrorCode::internal, "cannot create a zstd decoder", path);
    std::vector<uint8_t> out;
    ZSTD_inBuffer in{d, static_cast<size_t>(n), 0};
    size_t rc = 1;
    std::vector<uint8_t> chunk(ZSTD_DStreamOutSize());
    while (in.pos < in.size || rc != 0) {
      ZSTD_outBuffer ob{chunk.data(), chunk.size(), 0};
      rc = ZSTD_decompressStream(z.get(), &ob, &in);
      if (ZSTD_isError(rc))
        throw Error(ErrorCode::corrupt_compressed, std::string("invalid zstd data: ") + ZSTD_getErrorName(rc), path, {}, in.pos);
      if (out.size() + ob.pos > opts.limits.max_inflate_bytes)
        throw Error(ErrorCode::limit_exceeded, "zstd data inflates past the limit of " + std::to_string(opts.limits.max_inflate_bytes) + " bytes", path, {}, in.pos);
      out.insert(out.end(), chunk.data(), chunk.data() + ob.pos);
      if (in.pos == in.size && ob.pos == 0 && rc != 0) throw Error(ErrorCode::truncated, "zstd frame is truncated", path, {}, n);
    }
    ck.src_ = Source::from_bytes(std::move(out), path);
    load();
    ck.info_.era += ck.info_.era.empty() ? "zstd-compressed" : ", zstd-compressed";
    return;
  }

  // Diagnose the usual download accidents before trying to unpickle.
  {
    std::string_view head(reinterpret_cast<const char*>(d), static_cast<size_t>(std::min<uint64_t>(n, 1024)));
    size_t i = 0;
    if (head.substr(0, 3) == "\xEF\xBB\xBF") i = 3;
    while (i < head.size() && std::isspace(static_cast<unsigned char>(head[i]))) ++i;
    if (i < head.size() && head[i] == '<' &&
        (icontains(head, "<html") || icontains(head, "<!doctype") || icontains(head, "<head") || icontains(head, "<?xml")))
      throw Error(ErrorCode::html_page,
                  "this is an HTML page, not a checkpoint: the download probably failed or needs a login (check the URL)",
                  path, {}, 0);
    constexpr std::string_view kLfs = "version https://git-lfs.github.com/spec";
    if (head.substr(0, kLfs.size()) == kLfs) {
      std::string size_note;
      auto p = head.find("\nsize ");
      if (p != std::string_view::npos) size_note = " of " + std::string(head.substr(p + 6, head.find('\n', p + 6) - p - 6)) + " bytes";
      throw Error(ErrorCode::lfs_pointer,
                  "this is a git-LFS pointer, not the checkpoint" + size_note +
                      ": run 'git lfs pull' (or download the file itself)",
                  path, {}, 0);
    }
  }

  if (looks_like_tar(d, n)) return load_tar();

  const std::string what = starts_with(d, n, "\x89PNG") ? " (a PNG image)"
                           : starts_with(d, n, "\x7f" "ELF") ? " (an executable)"
                           : starts_with(d, n, "\x89HDF") ? " (an HDF5 file)"
                           : starts_with(d, n, "GGUF") ? " (a GGUF model)"
                           : starts_with(d, n, "\xff\xd8\xff") ? " (a JPEG image)"
                           : starts_with(d, n, "%PDF") ? " (a PDF document)"
                           : "";
  if (!what.empty() || !plausible_pickle_start(d[0])) {
    throw Error(ErrorCode::unknown_format,
                "not a PyTorch checkpoint" + what + ": it starts with bytes " + hex_prefix(d, n) +
                    " (expected a zip archive, a legacy torch stream or a pickle)",
                path, {}, 0);
  }

  // A pickle: either the legacy stream's magic number, or a bare pickle.
  UnpickleOptions u = unpickle_options({});
  Document& doc = *ck.doc_;
  UnpickleResult first = unpickle(s.span(), doc, u);
  if (first.value->kind() == Kind::bigint && first.value->bigint_text() == kLegacyMagic)
    return load_legacy_stream(first.end);
  load_pickle(first);
}

void CheckpointLoader::load_pickle(const UnpickleResult& r) {
  ck.info_.container = Container::pickle;
  ck.info_.pickle_protocol = r.protocol;
  ck.info_.trailing_bytes = ck.src_->size() - r.end;
  ck.info_.era = "plain pickle";
  ck.root_ = r.value;
  ck.opcodes_ = r.opcodes;
  merge_globals(r.globals);
}

void CheckpointLoader::load_zip() {
  const std::string& path = ck.src_->path();
  ck.zip_ = std::make_unique<ZipArchive>(ck.src_, opts.limits);
  ZipArchive& z = *ck.zip_;
  FormatInfo& info = ck.info_;
  info.root = z.root();
  bool torchscript = z.find("constants.pkl") != nullptr;
  for (const auto& e : z.entries())
    if (z.relative_name(e).substr(0, 5) == "code/") torchscript = true;
  info.container = torchscript ? Container::torchscript : Container::torch_zip;

  auto small_record = [&](std::string_view name) -> std::optional<std::string> {
    const ZipEntry* e = z.find(name);
    if (!e) return std::nullopt;
    if (e->uncompressed_size > 4096)
      throw Error(ErrorCode::corrupt_zip, "record is " + std::to_string(e->uncompressed_size) + " bytes, expected a few", path, std::string(e->name), e->local_header_offset);
    auto b = z.read(*e, true);
    std::string s(b.begin(), b.end());
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
    return s;
  };
  if (auto v = small_record("version")) {
    info.version = *v;
  } else if (auto v2 = small_record(".data/version")) {
    info.version = *v2;
  }
  if (!info.version.empty()) {
    char* end = nullptr;
    long ver = std::strtol(info.version.c_str(), &end, 10);
    if (end == info.version.c_str() || *end != '\0' || ver < 1)
      throw Error(ErrorCode::corrupt_zip, "the version record holds '" + info.version.substr(0, 20) + "', not a number", path, z.root() + "/version");
    if (ver > 10)
      throw Error(ErrorCode::unsupported_version, "file version " + info.version + ", supported <= 10", path, z.root() + "/version");
  }
  if (auto b = small_record("byteorder")) {
    if (*b != "little" && *b != "big")
      throw Error(ErrorCode::corrupt_zip, "the byteorder record holds '" + b->substr(0, 20) + "', expected little or big", path, z.root() + "/byteorder");
    info.byteorder = *b;
    info.little_endian = *b == "little";
  }
  if (auto f = small_record(".format_version")) info.format_version = *f;
  if (auto a = small_record(".storage_alignment")) info.storage_alignment = *a;
  info.has_serialization_id = z.find(".data/serialization_id") != nullptr;

  const ZipEntry* pkl = z.find("data.pkl");
  if (!pkl) {
    throw Error(ErrorCode::missing_record,
                std::string("no data.pkl record") + (z.root().empty() ? "" : " under '" + z.root() + "/'") +
                    ": this zip archive is not a torch.save checkpoint",
                path);
  }
  if (pkl->uncompressed_size > opts.limits.max_pickle_bytes)
    throw Error(ErrorCode::limit_exceeded, "data.pkl of " + std::to_string(pkl->uncompressed_size) + " bytes exceeds the limit", path, std::string(pkl->name), pkl->local_header_offset);
  std::vector<uint8_t> pkl_owned;
  std::span<const uint8_t> pkl_bytes;
  if (pkl->method == 0) {
    z.verify_crc(*pkl);
    pkl_bytes = z.stored_bytes(*pkl);
  } else {
    pkl_owned = z.read(*pkl, true);
    pkl_bytes = pkl_owned;
  }

  bool pointer_keys = false;
  // Keyed by a view of the key string inside the pid value (values never move).
  std::unordered_map<std::string_view, std::shared_ptr<Storage>> cache;
  cache.reserve(z.entries().size());
  auto src = ck.src_;
  const bool big = info.byteorder == "big";
  UnpickleOptions u = unpickle_options(std::string(pkl->name));
  u.persistent_load = [&](Document& doc, Value* pid, uint64_t) -> Value* {
    if (pid->kind() != Kind::tuple || pid->size() < 5 || pid->elements()[0]->kind() != Kind::string ||
        pid->elements()[0]->as_str() != "storage")
      throw Error(ErrorCode::malformed_pickle, "persistent id " + repr(*pid, 80) + " is not a ('storage', type, key, location, numel) tuple");
    const auto id = pid->elements();
    const Value& type = *id[1];
    std::optional<DType> dt;
    if (type.kind() == Kind::global && (type.module() == "torch" || type.module() == "torch.storage"))
      dt = dtype_from_storage_class(type.name());
    else if (type.kind() == Kind::torch_dtype)
      dt = type.torch_dtype();
    if (!dt) throw Error(ErrorCode::malformed_pickle, "unknown storage type " + repr(type, 60));
    const Value& key = *id[2];
    const Value& loc = *id[3];
    const Value& numel = *id[4];
    if (key.kind() != Kind::string || loc.kind() != Kind::string || numel.kind() != Kind::integer || numel.as_int() < 0)
      throw Error(ErrorCode::malformed_pickle, "malformed storage id " + repr(*pid, 80));
    auto it = cache.find(std::string_view(key.as_str()));
    if (it != cache.end()) return doc.storage(it->second);
    auto nbytes = detail::checked_mul(static_cast<uint64_t>(numel.as_int()), static_cast<uint64_t>(dtype_size(*dt)));
    char rec_buf[64];
    std::string rec_big;
    std::string_view rec;
    if (key.as_str().size() + 5 <= sizeof rec_buf) {
      std::memcpy(rec_buf, "data/", 5);
      std::memcpy(rec_buf + 5, key.as_str().data(), key.as_str().size());
      rec = std::string_view(rec_buf, 5 + key.as_str().size());
    } else {
      rec_big = "data/" + key.as_str();
      rec = rec_big;
    }
    const ZipEntry* e = z.find(rec);
    if (!e)
      throw Error(ErrorCode::missing_record, "storage '" + key.as_str() + "' has no record " + (z.root().empty() ? "" : z.root() + "/") +
                                                 std::string(rec));
    // Like torch, a record may be longer than the storage (its tail is
    // unused), never shorter: that would read past it (CVE-2026-24747).
    if (!nbytes || *nbytes > e->uncompressed_size)
      throw Error(ErrorCode::invalid_tensor,
                  "storage '" + key.as_str() + "' declares " + std::to_string(numel.as_int()) + " elements of " +
                      std::string(dtype_name(*dt)) + " but its record holds only " + std::to_string(e->uncompressed_size) + " bytes");
    std::shared_ptr<Storage> st;
    if (e->method == 0) {
      const ZipArchive* zp = ck.zip_.get();
      const ZipEntry* ep = e;
      st = Storage::located(*dt, *nbytes, [zp, ep] {  // two pointers: no heap for the closure
        uint64_t off = zp->data_offset(*ep);
        return std::make_pair(zp->source().data() + off, off);
      }, src, src->mapped(), loc.as_str());
      st->set_checksum([zp, ep] { zp->verify_crc(*ep); },
                       ep->uncompressed_size == *nbytes ? std::optional<uint32_t>(ep->crc32) : std::nullopt);
    } else {
      const ZipArchive* zp = ck.zip_.get();
      const ZipEntry* ep = e;
      auto keep = src;
      const uint64_t want = *nbytes;
      st = Storage::lazy(*dt, want, [zp, ep, keep, want] {
        auto b = zp->read(*ep, true);
        b.resize(static_cast<size_t>(want));
        return b;
      }, loc.as_str());
      st->compressed = true;
    }
    st->key = key.as_str();
    st->entry = std::string(e->name);
    st->set_big_endian(big);
    if (key.as_str().size() > 6) pointer_keys = true;
    cache.emplace(std::string_view(key.as_str()), st);
    ck.storages_.push_back(st);
    return doc.storage(st);
  };
  UnpickleResult r = unpickle(pkl_bytes, *ck.doc_, u);
  ck.root_ = r.value;
  ck.opcodes_ = r.opcodes;
  info.pickle_protocol = r.protocol;
  info.trailing_bytes = pkl_bytes.size() - r.end;
  merge_globals(r.globals);

  if (torchscript) info.era = "TorchScript (torch.jit.save)";
  else if (!info.format_version.empty()) info.era = "torch >= 2.7";
  else if (!info.byteorder.empty()) info.era = "torch 2.1 - 2.6";
  else if (pointer_keys) info.era = "torch 1.6 - 1.9";
  else if (!info.version.empty()) info.era = "torch 1.6 - 2.0";
  else info.era = "zip without a version record (not written by torch.save)";
}

void CheckpointLoader::load_legacy_stream(uint64_t first_end) {
  const Source& s = *ck.src_;
  const std::string& path = s.path();
  FormatInfo& info = ck.info_;
  info.container = Container::legacy_stream;
  info.era = "torch < 1.6 (legacy stream)";
  Document& doc = *ck.doc_;
  uint64_t pos = first_end;

  auto next_pickle = [&](const char* what, UnpickleOptions u) {
    u.entry = what;
    auto sp = s.span().subspan(static_cast<size_t>(pos));
    UnpickleResult r;
    try {
      r = unpickle(sp, doc, u);
    } catch (const Error& e) {
      // Offsets inside a section are relative to it: report file offsets.
      throw Error(e.code(), e.detail(), path, std::string(what) + " pickle", e.has_offset() ? pos + e.byte_offset() : pos, e.key_path());
    }
    pos += r.end;
    merge_globals(r.globals);
    return r;
  };

  UnpickleOptions plain = unpickle_options({});
  plain.allow_unknown_globals = false;
  auto proto = next_pickle("protocol version", plain);
  if (proto.value->kind() != Kind::integer || proto.value->as_int() != 1001)
    throw Error(ErrorCode::unsupported_version, "legacy protocol version " + repr(*proto.value, 40) + ", supported 1001", path, {}, pos);
  auto sysinfo = next_pickle("sys_info", plain);
  if (sysinfo.value->kind() != Kind::dict) throw Error(ErrorCode::corrupt_legacy, "sys_info is not a dict", path, {}, pos);
  // torch writes legacy storages little-endian whatever the host
  // (THPStorage_writeFileRaw converts, readFileRaw assumes it); sys_info only
  // tells what the saving host was.
  if (Value* le = sysinfo.value->get("little_endian"); le && le->kind() == Kind::boolean && !le->as_bool())
    info.era += " (saved on a big-endian host; its data is little-endian all the same)";
  info.little_endian = true;
  info.byteorder = "little";

  struct Pending {
    std::shared_ptr<Storage> root;
    DType dtype;
    uint64_t numel;
    std::vector<std::pair<std::shared_ptr<Storage>, uint64_t>> views;  // view, element offset
  };
  std::unordered_map<std::string, Pending> roots;
  std::unordered_map<std::string, std::shared_ptr<Storage>> views;

  UnpickleOptions u = unpickle_options("object");
  u.persistent_load = [&](Document& d, Value* pid, uint64_t) -> Value* {
    if (pid->kind() != Kind::tuple || pid->size() < 1 || pid->at(0).kind() != Kind::string)
      throw Error(ErrorCode::malformed_pickle, "persistent id " + repr(*pid, 80) + " is not a tuple");
    const std::string& tag = pid->at(0).as_str();
    if (tag == "module") {
      // ('module', class, source_file, source): a full-model save; the class
      // is described, its source never compiled.
      if (pid->size() < 2) throw Error(ErrorCode::malformed_pickle, "short module persistent id");
      return &pid->at(1);
    }
    if (tag != "storage" || pid->size() < 6)
      throw Error(ErrorCode::malformed_pickle, "persistent id " + repr(*pid, 80) + " is not a ('storage', type, key, location, numel, view) tuple");
    const Value& type = pid->at(1);
    std::optional<DType> dt;
    if (type.kind() == Kind::global && type.module() == "torch") dt = dtype_from_storage_class(type.name());
    if (!dt) throw Error(ErrorCode::malformed_pickle, "unknown storage type " + repr(type, 60));
    const Value& key = pid->at(2);
    const Value& loc = pid->at(3);
    const Value& numel = pid->at(4);
    const Value& view = pid->at(5);
    if (key.kind() != Kind::string || loc.kind() != Kind::string || numel.kind() != Kind::integer || numel.as_int() < 0)
      throw Error(ErrorCode::malformed_pickle, "malformed storage id " + repr(*pid, 80));
    auto it = roots.find(key.as_str());
    if (it == roots.end()) {
      auto nbytes = detail::checked_mul(static_cast<uint64_t>(numel.as_int()), static_cast<uint64_t>(dtype_size(*dt)));
      if (!nbytes || *nbytes > s.size())
        throw Error(ErrorCode::invalid_tensor, "storage '" + key.as_str() + "' declares " + std::to_string(numel.as_int()) + " elements, more than the file holds");
      auto st = Storage::unbound(*dt, *nbytes, loc.as_str());
      st->key = key.as_str();
      it = roots.emplace(key.as_str(), Pending{st, *dt, static_cast<uint64_t>(numel.as_int()), {}}).first;
      ck.storages_.push_back(st);
    }
    if (view.kind() == Kind::none) return d.storage(it->second.root);
    // Pre-0.4 storage view: (view_key, offset, view_size).
    if (view.kind() != Kind::tuple || view.size() != 3 || view.at(0).kind() != Kind::string ||
        view.at(1).kind() != Kind::integer || view.at(2).kind() != Kind::integer)
      throw Error(ErrorCode::malformed_pickle, "malformed storage view " + repr(view, 80));
    const std::string& vkey = view.at(0).as_str();
    auto vit = views.find(vkey);
    if (vit != views.end()) return d.storage(vit->second);
    int64_t voff = view.at(1).as_int(), vsize = view.at(2).as_int();
    if (voff < 0 || vsize < 0 || static_cast<uint64_t>(voff) > it->second.numel ||
        static_cast<uint64_t>(vsize) > it->second.numel - static_cast<uint64_t>(voff))
      throw Error(ErrorCode::invalid_tensor, "storage view [" + std::to_string(voff) + ", +" + std::to_string(vsize) +
                                                 ") lies outside its root storage of " + std::to_string(it->second.numel) + " elements");
    auto vs = Storage::unbound(*dt, static_cast<uint64_t>(vsize) * static_cast<uint64_t>(dtype_size(*dt)), loc.as_str());
    vs->key = vkey;
    it->second.views.emplace_back(vs, static_cast<uint64_t>(voff));
    views.emplace(vkey, vs);
    ck.storages_.push_back(vs);
    return d.storage(vs);
  };
  auto obj = next_pickle("object", u);
  ck.root_ = obj.value;
  ck.opcodes_ = obj.opcodes;
  info.pickle_protocol = obj.protocol;
  auto keys = next_pickle("storage keys", plain);
  if (keys.value->kind() != Kind::list) throw Error(ErrorCode::corrupt_legacy, "the storage key list is not a list", path, {}, pos);

  // Raw storages, in key-list order: int64 element count, then the bytes.
  for (const Value* k : keys.value->elements()) {
    if (k->kind() != Kind::string) throw Error(ErrorCode::corrupt_legacy, "a storage key is not a string", path, "storages", pos);
    auto it = roots.find(k->as_str());
    if (it == roots.end())
      throw Error(ErrorCode::corrupt_legacy, "storage '" + k->as_str() + "' is listed but no tensor uses it", path, "storages", pos);
    auto head = s.slice(pos, 8, "legacy storage header");
    uint64_t cnt = 0;
    for (int i = 0; i < 8; ++i) cnt |= static_cast<uint64_t>(head[i]) << (8 * i);
    // torch resizes the storage to the count in the file; a count below the
    // id's numel would leave tensors pointing past the data.
    if (cnt < it->second.numel)
      throw Error(ErrorCode::corrupt_legacy,
                  "storage '" + k->as_str() + "' holds " + std::to_string(cnt) + " elements, its id says " + std::to_string(it->second.numel),
                  path, "storages", pos);
    pos += 8;
    const uint64_t esz = static_cast<uint64_t>(dtype_size(it->second.dtype));
    auto file_bytes = detail::checked_mul(cnt, esz);
    if (!file_bytes) throw Error(ErrorCode::corrupt_legacy, "storage element count overflows", path, "storages", pos - 8);
    s.slice(pos, *file_bytes, "legacy storage data");
    it->second.root->bind(s.data() + pos, ck.src_, pos, s.mapped());
    it->second.root->entry = "storage " + k->as_str();
    for (auto& [vs, voff] : it->second.views) {
      vs->bind(s.data() + pos + voff * esz, ck.src_, pos + voff * esz, s.mapped());
      vs->entry = "storage " + k->as_str();
    }
    pos += *file_bytes;
    roots.erase(it);
  }
  if (!roots.empty())
    throw Error(ErrorCode::corrupt_legacy, "storage '" + roots.begin()->first + "' is used but missing from the data section", path, "storages", pos);
  info.trailing_bytes = s.size() - pos;
}

}  // namespace ckpt
