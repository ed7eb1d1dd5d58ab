// Buffers for tests, the fuzz harness and the benchmark: a rows x cols matrix
// (or a vector: one row; or B class indices: B rows of one column) of any xent
// dtype, `stride` elements between rows, placed `offset` bytes past an
// alignment boundary, in one of three guards:
//
//   kCanary  one allocation with kGuardBytes of canary before and after the
//            used bytes (which start `offset` bytes past a 64-byte boundary);
//   kExact   the used bytes are their own exact-size heap allocation (`offset`
//            bytes into it), so AddressSanitizer sees any access past them;
//   kNone    64-byte aligned, no canary (the benchmark's large buffers).
//
// Outside the rows' elements (guard zones, and the padding between rows when
// stride > cols) the bytes are recorded when the buffer is sealed (Seal(),
// after its values are written); OutsideRowsUnchanged() shows any write
// there. An input's padding holds a signaling-NaN pattern (a kernel that reads
// it produces NaN where the reference has a number); an output's rows start as
// kUnwritten bit patterns, which no computation produces (a signaling NaN), so
// Unwritten() finds elements an operation should have written and did not.
#ifndef XENT_TESTS_COMMON_BUFFER_H_
#define XENT_TESTS_COMMON_BUFFER_H_

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "src/dtype.h"

namespace xent_test {

using xent::DType;

enum class Guard : uint8_t { kCanary, kExact, kNone };

constexpr unsigned char kCanaryByte = 0xA5;
constexpr size_t kGuardBytes = 64;

// Bit patterns of an output element not yet written (signaling NaNs; x86 and
// Arm arithmetic only produce quiet ones) and of input padding.
uint32_t UnwrittenBits(DType t);
uint32_t PaddingBits(DType t);

inline bool IsFloat(DType t) { return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16; }
inline bool IsIndex(DType t) { return t == DType::kI32 || t == DType::kI64; }

struct Layout {
  size_t rows = 0, cols = 0;
  size_t stride = 0;  // elements between rows; 0 = cols
  DType dtype = DType::kF32;
  size_t offset = 0;  // bytes past the alignment boundary / into the allocation
};

enum class Content : uint8_t {
  kInput,   // rows as given; padding = PaddingBits
  kOutput,  // rows = UnwrittenBits; padding = canary
  kCanary,  // everything canary bytes (the fuzz harness' index vectors, ...)
};

class Buffer {
 public:
  Buffer() = default;
  Buffer(const Layout& layout, Guard guard, Content content);
  Buffer(Buffer&&) = default;
  Buffer& operator=(Buffer&&) = default;
  // A buffer someone else owns (the benchmark's large inputs), seen with
  // `layout` (offset ignored); no canary, nothing sealed.
  static Buffer View(void* data, const Layout& layout);

