// trainer/model.hpp - Mammoth's backbones, torch.optim's SGD and Adam, and
// its MultiStepLR and CosineAnnealingLR, on ATen (no torch::nn: its headers
// cost 25 s a file, and Mammoth's state-dict keys and aliases are easier to
// give exactly by hand).
//
// Numerics follow PyTorch 1.13's Python code operation by operation
// (torch/optim/sgd.py `_single_tensor_sgd`, adam.py `_single_tensor_adam`,
// lr_scheduler.py, nn.init), so the same seed gives the same initial weights
// as Mammoth and the same updates as torch.optim.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

namespace ckpt::train {

struct NamedTensor {
  std::string name;
  at::Tensor tensor;
};

/// Activations of one forward pass of the fused MLP path, kept for its
/// backward pass (row-major float32 buffers, reused between steps).
struct FusedPass {
  at::Tensor x, h1, h2, out;  // [B,784] input, [B,H] post-ReLU, [B,C] logits
};

/// A Mammoth backbone. state() is its state_dict() (without the ContinualModel
/// "net." prefix), aliases included and sharing storage; parameters() is
/// named_parameters(), whose order is the optimizer's parameter index order.
class Backbone {
 public:
  virtual ~Backbone() = default;
  /// Logits for a batch (N x C x H x W, or N x 784 for the MLP).
  virtual at::Tensor forward(const at::Tensor& x) = 0;
  const std::vector<NamedTensor>& state() const noexcept { return state_; }
  const std::vector<NamedTensor>& parameters() const noexcept { return params_; }
  /// Names of the classifier's keys (a plain .pt may omit or resize them).
  virtual bool is_classifier_key(const std::string& key) const = 0;
  /// The fused path (mnistmlp): forward and backward by hand with BLAS
  /// sgemm, no autograd graph; gradients accumulate into each parameter's
  /// grad() (allocated by fused_zero_grad()). Same results as autograd up to
  /// float rounding; several times faster at small batches.
  virtual bool has_fused() const { return false; }
  virtual void fused_zero_grad() {}
  virtual void fused_forward(const at::Tensor& x, FusedPass& pass) {}
  /// `dout` is dLoss/dlogits, [B,C] contiguous float32.
  virtual void fused_backward(const FusedPass& pass, const at::Tensor& dout) {}

  void train(bool on) noexcept { training_ = on; }
  bool training() const noexcept { return training_; }
  int num_classes() const noexcept { return num_classes_; }

 protected:
  std::vector<NamedTensor> state_, params_;
  bool training_ = true;
  int num_classes_ = 0;
};

/// "mnistmlp" (784-width-width-classes, Xavier-uniform weights, zero biases,
/// 16 state keys) or "resnet18" (Mammoth's CIFAR ResNet-18, 122 keys,
/// PyTorch's default init). Draws the initial weights from ATen's default
/// CPU generator in the same order as the Python constructors.
std::unique_ptr<Backbone> make_backbone(const std::string& name, int num_classes, int width);

/// torch.optim.SGD / torch.optim.Adam with one parameter group.
struct Optimizer {
  std::string kind = "sgd";  ///< "sgd" | "adam"
  double lr = 0;
  double momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  /// Set by a scheduler ("initial_lr" in the param group), -1 otherwise.
  double initial_lr = -1;
  std::vector<at::Tensor> params;
  /// Per parameter, as torch's `state` dict: has_state says the index is a
  /// key of `state`; SGD's momentum_buffer may be undefined (None); Adam's
  /// step is a 0-dim float32 tensor.
  std::vector<char> has_state;
  std::vector<at::Tensor> momentum_buffer, step_count, exp_avg, exp_avg_sq;

  Optimizer(std::string kind, std::vector<at::Tensor> params, double lr, double momentum, double weight_decay,
            bool nesterov);
  /// Drops every gradient (set_to_none).
  void zero_grad();
  /// One update; parameters without a gradient are skipped, as in torch.
  void step();
};

/// torch.optim.lr_scheduler.MultiStepLR / CosineAnnealingLR. Construction
/// performs the initial step (last_epoch 0), as torch's does.
struct Scheduler {
  std::string kind;  ///< "multisteplr" | "cosine"
  std::vector<std::pair<int64_t, int64_t>> milestones;  ///< Counter items (epoch, count) in first-seen order
  double gamma = 0.1;
  int64_t t_max = 1;
  double eta_min = 0;
  std::vector<double> base_lrs;
  int64_t last_epoch = -1;
  int64_t step_count = 0;
  std::vector<double> last_lr;

  Scheduler(std::string kind, Optimizer& opt, const std::vector<int64_t>& milestones, double gamma, int64_t t_max);
  Scheduler() = default;
  void step(Optimizer& opt);
};

}  // namespace ckpt::train
