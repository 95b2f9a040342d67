// trainer/train.cpp - the continual-learning loop, the methods (sgd, er, der,
// derpp), evaluation, results, and checkpoint save/resume through libckpt.
#include "train.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <dlfcn.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>

#include "bridge.hpp"
#include "ckpt/atomic_file.hpp"
#include "ckpt/checkpoint.hpp"
#include "ckpt/error.hpp"
#include "data.hpp"
#include "model.hpp"
#ifdef CKPT_TRAIN_HAVE_DOWNLOAD
#include "download.hpp"
#endif

namespace ckpt::train {

volatile std::sig_atomic_t g_stop_requested = 0;

namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kProducer = "ckpt-train 0.1.0";
constexpr int64_t kResumeFormat = 1;

// ---------------------------------------------------------------- threads --

struct ThreadSettings {
  int intra_op = 1;
  int blas = 1;
  std::string blas_name = "unknown";
  int cores = 1;
};

int usable_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

// One level of parallelism only: ATen's OpenMP pool gets the threads, BLAS
// gets one. OpenBLAS's pthread pool and OpenMP's spinning workers on the same
// cores is what made the Python loop 20x slower (build-notes.md).
ThreadSettings configure_threads(const Options& o) {
  ThreadSettings t;
  t.cores = usable_cores();
  t.intra_op = o.num_threads > 0 ? o.num_threads : (o.backbone == "resnet18" ? t.cores : 1);
  at::set_num_threads(t.intra_op);
  try {
    at::set_num_interop_threads(1);
  } catch (const std::exception&) {
    // already fixed by an earlier run in this process
  }
  using set_fn = void (*)(int);
  using cfg_fn = char* (*)();
  if (auto set = reinterpret_cast<set_fn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set(1);
    t.blas_name = "OpenBLAS";
    if (auto cfg = reinterpret_cast<cfg_fn>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) t.blas_name = cfg();
  } else {
    t.blas_name = "reference BLAS (single-threaded)";
  }
  return t;
}

// --------------------------------------------------------------- progress --

class Progress {
 public:
  explicit Progress(bool quiet) : quiet_(quiet), tty_(isatty(STDERR_FILENO)) {}

  void begin(const std::string& label, int64_t total_batches, int64_t done) {
    label_ = label;
    total_ = total_batches;
    done_ = done;
    samples_ = 0;
    loss_sum_ = 0;
    loss_n_ = 0;
    start_ = last_ = Clock::now();
  }

  void step(double loss, int64_t samples) {
    ++done_;
    samples_ += samples;
    loss_sum_ += loss;
    ++loss_n_;
    if (quiet_) return;
    const auto now = Clock::now();
    const double since = std::chrono::duration<double>(now - last_).count();
    if (tty_ ? since >= 0.1 : since >= 30.0) {
      last_ = now;
      draw(now, false);
    }
  }

  void end() {
    if (quiet_) return;
    draw(Clock::now(), true);
  }

 private:
  void draw(Clock::time_point now, bool final) {
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double rate = secs > 0 ? samples_ / secs : 0;
    const double loss = loss_n_ ? loss_sum_ / loss_n_ : 0;
    if (tty_) {
      const int width = 30;
      const int fill = total_ ? static_cast<int>(width * done_ / total_) : width;
      std::string bar(fill, '#');
      bar.resize(width, '-');
      std::fprintf(stderr, "\r%s |%s| %3d%% loss %.4f  %.0f samples/s ", label_.c_str(), bar.c_str(),
                   total_ ? static_cast<int>(100 * done_ / total_) : 100, loss, rate);
      if (final) std::fputc('\n', stderr);
    } else {
      std::fprintf(stderr, "%s: %lld/%lld batches, loss %.4f, %.0f samples/s\n", label_.c_str(),
                   static_cast<long long>(done_), static_cast<long long>(total_), loss, rate);
    }
    loss_sum_ = 0;
    loss_n_ = 0;
    std::fflush(stderr);
  }

