// tests/hardening/test_fault_injection.cpp - ckpt::save over an existing
// checkpoint with system calls failing or the process dying at each one,
// through the ckpt::detail::FsOps seam (reliability.md T1 mode B, T2, T3):
//   - every failing call (EIO, ENOSPC, EDQUOT) -> a ckpt::Error with the
//     right code and the path, the old file byte-identical, no temp file,
//     and no fsync after a failed one (fsyncgate: never retried);
//   - a failing folder fsync after the rename -> durability_uncertain with
//     the new file complete in place;
//   - the process dying at call i, for every i -> the final name holds the
//     complete old or the complete new file; the only debris is the dead
//     writer's temp file, named .<name>.tmp.<pid>.<random>.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "sample_ckpt.hpp"

namespace {

namespace fs = std::filesystem;
using ckpt::detail::fs_ops;

enum Op { kOpen, kWrite, kFsync, kClose, kRename, kUnlink, kSyncRange, kOps };
const char* const kOpNames[kOps] = {"open", "write", "fsync", "close", "rename", "unlink", "sync_range"};

/// The fault plan: fail (or die at) the n-th counted call.
struct Plan {
  int counted = 0;   // calls seen that may fail (everything but unlink and sync_range)
  int fail_at = 0;   // 1-based; 0 = never
  int err = EIO;
  bool die = false;  // _exit(9) instead of failing: a crash at that point
  Op failed_op = kOps;
  int fsyncs = 0, fsyncs_after_failure = 0;
  bool fsync_failed = false;
  std::vector<Op> trace;
};
Plan plan;

bool hit(Op op) {
  plan.trace.push_back(op);
  if (op == kUnlink || op == kSyncRange) return false;  // cleanup and hints are not failure points
  if (++plan.counted != plan.fail_at) return false;
  if (plan.die) _exit(9);
  plan.failed_op = op;
  errno = plan.err;
  return true;
}

int f_open(const char* p, int fl, mode_t m) { return hit(kOpen) ? -1 : ::open(p, fl, m); }
ssize_t f_write(int fd, const void* b, size_t n) { return hit(kWrite) ? -1 : ::write(fd, b, n); }
int f_fsync(int fd) {
  ++plan.fsyncs;
  if (plan.fsync_failed) ++plan.fsyncs_after_failure;
  if (hit(kFsync)) {
    plan.fsync_failed = true;
    return -1;
  }
  return ::fsync(fd);
}
int f_close(int fd) {
  if (hit(kClose)) {
    ::close(fd);  // the descriptor is gone either way, as with a real failing close
    return -1;
  }
  return ::close(fd);
}
int f_rename(const char* a, const char* b) { return hit(kRename) ? -1 : ::rename(a, b); }
int f_unlink(const char* p) { return hit(kUnlink) ? -1 : ::unlink(p); }
int f_sync_range(int fd, off_t o, off_t n) { return hit(kSyncRange) ? -1 : ::sync_file_range(fd, o, n, SYNC_FILE_RANGE_WRITE); }

void arm(int fail_at, int err, bool die = false) {
  plan = Plan{};
  plan.fail_at = fail_at;
  plan.err = err;
  plan.die = die;
  fs_ops() = ckpt::detail::FsOps{f_open, f_write, f_fsync, f_close, f_rename, f_unlink, f_sync_range};
}

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

struct Dir {
  std::string path;
  Dir() {
    char t[] = "/tmp/ckpt-faults-XXXXXX";
    path = ::mkdtemp(t);
  }
  ~Dir() { fs::remove_all(path); }
  std::vector<std::string> names() const {
    std::vector<std::string> v;
    for (const auto& e : fs::directory_iterator(path)) v.push_back(e.path().filename().string());
    return v;
  }
};

constexpr uint64_t kMb = 3;  // three 1 MiB buffer flushes and the tail

/// Calls a durable save makes, counted as the plan counts them.
int calls_of_a_save(const std::string& path) {
  arm(0, 0);
  sample::write_checkpoint(path, 2, kMb, true);
  ckpt::detail::reset_fs_ops();
  return plan.counted;
}

}  // namespace

