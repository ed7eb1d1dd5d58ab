//! Library-level API: versions, SIMD targets, threading info, error
//! mapping, and the checked views (`Layout`, `Matrix`, `MatrixMut`,
//! `Labels`) that keep every pointer handed to C in bounds.

mod common;

use proptest::prelude::*;
use xent::{sys, CrossEntropy, Labels, Layout, Matrix, MatrixMut, Status};

#[test]
fn loaded_library_matches_the_bindings() {
    assert_eq!(xent::abi_version(), sys::XENT_ABI_VERSION, "libxent's ABI differs from xent-sys");
    let v = xent::version();
    let parts: Vec<u32> = v.split('.').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts.len(), 3, "{v}");
    assert_eq!(xent::version_number(), parts[0] * 10000 + parts[1] * 100 + parts[2]);
    // The loaded library may be newer than the header the bindings mirror,
    // never older.
    assert!(xent::version_number() >= sys::XENT_VERSION_NUMBER, "libxent {v} is older than xent-sys");
}

#[test]
fn threading_info() {
    assert!(["openmp", "tbb", "none"].contains(&xent::threading_backend().as_str()), "{}", xent::threading_backend());
    assert!(xent::max_threads() >= 1);
}

#[test]
fn targets_can_be_listed_forced_and_reset() {
    let _g = common::target_lock();
    let targets = xent::supported_targets();
    assert!(!targets.is_empty());
    let best = xent::active_target();
    assert_eq!(best.to_lowercase(), targets[0].to_lowercase(), "automatic selection is the best target");
    for t in &targets {
        xent::force_target(t).unwrap();
        assert_eq!(xent::active_target().to_lowercase(), t.to_lowercase());
        xent::force_target(&t.to_uppercase()).unwrap(); // case-insensitive
    }
    // Unknown names fail and change nothing.
    let before = xent::active_target();
    for bad in ["no-such-target", "avx9000", "sc\0alar"] {
        let e = xent::force_target(bad).unwrap_err();
        assert_eq!(e.status(), Status::UnsupportedTarget, "{e}");
        assert!(!e.message().is_empty());
        assert_eq!(xent::active_target(), before);
    }
    xent::force_target("auto").unwrap();
    assert_eq!(xent::active_target(), best);
    xent::force_target("scalar").ok();
    xent::reset_target().unwrap();
    assert_eq!(xent::active_target(), best);
    if targets.iter().any(|t| t.eq_ignore_ascii_case("avx3")) {
        xent::force_target("avx512").unwrap();
        assert_eq!(xent::active_target().to_lowercase(), "avx3");
        xent::reset_target().unwrap();
    }
}

#[test]
fn status_codes_round_trip_and_describe_themselves() {
    for code in 1..=12 {
        let s = Status::from_code(code).unwrap();
        assert_eq!(s.code(), code);
        assert!(!s.description().is_empty() && s.description() != "unknown status", "{code}");
    }
    assert_eq!(Status::from_code(0), None);
    assert_eq!(Status::from_code(99), Some(Status::Unknown(99)));
    assert_eq!(Status::Unknown(99).description(), "unknown status");
    assert_eq!(Status::InvalidShape.description(), "invalid shape");
    let e = xent::Error::new(Status::Aliasing, "detail");
    assert_eq!(e.to_string(), "xent: overlapping buffers: detail");
    assert_eq!(e.code(), sys::XENT_ERROR_ALIASING);
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
    assert!(boxed.to_string().contains("detail"));
}

#[test]
fn errors_carry_the_c_message_of_their_own_call() {
    let x = [0.0f32; 8];
    let m = Matrix::new(&x, 2, 4).unwrap();
    let e1 = CrossEntropy::new().run(m, &[0i64, 7]).unwrap_err();
    assert!(e1.message().contains("target[1] = 7 is outside [0, 4)"), "{e1}");
    // A later success does not alter the error already returned.
    CrossEntropy::new().run(m, &[0i64, 1]).unwrap();
    assert!(e1.message().contains("target[1] = 7"));
    // Errors from other threads stay on their threads.
    std::thread::scope(|s| {
        s.spawn(|| {
            let e = CrossEntropy::new().label_smoothing(2.0).run(m, &[0i64, 1]).unwrap_err();
            assert!(e.message().contains("label_smoothing"), "{e}");
        });
    });
}

