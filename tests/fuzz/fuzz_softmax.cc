// The softmax family, softmax backward and token log-probabilities from the
// fuzz input.
#include <cfloat>
#include <cmath>

#include "tests/fuzz/fuzz.h"

namespace xent_fuzz {

void FuzzSoftmax(Input& in, Common& c) {
  const Head h = ReadHead(in);
  const size_t V = h.V, B = h.B;
  const DType xt = h.t;
  const size_t xs = ChooseStride(in, V);
  const uint8_t outs = in.U8();
  bool want_p = outs & 1, want_lp = outs & 2, want_lse = outs & 4, want_h = outs & 8;
  if (!(want_p || want_lp || want_lse || want_h) && c.bad != Bad::kNullInput) want_p = true;
  const int inplace = (outs >> 4) % 4;  // 1: probs in place, 2: log_probs in place
  const bool p_in = want_p && inplace == 1, lp_in = want_lp && inplace == 2;
  const DType pt = p_in ? xt : ((outs & 64) ? DType::kF32 : xt);
  const DType lpt = lp_in ? xt : ((outs & 128) ? DType::kF32 : xt);
  const size_t ps = p_in ? xs : ChooseStride(in, V), lps = lp_in ? xs : ChooseStride(in, V);
  const float T = Pick(in, {1.0f, 1.0f, 0.5f, 2.0f, 1e-3f, 100.0f, FLT_MIN, 1e30f, 0.7f});
  const size_t off = ChooseOffset(in);
  Ctx("softmax B=%zu V=%zu dtype=%d stride=%zu outs=%#x probs(dtype=%d stride=%zu inplace=%d) log_probs(dtype=%d "
      "stride=%zu inplace=%d) T=%g off=%zu",
      B, V, static_cast<int>(xt), xs, outs, static_cast<int>(pt), ps, p_in, static_cast<int>(lpt), lps, lp_in, T, off);
  CaseSpec s = NewSpec(abi::kSoftmax, B, V, c);
  MatrixField(s, "logits", xt, xs, off);
  const Specials x_sp = ReadSpecials(in, B, V, Dist::kLogits);
  if (p_in) s.InPlace("probs");
  if (lp_in) s.InPlace("log_probs");
  if (want_p && !p_in) MatrixField(s, "probs", pt, ps, ChooseOffset(in));
  if (want_lp && !lp_in) MatrixField(s, "log_probs", lpt, lps, ChooseOffset(in));
  VectorField(s, "lse", want_lse, ChooseFloatOffset(in));
  VectorField(s, "entropy", want_h, ChooseFloatOffset(in));
  s.Set("temperature", T);
  Case cs(s);
  FillMat(cs.buf("logits"), c.payload, Dist::kLogits, x_sp);
  cs.Seal();

  auto own = [&]() -> xent_status {
    switch (c.bad) {
      case Bad::kDType: cs.SetDTypeField("logits", in.Bit() ? 0 : 9); return XENT_ERROR_INVALID_DTYPE;
      case Bad::kNullInput:
        if (in.Bit()) {
          cs.SetPointer("logits", nullptr);
        } else {
          for (const char* o : {"probs", "log_probs", "lse", "entropy"}) cs.SetPointer(o, nullptr);
        }
        return XENT_ERROR_NULL_POINTER;
      case Bad::kOption:
        if (in.Bit()) {
          cs.SetArg<float>("temperature", Pick(in, {0.0f, -1.0f, NAN, INFINITY, kDenorm}));
        } else {
          cs.SetArg<int32_t>("reserved0", 1 + in.U8());
        }
        return XENT_ERROR_INVALID_VALUE;
      case Bad::kAlias:
        if (want_p && want_lp && !p_in && !lp_in && B > 0) {  // two outputs on one buffer
          Alias(cs, "log_probs", cs.Pointer("probs"), cs.StrideArg("probs"), static_cast<int32_t>(pt));
          return XENT_ERROR_ALIASING;
        }
        if (!want_lse || !want_h || B == 0) return XENT_OK;
        cs.SetPointer("entropy", cs.Pointer("lse"));
        return XENT_ERROR_ALIASING;
      default: return XENT_OK;
    }
  };
  RunWithBad(cs, c, in, {"logits", true, SIZE_MAX / 3, false, INT32_MIN, false}, own);
}

void FuzzSoftmaxBackward(Input& in, Common& c) {
  const Head h = ReadHead(in);
  const size_t V = h.V, B = h.B;
  const DType t = h.t;
  const bool log = in.Bit();
  const size_t ys = ChooseStride(in, V), gs = ChooseStride(in, V);
  const uint8_t o = in.U8();
  const bool inplace = o & 1;
  const DType gxt = inplace ? t : ((o & 2) ? DType::kF32 : t);
  const size_t gxs = inplace ? gs : ChooseStride(in, V);
  const float T = Pick(in, {1.0f, 1.0f, 0.5f, 2.0f, 1e-3f, 100.0f, FLT_MIN, 0.7f});
  Ctx("softmax_backward B=%zu V=%zu dtype=%d kind=%s y_stride=%zu g_stride=%zu gx(dtype=%d stride=%zu inplace=%d) T=%g",
      B, V, static_cast<int>(t), log ? "log_probs" : "probs", ys, gs, static_cast<int>(gxt), gxs, inplace, T);
  CaseSpec s = NewSpec(abi::kSoftmaxBackward, B, V, c);
  MatrixField(s, "output", t, ys, ChooseOffset(in));
  MatrixField(s, "grad_output", t, gs, ChooseOffset(in));
  const Specials y_sp = ReadSpecials(in, B, V, log ? Dist::kLogProbs : Dist::kProbs);
  const Specials g_sp = ReadSpecials(in, B, V, Dist::kLogits);
  if (inplace)
    s.InPlace("grad_input");
  else
    MatrixField(s, "grad_input", gxt, gxs, ChooseOffset(in));
  s.Set("output_kind", log ? XENT_DIST_LOG_PROBS : XENT_DIST_PROBS).Set("temperature", T);
  Case cs(s);
  Payload gp = c.payload;
  gp.rng = Rng(c.payload.rng.Next());
  FillMat(cs.buf("output"), c.payload, log ? Dist::kLogProbs : Dist::kProbs, y_sp);
  FillMat(cs.buf("grad_output"), gp, Dist::kLogits, g_sp);
  cs.Seal();

  auto own = [&]() -> xent_status {
    static const char* const kNames[] = {"output", "grad_output", "grad_input"};
    switch (c.bad) {
      case Bad::kDType:  // grad_output's dtype must equal output's
        cs.SetDTypeField("grad_output", t == DType::kF32 ? XENT_BF16 : XENT_F32);
        return XENT_ERROR_INVALID_DTYPE;
      case Bad::kNullInput: cs.SetPointer(kNames[in.U8() % 3], nullptr); return XENT_ERROR_NULL_POINTER;
      case Bad::kOption:
        if (!in.Bit()) {
          cs.SetArg<float>("temperature", -0.0f);
          return XENT_ERROR_INVALID_VALUE;
        }
        cs.SetArg<int32_t>("output_kind", in.Bit() ? XENT_DIST_LOGITS : 3);
        return XENT_ERROR_INVALID_ENUM;
      case Bad::kAlias:
        if (B == 0) return XENT_OK;
        Alias(cs, "grad_input", cs.Pointer("output"), ys, XENT_DTYPE_AUTO);  // y is no in-place input
        return XENT_ERROR_ALIASING;
      default: return XENT_OK;
    }
  };
  RunWithBad(cs, c, in, {"output", true, SIZE_MAX, false, -7, false}, own);
}

void FuzzTokenLogprobs(Input& in, Common& c) {
  const Head h = ReadHead(in);
  const size_t V = h.V, B = h.B;
  const DType xt = h.t;
  const size_t xs = ChooseStride(in, V);
  const DType yt = in.Bit() ? DType::kI32 : DType::kI64;
  const size_t ys = in.U8() % 3;
  const uint8_t outs = in.U8();
  bool want_lp = outs & 1, want_h = outs & 2, want_lse = outs & 4;
  if (!(want_lp || want_h || want_lse) && c.bad != Bad::kNullInput) want_lp = true;
  const int64_t ignore = in.Bit() ? -100 : 0;
  const float T = Pick(in, {1.0f, 1.0f, 0.5f, 2.0f, 1e-3f, 100.0f, FLT_MIN, 0.7f});
  const float softcap = Pick(in, {0.0f, 0.0f, 30.0f, 1.0f, 1e-3f, 1e4f, FLT_MIN});
  Ctx("token_logprobs B=%zu V=%zu dtype=%d stride=%zu target_dtype=%d target_stride=%zu outs=%#x ignore=%lld T=%g "
      "cap=%g",
      B, V, static_cast<int>(xt), xs, static_cast<int>(yt), ys, outs, static_cast<long long>(ignore), T, softcap);
  CaseSpec s = NewSpec(abi::kTokenLogprobs, B, V, c);
  MatrixField(s, "logits", xt, xs, ChooseOffset(in));
  const Specials x_sp = ReadSpecials(in, B, V, Dist::kLogits);
  const size_t y_off = ChooseOffset(in);
  VectorField(s, "logprob", want_lp, ChooseFloatOffset(in));
  VectorField(s, "entropy", want_h, ChooseFloatOffset(in));
  VectorField(s, "lse", want_lse, ChooseFloatOffset(in));
  const bool target_given = want_lp || in.Bit();  // may be NULL without logprob
  if (target_given) IndexField(s, "target", yt, ys, y_off);
  s.Set("ignore_index", static_cast<double>(ignore)).Set("temperature", T).Set("softcap", softcap);
  Case cs(s);
  FillMat(cs.buf("logits"), c.payload, Dist::kLogits, x_sp);
  if (!target_given) {  // the fields are set all the same
    cs.SetStrideField("target", ys);
    cs.SetDTypeField("target", static_cast<int32_t>(yt));
  }
  Buffer* y = cs.buf("target");
  for (size_t i = 0; i < B; ++i) {
    const int64_t v = c.payload.rng.Next() % 4 == 0 ? ignore : static_cast<int64_t>(c.payload.rng.Next() % V);
    if (y != nullptr) y->SetIndex(i, v);
  }
  cs.Seal();

  auto own = [&]() -> xent_status {
    switch (c.bad) {
      case Bad::kDType:
        cs.SetDTypeField(want_lp ? "target" : "logits", want_lp ? XENT_F32 : XENT_I64);
        return XENT_ERROR_INVALID_DTYPE;
      case Bad::kNullInput:
        if (want_lp && in.Bit()) {
          cs.SetPointer("target", nullptr);
        } else if (in.Bit()) {
          cs.SetPointer("logits", nullptr);
        } else {
          for (const char* o : {"logprob", "entropy", "lse"}) cs.SetPointer(o, nullptr);
        }
        return XENT_ERROR_NULL_POINTER;
      case Bad::kOption:
        switch (in.U8() % 3) {
          case 0: cs.SetArg<float>("temperature", NAN); break;
          case 1: cs.SetArg<float>("softcap", in.Bit() ? -kDenorm : kDenorm); break;
          default: cs.SetArg<int32_t>("reserved0", -1); break;
        }
        return XENT_ERROR_INVALID_VALUE;
      case Bad::kTarget: {
        if (!want_lp || B == 0) return XENT_OK;
        const size_t i = in.Below(B);
        y->SetIndex(i, in.Bit() ? static_cast<int64_t>(V) : -5);
        return XENT_ERROR_TARGET_OUT_OF_RANGE;
      }
      case Bad::kAlias:
        if (!want_lp || !want_lse || B == 0) return XENT_OK;
        cs.SetPointer("lse", cs.Pointer("logprob"));
        return XENT_ERROR_ALIASING;
      default: return XENT_OK;
    }
  };
  RunWithBad(cs, c, in, {"logits", false, SIZE_MAX / 2, false, -1, false}, own);
}

}  // namespace xent_fuzz
