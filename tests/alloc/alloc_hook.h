// Allocation-failure injection for tests: this program's allocator is
// interposed (alloc_hook.cc) so that, while armed, the n-th allocation of the
// process fails.
//
// Plain builds interpose malloc, calloc, realloc, posix_memalign,
// aligned_alloc, memalign, valloc and pvalloc (forwarding to glibc's __libc_*
// entry points): every allocation fails, whoever makes it (xent, libstdc++'s
// operator new, oneTBB), except those made by libgomp, the dynamic loader,
// libc itself (thread creation) and the BLAS (OpenBLAS, BLIS): libgomp aborts
// the process when they fail (gomp_malloc calls gomp_fatal; so does a thread
// it cannot create), OpenBLAS's AVX-512 small-matrix kernels crash. They are
// counted apart and never failed. Under AddressSanitizer, which owns
// malloc, only operator new / new[] (every variant) are interposed, and
// LeakSanitizer checks that a failed call leaks nothing.
// XENT_ALLOC_BACKTRACE=1 prints the stack of every failed allocation.
#ifndef XENT_TESTS_ALLOC_ALLOC_HOOK_H_
#define XENT_TESTS_ALLOC_ALLOC_HOOK_H_

#include <cstddef>

namespace xent_alloc {

// Fail the n-th allocation from now on (n >= 1), or none (n = 0); count all.
void Arm(size_t n);
// Stop counting; returns the number of allocations counted while armed.
size_t Disarm();
// Whether the armed failure happened.
bool Failed();
// Allocations seen while armed that may not fail (libgomp, the loader).
size_t Exempt();
// "malloc" or "operator new": what the hook interposes in this build.
const char* Level();

}  // namespace xent_alloc

#endif  // XENT_TESTS_ALLOC_ALLOC_HOOK_H_
