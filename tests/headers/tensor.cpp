// Compiles <ckpt/tensor.hpp> alone: every public header is self-contained.
#include <ckpt/tensor.hpp>
#include <ckpt/tensor.hpp>  // and include-guarded
