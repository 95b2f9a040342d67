// ckpt/ckpt.hpp - umbrella header for libckpt.
#pragma once

#include "ckpt/atomic_file.hpp"
#include "ckpt/checkpoint.hpp"
#include "ckpt/dtype.hpp"
#include "ckpt/error.hpp"
#include "ckpt/limits.hpp"
#include "ckpt/pickle.hpp"
#include "ckpt/source.hpp"
#include "ckpt/tensor.hpp"
#include "ckpt/value.hpp"
#include "ckpt/zip.hpp"
#include "ckpt/version.hpp"
