//! `Softmax` (xent_softmax) and `SoftmaxBackward` (xent_softmax_backward)
//! against the float64 reference: dtypes, strides, temperature, every
//! output subset, in place, every SIMD target, threading, edge cases,
//! errors, property tests.

#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

mod common;

use common::reference as r;
use common::*;
use proptest::prelude::*;
use xent::half::{bf16, f16};
use xent::{DistKind, Float, InPlace, Matrix, MatrixMut, Softmax, SoftmaxBackward, Status};

#[derive(Clone, Debug)]
struct Case {
    b: usize,
    v: usize,
    pad: usize,
    out_pad: usize,
    seed: u64,
    range: f64,
    temperature: f64,
    probs: bool,
    log_probs: bool,
    lse: bool,
    entropy: bool,
    in_place: Option<InPlace>,
    threads: usize,
    lenient: bool,
}

impl Default for Case {
    fn default() -> Self {
        Case {
            b: 4,
            v: 33,
            pad: 0,
            out_pad: 0,
            seed: 1,
            range: 4.0,
            temperature: 1.0,
            probs: true,
            log_probs: true,
            lse: true,
            entropy: true,
            in_place: None,
            threads: 1,
            lenient: false,
        }
    }
}

/// Bits of every output (matrices without padding), for bitwise comparisons.
fn out_bits<T: Float>(m: &Option<Buf<T>>) -> Vec<u32> {
    m.as_ref()
        .map(|b| (0..b.rows).flat_map(|i| (0..b.cols).map(move |j| b.get(i, j).to_f32().to_bits())).collect())
        .unwrap_or_default()
}

fn run_case<T: Float, G: Float>(c: &Case) -> Vec<Vec<u32>> {
    let what = format!("softmax {c:?} logits={} out={}", dtype_name::<T>(), dtype_name::<G>());
    let mut rng = XRng::new(c.seed);
    let (b, v) = (c.b, c.v);
    let x = rounded::<T>(&random_matrix(&mut rng, b, v, c.range));
    let logits = Buf::<T>::input(&x, v, v + c.pad);
    let t = c.temperature as f32;
    let want = r::softmax(&x, t as f64);

    let mut probs = c.probs.then(|| Buf::<G>::output(b, v, v + c.out_pad));
    let mut log_probs = c.log_probs.then(|| Buf::<G>::output(b, v, v + c.out_pad));
    let mut lse = vec![-1234.5f32; b];
    let mut entropy = vec![-1234.5f32; b];
    let mut inplace = logits.clone();
    let result = {
        let mut s = Softmax::new().temperature(t).num_threads(c.threads);
        if let Some(p) = probs.as_mut() {
            s = s.probs(p.mat_mut());
        }
        if let Some(p) = log_probs.as_mut() {
            s = s.log_probs(p.mat_mut());
        }
        if c.lse {
            s = s.lse(&mut lse);
        }
        if c.entropy {
            s = s.entropy(&mut entropy);
        }
        match c.in_place {
            Some(which) => s.run_in_place(inplace.mat_mut(), which),
            None => s.run(logits.mat()),
        }
    };
    result.unwrap_or_else(|e| panic!("{what}: {e}"));

    let mut chk = Check::new(what);
    // Probabilities: f32 within 1e-6 absolute (gradient-like B x V values);
    // log-probabilities: per-row values (2e-6 relative + 2e-6 absolute).
    // z = x / T grows by 1/T, so does the f32 error of log-probabilities.
    let zscale = (1.0 / c.temperature).max(1.0);
    if let Some(p) = &probs {
        check_matrix(&mut chk, "probs", p, &want.probs, 0.0, 1e-6, c.lenient);
    }
    if let Some(p) = &log_probs {
        check_matrix(&mut chk, "log_probs", p, &want.log_probs, 2e-6, 2e-6 * zscale, c.lenient);
    }
    match c.in_place {
        Some(InPlace::Probs) => check_matrix(&mut chk, "probs(in place)", &inplace, &want.probs, 0.0, 1e-6, c.lenient),
        Some(InPlace::LogProbs) => {
            check_matrix(&mut chk, "log_probs(in place)", &inplace, &want.log_probs, 2e-6, 2e-6 * zscale, c.lenient)
        }
        None => {}
    }
    for i in 0..b {
        if c.lse {
            chk.row_value(&format!("lse[{i}]"), lse[i], want.lse[i], zscale);
        }
        if c.entropy {
            chk.row_value(&format!("entropy[{i}]"), entropy[i], want.entropy[i], 1.0);
        }
    }
    chk.finish();
    let ip = c.in_place.map(|_| inplace);
    vec![out_bits(&probs), out_bits(&log_probs), out_bits(&ip), bits_of(&lse), bits_of(&entropy)]
}

