// tests/unit/test_unpickler.cpp - every opcode of pickle protocols 0-5 and the
// allowlist interpretation of ckpt::unpickle (ckpt/pickle.hpp, ckpt/value.hpp).
//
// Every pickle is spelled out byte by byte here. Plain-pickle expectations were
// checked against CPython 3.11's pickle module; the torch ones were produced by
// torch 1.13 (`torch.save(...)`, the data.pkl entry) and are quoted verbatim.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/dtype.hpp"
#include "ckpt/error.hpp"
#include "ckpt/limits.hpp"
#include "ckpt/pickle.hpp"
#include "ckpt/tensor.hpp"
#include "ckpt/value.hpp"
#include "pickle_builder.hpp"

using namespace testpk;

namespace {

using ckpt::DType;
using ckpt::ErrorCode;
using ckpt::Kind;
using ckpt::Value;

struct Loaded {
  ckpt::Document doc;
  ckpt::UnpickleResult res;
  Value* v = nullptr;
};

std::unique_ptr<Loaded> load(const std::string& bytes, const ckpt::UnpickleOptions& opts = {}) {
  auto l = std::make_unique<Loaded>();
  l->res = ckpt::unpickle(as_span(bytes), l->doc, opts);
  l->v = l->res.value;
  return l;
}

/// A persistent_load that resolves torch 5-tuple pids from a key -> storage table
/// and records what it was called with.
struct StorageTable {
  std::map<std::string, std::shared_ptr<ckpt::Storage>> storages;
  std::vector<std::string> keys_seen;
  std::vector<std::string> classes_seen;
  std::vector<uint64_t> offsets_seen;

  void install(ckpt::UnpickleOptions& opts) {
    opts.persistent_load = [this](ckpt::Document& d, Value* pid, uint64_t offset) -> Value* {
      offsets_seen.push_back(offset);
      if (!pid || !pid->is(Kind::tuple) || pid->size() < 5 || !pid->elements()[0]->is(Kind::string) ||
          pid->elements()[0]->as_str() != "storage")
        throw ckpt::Error(ErrorCode::malformed_pickle, "test loader: not a storage pid");
      const Value* cls = pid->elements()[1];
      if (!cls->is(Kind::global)) throw ckpt::Error(ErrorCode::malformed_pickle, "test loader: class");
      classes_seen.push_back(cls->qualified_name());
      const std::string key = pid->elements()[2]->as_str();
      keys_seen.push_back(key);
      auto it = storages.find(key);
      if (it == storages.end()) throw ckpt::Error(ErrorCode::missing_record, "test loader: key " + key);
      return d.storage(it->second);
    };
  }
};

// ---------------------------------------------------------------------------
// Verbatim pickles from CPython 3.11 (pickle.dumps(x, 2)) and torch 1.13.
// ---------------------------------------------------------------------------

// collections.Counter({'a': 2})
const std::string kCounter = B(
    "\x80\x02" "ccollections\nCounter\nq\x00}q\x01X\x01\x00\x00\x00" "aq\x02K\x02s\x85q\x03Rq\x04.");
// collections.defaultdict(list, {'a': [1]})
const std::string kDefaultDict = B(
    "\x80\x02" "ccollections\ndefaultdict\nq\x00" "c__builtin__\n"
    "list\nq\x01\x85q\x02Rq\x03X\x01\x00\x00\x00" "aq\x04]q\x05K\x01" "as.");
// argparse.Namespace(lr=0.5)
const std::string kNamespace = B(
    "\x80\x02" "cargparse\nNamespace\nq\x00)\x81q\x01}q\x02X\x02\x00\x00\x00lrq\x03G?\xe0\x00\x00\x00\x00\x00\x00sb.");
// b'\xff' (protocol 2 has no bytes opcode)
const std::string kCodecsBytes = B(
    "\x80\x02" "c_codecs\nencode\nq\x00X\x02\x00\x00\x00\xc3\xbfq\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.");
// b''
const std::string kEmptyBytesP2 = B(
    "\x80\x02" "c__builtin__\nbytes\nq\x00)Rq\x01.");
// bytearray(b'ab')
const std::string kByteArrayP2 = B(
    "\x80\x02" "c__builtin__\nbytearray\nq\x00" "c_codecs\nencode\n"
    "q\x01X\x02\x00\x00\x00" "abq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05\x85q\x06Rq\x07.");
// numpy.arange(3, dtype='<f4') (numpy 1.24)
const std::string kNumpyArray = B(
    "\x80\x02" "cnumpy.core.multiarray\n_reconstruct\nq\x00" "cnumpy\n"
    "ndarray\nq\x01K\x00\x85q\x02" "c_codecs\nencode\nq\x03X\x01\x00\x00\x00" "bq\x04X\x06\x00\x00\x00latin1q\x05\x86q\x06Rq\x07\x87q\x08Rq\x09(K\x01K\x03\x85q\n"
    "cnumpy\ndtype\nq\x0bX\x02\x00\x00\x00" "f4q\x0c\x89\x88\x87q\x0dRq\x0e(K\x03X\x01\x00\x00\x00<q\x0fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x10" "b\x89h\x03X\x0d\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc2\x80?\x00\x00\x00@q\x11h\x05\x86q\x12Rq\x13tq\x14" "b.");
// numpy.float64(0.5)
const std::string kNumpyScalar = B(
    "\x80\x02" "cnumpy.core.multiarray\nscalar\nq\x00" "cnumpy\ndtype\n"
    "q\x01X\x02\x00\x00\x00" "f8q\x02\x89\x88\x87q\x03Rq\x04(K\x03X\x01\x00\x00\x00<q\x05NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x06" "bc_codecs\n"
    "encode\nq\x07X\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc3\xa0?q\x08X\x06\x00\x00\x00latin1q\x09\x86q\n"
    "Rq\x0b\x86q\x0cRq\x0d.");
// numpy.dtype('f8')
const std::string kNumpyDtype = B(
    "\x80\x02" "cnumpy\ndtype\nq\x00X\x02\x00\x00\x00" "f8q\x01\x89\x88\x87q\x02Rq\x03(K\x03X\x01\x00\x00\x00<q\x04NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x05" "b.");
// torch.Size([2, 3])
const std::string kTorchSize = B(
    "\x80\x02" "ctorch\nSize\nq\x00K\x02K\x03\x86q\x01\x85q\x02Rq\x03.");
// torch.device('cuda', 0)
const std::string kDeviceCuda0 = B(
    "\x80\x02" "ctorch\ndevice\nq\x00X\x04\x00\x00\x00" "cudaq\x01K\x00\x86q\x02Rq\x03.");
// torch.device('cpu')
const std::string kDeviceCpu = B(
    "\x80\x02" "ctorch\ndevice\nq\x00X\x03\x00\x00\x00" "cpuq\x01\x85q\x02Rq\x03.");
// 1+2j
const std::string kComplex = B(
    "\x80\x02" "c__builtin__\ncomplex\nq\x00G?\xf0\x00\x00\x00\x00\x00\x00G@\x00\x00\x00\x00\x00\x00\x00\x86q\x01Rq\x02.");
// torch 1.13: torch.save(torch.nn.Linear(2, 1).state_dict()) -> data.pkl
const std::string kLinearStateDict = B(
    "\x80\x02" "ccollections\nOrderedDict\nq\x00)Rq\x01(X\x06\x00\x00\x00weightq\x02" "ctorch._utils\n"
    "_rebuild_tensor_v2\nq\x03((X\x07\x00\x00\x00storageq\x04" "ctorch\n"
    "FloatStorage\nq\x05X\x01\x00\x00\x00" "0q\x06X\x03\x00\x00\x00" "cpuq\x07K\x02tq\x08QK\x00K\x01K\x02\x86q\x09K\x02K\x01\x86q\n"
    "\x89h\x00)Rq\x0btq\x0cRq\x0dX\x04\x00\x00\x00" "biasq\x0eh\x03((h\x04h\x05X\x01\x00\x00\x00" "1q\x0fh\x07K\x01tq\x10QK\x00K\x01\x85q\x11K\x01\x85q\x12\x89h\x00)Rq\x13tq\x14Rq\x15u}q\x16X\x09\x00\x00\x00_metadataq\x17h\x00)Rq\x18X\x00\x00\x00\x00q\x19}q\x1aX\x07\x00\x00\x00versionq\x1bK\x01sssb.");
// torch 1.13: torch.arange(6.).reshape(2, 3).t()[1:] (offset 1, size (2,2), stride (1,3))
const std::string kTransposedView = B(
    "\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\nq\x00((X\x07\x00\x00\x00storageq\x01" "ctorch\n"
    "FloatStorage\nq\x02X\x01\x00\x00\x00" "0q\x03X\x03\x00\x00\x00" "cpuq\x04K\x06tq\x05QK\x01K\x02K\x02\x86q\x06K\x01K\x03\x86q\x07\x89" "ccollections\n"
    "OrderedDict\nq\x08)Rq\x09tq\nRq\x0b.");
// torch 1.13: torch.nn.Parameter(torch.ones(2))
const std::string kParameter = B(
    "\x80\x02" "ctorch._utils\n_rebuild_parameter\nq\x00" "ctorch._utils\n"
    "_rebuild_tensor_v2\nq\x01((X\x07\x00\x00\x00storageq\x02" "ctorch\n"
    "FloatStorage\nq\x03X\x01\x00\x00\x00" "0q\x04X\x03\x00\x00\x00" "cpuq\x05K\x02tq\x06QK\x00K\x02\x85q\x07K\x01\x85q\x08\x89" "ccollections\n"
    "OrderedDict\nq\x09)Rq\ntq\x0bRq\x0c\x88h\x09)Rq\x0d\x87q\x0eRq\x0f.");
// torch 1.13: torch.quantize_per_tensor(torch.tensor([1., 2.]), 0.5, 0, torch.quint8)
const std::string kQTensor = B(
    "\x80\x02" "ctorch._utils\n_rebuild_qtensor\nq\x00((X\x07\x00\x00\x00storageq\x01" "ctorch\n"
    "QUInt8Storage\nq\x02X\x01\x00\x00\x00" "0q\x03X\x03\x00\x00\x00" "cpuq\x04K\x02tq\x05QK\x00K\x02\x85q\x06K\x01\x85q\x07" "ctorch\n"
    "per_tensor_affine\nq\x08G?\xe0\x00\x00\x00\x00\x00\x00K\x00\x87q\x09\x89" "ccollections\n"
    "OrderedDict\nq\n)Rq\x0btq\x0cRq\x0d.");
// torch 1.13: torch.tensor([[0, 1.], [0, 0]]).to_sparse()
const std::string kSparse = B(
    "\x80\x02" "ctorch._utils\n_rebuild_sparse_tensor\nq\x00" "ctorch.serialization\n"
    "_get_layout\nq\x01X\x10\x00\x00\x00torch.sparse_cooq\x02\x85q\x03Rq\x04" "ctorch._utils\n"
    "_rebuild_tensor_v2\nq\x05((X\x07\x00\x00\x00storageq\x06" "ctorch\n"
    "LongStorage\nq\x07X\x01\x00\x00\x00" "0q\x08X\x03\x00\x00\x00" "cpuq\x09K\x02tq\n"
    "QK\x00K\x02K\x01\x86q\x0bK\x01K\x01\x86q\x0c\x89" "ccollections\n"
    "OrderedDict\nq\x0d)Rq\x0etq\x0fRq\x10h\x05((h\x06" "ctorch\n"
    "FloatStorage\nq\x11X\x01\x00\x00\x00" "1q\x12h\x09K\x01tq\x13QK\x00K\x01\x85q\x14K\x01\x85q\x15\x89h\x0d)Rq\x16tq\x17Rq\x18" "ctorch\n"
    "Size\nq\x19K\x02K\x02\x86q\x1a\x85q\x1bRq\x1c\x87q\x1d\x86q\x1eRq\x1f.");

}  // namespace

