// Unit tests of ckpt-info's analysis (suite 'info'): statistics, optimizer and
// scheduler recognition, Mammoth results metrics, value-tree rendering of
// shared and cyclic structures, name filters.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include "ckpt/value.hpp"
#include "common/numeric.hpp"
#include "info/report.hpp"
#include "info/sections.hpp"
#include "info/tree.hpp"

using namespace ckpt;
using namespace ckpt::info;

namespace {

tools::TensorStats one_by_one(const std::vector<double>& v) {
  tools::TensorStats s;
  for (double x : v) s.add(x);
  s.finish();
  return s;
}

void same_stats(const tools::TensorStats& a, const tools::TensorStats& b) {
  CHECK(a.count == b.count);
  CHECK(a.finite == b.finite);
  CHECK(a.nan == b.nan);
  CHECK(a.posinf == b.posinf);
  CHECK(a.neginf == b.neginf);
  CHECK(a.zeros == b.zeros);
  if (a.finite) {
    CHECK(a.min == b.min);
    CHECK(a.max == b.max);
    CHECK(a.mean == doctest::Approx(b.mean).epsilon(1e-12));
  }
  if (a.finite > 1) CHECK(a.std == doctest::Approx(b.std).epsilon(1e-10));
}

Value* sgd_group(Document& d, std::initializer_list<int64_t> params) {
  Value* g = d.dict();
  g->set("lr", 0.1)->set("momentum", 0.0)->set("dampening", 0.0)->set("weight_decay", 0.0)->set("nesterov", false);
  Value* ps = d.list();
  for (int64_t p : params) ps->append(d.integer(p));
  return g->set("params", ps);
}

Value* list_of(Document& d, const std::vector<std::vector<double>>& m) {
  Value* outer = d.list();
  for (const auto& row : m) {
    Value* r = d.list();
    for (double v : row) r->append(d.floating(v));
    outer->append(r);
  }
  return outer;
}

}  // namespace

TEST_CASE("stats_of agrees with one value at a time, with NaN, Inf and zeros") {
  std::mt19937_64 rng(42);
  std::normal_distribution<double> dist(3.0, 2.0);
  for (size_t n : {0, 1, 2, 7, 1000, 65536}) {
    std::vector<double> v(n);
    for (auto& x : v) x = dist(rng);
    if (n > 5) {
      v[1] = std::numeric_limits<double>::quiet_NaN();
      v[2] = std::numeric_limits<double>::infinity();
      v[3] = -std::numeric_limits<double>::infinity();
      v[4] = 0.0;
    }
    auto fast = tools::stats_of(v);
    fast.finish();
    same_stats(fast, one_by_one(v));
  }
}

TEST_CASE("stats_of keeps the mean finite when the sum overflows") {
  std::vector<double> v{1e308, 1e308, -1e308, 5.0};
  auto s = tools::stats_of(v);
  s.finish();
  CHECK(s.mean == doctest::Approx(2.5e307));
  CHECK(s.min == -1e308);
  CHECK(s.max == 1e308);
  CHECK_FALSE(std::isnan(s.std));  // +inf: the spread does not fit a double's square
  std::vector<double> w{1.5e308, 1.5e308, 1.5e308};  // the sum overflows, the spread is 0
  auto t = tools::stats_of(w);
  t.finish();
  CHECK(t.mean == doctest::Approx(1.5e308));
  CHECK(t.std == 0.0);
}

TEST_CASE("ranged statistics merge to the whole tensor's") {
  std::vector<float> vals(100003);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-5, 5);
  for (auto& x : vals) x = u(rng);
  std::vector<uint8_t> bytes(vals.size() * 4);
  std::memcpy(bytes.data(), vals.data(), bytes.size());
  Tensor t = Tensor::from_bytes(DType::float32, {static_cast<int64_t>(vals.size())}, bytes);
  auto whole = tools::compute_stats(t);
  tools::TensorStats merged;
  for (uint64_t first = 0; first < vals.size(); first += 30000)
    merged.merge(tools::compute_stats(t, first, std::min<uint64_t>(30000, vals.size() - first)));
  merged.finish();
  same_stats(merged, whole);
}

TEST_CASE("optimizer kinds from param-group and state keys") {
  Document d;
  Value* opt = d.dict();
  Value* groups = d.list();
  groups->append(sgd_group(d, {0, 1}));
  opt->set("state", d.dict())->set("param_groups", groups);
  auto o = analyze_optimizer(*opt, nullptr);
  CHECK(o.kind == "SGD");
  CHECK(o.params == 2);
  CHECK(o.hyper_keys.size() == 5);

  Value* adam = d.dict();
  Value* ag = d.dict();
  ag->set("lr", 0.001)->set("betas", d.tuple({d.floating(0.9), d.floating(0.999)}))->set("eps", 1e-8);
  ag->set("weight_decay", 0.0)->set("amsgrad", false)->set("params", d.list({d.integer(0)}));
  adam->set("state", d.dict())->set("param_groups", d.list({ag}));
  CHECK(analyze_optimizer(*adam, nullptr).kind == "Adam or AdamW");
  ag->set("decoupled_weight_decay", true);
  CHECK(analyze_optimizer(*adam, nullptr).kind == "AdamW");

  Value* rms = d.dict();
  Value* rg = d.dict();
  rg->set("lr", 0.01)->set("alpha", 0.99)->set("centered", false)->set("params", d.list());
  rms->set("state", d.dict())->set("param_groups", d.list({rg}));
  CHECK(analyze_optimizer(*rms, nullptr).kind == "RMSprop");
}

