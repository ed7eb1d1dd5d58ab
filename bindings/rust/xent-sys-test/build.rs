//! Parses `include/xent/xent.h` (and `version.h`) and generates
//! * `layout.c`: the C compiler's view of every struct (size, alignment,
//!   offset and size of every field), every enum constant, every enum type's
//!   size and every value macro, compiled with `cc`;
//! * `rust_layout.rs`: the same table from `xent_sys` (with an exhaustive
//!   destructuring of each struct, so a field only Rust has fails to compile,
//!   as does a field or constant only the header has);
//! * `rust_signatures.rs`: the type of every `xent_sys` function as a fn
//!   pointer, for comparison with the header's prototypes;
//! * `header_decls.rs`: the parsed declarations, for the tests.
//!
//! The header used: `XENT_INCLUDE_DIR`, else the one `xent-sys` found
//! (`DEP_XENT_INCLUDE`), else the repository's `include/` next to
//! `bindings/rust`.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

struct Struct {
    name: String,
    fields: Vec<(String, String)>, // (C type, name)
}

struct FnDecl {
    name: String,
    ret: String,
    params: Vec<String>, // C types
}

#[derive(Default)]
struct Header {
    structs: Vec<Struct>,
    enums: Vec<(String, Vec<String>)>, // (typedef name, constants)
    fn_typedefs: Vec<FnDecl>,
    functions: Vec<FnDecl>,
    int_macros: Vec<String>,
    str_macros: Vec<String>,
}

