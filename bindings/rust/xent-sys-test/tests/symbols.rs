//! libxent exports every function `xent.h` declares. This binary takes the
//! address of each one, so a symbol the loaded library lacks is a link error
//! naming it (kept in its own test binary so the other checks still run).

#[allow(dead_code)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/rust_signatures.rs"));
}

#[test]
fn every_header_function_is_exported() {
    let syms = generated::symbol_addresses();
    assert_eq!(syms.len(), xent_sys_test::header::FUNCTIONS.len());
    for (name, addr) in syms {
        assert_ne!(addr, 0, "{name}");
    }
}
