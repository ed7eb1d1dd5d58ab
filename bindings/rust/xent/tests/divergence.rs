//! `Divergence` (xent_divergence: KL and generalized JSD) against the
//! float64 reference: every pair of distribution kinds, temperatures, t^2
//! scaling, reductions, row labels, both gradients, in place, dtypes, every
//! SIMD target, threading, edge cases, errors and property tests.

#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

mod common;

use common::reference as r;
use common::*;
use proptest::prelude::*;
use xent::half::{bf16, f16};
use xent::{DistKind, Divergence, Float, Labels, Matrix, MatrixMut, Reduction, Status};

const KINDS: [DistKind; 3] = [DistKind::Logits, DistKind::LogProbs, DistKind::Probs];
const DTYPES: [&str; 3] = ["f32", "bf16", "f16"];

#[derive(Clone, Debug)]
struct Case {
    b: usize,
    v: usize,
    pad: usize,
    out_pad: usize,
    seed: u64,
    jsd: bool,
    beta: f64,
    input_kind: DistKind,
    target_kind: DistKind,
    temperature: f64,
    t2: bool,
    reduction: Reduction,
    grad_scale: f64,
    labels: bool,
    row_loss: bool,
    elem_loss: bool,
    grad_input: bool,
    grad_target: bool,
    in_place: bool,
    grad_f32: bool,
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
            jsd: false,
            beta: 0.5,
            input_kind: DistKind::LogProbs,
            target_kind: DistKind::Probs,
            temperature: 1.0,
            t2: false,
            reduction: Reduction::Mean,
            grad_scale: 1.0,
            labels: false,
            row_loss: true,
            elem_loss: true,
            grad_input: true,
            grad_target: true,
            in_place: false,
            grad_f32: false,
            threads: 1,
            lenient: true,
        }
    }
}

/// A random distribution row set given as `kind`, rounded to T.
fn random_dist<T: Float>(rng: &mut XRng, b: usize, v: usize, kind: DistKind) -> M {
    let m: M = match kind {
        DistKind::Logits => random_matrix(rng, b, v, 4.0),
        DistKind::LogProbs => (0..b).map(|_| rng.simplex(v).iter().map(|p| p.ln()).collect()).collect(),
        DistKind::Probs => (0..b).map(|_| rng.simplex(v)).collect(),
    };
    rounded::<T>(&m)
}

fn run_case<T: Float, G: Float>(c: &Case) -> Vec<u32> {
    let what = format!("divergence {c:?} in={} grad={}", dtype_name::<T>(), dtype_name::<G>());
    let mut rng = XRng::new(c.seed);
    let (b, v) = (c.b, c.v);
    let q = random_dist::<T>(&mut rng, b, v, c.input_kind);
    let p = random_dist::<T>(&mut rng, b, v, c.target_kind);
    let labels: Vec<i64> = (0..b).map(|_| if rng.below(3) == 0 { -100 } else { rng.below(v) as i64 }).collect();
    let input = Buf::<T>::input(&q, v, v + c.pad);
    let target = Buf::<T>::input(&p, v, v + c.pad);
    let (t, beta, gs) = (c.temperature as f32, c.beta as f32, c.grad_scale as f32);
    let opts = r::DivOpts {
        jsd: c.jsd,
        beta: beta as f64,
        input_kind: c.input_kind,
        target_kind: c.target_kind,
        temperature: t as f64,
        t2: c.t2,
        reduction: c.reduction,
        grad_scale: gs as f64,
        labels: c.labels.then(|| (labels.clone(), -100)),
    };
    let want = r::divergence(&q, &p, &opts);

    let mut row_loss = vec![-1234.5f32; b];
    let mut elem = Buf::<f32>::output(b, v, v + c.out_pad);
    let mut gi = Buf::<G>::output(b, v, v + c.out_pad);
    let mut gt = Buf::<G>::output(b, v, v + 2 * c.out_pad);
    let mut inplace = input.clone();
    let res = {
        let mut d = if c.jsd { Divergence::jsd(beta) } else { Divergence::kl() };
        d = d
            .input_kind(c.input_kind)
            .target_kind(c.target_kind)
            .temperature(t)
            .t2_scaling(c.t2)
            .reduction(c.reduction)
            .grad_scale(gs)
            .num_threads(c.threads);
        if c.labels {
            d = d.labels(Labels::new(&labels));
        }
        if c.row_loss {
            d = d.row_loss(&mut row_loss);
        }
        if c.elem_loss {
            d = d.elem_loss(elem.mat_mut());
        }
        if c.grad_input && !c.in_place {
            d = d.grad_input(gi.mat_mut());
        }
        if c.grad_target {
            d = d.grad_target(gt.mat_mut());
        }
        if c.in_place {
            d.run_in_place(inplace.mat_mut(), target.mat())
        } else {
            d.run(input.mat(), target.mat())
        }
    };
    let loss = res.unwrap_or_else(|e| panic!("{what}: {e}"));

    let t2 = if c.t2 { (t * t) as f64 } else { 1.0 };
    let mut chk = Check::new(what);
    let div = match c.reduction {
        Reduction::Mean | Reduction::BatchMean => {
            let rows = (0..b).filter(|&i| !(c.labels && labels[i] == -100)).count() as f64;
            if c.reduction == Reduction::Mean {
                rows * v as f64
            } else {
                rows
            }
        }
        _ => 1.0,
    };
    chk.reduced("loss", loss, want.loss, &want.row_loss, div, t2);
    if c.row_loss {
        for i in 0..b {
            chk.row_value(&format!("row_loss[{i}]"), row_loss[i], want.row_loss[i], t2);
        }
    }
    if c.elem_loss {
        check_matrix(&mut chk, "elem_loss", &elem, &want.elem_loss, 2e-6, 2e-6 * t2, false);
    }
    let tol = |g: &M| 1e-6 * max_abs(g).max(1.0);
    let mut out = Vec::new();
    if c.grad_input {
        if c.in_place {
            check_matrix(
                &mut chk,
                "grad_input(in place)",
                &inplace,
                &want.grad_input,
                0.0,
                tol(&want.grad_input),
                c.lenient,
            );
            out.extend(
                (0..b).flat_map(|i| (0..v).map(move |j| (i, j))).map(|(i, j)| inplace.get(i, j).to_f32().to_bits()),
            );
        } else {
            check_matrix(&mut chk, "grad_input", &gi, &want.grad_input, 0.0, tol(&want.grad_input), c.lenient);
            out.extend((0..b).flat_map(|i| (0..v).map(move |j| (i, j))).map(|(i, j)| gi.get(i, j).to_f32().to_bits()));
        }
    }
    if c.grad_target {
        check_matrix(&mut chk, "grad_target", &gt, &want.grad_target, 0.0, tol(&want.grad_target), c.lenient);
        out.extend((0..b).flat_map(|i| (0..v).map(move |j| (i, j))).map(|(i, j)| gt.get(i, j).to_f32().to_bits()));
    }
    chk.finish();
    out.push(loss.to_bits());
    out.extend(row_loss.iter().map(|x| x.to_bits()));
    out
}

