//! `CrossEntropy` (xent_cross_entropy) against the float64 reference: every
//! dtype, strides, options, targets, in place, every SIMD target, threading,
//! edge cases, errors, and property tests.

#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

mod common;

use common::reference::{self as r, CeTarget as RT};
use common::*;
use proptest::prelude::*;
use xent::half::{bf16, f16};
use xent::{CrossEntropy, Float, Labels, Matrix, MatrixMut, Reduction, Status};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Thr {
    Lib(usize),
    Seq,
    Scoped(usize),
    #[cfg(feature = "rayon")]
    Rayon,
}

#[derive(Clone, Debug)]
struct Case {
    b: usize,
    v: usize,
    pad: usize,
    grad_pad: usize,
    seed: u64,
    range: f64,
    probs_target: bool,
    i32_target: bool,
    target_stride: usize,
    reduction: Reduction,
    eps: f64,
    z_loss: f64,
    softcap: f64,
    grad_scale: f64,
    ignore_index: i64,
    ignore_some: bool,
    weight: bool,
    row_scale: bool,
    row_loss: bool,
    lse: bool,
    grad: bool,
    in_place: bool,
    thr: Thr,
    lenient: bool,
}

impl Default for Case {
    fn default() -> Self {
        Case {
            b: 4,
            v: 33,
            pad: 0,
            grad_pad: 0,
            seed: 1,
            range: 4.0,
            probs_target: false,
            i32_target: false,
            target_stride: 1,
            reduction: Reduction::Mean,
            eps: 0.0,
            z_loss: 0.0,
            softcap: 0.0,
            grad_scale: 1.0,
            ignore_index: -100,
            ignore_some: false,
            weight: false,
            row_scale: false,
            row_loss: true,
            lse: true,
            grad: true,
            in_place: false,
            thr: Thr::Lib(1),
            lenient: false,
        }
    }
}

/// Outputs of one run, for bitwise comparisons.
#[derive(Debug, PartialEq)]
struct Out {
    loss: u32,
    row_loss: Vec<u32>,
    lse: Vec<u32>,
    grad: Vec<u32>,
}