  bool quiet_, tty_;
  std::string label_;
  int64_t total_ = 0, done_ = 0, samples_ = 0, loss_n_ = 0;
  double loss_sum_ = 0;
  Clock::time_point start_, last_;
};

// ----------------------------------------------------------------- helpers --

std::string uuid4() {
  std::random_device rd;
  std::mt19937_64 g((static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(Clock::now().time_since_epoch().count()));
  uint8_t b[16];
  for (int i = 0; i < 16; i += 8) {
    uint64_t x = g();
    std::memcpy(b + i, &x, 8);
  }
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  char out[37];
  std::snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
                b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return out;
}

std::string timestamp() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

std::string hostname() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

at::Generator seeded_generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

double mean(const std::vector<double>& xs) {
  double s = 0;
  for (double x : xs) s += x;
  return xs.empty() ? 0.0 : s / static_cast<double>(xs.size());
}

// Mammoth's utils/metrics.py on results[t][i] (accuracy on task i after task t).
std::optional<double> backward_transfer(const std::vector<std::vector<double>>& r) {
  if (r.size() < 2) return std::nullopt;
  std::vector<double> li;
  for (size_t i = 0; i + 1 < r.size(); ++i) li.push_back(r.back()[i] - r[i][i]);
  return mean(li);
}

std::optional<double> forgetting(const std::vector<std::vector<double>>& r) {
  if (r.size() < 2) return std::nullopt;
  std::vector<double> li;
  for (size_t i = 0; i + 1 < r.size(); ++i) {
    double best = 0;  // Mammoth zero-pads the rows before the max
    for (size_t t = 0; t < r.size(); ++t)
      if (i < r[t].size()) best = std::max(best, r[t][i]);
    li.push_back(best - r.back()[i]);
  }
  return mean(li);
}

std::string fmt(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", x);
  return buf;
}

std::string json_num(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

std::string json_list(const std::vector<double>& xs) {
  std::string out = "[";
  for (size_t i = 0; i < xs.size(); ++i) out += (i ? ", " : "") + json_num(xs[i]);
  return out + "]";
}

std::string json_str(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out + "\"";
}

double as_number(const Value& v) {
  // Mammoth's safe files hold the logger means as strings (quirk Q3).
  if (v.is(Kind::string)) return std::stod(v.as_str());
  return v.as_float();
}

std::vector<std::vector<double>> read_matrix(const Value& v) {
  std::vector<std::vector<double>> out;
  for (const Value* row : v.elements()) {
    out.emplace_back();
    for (const Value* x : row->elements()) out.back().push_back(as_number(*x));
  }
  return out;
}

Value* matrix_value(Document& doc, const std::vector<std::vector<double>>& m) {
  Value* l = doc.list();
  for (const auto& row : m) {
    Value* r = doc.list();
    for (double x : row) r->append(doc.floating(x));
    l->append(r);
  }
  return l;
}

Value* opt_float(Document& doc, std::optional<double> x) { return x ? doc.floating(*x) : doc.none(); }

// ------------------------------------------------------------------ buffer --

// Mammoth's reservoir Buffer, keeping its true num_seen_examples.
struct ReplayBuffer {
  int64_t capacity = 0;
  int64_t num_seen = 0;
  at::Tensor examples, labels, logits;  // undefined until the first add

  int64_t available() const { return examples.defined() ? std::min(num_seen, examples.size(0)) : 0; }

  void add(const at::Tensor& ex, const at::Tensor& lab, const at::Tensor& lg, at::Generator& gen) {
    at::NoGradGuard no_grad;
    at::Tensor x = ex.contiguous(), y = lab.defined() ? lab.contiguous() : lab, z = lg.defined() ? lg.detach().contiguous() : lg;
    if (!examples.defined()) {
      std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
      shape[0] = capacity;
      examples = at::zeros(shape, at::kFloat);
      if (y.defined()) labels = at::zeros({capacity}, at::kLong);
      if (z.defined()) logits = at::zeros({capacity, z.size(1)}, at::kFloat);
    }
    const int64_t row = x.numel() / x.size(0), lrow = z.defined() ? z.size(1) : 0;
    auto* g = gen.get<at::CPUGeneratorImpl>();
    std::lock_guard<std::mutex> lock(gen.mutex());
    for (int64_t i = 0; i < x.size(0); ++i) {
      int64_t index = num_seen;
      if (num_seen >= capacity) {
        const int64_t r = static_cast<int64_t>(g->random64() % static_cast<uint64_t>(num_seen + 1));
        index = r < capacity ? r : -1;
      }
      ++num_seen;
      if (index < 0) continue;
      std::memcpy(examples.data_ptr<float>() + index * row, x.data_ptr<float>() + i * row, row * sizeof(float));
      if (y.defined() && labels.defined()) labels.data_ptr<int64_t>()[index] = y.data_ptr<int64_t>()[i];
      if (z.defined() && logits.defined())
        std::memcpy(logits.data_ptr<float>() + index * lrow, z.data_ptr<float>() + i * lrow, lrow * sizeof(float));
    }
  }

  // np.random.choice(available, size, replace=False)
  at::Tensor choice(int64_t size, at::Generator& gen) const {
    const int64_t avail = available();
    return at::randperm(avail, gen, at::kLong).narrow(0, 0, std::min(size, avail));
  }
};

// ----------------------------------------------------------------- trainer --

class Trainer {
 public:
  Trainer(Options opt, uint64_t seed, ThreadSettings threads)
      : opt_(std::move(opt)), seed_(seed), threads_(std::move(threads)) {
    {
      at::Generator def = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(def.mutex());
      def.set_current_seed(seed_);
    }
    data_ = ContinualDataset::load(opt_, seed_);
    net_ = make_backbone(opt_.backbone, data_->n_classes(), opt_.backbone == "resnet18" ? opt_.num_filters : opt_.mlp_hidden_size);
    optim_ = make_optimizer();
    // Independent streams, all saved: data order (re-seeded every task, as
    // Mammoth's per-task DataLoader generator), augmentation, buffer.
    shuffle_gen_ = seeded_generator(seed_);
    augment_gen_ = seeded_generator(seed_ + 1);
    buffer_gen_ = seeded_generator(seed_ + 2);
    buf_.capacity = opt_.buffer_size;
    prefix_ = opt_.ckpt_name;
    fused_ = opt_.fused != 0 && net_->has_fused();
    // Test hook: raise SIGINT after this many steps of this process, so tests
    // interrupt at a known point through the real signal handler.
    if (const char* s = std::getenv("CKPT_TRAIN_SIGINT_AFTER_STEPS")) signal_after_steps_ = std::atoll(s);
  }

  void restore(const Checkpoint& ck);
  int run(const std::string& loaded_from);

 private:
  std::unique_ptr<Optimizer> make_optimizer() {
    std::vector<at::Tensor> params;
    for (const NamedTensor& p : net_->parameters()) params.push_back(p.tensor);
    return std::make_unique<Optimizer>(opt_.optimizer, std::move(params), opt_.lr, opt_.optim_mom, opt_.optim_wd,
                                       opt_.optim_nesterov != 0);
  }

  // Mammoth's meta_begin_task + get_scheduler: a fresh optimizer (and
  // scheduler) every task; the data order restarts from the seed.
  void begin_task(int t) {
    optim_ = make_optimizer();
    sched_.reset();
    if (!opt_.lr_scheduler.empty())
      sched_ = std::make_unique<Scheduler>(opt_.lr_scheduler, *optim_, opt_.lr_milestones, opt_.sched_multistep_lr_gamma,
                                           opt_.n_epochs);
    shuffle_gen_ = seeded_generator(seed_);
    cur_task_ = t;
    in_task_ = true;
    epoch_ = 0;
    batch_ = 0;
    perm_ = at::Tensor();
  }

  double observe(const at::Tensor& inputs, const at::Tensor& labels, const at::Tensor& not_aug);
  double observe_fused(const at::Tensor& inputs, const at::Tensor& labels, const at::Tensor& not_aug);
  bool train_task(int t);  // false: stopped by a signal
  std::pair<std::vector<double>, std::vector<double>> evaluate(int t);
  void save(const std::string& path);
  std::string save_paused();
  void load_model(const Value& sd, const std::string& path);
  void load_plain(const Value& root, const std::string& path);
  void write_results_json(double seconds) const;
  Value* args_value(Document& doc) const;
  Value* results_value(Document& doc) const;
  std::string file_name(int t) const;

  Options opt_;
  uint64_t seed_;
  ThreadSettings threads_;
  std::unique_ptr<ContinualDataset> data_;
  std::unique_ptr<Backbone> net_;
  std::unique_ptr<Optimizer> optim_;
  std::unique_ptr<Scheduler> sched_;
  ReplayBuffer buf_;
  at::Generator shuffle_gen_, augment_gen_, buffer_gen_;
  std::vector<std::vector<double>> cil_, til_;  // results, results_mask_classes
  std::vector<TaskSet> test_cache_;

  int next_task_ = 0;    // first task not completed
  bool in_task_ = false; // a task is in progress (mid-task checkpoint or resume)
  int cur_task_ = -1;
  int epoch_ = 0;
  int64_t batch_ = 0;
  at::Tensor perm_;      // this epoch's sample order
  int end_task_ = 0;
  std::string prefix_, name_base_;
  double train_seconds_ = 0;
  int64_t samples_trained_ = 0;
  int64_t steps_ = 0, signal_after_steps_ = 0;
  bool fused_ = false;  // the MLP's hand-written forward/backward (--fused)
  FusedPass pass_[3];   // current batch, replay (logits), replay (labels)
};

// Mean cross-entropy of logits [B,C] against labels; writes weight * dL/dlogits
// into d. Returns weight * loss.
double ce_grad(const at::Tensor& out, const at::Tensor& labels, double weight, at::Tensor& d) {
  const int64_t rows = out.size(0), cols = out.size(1);
  d = at::empty({rows, cols}, at::kFloat);
  const float* o = out.data_ptr<float>();
  const int64_t* y = labels.data_ptr<int64_t>();
  float* g = d.data_ptr<float>();
  const float scale = static_cast<float>(weight / static_cast<double>(rows));
  double loss = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* l = o + r * cols;
    float* gr = g + r * cols;
    float m = l[0];
    for (int64_t j = 1; j < cols; ++j) m = std::max(m, l[j]);
    float sum = 0;
    for (int64_t j = 0; j < cols; ++j) sum += (gr[j] = std::exp(l[j] - m));
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < cols; ++j) gr[j] = (gr[j] * inv - (j == y[r] ? 1.0f : 0.0f)) * scale;
    loss += static_cast<double>(m) + std::log(static_cast<double>(sum)) - l[y[r]];
  }
  return weight * loss / static_cast<double>(rows);
}

// weight * mean((out - target)^2) and its gradient into d.
double mse_grad(const at::Tensor& out, const at::Tensor& target, double weight, at::Tensor& d) {
  const int64_t n = out.numel();
  at::Tensor t = target.contiguous();
  d = at::empty(out.sizes(), at::kFloat);
  const float* o = out.data_ptr<float>();
  const float* tp = t.data_ptr<float>();
  float* g = d.data_ptr<float>();
  const float scale = static_cast<float>(2.0 * weight / static_cast<double>(n));
  double loss = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float diff = o[i] - tp[i];
    loss += static_cast<double>(diff) * diff;
    g[i] = diff * scale;
  }
  return weight * loss / static_cast<double>(n);
}

