// State of the current input, set by LLVMFuzzerTestOneInput (fuzz_main.cc).
#ifndef XENT_TESTS_FUZZ_FUZZ_MAIN_H_
#define XENT_TESTS_FUZZ_FUZZ_MAIN_H_

#include <string>

namespace xent_fuzz {

extern std::string g_ctx;       // what the current call is (printed on failure)
extern const char* g_target_a;  // the input's target (NULL: automatic)
extern const char* g_target_b;  // the second target every call also runs on (NULL: none)
// Whether this input's outputs are compared with the float64 reference
// (XENT_FUZZ_REFERENCE_EVERY = n: one input in n, chosen by a hash of the
// input; default every input).
bool ReferenceSampled();

}  // namespace xent_fuzz

#endif  // XENT_TESTS_FUZZ_FUZZ_MAIN_H_
