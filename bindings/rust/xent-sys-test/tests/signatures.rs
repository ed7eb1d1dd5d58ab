//! Every function the header declares exists in `xent_sys` with the same
//! signature (parameter and return types mapped C -> Rust). Only types are
//! compared here; `symbols.rs` checks that libxent exports every symbol.

use xent_sys_test::{fn_type, header};

#[allow(dead_code)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/rust_signatures.rs"));
}

#[test]
fn every_function_signature_matches_the_header() {
    let rust = generated::rust_signatures();
    assert_eq!(rust.len(), header::FUNCTIONS.len());
    let mut bad = Vec::new();
    for ((name, ret, params), (rname, rsig)) in header::FUNCTIONS.iter().zip(rust) {
        assert_eq!(*name, rname);
        let want = fn_type(ret, params);
        if want != rsig {
            bad.push(format!("{name}: header `{want}`, xent_sys `{rsig}`"));
        }
    }
    assert!(bad.is_empty(), "signatures differ from {}:\n  {}", header::HEADER, bad.join("\n  "));
    eprintln!("checked {} function signatures", header::FUNCTIONS.len());
}