// The same methods on the fused MLP path (Backbone::fused_*): no autograd
// graph, hand-written loss gradients.
double Trainer::observe_fused(const at::Tensor& inputs, const at::Tensor& labels, const at::Tensor& not_aug) {
  const std::string& m = opt_.model;
  net_->fused_zero_grad();
  double loss = 0;
  at::Tensor d;
  if (m == "sgd" || m == "er") {
    at::Tensor x = inputs, y = labels;
    if (m == "er" && buf_.num_seen > 0) {
      at::Tensor idx = buf_.choice(opt_.minibatch_size, buffer_gen_);
      x = at::cat({inputs, data_->augment(buf_.examples.index_select(0, idx), augment_gen_)});
      y = at::cat({labels, buf_.labels.index_select(0, idx)});
    }
    net_->fused_forward(x, pass_[0]);
    loss = ce_grad(pass_[0].out, y, 1.0, d);
    net_->fused_backward(pass_[0], d);
    optim_->step();
    if (m == "er") buf_.add(not_aug, labels, at::Tensor(), buffer_gen_);
    return loss;
  }
  net_->fused_forward(inputs, pass_[0]);
  loss = ce_grad(pass_[0].out, labels, 1.0, d);
  net_->fused_backward(pass_[0], d);
  if (buf_.num_seen > 0) {
    at::Tensor idx = buf_.choice(opt_.minibatch_size, buffer_gen_);
    net_->fused_forward(data_->augment(buf_.examples.index_select(0, idx), augment_gen_), pass_[1]);
    loss += mse_grad(pass_[1].out, buf_.logits.index_select(0, idx), opt_.alpha, d);
    net_->fused_backward(pass_[1], d);
    if (m == "derpp") {
      at::Tensor idx2 = buf_.choice(opt_.minibatch_size, buffer_gen_);
      net_->fused_forward(data_->augment(buf_.examples.index_select(0, idx2), augment_gen_), pass_[2]);
      loss += ce_grad(pass_[2].out, buf_.labels.index_select(0, idx2), opt_.beta, d);
      net_->fused_backward(pass_[2], d);
    }
  }
  optim_->step();
  buf_.add(not_aug, m == "derpp" ? labels : at::Tensor(), pass_[0].out, buffer_gen_);  // the logits before the step
  return loss;
}

double Trainer::observe(const at::Tensor& inputs, const at::Tensor& labels, const at::Tensor& not_aug) {
  if (fused_) return observe_fused(inputs, labels, not_aug);
  const std::string& m = opt_.model;
  optim_->zero_grad();
  at::Tensor loss;
  if (m == "sgd") {
    loss = at::cross_entropy_loss(net_->forward(inputs), labels);
    loss.backward();
    optim_->step();
  } else if (m == "er") {
    at::Tensor x = inputs, y = labels;
    if (buf_.num_seen > 0) {
      at::Tensor idx = buf_.choice(opt_.minibatch_size, buffer_gen_);
      x = at::cat({inputs, data_->augment(buf_.examples.index_select(0, idx), augment_gen_)});
      y = at::cat({labels, buf_.labels.index_select(0, idx)});
    }
    loss = at::cross_entropy_loss(net_->forward(x), y);
    loss.backward();
    optim_->step();
    buf_.add(not_aug, labels, at::Tensor(), buffer_gen_);
  } else {  // der, derpp
    at::Tensor out = net_->forward(inputs);
    loss = at::cross_entropy_loss(out, labels);
    if (buf_.num_seen > 0) {
      at::Tensor idx = buf_.choice(opt_.minibatch_size, buffer_gen_);
      at::Tensor bo = net_->forward(data_->augment(buf_.examples.index_select(0, idx), augment_gen_));
      loss = loss + at::mse_loss(bo, buf_.logits.index_select(0, idx)) * opt_.alpha;
      if (m == "derpp") {
        at::Tensor idx2 = buf_.choice(opt_.minibatch_size, buffer_gen_);
        at::Tensor bo2 = net_->forward(data_->augment(buf_.examples.index_select(0, idx2), augment_gen_));
        loss = loss + at::cross_entropy_loss(bo2, buf_.labels.index_select(0, idx2)) * opt_.beta;
      }
    }
    loss.backward();
    optim_->step();
    buf_.add(not_aug, m == "derpp" ? labels : at::Tensor(), out, buffer_gen_);
  }
  return loss.item<double>();
}

