// tests/hardening/sample_ckpt.hpp - a deterministic multi-MB checkpoint and
// a content digest, shared by crash_tool.cpp and test_fault_injection.cpp.
// The digest ignores .data/serialization_id (random per save): it hashes
// what a reader sees, the pickled tree and every tensor's bytes.
#pragma once

#include <ckpt/ckpt.hpp>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace sample {

/// A checkpoint of about `mb` MiB: a state dict of float32 tensors whose
/// values depend on `seed`, plus Mammoth-like metadata.
inline uint64_t write_checkpoint(const std::string& path, uint32_t seed, uint64_t mb, bool durable) {
  ckpt::Document doc;
  ckpt::Value* sd = doc.ordered_dict();
  const uint64_t total = mb << 20;
  const uint64_t per = 256u << 10;  // 256 KiB tensors
  uint32_t x = seed * 2654435761u + 1;
  for (uint64_t i = 0; i * per < total; ++i) {
    std::vector<uint8_t> b(per);
    for (size_t k = 0; k < b.size(); k += 4) {
      x = x * 1664525u + 1013904223u;
      std::memcpy(&b[k], &x, 4);
    }
    sd->set("layer" + std::to_string(i) + ".weight",
            doc.tensor(ckpt::Tensor::from_bytes(ckpt::DType::float32, {static_cast<int64_t>(per / 4)}, std::move(b))));
  }
  ckpt::Value* root = doc.dict();
  root->set("model", sd);
  root->set("seed", static_cast<int64_t>(seed));
  root->set("args", doc.dict()->set("lr", 0.1)->set("dataset", "seq-cifar10"));
  ckpt::SaveOptions o;
  o.durable = durable;
  return ckpt::save(path, *root, o);
}

inline std::string digest(const ckpt::Checkpoint& ck) {
  std::map<const ckpt::Storage*, std::string> keys;
  std::string pkl = ckpt::pickle_dumps(ck.root(), [&](const std::shared_ptr<ckpt::Storage>& s) {
    return keys.emplace(s.get(), std::to_string(keys.size())).first->second;
  });
  uint32_t crc = ckpt::crc32(0, pkl.data(), pkl.size());
  uint64_t bytes = pkl.size();
  for (const auto& v : ck.tensors()) {
    auto b = v.tensor().contiguous_bytes();
    crc = ckpt::crc32(crc, b.data(), b.size());
    bytes += b.size();
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%08x-%llu", crc, static_cast<unsigned long long>(bytes));
  return buf;
}

inline std::string digest_file(const std::string& path) {
  auto ck = ckpt::Checkpoint::open(path);
  ck.verify();
  return digest(ck);
}

}  // namespace sample
