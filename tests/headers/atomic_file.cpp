// Compiles <ckpt/atomic_file.hpp> alone: every public header is self-contained.
#include <ckpt/atomic_file.hpp>
#include <ckpt/atomic_file.hpp>  // and include-guarded
