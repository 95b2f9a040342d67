// trainer/main.cpp - the ckpt-train launcher. It does not link LibTorch.
//
// Thread settings that LibTorch's libraries read once, when they are loaded,
// must be in the environment before that: libgomp's wait policy and
// OpenBLAS's thread count. So the launcher checks the command line (usage
// errors and --help answer in milliseconds), sets
//   OMP_WAIT_POLICY=PASSIVE   waiting OpenMP workers sleep instead of
//                             spinning: with two threads on two shared cores,
//                             spinning workers halved ResNet-18's speed;
//   OPENBLAS_NUM_THREADS=1    BLAS runs inside LibTorch's own threads;
// (each only when the user has not set it), then loads the training module
// libckpt_train.so with dlopen and runs it.
//
// Exit codes: 0 done (also after a SIGINT/SIGTERM checkpoint), 1 usage,
// 2 a file or checkpoint problem (the ckpt::Error line says which),
// 128+signal after a second signal, 5 anything else (also a missing module).
#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "args.hpp"

#ifndef CKPT_TRAIN_MODULE_DIR
#define CKPT_TRAIN_MODULE_DIR ""
#endif

namespace {

constexpr char kModule[] = "libckpt_train.so";

std::string exe_dir() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.rfind('/'));
}

// $CKPT_TRAIN_MODULE, then next to the executable (build tree), then the
// install folder.
void* load_module(std::string& tried) {
  std::vector<std::string> candidates;
  if (const char* m = std::getenv("CKPT_TRAIN_MODULE")) candidates.emplace_back(m);
  candidates.push_back(exe_dir() + "/" + kModule);
  if (*CKPT_TRAIN_MODULE_DIR) candidates.push_back(std::string(CKPT_TRAIN_MODULE_DIR) + "/" + kModule);
  for (const std::string& c : candidates) {
    if (access(c.c_str(), R_OK) != 0) continue;
    if (void* h = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
    tried += "\n  " + c + ": " + dlerror();
    return nullptr;
  }
  for (const std::string& c : candidates) tried += "\n  " + c + ": not found";
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ckpt::train;
  try {
    ParsedCli cli = parse_cli(argc, argv);
    if (cli.help) {
      std::fputs(usage().c_str(), stdout);
      return 0;
    }
    if (cli.version) {
      std::puts("ckpt-train 0.1.0");
      return 0;
    }
  } catch (const UsageError& e) {
    std::fprintf(stderr, "ckpt-train: %s\n", e.what());
    return 1;
  }
  setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
  setenv("OPENBLAS_NUM_THREADS", "1", 0);
  std::string tried;
  void* module = load_module(tried);
  if (!module) {
    std::fprintf(stderr, "ckpt-train: cannot load the training module (LibTorch):%s\n", tried.c_str());
    return 5;
  }
  using entry_fn = int (*)(int, const char* const*);
  auto entry = reinterpret_cast<entry_fn>(dlsym(module, "ckpt_train_main"));
  if (!entry) {
    std::fprintf(stderr, "ckpt-train: %s has no ckpt_train_main\n", kModule);
    return 5;
  }
  return entry(argc, argv);
}