/// Panics naming the first differing values of two runs.
fn assert_same(a: &Out, b: &Out, what: &str) {
    let mut diffs = Vec::new();
    let mut cmp = |name: &str, x: &[u32], y: &[u32]| {
        assert_eq!(x.len(), y.len(), "{what}: {name} lengths");
        let n = x.iter().zip(y).filter(|(p, q)| p != q).count();
        if let Some(k) = x.iter().zip(y).position(|(p, q)| p != q) {
            diffs.push(format!(
                "{name}: {n} of {} differ, first [{k}]: {:e} vs {:e}",
                x.len(),
                f32::from_bits(x[k]),
                f32::from_bits(y[k])
            ));
        }
    };
    cmp("loss", &[a.loss], &[b.loss]);
    cmp("row_loss", &a.row_loss, &b.row_loss);
    cmp("lse", &a.lse, &b.lse);
    cmp("grad", &a.grad, &b.grad);
    assert!(diffs.is_empty(), "{what}: not bit-identical:\n  {}", diffs.join("\n  "));
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Runs one case with logits dtype T, gradient dtype G and probability
/// target dtype P; checks it against the reference; returns the raw outputs.
fn run_case<T: Float, G: Float, P: Float>(c: &Case) -> Out {
    let what = format!("CE {c:?} logits={} grad={} probs={}", dtype_name::<T>(), dtype_name::<G>(), dtype_name::<P>());
    let mut rng = XRng::new(c.seed);
    let (b, v) = (c.b, c.v);
    let x = rounded::<T>(&random_matrix(&mut rng, b, v, c.range));
    let logits = Buf::<T>::input(&x, v, v + c.pad);
    let idx: Vec<i64> =
        (0..b).map(|_| if c.ignore_some && rng.below(3) == 0 { c.ignore_index } else { rng.below(v) as i64 }).collect();
    let q = rounded::<P>(&(0..b).map(|_| rng.simplex(v)).collect());
    let qbuf = Buf::<P>::input(&q, v, v + c.pad);
    let weight: Vec<f32> = (0..v).map(|_| rng.uniform(0.5, 2.0) as f32).collect();
    let row_scale: Vec<f32> = (0..b).map(|_| rng.uniform(-1.0, 2.0) as f32).collect();

    let opts = r::CeOpts {
        reduction: c.reduction,
        ignore_index: c.ignore_index,
        eps: c.eps as f32 as f64,
        z_loss: c.z_loss as f32 as f64,
        softcap: c.softcap as f32 as f64,
        grad_scale: c.grad_scale as f32 as f64,
        weight: c.weight.then(|| weight.iter().map(|&w| w as f64).collect()),
        row_scale: c.row_scale.then(|| row_scale.iter().map(|&w| w as f64).collect()),
    };
    let tgt = if c.probs_target { RT::Probs(q.clone()) } else { RT::Idx(idx.clone()) };
    let want = r::cross_entropy(&x, &tgt, &opts);

    // Targets as the C side sees them: strided index buffers.
    let ts = c.target_stride.max(1);
    let mut idx64 = vec![-7777i64; if b == 0 { 0 } else { (b - 1) * ts + 1 }];
    for (i, &y) in idx.iter().enumerate() {
        idx64[i * ts] = y;
    }
    let idx32: Vec<i32> = idx64.iter().map(|&y| y as i32).collect();

    let mut row_loss = vec![-1234.5f32; b];
    let mut lse = vec![-1234.5f32; b];
    let mut grad = Buf::<G>::output(b, v, v + c.grad_pad);
    let mut inplace = logits.clone();
    let pool_seq = xent::Sequential;
    let pool_scoped = xent::ScopedThreads::new(match c.thr {
        Thr::Scoped(n) => n,
        _ => 1,
    });
    #[cfg(feature = "rayon")]
    let pool_rayon = xent::Rayon::global();

    let result = {
        let mut ce = CrossEntropy::new()
            .reduction(c.reduction)
            .ignore_index(c.ignore_index)
            .label_smoothing(c.eps as f32)
            .z_loss(c.z_loss as f32)
            .softcap(c.softcap as f32)
            .grad_scale(c.grad_scale as f32);
        if c.weight {
            ce = ce.weight(&weight);
        }
        if c.row_scale {
            ce = ce.row_scale(&row_scale);
        }
        if c.row_loss {
            ce = ce.row_loss(&mut row_loss);
        }
        if c.lse {
            ce = ce.lse(&mut lse);
        }
        if c.grad && !c.in_place {
            ce = ce.grad(grad.mat_mut());
        }
        ce = match c.thr {
            Thr::Lib(n) => ce.num_threads(n),
            Thr::Seq => ce.parallel_for(&pool_seq),
            Thr::Scoped(_) => ce.parallel_for(&pool_scoped),
            #[cfg(feature = "rayon")]
            Thr::Rayon => ce.parallel_for(&pool_rayon),
        };
        let target: xent::CeTarget = if c.probs_target {
            qbuf.mat().into()
        } else if c.i32_target {
            Labels::with_stride(&idx32, b, ts).unwrap().into()
        } else {
            Labels::with_stride(&idx64, b, ts).unwrap().into()
        };
        if c.in_place {
            ce.run_in_place(inplace.mat_mut(), target)
        } else {
            ce.run(logits.mat(), target)
        }
    };
    let loss = result.unwrap_or_else(|e| panic!("{what}: {e}"));

    let wmax = if c.weight { 2.0 } else { 1.0 };
    let lse_max = want.lse.iter().filter(|x| x.is_finite()).fold(0.0f64, |a, x| a.max(x.abs()));
    let gscale = c.grad_scale.abs() * if c.row_scale { 2.0 } else { 1.0 } * wmax * (1.0 + 2.0 * c.z_loss * lse_max);
    // bf16/f16 gradients are held to one ulp only where the f32 computation
    // has no cancellation: label smoothing ((eps/V)(W p_c - w_c)), z-loss
    // (2 z lse p_c, lse of either sign) and probability targets
    // (p_c sum_k w_k q'_k - w_c q'_c) subtract nearly equal f32 terms, so a
    // tiny gradient there carries the f32 absolute error (1e-6 contract).
    let lenient = c.lenient || c.eps > 0.0 || c.z_loss > 0.0 || c.probs_target;
    let mut chk = Check::new(what.clone());
    chk.reduced("loss", loss, want.loss, &want.row_loss, want.div, wmax);
    if c.row_loss {
        for i in 0..b {
            chk.row_value(&format!("row_loss[{i}]"), row_loss[i], want.row_loss[i], wmax);
        }
    }
    if c.lse {
        for i in 0..b {
            chk.row_value(&format!("lse[{i}]"), lse[i], want.lse[i], 1.0);
        }
    }
    let grad_vals: Vec<u32> = if c.in_place && c.grad {
        // The gradient replaced the logits (same dtype).
        check_matrix(&mut chk, "grad(in place)", &inplace, &want.grad, 0.0, grad_abs_tol(gscale), lenient);
        matrix_bits(&inplace)
    } else if c.grad {
        check_matrix(&mut chk, "grad", &grad, &want.grad, 0.0, grad_abs_tol(gscale), lenient);
        matrix_bits(&grad)
    } else {
        let pad = output_pad::<G>().to_f32();
        assert!(grad.data.iter().all(|x| x.to_f32() == pad), "{what}: grad written");
        vec![]
    };
    chk.finish();
    Out { loss: loss.to_bits(), row_loss: bits(&row_loss), lse: bits(&lse), grad: grad_vals }
}

/// The matrix elements' bits (padding excluded).
fn matrix_bits<T: Float>(b: &Buf<T>) -> Vec<u32> {
    (0..b.rows).flat_map(|i| (0..b.cols).map(move |j| (i, j))).map(|(i, j)| b.get(i, j).to_f32().to_bits()).collect()
}

fn run_any(c: &Case, logits: &str, grad_f32: bool, probs_f32: bool) -> Out {
    macro_rules! go {
        ($t:ty) => {
            match (grad_f32, probs_f32) {
                (false, false) => run_case::<$t, $t, $t>(c),
                (true, false) => run_case::<$t, f32, $t>(c),
                (false, true) => run_case::<$t, $t, f32>(c),
                (true, true) => run_case::<$t, f32, f32>(c),
            }
        };
    }
    match logits {
        "f32" => go!(f32),
        "bf16" => go!(bf16),
        "f16" => go!(f16),
        _ => unreachable!(),
    }
}

const DTYPES: [&str; 3] = ["f32", "bf16", "f16"];

#[test]
fn defaults_are_the_documented_ones() {
    use xent::sys;
    // Safety: plain data, all-zero valid; init writes exactly size_of bytes.
    let mut a: sys::xent_cross_entropy_args = unsafe { std::mem::zeroed() };
    let rc = unsafe { sys::xent_cross_entropy_args_init(&mut a, std::mem::size_of_val(&a)) };
    assert_eq!(rc, sys::XENT_OK);
    assert_eq!(a.struct_size, std::mem::size_of_val(&a));
    assert_eq!(a.logits_dtype, sys::XENT_F32);
    assert_eq!(a.target_dtype, sys::XENT_I64);
    assert_eq!(a.ignore_index, -100);
    assert_eq!(a.reduction, sys::XENT_REDUCTION_MEAN);
    assert_eq!((a.label_smoothing, a.z_loss, a.softcap, a.grad_scale), (0.0, 0.0, 0.0, 1.0));
    assert_eq!(a.grad_dtype, sys::XENT_DTYPE_AUTO);
    assert_eq!((a.num_threads, a.reserved0), (0, 0));
    assert!(a.parallel_for.is_none() && a.logits.is_null() && a.grad.is_null() && a.weight.is_null());
}

#[test]
fn every_dtype_and_width_matches_reference() {
    for (k, &v) in V_SIZES.iter().enumerate() {
        for dt in DTYPES {
            for grad_f32 in [false, true] {
                let c =
                    Case { v, b: 3, seed: k as u64 * 7 + 1, pad: k % 3 * 5, grad_pad: k % 2 * 3, ..Case::default() };
                run_any(&c, dt, grad_f32, true);
            }
        }
    }
}

#[test]
fn options_match_reference() {
    let mut seed = 100;
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        for (eps, z_loss, softcap) in
            [(0.0, 0.0, 0.0), (0.1, 0.0, 0.0), (0.0, 1e-3, 0.0), (0.0, 0.0, 5.0), (0.2, 1e-4, 3.0)]
        {
            for (weight, row_scale, ignore_some) in
                [(false, false, false), (true, false, true), (false, true, false), (true, true, true)]
            {
                for dt in DTYPES {
                    seed += 1;
                    let c = Case {
                        b: 6,
                        v: 70,
                        seed,
                        reduction,
                        eps,
                        z_loss,
                        softcap,
                        weight,
                        row_scale,
                        ignore_some,
                        grad_scale: 0.5,
                        ignore_index: if seed % 2 == 0 { -100 } else { 3 },
                        i32_target: seed % 3 == 0,
                        target_stride: 1 + (seed % 3) as usize,
                        pad: (seed % 4) as usize,
                        ..Case::default()
                    };
                    run_any(&c, dt, seed % 2 == 0, true);
                }
            }
        }
    }
}

