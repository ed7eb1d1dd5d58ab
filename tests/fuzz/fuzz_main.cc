// libFuzzer harness for the whole C ABI of libxent.
//
// One input = one call. The input is read front to back (zeros once it runs
// out): byte 0 picks the operation (byte 0 % 7; 0-127 the original format,
// 128-255 the same with edge-biased shapes and payloads: V at chunk and
// segment edges, whole rows of -inf, NaN or huge values), byte 1 the SIMD
// target (0 = automatic, else one of xent_supported_targets()), then the
// invalid-argument choice, threading (built-in backend, or a host
// parallel_for that splits, reverses, runs on threads, fails, skips or
// repeats tasks), the payload generator, and the operation's own choices
// (fuzz_<op>.cc): the shape (B, V up to several 4096-element segments), row
// strides, byte misalignment of every buffer, dtypes, options, which
// optional outputs exist, in-place operation, at most one deliberately
// invalid argument, and where NaN, +-inf, huge, denormal and raw bit patterns
// go in the pseudo-random payload.
//
// Every buffer is its own exact-size heap allocation (so ASan sees any read or
// write past it); row padding of inputs holds NaN bit patterns (reading it
// shows up in the results), outputs start as signaling-NaN patterns no
// computation produces (an element left unwritten shows up), and their
// padding as canary bytes (a write outside the rows shows up).
//
// Checks, per call, on the input's target and again on a second one (the
// next supported SIMD target, see SecondTarget; XENT_FUZZ_SECOND_TARGET=0
// turns it off):
// - no crash, no sanitizer report;
// - valid arguments: XENT_OK (or XENT_ERROR_CALLBACK exactly when the host
//   pool misbehaved), an empty xent_last_error(); every output element
//   written and nothing outside the outputs' rows; inputs unchanged; the
//   outputs agree with the float64 reference (tests/reference.h) under the
//   tolerance model's fuzz profile (tests/common/tolerance.h) on every input,
//   or on one in XENT_FUZZ_REFERENCE_EVERY (chosen by a hash of the input);
// - one invalid argument: exactly its documented status, a non-empty
//   xent_last_error(), and no buffer written.
// A failed check prints the details and aborts (libFuzzer saves the input).
//
// Reproduce: build with -Dfuzz=true and run `xent_fuzz CRASH_FILE` (libFuzzer)
// or `xent_fuzz_replay CRASH_FILE` (any compiler).
#include <strings.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/fuzz_main.h"

