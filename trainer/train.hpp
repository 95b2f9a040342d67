// trainer/train.hpp - the continual-learning run: one entry point, no
// LibTorch types, so main.cpp stays a fast compile.
#pragma once

#include <csignal>

#include "args.hpp"

namespace ckpt::train {

/// Set by the SIGINT/SIGTERM handler. The training loop checks it after
/// every step: the step in progress finishes, a checkpoint is written to
/// <checkpoint_path>/paused/, and run() returns 0.
extern volatile std::sig_atomic_t g_stop_requested;

/// Loads --loadcheck (path or URL), resolves the options, sets the thread
/// counts, trains, evaluates after every task, saves checkpoints. Returns the
/// process exit code. Throws UsageError and ckpt::Error.
int run(const ParsedCli& cli);

}  // namespace ckpt::train

/// The training module's entry point (libckpt_train.so), called by the
/// ckpt-train launcher after it has set the thread environment: parses argv,
/// installs the SIGINT/SIGTERM handlers, runs, and maps errors to exit codes.
extern "C" int ckpt_train_main(int argc, const char* const* argv);
