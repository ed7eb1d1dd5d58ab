#include "capi/error.h"

#include <cstdarg>
#include <cstdio>

#include "src/dispatch.h"

namespace xent {
namespace {
thread_local char tls_error[512];
}  // namespace

const char* LastError() { return tls_error; }
void ClearError() { tls_error[0] = '\0'; }
bool HasError() { return tls_error[0] != '\0'; }

void SetError(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(tls_error, sizeof(tls_error), fmt, ap);
  va_end(ap);
}

void CheckTargetEnvironment() {
  const char* msg = nullptr;
  const xent_status ts = TargetStatus(&msg);
  XENT_CHECK(ts == XENT_OK, ts, "%s", msg);
}

}  // namespace xent
