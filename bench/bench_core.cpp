// bench_core - libckpt's side of bench/run_core.sh.
//
//   bench_core walk FILE              open FILE and walk every tensor's metadata
//   bench_core save FILE OUT [--no-fsync]
//                                     open FILE and ckpt::save the same tree to OUT
//
// Each prints one line of JSON on stdout:
//   walk: {"tensors":N,"numel":..,"seconds":..,"open_seconds":..,"walk_seconds":..,
//          "bytes":..,"dtypes":{..},"maxrss_kib":..}
//         seconds = Checkpoint::open + tensors() + summing numel/nbytes per dtype.
//   save: {"seconds":..,"bytes":..,"open_seconds":..,"durable":true|false,"maxrss_kib":..}
//         seconds = ckpt::save alone (not the open). durable (the default)
//         fsyncs the file and its folder before returning; --no-fsync turns
//         that off (SaveOptions::durable = false).
// Errors: the library's message on stderr, exit status 1; usage errors exit 2.
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <string>
#include <string_view>

#include "ckpt/checkpoint.hpp"
#include "ckpt/dtype.hpp"
#include "ckpt/tensor.hpp"
#include "ckpt/value.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

long maxrss_kib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;  // KiB on Linux
}

int usage() {
  std::fprintf(stderr,
               "usage: bench_core walk FILE [--repeat]\n"
               "       bench_core save FILE OUT [--no-fsync]\n");
  return 2;
}

int cmd_walk(const std::string& file, bool repeat) {
  const auto t0 = Clock::now();
  auto ck = ckpt::Checkpoint::open(file);
  const double t_open = since(t0);

  const auto t1 = Clock::now();
  uint64_t count = 0, numel = 0, nbytes = 0;
  uint64_t per_dtype[ckpt::kDTypeCount] = {};
  for (const auto& v : ck.tensors()) {
    const ckpt::Tensor& t = v.tensor();
    ++count;
    numel += t.numel();
    nbytes += t.nbytes();
    ++per_dtype[static_cast<int>(t.dtype)];
  }
  const double t_walk = since(t1);
  const double total = since(t0);

  // Warm: the same open+walk repeated in this process (code, heap and page
  // tables warm), as torch_walk.py repeats torch.load. Best of 5.
  double warm = 0;
  for (int rep = 0; repeat && rep < 5; ++rep) {
    if (rep == 0) warm = 1e9;
    const auto tw = Clock::now();
    auto again = ckpt::Checkpoint::open(file);
    uint64_t n = 0;
    for (const auto& v : again.tensors()) n += v.tensor().numel();
    if (n != numel) return 1;
    warm = std::min(warm, since(tw));
  }

  std::string dtypes;
  std::map<std::string, uint64_t> sorted;
  for (int i = 0; i < ckpt::kDTypeCount; ++i)
    if (per_dtype[i]) sorted[std::string(ckpt::dtype_name(static_cast<ckpt::DType>(i)))] = per_dtype[i];
  for (const auto& [name, n] : sorted) {
    if (!dtypes.empty()) dtypes += ',';
    dtypes += '"' + name + "\":" + std::to_string(n);
  }
  std::printf(
      "{\"tensors\":%llu,\"numel\":%llu,\"seconds\":%.9f,\"open_seconds\":%.9f,"
      "\"walk_seconds\":%.9f,\"warm_seconds\":%.9f,\"bytes\":%llu,\"dtypes\":{%s},\"maxrss_kib\":%ld}\n",
      static_cast<unsigned long long>(count), static_cast<unsigned long long>(numel), total, t_open,
      t_walk, warm, static_cast<unsigned long long>(nbytes), dtypes.c_str(), maxrss_kib());
  return 0;
}

int cmd_save(const std::string& file, const std::string& out, bool durable) {
  const auto t0 = Clock::now();
  auto ck = ckpt::Checkpoint::open(file);
  const double t_open = since(t0);

  ckpt::SaveOptions opts;
  opts.durable = durable;
  const auto t1 = Clock::now();
  const uint64_t written = ckpt::save(out, ck.root(), opts);
  const double t_save = since(t1);
  std::printf(
      "{\"seconds\":%.9f,\"bytes\":%llu,\"open_seconds\":%.9f,\"durable\":%s,\"maxrss_kib\":%ld}\n",
      t_save, static_cast<unsigned long long>(written), t_open, durable ? "true" : "false",
      maxrss_kib());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string_view cmd = argv[1];
  try {
    if (cmd == "walk" && argc == 3) return cmd_walk(argv[2], false);
    if (cmd == "walk" && argc == 4 && std::string(argv[3]) == "--repeat") return cmd_walk(argv[2], true);
    if (cmd == "save" && (argc == 4 || argc == 5)) {
      bool durable = true;
      if (argc == 5) {
        if (std::strcmp(argv[4], "--no-fsync") != 0) return usage();
        durable = false;
      }
      return cmd_save(argv[2], argv[3], durable);
    }
    return usage();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_core: %s\n", e.what());
    return 1;
  }
}
