// Compiles <ckpt/zip.hpp> alone: every public header is self-contained.
#include <ckpt/zip.hpp>
#include <ckpt/zip.hpp>  // and include-guarded
