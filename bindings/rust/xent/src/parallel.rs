//! Host thread pools: running xent's work on the caller's threads.
//!
//! By default every operation uses libxent's own threading backend (OpenMP,
//! TBB or none) with `num_threads` threads (0 = all cores). A host that owns a
//! thread pool passes an implementation of [`ParallelFor`] instead (the C
//! `xent_parallel_for_fn`); results are bit-identical either way.

use core::marker::PhantomData;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use xent_sys as sys;

use crate::error::{fail, Result, Status};

/// The work of one xent call, handed to [`ParallelFor::parallel_for`]: tasks
/// numbered `0..len()`, run with [`Tasks::run`].
pub struct Tasks<'t> {
    task: unsafe extern "C" fn(*mut c_void, usize, usize),
    ctx: *mut c_void,
    len: usize,
    _call: PhantomData<&'t ()>,
}

// Safety: xent's contract (xent.h, xent_parallel_for_fn) is that `task` may be
// called concurrently from any threads over disjoint ranges; `ctx` is only
// ever passed back to `task`. Sharing `&Tasks` across threads is therefore
// sound, given the disjointness that implementors of the unsafe trait
// ParallelFor promise.
unsafe impl Sync for Tasks<'_> {}

impl Tasks<'_> {
    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Runs tasks `begin..end`. Ranges outside `0..len()` or empty are
    /// ignored (xent then reports the missing tasks as [`Status::Callback`]).
    pub fn run(&self, begin: usize, end: usize) {
        if begin >= end || end > self.len {
            return;
        }
        // Safety: `task` and `ctx` come from libxent for this call and the
        // range is within [0, len). Disjointness of concurrent ranges is the
        // obligation of the (unsafe) ParallelFor implementation running us.
        unsafe { (self.task)(self.ctx, begin, end) }
    }
}

/// A host thread pool that runs xent's tasks (the C `xent_parallel_for_fn`).
///
/// # Safety
///
/// `parallel_for` must call [`Tasks::run`] over disjoint ranges that together
/// cover `0..tasks.len()` exactly once, possibly concurrently and in any
/// order and split, and must return (or unwind) only after every call to
/// `run` has returned: xent's task context lives on the stack of the C call.
/// Running a range twice concurrently is a data race inside libxent. (xent
/// checks coverage afterwards and reports [`Status::Callback`] when a task was
/// skipped or repeated, but it cannot undo a race.) A panic in
/// `parallel_for` is caught and reported as [`Status::Callback`].
pub unsafe trait ParallelFor: Sync {
    /// Runs every task of `tasks` once. `num_threads_hint` is the call's
    /// `num_threads` (0 = all). Return `false` to report failure.
    fn parallel_for(&self, tasks: &Tasks<'_>, num_threads_hint: usize) -> bool;
}

/// Runs all tasks on the calling thread (for tests and single-threaded hosts;
/// same results as `num_threads(1)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sequential;

// Safety: one call covering 0..len on the calling thread, returning after it.
unsafe impl ParallelFor for Sequential {
    fn parallel_for(&self, tasks: &Tasks<'_>, _num_threads_hint: usize) -> bool {
        tasks.run(0, tasks.len());
        true
    }
}

/// Splits the tasks over `threads` scoped OS threads per call (the caller's
/// thread included). Dependency-free; spawning threads per call costs tens of
/// microseconds, so prefer a real pool (e.g. the `rayon` feature) for small
/// problems.
#[derive(Debug, Clone, Copy)]
pub struct ScopedThreads {
    threads: usize,
}

impl ScopedThreads {
    /// At most `threads` threads per call (0 or 1: the caller's thread only).
    pub fn new(threads: usize) -> Self {
        ScopedThreads { threads }
    }
}

// Safety: contiguous disjoint chunks covering 0..len; std::thread::scope joins
// every spawned thread before returning (also when one panics).
unsafe impl ParallelFor for ScopedThreads {
    fn parallel_for(&self, tasks: &Tasks<'_>, num_threads_hint: usize) -> bool {
        let n = tasks.len();
        let mut k = self.threads.max(1).min(n.max(1));
        if num_threads_hint > 0 {
            k = k.min(num_threads_hint);
        }
        if k <= 1 {
            tasks.run(0, n);
            return true;
        }
        std::thread::scope(|s| {
            let chunk = n / k + usize::from(n % k != 0); // n.div_ceil(k), which needs Rust 1.73
            let mut begin = chunk; // chunk 0 runs on the caller's thread
            while begin < n {
                let end = (begin + chunk).min(n);
                let spawned = std::thread::Builder::new().spawn_scoped(s, move || tasks.run(begin, end));
                if spawned.is_err() {
                    tasks.run(begin, end);
                }
                begin = end;
            }
            tasks.run(0, chunk.min(n));
        });
        true
    }
}

/// Runs xent's tasks on a rayon thread pool (feature `rayon`).
#[cfg(feature = "rayon")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Rayon<'p> {
    pool: Option<&'p rayon::ThreadPool>,
}

