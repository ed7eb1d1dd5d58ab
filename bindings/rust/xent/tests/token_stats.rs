//! `TokenStats`, `TokenStatsBackward` and `KlPenalty` against float64
//! references, on every SIMD target.

#![allow(clippy::needless_range_loop)]

mod common;

use common::*;
use xent::half::bf16;
use xent::{Float, KlEstimator, KlPenalty, Matrix, MatrixMut, Status, TokenStats, TokenStatsBackward};

/// log-probabilities of each row of z, float64.
fn log_softmax(x: &[f64], b: usize, v: usize, t: f64) -> Vec<f64> {
    let mut out = vec![0.0; b * v];
    for i in 0..b {
        let z: Vec<f64> = x[i * v..(i + 1) * v].iter().map(|&a| a / t).collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + z.iter().map(|&a| (a - m).exp()).sum::<f64>().ln();
        for c in 0..v {
            out[i * v + c] = z[c] - lse;
        }
    }
    out
}

/// Columns by logit, largest first, equal logits by index.
fn order(x: &[f64]) -> Vec<usize> {
    let mut o: Vec<usize> = (0..x.len()).collect();
    o.sort_by(|&a, &b| x[b].partial_cmp(&x[a]).unwrap().then(a.cmp(&b)));
    o
}

fn stats_case<T: Float>(b: usize, v: usize, k: usize, seed: u64, ties: bool) {
    let mut rng = XRng::new(seed);
    let raw: Vec<f64> =
        (0..b * v).map(|_| if ties { (rng.below(7) as f64) - 3.0 } else { rng.uniform(-6.0, 6.0) }).collect();
    let xs: Vec<T> = raw.iter().map(|&a| elem::<T>(a)).collect();
    let x: Vec<f64> = xs.iter().map(|&a| f64_of(a)).collect();
    let refs: Vec<T> = x.iter().map(|&a| elem::<T>(a + rng.uniform(-0.5, 0.5))).collect();
    let q: Vec<f64> = refs.iter().map(|&a| f64_of(a)).collect();
    let target: Vec<i64> = (0..b).map(|i| if i == 1 { -100 } else { rng.below(v) as i64 }).collect();
    let t = 0.9;
    let lp = log_softmax(&x, b, v, t);
    let lq = log_softmax(&q, b, v, t);
    for_each_target(|name| {
        let (mut logprob, mut ent, mut kl) = (vec![0f32; b], vec![0f32; b], vec![0f32; b]);
        let (mut am, mut am_lp) = (vec![0i64; b], vec![0f32; b]);
        let (mut top_lp, mut top_i, mut mass) = (vec![0f32; b * k], vec![0i64; b * k], vec![0f32; b]);
        TokenStats::new()
            .temperature(t as f32)
            .logprob(&mut logprob)
            .entropy(&mut ent)
            .argmax(&mut am, &mut am_lp)
            .topk(k, &mut top_lp, &mut top_i)
            .topk_mass(&mut mass)
            .reference(Matrix::new(&refs, b, v).unwrap())
            .kl(&mut kl)
            .run(Matrix::new(&xs, b, v).unwrap(), &target)
            .unwrap();
        let mut chk = Check::new(format!("token_stats {name} {} b={b} v={v} k={k}", dtype_name::<T>()));
        for i in 0..b {
            let row = &lp[i * v..(i + 1) * v];
            let o = order(&x[i * v..(i + 1) * v]);
            let want_lp = if target[i] < 0 { 0.0 } else { row[target[i] as usize] };
            chk.row_value("logprob", logprob[i], want_lp, 6.0);
            let h: f64 = -row.iter().map(|&l| l.exp() * l).sum::<f64>();
            chk.row_value("entropy", ent[i], h, 6.0);
            let klw: f64 = (0..v).map(|c| row[c].exp() * (row[c] - lq[i * v + c])).sum();
            chk.row_value("kl", kl[i], klw, 12.0);
            assert_eq!(am[i], o[0] as i64, "{name}: argmax of row {i}");
            chk.row_value("argmax_logprob", am_lp[i], row[o[0]], 6.0);
            let mut m = 0.0;
            for j in 0..k {
                assert_eq!(top_i[i * k + j], o[j] as i64, "{name}: topk index {j} of row {i}");
                chk.row_value("topk_logprobs", top_lp[i * k + j], row[o[j]], 6.0);
                m += row[o[j]].exp();
            }
            chk.row_value("topk_mass", mass[i], m, 6.0);
        }
        chk.finish();
    });
}

#[test]
fn stats_f32_and_bf16_against_float64() {
    stats_case::<f32>(5, 300, 5, 1, false);
    stats_case::<f32>(3, 5000, 64, 2, false);
    stats_case::<bf16>(4, 4099, 8, 3, false);
}

#[test]
fn top_k_ties_by_lower_index() {
    stats_case::<f32>(4, 1000, 20, 4, true);
    stats_case::<bf16>(3, 9000, 64, 5, true);
}