  bool valid() const { return mem_ != nullptr; }
  // Never NULL once constructed, even for 0 rows (a required pointer).
  void* data() const { return data_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t rows() const { return layout_.rows; }
  size_t cols() const { return layout_.cols; }
  size_t stride() const { return layout_.stride; }
  size_t offset() const { return layout_.offset; }
  DType dtype() const { return layout_.dtype; }
  int32_t dt() const { return static_cast<int32_t>(layout_.dtype); }
  size_t elem_size() const { return es_; }
  // Bytes from the first element to past the last one.
  size_t span() const { return span_; }

  // Element (r, c): float dtypes as the value, index dtypes as the index.
  double Get(size_t r, size_t c = 0) const { return GetAt(data_, r * layout_.stride + c); }
  // Stores v rounded to the dtype and returns the stored value (an index
  // dtype stores static_cast<int64_t>(v)).
  double Set(size_t r, size_t c, double v) {
    const size_t i = r * layout_.stride + c;
    if (IsIndex(layout_.dtype)) {
      StoreIndex(i, static_cast<int64_t>(v));
    } else {
      xent::StoreScalarF32(data_, i, layout_.dtype, static_cast<float>(v));
    }
    return GetAt(data_, i);
  }
  // Elements [c0, c0 + n) of row r of a float buffer, rounded as Set rounds
  // them (without Set's read-back: the fuzz harness' fills).
  void SetRow(size_t r, size_t c0, const double* v, size_t n) {
    const size_t i = r * layout_.stride + c0;
    for (size_t k = 0; k < n; ++k) xent::StoreScalarF32(data_, i + k, layout_.dtype, static_cast<float>(v[k]));
  }
  int64_t GetIndex(size_t r) const { return xent::LoadIndex(data_, r * layout_.stride, layout_.dtype); }
  void SetIndex(size_t r, int64_t v) { StoreIndex(r * layout_.stride, v); }
  // Raw bits of a float element (the low 16 for 16-bit dtypes).
  uint32_t Bits(size_t r, size_t c) const {
    const unsigned char* p = static_cast<const unsigned char*>(data_) + (r * layout_.stride + c) * es_;
    if (es_ == 4) {
      uint32_t b;
      std::memcpy(&b, p, 4);
      return b;
    }
    uint16_t b;
    std::memcpy(&b, p, 2);
    return b;
  }
  void SetBits(size_t r, size_t c, uint32_t bits) {
    unsigned char* p = static_cast<unsigned char*>(data_) + (r * layout_.stride + c) * es_;
    if (es_ == 4) {
      std::memcpy(p, &bits, 4);
    } else {
      const uint16_t b = static_cast<uint16_t>(bits);
      std::memcpy(p, &b, 2);
    }
  }
  void Fill(double v);
  // rows x cols values, packed, as doubles.
  std::vector<double> Values() const;

  // Records the bytes outside the rows (call after writing the inputs).
  void Seal();
  bool OutsideRowsUnchanged() const;
  // Elements of rows [0, rows) still holding UnwrittenBits (outputs).
  size_t Unwritten() const;
  // rows x cols values as they were when `snapshot` (of this buffer) was taken.
  std::vector<double> ValuesOf(const std::vector<unsigned char>& snapshot) const;
  // The whole allocation, for before/after comparisons.
  std::vector<unsigned char> Snapshot() const;
  bool SameAs(const std::vector<unsigned char>& snapshot) const;
  void Restore(const std::vector<unsigned char>& snapshot);

 private:
  double GetAt(const void* base, size_t i) const {
    if (IsIndex(layout_.dtype)) return static_cast<double>(xent::LoadIndex(base, i, layout_.dtype));
    return xent::LoadScalarF32(base, i, layout_.dtype);
  }
  void StoreIndex(size_t i, int64_t v) {
    unsigned char* p = static_cast<unsigned char*>(data_) + i * es_;
    if (layout_.dtype == DType::kI32) {
      const int32_t w = static_cast<int32_t>(v);
      std::memcpy(p, &w, 4);
    } else {
      std::memcpy(p, &v, 8);
    }
  }
  template <class F>
  void ForOutside(F f) const;  // f(begin, end) for every byte range outside the rows

  Layout layout_;
  Guard guard_ = Guard::kNone;
  size_t es_ = 4, span_ = 0, start_ = 0, alloc_ = 0;
  struct Free {
    void operator()(unsigned char* p) const;
  };
  std::unique_ptr<unsigned char, Free> mem_;
  void* data_ = nullptr;
  std::vector<unsigned char> outside_;  // bytes outside the rows, as sealed
};

// Deterministic random numbers (xorshift64): the fuzz harness' generator,
// seeded from its input; every test draws from it too.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t Next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * (1.0 / 9007199254740992.0); }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  double Normal() {
    const double u = std::max(Uniform(), 1e-300), v = Uniform();
    return std::sqrt(-2 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
  size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(Next() % n); }
};

// Index-addressable pseudo-random values (splitmix64 of seed and index), for
// filling large buffers in parallel (the benchmark).
inline uint64_t Mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// Two independent uniforms in [0, 1) (24 bits each) for element i.
inline void HashUniforms(uint64_t seed, uint64_t i, float* u1, float* u2) {
  const uint64_t h = Mix64(seed * 0x100000000ull + i);
  *u1 = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
  *u2 = static_cast<float>((h >> 16) & 0xFFFFFF) * (1.0f / 16777216.0f);
}

}  // namespace xent_test

#endif  // XENT_TESTS_COMMON_BUFFER_H_
