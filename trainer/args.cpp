// trainer/args.cpp - flag table, parsing and precedence (see args.hpp).
#include "args.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "ckpt/value.hpp"

namespace ckpt::train {
namespace {

enum class Type { integer, real, text, int_list, switch_ };

struct Flag {
  const char* name;
  Type type;
  bool inherit;  // taken from a loaded checkpoint's args when not on the command line
  const char* def;
  const char* help;
};

// Order is the order of `--help`.
constexpr Flag kFlags[] = {
    {"model", Type::text, true, "sgd", "method: sgd | er | der | derpp"},
    {"dataset", Type::text, true, "seq-fashion-mnist",
     "seq-fashion-mnist | seq-mnist | perm-mnist | rot-mnist | seq-cifar10"},
    {"backbone", Type::text, true, "(dataset)", "mnistmlp | resnet18"},
    {"lr", Type::real, true, "(required)", "learning rate"},
    {"n_epochs", Type::integer, true, "(dataset)", "epochs per task"},
    {"batch_size", Type::integer, true, "(dataset)", "train and test batch size"},
    {"buffer_size", Type::integer, true, "(required for er/der/derpp)", "replay buffer size"},
    {"minibatch_size", Type::integer, true, "(batch_size)", "replay batch size"},
    {"alpha", Type::real, true, "(required for der/derpp)", "weight of the logit-matching (MSE) term"},
    {"beta", Type::real, true, "(required for derpp)", "weight of the replayed cross-entropy term"},
    {"model_config", Type::text, false, "default", "best: take the method's best arguments (see docs/trainer.md) where not given"},
    {"load_best_args", Type::switch_, false, "0", "1: the same as --model_config best (Mammoth's older flag)"},
    {"seed", Type::integer, true, "(random, saved)", "seed of every random stream"},
    {"joint", Type::switch_, true, "0", "1: train one task holding every class"},
    {"optimizer", Type::text, true, "sgd", "sgd | adam"},
    {"optim_mom", Type::real, true, "0", "SGD momentum"},
    {"optim_wd", Type::real, true, "0", "weight decay"},
    {"optim_nesterov", Type::switch_, true, "0", "Nesterov momentum"},
    {"lr_scheduler", Type::text, true, "(none)", "multisteplr | cosine (re-created every task, stepped per epoch)"},
    {"lr_milestones", Type::int_list, true, "", "multisteplr epochs (`--lr_milestones 35 45` or `=35,45`)"},
    {"sched_multistep_lr_gamma", Type::real, true, "0.1", "multisteplr factor"},
    {"mlp_hidden_size", Type::integer, true, "100", "mnistmlp hidden width"},
    {"num_filters", Type::integer, true, "64", "resnet18 base width"},
    {"savecheck", Type::text, true, "(none)", "last | task: save after the last task or after every task"},
    {"loadcheck", Type::text, false, "(none)", "checkpoint path or http(s) URL to resume or initialise from"},
    {"ckpt_name", Type::text, false, "(none)", "prefix of the checkpoint file names"},
    {"checkpoint_path", Type::text, true, "checkpoints", "folder of the checkpoints (SIGINT: <folder>/paused/)"},
    {"start_from", Type::integer, false, "(after the loaded checkpoint)", "first task to train"},
    {"stop_after", Type::integer, false, "(last task)", "train tasks before this index only"},
    {"data_path", Type::text, true, "(see docs)", "folder with MNIST IDX or CIFAR-10 binary files"},
    {"source", Type::text, true, "fashion-mnist", "perm-/rot-mnist base images: fashion-mnist | mnist"},
    {"n_tasks", Type::integer, true, "20", "perm-/rot-mnist task count"},
    {"max_samples_per_task", Type::integer, true, "0", "use the first N train and N test samples of each task (0: all)"},
    {"fused", Type::switch_, true, "1", "mnistmlp: hand-written forward/backward on BLAS (0: LibTorch autograd)"},
    {"non_verbose", Type::switch_, false, "0", "1: no progress bar or progress lines"},
    {"num_threads", Type::integer, false, "0", "intra-op threads (0: 1 for mnistmlp, all cores for resnet18)"},
    {"results_json", Type::text, false, "(none)", "write the final results and samples/s as JSON here"},
    {"download_cache", Type::text, false, "($XDG_CACHE_HOME/ckpt or ~/.cache/ckpt)", "cache folder for --loadcheck URLs"},
};

const Flag* find_flag(std::string_view name) {
  for (const Flag& f : kFlags)
    if (name == f.name) return &f;
  return nullptr;
}

constexpr DatasetInfo kDatasets[] = {
    {"seq-fashion-mnist", "class-il", 5, 2, "mnistmlp", 64, 1},
    {"seq-mnist", "class-il", 5, 2, "mnistmlp", 64, 1},
    {"perm-mnist", "domain-il", 20, 10, "mnistmlp", 128, 1},
    {"rot-mnist", "domain-il", 20, 10, "mnistmlp", 128, 1},
    {"seq-cifar10", "class-il", 5, 2, "resnet18", 32, 50},
};

// The best arguments per dataset, method and buffer size. seq-mnist, perm-mnist,
// rot-mnist and seq-cifar10: the DER paper's grid-searched picks, as Mammoth
// ships them (utils/best_args.py). seq-fashion-mnist: ckpt-train's own picks
// from bench/trainer_grid.sh (tuning seeds 10-14), see docs/trainer.md.
// buffer -1: a method without a buffer; minibatch 0, alpha/beta < 0: not set.
struct BestArgs {
  const char* dataset;
  const char* model;
  int buffer;
  double lr;
  int batch_size, n_epochs, minibatch_size;
  double alpha, beta;
};
constexpr BestArgs kBestArgs[] = {
    {"seq-mnist", "sgd", -1, 0.03, 10, 1, 0, -1, -1},
    {"seq-mnist", "er", 200, 0.01, 10, 1, 10, -1, -1},
    {"seq-mnist", "er", 500, 0.1, 10, 1, 10, -1, -1},
    {"seq-mnist", "er", 5120, 0.1, 10, 1, 10, -1, -1},
    {"seq-mnist", "der", 200, 0.03, 10, 1, 10, 0.2, -1},
    {"seq-mnist", "der", 500, 0.03, 10, 1, 128, 1.0, -1},
    {"seq-mnist", "der", 5120, 0.1, 10, 1, 128, 0.5, -1},
    {"seq-mnist", "derpp", 200, 0.03, 10, 1, 128, 0.2, 1.0},
    {"seq-mnist", "derpp", 500, 0.03, 10, 1, 10, 1.0, 0.5},
    {"seq-mnist", "derpp", 5120, 0.1, 10, 1, 64, 0.2, 0.5},
    {"perm-mnist", "sgd", -1, 0.2, 128, 1, 0, -1, -1},
    {"perm-mnist", "er", 200, 0.2, 128, 1, 128, -1, -1},
    {"perm-mnist", "er", 500, 0.2, 128, 1, 128, -1, -1},
    {"perm-mnist", "er", 5120, 0.2, 128, 1, 128, -1, -1},
    {"perm-mnist", "der", 200, 0.2, 128, 1, 128, 1.0, -1},
    {"perm-mnist", "der", 500, 0.2, 128, 1, 128, 1.0, -1},
    {"perm-mnist", "der", 5120, 0.2, 128, 1, 128, 0.5, -1},
    {"perm-mnist", "derpp", 200, 0.1, 128, 1, 128, 1.0, 1.0},
    {"perm-mnist", "derpp", 500, 0.2, 128, 1, 128, 1.0, 0.5},
    {"perm-mnist", "derpp", 5120, 0.2, 128, 1, 128, 0.5, 1.0},
    {"rot-mnist", "sgd", -1, 0.2, 128, 1, 0, -1, -1},
    {"rot-mnist", "er", 200, 0.2, 128, 1, 128, -1, -1},
    {"rot-mnist", "er", 500, 0.2, 128, 1, 128, -1, -1},
    {"rot-mnist", "er", 5120, 0.2, 128, 1, 128, -1, -1},
    {"rot-mnist", "der", 200, 0.2, 128, 1, 128, 1.0, -1},
    {"rot-mnist", "der", 500, 0.2, 128, 1, 128, 0.5, -1},
    {"rot-mnist", "der", 5120, 0.2, 128, 1, 128, 0.5, -1},
    {"rot-mnist", "derpp", 200, 0.1, 128, 1, 128, 1.0, 0.5},
    {"rot-mnist", "derpp", 500, 0.2, 128, 1, 128, 0.5, 1.0},
    {"rot-mnist", "derpp", 5120, 0.2, 128, 1, 128, 0.5, 0.5},
    {"seq-cifar10", "sgd", -1, 0.1, 32, 50, 0, -1, -1},
    {"seq-cifar10", "er", 200, 0.1, 32, 50, 32, -1, -1},
    {"seq-cifar10", "er", 500, 0.1, 32, 50, 32, -1, -1},
    {"seq-cifar10", "er", 5120, 0.1, 32, 50, 32, -1, -1},
    {"seq-cifar10", "der", 200, 0.03, 32, 50, 32, 0.3, -1},
    {"seq-cifar10", "der", 500, 0.03, 32, 50, 32, 0.3, -1},
    {"seq-cifar10", "der", 5120, 0.03, 32, 50, 32, 0.3, -1},
    {"seq-cifar10", "derpp", 200, 0.03, 32, 50, 32, 0.1, 0.5},
    {"seq-cifar10", "derpp", 500, 0.03, 32, 50, 32, 0.2, 0.5},
    {"seq-cifar10", "derpp", 5120, 0.03, 32, 50, 32, 0.1, 1.0},
    {"seq-fashion-mnist", "sgd", -1, 0.03, 10, 1, 0, -1, -1},
    {"seq-fashion-mnist", "er", 200, 0.01, 10, 1, 128, -1, -1},
    {"seq-fashion-mnist", "er", 500, 0.1, 10, 1, 128, -1, -1},
    {"seq-fashion-mnist", "der", 200, 0.01, 10, 1, 10, 1.0, -1},
    {"seq-fashion-mnist", "der", 500, 0.03, 10, 1, 128, 1.0, -1},
    {"seq-fashion-mnist", "derpp", 200, 0.01, 10, 1, 128, 1.0, 0.5},
    {"seq-fashion-mnist", "derpp", 500, 0.03, 10, 1, 64, 1.0, 1.0},
};

// The best-argument values for the run as resolved so far, as flag texts.
std::map<std::string, std::string> best_args(const Options& o) {
  const bool buffered = is_rehearsal(o.model);
  if (buffered && o.buffer_size <= 0)
    throw UsageError("--model_config best for --model " + o.model + " needs --buffer_size (the tables have 200, 500 and 5120)");
  std::string sizes;
  for (const BestArgs& b : kBestArgs) {
    if (o.dataset != b.dataset || o.model != b.model) continue;
    if (buffered && b.buffer != o.buffer_size) {
      sizes += (sizes.empty() ? "" : ", ") + std::to_string(b.buffer);
      continue;
    }
    char num[32];
    auto real = [&](double x) { std::snprintf(num, sizeof num, "%g", x); return std::string(num); };
    std::map<std::string, std::string> out{{"lr", real(b.lr)},
                                           {"batch_size", std::to_string(b.batch_size)},
                                           {"n_epochs", std::to_string(b.n_epochs)}};
    if (b.minibatch_size) out["minibatch_size"] = std::to_string(b.minibatch_size);
    if (b.alpha >= 0) out["alpha"] = real(b.alpha);
    if (b.beta >= 0) out["beta"] = real(b.beta);
    return out;
  }
  if (!sizes.empty())
    throw UsageError("--model_config best: no best arguments for " + o.model + " on " + o.dataset + " with --buffer_size " +
                     std::to_string(o.buffer_size) + " (they exist for " + sizes + ")");
  throw UsageError("--model_config best: no best arguments for " + o.model + " on " + o.dataset);
}

// Mammoth's custom_str_underscore: names may be typed with underscores.
std::string dashes(std::string s) {
  for (char& c : s)
    if (c == '_') c = '-';
  return s;
}

int64_t to_int(const std::string& flag, const std::string& v) {
  int64_t out = 0;
  const char* end = v.data() + v.size();
  auto [p, ec] = std::from_chars(v.data(), end, out);
  if (ec != std::errc() || p != end || v.empty())
    throw UsageError("--" + flag + " expects an integer, got '" + v + "'");
  return out;
}

double to_real(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  double out = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || errno == ERANGE || !std::isfinite(out))
    throw UsageError("--" + flag + " expects a number, got '" + v + "'");
  return out;
}

std::vector<int64_t> to_list(const std::string& flag, const std::string& v) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (start <= v.size()) {
    size_t end = v.find_first_of(", ", start);
    if (end == std::string::npos) end = v.size();
    if (end > start) out.push_back(to_int(flag, v.substr(start, end - start)));
    start = end + 1;
  }
  return out;
}

