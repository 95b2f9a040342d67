// Compiles <ckpt/source.hpp> alone: every public header is self-contained.
#include <ckpt/source.hpp>
#include <ckpt/source.hpp>  // and include-guarded
