//! The Rust declarations in `xent_sys` match `include/xent/xent.h`: the size,
//! alignment and field offsets/sizes/types of every struct, every enum
//! constant and enum size, and every version macro, as the C compiler sees
//! them. (A field or constant missing on either side fails to compile.)

use std::collections::BTreeMap;

use xent_sys_test::{c_layout, header, rust_type_for, CValue};

mod generated {
    include!(concat!(env!("OUT_DIR"), "/rust_layout.rs"));
}

#[test]
fn every_struct_field_and_constant_matches_the_header() {
    let c: BTreeMap<String, CValue> = c_layout().into_iter().collect();
    let rust: BTreeMap<String, i64> = generated::rust_layout().into_iter().collect();
    let mut bad = Vec::new();
    for (name, v) in &c {
        match v {
            CValue::Int(cv) => match rust.get(name) {
                Some(rv) if rv == cv => {}
                Some(rv) => bad.push(format!("{name}: C {cv}, Rust {rv}")),
                None => bad.push(format!("{name}: missing on the Rust side")),
            },
            CValue::Str(_) => {}
        }
    }
    for name in rust.keys() {
        if !c.contains_key(name) {
            bad.push(format!("{name}: missing on the C side"));
        }
    }
    assert!(bad.is_empty(), "xent_sys does not match {}:\n  {}", header::HEADER, bad.join("\n  "));
    // Sanity: the table covers what it should.
    let structs = header::STRUCTS.len();
    let fields: usize = header::STRUCTS.iter().map(|s| s.1.len()).sum();
    let consts: usize = header::ENUMS.iter().map(|e| e.1.len()).sum();
    assert_eq!(structs, 16, "expected the 16 argument structs of xent.h");
    assert!(fields > 100 && consts >= 26, "parsed {fields} fields, {consts} constants");
    eprintln!("checked {} values: {structs} structs, {fields} fields, {consts} enum constants", c.len());
}

#[test]
fn every_field_has_the_header_type() {
    let mut bad = Vec::new();
    for (field, c_type, rust_type) in generated::rust_field_types() {
        let want = rust_type_for(c_type);
        if want != rust_type {
            bad.push(format!("{field}: C `{c_type}` wants Rust `{want}`, xent_sys has `{rust_type}`"));
        }
    }
    assert!(bad.is_empty(), "field types differ from {}:\n  {}", header::HEADER, bad.join("\n  "));
}

#[test]
fn function_pointer_typedefs_match() {
    let mut bad = Vec::new();
    for (name, rust) in generated::rust_fn_typedefs() {
        let want = rust_type_for(name);
        if want != rust {
            bad.push(format!("{name}: header wants `{want}`, xent_sys has `{rust}`"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert_eq!(header::FN_TYPEDEFS.len(), 2);
}

#[test]
fn string_macros_match() {
    let c: BTreeMap<String, CValue> = c_layout().into_iter().collect();
    let strings = generated::rust_strings();
    assert!(!strings.is_empty());
    for (name, rust) in strings {
        assert_eq!(c.get(name), Some(&CValue::Str(rust.to_string())), "{name}");
    }
}

#[test]
fn version_number_is_consistent() {
    assert_eq!(
        xent_sys::XENT_VERSION_STRING,
        format!("{}.{}.{}", xent_sys::XENT_VERSION_MAJOR, xent_sys::XENT_VERSION_MINOR, xent_sys::XENT_VERSION_PATCH)
    );
}
