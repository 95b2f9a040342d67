// The writer: torch.save's exact zip layout, and read-back equality.
#include <doctest/doctest.h>

#include <algorithm>
#include <ckpt/ckpt.hpp>
#include <cmath>
#include <cstring>

#include "test_util.hpp"

using namespace ckpt;

namespace {

Tensor arange_f32(int64_t n) {
  std::vector<uint8_t> b(static_cast<size_t>(n) * 4);
  for (int64_t i = 0; i < n; ++i) {
    float f = static_cast<float>(i);
    std::memcpy(b.data() + i * 4, &f, 4);
  }
  return Tensor::from_bytes(DType::float32, {n}, std::move(b));
}

}  // namespace

TEST_CASE("save writes torch.save's record order, alignment and version") {
  testutil::TempDir dir;
  Document doc;
  Value* root = doc.dict();
  Tensor base = arange_f32(12);
  Tensor view = base;  // a transposed 3x4 view of the same storage
  view.shape = {4, 3};
  view.stride = {1, 4};
  root->set("a", doc.tensor(base));
  root->set("b", doc.tensor(view));
  root->set("c", doc.tensor(arange_f32(5)));
  root->set("lr", 0.03);
  save(dir / "my_ckpt.pt", *root, SaveOptions{{}, false});

  auto ck = Checkpoint::open(dir / "my_ckpt.pt");
  const ZipArchive* z = ck.zip();
  REQUIRE(z);
  CHECK(z->root() == "my_ckpt");
  std::vector<std::string> names;
  for (const auto& e : z->entries()) names.emplace_back(z->relative_name(e));
  CHECK(names == std::vector<std::string>{"data.pkl", ".format_version", ".storage_alignment", "byteorder", "data/0", "data/1",
                                          "version", ".data/serialization_id"});
  for (const auto& e : z->entries()) {
    CHECK(e.method == 0);
    CHECK(e.flags == 0x0808);
    if (z->relative_name(e).substr(0, 5) == "data/") CHECK(z->data_offset(e) % 64 == 0);
  }
  CHECK(z->has_zip64_end());
  CHECK(ck.format().version == "3");
  CHECK(ck.storages().size() == 2);  // the shared storage is written once
  ck.verify();
  auto ts = ck.tensors();
  REQUIRE(ts.size() == 3);
  CHECK(ts[0].tensor().storage == ts[1].tensor().storage);
  CHECK(ts[1].tensor().stride == std::vector<int64_t>{1, 4});
  auto bytes = ts[1].tensor().to_contiguous();
  float first_row[3];
  std::memcpy(first_row, bytes.data(), 12);
  CHECK(first_row[0] == 0.0f);
  CHECK(first_row[1] == 4.0f);
  CHECK(first_row[2] == 8.0f);
  CHECK(ck.root().at("lr").as_float() == 0.03);
  CHECK(ck.weights_only_compatible());
}

