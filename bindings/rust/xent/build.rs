//! Adds the rpath that `xent-sys` found (if any) to this crate's own tests,
//! examples and doc tests, so `cargo test` runs without `LD_LIBRARY_PATH`.
//! (Cargo applies a dependency's `rustc-link-arg` only to that dependency's
//! own targets.) Applications linking `xent` set their own rpath or install
//! libxent in a system directory.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_XENT_RPATH");
    if let Ok(rpath) = std::env::var("DEP_XENT_RPATH") {
        if !rpath.is_empty() {
            // Tests, examples and benches of this package (not dependents).
            println!("cargo:rustc-link-arg=-Wl,-rpath,{rpath}");
        }
    }
}
