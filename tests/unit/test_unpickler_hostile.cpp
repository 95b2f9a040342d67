// tests/unit/test_unpickler_hostile.cpp - hostile pickles (docs/reliability.md T6):
// every one must end in a ckpt::Error with the exact code and the offset of the
// offending opcode, quickly, without executing, allocating or recursing without bound.
#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/checkpoint.hpp"
#include "ckpt/dtype.hpp"
#include "ckpt/error.hpp"
#include "ckpt/limits.hpp"
#include "ckpt/pickle.hpp"
#include "ckpt/source.hpp"
#include "ckpt/tensor.hpp"
#include "ckpt/value.hpp"
#include "pickle_builder.hpp"

using namespace testpk;

namespace {

using ckpt::DType;
using ckpt::ErrorCode;
using ckpt::Kind;
using ckpt::Value;

template <class F>
double seconds_of(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool code_in(int code, std::initializer_list<ErrorCode> allowed) {
  for (ErrorCode c : allowed)
    if (code == static_cast<int>(c)) return true;
  return false;
}

const ckpt::UnpickleOptions kDefault{};

// ---- a minimal STORED zip writer (for Checkpoint::open tests) ----

uint32_t crc32(std::string_view data) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : data) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

std::vector<uint8_t> make_zip(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out, cd;
  auto le = [](std::string& s, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  for (const auto& [name, data] : entries) {
    const uint32_t crc = crc32(data);
    const uint64_t off = out.size();
    le(out, 0x04034b50, 4); le(out, 20, 2); le(out, 0, 2); le(out, 0, 2); le(out, 0, 2); le(out, 0, 2);
    le(out, crc, 4); le(out, data.size(), 4); le(out, data.size(), 4);
    le(out, name.size(), 2); le(out, 0, 2);
    out += name;
    out += data;
    le(cd, 0x02014b50, 4); le(cd, 20, 2); le(cd, 20, 2); le(cd, 0, 2); le(cd, 0, 2); le(cd, 0, 2); le(cd, 0, 2);
    le(cd, crc, 4); le(cd, data.size(), 4); le(cd, data.size(), 4);
    le(cd, name.size(), 2); le(cd, 0, 2); le(cd, 0, 2); le(cd, 0, 2); le(cd, 0, 2); le(cd, 0, 4);
    le(cd, off, 4);
    cd += name;
  }
  const uint64_t cd_off = out.size();
  out += cd;
  le(out, 0x06054b50, 4); le(out, 0, 2); le(out, 0, 2);
  le(out, entries.size(), 2); le(out, entries.size(), 2);
  le(out, cd.size(), 4); le(out, cd_off, 4); le(out, 0, 2);
  return std::vector<uint8_t>(out.begin(), out.end());
}

std::string f32le(std::initializer_list<float> xs) {
  std::string out(xs.size() * 4, '\0');
  size_t i = 0;
  for (float x : xs) std::memcpy(out.data() + 4 * i++, &x, 4);
  return out;
}

ckpt::Checkpoint open_zip(const std::string& pkl, const std::string& record0) {
  std::vector<std::pair<std::string, std::string>> entries = {
      {"archive/data.pkl", pkl}, {"archive/data/0", record0}, {"archive/version", "3\n"}};
  return ckpt::Checkpoint::open(ckpt::Source::from_bytes(make_zip(entries), "hostile.pt"));
}

}  // namespace

TEST_SUITE_BEGIN("unpickler-hostile");

// ---------------------------------------------------------------------------
// Denied globals
// ---------------------------------------------------------------------------

namespace {
const std::vector<std::array<const char*, 2>> kDenied = {
    {"os", "system"},           {"posix", "system"},          {"builtins", "eval"},
    {"builtins", "exec"},       {"builtins", "getattr"},      {"__builtin__", "eval"},
    {"__builtin__", "getattr"}, {"subprocess", "Popen"},      {"runpy", "_run_code"},
    {"types", "CodeType"},      {"io", "FileIO"},             {"_io", "FileIO"},
    {"importlib", "import_module"}, {"pickle", "loads"},      {"torch", "load"},
};
// The rest of reliability.md T6's callables.
const std::vector<std::array<const char*, 2>> kDeniedT6 = {
    {"nt", "system"},        {"builtins", "compile"}, {"builtins", "__import__"},
    {"builtins", "open"},    {"marshal", "loads"},    {"subprocess", "check_output"},
    {"operator", "attrgetter"}, {"operator", "methodcaller"},
};

enum class Via { global, stack_global };

/// Calling m.n on one string argument - GLOBAL (protocol 2) or STACK_GLOBAL
/// (protocol 4), (arg,), REDUCE - fails with unsafe_global at that opcode.
void check_call_refused(std::string_view m, std::string_view n, Via via, std::string_view arg = "id") {
  Pk p;
  size_t at = 2;
  if (via == Via::global) {
    p.proto(2).global(m, n);
  } else {
    p.proto(4).short_binunicode(m).short_binunicode(n);
    at = p.pos();
    p.op(0x93);
  }
  p.binunicode(arg).tuple1().reduce().stop();
  CHECK_FAILS(p.s, kDefault, ErrorCode::unsafe_global, at);
}

/// classify_global says m.n is denied, and calling it is refused (check_call_refused).
void check_denied(const char* m, const char* n, Via via, std::string_view arg = "id") {
  const std::string mod(m), name(n);
  CAPTURE(mod);
  CAPTURE(name);
  CHECK(ckpt::classify_global(m, n) == ckpt::GlobalVerdict::denied);
  check_call_refused(m, n, via, arg);
}
}  // namespace

TEST_CASE("denied globals via GLOBAL -> unsafe_global at the GLOBAL opcode") {
  for (const auto& [m, n] : kDenied) {
    const std::string mod(m), name(n);
    CAPTURE(mod);
    CAPTURE(name);
    CHECK(ckpt::classify_global(m, n) == ckpt::GlobalVerdict::denied);
    // GLOBAL m n; ('id',); REDUCE
    check_call_refused(m, n, Via::global);
    // Naming it is already refused, called or not.
    Pk q;
    q.proto(2).global(m, n).stop();
    CHECK_FAILS(q.s, kDefault, ErrorCode::unsafe_global, 2);
  }
}

TEST_CASE("denied globals via STACK_GLOBAL -> unsafe_global at the STACK_GLOBAL opcode") {
  for (const auto& [m, n] : kDenied) {
    const std::string mod(m), name(n);
    CAPTURE(mod);
    CAPTURE(name);
    check_call_refused(m, n, Via::stack_global);
  }
}

TEST_CASE("STACK_GLOBAL names fed through the memo are resolved from the real stack") {
  // The module and name strings are memoised, popped, and fetched back with
  // BINGET: a scanner that walks back over opcodes sees no strings before 0x93.
  Pk p;
  p.proto(4).short_binunicode("os").binput(0).pop().short_binunicode("system").binput(1).pop();
  p.binget(0).binget(1);
  const size_t at = p.pos();
  p.op(0x93).binunicode("id").tuple1().reduce().stop();
  CHECK_FAILS(p.s, kDefault, ErrorCode::unsafe_global, at);
}

TEST_CASE("the rest of T6's callables are denied too") {
  for (const auto& [m, n] : kDeniedT6) check_denied(m, n, Via::global);
}

TEST_CASE("denied globals stay denied with INST and OBJ") {
  // INST: MARK args INST module\nname\n
  CHECK_FAILS(B("(S'id'\nios\nsystem\n."), kDefault, ErrorCode::unsafe_global, 7);
  // OBJ: MARK cls args OBJ
  CHECK_FAILS(B("(cos\nsystem\nS'id'\no."), kDefault, ErrorCode::unsafe_global, 1);
}

TEST_CASE("REDUCE whose callable is not a global -> unsafe_global") {
  CHECK_FAILS(B("\x80\x02])R."), kDefault, ErrorCode::unsafe_global, 4);
  CHECK_FAILS(B("\x80\x02}K\x01\x85R."), kDefault, ErrorCode::unsafe_global, 6);
  // The result of an opaque call is not callable either.
  CHECK_FAILS(B("\x80\x02" "c__main__\nf\n)R)R."), kDefault, ErrorCode::unsafe_global, 17);
}

TEST_CASE("dotted names reach denied callables through getattr chains (protocol >= 4)") {
  // CPython's find_class resolves a dotted name with getattr at protocol >= 4:
  // STACK_GLOBAL('__main__', 'os.system') is os.system in any script that
  // imported os. Exact-string matching on the module alone misses these.
  const std::vector<std::array<const char*, 2>> dotted = {
      {"__main__", "os.system"},
      {"torch.nn.modules.module", "torch.load"},
      {"numpy", "lib.npyio.os.system"},
  };
  for (const auto& [m, n] : dotted) check_denied(m, n, Via::stack_global);
}

TEST_CASE("more code-execution and file-I/O entry points are denied") {
  // pickle.hpp: denied = "code execution or I/O". Each of these runs a shell
  // command, loads native code, or creates/reads arbitrary files when called.
  const std::vector<std::array<const char*, 2>> more = {
      {"pydoc", "pipepager"},                  // os.popen(cmd)
      {"torch.utils.collect_env", "run"},      // subprocess, shell=True
      {"_posixsubprocess", "fork_exec"},
      {"numpy.ctypeslib", "load_library"},     // dlopen
      {"venv", "create"},                      // runs ensurepip
      {"gzip", "open"},        {"bz2", "open"},         {"lzma", "open"},
      {"tarfile", "open"},     {"zipfile", "ZipFile"},  {"shelve", "open"},
      {"sqlite3", "connect"},  {"logging", "FileHandler"}, {"linecache", "getline"},
      {"numpy", "memmap"},     {"numpy", "save"},       {"numpy", "genfromtxt"},
  };
  for (const auto& [m, n] : more) check_denied(m, n, Via::global, "x");
}

TEST_CASE("allow_unknown_globals=false: an unknown global is refused like weights_only") {
  ckpt::UnpickleOptions strict;
  strict.allow_unknown_globals = false;
  CHECK_FAILS(B("\x80\x02" "c__main__\nNet\n)\x81}b."), strict, ErrorCode::unsafe_global, 2);
  Pk p;
  p.proto(4).short_binunicode("__main__").short_binunicode("Net");
  const size_t at = p.pos();
  p.op(0x93).empty_tuple().newobj().stop();
  CHECK_FAILS(p.s, strict, ErrorCode::unsafe_global, at);
  // The same pickle is an opaque object by default.
  ckpt::Document doc;
  auto r = ckpt::unpickle(as_span(p.s), doc, kDefault);
  REQUIRE_KIND(r.value, object);
  REQUIRE(r.globals.size() == 1);
  CHECK(r.globals[0].verdict == ckpt::GlobalVerdict::unknown);
}

// ---------------------------------------------------------------------------
// Type rules per opcode
// ---------------------------------------------------------------------------

TEST_CASE("SETITEM(S) on a non-dict, APPEND(S) on a non-list, ADDITEMS on a non-set, BUILD on a list") {
  // SETITEM on a list (CVE-2026-24747)
  CHECK_FAILS(B("\x80\x02]K\x01K\x02s."), kDefault, ErrorCode::malformed_pickle, 7);
  CHECK_FAILS(B("\x80\x02](K\x01K\x02u."), kDefault, ErrorCode::malformed_pickle, 8);
  CHECK_FAILS(B("\x80\x02)K\x01K\x02s."), kDefault, ErrorCode::malformed_pickle, 7);   // tuple
  CHECK_FAILS(B("\x80\x02X\x00\x00\x00\x00K\x01K\x02s."), kDefault, ErrorCode::malformed_pickle, 11);  // str
  CHECK_FAILS(B("\x80\x02K\x05K\x01K\x02s."), kDefault, ErrorCode::malformed_pickle, 8);  // int
  // APPEND(S) on a dict, a tuple, a set
  CHECK_FAILS(B("\x80\x02}K\x01" "a."), kDefault, ErrorCode::malformed_pickle, 5);
  CHECK_FAILS(B("\x80\x02}(K\x01" "e."), kDefault, ErrorCode::malformed_pickle, 6);
  CHECK_FAILS(B("\x80\x02)K\x01" "a."), kDefault, ErrorCode::malformed_pickle, 5);
  CHECK_FAILS(B("\x80\x04\x8fK\x01" "a."), kDefault, ErrorCode::malformed_pickle, 5);
  // ADDITEMS on a list and on a dict
  CHECK_FAILS(B("\x80\x04](K\x01\x90."), kDefault, ErrorCode::malformed_pickle, 6);
  CHECK_FAILS(B("\x80\x04}(K\x01\x90."), kDefault, ErrorCode::malformed_pickle, 6);
  // BUILD on a list, on an int
  CHECK_FAILS(B("\x80\x02]}b."), kDefault, ErrorCode::malformed_pickle, 4);
  CHECK_FAILS(B("\x80\x02K\x01}b."), kDefault, ErrorCode::malformed_pickle, 5);
}

TEST_CASE("unhashable set elements are refused like unhashable dict keys") {
  // CPython: TypeError: unhashable type: 'list'. The dict-key rule already holds:
  CHECK_FAILS(B("\x80\x02}]K\x01s."), kDefault, ErrorCode::malformed_pickle, 6);
  // ... and sets must follow it: ADDITEMS, FROZENSET, REDUCE(builtins.set, ([[]],))
  CHECK_FAILS(B("\x80\x04\x8f(]\x90."), kDefault, ErrorCode::malformed_pickle, 5);
  CHECK_FAILS(B("\x80\x04(}\x91."), kDefault, ErrorCode::malformed_pickle, 4);
  CHECK_FAILS(B("\x80\x02" "c__builtin__\nset\n]]a\x85R."), kDefault, ErrorCode::malformed_pickle, 23);
}

TEST_CASE("odd item counts, bad REDUCE args, bad STACK_GLOBAL operands -> malformed_pickle") {
  CHECK_FAILS(B("}(K\x01u."), kDefault, ErrorCode::malformed_pickle, 4);
  CHECK_FAILS(B("(K\x01" "d."), kDefault, ErrorCode::malformed_pickle, 3);
  // REDUCE(OrderedDict, 1): the arguments must be a tuple
  CHECK_FAILS(B("ccollections\nOrderedDict\nK\x01R."), kDefault, ErrorCode::malformed_pickle, 27);
  CHECK_FAILS(B("\x80\x04K\x01K\x02\x93."), kDefault, ErrorCode::malformed_pickle, 6);
}

// ---------------------------------------------------------------------------
// Stack, mark and memo misuse; truncation
// ---------------------------------------------------------------------------

TEST_CASE("stack underflow -> malformed_pickle") {
  CHECK_FAILS(B("\x80\x02" "a."), kDefault, ErrorCode::malformed_pickle, 2);   // APPEND
  CHECK_FAILS(B("0."), kDefault, ErrorCode::malformed_pickle, 0);              // POP
  CHECK_FAILS(B("."), kDefault, ErrorCode::malformed_pickle, 0);               // STOP, empty stack
  CHECK_FAILS(B("K\x01\x86."), kDefault, ErrorCode::malformed_pickle, 2);      // TUPLE2 of one
  CHECK_FAILS(B("K\x01\x87."), kDefault, ErrorCode::malformed_pickle, 2);      // TUPLE3 of one
  CHECK_FAILS(B("2."), kDefault, ErrorCode::malformed_pickle, 0);              // DUP
  CHECK_FAILS(B("R."), kDefault, ErrorCode::malformed_pickle, 0);              // REDUCE
  CHECK_FAILS(B("q\x00."), kDefault, ErrorCode::malformed_pickle, 0);          // BINPUT
  CHECK_FAILS(B("\x94."), kDefault, ErrorCode::malformed_pickle, 0);           // MEMOIZE
  CHECK_FAILS(B("\x80\x04\x8c\x01" "a\x93."), kDefault, ErrorCode::malformed_pickle, 5);  // STACK_GLOBAL
}

TEST_CASE("mark underflow -> malformed_pickle") {
  CHECK_FAILS(B("K\x01t."), kDefault, ErrorCode::malformed_pickle, 2);   // TUPLE
  CHECK_FAILS(B("]K\x01" "e."), kDefault, ErrorCode::malformed_pickle, 3);  // APPENDS
  CHECK_FAILS(B("1."), kDefault, ErrorCode::malformed_pickle, 0);        // POP_MARK
  CHECK_FAILS(B("K\x01l."), kDefault, ErrorCode::malformed_pickle, 2);   // LIST
  CHECK_FAILS(B("K\x01" "d."), kDefault, ErrorCode::malformed_pickle, 2);  // DICT
  CHECK_FAILS(B("\x80\x04K\x01\x91."), kDefault, ErrorCode::malformed_pickle, 4);  // FROZENSET
  // A MARK cannot be an operand: APPEND with a mark on top.
  CHECK_FAILS(B("](a."), kDefault, ErrorCode::malformed_pickle, 2);
}

TEST_CASE("GET of a missing memo id -> malformed_pickle") {
  CHECK_FAILS(B("h\x05."), kDefault, ErrorCode::malformed_pickle, 0);
  CHECK_FAILS(B("j\x05\x00\x00\x00."), kDefault, ErrorCode::malformed_pickle, 0);
  CHECK_FAILS(B("g5\n."), kDefault, ErrorCode::malformed_pickle, 0);
  CHECK_FAILS(B("]q\x00h\x01."), kDefault, ErrorCode::malformed_pickle, 3);
  CHECK_FAILS(B("gx\n."), kDefault, ErrorCode::malformed_pickle, 0);  // not a number
}

TEST_CASE("missing STOP -> malformed_pickle; input ending inside an operand -> truncated") {
  // error.hpp: malformed_pickle covers "missing STOP"; truncated is "the input
  // ends before a structure does" (here: an opcode's operand).
  {
    const Failure f = failure_of(B("\x80\x02K\x01"), kDefault);
    INFO(f.what);
    CHECK(f.threw);
    CHECK(f.code == static_cast<int>(ErrorCode::malformed_pickle));
    CHECK(f.has_offset);
    CHECK(f.offset <= 4);
  }
  {
    const Failure f = failure_of(B("\x80\x02]K\x01" "a"), kDefault);
    INFO(f.what);
    CHECK(f.code == static_cast<int>(ErrorCode::malformed_pickle));
  }
  {
    const Failure f = failure_of(std::string(), kDefault);
    INFO(f.what);
    CHECK(f.threw);
    CHECK(code_in(f.code, {ErrorCode::malformed_pickle, ErrorCode::truncated}));
  }
  CHECK_FAILS(B("\x80\x02X\x05\x00"), kDefault, ErrorCode::truncated, 2);            // length cut
  CHECK_FAILS(B("\x80\x02X\x05\x00\x00\x00" "ab"), kDefault, ErrorCode::truncated, 2);  // payload cut
  CHECK_FAILS(B("\x80\x02X\x05\x00\x00\x00" "ab."), kDefault, ErrorCode::truncated, 2);  // STOP is payload
  CHECK_FAILS(B("J\x01\x00"), kDefault, ErrorCode::truncated, 0);
  CHECK_FAILS(B("G\x3f\xf0"), kDefault, ErrorCode::truncated, 0);
  CHECK_FAILS(B("\x8a\x09\x00\x00"), kDefault, ErrorCode::truncated, 0);
  CHECK_FAILS(B("\x80"), kDefault, ErrorCode::truncated, 0);
  CHECK_FAILS(B("cos\nsys"), kDefault, ErrorCode::truncated, 0);  // GLOBAL line without newline
  CHECK_FAILS(B("I12"), kDefault, ErrorCode::truncated, 0);
}

TEST_CASE("bytes that are no opcode are refused") {
  for (const std::string& b : {B("\xff."), B("\x99."), B("\x00."), B("\x80\x02\xfe.")}) {
    const Failure f = failure_of(b, kDefault);
    INFO(f.what);
    CHECK(f.threw);
    CHECK(code_in(f.code, {ErrorCode::malformed_pickle, ErrorCode::unsupported_opcode}));
  }
}

TEST_CASE("persistent ids without a persistent_load are an error at the opcode") {
  const Failure f = failure_of(B("\x80\x02X\x03\x00\x00\x00" "fooQ."), kDefault);
  INFO(f.what);
  CHECK(f.threw);
  CHECK(f.has_offset);
  CHECK(f.offset == 10);
  const Failure g = failure_of(B("\x80\x02Pfoo\n."), kDefault);
  INFO(g.what);
  CHECK(g.threw);
  CHECK(g.offset == 2);
}

// ---------------------------------------------------------------------------
// Resource bombs
// ---------------------------------------------------------------------------

TEST_CASE("10^6 nested MARKs -> limit_exceeded, fast") {
  const std::string bomb = std::string(1000000, '(') + ".";
  const Failure f = failure_of(bomb, kDefault);
  INFO(f.what);
  CHECK(f.code == static_cast<int>(ErrorCode::limit_exceeded));
  CHECK(f.has_offset);
  CHECK(f.offset >= 990);   // at the mark that crossed max_depth = 1000,
  CHECK(f.offset <= 1010);  // not at the end of the input
  CHECK(f.seconds < 1.0);
}

TEST_CASE("10^6 TUPLE1 chain -> limit_exceeded, fast") {
  const std::string bomb = B("K\x01") + std::string(1000000, '\x85') + ".";
  const Failure f = failure_of(bomb, kDefault);
  INFO(f.what);
  CHECK(f.code == static_cast<int>(ErrorCode::limit_exceeded));
  CHECK(f.offset >= 2 + 990);
  CHECK(f.offset <= 2 + 1010);
  CHECK(f.seconds < 1.0);
}

TEST_CASE("10^6 EMPTY_LIST+APPEND nesting (bottom-up, via the memo) -> limit_exceeded, fast") {
  // ] q0 { 0 ] h0 a q0 } x 10^6 .   : each round wraps the previous list in a new one
  std::string bomb = B("]q\x00");
  for (int i = 0; i < 1000000; ++i) bomb += B("0]h\x00" "aq\x00");
  bomb += ".";
  const Failure f = failure_of(bomb, kDefault);
  INFO(f.what);
  CHECK(f.code == static_cast<int>(ErrorCode::limit_exceeded));
  CHECK(f.has_offset);
  CHECK(f.offset < 3 + 7 * 1010);
  CHECK(bomb[f.offset] == 'a');  // the APPEND that made it too deep
  CHECK(f.seconds < 1.0);
}

TEST_CASE("EMPTY_LIST + APPENDS and EMPTY_DICT + SETITEM nesting -> limit_exceeded") {
  {
    std::string bomb = B("]q\x00");
    for (int i = 0; i < 100000; ++i) bomb += B("0](h\x00" "eq\x00");
    bomb += ".";
    const Failure f = failure_of(bomb, kDefault);
    INFO(f.what);
    CHECK(f.code == static_cast<int>(ErrorCode::limit_exceeded));
    CHECK(f.seconds < 1.0);
  }
  {
    std::string bomb = B("}q\x00");
    for (int i = 0; i < 100000; ++i) bomb += B("0}K\x01h\x00sq\x00");
    bomb += ".";
    const Failure f = failure_of(bomb, kDefault);
    INFO(f.what);
    CHECK(f.code == static_cast<int>(ErrorCode::limit_exceeded));
    CHECK(f.seconds < 1.0);
  }
}

TEST_CASE("nesting built top-down through the memo: walks stop at max_depth") {
  // ] q0 { h0 ] q0 a 0 } x N . : each round appends a fresh list to the innermost
  // one, so no container is ever wrapped after the fact. Python builds this
  // happily; whatever the unpickler decides, nothing may recurse without bound.
  const int n = 200000;
  std::string bomb = B("]q\x00");
  for (int i = 0; i < n; ++i) bomb += B("h\x00]q\x00" "a0");
  bomb += ".";
  ckpt::Document doc;
  Value* root = nullptr;
  try {
    root = ckpt::unpickle(as_span(bomb), doc, kDefault).value;
  } catch (const ckpt::Error& e) {
    INFO(e.what());
    CHECK(e.code() == ErrorCode::limit_exceeded);
  }
  if (root) {
    bool threw = false;
    const double s = seconds_of([&] {
      try {
        ckpt::walk_tensors(*root, [](const ckpt::TensorVisit&) { return true; });
      } catch (const ckpt::Error& e) {
        threw = true;
        CHECK(e.code() == ErrorCode::limit_exceeded);
      }
    });
    CHECK(threw);
    CHECK(s < 1.0);
    std::string r;
    CHECK(seconds_of([&] { r = ckpt::repr(*root); }) < 1.0);
    CHECK(r.size() < 1000);
  }
}

TEST_CASE("BINUNICODE8 / BINBYTES8 / BYTEARRAY8 lengths of 2^40..2^64-1: no allocation, fast") {
  for (uint8_t opcode : {uint8_t{0x8d}, uint8_t{0x8e}, uint8_t{0x96}}) {
    for (uint64_t len : {uint64_t{1} << 32, uint64_t{1} << 40, uint64_t{1} << 62, ~uint64_t{0}}) {
      CAPTURE(int(opcode));
      CAPTURE(len);
      Pk p;
      p.proto(5).op(opcode).le(len, 8).raw("abc").stop();
      const Failure f = failure_of(p.s, kDefault);
      INFO(f.what);
      CHECK(code_in(f.code, {ErrorCode::truncated, ErrorCode::limit_exceeded}));
      CHECK(f.offset == 2);
      CHECK(f.seconds < 1.0);
    }
  }
}

TEST_CASE("32-bit lengths, LONG4 and FRAME lengths past the input") {
  const std::vector<std::string> cases = {
      B("X\xff\xff\xff\xff" "abc."),          // BINUNICODE 4 GiB
      B("B\xff\xff\xff\xff" "abc."),          // BINBYTES
      B("T\xff\xff\xff\xff" "abc."),          // BINSTRING (negative in CPython)
      B("\x8b\xff\xff\xff\x7f" "abc."),      // LONG4 2 GiB
      B("\x8b\xff\xff\xff\xff" "abc."),      // LONG4 negative count
  };
  for (const auto& c : cases) {
    const Failure f = failure_of(c, kDefault);
    INFO(f.what);
    CHECK(code_in(f.code, {ErrorCode::truncated, ErrorCode::limit_exceeded, ErrorCode::malformed_pickle}));
    CHECK(f.offset == 0);
    CHECK(f.seconds < 1.0);
  }
  Pk p;
  p.proto(4).op(0x95).le(uint64_t{1} << 62, 8).binint1(1).stop();
  const Failure f = failure_of(p.s, kDefault);
  INFO(f.what);
  CHECK(code_in(f.code, {ErrorCode::truncated, ErrorCode::limit_exceeded, ErrorCode::malformed_pickle}));
  CHECK(f.offset == 2);
}

TEST_CASE("configured limits are honoured exactly where they are crossed") {
  {
    ckpt::UnpickleOptions o;
    o.limits.max_string_bytes = 4;
    CHECK_FAILS(B("\x80\x02X\x05\x00\x00\x00hello."), o, ErrorCode::limit_exceeded, 2);
    CHECK_FAILS(B("\x80\x04\x8e\x05\x00\x00\x00\x00\x00\x00\x00hello."), o, ErrorCode::limit_exceeded, 2);
    ckpt::Document doc;
    CHECK(ckpt::unpickle(as_span(B("\x80\x02X\x04\x00\x00\x00hell.")), doc, o).value->as_str() == "hell");
  }
  {
    ckpt::UnpickleOptions o;
    o.limits.max_bigint_bytes = 4;
    CHECK_FAILS(B("\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00."), o, ErrorCode::limit_exceeded, 0);
  }
  {
    ckpt::UnpickleOptions o;
    o.limits.max_stack = 10;
    std::string many;
    for (int i = 0; i < 20; ++i) many += B("K\x01");
    many += ".";
    const Failure f = failure_of(many, o);
    INFO(f.what);
    CHECK(f.code == static_cast<int>(ErrorCode::limit_exceeded));
    CHECK(f.offset >= 16);
    CHECK(f.offset <= 22);
  }
  {
    // The tree budget: 10^5 empty lists (4 bytes of pickle each) against a
    // 1 MiB budget stop after ~4,000 values, at an offset inside the run; a
    // list of 10^5 Nones fills container slots, which count too.
    ckpt::UnpickleOptions o;
    o.limits.max_tree_bytes = 1u << 20;
    std::string lists = B("\x80\x02");
    for (int i = 0; i < 100000; ++i) lists += "]";
    lists += ".";
    Failure f = failure_of(lists, o);
    INFO(f.what);
    CHECK(f.code == static_cast<int>(ErrorCode::limit_exceeded));
    CHECK(f.what.find("max_tree_bytes") != std::string::npos);
    CHECK(f.offset > 2);
    CHECK(f.offset < 10000);
    std::string nones = B("\x80\x02](");
    for (int i = 0; i < 100000; ++i) nones += "N";
    nones += "e.";
    f = failure_of(nones, o);
    CHECK(f.code == static_cast<int>(ErrorCode::limit_exceeded));
    // Within the default budget, the same shapes load.
    ckpt::Document doc;
    CHECK(ckpt::unpickle(as_span(nones), doc, ckpt::UnpickleOptions{}).value->elements().size() == 100000);
  }
  {
    ckpt::UnpickleOptions o;
    o.limits.max_depth = 3;
    const Failure f = failure_of(B("((((((((((."), o);
    INFO(f.what);
    CHECK(f.code == static_cast<int>(ErrorCode::limit_exceeded));
    CHECK(f.offset >= 2);
    CHECK(f.offset <= 4);
    // well within the default limit: 100 nested lists are fine
    std::string ok = B("]q\x00");
    for (int i = 0; i < 100; ++i) ok += B("0]h\x00" "aq\x00");
    ok += ".";
    ckpt::Document doc;
    CHECK(ckpt::unpickle(as_span(ok), doc, kDefault).value->is(Kind::list));
  }
}

TEST_CASE("a memo id of 2^32-1 does not size the memo by its id") {
  // CPython's memo is a dict: this pickle is valid. Either accept it (and keep
  // the alias) or refuse it as a limit, but never allocate 2^32 slots.
  const std::string b = B("]r\xff\xff\xff\xffj\xff\xff\xff\xff\x86.");
  ckpt::Document doc;
  const double s = seconds_of([&] {
    try {
      auto r = ckpt::unpickle(as_span(b), doc, kDefault);
      REQUIRE_KIND(r.value, tuple);
      CHECK(r.value->elements()[0] == r.value->elements()[1]);
    } catch (const ckpt::Error& e) {
      INFO(e.what());
      CHECK(e.code() == ErrorCode::limit_exceeded);
    }
  });
  CHECK(s < 1.0);
}

TEST_CASE("memo Billion Laughs: 2^60 logical leaves load in O(n); walks are budgeted") {
  // leaf = a tensor; 60 x (DUP, TUPLE2): every level doubles the logical size.
  auto storage = ckpt::Storage::from_bytes(DType::float32, {0, 0, 128, 63});
  ckpt::UnpickleOptions opts;
  opts.persistent_load = [&](ckpt::Document& d, Value*, uint64_t) { return d.storage(storage); };
  std::vector<std::string> variants;
  {
    Pk p;
    p.proto(2).tensor_v2("0", 1, 1);
    for (int i = 0; i < 60; ++i) p.dup().tuple2();
    p.stop();
    variants.push_back(p.s);
  }
  {
    // the same with BINPUT/BINGET instead of DUP
    Pk p;
    p.proto(2).tensor_v2("0", 1, 1).binput(0).pop();
    for (int i = 0; i < 60; ++i) p.binget(0).binget(0).tuple2().binput(0).pop();
    p.binget(0).stop();
    variants.push_back(p.s);
  }
  for (const auto& bytes : variants) {
    ckpt::Document doc;
    Value* root = nullptr;
    const double load_s = seconds_of([&] { root = ckpt::unpickle(as_span(bytes), doc, opts).value; });
    CHECK(load_s < 1.0);
    REQUIRE_KIND(root, tuple);
    CHECK(doc.node_count() < 1000);  // shared, not copied
    CHECK(root->elements()[0] == root->elements()[1]);

    uint64_t visits = 0;
    bool threw = false;
    const double walk_s = seconds_of([&] {
      try {
        ckpt::walk_tensors(
            *root,
            [&](const ckpt::TensorVisit&) {
              ++visits;
              return true;
            },
            1000, 10000);
      } catch (const ckpt::Error& e) {
        threw = true;
        INFO(e.what());
        CHECK(e.code() == ErrorCode::limit_exceeded);
      }
    });
    CHECK(threw);
    CHECK(visits <= 10000);
    CHECK(walk_s < 1.0);
    // A callback returning false stops the walk early without an error.
    uint64_t seen = 0;
    ckpt::walk_tensors(*root, [&](const ckpt::TensorVisit&) { return ++seen < 3; }, 1000, 10000);
    CHECK(seen == 3);

    std::string r;
    CHECK(seconds_of([&] { r = ckpt::repr(*root, 200); }) < 1.0);
    CHECK(r.size() < 1000);
  }
}

TEST_CASE("a memo-shared tuple tree used as a dict key costs O(nodes), not O(2^depth)") {
  // {T: 1} where T0 = (1,), Ti = (Ti-1, Ti-1): 2^depth logical leaves, depth+1
  // nodes. Depth 22 is enough to see exponential key handling (depth 60, the
  // real bomb, would never finish); a linear implementation takes microseconds.
  Pk p;
  p.proto(2).empty_dict().binint1(1).tuple1();
  for (int i = 0; i < 22; ++i) p.dup().tuple2();
  p.binint1(1).setitem().stop();
  const Failure f = failure_of(p.s, kDefault);
  INFO(f.what);
  CHECK((!f.threw || f.code == static_cast<int>(ErrorCode::limit_exceeded)));
  CHECK(f.seconds < 0.25);
}

TEST_CASE("memo Billion Laughs: the walk stops at its node budget") {
  // 2^60 logical tensors from 60 DUP+TUPLE2 levels. The walk must stop with
  // limit_exceeded after at most `budget` visits, whatever the expansion.
  // (Its speed is measured by bench/, not asserted here.)
  auto storage = ckpt::Storage::from_bytes(DType::float32, {0, 0, 128, 63});
  ckpt::UnpickleOptions opts;
  opts.persistent_load = [&](ckpt::Document& d, Value*, uint64_t) { return d.storage(storage); };
  Pk p;
  p.proto(2).tensor_v2("0", 1, 1);
  for (int i = 0; i < 60; ++i) p.dup().tuple2();
  p.stop();
  ckpt::Document doc;
  Value* root = ckpt::unpickle(as_span(p.s), doc, opts).value;
  for (uint64_t budget : {uint64_t{1000}, uint64_t{200'000}}) {
    uint64_t tensors = 0;
    bool threw = false;
    try {
      ckpt::walk_tensors(*root, [&](const ckpt::TensorVisit&) { return ++tensors, true; }, 1000, budget);
    } catch (const ckpt::Error& e) {
      threw = e.code() == ErrorCode::limit_exceeded;
    }
    CHECK(threw);
    CHECK(tensors <= budget);
    CHECK(tensors > budget / 4);  // the budget, not something else, stopped it
  }
}

TEST_CASE("numpy arrays and scalars whose bytes do not match their shape are refused") {
  // numpy itself: "buffer size does not match array size" /
  // "initialization string is too small". Consumers trust shape x itemsize.
  const std::string dtype_f4 = B(
      "cnumpy\ndtype\nX\x02\x00\x00\x00" "f4\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb");
  const std::string head = B("\x80\x02" "cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" "C\x01" "b\x87R(K\x01");
  struct Case {
    const char* what;
    std::string shape;
    std::string data;
  };
  const std::vector<Case> cases = {
      {"shape (100,) with 4 bytes", B("K\x64\x85"), B("C\x04\x00\x00\x00\x00")},
      {"shape (2,) with 12 bytes", B("K\x02\x85"), B("C\x0c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")},
      {"shape (2^32, 2^32): product x 4 overflows", B("\x8a\x05\x00\x00\x00\x00\x01\x8a\x05\x00\x00\x00\x00\x01\x86"),
       B("C\x04\x00\x00\x00\x00")},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    const std::string pkl = head + c.shape + dtype_f4 + B("\x89") + c.data + B("tb.");
    const Failure f = failure_of(pkl, kDefault);
    INFO(f.what);
    CHECK(f.threw);
    CHECK(code_in(f.code, {ErrorCode::malformed_pickle, ErrorCode::invalid_tensor, ErrorCode::limit_exceeded}));
  }
  {
    // control: shape (1,) with 4 bytes loads
    ckpt::Document doc;
    const std::string ok = head + B("K\x01\x85") + dtype_f4 + B("\x89") + B("C\x04\x00\x00\x80?") + B("tb.");
    CHECK(ckpt::unpickle(as_span(ok), doc, kDefault).value->is(Kind::ndarray));
  }
  {
    // numpy.float64 scalar from 1 byte
    const std::string sc = B("\x80\x02" "cnumpy.core.multiarray\nscalar\ncnumpy\ndtype\nX\x02\x00\x00\x00" "f8\x89\x88\x87R"
                             "(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbC\x01\x00\x86R.");
    const Failure f = failure_of(sc, kDefault);
    INFO(f.what);
    CHECK(f.threw);
    CHECK(code_in(f.code, {ErrorCode::malformed_pickle, ErrorCode::invalid_tensor}));
  }
}

TEST_CASE("torch.device with a negative index is refused, as torch does") {
  // torch.device('cuda', -1): RuntimeError: Device index must not be negative
  CHECK_FAILS(B("\x80\x02" "ctorch\ndevice\nX\x04\x00\x00\x00" "cudaJ\xff\xff\xff\xff\x86R."), kDefault,
              ErrorCode::malformed_pickle, 31);  // the REDUCE
}

TEST_CASE("repr escapes control characters coming from any string in the pickle") {
  // value.hpp: "Control characters are escaped." ckpt-info prints repr() to a
  // terminal, so an ESC or newline from a file must never come out raw.
  auto raw_control = [](const std::string& r, bool allow_high) {
    for (unsigned char c : r)
      if (c < 0x20 || c == 0x7f || (!allow_high && c >= 0x80)) return true;
    return false;
  };
  struct Case {
    const char* what;
    std::string pkl;
    bool allow_high;  // non-ASCII UTF-8 is fine in text, not in bytes
  };
  const std::vector<Case> cases = {
      {"str", B("X\x05\x00\x00\x00" "a\nb\x1b" "c."), true},
      {"dict key", B("}X\x03\x00\x00\x00\x1b\n\tK\x01s."), true},
      {"bytes", B("C\x04\xff\x00\n\x1b."), false},
      {"torch.device type", B("\x80\x02" "ctorch\ndevice\nX\x05\x00\x00\x00" "a\x1b\nbcK\x00\x86R."), true},
      {"numpy dtype descr", B("\x80\x02" "cnumpy\ndtype\nX\x03\x00\x00\x00\x1b\n8\x89\x88\x87R."), true},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    ckpt::Document doc;
    Value* v = nullptr;
    try {
      v = ckpt::unpickle(as_span(c.pkl), doc, kDefault).value;
    } catch (const ckpt::Error& e) {
      continue;  // refusing the value outright is fine too
    }
    const std::string r = ckpt::repr(*v);
    CAPTURE(r);
    CHECK_FALSE(raw_control(r, c.allow_high));
  }
}

// ---------------------------------------------------------------------------
// Persistent ids through the real loaders
// ---------------------------------------------------------------------------

TEST_CASE("torch zip: a ('storage', ...) pid loads (control for the cases below)") {
  Pk p;
  p.proto(2).empty_dict().binunicode("w").tensor_v2("0", 2, 2).setitem().stop();
  ckpt::Checkpoint ck = open_zip(p.s, f32le({1.5f, -2.0f}));
  CHECK(ck.format().container == ckpt::Container::torch_zip);
  REQUIRE_KIND(ck.root().get("w"), tensor);
  CHECK(ck.root().at("w").tensor().shape == std::vector<int64_t>{2});
  CHECK(ck.tensors().size() == 1);
}

TEST_CASE("torch zip: persistent ids that are not ('storage', ...) tuples -> error") {
  const std::string rec = f32le({1.5f, -2.0f});
  struct Case {
    const char* what;
    std::string pkl;
    size_t q;
  };
  std::vector<Case> cases;
  {
    // ('module', __main__.Net, 'net.py', 'class Net: ...') - a legacy full-model pid
    Pk p;
    p.proto(2).empty_dict().binunicode("m");
    p.mark().binunicode("module").global("__main__", "Net").binunicode("net.py").binunicode("src").tuple();
    const size_t q = p.pos();
    p.binpersid().setitem().stop();
    cases.push_back({"module pid", p.s, q});
  }
  {
    Pk p;
    p.proto(2).empty_dict().binunicode("m").binunicode("0");
    const size_t q = p.pos();
    p.binpersid().setitem().stop();
    cases.push_back({"bare string pid", p.s, q});
  }
  {
    Pk p;
    p.proto(2).empty_dict().binunicode("m").mark().binunicode("storage").tuple();
    const size_t q = p.pos();
    p.binpersid().setitem().stop();
    cases.push_back({"('storage',) too short", p.s, q});
  }
  {
    Pk p;
    p.proto(2).empty_dict().binunicode("m");
    p.mark().binunicode("storage").global("__main__", "Evil").binunicode("0").binunicode("cpu").binint1(2).tuple();
    const size_t q = p.pos();
    p.binpersid().setitem().stop();
    cases.push_back({"storage type that is no storage class", p.s, q});
  }
  {
    Pk p;
    p.proto(2).empty_dict().binunicode("m");
    p.mark().binunicode("storage").global("torch", "FloatStorage").binunicode("0").binunicode("cpu");
    p.op('J').le(0xffffffffu, 4).tuple();  // numel -1
    const size_t q = p.pos();
    p.binpersid().setitem().stop();
    cases.push_back({"negative numel", p.s, q});
  }
  for (const auto& c : cases) {
    CAPTURE(c.what);
    bool threw = false;
    try {
      open_zip(c.pkl, rec);
    } catch (const ckpt::Error& e) {
      threw = true;
      INFO(e.what());
      CHECK(e.code() == ErrorCode::malformed_pickle);
      CHECK(e.byte_offset() == c.q);
    }
    CHECK(threw);
  }
}

TEST_CASE("torch zip: a pid naming an absent record, or a numel the record does not hold") {
  {
    Pk p;
    p.proto(2).empty_dict().binunicode("w").tensor_v2("9", 2, 2).setitem().stop();
    bool threw = false;
    try {
      open_zip(p.s, f32le({1, 2}));
    } catch (const ckpt::Error& e) {
      threw = true;
      INFO(e.what());
      CHECK(e.code() == ErrorCode::missing_record);
    }
    CHECK(threw);
  }
  {
    // A record shorter than numel x itemsize would be read past (CVE-2026-24747).
    Pk p;
    p.proto(2).empty_dict().binunicode("w").tensor_v2("0", 4, 1).setitem().stop();
    CHECK_THROWS_AS(open_zip(p.s, f32le({1, 2})), ckpt::Error);
  }
  {
    // A longer record is accepted, as torch does: the storage uses its head.
    Pk p;
    p.proto(2).empty_dict().binunicode("w").tensor_v2("0", 1, 1).setitem().stop();
    auto ck = open_zip(p.s, f32le({1, 2}));
    CHECK(ck.storages().at(0)->nbytes() == 4);
  }
}

TEST_CASE("plain pickle with a persistent id -> error") {
  const std::string pkl = B("\x80\x02X\x03\x00\x00\x00" "fooQ.");
  std::vector<uint8_t> bytes(pkl.begin(), pkl.end());
  CHECK_THROWS_AS(ckpt::Checkpoint::open(ckpt::Source::from_bytes(bytes, "plain.pkl")), ckpt::Error);
}

TEST_SUITE_END();
