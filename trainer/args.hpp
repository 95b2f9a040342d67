// trainer/args.hpp - ckpt-train's command line, with Mammoth's flag names.
//
// Flags take both forms, `--flag=value` and `--flag value`; integer switches
// (`--joint`, `--non_verbose`) may also be given bare (`--joint` = 1).
// Resolution order, highest first:
//   1. the command line;
//   1b. with --model_config best (or --load_best_args): the method's best
//      arguments for the dataset and buffer size (lr, batch size, epochs,
//      minibatch size, alpha, beta);
//   2. the `args` dict of the checkpoint given to --loadcheck (only the flags
//      marked inheritable: hyper-parameters and data options, never
//      --loadcheck, --start_from, --stop_after, --non_verbose, threads);
//   3. the dataset's defaults (backbone, batch size, epochs);
//   4. the global defaults below.
// No LibTorch here: main.cpp and this file compile in a second.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace ckpt {
class Value;
}

namespace ckpt::train {

/// Thrown for a bad command line; main prints it with a usage hint, exit 1.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The resolved settings of one run.
struct Options {
  // experiment (Mammoth names)
  std::string model = "sgd";                    ///< sgd | er | der | derpp
  std::string model_config = "default";         ///< default | best (--model_config, --load_best_args)
  std::string dataset = "seq-fashion-mnist";    ///< see datasets in docs/trainer.md
  std::string backbone;                         ///< mnistmlp | resnet18 (dataset default)
  double lr = 0;                                ///< required
  int n_epochs = 0;                             ///< dataset default
  int batch_size = 0;                           ///< dataset default; also the test batch
  int buffer_size = 0;                          ///< rehearsal methods only (required there)
  int minibatch_size = 0;                       ///< replay batch; defaults to batch_size
  double alpha = 0, beta = 0;                   ///< der/derpp loss weights
  std::optional<int64_t> seed;                  ///< none: a random seed is drawn and saved
  int joint = 0;                                ///< 1: one task with every class
  std::string optimizer = "sgd";                ///< sgd | adam
  double optim_mom = 0, optim_wd = 0;
  int optim_nesterov = 0;
  std::string lr_scheduler;                     ///< "" | multisteplr | cosine
  std::vector<int64_t> lr_milestones;
  double sched_multistep_lr_gamma = 0.1;
  int mlp_hidden_size = 100;
  int num_filters = 64;
  // checkpoints
  std::string savecheck;                        ///< "" | last | task
  std::string loadcheck;                        ///< path or http(s) URL
  std::string ckpt_name;                        ///< prefix of the file names
  std::string checkpoint_path = "checkpoints";
  std::optional<int> start_from, stop_after;
  // data
  std::string data_path;                        ///< MNIST / CIFAR-10 files; Fashion-MNIST default folder otherwise
  std::string source = "fashion-mnist";         ///< perm-/rot-mnist base images: fashion-mnist | mnist
  int n_tasks = 0;                              ///< perm-/rot-mnist task count (default 20)
  int64_t max_samples_per_task = 0;             ///< 0: all; else first N train and N test samples per task
  int fused = 1;                                ///< mnistmlp: hand-written forward/backward (0: LibTorch autograd)
  // run
  int non_verbose = 0;
  int num_threads = 0;                          ///< 0: automatic (see docs/trainer.md)
  std::string results_json;                     ///< write the final results and speed here
  std::string download_cache;                   ///< --loadcheck URL cache folder

  /// Every flag the user typed (names without dashes), for precedence.
  std::map<std::string, std::string> given;
};

/// Parses argv into raw flag values. Throws UsageError for unknown flags or
/// a missing value. `--help` sets help=true.
struct ParsedCli {
  std::map<std::string, std::string> values;
  bool help = false;
  bool version = false;
};
ParsedCli parse_cli(int argc, const char* const* argv);

/// Resolves the run's options from the command line, the checkpoint's `args`
/// dict (may be null) and the defaults. Throws UsageError for invalid values
/// (unknown model, missing --lr, --buffer_size for a rehearsal method, ...).
Options resolve_options(const ParsedCli& cli, const ckpt::Value* checkpoint_args);

/// The usage text (every flag, its default and meaning).
std::string usage();

/// Dataset facts the CLI needs before the data is loaded.
struct DatasetInfo {
  const char* name;
  const char* setting;   ///< "class-il" | "domain-il"
  int n_tasks;           ///< default task count
  int classes_per_task;
  const char* backbone;
  int batch_size;
  int n_epochs;
};
/// nullptr for an unknown dataset name.
const DatasetInfo* find_dataset(const std::string& name);

bool is_rehearsal(const std::string& model);

}  // namespace ckpt::train
