// Runtime choices to template arguments, for the per-target kernels: instead
// of a hand-written ladder of switches and ternaries per kernel,
//
//   Visit<F>(Choose(FloatType{dtype}, Flag{softcap > 0}), args...)
//
// calls F::template Run<T, Cap>(args...) with T = float, BF16 or F16 and
// Cap = std::true_type or std::false_type. Choices:
//   FloatType{t}  float / BF16 / F16 by the dtype t (anything else: float)
//   Flag{b}       std::true_type / std::false_type
// F is a struct with a static member template Run (not a lambda: GCC does not
// give lambdas the target attributes of the HWY_BEFORE_NAMESPACE region).
#if defined(XENT_SRC_VISIT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_SRC_VISIT_INL_H_
#undef XENT_SRC_VISIT_INL_H_
#else
#define XENT_SRC_VISIT_INL_H_
#endif

#include <tuple>
#include <type_traits>
#include <utility>

#include "src/dtype.h"
#include "src/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

struct FloatType {
  DType t;
};
struct Flag {
  bool on;
};

template <class... C>
HWY_INLINE std::tuple<C...> Choose(C... c) {
  return std::tuple<C...>(c...);
}

template <class F, class Choices, size_t I, class... Ts>
struct VisitAt;

template <class F, class... C, size_t I, class... Ts>
struct VisitAt<F, std::tuple<C...>, I, Ts...> {
  using Tuple = std::tuple<C...>;
  template <class... Picked>
  using Next = VisitAt<F, Tuple, I + 1, Ts..., Picked...>;

  template <class... A>
  static HWY_INLINE void Go(const Tuple& c, A&&... a) {
    if constexpr (I == sizeof...(C)) {
      F::template Run<Ts...>(std::forward<A>(a)...);
    } else if constexpr (std::is_same<std::tuple_element_t<I, Tuple>, FloatType>::value) {
      switch (std::get<I>(c).t) {
        case DType::kBF16: return Next<BF16>::Go(c, std::forward<A>(a)...);
        case DType::kF16: return Next<F16>::Go(c, std::forward<A>(a)...);
        default: return Next<float>::Go(c, std::forward<A>(a)...);
      }
    } else {
      static_assert(std::is_same<std::tuple_element_t<I, Tuple>, Flag>::value, "a choice is FloatType or Flag");
      if (std::get<I>(c).on) return Next<std::true_type>::Go(c, std::forward<A>(a)...);
      return Next<std::false_type>::Go(c, std::forward<A>(a)...);
    }
  }
};

template <class F, class... C, class... A>
HWY_INLINE void Visit(const std::tuple<C...>& choices, A&&... args) {
  VisitAt<F, std::tuple<C...>, 0>::Go(choices, std::forward<A>(args)...);
}

// Same, with the first template arguments fixed (e.g. a kernel translation
// unit's dtype): VisitFixed<F, T>(Choose(Flag{b}), args...) calls
// F::template Run<T, B>(args...).
template <class F, class... Fixed, class... C, class... A>
HWY_INLINE void VisitFixed(const std::tuple<C...>& choices, A&&... args) {
  VisitAt<F, std::tuple<C...>, 0, Fixed...>::Go(choices, std::forward<A>(args)...);
}

// The f32-or-input output type: float when F32 is std::true_type, else T.
template <class F32, typename T>
using OutType = typename std::conditional<F32::value, float, T>::type;

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#endif  // XENT_SRC_VISIT_INL_H_