#[test]
fn probability_targets_match_reference() {
    let mut seed = 500;
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        for (eps, z_loss, softcap, weight) in [(0.0, 0.0, 0.0, false), (0.1, 1e-3, 0.0, true), (0.0, 0.0, 4.0, false)] {
            for dt in DTYPES {
                for probs_f32 in [true, false] {
                    seed += 1;
                    let c = Case {
                        b: 5,
                        v: 45,
                        seed,
                        reduction,
                        eps,
                        z_loss,
                        softcap,
                        weight,
                        probs_target: true,
                        pad: 3,
                        ..Case::default()
                    };
                    run_any(&c, dt, false, probs_f32);
                }
            }
        }
    }
}

#[test]
fn in_place_equals_separate_gradient_bitwise() {
    let _no_target_forcing_meanwhile = target_lock();
    for dt in DTYPES {
        for (v, pad) in [(1, 0), (17, 3), (300, 0), (1000, 8)] {
            let base = Case { v, pad, grad_pad: pad, b: 5, seed: v as u64, eps: 0.05, ..Case::default() };
            let sep = run_any(&base, dt, false, true);
            let inp = run_any(&Case { in_place: true, ..base.clone() }, dt, false, true);
            assert_same(&sep, &inp, &format!("{dt} V={v}: in place vs a separate gradient buffer"));
        }
    }
}

