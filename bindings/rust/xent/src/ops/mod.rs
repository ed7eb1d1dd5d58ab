//! One module per operation of the C ABI.

pub mod bce;
pub mod cross_entropy;
pub mod divergence;
pub mod linear_cross_entropy;
pub mod softmax;
pub mod token_logprobs;
pub mod token_stats;

/// A `sys::$ty` filled with the library's defaults by `sys::$init`, sized as
/// these bindings declare it.
macro_rules! init_args {
    ($ty:ident, $init:ident) => {{
        // Safety: the struct is plain data (integers, floats, raw pointers and
        // Option<extern fn>), for which all-zero bytes are a valid value.
        let mut a: xent_sys::$ty = unsafe { core::mem::zeroed() };
        // Safety: `a` is a valid, writable struct of exactly the size passed.
        crate::error::check(unsafe { xent_sys::$init(&mut a, core::mem::size_of::<xent_sys::$ty>()) })?;
        a
    }};
}
pub(crate) use init_args;

/// Pointer to an optional output vector (NULL when absent).
pub(crate) fn out_ptr(v: &mut Option<&mut [f32]>) -> *mut f32 {
    v.as_deref_mut().map_or(core::ptr::null_mut(), <[f32]>::as_mut_ptr)
}

/// Pointer to an optional input vector (NULL when absent).
pub(crate) fn in_ptr(v: Option<&[f32]>) -> *const f32 {
    v.map_or(core::ptr::null(), <[f32]>::as_ptr)
}
