// Unit tests of tools/common: what all three tools rely on.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "ckpt/error.hpp"
#include "common/cli.hpp"
#include "common/json.hpp"
#include "common/keys.hpp"
#include "common/numeric.hpp"
#include "common/schema.hpp"
#include "common/term.hpp"

using namespace ckpt;
using namespace ckpt::tools;

namespace {
std::vector<std::string> patterns(const std::vector<std::string>& names, const std::vector<std::string>& sig = {}) {
  std::vector<std::string> out;
  for (auto& f : fold_names(names, sig)) out.push_back(f.pattern);
  return out;
}

Tensor f32_tensor(std::vector<float> v, std::vector<int64_t> shape) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return Tensor::from_bytes(DType::float32, std::move(shape), std::move(b));
}
}  // namespace

TEST_CASE("fold_names folds numeric components into sets, innermost first") {
  std::vector<std::string> n = {"layer1.0.conv1.weight", "layer1.0.conv2.weight", "layer1.1.conv1.weight",
                                "layer1.1.conv2.weight", "fc.weight"};
  CHECK(patterns(n) == std::vector<std::string>{"layer1.{0,1}.conv{1,2}.weight", "fc.weight"});
  // A signature keeps tensors of different shapes apart.
  std::vector<std::string> sig = {"a", "b", "a", "b", "c"};
  CHECK(patterns(n, sig) ==
        std::vector<std::string>{"layer1.{0,1}.conv1.weight", "layer1.{0,1}.conv2.weight", "fc.weight"});
  // Long runs become '#'.
  std::vector<std::string> many;
  for (int i = 0; i < 12; ++i) many.push_back("layers." + std::to_string(i) + ".attn.weight");
  auto f = fold_names(many);
  REQUIRE(f.size() == 1);
  CHECK(f[0].pattern == "layers.#.attn.weight");
  CHECK(f[0].members.size() == 12);
  // Names that are not a full product are not over-claimed.
  CHECK(patterns({"a.0.x", "a.1.x", "a.0.y"}) == std::vector<std::string>{"a.{0,1}.x", "a.0.y"});
  CHECK(patterns({"a.0", "a.0"}) == std::vector<std::string>{"a.0", "a.0"});
}

TEST_CASE("wrapper prefixes are whole components") {
  CHECK(strip_wrappers("module.fc.weight") == "fc.weight");
  CHECK(strip_wrappers("net.module._orig_mod.fc.weight") == "net.fc.weight");
  CHECK(strip_wrappers("submodule.fc.weight") == "submodule.fc.weight");
  CHECK(strip_wrappers("fc.module") == "fc.module");  // a leaf named module stays
  CHECK(strip_leading("net.fc1.weight", "net.").value() == "fc1.weight");
  CHECK(strip_leading("network.fc1", "net.") == std::nullopt);
  std::vector<std::string> keys = {"net.module.fc.weight", "net.module.fc.bias"};
  auto r = detect_wrappers(keys);
  CHECK(r.with_module == 2);
  CHECK(r.common_prefix == "net.module.");
  std::vector<std::string> plain = {"fc.weight", "module_list.0.weight"};
  CHECK_FALSE(detect_wrappers(plain).any());
}

TEST_CASE("rename rules") {
  std::vector<RenameRule> rules = {RenameRule::parse("backbone.=net."), RenameRule::parse("head=classifier")};
  CHECK(apply_renames("backbone.fc.weight", rules) == "net.fc.weight");
  CHECK(apply_renames("head.weight", rules) == "classifier.weight");
  CHECK(apply_renames("header.weight", rules) == "header.weight");
  CHECK_THROWS_AS(RenameRule::parse("nonsense"), Error);
}

