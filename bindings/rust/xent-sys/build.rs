//! Finds libxent and tells cargo how to link it.
//!
//! Search order:
//! 1. `XENT_LIB_DIR`: a directory holding `libxent.so` (for example a meson
//!    build directory, or `$prefix/lib`). The header directory is
//!    `XENT_INCLUDE_DIR` when set, else `XENT_LIB_DIR/../include` when it holds
//!    `xent/xent.h`.
//! 2. `pkg-config xent` (the `PKG_CONFIG` variable names another binary). For an
//!    uninstalled meson build, point `PKG_CONFIG_PATH` at
//!    `<build>/meson-uninstalled`: pkg-config then picks `xent-uninstalled.pc`.
//!
//! When the library is outside the system directories, an rpath to it is added
//! to this crate's own test and example binaries (and exported as
//! `DEP_XENT_RPATH` for dependents' build scripts), unless `XENT_NO_RPATH` is
//! set. Metadata for dependents: `DEP_XENT_LIB_DIR`, `DEP_XENT_INCLUDE`,
//! `DEP_XENT_RPATH`.
//!
//! No dependencies: this script only runs `pkg-config` when it is installed.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the search found.
struct Found {
    /// Directories to search for the library at link time (may be empty for a
    /// library in the linker's default directories).
    lib_dirs: Vec<PathBuf>,
    /// Directory containing `xent/xent.h`, when known.
    include_dir: Option<PathBuf>,
    /// How it was found, for messages.
    how: String,
}

const ENV_VARS: &[&str] = &[
    "XENT_LIB_DIR",
    "XENT_INCLUDE_DIR",
    "XENT_NO_RPATH",
    "XENT_NO_PKG_CONFIG",
    "PKG_CONFIG",
    "PKG_CONFIG_PATH",
    "PKG_CONFIG_LIBDIR",
    "PKG_CONFIG_SYSROOT_DIR",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for v in ENV_VARS {
        println!("cargo:rerun-if-env-changed={v}");
    }
    // docs.rs has no libxent; the declarations document themselves.
    if env::var_os("DOCS_RS").is_some() {
        return;
    }

    let found = match env::var_os("XENT_LIB_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => from_lib_dir(PathBuf::from(dir)),
        None => match from_pkg_config() {
            Ok(found) => found,
            Err(why) => fail(&why),
        },
    };

    for dir in &found.lib_dirs {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    println!("cargo:rustc-link-lib=dylib=xent");

    let family = env::var("CARGO_CFG_TARGET_FAMILY").unwrap_or_default();
    let want_rpath = family == "unix" && env::var_os("XENT_NO_RPATH").is_none();
    let rpath_dirs: Vec<&PathBuf> = found.lib_dirs.iter().filter(|d| !is_system_dir(d)).collect();
    if want_rpath && !rpath_dirs.is_empty() {
        let joined = rpath_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":");
        // Applies to this crate's tests and examples only; dependents read
        // DEP_XENT_RPATH (the `xent` crate does for its tests and examples).
        println!("cargo:rustc-link-arg=-Wl,-rpath,{joined}");
        println!("cargo:rpath={joined}");
    }
    if let Some(first) = found.lib_dirs.first() {
        println!("cargo:lib_dir={}", first.display());
    }
    if let Some(inc) = &found.include_dir {
        println!("cargo:include={}", inc.display());
    }
    println!("cargo:found_by={}", found.how);
}

fn fail(why: &str) -> ! {
    panic!(
        "\n\nxent-sys: cannot find libxent (the xent C library).\n\
         Either\n  \
           * set XENT_LIB_DIR to the directory that holds libxent.so, e.g. a meson build directory:\n      \
               XENT_LIB_DIR=/path/to/xent/build cargo build\n  \
           * or make `pkg-config xent` succeed: install xent (`meson install`), or for an uninstalled\n    \
             meson build directory\n      \
               PKG_CONFIG_PATH=/path/to/xent/build/meson-uninstalled cargo build\n\
         details: {why}\n\n"
    );
}

