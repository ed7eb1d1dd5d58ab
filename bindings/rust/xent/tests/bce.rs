//! `Bce` (xent_bce_with_logits) against the float64 reference.

#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

mod common;

use common::reference as r;
use common::*;
use proptest::prelude::*;
use xent::half::{bf16, f16};
use xent::{Bce, Float, Matrix, MatrixMut, Reduction, Status};

const DTYPES: [&str; 3] = ["f32", "bf16", "f16"];

#[derive(Clone, Copy, Debug, PartialEq)]
enum W {
    None,
    PerClass,
    Full,
}

#[derive(Clone, Debug)]
struct Case {
    b: usize,
    v: usize,
    pad: usize,
    out_pad: usize,
    seed: u64,
    range: f64,
    reduction: Reduction,
    grad_scale: f64,
    weight: W,
    pos_weight: bool,
    row_loss: bool,
    elem_loss: bool,
    grad: bool,
    in_place: bool,
    target_f32: bool,
    grad_f32: bool,
    hard_targets: bool,
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
            range: 6.0,
            reduction: Reduction::Mean,
            grad_scale: 1.0,
            weight: W::None,
            pos_weight: false,
            row_loss: true,
            elem_loss: true,
            grad: true,
            in_place: false,
            target_f32: true,
            grad_f32: false,
            hard_targets: false,
            threads: 1,
            lenient: false,
        }
    }
}

fn run_case<T: Float, U: Float, G: Float>(c: &Case) -> Vec<u32> {
    let what =
        format!("bce {c:?} logits={} target={} grad={}", dtype_name::<T>(), dtype_name::<U>(), dtype_name::<G>());
    let mut rng = XRng::new(c.seed);
    let (b, v) = (c.b, c.v);
    let x = rounded::<T>(&random_matrix(&mut rng, b, v, c.range));
    let y: M = (0..b)
        .map(|_| (0..v).map(|_| if c.hard_targets { rng.below(2) as f64 } else { rng.uniform(0.0, 1.0) }).collect())
        .collect();
    let y = rounded::<U>(&y);
    let w_full: M = (0..b).map(|_| (0..v).map(|_| rng.uniform(0.25, 2.0) as f32 as f64).collect()).collect();
    let w_class: Vec<f64> = (0..v).map(|_| rng.uniform(0.25, 2.0) as f32 as f64).collect();
    let pw: Vec<f64> = (0..v).map(|_| rng.uniform(0.5, 3.0) as f32 as f64).collect();
    let logits = Buf::<T>::input(&x, v, v + c.pad);
    let target = Buf::<U>::input(&y, v, v + c.pad);
    let wbuf = Buf::<f32>::input(&w_full, v, v + c.pad + 1);
    let wc: Vec<f32> = w_class.iter().map(|&w| w as f32).collect();
    let pwf: Vec<f32> = pw.iter().map(|&w| w as f32).collect();
    let gs = c.grad_scale as f32;
    let opts = r::BceOpts {
        reduction: c.reduction,
        grad_scale: gs as f64,
        weight: match c.weight {
            W::None => None,
            W::PerClass => Some(vec![w_class.clone(); b]),
            W::Full => Some(w_full.clone()),
        },
        pos_weight: c.pos_weight.then(|| pw.clone()),
    };
    let want = r::bce(&x, &y, &opts);

    let mut row_loss = vec![-1234.5f32; b];
    let mut elem = Buf::<f32>::output(b, v, v + c.out_pad);
    let mut grad = Buf::<G>::output(b, v, v + c.out_pad);
    let mut inplace = logits.clone();
    let res = {
        let mut op = Bce::new().reduction(c.reduction).grad_scale(gs).num_threads(c.threads);
        op = match c.weight {
            W::None => op,
            W::PerClass => op.class_weight(&wc),
            W::Full => op.weight(wbuf.mat()),
        };
        if c.pos_weight {
            op = op.pos_weight(&pwf);
        }
        if c.row_loss {
            op = op.row_loss(&mut row_loss);
        }
        if c.elem_loss {
            op = op.elem_loss(elem.mat_mut());
        }
        if c.grad && !c.in_place {
            op = op.grad(grad.mat_mut());
        }
        if c.in_place {
            op.run_in_place(inplace.mat_mut(), target.mat())
        } else {
            op.run(logits.mat(), target.mat())
        }
    };
    let loss = res.unwrap_or_else(|e| panic!("{what}: {e}"));

    let scale = (if c.weight == W::None { 1.0 } else { 2.0 }) * if c.pos_weight { 3.0 } else { 1.0 };
    let div = match c.reduction {
        Reduction::Mean => (b * v) as f64,
        Reduction::BatchMean => b as f64,
        _ => 1.0,
    };
    let mut chk = Check::new(what);
    // The reduced loss sums B x V elementwise terms.
    let elems: Vec<f64> = want.elem_loss.iter().flatten().cloned().collect();
    chk.reduced("loss", loss, want.loss, &elems, div, scale);
    if c.row_loss {
        for i in 0..b {
            let allow: f64 = want.elem_loss[i].iter().map(|e| 2e-6 * e.abs() + 2e-6 * scale).sum();
            chk.close(&format!("row_loss[{i}]"), row_loss[i], want.row_loss[i], 2e-6, allow);
        }
    }
    if c.elem_loss {
        check_matrix(&mut chk, "elem_loss", &elem, &want.elem_loss, 2e-6, 2e-6 * scale, false);
    }
    // The gradient w [(1 - y) sigma(x) - pw y sigma(-x)] cancels for soft
    // targets (sigma(x) - y when pw = 1): bf16/f16 are held to one ulp of the
    // correctly rounded value only for hard 0/1 targets, where there is no
    // cancellation; otherwise to the f32 absolute error.
    let lenient = c.lenient || !c.hard_targets;
    let gtol = grad_abs_tol(scale * c.grad_scale.abs());
    let mut out = vec![loss.to_bits()];
    if c.grad {
        let g: Vec<u32> = if c.in_place {
            check_matrix(&mut chk, "grad(in place)", &inplace, &want.grad, 0.0, gtol, lenient);
            (0..b)
                .flat_map(|i| (0..v).map(move |j| (i, j)))
                .map(|(i, j)| inplace.get(i, j).to_f32().to_bits())
                .collect()
        } else {
            check_matrix(&mut chk, "grad", &grad, &want.grad, 0.0, gtol, lenient);
            (0..b).flat_map(|i| (0..v).map(move |j| (i, j))).map(|(i, j)| grad.get(i, j).to_f32().to_bits()).collect()
        };
        out.extend(g);
    }
    chk.finish();
    out.extend(row_loss.iter().map(|x| x.to_bits()));
    out
}