#[cfg(feature = "rayon")]
impl<'p> Rayon<'p> {
    /// Rayon's global pool (or the pool of the calling rayon worker).
    pub fn global() -> Self {
        Rayon { pool: None }
    }

    /// A specific pool.
    pub fn new(pool: &'p rayon::ThreadPool) -> Self {
        Rayon { pool: Some(pool) }
    }
}

// Safety: each task index runs exactly once (a parallel iterator over 0..len,
// one index per call) and for_each returns only after every item finished.
#[cfg(feature = "rayon")]
unsafe impl ParallelFor for Rayon<'_> {
    fn parallel_for(&self, tasks: &Tasks<'_>, _num_threads_hint: usize) -> bool {
        use rayon::prelude::*;
        let work = || (0..tasks.len()).into_par_iter().for_each(|i| tasks.run(i, i + 1));
        match self.pool {
            Some(pool) => pool.install(work),
            None => work(),
        }
        true
    }
}

/// The C callback for a `P`: `user` is a `&P`.
unsafe extern "C" fn trampoline<P: ParallelFor>(
    user: *mut c_void,
    num_tasks: usize,
    task: sys::xent_task_fn,
    task_ctx: *mut c_void,
    num_threads_hint: i32,
) -> c_int {
    let task = match task {
        Some(task) => task,
        None => return 1,
    };
    if user.is_null() {
        return 1;
    }
    // Safety: `user` is the `&'a P` stored by Threading::set_pool, and the
    // builder holding it borrows the pool for the whole xent call that is
    // calling us.
    let pool: &P = unsafe { &*(user as *const P) };
    let tasks = Tasks { task, ctx: task_ctx, len: num_tasks, _call: PhantomData };
    let hint = usize::try_from(num_threads_hint).unwrap_or(0);
    // Never unwind into C.
    match catch_unwind(AssertUnwindSafe(|| pool.parallel_for(&tasks, hint))) {
        Ok(true) => 0,
        _ => 1,
    }
}

/// Per-call threading settings of an operation builder.
#[derive(Clone, Copy)]
pub(crate) struct Threading<'a> {
    num_threads: Option<usize>,
    parallel_for: sys::xent_parallel_for_fn,
    user: *mut c_void,
    _pool: PhantomData<&'a ()>,
}

impl Default for Threading<'_> {
    fn default() -> Self {
        Threading { num_threads: None, parallel_for: None, user: core::ptr::null_mut(), _pool: PhantomData }
    }
}

impl<'a> Threading<'a> {
    pub(crate) fn set_num_threads(&mut self, n: usize) {
        self.num_threads = Some(n);
    }

    pub(crate) fn set_pool<P: ParallelFor>(&mut self, pool: &'a P) {
        self.parallel_for = Some(trampoline::<P>);
        self.user = pool as *const P as *mut c_void;
    }

    /// Writes the settings into an args struct's three threading fields
    /// (num_threads only when set, keeping the library default otherwise).
    pub(crate) fn apply(
        &self,
        num_threads: &mut i32,
        parallel_for: &mut sys::xent_parallel_for_fn,
        user: &mut *mut c_void,
    ) -> Result<()> {
        if let Some(n) = self.num_threads {
            match i32::try_from(n) {
                Ok(v) => *num_threads = v,
                Err(_) => return fail(Status::InvalidValue, format!("num_threads = {n} does not fit in int32")),
            }
        }
        if self.parallel_for.is_some() {
            *parallel_for = self.parallel_for;
            *user = self.user;
        }
        Ok(())
    }
}

/// Adds `num_threads` and `parallel_for` setters to a builder with a
/// `threading: Threading<'a>` field.
macro_rules! threading_setters {
    () => {
        /// Threads for this call: 0 = all cores (the default), 1 = the
        /// caller's thread only. With a [`ParallelFor`](crate::ParallelFor) it
        /// is passed on as the hint.
        pub fn num_threads(mut self, n: usize) -> Self {
            self.threading.set_num_threads(n);
            self
        }

        /// Runs the work on a host thread pool instead of libxent's backend.
        pub fn parallel_for<P: crate::ParallelFor>(mut self, pool: &'a P) -> Self {
            self.threading.set_pool(pool);
            self
        }
    };
}
pub(crate) use threading_setters;
