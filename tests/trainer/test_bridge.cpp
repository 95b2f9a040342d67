// Unit tests of the LibTorch <-> libckpt bridge and the backbones' key sets.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <set>

#include "args.hpp"
#include "bridge.hpp"
#include "data.hpp"
#include "ckpt/checkpoint.hpp"
#include "ckpt/error.hpp"
#include "model.hpp"

// c10 pulls in glog, whose CHECK macros would shadow doctest's.
#undef CHECK
#undef CHECK_EQ
#undef CHECK_NE
#undef CHECK_LT
#undef CHECK_LE
#undef CHECK_GT
#undef CHECK_GE
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

using namespace ckpt::train;
namespace fs = std::filesystem;

namespace {
std::string temp_file(const char* name) {
  return (fs::temp_directory_path() / (std::string("ckpt_bridge_") + std::to_string(getpid()) + "_" + name)).string();
}
}  // namespace

TEST_CASE("aliases and views share one storage, in memory and in the file") {
  at::Tensor base = at::arange(12, at::kFloat).reshape({3, 4});
  at::Tensor view = base.narrow(0, 1, 2);  // storage offset 4
  ckpt::Document doc;
  TensorExporter ex(doc);
  ckpt::Value* root = doc.ordered_dict();
  root->set("a", ex.tensor(base));
  root->set("alias", ex.tensor(base));
  root->set("view", ex.tensor(view));
  CHECK(root->at("a").tensor().storage == root->at("alias").tensor().storage);
  CHECK(root->at("view").tensor().storage == root->at("a").tensor().storage);
  CHECK(root->at("view").tensor().storage_offset == 4);
  // zero-copy: the ckpt storage is the at::Tensor's memory
  CHECK(root->at("a").tensor().storage->bytes().data() == base.data_ptr());

  const std::string path = temp_file("alias.pt");
  ckpt::save(path, *root);
  auto ck = ckpt::Checkpoint::open(path);
  CHECK(ck.storages().size() == 1);
  at::Tensor back = to_torch(ck.root().at("view").tensor());
  CHECK(at::equal(back, view));
  fs::remove(path);
}

TEST_CASE("copy_into checks shapes and kinds, naming the key") {
  at::Tensor dst = at::zeros({2, 3});
  ckpt::Tensor src = ckpt::Tensor::from_bytes(ckpt::DType::float32, {3, 2}, std::vector<uint8_t>(24, 0));
  CHECK_THROWS_WITH_AS(copy_into(dst, src, "model/net.fc1.weight"),
                       doctest::Contains("(model/net.fc1.weight): shape [3, 2] in the checkpoint, the model has [2, 3]"),
                       ckpt::Error);
  std::vector<uint8_t> bytes(6 * 8);
  int64_t* v = reinterpret_cast<int64_t*>(bytes.data());
  for (int i = 0; i < 6; ++i) v[i] = i;
  ckpt::Tensor ints = ckpt::Tensor::from_bytes(ckpt::DType::int64, {2, 3}, bytes);
  CHECK_THROWS_AS(copy_into(dst, ints, "k"), ckpt::Error);
  at::Tensor idst = at::zeros({2, 3}, at::kInt);  // int64 -> int32 converts
  copy_into(idst, ints, "k");
  CHECK(idst[1][2].item<int>() == 5);
}

TEST_CASE("optimizer state round-trips (SGD momentum, Adam)") {
  for (const char* kind : {"sgd", "adam"}) {
    CAPTURE(kind);
    at::Tensor p = at::ones({4}).requires_grad_(true);
    Optimizer opt(kind, {p}, 0.1, 0.9, 0.01, false);
    for (int i = 0; i < 3; ++i) {
      opt.zero_grad();
      (p * p).sum().backward();
      opt.step();
    }
    ckpt::Document doc;
    TensorExporter ex(doc);
    ckpt::Value* v = optimizer_value(ex, opt);
    const ckpt::Value& group = v->at("param_groups").at(0);
    CHECK(group.at("params").size() == 1);
    CHECK(group.items().back().first->as_str() == "params");  // torch packs 'params' last
    Optimizer back(kind, {p}, 0.5, 0.9, 0.01, false);
    load_optimizer(back, *v);
    CHECK(back.lr == doctest::Approx(0.1));
    if (std::string(kind) == "sgd") {
      CHECK(at::equal(back.momentum_buffer[0], opt.momentum_buffer[0]));
    } else {
      CHECK(back.step_count[0].item<float>() == 3.0f);
      CHECK(at::equal(back.exp_avg_sq[0], opt.exp_avg_sq[0]));
    }
    Optimizer wrong(std::string(kind) == "sgd" ? "adam" : "sgd", {p}, 0.1, 0.9, 0, false);
    CHECK_THROWS_AS(load_optimizer(wrong, *v), ckpt::Error);
  }
}

