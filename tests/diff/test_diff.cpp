// Unit tests of ckpt-diff's comparison core (tools/diff): element semantics,
// tolerances, metrics, streaming over strided views, key matching.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "ckpt/error.hpp"
#include "ckpt/value.hpp"
#include "diff/compare.hpp"
#include "diff/report.hpp"
#include "diff/sections.hpp"
#include "diff/tensors.hpp"

using namespace ckpt;
using namespace ckpt::tools::diff;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

Metrics cmp(std::vector<double> a, std::vector<double> b, Tolerance tol = {1.3e-6, 1e-5}) {
  Metrics m;
  compare_values(a, b, 1, tol, 0, m);
  return m;
}

template <class T>
Tensor tensor_of(DType dt, std::vector<int64_t> shape, const std::vector<T>& v) {
  std::vector<uint8_t> bytes(v.size() * sizeof(T));
  std::memcpy(bytes.data(), v.data(), bytes.size());
  return Tensor::from_bytes(dt, std::move(shape), std::move(bytes));
}

Tensor f32(std::vector<int64_t> shape, const std::vector<float>& v) { return tensor_of(DType::float32, shape, v); }

Pair pair_of(const char* key, const Tensor& a, const Tensor& b) {
  Pair p;
  p.key = p.key_a = p.key_b = key;
  p.a = &a;
  p.b = &b;
  return p;
}

}  // namespace

TEST_CASE("default tolerances are torch.testing.assert_close's") {
  CHECK(default_tolerance(DType::float32).rtol == 1.3e-6);
  CHECK(default_tolerance(DType::float32).atol == 1e-5);
  CHECK(default_tolerance(DType::float16).rtol == 1e-3);
  CHECK(default_tolerance(DType::bfloat16).rtol == 1.6e-2);
  CHECK(default_tolerance(DType::float64).atol == 1e-7);
  CHECK(default_tolerance(DType::complex64).rtol == 1.3e-6);
  CHECK(default_tolerance(DType::complex32).rtol == 1e-3);
  for (DType t : {DType::int64, DType::uint8, DType::bool_, DType::float8_e4m3fn, DType::float8_e5m2}) {
    CHECK(default_tolerance(t).rtol == 0);
    CHECK(default_tolerance(t).atol == 0);
  }
  TolerancePolicy p;
  // A dtype change takes the looser of the two, as default_tolerances(a, b) does.
  CHECK(p.for_dtypes(DType::float32, DType::bfloat16).rtol == 1.6e-2);
  p.rtol = 0.5;
  CHECK(p.for_dtypes(DType::int64, DType::int64).rtol == 0.5);
  CHECK(p.for_dtypes(DType::int64, DType::int64).atol == 0);
}

TEST_CASE("element semantics: NaN, Inf, signed zeros") {
  SUBCASE("identical bits match, even NaN") {
    Metrics m = cmp({1, kNaN}, {1, kNaN});
    CHECK(m.differing == 0);
    CHECK(m.mismatched == 0);
    CHECK(m.bit_identical());
    CHECK(m.nonfinite_a == 1);
  }
  SUBCASE("NaN against a number never matches") {
    Metrics m = cmp({kNaN}, {2.0});
    CHECK(m.mismatched == 1);
    CHECK(m.nan_pairs == 1);
    CHECK(m.max_abs == 0);  // NaN pairs stay out of the distance metrics
  }
  SUBCASE("two NaN payloads: a mismatch unless equal_nan") {
    double n1 = std::bit_cast<double>(0x7ff8000000000000ull), n2 = std::bit_cast<double>(0x7ff8000000000001ull);
    CHECK(cmp({n1}, {n2}).mismatched == 1);
    CHECK(cmp({n1}, {n2}, {0, 0, true}).mismatched == 0);
    CHECK(cmp({n1}, {n2}, {0, 0, true}).differing == 1);
  }
  SUBCASE("equal infinities match, opposite ones do not") {
    CHECK(cmp({kInf}, {kInf}).mismatched == 0);
    Metrics m = cmp({kInf}, {-kInf});
    CHECK(m.mismatched == 1);
    CHECK(std::isinf(m.max_abs));
  }
  SUBCASE("infinity against a finite value is infinitely far") {
    Metrics m = cmp({kInf}, {3e38}, {1, 1});  // even a huge rtol: torch requires a finite error
    CHECK(m.mismatched == 1);
  }
  SUBCASE("-0.0 and 0.0: equal values, different bits") {
    Metrics m = cmp({0.0, -0.0}, {-0.0, 0.0}, {0, 0});
    CHECK(m.differing == 2);
    CHECK(m.mismatched == 0);
    CHECK(m.max_abs == 0);
  }
}