TEST_CASE("half and bfloat16 conversions round to nearest even") {
  CHECK(half_to_float(0x3c00) == 1.0f);
  CHECK(half_to_float(0x0001) == std::ldexp(1.0f, -24));
  CHECK(std::isinf(half_to_float(0x7c00)));
  CHECK(float_to_half(1.0f) == 0x3c00);
  CHECK(float_to_half(65504.0f) == 0x7bff);
  CHECK(float_to_half(65520.0f) == 0x7c00);
  CHECK(float_to_half(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie -> even
  CHECK(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);  // tie -> even (up)
  CHECK(float_to_half(std::ldexp(1.0f, -25)) == 0x0000);  // tie at the smallest subnormal -> 0
  CHECK(float_to_half(std::ldexp(3.0f, -26)) == 0x0001);
  CHECK((float_to_half(std::nanf("")) & 0x7c00) == 0x7c00);
  CHECK(float_to_bf16(1.0f) == 0x3f80);
  CHECK(float_to_bf16(std::bit_cast<float>(0x3f808000u)) == 0x3f80);  // tie -> even
  CHECK(float_to_bf16(std::bit_cast<float>(0x3f818000u)) == 0x3f82);
  CHECK(bf16_to_float(0x3f80) == 1.0f);
  // Every half round-trips through float.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = half_to_float(static_cast<uint16_t>(h));
    if (!std::isnan(f)) REQUIRE(float_to_half(f) == h);
  }
}

TEST_CASE("float8 decoding") {
  CHECK(float8_to_double(0x38, DType::float8_e4m3fn) == 1.0);
  CHECK(float8_to_double(0x7e, DType::float8_e4m3fn) == 448.0);
  CHECK(std::isnan(float8_to_double(0x7f, DType::float8_e4m3fn)));
  CHECK(float8_to_double(0x3c, DType::float8_e5m2) == 1.0);
  CHECK(std::isnan(float8_to_double(0x80, DType::float8_e4m3fnuz)));
  CHECK(float8_to_double(0x7f, DType::float8_e8m0fnu) == 1.0);
}

TEST_CASE("read_doubles honours strides, offsets and byte order") {
  Tensor t = f32_tensor({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor tr = t;  // transposed view: shape [3,2], strides [1,3]
  tr.shape = {3, 2};
  tr.stride = {1, 3};
  std::vector<double> out(6);
  read_doubles(tr, 0, 6, out.data());
  CHECK(out == std::vector<double>{0, 3, 1, 4, 2, 5});
  read_doubles(tr, 3, 2, out.data());
  CHECK(out[0] == 4);
  CHECK(out[1] == 2);
  Tensor off = t;
  off.shape = {2};
  off.stride = {2};
  off.storage_offset = 1;
  read_doubles(off, 0, 2, out.data());
  CHECK(out[0] == 1);
  CHECK(out[1] == 3);
  // Big-endian storage.
  std::vector<uint8_t> be = {0x3f, 0x80, 0, 0, 0x40, 0, 0, 0};
  auto st = Storage::from_bytes(DType::float32, be);
  st->set_big_endian(true);
  Tensor b;
  b.dtype = DType::float32;
  b.shape = {2};
  b.stride = {1};
  b.storage = st;
  read_doubles(b, 0, 2, out.data());
  CHECK(out[0] == 1.0);
  CHECK(out[1] == 2.0);
  CHECK_THROWS_AS(read_doubles(t, 5, 2, out.data()), Error);
}

TEST_CASE("stats count NaN/Inf/zero apart and use the sample std") {
  Tensor t = f32_tensor({1, 2, 3, 4, 0, NAN, INFINITY, -INFINITY}, {8});
  auto s = compute_stats(t);
  CHECK(s.count == 8);
  CHECK(s.finite == 5);
  CHECK(s.nan == 1);
  CHECK(s.posinf == 1);
  CHECK(s.neginf == 1);
  CHECK(s.zeros == 1);
  CHECK(s.min == 0);
  CHECK(s.max == 4);
  CHECK(s.mean == doctest::Approx(2.0));
  CHECK(s.std == doctest::Approx(std::sqrt(2.5)));
  // Merging chunked partial results equals one pass.
  TensorStats a, b, whole;
  for (int i = 0; i < 1000; ++i) ((i < 300) ? a : b).add(i * 0.5), whole.add(i * 0.5);
  a.merge(b);
  a.finish();
  whole.finish();
  CHECK(a.mean == doctest::Approx(whole.mean));
  CHECK(a.std == doctest::Approx(whole.std));
}

TEST_CASE("parallel_for runs every index once and rethrows") {
  std::vector<std::atomic<int>> hits(1000);
  parallel_for(hits.size(), [&](size_t i) { hits[i]++; }, 4);
  for (auto& h : hits) REQUIRE(h == 1);
  CHECK_THROWS(parallel_for(10, [](size_t i) { if (i == 7) throw std::runtime_error("x"); }, 3));
}

TEST_CASE("Mammoth file names, both variants") {
  auto n = parse_mammoth_name("/x/A_sgd_safe_task_sgd_seq-mnist_None_0_1_20261129-025403_e887441c_4.pt");
  REQUIRE(n);
  CHECK(n->current_variant);
  CHECK(n->ckpt_name == "A_sgd_safe_task");
  CHECK(n->model == "sgd");
  CHECK(n->dataset == "seq-mnist");
  CHECK(n->dataset_config == "None");
  CHECK(n->buffer_size == 0);
  CHECK(n->n_epochs == 1);
  CHECK(n->uid == "e887441c");
  CHECK(n->task_index() == 4);
  CHECK(format_mammoth_name(*n) == "A_sgd_safe_task_sgd_seq-mnist_None_0_1_20261129-025403_e887441c_4.pt");
  auto d = parse_mammoth_name("derpp_seq-cifar10_500_50_20240101-120000_joint.pt");
  REQUIRE(d);
  CHECK_FALSE(d->current_variant);
  CHECK(d->ckpt_name.empty());
  CHECK(d->buffer_size == 500);
  CHECK(d->task == "joint");
  CHECK_FALSE(d->task_index());
  CHECK(parse_mammoth_name("3f2b8c1e-1a2b-4c3d-8e9f-0123456789ab.pt")->paused);
  CHECK_FALSE(parse_mammoth_name("resnet50.pt"));
  CHECK_FALSE(parse_mammoth_name("a_b_c_d_e_f.pt"));
}

TEST_CASE("schema recognition") {
  Document doc;
  auto* sd = doc.ordered_dict();
  sd->set("net.fc.weight", doc.tensor(f32_tensor({1, 2}, {2})));
  CHECK(recognise(*sd).layout == Layout::state_dict);
  auto* root = doc.dict();
  root->set("model", sd);
  root->set("optimizer", doc.none());
  root->set("scheduler", doc.none());
  root->set("args", doc.dict());
  root->set("results", doc.list());
  root->set("trainer_state", doc.dict());
  auto s = recognise(*root);
  CHECK(s.layout == Layout::mammoth);
  CHECK(s.mode == "safe");
  CHECK(s.optimizer == nullptr);
  CHECK(s.has_scheduler_key);
  CHECK(s.extra_keys == std::vector<std::string>{"trainer_state"});
  auto* wrapped = doc.dict();
  wrapped->set("state_dict", sd);
  wrapped->set("epoch", 3);
  CHECK(recognise(*wrapped).layout == Layout::wrapped_state_dict);
  CHECK(recognise(*doc.list()).layout == Layout::other);
}

TEST_CASE("terminal helpers") {
  CHECK(human_bytes(12) == "12 B");
  CHECK(human_bytes(1536) == "1.50 KiB");
  CHECK(human_bytes(97'500'000) == "93.0 MiB");
  CHECK(grouped(11173962) == "11,173,962");
  CHECK(escape("a\nb\x1b[31m") == "a\\nb\\x1b[31m");
  CHECK(escape("caf\xc3\xa9") == "caf\xc3\xa9");
  CHECK(escape("\xff") == "\\xff");
  CHECK(escape("\xc2\x9b") == "\\u009b");
  CHECK(display_width("\x1b[1mab\x1b[0m\xc3\xa9") == 3);
  Style plain(false), color(true);
  CHECK(plain.red("x") == "x");
  CHECK(color.red("x") == "\x1b[31mx\x1b[0m");
  Table t({"name", "n"}, {Table::Align::left, Table::Align::right});
  t.add({"a", "1"});
  t.add({"long", "100"});
  CHECK(t.render(plain, 0) == "name    n\na       1\nlong  100\n");
  CHECK(format_double(0.1) == "0.1");
  CHECK(format_double(NAN) == "nan");
}

TEST_CASE("errors read as one line with advice and location") {
  Error e(ErrorCode::html_page, "starts with <!doctype html>", "model.pt");
  auto s = describe_error(e);
  CHECK(s.find("model.pt: this is an HTML page, not a checkpoint") == 0);
  CHECK(s.find("(html_page)") != std::string::npos);
  Error t(ErrorCode::invalid_tensor, "bad", "a.pt", "archive/data.pkl", 0x1a3, "model/fc.weight");
  CHECK(describe_error(t) == "a.pt: bad (at archive/data.pkl+0x1a3, key model/fc.weight; invalid_tensor)");
  Error nl(ErrorCode::io_error, "x\ny", "evil\x1b.pt");
  CHECK(describe_error(nl).find('\n') == std::string::npos);
  CHECK(describe_error(nl).find('\x1b') == std::string::npos);
}

TEST_CASE("JSON: NaN becomes null, tensors are described") {
  Document doc;
  auto* d = doc.dict();
  d->set("lr", 0.1);
  d->set("bad", std::nan(""));
  d->set("w", doc.tensor(f32_tensor({1}, {1})));
  auto j = to_json(*d);
  CHECK(j["lr"] == 0.1);
  CHECK(j["bad"].is_null());
  CHECK(j["w"]["tensor"]["dtype"] == "float32");
  CHECK(j.dump() == R"({"lr":0.1,"bad":null,"w":{"tensor":{"dtype":"float32","shape":[1]}}})");
}
