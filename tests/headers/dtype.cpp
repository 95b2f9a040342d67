// Compiles <ckpt/dtype.hpp> alone: every public header is self-contained.
#include <ckpt/dtype.hpp>
#include <ckpt/dtype.hpp>  // and include-guarded
