// libH5Zckpt_zstd.so: HDF5 filter 32015 (zstd) as a dynamically loaded HDF5
// plugin, so that HDF5 programs without libckpt (h5py on Debian 12, whose
// hdf5plugin has no zstd) read and write the zstd datasets ckpt-convert
// writes: HDF5_PLUGIN_PATH=<folder of this file>. docs/hdf5-layout.md.
#include <H5PLextern.h>

#include "hdf5_zstd_filter.hpp"

extern "C" {
H5PL_type_t H5PLget_plugin_type(void) { return H5PL_TYPE_FILTER; }
const void* H5PLget_plugin_info(void) { return &ckpt::detail::kZstdFilterClass; }
}