int to_int32(const std::string& flag, const std::string& v, int64_t min) {
  int64_t x = to_int(flag, v);
  if (x < min || x > INT32_MAX)
    throw UsageError("--" + flag + " must be >= " + std::to_string(min) + ", got " + v);
  return static_cast<int>(x);
}

// Sets one option from its text form (command line or checkpoint).
void apply(Options& o, const std::string& name, const std::string& v) {
  if (name == "model") o.model = dashes(v);
  else if (name == "dataset") o.dataset = dashes(v);
  else if (name == "backbone") o.backbone = v;
  else if (name == "lr") o.lr = to_real(name, v);
  else if (name == "n_epochs") o.n_epochs = to_int32(name, v, 1);
  else if (name == "batch_size") o.batch_size = to_int32(name, v, 1);
  else if (name == "buffer_size") o.buffer_size = to_int32(name, v, 0);
  else if (name == "minibatch_size") o.minibatch_size = to_int32(name, v, 1);
  else if (name == "alpha") o.alpha = to_real(name, v);
  else if (name == "beta") o.beta = to_real(name, v);
  else if (name == "model_config") o.model_config = v;
  else if (name == "load_best_args") { if (to_int32(name, v, 0)) o.model_config = "best"; }
  else if (name == "seed") o.seed = to_int(name, v);
  else if (name == "joint") o.joint = to_int32(name, v, 0);
  else if (name == "optimizer") o.optimizer = v;
  else if (name == "optim_mom") o.optim_mom = to_real(name, v);
  else if (name == "optim_wd") o.optim_wd = to_real(name, v);
  else if (name == "optim_nesterov") o.optim_nesterov = to_int32(name, v, 0);
  else if (name == "lr_scheduler") o.lr_scheduler = v;
  else if (name == "lr_milestones") o.lr_milestones = to_list(name, v);
  else if (name == "sched_multistep_lr_gamma") o.sched_multistep_lr_gamma = to_real(name, v);
  else if (name == "mlp_hidden_size") o.mlp_hidden_size = to_int32(name, v, 1);
  else if (name == "num_filters") o.num_filters = to_int32(name, v, 1);
  else if (name == "savecheck") o.savecheck = v;
  else if (name == "loadcheck") o.loadcheck = v;
  else if (name == "ckpt_name") o.ckpt_name = v;
  else if (name == "checkpoint_path") o.checkpoint_path = v;
  else if (name == "start_from") o.start_from = to_int32(name, v, 0);
  else if (name == "stop_after") o.stop_after = to_int32(name, v, 0);
  else if (name == "data_path") o.data_path = v;
  else if (name == "source") o.source = dashes(v);
  else if (name == "n_tasks") o.n_tasks = to_int32(name, v, 1);
  else if (name == "max_samples_per_task") o.max_samples_per_task = to_int(name, v);
  else if (name == "non_verbose") o.non_verbose = to_int32(name, v, 0);
  else if (name == "fused") o.fused = to_int32(name, v, 0);
  else if (name == "num_threads") o.num_threads = to_int32(name, v, 0);
  else if (name == "results_json") o.results_json = v;
  else if (name == "download_cache") o.download_cache = v;
}

