// ckpt-convert IN OUT [options] - see docs/cli-convert.md.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "ckpt/error.hpp"
#include "ckpt/version.hpp"
#include "common/cli.hpp"
#include "common/numeric.hpp"
#include "convert/convert.hpp"

namespace {

using ckpt::Error;
using ckpt::ErrorCode;
using namespace ckpt::tools;

constexpr const char* kDescription =
    "Convert a checkpoint: extract a Mammoth backbone, strip wrapper prefixes,\n"
    "rename keys, cast dtypes, and move between .pt, .pt.zst, HDF5 and safetensors.\n"
    "Inputs of every format (torch zip / legacy / TAR, .zst, .h5, .safetensors)\n"
    "are recognised by content. The output is written atomically and never over\n"
    "the input.";

constexpr const char* kExamples = R"(
Examples:
  ckpt-convert derpp_..._4.pt backbone.pt --backbone            # plain state dict, aliases dropped
  ckpt-convert derpp_..._4.pt backbone.pt --backbone --drop-classifier
  ckpt-convert ddp.pt clean.pt --strip-prefix auto --dry-run    # show the key mapping
  ckpt-convert old.pt new.pt --rename backbone.=net.            # FROM=TO on whole components
  ckpt-convert run_4.pt run_4.h5 --compress zstd:3              # HDF5, one dataset per tensor
  ckpt-convert run_4.h5 run_4_back.pt                           # and back, bit-exact
  ckpt-convert backbone.pt backbone.safetensors
  ckpt-convert run_4.pt run_4.pt.zst                            # zstd -d gives back the .pt
  ckpt-convert run_4.pt half.pt --dtype f16

Exit codes: 0 done, 2 error (usage, unreadable input, collision, existing output).
)";

std::pair<ckpt::Hdf5Compression, int> parse_compress(const std::string& s) {
  std::string name = s, lvl;
  if (auto c = s.find(':'); c != std::string::npos) {
    name = s.substr(0, c);
    lvl = s.substr(c + 1);
  }
  int level = -1;
  if (!lvl.empty()) {
    try {
      size_t used = 0;
      level = std::stoi(lvl, &used);
      if (used != lvl.size()) throw std::invalid_argument(lvl);
    } catch (const std::exception&) {
      throw Error(ErrorCode::invalid_argument, "--compress level '" + lvl + "' is not a number");
    }
  }
  if (name == "none") return {ckpt::Hdf5Compression::none, -1};
  if (name == "gzip") {
    if (!lvl.empty() && (level < 0 || level > 9)) throw Error(ErrorCode::invalid_argument, "--compress gzip level must be 0..9");
    return {ckpt::Hdf5Compression::gzip, level};
  }
  if (name == "zstd") {
    if (!lvl.empty() && (level < 1 || level > 22)) throw Error(ErrorCode::invalid_argument, "--compress zstd level must be 1..22");
    return {ckpt::Hdf5Compression::zstd, level};
  }
  throw Error(ErrorCode::invalid_argument, "--compress '" + s + "': use none, gzip[:N] or zstd[:N]");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(kDescription, "ckpt-convert");
  app.footer(kExamples);
  app.set_version_flag("--version", std::string("ckpt-convert ") + CKPT_VERSION_STRING);
  std::string in, out, to, dtype, compress, bf16 = "f32";
  std::vector<std::string> renames;
  ConvertOptions o;
  app.add_option("IN", in, "input checkpoint (any supported format)")->required();
  app.add_option("OUT", out, "output file")->required();
  app.add_option("--to", to, "output format: pt, pt.zst, h5, safetensors (default: from OUT's extension)");
  app.add_flag("--backbone", o.backbone,
               "write only the backbone of a Mammoth checkpoint as a plain state dict: the net.* keys without net. "
               "(by whole component), parameters and buffers, aliases dropped, wrappers (module., _orig_mod.) removed");
  app.add_flag("--keep-aliases", o.keep_aliases, "with --backbone: keep alias keys that share a tensor with an earlier key");
  app.add_flag("--drop-classifier", o.drop_classifier, "drop the head (modules named classifier; else fc or head) and its aliases");
  app.add_option("--classifier", o.classifier_names, "module name of the head for --drop-classifier (repeatable)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
  app.add_option("--strip-prefix", o.strip_prefix,
                 "auto: remove module. (DataParallel/DDP) and _orig_mod. (torch.compile) wherever they stand as whole "
                 "components; PREFIX: remove a leading prefix (repeated until none applies); none: strip nothing. "
                 "Repeat the option or separate values with commas: --strip-prefix auto,model.")
      ->delimiter(',')
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
  app.add_option("--rename", renames, "FROM=TO: rename leading whole components (repeatable; first match wins)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
  app.add_option("--dtype", dtype, "cast floating tensors: f16, bf16 or f32 (round to nearest even, as torch)");
  app.add_option("--compress", compress, "h5: none, gzip[:0-9] (default gzip:1, with shuffle), zstd[:1-22] (HDF5 filter 32015, default level 3); pt.zst: the zstd level (default 3)");
  app.add_option("--bf16", bf16, "h5: store bfloat16 as f32 (default, lossless) or raw (uint16 bits + attribute)")
      ->check(CLI::IsMember({"f32", "raw"}));
  app.add_flag("--dry-run", o.dry_run, "print the key mapping and write nothing");
  app.add_flag("--force", o.force, "replace an existing output");
  app.add_flag("-q,--quiet", o.quiet, "no summary line on stderr");
  app.add_flag("--no-fsync", [&](int64_t) { o.durable = false; }, "skip fsync (scratch outputs only)");
  app.add_option("--threads", o.threads, "compression threads (default: all cores; CKPT_THREADS)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? exit_ok : exit_error;
  }
  return run_tool("ckpt-convert", [&] {
    if (!to.empty()) {
      o.to = parse_out_format(to);
      if (!o.to) throw Error(ErrorCode::invalid_argument, "--to '" + to + "': use pt, pt.zst, h5 or safetensors");
    }
    for (const auto& r : renames) o.renames.push_back(RenameRule::parse(r));
    if (!dtype.empty()) {
      if (dtype == "f16" || dtype == "float16" || dtype == "half") o.dtype = ckpt::DType::float16;
      else if (dtype == "bf16" || dtype == "bfloat16") o.dtype = ckpt::DType::bfloat16;
      else if (dtype == "f32" || dtype == "float32" || dtype == "float") o.dtype = ckpt::DType::float32;
      else throw Error(ErrorCode::invalid_argument, "--dtype '" + dtype + "': use f16, bf16 or f32");
    }
    if (compress.empty()) compress = "gzip:1";  // see docs/cli-convert.md: smaller than h5py's gzip:4, 3x less CPU
    {
      auto [c, level] = parse_compress(compress);
      o.compression = c;
      o.level = level;
      o.compression_given = true;
    }
    o.bf16 = bf16 == "raw" ? ckpt::Hdf5BF16::raw : ckpt::Hdf5BF16::float32;
    if (o.threads == 0) o.threads = worker_threads();
    return run_convert(in, out, o);
  });
}