#[test]
fn backward_matches_the_closed_form() {
    let (b, v, t) = (4, 257, 1.3);
    let mut rng = XRng::new(9);
    let x: Vec<f32> = (0..b * v).map(|_| rng.uniform(-4.0, 4.0) as f32).collect();
    let xd: Vec<f64> = x.iter().map(|&a| a as f64).collect();
    let target: Vec<i64> = (0..b).map(|_| rng.below(v) as i64).collect();
    let g_lp: Vec<f32> = (0..b).map(|i| if i == 2 { 0.0 } else { rng.uniform(-1.0, 1.0) as f32 }).collect();
    let g_h: Vec<f32> = (0..b).map(|i| if i == 2 { 0.0 } else { rng.uniform(-1.0, 1.0) as f32 }).collect();
    let k = 3;
    let idx: Vec<i64> = (0..b * k).map(|_| rng.below(v) as i64).collect();
    let g_k: Vec<f32> = (0..b * k).map(|n| if n / k == 2 { 0.0 } else { rng.uniform(-1.0, 1.0) as f32 }).collect();
    let lp = log_softmax(&xd, b, v, t);
    let mut want = vec![0.0f64; b * v];
    for i in 0..b {
        let row = &lp[i * v..(i + 1) * v];
        let h: f64 = -row.iter().map(|&l| l.exp() * l).sum::<f64>();
        let gsum = g_lp[i] as f64 + (0..k).map(|j| g_k[i * k + j] as f64).sum::<f64>();
        for c in 0..v {
            let p = row[c].exp();
            let mut d = -p * gsum - g_h[i] as f64 * p * (row[c] + h);
            if c as i64 == target[i] {
                d += g_lp[i] as f64;
            }
            for j in 0..k {
                if idx[i * k + j] == c as i64 {
                    d += g_k[i * k + j] as f64;
                }
            }
            want[i * v + c] = d / t;
        }
    }
    for_each_target(|name| {
        let mut grad = vec![f32::NAN; b * v];
        TokenStatsBackward::new()
            .temperature(t as f32)
            .grad_logprob(&g_lp)
            .grad_entropy(&g_h)
            .grad_topk(k, &idx, &g_k)
            .run(Matrix::new(&x, b, v).unwrap(), &target, MatrixMut::new(&mut grad, b, v).unwrap())
            .unwrap();
        for n in 0..b * v {
            let tol = 4e-6 + 2e-6 * want[n].abs();
            assert!((grad[n] as f64 - want[n]).abs() <= tol, "{name}: grad[{n}] = {} want {}", grad[n], want[n]);
        }
        assert!(grad[2 * v..3 * v].iter().all(|&g| g == 0.0), "{name}: the zero row");
        // In place, with the forward's statistics passed.
        let (mut lse, mut ent) = (vec![0f32; b], vec![0f32; b]);
        TokenStats::new()
            .temperature(t as f32)
            .lse(&mut lse)
            .entropy(&mut ent)
            .run_without_target(Matrix::new(&x, b, v).unwrap())
            .unwrap();
        let mut y = x.clone();
        TokenStatsBackward::new()
            .temperature(t as f32)
            .grad_logprob(&g_lp)
            .grad_entropy(&g_h)
            .grad_topk(k, &idx, &g_k)
            .stats(&lse, &ent)
            .run_in_place(MatrixMut::new(&mut y, b, v).unwrap(), &target)
            .unwrap();
        for n in 0..b * v {
            assert!((y[n] as f64 - want[n]).abs() <= 4e-6 + 2e-6 * want[n].abs(), "{name}: in place [{n}]");
        }
    });
}

#[test]
fn kl_penalty_estimators() {
    let lp = [-1.0f32, -2.5, -0.1, -30.0];
    let rp = [-1.5f32, -0.5, -0.1, -1.0];
    for (est, f, df) in [
        (KlEstimator::K1, (|r: f64| -r) as fn(f64) -> f64, (|_r: f64| 1.0) as fn(f64) -> f64),
        (KlEstimator::K2, |r: f64| 0.5 * r * r, |r: f64| -r),
        (KlEstimator::K3, |r: f64| r.exp() - r - 1.0, |r: f64| 1.0 - r.exp()),
        (
            KlEstimator::Abs,
            |r: f64| r.abs(),
            |r: f64| {
                if r > 0.0 {
                    -1.0
                } else if r < 0.0 {
                    1.0
                } else {
                    0.0
                }
            },
        ),
    ] {
        let (mut pen, mut grad) = ([0f32; 4], [0f32; 4]);
        KlPenalty::new(est).grad(&mut grad).run(&lp, &rp, &mut pen).unwrap();
        for i in 0..4 {
            let r = rp[i] as f64 - lp[i] as f64;
            let tol = 1e-5 * (1.0 + f(r).abs());
            assert!((pen[i] as f64 - f(r)).abs() <= tol, "{est:?}[{i}]: {} want {}", pen[i], f(r));
            assert!((grad[i] as f64 - df(r)).abs() <= tol, "{est:?} grad[{i}]: {} want {}", grad[i], df(r));
        }
    }
    // verl's low_var_kl: r clamped to [-20, 20], the value to [-10, 10].
    let (mut pen, mut grad) = ([0f32; 4], [0f32; 4]);
    KlPenalty::new(KlEstimator::K3)
        .log_ratio_clamp(20.0)
        .value_clamp(10.0)
        .grad(&mut grad)
        .run(&lp, &rp, &mut pen)
        .unwrap();
    assert_eq!(pen[3], 10.0);
    assert_eq!(grad[3], 0.0);
    let e = KlPenalty::new(KlEstimator::K1).run(&lp, &rp[..3], &mut pen).unwrap_err();
    assert_eq!(e.status(), Status::InvalidShape);
}