/// The file the linker needs for `-lxent` (not only the versioned runtime
/// file `libxent.so.1`).
fn has_library(dir: &Path) -> bool {
    ["libxent.so", "libxent.dylib", "xent.lib", "libxent.a"].iter().any(|name| dir.join(name).exists())
}

fn has_versioned_only(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().starts_with("libxent.so.")))
        .unwrap_or(false)
}

fn from_lib_dir(dir: PathBuf) -> Found {
    if !dir.is_dir() {
        fail(&format!("XENT_LIB_DIR={} is set but is not a directory (pkg-config not tried)", dir.display()));
    }
    if !has_library(&dir) {
        let why = if has_versioned_only(&dir) {
            "holds libxent.so.N but not the libxent.so link the linker needs (install the development files)"
        } else {
            "holds no libxent.so"
        };
        fail(&format!("XENT_LIB_DIR={} is set but {why} (pkg-config not tried)", dir.display()));
    }
    let dir = dir.canonicalize().unwrap_or(dir);
    let include_dir = env::var_os("XENT_INCLUDE_DIR").filter(|v| !v.is_empty()).map(PathBuf::from).or_else(|| {
        let guess = dir.join("..").join("include");
        guess.join("xent").join("xent.h").exists().then_some(guess)
    });
    Found { lib_dirs: vec![dir.clone()], include_dir, how: format!("XENT_LIB_DIR={}", dir.display()) }
}

fn pkg_config(args: &[&str]) -> Result<String, String> {
    let exe: OsString = env::var_os("PKG_CONFIG").unwrap_or_else(|| "pkg-config".into());
    let out = Command::new(&exe)
        .args(args)
        .arg("xent")
        .output()
        .map_err(|e| format!("could not run {}: {e}", exe.to_string_lossy()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(format!(
            "`{} {} xent` failed ({}){}",
            exe.to_string_lossy(),
            args.join(" "),
            out.status,
            if err.is_empty() { String::new() } else { format!(": {err}") }
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Splits pkg-config output into the values of `-X` flags.
fn flag_values(output: &str, flag: &str) -> Vec<PathBuf> {
    output
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(flag))
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .collect()
}

fn from_pkg_config() -> Result<Found, String> {
    if env::var_os("XENT_NO_PKG_CONFIG").is_some() {
        return Err("disabled by XENT_NO_PKG_CONFIG".into());
    }
    let version = pkg_config(&["--modversion"])?;
    let libs = pkg_config(&["--libs-only-L"])?;
    let cflags = pkg_config(&["--cflags-only-I"])?;
    let mut lib_dirs: Vec<PathBuf> = Vec::new();
    for d in flag_values(&libs, "-L") {
        if !lib_dirs.contains(&d) {
            lib_dirs.push(d);
        }
    }
    let mut include_dir = env::var_os("XENT_INCLUDE_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
    if include_dir.is_none() {
        include_dir = flag_values(&cflags, "-I").into_iter().find(|d| d.join("xent").join("xent.h").exists());
    }
    if include_dir.is_none() {
        // Installed with the default includedir (not always printed by -I).
        if let Ok(inc) = pkg_config(&["--variable=includedir"]) {
            let inc = PathBuf::from(inc.trim());
            if inc.join("xent").join("xent.h").exists() {
                include_dir = Some(inc);
            }
        }
    }
    Ok(Found { lib_dirs, include_dir, how: format!("pkg-config (xent {})", version.trim()) })
}

fn is_system_dir(dir: &Path) -> bool {
    let s = dir.to_string_lossy();
    let s = s.trim_end_matches('/');
    matches!(s, "/lib" | "/lib64" | "/usr/lib" | "/usr/lib64" | "/usr/local/lib" | "/usr/local/lib64")
        || (s.starts_with("/usr/lib/") && !s["/usr/lib/".len()..].contains('/'))
        || (s.starts_with("/lib/") && !s["/lib/".len()..].contains('/'))
}
