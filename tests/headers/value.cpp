// Compiles <ckpt/value.hpp> alone: every public header is self-contained.
#include <ckpt/value.hpp>
#include <ckpt/value.hpp>  // and include-guarded