#[test]
fn every_simd_target_matches_reference() {
    let targets = for_each_target(|t| {
        for dt in DTYPES {
            for (k, &v) in [1usize, 7, 16, 33, 257, 4099].iter().enumerate() {
                let c =
                    Case { v, b: 3, seed: k as u64 + 11, pad: k % 2 * 3, eps: 0.1, z_loss: 1e-4, ..Case::default() };
                run_any(&c, dt, false, true);
                let c = Case { probs_target: true, softcap: 8.0, ..c };
                run_any(&c, dt, true, true);
            }
        }
        eprintln!("target {t}: ok");
    });
    eprintln!("checked targets {targets:?}");
}

#[test]
fn results_are_bit_identical_across_threading() {
    // Another test forcing a SIMD target meanwhile would change the last bits.
    let _no_target_forcing_meanwhile = target_lock();
    #[allow(unused_mut)]
    let mut modes = vec![Thr::Lib(1), Thr::Lib(2), Thr::Lib(0), Thr::Seq, Thr::Scoped(2), Thr::Scoped(5)];
    #[cfg(feature = "rayon")]
    modes.push(Thr::Rayon);
    // Row blocks (many rows) and row segments (few long rows): both split
    // into several tasks of ~64K elements.
    for (b, v) in [(67, 4099), (2, 150_000)] {
        for dt in DTYPES {
            let base = Case { b, v, pad: 1, seed: 9, eps: 0.1, weight: true, ..Case::default() };
            let first = run_any(&base, dt, false, true);
            for &thr in &modes[1..] {
                let other = run_any(&Case { thr, ..base.clone() }, dt, false, true);
                assert_same(&first, &other, &format!("{dt} {b}x{v}: {thr:?} vs one thread"));
            }
        }
    }
}

