// Value tree, walking, errors, container detection, end-to-end open.
#include <doctest/doctest.h>

#include <ckpt/ckpt.hpp>
#include <cstring>
#include <atomic>
#include <thread>
#include <zstd.h>

#include "test_util.hpp"

using namespace ckpt;
using testutil::corpus;

TEST_CASE("Error renders one line with code, place and key path") {
  Error e(ErrorCode::invalid_tensor, "storage_offset 4096 + extent 1024 > storage numel 2048", "a.pt", "archive/data.pkl",
          0x1a3, "model/fc.weight");
  CHECK(std::string(e.what()) ==
        "ckpt: invalid_tensor [40] at a.pt:archive/data.pkl+0x1a3 (model/fc.weight): storage_offset 4096 + extent 1024 > "
        "storage numel 2048");
  CHECK(e.code() == ErrorCode::invalid_tensor);
  CHECK(e.byte_offset() == 0x1a3);
  Error bare(ErrorCode::key_not_found, "no key 'x'");
  CHECK(std::string(bare.what()) == "ckpt: key_not_found [72]: no key 'x'");
  // Outer layers add context only where the inner one had none.
  Error w = bare.with_path("b.pt").with_key_path("model");
  CHECK(std::string(w.what()) == "ckpt: key_not_found [72] at b.pt (model): no key 'x'");
  CHECK(std::string(e.with_path("other.pt").what()).find("at a.pt:") != std::string::npos);
}

TEST_CASE("every error code has a distinct stable name") {
  std::vector<int> codes{10, 11, 12, 13, 14, 20, 21, 22, 23, 24, 25, 30, 31, 32, 40, 41, 50, 60, 61, 62, 70, 71, 72, 99};
  std::set<std::string> names;
  for (int c : codes) names.insert(error_code_name(static_cast<ErrorCode>(c)));
  CHECK(names.size() == codes.size());
  CHECK(names.count("unknown_error") == 0);
}

TEST_CASE("Document builds dicts with Python semantics") {
  Document doc;
  Value* d = doc.ordered_dict();
  d->set("b", int64_t{2})->set("a", int64_t{1});
  d->set("b", int64_t{3});  // replace keeps position
  REQUIRE(d->size() == 2);
  CHECK(d->items()[0].first->as_str() == "b");
  CHECK(d->at("b").as_int() == 3);
  CHECK(d->get("zz") == nullptr);
  CHECK_THROWS_AS(d->at("zz"), Error);
  // Int and bool keys collide as in Python (True == 1).
  Value* e = doc.dict();
  e->set(doc.integer(1), doc.str("one"));
  e->set(doc.boolean(true), doc.str("true"));
  CHECK(e->size() == 1);
  CHECK(e->get(*doc.integer(1))->as_str() == "true");
  // Large dicts use the hash index; behaviour is the same.
  Value* big = doc.dict();
  for (int i = 0; i < 100; ++i) big->set("k" + std::to_string(i), int64_t{i});
  big->set("k50", int64_t{-1});
  CHECK(big->size() == 100);
  CHECK(big->at("k50").as_int() == -1);
  CHECK(big->at("k99").as_int() == 99);
  CHECK(big->erase("k0"));
  CHECK_FALSE(big->erase("k0"));
  CHECK(big->get("k0") == nullptr);
  CHECK(big->at("k1").as_int() == 1);
  CHECK_THROWS_AS(doc.str("x")->as_int(), Error);
  try {
    (void)doc.str("x")->as_int();
  } catch (const Error& err) {
    CHECK(err.code() == ErrorCode::type_error);
  }
}

TEST_CASE("repr is readable and escapes control characters") {
  Document doc;
  Value* d = doc.dict();
  d->set("s", "a\x01'b");
  d->set("f", 0.1);
  d->set("i", int64_t{-3});
  d->set("n", doc.none());
  d->set("t", doc.tuple({doc.integer(1)}));
  d->set("sz", doc.size({2, 3}));
  CHECK(repr(*d) == "{'s': 'a\\x01\\'b', 'f': 0.1, 'i': -3, 'n': None, 't': (1,), 'sz': torch.Size((2, 3))}");
  CHECK(repr(*doc.floating(2.0)) == "2.0");
  CHECK(repr(*doc.floating(1e300)) == "1e+300");
  CHECK(repr(*doc.set()) == "set()");
  Value* ns = doc.namespace_();
  ns->set("lr", 0.5);
  CHECK(repr(*ns) == "Namespace(lr=0.5)");
}