TEST_CASE("scheduler kinds from state keys") {
  Document d;
  Value* ms = d.dict();
  ms->set("milestones", d.dict())->set("gamma", 0.1)->set("base_lrs", d.list());
  CHECK(scheduler_kind(*ms) == "MultiStepLR");
  Value* cos = d.dict();
  cos->set("T_max", 50)->set("eta_min", 0.0)->set("base_lrs", d.list());
  CHECK(scheduler_kind(*cos) == "CosineAnnealingLR");
  CHECK(scheduler_kind(*d.dict()) == "unknown");
}

TEST_CASE("results: Mammoth's BWT and forgetting, logger means given as str (quirk Q3)") {
  Document d;
  // After task 0: [90]; after 1: [70, 95]; after 2: [60, 80, 97].
  std::vector<std::vector<double>> cil{{90}, {70, 95}, {60, 80, 97}};
  std::vector<std::vector<double>> til{{99}, {98, 99}, {97, 98, 99}};
  Value* logger = d.dict();
  logger->set("accs", d.list({d.str("90.0"), d.str("82.5"), d.str("79.0")}));
  logger->set("bwt", d.none());
  Value* res = d.list({list_of(d, cil), list_of(d, til), logger});
  auto r = analyze_results(*res);
  REQUIRE(r.parsed);
  CHECK(r.task_il_measured);
  // BWT = mean(60-90, 80-95) = -22.5; forgetting = mean(90-60, 95-80) = 22.5
  REQUIRE(r.bwt);
  CHECK(*r.bwt == doctest::Approx(-22.5));
  CHECK(*r.forgetting == doctest::Approx(22.5));
  CHECK(*r.bwt_task_il == doctest::Approx(-1.5));
  CHECK(r.logger_accs == std::vector<double>{90.0, 82.5, 79.0});
  CHECK(r.logger_metrics.empty());  // bwt is None

  Value* domain = d.list({list_of(d, cil), list_of(d, {{0}, {0, 0}, {0, 0, 0}})});
  auto dr = analyze_results(*domain);
  CHECK(dr.parsed);
  CHECK_FALSE(dr.task_il_measured);
  CHECK_FALSE(dr.bwt_task_il);

  CHECK_FALSE(analyze_results(*d.list({d.str("x"), d.str("y")})).parsed);
}

TEST_CASE("number_of reads floats, ints and float strings only") {
  Document d;
  CHECK(*number_of(*d.floating(1.5)) == 1.5);
  CHECK(*number_of(*d.integer(3)) == 3.0);
  CHECK(*number_of(*d.str("98.55000000000001")) == doctest::Approx(98.55));
  CHECK_FALSE(number_of(*d.str("98.5%")));
  CHECK_FALSE(number_of(*d.none()));
}

TEST_CASE("the tree shows a shared container once: a 40-level DAG stays linear") {
  Document d;
  Value* v = d.list({d.integer(1)});
  for (int i = 0; i < 40; ++i) v = d.list({v, v});  // 2^40 paths
  TreeLimits lim;
  lim.max_lines = 0;
  lim.max_children = 0;
  std::string out = render_tree(*v, "(root)", lim, tools::Style(false));
  size_t lines = std::count(out.begin(), out.end(), '\n');
  CHECK(lines < 100);
  CHECK(out.find("same as") != std::string::npos);
  auto j = tree_json(*v, "", nullptr);
  CHECK(j.dump().size() < 10000);
}

TEST_CASE("a cycle ends in 'same as', and control characters are escaped") {
  Document d;
  Value* a = d.dict();
  a->set("self", a);
  a->set("evil\x1b[2J", d.str("bell\x07"));
  std::string out = render_tree(*a, "(root)", TreeLimits{}, tools::Style(false));
  CHECK(out.find("same as (root)") != std::string::npos);
  CHECK(out.find('\x1b') == std::string::npos);
  CHECK(out.find('\x07') == std::string::npos);
  CHECK(out.find("evil\\x1b[2J") != std::string::npos);
}

TEST_CASE("non-finite floats become null with their key path listed") {
  Document d;
  Value* a = d.dict();
  a->set("lr", std::numeric_limits<double>::quiet_NaN());
  a->set("ok", 0.5);
  std::vector<std::string> nonfinite;
  auto j = tree_json(*a, "args", &nonfinite);
  CHECK(j["lr"].is_null());
  CHECK(j["ok"] == 0.5);
  REQUIRE(nonfinite.size() == 1);
  CHECK(nonfinite[0] == "args/lr");
}

TEST_CASE("--filter globs match the name, the key path, or the name without its wrapper prefix") {
  Options opt;
  Prefixes p;
  p.leading = "net.";
  Row r;
  r.name = "net.layer1.0.conv1.weight";
  r.path = "model/net.layer1.0.conv1.weight";
  CHECK(selected(opt, r, p));
  opt.filters = {"layer1.*"};
  CHECK(selected(opt, r, p));
  opt.filters = {"model/*conv1*"};
  CHECK(selected(opt, r, p));
  opt.filters = {"layer2.*", "*.bias"};
  CHECK_FALSE(selected(opt, r, p));
}
