// Unit tests of ckpt-convert's pieces: the safetensors header parser on
// hostile headers, safetensors write/read with aliases, SHA-256 vectors, the
// key planner's rules, output format detection.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "ckpt/error.hpp"
#include "ckpt/safetensors.hpp"
#include "convert/convert.hpp"
#include "convert/sha256.hpp"

using namespace ckpt;
using namespace ckpt::tools;

namespace {

std::vector<uint8_t> st_file(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> f;
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) f.push_back(static_cast<uint8_t>(n >> (8 * i)));
  for (char c : header) f.push_back(static_cast<uint8_t>(c));
  f.resize(f.size() + data_bytes, 0);
  return f;
}

ErrorCode code_of(const std::vector<uint8_t>& f) {
  try {
    parse_safetensors_header(f);
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode::internal;  // "no error"
}

std::string tmp_path(const char* name) {
  return (std::filesystem::temp_directory_path() / (std::string("ckpt_convert_unit_") + std::to_string(::getpid()) + name)).string();
}

}  // namespace

TEST_CASE("safetensors header: valid files parse") {
  auto f = st_file(R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"I8","shape":[],"data_offsets":[16,17]}})", 17);
  auto h = parse_safetensors_header(f);
  REQUIRE(h.tensors.size() == 2);
  CHECK(h.tensors[0].name == "a");
  CHECK(h.tensors[1].shape.empty());
  CHECK(h.metadata.size() == 1);
  CHECK(looks_like_safetensors(f, f.size()));
}

TEST_CASE("safetensors header: hostile headers are typed errors") {
  const size_t d = 16;
  auto one = [&](const std::string& entry) { return st_file("{" + entry + "}", d); };
  CHECK(code_of(one(R"("a":{"dtype":"F32","shape":[4],"data_offsets":[0,12]})")) == ErrorCode::invalid_tensor);   // size mismatch
  CHECK(code_of(one(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]})")) == ErrorCode::invalid_tensor);   // a gap
  CHECK(code_of(one(R"("a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]})")) ==
        ErrorCode::invalid_tensor);  // overlap
  CHECK(code_of(one(R"("a":{"dtype":"F33","shape":[4],"data_offsets":[0,16]})")) == ErrorCode::invalid_tensor);
  CHECK(code_of(one(R"("a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]})")) == ErrorCode::invalid_tensor);
  CHECK(code_of(one(R"("a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]})")) == ErrorCode::invalid_tensor);
  CHECK(code_of(one(R"("a":{"dtype":"F32","shape":[4],"data_offsets":[0,18446744073709551616]})")) == ErrorCode::invalid_tensor);
  CHECK(code_of(one(R"("a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]})")) ==
        ErrorCode::unknown_format);  // duplicate name
  CHECK(code_of(one(R"("__metadata__":{"k":1},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]})")) == ErrorCode::unknown_format);
  CHECK(code_of(one(R"("a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]})") ) == ErrorCode::internal);  // fine
  CHECK(code_of(st_file(R"({"a\ud800":{}})", 0)) == ErrorCode::unknown_format);                                 // lone surrogate
  CHECK(code_of(st_file(std::string(100, '[') + std::string(100, ']'), 0)) == ErrorCode::unknown_format);     // deep nesting
  CHECK(code_of(st_file("{\"a\":", 0)) == ErrorCode::unknown_format);                                           // truncated JSON
  CHECK(code_of(st_file("[]", 0)) == ErrorCode::unknown_format);
  std::vector<uint8_t> huge(16, 0);
  huge[7] = 0x7f;
  CHECK(code_of(huge) == ErrorCode::limit_exceeded);
  std::vector<uint8_t> past(16, 0);
  past[0] = 200;
  CHECK(code_of(past) == ErrorCode::truncated);
  CHECK(code_of({1, 2, 3}) == ErrorCode::truncated);
  auto bad_utf8 = st_file("{\"\xff\":1}", 0);
  CHECK(code_of(bad_utf8) == ErrorCode::unknown_format);
  // Every truncation of a valid file is an error, never a crash.
  auto f = st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8);
  for (size_t n = 0; n < f.size(); ++n) {
    std::vector<uint8_t> cut(f.begin(), f.begin() + static_cast<long>(n));
    CHECK_THROWS_AS(read_safetensors(cut), Error);
  }
}