#[test]
fn edge_cases_follow_the_header() {
    let inf = f32::INFINITY;
    // NaN in a row: that row's loss, lse and gradient are NaN; others fine.
    let x = [0.0f32, f32::NAN, 1.0, 0.5, 0.25, 0.0];
    let (mut rl, mut lse, mut g) = ([0f32; 2], [0f32; 2], [0f32; 6]);
    let loss = CrossEntropy::new()
        .reduction(Reduction::Sum)
        .row_loss(&mut rl)
        .lse(&mut lse)
        .grad(MatrixMut::new(&mut g, 2, 3).unwrap())
        .run(Matrix::new(&x, 2, 3).unwrap(), &[0i64, 1])
        .unwrap();
    assert!(loss.is_nan() && rl[0].is_nan() && lse[0].is_nan() && g[..3].iter().all(|v| v.is_nan()));
    assert!(rl[1].is_finite() && g[3..].iter().all(|v| v.is_finite()));

    // +inf logit: NaN row.
    let x = [0.0f32, inf, 1.0];
    let mut rl = [0f32; 1];
    CrossEntropy::new().row_loss(&mut rl).run(Matrix::new(&x, 1, 3).unwrap(), &[0i64]).unwrap();
    assert!(rl[0].is_nan());

    // -inf logits are masked: probability and gradient exactly 0.
    let x = [1.0f32, -inf, 2.0, -inf];
    let mut g = [9f32; 4];
    let loss = CrossEntropy::new()
        .reduction(Reduction::Sum)
        .grad(MatrixMut::new(&mut g, 1, 4).unwrap())
        .run(Matrix::new(&x, 1, 4).unwrap(), &[0i64])
        .unwrap();
    let want = r::cross_entropy(
        &vec![vec![1.0, f64::NEG_INFINITY, 2.0, f64::NEG_INFINITY]],
        &RT::Idx(vec![0]),
        &r::CeOpts { reduction: Reduction::Sum, ..Default::default() },
    );
    assert!((loss as f64 - want.loss).abs() < 1e-6);
    assert_eq!((g[1], g[3]), (0.0, 0.0));

    // An all -inf row: lse = -inf, loss NaN.
    let x = [-inf; 3];
    let (mut rl, mut lse) = ([0f32; 1], [0f32; 1]);
    CrossEntropy::new().row_loss(&mut rl).lse(&mut lse).run(Matrix::new(&x, 1, 3).unwrap(), &[1i64]).unwrap();
    assert_eq!(lse[0], -inf);
    assert!(rl[0].is_nan());

    // B = 0: MEAN is NaN, SUM is 0.
    let empty: [f32; 0] = [];
    let none: [i64; 0] = [];
    let mean = CrossEntropy::new().run(Matrix::new(&empty, 0, 5).unwrap(), &none).unwrap();
    let sum = CrossEntropy::new().reduction(Reduction::Sum).run(Matrix::new(&empty, 0, 5).unwrap(), &none).unwrap();
    assert!(mean.is_nan());
    assert_eq!(sum, 0.0);

    // Every row ignored: MEAN is NaN, gradient all zeros.
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let mut g = [9f32; 4];
    let mean = CrossEntropy::new()
        .grad(MatrixMut::new(&mut g, 2, 2).unwrap())
        .run(Matrix::new(&x, 2, 2).unwrap(), &[-100i64, -100])
        .unwrap();
    assert!(mean.is_nan());
    assert_eq!(g, [0.0; 4]);

    // 0 log 0 = 0: a zero target probability on a masked class contributes 0.
    let x = [1.0f32, -inf, 0.0];
    let q = [0.5f32, 0.0, 0.5];
    let mut g = [9f32; 3];
    let loss = CrossEntropy::new()
        .grad(MatrixMut::new(&mut g, 1, 3).unwrap())
        .run(Matrix::new(&x, 1, 3).unwrap(), Matrix::new(&q, 1, 3).unwrap())
        .unwrap();
    let want = r::cross_entropy(
        &vec![vec![1.0, f64::NEG_INFINITY, 0.0]],
        &RT::Probs(vec![vec![0.5, 0.0, 0.5]]),
        &r::CeOpts::default(),
    );
    assert!(loss.is_finite() && (loss as f64 - want.loss).abs() < 1e-6, "{loss} vs {}", want.loss);
    assert_eq!(g[1], 0.0);
}