// The text form of a checkpoint arg; nullopt for None and unusable kinds.
std::optional<std::string> arg_text(const Value& v) {
  char buf[64];
  switch (v.kind()) {
    case Kind::boolean: return std::string(v.as_bool() ? "1" : "0");
    case Kind::integer: return std::to_string(v.as_int());
    case Kind::floating:
      std::snprintf(buf, sizeof buf, "%.17g", v.as_float());
      return std::string(buf);
    case Kind::string: return v.as_str();
    case Kind::list: case Kind::tuple: {
      std::string out;
      for (const Value* e : v.elements()) {
        if (!e->is(Kind::integer)) return std::nullopt;
        if (!out.empty()) out += ',';
        out += std::to_string(e->as_int());
      }
      return out;
    }
    default: return std::nullopt;
  }
}

}  // namespace

const DatasetInfo* find_dataset(const std::string& name) {
  for (const DatasetInfo& d : kDatasets)
    if (name == d.name) return &d;
  return nullptr;
}

bool is_rehearsal(const std::string& model) { return model == "er" || model == "der" || model == "derpp"; }

ParsedCli parse_cli(int argc, const char* const* argv) {
  ParsedCli out;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") { out.help = true; continue; }
    if (a == "--version") { out.version = true; continue; }
    if (a.rfind("--", 0) != 0) throw UsageError("unexpected argument '" + a + "' (flags start with --)");
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    for (char& c : name)
      if (c == '-') c = '_';  // --n-epochs == --n_epochs
    const Flag* f = find_flag(name);
    if (!f) throw UsageError("unknown flag --" + name + " (see --help)");
    auto next_is_value = [&] { return i + 1 < argc && std::strncmp(argv[i + 1], "--", 2) != 0; };
    if (!has_value) {
      if (f->type == Type::switch_ && !next_is_value()) {
        value = "1";
      } else if (f->type == Type::int_list) {
        while (next_is_value()) {
          if (!value.empty()) value += ',';
          value += argv[++i];
        }
      } else {
        if (!next_is_value()) throw UsageError("--" + name + " needs a value");
        value = argv[++i];
      }
    }
    out.values[name] = value;
  }
  return out;
}