TEST_SUITE_BEGIN("unpickler");

TEST_CASE("verbatim fixtures have the lengths Python printed") {
  CHECK(kCounter.size() == 46);
  CHECK(kDefaultDict.size() == 71);
  CHECK(kNamespace.size() == 52);
  CHECK(kCodecsBytes.size() == 49);
  CHECK(kEmptyBytesP2.size() == 28);
  CHECK(kByteArrayP2.size() == 80);
  CHECK(kNumpyArray.size() == 219);
  CHECK(kNumpyScalar.size() == 156);
  CHECK(kNumpyDtype.size() == 65);
  CHECK(kTorchSize.size() == 30);
  CHECK(kDeviceCuda0.size() == 38);
  CHECK(kDeviceCpu.size() == 35);
  CHECK(kComplex.size() == 50);
  CHECK(kLinearStateDict.size() == 290);
  CHECK(kTransposedView.size() == 154);
  CHECK(kParameter.size() == 198);
  CHECK(kQTensor.size() == 190);
  CHECK(kSparse.size() == 361);
}

// ---------------------------------------------------------------------------
// Framing and stack manipulation
// ---------------------------------------------------------------------------

TEST_CASE("PROTO and STOP: protocol, end offset, trailing bytes") {
  {
    auto l = load(B("\x80\x02N."));
    CHECK_KIND(l->v, none);
    CHECK(l->res.protocol == 2);
    CHECK(l->res.end == 4);
  }
  {
    auto l = load(B("N."));
    CHECK_KIND(l->v, none);
    CHECK(l->res.protocol <= 1);
    CHECK(l->res.end == 2);
  }
  {
    // Bytes after STOP are not this function's business: `end` marks STOP.
    auto l = load(B("\x80\x05K\x07.trailing garbage \xff\x00"));
    CHECK(l->res.protocol == 5);
    CHECK(l->res.end == 5);
    REQUIRE_KIND(l->v, integer);
    CHECK(l->v->as_int() == 7);
  }
}

TEST_CASE("FRAME (protocol 4) is transparent") {
  // Python 3.11: pickle.dumps(frozenset({1}), 4)
  auto l = load(B("\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00(K\x01\x91\x94."));
  CHECK(l->res.protocol == 4);
  REQUIRE_KIND(l->v, frozenset);
  REQUIRE(l->v->size() == 1);
  CHECK(l->v->elements()[0]->as_int() == 1);
  // Two frames in a row.
  Pk p;
  p.proto(4).frame(2).binint1(1).frame(3).binint1(2).tuple2().stop();
  auto l2 = load(p.s);
  REQUIRE_KIND(l2->v, tuple);
  CHECK(l2->v->elements()[1]->as_int() == 2);
}

TEST_CASE("MARK, POP, POP_MARK, DUP") {
  {
    auto l = load(B("K\x07(K\x01K\x02" "1."));  // POP_MARK drops 1, 2 and the mark
    REQUIRE_KIND(l->v, integer);
    CHECK(l->v->as_int() == 7);
  }
  {
    auto l = load(B("K\x01K\x02" "0."));  // POP
    REQUIRE_KIND(l->v, integer);
    CHECK(l->v->as_int() == 1);
  }
  {
    auto l = load(B("]2\x86."));  // DUP: the very same list twice
    REQUIRE_KIND(l->v, tuple);
    REQUIRE(l->v->size() == 2);
    CHECK_KIND(l->v->elements()[0], list);
    CHECK(l->v->elements()[0] == l->v->elements()[1]);
  }
  {
    // MARK 1 MARK 2 MARK 3 POP_MARK -> [mark,1,mark,2]; TUPLE -> [mark,1,(2,)];
    // TUPLE -> [(1, (2,))]
    auto l = load(B("(K\x01(K\x02(K\x03" "1tt."));
    REQUIRE_KIND(l->v, tuple);
    REQUIRE(l->v->size() == 2);
    CHECK(l->v->elements()[0]->as_int() == 1);
    REQUIRE_KIND(l->v->elements()[1], tuple);
    CHECK(l->v->elements()[1]->elements()[0]->as_int() == 2);
  }
}

// ---------------------------------------------------------------------------
// Integers
// ---------------------------------------------------------------------------

TEST_CASE("INT (protocol 0 text)") {
  auto i = [](const std::string& b) { return load(b); };
  {
    auto l = i(B("I42\n."));
    REQUIRE_KIND(l->v, integer);
    CHECK(l->v->as_int() == 42);
  }
  {
    auto l = i(B("I-42\n."));
    REQUIRE_KIND(l->v, integer);
    CHECK(l->v->as_int() == -42);
  }
  {
    // Python 2 pickled True/False as I01 / I00; CPython still reads them as bools.
    auto t = i(B("I01\n."));
    REQUIRE_KIND(t->v, boolean);
    CHECK(t->v->as_bool() == true);
    auto f = i(B("I00\n."));
    REQUIRE_KIND(f->v, boolean);
    CHECK(f->v->as_bool() == false);
  }
  {
    auto l = i(B("I99999999999999999999\n."));
    REQUIRE_KIND(l->v, bigint);
    CHECK(l->v->bigint_text() == "99999999999999999999");
  }
  {
    auto l = i(B("I9223372036854775807\n."));
    REQUIRE_KIND(l->v, integer);
    CHECK(l->v->as_int() == std::numeric_limits<int64_t>::max());
  }
}

