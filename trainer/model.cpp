// trainer/model.cpp - backbones, optimizers and schedulers (see model.hpp).
#include "model.hpp"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <cstring>
#include <stdexcept>

// The Fortran BLAS LibTorch itself calls for float matrix products
// (libblas.so.3: OpenBLAS when installed).
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc);

namespace ckpt::train {
namespace {

// Row-major C[M,N] = op(A) * op(B) (+ C when accumulate), through column-major
// sgemm on the transposed problem: C^T = op(B)^T op(A)^T.
void gemm_rm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, const float* b, float* c, bool accumulate) {
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  const int lda = trans_a ? m : k, ldb = trans_b ? k : n;
  const char ta = trans_a ? 'T' : 'N', tb = trans_b ? 'T' : 'N';
  sgemm_(&tb, &ta, &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c, &n);
}

void ensure(at::Tensor& t, int64_t rows, int64_t cols) {
  if (!t.defined() || t.size(0) != rows || t.size(1) != cols) t = at::empty({rows, cols}, at::kFloat);
}

// y = relu(x W^T + b), row-major, W [out,in].
void linear_relu(const float* x, const at::Tensor& w, const at::Tensor& b, float* y, int rows, bool relu) {
  const int out = static_cast<int>(w.size(0)), in = static_cast<int>(w.size(1));
  const float* bp = b.data_ptr<float>();
  for (int r = 0; r < rows; ++r) std::memcpy(y + static_cast<size_t>(r) * out, bp, out * sizeof(float));
  gemm_rm(false, true, rows, out, in, x, w.data_ptr<float>(), y, true);
  if (relu)
    for (size_t i = 0, n = static_cast<size_t>(rows) * out; i < n; ++i) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}

// Parameter gradients of y = x W^T + b given dy: dW += dy^T x, db += colsum(dy).
void linear_grads(const float* x, const float* dy, int rows, const at::Tensor& w, at::Tensor& gw, at::Tensor& gb) {
  const int out = static_cast<int>(w.size(0)), in = static_cast<int>(w.size(1));
  gemm_rm(true, false, out, in, rows, dy, x, gw.data_ptr<float>(), true);
  float* g = gb.data_ptr<float>();
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < out; ++j) g[j] += dy[static_cast<size_t>(r) * out + j];
}

// dx = (dy W) masked by the ReLU that produced x (x > 0).
void backprop_relu(const float* dy, const at::Tensor& w, const float* x_post_relu, float* dx, int rows) {
  const int out = static_cast<int>(w.size(0)), in = static_cast<int>(w.size(1));
  gemm_rm(false, false, rows, in, out, dy, w.data_ptr<float>(), dx, false);
  for (size_t i = 0, n = static_cast<size_t>(rows) * in; i < n; ++i)
    if (!(x_post_relu[i] > 0.0f)) dx[i] = 0.0f;
}

// nn.init.kaiming_uniform_(w, a=sqrt(5)) as nn.Linear / nn.Conv2d's
// reset_parameters call it; the expression order is Python's.
void kaiming_uniform_default(at::Tensor& w, int64_t fan_in) {
  const double a = std::sqrt(5.0);
  const double gain = std::sqrt(2.0 / (1 + std::pow(a, 2)));
  const double std_ = gain / std::sqrt(static_cast<double>(fan_in));
  const double bound = std::sqrt(3.0) * std_;
  w.uniform_(-bound, bound);
}

// nn.Linear(in, out): weight then bias, from the default generator.
void linear_init(at::Tensor& w, at::Tensor& b) {
  const int64_t fan_in = w.size(1);
  kaiming_uniform_default(w, fan_in);
  const double bound = fan_in > 0 ? 1 / std::sqrt(static_cast<double>(fan_in)) : 0;
  b.uniform_(-bound, bound);
}

