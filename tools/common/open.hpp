// tools/common/open.hpp - how every tool opens its inputs.
//
// One entry point, so that every tool reads every format the same way,
// recognised by content, never by name: torch zip / legacy / TAR / pickle and
// their .zst frames (libckpt), safetensors (ckpt/safetensors.hpp), HDF5
// (ckpt/hdf5.hpp: ckpt-convert's layout exactly, other files as a flat state
// dict), and zstd frames holding safetensors or HDF5.
#pragma once

#include <string>

#include "ckpt/checkpoint.hpp"

namespace ckpt::tools {

Checkpoint open_input(const std::string& path, const OpenOptions& opts = {});

}  // namespace ckpt::tools