TEST_CASE("BININT, BININT1, BININT2") {
  {
    auto l = load(B("J\xfe\xff\xff\xff."));  // signed 32-bit
    REQUIRE_KIND(l->v, integer);
    CHECK(l->v->as_int() == -2);
  }
  {
    auto l = load(B("J\xff\xff\xff\x7f."));
    CHECK(l->v->as_int() == 2147483647);
  }
  {
    auto l = load(B("J\x00\x00\x00\x80."));
    CHECK(l->v->as_int() == -2147483648LL);
  }
  {
    auto l = load(B("K\xff."));  // unsigned 8-bit
    REQUIRE_KIND(l->v, integer);
    CHECK(l->v->as_int() == 255);
  }
  {
    auto l = load(B("M\xff\xff."));  // unsigned 16-bit
    REQUIRE_KIND(l->v, integer);
    CHECK(l->v->as_int() == 65535);
  }
  {
    auto l = load(B("M\x01\x02."));
    CHECK(l->v->as_int() == 0x0201);
  }
}

TEST_CASE("LONG (protocol 0 text)") {
  {
    auto l = load(B("L123L\n."));
    REQUIRE_KIND(l->v, integer);
    CHECK(l->v->as_int() == 123);
  }
  {
    auto l = load(B("L5\n."));  // Python 3 writes no L suffix
    REQUIRE_KIND(l->v, integer);
    CHECK(l->v->as_int() == 5);
  }
  {
    auto l = load(B("L-9223372036854775808L\n."));
    REQUIRE_KIND(l->v, integer);
    CHECK(l->v->as_int() == std::numeric_limits<int64_t>::min());
  }
  {
    auto l = load(B("L-9223372036854775809L\n."));
    REQUIRE_KIND(l->v, bigint);
    CHECK(l->v->bigint_text() == "-9223372036854775809");
  }
}