// Mammoth's backbone.xavier for a Linear layer.
void xavier(at::Tensor& w, at::Tensor& b) {
  const int64_t fan_in = w.size(1), fan_out = w.size(0);
  const double std_ = 1.0 * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  const double a = std::sqrt(3.0) * std_;
  w.uniform_(-a, a);
  b.fill_(0.0);
}

class MnistMlp final : public Backbone {
 public:
  MnistMlp(int num_classes, int hidden) {
    num_classes_ = num_classes;
    at::NoGradGuard no_grad;
    w1_ = at::empty({hidden, 784});
    b1_ = at::empty({hidden});
    w2_ = at::empty({hidden, hidden});
    b2_ = at::empty({hidden});
    w3_ = at::empty({num_classes, hidden});
    b3_ = at::empty({num_classes});
    // nn.Linear constructors run first (fc1, fc2, classifier), then
    // self.net.apply(xavier) visits them in the same order.
    linear_init(w1_, b1_);
    linear_init(w2_, b2_);
    linear_init(w3_, b3_);
    xavier(w1_, b1_);
    xavier(w2_, b2_);
    xavier(w3_, b3_);
    for (at::Tensor* t : {&w1_, &b1_, &w2_, &b2_, &w3_, &b3_}) t->requires_grad_(true);
    params_ = {{"fc1.weight", w1_}, {"fc1.bias", b1_}, {"fc2.weight", w2_},
               {"fc2.bias", b2_}, {"classifier.weight", w3_}, {"classifier.bias", b3_}};
    state_ = {{"fc1.weight", w1_}, {"fc1.bias", b1_}, {"fc2.weight", w2_}, {"fc2.bias", b2_},
              {"_features.0.weight", w1_}, {"_features.0.bias", b1_}, {"_features.2.weight", w2_},
              {"_features.2.bias", b2_}, {"classifier.weight", w3_}, {"classifier.bias", b3_},
              {"net.0.0.weight", w1_}, {"net.0.0.bias", b1_}, {"net.0.2.weight", w2_},
              {"net.0.2.bias", b2_}, {"net.1.weight", w3_}, {"net.1.bias", b3_}};
  }

  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor h = x.reshape({x.size(0), -1});
    h = at::relu(at::linear(h, w1_, b1_));
    h = at::relu(at::linear(h, w2_, b2_));
    return at::linear(h, w3_, b3_);
  }

  bool is_classifier_key(const std::string& key) const override {
    return key.rfind("classifier.", 0) == 0 || key.rfind("net.1.", 0) == 0;
  }

  bool has_fused() const override { return true; }

  void fused_zero_grad() override {
    for (NamedTensor& p : params_) {
      if (!p.tensor.grad().defined()) p.tensor.mutable_grad() = at::zeros_like(p.tensor);
      else p.tensor.mutable_grad().zero_();
    }
  }

  void fused_forward(const at::Tensor& x, FusedPass& pass) override {
    const int rows = static_cast<int>(x.size(0));
    pass.x = x.reshape({rows, -1}).contiguous();
    ensure(pass.h1, rows, w1_.size(0));
    ensure(pass.h2, rows, w2_.size(0));
    ensure(pass.out, rows, w3_.size(0));
    linear_relu(pass.x.data_ptr<float>(), w1_, b1_, pass.h1.data_ptr<float>(), rows, true);
    linear_relu(pass.h1.data_ptr<float>(), w2_, b2_, pass.h2.data_ptr<float>(), rows, true);
    linear_relu(pass.h2.data_ptr<float>(), w3_, b3_, pass.out.data_ptr<float>(), rows, false);
  }

  void fused_backward(const FusedPass& pass, const at::Tensor& dout) override {
    const int rows = static_cast<int>(pass.x.size(0));
    ensure(dh2_, rows, w2_.size(0));
    ensure(dh1_, rows, w1_.size(0));
    const float* d3 = dout.data_ptr<float>();
    linear_grads(pass.h2.data_ptr<float>(), d3, rows, w3_, w3_.mutable_grad(), b3_.mutable_grad());
    backprop_relu(d3, w3_, pass.h2.data_ptr<float>(), dh2_.data_ptr<float>(), rows);
    linear_grads(pass.h1.data_ptr<float>(), dh2_.data_ptr<float>(), rows, w2_, w2_.mutable_grad(), b2_.mutable_grad());
    backprop_relu(dh2_.data_ptr<float>(), w2_, pass.h1.data_ptr<float>(), dh1_.data_ptr<float>(), rows);
    linear_grads(pass.x.data_ptr<float>(), dh1_.data_ptr<float>(), rows, w1_, w1_.mutable_grad(), b1_.mutable_grad());
  }

 private:
  at::Tensor w1_, b1_, w2_, b2_, w3_, b3_;
  at::Tensor dh1_, dh2_;  // backward workspaces
};

