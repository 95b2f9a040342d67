// Compiles <ckpt/ckpt.hpp> alone: every public header is self-contained.
#include <ckpt/ckpt.hpp>
#include <ckpt/ckpt.hpp>  // and include-guarded