bool Trainer::train_task(int t) {
  const TaskSet ts = data_->train_task(t);
  const int64_t n = ts.size(), bs = opt_.batch_size;
  const int64_t nb = (n + bs - 1) / bs;
  Progress progress(opt_.non_verbose != 0);
  const std::string task_label = opt_.joint ? std::string("joint") : "task " + std::to_string(t + 1) + "/" + std::to_string(data_->n_tasks());
  for (; epoch_ < opt_.n_epochs; ++epoch_) {
    if (!perm_.defined()) {
      // What iterating torch's DataLoader(shuffle=True, generator=g) draws
      // from g each epoch: the iterator's base seed (random_ of an int64),
      // RandomSampler's randperm(n), and one more randperm for the (empty)
      // remainder. Same draws, same order as Mammoth's loaders.
      (void)at::empty({}, at::kLong).random_(shuffle_gen_);
      perm_ = at::randperm(n, shuffle_gen_, at::kLong);
      (void)at::randperm(n, shuffle_gen_, at::kLong);
    }
    progress.begin(task_label + (opt_.n_epochs > 1 ? " epoch " + std::to_string(epoch_ + 1) + "/" + std::to_string(opt_.n_epochs) : ""),
                   nb, batch_);
    const auto start = Clock::now();
    int64_t samples = 0;
    auto account = [&] {
      train_seconds_ += std::chrono::duration<double>(Clock::now() - start).count();
      samples_trained_ += samples;
      progress.end();
    };
    while (batch_ < nb) {
      const int64_t first = batch_ * bs, len = std::min(bs, n - first);
      at::Tensor idx = perm_.narrow(0, first, len);
      at::Tensor not_aug = ts.x.index_select(0, idx), y = ts.y.index_select(0, idx);
      const double loss = observe(data_->augment(not_aug, augment_gen_), y, not_aug);
      ++batch_;
      samples += len;
      progress.step(loss, len);
      if (++steps_ == signal_after_steps_) std::raise(SIGINT);
      if (g_stop_requested) {
        account();
        return false;
      }
    }
    account();
    if (sched_) sched_->step(*optim_);
    perm_ = at::Tensor();
    batch_ = 0;
  }
  return true;
}

std::pair<std::vector<double>, std::vector<double>> Trainer::evaluate(int t) {
  at::NoGradGuard no_grad;
  net_->train(false);
  const int seen = data_->seen_classes(t), cpt = data_->classes_per_task();
  std::vector<double> cil, til;
  for (int k = 0; k <= t; ++k) {
    TaskSet ts;
    if (data_->class_il()) {
      while (static_cast<int>(test_cache_.size()) <= k) test_cache_.push_back(data_->test_task(static_cast<int>(test_cache_.size())));
      ts = test_cache_[k];
    } else {
      ts = data_->test_task(k);
    }
    int64_t correct = 0, correct_mask = 0, total = 0;
    for (int64_t first = 0; first < ts.size(); first += opt_.batch_size) {
      const int64_t len = std::min<int64_t>(opt_.batch_size, ts.size() - first);
      at::Tensor out = net_->forward(data_->test_input(ts.x.narrow(0, first, len)));
      at::Tensor y = ts.y.narrow(0, first, len);
      correct += std::get<1>(at::max(out.narrow(1, 0, seen), 1)).eq(y).sum().item<int64_t>();
      if (data_->class_il())
        correct_mask += (std::get<1>(at::max(out.narrow(1, k * cpt, cpt), 1)) + k * cpt).eq(y).sum().item<int64_t>();
      total += len;
    }
    cil.push_back(total ? static_cast<double>(correct) / static_cast<double>(total) * 100 : 0.0);
    til.push_back(total ? static_cast<double>(correct_mask) / static_cast<double>(total) * 100 : 0.0);
  }
  net_->train(true);
  return {cil, til};
}

std::string Trainer::file_name(int t) const {
  std::string suffix = opt_.joint ? "joint" : opt_.savecheck == "task" ? std::to_string(t) : "last";
  return (fs::path(opt_.checkpoint_path) / (name_base_ + "_" + suffix + ".pt")).string();
}

