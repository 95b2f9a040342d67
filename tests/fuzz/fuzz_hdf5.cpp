// fuzz_hdf5: HDF5 import (ckpt/hdf5.hpp, libckpt_hdf5). read_hdf5 takes a
// path, so each input is written to a per-process file in /dev/shm (or
// $TMPDIR) first. libhdf5 itself is a system library, not instrumented:
// this target finds what our reader does with what libhdf5 returns, and any
// crash libhdf5 has on a corrupt file (reported as a finding in the
// dependency, with the input kept).
#include <ckpt/hdf5.hpp>

#include <cstdlib>
#include <fstream>
#include <string>
#include <unistd.h>

#include "fuzz_common.hpp"

namespace {

std::string scratch_path() {
  const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
  return std::string(dir) + "/ckpt-fuzz-hdf5-" + std::to_string(getpid()) + ".h5";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = scratch_path();
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    auto ck = ckpt::read_hdf5(path, fuzz::open_options());
    fuzz::exercise_tree(ck.root(), fuzz::limits());
    ck.verify();
  } catch (const ckpt::Error& e) {
    fuzz::check_error(e);
  }
  std::remove(path.c_str());
  return 0;
}
