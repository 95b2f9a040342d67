// Compiles <ckpt/pickle.hpp> alone: every public header is self-contained.
#include <ckpt/pickle.hpp>
#include <ckpt/pickle.hpp>  // and include-guarded