TEST_CASE("save round-trips every value kind the reader produces") {
  testutil::TempDir dir;
  Document doc;
  Value* root = doc.ordered_dict();
  Value* meta = doc.ordered_dict();
  meta->set("", doc.dict()->set("version", int64_t{1}));
  Value* attrs = doc.dict();
  attrs->set("_metadata", meta);
  root->set_attrs(attrs);
  root->set("none", doc.none());
  root->set("t", true);
  root->set("big", doc.bigint("-1180591620717411303424"));  // -2**70
  root->set("i64min", doc.integer(INT64_MIN));
  root->set("str", "héllo");
  root->set("bytes", doc.bytes(std::string("\x00\xff\x80", 3)));
  root->set("empty_bytes", doc.bytes(""));
  root->set("tuple", doc.tuple({doc.integer(1), doc.str("x"), doc.none(), doc.floating(-0.0)}));
  root->set("set", doc.set({doc.integer(3)}));
  root->set("dev", doc.device("cuda:1"));
  root->set("dt", doc.torch_dtype(DType::bfloat16));
  Value* ns = doc.namespace_();
  ns->set("lr", 0.1);
  root->set("args", ns);
  Value* shared = doc.list({doc.integer(7)});
  root->set("l1", shared);
  root->set("l2", shared);
  Tensor h = Tensor::from_bytes(DType::float16, {2}, {0x00, 0x3c, 0x00, 0xc0});
  h.requires_grad = true;
  h.is_parameter = true;
  root->set("param", doc.tensor(h));
  save(dir / "x.pt", *root, SaveOptions{{}, false});

  auto ck = Checkpoint::open(dir / "x.pt");
  const Value& r = ck.root();
  CHECK(r.type_name() == "collections.OrderedDict");
  REQUIRE(r.attrs());
  CHECK(r.attrs()->at("_metadata").at("").at("version").as_int() == 1);
  CHECK(r.at("none").is_none());
  CHECK(r.at("t").as_bool());
  CHECK(r.at("big").bigint_text() == "-1180591620717411303424");
  CHECK(r.at("i64min").as_int() == INT64_MIN);
  CHECK(r.at("str").as_str() == "héllo");
  CHECK(r.at("bytes").as_bytes() == std::string("\x00\xff\x80", 3));
  CHECK(r.at("empty_bytes").as_bytes().empty());
  CHECK(r.at("tuple").size() == 4);
  CHECK(std::signbit(r.at("tuple").at(3).as_float()));
  CHECK(r.at("set").kind() == Kind::set);
  CHECK(r.at("dev").device() == "cuda:1");
  CHECK(r.at("dt").torch_dtype() == DType::bfloat16);
  CHECK(r.at("args").type_name() == "argparse.Namespace");
  CHECK(r.at("args").at("lr").as_float() == 0.1);
  CHECK(&r.at("l1") == &r.at("l2"));  // memoised once, aliased on read
  const Tensor& p = r.at("param").tensor();
  CHECK(p.is_parameter);
  CHECK(p.requires_grad);
  CHECK(p.dtype == DType::float16);
  CHECK(p.to_contiguous() == std::vector<uint8_t>{0x00, 0x3c, 0x00, 0xc0});
}

TEST_CASE("big-endian storages are written little-endian") {
  testutil::TempDir dir;
  Document doc;
  auto st = Storage::from_bytes(DType::float32, {0x3f, 0x80, 0x00, 0x00});  // 1.0f big-endian
  st->set_big_endian(true);
  Tensor t;
  t.dtype = DType::float32;
  t.shape = {1};
  t.stride = {1};
  t.storage = st;
  float one = 0;
  t.copy_to(&one);
  CHECK(one == 1.0f);
  save(dir / "be.pt", *doc.tensor(t), SaveOptions{{}, false});
  auto ck = Checkpoint::open(dir / "be.pt");
  auto b = ck.root().tensor().contiguous_bytes();
  float f;
  std::memcpy(&f, b.data(), 4);
  CHECK(f == 1.0f);
}

TEST_CASE("save refuses what torch.save refuses") {
  testutil::TempDir dir;
  Document doc;
  Tensor a = Tensor::from_bytes(DType::float32, {2}, std::vector<uint8_t>(8, 0));
  Tensor b = a;
  b.dtype = DType::int32;  // the same storage viewed as another dtype
  Value* root = doc.list({doc.tensor(a), doc.tensor(b)});
  CHECK_THROWS_AS(save(dir / "bad.pt", *root, SaveOptions{{}, false}), Error);
  CHECK(dir.list().empty());  // nothing half-written is left
  CHECK_THROWS_AS(save(dir / "x.pt", *doc.none(), SaveOptions{"a/b", false}), Error);
}

