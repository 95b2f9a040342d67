// trainer/main.cpp - ckpt-train: flags, signals, exit codes.
//
// Exit codes: 0 done (also after a SIGINT/SIGTERM checkpoint), 1 usage,
// 2 a file or checkpoint problem (the ckpt::Error line says which),
// 128+signal for a second signal, 5 anything else.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>

#include "args.hpp"
#include "ckpt/error.hpp"
#include "train.hpp"

namespace {

void on_signal(int sig) {
  if (ckpt::train::g_stop_requested) _exit(128 + sig);  // a second signal: at once
  ckpt::train::g_stop_requested = 1;
  const char msg[] = "\nckpt-train: stopping after this step and saving a checkpoint (signal again to quit now)\n";
  ssize_t r = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)r;
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
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    return run(cli);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "ckpt-train: %s\n", e.what());
    return 1;
  } catch (const ckpt::Error& e) {
    std::fprintf(stderr, "ckpt-train: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ckpt-train: error: %s\n", e.what());
    return 5;
  }
}
