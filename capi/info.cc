// The C ABI's library-wide functions: status strings, the thread's last
// message, version, threading and SIMD target control.
#include <cstdint>
#include <cstring>

#include "capi/error.h"
#include "src/dispatch.h"
#include "src/parallel.h"
#include "src/blas.h"
#include "xent/xent.h"

using namespace xent;  // NOLINT

extern "C" {

const char* xent_status_string(xent_status status) {
  // A C caller may pass any int: read the bits as int (loading an enum
  // outside its enumerators' range is undefined in C++).
  static_assert(sizeof(status) == sizeof(int), "xent_status is int-sized");
  int v;
  std::memcpy(&v, &status, sizeof v);
  switch (v) {
    case static_cast<int>(XENT_OK): return "ok";
    case static_cast<int>(XENT_ERROR_NULL_POINTER): return "null pointer";
    case static_cast<int>(XENT_ERROR_INVALID_SHAPE): return "invalid shape";
    case static_cast<int>(XENT_ERROR_INVALID_VALUE): return "invalid value";
    case static_cast<int>(XENT_ERROR_TARGET_OUT_OF_RANGE): return "target out of range";
    case static_cast<int>(XENT_ERROR_INVALID_DTYPE): return "invalid dtype";
    case static_cast<int>(XENT_ERROR_INVALID_ENUM): return "invalid enum value";
    case static_cast<int>(XENT_ERROR_INVALID_STRUCT): return "invalid struct size";
    case static_cast<int>(XENT_ERROR_ALIASING): return "overlapping buffers";
    case static_cast<int>(XENT_ERROR_UNSUPPORTED_TARGET): return "unsupported SIMD target";
    case static_cast<int>(XENT_ERROR_OUT_OF_MEMORY): return "out of memory";
    case static_cast<int>(XENT_ERROR_CALLBACK): return "parallel_for callback failed";
    case static_cast<int>(XENT_ERROR_INTERNAL): return "internal error";
    case static_cast<int>(XENT_ERROR_UNSUPPORTED): return "unsupported in this build";
  }
  return "unknown status";
}

const char* xent_last_error(void) { return LastError(); }

const char* xent_version_string(void) { return XENT_VERSION_STRING; }
uint32_t xent_version_number(void) { return XENT_VERSION_NUMBER; }
uint32_t xent_abi_version(void) { return XENT_ABI_VERSION; }

const char* xent_threading_backend(void) { return ThreadingBackendName(); }
int32_t xent_max_threads(void) { return MaxThreads(); }
const char* xent_blas_backend(void) { return BlasBackendName(); }

const char* xent_active_target(void) {
  try {
    return ActiveTargetName();
  } catch (...) {
    return "unknown";
  }
}

size_t xent_supported_targets(const char** names, size_t capacity) {
  try {
    return SupportedTargetNames(names, capacity);
  } catch (...) {
    return 0;
  }
}

xent_status xent_force_target(const char* name) {
  ClearError();
  try {
    const char* msg = "";
    const xent_status rc = ForceTarget(name, &msg);
    if (rc != XENT_OK) SetError("%s", msg);
    return rc;
  } catch (...) {
    SetError("out of memory");
    return XENT_ERROR_OUT_OF_MEMORY;
  }
}

}  // extern "C"