Value* Trainer::args_value(Document& doc) const {
  const Options& o = opt_;
  auto opt_str = [&](const std::string& s) { return s.empty() ? doc.none() : doc.str(s); };
  auto opt_int = [&](const std::optional<int>& x) { return x ? doc.integer(*x) : doc.none(); };
  Value* a = doc.dict();
  // Mammoth 0.2's argparse names and kinds (mammoth.md 1.1), then ours.
  a->set("dataset", o.dataset);
  a->set("model", o.model);
  a->set("backbone", o.backbone);
  a->set("load_best_args", false);
  a->set("dataset_config", doc.none());
  a->set("model_config", o.model_config);
  a->set("lr", o.lr);
  a->set("batch_size", o.batch_size);
  a->set("n_epochs", o.n_epochs);
  a->set("optimizer", o.optimizer);
  a->set("optim_wd", o.optim_wd);
  a->set("optim_mom", o.optim_mom);
  a->set("optim_nesterov", o.optim_nesterov);
  a->set("lr_scheduler", opt_str(o.lr_scheduler));
  a->set("scheduler_mode", "epoch");
  Value* ms = doc.list();
  for (int64_t m : o.lr_milestones) ms->append(doc.integer(m));
  a->set("lr_milestones", ms);
  a->set("sched_multistep_lr_gamma", o.sched_multistep_lr_gamma);
  a->set("drop_last", 0);
  a->set("fitting_mode", "epochs");
  a->set("seed", static_cast<int64_t>(seed_));
  a->set("permute_classes", 0);
  a->set("base_path", "./data/");
  a->set("results_path", "results/");
  a->set("device", "cpu");
  a->set("notes", doc.none());
  a->set("eval_epochs", doc.none());
  a->set("non_verbose", o.non_verbose);
  a->set("disable_log", 0);
  a->set("num_workers", 0);
  a->set("enable_other_metrics", 0);
  a->set("debug_mode", 0);
  a->set("inference_only", 0);
  a->set("code_optimization", 0);
  a->set("distributed", "no");
  a->set("savecheck", opt_str(o.savecheck));
  a->set("loadcheck", opt_str(o.loadcheck));
  a->set("ckpt_name", name_base_);
  a->set("start_from", opt_int(o.start_from));
  a->set("stop_after", opt_int(o.stop_after));
  a->set("joint", o.joint);
  a->set("label_perc", 1);
  a->set("validation", doc.none());
  a->set("validation_mode", "current");
  a->set("save_checkpoint_mode", "safe");
  a->set("checkpoint_path", o.checkpoint_path);
  a->set("save_after_interrupt", 1);
  a->set("nowand", 1);
  a->set("wandb_entity", doc.none());
  a->set("wandb_project", doc.none());
  if (is_rehearsal(o.model)) {
    a->set("buffer_size", o.buffer_size);
    a->set("minibatch_size", o.minibatch_size);
  }
  if (o.model == "der" || o.model == "derpp") a->set("alpha", o.alpha);
  if (o.model == "derpp") a->set("beta", o.beta);
  if (o.backbone == "mnistmlp") a->set("mlp_hidden_size", o.mlp_hidden_size);
  else a->set("num_filters", o.num_filters);
  a->set("num_classes", data_->n_classes());
  a->set("conf_jobnum", uuid4());
  a->set("conf_timestamp", timestamp());
  a->set("conf_host", hostname());
  a->set("conf_git_hash", doc.none());
  a->set("data_path", opt_str(o.data_path));
  a->set("source", o.source);
  a->set("n_tasks", data_->n_tasks());
  a->set("max_samples_per_task", o.max_samples_per_task);
  a->set("num_threads", threads_.intra_op);
  a->set("fused", o.fused);
  return a;
}

Value* Trainer::results_value(Document& doc) const {
  const bool class_il = data_->class_il();
  std::vector<double> accs, accs_mask;
  for (const auto& r : cil_) accs.push_back(mean(r));
  for (const auto& r : til_) accs_mask.push_back(mean(r));
  Value* logger = doc.dict();
  Value* a = doc.list();
  for (double x : accs) a->append(doc.floating(x));
  logger->set("accs", a);
  logger->set("fullaccs", class_il ? matrix_value(doc, cil_) : doc.list());
  logger->set("fwt", doc.none());
  logger->set("bwt", opt_float(doc, backward_transfer(cil_)));
  logger->set("forgetting", opt_float(doc, forgetting(cil_)));
  logger->set("fwt_mask_classes", doc.none());
  logger->set("bwt_mask_classes", class_il ? opt_float(doc, backward_transfer(til_)) : doc.none());
  logger->set("forgetting_mask_classes", class_il ? opt_float(doc, forgetting(til_)) : doc.none());
  if (class_il) {
    Value* am = doc.list();
    for (double x : accs_mask) am->append(doc.floating(x));
    logger->set("accs_mask_classes", am);
    logger->set("fullaccs_mask_classes", matrix_value(doc, til_));
  }
  return doc.list({matrix_value(doc, cil_), matrix_value(doc, til_), logger});
}

void Trainer::save(const std::string& path) {
  Document doc;
  TensorExporter ex(doc);
  Value* root = doc.dict();
  root->set("model", state_dict_value(ex, net_->state(), "net."));
  root->set("optimizer", optimizer_value(ex, *optim_));
  root->set("scheduler", scheduler_value(doc, sched_.get()));
  root->set("args", args_value(doc));
  root->set("results", results_value(doc));
  if (is_rehearsal(opt_.model)) {
    Value* b = doc.dict();
    if (buf_.examples.defined()) b->set("examples", ex.tensor(buf_.examples));
    if (buf_.labels.defined()) b->set("labels", ex.tensor(buf_.labels));
    if (buf_.logits.defined()) b->set("logits", ex.tensor(buf_.logits));
    root->set("buffer", b);
  }
  // Exact-resume state under keys Mammoth ignores (docs/trainer.md).
  Value* ts = doc.dict();
  ts->set("format", kResumeFormat);
  ts->set("producer", kProducer);
  ts->set("completed_tasks", static_cast<int64_t>(next_task_));
  ts->set("n_tasks", static_cast<int64_t>(data_->n_tasks()));
  ts->set("end_task", static_cast<int64_t>(end_task_));
  ts->set("mid_task", in_task_);
  ts->set("task", in_task_ ? doc.integer(cur_task_) : doc.none());
  ts->set("epoch", static_cast<int64_t>(in_task_ ? epoch_ : 0));
  ts->set("batch", in_task_ ? batch_ : int64_t{0});
  ts->set("ckpt_prefix", prefix_);
  root->set("task_state", ts);
  Value* rng = doc.dict();
  rng->set("seed", static_cast<int64_t>(seed_));
  rng->set("torch", generator_value(ex, at::detail::getDefaultCPUGenerator()));
  rng->set("shuffle", generator_value(ex, shuffle_gen_));
  rng->set("augment", generator_value(ex, augment_gen_));
  rng->set("buffer", generator_value(ex, buffer_gen_));
  root->set("rng_state", rng);
  Value* ds = doc.dict();
  ds->set("epoch_order", in_task_ && perm_.defined() ? ex.tensor(perm_) : doc.none());
  Value* trs = doc.list();
  if (!data_->class_il()) {
    const int upto = std::max(next_task_, in_task_ ? cur_task_ + 1 : 0);
    for (int k = 0; k < upto; ++k) trs->append(ex.tensor(data_->task_transform(k)));
  }
  ds->set("task_transforms", trs);
  root->set("data_state", ds);
  if (is_rehearsal(opt_.model)) {
    Value* bs = doc.dict();
    bs->set("num_seen_examples", buf_.num_seen);
    bs->set("buffer_size", static_cast<int64_t>(buf_.capacity));
    root->set("buffer_state", bs);
  }
  fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  ckpt::save(path, *root);
}

std::string Trainer::save_paused() {
  const std::string path = (fs::path(opt_.checkpoint_path) / "paused" / (uuid4() + ".pt")).string();
  save(path);
  return path;
}

