// Dense canary-guarded matrices and vectors for the tests whose inputs are
// not B x V logits (linear cross-entropy's B x H and V x H matrices) or that
// build cases by hand (per-token statistics): any dtype, stride and
// alignment. Buffer (buffer.h) is the op-table-driven counterpart; Ulp and
// Close come from tolerance.h, the target fixture from gtest_util.h.
#ifndef XENT_TESTS_COMMON_MAT_H_
#define XENT_TESTS_COMMON_MAT_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "src/dtype.h"
#include "tests/common/gtest_util.h"
#include "tests/common/tolerance.h"
#include "xent/xent.h"

namespace xent_test {

constexpr unsigned char kMatCanary = 0xA5;

// A rows x cols matrix of `dtype` with row stride `stride` (elements) placed
// `offset` bytes past a 64-byte boundary, surrounded by canary bytes.
class Mat {
 public:
  Mat() = default;
  Mat(size_t rows, size_t cols, DType dtype, size_t stride = 0, size_t offset = 0)
      : rows_(rows), cols_(cols), stride_(stride ? stride : cols), offset_(offset), dtype_(dtype) {
    es_ = xent::DTypeSize(dtype);
    bytes_ = rows ? ((rows - 1) * stride_ + cols) * es_ : 0;
    buf_.assign(bytes_ + 128 + 64, kMatCanary);
    const uintptr_t base = reinterpret_cast<uintptr_t>(buf_.data());
    start_ = static_cast<size_t>((64 - base % 64) % 64) + 64 + offset;
  }
  void* data() { return rows_ ? buf_.data() + start_ : nullptr; }
  const void* data() const { return rows_ ? buf_.data() + start_ : nullptr; }
  size_t stride() const { return stride_; }
  DType dtype() const { return dtype_; }
  int32_t dt() const { return static_cast<int32_t>(dtype_); }
  size_t rows() const { return rows_; }
  size_t cols() const { return cols_; }

  double get(size_t r, size_t c) const { return xent::LoadScalarF32(buf_.data() + start_, r * stride_ + c, dtype_); }
  // Stores v rounded to the dtype; returns the stored value.
  double set(size_t r, size_t c, double v) {
    xent::StoreScalarF32(buf_.data() + start_, r * stride_ + c, dtype_, static_cast<float>(v));
    return get(r, c);
  }
  void fill(double v) {
    for (size_t r = 0; r < rows_; ++r)
      for (size_t c = 0; c < cols_; ++c) set(r, c, v);
  }
  // Copy of values as doubles (rows x cols, packed).
  std::vector<double> values() const {
    std::vector<double> v(rows_ * cols_);
    for (size_t r = 0; r < rows_; ++r)
      for (size_t c = 0; c < cols_; ++c) v[r * cols_ + c] = get(r, c);
    return v;
  }
  // True when every byte outside the rows x cols elements (before the first
  // row, in the stride gaps, after the last) is still canary.
  bool CanariesIntact() const {
    size_t pos = 0;
    for (size_t r = 0; r <= rows_; ++r) {
      const size_t begin = r < rows_ ? start_ + r * stride_ * es_ : buf_.size();
      for (; pos < begin; ++pos)
        if (buf_[pos] != kMatCanary) return false;
      if (r < rows_) pos = std::max(pos, begin + cols_ * es_);
    }
    return true;
  }

 private:
  size_t rows_ = 0, cols_ = 0, stride_ = 0, es_ = 4, bytes_ = 0, start_ = 0, offset_ = 0;
  DType dtype_ = DType::kF32;
  std::vector<unsigned char> buf_;
};

// Float vector with canaries on both sides.
class Vec {
 public:
  explicit Vec(size_t n, float init = std::nanf("")) : n_(n), buf_(n + 32, -12345.0f) {
    for (size_t i = 0; i < n; ++i) buf_[16 + i] = init;
  }
  float* data() { return buf_.data() + 16; }
  const float* data() const { return buf_.data() + 16; }
  float operator[](size_t i) const { return buf_[16 + i]; }
  float& operator[](size_t i) { return buf_[16 + i]; }
  size_t size() const { return n_; }
  bool CanariesIntact() const {
    for (size_t i = 0; i < 16; ++i)
      if (buf_[i] != -12345.0f || buf_[16 + n_ + i] != -12345.0f) return false;
    return true;
  }

 private:
  size_t n_;
  std::vector<float> buf_;
};

inline std::vector<float> RandomNormal(size_t n, double sigma, uint32_t seed, double mean = 0.0) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(mean, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(nd(rng));
  return v;
}

}  // namespace xent_test

#endif  // XENT_TESTS_COMMON_MAT_H_