fn bits_of(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn run_any(c: &Case, dt: &str, out_f32: bool) -> Vec<Vec<u32>> {
    match (dt, out_f32) {
        ("f32", _) => run_case::<f32, f32>(c),
        ("bf16", false) => run_case::<bf16, bf16>(c),
        ("bf16", true) => run_case::<bf16, f32>(c),
        ("f16", false) => run_case::<f16, f16>(c),
        ("f16", true) => run_case::<f16, f32>(c),
        _ => unreachable!(),
    }
}

const DTYPES: [&str; 3] = ["f32", "bf16", "f16"];

#[test]
fn defaults_are_the_documented_ones() {
    use xent::sys;
    // Safety: plain data, all-zero valid; init writes exactly size_of bytes.
    let mut a: sys::xent_softmax_args = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { sys::xent_softmax_args_init(&mut a, std::mem::size_of_val(&a)) }, sys::XENT_OK);
    assert_eq!(a.struct_size, std::mem::size_of_val(&a));
    assert_eq!((a.logits_dtype, a.temperature), (sys::XENT_F32, 1.0));
    assert_eq!((a.probs_dtype, a.log_probs_dtype), (sys::XENT_DTYPE_AUTO, sys::XENT_DTYPE_AUTO));
    assert_eq!((a.num_threads, a.reserved0), (0, 0));
    assert!(a.probs.is_null() && a.log_probs.is_null() && a.lse.is_null() && a.entropy.is_null());
    // Safety: as above.
    let mut bw: sys::xent_softmax_backward_args = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { sys::xent_softmax_backward_args_init(&mut bw, std::mem::size_of_val(&bw)) }, sys::XENT_OK);
    assert_eq!(bw.struct_size, std::mem::size_of_val(&bw));
    assert_eq!((bw.output_kind, bw.temperature), (sys::XENT_DIST_PROBS, 1.0));
    assert_eq!(bw.grad_input_dtype, sys::XENT_DTYPE_AUTO);
    assert_eq!(bw.num_threads, 0);
}

#[test]
fn every_dtype_and_width_matches_reference() {
    for (k, &v) in V_SIZES.iter().enumerate() {
        for dt in DTYPES {
            for out_f32 in [false, true] {
                let c = Case { v, b: 3, seed: k as u64 + 1, pad: k % 3 * 2, out_pad: k % 2 * 5, ..Case::default() };
                run_any(&c, dt, out_f32);
            }
        }
    }
}

#[test]
fn temperatures_and_output_subsets_match_reference() {
    let mut seed = 40;
    for temperature in [1.0, 0.25, 0.7, 3.0] {
        for mask in 1u32..16 {
            for dt in DTYPES {
                seed += 1;
                let c = Case {
                    b: 5,
                    v: 130,
                    seed,
                    temperature,
                    probs: mask & 1 != 0,
                    log_probs: mask & 2 != 0,
                    lse: mask & 4 != 0,
                    entropy: mask & 8 != 0,
                    pad: (seed % 3) as usize,
                    ..Case::default()
                };
                run_any(&c, dt, seed % 2 == 0);
            }
        }
    }
}