TEST_CASE("LONG1 / LONG4: little-endian two's complement, sign-extended") {
  struct Case {
    std::string bytes;
    bool big;
    int64_t value;
    const char* text;
  };
  const std::vector<Case> cases = {
      {B("\x8a\x00."), false, 0, ""},
      {B("\x8a\x01\xff."), false, -1, ""},
      {B("\x8a\x01\x80."), false, -128, ""},
      {B("\x8a\x01\x7f."), false, 127, ""},
      {B("\x8a\x02\xff\x00."), false, 255, ""},
      {B("\x8a\x02\x00\xff."), false, -256, ""},
      {B("\x8a\x05\x00\x00\x00\x00\x01."), false, int64_t{1} << 32, ""},
      {B("\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f."), false, std::numeric_limits<int64_t>::max(), ""},
      {B("\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80."), false, std::numeric_limits<int64_t>::min(), ""},
      // Redundant sign bytes still fit.
      {B("\x8a\x09\xfe\xff\xff\xff\xff\xff\xff\xff\xff."), false, -2, ""},
      {B("\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00."), true, 0, "9223372036854775808"},
      {B("\x8a\x09\xff\xff\xff\xff\xff\xff\xff\x7f\xff."), true, 0, "-9223372036854775809"},
      {B("\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01."), true, 0, "18446744073709551616"},
      {B("\x8a\x0d\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10."), true, 0,
       "1267650600228229401496703205376"},
      {B("\x8a\x0d\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf0."), true, 0,
       "-1267650600228229401496703205376"},
      {B("\x8b\x02\x00\x00\x00\x00\x80."), false, -32768, ""},
      {B("\x8b\x00\x00\x00\x00."), false, 0, ""},
      {B("\x8b\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x00."), true, 0, "9223372036854775808"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    CAPTURE(c.value);
    auto l = load(c.bytes);
    if (c.big) {
      REQUIRE_KIND(l->v, bigint);
      CHECK(l->v->bigint_text() == c.text);
    } else {
      REQUIRE_KIND(l->v, integer);
      CHECK(l->v->as_int() == c.value);
    }
  }
}

// ---------------------------------------------------------------------------
// Floats
// ---------------------------------------------------------------------------

TEST_CASE("FLOAT and BINFLOAT (big-endian)") {
  {
    auto l = load(B("F1.5\n."));
    REQUIRE_KIND(l->v, floating);
    CHECK(l->v->as_float() == 1.5);
  }
  {
    auto l = load(B("F-inf\n."));
    REQUIRE_KIND(l->v, floating);
    CHECK(std::isinf(l->v->as_float()));
    CHECK(l->v->as_float() < 0);
  }
  {
    auto l = load(B("F1e300\n."));
    CHECK(l->v->as_float() == 1e300);
  }
  {
    auto l = load(B("G?\xf8\x00\x00\x00\x00\x00\x00."));
    REQUIRE_KIND(l->v, floating);
    CHECK(l->v->as_float() == 1.5);
  }
  {
    Pk p;
    p.binfloat(-0.1).stop();
    CHECK(p.s == B("G\xbf\xb9\x99\x99\x99\x99\x99\x9a."));
    auto l = load(p.s);
    CHECK(l->v->as_float() == -0.1);
  }
}

// ---------------------------------------------------------------------------
// Strings and bytes
// ---------------------------------------------------------------------------

TEST_CASE("STRING, BINSTRING, SHORT_BINSTRING (Python 2 str)") {
  {
    // S'a\x41\n\'b'  -> "aA\n'b" (string-escape decoding)
    auto l = load(B("S'a\\x41\\n\\'b'\n."));
    REQUIRE_KIND(l->v, string);
    CHECK(l->v->as_str() == "aA\n'b");
  }
  {
    auto l = load(B("S\"q\"\n."));
    REQUIRE_KIND(l->v, string);
    CHECK(l->v->as_str() == "q");
  }
  {
    auto l = load(B("S'tab\\there'\n."));
    CHECK(l->v->as_str() == "tab\there");
  }
  {
    auto l = load(B("T\x03\x00\x00\x00" "abc."));
    REQUIRE_KIND(l->v, string);
    CHECK(l->v->as_str() == "abc");
  }
  {
    auto l = load(B("U\x02hi."));
    REQUIRE_KIND(l->v, string);
    CHECK(l->v->as_str() == "hi");
  }
  {
    auto l = load(B("U\x00."));
    REQUIRE_KIND(l->v, string);
    CHECK(l->v->as_str().empty());
  }
}

TEST_CASE("UNICODE, BINUNICODE, SHORT_BINUNICODE, BINUNICODE8") {
  {
    // raw-unicode-escape: \u00e9 -> U+00E9, stored as UTF-8
    auto l = load(B("V\\u00e9x\n."));
    REQUIRE_KIND(l->v, string);
    CHECK(l->v->as_str() == "\xc3\xa9x");
  }
  {
    auto l = load(B("V\\U0001f600\n."));
    REQUIRE_KIND(l->v, string);
    CHECK(l->v->as_str() == "\xf0\x9f\x98\x80");
  }
  {
    auto l = load(B("X\x02\x00\x00\x00\xc3\xa9."));
    REQUIRE_KIND(l->v, string);
    CHECK(l->v->as_str() == "\xc3\xa9");
  }
  {
    auto l = load(B("X\x03\x00\x00\x00" "a\x00" "b."));  // embedded NUL survives
    CHECK(l->v->as_str() == B("a\x00" "b"));
  }
  {
    auto l = load(B("\x8c\x01" "a."));
    REQUIRE_KIND(l->v, string);
    CHECK(l->v->as_str() == "a");
  }
  {
    auto l = load(B("\x8d\x01\x00\x00\x00\x00\x00\x00\x00z."));
    REQUIRE_KIND(l->v, string);
    CHECK(l->v->as_str() == "z");
  }
}

TEST_CASE("BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8") {
  {
    auto l = load(B("B\x02\x00\x00\x00" "ab."));
    REQUIRE_KIND(l->v, bytes);
    CHECK(l->v->as_bytes() == "ab");
  }
  {
    auto l = load(B("C\x03\x00\xff\x01."));
    REQUIRE_KIND(l->v, bytes);
    CHECK(l->v->as_bytes() == B("\x00\xff\x01"));
  }
  {
    auto l = load(B("\x8e\x01\x00\x00\x00\x00\x00\x00\x00z."));
    REQUIRE_KIND(l->v, bytes);
    CHECK(l->v->as_bytes() == "z");
  }
  {
    auto l = load(B("\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00" "ab."));
    REQUIRE_KIND(l->v, bytes);
    CHECK(l->v->as_bytes() == "ab");
    CHECK(l->v->type_name() == "builtins.bytearray");
  }
  {
    // Python 3.11: pickle.dumps(bytearray(b'ab'), 5), with its frame and MEMOIZE
    auto l = load(B("\x80\x05\x95\x0d\x00\x00\x00\x00\x00\x00\x00\x96\x02\x00\x00\x00\x00\x00\x00\x00" "ab\x94."));
    REQUIRE_KIND(l->v, bytes);
    CHECK(l->v->as_bytes() == "ab");
    CHECK(l->v->type_name() == "builtins.bytearray");
  }
}

TEST_CASE("NONE, NEWTRUE, NEWFALSE") {
  auto l = load(B("\x80\x02N\x88\x89\x87."));
  REQUIRE_KIND(l->v, tuple);
  REQUIRE(l->v->size() == 3);
  CHECK_KIND(l->v->elements()[0], none);
  REQUIRE_KIND(l->v->elements()[1], boolean);
  CHECK(l->v->elements()[1]->as_bool() == true);
  REQUIRE_KIND(l->v->elements()[2], boolean);
  CHECK(l->v->elements()[2]->as_bool() == false);
  CHECK(l->v->elements()[1]->as_int() == 1);  // as_int accepts booleans
}

// ---------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------

TEST_CASE("EMPTY_LIST, LIST, APPEND, APPENDS") {
  {
    auto l = load(B("(I1\nI2\nl."));
    REQUIRE_KIND(l->v, list);
    REQUIRE(l->v->size() == 2);
    CHECK(l->v->elements()[0]->as_int() == 1);
    CHECK(l->v->elements()[1]->as_int() == 2);
  }
  {
    auto l = load(B("]."));
    REQUIRE_KIND(l->v, list);
    CHECK(l->v->size() == 0);
  }
  {
    auto l = load(B("]K\x01" "a."));
    REQUIRE_KIND(l->v, list);
    REQUIRE(l->v->size() == 1);
    CHECK(l->v->at(0).as_int() == 1);
  }
  {
    auto l = load(B("](K\x01K\x02K\x03" "e(e."));  // APPENDS, then an empty APPENDS
    REQUIRE_KIND(l->v, list);
    REQUIRE(l->v->size() == 3);
    CHECK(l->v->elements()[2]->as_int() == 3);
  }
}

TEST_CASE("EMPTY_TUPLE, TUPLE, TUPLE1, TUPLE2, TUPLE3") {
  {
    auto l = load(B(")."));
    REQUIRE_KIND(l->v, tuple);
    CHECK(l->v->size() == 0);
  }
  {
    auto l = load(B("(K\x01K\x02K\x03K\x04t."));
    REQUIRE_KIND(l->v, tuple);
    REQUIRE(l->v->size() == 4);
    CHECK(l->v->elements()[3]->as_int() == 4);
  }
  {
    auto l = load(B("(t."));
    REQUIRE_KIND(l->v, tuple);
    CHECK(l->v->size() == 0);
  }
  {
    auto l = load(B("K\x01\x85."));
    REQUIRE_KIND(l->v, tuple);
    REQUIRE(l->v->size() == 1);
  }
  {
    auto l = load(B("K\x01K\x02\x86."));
    REQUIRE_KIND(l->v, tuple);
    REQUIRE(l->v->size() == 2);
    CHECK(l->v->elements()[0]->as_int() == 1);
    CHECK(l->v->elements()[1]->as_int() == 2);
  }
  {
    auto l = load(B("K\x01K\x02K\x03\x87."));
    REQUIRE_KIND(l->v, tuple);
    REQUIRE(l->v->size() == 3);
    CHECK(l->v->elements()[2]->as_int() == 3);
  }
}

TEST_CASE("EMPTY_DICT, DICT, SETITEM, SETITEMS") {
  {
    auto l = load(B("(I1\nI2\nS'k'\nI3\nd."));
    REQUIRE_KIND(l->v, dict);
    REQUIRE(l->v->size() == 2);
    CHECK(l->v->items()[0].first->as_int() == 1);  // non-string keys are kept
    CHECK(l->v->items()[0].second->as_int() == 2);
    REQUIRE(l->v->get("k") != nullptr);
    CHECK(l->v->get("k")->as_int() == 3);
    CHECK(l->v->type_name().empty());
  }
  {
    auto l = load(B("}X\x01\x00\x00\x00" "aK\x01s."));
    REQUIRE_KIND(l->v, dict);
    CHECK(l->v->at("a").as_int() == 1);
    CHECK(l->v->get("missing") == nullptr);
  }
  {
    auto l = load(B("}(X\x01\x00\x00\x00" "aK\x01X\x01\x00\x00\x00" "bK\x02u."));
    REQUIRE_KIND(l->v, dict);
    REQUIRE(l->v->size() == 2);
    CHECK(l->v->items()[0].first->as_str() == "a");  // insertion order
    CHECK(l->v->items()[1].first->as_str() == "b");
    CHECK(l->v->at("b").as_int() == 2);
  }
  {
    // A repeated key replaces the value, as in Python.
    auto l = load(B("}X\x01\x00\x00\x00" "aK\x01sX\x01\x00\x00\x00" "aK\x02s."));
    REQUIRE_KIND(l->v, dict);
    CHECK(l->v->size() == 1);
    CHECK(l->v->at("a").as_int() == 2);
  }
  {
    // Optimizer state dicts use int keys.
    auto l = load(B("}K\x00}sK\x01}s."));
    REQUIRE_KIND(l->v, dict);
    CHECK(l->v->size() == 2);
  }
}

TEST_CASE("EMPTY_SET, ADDITEMS, FROZENSET") {
  {
    auto l = load(B("\x80\x04\x8f(K\x01K\x02\x90(K\x03\x90."));
    REQUIRE_KIND(l->v, set);
    CHECK(l->v->size() == 3);
  }
  {
    // Python 3.11: pickle.dumps({1}, 4)
    auto l = load(B("\x80\x04\x95\x07\x00\x00\x00\x00\x00\x00\x00\x8f\x94(K\x01\x90."));
    REQUIRE_KIND(l->v, set);
    REQUIRE(l->v->size() == 1);
    CHECK(l->v->elements()[0]->as_int() == 1);
  }
  {
    auto l = load(B("\x80\x04(K\x01K\x02\x91."));
    REQUIRE_KIND(l->v, frozenset);
    CHECK(l->v->size() == 2);
  }
}

// ---------------------------------------------------------------------------
// Memo: references, not copies
// ---------------------------------------------------------------------------

TEST_CASE("PUT / GET (text memo) alias") {
  auto l = load(B("((lp0\ng0\nt."));
  REQUIRE_KIND(l->v, tuple);
  REQUIRE(l->v->size() == 2);
  CHECK_KIND(l->v->elements()[0], list);
  CHECK(l->v->elements()[0] == l->v->elements()[1]);
}

TEST_CASE("BINPUT / BINGET alias, and aliasing survives mutation") {
  // l = []; t = (l, l); l.append(1) is not expressible, but APPEND after GET is:
  auto l = load(B("]q\x00h\x00K\x01" "a0h\x00h\x00\x86."));
  REQUIRE_KIND(l->v, tuple);
  Value* a = l->v->elements()[0];
  CHECK(a == l->v->elements()[1]);
  REQUIRE_KIND(a, list);
  CHECK(a->size() == 1);  // the append through the memo reached the shared list
}

TEST_CASE("LONG_BINPUT / LONG_BINGET") {
  auto l = load(B("}r\xa0\x86\x01\x00j\xa0\x86\x01\x00\x86."));  // memo id 100000
  REQUIRE_KIND(l->v, tuple);
  CHECK_KIND(l->v->elements()[0], dict);
  CHECK(l->v->elements()[0] == l->v->elements()[1]);
}

TEST_CASE("MEMOIZE numbers entries by memo size, mixed with BINPUT") {
  // ] q5 -> memo{5: A}; ] MEMOIZE -> memo{5: A, 1: B} (len(memo) == 1)
  auto l = load(B("\x80\x04]q\x05]\x94h\x01h\x05\x86."));
  REQUIRE_KIND(l->v, tuple);
  // stack: A, B, B(get 1), A(get 5) -> TUPLE2 of (B, A); STOP returns it
  Value* first = l->v->elements()[0];
  Value* second = l->v->elements()[1];
  CHECK(first != second);
  CHECK_KIND(first, list);
  CHECK_KIND(second, list);
  {
    auto m = load(B("\x80\x04K\x01\x94h\x00\x86."));
    REQUIRE_KIND(m->v, tuple);
    CHECK(m->v->elements()[1]->as_int() == 1);
  }
}

TEST_CASE("PUT overwrites a memo slot") {
  auto l = load(B("]q\x00}q\x00h\x00."));
  CHECK_KIND(l->v, dict);
}

// ---------------------------------------------------------------------------
// Globals and calls
// ---------------------------------------------------------------------------

TEST_CASE("GLOBAL and STACK_GLOBAL produce a global; result.globals lists them") {
  {
    auto l = load(B("\x80\x02" "cfoo.bar\nBaz\nq\x00h\x00\x86."));
    REQUIRE_KIND(l->v, tuple);
    Value* g = l->v->elements()[0];
    REQUIRE_KIND(g, global);
    CHECK(g->module() == "foo.bar");
    CHECK(g->name() == "Baz");
    CHECK(g->qualified_name() == "foo.bar.Baz");
    REQUIRE(l->res.globals.size() == 1);
    CHECK(l->res.globals[0].module == "foo.bar");
    CHECK(l->res.globals[0].name == "Baz");
    CHECK(l->res.globals[0].verdict == ckpt::GlobalVerdict::unknown);
    CHECK(l->res.globals[0].first_offset == 2);
    CHECK(l->res.globals[0].count == 1);
  }
  {
    Pk p;
    p.proto(4).stack_global("foo.bar", "Baz").stop();
    auto l = load(p.s);
    REQUIRE_KIND(l->v, global);
    CHECK(l->v->module() == "foo.bar");
    CHECK(l->v->name() == "Baz");
    REQUIRE(l->res.globals.size() == 1);
    CHECK(l->res.globals[0].first_offset == 2 + 9 + 5);  // the STACK_GLOBAL opcode itself
  }
  {
    // Two references, counted; order of first use.
    Pk p;
    p.proto(2).global("a", "X").global("b", "Y").global("a", "X").tuple3().stop();
    auto l = load(p.s);
    REQUIRE(l->res.globals.size() == 2);
    CHECK(l->res.globals[0].module == "a");
    CHECK(l->res.globals[0].count == 2);
    CHECK(l->res.globals[0].first_offset == 2);
    CHECK(l->res.globals[1].module == "b");
    CHECK(l->res.globals[1].count == 1);
  }
}

TEST_CASE("classify_global") {
  using ckpt::GlobalVerdict;
  using ckpt::classify_global;
  CHECK(classify_global("collections", "OrderedDict") == GlobalVerdict::allowed);
  CHECK(classify_global("torch._utils", "_rebuild_tensor_v2") == GlobalVerdict::allowed);
  CHECK(classify_global("torch._utils", "_rebuild_parameter") == GlobalVerdict::allowed);
  CHECK(classify_global("torch", "FloatStorage") == GlobalVerdict::allowed);
  CHECK(classify_global("torch", "float32") == GlobalVerdict::allowed);
  CHECK(classify_global("torch", "Size") == GlobalVerdict::allowed);
  CHECK(classify_global("torch", "device") == GlobalVerdict::allowed);
  CHECK(classify_global("_codecs", "encode") == GlobalVerdict::allowed);
  CHECK(classify_global("builtins", "set") == GlobalVerdict::allowed);
  CHECK(classify_global("__builtin__", "set") == GlobalVerdict::allowed);
  CHECK(classify_global("numpy.core.multiarray", "_reconstruct") == GlobalVerdict::known);
  CHECK(classify_global("numpy._core.multiarray", "_reconstruct") == GlobalVerdict::known);
  CHECK(classify_global("numpy", "dtype") == GlobalVerdict::known);
  CHECK(classify_global("argparse", "Namespace") == GlobalVerdict::known);
  CHECK(classify_global("__main__", "Net") == GlobalVerdict::unknown);
  CHECK(classify_global("torch.nn.modules.linear", "Linear") == GlobalVerdict::unknown);
  CHECK(classify_global("os", "system") == GlobalVerdict::denied);
  CHECK(classify_global("__builtin__", "eval") == GlobalVerdict::denied);
  // Exact strings: no prefix or suffix matching.
  CHECK(classify_global("collections", "OrderedDictX") != GlobalVerdict::allowed);
  CHECK(classify_global("collections.x", "OrderedDict") != GlobalVerdict::allowed);
  CHECK(std::string(ckpt::global_verdict_name(GlobalVerdict::denied)) == "denied");
}

TEST_CASE("REDUCE of an unknown global -> opaque object (callable, args)") {
  auto l = load(B("\x80\x02" "c__main__\nfoo\nK\x01\x85R."));
  REQUIRE_KIND(l->v, object);
  REQUIRE_KIND(l->v->callable(), global);
  CHECK(l->v->callable()->qualified_name() == "__main__.foo");
  CHECK(l->v->qualified_name() == "__main__.foo");
  REQUIRE_KIND(l->v->args(), tuple);
  CHECK(l->v->args()->elements()[0]->as_int() == 1);
  CHECK(l->v->state() == nullptr);
  CHECK_FALSE(l->v->is_newobj());
}

TEST_CASE("NEWOBJ + BUILD of an unknown class -> opaque object with state") {
  // torch.save(model) of a __main__.Net: NEWOBJ(Net, ()) then BUILD(__dict__)
  auto l = load(B("\x80\x02" "c__main__\nNet\nq\x00)\x81q\x01}q\x02(X\x08\x00\x00\x00trainingq\x03\x88X\x01\x00\x00\x00kK\x05ub."));
  REQUIRE_KIND(l->v, object);
  CHECK(l->v->is_newobj());
  CHECK(l->v->qualified_name() == "__main__.Net");
  REQUIRE_KIND(l->v->callable(), global);
  REQUIRE_KIND(l->v->args(), tuple);
  CHECK(l->v->args()->size() == 0);
  REQUIRE_KIND(l->v->state(), dict);
  CHECK(l->v->state()->at("training").as_bool() == true);
  CHECK(l->v->state()->at("k").as_int() == 5);
}

TEST_CASE("SETITEMS / APPENDS into an opaque object (dict / list subclasses)") {
  auto l = load(B("\x80\x02" "c__main__\nMyDict\n)\x81(X\x01\x00\x00\x00" "aK\x01u."));
  REQUIRE_KIND(l->v, object);
  REQUIRE(l->v->object_items().size() == 1);
  CHECK(l->v->object_items()[0].first->as_str() == "a");
  auto m = load(B("\x80\x02" "c__main__\nMyList\n)\x81(K\x01K\x02" "e."));
  REQUIRE_KIND(m->v, object);
  CHECK(m->v->object_elements().size() == 2);
}

TEST_CASE("INST, OBJ, NEWOBJ_EX of an unknown class -> opaque object") {
  {
    auto l = load(B("(K\x01i__main__\nNet\n."));  // INST
    REQUIRE_KIND(l->v, object);
    CHECK(l->v->qualified_name() == "__main__.Net");
    REQUIRE(l->v->args() != nullptr);
    REQUIRE(l->v->args()->is_sequence());
    REQUIRE(l->v->args()->size() == 1);
    CHECK(l->v->args()->elements()[0]->as_int() == 1);
  }
  {
    auto l = load(B("(c__main__\nNet\nK\x01K\x02o."));  // OBJ
    REQUIRE_KIND(l->v, object);
    CHECK(l->v->qualified_name() == "__main__.Net");
    REQUIRE(l->v->args() != nullptr);
    REQUIRE(l->v->args()->is_sequence());
    CHECK(l->v->args()->size() == 2);
  }
  {
    auto l = load(B("\x80\x04\x8c\x08__main__\x8c\x03Net\x93K\x01\x85}\x92."));  // NEWOBJ_EX
    REQUIRE_KIND(l->v, object);
    CHECK(l->v->qualified_name() == "__main__.Net");
  }
}

TEST_CASE("PERSID and BINPERSID call persistent_load with the pid and the opcode offset") {
  ckpt::Document* seen_doc = nullptr;
  std::vector<std::string> pids;
  std::vector<uint64_t> offsets;
  ckpt::UnpickleOptions opts;
  Value* returned = nullptr;
  opts.persistent_load = [&](ckpt::Document& d, Value* pid, uint64_t offset) -> Value* {
    seen_doc = &d;
    REQUIRE_KIND(pid, string);
    pids.push_back(pid->as_str());
    offsets.push_back(offset);
    returned = d.integer(static_cast<int64_t>(pids.size()) * 100);
    return returned;
  };
  {
    auto l = load(B("\x80\x02Pfoo\n."), opts);
    CHECK(seen_doc == &l->doc);
    REQUIRE(pids.size() == 1);
    CHECK(pids[0] == "foo");
    CHECK(offsets[0] == 2);
    CHECK(l->v == returned);  // the callback's value is used as is
  }
  {
    auto l = load(B("\x80\x02X\x03\x00\x00\x00" "barQ."), opts);
    REQUIRE(pids.size() == 2);
    CHECK(pids[1] == "bar");
    CHECK(offsets[1] == 10);
    REQUIRE_KIND(l->v, integer);
    CHECK(l->v->as_int() == 200);
  }
}

TEST_CASE("EXT1/EXT2/EXT4, NEXT_BUFFER, READONLY_BUFFER -> unsupported_opcode") {
  const ckpt::UnpickleOptions opts;
  CHECK_FAILS(B("\x80\x02\x82\x01."), opts, ErrorCode::unsupported_opcode, 2);
  CHECK_FAILS(B("\x80\x02\x83\x01\x00."), opts, ErrorCode::unsupported_opcode, 2);
  CHECK_FAILS(B("\x80\x02\x84\x01\x00\x00\x00."), opts, ErrorCode::unsupported_opcode, 2);
  CHECK_FAILS(B("\x80\x05\x97."), opts, ErrorCode::unsupported_opcode, 2);
  CHECK_FAILS(B("\x80\x05" "C\x01z\x98."), opts, ErrorCode::unsupported_opcode, 5);
}

// ---------------------------------------------------------------------------
// The allowlist: interpreted constructors
// ---------------------------------------------------------------------------

TEST_CASE("OrderedDict: REDUCE + SETITEMS + BUILD({'_metadata': ...}) keeps _metadata as an attribute") {
  Pk p;
  p.proto(2).global("collections", "OrderedDict").binput(0).empty_tuple().reduce().binput(1);
  p.mark().binunicode("w").binint1(1).binunicode("b").binint1(2).setitems();
  p.empty_dict().binunicode("_metadata");
  p.binget(0).empty_tuple().reduce();                       // metadata OrderedDict
  p.binunicode("").empty_dict().binunicode("version").binint1(1).setitem().setitem();
  p.setitem().build().stop();
  auto l = load(p.s);
  REQUIRE_KIND(l->v, dict);
  CHECK(l->v->type_name() == "collections.OrderedDict");
  REQUIRE(l->v->size() == 2);
  CHECK(l->v->items()[0].first->as_str() == "w");
  CHECK(l->v->items()[1].first->as_str() == "b");
  CHECK(l->v->get("_metadata") == nullptr);
  REQUIRE(l->v->attrs() != nullptr);
  Value* md = l->v->attrs()->get("_metadata");
  REQUIRE_KIND(md, dict);
  CHECK(md->type_name() == "collections.OrderedDict");
  REQUIRE(md->get("") != nullptr);
  CHECK(md->at("").at("version").as_int() == 1);
}

TEST_CASE("torch 1.13 Linear state_dict: tensors, shared globals, _metadata attribute") {
  StorageTable st;
  st.storages["0"] = ckpt::Storage::from_bytes(DType::float32, f32_bytes({0.25f, -0.5f}));
  st.storages["1"] = ckpt::Storage::from_bytes(DType::float32, f32_bytes({3.0f}));
  ckpt::UnpickleOptions opts;
  st.install(opts);
  auto l = load(kLinearStateDict, opts);
  REQUIRE_KIND(l->v, dict);
  CHECK(l->v->type_name() == "collections.OrderedDict");
  CHECK(l->v->size() == 2);
  CHECK(l->v->get("_metadata") == nullptr);
  REQUIRE(l->v->attrs() != nullptr);
  REQUIRE_KIND(l->v->attrs()->get("_metadata"), dict);
  CHECK(l->v->attrs()->get("_metadata")->at("").at("version").as_int() == 1);

  REQUIRE(st.keys_seen == std::vector<std::string>{"0", "1"});
  CHECK(st.classes_seen == std::vector<std::string>{"torch.FloatStorage", "torch.FloatStorage"});
  CHECK(st.offsets_seen[0] == 143);  // the first BINPERSID ('Q')
  CHECK(kLinearStateDict[143] == 'Q');
  CHECK(st.offsets_seen[1] == 207);

  Value* w = l->v->get("weight");
  REQUIRE_KIND(w, tensor);
  const ckpt::Tensor& tw = w->tensor();
  CHECK(tw.dtype == DType::float32);
  CHECK(tw.shape == std::vector<int64_t>{1, 2});
  CHECK(tw.stride == std::vector<int64_t>{2, 1});
  CHECK(tw.storage_offset == 0);
  CHECK(tw.storage == st.storages["0"]);
  CHECK(tw.form == ckpt::TensorForm::v2);
  CHECK_FALSE(tw.requires_grad);
  CHECK_FALSE(tw.is_parameter);
  CHECK(as_f32(tw.to_contiguous()) == std::vector<float>{0.25f, -0.5f});
  Value* b = l->v->get("bias");
  REQUIRE_KIND(b, tensor);
  CHECK(b->tensor().shape == std::vector<int64_t>{1});
  CHECK(b->tensor().storage == st.storages["1"]);

  // walk_tensors lists both, in pickle order, with their key paths.
  std::vector<std::string> paths;
  ckpt::walk_tensors(*l->v, [&](const ckpt::TensorVisit& tv) {
    paths.push_back(tv.path);
    return true;
  });
  CHECK(paths == std::vector<std::string>{"weight", "bias"});
}

TEST_CASE("OrderedDict, Python 2 form: REDUCE(OrderedDict, ([[k, v], ...],))") {
  // LPIPS 2018 style: items as a list of 2-lists in the REDUCE args, py2 strings.
  auto l = load(B("\x80\x02" "ccollections\nOrderedDict\nq\x00]q\x01(]q\x02(U\x01" "aK\x01" "e]q\x03(U\x01" "bK\x02" "ee\x85Rq\x04."));
  REQUIRE_KIND(l->v, dict);
  CHECK(l->v->type_name() == "collections.OrderedDict");
  REQUIRE(l->v->size() == 2);
  CHECK(l->v->items()[0].first->as_str() == "a");
  CHECK(l->v->at("a").as_int() == 1);
  CHECK(l->v->at("b").as_int() == 2);
}

TEST_CASE("set via REDUCE(builtins.set / __builtin__.set, ([...],))") {
  for (const char* mod : {"builtins", "__builtin__"}) {
    CAPTURE(mod);
    Pk p;
    p.proto(2).global(mod, "set").empty_list().mark().binint1(1).binint1(2).appends().tuple1().reduce().stop();
    auto l = load(p.s);
    REQUIRE_KIND(l->v, set);
    CHECK(l->v->size() == 2);
  }
  // Python 3.11: pickle.dumps(frozenset({1}), 2)
  auto f = load(B("\x80\x02" "c__builtin__\nfrozenset\nq\x00]q\x01K\x01" "a\x85q\x02Rq\x03."));
  REQUIRE_KIND(f->v, frozenset);
  CHECK(f->v->size() == 1);
}

TEST_CASE("collections.Counter") {
  auto l = load(kCounter);
  REQUIRE_KIND(l->v, dict);
  CHECK(l->v->type_name() == "collections.Counter");
  CHECK(l->v->at("a").as_int() == 2);
}

TEST_CASE("collections.defaultdict: items, and the factory as an attribute") {
  auto l = load(kDefaultDict);
  REQUIRE_KIND(l->v, dict);
  CHECK(l->v->type_name() == "collections.defaultdict");
  REQUIRE(l->v->size() == 1);
  REQUIRE_KIND(l->v->get("a"), list);
  CHECK(l->v->at("a").at(0).as_int() == 1);
  REQUIRE(l->v->attrs() != nullptr);
  Value* f = l->v->attrs()->get("default_factory");
  REQUIRE_KIND(f, global);
  CHECK(f->name() == "list");
}

TEST_CASE("argparse.Namespace via NEWOBJ + BUILD(dict)") {
  auto l = load(kNamespace);
  REQUIRE_KIND(l->v, dict);
  CHECK(l->v->type_name() == "argparse.Namespace");
  REQUIRE(l->v->get("lr") != nullptr);
  CHECK(l->v->at("lr").as_float() == 0.5);
}

TEST_CASE("torch.Size, torch.device, dtype globals, TorchVersion") {
  {
    auto l = load(kTorchSize);
    REQUIRE_KIND(l->v, tuple);
    CHECK(l->v->type_name() == "torch.Size");
    REQUIRE(l->v->size() == 2);
    CHECK(l->v->elements()[0]->as_int() == 2);
    CHECK(l->v->elements()[1]->as_int() == 3);
  }
  {
    auto l = load(kDeviceCuda0);
    REQUIRE_KIND(l->v, device);
    CHECK(l->v->device() == "cuda:0");
  }
  {
    auto l = load(kDeviceCpu);
    REQUIRE_KIND(l->v, device);
    CHECK(l->v->device() == "cpu");
  }
  {
    auto l = load(B("\x80\x02" "ctorch\nfloat32\nq\x00."));
    REQUIRE_KIND(l->v, torch_dtype);
    CHECK(l->v->torch_dtype() == DType::float32);
  }
  {
    auto l = load(B("\x80\x02" "ctorch\nbfloat16\n."));
    REQUIRE_KIND(l->v, torch_dtype);
    CHECK(l->v->torch_dtype() == DType::bfloat16);
  }
  {
    auto l = load(B("\x80\x02" "ctorch\nfloat8_e4m3fn\n."));
    REQUIRE_KIND(l->v, torch_dtype);
    CHECK(l->v->torch_dtype() == DType::float8_e4m3fn);
  }
  {
    Pk p;
    p.proto(2).global("torch.torch_version", "TorchVersion").binunicode("2.1.0").tuple1().reduce().stop();
    auto l = load(p.s);
    REQUIRE_KIND(l->v, string);
    CHECK(l->v->as_str() == "2.1.0");
    CHECK(l->v->type_name() == "torch.torch_version.TorchVersion");
  }
}

TEST_CASE("bytes in protocol 2: _codecs.encode, builtins.bytes, bytearray; builtins.complex") {
  {
    auto l = load(kCodecsBytes);
    REQUIRE_KIND(l->v, bytes);
    CHECK(l->v->as_bytes() == B("\xff"));
  }
  {
    auto l = load(kByteArrayP2);
    REQUIRE_KIND(l->v, bytes);
    CHECK(l->v->as_bytes() == "ab");
    CHECK(l->v->type_name() == "builtins.bytearray");
  }
  {
    // CPython writes b'' at protocol 2 as REDUCE(__builtin__.bytes, ()).
    auto l = load(kEmptyBytesP2);
    REQUIRE_KIND(l->v, bytes);
    CHECK(l->v->as_bytes().empty());
  }
  {
    auto l = load(kComplex);
    REQUIRE_KIND(l->v, complex);
    CHECK(l->v->real() == 1.0);
    CHECK(l->v->imag() == 2.0);
  }
}

TEST_CASE("numpy arrays, both module spellings; numpy scalar; numpy.dtype") {
  std::string np2 = kNumpyArray;
  const std::string from = "numpy.core.multiarray";
  np2.replace(np2.find(from), from.size(), "numpy._core.multiarray");
  for (const std::string* bytes : {&kNumpyArray, static_cast<const std::string*>(&np2)}) {
    auto l = load(*bytes);
    REQUIRE_KIND(l->v, ndarray);
    const ckpt::NdArray& a = l->v->ndarray();
    CHECK(a.descr == "<f4");
    CHECK(a.shape == std::vector<int64_t>{3});
    CHECK_FALSE(a.fortran_order);
    CHECK_FALSE(a.is_scalar);
    REQUIRE_KIND(a.dtype, np_dtype);
    CHECK(a.dtype->np_descr() == "<f4");
    REQUIRE_KIND(a.data, bytes);
    CHECK(a.data->as_bytes() == B("\x00\x00\x00\x00\x00\x00\x80?\x00\x00\x00@"));
    // known, not unknown, not denied
    bool saw_reconstruct = false;
    for (const auto& g : l->res.globals)
      if (g.name == "_reconstruct") {
        saw_reconstruct = true;
        CHECK(g.verdict == ckpt::GlobalVerdict::known);
      }
    CHECK(saw_reconstruct);
  }
  {
    auto l = load(kNumpyScalar);
    REQUIRE_KIND(l->v, ndarray);
    const ckpt::NdArray& a = l->v->ndarray();
    CHECK(a.is_scalar);
    CHECK(a.descr == "<f8");
    CHECK(a.shape.empty());
    REQUIRE_KIND(a.data, bytes);
    CHECK(a.data->as_bytes() == B("\x00\x00\x00\x00\x00\x00\xe0?"));
  }
  {
    auto l = load(kNumpyDtype);
    REQUIRE_KIND(l->v, np_dtype);
    CHECK(l->v->np_descr() == "<f8");
  }
}

// ---------------------------------------------------------------------------
// Tensors
// ---------------------------------------------------------------------------

TEST_CASE("_rebuild_tensor_v2: a transposed view with an offset (torch 1.13 bytes)") {
  StorageTable st;
  st.storages["0"] = ckpt::Storage::from_bytes(DType::float32, f32_bytes({0, 1, 2, 3, 4, 5}));
  ckpt::UnpickleOptions opts;
  st.install(opts);
  auto l = load(kTransposedView, opts);
  REQUIRE_KIND(l->v, tensor);
  const ckpt::Tensor& t = l->v->tensor();
  CHECK(t.dtype == DType::float32);
  CHECK(t.shape == std::vector<int64_t>{2, 2});
  CHECK(t.stride == std::vector<int64_t>{1, 3});
  CHECK(t.storage_offset == 1);
  CHECK(t.storage == st.storages["0"]);
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.numel() == 4);
  CHECK(as_f32(t.to_contiguous()) == std::vector<float>{1, 4, 2, 5});
  CHECK(l->res.globals.size() == 3);  // _rebuild_tensor_v2, FloatStorage, OrderedDict
  for (const auto& g : l->res.globals) CHECK(g.verdict == ckpt::GlobalVerdict::allowed);
}