TEST_CASE("new dtypes are written with _rebuild_tensor_v3 over an UntypedStorage and read back") {
  testutil::TempDir dir;
  Document doc;
  Value* root = doc.dict();
  root->set("f8", doc.tensor(Tensor::from_bytes(DType::float8_e4m3fn, {3}, {0x38, 0xb8, 0x7e})));
  root->set("u16", doc.tensor(Tensor::from_bytes(DType::uint16, {2}, {0x01, 0x00, 0xff, 0xff})));
  root->set("u64", doc.tensor(Tensor::from_bytes(DType::uint64, {1}, std::vector<uint8_t>(8, 0xab))));
  root->set("c32", doc.tensor(Tensor::from_bytes(DType::complex32, {1}, {0x00, 0x3c, 0x00, 0xc0})));
  save(dir / "new.pt", *root, SaveOptions{{}, false});
  auto ck = Checkpoint::open(dir / "new.pt");
  bool v3 = false, untyped = false;
  for (const auto& g : ck.globals()) {
    v3 |= g.name == "_rebuild_tensor_v3";
    untyped |= g.name == "UntypedStorage";
  }
  CHECK(v3);
  CHECK(untyped);
  const Value& r = ck.root();
  CHECK(r.at("f8").tensor().dtype == DType::float8_e4m3fn);
  CHECK(r.at("f8").tensor().to_contiguous() == std::vector<uint8_t>{0x38, 0xb8, 0x7e});
  CHECK(r.at("u16").tensor().dtype == DType::uint16);
  CHECK(r.at("u16").tensor().to_contiguous() == std::vector<uint8_t>{0x01, 0x00, 0xff, 0xff});
  CHECK(r.at("u64").tensor().numel() == 1);
  CHECK(r.at("c32").tensor().dtype == DType::complex32);
  CHECK(r.at("c32").tensor().storage->dtype() == DType::uint8);  // UntypedStorage: numel counts bytes
  CHECK(r.at("c32").tensor().storage->numel() == 4);
}

TEST_CASE("save re-checks each copied stored record against its CRC-32 and writes nothing on a mismatch") {
  testutil::TempDir dir;
  Document doc;
  Value* root = doc.dict();
  root->set("w", doc.tensor(arange_f32(1000)));     // the record is exactly the storage
  Tensor head = arange_f32(64);
  root->set("h", doc.tensor(head));
  save(dir / "src.pt", *root, SaveOptions{{}, false});

  // Intact: the copy passes and is itself verifiable.
  {
    auto ck = Checkpoint::open(dir / "src.pt");
    save(dir / "copy.pt", ck.root(), SaveOptions{{}, false});
    Checkpoint::open(dir / "copy.pt").verify();
  }
  // One payload bit flipped in each record in turn: the copy is refused with
  // crc_mismatch naming the entry, and no file (final or temporary) is left.
  auto orig = testutil::read_file(dir / "src.pt");
  for (size_t which = 0; which < 2; ++which) {
    auto b = orig;
    {
      auto ck = Checkpoint::open(Source::from_bytes(orig, "src.pt"));
      b[ck.storages()[which]->file_offset() + 5] ^= 0x01;
    }
    testutil::write_file(dir / "bad.pt", b);
    auto ck = Checkpoint::open(dir / "bad.pt");  // opening reads no payload
    ErrorCode code = ErrorCode::internal;
    std::string entry;
    try {
      save(dir / "out.pt", ck.root(), SaveOptions{{}, false});
    } catch (const Error& e) {
      code = e.code();
      entry = e.entry();
    }
    CHECK(code == ErrorCode::crc_mismatch);
    CHECK(entry == "src/data/" + std::to_string(which));
    auto left = dir.list();
    CHECK(std::find(left.begin(), left.end(), "out.pt") == left.end());
    CHECK(left.size() == 3);  // src.pt, copy.pt, bad.pt
  }
}

TEST_CASE("save writes an empty storage (a null data pointer never reaches memcpy: checked under UBSan)") {
  testutil::TempDir dir;
  Document doc;
  Value* root = doc.dict();
  root->set("empty", doc.tensor(Tensor::from_bytes(DType::float32, {0}, {})));
  root->set("after", doc.tensor(arange_f32(3)));
  save(dir / "e.pt", *root, SaveOptions{{}, false});
  auto ck = Checkpoint::open(dir / "e.pt");
  ck.verify();
  auto ts = ck.tensors();
  REQUIRE(ts.size() == 2);
  CHECK(ts[0].tensor().numel() == 0);
  CHECK(ts[1].tensor().numel() == 3);
}
