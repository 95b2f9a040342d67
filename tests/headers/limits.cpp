// Compiles <ckpt/limits.hpp> alone: every public header is self-contained.
#include <ckpt/limits.hpp>
#include <ckpt/limits.hpp>  // and include-guarded