#[test]
fn bad_input_returns_err_and_leaves_outputs_untouched() {
    let x = [0.5f32; 12];
    let m = Matrix::new(&x, 3, 4).unwrap();
    let check = |r: xent::Result<f32>, status: Status, needle: &str| {
        let e = r.expect_err("expected an error");
        assert_eq!(e.status(), status, "{e}");
        assert!(e.message().contains(needle), "message {:?} lacks {needle:?}", e.message());
        assert!(!e.to_string().is_empty());
    };
    // C-side validation, with the library's message.
    let mut rl = [7f32; 3];
    check(CrossEntropy::new().row_loss(&mut rl).run(m, &[0i64, 4, 1]), Status::TargetOutOfRange, "target[1] = 4");
    assert_eq!(rl, [7.0; 3], "a failed call wrote an output");
    check(CrossEntropy::new().run(m, &[0i32, -1, 1]), Status::TargetOutOfRange, "-1");
    check(CrossEntropy::new().label_smoothing(1.5).run(m, &[0i64, 1, 2]), Status::InvalidValue, "label_smoothing");
    check(CrossEntropy::new().label_smoothing(f32::NAN).run(m, &[0i64, 1, 2]), Status::InvalidValue, "label_smoothing");
    check(CrossEntropy::new().z_loss(-1.0).run(m, &[0i64, 1, 2]), Status::InvalidValue, "z_loss");
    check(CrossEntropy::new().softcap(f32::INFINITY).run(m, &[0i64, 1, 2]), Status::InvalidValue, "softcap");
    check(CrossEntropy::new().grad_scale(f32::NAN).run(m, &[0i64, 1, 2]), Status::InvalidValue, "grad_scale");
    check(CrossEntropy::new().reduction(Reduction::BatchMean).run(m, &[0i64, 1, 2]), Status::InvalidEnum, "reduction");
    let mut gb = [bf16::ZERO; 12];
    check(
        CrossEntropy::new().grad(MatrixMut::new(&mut gb, 3, 4).unwrap()).run(m, &[0i64, 1, 2]),
        Status::InvalidDtype,
        "grad_dtype",
    );
    let qb = [bf16::from_f32(0.25); 12];
    check(CrossEntropy::new().run(m, Matrix::new(&qb, 3, 4).unwrap()), Status::InvalidDtype, "target_dtype");

    // Rust-side checks, before any call.
    check(CrossEntropy::new().run(m, &[0i64, 1]), Status::InvalidShape, "target");
    check(CrossEntropy::new().weight(&[1.0; 3]).run(m, &[0i64, 1, 2]), Status::InvalidShape, "weight");
    check(CrossEntropy::new().row_scale(&[1.0; 4]).run(m, &[0i64, 1, 2]), Status::InvalidShape, "row_scale");
    let mut short = [0f32; 2];
    check(CrossEntropy::new().row_loss(&mut short).run(m, &[0i64, 1, 2]), Status::InvalidShape, "row_loss");
    let mut lse = [0f32; 4];
    check(CrossEntropy::new().lse(&mut lse).run(m, &[0i64, 1, 2]), Status::InvalidShape, "lse");
    let mut g = [0f32; 12];
    check(
        CrossEntropy::new().grad(MatrixMut::new(&mut g, 4, 3).unwrap()).run(m, &[0i64, 1, 2]),
        Status::InvalidShape,
        "grad",
    );
    let q = [0.25f32; 8];
    check(CrossEntropy::new().run(m, Matrix::new(&q, 2, 4).unwrap()), Status::InvalidShape, "target");
    check(CrossEntropy::new().num_threads(usize::MAX).run(m, &[0i64, 1, 2]), Status::InvalidValue, "num_threads");
    let mut g2 = [0f32; 12];
    let mut x2 = x;
    check(
        CrossEntropy::new()
            .grad(MatrixMut::new(&mut g2, 3, 4).unwrap())
            .run_in_place(MatrixMut::new(&mut x2, 3, 4).unwrap(), &[0i64, 1, 2]),
        Status::Aliasing,
        "grad",
    );
    assert_eq!(x2, x);
}

