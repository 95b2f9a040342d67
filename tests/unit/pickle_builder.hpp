// tests/unit/pickle_builder.hpp - helpers shared by the unpickler tests
// (test_unpickler.cpp, test_unpickler_hostile.cpp) and test_dtype_tensor.cpp:
// byte-string literals, a pickle builder that spells pickles opcode by opcode,
// a failure recorder for ckpt::unpickle, and float32 <-> byte conversions.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/error.hpp"
#include "ckpt/pickle.hpp"
#include "ckpt/value.hpp"

namespace testpk {

/// A byte string from a literal, embedded NULs included.
template <size_t N>
std::string B(const char (&s)[N]) {
  return std::string(s, N - 1);
}

inline std::span<const uint8_t> as_span(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

/// Assembles a pickle opcode by opcode. pos() is the offset the next opcode gets.
struct Pk {
  std::string s;

  size_t pos() const { return s.size(); }
  Pk& op(uint8_t c) { s.push_back(static_cast<char>(c)); return *this; }
  Pk& raw(std::string_view r) { s.append(r); return *this; }
  Pk& le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    return *this;
  }
  Pk& line(std::string_view r) { raw(r); return op('\n'); }

  Pk& proto(int p) { op(0x80); return op(static_cast<uint8_t>(p)); }
  Pk& frame(uint64_t n) { op(0x95); return le(n, 8); }
  Pk& stop() { return op('.'); }
  Pk& mark() { return op('('); }
  Pk& pop() { return op('0'); }
  Pk& pop_mark() { return op('1'); }
  Pk& dup() { return op('2'); }

  Pk& binint(int32_t v) { op('J'); return le(static_cast<uint32_t>(v), 4); }
  Pk& binint1(uint8_t v) { op('K'); return op(v); }
  Pk& binint2(uint16_t v) { op('M'); return le(v, 2); }
  Pk& long1(std::string_view le_bytes) {
    op(0x8a); op(static_cast<uint8_t>(le_bytes.size())); return raw(le_bytes);
  }
  Pk& long4(std::string_view le_bytes) { op(0x8b); le(le_bytes.size(), 4); return raw(le_bytes); }
  Pk& binfloat(double d) {
    uint64_t u;
    std::memcpy(&u, &d, 8);
    op('G');
    for (int i = 7; i >= 0; --i) s.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
    return *this;
  }

  Pk& binunicode(std::string_view t) { op('X'); le(t.size(), 4); return raw(t); }
  Pk& short_binunicode(std::string_view t) {
    op(0x8c); op(static_cast<uint8_t>(t.size())); return raw(t);
  }
  Pk& binunicode8(std::string_view t) { op(0x8d); le(t.size(), 8); return raw(t); }
  Pk& short_binstring(std::string_view t) { op('U'); op(static_cast<uint8_t>(t.size())); return raw(t); }
  Pk& binstring(std::string_view t) { op('T'); le(t.size(), 4); return raw(t); }
  Pk& binbytes(std::string_view t) { op('B'); le(t.size(), 4); return raw(t); }
  Pk& short_binbytes(std::string_view t) { op('C'); op(static_cast<uint8_t>(t.size())); return raw(t); }
  Pk& binbytes8(std::string_view t) { op(0x8e); le(t.size(), 8); return raw(t); }
  Pk& bytearray8(std::string_view t) { op(0x96); le(t.size(), 8); return raw(t); }

  Pk& none() { return op('N'); }
  Pk& newtrue() { return op(0x88); }
  Pk& newfalse() { return op(0x89); }

  Pk& empty_list() { return op(']'); }
  Pk& list() { return op('l'); }
  Pk& append() { return op('a'); }
  Pk& appends() { return op('e'); }
  Pk& empty_tuple() { return op(')'); }
  Pk& tuple() { return op('t'); }
  Pk& tuple1() { return op(0x85); }
  Pk& tuple2() { return op(0x86); }
  Pk& tuple3() { return op(0x87); }
  Pk& empty_dict() { return op('}'); }
  Pk& dict() { return op('d'); }
  Pk& setitem() { return op('s'); }
  Pk& setitems() { return op('u'); }
  Pk& empty_set() { return op(0x8f); }
  Pk& additems() { return op(0x90); }
  Pk& frozenset() { return op(0x91); }

  Pk& binput(uint8_t i) { op('q'); return op(i); }
  Pk& binget(uint8_t i) { op('h'); return op(i); }
  Pk& long_binput(uint32_t i) { op('r'); return le(i, 4); }
  Pk& long_binget(uint32_t i) { op('j'); return le(i, 4); }
  Pk& memoize() { return op(0x94); }

  Pk& global(std::string_view m, std::string_view n) { op('c'); line(m); return line(n); }
  Pk& stack_global(std::string_view m, std::string_view n) {
    short_binunicode(m); short_binunicode(n); return op(0x93);
  }
  Pk& reduce() { return op('R'); }
  Pk& build() { return op('b'); }
  Pk& newobj() { return op(0x81); }
  Pk& newobj_ex() { return op(0x92); }
  Pk& binpersid() { return op('Q'); }

  /// A torch 5-tuple persistent id ('storage', torch.<cls>, key, 'cpu', numel).
  Pk& storage_pid(std::string_view cls, std::string_view key, uint8_t numel) {
    mark(); binunicode("storage"); global("torch", cls); binunicode(key); binunicode("cpu");
    binint1(numel); tuple(); return binpersid();
  }
  Pk& ordered_dict_empty() { global("collections", "OrderedDict"); empty_tuple(); return reduce(); }
  /// _rebuild_tensor_v2(('storage', torch.FloatStorage, key, 'cpu', numel), 0, (n,), (1,), False, OrderedDict())
  Pk& tensor_v2(std::string_view key, uint8_t numel, uint8_t n) {
    global("torch._utils", "_rebuild_tensor_v2").mark();
    storage_pid("FloatStorage", key, numel);
    binint1(0).binint1(n).tuple1().binint1(1).tuple1().newfalse().ordered_dict_empty();
    return tuple().reduce();
  }
};

/// What ckpt::unpickle threw (if anything), and how long it took.
struct Failure {
  bool threw = false;
  int code = -1;
  bool has_offset = false;
  uint64_t offset = 0;
  std::string what = "(no exception)";
  double seconds = 0;
};

inline Failure failure_of(const std::string& bytes, const ckpt::UnpickleOptions& opts = {}) {
  ckpt::Document doc;
  Failure f;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    ckpt::unpickle(as_span(bytes), doc, opts);
  } catch (const ckpt::Error& e) {
    f.threw = true;
    f.code = static_cast<int>(e.code());
    f.has_offset = e.has_offset();
    f.offset = e.byte_offset();
    f.what = e.what();
  }
  f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return f;
}

