// Validation of an operation's args against its table entry
// (capi/op_table.h): shapes, dtypes, strides, option domains, class indices,
// overlapping buffers; the validated values are written into the operation's
// problem struct (src/problem.h). A failed check throws Fail with a message
// that names the argument and its value.
#ifndef XENT_CAPI_VALIDATE_H_
#define XENT_CAPI_VALIDATE_H_

#include "capi/op_table.h"

namespace xent {

// `args`: the caller's struct as read by ReadArgs (op.args_size bytes).
// `problem`: the op's problem struct, default-constructed.
void Validate(const abi::OpDesc& op, const unsigned char* args, void* problem);

}  // namespace xent

#endif  // XENT_CAPI_VALIDATE_H_
