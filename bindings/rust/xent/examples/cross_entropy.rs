//! Computes a softmax cross-entropy loss and its gradient with xent, checks
//! one gradient entry by finite differences, then runs a few gradient-descent
//! steps in place on the logits (the memory-saving form for big vocabularies).
//!
//! Run: `cargo run --example cross_entropy` (with XENT_LIB_DIR or
//! PKG_CONFIG_PATH pointing at libxent, see the README).

use xent::half::bf16;
use xent::{CrossEntropy, Matrix, MatrixMut, Reduction};

fn main() -> xent::Result<()> {
    let (batch, vocab) = (8usize, 1000usize);
    // Deterministic pseudo-random logits and targets.
    let mut state = 42u64;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as f32 / (1u64 << 31) as f32
    };
    let mut logits: Vec<f32> = (0..batch * vocab).map(|_| 4.0 * next() - 2.0).collect();
    let targets: Vec<i64> = (0..batch).map(|i| ((i * 131) % vocab) as i64).collect();

    println!(
        "xent {} (ABI {}), SIMD target {}, threading {} with up to {} threads",
        xent::version(),
        xent::abi_version(),
        xent::active_target(),
        xent::threading_backend(),
        xent::max_threads()
    );

    // Loss, per-row losses and the gradient, with label smoothing.
    let mut grad = vec![0.0f32; batch * vocab];
    let mut row_loss = vec![0.0f32; batch];
    let loss = CrossEntropy::new()
        .reduction(Reduction::Mean)
        .label_smoothing(0.1)
        .row_loss(&mut row_loss)
        .grad(MatrixMut::new(&mut grad, batch, vocab)?)
        .run(Matrix::new(&logits, batch, vocab)?, &targets)?;
    println!("mean loss {loss:.6}, first rows {:?}", &row_loss[..3]);

    // Finite-difference check of d(loss)/d(logits[0][t0]).
    let k = targets[0] as usize;
    let h = 1e-2f32;
    let eval = |x: &[f32]| -> xent::Result<f32> {
        CrossEntropy::new().label_smoothing(0.1).run(Matrix::new(x, batch, vocab)?, &targets)
    };
    let mut plus = logits.clone();
    plus[k] += h;
    let mut minus = logits.clone();
    minus[k] -= h;
    let fd = (eval(&plus)? - eval(&minus)?) / (2.0 * h);
    println!("d loss / d logits[0][{k}]: xent {:.6}, finite difference {:.6}", grad[k], fd);
    assert!((grad[k] - fd).abs() < 1e-3, "gradient check failed");

    // Gradient descent in place: the gradient overwrites a copy of the logits.
    let lr = 50.0;
    for step in 0..5 {
        let mut g = logits.clone();
        let loss = CrossEntropy::new().run_in_place(MatrixMut::new(&mut g, batch, vocab)?, &targets)?;
        for (x, d) in logits.iter_mut().zip(&g) {
            *x -= lr * d;
        }
        println!("step {step}: loss {loss:.6}");
    }

    // The same loss from bf16 logits (what a mixed-precision model emits).
    let logits_bf16: Vec<bf16> = logits.iter().map(|&x| bf16::from_f32(x)).collect();
    let loss_bf16 = CrossEntropy::new().run(Matrix::new(&logits_bf16, batch, vocab)?, &targets)?;
    println!("bf16 logits: loss {loss_bf16:.6}");

    // Errors are values: a target outside the vocabulary.
    let bad: Vec<i64> = vec![vocab as i64; batch];
    match CrossEntropy::new().run(Matrix::new(&logits, batch, vocab)?, &bad) {
        Ok(_) => unreachable!(),
        Err(e) => println!("as expected: {e}"),
    }
    Ok(())
}
