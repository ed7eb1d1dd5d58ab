//! `LinearCrossEntropy` (xent_linear_cross_entropy) against a float64
//! computation of the same formula: f32 and bf16, bias, options, blocks,
//! accumulation, thread counts (bit-identical), shape errors.

#![allow(clippy::needless_range_loop)]

mod common;

use common::XRng as Rng;
use xent::half::bf16;
use xent::{LinearCrossEntropy, Matrix, MatrixMut, Reduction, Status};

struct Ref {
    loss: f64,
    gh: Vec<f64>,
    gw: Vec<f64>,
    gb: Vec<f64>,
}

/// Mean (or sum) cross-entropy of h w^T + b with label smoothing, and its
/// gradients, in f64.
#[allow(clippy::too_many_arguments)] // the float64 reference takes the shapes as they are
fn reference(h: &[f64], w: &[f64], b: &[f64], t: &[i64], n: usize, hs: usize, v: usize, eps: f64, mean: bool) -> Ref {
    let mut g = vec![0.0; n * v];
    let mut loss = 0.0;
    let mut count = 0.0;
    for i in 0..n {
        if t[i] == -100 {
            continue;
        }
        count += 1.0;
        let mut z = vec![0.0; v];
        for c in 0..v {
            z[c] = b[c] + (0..hs).map(|k| h[i * hs + k] * w[c * hs + k]).sum::<f64>();
        }
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = z.iter().map(|x| (x - m).exp()).sum();
        let lse = m + s.ln();
        let y = t[i] as usize;
        let smooth: f64 = z.iter().map(|x| lse - x).sum::<f64>() / v as f64;
        loss += (1.0 - eps) * (lse - z[y]) + eps * smooth;
        for c in 0..v {
            let p = (z[c] - lse).exp();
            g[i * v + c] = p - (1.0 - eps) * if c == y { 1.0 } else { 0.0 } - eps / v as f64;
        }
    }
    let div = if mean { count } else { 1.0 };
    for x in g.iter_mut() {
        *x /= div;
    }
    let mut r = Ref { loss: loss / div, gh: vec![0.0; n * hs], gw: vec![0.0; v * hs], gb: vec![0.0; v] };
    for i in 0..n {
        for c in 0..v {
            let gi = g[i * v + c];
            r.gb[c] += gi;
            for k in 0..hs {
                r.gh[i * hs + k] += gi * w[c * hs + k];
                r.gw[c * hs + k] += gi * h[i * hs + k];
            }
        }
    }
    r
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |a, x| a.max(x.abs()))
}

fn check(name: &str, got: &[f64], want: &[f64], rel: f64) {
    let tol = rel * max_abs(want) + 1e-7;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{name}[{i}] = {g}, want {w} (tol {tol})");
    }
}

struct Data {
    n: usize,
    hs: usize,
    v: usize,
    h: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    t: Vec<i64>,
}

fn data(n: usize, hs: usize, v: usize, seed: u64) -> Data {
    let mut rng = Rng::new(seed);
    let h = (0..n * hs).map(|_| rng.uniform(-1.5, 1.5) as f32).collect();
    let w = (0..v * hs).map(|_| (rng.uniform(-1.0, 1.0) / (hs as f64).sqrt()) as f32).collect();
    let b = (0..v).map(|_| rng.uniform(-0.3, 0.3) as f32).collect();
    let t = (0..n).map(|i| if i % 5 == 2 { -100 } else { rng.below(v) as i64 }).collect();
    Data { n, hs, v, h, w, b, t }
}

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

#[test]
fn f32_matches_float64() {
    if xent::blas_backend() == "none" {
        return;
    }
    let d = data(23, 40, 1100, 1);
    for &(mean, eps, scratch) in &[(true, 0.0, 0usize), (false, 0.1, 6 * (1100 + 40) * 4)] {
        let mut gh = vec![0.0f32; d.n * d.hs];
        let mut gw = vec![0.0f32; d.v * d.hs];
        let mut gb = vec![0.0f32; d.v];
        let mut b = LinearCrossEntropy::new()
            .reduction(if mean { Reduction::Mean } else { Reduction::Sum })
            .label_smoothing(eps as f32)
            .bias(&d.b)
            .grad_hidden(MatrixMut::new(&mut gh, d.n, d.hs).unwrap())
            .grad_weight(MatrixMut::new(&mut gw, d.v, d.hs).unwrap())
            .grad_bias(&mut gb);
        if scratch > 0 {
            b = b.scratch_bytes(scratch);
        }
        let loss = b.run(Matrix::new(&d.h, d.n, d.hs).unwrap(), Matrix::new(&d.w, d.v, d.hs).unwrap(), &d.t).unwrap();
        let r = reference(&f64s(&d.h), &f64s(&d.w), &f64s(&d.b), &d.t, d.n, d.hs, d.v, eps, mean);
        assert!((loss as f64 - r.loss).abs() <= 2e-5 * r.loss.abs().max(1.0), "loss {loss} want {}", r.loss);
        check("grad_hidden", &f64s(&gh), &r.gh, 2e-5);
        check("grad_weight", &f64s(&gw), &r.gw, 2e-5);
        check("grad_bias", &f64s(&gb), &r.gb, 2e-5);
    }
}

