// tests/hardening/crash_tool.cpp - the programs the crash-safety and
// concurrency tests drive (test_crash_safe.py):
//
//   crash_tool save FILE SEED MB [durable]   ckpt::save of a deterministic MB-sized checkpoint
//                                            (content fixed by SEED) over FILE
//   crash_tool digest FILE                   opens FILE, verify()s every CRC, prints the
//                                            content digest (tree + tensor bytes); exit 2 on
//                                            a ckpt::Error
//   crash_tool concurrency FILE READERS SECONDS
//                                            READERS processes open / walk / verify FILE (mmap)
//                                            in a loop while this process rewrites it with
//                                            ckpt::save, alternating two contents; every read
//                                            must be one of them, whole; a reader also keeps an
//                                            old mapping across renames and re-reads it
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "sample_ckpt.hpp"

namespace {

using sample::digest;
using sample::digest_file;
using sample::write_checkpoint;

/// One reader process: loops until `deadline`; exit 0 when every read was
/// one of `allowed`, 1 otherwise. A SIGBUS would kill it (status 128+7).
int reader(const std::string& path, const std::vector<std::string>& allowed, double seconds, bool hold_old) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  uint64_t reads = 0, held = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    try {
      auto ck = ckpt::Checkpoint::open(path);  // mmap
      ck.verify();
      const std::string d = digest(ck);
      if (std::find(allowed.begin(), allowed.end(), d) == allowed.end()) {
        std::fprintf(stderr, "reader: saw content %s, neither old nor new\n", d.c_str());
        return 1;
      }
      if (hold_old) {
        // Keep the mapping while the writer renames new files over the
        // name, then read all of it again: the old inode must stay whole.
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        ck.verify();
        if (digest(ck) != d) {
          std::fprintf(stderr, "reader: a held mapping changed under us\n");
          return 1;
        }
        ++held;
      }
      ++reads;
    } catch (const ckpt::Error& e) {
      std::fprintf(stderr, "reader: %s\n", e.what());
      return 1;
    }
  }
  std::printf("reader %d: %llu reads%s\n", static_cast<int>(getpid()), static_cast<unsigned long long>(reads),
              hold_old ? (", " + std::to_string(held) + " held across renames").c_str() : "");
  return reads > 0 ? 0 : 1;
}

int concurrency(const std::string& path, int readers, double seconds) {
  const std::string a = path + ".a", b = path + ".b";
  write_checkpoint(a, 1, 2, false);
  write_checkpoint(b, 2, 2, false);
  const std::vector<std::string> allowed{digest_file(a), digest_file(b)};
  write_checkpoint(path, 1, 2, false);
  std::vector<pid_t> kids;
  for (int i = 0; i < readers; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      const int rc = reader(path, allowed, seconds, i == 0);
      std::fflush(stdout);
      _exit(rc);
    }
    kids.push_back(pid);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  uint64_t commits = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    // Mostly fast commits; every 10th durable (fsync + folder fsync).
    write_checkpoint(path, commits % 2 ? 1 : 2, 2, commits % 10 == 9);
    ++commits;
  }
  int bad = 0;
  for (pid_t pid : kids) {
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      ++bad;
      std::fprintf(stderr, "reader %d: %s %d\n", static_cast<int>(pid), WIFSIGNALED(st) ? "killed by signal" : "exit",
                   WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    }
  }
  std::remove(a.c_str());
  std::remove(b.c_str());
  std::printf("concurrency: %llu commits, %d readers, %d failed\n", static_cast<unsigned long long>(commits), readers, bad);
  return bad || commits < 10 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "save" && (argc == 5 || argc == 6)) {
      write_checkpoint(argv[2], static_cast<uint32_t>(std::stoul(argv[3])), std::stoull(argv[4]),
                       argc == 6 ? std::string(argv[5]) != "0" : true);
      return 0;
    }
    if (mode == "digest" && argc == 3) {
      std::puts(digest_file(argv[2]).c_str());
      return 0;
    }
    if (mode == "concurrency" && argc == 5) return concurrency(argv[2], std::stoi(argv[3]), std::stod(argv[4]));
  } catch (const ckpt::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  std::fprintf(stderr, "usage: crash_tool save FILE SEED MB [durable] | digest FILE | concurrency FILE READERS SECONDS\n");
  return 64;
}