fn main() {
    println!("cargo:rerun-if-env-changed=XENT_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=DEP_XENT_INCLUDE");
    println!("cargo:rerun-if-env-changed=DEP_XENT_RPATH");
    // This crate's test binaries load libxent (see xent/build.rs).
    if let Ok(rpath) = env::var("DEP_XENT_RPATH") {
        if !rpath.is_empty() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{rpath}");
        }
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let include = env::var_os("XENT_INCLUDE_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env::var_os("DEP_XENT_INCLUDE").filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| manifest.join("../../../include"));
    let include = include.canonicalize().unwrap_or(include);
    let xent_h = include.join("xent/xent.h");
    let version_h = include.join("xent/version.h");
    for p in [&xent_h, &version_h] {
        if !p.exists() {
            panic!(
                "xent-sys-test: {} not found (set XENT_INCLUDE_DIR to the directory holding xent/xent.h)",
                p.display()
            );
        }
        println!("cargo:rerun-if-changed={}", p.display());
    }

    let mut h = Header::default();
    parse_decls(&strip(&fs::read_to_string(&xent_h).unwrap()), &mut h);
    parse_macros(&fs::read_to_string(&version_h).unwrap(), &mut h);
    parse_macros(&fs::read_to_string(&xent_h).unwrap(), &mut h);
    assert!(
        h.structs.len() >= 6 && h.functions.len() >= 20,
        "xent-sys-test: parsing {} found too little",
        xent_h.display()
    );

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let c_file = out.join("layout.c");
    fs::write(&c_file, gen_c(&h)).unwrap();
    fs::write(out.join("rust_layout.rs"), gen_rust_layout(&h)).unwrap();
    fs::write(out.join("rust_signatures.rs"), gen_rust_signatures(&h)).unwrap();
    fs::write(out.join("header_decls.rs"), gen_decls(&h, &xent_h)).unwrap();

    cc::Build::new().file(&c_file).include(&include).warnings(true).compile("xent_layout_check");
}

/// Removes comments and joins continued lines.
fn strip(src: &str) -> String {
    let src = src.replace("\\\n", " ");
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        if in_str {
            out.push(b[i] as char);
            if b[i] == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1] as char);
                i += 2;
                continue;
            }
            if b[i] == b'"' {
                in_str = false;
            }
            i += 1;
        } else if b[i] == b'"' {
            in_str = true;
            out.push('"');
            i += 1;
        } else if src[i..].starts_with("/*") {
            let end = src[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            out.push(' ');
            i = end;
        } else if src[i..].starts_with("//") {
            let end = src[i..].find('\n').map_or(b.len(), |e| i + e);
            i = end;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// "const char *name" -> ("const char*", "name"); pointer stars attach to the type.
fn split_decl(decl: &str) -> (String, String) {
    let d = squash(decl).replace(" *", "*").replace("* ", "*");
    let d = d.replace('*', "* ").trim().to_string();
    let d = squash(&d);
    let pos = d.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |p| p + 1);
    let name = d[pos..].to_string();
    let ty = squash(d[..pos].trim()).replace("* ", "*").replace(" *", "*");
    (ty.trim().to_string(), name)
}

fn normalize_type(t: &str) -> String {
    let t = squash(t).replace(" *", "*").replace("* ", "*");
    t.trim().to_string()
}

fn parse_params(p: &str) -> Vec<String> {
    let p = p.trim();
    if p.is_empty() || p == "void" {
        return Vec::new();
    }
    p.split(',').map(|x| split_decl(x).0).collect()
}

fn parse_decls(src: &str, h: &mut Header) {
    // Preprocessor lines are not declarations.
    let text: String = src.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    let mut rest = text.as_str();
    loop {
        let t = rest.find("typedef ");
        let f = rest.find("XENT_API ");
        let (pos, is_typedef) = match (t, f) {
            (None, None) => break,
            (Some(a), None) => (a, true),
            (None, Some(b)) => (b, false),
            (Some(a), Some(b)) => {
                if a < b {
                    (a, true)
                } else {
                    (b, false)
                }
            }
        };
        rest = &rest[pos..];
        if is_typedef {
            let body = &rest["typedef ".len()..];
            if body.starts_with("struct ") || body.starts_with("enum ") {
                let open = body.find('{').unwrap();
                let close = body.find('}').unwrap();
                let semi = close + body[close..].find(';').unwrap();
                let name = squash(&body[close + 1..semi]);
                let inner = &body[open + 1..close];
                if body.starts_with("struct ") {
                    let fields = inner.split(';').map(str::trim).filter(|s| !s.is_empty()).map(split_decl).collect();
                    h.structs.push(Struct { name, fields });
                } else {
                    let consts = inner
                        .split(',')
                        .map(|e| squash(e.split('=').next().unwrap()))
                        .filter(|s| !s.is_empty())
                        .collect();
                    h.enums.push((name, consts));
                }
                rest = &body[semi + 1..];
            } else {
                // typedef RET (*NAME)(PARAMS);
                let semi = body.find(';').unwrap();
                let decl = &body[..semi];
                let star = decl.find("(*").expect("function pointer typedef");
                let ret = normalize_type(&decl[..star]);
                let name_end = decl[star..].find(')').unwrap() + star;
                let name = squash(&decl[star + 2..name_end]);
                let params_open = decl[name_end..].find('(').unwrap() + name_end;
                let params_close = decl.rfind(')').unwrap();
                let params = parse_params(&decl[params_open + 1..params_close]);
                h.fn_typedefs.push(FnDecl { name, ret, params });
                rest = &body[semi + 1..];
            }
        } else {
            let body = &rest["XENT_API ".len()..];
            let semi = body.find(';').unwrap();
            let decl = &body[..semi];
            let open = decl.find('(').unwrap();
            let close = decl.rfind(')').unwrap();
            let (ret, name) = split_decl(&decl[..open]);
            let params = parse_params(&decl[open + 1..close]);
            h.functions.push(FnDecl { name, ret, params });
            rest = &body[semi + 1..];
        }
    }
}

/// Object-like `#define XENT_...` macros with a value (not include guards,
/// not `XENT_API`).
fn parse_macros(src: &str, h: &mut Header) {
    let src = strip(src);
    for line in src.lines() {
        let l = line.trim();
        let rest = match l.strip_prefix("#define ") {
            Some(rest) => rest,
            None => continue,
        };
        let rest = rest.trim_start();
        let name_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let name = &rest[..name_end];
        let after = &rest[name_end..];
        if after.starts_with('(') || after.trim().is_empty() || name == "XENT_API" || !name.starts_with("XENT_") {
            continue; // function-like, empty (guards) or the export attribute
        }
        let name = name.to_string();
        if after.contains('"') || after.contains("STRINGIFY") {
            if !h.str_macros.contains(&name) {
                h.str_macros.push(name);
            }
        } else if !h.int_macros.contains(&name) {
            h.int_macros.push(name);
        }
    }
}

fn gen_c(h: &Header) -> String {
    let mut c = String::new();
    c.push_str(
        "/* Generated by xent-sys-test/build.rs from xent.h: the C compiler's layout of the ABI. */\n\
         #include <stddef.h>\n#include <stdint.h>\n#include \"xent/xent.h\"\n\n\
         typedef struct { const char* name; int64_t value; const char* str; } xent_layout_entry;\n\n\
         const xent_layout_entry xent_layout_entries[] = {\n",
    );
    for s in &h.structs {
        let n = &s.name;
        writeln!(c, "  {{\"sizeof({n})\", (int64_t)sizeof({n}), 0}},").unwrap();
        writeln!(c, "  {{\"alignof({n})\", (int64_t)_Alignof({n}), 0}},").unwrap();
        for (_, f) in &s.fields {
            writeln!(c, "  {{\"offsetof({n}, {f})\", (int64_t)offsetof({n}, {f}), 0}},").unwrap();
            writeln!(c, "  {{\"sizeof({n}.{f})\", (int64_t)sizeof((({n}*)0)->{f}), 0}},").unwrap();
        }
    }
    for (e, consts) in &h.enums {
        writeln!(c, "  {{\"sizeof({e})\", (int64_t)sizeof({e}), 0}},").unwrap();
        for k in consts {
            writeln!(c, "  {{\"{k}\", (int64_t){k}, 0}},").unwrap();
        }
    }
    for m in &h.int_macros {
        writeln!(c, "  {{\"{m}\", (int64_t)({m}), 0}},").unwrap();
    }
    for m in &h.str_macros {
        writeln!(c, "  {{\"{m}\", 0, {m}}},").unwrap();
    }
    c.push_str("};\nconst size_t xent_layout_count = sizeof(xent_layout_entries) / sizeof(xent_layout_entries[0]);\n");
    c
}

fn gen_rust_layout(h: &Header) -> String {
    let mut r = String::new();
    r.push_str(
        "// Generated by xent-sys-test/build.rs from xent.h.\n\
         /// `(name, value)` for every struct/field/constant of the header, from `xent_sys`.\n\
         pub fn rust_layout() -> Vec<(String, i64)> {\n    let mut v: Vec<(String, i64)> = Vec::new();\n",
    );
    for s in &h.structs {
        let n = &s.name;
        writeln!(r, "    {{\n        type S = xent_sys::{n};").unwrap();
        r.push_str(
            "        // Safety: plain data (integers, floats, raw pointers, Option<fn>): all-zero is valid.\n        \
             let s: S = unsafe { core::mem::zeroed() };\n",
        );
        // Exhaustive destructuring: a field xent_sys has and the header lacks
        // does not compile.
        let pat: Vec<String> = s.fields.iter().map(|(_, f)| format!("{f}: _")).collect();
        writeln!(r, "        let S {{ {} }} = s;", pat.join(", ")).unwrap();
        writeln!(r, "        v.push((\"sizeof({n})\".into(), core::mem::size_of::<S>() as i64));").unwrap();
        writeln!(r, "        v.push((\"alignof({n})\".into(), core::mem::align_of::<S>() as i64));").unwrap();
        for (_, f) in &s.fields {
            writeln!(r, "        v.push((\"offsetof({n}, {f})\".into(), (core::ptr::addr_of!(s.{f}) as usize - core::ptr::addr_of!(s) as usize) as i64));")
                .unwrap();
            writeln!(r, "        v.push((\"sizeof({n}.{f})\".into(), core::mem::size_of_val(&s.{f}) as i64));")
                .unwrap();
        }
        r.push_str("    }\n");
    }
    for (e, consts) in &h.enums {
        writeln!(r, "    v.push((\"sizeof({e})\".into(), core::mem::size_of::<xent_sys::{e}>() as i64));").unwrap();
        for k in consts {
            writeln!(r, "    v.push((\"{k}\".into(), xent_sys::{k} as i64));").unwrap();
        }
    }
    for m in &h.int_macros {
        writeln!(r, "    v.push((\"{m}\".into(), xent_sys::{m} as i64));").unwrap();
    }
    r.push_str("    v\n}\n\n");

    r.push_str(
        "/// `(\"struct.field\", C type, Rust type name)` for every field.\n\
         pub fn rust_field_types() -> Vec<(String, &'static str, &'static str)> {\n    let mut v = Vec::new();\n",
    );
    for s in &h.structs {
        let n = &s.name;
        writeln!(r, "    {{\n        // Safety: plain data: all-zero is valid.\n        let s: xent_sys::{n} = unsafe {{ core::mem::zeroed() }};").unwrap();
        for (ty, f) in &s.fields {
            writeln!(r, "        v.push((\"{n}.{f}\".to_string(), \"{ty}\", xent_sys_test::type_name_of(&s.{f})));")
                .unwrap();
        }
        r.push_str("    }\n");
    }
    r.push_str("    v\n}\n\n");

    r.push_str("/// `(name, value)` of every string macro, from `xent_sys`.\npub fn rust_strings() -> Vec<(&'static str, &'static str)> {\n    vec![\n");
    for m in &h.str_macros {
        writeln!(r, "        (\"{m}\", xent_sys::{m}),").unwrap();
    }
    r.push_str("    ]\n}\n\n");

    r.push_str("/// `(typedef name, Rust type name)` of every function pointer typedef.\npub fn rust_fn_typedefs() -> Vec<(&'static str, &'static str)> {\n    vec![\n");
    for f in &h.fn_typedefs {
        writeln!(r, "        (\"{0}\", core::any::type_name::<xent_sys::{0}>()),", f.name).unwrap();
    }
    r.push_str("    ]\n}\n");
    r
}

fn gen_rust_signatures(h: &Header) -> String {
    let mut r = String::new();
    r.push_str(
        "// Generated by xent-sys-test/build.rs from xent.h.\n\
         fn sig_of<F>(_: F) -> &'static str { core::any::type_name::<F>() }\n\n\
         /// `(name, Rust fn pointer type name)` of every function the header declares.\n\
         pub fn rust_signatures() -> Vec<(&'static str, &'static str)> {\n    vec![\n",
    );
    for f in &h.functions {
        let holes = vec!["_"; f.params.len()].join(", ");
        let ret = if f.ret == "void" { String::new() } else { " -> _".to_string() };
        writeln!(r, "        (\"{0}\", sig_of(xent_sys::{0} as unsafe extern \"C\" fn({holes}){ret})),", f.name)
            .unwrap();
    }
    r.push_str("    ]\n}\n\n");
    r.push_str(
        "/// `(name, address)` of every function the header declares: taking the\n\
         /// addresses makes the linker resolve every symbol in libxent.\n\
         pub fn symbol_addresses() -> Vec<(&'static str, usize)> {\n    vec![\n",
    );
    for f in &h.functions {
        writeln!(r, "        (\"{0}\", xent_sys_test::opaque(xent_sys::{0} as *const () as usize)),", f.name).unwrap();
    }
    r.push_str("    ]\n}\n");
    r
}

fn str_list(v: &[String]) -> String {
    format!("&[{}]", v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", "))
}