// `model` of a Mammoth checkpoint: every key, "net." prefixed, strict (as
// ContinualModel.load_state_dict); "module." anywhere is removed first.
void Trainer::load_model(const Value& sd, const std::string& path) {
  std::map<std::string, const Value*> keys;
  for (const auto& [k, v] : sd.items()) {
    std::string name = k->as_str();
    for (size_t at; (at = name.find("module.")) != std::string::npos;) name.erase(at, 7);
    keys[name] = v;
  }
  std::vector<std::string> missing;
  for (const NamedTensor& nt : net_->state()) {
    auto it = keys.find("net." + nt.name);
    if (it == keys.end()) {
      missing.push_back("net." + nt.name);
      continue;
    }
    if (!it->second->is(Kind::tensor)) throw Error(ErrorCode::type_error, "not a tensor", path, {}, Error::no_offset, "model/net." + nt.name);
    copy_into(nt.tensor, it->second->tensor(), "model/net." + nt.name);
    keys.erase(it);
  }
  if (!missing.empty() || !keys.empty()) {
    std::string detail = "the model does not match the " + opt_.backbone + " backbone (strict load):";
    if (!missing.empty()) detail += " missing " + std::to_string(missing.size()) + " key(s), first '" + missing[0] + "'";
    if (!keys.empty()) detail += (missing.empty() ? " " : "; ") + std::string("unexpected ") + std::to_string(keys.size()) + " key(s), first '" + keys.begin()->first + "'";
    throw Error(ErrorCode::invalid_argument, detail, path, {}, Error::no_offset, "model");
  }
}

// A plain backbone state dict: "module." and "net." prefixes accepted, the
// classifier optional (kept at its initial value when absent or resized).
void Trainer::load_plain(const Value& root, const std::string& path) {
  const Value* sd = &root;
  if (const Value* inner = root.get("state_dict"); inner && inner->is_dict()) sd = inner;
  else if (const Value* m = root.get("model"); m && m->is_dict()) sd = m;
  std::map<std::string, const Value*> raw;
  for (const auto& [k, v] : sd->items()) {
    if (!k->is(Kind::string) || !v->is(Kind::tensor)) continue;
    std::string name = k->as_str();
    for (size_t at; (at = name.find("module.")) != std::string::npos;) name.erase(at, 7);
    raw[name] = v;
  }
  if (raw.empty()) throw Error(ErrorCode::invalid_argument, "neither a Mammoth checkpoint (no 'args') nor a state dict of tensors", path);
  std::map<std::string, const NamedTensor*> ours;
  for (const NamedTensor& nt : net_->state()) ours[nt.name] = &nt;
  // With or without a "net." prefix: whichever reading matches more keys.
  auto strip = [](const std::string& k) { return k.rfind("net.", 0) == 0 ? k.substr(4) : k; };
  size_t plain_hits = 0, stripped_hits = 0;
  for (const auto& [k, v] : raw) {
    plain_hits += ours.count(k);
    stripped_hits += ours.count(strip(k));
  }
  const bool use_strip = stripped_hits > plain_hits;
  std::set<const void*> loaded;  // storages filled, so aliases count as loaded
  std::vector<std::string> unexpected;
  for (const auto& [k, v] : raw) {
    const std::string name = use_strip ? strip(k) : k;
    auto it = ours.find(name);
    if (it == ours.end()) {
      unexpected.push_back(k);
      continue;
    }
    const at::Tensor& dst = it->second->tensor;
    std::vector<int64_t> shape(dst.sizes().begin(), dst.sizes().end());
    if (net_->is_classifier_key(name) && v->tensor().shape != shape) {
      std::fprintf(stderr, "ckpt-train: %s: skipping '%s' (a %d-class classifier is kept at its initial value)\n", path.c_str(),
                   k.c_str(), net_->num_classes());
      continue;
    }
    copy_into(dst, v->tensor(), k);
    loaded.insert(dst.storage().unsafeGetStorageImpl());
  }
  std::vector<std::string> missing;
  for (const NamedTensor& nt : net_->state())
    if (!loaded.count(nt.tensor.storage().unsafeGetStorageImpl()) && !net_->is_classifier_key(nt.name)) missing.push_back(nt.name);
  if (!unexpected.empty() || !missing.empty()) {
    std::string detail = "the state dict does not fit the " + opt_.backbone + " backbone:";
    if (!missing.empty()) detail += " missing " + std::to_string(missing.size()) + " key(s), first '" + missing[0] + "'";
    if (!unexpected.empty()) detail += (missing.empty() ? " " : "; ") + std::string("unexpected ") + std::to_string(unexpected.size()) + " key(s), first '" + unexpected[0] + "'";
    throw Error(ErrorCode::invalid_argument, detail, path);
  }
  std::fprintf(stderr, "ckpt-train: initialised the %s backbone from %s (%zu keys); training starts at task 1\n",
               opt_.backbone.c_str(), path.c_str(), raw.size());
}