#[test]
fn bf16_with_f32_accumulation() {
    if xent::blas_backend() == "none" {
        return;
    }
    let d = data(17, 32, 600, 2);
    let h: Vec<bf16> = d.h.iter().map(|&x| bf16::from_f32(x)).collect();
    let w: Vec<bf16> = d.w.iter().map(|&x| bf16::from_f32(x)).collect();
    let mut gw = vec![bf16::from_f32(0.0); d.v * d.hs];
    let mut gh = vec![1.0f32; d.n * d.hs];
    let loss = LinearCrossEntropy::new()
        .grad_weight(MatrixMut::new(&mut gw, d.v, d.hs).unwrap())
        .grad_hidden(MatrixMut::new(&mut gh, d.n, d.hs).unwrap())
        .accumulate_grad_hidden(true)
        .run(Matrix::new(&h, d.n, d.hs).unwrap(), Matrix::new(&w, d.v, d.hs).unwrap(), &d.t)
        .unwrap();
    let hf: Vec<f64> = h.iter().map(|x| x.to_f64()).collect();
    let wf: Vec<f64> = w.iter().map(|x| x.to_f64()).collect();
    let r = reference(&hf, &wf, &vec![0.0; d.v], &d.t, d.n, d.hs, d.v, 0.0, true);
    assert!((loss as f64 - r.loss).abs() <= 2e-5 * r.loss.abs());
    let gwf: Vec<f64> = gw.iter().map(|x| x.to_f64()).collect();
    check("grad_weight (bf16)", &gwf, &r.gw, 2.0f64.powi(-8));
    let want: Vec<f64> = r.gh.iter().map(|x| 1.0 + x).collect();
    check("grad_hidden (accumulated)", &f64s(&gh), &want, 2e-5);
}

#[test]
fn bit_identical_for_any_thread_count() {
    if xent::blas_backend() == "none" {
        return;
    }
    let d = data(40, 64, 2100, 3);
    let run = |threads: usize| {
        let mut gh = vec![0.0f32; d.n * d.hs];
        let mut gw = vec![0.0f32; d.v * d.hs];
        let loss = LinearCrossEntropy::new()
            .scratch_bytes(7 * (2100 + 64) * 4)
            .grad_hidden(MatrixMut::new(&mut gh, d.n, d.hs).unwrap())
            .grad_weight(MatrixMut::new(&mut gw, d.v, d.hs).unwrap())
            .num_threads(threads)
            .run(Matrix::new(&d.h, d.n, d.hs).unwrap(), Matrix::new(&d.w, d.v, d.hs).unwrap(), &d.t)
            .unwrap();
        (
            loss.to_bits(),
            gh.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            gw.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        )
    };
    let one = run(1);
    for t in [2usize, 3, 0] {
        assert!(run(t) == one, "num_threads = {t} differs from 1 thread");
    }
}

#[test]
fn shape_errors() {
    let d = data(4, 8, 10, 4);
    let e = LinearCrossEntropy::new()
        .run(Matrix::new(&d.h, 4, 8).unwrap(), Matrix::new(&d.w[..70], 10, 7).unwrap(), &d.t)
        .unwrap_err();
    assert_eq!(e.status(), Status::InvalidShape);
    let e = LinearCrossEntropy::new()
        .bias(&d.b[..9])
        .run(Matrix::new(&d.h, 4, 8).unwrap(), Matrix::new(&d.w, 10, 8).unwrap(), &d.t)
        .unwrap_err();
    assert_eq!(e.status(), Status::InvalidShape);
    assert!(e.message().contains("bias"), "{}", e.message());
    if xent::blas_backend() == "none" {
        let e = LinearCrossEntropy::new()
            .run(Matrix::new(&d.h, 4, 8).unwrap(), Matrix::new(&d.w, 10, 8).unwrap(), &d.t)
            .unwrap_err();
        assert_eq!(e.status(), Status::Unsupported);
    }
}
