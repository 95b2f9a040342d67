// fuzz_unpickler: ckpt::unpickle on any bytes, in both modes:
//   - weights-only (allow_unknown_globals = false), the allowlist pass;
//   - permissive (unknown globals become opaque objects).
// Invariants: whatever the strict pass accepts, the permissive pass accepts
// with the same result; no denied global survives; the result re-serialises
// with pickle_dumps, that pickle unpickles again, and serialising it a second
// time gives the same bytes (a round trip through our own writer is exact).
#include <map>

#include "fuzz_common.hpp"

namespace {

/// Resolves ('storage', torch.<X>Storage, key, location, numel) ids the way
/// the zip loader does (one storage per key), with zero-filled bytes.
struct Storages {
  std::map<std::string, std::shared_ptr<ckpt::Storage>, std::less<>> by_key;

  ckpt::Value* load(ckpt::Document& doc, ckpt::Value* pid) {
    using ckpt::Kind;
    if (pid->kind() != Kind::tuple || pid->size() < 5 || pid->at(0).kind() != Kind::string ||
        pid->at(0).as_str() != "storage" || pid->at(2).kind() != Kind::string || pid->at(4).kind() != Kind::integer)
      throw ckpt::Error(ckpt::ErrorCode::malformed_pickle, "not a storage id");
    std::optional<ckpt::DType> dt;
    const ckpt::Value& type = pid->at(1);
    if (type.kind() == Kind::global) dt = ckpt::dtype_from_storage_class(type.name());
    if (type.kind() == Kind::torch_dtype) dt = type.torch_dtype();
    if (!dt) throw ckpt::Error(ckpt::ErrorCode::malformed_pickle, "unknown storage type");
    const int64_t numel = pid->at(4).as_int();
    if (numel < 0 || numel > 4096) throw ckpt::Error(ckpt::ErrorCode::invalid_tensor, "storage size out of range");
    const std::string key(pid->at(2).as_str());
    auto it = by_key.find(key);
    if (it == by_key.end())
      it = by_key.emplace(key, ckpt::Storage::from_bytes(*dt, std::vector<uint8_t>(numel * ckpt::dtype_size(*dt), 0x3c))).first;
    return doc.storage(it->second);
  }
};

struct Run {
  Storages storages;
  ckpt::Document doc;
  ckpt::UnpickleResult result;
  bool ok = false;
  ckpt::ErrorCode code{};

  Run(std::span<const uint8_t> bytes, bool strict) {
    ckpt::UnpickleOptions o;
    o.limits = fuzz::limits();
    o.allow_unknown_globals = !strict;
    o.persistent_load = [this](ckpt::Document& d, ckpt::Value* pid, uint64_t) { return storages.load(d, pid); };
    try {
      result = ckpt::unpickle(bytes, doc, o);
      ok = true;
    } catch (const ckpt::Error& e) {
      fuzz::check_error(e);
      code = e.code();
    }
  }
};

std::string dumps(const ckpt::Value& v) {
  std::map<const ckpt::Storage*, std::string> keys;
  return ckpt::pickle_dumps(v, [&](const std::shared_ptr<ckpt::Storage>& s) {
    auto [it, fresh] = keys.emplace(s.get(), std::to_string(keys.size()));
    return it->second;
  });
}

std::span<const uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  Run strict(in, true);
  Run loose(in, false);
  if (strict.ok) {
    FUZZ_CHECK(loose.ok);
    FUZZ_CHECK(strict.result.end == loose.result.end);
    for (const auto& g : strict.result.globals)
      FUZZ_CHECK(g.verdict == ckpt::GlobalVerdict::allowed || g.verdict == ckpt::GlobalVerdict::known);
  }
  if (!loose.ok) return 0;
  for (const auto& g : loose.result.globals) {
    FUZZ_CHECK(g.verdict != ckpt::GlobalVerdict::denied);
    FUZZ_CHECK(g.verdict == ckpt::classify_global(g.module, g.name));
  }
  try {
    fuzz::exercise_tree(*loose.result.value, fuzz::limits());
  } catch (const ckpt::Error& e) {
    fuzz::check_error(e);  // a walk past its budget (memo bombs), ...
  }
  std::string first;
  try {
    first = dumps(*loose.result.value);
  } catch (const ckpt::Error& e) {
    fuzz::check_error(e);  // a value our writer cannot express (an opaque object, a cycle, ...)
    return 0;
  }
  Run again(as_bytes(first), false);
  FUZZ_CHECK(again.ok);
  FUZZ_CHECK(again.result.end == first.size());
  std::string second = dumps(*again.result.value);
  FUZZ_CHECK(second == first);
  return 0;
}