namespace xent_fuzz {

std::string g_ctx;
const char* g_target_a = nullptr;
const char* g_target_b = nullptr;

namespace {

std::vector<std::string> g_targets;
uint64_t g_input_hash = 0;
size_t g_reference_every = 1;
bool g_second_target = true;

size_t EnvSize(const char* name, size_t def) {
  const char* e = std::getenv(name);
  return (e != nullptr && e[0] != '\0') ? static_cast<size_t>(std::strtoull(e, nullptr, 10)) : def;
}

void Init() {
  const char* names[64];
  const size_t n = std::min<size_t>(xent_supported_targets(names, 64), 64);
  for (size_t i = 0; i < n; ++i) g_targets.emplace_back(names[i]);
  if (g_targets.empty()) Fail("no supported targets");
  g_reference_every = std::max<size_t>(1, EnvSize("XENT_FUZZ_REFERENCE_EVERY", 1));
  g_second_target = EnvSize("XENT_FUZZ_SECOND_TARGET", 1) != 0;
}

// Everything else in the ABI: statuses, versions, targets, args_init.
void FuzzMisc(Input& in) {
  Ctx("misc");
  const int32_t s = static_cast<int32_t>(in.U32());
  const char* str = xent_status_string(static_cast<xent_status>(s));
  if (str == nullptr || str[0] == '\0') Fail("xent_status_string(%d) is empty", s);
  if (xent_version_number() != XENT_VERSION_NUMBER || std::strcmp(xent_version_string(), XENT_VERSION_STRING) != 0 ||
      xent_abi_version() != XENT_ABI_VERSION)
    Fail("version mismatch");
  if (xent_threading_backend() == nullptr || xent_max_threads() < 1) Fail("threading info");
  // A target name from the input (not NUL-terminated data: copy).
  char name[24] = {};
  const size_t n = in.U8() % sizeof(name);
  for (size_t i = 0; i + 1 < n; ++i) name[i] = static_cast<char>(in.U8());
  const char* names[64];
  const size_t count = xent_supported_targets(names, 64);
  const size_t cap = in.U8() % 4;
  const char* few[4];
  if (xent_supported_targets(cap ? few : nullptr, cap) != count) Fail("xent_supported_targets count changes");
  const bool null_name = in.Bit();
  bool known = null_name || std::strlen(name) == 0 || strcasecmp(name, "auto") == 0;
  for (size_t i = 0; i < count && i < 64; ++i) {
    known = known || strcasecmp(name, names[i]) == 0 ||
            (strcasecmp(name, "avx512") == 0 && std::strcmp(names[i], "avx3") == 0);
  }
  const xent_status rc = xent_force_target(null_name ? nullptr : name);
  if (rc != (known ? XENT_OK : XENT_ERROR_UNSUPPORTED_TARGET))
    Fail("xent_force_target(\"%s\"): status %d, want %s", name, rc, known ? "XENT_OK" : "UNSUPPORTED_TARGET");
  if (xent_active_target() == nullptr) Fail("no active target");
  // args_init with arbitrary sizes into a 4 KiB buffer.
  static unsigned char buf[4096 + 64];
  const size_t size = in.U16() % (sizeof(buf) + 1);
  const size_t op = in.U8() % 6;
  const xent_status r =
      op == 5 ? xent_token_logprobs_args_init(nullptr, size) : Api::Linked().Init(*xent::abi::kAllOps[op], buf, size);
  const bool fits = op != 5 && size >= xent::abi::kAllOps[op]->args_size && size <= 4096;
  if (r != (op == 5 ? XENT_ERROR_NULL_POINTER : (fits ? XENT_OK : XENT_ERROR_INVALID_STRUCT)))
    Fail("%s_init(size %zu): status %d", xent::abi::kAllOps[op]->args_type, size, r);
  xent_force_target(nullptr);
}

// The next supported target, but not the last one (the baseline: EMU128 or
// SCALAR, 3-4x slower than the SIMD targets under UBSan) unless there is no
// other: the baseline runs as the first target of its share of the inputs
// (a third with three targets) instead of two thirds of them.
size_t SecondTarget(size_t ta) {
  const size_t n = g_targets.size(), b = (ta + 1) % n;
  return b == n - 1 && n > 2 ? 0 : b;
}

}  // namespace

bool ReferenceSampled() { return g_reference_every <= 1 || g_input_hash % g_reference_every == 0; }

}  // namespace xent_fuzz

using namespace xent_fuzz;  // NOLINT

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (g_targets.empty()) Init();
  g_ctx.clear();
  g_input_hash = 1469598103934665603ull;  // FNV-1a
  for (size_t i = 0; i < size; ++i) g_input_hash = (g_input_hash ^ data[i]) * 1099511628211ull;
  Input in(data, size);
  const uint8_t op = in.U8();
  g_edge = op >= 128;
  const uint8_t tsel = in.U8();
  const size_t ta = tsel == 0 ? 0 : tsel % g_targets.size();
  g_target_a = tsel == 0 ? nullptr : g_targets[ta].c_str();
  g_target_b = g_second_target && g_targets.size() > 1 ? g_targets[SecondTarget(ta)].c_str() : nullptr;
  if (xent_force_target(g_target_a) != XENT_OK) Fail("xent_force_target(%s) failed", g_target_a ? g_target_a : "auto");
  Ctx("target=%s%s ", g_target_a ? g_target_a : "auto", g_edge ? " edge" : "");
  Common c;
  c.bad = ChooseBad(in);
  c.th = ChooseThreading(in);
  c.payload = ChoosePayload(in);
  Ctx("threads=%d pool=%d pieces=%zu bad=%s sigma=%g mean=%g mask=%g | ", c.th.num_threads,
      c.th.use_pool ? static_cast<int>(c.th.pool.mode) : -1, c.th.pool.pieces, BadName(c.bad), c.payload.sigma,
      c.payload.mean, c.payload.mask);
  switch (op % 7) {
    case 0: FuzzCrossEntropy(in, c); break;
    case 1: FuzzSoftmax(in, c); break;
    case 2: FuzzSoftmaxBackward(in, c); break;
    case 3: FuzzTokenLogprobs(in, c); break;
    case 4: FuzzDivergence(in, c); break;
    case 5: FuzzBce(in, c); break;
    default: FuzzMisc(in); break;
  }
  return 0;
}
