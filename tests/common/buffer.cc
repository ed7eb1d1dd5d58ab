#include "tests/common/buffer.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace xent_test {

// Per float dtype (f32, bf16, f16): signaling NaNs, distinct from each other.
uint32_t UnwrittenBits(DType t) {
  static const uint32_t kBits[] = {0x7FA5A5A5u, 0x7FA5u, 0x7D5Au};
  return IsFloat(t) ? kBits[static_cast<int>(t) - 1] : 0;
}
uint32_t PaddingBits(DType t) {
  static const uint32_t kBits[] = {0x7FA00000u, 0x7FA0u, 0x7D00u};
  return IsFloat(t) ? kBits[static_cast<int>(t) - 1] : 0;
}

void Buffer::Free::operator()(unsigned char* p) const { std::free(p); }

Buffer::Buffer(const Layout& layout, Guard guard, Content content) : layout_(layout), guard_(guard) {
  if (layout_.stride == 0) layout_.stride = layout_.cols;
  es_ = xent::DTypeSize(layout_.dtype);
  span_ = layout_.rows && layout_.cols ? ((layout_.rows - 1) * layout_.stride + layout_.cols) * es_ : 0;
  unsigned char* p = nullptr;
  switch (guard) {
    case Guard::kCanary:
      alloc_ = kGuardBytes + 63 + layout_.offset + span_ + kGuardBytes;
      p = static_cast<unsigned char*>(std::malloc(alloc_));
      if (p != nullptr) {
        const uintptr_t base = reinterpret_cast<uintptr_t>(p);
        start_ = kGuardBytes + (64 - base % 64) % 64 + layout_.offset;
      }
      break;
    case Guard::kExact:
      alloc_ = layout_.offset + std::max<size_t>(span_, 1);
      p = static_cast<unsigned char*>(std::malloc(alloc_));
      start_ = layout_.offset;
      break;
    case Guard::kNone:
      alloc_ = (layout_.offset + std::max<size_t>(span_, 1) + 63) / 64 * 64;
      p = static_cast<unsigned char*>(std::aligned_alloc(64, alloc_));
      start_ = layout_.offset;
      break;
  }
  if (p == nullptr) throw std::bad_alloc();
  mem_.reset(p);
  data_ = p + start_;
  if (guard == Guard::kNone) return;
  std::memset(p, kCanaryByte, alloc_);
  if (content == Content::kCanary || !IsFloat(layout_.dtype)) return;
  for (size_t r = 0; r < layout_.rows; ++r) {
    if (content == Content::kOutput) {
      for (size_t c = 0; c < layout_.cols; ++c) SetBits(r, c, UnwrittenBits(layout_.dtype));
    } else if (r + 1 < layout_.rows) {
      for (size_t c = layout_.cols; c < layout_.stride; ++c) SetBits(r, c, PaddingBits(layout_.dtype));
    }
  }
}

Buffer Buffer::View(void* data, const Layout& layout) {
  Buffer b;
  b.layout_ = layout;
  if (b.layout_.stride == 0) b.layout_.stride = b.layout_.cols;
  b.es_ = xent::DTypeSize(layout.dtype);
  b.span_ = layout.rows && layout.cols ? ((layout.rows - 1) * b.layout_.stride + layout.cols) * b.es_ : 0;
  b.data_ = data;
  return b;
}

void Buffer::Fill(double v) {
  for (size_t r = 0; r < layout_.rows; ++r)
    for (size_t c = 0; c < layout_.cols; ++c) Set(r, c, v);
}

std::vector<double> Buffer::ValuesOf(const std::vector<unsigned char>& snapshot) const {
  const unsigned char* base = snapshot.data() + start_;
  std::vector<double> v(layout_.rows * layout_.cols);
  for (size_t r = 0; r < layout_.rows; ++r)
    for (size_t c = 0; c < layout_.cols; ++c) v[r * layout_.cols + c] = GetAt(base, r * layout_.stride + c);
  return v;
}

std::vector<double> Buffer::Values() const {
  std::vector<double> v(layout_.rows * layout_.cols);
  for (size_t r = 0; r < layout_.rows; ++r)
    for (size_t c = 0; c < layout_.cols; ++c) v[r * layout_.cols + c] = Get(r, c);
  return v;
}

template <class F>
void Buffer::ForOutside(F f) const {
  // [0, start), the padding after each row but the last, [start + span, alloc).
  f(size_t{0}, start_);
  if (span_ > 0) {
    const size_t pitch = layout_.stride * es_, row = layout_.cols * es_;
    for (size_t r = 0; r + 1 < layout_.rows; ++r) f(start_ + r * pitch + row, start_ + (r + 1) * pitch);
  }
  f(start_ + span_, alloc_);
}

void Buffer::Seal() {
  outside_.clear();
  if (guard_ == Guard::kNone) return;
  const unsigned char* p = mem_.get();
  ForOutside([&](size_t b, size_t e) { outside_.insert(outside_.end(), p + b, p + e); });
}

bool Buffer::OutsideRowsUnchanged() const {
  if (guard_ == Guard::kNone) return true;
  const unsigned char* p = mem_.get();
  size_t k = 0;
  bool same = true;
  ForOutside([&](size_t b, size_t e) {
    if (!same || e <= b) return;
    same = k + (e - b) <= outside_.size() && std::memcmp(p + b, outside_.data() + k, e - b) == 0;
    k += e - b;
  });
  return same && k == outside_.size();
}

size_t Buffer::Unwritten() const {
  if (!IsFloat(layout_.dtype)) return 0;
  const uint32_t u = UnwrittenBits(layout_.dtype);
  size_t n = 0;
  for (size_t r = 0; r < layout_.rows; ++r)
    for (size_t c = 0; c < layout_.cols; ++c) n += Bits(r, c) == u;
  return n;
}

std::vector<unsigned char> Buffer::Snapshot() const {
  return mem_ ? std::vector<unsigned char>(mem_.get(), mem_.get() + alloc_) : std::vector<unsigned char>();
}

bool Buffer::SameAs(const std::vector<unsigned char>& s) const {
  return s.size() == alloc_ && (alloc_ == 0 || std::memcmp(s.data(), mem_.get(), alloc_) == 0);
}

void Buffer::Restore(const std::vector<unsigned char>& s) {
  if (s.size() == alloc_ && alloc_ > 0) std::memcpy(mem_.get(), s.data(), alloc_);
}

}  // namespace xent_test