fn run_any(c: &Case, dt: &str) -> Vec<u32> {
    match (dt, c.grad_f32 && !c.in_place) {
        ("f32", _) => run_case::<f32, f32>(c),
        ("bf16", false) => run_case::<bf16, bf16>(c),
        ("bf16", true) => run_case::<bf16, f32>(c),
        ("f16", false) => run_case::<f16, f16>(c),
        ("f16", true) => run_case::<f16, f32>(c),
        _ => unreachable!(),
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    use xent::sys;
    // Safety: plain data, all-zero valid; init writes exactly size_of bytes.
    let mut a: sys::xent_divergence_args = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { sys::xent_divergence_args_init(&mut a, std::mem::size_of_val(&a)) }, sys::XENT_OK);
    assert_eq!(a.struct_size, std::mem::size_of_val(&a));
    assert_eq!((a.input_kind, a.target_kind), (sys::XENT_DIST_LOG_PROBS, sys::XENT_DIST_PROBS));
    assert_eq!((a.divergence, a.beta, a.temperature, a.t2_scaling), (sys::XENT_DIVERGENCE_KL, 0.5, 1.0, 0));
    assert_eq!((a.reduction, a.grad_scale), (sys::XENT_REDUCTION_MEAN, 1.0));
    assert_eq!((a.ignore_index, a.labels_dtype, a.reserved0, a.reserved1), (-100, sys::XENT_I64, 0, 0));
    assert_eq!(
        (a.grad_input_dtype, a.grad_target_dtype, a.num_threads),
        (sys::XENT_DTYPE_AUTO, sys::XENT_DTYPE_AUTO, 0)
    );
}

#[test]
fn every_kind_pair_and_divergence_matches_reference() {
    let mut seed = 1;
    for input_kind in KINDS {
        for target_kind in KINDS {
            for (jsd, beta) in [(false, 0.5), (true, 0.5), (true, 0.0), (true, 1.0), (true, 0.2)] {
                for dt in DTYPES {
                    seed += 1;
                    let c = Case {
                        input_kind,
                        target_kind,
                        jsd,
                        beta,
                        seed,
                        v: 37,
                        pad: (seed % 3) as usize,
                        out_pad: (seed % 2) as usize,
                        temperature: if seed % 2 == 0 { 1.0 } else { 2.0 },
                        grad_f32: seed % 3 == 0,
                        ..Case::default()
                    };
                    run_any(&c, dt);
                }
            }
        }
    }
}

