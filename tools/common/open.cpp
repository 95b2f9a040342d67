#include "common/open.hpp"

namespace ckpt::tools {

Checkpoint open_input(const std::string& path, const OpenOptions& opts) {
  return Checkpoint::open(path, opts);
}

}  // namespace ckpt::tools
