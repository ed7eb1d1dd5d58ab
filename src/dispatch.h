// xent's own choice of SIMD target. Kernels are exported with HWY_EXPORT, but
// called through XENT_DISPATCH, which indexes Highway's per-function table with
// an index xent keeps (set from XENT_TARGET, xent_force_target() or the CPU),
// instead of Highway's process-global chosen target, which other libraries
// using Highway in the same process may change.
#ifndef XENT_SRC_DISPATCH_H_
#define XENT_SRC_DISPATCH_H_

#include <cstddef>
#include <cstdint>

#include "xent/xent.h"

namespace xent {

// Table index of the active target (always a valid, CPU-supported target).
size_t DispatchIndex();

// XENT_OK, or XENT_ERROR_UNSUPPORTED_TARGET with *message set when the
// XENT_TARGET environment variable named no usable target.
xent_status TargetStatus(const char** message);

// C API backends.
const char* ActiveTargetName();
size_t SupportedTargetNames(const char** names, size_t capacity);
xent_status ForceTarget(const char* name, const char** message);

}  // namespace xent

#define XENT_DISPATCH(FN) (*(HWY_DISPATCH_TABLE(FN)[::xent::DispatchIndex()]))

#endif  // XENT_SRC_DISPATCH_H_