TEST_CASE("_rebuild_tensor_v2: storages shared between tensors stay shared") {
  StorageTable st;
  st.storages["0"] = ckpt::Storage::from_bytes(DType::float32, f32_bytes({0, 1, 2, 3}));
  ckpt::UnpickleOptions opts;
  st.install(opts);
  Pk p;
  p.proto(2).empty_dict();
  for (int i = 0; i < 2; ++i) {
    p.binunicode(i == 0 ? "a" : "b");
    p.global("torch._utils", "_rebuild_tensor_v2").mark();
    p.storage_pid("FloatStorage", "0", 4);
    p.binint1(static_cast<uint8_t>(i * 2)).binint1(2).tuple1().binint1(1).tuple1().newfalse();
    p.ordered_dict_empty().tuple().reduce().setitem();
  }
  p.stop();
  auto l = load(p.s, opts);
  REQUIRE_KIND(l->v, dict);
  REQUIRE_KIND(l->v->get("a"), tensor);
  REQUIRE_KIND(l->v->get("b"), tensor);
  CHECK(l->v->at("a").tensor().storage == l->v->at("b").tensor().storage);
  CHECK(l->v->at("b").tensor().storage_offset == 2);
  CHECK(as_f32(l->v->at("b").tensor().to_contiguous()) == std::vector<float>{2, 3});
}