TEST_CASE("tolerance is |b - a| <= atol + rtol * |a|, A the reference") {
  CHECK(cmp({100.0}, {100.1}, {1e-3, 0}).mismatched == 0);   // 0.1 <= 0.1
  CHECK(cmp({100.1}, {100.0}, {1e-3, 0}).mismatched == 0);   // 0.1 <= 0.1001
  CHECK(cmp({100.0}, {100.2}, {1e-3, 0}).mismatched == 1);
  CHECK(cmp({0.0}, {5e-6}).mismatched == 0);                 // atol 1e-5
  CHECK(cmp({0.0}, {2e-5}).mismatched == 1);
  // Reference asymmetry: rtol scales |a|, not |b|.
  CHECK(cmp({1.0}, {3.0}, {1.5, 0}).mismatched == 1);        // 2 > 1.5
  CHECK(cmp({3.0}, {1.0}, {1.5, 0}).mismatched == 0);        // 2 <= 4.5
}

TEST_CASE("metrics: norms, relative change, cosine, max and its index") {
  Metrics m = cmp({3, 4, 0}, {3, 4, 12});
  CHECK(m.norm_a() == doctest::Approx(5));
  CHECK(m.norm_b() == doctest::Approx(13));
  CHECK(m.l2() == doctest::Approx(12));
  CHECK(m.rel_change() == doctest::Approx(12.0 / 5));
  CHECK(m.cosine() == doctest::Approx(25.0 / 65));
  CHECK(m.max_abs == 12);
  CHECK(m.max_abs_at == 2);
  CHECK(m.mean_abs() == doctest::Approx(4));

  SUBCASE("the first greatest difference wins") {
    Metrics t = cmp({0, 0, 0}, {1, -1, 1});
    CHECK(t.max_abs_at == 0);
  }
  SUBCASE("zero reference") {
    Metrics z = cmp({0, 0}, {1, 0});
    CHECK(std::isinf(z.rel_change()));
    CHECK(std::isnan(z.cosine()));
    CHECK(cmp({0, 0}, {0, 0}).rel_change() == 0);
  }
  SUBCASE("identical tensors have cosine 1") { CHECK(cmp({1, 2}, {1, 2}).cosine() == 1); }
  SUBCASE("opposite tensors have cosine -1 and relative change 2") {
    Metrics o = cmp({1, 2}, {-1, -2});
    CHECK(o.cosine() == doctest::Approx(-1));
    CHECK(o.rel_change() == doctest::Approx(2));
  }
  SUBCASE("merging chunks equals one pass") {
    Metrics whole = cmp({1, 2, 3, 4}, {1, 2.5, 3, 5});
    Metrics part;
    compare_values(std::vector<double>{1, 2}, std::vector<double>{1, 2.5}, 1, {0, 0}, 0, part);
    compare_values(std::vector<double>{3, 4}, std::vector<double>{3, 5}, 1, {0, 0}, 2, part);
    CHECK(part.sum_d2 == whole.sum_d2);
    CHECK(part.max_abs_at == 3);
    CHECK(part.differing == 2);
  }
}

TEST_CASE("complex elements compare by modulus") {
  Metrics m;
  // (1+1j) vs (1+1.5j): |d| = 0.5; tolerance atol + rtol*|a| = 0 + 0.4*sqrt(2) = 0.566
  compare_values(std::vector<double>{1, 1}, std::vector<double>{1, 1.5}, 2, {0.4, 0}, 0, m);
  CHECK(m.elements == 1);
  CHECK(m.mismatched == 0);
  CHECK(m.max_abs == doctest::Approx(0.5));
  Metrics n;
  compare_values(std::vector<double>{1, 1}, std::vector<double>{1, 1.5}, 2, {0.3, 0}, 0, n);
  CHECK(n.mismatched == 1);
}