TEST_CASE("walk_tensors lists paths and stops memo-expansion bombs") {
  Document doc;
  Tensor t = Tensor::from_bytes(DType::float32, {2}, std::vector<uint8_t>(8, 0));
  Value* root = doc.dict();
  Value* model = doc.ordered_dict();
  model->set("fc.weight", doc.tensor(t));
  root->set("model", model);
  Value* opt = doc.dict();
  Value* state = doc.dict();
  state->set(doc.integer(0), doc.dict()->set("momentum_buffer", doc.tensor(t)));
  opt->set("state", state);
  root->set("optimizer", opt);
  root->set("buffer", doc.list({doc.tensor(t), doc.none()}));
  std::vector<std::string> paths;
  walk_tensors(*root, [&](const TensorVisit& v) {
    paths.push_back(v.path);
    return true;
  });
  CHECK(paths == std::vector<std::string>{"model/fc.weight", "optimizer/state/0/momentum_buffer", "buffer/0"});

  // 2^60 logical paths from 60 shared levels: the walk budget stops it.
  Value* leaf = doc.list({doc.tensor(t)});
  for (int i = 0; i < 60; ++i) leaf = doc.list({leaf, leaf});
  uint64_t seen = 0;
  try {
    walk_tensors(*leaf, [&](const TensorVisit&) { return ++seen, true; }, 1000, 100000);
    FAIL("expected limit_exceeded");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::limit_exceeded);
  }
  // A cycle is caught by the depth limit.
  Value* cyc = doc.list();
  cyc->append(cyc);
  CHECK_THROWS_AS(walk_tensors(*cyc, [](const TensorVisit&) { return true; }, 50, 1000000), Error);
}

namespace {
ErrorCode open_code(const std::string& path) {
  try {
    Checkpoint::open(path);
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode::internal;  // "no error"
}
}  // namespace

TEST_CASE("download accidents are diagnosed by content") {
  testutil::TempDir dir;
  testutil::write_file(dir / "page.pt", std::string("\n  <!DOCTYPE html>\n<html><head><title>404</title></head></html>"));
  testutil::write_file(dir / "lfs.pt", std::string("version https://git-lfs.github.com/spec/v1\noid sha256:abcd\nsize 123456\n"));
  testutil::write_file(dir / "empty.pt", std::string());
  testutil::write_file(dir / "img.pt", std::string("\x89PNG\r\n\x1a\n....", 12));
  CHECK(open_code(dir / "page.pt") == ErrorCode::html_page);
  CHECK(open_code(dir / "lfs.pt") == ErrorCode::lfs_pointer);
  CHECK(open_code(dir / "empty.pt") == ErrorCode::unknown_format);
  CHECK(open_code(dir / "img.pt") == ErrorCode::unknown_format);
  CHECK(open_code(dir / "missing.pt") == ErrorCode::io_error);
  try {
    Checkpoint::open(dir / "lfs.pt");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("git lfs pull") != std::string::npos);
    CHECK(std::string(e.what()).find("123456 bytes") != std::string::npos);
  }
  try {
    Checkpoint::open(dir / "page.pt");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("HTML page") != std::string::npos);
  }
}

TEST_CASE("a modern torch zip opens with its records and shared storages") {
  auto ck = Checkpoint::open(corpus("burn/examples/lpips_squeeze.pt"));
  const FormatInfo& f = ck.format();
  CHECK(f.container == Container::torch_zip);
  CHECK(f.root == "lpips_squeeze");
  CHECK(f.version == "3");
  CHECK(f.byteorder == "little");
  CHECK(f.format_version == "1");
  CHECK(f.storage_alignment == "64");
  CHECK(f.has_serialization_id);
  CHECK(ck.records_aligned());
  CHECK(f.pickle_protocol == 2);
  CHECK(f.trailing_bytes == 0);
  CHECK(ck.root().type_name() == "collections.OrderedDict");
  REQUIRE(ck.root().attrs() != nullptr);
  CHECK(ck.root().attrs()->get("_metadata") != nullptr);
  CHECK(ck.root().get("_metadata") == nullptr);  // an attribute, never an item
  auto ts = ck.tensors();
  CHECK(ts.size() == 66);
  CHECK(ck.storages().size() == 59);  // 7 tensors alias others
  CHECK(ck.weights_only_compatible());
  ck.verify();
}