#[test]
fn in_place_equals_separate_outputs_bitwise() {
    let _no_target_forcing_meanwhile = target_lock();
    for dt in DTYPES {
        for (v, pad) in [(1, 0), (17, 3), (1000, 0), (4099, 5)] {
            for which in [InPlace::Probs, InPlace::LogProbs] {
                let base = Case { v, pad, out_pad: pad, b: 3, seed: v as u64, entropy: false, ..Case::default() };
                let sep =
                    Case { probs: which == InPlace::Probs, log_probs: which == InPlace::LogProbs, ..base.clone() };
                let inp = Case { probs: false, log_probs: false, in_place: Some(which), ..base.clone() };
                let a = run_any(&sep, dt, false);
                let b = run_any(&inp, dt, false);
                let sep_bits = if which == InPlace::Probs { &a[0] } else { &a[1] };
                assert_eq!(sep_bits, &b[2], "{dt} V={v} {which:?}: in place differs from a separate output");
                assert_eq!(a[3], b[3], "{dt} V={v}: lse differs");
                // In place with the other output still separate.
                let both = Case {
                    probs: which == InPlace::LogProbs,
                    log_probs: which == InPlace::Probs,
                    in_place: Some(which),
                    ..base.clone()
                };
                run_any(&both, dt, false);
            }
        }
    }
}

#[test]
fn every_simd_target_matches_reference() {
    for_each_target(|_| {
        for dt in DTYPES {
            for (k, &v) in [1usize, 7, 16, 33, 257, 4099].iter().enumerate() {
                let c =
                    Case { v, b: 3, seed: k as u64 + 3, pad: k % 2, temperature: [1.0, 0.5][k % 2], ..Case::default() };
                run_any(&c, dt, k % 2 == 0);
            }
        }
    });
}

#[test]
fn results_are_bit_identical_across_threading() {
    let _no_target_forcing_meanwhile = target_lock();
    for (b, v) in [(67, 4099), (2, 150_000)] {
        for dt in DTYPES {
            let base = Case { b, v, pad: 1, seed: 5, ..Case::default() };
            let one = run_any(&base, dt, false);
            for threads in [2, 0] {
                assert!(
                    one == run_any(&Case { threads, ..base.clone() }, dt, false),
                    "{dt} {b}x{v}: threads={threads} differs"
                );
            }
        }
    }
}

#[test]
fn edge_cases_follow_the_header() {
    let inf = f32::INFINITY;
    // NaN row / +inf logit: NaN outputs for that row only.
    let x = [0.0f32, f32::NAN, 1.0, 0.5, inf, 0.0, 1.0, 2.0, 3.0];
    let (mut p, mut lse, mut h) = ([0f32; 9], [0f32; 3], [0f32; 3]);
    Softmax::new()
        .probs(MatrixMut::new(&mut p, 3, 3).unwrap())
        .lse(&mut lse)
        .entropy(&mut h)
        .run(Matrix::new(&x, 3, 3).unwrap())
        .unwrap();
    assert!(p[..6].iter().all(|v| v.is_nan()) && lse[0].is_nan() && h[0].is_nan() && h[1].is_nan());
    assert!(p[6..].iter().all(|v| v.is_finite()) && h[2].is_finite());
    // -inf: probability exactly 0, log-probability -inf, entropy ignores it.
    let x = [1.0f32, -inf, 1.0];
    let (mut p, mut lp, mut h) = ([9f32; 3], [9f32; 3], [0f32; 1]);
    Softmax::new()
        .probs(MatrixMut::new(&mut p, 1, 3).unwrap())
        .log_probs(MatrixMut::new(&mut lp, 1, 3).unwrap())
        .entropy(&mut h)
        .run(Matrix::new(&x, 1, 3).unwrap())
        .unwrap();
    assert_eq!(p[1], 0.0);
    assert_eq!(lp[1], -inf);
    assert!((p[0] - 0.5).abs() < 1e-7 && (h[0] - 2f32.ln()).abs() < 1e-6);
    // All -inf: lse = -inf.
    let x = [-inf; 4];
    let mut lse = [0f32; 1];
    Softmax::new().lse(&mut lse).run(Matrix::new(&x, 1, 4).unwrap()).unwrap();
    assert_eq!(lse[0], -inf);
    // B = 0 is valid.
    let empty: [f32; 0] = [];
    let mut none: [f32; 0] = [];
    Softmax::new().lse(&mut none).run(Matrix::new(&empty, 0, 3).unwrap()).unwrap();
    // V = 1: probability 1, log-probability 0, entropy 0.
    let x = [3.5f32, -2.0];
    let (mut p, mut lp, mut h) = ([0f32; 2], [9f32; 2], [9f32; 2]);
    Softmax::new()
        .probs(MatrixMut::new(&mut p, 2, 1).unwrap())
        .log_probs(MatrixMut::new(&mut lp, 2, 1).unwrap())
        .entropy(&mut h)
        .run(Matrix::new(&x, 2, 1).unwrap())
        .unwrap();
    assert_eq!((p, lp, h), ([1.0; 2], [0.0; 2], [0.0; 2]));
}