#[test]
fn views_reject_what_does_not_fit() {
    let x = [0.0f32; 10];
    assert!(Matrix::new(&x, 2, 5).is_ok());
    assert!(Matrix::new(&x, 0, 5).is_ok());
    assert!(Matrix::new(&x[..0], 0, 5).is_ok());
    assert_eq!(Matrix::new(&x, 3, 4).unwrap_err().status(), Status::InvalidShape);
    assert_eq!(Matrix::new(&x, 1, 0).unwrap_err().status(), Status::InvalidShape);
    // Strided: the last row needs only `cols` elements.
    assert!(Matrix::with_stride(&x, 2, 3, 7).is_ok());
    assert_eq!(Matrix::with_stride(&x, 2, 4, 7).unwrap_err().status(), Status::InvalidShape);
    assert_eq!(Matrix::with_stride(&x, 2, 4, 3).unwrap_err().status(), Status::InvalidShape);
    let m = Matrix::with_stride(&x, 2, 3, 7).unwrap();
    assert_eq!((m.rows(), m.cols(), m.stride(), m.row(1).len()), (2, 3, 7, 3));
    // Overflowing sizes are errors, not wraparound.
    assert_eq!(Layout::strided(usize::MAX, 2, usize::MAX / 2).unwrap_err().status(), Status::InvalidShape);
    assert_eq!(Layout::packed(3, 4).unwrap().min_len(), 12);
    assert_eq!(Layout::strided(3, 4, 10).unwrap().min_len(), 24);
    let mut y = [0.0f32; 10];
    assert!(MatrixMut::with_stride(&mut y, 2, 3, 7).is_ok());
    assert_eq!(MatrixMut::new(&mut y, 4, 3).unwrap_err().status(), Status::InvalidShape);
    let mut mm = MatrixMut::new(&mut y, 2, 5).unwrap();
    mm.row_mut(1)[4] = 3.0;
    assert_eq!(mm.as_matrix().row(1)[4], 3.0);
    // Labels.
    let l = [1i64, 2, 3, 4, 5];
    assert_eq!(Labels::new(&l).len(), 5);
    let s = Labels::with_stride(&l, 3, 2).unwrap();
    assert_eq!((s.get(0), s.get(1), s.get(2)), (1, 3, 5));
    assert_eq!(Labels::with_stride(&l, 3, 3).unwrap_err().status(), Status::InvalidShape);
    assert_eq!(Labels::with_stride(&l, 2, 0).unwrap_err().status(), Status::InvalidShape);
    assert!(Labels::with_stride(&l[..0], 0, 4).is_ok());
}

#[test]
fn reborrowed_outputs_can_be_reused() {
    let x = [0.0f32, 1.0, 2.0, 3.0];
    let mut g = vec![0.0f32; 4];
    let mut gm = MatrixMut::new(&mut g, 1, 4).unwrap();
    for _ in 0..3 {
        CrossEntropy::new().grad(gm.reborrow()).run(Matrix::new(&x, 1, 4).unwrap(), &[3i64]).unwrap();
    }
    assert!(gm.row(0)[3] < 0.0);
}

#[cfg(feature = "rayon")]
#[test]
fn rayon_pool_gives_the_same_results() {
    let _g = common::target_lock();
    let x: Vec<f32> = (0..64 * 4096).map(|i| ((i * 7919) % 1000) as f32 / 100.0).collect();
    let t: Vec<i64> = (0..64).map(|i| (i * 31) % 4096).collect();
    let m = Matrix::new(&x, 64, 4096).unwrap();
    let run = |ce: CrossEntropy<'_>| ce.run(m, &t).unwrap().to_bits();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    let a = run(CrossEntropy::new().num_threads(1));
    assert_eq!(a, run(CrossEntropy::new().parallel_for(&xent::Rayon::global())));
    assert_eq!(a, run(CrossEntropy::new().parallel_for(&xent::Rayon::new(&pool))));
}

/// A view exists exactly when the slice holds every element, and then
/// every row is inside the slice.
#[test]
fn prop_views_are_in_bounds() {
    common::prop_check((0usize..200, 0usize..20, 0usize..20, 0usize..30), |(len, rows, cols, stride)| {
        let data = vec![1.0f32; len];
        let fits = cols >= 1 && stride >= cols && (rows == 0 || (rows - 1) * stride + cols <= len);
        match Matrix::with_stride(&data, rows, cols, stride) {
            Ok(m) => {
                prop_assert!(fits);
                for i in 0..rows {
                    prop_assert_eq!(m.row(i).len(), cols);
                }
            }
            Err(e) => {
                prop_assert!(!fits);
                prop_assert_eq!(e.status(), Status::InvalidShape);
            }
        }
        Ok(())
    });
}