TEST_CASE("_rebuild_parameter (torch 1.13 bytes)") {
  StorageTable st;
  st.storages["0"] = ckpt::Storage::from_bytes(DType::float32, f32_bytes({1, 1}));
  ckpt::UnpickleOptions opts;
  st.install(opts);
  auto l = load(kParameter, opts);
  REQUIRE_KIND(l->v, tensor);
  const ckpt::Tensor& t = l->v->tensor();
  CHECK(t.is_parameter);
  CHECK(t.requires_grad);
  CHECK(t.shape == std::vector<int64_t>{2});
  CHECK(t.stride == std::vector<int64_t>{1});
}

TEST_CASE("_rebuild_tensor_v3 with a dtype global and an UntypedStorage") {
  StorageTable st;
  // two bfloat16 values 1.0, -2.0 -> 0x3f80, 0xc000 (little-endian bytes)
  st.storages["0"] = ckpt::Storage::from_bytes(DType::uint8, {0x80, 0x3f, 0x00, 0xc0});
  ckpt::UnpickleOptions opts;
  st.install(opts);
  Pk p;
  p.proto(2).global("torch._utils", "_rebuild_tensor_v3").mark();
  p.storage_pid("UntypedStorage", "0", 4);
  p.binint1(0).binint1(2).tuple1().binint1(1).tuple1().newfalse().ordered_dict_empty();
  p.global("torch", "bfloat16").tuple().reduce().stop();
  auto l = load(p.s, opts);
  REQUIRE_KIND(l->v, tensor);
  const ckpt::Tensor& t = l->v->tensor();
  CHECK(t.dtype == DType::bfloat16);
  CHECK(t.form == ckpt::TensorForm::v3);
  CHECK(t.shape == std::vector<int64_t>{2});
  CHECK(t.nbytes() == 4);
  REQUIRE(t.storage != nullptr);
  CHECK(t.storage->nbytes() == 4);
  CHECK(t.to_contiguous() == std::vector<uint8_t>{0x80, 0x3f, 0x00, 0xc0});
}

