// Classification of pickle globals: torch's weights_only allowlist, what
// libckpt interprets beyond it, and the deny list of code-execution and I/O
// entry points. Exact strings only; nothing is ever resolved or imported.
#include <array>
#include <string>
#include <string_view>

#include "ckpt/dtype.hpp"
#include "ckpt/pickle.hpp"

namespace ckpt {

const char* global_verdict_name(GlobalVerdict v) noexcept {
  switch (v) {
    case GlobalVerdict::allowed: return "allowed";
    case GlobalVerdict::known: return "known";
    case GlobalVerdict::unknown: return "unknown";
    case GlobalVerdict::denied: return "denied";
  }
  return "?";
}

namespace {

bool starts_with_module(std::string_view m, std::string_view prefix) {
  return m == prefix || (m.size() > prefix.size() && m.substr(0, prefix.size()) == prefix && m[prefix.size()] == '.');
}

// Modules whose every member is refused: process control, code loading,
// file and network I/O, nested unpicklers, introspection gadgets.
constexpr std::string_view kDeniedModules[] = {
    // processes, code loading and evaluation
    "os", "posix", "nt", "posixpath", "ntpath", "sys", "subprocess", "_posixsubprocess", "pty", "commands",
    "popen2", "importlib", "imp", "zipimport", "runpy", "code", "codeop", "pdb", "bdb", "timeit", "profile",
    "cProfile", "trace", "site", "pip", "setuptools", "pkg_resources", "distutils", "ensurepip", "venv", "pydoc",
    "idlelib", "antigravity", "webbrowser", "tkinter", "turtle", "platform", "uuid", "ctypes", "_ctypes",
    // nested unpicklers and object construction gadgets
    "pickle", "_pickle", "cPickle", "marshal", "types", "copy", "functools", "operator", "_operator", "dill",
    "cloudpickle", "joblib", "shelve", "dbm",
    // files, archives, databases, logging
    "io", "_io", "tempfile", "glob", "pathlib", "fileinput", "shutil", "gzip", "bz2", "lzma", "tarfile",
    "zipfile", "sqlite3", "logging", "linecache", "mmap",
    // network
    "socket", "ssl", "select", "selectors", "http", "httplib", "urllib", "urllib2", "urllib3", "requests",
    "ftplib", "smtplib", "smtpd", "telnetlib", "imaplib", "poplib", "nntplib", "xmlrpc", "wsgiref", "cgi",
    "asynchat", "asyncore",
    // concurrency and signals
    "multiprocessing", "threading", "_thread", "asyncio", "signal",
};

// torch sub-modules that load code, run graphs or reach the C++ core.
constexpr std::string_view kDeniedTorchModules[] = {
    "torch.hub", "torch.jit", "torch._C", "torch.ops", "torch.serialization", "torch.utils.cpp_extension",
    "torch.utils.collect_env", "torch._dynamo", "torch.fx", "torch.package", "torch.distributed",
    "torch._inductor", "torch.classes", "torch.library", "torch.storage", "torch.multiprocessing", "torch._ops",
    "torch.utils.data", "torch.backends", "torch.cuda", "torch.compiler", "torch.export", "torch.onnx",
};

constexpr std::array<std::string_view, 14> kSafeBuiltins{
    "set", "frozenset", "bytearray", "bytes", "complex", "dict", "list", "tuple", "int", "float", "str", "bool",
    "object", "slice",
};

constexpr std::array<std::string_view, 12> kTensorRebuilds{
    "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
    "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor", "_rebuild_meta_tensor_no_storage",
    "_rebuild_wrapper_subclass", "_rebuild_device_tensor_from_numpy", "_rebuild_device_tensor_from_cpu_tensor",
    "_rebuild_nested_tensor",
};

constexpr std::array<std::string_view, 13> kTensorTypes{
    "Tensor", "DoubleTensor", "FloatTensor", "HalfTensor", "BFloat16Tensor", "LongTensor", "IntTensor",
    "ShortTensor", "CharTensor", "ByteTensor", "BoolTensor", "ComplexFloatTensor", "ComplexDoubleTensor",
};

constexpr std::array<std::string_view, 5> kQSchemes{
    "per_tensor_affine", "per_channel_affine", "per_tensor_symmetric", "per_channel_symmetric",
    "per_channel_affine_float_qparams",
};

template <size_t N>
bool in(const std::array<std::string_view, N>& a, std::string_view s) {
  for (auto x : a)
    if (x == s) return true;
  return false;
}
template <size_t N>
bool in(const std::string_view (&a)[N], std::string_view s) {
  for (auto x : a)
    if (x == s) return true;
  return false;
}

}  // namespace

GlobalVerdict classify_global(std::string_view module, std::string_view name) {
  if (module == "__builtin__" || module == "exceptions") module = "builtins";
  if (module == "copy_reg") module = "copyreg";

  // From protocol 4 a dotted name is followed attribute by attribute
  // (getattr), which reaches any module another module imported:
  // ('__main__', 'os.system'). Nothing we interpret has a dotted name.
  if (name.find('.') != std::string_view::npos) return GlobalVerdict::denied;
  // Dunder attributes of anything (__getattribute__, __globals__, ...) are
  // introspection gadgets, never data types: checked before the per-module
  // rules, which would otherwise call collections.__getattribute__ "unknown".
  if (name.substr(0, 2) == "__" && name != "__newobj__") return GlobalVerdict::denied;

  for (auto m : kDeniedModules)
    if (starts_with_module(module, m)) return GlobalVerdict::denied;

  if (module == "builtins") return in(kSafeBuiltins, name) ? (name == "set" || name == "bytearray" || name == "complex"
                                                                  ? GlobalVerdict::allowed
                                                                  : GlobalVerdict::known)
                                                           : GlobalVerdict::denied;
  if (module == "collections") {
    if (name == "OrderedDict" || name == "Counter") return GlobalVerdict::allowed;
    if (name == "defaultdict") return GlobalVerdict::known;
    return GlobalVerdict::unknown;
  }
  if (module == "_codecs") return name == "encode" ? GlobalVerdict::allowed : GlobalVerdict::denied;
  if (module == "codecs") return GlobalVerdict::denied;
  if (module == "argparse") return name == "Namespace" ? GlobalVerdict::known : GlobalVerdict::denied;
  if (module == "copyreg") {
    if (name == "_reconstructor" || name == "__newobj__") return GlobalVerdict::known;
    return GlobalVerdict::denied;
  }

  if (module == "torch") {
    if (dtype_from_name(name) || dtype_from_storage_class(name) || in(kTensorTypes, name) || in(kQSchemes, name) ||
        name == "Size" || name == "device" || name == "UntypedStorage" || name == "uint1" || name == "uint2" ||
        name == "uint3" || name == "uint4" || name == "uint5" || name == "uint6" || name == "uint7" ||
        name == "int1" || name == "int2" || name == "int3" || name == "int4" || name == "int5" || name == "int6" ||
        name == "int7")
      return GlobalVerdict::allowed;
    return GlobalVerdict::denied;  // torch.load, torch.from_numpy, ... : functions
  }
  if (module == "torch._utils") return in(kTensorRebuilds, name) ? GlobalVerdict::allowed : GlobalVerdict::denied;
  if (module == "torch._tensor") return name == "_rebuild_from_type_v2" ? GlobalVerdict::allowed : GlobalVerdict::denied;
  if (module == "torch.serialization" && name == "_get_layout") return GlobalVerdict::allowed;
  if (module == "torch.nn.parameter" && name == "Parameter") return GlobalVerdict::allowed;
  if (module == "torch.storage" && (name == "UntypedStorage" || name == "TypedStorage")) return GlobalVerdict::allowed;
  if (module == "torch.torch_version" && name == "TorchVersion") return GlobalVerdict::known;
  for (auto m : kDeniedTorchModules)
    if (starts_with_module(module, m)) return GlobalVerdict::denied;

  if (starts_with_module(module, "numpy")) {
    // Code generation, native libraries, and file I/O.
    if (starts_with_module(module, "numpy.f2py") || starts_with_module(module, "numpy.distutils") ||
        starts_with_module(module, "numpy.testing") || starts_with_module(module, "numpy.lib") ||
        starts_with_module(module, "numpy.ctypeslib") || starts_with_module(module, "numpy.ma.mrecords"))
      return GlobalVerdict::denied;
    static constexpr std::string_view kNumpyIo[] = {"load", "loads", "save", "savez", "savez_compressed", "savetxt",
                                                    "loadtxt", "genfromtxt", "fromfile", "fromregex", "memmap",
                                                    "tofile", "recfromtxt", "recfromcsv", "DataSource", "info",
                                                    "lookfor", "source"};
    for (auto f : kNumpyIo)
      if (name == f) return GlobalVerdict::denied;
    if ((module == "numpy.core.multiarray" || module == "numpy._core.multiarray") &&
        (name == "_reconstruct" || name == "scalar"))
      return GlobalVerdict::known;
    if (module == "numpy" && (name == "ndarray" || name == "dtype")) return GlobalVerdict::known;
    if (module == "numpy.dtypes") return GlobalVerdict::known;
    return GlobalVerdict::unknown;
  }
  return GlobalVerdict::unknown;
}

}  // namespace ckpt
