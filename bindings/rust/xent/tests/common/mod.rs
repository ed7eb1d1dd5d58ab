//! Shared test support: a deterministic RNG, strided buffers with guarded
//! padding, tolerance checks taken from xent.h's accuracy contract, and the
//! float64 reference (`reference`).

#![allow(dead_code)]

pub mod reference;

use std::sync::{Mutex, MutexGuard};

use xent::half::{bf16, f16};
use xent::{DType, Float, Matrix, MatrixMut};

pub use reference::M;

/// Serializes the tests of one binary that force a SIMD target (forcing is
/// process-global).
pub fn target_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` once per supported SIMD target (forced), then restores automatic
/// selection. Returns the names.
pub fn for_each_target(mut f: impl FnMut(&str)) -> Vec<String> {
    let _g = target_lock();
    let targets = xent::supported_targets();
    assert!(!targets.is_empty());
    for t in &targets {
        xent::force_target(t).unwrap();
        assert_eq!(xent::active_target().to_lowercase(), t.to_lowercase());
        f(t);
    }
    xent::reset_target().unwrap();
    targets
}

// ---------------------------------------------------------------------------
// RNG (splitmix64)

pub struct XRng(u64);

impl XRng {
    pub fn new(seed: u64) -> Self {
        XRng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// A probability row (sums to 1) with V entries.
    pub fn simplex(&mut self, v: usize) -> Vec<f64> {
        let w: Vec<f64> = (0..v).map(|_| self.uniform(0.05, 1.0)).collect();
        let s: f64 = w.iter().sum();
        w.iter().map(|x| x / s).collect()
    }
}

// ---------------------------------------------------------------------------
// Element helpers

pub fn f64_of<T: Float>(x: T) -> f64 {
    x.to_f32() as f64
}

pub fn elem<T: Float>(x: f64) -> T {
    T::from_f32(x as f32)
}

/// A value that must never be read (inputs' padding) or written (outputs').
pub fn input_pad<T: Float>() -> T {
    T::from_f32(f32::NAN)
}

pub fn output_pad<T: Float>() -> T {
    T::from_f32(-1234.5)
}

pub fn dtype_name<T: Float>() -> &'static str {
    match T::DTYPE {
        DType::F32 => "f32",
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        _ => "?",
    }
}

// ---------------------------------------------------------------------------
// Strided buffers

/// `rows x cols` with row stride `stride`; the padding holds `pad` and the
/// buffer ends exactly at the last row's last element (so reading past it is
/// out of bounds, which Miri/ASan-style tools would flag; the C side must not
/// touch padding either).
#[derive(Clone, Debug)]
pub struct Buf<T> {
    pub data: Vec<T>,
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
    pub pad: T,
}

impl<T: Float> Buf<T> {
    pub fn from_fn(rows: usize, cols: usize, stride: usize, pad: T, mut f: impl FnMut(usize, usize) -> T) -> Self {
        assert!(stride >= cols);
        let len = if rows == 0 { 0 } else { (rows - 1) * stride + cols };
        let mut data = vec![pad; len];
        for i in 0..rows {
            for j in 0..cols {
                data[i * stride + j] = f(i, j);
            }
        }
        Buf { data, rows, cols, stride, pad }
    }

    /// An input holding `values` (rounded to T), NaN padding.
    pub fn input(values: &M, cols: usize, stride: usize) -> Self {
        Self::from_fn(values.len(), cols, stride, input_pad(), |i, j| elem(values[i][j]))
    }

    /// An output filled with the sentinel.
    pub fn output(rows: usize, cols: usize, stride: usize) -> Self {
        let p = output_pad::<T>();
        Self::from_fn(rows, cols, stride, p, |_, _| p)
    }

    pub fn get(&self, i: usize, j: usize) -> T {
        self.data[i * self.stride + j]
    }

    /// The exact values as f64 (what the C side reads).
    pub fn values(&self) -> M {
        (0..self.rows).map(|i| (0..self.cols).map(|j| f64_of(self.get(i, j))).collect()).collect()
    }

    pub fn mat(&self) -> Matrix<'_, T> {
        Matrix::with_stride(&self.data, self.rows, self.cols, self.stride).unwrap()
    }

    pub fn mat_mut(&mut self) -> MatrixMut<'_, T> {
        MatrixMut::with_stride(&mut self.data, self.rows, self.cols, self.stride).unwrap()
    }

    /// Every padding element still holds its sentinel (bitwise).
    pub fn padding_intact(&self) -> bool {
        let pad = self.pad.to_f32().to_bits();
        (0..self.data.len()).filter(|k| k % self.stride >= self.cols).all(|k| self.data[k].to_f32().to_bits() == pad)
    }
}

// ---------------------------------------------------------------------------
// Tolerances (xent.h, "Accuracy"): reduced f32 losses 2e-6 relative; per-row
// values 2e-6 relative + 2e-6 absolute; f32 gradients 1e-6 absolute; bf16/f16
// outputs within one ulp of the correctly rounded result. `scale` multiplies
// the absolute parts by the magnitude of the caller's own multipliers
// (weights, grad_scale, row_scale, temperature^2, ...), which the contract's
// unit-scale numbers do not cover.

/// Collects mismatches; panics with a readable list at the end.
pub struct Check {
    what: String,
    errors: Vec<String>,
    checked: usize,
}

impl Check {
    pub fn new(what: impl Into<String>) -> Self {
        Check { what: what.into(), errors: Vec::new(), checked: 0 }
    }

    pub fn fail(&mut self, msg: String) {
        self.errors.push(msg);
    }

    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn count(&self) -> usize {
        self.checked
    }

    /// `got` within `rel * |want| + abs` of `want`; NaN only for NaN, infinities exact.
    pub fn close(&mut self, name: &str, got: f32, want: f64, rel: f64, abs: f64) {
        self.checked += 1;
        let g = got as f64;
        let ok = if want.is_nan() {
            g.is_nan()
        } else if want.is_infinite() {
            g == want
        } else {
            g.is_finite() && (g - want).abs() <= rel * want.abs() + abs
        };
        if !ok {
            self.fail(format!(
                "{name}: got {got:e}, want {want:e} (diff {:e}, tol {:e})",
                g - want,
                rel * want.abs() + abs
            ));
        }
    }

    /// A per-row value (loss, lse, entropy, logprob).
    pub fn row_value(&mut self, name: &str, got: f32, want: f64, scale: f64) {
        self.close(name, got, want, 2e-6, 2e-6 * scale);
    }

    /// A reduced loss that is `sum_i rows[i] / div`: 2e-6 relative to the
    /// result plus the rows' own per-row allowance, divided by `div`.
    pub fn reduced(&mut self, name: &str, got: f32, want: f64, rows: &[f64], div: f64, scale: f64) {
        let allow: f64 = rows.iter().map(|r| 2e-6 * r.abs() + 2e-6 * scale).sum::<f64>() / div.abs();
        self.close(name, got, want, 2e-6, allow);
    }

    /// A B x V element: f32 within `abs` (+ `rel`); bf16/f16 within one ulp
    /// of the correctly rounded `want` (or, with `lenient`, also within
    /// `abs`: the f32 computation's own error, for ill-conditioned values).
    pub fn elem<T: Float>(&mut self, name: &str, got: T, want: f64, rel: f64, abs: f64, lenient: bool) {
        if T::DTYPE == DType::F32 {
            return self.close(name, got.to_f32(), want, rel, abs);
        }
        self.checked += 1;
        let g = f64_of(got);
        if want.is_nan() {
            if !g.is_nan() {
                self.fail(format!("{name}: got {g:e}, want NaN"));
            }
            return;
        }
        // exp(x - max) below 2^-126 may be flushed to 0 (xent.h).
        if want.abs() < f32::MIN_POSITIVE as f64 && g == 0.0 {
            return;
        }
        let d = ulp_distance(got, nearest::<T>(want));
        if d <= 1 || (lenient && (g - want).abs() <= abs + rel * want.abs()) {
            return;
        }
        self.fail(format!("{name}: got {g:e} ({} ulp from the correctly rounded {want:e})", d));
    }

    /// Panics listing the first mismatches.
    pub fn finish(self) {
        if !self.errors.is_empty() {
            let n = self.errors.len();
            let shown: Vec<&String> = self.errors.iter().take(12).collect();
            panic!(
                "{}: {n} of {} values outside tolerance:\n  {}",
                self.what,
                self.checked,
                shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  ")
            );
        }
    }
}

/// Ordered integer key of a float's bits (adjacent floats differ by 1).
fn ordered_key<T: Float>(x: T) -> i64 {
    let (bits, sign_bit): (u64, u64) = match T::DTYPE {
        DType::F32 => (x.to_f32().to_bits() as u64, 1 << 31),
        DType::BF16 => (bf16::from_f32(x.to_f32()).to_bits() as u64, 1 << 15),
        DType::F16 => (f16::from_f32(x.to_f32()).to_bits() as u64, 1 << 15),
        _ => unreachable!(),
    };
    if bits & sign_bit != 0 {
        -((bits & !sign_bit) as i64)
    } else {
        bits as i64
    }
}

fn from_key<T: Float>(k: i64) -> T {
    let (mag, sign_bit): (u64, u64) = (k.unsigned_abs(), if T::DTYPE == DType::F32 { 1 << 31 } else { 1 << 15 });
    let bits = if k < 0 { mag | sign_bit } else { mag };
    match T::DTYPE {
        DType::F32 => T::from_f32(f32::from_bits(bits as u32)),
        DType::BF16 => T::from_f32(bf16::from_bits(bits as u16).to_f32()),
        DType::F16 => T::from_f32(f16::from_bits(bits as u16).to_f32()),
        _ => unreachable!(),
    }
}

pub fn ulp_distance<T: Float>(a: T, b: T) -> i64 {
    if f64_of(a).is_nan() || f64_of(b).is_nan() {
        return i64::MAX;
    }
    (ordered_key(a) - ordered_key(b)).abs()
}

/// The T nearest to `x` (correct rounding, ties either way).
pub fn nearest<T: Float>(x: f64) -> T {
    let c: T = T::from_f32(x as f32);
    if !f64_of(c).is_finite() {
        return c;
    }
    let k = ordered_key(c);
    let mut best = c;
    for cand in [from_key::<T>(k - 1), from_key::<T>(k + 1)] {
        let cv = f64_of(cand);
        if cv.is_finite() && (cv - x).abs() < (f64_of(best) - x).abs() {
            best = cand;
        }
    }
    best
}

/// Max |x| over a matrix (1 when empty).
pub fn max_abs(m: &M) -> f64 {
    m.iter().flatten().filter(|x| x.is_finite()).fold(0.0f64, |a, x| a.max(x.abs()))
}

/// The f32 gradient tolerance for a reference gradient `g`: 1e-6 absolute
/// at unit scale, scaled by the caller's multipliers.
pub fn grad_abs_tol(scale: f64) -> f64 {
    1e-6 * scale.max(1.0)
}

/// Checks a B x V output buffer against the reference, plus its padding.
pub fn check_matrix<T: Float>(c: &mut Check, name: &str, got: &Buf<T>, want: &M, rel: f64, abs: f64, lenient: bool) {
    for (i, row) in want.iter().enumerate() {
        for (j, &w) in row.iter().enumerate() {
            c.elem(&format!("{name}[{i}][{j}]"), got.get(i, j), w, rel, abs, lenient);
        }
    }
    if !got.padding_intact() {
        c.fail(format!("{name}: padding between rows was written"));
    }
}

/// Random logits in [-r, r], with `V` columns.
pub fn random_matrix(rng: &mut XRng, b: usize, v: usize, r: f64) -> M {
    (0..b).map(|_| (0..v).map(|_| rng.uniform(-r, r)).collect()).collect()
}

/// Reference input values after rounding to T (the exact values C sees).
pub fn rounded<T: Float>(m: &M) -> M {
    m.iter().map(|r| r.iter().map(|&x| f64_of::<T>(elem(x))).collect()).collect()
}

/// The V sizes the grid tests sweep: around vector widths (4, 8, 16 f32
/// lanes, 32 bf16 lanes) and a few large ones.
pub const V_SIZES: &[usize] = &[1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257, 1000, 4099];

/// Runs a property test: `XENT_PROPTEST_CASES` (default 48) cases drawn from
/// `strategy`, each passed to `test`, shrinking a failure to a minimal input.
/// The seed is fixed so CI runs are reproducible (`XENT_PROPTEST_SEED=<u64>` or
/// `random` overrides; a failure prints the seed). Failures are not persisted
/// into the source tree.
///
/// The runner is built here, not by the `proptest!` macro: proptest 1.2, the
/// newest release that builds with Rust 1.63 (the MSRV), has no seed in its
/// `Config`, and the macro seeds from entropy.
pub fn prop_check<S: proptest::strategy::Strategy>(
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), proptest::test_runner::TestCaseError>,
) {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let cases = match std::env::var("XENT_PROPTEST_CASES") {
        Ok(s) if !s.is_empty() => s.parse().expect("XENT_PROPTEST_CASES: a positive integer"),
        _ => 48,
    };
    let seed: u64 = match std::env::var("XENT_PROPTEST_SEED") {
        Ok(s) if s == "random" => {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new().build_hasher().finish()
        }
        Ok(s) if !s.is_empty() => s.parse().expect("XENT_PROPTEST_SEED: a u64 or `random`"),
        _ => 0x5eed_1234,
    };
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut key = [0u8; 32]; // ChaCha's key: the seed, then zeros
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}\n(XENT_PROPTEST_SEED={seed} reproduces this run; {cases} cases)");
    }
}
