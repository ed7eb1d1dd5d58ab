//! Float64 reference implementations of every xent operation, written from
//! the documented semantics in `include/xent/xent.h` (not from the C code).
//! Matrices are `Vec<Vec<f64>>` (rows of V classes), packed.

#![allow(dead_code)]

pub type M = Vec<Vec<f64>>;

pub fn zeros(b: usize, v: usize) -> M {
    vec![vec![0.0; v]; b]
}

/// log(sum exp(z)), -inf for an all -inf row, NaN if any NaN or +inf.
pub fn logsumexp(z: &[f64]) -> f64 {
    if z.iter().any(|x| x.is_nan() || *x == f64::INFINITY) {
        return f64::NAN;
    }
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    m + z.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

fn softcap(x: f64, c: f64) -> f64 {
    if c > 0.0 {
        c * (x / c).tanh()
    } else {
        x
    }
}

fn softcap_deriv(x: f64, c: f64) -> f64 {
    if c > 0.0 {
        let t = (x / c).tanh();
        1.0 - t * t
    } else {
        1.0
    }
}

// ---------------------------------------------------------------------------
// Cross-entropy

#[derive(Clone, Debug)]
pub enum CeTarget {
    Idx(Vec<i64>),
    Probs(M),
}

#[derive(Clone, Debug)]
pub struct CeOpts {
    pub reduction: xent::Reduction,
    pub ignore_index: i64,
    pub eps: f64,
    pub z_loss: f64,
    pub softcap: f64,
    pub grad_scale: f64,
    pub weight: Option<Vec<f64>>,
    pub row_scale: Option<Vec<f64>>,
}

impl Default for CeOpts {
    fn default() -> Self {
        CeOpts {
            reduction: xent::Reduction::Mean,
            ignore_index: -100,
            eps: 0.0,
            z_loss: 0.0,
            softcap: 0.0,
            grad_scale: 1.0,
            weight: None,
            row_scale: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct CeOut {
    pub loss: f64,
    /// The reduction's divisor (1 for SUM/NONE).
    pub div: f64,
    pub row_loss: Vec<f64>,
    pub lse: Vec<f64>,
    pub grad: M,
}

pub fn cross_entropy(x: &M, t: &CeTarget, o: &CeOpts) -> CeOut {
    let b = x.len();
    let v = if b > 0 { x[0].len() } else { 0 };
    let w = |c: usize| o.weight.as_ref().map_or(1.0, |w| w[c]);
    let wsum: f64 = (0..v).map(w).sum();
    let mut row_loss = vec![0.0; b];
    let mut lse = vec![0.0; b];
    let mut dz = zeros(b, v); // d(row_loss)/dz, unscaled
    let mut den = 0.0;
    for i in 0..b {
        let z: Vec<f64> = x[i].iter().map(|&xi| softcap(xi, o.softcap)).collect();
        let l = logsumexp(&z);
        lse[i] = l;
        let p: Vec<f64> = z.iter().map(|zc| (zc - l).exp()).collect();
        match t {
            CeTarget::Idx(y) => {
                let y = y[i];
                if y == o.ignore_index {
                    continue;
                }
                let y = y as usize;
                den += w(y);
                let mut r = (1.0 - o.eps) * w(y) * (l - z[y]);
                if o.eps > 0.0 {
                    r += o.eps / v as f64 * (0..v).map(|c| w(c) * (l - z[c])).sum::<f64>();
                }
                r += o.z_loss * l * l;
                row_loss[i] = r;
                for c in 0..v {
                    let delta = if c == y { 1.0 } else { 0.0 };
                    dz[i][c] = (1.0 - o.eps) * w(y) * (p[c] - delta)
                        + o.eps / v as f64 * (wsum * p[c] - w(c))
                        + 2.0 * o.z_loss * l * p[c];
                }
            }
            CeTarget::Probs(q) => {
                den += 1.0;
                let qp: Vec<f64> = q[i].iter().map(|qc| (1.0 - o.eps) * qc + o.eps / v as f64).collect();
                let mut r = 0.0;
                for c in 0..v {
                    if qp[c] != 0.0 {
                        r += w(c) * qp[c] * (l - z[c]);
                    }
                }
                r += o.z_loss * l * l;
                row_loss[i] = r;
                let s: f64 = (0..v).map(|k| w(k) * qp[k]).sum();
                for c in 0..v {
                    dz[i][c] = p[c] * s - w(c) * qp[c] + 2.0 * o.z_loss * l * p[c];
                }
            }
        }
    }
    let sum: f64 = row_loss.iter().sum();
    let div = if o.reduction == xent::Reduction::Mean { den } else { 1.0 };
    let (loss, gscale) = (sum / div, 1.0 / div);
    let mut grad = zeros(b, v);
    for i in 0..b {
        let rs = o.row_scale.as_ref().map_or(1.0, |r| r[i]);
        for c in 0..v {
            let g = dz[i][c];
            grad[i][c] =
                if g == 0.0 { 0.0 } else { g * gscale * o.grad_scale * rs * softcap_deriv(x[i][c], o.softcap) };
        }
    }
    CeOut { loss, div, row_loss, lse, grad }
}

// ---------------------------------------------------------------------------
// BCE with logits

#[derive(Clone, Debug)]
pub struct BceOpts {
    pub reduction: xent::Reduction,
    pub grad_scale: f64,
    /// B x V weights (a per-class weight is broadcast by the caller).
    pub weight: Option<M>,
    pub pos_weight: Option<Vec<f64>>,
}

impl Default for BceOpts {
    fn default() -> Self {
        BceOpts { reduction: xent::Reduction::Mean, grad_scale: 1.0, weight: None, pos_weight: None }
    }
}

#[derive(Clone, Debug)]
pub struct BceOut {
    pub loss: f64,
    pub row_loss: Vec<f64>,
    pub elem_loss: M,
    pub grad: M,
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

pub fn bce(x: &M, y: &M, o: &BceOpts) -> BceOut {
    let b = x.len();
    let v = if b > 0 { x[0].len() } else { 0 };
    let mut elem = zeros(b, v);
    let mut grad = zeros(b, v);
    let mut row_loss = vec![0.0; b];
    let div = match o.reduction {
        xent::Reduction::Mean => (b * v) as f64,
        xent::Reduction::BatchMean => b as f64,
        _ => 1.0,
    };
    for i in 0..b {
        for c in 0..v {
            let w = o.weight.as_ref().map_or(1.0, |w| w[i][c]);
            let pw = o.pos_weight.as_ref().map_or(1.0, |p| p[c]);
            let (xi, yi) = (x[i][c], y[i][c]);
            elem[i][c] = w * (pw * yi * softplus(-xi) + (1.0 - yi) * softplus(xi));
            grad[i][c] = w * (-pw * yi * sigmoid(-xi) + (1.0 - yi) * sigmoid(xi)) / div * o.grad_scale;
            row_loss[i] += elem[i][c];
        }
    }
    let loss = row_loss.iter().sum::<f64>() / div;
    BceOut { loss, row_loss, elem_loss: elem, grad }
}

// ---------------------------------------------------------------------------
// KL / JSD

#[derive(Clone, Debug)]
pub struct DivOpts {
    pub jsd: bool,
    pub beta: f64,
    pub input_kind: xent::DistKind,
    pub target_kind: xent::DistKind,
    pub temperature: f64,
    pub t2: bool,
    pub reduction: xent::Reduction,
    pub grad_scale: f64,
    /// Row labels and ignore_index.
    pub labels: Option<(Vec<i64>, i64)>,
}

impl Default for DivOpts {
    fn default() -> Self {
        DivOpts {
            jsd: false,
            beta: 0.5,
            input_kind: xent::DistKind::LogProbs,
            target_kind: xent::DistKind::Probs,
            temperature: 1.0,
            t2: false,
            reduction: xent::Reduction::Mean,
            grad_scale: 1.0,
            labels: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct DivOut {
    pub loss: f64,
    pub row_loss: Vec<f64>,
    pub elem_loss: M,
    pub grad_input: M,
    pub grad_target: M,
}

/// (probabilities, log-probabilities) of a row given as `kind`.
fn dist(x: &[f64], kind: xent::DistKind, t: f64) -> (Vec<f64>, Vec<f64>) {
    match kind {
        xent::DistKind::Logits => {
            let z: Vec<f64> = x.iter().map(|v| v / t).collect();
            let l = logsumexp(&z);
            let lp: Vec<f64> = z.iter().map(|v| v - l).collect();
            (lp.iter().map(|v| v.exp()).collect(), lp)
        }
        xent::DistKind::LogProbs => (x.iter().map(|v| v.exp()).collect(), x.to_vec()),
        xent::DistKind::Probs => (x.to_vec(), x.iter().map(|v| v.ln()).collect()),
    }
}

/// d(row)/d(x) from the row's (dL/dp as PROBS, p * dL/dp) per class.
fn chain(kind: xent::DistKind, p: &[f64], d_prob: &[f64], s: &[f64], t: f64) -> Vec<f64> {
    match kind {
        xent::DistKind::Probs => d_prob.to_vec(),
        xent::DistKind::LogProbs => s.to_vec(),
        xent::DistKind::Logits => {
            let tot: f64 = s.iter().sum();
            (0..p.len()).map(|c| (s[c] - p[c] * tot) / t).collect()
        }
    }
}

/// One row of KL(A || B) in terms of a = the distribution in front:
/// elementwise terms and (dL/da, a dL/da, dL/db, b dL/db).
#[allow(clippy::type_complexity)]
fn kl_row(a: &[f64], la: &[f64], b_: &[f64], lb: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let v = a.len();
    let mut e = vec![0.0; v];
    let (mut da, mut sa, mut db, mut sb) = (vec![0.0; v], vec![0.0; v], vec![0.0; v], vec![0.0; v]);
    for c in 0..v {
        if a[c] == 0.0 {
            continue; // 0 log 0 = 0: contributes to no loss and no gradient
        }
        e[c] = a[c] * (la[c] - lb[c]);
        da[c] = la[c] - lb[c] + 1.0;
        sa[c] = a[c] * da[c];
        db[c] = -a[c] / b_[c];
        sb[c] = -a[c];
    }
    (e, da, sa, db, sb)
}

pub fn divergence(input: &M, target: &M, o: &DivOpts) -> DivOut {
    let b = input.len();
    let v = if b > 0 { input[0].len() } else { 0 };
    let t = o.temperature;
    let t2 = if o.t2 { t * t } else { 1.0 };
    let ignored = |i: usize| o.labels.as_ref().map_or(false, |(l, ig)| l[i] == *ig);
    let rows = (0..b).filter(|&i| !ignored(i)).count() as f64;
    let div = match o.reduction {
        xent::Reduction::Mean => rows * v as f64,
        xent::Reduction::BatchMean => rows,
        _ => 1.0,
    };
    let mut out = DivOut {
        loss: 0.0,
        row_loss: vec![0.0; b],
        elem_loss: zeros(b, v),
        grad_input: zeros(b, v),
        grad_target: zeros(b, v),
    };
    for i in 0..b {
        if ignored(i) {
            continue;
        }
        let (q, lq) = dist(&input[i], o.input_kind, t);
        let (p, lp) = dist(&target[i], o.target_kind, t);
        // (elementwise terms, dL/dp, p dL/dp, dL/dq, q dL/dq)
        let (e, dp, sp, dq, sq) = if !o.jsd || o.beta == 0.0 {
            kl_row(&p, &lp, &q, &lq)
        } else if o.beta == 1.0 {
            let (e, dq, sq, dp, sp) = kl_row(&q, &lq, &p, &lp);
            (e, dp, sp, dq, sq)
        } else {
            let bt = o.beta;
            let mut e = vec![0.0; v];
            let (mut dp, mut sp, mut dq, mut sq) = (vec![0.0; v], vec![0.0; v], vec![0.0; v], vec![0.0; v]);
            for c in 0..v {
                let m = bt * p[c] + (1.0 - bt) * q[c];
                let lm = m.ln();
                if p[c] != 0.0 {
                    e[c] += bt * p[c] * (lp[c] - lm);
                    dp[c] = bt * (lp[c] - lm);
                    sp[c] = p[c] * dp[c];
                }
                if q[c] != 0.0 {
                    e[c] += (1.0 - bt) * q[c] * (lq[c] - lm);
                    dq[c] = (1.0 - bt) * (lq[c] - lm);
                    sq[c] = q[c] * dq[c];
                }
            }
            (e, dp, sp, dq, sq)
        };
        let gi = chain(o.input_kind, &q, &dq, &sq, t);
        let gt = chain(o.target_kind, &p, &dp, &sp, t);
        let s = o.grad_scale * t2 / div;
        for c in 0..v {
            out.elem_loss[i][c] = e[c] * t2;
            out.grad_input[i][c] = gi[c] * s;
            out.grad_target[i][c] = gt[c] * s;
        }
        out.row_loss[i] = e.iter().sum::<f64>() * t2;
    }
    out.loss = out.row_loss.iter().sum::<f64>() / div;
    out
}

// ---------------------------------------------------------------------------
// Softmax family

#[derive(Clone, Debug)]
pub struct SoftmaxOut {
    pub probs: M,
    pub log_probs: M,
    pub lse: Vec<f64>,
    pub entropy: Vec<f64>,
}

pub fn softmax(x: &M, temperature: f64) -> SoftmaxOut {
    let mut o = SoftmaxOut { probs: vec![], log_probs: vec![], lse: vec![], entropy: vec![] };
    for row in x {
        let z: Vec<f64> = row.iter().map(|v| v / temperature).collect();
        let l = logsumexp(&z);
        let lp: Vec<f64> = z.iter().map(|v| v - l).collect();
        let p: Vec<f64> = lp.iter().map(|v| v.exp()).collect();
        let h = -(0..p.len()).filter(|&c| p[c] != 0.0).map(|c| p[c] * lp[c]).sum::<f64>();
        o.probs.push(p);
        o.log_probs.push(lp);
        o.lse.push(l);
        o.entropy.push(h);
    }
    o
}

pub fn softmax_backward(y: &M, g: &M, kind: xent::DistKind, temperature: f64) -> M {
    y.iter()
        .zip(g)
        .map(|(y, g)| match kind {
            xent::DistKind::LogProbs => {
                let sg: f64 = g.iter().sum();
                (0..y.len()).map(|c| (g[c] - y[c].exp() * sg) / temperature).collect()
            }
            _ => {
                let s: f64 = (0..y.len()).map(|c| g[c] * y[c]).sum();
                (0..y.len()).map(|c| y[c] * (g[c] - s) / temperature).collect()
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Token log-probabilities

#[derive(Clone, Debug)]
pub struct TokenOut {
    pub logprob: Vec<f64>,
    pub entropy: Vec<f64>,
    pub lse: Vec<f64>,
}

pub fn token_logprobs(x: &M, target: Option<&[i64]>, ignore_index: i64, temperature: f64, cap: f64) -> TokenOut {
    let mut o = TokenOut { logprob: vec![], entropy: vec![], lse: vec![] };
    for (i, row) in x.iter().enumerate() {
        let z: Vec<f64> = row.iter().map(|&v| softcap(v, cap) / temperature).collect();
        let l = logsumexp(&z);
        let h = -z
            .iter()
            .map(|zc| {
                let p = (zc - l).exp();
                if p == 0.0 {
                    0.0
                } else {
                    p * (zc - l)
                }
            })
            .sum::<f64>();
        let lp = match target {
            Some(t) if t[i] != ignore_index => z[t[i] as usize] - l,
            _ => 0.0,
        };
        o.logprob.push(lp);
        o.entropy.push(h);
        o.lse.push(l);
    }
    o
}
