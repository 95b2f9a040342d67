// tests/fuzz/fuzz_common.hpp - what every fuzz target shares: limits sized for
// a fuzzing process (libFuzzer's -rss_limit_mb=2048), the "exercise every
// accessor" walk, and the invariant check that turns a wrong answer into a
// crash the fuzzer reports.
#pragma once

#include <ckpt/ckpt.hpp>
#include <ckpt/detail/checked.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

namespace fuzz {

/// An invariant that must hold on every input; a violation is a finding.
#define FUZZ_CHECK(cond)                                                              \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

/// Limits small enough that no input can push a run past 2 GiB, large
/// enough that every real checkpoint in the seed corpus opens.
inline ckpt::Limits limits() {
  ckpt::Limits l;
  l.max_pickle_bytes = 64u << 20;
  l.max_string_bytes = 16u << 20;
  l.max_inflate_bytes = 64u << 20;
  l.max_walk_nodes = 200'000;
  l.max_stack = 1'000'000;
  return l;
}

/// Tensors whose contiguous copy would exceed this are not copied (a stride-0
/// "expanded" tensor may legally describe 2^40 elements over one).
constexpr uint64_t kMaxCopy = 16u << 20;

/// No error the library raises on input may be `internal` (that code means a
/// bug in libckpt).
inline void check_error(const ckpt::Error& e) { FUZZ_CHECK(e.code() != ckpt::ErrorCode::internal); }

/// Reads every tensor of a tree (payload included), renders it, and
/// serialises it: the accessors a tool would call on an opened file.
inline void exercise_tree(const ckpt::Value& root, const ckpt::Limits& l) {
  (void)ckpt::repr(root);
  ckpt::walk_tensors(
      root,
      [](const ckpt::TensorVisit& v) {
        const ckpt::Tensor& t = v.tensor();
        if (t.nbytes() <= kMaxCopy) {
          std::vector<uint8_t> out = t.to_contiguous();
          FUZZ_CHECK(out.size() == t.nbytes());
        }
        (void)t.is_contiguous();
        return true;
      },
      l.max_depth, l.max_walk_nodes);
}

inline ckpt::OpenOptions open_options() {
  ckpt::OpenOptions o;
  o.limits = limits();
  return o;
}

/// Opens `data` as a checkpoint and exercises it; every failure must be a
/// typed, non-internal ckpt::Error.
inline void open_and_exercise(std::span<const uint8_t> data, bool verify = true) {
  try {
    const ckpt::OpenOptions o = open_options();
    auto ck = ckpt::Checkpoint::open(ckpt::Source::from_bytes(std::vector<uint8_t>(data.begin(), data.end()), "fuzz"), o);
    (void)ck.format();
    (void)ck.weights_only_compatible();
    for (const auto& g : ck.globals()) FUZZ_CHECK(g.verdict != ckpt::GlobalVerdict::denied);
    exercise_tree(ck.root(), o.limits);
    if (verify) ck.verify();
    (void)ck.records_aligned();
    std::string pkl = ckpt::pickle_dumps(ck.root(), [](const std::shared_ptr<ckpt::Storage>&) { return std::string("0"); });
    (void)pkl;
  } catch (const ckpt::Error& e) {
    check_error(e);
  }
}

inline bool starts_with(std::span<const uint8_t> d, std::string_view p) {
  return d.size() >= p.size() && std::equal(p.begin(), p.end(), reinterpret_cast<const char*>(d.data()));
}

}  // namespace fuzz