void Trainer::restore(const Checkpoint& ck) {
  const Value& root = ck.root();
  const std::string& path = ck.path();
  if (!root.is_dict()) throw Error(ErrorCode::invalid_argument, "the checkpoint's root is not a dict", path);
  const Value* args = root.get("args");
  if (!args) {
    load_plain(root, path);
    return;
  }
  load_model(root.at("model"), path);
  if (const Value* res = root.get("results"); res && res->is_sequence() && res->size() >= 2) {
    cil_ = read_matrix(res->at(0));
    til_ = read_matrix(res->at(1));
  }
  next_task_ = static_cast<int>(cil_.size());
  if (is_rehearsal(opt_.model)) {
    if (const Value* b = root.get("buffer"); b && b->is_dict() && b->get("examples")) {
      at::Tensor ex = to_torch(b->at("examples").tensor());
      if (ex.dim() < 1 || ex.size(0) != buf_.capacity)
        throw Error(ErrorCode::invalid_argument, "the buffer holds " + std::to_string(ex.dim() ? ex.size(0) : 0) +
                                                     " examples, --buffer_size is " + std::to_string(buf_.capacity),
                    path, {}, Error::no_offset, "buffer/examples");
      const int64_t image = data_->image_numel();
      if (ex.numel() != buf_.capacity * image)
        throw Error(ErrorCode::invalid_argument, "buffer examples of " + std::to_string(ex.numel() / buf_.capacity) +
                                                     " values each, " + opt_.dataset + " images have " + std::to_string(image),
                    path, {}, Error::no_offset, "buffer/examples");
      const bool need_labels = opt_.model != "der", need_logits = opt_.model != "er";
      if ((need_labels && !b->get("labels")) || (need_logits && !b->get("logits")))
        throw Error(ErrorCode::invalid_argument, std::string("--model ") + opt_.model + " needs buffer " +
                                                     (need_labels && !b->get("labels") ? "labels" : "logits") +
                                                     ", the checkpoint's buffer has none", path, {}, Error::no_offset, "buffer");
      buf_.examples = ex.to(at::kFloat);
      if (const Value* l = b->get("labels")) buf_.labels = to_torch(l->tensor()).to(at::kLong);
      if (const Value* l = b->get("logits")) buf_.logits = to_torch(l->tensor()).to(at::kFloat);
      buf_.num_seen = ex.size(0);  // Mammoth's load_buffer; the true count follows when saved by us
      if (const Value* bs = root.get("buffer_state")) buf_.num_seen = bs->at("num_seen_examples").as_int();
    }
  }
  const Value* ts = root.get("task_state");
  if (!ts) {
    std::fprintf(stderr,
                 "ckpt-train: %s has no exact-resume state (written by Mammoth?): continuing after its %d task(s) with fresh "
                 "random streams%s\n",
                 path.c_str(), next_task_, buf_.examples.defined() ? "; buffer num_seen_examples = buffer size, as Mammoth" : "");
    return;
  }
  if (ts->at("format").as_int() > kResumeFormat)
    throw Error(ErrorCode::unsupported_version, "exact-resume state format " + std::to_string(ts->at("format").as_int()) +
                                                    ", this build supports <= " + std::to_string(kResumeFormat), path);
  next_task_ = static_cast<int>(ts->at("completed_tasks").as_int());
  if (const Value* p = ts->get("ckpt_prefix"); p && p->is(Kind::string) && !opt_.given.count("ckpt_name")) prefix_ = p->as_str();
  const Value& rng = root.at("rng_state");
  at::Generator def = at::detail::getDefaultCPUGenerator();
  load_generator(def, rng.at("torch"), "rng_state/torch");
  load_generator(augment_gen_, rng.at("augment"), "rng_state/augment");
  load_generator(buffer_gen_, rng.at("buffer"), "rng_state/buffer");
  const Value& ds = root.at("data_state");
  const Value& trs = ds.at("task_transforms");
  for (size_t k = 0; k < trs.size() && static_cast<int>(k) < data_->n_tasks(); ++k)
    data_->set_task_transform(static_cast<int>(k), to_torch(trs.at(k).tensor()));
  if (ts->at("mid_task").as_bool()) {
    cur_task_ = static_cast<int>(ts->at("task").as_int());
    epoch_ = static_cast<int>(ts->at("epoch").as_int());
    batch_ = ts->at("batch").as_int();
    const Value& order = ds.at("epoch_order");
    perm_ = order.is_none() ? at::Tensor() : to_torch(order.tensor());
    optim_ = make_optimizer();
    load_optimizer(*optim_, root.at("optimizer"));
    sched_.reset();
    if (const Value& s = root.at("scheduler"); !s.is_none()) sched_ = std::make_unique<Scheduler>(load_scheduler(s));
    load_generator(shuffle_gen_, rng.at("shuffle"), "rng_state/shuffle");
    in_task_ = true;
  }
}

void Trainer::write_results_json(double seconds) const {
  if (opt_.results_json.empty()) return;
  std::ostringstream f;
  const std::vector<double> last_cil = cil_.empty() ? std::vector<double>{} : cil_.back();
  const std::vector<double> last_til = til_.empty() ? std::vector<double>{} : til_.back();
  f << "{\"model\": " << json_str(opt_.model) << ", \"dataset\": " << json_str(opt_.dataset) << ", \"backbone\": "
    << json_str(opt_.backbone) << ", \"seed\": " << seed_ << ", \"buffer_size\": " << opt_.buffer_size
    << ", \"batch_size\": " << opt_.batch_size << ", \"lr\": " << json_num(opt_.lr) << ", \"n_epochs\": " << opt_.n_epochs
    << ", \"model_config\": " << json_str(opt_.model_config);
  if (is_rehearsal(opt_.model)) f << ", \"minibatch_size\": " << opt_.minibatch_size;
  if (opt_.model == "der" || opt_.model == "derpp") f << ", \"alpha\": " << json_num(opt_.alpha);
  if (opt_.model == "derpp") f << ", \"beta\": " << json_num(opt_.beta);
  f
    << ", \"tasks_completed\": " << next_task_ << ", \"class_il\": " << json_list(last_cil) << ", \"task_il\": " << json_list(last_til)
    << ", \"mean_class_il\": " << json_num(mean(last_cil)) << ", \"mean_task_il\": " << json_num(mean(last_til));
  auto opt_json = [](std::optional<double> x) { return x ? json_num(*x) : std::string("null"); };
  f << ", \"bwt\": " << opt_json(backward_transfer(cil_)) << ", \"forgetting\": " << opt_json(forgetting(cil_))
    << ", \"train_seconds\": " << json_num(train_seconds_) << ", \"samples_trained\": " << samples_trained_
    << ", \"samples_per_second\": " << json_num(train_seconds_ > 0 ? samples_trained_ / train_seconds_ : 0)
    << ", \"wall_seconds\": " << json_num(seconds) << ", \"threads\": {\"intra_op\": " << threads_.intra_op
    << ", \"inter_op\": 1, \"blas\": " << threads_.blas << ", \"blas_library\": " << json_str(threads_.blas_name)
    << ", \"cores\": " << threads_.cores << ", \"omp_wait_policy\": "
    << json_str(std::getenv("OMP_WAIT_POLICY") ? std::getenv("OMP_WAIT_POLICY") : "") << "}}\n";
  const std::string text = f.str();
  AtomicFile out(opt_.results_json);
  out.write(text.data(), text.size());
  out.commit();
}

