#include "tests/alloc/alloc_hook.h"

#include <errno.h>
#include <execinfo.h>
#include <link.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define XENT_ALLOC_HOOK_NEW_ONLY 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define XENT_ALLOC_HOOK_NEW_ONLY 1
#endif
#endif

namespace xent_alloc {
namespace {

std::atomic<bool> g_armed{false};
std::atomic<size_t> g_fail_at{0}, g_count{0}, g_exempt{0};
std::atomic<bool> g_failed{false};
bool g_backtrace = false;

// Code ranges of the libraries whose allocations may not fail.
struct Range {
  uintptr_t begin = 0, end = 0;
};
constexpr int kMaxExempt = 16;
Range g_exempt_ranges[kMaxExempt];
std::atomic<int> g_num_exempt{-1};

int AddRange(dl_phdr_info* info, size_t, void*) {
  const char* name = info->dlpi_name;
  // The BLAS too: OpenBLAS's small-matrix sgemm kernels for AVX-512 CPUs
  // (SkylakeX / Cooperlake, chosen at run time unless OPENBLAS_CORETYPE says
  // otherwise) malloc a buffer and crash when that fails; xent's contract
  // covers its own allocations (xent.h).
  static const char* const kNames[] = {"libgomp", "ld-linux", "libc.so", "libopenblas", "libblis"};
  bool exempt = false;
  for (const char* n : kNames) exempt = exempt || (name != nullptr && std::strstr(name, n) != nullptr);
  if (!exempt) return 0;
  // Every executable segment (OpenBLAS has two).
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    const int k = g_num_exempt.load();
    if (k >= kMaxExempt) return 0;
    g_exempt_ranges[k].begin = info->dlpi_addr + ph.p_vaddr;
    g_exempt_ranges[k].end = g_exempt_ranges[k].begin + ph.p_memsz;
    g_num_exempt.store(k + 1);
  }
  return 0;
}

bool Exempted(const void* caller) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(caller);
  for (int i = 0; i < g_num_exempt.load(); ++i)
    if (a >= g_exempt_ranges[i].begin && a < g_exempt_ranges[i].end) return true;
  return false;
}

// Whether this allocation (made from `caller`) must fail.
bool ShouldFail(const void* caller) {
  if (!g_armed.load(std::memory_order_relaxed)) return false;
  if (Exempted(caller)) {
    g_exempt.fetch_add(1);
    return false;
  }
  const size_t n = g_count.fetch_add(1) + 1;
  if (n != g_fail_at.load()) return false;
  g_failed.store(true);
  if (g_backtrace) {  // XENT_ALLOC_BACKTRACE=1: where the failing allocation is made
    void* frames[32];
    backtrace_symbols_fd(frames, backtrace(frames, 32), 2);
    (void)!write(2, "----\n", 5);
  }
  return true;
}

}  // namespace

void Arm(size_t n) {
  if (g_num_exempt.load() < 0) {
    g_num_exempt.store(0);
    g_backtrace = std::getenv("XENT_ALLOC_BACKTRACE") != nullptr;
    void* frames[2];
    backtrace(frames, 2);                 // loads the unwinder now, not inside a hook
    dl_iterate_phdr(&AddRange, nullptr);  // libgomp is loaded by now (linked, or dlopened by the test)
  }
  g_count.store(0);
  g_exempt.store(0);
  g_failed.store(false);
  g_fail_at.store(n);
  g_armed.store(true);
}

size_t Disarm() {
  g_armed.store(false);
  return g_count.load();
}

bool Failed() { return g_failed.load(); }
size_t Exempt() { return g_exempt.load(); }

#ifdef XENT_ALLOC_HOOK_NEW_ONLY
const char* Level() { return "operator new"; }
#else
const char* Level() { return "malloc"; }
#endif

}  // namespace xent_alloc

using xent_alloc::ShouldFail;

#ifdef XENT_ALLOC_HOOK_NEW_ONLY
// ---------------------------------------------------------------------------
// operator new / new[], every variant (ASan keeps malloc).
namespace {
void* New(size_t n, const void* caller, bool nothrow) {
  void* p = ShouldFail(caller) ? nullptr : std::malloc(n ? n : 1);
  if (p == nullptr && !nothrow) throw std::bad_alloc();
  return p;
}
void* NewAligned(size_t n, size_t a, const void* caller, bool nothrow) {
  void* p = nullptr;
  if (!ShouldFail(caller) && posix_memalign(&p, a < sizeof(void*) ? sizeof(void*) : a, n ? n : 1) != 0) p = nullptr;
  if (p == nullptr && !nothrow) throw std::bad_alloc();
  return p;
}
}  // namespace

#define XENT_CALLER __builtin_return_address(0)
void* operator new(size_t n) { return New(n, XENT_CALLER, false); }
void* operator new[](size_t n) { return New(n, XENT_CALLER, false); }
void* operator new(size_t n, const std::nothrow_t&) noexcept { return New(n, XENT_CALLER, true); }
void* operator new[](size_t n, const std::nothrow_t&) noexcept { return New(n, XENT_CALLER, true); }
void* operator new(size_t n, std::align_val_t a) { return NewAligned(n, size_t(a), XENT_CALLER, false); }
void* operator new[](size_t n, std::align_val_t a) { return NewAligned(n, size_t(a), XENT_CALLER, false); }
void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return NewAligned(n, size_t(a), XENT_CALLER, true);
}
void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return NewAligned(n, size_t(a), XENT_CALLER, true);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
#else
// ---------------------------------------------------------------------------
// The C allocator (libstdc++'s operator new calls malloc).
extern "C" {
void* __libc_malloc(size_t);
void __libc_free(void*);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);

#define XENT_CALLER __builtin_return_address(0)
void* malloc(size_t n) { return ShouldFail(XENT_CALLER) ? nullptr : __libc_malloc(n); }
void free(void* p) { __libc_free(p); }
void* calloc(size_t n, size_t s) { return ShouldFail(XENT_CALLER) ? nullptr : __libc_calloc(n, s); }
void* realloc(void* p, size_t n) { return n != 0 && ShouldFail(XENT_CALLER) ? nullptr : __libc_realloc(p, n); }
void* memalign(size_t a, size_t n) { return ShouldFail(XENT_CALLER) ? nullptr : __libc_memalign(a, n); }
void* aligned_alloc(size_t a, size_t n) { return ShouldFail(XENT_CALLER) ? nullptr : __libc_memalign(a, n); }
void* valloc(size_t n) { return ShouldFail(XENT_CALLER) ? nullptr : __libc_memalign(sysconf(_SC_PAGESIZE), n); }
void* pvalloc(size_t n) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return ShouldFail(XENT_CALLER) ? nullptr : __libc_memalign(page, (n + page - 1) / page * page);
}
int posix_memalign(void** out, size_t a, size_t n) {
  if (ShouldFail(XENT_CALLER)) return ENOMEM;
  void* p = __libc_memalign(a, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
}  // extern "C"
#endif
