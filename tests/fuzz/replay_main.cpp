// tests/fuzz/replay_main.cpp - the main() every fuzz target gets when it is
// built without libFuzzer (gcc, or clang without -fsanitize=fuzzer): it feeds
// each file named on the command line, or each file under each folder named
// (recursively, in sorted order), to LLVMFuzzerTestOneInput once. meson test
// runs it over the seed corpus and every saved crasher; a crash, a sanitizer
// report or a failed invariant fails the test.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<uint8_t> slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  size_t missing = 0;
  for (int i = 1; i < argc; ++i) {
    fs::path p(argv[i]);
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      for (const auto& e : fs::recursive_directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
    } else if (fs::is_regular_file(p, ec)) {
      files.push_back(p);
    } else {
      std::fprintf(stderr, "replay: no such file or folder: %s\n", argv[i]);
      ++missing;
    }
  }
  std::sort(files.begin(), files.end());
  double slowest = 0;
  std::string slowest_name;
  for (const auto& f : files) {
    std::vector<uint8_t> bytes = slurp(f);
    const auto t0 = std::chrono::steady_clock::now();
    LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > slowest) {
      slowest = s;
      slowest_name = f.string();
    }
  }
  std::printf("replayed %zu inputs; slowest %.3f s (%s)\n", files.size(), slowest, slowest_name.c_str());
  if (missing) return 1;
  if (files.empty()) {
    std::fprintf(stderr, "replay: nothing to replay\n");
    return 1;
  }
  return 0;
}
