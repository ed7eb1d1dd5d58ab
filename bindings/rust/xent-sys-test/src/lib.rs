//! Test-only crate: compiles a C file generated from `xent.h` (see build.rs)
//! that reports the header's struct layouts and constants as the C compiler
//! sees them, and generates the matching tables from `xent_sys`. The tests in
//! `tests/` compare the two. Nothing here is meant to be used by other crates.
#![deny(missing_docs)]

use std::ffi::CStr;
use std::os::raw::c_char;

/// One entry of the C side's table.
#[repr(C)]
struct CEntry {
    name: *const c_char,
    value: i64,
    str: *const c_char,
}

extern "C" {
    static xent_layout_entries: [CEntry; 0];
    static xent_layout_count: usize;
}

/// A value measured by the C compiler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CValue {
    /// `sizeof`, `_Alignof`, `offsetof`, an enum constant or an integer macro.
    Int(i64),
    /// A string macro.
    Str(String),
}

/// `(name, value)` pairs measured by the C compiler: `sizeof(T)`,
/// `alignof(T)`, `offsetof(T, f)`, `sizeof(T.f)`, every enum constant, every
/// enum type's size and every value macro.
pub fn c_layout() -> Vec<(String, CValue)> {
    // Safety: the generated C file defines the array with exactly
    // `xent_layout_count` entries, each with a static NUL-terminated name and
    // a NULL or static NUL-terminated `str`.
    unsafe {
        let n = xent_layout_count;
        let base = xent_layout_entries.as_ptr();
        (0..n)
            .map(|i| {
                let e = &*base.add(i);
                let name = CStr::from_ptr(e.name).to_string_lossy().into_owned();
                let v = if e.str.is_null() {
                    CValue::Int(e.value)
                } else {
                    CValue::Str(CStr::from_ptr(e.str).to_string_lossy().into_owned())
                };
                (name, v)
            })
            .collect()
    }
}

/// `core::any::type_name` of a value's type (`type_name_of_val` needs Rust
/// 1.76; the MSRV is 1.63).
pub fn type_name_of<T>(_: &T) -> &'static str {
    core::any::type_name::<T>()
}

/// `x`, through a volatile read the optimizer cannot see through
/// (`core::hint::black_box` needs Rust 1.66).
pub fn opaque(x: usize) -> usize {
    // Safety: reads a local.
    unsafe { core::ptr::read_volatile(&x) }
}

/// The header's declarations, parsed by build.rs.
pub mod header {
    include!(concat!(env!("OUT_DIR"), "/header_decls.rs"));
}

/// The Rust type name (`core::any::type_name`) that C type `c` must have in
/// `xent_sys`: `size_t` is `usize`, `const T*` is `*const T`, enum typedefs
/// are `i32` (`c_int`), function pointer typedefs are `Option<unsafe extern
/// "C" fn(..)>` with the mapped parameter types.
pub fn rust_type_for(c: &str) -> String {
    let c = c.trim();
    if let Some(inner) = c.strip_suffix('*') {
        let inner = inner.trim();
        if inner.ends_with('*') {
            return format!("*mut {}", rust_type_for(inner));
        }
        return match inner.strip_prefix("const ") {
            Some(pointee) => format!("*const {}", pointee_type(pointee)),
            None => format!("*mut {}", pointee_type(inner)),
        };
    }
    match c {
        "size_t" => "usize".into(),
        "int32_t" | "int" => "i32".into(),
        "int64_t" => "i64".into(),
        "uint32_t" => "u32".into(),
        "float" => "f32".into(),
        "double" => "f64".into(),
        "void" => "()".into(),
        "char" => core::any::type_name::<c_char>().into(),
        other => {
            if header::ENUMS.iter().any(|(e, _)| *e == other) {
                return core::any::type_name::<std::os::raw::c_int>().into();
            }
            if let Some((_, ret, params)) = header::FN_TYPEDEFS.iter().find(|(n, _, _)| *n == other) {
                return format!("core::option::Option<{}>", fn_type(ret, params));
            }
            format!("xent_sys::{other}")
        }
    }
}

fn pointee_type(c: &str) -> String {
    match c.trim() {
        "void" => "core::ffi::c_void".into(),
        other => rust_type_for(other),
    }
}

/// `unsafe extern "C" fn(P..) -> R` as `type_name` prints it.
pub fn fn_type(ret: &str, params: &[&str]) -> String {
    let ps: Vec<String> = params.iter().map(|p| rust_type_for(p)).collect();
    let r = if ret.trim() == "void" { String::new() } else { format!(" -> {}", rust_type_for(ret)) };
    format!("unsafe extern \"C\" fn({}){}", ps.join(", "), r)
}
