// Compiles <ckpt/version.hpp> alone: every public header is self-contained.
#include <ckpt/version.hpp>
#include <ckpt/version.hpp>  // and include-guarded
