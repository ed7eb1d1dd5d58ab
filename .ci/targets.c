/* Prints the SIMD targets libxent supports on this CPU (best first) and the
 * one it dispatches to. Used by .ci/hardening.sh to show what each emulated
 * qemu-aarch64 CPU provides. */
#include <stdio.h>

#include <xent/xent.h>

int main(void) {
  const char* names[64];
  size_t n = xent_supported_targets(names, 64), i;
  for (i = 0; i < n && i < 64; ++i) printf("%s%s", i ? " " : "", names[i]);
  printf(" (active: %s)\n", xent_active_target());
  return n == 0;
}