#[test]
fn reductions_labels_and_scaling_match_reference() {
    let mut seed = 300;
    for reduction in [Reduction::Mean, Reduction::BatchMean, Reduction::Sum, Reduction::None] {
        for (t2, temperature) in [(false, 1.0), (true, 2.0), (true, 0.5)] {
            for labels in [false, true] {
                for jsd in [false, true] {
                    seed += 1;
                    let c = Case {
                        b: 7,
                        v: 90,
                        seed,
                        reduction,
                        t2,
                        temperature,
                        labels,
                        jsd,
                        beta: 0.3,
                        grad_scale: 1.5,
                        input_kind: DistKind::Logits,
                        target_kind: if seed % 2 == 0 { DistKind::Logits } else { DistKind::LogProbs },
                        ..Case::default()
                    };
                    run_any(&c, DTYPES[(seed % 3) as usize]);
                }
            }
        }
    }
}

#[test]
fn every_dtype_and_width_matches_reference() {
    for (k, &v) in V_SIZES.iter().enumerate() {
        for dt in DTYPES {
            let c = Case {
                v,
                b: 3,
                seed: k as u64 + 50,
                input_kind: KINDS[k % 3],
                target_kind: KINDS[(k / 3) % 3],
                jsd: k % 2 == 0,
                pad: k % 3,
                ..Case::default()
            };
            run_any(&c, dt);
        }
    }
}

#[test]
fn in_place_equals_separate_gradient_bitwise() {
    let _no_target_forcing_meanwhile = target_lock();
    for dt in DTYPES {
        for (v, kind) in
            [(1, DistKind::Logits), (17, DistKind::LogProbs), (1000, DistKind::Probs), (4099, DistKind::Logits)]
        {
            let base = Case {
                v,
                b: 3,
                seed: v as u64,
                input_kind: kind,
                jsd: v % 2 == 1,
                grad_target: false,
                ..Case::default()
            };
            let a = run_any(&base, dt);
            let b = run_any(&Case { in_place: true, ..base.clone() }, dt);
            assert!(a == b, "{dt} V={v}: in place differs from a separate grad_input");
        }
    }
}

#[test]
fn every_simd_target_matches_reference() {
    for_each_target(|_| {
        for dt in DTYPES {
            for (k, &v) in [1usize, 7, 16, 33, 257, 4099].iter().enumerate() {
                let c = Case {
                    v,
                    b: 3,
                    seed: k as u64 + 7,
                    input_kind: KINDS[k % 3],
                    target_kind: KINDS[(k + 1) % 3],
                    jsd: k % 2 == 1,
                    temperature: 1.5,
                    t2: true,
                    ..Case::default()
                };
                run_any(&c, dt);
            }
        }
    });
}

#[test]
fn results_are_bit_identical_across_threading() {
    let _no_target_forcing_meanwhile = target_lock();
    for (b, v) in [(67, 4099), (2, 150_000)] {
        for dt in DTYPES {
            let base = Case {
                b,
                v,
                seed: 4,
                input_kind: DistKind::Logits,
                target_kind: DistKind::Logits,
                labels: true,
                ..Case::default()
            };
            let one = run_any(&base, dt);
            for threads in [2, 0] {
                assert!(one == run_any(&Case { threads, ..base.clone() }, dt), "{dt} {b}x{v} threads={threads}");
            }
        }
    }
}

#[test]
fn edge_cases_follow_the_header() {
    // 0 log 0 = 0: a zero target probability contributes 0 to loss and
    // gradients, even where the input is -inf (log q = -inf).
    let q = [-(2f32.ln()), f32::NEG_INFINITY, -(2f32.ln())];
    let p = [0.5f32, 0.0, 0.5];
    let (mut rl, mut gi) = ([9f32; 1], [9f32; 3]);
    let loss = Divergence::kl()
        .reduction(Reduction::Sum)
        .row_loss(&mut rl)
        .grad_input(MatrixMut::new(&mut gi, 1, 3).unwrap())
        .run(Matrix::new(&q, 1, 3).unwrap(), Matrix::new(&p, 1, 3).unwrap())
        .unwrap();
    assert!(loss.abs() < 1e-6 && rl[0].abs() < 1e-6, "{loss} {rl:?}");
    assert_eq!(gi[1], 0.0);
    // Identical distributions: 0.
    let x = [0.1f32, 0.2, 0.7];
    let kl = Divergence::kl()
        .input_kind(DistKind::Probs)
        .run(Matrix::new(&x, 1, 3).unwrap(), Matrix::new(&x, 1, 3).unwrap())
        .unwrap();
    assert!(kl.abs() < 1e-7);
    // B = 0: MEAN / BATCHMEAN NaN, SUM 0.
    let e: [f32; 0] = [];
    let em = Matrix::new(&e, 0, 4).unwrap();
    assert!(Divergence::kl().run(em, em).unwrap().is_nan());
    assert!(Divergence::kl().reduction(Reduction::BatchMean).run(em, em).unwrap().is_nan());
    assert_eq!(Divergence::kl().reduction(Reduction::Sum).run(em, em).unwrap(), 0.0);
    // NaN in a row: that row NaN.
    let q = [0.0f32, f32::NAN, 0.0, 0.0];
    let p = [0.5f32; 4];
    let mut rl = [0f32; 2];
    Divergence::kl()
        .input_kind(DistKind::Logits)
        .row_loss(&mut rl)
        .run(Matrix::new(&q, 2, 2).unwrap(), Matrix::new(&p, 2, 2).unwrap())
        .unwrap();
    assert!(rl[0].is_nan() && rl[1].abs() < 1e-7);
}

