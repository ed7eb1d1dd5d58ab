// Cross-entropy (hard and soft targets) from the fuzz input.
#include <cfloat>
#include <cmath>
#include <limits>

#include "tests/fuzz/fuzz.h"

namespace xent_fuzz {

void FuzzCrossEntropy(Input& in, Common& c) {
  const Head h = ReadHead(in);
  const size_t V = h.V, B = h.B;
  const DType xt = h.t;
  const size_t xs = ChooseStride(in, V);
  const uint8_t kind = in.U8();
  const bool soft = kind % 4 == 3;
  const DType qt = soft ? (in.Bit() ? DType::kF32 : xt) : (kind & 4 ? DType::kI32 : DType::kI64);
  const size_t ts = soft ? ChooseStride(in, V) : in.U8() % 3;  // index stride 0 (= 1), 1, 2
  const uint8_t outs = in.U8();
  const bool want_loss = outs & 1, want_row = outs & 2, want_lse = outs & 4, want_grad = outs & 8;
  const bool inplace = want_grad && (outs & 16);
  const DType gt = inplace ? xt : ((outs & 32) ? DType::kF32 : xt);
  const size_t gs = inplace ? xs : ChooseStride(in, V);
  const bool use_weight = in.U8() % 3 == 0, use_rs = in.U8() % 3 == 0;
  static const int64_t kIgn[] = {-100, -100, -1, 0, std::numeric_limits<int64_t>::min(), 7};
  const int64_t ignore = kIgn[in.U8() % 6];
  const int reduction = in.U8() % 3;
  const float eps = Pick(in, {0.0f, 0.0f, 0.1f, 0.5f, 1.0f, 1e-8f, kDenorm});
  const float z_loss = Pick(in, {0.0f, 0.0f, 1e-4f, 0.1f, 1.0f, kDenorm});
  const float softcap = Pick(in, {0.0f, 0.0f, 0.0f, 30.0f, 1.0f, 5.0f, 1e-3f, 1e4f, FLT_MIN});
  const float grad_scale = Pick(in, {1.0f, 1.0f, -1.0f, 0.5f, 0.0f, 1e3f, 1e-3f, kDenorm, -2.5f});
  const size_t off = ChooseOffset(in);
  Ctx("cross_entropy B=%zu V=%zu dtype=%d stride=%zu soft=%d target_dtype=%d target_stride=%zu outs=%#x grad_dtype=%d "
      "grad_stride=%zu inplace=%d weight=%d row_scale=%d ignore=%lld red=%d eps=%g z=%g cap=%g gs=%g off=%zu",
      B, V, static_cast<int>(xt), xs, soft, static_cast<int>(qt), ts, outs, static_cast<int>(gt), gs, inplace,
      use_weight, use_rs, static_cast<long long>(ignore), reduction, eps, z_loss, softcap, grad_scale, off);

  CaseSpec s = NewSpec(abi::kCrossEntropy, B, V, c);
  MatrixField(s, "logits", xt, xs, off);
  const Specials x_sp = ReadSpecials(in, B, V, Dist::kLogits);
  Specials q_sp;
  if (soft) {
    MatrixField(s, "target", qt, ts, ChooseOffset(in));
    q_sp = ReadSpecials(in, B, V, Dist::kProbs);
  } else {
    IndexField(s, "target", qt, ts, ChooseOffset(in));
  }
  if (use_weight) VectorField(s, "weight", true, ChooseFloatOffset(in));
  if (use_rs) VectorField(s, "row_scale", true, ChooseFloatOffset(in));
  VectorField(s, "loss", want_loss, ChooseFloatOffset(in));
  VectorField(s, "row_loss", want_row, ChooseFloatOffset(in));
  VectorField(s, "lse", want_lse, ChooseFloatOffset(in));
  if (want_grad && inplace) s.InPlace("grad");
  if (want_grad && !inplace) MatrixField(s, "grad", gt, gs, ChooseOffset(in));
  s.Set("ignore_index", static_cast<double>(ignore)).Set("reduction", reduction).Set("label_smoothing", eps);
  s.Set("z_loss", z_loss).Set("softcap", softcap).Set("grad_scale", grad_scale);
  Case cs(s);

  // Values, in the payload generator's order.
  Payload& p = c.payload;
  FillMat(cs.buf("logits"), p, Dist::kLogits, x_sp);
  Buffer* y = cs.buf("target");
  if (soft) {
    Payload qp = p;
    qp.rng = Rng(p.rng.Next());
    FillMat(y, qp, Dist::kProbs, q_sp);
  } else {
    for (size_t i = 0; i < B; ++i) {
      int64_t v = static_cast<int64_t>(p.rng.Next() % V);
      if (p.rng.Next() % 5 == 0) v = ignore;
      if (qt == DType::kI32 && (ignore < INT32_MIN || ignore > INT32_MAX) && v == ignore) v = 0;
      y->SetIndex(i, v);
    }
  }
  if (Buffer* w = use_weight ? cs.buf("weight") : nullptr) {
    for (size_t j = 0; j < V; ++j) w->Set(j, 0, p.rng.Next() % 7 == 0 ? 0.0f : static_cast<float>(2 * p.rng.Uniform()));
  }
  if (Buffer* rs = use_rs ? cs.buf("row_scale") : nullptr) {
    for (size_t i = 0; i < B; ++i) rs->Set(i, 0, static_cast<float>(4 * p.rng.Uniform() - 2));
  }
  cs.Seal();

  // The operation's own invalid arguments (after the ones GenericBad applies).
  auto own = [&]() -> xent_status {
    switch (c.bad) {
      case Bad::kDType: {
        static const int32_t kBadDt[] = {0, 4, 5, 6, -1, 1000};
        cs.SetDTypeField("logits", kBadDt[in.U8() % 6]);
        return XENT_ERROR_INVALID_DTYPE;
      }
      case Bad::kNullInput: cs.SetPointer(in.Bit() ? "logits" : "target", nullptr); return XENT_ERROR_NULL_POINTER;
      case Bad::kOption:
        switch (in.U8() % 6) {
          case 0: cs.SetArg<int32_t>("reduction", 3 + in.U8() % 5); return XENT_ERROR_INVALID_ENUM;
          case 1: cs.SetArg<float>("label_smoothing", in.Bit() ? 1.5f : -kDenorm); break;
          case 2: cs.SetArg<float>("z_loss", in.Bit() ? NAN : -1.0f); break;
          case 3: cs.SetArg<float>("softcap", Pick(in, {INFINITY, -1.0f, kDenorm})); break;
          case 4: cs.SetArg<float>("grad_scale", in.Bit() ? NAN : -INFINITY); break;
          default: cs.SetArg<int32_t>("reserved0", 1); break;
        }
        return XENT_ERROR_INVALID_VALUE;
      case Bad::kTarget: {
        if (soft || B == 0) return XENT_OK;
        const size_t i = in.Below(B);
        int64_t v = in.Bit() ? static_cast<int64_t>(V) + in.U8() : -1 - static_cast<int64_t>(in.U8());
        if (v == ignore) v = static_cast<int64_t>(V);
        y->SetIndex(i, v);
        return y->GetIndex(i) != ignore ? XENT_ERROR_TARGET_OUT_OF_RANGE : XENT_OK;
      }
      case Bad::kAlias:
        if (B > 0 && (want_row || want_lse)) {
          if (xt != DType::kF32) return XENT_OK;  // row_loss / lse inside the logits (a float* cast)
          cs.SetPointer(want_row ? "row_loss" : "lse", cs.buf("logits")->data());
          return XENT_ERROR_ALIASING;
        }
        if (want_grad && !inplace && B > 0 && V > 1) {  // shifted by an element: not an exact alias
          const size_t gsize = xent::DTypeSize(gt), xsize = xent::DTypeSize(xt);
          const size_t stride = Resolve(xs, V) * xsize / gsize;
          // A shift of one gradient element must stay inside a logits row (an
          // f32 gradient over 2-column 16-bit logits would fall in the gap
          // between rows); otherwise the gradient starts at the logits, with
          // a different element size: no exact in-place alias either.
          const size_t shift = gsize < V * xsize ? gsize : 0;
          Alias(cs, "grad", static_cast<unsigned char*>(cs.buf("logits")->data()) + shift,
                stride < V ? Resolve(xs, V) : stride);
          return XENT_ERROR_ALIASING;
        }
        return XENT_OK;
      default: return XENT_OK;
    }
  };
  RunWithBad(cs, c, in, {"logits", true, SIZE_MAX / 2, true, -1, true}, own);
}

}  // namespace xent_fuzz
