//! `TokenLogprobs` (xent_token_logprobs) against the float64 reference.

#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

mod common;

use common::reference as r;
use common::*;
use proptest::prelude::*;
use xent::half::{bf16, f16};
use xent::{Float, Labels, Matrix, Status, TokenLogprobs};

#[derive(Clone, Debug)]
struct Case {
    b: usize,
    v: usize,
    pad: usize,
    seed: u64,
    range: f64,
    temperature: f64,
    softcap: f64,
    ignore_index: i64,
    ignore_some: bool,
    i32_target: bool,
    target_stride: usize,
    logprob: bool,
    entropy: bool,
    lse: bool,
    threads: usize,
}

impl Default for Case {
    fn default() -> Self {
        Case {
            b: 4,
            v: 33,
            pad: 0,
            seed: 1,
            range: 4.0,
            temperature: 1.0,
            softcap: 0.0,
            ignore_index: -100,
            ignore_some: false,
            i32_target: false,
            target_stride: 1,
            logprob: true,
            entropy: true,
            lse: true,
            threads: 1,
        }
    }
}

fn run_case<T: Float>(c: &Case) -> Vec<u32> {
    let what = format!("token_logprobs {c:?} logits={}", dtype_name::<T>());
    let mut rng = XRng::new(c.seed);
    let (b, v) = (c.b, c.v);
    let x = rounded::<T>(&random_matrix(&mut rng, b, v, c.range));
    let logits = Buf::<T>::input(&x, v, v + c.pad);
    let idx: Vec<i64> =
        (0..b).map(|_| if c.ignore_some && rng.below(3) == 0 { c.ignore_index } else { rng.below(v) as i64 }).collect();
    let ts = c.target_stride.max(1);
    let mut t64 = vec![-7777i64; if b == 0 { 0 } else { (b - 1) * ts + 1 }];
    for (i, &y) in idx.iter().enumerate() {
        t64[i * ts] = y;
    }
    let t32: Vec<i32> = t64.iter().map(|&y| y as i32).collect();
    let (t, cap) = (c.temperature as f32, c.softcap as f32);
    let want = r::token_logprobs(&x, c.logprob.then_some(&idx[..]), c.ignore_index, t as f64, cap as f64);

    let (mut lp, mut h, mut lse) = (vec![-1234.5f32; b], vec![-1234.5f32; b], vec![-1234.5f32; b]);
    let res = {
        let mut op =
            TokenLogprobs::new().temperature(t).softcap(cap).ignore_index(c.ignore_index).num_threads(c.threads);
        if c.logprob {
            op = op.logprob(&mut lp);
        }
        if c.entropy {
            op = op.entropy(&mut h);
        }
        if c.lse {
            op = op.lse(&mut lse);
        }
        if !c.logprob && c.seed % 2 == 0 {
            op.run_without_target(logits.mat())
        } else if c.i32_target {
            op.run(logits.mat(), Labels::with_stride(&t32, b, ts).unwrap())
        } else {
            op.run(logits.mat(), Labels::with_stride(&t64, b, ts).unwrap())
        }
    };
    res.unwrap_or_else(|e| panic!("{what}: {e}"));
    let zscale = (1.0 / c.temperature).max(1.0);
    let mut chk = Check::new(what);
    for i in 0..b {
        if c.logprob {
            chk.row_value(&format!("logprob[{i}]"), lp[i], want.logprob[i], zscale);
        } else {
            assert_eq!(lp[i], -1234.5);
        }
        if c.entropy {
            chk.row_value(&format!("entropy[{i}]"), h[i], want.entropy[i], 1.0);
        }
        if c.lse {
            chk.row_value(&format!("lse[{i}]"), lse[i], want.lse[i], zscale);
        }
    }
    chk.finish();
    lp.iter().chain(&h).chain(&lse).map(|x| x.to_bits()).collect()
}

fn run_any(c: &Case, dt: &str) -> Vec<u32> {
    match dt {
        "f32" => run_case::<f32>(c),
        "bf16" => run_case::<bf16>(c),
        "f16" => run_case::<f16>(c),
        _ => unreachable!(),
    }
}

const DTYPES: [&str; 3] = ["f32", "bf16", "f16"];

#[test]
fn defaults_are_the_documented_ones() {
    use xent::sys;
    // Safety: plain data, all-zero valid; init writes exactly size_of bytes.
    let mut a: sys::xent_token_logprobs_args = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { sys::xent_token_logprobs_args_init(&mut a, std::mem::size_of_val(&a)) }, sys::XENT_OK);
    assert_eq!(a.struct_size, std::mem::size_of_val(&a));
    assert_eq!((a.logits_dtype, a.target_dtype), (sys::XENT_F32, sys::XENT_I64));
    assert_eq!((a.ignore_index, a.temperature, a.softcap), (-100, 1.0, 0.0));
    assert_eq!((a.num_threads, a.reserved0), (0, 0));
}

#[test]
fn every_dtype_and_width_matches_reference() {
    for (k, &v) in V_SIZES.iter().enumerate() {
        for dt in DTYPES {
            run_any(&Case { v, b: 5, seed: k as u64, pad: k % 3, ..Case::default() }, dt);
        }
    }
}