#[test]
fn bad_input_returns_err_and_leaves_outputs_untouched() {
    let x = [0.25f32; 12];
    let m = Matrix::new(&x, 3, 4).unwrap();
    let check = |r: xent::Result<f32>, status: Status, needle: &str| {
        let e = r.expect_err("expected an error");
        assert_eq!(e.status(), status, "{e}");
        assert!(e.message().contains(needle), "message {:?} lacks {needle:?}", e.message());
    };
    let mut rl = [7f32; 3];
    check(Divergence::jsd(1.5).row_loss(&mut rl).run(m, m), Status::InvalidValue, "beta");
    assert_eq!(rl, [7.0; 3]);
    check(Divergence::jsd(f32::NAN).run(m, m), Status::InvalidValue, "beta");
    check(Divergence::kl().temperature(0.0).run(m, m), Status::InvalidValue, "temperature");
    check(Divergence::kl().grad_scale(f32::INFINITY).run(m, m), Status::InvalidValue, "grad_scale");
    check(Divergence::kl().labels(&[0i64, 9, 1]).run(m, m), Status::TargetOutOfRange, "labels[1] = 9");
    let xb = [bf16::from_f32(0.25); 12];
    check(Divergence::kl().run(m, Matrix::new(&xb, 3, 4).unwrap()), Status::InvalidDtype, "target_dtype");
    let mut gb = [f16::ZERO; 12];
    check(
        Divergence::kl().grad_input(MatrixMut::new(&mut gb, 3, 4).unwrap()).run(m, m),
        Status::InvalidDtype,
        "grad_input_dtype",
    );
    // Rust-side.
    let x8 = [0.25f32; 8];
    check(Divergence::kl().run(m, Matrix::new(&x8, 2, 4).unwrap()), Status::InvalidShape, "target");
    check(Divergence::kl().labels(&[0i64, 1]).run(m, m), Status::InvalidShape, "labels");
    let mut e = [0f32; 8];
    check(
        Divergence::kl().elem_loss(MatrixMut::new(&mut e, 2, 4).unwrap()).run(m, m),
        Status::InvalidShape,
        "elem_loss",
    );
    let mut g = [0f32; 12];
    let mut x2 = x;
    check(
        Divergence::kl()
            .grad_input(MatrixMut::new(&mut g, 3, 4).unwrap())
            .run_in_place(MatrixMut::new(&mut x2, 3, 4).unwrap(), m),
        Status::Aliasing,
        "grad_input",
    );
}

#[test]
fn prop_matches_reference() {
    let strategy = (
        (0usize..6, 1usize..300, 0usize..3, 0usize..3, any::<u64>()),
        (0usize..3, 0usize..3, any::<bool>(), prop_oneof![Just(0.0f64), Just(1.0), Just(0.5), 0.0..1.0f64]),
        (prop_oneof![Just(1.0f64), 0.3..4.0f64], any::<bool>(), 0usize..4, -3.0..3.0f64),
        (any::<bool>(), 0u32..16, any::<bool>(), any::<bool>(), 0usize..3, 0usize..3),
    );
    prop_check(
        strategy,
        |(
            (b, v, pad, opad, seed),
            (ik, tk, jsd, beta),
            (t, t2, red, gs),
            (labels, outs, in_place, gf32, dt, threads),
        )| {
            let c = Case {
                b,
                v,
                pad,
                out_pad: opad,
                seed,
                jsd,
                beta,
                input_kind: KINDS[ik],
                target_kind: KINDS[tk],
                temperature: t,
                t2,
                reduction: [Reduction::Mean, Reduction::BatchMean, Reduction::Sum, Reduction::None][red],
                grad_scale: gs,
                labels,
                row_loss: outs & 1 != 0,
                elem_loss: outs & 2 != 0,
                grad_input: outs & 4 != 0 || in_place,
                grad_target: outs & 8 != 0,
                in_place,
                grad_f32: gf32,
                threads,
                lenient: true,
            };
            run_any(&c, DTYPES[dt]);
            Ok(())
        },
    );
}