fn run_any(c: &Case, dt: &str) -> Vec<u32> {
    macro_rules! go {
        ($t:ty) => {
            match (c.target_f32, c.grad_f32 && !c.in_place) {
                (true, true) => run_case::<$t, f32, f32>(c),
                (true, false) => run_case::<$t, f32, $t>(c),
                (false, true) => run_case::<$t, $t, f32>(c),
                (false, false) => run_case::<$t, $t, $t>(c),
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
fn defaults_are_the_documented_ones() {
    use xent::sys;
    // Safety: plain data, all-zero valid; init writes exactly size_of bytes.
    let mut a: sys::xent_bce_args = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { sys::xent_bce_args_init(&mut a, std::mem::size_of_val(&a)) }, sys::XENT_OK);
    assert_eq!(a.struct_size, std::mem::size_of_val(&a));
    assert_eq!((a.logits_dtype, a.target_dtype), (sys::XENT_F32, sys::XENT_F32));
    assert_eq!((a.reduction, a.grad_scale), (sys::XENT_REDUCTION_MEAN, 1.0));
    assert_eq!((a.grad_dtype, a.num_threads, a.weight_stride), (sys::XENT_DTYPE_AUTO, 0, 0));
    assert!(a.weight.is_null() && a.pos_weight.is_null() && a.elem_loss.is_null());
}

#[test]
fn every_dtype_and_width_matches_reference() {
    for (k, &v) in V_SIZES.iter().enumerate() {
        for dt in DTYPES {
            for target_f32 in [true, false] {
                let c = Case {
                    v,
                    b: 3,
                    seed: k as u64 + 1,
                    pad: k % 3,
                    out_pad: k % 2 * 3,
                    target_f32,
                    grad_f32: k % 2 == 0,
                    hard_targets: k % 2 == 1,
                    ..Case::default()
                };
                run_any(&c, dt);
            }
        }
    }
}

#[test]
fn options_match_reference() {
    let mut seed = 20;
    for reduction in [Reduction::Mean, Reduction::BatchMean, Reduction::Sum, Reduction::None] {
        for weight in [W::None, W::PerClass, W::Full] {
            for pos_weight in [false, true] {
                for dt in DTYPES {
                    seed += 1;
                    let c = Case {
                        b: 6,
                        v: 77,
                        seed,
                        reduction,
                        weight,
                        pos_weight,
                        grad_scale: -0.75,
                        pad: (seed % 3) as usize,
                        lenient: true,
                        ..Case::default()
                    };
                    run_any(&c, dt);
                }
            }
        }
    }
}

#[test]
fn in_place_equals_separate_gradient_bitwise() {
    let _no_target_forcing_meanwhile = target_lock();
    for dt in DTYPES {
        for (v, pad) in [(1, 0), (17, 2), (1000, 0), (4099, 3)] {
            let base = Case { v, pad, out_pad: pad, b: 3, seed: v as u64, pos_weight: true, ..Case::default() };
            let a = run_any(&base, dt);
            let b = run_any(&Case { in_place: true, ..base.clone() }, dt);
            assert!(a == b, "{dt} V={v}: in place differs from a separate gradient");
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
                    seed: k as u64 + 9,
                    weight: W::PerClass,
                    pos_weight: k % 2 == 0,
                    lenient: true,
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
            let base = Case { b, v, seed: 8, weight: W::Full, ..Case::default() };
            let one = run_any(&base, dt);
            for threads in [2, 0] {
                assert!(one == run_any(&Case { threads, ..base.clone() }, dt), "{dt} {b}x{v} threads={threads}");
            }
        }
    }
}

#[test]
fn edge_cases_follow_the_header() {
    // Large |x| stays finite (stable softplus).
    let x = [100.0f32, -100.0, 100.0, -100.0];
    let y = [1.0f32, 0.0, 0.0, 1.0];
    let mut e = [0f32; 4];
    let loss = Bce::new()
        .reduction(Reduction::Sum)
        .elem_loss(MatrixMut::new(&mut e, 1, 4).unwrap())
        .run(Matrix::new(&x, 1, 4).unwrap(), Matrix::new(&y, 1, 4).unwrap())
        .unwrap();
    assert!(e[0] < 1e-30 && e[1] < 1e-30 && (e[2] - 100.0).abs() < 1e-4 && (e[3] - 100.0).abs() < 1e-4);
    assert!((loss - 200.0).abs() < 1e-3);
    // B = 0.
    let em: [f32; 0] = [];
    let m = Matrix::new(&em, 0, 3).unwrap();
    assert!(Bce::new().run(m, m).unwrap().is_nan());
    assert_eq!(Bce::new().reduction(Reduction::Sum).run(m, m).unwrap(), 0.0);
    // NaN logit: its row's loss is NaN.
    let x = [f32::NAN, 0.0, 0.0, 0.0];
    let y = [0.5f32; 4];
    let mut rl = [0f32; 2];
    Bce::new().row_loss(&mut rl).run(Matrix::new(&x, 2, 2).unwrap(), Matrix::new(&y, 2, 2).unwrap()).unwrap();
    assert!(rl[0].is_nan() && rl[1].is_finite());
}

#[test]
fn bad_input_returns_err_and_leaves_outputs_untouched() {
    let x = [0.5f32; 12];
    let m = Matrix::new(&x, 3, 4).unwrap();
    let check = |r: xent::Result<f32>, status: Status, needle: &str| {
        let e = r.expect_err("expected an error");
        assert_eq!(e.status(), status, "{e}");
        assert!(e.message().contains(needle), "message {:?} lacks {needle:?}", e.message());
    };
    let mut rl = [7f32; 3];
    check(Bce::new().grad_scale(f32::NAN).row_loss(&mut rl).run(m, m), Status::InvalidValue, "grad_scale");
    assert_eq!(rl, [7.0; 3]);
    let xb = [bf16::ZERO; 12];
    let mb = Matrix::new(&xb, 3, 4).unwrap();
    check(Bce::new().run(m, mb), Status::InvalidDtype, "target_dtype");
    let mut gh = [f16::ZERO; 12];
    check(Bce::new().grad(MatrixMut::new(&mut gh, 3, 4).unwrap()).run(m, m), Status::InvalidDtype, "grad_dtype");
    // Rust-side.
    check(Bce::new().class_weight(&[1.0; 3]).run(m, m), Status::InvalidShape, "weight");
    check(Bce::new().pos_weight(&[1.0; 5]).run(m, m), Status::InvalidShape, "pos_weight");
    let w = [1.0f32; 8];
    check(Bce::new().weight(Matrix::new(&w, 2, 4).unwrap()).run(m, m), Status::InvalidShape, "weight");
    let x8 = [0.5f32; 8];
    check(Bce::new().run(m, Matrix::new(&x8, 2, 4).unwrap()), Status::InvalidShape, "target");
    let mut e = [0f32; 12];
    check(Bce::new().elem_loss(MatrixMut::new(&mut e, 4, 3).unwrap()).run(m, m), Status::InvalidShape, "elem_loss");
}

#[test]
fn prop_matches_reference() {
    let strategy = (
        (0usize..6, 1usize..300, 0usize..3, 0usize..3, any::<u64>()),
        (0usize..4, -3.0..3.0f64, 0usize..3, any::<bool>()),
        (0u32..8, any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), 0usize..3, 0usize..3),
    );
    prop_check(
        strategy,
        |((b, v, pad, opad, seed), (red, gs, w, pw), (outs, in_place, tf32, gf32, hard, dt, threads))| {
            let c = Case {
                b,
                v,
                pad,
                out_pad: opad,
                seed,
                range: 12.0,
                reduction: [Reduction::Mean, Reduction::BatchMean, Reduction::Sum, Reduction::None][red],
                grad_scale: gs,
                weight: [W::None, W::PerClass, W::Full][w],
                pos_weight: pw,
                row_loss: outs & 1 != 0,
                elem_loss: outs & 2 != 0,
                grad: outs & 4 != 0 || in_place,
                in_place,
                target_f32: tf32,
                grad_f32: gf32,
                hard_targets: hard,
                threads,
                lenient: true,
            };
            run_any(&c, DTYPES[dt]);
            Ok(())
        },
    );
}
