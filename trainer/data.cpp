// trainer/data.cpp - dataset files, task splits and transforms (see data.hpp).
#include "data.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "args.hpp"
#include "ckpt/error.hpp"

namespace ckpt::train {
namespace fs = std::filesystem;
namespace {

constexpr float kCifarMean[3] = {0.4914f, 0.4822f, 0.4465f};
constexpr float kCifarStd[3] = {0.2470f, 0.2435f, 0.2615f};
constexpr char kFashionDir[] = "/usr/share/datasets/fashion-mnist";

// The whole file, gunzipped when it is gzip (zlib reads plain files as they are).
std::vector<uint8_t> read_maybe_gz(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw Error(ErrorCode::io_error, "cannot open", path, {}, Error::no_offset, {}, errno);
  gzbuffer(f, 1 << 20);
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  for (;;) {
    int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(f, &err);
      gzclose(f);
      throw Error(ErrorCode::corrupt_compressed, "gzip: " + msg, path);
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  gzclose(f);
  return out;
}

uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

// IDX (LeCun's format): images 0x00000803 n rows cols, labels 0x00000801 n.
at::Tensor read_idx(const std::string& path, bool images) {
  std::vector<uint8_t> b = read_maybe_gz(path);
  const size_t header = images ? 16 : 8;
  if (b.size() < header) throw Error(ErrorCode::truncated, "IDX file shorter than its header", path);
  const uint32_t magic = be32(b.data());
  if (magic != (images ? 0x803u : 0x801u))
    throw Error(ErrorCode::unknown_format, "not an IDX " + std::string(images ? "image" : "label") + " file (magic " + std::to_string(magic) + ")", path);
  const int64_t n = be32(b.data() + 4);
  const int64_t rows = images ? be32(b.data() + 8) : 1, cols = images ? be32(b.data() + 12) : 1;
  if (images && (rows != 28 || cols != 28)) throw Error(ErrorCode::invalid_argument, "IDX images are not 28x28", path);
  if (b.size() - header != static_cast<uint64_t>(n * rows * cols))
    throw Error(ErrorCode::truncated, "IDX payload holds " + std::to_string(b.size() - header) + " bytes, the header says " +
                                          std::to_string(n * rows * cols), path);
  at::Tensor t = images ? at::empty({n, 1, rows, cols}, at::kByte) : at::empty({n}, at::kByte);
  std::memcpy(t.data_ptr(), b.data() + header, b.size() - header);
  return images ? t : t.to(at::kLong);
}

// The first folder of `dirs` holding every file of `names` (plain or .gz).
std::optional<std::vector<std::string>> find_files(const std::vector<std::string>& dirs, const std::vector<std::string>& names) {
  for (const std::string& d : dirs) {
    std::vector<std::string> paths;
    for (const std::string& n : names) {
      fs::path p = fs::path(d) / n;
      if (fs::is_regular_file(p)) paths.push_back(p.string());
      else if (fs::is_regular_file(p.string() + ".gz")) paths.push_back(p.string() + ".gz");
      else break;
    }
    if (paths.size() == names.size()) return paths;
  }
  return std::nullopt;
}

std::string join(const std::vector<std::string>& xs, const char* sep) {
  std::string out;
  for (size_t i = 0; i < xs.size(); ++i) out += (i ? sep : "") + xs[i];
  return out;
}

[[noreturn]] void missing(const std::string& what, const std::vector<std::string>& dirs, const std::vector<std::string>& names,
                          const char* hint) {
  throw Error(ErrorCode::io_error, what + " needs the files " + join(names, ", ") + " (optionally .gz) in one of: " +
                                       join(dirs, ", ") + ". " + hint);
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// PIL's Image.rotate(angle, NEAREST, expand=False) on a 28x28 image, as a
// gather map: out[i] = in[map[i]], with 784 meaning "outside" (black).
at::Tensor rotation_map(double degrees) {
  const double angle = -degrees * M_PI / 180.0;
  const double a = std::cos(angle), b = std::sin(angle), d = -std::sin(angle), e = std::cos(angle);
  const double cx = 14.0, cy = 14.0;
  const double c = a * -cx + b * -cy + cx, f = d * -cx + e * -cy + cy;
  at::Tensor map = at::empty({784}, at::kLong);
  int64_t* m = map.data_ptr<int64_t>();
  for (int y = 0; y < 28; ++y)
    for (int x = 0; x < 28; ++x) {
      const double xin = a * (x + 0.5) + b * (y + 0.5) + c, yin = d * (x + 0.5) + e * (y + 0.5) + f;
      const int xi = static_cast<int>(std::floor(xin)), yi = static_cast<int>(std::floor(yin));
      m[y * 28 + x] = (xi >= 0 && xi < 28 && yi >= 0 && yi < 28) ? yi * 28 + xi : 784;
    }
  return map;
}

}  // namespace

std::unique_ptr<ContinualDataset> ContinualDataset::load(const Options& opt, uint64_t seed) {
  std::unique_ptr<ContinualDataset> ds(new ContinualDataset());
  const DatasetInfo* info = find_dataset(opt.dataset);
  ds->name_ = opt.dataset;
  ds->seed_ = seed;
  ds->class_il_ = std::string(info->setting) == "class-il";
  ds->n_tasks_ = ds->class_il_ ? info->n_tasks : opt.n_tasks;
  ds->cpt_ = info->classes_per_task;
  ds->n_classes_ = 10;
  ds->max_per_task_ = opt.max_samples_per_task;
  ds->cifar_ = opt.dataset == "seq-cifar10";
  ds->joint_ = opt.joint != 0;
  if (ds->joint_) {
    ds->n_tasks_ = 1;
    ds->cpt_ = ds->n_classes_;
  }
  const std::string dp = opt.data_path.empty() ? "data" : opt.data_path;
  if (ds->cifar_) {
    const std::vector<std::string> names = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                            "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    const std::vector<std::string> dirs = {dp, dp + "/cifar-10-batches-bin", dp + "/CIFAR10/cifar-10-batches-bin"};
    auto paths = find_files(dirs, names);
    if (!paths) missing("seq-cifar10", dirs, names, "Get the CIFAR-10 binary version (cifar-10-binary.tar.gz) and pass --data_path.");
    auto read_cifar = [](const std::vector<std::string>& files, at::Tensor& x, at::Tensor& y) {
      std::vector<uint8_t> all;
      for (const std::string& p : files) {
        std::vector<uint8_t> b = read_maybe_gz(p);
        if (b.empty() || b.size() % 3073 != 0)
          throw Error(ErrorCode::truncated, "a CIFAR-10 binary batch is a whole number of 3073-byte records; this file has " +
                                                std::to_string(b.size()) + " bytes", p);
        all.insert(all.end(), b.begin(), b.end());
      }
      const int64_t n = static_cast<int64_t>(all.size() / 3073);
      x = at::empty({n, 3, 32, 32}, at::kByte);
      y = at::empty({n}, at::kLong);
      uint8_t* xp = x.data_ptr<uint8_t>();
      int64_t* yp = y.data_ptr<int64_t>();
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t* r = all.data() + i * 3073;
        if (r[0] > 9) throw Error(ErrorCode::invalid_argument, "CIFAR-10 label " + std::to_string(r[0]) + " out of range 0..9", files[0]);
        yp[i] = r[0];
        std::memcpy(xp + i * 3072, r + 1, 3072);
      }
    };
    read_cifar({paths->begin(), paths->begin() + 5}, ds->train_x_, ds->train_y_);
    read_cifar({paths->back()}, ds->test_x_, ds->test_y_);
    ds->source_ = fs::path((*paths)[0]).parent_path().string();
  } else {
    const bool fashion = opt.dataset == "seq-fashion-mnist" || (opt.dataset != "seq-mnist" && opt.source == "fashion-mnist");
    const std::vector<std::string> names = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                            "t10k-labels-idx1-ubyte"};
    std::vector<std::string> dirs;
    if (fashion) {
      if (!opt.data_path.empty()) dirs = {opt.data_path, opt.data_path + "/fashion-mnist"};
      dirs.push_back(kFashionDir);
    } else {
      dirs = {dp, dp + "/MNIST/raw", dp + "/MNIST/MyMNIST/raw"};
    }
    auto paths = find_files(dirs, names);
    if (!paths)
      missing(opt.dataset + (fashion ? " (Fashion-MNIST)" : " (MNIST)"), dirs, names,
              fashion ? "Install the Debian package dataset-fashion-mnist or pass --data_path."
                      : "Download MNIST's IDX files (yann.lecun.com/exdb/mnist) and pass --data_path.");
    ds->train_x_ = read_idx((*paths)[0], true);
    ds->train_y_ = read_idx((*paths)[1], false);
    ds->test_x_ = read_idx((*paths)[2], true);
    ds->test_y_ = read_idx((*paths)[3], false);
    if (ds->train_x_.size(0) != ds->train_y_.size(0) || ds->test_x_.size(0) != ds->test_y_.size(0))
      throw Error(ErrorCode::invalid_argument, "image and label files disagree on the sample count", (*paths)[0]);
    ds->source_ = fs::path((*paths)[0]).parent_path().string();
  }
  ds->transforms_.resize(ds->n_tasks_);
  return ds;
}

at::Tensor ContinualDataset::task_transform(int t) const {
  if (class_il_) return {};
  at::Tensor& tr = transforms_.at(t);
  if (!tr.defined()) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(splitmix64(seed_ ^ (0x632BE59BD9B4E019ull * (t + 1))));
    if (name_ == "perm-mnist") {
      tr = at::randperm(784, gen, at::kLong);
    } else {
      tr = at::empty({}, at::kDouble).uniform_(0, 180, gen);
    }
  }
  return tr;
}