#[test]
fn bad_input_returns_err_and_leaves_outputs_untouched() {
    let x = [0.5f32; 12];
    let m = Matrix::new(&x, 3, 4).unwrap();
    let check = |r: xent::Result<()>, status: Status, needle: &str| {
        let e = r.expect_err("expected an error");
        assert_eq!(e.status(), status, "{e}");
        assert!(e.message().contains(needle), "message {:?} lacks {needle:?}", e.message());
    };
    let mut lse = [7f32; 3];
    check(Softmax::new().temperature(0.0).lse(&mut lse).run(m), Status::InvalidValue, "temperature");
    assert_eq!(lse, [7.0; 3]);
    check(Softmax::new().temperature(f32::NAN).lse(&mut lse).run(m), Status::InvalidValue, "temperature");
    check(Softmax::new().temperature(-1.0).lse(&mut lse).run(m), Status::InvalidValue, "temperature");
    // No output at all.
    let e = Softmax::new().run(m).unwrap_err();
    assert!(matches!(e.status(), Status::NullPointer | Status::InvalidValue), "{e}");
    let mut pb = [bf16::ZERO; 12];
    check(Softmax::new().probs(MatrixMut::new(&mut pb, 3, 4).unwrap()).run(m), Status::InvalidDtype, "probs_dtype");
    let mut p = [0f32; 12];
    check(Softmax::new().probs(MatrixMut::new(&mut p, 4, 3).unwrap()).run(m), Status::InvalidShape, "probs");
    let mut short = [0f32; 2];
    check(Softmax::new().entropy(&mut short).run(m), Status::InvalidShape, "entropy");
    let mut x2 = x;
    check(
        Softmax::new()
            .probs(MatrixMut::new(&mut p, 3, 4).unwrap())
            .run_in_place(MatrixMut::new(&mut x2, 3, 4).unwrap(), InPlace::Probs),
        Status::Aliasing,
        "Probs",
    );
    assert_eq!(x2, x);

    // Backward.
    let y = [0.25f32; 12];
    let g = [1.0f32; 12];
    let mut dx = [7f32; 12];
    let ym = Matrix::new(&y, 3, 4).unwrap();
    let gm = Matrix::new(&g, 3, 4).unwrap();
    check(
        SoftmaxBackward::new().temperature(0.0).run(ym, gm, MatrixMut::new(&mut dx, 3, 4).unwrap()),
        Status::InvalidValue,
        "temperature",
    );
    assert_eq!(dx, [7.0; 12]);
    check(
        SoftmaxBackward::new().output_kind(DistKind::Logits).run(ym, gm, MatrixMut::new(&mut dx, 3, 4).unwrap()),
        Status::InvalidEnum,
        "output_kind",
    );
    let g2 = [1.0f32; 8];
    check(
        SoftmaxBackward::new().run(ym, Matrix::new(&g2, 2, 4).unwrap(), MatrixMut::new(&mut dx, 3, 4).unwrap()),
        Status::InvalidShape,
        "grad_output",
    );
    let mut dxb = [bf16::ZERO; 12];
    check(
        SoftmaxBackward::new().run(ym, gm, MatrixMut::new(&mut dxb, 3, 4).unwrap()),
        Status::InvalidDtype,
        "grad_input_dtype",
    );
}

// ---------------------------------------------------------------------------
// Backward

