// Args structs versioned by size (the rules Linux uses for clone3/openat2):
// the library reads the first struct_size bytes it knows; a caller's longer
// struct is accepted only if every byte it does not know is zero.
#ifndef XENT_CAPI_ARGS_H_
#define XENT_CAPI_ARGS_H_

#include <cstddef>

#include "capi/op_table.h"
#include "xent/xent.h"

namespace xent {

// Largest struct_size accepted (a larger one is an uninitialized struct).
constexpr size_t kMaxStructSize = 4096;
// Room for any args struct this library knows.
constexpr size_t kArgsCapacity = 512;

// Copies the caller's args struct of `op` into `out` (op.args_size bytes)
// after checking struct_size; a failed check throws Fail.
void ReadArgs(const abi::OpDesc& op, const void* user, unsigned char* out);

// xent_*_args_init: zeroes struct_size bytes, writes the table's defaults and
// struct_size.
xent_status InitArgs(const abi::OpDesc& op, void* args, size_t struct_size);

}  // namespace xent

#endif  // XENT_CAPI_ARGS_H_