void ContinualDataset::set_task_transform(int t, const at::Tensor& v) { transforms_.at(t) = v; }

at::Tensor ContinualDataset::apply_transform(const at::Tensor& images, int t) const {
  at::Tensor x = images.to(at::kFloat).div_(255);
  if (class_il_) return x;
  const int64_t n = x.size(0);
  at::Tensor flat = x.reshape({n, 784});
  if (name_ == "perm-mnist") return flat.index_select(1, task_transform(t)).reshape({n, 1, 28, 28});
  at::Tensor padded = at::cat({flat, at::zeros({n, 1})}, 1);
  return padded.index_select(1, rotation_map(task_transform(t).item<double>())).reshape({n, 1, 28, 28});
}

TaskSet ContinualDataset::subset(const at::Tensor& images, const at::Tensor& labels, int t) const {
  at::Tensor idx;
  if (class_il_ && !joint_) {
    at::Tensor mask = labels.ge(t * cpt_).logical_and(labels.lt((t + 1) * cpt_));
    idx = mask.nonzero().reshape({-1});
  } else {
    idx = at::arange(labels.size(0), at::kLong);
  }
  if (max_per_task_ > 0 && idx.size(0) > max_per_task_) idx = idx.narrow(0, 0, max_per_task_);
  return {apply_transform(images.index_select(0, idx), t), labels.index_select(0, idx)};
}