struct BatchNorm {
  at::Tensor weight, bias, running_mean, running_var, num_batches_tracked;
};

struct Block {
  at::Tensor conv1;
  BatchNorm bn1;
  at::Tensor conv2;
  BatchNorm bn2;
  at::Tensor shortcut_conv;  // undefined: identity shortcut
  BatchNorm shortcut_bn;
  int64_t stride = 1;
};

class ResNet18 final : public Backbone {
 public:
  ResNet18(int num_classes, int nf) {
    num_classes_ = num_classes;
    at::NoGradGuard no_grad;
    conv1_ = conv(3, nf, 3);
    bn1_ = batch_norm(nf);
    int64_t in_planes = nf;
    const int64_t planes[4] = {nf, 2 * nf, 4 * nf, 8 * nf};
    const int64_t strides[4] = {1, 2, 2, 2};
    for (int l = 0; l < 4; ++l) {
      for (int b = 0; b < 2; ++b) {
        Block blk;
        blk.stride = b == 0 ? strides[l] : 1;
        blk.conv1 = conv(in_planes, planes[l], 3);
        blk.bn1 = batch_norm(planes[l]);
        blk.conv2 = conv(planes[l], planes[l], 3);
        blk.bn2 = batch_norm(planes[l]);
        if (blk.stride != 1 || in_planes != planes[l]) {
          blk.shortcut_conv = conv(in_planes, planes[l], 1);
          blk.shortcut_bn = batch_norm(planes[l]);
        }
        in_planes = planes[l];
        blocks_.push_back(std::move(blk));
      }
    }
    fc_w_ = at::empty({num_classes, 8 * nf});
    fc_b_ = at::empty({num_classes});
    linear_init(fc_w_, fc_b_);

    add_param("conv1.weight", conv1_);
    add_bn("bn1", bn1_);
    for (size_t i = 0; i < blocks_.size(); ++i) {
      Block& blk = blocks_[i];
      const std::string p = "layer" + std::to_string(i / 2 + 1) + "." + std::to_string(i % 2) + ".";
      add_param(p + "conv1.weight", blk.conv1);
      add_bn(p + "bn1", blk.bn1);
      add_param(p + "conv2.weight", blk.conv2);
      add_bn(p + "bn2", blk.bn2);
      if (blk.shortcut_conv.defined()) {
        add_param(p + "shortcut.0.weight", blk.shortcut_conv);
        add_bn(p + "shortcut.1", blk.shortcut_bn);
      }
    }
    add_param("classifier.weight", fc_w_);
    add_param("classifier.bias", fc_b_);
  }