TEST_CASE("legacy stream: storage views and offsets resolve to the right bytes") {
  auto ck = Checkpoint::open(corpus("burn/reader/legacy_uncloned_views.pt"));
  CHECK(ck.format().container == Container::legacy_stream);
  auto ts = ck.tensors();
  REQUIRE(ts.size() == 2);
  CHECK(ts[0].tensor().storage == ts[1].tensor().storage);
  CHECK(ck.weights_only_compatible());  // weights_only loads legacy streams (not TAR)
}

TEST_CASE("zstd-compressed checkpoints open transparently") {
  auto raw = testutil::read_file(corpus("burn/pytorch-tests/batch_norm__batch_norm2d.pt"));
  std::vector<uint8_t> z(ZSTD_compressBound(raw.size()));
  size_t n = ZSTD_compress(z.data(), z.size(), raw.data(), raw.size(), 3);
  REQUIRE_FALSE(ZSTD_isError(n));
  z.resize(n);
  testutil::TempDir dir;
  testutil::write_file(dir / "bn.pt.zst", z);
  auto ck = Checkpoint::open(dir / "bn.pt.zst");
  CHECK(ck.format().container == Container::torch_zip);
  CHECK(ck.format().era.find("zstd") != std::string::npos);
  CHECK(ck.tensors().size() == 5);
  z.resize(z.size() / 2);
  testutil::write_file(dir / "cut.pt.zst", z);
  CHECK(open_code(dir / "cut.pt.zst") == ErrorCode::truncated);
}

TEST_CASE("full-model pickles open with opaque objects, never executed") {
  auto ck = Checkpoint::open(corpus("burn/examples/mnist__burn-import-2024.pt"));
  CHECK(ck.root().kind() == Kind::object);
  CHECK(ck.root().qualified_name() == "__main__.Net");
  CHECK(ck.tensors().size() == 20);
  bool saw_unknown = false;
  for (const auto& g : ck.globals())
    if (g.module == "__main__" && g.name == "Net") saw_unknown = g.verdict == GlobalVerdict::unknown;
  CHECK(saw_unknown);
  CHECK_FALSE(ck.weights_only_compatible());
  OpenOptions strict;
  strict.allow_unknown_globals = false;
  try {
    Checkpoint::open(corpus("burn/examples/mnist__burn-import-2024.pt"), strict);
    FAIL("weights-only mode must refuse __main__.Net");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::unsafe_global);
    CHECK(std::string(e.what()).find("__main__.Net") != std::string::npos);
  }
}

TEST_CASE("errors name the key path of the value being built") {
  auto path_of = [](Value* root) {
    std::string pkl = pickle_dumps(*root, [](const std::shared_ptr<Storage>&) { return std::string("0"); });
    Document doc;
    try {
      unpickle(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(pkl.data()), pkl.size()), doc, UnpickleOptions{});
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::unsafe_global);
      return e.key_path();
    }
    return std::string("<no error>");
  };
  Document doc;
  Value* bad = doc.global("os", "system");
  // multi-item dicts (SETITEMS), single-item dicts (SETITEM), lists (APPENDS/APPEND)
  Value* a = doc.dict();
  a->set("model", doc.dict()->set("w", int64_t{1})->set("bad", bad));
  CHECK(path_of(a) == "model/bad");
  Value* b = doc.dict();
  b->set("opt", doc.list({doc.integer(1), doc.dict()->set("s", bad)}));
  CHECK(path_of(b) == "opt/1/s");
  Value* c = doc.list({doc.ordered_dict()->set("a", int64_t{1})->set("b", doc.list({doc.integer(2), doc.integer(3), bad}))});
  CHECK(path_of(c) == "0/b/2");
}

