// ckpt/checkpoint.hpp - the high-level API: open any checkpoint, walk it, save one.
//
//   auto ck = ckpt::Checkpoint::open("model_seq-mnist_..._4.pt");
//   const ckpt::Value& model = ck.root().at("model");
//   for (auto& t : ck.tensors()) use(t.path, t.tensor());
//   ckpt::save("out.pt", ck.root());
//
// Detection is by content, never by file name: a torch zip (any root folder,
// TorchScript recognised), the legacy (< 1.6) pickle stream, the legacy TAR
// layout, or a plain pickle. HTML pages and git-LFS pointers are diagnosed.
// Opening parses the pickle and validates every tensor's extent against its
// storage, but reads no tensor payload.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ckpt/limits.hpp"
#include "ckpt/pickle.hpp"
#include "ckpt/source.hpp"
#include "ckpt/value.hpp"
#include "ckpt/zip.hpp"

namespace ckpt {

enum class Container : uint8_t {
  torch_zip,      ///< torch.save since 1.6
  torchscript,    ///< torch.jit.save archive (code/, constants.pkl)
  legacy_stream,  ///< torch.save before 1.6 (_use_new_zipfile_serialization=False)
  legacy_tar,     ///< torch <= 0.1.9 TAR layout
  pickle,         ///< a bare pickle, no tensors payload
  safetensors,    ///< a safetensors file (ckpt/safetensors.hpp)
  hdf5,           ///< an HDF5 file (ckpt/hdf5.hpp, library libckpt_hdf5)
};
const char* container_name(Container c) noexcept;

struct OpenOptions {
  Limits limits;
  /// See UnpickleOptions::allow_unknown_globals.
  bool allow_unknown_globals = true;
  /// See UnpickleOptions::audit and UnpickleOptions::globals_on_error.
  bool audit = false;
  std::vector<GlobalRef>* globals_on_error = nullptr;
  bool use_mmap = true;
  /// HDF5 input only: read the file first in a forked child process, and
  /// turn a crash there into ErrorCode::corrupt_hdf5. libhdf5 1.10 is not
  /// hardened against crafted files (fuzz_hdf5 found SEGVs and wild memcpys
  /// in its global-heap reads; docs/security.md); the check costs one more
  /// read of the file's metadata. Turn it off only for files you trust.
  bool isolate_hdf5 = true;
  /// The child reads the structure only (no dataset payload), and is
  /// stopped after hdf5_probe_cpu_s seconds of CPU time (RLIMIT_CPU, so a
  /// busy machine does not count against it) or hdf5_probe_ms of wall time,
  /// whichever comes first: corrupt_hdf5 (a crafted file can make libhdf5
  /// loop). Real files take milliseconds (a ResNet-50 checkpoint's ~1,000
  /// datasets and attributes: ~30 ms).
  uint32_t hdf5_probe_cpu_s = 2;
  uint32_t hdf5_probe_ms = 60000;
};

struct FormatInfo {
  Container container = Container::pickle;
  std::string root;               ///< zip root folder
  int pickle_protocol = 0;
  std::string version;            ///< zip `version` record, trimmed ("3")
  std::string byteorder;          ///< "little", "big", or "" when absent
  std::string format_version;     ///< `.format_version` (torch >= 2.7)
  std::string storage_alignment;  ///< `.storage_alignment`
  bool has_serialization_id = false;
  bool little_endian = true;      ///< byte order of the tensor data
  std::string era;                ///< which torch wrote it, as far as the records tell
  uint64_t trailing_bytes = 0;    ///< bytes after the object pickle's STOP
  std::vector<std::string> records;  ///< TAR members (zip entries: see Checkpoint::zip())
};

class Checkpoint {
 public:
  static Checkpoint open(const std::string& path, const OpenOptions& opts = {});
  static Checkpoint open(std::shared_ptr<const Source> source, const OpenOptions& opts = {});
  /// A checkpoint whose tree another reader built (safetensors, HDF5): takes
  /// `doc` and its `root`; `source` is the file read (path() and file_size()
  /// report it); `storages` are the distinct storages, for storages().
  /// No pickle ran, so globals() and opcodes() are empty.
  static Checkpoint adopt(std::shared_ptr<const Source> source, std::unique_ptr<Document> doc, Value* root,
                          FormatInfo info, std::vector<std::shared_ptr<Storage>> storages = {});

  Checkpoint(Checkpoint&&) noexcept;
  Checkpoint& operator=(Checkpoint&&) noexcept;
  ~Checkpoint();

  const Value& root() const noexcept { return *root_; }
  Value& root() noexcept { return *root_; }
  Document& document() noexcept { return *doc_; }
  const FormatInfo& format() const noexcept { return info_; }
  const std::string& path() const noexcept;
  uint64_t file_size() const noexcept;
  /// Every global the pickle(s) reference, in first-use order.
  const std::vector<GlobalRef>& globals() const noexcept { return globals_; }
  /// True when torch.load(weights_only=True) (torch >= 2.1) would accept the
  /// file: a torch zip or legacy stream whose pickle names only allowlisted
  /// globals and uses only the opcodes that unpickler implements (no
  /// protocol-4 framing).
  bool weights_only_compatible() const noexcept;
  /// Every opcode the object pickle executed.
  const std::bitset<256>& opcodes() const noexcept { return opcodes_; }
  /// Every tensor reachable from root(), with its key path (lazy: no payload is read).
  std::vector<TensorVisit> tensors() const;
  /// Distinct storages, in pickle order.
  const std::vector<std::shared_ptr<Storage>>& storages() const noexcept { return storages_; }
  /// True when every zip data record is 64-byte aligned, as torch writes
  /// them (reads each record's local header).
  bool records_aligned() const;
  /// Checks every zip entry's CRC-32 and each storage's size. Throws on the
  /// first problem (crc_mismatch names the entry).
  void verify() const;
  const ZipArchive* zip() const noexcept { return zip_.get(); }

 private:
  Checkpoint();
  std::shared_ptr<const Source> src_;
  std::unique_ptr<Document> doc_;
  std::unique_ptr<ZipArchive> zip_;
  Value* root_ = nullptr;
  FormatInfo info_;
  std::vector<GlobalRef> globals_;
  std::vector<std::shared_ptr<Storage>> storages_;
  std::bitset<256> opcodes_;
  uint32_t opts_depth_ = 1000;
  uint64_t opts_nodes_ = kDefaultMaxWalkNodes;
  friend struct CheckpointLoader;
};

struct SaveOptions {
  /// Zip root folder; empty means the output file's stem, as torch.save does.
  std::string archive_name;
  /// fsync the file and its folder (off only for tests and scratch space).
  bool durable = true;
  /// Called after each record is written with the payload bytes written so
  /// far (for progress bars); may be empty.
  std::function<void(uint64_t)> progress;
};

/// Writes `root` in torch.save's zip layout, atomically (see AtomicFile):
/// data.pkl, .format_version, .storage_alignment, byteorder, data/0..N-1,
/// version, .data/serialization_id; 64-byte aligned STORED records with data
/// descriptors and a ZIP64 end record. Payloads stream from their storages;
/// each shared storage is written once. Returns the bytes written.
uint64_t save(const std::string& path, const Value& root, const SaveOptions& opts = {});

}  // namespace ckpt