struct Failing;
// Safety: runs nothing and reports failure; never leaves tasks running.
unsafe impl xent::ParallelFor for Failing {
    fn parallel_for(&self, _tasks: &xent::Tasks<'_>, _hint: usize) -> bool {
        false
    }
}

struct Panicking;
// Safety: panics before running any task.
unsafe impl xent::ParallelFor for Panicking {
    fn parallel_for(&self, _tasks: &xent::Tasks<'_>, _hint: usize) -> bool {
        panic!("host pool exploded")
    }
}

struct SkipsOne;
// Safety: runs disjoint ranges on the calling thread only (it skips task 0,
// which xent must detect).
unsafe impl xent::ParallelFor for SkipsOne {
    fn parallel_for(&self, tasks: &xent::Tasks<'_>, _hint: usize) -> bool {
        tasks.run(1, tasks.len());
        true
    }
}

struct RunsTwice;
// Safety: runs the range twice, sequentially (never concurrently).
unsafe impl xent::ParallelFor for RunsTwice {
    fn parallel_for(&self, tasks: &xent::Tasks<'_>, _hint: usize) -> bool {
        tasks.run(0, tasks.len());
        tasks.run(0, tasks.len());
        true
    }
}

#[test]
fn host_pool_failures_are_errors_not_panics() {
    // Big enough for several tasks (libxent runs one task inline).
    let x = vec![0.5f32; 64 * 4096];
    let t: Vec<i64> = (0..64).collect();
    let m = Matrix::new(&x, 64, 4096).unwrap();
    let e = CrossEntropy::new().parallel_for(&Failing).run(m, &t).unwrap_err();
    assert_eq!(e.status(), Status::Callback, "{e}");
    let e = CrossEntropy::new().parallel_for(&Panicking).run(m, &t).unwrap_err();
    assert_eq!(e.status(), Status::Callback, "{e}");
    let e = CrossEntropy::new().parallel_for(&SkipsOne).run(m, &t).unwrap_err();
    assert_eq!(e.status(), Status::Callback, "{e}");
    let e = CrossEntropy::new().parallel_for(&RunsTwice).run(m, &t).unwrap_err();
    assert_eq!(e.status(), Status::Callback, "{e}");
    // And a working pool still works afterwards.
    assert!(CrossEntropy::new().parallel_for(&xent::ScopedThreads::new(2)).run(m, &t).unwrap().is_finite());
}

fn case_strategy() -> impl Strategy<Value = (Case, usize, bool, bool)> {
    (
        (0usize..7, 1usize..300, 0usize..4, 0usize..3, any::<u64>()),
        (any::<bool>(), any::<bool>(), 1usize..3, 0usize..3),
        (
            prop_oneof![Just(0.0), 0.0..1.0f64],
            prop_oneof![Just(0.0), 0.0..0.01f64],
            prop_oneof![Just(0.0), 1.0..30.0f64],
            -4.0..4.0f64,
        ),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        (0usize..3, any::<bool>(), any::<bool>(), 0usize..4),
    )
        .prop_map(
            |(
                (b, v, pad, gpad, seed),
                (probs, i32t, ts, red),
                (eps, zl, sc, gs),
                (w, rs, ign, rl, lse, grad),
                (dt, gf32, pf32, thr),
            )| {
                let c = Case {
                    b,
                    v,
                    pad,
                    grad_pad: gpad,
                    seed,
                    range: 8.0,
                    probs_target: probs,
                    i32_target: i32t,
                    target_stride: ts,
                    reduction: [Reduction::Mean, Reduction::Sum, Reduction::None][red],
                    eps,
                    z_loss: zl,
                    softcap: sc,
                    grad_scale: gs,
                    weight: w,
                    row_scale: rs,
                    ignore_some: ign && !probs,
                    row_loss: rl,
                    lse,
                    grad,
                    in_place: grad && !gf32 && seed % 5 == 0,
                    thr: [Thr::Lib(1), Thr::Lib(0), Thr::Seq, Thr::Scoped(3)][thr],
                    lenient: true,
                    ..Case::default()
                };
                (c, dt, gf32, pf32)
            },
        )
}

