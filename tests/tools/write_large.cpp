// Writes a checkpoint larger than 4 GiB without holding it in memory: one
// 4.3 GB uint8 tensor backed by an anonymous mapping (zero pages, never
// touched), then small tensors whose records start past the 4 GiB mark, so
// the ZIP64 sizes, offsets and 24-byte data descriptors are all exercised.
// Then re-opens the file with libckpt and checks the small tensors.
#include <ckpt/ckpt.hpp>
#include <cstdio>
#include <cstring>
#include <sys/mman.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: write_large OUT.pt\n");
    return 2;
  }
  const uint64_t big = (uint64_t{4} << 30) + 12345;  // > 4 GiB, not a multiple of anything nice
  void* p = ::mmap(nullptr, big, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    return 2;
  }
  std::shared_ptr<const void> keep(p, [big](const void* q) { ::munmap(const_cast<void*>(q), big); });
  ckpt::Document doc;
  ckpt::Value* root = doc.dict();
  ckpt::Tensor t;
  t.dtype = ckpt::DType::uint8;
  t.shape = {static_cast<int64_t>(big)};
  t.stride = {1};
  t.storage = ckpt::Storage::from_external(ckpt::DType::uint8, p, big, keep);
  root->set("big", doc.tensor(t));
  std::vector<uint8_t> small(16);
  for (int i = 0; i < 4; ++i) {
    float f = 1.5f * static_cast<float>(i + 1);
    std::memcpy(small.data() + 4 * i, &f, 4);
  }
  root->set("after", doc.tensor(ckpt::Tensor::from_bytes(ckpt::DType::float32, {4}, small)));
  root->set("note", "written past 4 GiB");
  try {
    uint64_t n = ckpt::save(argv[1], *root, ckpt::SaveOptions{{}, false});
    auto ck = ckpt::Checkpoint::open(argv[1]);
    const auto& after = ck.root().at("after").tensor();
    if (after.to_contiguous() != small || ck.storages().at(1)->file_offset() < (uint64_t{4} << 30)) {
      std::fprintf(stderr, "read-back mismatch\n");
      return 1;
    }
    if (ck.root().at("big").tensor().numel() != big) return 1;
    std::printf("%llu\n", static_cast<unsigned long long>(n));
  } catch (const ckpt::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