Options resolve_options(const ParsedCli& cli, const Value* ck) {
  Options o;
  o.given = cli.values;
  // Lowest first: checkpoint args, then the command line over them.
  if (ck && ck->is_dict()) {
    for (const Flag& f : kFlags) {
      if (!f.inherit) continue;
      const Value* v = ck->get(f.name);
      if (!v) continue;
      if (auto text = arg_text(*v)) {
        try {
          apply(o, f.name, *text);
        } catch (const UsageError&) {
          // A value this trainer does not understand (a Mammoth-only form):
          // keep the default; the command line may still set it.
        }
      }
    }
  }
  for (const auto& [name, value] : cli.values) apply(o, name, value);

  const DatasetInfo* ds = find_dataset(o.dataset);
  if (!ds) throw UsageError("unknown dataset '" + o.dataset + "' (seq-fashion-mnist, seq-mnist, perm-mnist, rot-mnist, seq-cifar10)");
  if (o.model != "sgd" && !is_rehearsal(o.model))
    throw UsageError("unknown model '" + o.model + "' (sgd, er, der, derpp; joint training is --joint 1)");
  // Best arguments rank between the command line and the checkpoint's args.
  std::map<std::string, std::string> best;
  if (o.model_config == "best") {
    best = best_args(o);
    for (const auto& [name, value] : best)
      if (!cli.values.count(name)) apply(o, name, value);
  } else if (o.model_config != "default") {
    throw UsageError("--model_config must be default or best, got '" + o.model_config + "'");
  }
  auto supplied = [&](const char* name) { return cli.values.count(name) || best.count(name) || (ck && ck->get(name)); };
  if (o.backbone.empty()) o.backbone = ds->backbone;
  if (o.backbone != "mnistmlp" && o.backbone != "resnet18")
    throw UsageError("unknown backbone '" + o.backbone + "' (mnistmlp, resnet18)");
  if (o.n_epochs == 0) o.n_epochs = ds->n_epochs;
  if (o.batch_size == 0) o.batch_size = ds->batch_size;
  const bool domain_il = std::string(ds->setting) == "domain-il";
  if (o.n_tasks == 0 || !domain_il) o.n_tasks = ds->n_tasks;
  if (!domain_il && cli.values.count("n_tasks"))
    throw UsageError("--n_tasks applies to perm-mnist and rot-mnist only");
  if (!(o.lr > 0)) throw UsageError("--lr is required (a positive learning rate)");
  if (is_rehearsal(o.model)) {
    if (o.buffer_size <= 0) throw UsageError("--buffer_size is required for --model " + o.model);
    if (o.model != "er" && !supplied("alpha"))
      throw UsageError("--alpha is required for --model " + o.model);
    if (o.model == "derpp" && !supplied("beta"))
      throw UsageError("--beta is required for --model derpp");
  } else {
    o.buffer_size = 0;
  }
  if (o.minibatch_size == 0) o.minibatch_size = o.batch_size;
  if (o.savecheck != "" && o.savecheck != "last" && o.savecheck != "task")
    throw UsageError("--savecheck must be 'last' or 'task', got '" + o.savecheck + "'");
  if (o.optimizer != "sgd" && o.optimizer != "adam")
    throw UsageError("--optimizer must be sgd or adam, got '" + o.optimizer + "'");
  if (o.lr_scheduler == "None") o.lr_scheduler.clear();
  if (!o.lr_scheduler.empty() && o.lr_scheduler != "multisteplr" && o.lr_scheduler != "cosine")
    throw UsageError("--lr_scheduler must be multisteplr or cosine, got '" + o.lr_scheduler + "'");
  if (o.optim_nesterov && (o.optim_mom <= 0))
    throw UsageError("--optim_nesterov needs --optim_mom > 0 (as torch.optim.SGD)");
  if (o.source != "fashion-mnist" && o.source != "mnist")
    throw UsageError("--source must be fashion-mnist or mnist, got '" + o.source + "'");
  if (o.max_samples_per_task < 0) throw UsageError("--max_samples_per_task must be >= 0");
  if (o.joint) {
    if (domain_il)
      throw UsageError("--joint 1 applies to class-il datasets only (as in Mammoth)");
    if (o.start_from || o.stop_after)
      throw UsageError("--joint 1 trains a single task: --start_from/--stop_after do not apply");
  }
  return o;
}

std::string usage() {
  std::string out =
      "usage: ckpt-train [--flag=value | --flag value]...\n"
      "Continual-learning training (Mammoth's methods, datasets and checkpoints) on LibTorch.\n"
      "Example: ckpt-train --model=derpp --buffer_size=200 --alpha=0.2 --beta=1 --lr=0.03 --savecheck=task\n\n";
  char line[512];
  for (const Flag& f : kFlags) {
    std::snprintf(line, sizeof line, "  --%-26s %s [default: %s]\n", f.name, f.help, f.def);
    out += line;
  }
  out += "\nDocumentation: docs/trainer.md\n";
  return out;
}

}  // namespace ckpt::train
