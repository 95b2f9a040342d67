// ckpt_walk: a small tour of the libckpt API, used by the README demo.
//
//   ckpt_walk FILE            describe the file and list its tensors
//   ckpt_walk FILE OUT.pt     ... then write the same tree with ckpt::save
//
// It links libckpt only (no LibTorch) and starts in milliseconds.
#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include "ckpt/ckpt.hpp"

namespace {

std::string human(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fprintf(stderr, "usage: ckpt_walk FILE [OUT.pt]\n"
                         "Describes a PyTorch checkpoint with libckpt; with OUT, re-saves it (torch.save layout).\n");
    return argc == 2 ? 0 : 2;
  }
  try {
    auto t0 = std::chrono::steady_clock::now();
    auto ck = ckpt::Checkpoint::open(argv[1]);
    const auto& f = ck.format();
    std::printf("file       %s (%s)\n", argv[1], human(ck.file_size()).c_str());
    std::printf("container  %s, %s, pickle protocol %d\n", ckpt::container_name(f.container), f.era.c_str(),
                f.pickle_protocol);
    std::printf("globals   ");
    for (const auto& g : ck.globals())
      std::printf(" %s.%s(%s)", g.module.c_str(), g.name.c_str(), ckpt::global_verdict_name(g.verdict));
    std::printf("\nweights_only-compatible: %s\n", ck.weights_only_compatible() ? "yes" : "no");
    if (ck.root().is_dict() && ck.root().size() > 12) {
      const std::string type(ck.root().type_name().empty() ? "dict" : ck.root().type_name());
      std::printf("top level  %s with %zu keys\n", type.c_str(), ck.root().size());
    } else if (ck.root().is_dict()) {
      std::printf("top level ");
      for (const auto& [k, v] : ck.root().items())
        std::printf(" %s:%s", ckpt::key_component(*k).c_str(), ckpt::kind_name(v->kind()));
      std::printf("\n");
    }
    auto tensors = ck.tensors();
    std::map<std::string, std::pair<uint64_t, uint64_t>> by_dtype;  // dtype -> (count, bytes)
    size_t shown = 0;
    for (const auto& t : tensors) {
      const auto& x = t.tensor();
      auto& d = by_dtype[std::string(ckpt::dtype_name(x.dtype))];
      d.first++;
      d.second += x.nbytes();
      if (shown++ < 12)
        std::printf("  %-48s %-9s %s\n", t.path.c_str(), std::string(ckpt::dtype_name(x.dtype)).c_str(),
                    shape_str(x.shape).c_str());
    }
    if (tensors.size() > 12) std::printf("  ... %zu more\n", tensors.size() - 12);
    std::printf("tensors    %zu on %zu storages:", tensors.size(), ck.storages().size());
    for (const auto& [k, v] : by_dtype) std::printf(" %s x%llu (%s)", k.c_str(), static_cast<unsigned long long>(v.first), human(v.second).c_str());
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("\nopened and walked in %.1f ms (no tensor payload read)\n", ms);
    if (argc == 3) {
      auto t1 = std::chrono::steady_clock::now();
      uint64_t n = ckpt::save(argv[2], ck.root());
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
      std::printf("saved      %s (%s) in %.2f s, atomically\n", argv[2], human(n).c_str(), s);
    }
  } catch (const ckpt::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  return 0;
}
