#include "src/dispatch.h"

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "hwy/highway.h"
#include "hwy/targets.h"

namespace xent {
namespace {

// Targets compiled into this library, best first.
constexpr int64_t kCompiled = HWY_TARGETS;

int64_t Supported() {
  // hwy::SupportedTargets() reports the CPU (the static fallback is always
  // there). Highway 1.0.3 runs CPUID on every call, which a VM traps: read
  // once (3 % of the fuzzer's time, two xent_force_target calls per input).
  static const int64_t supported = (hwy::SupportedTargets() | HWY_STATIC_TARGET) & kCompiled;
  return supported;
}

size_t IndexOf(int64_t target) {
  const int64_t mask =
      (HWY_CHOSEN_TARGET_SHIFT(target) | HWY_CHOSEN_TARGET_MASK_SCALAR) & HWY_CHOSEN_TARGET_MASK_TARGETS;
  return hwy::Num0BitsBelowLS1Bit_Nonzero64(static_cast<uint64_t>(mask));
}

int64_t Best() {
  const int64_t s = Supported();
  return s & -s;  // lowest bit = best target
}

std::string Lower(const char* s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

std::string NameOf(int64_t target) { return Lower(hwy::TargetName(target)); }

// Parses a target name; 0 when unknown or not compiled.
int64_t Parse(const char* name) {
  const std::string n = Lower(name);
  const std::string want = (n == "avx512") ? "avx3" : n;
  for (int64_t bits = kCompiled; bits != 0; bits &= bits - 1) {
    const int64_t t = bits & -bits;
    if (NameOf(t) == want) return t;
  }
  return 0;
}

struct State {
  std::atomic<int64_t> target{0};
  std::atomic<bool> env_bad{false};
  std::string env_message;
};

State& GetState() {
  static State* state = [] {
    auto* s = new State;
    int64_t t = Best();
    const char* env = std::getenv("XENT_TARGET");
    if (env != nullptr && env[0] != '\0' && Lower(env) != "auto") {
      const int64_t parsed = Parse(env);
      if (parsed != 0 && (parsed & Supported())) {
        t = parsed;
      } else {
        s->env_bad.store(true);
        s->env_message = std::string("XENT_TARGET=") + env +
                         (parsed == 0 ? " is not a target compiled into xent" : " is not supported by this CPU");
        s->env_message += " (supported:";
        for (int64_t b = Supported(); b != 0; b &= b - 1) s->env_message += " " + NameOf(b & -b);
        s->env_message += ")";
      }
    }
    s->target.store(t);
    return s;
  }();
  return *state;
}

thread_local std::string tls_force_message;

}  // namespace

size_t DispatchIndex() {
  // One compiled target (HWY_COMPILE_ONLY_STATIC): HWY_EXPORT tables hold one entry.
  if ((kCompiled & (kCompiled - 1)) == 0) return 0;
  return IndexOf(GetState().target.load(std::memory_order_relaxed));
}

xent_status TargetStatus(const char** message) {
  State& s = GetState();
  if (s.env_bad.load(std::memory_order_relaxed)) {
    *message = s.env_message.c_str();
    return XENT_ERROR_UNSUPPORTED_TARGET;
  }
  return XENT_OK;
}

const char* ActiveTargetName() {
  static thread_local std::string name;
  name = NameOf(GetState().target.load());
  return name.c_str();
}

size_t SupportedTargetNames(const char** names, size_t capacity) {
  // Static storage: names live as long as the library.
  static const std::string* table = [] {
    auto* t = new std::string[64];
    for (int i = 0; i < 64; ++i) t[i] = NameOf(int64_t{1} << i);
    return t;
  }();
  size_t n = 0;
  for (int64_t b = Supported(); b != 0; b &= b - 1) {
    const int64_t t = b & -b;
    if (n < capacity && names != nullptr)
      names[n] = table[hwy::Num0BitsBelowLS1Bit_Nonzero64(static_cast<uint64_t>(t))].c_str();
    ++n;
  }
  return n;
}

xent_status ForceTarget(const char* name, const char** message) {
  State& s = GetState();
  if (name == nullptr || name[0] == '\0' || Lower(name) == "auto") {
    s.target.store(Best());
    s.env_bad.store(false);
    return XENT_OK;
  }
  const int64_t t = Parse(name);
  if (t == 0 || !(t & Supported())) {
    tls_force_message = std::string("target \"") + name + "\" is " +
                        (t == 0 ? "not a target compiled into xent" : "not supported by this CPU") + " (supported:";
    for (int64_t b = Supported(); b != 0; b &= b - 1) tls_force_message += " " + NameOf(b & -b);
    tls_force_message += ")";
    *message = tls_force_message.c_str();
    return XENT_ERROR_UNSUPPORTED_TARGET;
  }
  s.target.store(t);
  s.env_bad.store(false);
  return XENT_OK;
}

}  // namespace xent