TaskSet ContinualDataset::train_task(int t) const { return subset(train_x_, train_y_, t); }
TaskSet ContinualDataset::test_task(int t) const { return subset(test_x_, test_y_, t); }

at::Tensor ContinualDataset::augment(const at::Tensor& not_aug, at::Generator& gen) const {
  if (!cifar_) return not_aug;
  const int64_t n = not_aug.size(0);
  at::Tensor src = not_aug.contiguous();
  at::Tensor out = at::empty({n, 3, 32, 32}, at::kFloat);
  const float* s = src.data_ptr<float>();
  float* o = out.data_ptr<float>();
  auto* g = gen.get<at::CPUGeneratorImpl>();
  std::lock_guard<std::mutex> lock(gen.mutex());
  for (int64_t b = 0; b < n; ++b) {
    // RandomCrop(32, padding=4): offsets 0..8 into the zero-padded image; then RandomHorizontalFlip.
    const int di = static_cast<int>(g->random() % 9) - 4, dj = static_cast<int>(g->random() % 9) - 4;
    const bool flip = g->random() & 1;
    for (int c = 0; c < 3; ++c) {
      const float* sc = s + (b * 3 + c) * 1024;
      float* oc = o + (b * 3 + c) * 1024;
      const float m = kCifarMean[c], sd = kCifarStd[c];
      for (int y = 0; y < 32; ++y) {
        const int yy = y + di;
        for (int x = 0; x < 32; ++x) {
          const int xx = (flip ? 31 - x : x) + dj;
          const float v = (yy >= 0 && yy < 32 && xx >= 0 && xx < 32) ? sc[yy * 32 + xx] : 0.0f;
          oc[y * 32 + x] = (v - m) / sd;
        }
      }
    }
  }
  return out;
}

at::Tensor ContinualDataset::test_input(const at::Tensor& x) const {
  if (!cifar_) return x;
  at::Tensor mean = at::tensor(std::vector<float>(kCifarMean, kCifarMean + 3)).view({1, 3, 1, 1});
  at::Tensor sd = at::tensor(std::vector<float>(kCifarStd, kCifarStd + 3)).view({1, 3, 1, 1});
  return (x - mean) / sd;
}

std::string ContinualDataset::describe() const {
  std::string s = name_ + ": " + std::to_string(train_y_.size(0)) + " train / " + std::to_string(test_y_.size(0)) +
                  " test images from " + source_ + "; " + std::to_string(n_tasks_) + " task" + (n_tasks_ > 1 ? "s" : "") +
                  " x " + std::to_string(cpt_) + " classes (" + (class_il_ ? "class-il" : "domain-il") + ")";
  if (max_per_task_ > 0) s += "; at most " + std::to_string(max_per_task_) + " train and test samples per task";
  return s;
}

}  // namespace ckpt::train