TEST_CASE("schedulers follow torch's recursions and round-trip") {
  at::Tensor p = at::ones({1}).requires_grad_(true);
  Optimizer opt("sgd", {p}, 1.0, 0, 0, false);
  Scheduler s("multisteplr", opt, {2, 2, 4}, 0.5, 0);
  CHECK(s.last_epoch == 0);
  CHECK(s.step_count == 1);
  CHECK(opt.initial_lr == 1.0);
  s.step(opt);
  s.step(opt);  // epoch 2 counts twice: lr * 0.5^2
  CHECK(opt.lr == 0.25);
  ckpt::Document doc;
  ckpt::Value* v = scheduler_value(doc, &s);
  CHECK(v->at("milestones").type_name() == "collections.Counter");
  Scheduler back = load_scheduler(*v);
  CHECK(back.milestones == s.milestones);
  CHECK(back.last_epoch == 2);
  CHECK(back.last_lr == s.last_lr);

  Optimizer opt2("sgd", {p}, 0.1, 0, 0, false);
  Scheduler c("cosine", opt2, {}, 0.1, 4);
  for (int i = 0; i < 4; ++i) c.step(opt2);
  CHECK(opt2.lr == doctest::Approx(0.0).epsilon(1e-12));
  CHECK(scheduler_value(doc, nullptr)->is_none());
}

TEST_CASE("generator state round-trips") {
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(42);
  ckpt::Document doc;
  TensorExporter ex(doc);
  ckpt::Value* v = generator_value(ex, g);
  CHECK(v->tensor().dtype == ckpt::DType::uint8);
  at::Tensor first = at::randperm(100, g, at::kLong);
  at::Generator h = at::make_generator<at::CPUGeneratorImpl>(7);
  load_generator(h, *v, "rng");
  CHECK(at::equal(at::randperm(100, h, at::kLong), first));
}

TEST_CASE("backbones: Mammoth's keys, aliases and parameter order") {
  auto mlp = make_backbone("mnistmlp", 10, 100);
  REQUIRE(mlp->state().size() == 16);
  CHECK(mlp->parameters().size() == 6);
  CHECK(mlp->state()[10].name == "net.0.0.weight");
  std::set<const void*> storages;
  for (const NamedTensor& nt : mlp->state()) storages.insert(nt.tensor.data_ptr());
  CHECK(storages.size() == 6);
  CHECK(mlp->forward(at::zeros({3, 1, 28, 28})).sizes() == at::IntArrayRef({3, 10}));

  auto rn = make_backbone("resnet18", 10, 64);
  CHECK(rn->state().size() == 122);
  CHECK(rn->parameters().size() == 62);
  int64_t n = 0;
  for (const NamedTensor& p : rn->parameters()) n += p.tensor.numel();
  CHECK(n == 11173962);
  CHECK(rn->state()[0].name == "conv1.weight");
  CHECK(rn->state().back().name == "classifier.bias");
  CHECK(rn->is_classifier_key("classifier.weight"));
}

