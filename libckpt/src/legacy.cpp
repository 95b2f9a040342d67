// The torch <= 0.1.9 TAR layout (torch.serialization.legacy_load): members
// sys_info, storages (+ storage_views), tensors, and the object pickle whose
// persistent ids are integer keys into those tables.
#include <cstring>
#include <unordered_map>

#include "ckpt/detail/checked.hpp"
#include "ckpt/error.hpp"
#include "internal.hpp"

namespace ckpt {
namespace {

struct Member {
  uint64_t offset, size;
};

uint64_t octal(const uint8_t* p, size_t n, bool& ok) {
  uint64_t v = 0;
  size_t i = 0;
  while (i < n && (p[i] == ' ' || p[i] == 0)) ++i;
  if (i < n && (p[i] & 0x80)) {  // GNU base-256
    ok = false;
    return 0;
  }
  for (; i < n && p[i] >= '0' && p[i] <= '7'; ++i) {
    if (v >> 60) {
      ok = false;
      return 0;
    }
    v = v * 8 + (p[i] - '0');
  }
  for (; i < n; ++i)
    if (p[i] != ' ' && p[i] != 0) ok = false;
  return v;
}

bool header_checksum_ok(const uint8_t* h) {
  bool ok = true;
  uint64_t want = octal(h + 148, 8, ok);
  if (!ok) return false;
  uint64_t sum = 0;
  for (int i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : h[i];
  return sum == want;
}

}  // namespace

bool looks_like_tar(const uint8_t* d, uint64_t n) {
  if (n < 1024) return false;
  if (std::memcmp(d + 257, "ustar", 5) == 0) return true;
  return d[0] != 0 && header_checksum_ok(d);
}

void CheckpointLoader::load_tar() {
  const Source& s = *ck.src_;
  const std::string& path = s.path();
  const uint8_t* d = s.data();
  FormatInfo& info = ck.info_;
  info.container = Container::legacy_tar;
  info.era = "torch <= 0.1.9 (TAR)";

  std::unordered_map<std::string, Member> members;
  uint64_t pos = 0;
  uint64_t count = 0;
  while (pos + 512 <= s.size()) {
    const uint8_t* h = d + pos;
    bool zero = true;
    for (int i = 0; i < 512 && zero; ++i) zero = h[i] == 0;
    if (zero) break;
    if (!header_checksum_ok(h)) throw Error(ErrorCode::corrupt_legacy, "bad TAR header checksum", path, "tar", pos);
    if (++count > opts.limits.max_entries) throw Error(ErrorCode::limit_exceeded, "too many TAR members", path, "tar", pos);
    bool ok = true;
    uint64_t size = octal(h + 124, 12, ok);
    if (!ok) throw Error(ErrorCode::corrupt_legacy, "bad TAR member size", path, "tar", pos);
    std::string name(reinterpret_cast<const char*>(h), strnlen(reinterpret_cast<const char*>(h), 100));
    char type = static_cast<char>(h[156]);
    uint64_t data = pos + 512;
    if (!detail::fits(data, size, s.size()))
      throw Error(ErrorCode::truncated, "TAR member '" + name + "' runs past the end of the file", path, "tar", pos);
    if (type == '0' || type == 0) members[name] = Member{data, size};
    pos = data + ((size + 511) / 512) * 512;
  }
  // Without a `tensors` member the object pickle can only name storages
  // inline, as ('storage', type, key, location, numel) tuples where the
  // tensor rebuilds expect one: not torch's layout (torch.load fails on such
  // files) but what burn's TAR test files hold. They are read that way.
  const bool inline_storages = !members.count("tensors");
  if (inline_storages) info.era = "TAR without a tensors table (non-standard: storages named inline, as burn writes)";
  for (const char* need : {"sys_info", "storages", "pickle"})
    if (!members.count(need))
      throw Error(ErrorCode::missing_record, std::string("legacy TAR checkpoint has no '") + need + "' member", path, "tar");
  for (const auto& [n, m] : members) info.records.push_back(n);

  Document& doc = *ck.doc_;
  // Runs one pickle from a member at *at, advancing it.
  auto run = [&](const std::string& member, uint64_t& at, UnpickleOptions u) -> Value* {
    const Member& m = members[member];
    u.entry = member;
    auto sp = s.span().subspan(static_cast<size_t>(m.offset + at), static_cast<size_t>(m.size - at));
    UnpickleResult r = unpickle(sp, doc, u);
    at += r.end;
    merge_globals(r.globals);
    if (member == "pickle") {
      info.pickle_protocol = r.protocol;
      ck.opcodes_ = r.opcodes;
      info.trailing_bytes = m.size - at;
    }
    return r.value;
  };
  auto raw = [&](const std::string& member, uint64_t& at, uint64_t n) {
    const Member& m = members[member];
    if (!detail::fits(at, n, m.size))
      throw Error(ErrorCode::truncated, "member ends inside a record", path, member, at);
    const uint8_t* p = d + m.offset + at;
    at += n;
    return p;
  };
  UnpickleOptions plain = unpickle_options({});
  plain.allow_unknown_globals = false;

  uint64_t at = 0;
  Value* sys = run("sys_info", at, plain);
  // Every number and storage in the TAR layout is little-endian: torch's
  // legacy_load unpacks '<i'/'<q' and reads storages with readFileRaw.
  if (sys->kind() == Kind::dict)
    if (Value* le = sys->get("little_endian"); le && le->kind() == Kind::boolean && !le->as_bool())
      info.era += " (saved on a big-endian host; its data is little-endian all the same)";
  info.little_endian = true;
  info.byteorder = "little";
  auto i64 = [](const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
    return static_cast<int64_t>(v);
  };

  std::unordered_map<std::string, Value*> objects;  // key -> storage or tensor value
  auto key_of = [&](const Value& v) -> std::string {
    if (v.kind() == Kind::integer) return std::to_string(v.as_int());
    if (v.kind() == Kind::string) return v.as_str();
    throw Error(ErrorCode::corrupt_legacy, "a TAR table key is " + repr(v, 40) + ", not an int", path);
  };

  // storages
  at = 0;
  Value* nst = run("storages", at, plain);
  if (nst->kind() != Kind::integer || nst->as_int() < 0 || static_cast<uint64_t>(nst->as_int()) > members["storages"].size)
    throw Error(ErrorCode::corrupt_legacy, "bad storage count " + repr(*nst, 40), path, "storages", 0);
  for (int64_t i = 0; i < nst->as_int(); ++i) {
    Value* hdr = run("storages", at, plain);
    if (hdr->kind() != Kind::tuple || hdr->size() != 3 || hdr->at(1).kind() != Kind::string || hdr->at(2).kind() != Kind::global)
      throw Error(ErrorCode::corrupt_legacy, "storage header " + repr(*hdr, 80) + " is not (key, location, type)", path, "storages", at);
    auto dt = dtype_from_storage_class(hdr->at(2).name());
    if (!dt) throw Error(ErrorCode::corrupt_legacy, "unknown storage type " + hdr->at(2).name(), path, "storages", at);
    int64_t numel = i64(raw("storages", at, 8));
    auto nbytes = numel >= 0 ? detail::checked_mul(static_cast<uint64_t>(numel), static_cast<uint64_t>(dtype_size(*dt))) : std::nullopt;
    if (!nbytes) throw Error(ErrorCode::corrupt_legacy, "bad storage size " + std::to_string(numel), path, "storages", at);
    uint64_t off = members["storages"].offset + at;
    const uint8_t* p = raw("storages", at, *nbytes);
    auto st = Storage::unbound(*dt, *nbytes, hdr->at(1).as_str());
    st->bind(p, ck.src_, off, ck.src_->mapped());
    st->key = key_of(hdr->at(0));
    st->entry = "storages";
    ck.storages_.push_back(st);
    objects[st->key] = doc.storage(st);
  }
  if (at < members["storages"].size) {
    Value* sv = run("storages", at, plain);
    if (sv->kind() != Kind::list) throw Error(ErrorCode::corrupt_legacy, "storage_views is not a list", path, "storages", at);
    for (const Value* v : sv->elements()) {
      if (v->kind() != Kind::tuple || v->size() != 4)
        throw Error(ErrorCode::corrupt_legacy, "storage view " + repr(*v, 60) + " is not (target, root, offset, size)", path, "storages");
      auto rit = objects.find(key_of(v->at(1)));
      if (rit == objects.end() || rit->second->kind() != Kind::storage)
        throw Error(ErrorCode::corrupt_legacy, "storage view of an unknown root", path, "storages");
      const auto& root = rit->second->storage();
      int64_t off = v->at(2).as_int(), size = v->at(3).as_int();
      if (off < 0 || size < 0 || static_cast<uint64_t>(off) > root->numel() || static_cast<uint64_t>(size) > root->numel() - static_cast<uint64_t>(off))
        throw Error(ErrorCode::invalid_tensor, "storage view lies outside its root", path, "storages");
      uint64_t es = static_cast<uint64_t>(dtype_size(root->dtype()));
      auto vs = Storage::unbound(root->dtype(), static_cast<uint64_t>(size) * es, root->location());
      vs->bind(root->bytes().data() + static_cast<uint64_t>(off) * es, ck.src_,
               root->file_offset() + static_cast<uint64_t>(off) * es, ck.src_->mapped());
      vs->key = key_of(v->at(0));
      vs->entry = "storages";
      ck.storages_.push_back(vs);
      objects[vs->key] = doc.storage(vs);
    }
  }

  // tensors
  at = 0;
  Value* nt = inline_storages ? doc.integer(0) : run("tensors", at, plain);
  if (nt->kind() != Kind::integer || nt->as_int() < 0 || static_cast<uint64_t>(nt->as_int()) > members["tensors"].size)
    throw Error(ErrorCode::corrupt_legacy, "bad tensor count " + repr(*nt, 40), path, "tensors", 0);
  for (int64_t i = 0; i < nt->as_int(); ++i) {
    Value* hdr = run("tensors", at, plain);
    if (hdr->kind() != Kind::tuple || hdr->size() < 2)
      throw Error(ErrorCode::corrupt_legacy, "tensor header " + repr(*hdr, 80) + " is not (key, storage, type)", path, "tensors", at);
    auto sit = objects.find(key_of(hdr->at(1)));
    if (sit == objects.end() || sit->second->kind() != Kind::storage)
      throw Error(ErrorCode::corrupt_legacy, "tensor refers to an unknown storage", path, "tensors", at);
    const uint8_t* p = raw("tensors", at, 8);
    int32_t ndim = static_cast<int32_t>(p[0] | p[1] << 8 | p[2] << 16 | static_cast<uint32_t>(p[3]) << 24);
    if (ndim < 0 || static_cast<uint32_t>(ndim) > opts.limits.max_ndim)
      throw Error(ErrorCode::invalid_tensor, "tensor has " + std::to_string(ndim) + " dimensions", path, "tensors", at);
    Tensor t;
    t.storage = sit->second->storage();
    t.dtype = t.storage->dtype();
    t.form = TensorForm::tar;
    const uint8_t* sz = raw("tensors", at, 8 * static_cast<uint64_t>(ndim));
    const uint8_t* st = raw("tensors", at, 8 * static_cast<uint64_t>(ndim));
    for (int k = 0; k < ndim; ++k) {
      t.shape.push_back(i64(sz + 8 * k));
      t.stride.push_back(i64(st + 8 * k));
    }
    t.storage_offset = i64(raw("tensors", at, 8));
    try {
      t.validate(opts.limits.max_ndim);
    } catch (const Error& e) {
      throw Error(e.code(), e.detail(), path, "tensors", at);
    }
    objects[key_of(hdr->at(0))] = doc.tensor(std::move(t));
  }

  // the object
  at = 0;
  UnpickleOptions u = unpickle_options("pickle");
  u.inline_storage_ids = inline_storages;
  u.persistent_load = [&](Document&, Value* pid, uint64_t) -> Value* {
    if (inline_storages && pid->kind() == Kind::tuple && pid->size() == 5 && pid->at(0).kind() == Kind::string &&
        pid->at(0).as_str() == "storage") {
      auto it = objects.find(key_of(pid->at(2)));
      if (it == objects.end() || it->second->kind() != Kind::storage)
        throw Error(ErrorCode::corrupt_legacy, "inline storage id " + repr(*pid, 80) + " names no storage of the storages member");
      const Value& numel = pid->at(4);
      if (numel.kind() != Kind::integer || numel.as_int() < 0 || static_cast<uint64_t>(numel.as_int()) > it->second->storage()->numel())
        throw Error(ErrorCode::invalid_tensor, "inline storage id " + repr(*pid, 80) + " claims more elements than the storage holds");
      return it->second;
    }
    if (pid->kind() == Kind::tuple && pid->size() >= 1) return &pid->at(0);  // ('module', ...) source check
    std::string k = pid->kind() == Kind::string ? pid->as_str() : key_of(*pid);
    auto it = objects.find(k);
    if (it == objects.end()) throw Error(ErrorCode::corrupt_legacy, "persistent id '" + k + "' is not in the storages or tensors table");
    return it->second;
  };
  ck.root_ = run("pickle", at, u);
}

}  // namespace ckpt
