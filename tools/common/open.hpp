// tools/common/open.hpp - how every tool opens its inputs.
//
// One entry point, so that every tool reads every format the same way:
// torch zip / legacy / TAR / pickle, .zst frames (libckpt), and the formats
// ckpt-convert exports (safetensors, HDF5) once their readers exist.
#pragma once

#include <string>

#include "ckpt/checkpoint.hpp"

namespace ckpt::tools {

Checkpoint open_input(const std::string& path, const OpenOptions& opts = {});

}  // namespace ckpt::tools