inline const char* kind_of(const ckpt::Value* v) { return v ? ckpt::kind_name(v->kind()) : "(null)"; }

/// Little-endian float32 bytes of xs.
inline std::vector<uint8_t> f32_bytes(std::initializer_list<float> xs) {
  std::vector<uint8_t> out(xs.size() * 4);
  size_t i = 0;
  for (float x : xs) std::memcpy(out.data() + 4 * i++, &x, 4);
  return out;
}

inline std::vector<float> as_f32(const std::vector<uint8_t>& b) {
  std::vector<float> out(b.size() / 4);
  std::memcpy(out.data(), b.data(), out.size() * 4);
  return out;
}

}  // namespace testpk

#define REQUIRE_KIND(v, k)                                                                   \
  REQUIRE_MESSAGE(((v) != nullptr && (v)->kind() == ckpt::Kind::k), "kind is ", testpk::kind_of(v), \
                  ", wanted " #k)
#define CHECK_KIND(v, k)                                                                     \
  CHECK_MESSAGE(((v) != nullptr && (v)->kind() == ckpt::Kind::k), "kind is ", testpk::kind_of(v), \
                ", wanted " #k)

/// Exact code and exact offset of the offending opcode.
#define CHECK_FAILS(bytes, opts, code_, offset_)                        \
  do {                                                                  \
    const testpk::Failure f_ = testpk::failure_of((bytes), (opts));     \
    INFO("what(): ", f_.what);                                          \
    CHECK(f_.threw);                                                    \
    CHECK(f_.code == static_cast<int>(code_));                          \
    CHECK(f_.has_offset);                                               \
    CHECK(f_.offset == static_cast<uint64_t>(offset_));                 \
  } while (0)