fn run_backward<T: Float, U: Float, G: Float>(
    seed: u64,
    b: usize,
    v: usize,
    pad: usize,
    kind: DistKind,
    t: f32,
    in_place: bool,
    lenient: bool,
) {
    let what = format!(
        "softmax_backward seed={seed} {b}x{v} pad={pad} {kind:?} T={t} in_place={in_place} y={} g={} dx={}",
        dtype_name::<T>(),
        dtype_name::<U>(),
        dtype_name::<G>()
    );
    let mut rng = XRng::new(seed);
    let x = random_matrix(&mut rng, b, v, 4.0);
    let fwd = r::softmax(&x, t as f64);
    let y = rounded::<T>(if kind == DistKind::LogProbs { &fwd.log_probs } else { &fwd.probs });
    let g = rounded::<U>(&random_matrix(&mut rng, b, v, 2.0));
    let want = r::softmax_backward(&y, &g, kind, t as f64);
    let ybuf = Buf::<T>::input(&y, v, v + pad);
    let gbuf = Buf::<U>::input(&g, v, v + pad);
    let mut dx = Buf::<G>::output(b, v, v + 2 * pad);
    let mut gin = gbuf.clone();
    let bw = SoftmaxBackward::new().output_kind(kind).temperature(t).num_threads(1);
    let res = if in_place {
        bw.run_in_place(ybuf.mat(), gin.mat_mut())
    } else {
        bw.run(ybuf.mat(), gbuf.mat(), dx.mat_mut())
    };
    res.unwrap_or_else(|e| panic!("{what}: {e}"));
    // dx = (...) / T: f32 error scales with |g| / T and, for LOG_PROBS, with
    // |sum g|.
    let sg = g.iter().map(|r| r.iter().map(|x| x.abs()).sum::<f64>()).fold(1.0f64, f64::max);
    let scale = (1.0 / t as f64).max(1.0) * if kind == DistKind::LogProbs { sg } else { 2.0 };
    let mut chk = Check::new(what);
    if in_place {
        check_matrix(&mut chk, "grad_input(in place)", &gin, &want, 0.0, grad_abs_tol(scale), lenient);
    } else {
        check_matrix(&mut chk, "grad_input", &dx, &want, 0.0, grad_abs_tol(scale), lenient);
    }
    chk.finish();
}

fn backward_any(
    dt: &str,
    f32_out: bool,
    seed: u64,
    b: usize,
    v: usize,
    pad: usize,
    kind: DistKind,
    t: f32,
    in_place: bool,
    lenient: bool,
) {
    macro_rules! go {
        ($t:ty) => {
            if f32_out && !in_place {
                run_backward::<$t, $t, f32>(seed, b, v, pad, kind, t, in_place, lenient)
            } else {
                run_backward::<$t, $t, $t>(seed, b, v, pad, kind, t, in_place, lenient)
            }
        };
    }
    match dt {
        "f32" => go!(f32),
        "bf16" => go!(bf16),
        "f16" => go!(f16),
        _ => unreachable!(),
    }
}

#[test]
fn backward_matches_reference() {
    let mut seed = 900;
    for (k, &v) in V_SIZES.iter().enumerate() {
        for dt in DTYPES {
            for kind in [DistKind::Probs, DistKind::LogProbs] {
                seed += 1;
                let t = [1.0f32, 0.5, 2.0][k % 3];
                // Backward subtracts nearly equal terms (g_c - sum_k g_k y_k),
                // so bf16/f16 results carry the f32 absolute error.
                backward_any(dt, seed % 2 == 0, seed, 3, v, k % 3, kind, t, seed % 3 == 0, true);
            }
        }
    }
}

#[test]
fn backward_mixed_dtypes() {
    // y in f32 with a bf16 upstream gradient, and the reverse, if accepted.
    let y = vec![vec![0.25f64; 8]; 2];
    let g = random_matrix(&mut XRng::new(3), 2, 8, 1.0);
    let yb = Buf::<f32>::input(&y, 8, 8);
    let gb = Buf::<bf16>::input(&g, 8, 8);
    let mut dx = Buf::<bf16>::output(2, 8, 8);
    match SoftmaxBackward::new().run(yb.mat(), gb.mat(), dx.mat_mut()) {
        Ok(()) => {
            let want = r::softmax_backward(&y, &gb.values(), DistKind::Probs, 1.0);
            let mut chk = Check::new("backward y=f32 g=bf16");
            check_matrix(&mut chk, "grad_input", &dx, &want, 0.0, 1e-6, true);
            chk.finish();
        }
        Err(e) => assert_eq!(e.status(), Status::InvalidDtype, "{e}"),
    }
}