  at::Tensor forward(const at::Tensor& x) override {
    // In place where autograd allows it (batch norm's and add's backward do
    // not read their outputs), as Mammoth's `out += self.shortcut(x)`: fewer
    // activation buffers, same values.
    at::Tensor out = bn(conv_fwd(x, conv1_, 1, 1), bn1_);
    out.relu_();
    for (Block& blk : blocks_) {
      at::Tensor y = bn(conv_fwd(out, blk.conv1, blk.stride, 1), blk.bn1);
      y.relu_();
      y = bn(conv_fwd(y, blk.conv2, 1, 1), blk.bn2);
      if (blk.shortcut_conv.defined())
        y.add_(bn(conv_fwd(out, blk.shortcut_conv, blk.stride, 0), blk.shortcut_bn));
      else
        y.add_(out);
      out = y.relu_();
    }
    out = at::avg_pool2d(out, {out.size(2), out.size(2)});
    out = out.view({out.size(0), -1});
    return at::linear(out, fc_w_, fc_b_);
  }

  bool is_classifier_key(const std::string& key) const override { return key.rfind("classifier.", 0) == 0; }

 private:
  static at::Tensor conv(int64_t in, int64_t out, int64_t k) {
    at::Tensor w = at::empty({out, in, k, k});
    kaiming_uniform_default(w, in * k * k);
    return w;
  }
  // F.conv2d(x, w, None, stride, padding)
  static at::Tensor conv_fwd(const at::Tensor& x, const at::Tensor& w, int64_t stride, int64_t pad) {
    const int64_t s[2] = {stride, stride}, p[2] = {pad, pad}, d[2] = {1, 1};
    return at::conv2d(x, w, c10::optional<at::Tensor>(), at::IntArrayRef(s, 2), at::IntArrayRef(p, 2), at::IntArrayRef(d, 2), 1);
  }
  static BatchNorm batch_norm(int64_t c) {
    return {at::ones({c}), at::zeros({c}), at::zeros({c}), at::ones({c}), at::zeros({}, at::kLong)};
  }
  // nn.BatchNorm2d.forward with momentum 0.1, eps 1e-5.
  at::Tensor bn(const at::Tensor& x, BatchNorm& b) {
    if (training_) {
      at::NoGradGuard no_grad;
      b.num_batches_tracked.add_(1);
    }
    return at::batch_norm(x, b.weight, b.bias, b.running_mean, b.running_var, training_, 0.1, 1e-5, true);
  }
  void add_param(const std::string& name, at::Tensor& t) {
    t.requires_grad_(true);
    params_.push_back({name, t});
    state_.push_back({name, t});
  }
  void add_bn(const std::string& p, BatchNorm& b) {
    b.weight.requires_grad_(true);
    b.bias.requires_grad_(true);
    params_.push_back({p + ".weight", b.weight});
    params_.push_back({p + ".bias", b.bias});
    state_.push_back({p + ".weight", b.weight});
    state_.push_back({p + ".bias", b.bias});
    state_.push_back({p + ".running_mean", b.running_mean});
    state_.push_back({p + ".running_var", b.running_var});
    state_.push_back({p + ".num_batches_tracked", b.num_batches_tracked});
  }

  at::Tensor conv1_;
  BatchNorm bn1_;
  std::vector<Block> blocks_;
  at::Tensor fc_w_, fc_b_;
};

}  // namespace

std::unique_ptr<Backbone> make_backbone(const std::string& name, int num_classes, int width) {
  if (name == "mnistmlp") return std::make_unique<MnistMlp>(num_classes, width);
  if (name == "resnet18") return std::make_unique<ResNet18>(num_classes, width);
  throw std::invalid_argument("unknown backbone " + name);
}

Optimizer::Optimizer(std::string kind_, std::vector<at::Tensor> params_, double lr_, double momentum_,
                     double weight_decay_, bool nesterov_)
    : kind(std::move(kind_)), lr(lr_), momentum(momentum_), weight_decay(weight_decay_), nesterov(nesterov_),
      params(std::move(params_)) {
  const size_t n = params.size();
  has_state.assign(n, 0);
  momentum_buffer.resize(n);
  step_count.resize(n);
  exp_avg.resize(n);
  exp_avg_sq.resize(n);
}

void Optimizer::zero_grad() {
  for (at::Tensor& p : params) p.mutable_grad().reset();
}