TEST_CASE("_rebuild_tensor (torch <= 0.3, four arguments)") {
  StorageTable st;
  st.storages["k"] = ckpt::Storage::from_bytes(DType::float32, f32_bytes({7, 8, 9}));
  ckpt::UnpickleOptions opts;
  st.install(opts);
  Pk p;
  p.proto(2).global("torch._utils", "_rebuild_tensor").mark();
  p.storage_pid("FloatStorage", "k", 3);
  p.binint1(1).binint1(2).tuple1().binint1(1).tuple1().tuple().reduce().stop();
  auto l = load(p.s, opts);
  REQUIRE_KIND(l->v, tensor);
  CHECK(l->v->tensor().form == ckpt::TensorForm::v1);
  CHECK(as_f32(l->v->tensor().to_contiguous()) == std::vector<float>{8, 9});
}

TEST_CASE("_rebuild_from_type_v2 and _rebuild_parameter_with_state") {
  StorageTable st;
  st.storages["0"] = ckpt::Storage::from_bytes(DType::float32, f32_bytes({5, 6}));
  ckpt::UnpickleOptions opts;
  st.install(opts);
  // the 6 arguments of _rebuild_tensor_v2, as a tuple
  auto v2_args = [](Pk& p) {
    p.mark();
    p.storage_pid("FloatStorage", "0", 2);
    p.binint1(0).binint1(2).tuple1().binint1(1).tuple1().newfalse().ordered_dict_empty().tuple();
  };
  {
    // _rebuild_from_type_v2(func, new_type, args, state): a Tensor subclass
    Pk p;
    p.proto(2).global("torch._tensor", "_rebuild_from_type_v2").mark();
    p.global("torch._utils", "_rebuild_tensor_v2").global("torch", "Tensor");
    v2_args(p);
    p.empty_dict().tuple().reduce().stop();
    auto l = load(p.s, opts);
    REQUIRE_KIND(l->v, tensor);
    CHECK(as_f32(l->v->tensor().to_contiguous()) == std::vector<float>{5, 6});
  }
  {
    // _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state)
    Pk p;
    p.proto(2).global("torch._utils", "_rebuild_parameter_with_state").mark();
    p.global("torch._utils", "_rebuild_tensor_v2");
    v2_args(p);
    p.reduce();
    p.newtrue().ordered_dict_empty().empty_dict().tuple().reduce().stop();
    auto l = load(p.s, opts);
    REQUIRE_KIND(l->v, tensor);
    CHECK(l->v->tensor().is_parameter);
    CHECK(l->v->tensor().requires_grad);
  }
}