int Trainer::run(const std::string& loaded_from) {
  const auto wall_start = Clock::now();
  const int n_tasks = data_->n_tasks();
  name_base_ = (prefix_.empty() ? "" : prefix_ + "_") + opt_.model + "_" + opt_.dataset + "_" + std::to_string(opt_.buffer_size) +
               "_" + std::to_string(opt_.n_epochs) + "_" + timestamp();
  const int start = opt_.start_from.value_or(next_task_);
  end_task_ = opt_.stop_after.value_or(n_tasks);
  if (start > n_tasks || end_task_ > n_tasks)
    throw UsageError("--start_from/--stop_after beyond the dataset's " + std::to_string(n_tasks) + " tasks");
  if (in_task_ && start != cur_task_) {
    std::fprintf(stderr, "ckpt-train: --start_from %d: discarding the checkpoint's position inside task %d\n", start, cur_task_);
    in_task_ = false;
  }
  if (static_cast<int>(cil_.size()) > start) {  // retraining tasks the file holds: their results go
    cil_.resize(start);
    til_.resize(start);
  }
  next_task_ = start;
  const char* wait = std::getenv("OMP_WAIT_POLICY");
  std::fprintf(stderr,
               "ckpt-train: %s, %s on %s, seed %llu; threads: %d intra-op (of %d cores), 1 inter-op, BLAS %d (%s), "
               "OMP_WAIT_POLICY %s\n",
               data_->describe().c_str(), opt_.model.c_str(), opt_.backbone.c_str(), static_cast<unsigned long long>(seed_),
               threads_.intra_op, threads_.cores, threads_.blas, threads_.blas_name.c_str(), wait ? wait : "(unset)");
  if (!loaded_from.empty())
    std::fprintf(stderr, "ckpt-train: resuming from %s at task %d%s\n", loaded_from.c_str(), start + 1,
                 in_task_ ? (", epoch " + std::to_string(epoch_ + 1) + ", batch " + std::to_string(batch_ + 1)).c_str() : "");

  for (int t = start; t < end_task_; ++t) {
    if (!in_task_) begin_task(t);
    if (!train_task(t)) {
      const std::string p = save_paused();
      std::fprintf(stderr, "ckpt-train: interrupted in task %d; saved %s (resume with --loadcheck %s)\n", t + 1, p.c_str(), p.c_str());
      write_results_json(std::chrono::duration<double>(Clock::now() - wall_start).count());
      return 0;
    }
    in_task_ = false;
    auto [cil, til] = evaluate(t);
    cil_.push_back(cil);
    til_.push_back(til);
    next_task_ = t + 1;
    std::string line = opt_.joint ? "joint" : "task " + std::to_string(t + 1);
    line += ": Class-IL " + fmt(mean(cil)) + " %";
    if (data_->class_il()) line += ", Task-IL " + fmt(mean(til)) + " %";
    line += "  [";
    for (size_t k = 0; k < cil.size(); ++k) line += (k ? " " : "") + fmt(cil[k]);
    std::printf("%s]\n", line.c_str());
    std::fflush(stdout);
    if (opt_.savecheck == "task" || (opt_.savecheck == "last" && t == end_task_ - 1) || (opt_.joint && !opt_.savecheck.empty())) {
      const std::string p = file_name(t);
      save(p);
      std::fprintf(stderr, "ckpt-train: saved %s\n", p.c_str());
    }
    if (g_stop_requested && t + 1 < end_task_) {
      const std::string p = save_paused();
      std::fprintf(stderr, "ckpt-train: interrupted after task %d; saved %s\n", t + 1, p.c_str());
      write_results_json(std::chrono::duration<double>(Clock::now() - wall_start).count());
      return 0;
    }
  }
  if (!cil_.empty()) {
    std::printf("Accuracy for %zu task(s): [Class-IL]: %s %%", cil_.size(), fmt(mean(cil_.back())).c_str());
    if (data_->class_il()) std::printf(" [Task-IL]: %s %%", fmt(mean(til_.back())).c_str());
    if (auto b = backward_transfer(cil_)) std::printf("  BWT %s, forgetting %s", fmt(*b).c_str(), fmt(*forgetting(cil_)).c_str());
    std::printf("\n");
  }
  if (samples_trained_ > 0 && train_seconds_ > 0)
    std::fprintf(stderr, "ckpt-train: trained %lld samples in %.2f s (%.0f samples/s)\n", static_cast<long long>(samples_trained_),
                 train_seconds_, samples_trained_ / train_seconds_);
  write_results_json(std::chrono::duration<double>(Clock::now() - wall_start).count());
  return 0;
}

}  // namespace

int run(const ParsedCli& cli) {
  std::optional<Checkpoint> ck;
  std::string loaded_from;
  if (auto it = cli.values.find("loadcheck"); it != cli.values.end()) {
    std::string path = it->second;
    loaded_from = path;
#ifdef CKPT_TRAIN_HAVE_DOWNLOAD
    if (is_url(path)) {
      DownloadOptions dl;  // cache folder, size limit and timeouts: docs/download.md
      if (auto c = cli.values.find("download_cache"); c != cli.values.end()) dl.cache_dir = c->second;
      dl.progress = !cli.values.count("non_verbose");
      path = fetch(path, dl);
    }
#else
    if (path.rfind("http://", 0) == 0 || path.rfind("https://", 0) == 0)
      throw UsageError("this ckpt-train was built without libcurl: download " + path + " and pass the file");
#endif
    ck.emplace(Checkpoint::open(path));
  }
  const Value* ck_args = nullptr;
  if (ck && ck->root().is_dict()) ck_args = ck->root().get("args");
  Options opt = resolve_options(cli, ck_args);
  ThreadSettings threads = configure_threads(opt);

  uint64_t seed;
  if (opt.seed) {
    seed = static_cast<uint64_t>(*opt.seed);
  } else if (ck && ck->root().is_dict() && ck->root().get("rng_state")) {
    seed = static_cast<uint64_t>(ck->root().at("rng_state").at("seed").as_int());
  } else {
    std::random_device rd;
    seed = (static_cast<uint64_t>(rd()) << 31 ^ rd()) & 0x7fffffffffffull;  // an int Python prints plainly
  }
  Trainer trainer(std::move(opt), seed, threads);
  if (ck) trainer.restore(*ck);
  return trainer.run(loaded_from);
}

namespace {

void on_signal(int sig) {
  if (g_stop_requested) _exit(128 + sig);  // a second signal: at once
  g_stop_requested = 1;
  const char msg[] = "\nckpt-train: stopping after this step and saving a checkpoint (signal again to quit now)\n";
  ssize_t r = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)r;
}

}  // namespace
}  // namespace ckpt::train

extern "C" int ckpt_train_main(int argc, const char* const* argv) {
  using namespace ckpt::train;
  try {
    ParsedCli cli = parse_cli(argc, argv);
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