#[test]
fn prop_matches_reference() {
    prop_check(case_strategy(), |(c, dt, gf32, pf32)| {
        run_any(&c, DTYPES[dt], gf32, pf32);
        Ok(())
    });
}

/// Any shape/stride/length combination: Ok with in-bounds views, or a
/// clean Err; never a panic or an out-of-bounds access.
#[test]
fn prop_any_shape_is_ok_or_err() {
    let strategy =
        ((0usize..64, 0usize..9, 0usize..9, 0usize..12), (0usize..10, -3i64..12, 0usize..64, 0usize..9, 0usize..9));
    prop_check(strategy, |((len, rows, cols, stride), (tlen, tval, glen, grows, gcols))| {
        let x = vec![0.25f32; len];
        let t = vec![tval; tlen];
        let mut g = vec![0f32; glen];
        let m = match Matrix::with_stride(&x, rows, cols, stride) {
            Ok(m) => m,
            Err(e) => {
                prop_assert_eq!(e.status(), Status::InvalidShape);
                prop_assert!(cols == 0 || stride < cols || len < (rows.max(1) - 1) * stride + cols);
                return Ok(());
            }
        };
        let mut ce = CrossEntropy::new().reduction(Reduction::Sum);
        if let Ok(gm) = MatrixMut::new(&mut g, grows, gcols) {
            ce = ce.grad(gm);
        }
        match ce.run(m, &t) {
            Ok(loss) => prop_assert!(tlen == rows && (rows == 0 || loss.is_finite())),
            Err(e) => prop_assert!(matches!(e.status(), Status::InvalidShape | Status::TargetOutOfRange), "{}", e),
        }
        Ok(())
    });
}

/// NaN and infinities survive the conversion to every output dtype (a NaN
/// row's gradient is NaN in bf16/f16 too, not inf; -inf masks to exactly 0).
fn special_values_in<T: Float>() {
    let inf = f32::INFINITY;
    let x: Vec<T> = [0.0f32, f32::NAN, 1.0, 1.0, -inf, 2.0, 0.5, 0.25, 0.0].iter().map(|&v| T::from_f32(v)).collect();
    let mut g = vec![T::from_f32(9.0); 9];
    let mut rl = [0f32; 3];
    CrossEntropy::new()
        .reduction(Reduction::Sum)
        .row_loss(&mut rl)
        .grad(MatrixMut::new(&mut g, 3, 3).unwrap())
        .run(Matrix::new(&x, 3, 3).unwrap(), &[0i64, 0, 1])
        .unwrap();
    let gf: Vec<f32> = g.iter().map(|v| v.to_f32()).collect();
    assert!(gf[..3].iter().all(|v| v.is_nan()), "{}: NaN row gradient {:?}", dtype_name::<T>(), &gf[..3]);
    assert!(rl[0].is_nan());
    assert_eq!(gf[4], 0.0, "{}: masked class gradient", dtype_name::<T>());
    assert!(gf[3..].iter().all(|v| v.is_finite()) && rl[1].is_finite() && rl[2].is_finite());
}

#[test]
fn special_values_in_every_dtype_and_target() {
    for_each_target(|_| {
        special_values_in::<f32>();
        special_values_in::<bf16>();
        special_values_in::<f16>();
    });
}