TEST_CASE("quantized and sparse tensors -> objects with an unsupported_reason (torch 1.13 bytes)") {
  {
    StorageTable st;
    st.storages["0"] = ckpt::Storage::from_bytes(DType::quint8, {2, 4});
    ckpt::UnpickleOptions opts;
    st.install(opts);
    auto l = load(kQTensor, opts);
    REQUIRE_KIND(l->v, object);
    CHECK(l->v->qualified_name() == "torch._utils._rebuild_qtensor");
    CHECK_FALSE(l->v->unsupported_reason().empty());
  }
  {
    StorageTable st;
    std::vector<uint8_t> idx(16, 0);
    idx[8] = 1;  // indices [[0], [1]] as int64
    st.storages["0"] = ckpt::Storage::from_bytes(DType::int64, idx);
    st.storages["1"] = ckpt::Storage::from_bytes(DType::float32, f32_bytes({1}));
    ckpt::UnpickleOptions opts;
    st.install(opts);
    auto l = load(kSparse, opts);
    REQUIRE_KIND(l->v, object);
    CHECK(l->v->qualified_name() == "torch._utils._rebuild_sparse_tensor");
    CHECK_FALSE(l->v->unsupported_reason().empty());
  }
}

TEST_CASE("_rebuild_meta_tensor_no_storage -> object with an unsupported_reason") {
  Pk p;
  p.proto(2).global("torch._utils", "_rebuild_meta_tensor_no_storage").mark();
  p.global("torch", "float32").binint1(2).tuple1().binint1(1).tuple1().newfalse().tuple().reduce().stop();
  auto l = load(p.s);
  REQUIRE_KIND(l->v, object);
  CHECK_FALSE(l->v->unsupported_reason().empty());
}

TEST_CASE("tensor rebuilds validate the extent against the storage, at the REDUCE") {
  StorageTable st;
  st.storages["0"] = ckpt::Storage::from_bytes(DType::float32, f32_bytes({0, 1, 2, 3}));
  ckpt::UnpickleOptions opts;
  st.install(opts);
  struct Case {
    const char* what;
    uint8_t offset, size, stride;
  };
  for (const Case& c : {Case{"size 5 > 4", 0, 5, 1}, Case{"offset 4 + 1", 4, 1, 1}, Case{"stride 2 x 3", 0, 3, 2}}) {
    CAPTURE(c.what);
    Pk p;
    p.proto(2).global("torch._utils", "_rebuild_tensor_v2").mark();
    p.storage_pid("FloatStorage", "0", 4);
    p.binint1(c.offset).binint1(c.size).tuple1().binint1(c.stride).tuple1().newfalse().ordered_dict_empty().tuple();
    const size_t at = p.pos();
    p.reduce().stop();
    CHECK_FAILS(p.s, opts, ErrorCode::invalid_tensor, at);
  }
}

TEST_CASE("values remember the offset of the opcode that created them") {
  auto l = load(B("\x80\x02]M\x00\x10" "a."));  // [4096]
  REQUIRE_KIND(l->v, list);
  CHECK(l->v->offset() == 2);
  CHECK(l->v->elements()[0]->offset() == 3);
  // None, True, False and 0..255 are shared, as in CPython: no offset.
  auto s = load(B("\x80\x02]K\x01" "aK\x01" "a."));
  REQUIRE_KIND(s->v, list);
  CHECK(s->v->elements()[0] == s->v->elements()[1]);
  CHECK(s->v->elements()[0]->is_shared_scalar());
  CHECK(s->v->elements()[0]->offset() == 0);
}

TEST_CASE("allow_unknown_globals=false keeps allowed and known globals working") {
  ckpt::UnpickleOptions opts;
  opts.allow_unknown_globals = false;
  CHECK_KIND(load(kNumpyArray, opts)->v, ndarray);
  CHECK_KIND(load(kNamespace, opts)->v, dict);
  CHECK_KIND(load(kCounter, opts)->v, dict);
  CHECK_KIND(load(kDeviceCuda0, opts)->v, device);
}

TEST_SUITE_END();

TEST_CASE("duplicate dict keys keep the first position and the last value, as in Python") {
  // pickle.loads(b'\x80\x02}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bK\x02X\x01\x00\x00\x00aK\x03u.')
  //   == {'a': 3, 'b': 2}; likewise 1 and True, and 1.0, are one key.
  auto l = load(B("\x80\x02}(X\x01\x00\x00\x00" "aK\x01X\x01\x00\x00\x00" "bK\x02X\x01\x00\x00\x00" "aK\x03u."));
  REQUIRE_KIND(l->v, dict);
  REQUIRE(l->v->size() == 2);
  CHECK(l->v->items()[0].first->as_str() == "a");
  CHECK(l->v->items()[0].second->as_int() == 3);
  CHECK(l->v->items()[1].first->as_str() == "b");
  auto n = load(B("\x80\x02}(K\x01X\x01\x00\x00\x00x\x88X\x01\x00\x00\x00yG?\xf0\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00zu."));
  REQUIRE_KIND(n->v, dict);
  REQUIRE(n->v->size() == 1);  // {1: 'z'}
  CHECK(n->v->items()[0].first->as_int() == 1);
  CHECK(n->v->items()[0].second->as_str() == "z");
  // Large dicts (hash index) agree.
  Pk p;
  p.proto(2).empty_dict().mark();
  for (int i = 0; i < 50; ++i) p.binunicode("k" + std::to_string(i % 20)).binint1(static_cast<uint8_t>(i));
  p.setitems().stop();
  auto big = load(p.s);
  REQUIRE(big->v->size() == 20);
  CHECK(big->v->at("k0").as_int() == 40);
  CHECK(big->v->at("k19").as_int() == 39);
  CHECK(big->v->items()[5].first->as_str() == "k5");
}
