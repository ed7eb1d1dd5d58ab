// Errors inside the C API: the thread-local message behind xent_last_error(),
// failed checks (a status plus a message naming the argument and its value),
// and Guard(), which every entry point runs its body in so that nothing but a
// status crosses the ABI.
#ifndef XENT_CAPI_ERROR_H_
#define XENT_CAPI_ERROR_H_

#include <new>

#include "xent/xent.h"

namespace xent {

// The calling thread's last message ("" after success).
const char* LastError();
void ClearError();
bool HasError();
void SetError(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// A failed check: status and message are already set.
struct Fail {
  xent_status status;
};
[[noreturn]] inline void Throw(xent_status s) { throw Fail{s}; }

#define XENT_CHECK(cond, status, ...) \
  do {                                \
    if (!(cond)) {                    \
      ::xent::SetError(__VA_ARGS__);  \
      ::xent::Throw(status);          \
    }                                 \
  } while (0)

// The status XENT_TARGET left (XENT_OK, or UNSUPPORTED_TARGET with its message).
void CheckTargetEnvironment();

// Runs f() (returning xent_status) with the message cleared, mapping failed
// checks and exceptions to statuses; fills in a message for statuses the
// kernels return without one.
template <class F>
xent_status Guard(F&& f) {
  ClearError();
  try {
    CheckTargetEnvironment();
    const xent_status rc = f();
    if (rc == XENT_ERROR_OUT_OF_MEMORY && !HasError()) SetError("out of memory for scratch");
    if (rc == XENT_ERROR_CALLBACK && !HasError())
      SetError("parallel_for returned non-zero or did not run every task exactly once");
    return rc;
  } catch (const Fail& e) {
    return e.status;
  } catch (const std::bad_alloc&) {
    SetError("out of memory");
    return XENT_ERROR_OUT_OF_MEMORY;
  } catch (...) {
    SetError("internal error (unexpected exception)");
    return XENT_ERROR_INTERNAL;
  }
}

}  // namespace xent

#endif  // XENT_CAPI_ERROR_H_
