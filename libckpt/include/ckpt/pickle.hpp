// ckpt/pickle.hpp - a pickle interpreter that builds data and calls nothing,
// and a protocol-2 pickle writer that torch.load(weights_only=True) accepts.
//
// The unpickler implements every opcode of protocols 0-5. GLOBAL and
// STACK_GLOBAL produce a `global` value; REDUCE, NEWOBJ, INST, OBJ and BUILD
// are interpreted only for an exact-string allowlist of constructors (the
// tensor rebuilds, storages, OrderedDict, Counter, defaultdict, set, Namespace,
// torch.Size/device/dtypes, numpy arrays/scalars/dtypes, _codecs.encode). Any
// other global yields an opaque `object` value, unless it is on the deny list
// (os.system, eval, subprocess, ...), which raises ErrorCode::unsafe_global.
// The memo holds references, so aliasing survives and memo bombs cost O(1).
#pragma once

#include <bitset>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/limits.hpp"
#include "ckpt/value.hpp"

namespace ckpt {

/// What libckpt thinks of a global a pickle references.
enum class GlobalVerdict : uint8_t {
  allowed,  ///< on torch >= 2.1's weights_only allowlist
  known,    ///< interpreted by libckpt, not on torch's default allowlist (numpy, Namespace, ...)
  unknown,  ///< kept as an opaque object; torch would need the class to load it
  denied,   ///< code execution or I/O (os.system, builtins.eval, ...): refused
};
const char* global_verdict_name(GlobalVerdict v) noexcept;
/// Classifies "module.name" exactly as the unpickler does (after the Python 2
/// renames __builtin__ -> builtins, copy_reg -> copyreg).
GlobalVerdict classify_global(std::string_view module, std::string_view name);

struct GlobalRef {
  std::string module, name;
  GlobalVerdict verdict = GlobalVerdict::unknown;
  uint64_t count = 0;         ///< how many times the pickle names it
  uint64_t first_offset = 0;  ///< byte offset of the first GLOBAL/STACK_GLOBAL
};

struct UnpickleOptions {
  Limits limits;
  /// false: a global that is neither allowed nor known is an error, like
  /// torch.load(weights_only=True). true: it becomes an opaque object.
  bool allow_unknown_globals = true;
  /// true: audit mode. Nothing is refused for what it names: a denied global
  /// and a call of a computed value become opaque values (still never
  /// called), so the whole pickle runs and `globals` lists every global with
  /// its verdict. For audits (`ckpt-info --globals`); never use such a tree.
  bool audit = false;
  /// If set, receives the globals named before an error stopped the pickle
  /// (an audit of a malformed file still shows what it references).
  std::vector<GlobalRef>* globals_on_error = nullptr;
  std::string path;   ///< for error messages
  std::string entry;  ///< for error messages ("archive/data.pkl")
  /// Resolves BINPERSID/PERSID ids. Without it, persistent ids are an error.
  std::function<Value*(Document&, Value* pid, uint64_t offset)> persistent_load;
  /// Non-standard files (burn's TAR test files) put a ('storage', type, key,
  /// location, numel) tuple where a tensor rebuild expects its storage; with
  /// this set, such a tuple is resolved through persistent_load.
  bool inline_storage_ids = false;
};

struct UnpickleResult {
  Value* value = nullptr;
  uint64_t end = 0;        ///< offset just after STOP
  int protocol = 0;        ///< from PROTO, 0/1 when absent
  std::vector<GlobalRef> globals;
  std::bitset<256> opcodes;  ///< every opcode the pickle executed
};

/// True when torch >= 2.1's weights_only unpickler implements `opcode`
/// (PROTO, STOP, GLOBAL, NEWOBJ, REDUCE, BUILD, the list/dict/tuple builders,
/// BININT*, BINFLOAT, BINUNICODE, SHORT_BINSTRING, BINPERSID, the BINGET/BINPUT
/// families, LONG1). Protocol-4 pickles (FRAME, STACK_GLOBAL, MEMOIZE, ...)
/// fail there.
bool weights_only_opcode(uint8_t opcode) noexcept;

/// Runs one pickle from the start of `bytes`. Trailing bytes after STOP are
/// not an error here: the result's `end` tells the caller where STOP was.
UnpickleResult unpickle(std::span<const uint8_t> bytes, Document& doc, const UnpickleOptions& opts);

/// Serialises `root` as a protocol-2 pickle, the way torch.save does:
/// tensors through _rebuild_tensor_v2 (v3 for the new dtypes) with 5-tuple
/// persistent ids, OrderedDict with its _metadata BUILD, floats as BINFLOAT,
/// shared values memoised once. `storage_key` maps each storage to its record
/// key, called once per distinct storage in pickle order.
std::string pickle_dumps(const Value& root,
                         const std::function<std::string(const std::shared_ptr<Storage>&)>& storage_key,
                         uint32_t max_depth = 1000);

}  // namespace ckpt
