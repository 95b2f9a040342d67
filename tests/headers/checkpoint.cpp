// Compiles <ckpt/checkpoint.hpp> alone: every public header is self-contained.
#include <ckpt/checkpoint.hpp>
#include <ckpt/checkpoint.hpp>  // and include-guarded