TEST_CASE("seq-cifar10: crop with zero padding 4, flip, normalise; test images only normalised") {
  const fs::path dir = fs::temp_directory_path() / ("ckpt_cifar_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::vector<uint8_t> rec(3073);
  for (const char* name : {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin",
                           "test_batch.bin"}) {
    FILE* f = std::fopen((dir / name).c_str(), "wb");
    for (int i = 0; i < 4; ++i) {
      rec[0] = static_cast<uint8_t>(i % 2);
      for (int j = 1; j < 3073; ++j) rec[j] = static_cast<uint8_t>((j * 7 + i * 13) % 251);
      std::fwrite(rec.data(), 1, rec.size(), f);
    }
    std::fclose(f);
  }
  ParsedCli cli;
  cli.values = {{"dataset", "seq-cifar10"}, {"lr", "0.1"}, {"data_path", dir.string()}};
  Options opt = resolve_options(cli, nullptr);
  auto ds = ContinualDataset::load(opt, 0);
  TaskSet ts = ds->train_task(0);
  REQUIRE(ts.size() == 20);
  const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, sd[3] = {0.2470f, 0.2435f, 0.2615f};
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(3);
  at::Tensor out = ds->augment(ts.x, g);
  const at::Tensor src = ts.x.contiguous();
  const float* in = src.data_ptr<float>();
  const float* o = out.data_ptr<float>();
  int flips = 0;
  for (int64_t b = 0; b < ts.size(); ++b) {
    // exactly one (dy, dx, flip) reproduces each augmented image
    int matches = 0;
    for (int dy = -4; dy <= 4; ++dy)
      for (int dx = -4; dx <= 4; ++dx)
        for (int flip = 0; flip < 2; ++flip) {
          bool same = true;
          for (int c = 0; c < 3 && same; ++c)
            for (int y = 0; y < 32 && same; ++y)
              for (int x = 0; x < 32 && same; ++x) {
                const int yy = y + dy, xx = (flip ? 31 - x : x) + dx;
                const float v = (yy >= 0 && yy < 32 && xx >= 0 && xx < 32) ? in[((b * 3 + c) * 32 + yy) * 32 + xx] : 0.0f;
                same = o[((b * 3 + c) * 32 + y) * 32 + x] == (v - mean[c]) / sd[c];
              }
          if (same) {
            ++matches;
            flips += flip;
          }
        }
    CHECK(matches >= 1);
  }
  CHECK(flips > 0);
  CHECK(flips < ts.size());
  at::Tensor test = ds->test_task(0).x;
  CHECK(at::allclose(ds->test_input(test)[0][1], (test[0][1] - mean[1]) / sd[1]));
  fs::remove_all(dir);
}

TEST_CASE("--model_config best: the table's values, below the command line, above checkpoint args") {
  auto resolve = [](std::map<std::string, std::string> v, const ckpt::Value* ck = nullptr) {
    ParsedCli cli;
    cli.values = std::move(v);
    return resolve_options(cli, ck);
  };
  // The DER paper's seq-mnist derpp pick at buffer 200 (Mammoth's utils/best_args.py).
  Options o = resolve({{"model_config", "best"}, {"model", "derpp"}, {"dataset", "seq-mnist"}, {"buffer_size", "200"}});
  CHECK(o.lr == 0.03);
  CHECK(o.batch_size == 10);
  CHECK(o.n_epochs == 1);
  CHECK(o.minibatch_size == 128);
  CHECK(o.alpha == 0.2);
  CHECK(o.beta == 1.0);
  CHECK(o.model_config == "best");

  // --load_best_args is the same; what the command line gives wins.
  o = resolve({{"load_best_args", "1"}, {"model", "derpp"}, {"dataset", "seq-mnist"}, {"buffer_size", "200"}, {"lr", "0.05"}});
  CHECK(o.model_config == "best");
  CHECK(o.lr == 0.05);
  CHECK(o.minibatch_size == 128);

  // Checkpoint args rank below the table.
  ckpt::Document doc;
  ckpt::Value* ck = doc.dict();
  ck->set("lr", doc.floating(0.5));
  ck->set("model", doc.str("der"));
  ck->set("buffer_size", doc.integer(500));
  o = resolve({{"model_config", "best"}, {"dataset", "seq-mnist"}}, ck);
  CHECK(o.model == "der");
  CHECK(o.lr == 0.03);
  CHECK(o.minibatch_size == 128);
  CHECK(o.alpha == 1.0);

  // Methods without a buffer, other datasets, ckpt-train's own Fashion-MNIST picks.
  o = resolve({{"model_config", "best"}, {"dataset", "seq-cifar10"}});
  CHECK(o.lr == 0.1);
  CHECK(o.batch_size == 32);
  CHECK(o.n_epochs == 50);
  o = resolve({{"model_config", "best"}, {"dataset", "rot-mnist"}, {"model", "derpp"}, {"buffer_size", "500"}});
  CHECK((o.lr == 0.2 && o.batch_size == 128 && o.minibatch_size == 128 && o.alpha == 0.5 && o.beta == 1.0));
  o = resolve({{"model_config", "best"}, {"model", "derpp"}, {"buffer_size", "200"}});
  CHECK(o.dataset == "seq-fashion-mnist");
  CHECK((o.lr == 0.01 && o.minibatch_size == 128 && o.alpha == 1.0 && o.beta == 0.5));

  // Without it, nothing is filled in: --lr stays required.
  CHECK_THROWS_WITH_AS(resolve({{"model", "sgd"}}), doctest::Contains("--lr is required"), UsageError);
  // What the table lacks is an error that says what it has.
  CHECK_THROWS_WITH_AS(resolve({{"model_config", "best"}, {"model", "der"}, {"dataset", "seq-mnist"}}),
                       doctest::Contains("needs --buffer_size"), UsageError);
  CHECK_THROWS_WITH_AS(resolve({{"model_config", "best"}, {"model", "der"}, {"dataset", "seq-mnist"}, {"buffer_size", "300"}}),
                       doctest::Contains("(they exist for 200, 500, 5120)"), UsageError);
  CHECK_THROWS_WITH_AS(resolve({{"model_config", "best"}, {"model", "er"}, {"buffer_size", "5120"}}),
                       doctest::Contains("(they exist for 200, 500)"), UsageError);
  CHECK_THROWS_WITH_AS(resolve({{"model_config", "tuned"}}), doctest::Contains("default or best"), UsageError);
}