TEST_CASE("a system call failing at each point of a save leaves the old file, no temp, no second fsync") {
  Dir d;
  const std::string file = d.path + "/ck.pt";
  sample::write_checkpoint(file, 1, kMb, false);
  const std::string old_bytes = slurp(file);
  const std::string new_digest = [&] {
    sample::write_checkpoint(d.path + "/new.pt", 2, kMb, false);
    std::string dg = sample::digest_file(d.path + "/new.pt");
    fs::remove(d.path + "/new.pt");
    return dg;
  }();
  const int n = calls_of_a_save(d.path + "/probe.pt");
  fs::remove(d.path + "/probe.pt");
  REQUIRE(n >= 6);  // open, writes, fsync, close, rename, open(dir), fsync(dir), close(dir)
  int uncertain = 0, clean = 0;
  for (int err : {EIO, ENOSPC, EDQUOT}) {
    for (int i = 1; i <= n; ++i) {
      CAPTURE(i);
      CAPTURE(err);
      arm(i, err);
      bool threw = false;
      ckpt::Error caught(ckpt::ErrorCode::internal, "");
      try {
        sample::write_checkpoint(file, 2, kMb, true);
      } catch (const ckpt::Error& e) {
        threw = true;
        caught = e;
      }
      ckpt::detail::reset_fs_ops();
      const Op op = plan.failed_op;
      const std::string op_name = kOpNames[op], what = caught.what();
      CAPTURE(op_name);
      CAPTURE(what);
      if (!threw) {
        // Only closing the folder after its successful fsync may fail unseen:
        // the rename is already durable then.
        CHECK(op == kClose);
        CHECK(i == n);
        CHECK(sample::digest_file(file) == new_digest);
        std::ofstream(file, std::ios::binary) << old_bytes;
        continue;
      }
      CHECK(caught.path().find("ck.pt") != std::string::npos);
      CHECK(caught.sys_errno() == err);
      // Never an fsync after a failed one, on any descriptor.
      CHECK(plan.fsyncs_after_failure == 0);
      const bool renamed = std::find(plan.trace.begin(), plan.trace.end(), kRename) != plan.trace.end() &&
                           !(op == kRename);
      if (renamed) {
        // Only the folder's open/fsync/close remain after the rename.
        CHECK(caught.code() == ckpt::ErrorCode::durability_uncertain);
        CHECK(sample::digest_file(file) == new_digest);
        ++uncertain;
        // Put the old file back for the next round.
        std::ofstream(file, std::ios::binary) << old_bytes;
      } else {
        const auto want = (err == ENOSPC || err == EDQUOT) ? ckpt::ErrorCode::no_space : ckpt::ErrorCode::io_error;
        CHECK(caught.code() == want);
        CHECK(slurp(file) == old_bytes);
        if (op != kOpen)  // creating the temp file failed: nothing was written at all
          CHECK(std::string(caught.what()).find("old file is untouched") != std::string::npos);
        ++clean;
      }
      CHECK(d.names() == std::vector<std::string>{"ck.pt"});  // no temp file left
    }
  }
  MESSAGE("failure points per save: " << n << "; before the rename: " << clean << ", after: " << uncertain);
  CHECK(clean > 0);
  CHECK(uncertain > 0);
}

TEST_CASE("a failed fsync is reported once and never retried") {
  Dir d;
  const std::string file = d.path + "/ck.pt";
  sample::write_checkpoint(file, 1, 1, false);
  const std::string old_bytes = slurp(file);
  // Fail the first fsync, whatever call number it is.
  arm(0, EIO);
  plan.fail_at = -1;
  fs_ops().fsync = [](int fd) -> int {
    ++plan.fsyncs;
    if (plan.fsyncs == 1) {
      errno = EIO;
      return -1;
    }
    return ::fsync(fd);
  };
  CHECK_THROWS_AS(sample::write_checkpoint(file, 2, 1, true), ckpt::Error);
  ckpt::detail::reset_fs_ops();
  CHECK(plan.fsyncs == 1);
  CHECK(slurp(file) == old_bytes);
  CHECK(d.names() == std::vector<std::string>{"ck.pt"});
}

TEST_CASE("the writer dying at each system call leaves the old or the new file, whole") {
  Dir d;
  const std::string file = d.path + "/ck.pt";
  sample::write_checkpoint(d.path + "/new.pt", 2, kMb, false);
  const std::string new_digest = sample::digest_file(d.path + "/new.pt");
  fs::remove(d.path + "/new.pt");
  const int n = calls_of_a_save(d.path + "/probe.pt");
  fs::remove(d.path + "/probe.pt");
  int old_seen = 0, new_seen = 0, debris = 0;
  for (int i = 1; i <= n + 1; ++i) {
    CAPTURE(i);
    sample::write_checkpoint(file, 1, kMb, false);
    const std::string old_bytes = slurp(file);
    pid_t pid = fork();
    if (pid == 0) {
      arm(i, 0, true);
      try {
        sample::write_checkpoint(file, 2, kMb, true);
      } catch (...) {
        _exit(3);
      }
      _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    REQUIRE(WIFEXITED(st));
    CHECK((WEXITSTATUS(st) == 9 || (i == n + 1 && WEXITSTATUS(st) == 0)));
    const std::string now = slurp(file);
    if (now == old_bytes) {
      ++old_seen;
    } else {
      CHECK(sample::digest_file(file) == new_digest);
      ++new_seen;
    }
    // Debris policy: only the dead writer's own temp file may remain.
    const std::string prefix = ".ck.pt.tmp." + std::to_string(pid) + ".";
    for (const auto& name : d.names()) {
      if (name == "ck.pt") continue;
      CHECK(name.rfind(prefix, 0) == 0);
      fs::remove(d.path + "/" + name);
      ++debris;
    }
  }
  MESSAGE("crash points: " << n + 1 << "; old file after " << old_seen << ", new after " << new_seen
                           << "; temp files left by dead writers: " << debris);
  CHECK(old_seen > 0);
  CHECK(new_seen > 0);
}