#[test]
fn backward_every_simd_target() {
    for_each_target(|_| {
        for dt in DTYPES {
            for (k, &v) in [1usize, 9, 33, 4099].iter().enumerate() {
                for kind in [DistKind::Probs, DistKind::LogProbs] {
                    backward_any(dt, k % 2 == 0, 77 + k as u64, 3, v, k % 2, kind, 0.5, false, true);
                }
            }
        }
    });
}

#[test]
fn prop_softmax_matches_reference() {
    let strategy = (
        (0usize..6, 1usize..400, 0usize..4, 0usize..4, any::<u64>()),
        (prop_oneof![Just(1.0f64), 0.2..5.0f64], 1u32..16, 0usize..3, any::<bool>(), 0usize..3, 0usize..3),
    );
    prop_check(strategy, |((b, v, pad, opad, seed), (t, mask, dt, out_f32, inplace, threads))| {
        let in_place = match inplace {
            1 => Some(InPlace::Probs),
            2 => Some(InPlace::LogProbs),
            _ => None,
        };
        let c = Case {
            b,
            v,
            pad,
            out_pad: opad,
            seed,
            range: 8.0,
            temperature: t,
            probs: mask & 1 != 0 && in_place != Some(InPlace::Probs),
            log_probs: mask & 2 != 0 && in_place != Some(InPlace::LogProbs),
            lse: mask & 4 != 0,
            entropy: mask & 8 != 0,
            in_place,
            threads,
            lenient: true,
        };
        run_any(&c, DTYPES[dt], out_f32 && in_place.is_none());
        Ok(())
    });
}

#[test]
fn prop_backward_matches_reference() {
    let strategy = (
        (0usize..6, 1usize..400, 0usize..4, any::<u64>(), prop_oneof![Just(1.0f32), 0.2..5.0f32]),
        (any::<bool>(), 0usize..3, any::<bool>(), any::<bool>()),
    );
    prop_check(strategy, |((b, v, pad, seed, t), (log, dt, out_f32, in_place))| {
        let kind = if log { DistKind::LogProbs } else { DistKind::Probs };
        backward_any(DTYPES[dt], out_f32, seed, b, v, pad, kind, t, in_place, true);
        Ok(())
    });
}

/// NaN, +inf and -inf through every output dtype on every SIMD target.
fn special_values_in<T: Float>(target: &str) {
    let inf = f32::INFINITY;
    let x: Vec<T> = [0.0f32, f32::NAN, 1.0, 1.0, -inf, 2.0, inf, 0.0, 0.0].iter().map(|&v| T::from_f32(v)).collect();
    let (mut p, mut lp) = (vec![T::from_f32(9.0); 9], vec![T::from_f32(9.0); 9]);
    Softmax::new()
        .probs(MatrixMut::new(&mut p, 3, 3).unwrap())
        .log_probs(MatrixMut::new(&mut lp, 3, 3).unwrap())
        .run(Matrix::new(&x, 3, 3).unwrap())
        .unwrap();
    let pf: Vec<f32> = p.iter().map(|v| v.to_f32()).collect();
    let lf: Vec<f32> = lp.iter().map(|v| v.to_f32()).collect();
    let what = format!("{} on {target}", dtype_name::<T>());
    assert!(pf[..3].iter().chain(&lf[..3]).all(|v| v.is_nan()), "{what}: NaN row {pf:?} {lf:?}");
    assert!(pf[6..].iter().chain(&lf[6..]).all(|v| v.is_nan()), "{what}: +inf row {pf:?} {lf:?}");
    assert_eq!((pf[4], lf[4]), (0.0, -inf), "{what}: masked class");
    assert!(pf[3].is_finite() && pf[5].is_finite() && lf[3].is_finite(), "{what}");
}

#[test]
fn special_values_in_every_dtype_and_target() {
    for_each_target(|t| {
        special_values_in::<f32>(t);
        special_values_in::<bf16>(t);
        special_values_in::<f16>(t);
    });
}