fn gen_decls(h: &Header, path: &Path) -> String {
    let mut r = String::new();
    writeln!(r, "/// The header that was parsed.\npub const HEADER: &str = {:?};", path.display().to_string()).unwrap();
    r.push_str("/// Structs: (name, [(C type, field)]).\npub const STRUCTS: &[(&str, &[(&str, &str)])] = &[\n");
    for s in &h.structs {
        let fields: Vec<String> = s.fields.iter().map(|(t, f)| format!("({t:?}, {f:?})")).collect();
        writeln!(r, "    ({:?}, &[{}]),", s.name, fields.join(", ")).unwrap();
    }
    r.push_str("];\n/// Enum typedefs: (name, constants).\npub const ENUMS: &[(&str, &[&str])] = &[\n");
    for (e, k) in &h.enums {
        writeln!(r, "    ({e:?}, {}),", str_list(k)).unwrap();
    }
    r.push_str("];\n/// Function pointer typedefs: (name, return C type, parameter C types).\npub const FN_TYPEDEFS: &[(&str, &str, &[&str])] = &[\n");
    for f in &h.fn_typedefs {
        writeln!(r, "    ({:?}, {:?}, {}),", f.name, f.ret, str_list(&f.params)).unwrap();
    }
    r.push_str("];\n/// Functions: (name, return C type, parameter C types).\npub const FUNCTIONS: &[(&str, &str, &[&str])] = &[\n");
    for f in &h.functions {
        writeln!(r, "    ({:?}, {:?}, {}),", f.name, f.ret, str_list(&f.params)).unwrap();
    }
    r.push_str("];\n");
    writeln!(r, "/// Integer macros.\npub const INT_MACROS: &[&str] = {};", str_list(&h.int_macros)).unwrap();
    writeln!(r, "/// String macros.\npub const STR_MACROS: &[&str] = {};", str_list(&h.str_macros)).unwrap();
    r
}