TEST_CASE("compare_tensors: strided views, dtypes, and raw-byte identity") {
  // A 3x4 matrix and its transpose as a strided view.
  std::vector<float> v(12);
  for (int i = 0; i < 12; ++i) v[i] = static_cast<float>(i);
  Tensor base = f32({3, 4}, v);
  Tensor view = base;
  view.shape = {4, 3};
  view.stride = {1, 4};
  std::vector<float> tv(12);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 3; ++c) tv[r * 3 + c] = v[c * 4 + r];
  Tensor contiguous = f32({4, 3}, tv);
  Metrics m = compare_tensors(view, contiguous, 12, {0, 0});
  CHECK(m.bit_identical());
  CHECK(m.sum_a2 == doctest::Approx(506));

  SUBCASE("int64 beyond 2^53: raw bytes decide, not doubles") {
    Tensor a = tensor_of<int64_t>(DType::int64, {1}, {int64_t{1} << 53});
    Tensor b = tensor_of<int64_t>(DType::int64, {1}, {(int64_t{1} << 53) + 1});
    Metrics x = compare_tensors(a, b, 1, {0, 0});
    CHECK(x.differing == 1);
  }
  SUBCASE("float16 decoded in C++") {
    Tensor a = tensor_of<uint16_t>(DType::float16, {2}, {0x3c00, 0x4000});  // 1, 2
    Tensor b = tensor_of<uint16_t>(DType::float16, {2}, {0x3c01, 0x4000});  // 1.0009765625, 2
    Metrics x = compare_tensors(a, b, 2, default_tolerance(DType::float16));
    CHECK(x.max_abs == doctest::Approx(0.0009765625));
    CHECK(x.mismatched == 0);
  }
  SUBCASE("bfloat16") {
    Tensor a = tensor_of<uint16_t>(DType::bfloat16, {1}, {0x3f80});  // 1
    Tensor b = tensor_of<uint16_t>(DType::bfloat16, {1}, {0x3f84});  // 1.03125
    CHECK(compare_tensors(a, b, 1, default_tolerance(DType::bfloat16)).mismatched == 1);
  }
  SUBCASE("float8: decoded in C++, compared exactly (torch has no float8 tolerance)") {
    Tensor a = tensor_of<uint8_t>(DType::float8_e4m3fn, {3}, {0x38, 0x40, 0x80});  // 1, 2, -0
    Tensor b = tensor_of<uint8_t>(DType::float8_e4m3fn, {3}, {0x39, 0x40, 0x00});  // 1.125, 2, 0
    Metrics x = compare_tensors(a, b, 3, default_tolerance(DType::float8_e4m3fn));
    CHECK(x.max_abs == 0.125);
    CHECK(x.mismatched == 1);  // -0 vs 0 matches
    CHECK(x.differing == 2);
    Tensor e = tensor_of<uint8_t>(DType::float8_e5m2, {1}, {0x3c});  // 1.0
    CHECK(compare_tensors(e, e, 1, {}).bit_identical());
  }
  SUBCASE("complex against real is refused") {
    Tensor c = tensor_of<float>(DType::complex64, {1}, {1, 2});
    CHECK_THROWS_AS(compare_tensors(c, f32({1}, {1}), 1, {}), ckpt::Error);
  }
  SUBCASE("many chunks") {
    std::vector<float> big(100'000), other(100'000);
    for (size_t i = 0; i < big.size(); ++i) big[i] = other[i] = static_cast<float>(i % 97);
    other[77'777] += 1;
    Metrics x = compare_tensors(f32({100'000}, big), f32({100'000}, other), 100'000, {0, 0});
    CHECK(x.differing == 1);
    CHECK(x.max_abs_at == 77'777);
  }
}

TEST_CASE("changed rows: contiguous and strided") {
  Tensor a = f32({3, 2}, {1, 2, 3, 4, 5, 6});
  Tensor b = f32({3, 2}, {1, 2, 3, 9, 5, 6});
  std::vector<uint64_t> rows;
  for_each_changed_row(a, b, [&](uint64_t r) { rows.push_back(r); });
  CHECK(rows == std::vector<uint64_t>{1});
  // The transposes as strided views: column 1 of the originals differs in row 1 only.
  Tensor at = a, bt = b;
  at.shape = bt.shape = {2, 3};
  at.stride = bt.stride = {1, 2};
  rows.clear();
  for_each_changed_row(at, bt, [&](uint64_t r) { rows.push_back(r); });
  CHECK(rows == std::vector<uint64_t>{1});
  Tensor labels_a = tensor_of<int64_t>(DType::int64, {4}, {0, 1, 2, 3});
  Tensor labels_b = tensor_of<int64_t>(DType::int64, {4}, {0, 7, 2, 8});
  rows.clear();
  for_each_changed_row(labels_a, labels_b, [&](uint64_t r) { rows.push_back(r); });
  CHECK(rows == std::vector<uint64_t>{1, 3});
  CHECK_THROWS_AS(for_each_changed_row(a, labels_a, [](uint64_t) {}), ckpt::Error);
}

TEST_CASE("compare_pair: shapes, growth, dtype changes, scalars") {
  Tensor a = f32({2, 2}, {1, 2, 3, 4});
  Tensor grown = f32({3, 2}, {1, 2, 3, 4, 5, 6});
  TolerancePolicy p;
  TensorResult r = compare_pair(pair_of("head.weight", a, grown), p);
  CHECK(r.status == Status::grown);
  CHECK(r.verdict == Verdict::identical);  // the old rows
  CHECK(r.differs());
  CHECK(r.m.elements == 4);
  CHECK(r.rows_b() - r.rows_a() == 1);

  Tensor shrunk = f32({1, 2}, {1, 2});
  CHECK(compare_pair(pair_of("k", a, shrunk), p).status == Status::shape_changed);
  Tensor other_cols = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(compare_pair(pair_of("k", a, other_cols), p).status == Status::shape_changed);

  Tensor d = tensor_of<double>(DType::float64, {2, 2}, {1, 2, 3, 4});
  TensorResult dr = compare_pair(pair_of("k", a, d), p);
  CHECK(dr.dtype_changed());
  CHECK(dr.verdict == Verdict::identical);  // the same values
  CHECK(dr.differs());

  Tensor s1 = tensor_of<int64_t>(DType::int64, {}, {938});
  Tensor s2 = tensor_of<int64_t>(DType::int64, {}, {1876});
  TensorResult sr = compare_pair(pair_of("bn.num_batches_tracked", s1, s2), p);
  CHECK(sr.verdict == Verdict::changed);
  REQUIRE(sr.value_a);
  CHECK(*sr.value_a == 938);
  CHECK(*sr.value_b == 1876);
}

TEST_CASE("categories") {
  CHECK(classify("net.bn1.running_mean", DType::float32) == Category::bn_stat);
  CHECK(classify("net.bn1.running_var", DType::float16) == Category::bn_stat);
  CHECK(classify("net.bn1.num_batches_tracked", DType::int64) == Category::int_buffer);
  CHECK(classify("mask", DType::bool_) == Category::int_buffer);
  CHECK(classify("net.bn1.weight", DType::float32) == Category::parameter);
  CHECK(classify("net.my_running_mean_proj.weight", DType::float32) == Category::parameter);
  CHECK(module_of("net.layer1.0.conv1.weight") == "net.layer1.0.conv1");
  CHECK(module_of("bias") == "bias");
}

namespace {
std::vector<Named> names(std::initializer_list<const char*> keys, const Tensor* t) {
  std::vector<Named> out;
  for (const char* k : keys) out.push_back(Named{k, k, t});
  return out;
}
}  // namespace

TEST_CASE("--strip-prefix") {
  Tensor t = f32({1}, {1});
  SUBCASE("auto: DataParallel against plain, by whole components") {
    auto a = names({"net.fc.weight", "net.submodule.bias"}, &t);
    auto b = names({"net.module.fc.weight", "net.module.submodule.bias"}, &t);
    auto notes = strip({&a, &b}, StripSpec::parse("auto"));
    CHECK(b[0].key == "net.fc.weight");
    CHECK(b[1].key == "net.submodule.bias");  // "submodule" is not "module"
    CHECK(notes[0].keys == 0);
    CHECK(notes[1].keys == 2);
    CHECK(notes[1].removed == "module.");
  }
  SUBCASE("auto: a Mammoth model against a plain backbone") {
    auto a = names({"net.fc.weight", "net.fc.bias"}, &t);
    auto b = names({"module.fc.weight", "module.fc.bias"}, &t);
    auto notes = strip({&a, &b}, StripSpec::parse("auto"));
    CHECK(a[0].key == "fc.weight");
    CHECK(b[0].key == "fc.weight");
    CHECK(notes[0].removed == "net.");
  }
  SUBCASE("auto keeps net. when both sides have it") {
    auto a = names({"net.fc.weight"}, &t);
    auto b = names({"net.fc.weight"}, &t);
    strip({&a, &b}, StripSpec::parse("auto"));
    CHECK(a[0].key == "net.fc.weight");
  }
  SUBCASE("a literal prefix, only as whole leading components") {
    auto a = names({"model.fc.weight", "modelx.fc.weight"}, &t);
    strip({&a}, StripSpec::parse("model"));
    CHECK(a[0].key == "fc.weight");
    CHECK(a[1].key == "modelx.fc.weight");
  }
  SUBCASE("collisions are refused") {
    auto a = names({"module.fc.weight", "fc.weight"}, &t);
    CHECK_THROWS_AS(strip({&a}, StripSpec::parse("auto")), ckpt::Error);
  }
  SUBCASE("the hint counts keys auto would pair up") {
    auto a = names({"fc.weight", "fc.bias"}, &t);
    auto b = names({"module.fc.weight", "module.fc.bias"}, &t);
    CHECK(auto_strip_gain(a, b) == 2);
  }
}

TEST_CASE("matching folds aliases and keeps keys found on one side") {
  Tensor w = f32({2}, {1, 2});
  Tensor w2 = f32({2}, {1, 3});
  std::vector<Named> a{{"fc1.weight", "fc1.weight", &w}, {"_features.0.weight", "_features.0.weight", &w},
                       {"gone", "gone", &w}};
  std::vector<Named> b{{"fc1.weight", "fc1.weight", &w2}, {"_features.0.weight", "_features.0.weight", &w2},
                       {"new", "new", &w2}};
  Matching m = match(a, b);
  REQUIRE(m.pairs.size() == 1);
  CHECK(m.pairs[0].aliases == std::vector<std::string>{"_features.0.weight"});
  CHECK(m.only_a.size() == 1);
  CHECK(m.only_b.size() == 1);
  CHECK(m.only_b[0].key == "new");
}

TEST_CASE("sections") {
  CHECK(parse_sections("model,args") == (sec_model | sec_args));
  CHECK(parse_sections("all") == sec_all);
  CHECK_THROWS_AS(parse_sections("modle"), ckpt::Error);

  Document doc;
  Value* a = doc.dict();
  a->set("lr", 0.03)->set("seed", 1)->set("gone", true);
  Value* b = doc.dict();
  b->set("lr", 0.1)->set("seed", 1)->set("new", "x");
  ConfigDiff d = diff_config(a, b);
  CHECK(d.equal == 1);
  REQUIRE(d.entries.size() == 3);
  CHECK(d.entries[0].key == "lr");
  CHECK(d.entries[0].kind == ConfigEntry::Kind::changed);
  CHECK(d.entries[1].kind == ConfigEntry::Kind::only_a);
  CHECK(d.entries[2].kind == ConfigEntry::Kind::only_b);
  CHECK(!diff_config(a, a).differs());
  CHECK(diff_config(a, nullptr).differs());

  SUBCASE("Mammoth results: numbers or numeric strings") {
    Value* r = doc.list();
    Value* m1 = doc.list({doc.list({doc.floating(97.5)}), doc.list({doc.floating(90), doc.str("95.25")})});
    Value* m2 = doc.list({doc.list({doc.floating(99)}), doc.list({doc.floating(98), doc.floating(99)})});
    r->append(m1)->append(m2)->append(doc.dict());
    Matrix c, t;
    const Value* logger = nullptr;
    REQUIRE(read_results(*r, c, t, &logger));
    CHECK(c[1][1] == 95.25);
    CHECK(logger != nullptr);
    CHECK(!read_results(*doc.list({doc.str("x")}), c, t, nullptr));
  }
}

TEST_CASE("label histogram") {
  Tensor labels = tensor_of<int64_t>(DType::int64, {5}, {0, 1, 1, 9, 1});
  std::map<int64_t, uint64_t> h;
  REQUIRE(histogram(labels, h));
  CHECK(h[1] == 3);
  CHECK(h[9] == 1);
  std::map<int64_t, uint64_t> g;
  CHECK(!histogram(f32({1}, {1}), g));
  std::map<int64_t, uint64_t> few;
  CHECK(!histogram(labels, few, 2));
}