TEST_CASE("weights_only_opcode matches torch's weights_only unpickler") {
  // torch >= 2.1 _weights_only_unpickler: exactly these opcodes.
  const std::string allowed = std::string("\x80.cR\x81" "baeus(t\x85\x86\x87N\x89\x88)]}\x8f" "JKMGXUQhjqr\x8a");
  int n = 0;
  for (int op = 0; op < 256; ++op) {
    bool want = allowed.find(static_cast<char>(op)) != std::string::npos;
    CHECK_MESSAGE(weights_only_opcode(static_cast<uint8_t>(op)) == want, "opcode " << op);
    n += want;
  }
  CHECK(n == 34);  // the list in docs/format.md
  CHECK_FALSE(weights_only_opcode(0x95));  // FRAME
  CHECK_FALSE(weights_only_opcode(0x93));  // STACK_GLOBAL
  CHECK_FALSE(weights_only_opcode(0x94));  // MEMOIZE
  CHECK_FALSE(weights_only_opcode('B'));   // BINBYTES
}

TEST_CASE("plain reads (no mmap) give the same checkpoint") {
  OpenOptions no_map;
  no_map.use_mmap = false;
  for (const char* f : {"burn/examples/lpips_squeeze.pt", "pickle_jl/strides.bin", "burn/reader/legacy_with_offsets.pt"}) {
    auto a = Checkpoint::open(corpus(f));
    auto b = Checkpoint::open(corpus(f), no_map);
    auto ta = a.tensors(), tb = b.tensors();
    REQUIRE(ta.size() == tb.size());
    for (size_t i = 0; i < ta.size(); ++i) {
      CHECK(ta[i].path == tb[i].path);
      CHECK(ta[i].tensor().to_contiguous() == tb[i].tensor().to_contiguous());
      CHECK_FALSE(tb[i].tensor().storage->mapped());
    }
    CHECK(a.storages().size() == b.storages().size());
  }
}

TEST_CASE("burn's TAR files (storages named inline, no tensors table) open with their values") {
  // torch.load cannot read these (EOFError); burn can. The storages member
  // is torch's layout; the object pickle puts the storage tuple inline.
  auto ck = Checkpoint::open(corpus("burn/reader/tar_float32.tar"));
  CHECK(ck.format().container == Container::legacy_tar);
  CHECK(ck.format().pickle_protocol == 2);
  const Tensor& t = ck.root().at("tensor").tensor();
  REQUIRE(t.numel() == 4);
  float v[4];
  t.copy_to(v);
  // storages member: count 1; ('0', 'cpu', FloatStorage); int64 4; then
  // 00 00 80 3f | 00 00 20 40 | cd cc 6c c0 | 00 00 00 00
  CHECK(v[0] == 1.0f);
  CHECK(v[1] == 2.5f);
  CHECK(v[2] == -3.7f);
  CHECK(v[3] == 0.0f);
  auto wb = Checkpoint::open(corpus("burn/reader/tar_weight_bias.tar"));
  CHECK(wb.root().at("weight").tensor().shape == std::vector<int64_t>{2, 3});
  CHECK(wb.root().at("bias").tensor().shape == std::vector<int64_t>{2});
  // A real torch TAR never needs this: without the flag a tuple stays a tuple.
  CHECK_FALSE(UnpickleOptions{}.inline_storage_ids);
}

TEST_CASE("one Checkpoint read from several threads at once") {
  // Lazy parts (a dict's key index, a storage's location) are published
  // atomically / once; every thread sees the same answers.
  auto ck = Checkpoint::open(corpus("burn/examples/lpips_squeeze.pt"));
  std::vector<std::string> keys;
  for (const auto& [k, v] : ck.root().items()) keys.push_back(k->as_str());
  std::vector<std::thread> pool;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t)
    pool.emplace_back([&] {
      for (const auto& k : keys) {
        const Value* v = ck.root().get(k);
        if (!v || v->kind() != Kind::tensor || v->tensor().to_contiguous().size() != v->tensor().nbytes()) ++bad;
      }
    });
  for (auto& th : pool) th.join();
  CHECK(bad == 0);
}