TEST_CASE("safetensors: write then read, aliases recorded and restored") {
  Document doc;
  std::vector<uint8_t> bytes(4 * 6);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i);
  Tensor t = Tensor::from_bytes(DType::float32, {2, 3}, bytes);
  Value* tv = doc.tensor(t);
  Value* sd = doc.ordered_dict();
  sd->set("z.weight", tv);
  sd->set("a.weight", doc.tensor(t));  // the same storage and view: an alias
  const std::string p = tmp_path("alias.safetensors");
  auto r = save_safetensors(p, *sd, {{}, false, {}});
  CHECK(r.tensors == 1);
  REQUIRE(r.aliases.size() == 1);
  CHECK(r.aliases[0].first == "z.weight");
  CHECK(r.aliases[0].second == "a.weight");
  Checkpoint ck = read_safetensors(p);
  auto items = ck.root().items();
  REQUIRE(items.size() == 2);
  CHECK(items[0].first->as_str() == "z.weight");  // the original order (ckpt.keys)
  CHECK(items[0].second->tensor().storage == items[1].second->tensor().storage);
  CHECK(items[1].second->tensor().to_contiguous() == bytes);
  std::remove(p.c_str());
}

TEST_CASE("SHA-256 test vectors") {
  auto h = [](std::string s) { return sha256_hex({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); };
  CHECK(h("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(h("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(h("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 m;
  std::string a(1001, 'a');
  for (int i = 0; i < 1000; ++i) m.update(a.data(), i % 2 ? 999 : 1001);  // odd pieces: the block buffer
  CHECK(m.hex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("key planner: backbone, aliases, classifier, collisions") {
  Document doc;
  Tensor w = Tensor::from_bytes(DType::float32, {2}, std::vector<uint8_t>(8));
  Tensor c = Tensor::from_bytes(DType::float32, {2}, std::vector<uint8_t>(8));
  Value* sd = doc.ordered_dict();
  sd->set("net.fc1.weight", doc.tensor(w));
  sd->set("net._features.0.weight", doc.tensor(w));
  sd->set("net.classifier.weight", doc.tensor(c));
  sd->set("net.net.1.weight", doc.tensor(c));
  sd->set("other.x", doc.tensor(c));
  ConvertOptions o;
  o.backbone = true;
  KeyPlan p = plan_keys(*sd, o);
  CHECK(p.kept == 2);
  CHECK(p.keys[1].dropped == "alias of fc1.weight");
  CHECK(p.keys[4].dropped.find("backbone") != std::string::npos);
  o.drop_classifier = true;
  o.keep_aliases = true;
  p = plan_keys(*sd, o);
  CHECK(p.kept == 2);
  CHECK(p.keys[3].dropped == "classifier (an alias of it)");
  ConvertOptions r;
  r.renames.push_back(RenameRule::parse("net.fc1.=net.classifier."));
  Value* sd2 = doc.ordered_dict();
  sd2->set("net.fc1.weight", doc.tensor(w));
  sd2->set("net.classifier.weight", doc.tensor(c));
  CHECK_THROWS_AS(plan_keys(*sd2, r), Error);
  ConvertOptions s;
  s.strip_prefix = {"auto"};
  Value* sd3 = doc.ordered_dict();
  sd3->set("module._orig_mod.a", doc.tensor(w));
  sd3->set("submodule.b", doc.tensor(c));
  p = plan_keys(*sd3, s);
  CHECK(p.keys[0].to == "a");
  CHECK(p.keys[1].to == "submodule.b");
}

TEST_CASE("output format from the extension") {
  CHECK(format_from_extension("a/b.pt") == OutFormat::pt);
  CHECK(format_from_extension("b.pt.zst") == OutFormat::pt_zst);
  CHECK(format_from_extension("x.hdf5") == OutFormat::h5);
  CHECK(format_from_extension("x.safetensors") == OutFormat::safetensors);
  CHECK(!format_from_extension("x.txt"));
  CHECK(!format_from_extension(".pt"));
}
