// trainer/data.hpp - the continual datasets (Mammoth's splits, transforms and
// evaluation protocol; mammoth.md section 5).
//
//   seq-fashion-mnist  Fashion-MNIST IDX (/usr/share/datasets/fashion-mnist), 5 tasks x 2 classes, class-IL
//   seq-mnist          MNIST IDX from --data_path, 5 x 2, class-IL
//   perm-mnist         either source, every task all 10 classes under a fixed pixel permutation, domain-IL
//   rot-mnist          either source, every task rotated by a fixed angle in [0, 180), domain-IL
//   seq-cifar10        CIFAR-10 binary batches from --data_path, 5 x 2, class-IL, crop+flip augmentation
//
// A task's permutation or angle is drawn from a generator seeded by
// (seed, task index) only, so it is the same in every run and after a resume.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ckpt::train {

struct Options;

/// The samples of one task: not-augmented images, float32 in [0, 1]
/// (N x C x H x W, permutation/rotation applied), and int64 labels.
struct TaskSet {
  at::Tensor x;
  at::Tensor y;
  int64_t size() const { return y.defined() ? y.size(0) : 0; }
};

class ContinualDataset {
 public:
  /// Loads the files. Throws ckpt::Error(io_error) naming the files it
  /// expects when they are missing.
  static std::unique_ptr<ContinualDataset> load(const Options& opt, uint64_t seed);
  virtual ~ContinualDataset() = default;

  int n_tasks() const noexcept { return n_tasks_; }
  int classes_per_task() const noexcept { return cpt_; }
  int n_classes() const noexcept { return n_classes_; }
  bool class_il() const noexcept { return class_il_; }
  /// Classes seen once task t has been trained (Mammoth's get_offsets(t)[1]).
  int seen_classes(int t) const noexcept { return class_il_ ? cpt_ * (t + 1) : cpt_; }
  /// Values per image: 784 (1x28x28) or 3072 (3x32x32).
  int64_t image_numel() const noexcept { return cifar_ ? 3072 : 784; }

  TaskSet train_task(int t) const;
  TaskSet test_task(int t) const;

  /// Train-time input for a not-augmented batch: seq-cifar10 draws a random
  /// crop (padding 4) and a horizontal flip per image from `gen`, then
  /// normalises; the MNIST family returns the batch itself.
  at::Tensor augment(const at::Tensor& not_aug, at::Generator& gen) const;
  /// Test-time input (seq-cifar10: normalisation only).
  at::Tensor test_input(const at::Tensor& x) const;

  /// perm-mnist: the task's permutation (int64 [784]); rot-mnist: the angle
  /// in degrees as a 0-dim float64 tensor. Undefined for the others.
  at::Tensor task_transform(int t) const;
  /// Uses a saved transform instead of the derived one (resume check).
  void set_task_transform(int t, const at::Tensor& v);

  std::string describe() const;

 private:
  ContinualDataset() = default;
  TaskSet subset(const at::Tensor& images, const at::Tensor& labels, int t) const;
  at::Tensor apply_transform(const at::Tensor& images, int t) const;

  std::string name_, source_;
  int n_tasks_ = 5, cpt_ = 2, n_classes_ = 10;
  bool class_il_ = true, cifar_ = false, joint_ = false;
  int64_t max_per_task_ = 0;
  uint64_t seed_ = 0;
  at::Tensor train_x_, train_y_, test_x_, test_y_;  // uint8 images, int64 labels
  mutable std::vector<at::Tensor> transforms_;
};

}  // namespace ckpt::train
