// Compiles <ckpt/error.hpp> alone: every public header is self-contained.
#include <ckpt/error.hpp>
#include <ckpt/error.hpp>  // and include-guarded
