// KL divergence / generalized JSD and BCE with logits from the fuzz input.
#include <cfloat>
#include <cmath>

#include "tests/fuzz/fuzz.h"

namespace xent_fuzz {

void FuzzDivergence(Input& in, Common& c) {
  const Head h = ReadHead(in);
  const size_t V = h.V, B = h.B;
  const DType t = h.t;
  const int qk = in.U8() % 3, pk = in.U8() % 3;
  const size_t xs = ChooseStride(in, V), ts = ChooseStride(in, V);
  const bool jsd = in.Bit();
  const float beta = Pick(in, {0.5f, 0.0f, 1.0f, 0.1f, 0.9f, kDenorm, 1.0f - 6e-8f});
  float T = Pick(in, {1.0f, 1.0f, 2.0f, 0.5f, 1e-3f, 100.0f, FLT_MIN});
  const bool t2 = in.Bit();
  // With T^2 scaling, T^2 must be within f32's range (the header: the scale is
  // f32; below 2^-126 it is 0 and an infinite term times it is NaN where
  // float64 keeps inf): the smallest T picked is then 1e-15.
  if (t2 && T < 1e-15f) T = 1e-15f;
  const int reduction = in.U8() % 4;
  const float grad_scale = Pick(in, {1.0f, 1.0f, -1.0f, 0.0f, 1e3f, kDenorm});
  const uint8_t outs = in.U8();
  const bool want_loss = outs & 1, want_row = outs & 2, want_elem = outs & 4, want_gx = outs & 8, want_gt = outs & 16,
             gx_in = want_gx && (outs & 32);
  const DType gxt = gx_in ? t : ((outs & 64) ? DType::kF32 : t), gtt = (outs & 128) ? DType::kF32 : t;
  const size_t gxs = gx_in ? xs : ChooseStride(in, V), gts = ChooseStride(in, V), es = ChooseStride(in, V);
  const uint8_t lab = in.U8();
  const bool use_labels = lab & 1;
  const DType lt = lab & 2 ? DType::kI32 : DType::kI64;
  const size_t ls = (lab >> 2) % 3;
  const int64_t ignore = lab & 32 ? -100 : static_cast<int64_t>(V) + 3;  // an ignore_index need not be a class
  Ctx("divergence B=%zu V=%zu dtype=%d input_kind=%d target_kind=%d strides=%zu,%zu jsd=%d beta=%.9g T=%g t2=%d red=%d "
      "gs=%g outs=%#x gx(dtype=%d stride=%zu inplace=%d) gt(dtype=%d stride=%zu) elem_stride=%zu labels=%d(dtype=%d "
      "stride=%zu ignore=%lld)",
      B, V, static_cast<int>(t), qk, pk, xs, ts, jsd, beta, T, t2, reduction, grad_scale, outs, static_cast<int>(gxt),
      gxs, gx_in, static_cast<int>(gtt), gts, es, use_labels, static_cast<int>(lt), ls, static_cast<long long>(ignore));
  const Dist kDist[] = {Dist::kLogits, Dist::kLogProbs, Dist::kProbs};
  CaseSpec s = NewSpec(abi::kDivergence, B, V, c);
  MatrixField(s, "input", t, xs, ChooseOffset(in));
  MatrixField(s, "target", t, ts, ChooseOffset(in));
  const Specials x_sp = ReadSpecials(in, B, V, kDist[qk]);
  const Specials t_sp = ReadSpecials(in, B, V, kDist[pk]);
  if (use_labels) IndexField(s, "labels", lt, ls, ChooseOffset(in));
  VectorField(s, "loss", want_loss, ChooseFloatOffset(in));
  VectorField(s, "row_loss", want_row, ChooseFloatOffset(in));
  if (want_elem) MatrixField(s, "elem_loss", DType::kF32, es, ChooseFloatOffset(in));
  if (gx_in) s.InPlace("grad_input");
  if (want_gx && !gx_in) MatrixField(s, "grad_input", gxt, gxs, ChooseOffset(in));
  if (want_gt) MatrixField(s, "grad_target", gtt, gts, ChooseOffset(in));
  s.Set("input_kind", qk).Set("target_kind", pk).Set("divergence", jsd ? XENT_DIVERGENCE_JSD : XENT_DIVERGENCE_KL);
  s.Set("beta", beta).Set("temperature", T).Set("t2_scaling", t2).Set("reduction", reduction);
  s.Set("grad_scale", grad_scale);
  if (use_labels) s.Set("ignore_index", static_cast<double>(ignore));
  Case cs(s);
  Payload tp = c.payload;
  tp.rng = Rng(c.payload.rng.Next());
  FillMat(cs.buf("input"), c.payload, kDist[qk], x_sp);
  FillMat(cs.buf("target"), tp, kDist[pk], t_sp);
  if (Buffer* l = use_labels ? cs.buf("labels") : nullptr) {
    for (size_t i = 0; i < B; ++i)
      l->SetIndex(i, c.payload.rng.Next() % 3 == 0 ? ignore : static_cast<int64_t>(c.payload.rng.Next() % V));
  }
  cs.Seal();

  auto own = [&]() -> xent_status {
    switch (c.bad) {
      case Bad::kDType:
        cs.SetDTypeField("target", t == DType::kF16 ? XENT_BF16 : XENT_F16);
        return XENT_ERROR_INVALID_DTYPE;
      case Bad::kNullInput: cs.SetPointer(in.Bit() ? "input" : "target", nullptr); return XENT_ERROR_NULL_POINTER;
      case Bad::kOption:
        switch (in.U8() % 7) {
          case 0: cs.SetArg<int32_t>("input_kind", 3); return XENT_ERROR_INVALID_ENUM;
          case 1: cs.SetArg<int32_t>("divergence", 2); return XENT_ERROR_INVALID_ENUM;
          case 2: cs.SetArg<float>("beta", 1.0f + 1e-7f); return XENT_ERROR_INVALID_VALUE;
          case 3: cs.SetArg<float>("temperature", in.Bit() ? INFINITY : kDenorm); return XENT_ERROR_INVALID_VALUE;
          case 4: cs.SetArg<int32_t>("t2_scaling", 2); return XENT_ERROR_INVALID_VALUE;
          case 5: cs.SetArg<int32_t>("reduction", -1); return XENT_ERROR_INVALID_ENUM;
          default: cs.SetArg<int32_t>("reserved1", 1); return XENT_ERROR_INVALID_VALUE;
        }
      case Bad::kTarget:
        if (!use_labels || B == 0) return XENT_OK;
        cs.buf("labels")->SetIndex(in.Below(B), static_cast<int64_t>(V));
        return XENT_ERROR_TARGET_OUT_OF_RANGE;
      case Bad::kAlias:
        if (!want_gt || B == 0) return XENT_OK;
        Alias(cs, "grad_target", cs.Pointer("target"), ts, XENT_DTYPE_AUTO);  // target is no in-place input
        return XENT_ERROR_ALIASING;
      default: return XENT_OK;
    }
  };
  RunWithBad(cs, c, in, {"target", true, SIZE_MAX / 5, false, -2, false}, own);
}

void FuzzBce(Input& in, Common& c) {
  const Head h = ReadHead(in);
  const size_t V = h.V, B = h.B;
  const DType xt = h.t;
  const DType yt = in.Bit() ? DType::kF32 : xt;
  const size_t xs = ChooseStride(in, V), ys = ChooseStride(in, V);
  const uint8_t wm = in.U8();
  const int wmode = wm % 3;  // 0 none, 1 per class (broadcast), 2 per element
  const size_t wstride = wmode == 2 ? V + wm / 3 % 3 : 0;
  const bool use_pw = wm & 64;
  const int reduction = in.U8() % 4;
  const float grad_scale = Pick(in, {1.0f, 1.0f, -1.0f, 0.0f, 1e3f, kDenorm});
  const uint8_t outs = in.U8();
  const bool want_loss = outs & 1, want_row = outs & 2, want_elem = outs & 4, want_grad = outs & 8,
             inplace = want_grad && (outs & 16);
  const DType gt = inplace ? xt : ((outs & 32) ? DType::kF32 : xt);
  const size_t gs = inplace ? xs : ChooseStride(in, V), es = ChooseStride(in, V);
  Ctx("bce B=%zu V=%zu dtype=%d target_dtype=%d strides=%zu,%zu weight_mode=%d weight_stride=%zu pos_weight=%d red=%d "
      "gs=%g outs=%#x grad(dtype=%d stride=%zu inplace=%d) elem_stride=%zu",
      B, V, static_cast<int>(xt), static_cast<int>(yt), xs, ys, wmode, wstride, use_pw, reduction, grad_scale, outs,
      static_cast<int>(gt), gs, inplace, es);
  CaseSpec s = NewSpec(abi::kBce, B, V, c);
  MatrixField(s, "logits", xt, xs, ChooseOffset(in));
  MatrixField(s, "target", yt, ys, ChooseOffset(in));
  const Specials x_sp = ReadSpecials(in, B, V, Dist::kLogits);
  const Specials y_sp = ReadSpecials(in, B, V, Dist::kUnit);
  if (wmode == 1) s.Broadcast("weight").Offset("weight", ChooseFloatOffset(in));
  if (wmode == 2) s.With("weight").Stride("weight", wstride).Offset("weight", ChooseFloatOffset(in));
  if (use_pw) VectorField(s, "pos_weight", true, ChooseFloatOffset(in));
  VectorField(s, "loss", want_loss, ChooseFloatOffset(in));
  VectorField(s, "row_loss", want_row, ChooseFloatOffset(in));
  if (want_elem) MatrixField(s, "elem_loss", DType::kF32, es, ChooseFloatOffset(in));
  if (inplace) s.InPlace("grad");
  if (want_grad && !inplace) MatrixField(s, "grad", gt, gs, ChooseOffset(in));
  s.Set("reduction", reduction).Set("grad_scale", grad_scale);
  Case cs(s);
  Payload yp = c.payload;
  yp.rng = Rng(c.payload.rng.Next());
  Payload& p = c.payload;
  FillMat(cs.buf("logits"), p, Dist::kLogits, x_sp);
  FillMat(cs.buf("target"), yp, Dist::kUnit, y_sp);
  Buffer* w = cs.buf("weight");
  if (wmode == 1) {
    for (size_t j = 0; j < V; ++j) w->Set(0, j, static_cast<float>(3 * p.rng.Uniform()));
  } else if (wmode == 2) {
    // Every element up to the last row's end is drawn (the padding's values
    // are not stored: it keeps its NaN pattern).
    const size_t n = B ? (B - 1) * wstride + V : 0;
    for (size_t k = 0; k < n; ++k) {
      const float v = static_cast<float>(3 * p.rng.Uniform());
      if (k % wstride < V) w->Set(k / wstride, k % wstride, v);
    }
  }
  if (Buffer* pw = use_pw ? cs.buf("pos_weight") : nullptr) {
    for (size_t j = 0; j < V; ++j)
      pw->Set(j, 0, static_cast<float>(p.rng.Next() % 5 == 0 ? 0.0 : 10 * p.rng.Uniform()));
  }
  cs.Seal();

  auto own = [&]() -> xent_status {
    switch (c.bad) {
      case Bad::kDType: cs.SetDTypeField("target", XENT_I32); return XENT_ERROR_INVALID_DTYPE;
      case Bad::kNullInput: cs.SetPointer(in.Bit() ? "logits" : "target", nullptr); return XENT_ERROR_NULL_POINTER;
      case Bad::kOption:
        if (in.Bit()) {
          cs.SetArg<int32_t>("reduction", 4);
          return XENT_ERROR_INVALID_ENUM;
        }
        cs.SetArg<float>("grad_scale", INFINITY);
        return XENT_ERROR_INVALID_VALUE;
      case Bad::kAlias:  // elem_loss over the f32 target (not an allowed pair)
        if (!want_elem || B == 0 || yt != DType::kF32) return XENT_OK;
        Alias(cs, "elem_loss", cs.Pointer("target"), ys);
        return XENT_ERROR_ALIASING;
      default: return XENT_OK;
    }
  };
  RunWithBad(cs, c, in, {wmode == 2 ? "weight" : "target", false, SIZE_MAX / 7, false, -3, false}, own);
}

}  // namespace xent_fuzz