#[test]
fn options_match_reference() {
    let mut seed = 10;
    for temperature in [1.0, 0.5, 2.0] {
        for softcap in [0.0, 2.0, 30.0] {
            for mask in 1u32..8 {
                for dt in DTYPES {
                    seed += 1;
                    let c = Case {
                        b: 7,
                        v: 200,
                        seed,
                        temperature,
                        softcap,
                        logprob: mask & 1 != 0,
                        entropy: mask & 2 != 0,
                        lse: mask & 4 != 0,
                        ignore_some: true,
                        ignore_index: if seed % 2 == 0 { -100 } else { 5 },
                        i32_target: seed % 3 == 0,
                        target_stride: 1 + (seed % 2) as usize,
                        pad: (seed % 4) as usize,
                        range: 8.0,
                        ..Case::default()
                    };
                    run_any(&c, dt);
                }
            }
        }
    }
}

#[test]
fn every_simd_target_matches_reference() {
    for_each_target(|_| {
        for dt in DTYPES {
            for (k, &v) in [1usize, 7, 16, 33, 257, 4099].iter().enumerate() {
                run_any(
                    &Case { v, seed: k as u64, softcap: [0.0, 5.0][k % 2], temperature: 0.7, ..Case::default() },
                    dt,
                );
            }
        }
    });
}

#[test]
fn results_are_bit_identical_across_threading() {
    let _no_target_forcing_meanwhile = target_lock();
    for (b, v) in [(67, 4099), (2, 150_000)] {
        for dt in DTYPES {
            let base = Case { b, v, seed: 3, ..Case::default() };
            let one = run_any(&base, dt);
            for threads in [2, 0] {
                assert!(one == run_any(&Case { threads, ..base.clone() }, dt), "{dt} {b}x{v} threads={threads}");
            }
        }
    }
}

#[test]
fn edge_cases_follow_the_header() {
    let inf = f32::INFINITY;
    let x = [0.0f32, f32::NAN, 1.0, -inf, 0.0, 0.0];
    let (mut lp, mut h, mut lse) = ([0f32; 2], [0f32; 2], [0f32; 2]);
    TokenLogprobs::new()
        .logprob(&mut lp)
        .entropy(&mut h)
        .lse(&mut lse)
        .run(Matrix::new(&x, 2, 3).unwrap(), &[0i64, 2])
        .unwrap();
    assert!(lp[0].is_nan() && h[0].is_nan() && lse[0].is_nan());
    assert!((lp[1] + 2f32.ln()).abs() < 1e-6 && (h[1] - 2f32.ln()).abs() < 1e-6);
    // Ignored rows: logprob 0, entropy and lse still computed.
    let x = [1.0f32, 2.0];
    let (mut lp, mut lse) = ([9f32; 1], [0f32; 1]);
    TokenLogprobs::new().logprob(&mut lp).lse(&mut lse).run(Matrix::new(&x, 1, 2).unwrap(), &[-100i64]).unwrap();
    assert_eq!(lp[0], 0.0);
    assert!((lse[0] as f64 - r::logsumexp(&[1.0, 2.0])).abs() < 1e-6);
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
    let mut lp = [7f32; 3];
    check(TokenLogprobs::new().logprob(&mut lp).run(m, &[0i64, 4, 1]), Status::TargetOutOfRange, "target[1] = 4");
    assert_eq!(lp, [7.0; 3]);
    check(
        TokenLogprobs::new().logprob(&mut lp).temperature(0.0).run(m, &[0i64, 1, 1]),
        Status::InvalidValue,
        "temperature",
    );
    check(TokenLogprobs::new().logprob(&mut lp).softcap(-1.0).run(m, &[0i64, 1, 1]), Status::InvalidValue, "softcap");
    check(TokenLogprobs::new().run(m, &[0i64, 1, 1]), Status::NullPointer, "no output");
    check(TokenLogprobs::new().logprob(&mut lp).run_without_target(m), Status::NullPointer, "target");
    check(TokenLogprobs::new().logprob(&mut lp).run(m, &[0i64, 1]), Status::InvalidShape, "target");
    let mut short = [0f32; 2];
    check(TokenLogprobs::new().lse(&mut short).run_without_target(m), Status::InvalidShape, "lse");
}

#[test]
fn prop_matches_reference() {
    let strategy = (
        (0usize..8, 1usize..500, 0usize..4, any::<u64>()),
        (prop_oneof![Just(1.0f64), 0.2..5.0f64], prop_oneof![Just(0.0f64), 0.5..40.0f64]),
        (1u32..8, any::<bool>(), any::<bool>(), 1usize..3, 0usize..3, 0usize..3),
    );
    prop_check(strategy, |((b, v, pad, seed), (t, cap), (mask, ign, i32t, ts, dt, threads))| {
        let c = Case {
            b,
            v,
            pad,
            seed,
            range: 10.0,
            temperature: t,
            softcap: cap,
            ignore_index: -100,
            ignore_some: ign,
            i32_target: i32t,
            target_stride: ts,
            logprob: mask & 1 != 0,
            entropy: mask & 2 != 0,
            lse: mask & 4 != 0,
            threads,
        };
        run_any(&c, DTYPES[dt]);
        Ok(())
    });
}
