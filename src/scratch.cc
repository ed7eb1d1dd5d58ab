#include "src/scratch.h"

#include <cstdlib>
#include <vector>

namespace xent {

void* ThreadBytes(size_t bytes) {
  thread_local std::vector<std::max_align_t> buf;
  const size_t n = (bytes + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t);
  if (buf.size() < n) {
    try {
      buf.resize(n);
    } catch (...) {
      return nullptr;
    }
  }
  return buf.data();
}

float* ThreadScratch(size_t floats) {
  thread_local std::vector<float> buf;
  if (buf.size() < floats) {
    try {
      buf.resize(floats);
    } catch (...) {
      return nullptr;
    }
  }
  return buf.data();
}

size_t StreamThresholdBytes() {
  static const size_t bytes = [] {
    const char* env = std::getenv("XENT_STREAM_BYTES");
    if (env == nullptr || env[0] == '\0') return size_t{32} << 20;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(env, &end, 10);
    return (end != nullptr && *end == '\0') ? static_cast<size_t>(v) : (size_t{32} << 20);
  }();
  return bytes;
}

}  // namespace xent
