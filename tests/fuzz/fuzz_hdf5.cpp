// fuzz_hdf5: HDF5 import (ckpt/hdf5.hpp, libckpt_hdf5). read_hdf5 takes a
// path, so each input is written to a per-process file in /dev/shm (or
// $TMPDIR) first. libhdf5 itself is a system library, not instrumented:
// this target finds what our reader does with what libhdf5 returns, and any
// crash libhdf5 has on a corrupt file (reported as a finding in the
// dependency, with the input kept).
//
// Leaks: libhdf5 1.10.8 itself leaks ~424 bytes per failed open of some
// corrupt files (a plain C H5Fopen + H5Gopen2 does), so LeakSanitizer is
// told to ignore allocations made inside libhdf5 (tests/fuzz/lsan.supp).
// Our own handle leaks are caught here instead: after every input no HDF5
// object (file, group, dataset, type, attribute) may remain open.
#include <ckpt/hdf5.hpp>
#include <hdf5.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <unistd.h>

#include "fuzz_common.hpp"

namespace {

// No filter plugins from the system's plugin folder: they are not ours, and
// one of them (Debian's hdf5-filter-plugin) leaks in its static initialiser.
// libhdf5 reads the variable on first use, after this runs.
const bool kNoPlugins = setenv("HDF5_PLUGIN_PATH", "/nonexistent-ckpt-fuzz", 1) == 0;

std::string scratch_path() {
  const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
  return std::string(dir) + "/ckpt-fuzz-hdf5-" + std::to_string(getpid()) + ".h5";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = scratch_path();
  (void)kNoPlugins;
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    // The isolated child stops well inside libFuzzer's -timeout=1 when
    // libhdf5 loops (regressions/fuzz_hdf5/libhdf5-hang-*): corrupt_hdf5.
    ckpt::OpenOptions o = fuzz::open_options();
    o.hdf5_probe_ms = 300;
    auto ck = ckpt::read_hdf5(path, o);
    fuzz::exercise_tree(ck.root(), fuzz::limits());
    ck.verify();
  } catch (const ckpt::Error& e) {
    fuzz::check_error(e);
  }
  FUZZ_CHECK(H5Fget_obj_count(static_cast<hid_t>(H5F_OBJ_ALL), H5F_OBJ_ALL) == 0);
  std::remove(path.c_str());
  return 0;
}