void Optimizer::step() {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor& p = params[i];
    const at::Tensor& g = p.grad();
    if (!g.defined()) continue;
    if (kind == "sgd") {
      at::Tensor d_p = g;
      if (weight_decay != 0) d_p = d_p.add(p, weight_decay);
      if (momentum != 0) {
        at::Tensor& buf = momentum_buffer[i];
        if (!buf.defined()) {
          buf = d_p.clone().detach();
        } else {
          buf.mul_(momentum).add_(d_p, 1 - dampening);
        }
        d_p = nesterov ? d_p.add(buf, momentum) : buf;
      }
      p.add_(d_p, -lr);
      has_state[i] = 1;
    } else {
      if (!has_state[i]) {
        step_count[i] = at::zeros({});  // torch.tensor(0.)
        exp_avg[i] = at::zeros_like(p, at::MemoryFormat::Preserve);
        exp_avg_sq[i] = at::zeros_like(p, at::MemoryFormat::Preserve);
        has_state[i] = 1;
      }
      step_count[i].add_(1);
      at::Tensor grad = g;
      if (weight_decay != 0) grad = grad.add(p, weight_decay);
      exp_avg[i].mul_(beta1).add_(grad, 1 - beta1);
      exp_avg_sq[i].mul_(beta2).addcmul_(grad, grad, 1 - beta2);
      const double step = step_count[i].item<float>();
      const double bias_correction1 = 1 - std::pow(beta1, step);
      const double bias_correction2 = 1 - std::pow(beta2, step);
      const double step_size = lr / bias_correction1;
      const double bias_correction2_sqrt = std::sqrt(bias_correction2);
      at::Tensor denom = (exp_avg_sq[i].sqrt() / bias_correction2_sqrt).add_(eps);
      p.addcdiv_(exp_avg[i], denom, -step_size);
    }
  }
}

Scheduler::Scheduler(std::string kind_, Optimizer& opt, const std::vector<int64_t>& ms, double gamma_,
                     int64_t t_max_)
    : kind(std::move(kind_)), gamma(gamma_), t_max(t_max_) {
  for (int64_t m : ms) {
    bool found = false;
    for (auto& [epoch, count] : milestones)
      if (epoch == m) { ++count; found = true; }
    if (!found) milestones.emplace_back(m, 1);
  }
  if (opt.initial_lr < 0) opt.initial_lr = opt.lr;
  base_lrs = {opt.initial_lr};
  last_epoch = -1;
  step_count = 0;  // _initial_step()
  step(opt);
}

void Scheduler::step(Optimizer& opt) {
  ++step_count;
  ++last_epoch;
  double lr = opt.lr;
  if (kind == "multisteplr") {
    for (auto& [epoch, count] : milestones)
      if (epoch == last_epoch) lr = opt.lr * std::pow(gamma, static_cast<double>(count));
  } else {
    const double base = base_lrs.at(0), pi = M_PI, tm = static_cast<double>(t_max);
    const int64_t period = 2 * t_max;
    const int64_t phase = (((last_epoch - 1 - t_max) % period) + period) % period;  // Python's %
    if (last_epoch == 0) {
      lr = opt.lr;
    } else if (step_count == 1 && last_epoch > 0) {
      lr = eta_min + (base - eta_min) * (1 + std::cos(static_cast<double>(last_epoch) * pi / tm)) / 2;
    } else if (phase == 0) {
      lr = opt.lr + (base - eta_min) * (1 - std::cos(pi / tm)) / 2;
    } else {
      lr = (1 + std::cos(pi * static_cast<double>(last_epoch) / tm)) /
               (1 + std::cos(pi * static_cast<double>(last_epoch - 1) / tm)) * (opt.lr - eta_min) +
           eta_min;
    }
  }
  opt.lr = lr;
  last_lr = {lr};
}

}  // namespace ckpt::train
