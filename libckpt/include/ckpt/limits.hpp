// ckpt/limits.hpp - resource limits applied to untrusted input.
//
// Every count, length and size read from a file is checked against the bytes
// that remain in the input and against these limits before anything is
// allocated. Exceeding one raises ErrorCode::limit_exceeded, naming the limit.
#pragma once

#include <cstdint>

namespace ckpt {

/// Default for Limits::max_walk_nodes (and for walks given no Limits).
inline constexpr uint64_t kDefaultMaxWalkNodes = 500'000;

struct Limits {
  /// Largest pickle (data.pkl, or one legacy pickle) read. Real state-dict
  /// pickles are a few MB; 1 GiB leaves room for big non-tensor payloads.
  uint64_t max_pickle_bytes = 1ull << 30;
  /// Largest single string/bytes value in a pickle (BINUNICODE8 / BINBYTES8
  /// lengths of 2^32..2^62 are the libtorch #185443 attack).
  uint64_t max_string_bytes = 1ull << 30;
  /// Largest LONG/LONG4 integer, in bytes.
  uint64_t max_bigint_bytes = 1u << 20;
  /// Nesting depth of containers, marks and recursive walks (10^6 nested
  /// MARK/EMPTY_LIST or TUPLE1 bombs; Python's own recursion limit is 1000).
  uint32_t max_depth = 1000;
  /// VM stack size, in values (8 bytes each). Pickles batch APPENDS and
  /// SETITEMS by 1,000, so real stacks stay in the thousands.
  uint64_t max_stack = 2'000'000;
  /// Memory the value tree of one file may take: every value built (a
  /// ~260-byte node) plus 16 bytes per container slot. 10^6 nested empty
  /// lists cost 4 bytes of pickle each and ~280 MB of tree; a ResNet-50
  /// Mammoth checkpoint takes ~2 MB.
  uint64_t max_tree_bytes = 128ull << 20;
  /// Containers and tensors a tree walk may visit: shared memo entries make a
  /// DAG whose expansion is exponential (Billion Laughs), so walks are
  /// budgeted. Real checkpoints visit thousands (a ResNet-50 Mammoth
  /// checkpoint ~2,500); a walk of 500,000 with paths takes ~0.1 s and
  /// ~50 MB, so a memo bomb stops well inside 1 s and 256 MiB.
  uint64_t max_walk_nodes = kDefaultMaxWalkNodes;
  /// Zip entries (10^6-entry central directories).
  uint64_t max_entries = 1'000'000;
  /// Largest central directory, in bytes.
  uint64_t max_central_directory = 256ull << 20;
  /// Largest output of one DEFLATE or zstd entry held in memory
  /// (deflate bombs; a declared usize of 2^40).
  uint64_t max_inflate_bytes = 4ull << 30;
  /// Tensor rank (GGUF and torch both cap well below this).
  uint32_t max_ndim = 64;
};

}  // namespace ckpt
