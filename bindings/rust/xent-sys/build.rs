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
//!    `XENT_NO_PKG_CONFIG` skips this step.
//! 3. With the `bundled` feature, when neither found it: libxent is compiled
//!    from the copy of its sources in this crate (`libxent/`) into a static
//!    library, as `zstd-sys` does. It needs a C++17 compiler and Highway
//!    (`pkg-config libhwy`; Debian: `libhwy-dev`). Threads come from OpenMP
//!    when the compiler has it (`XENT_BUNDLED_THREADING=openmp|none`), and
//!    every SIMD target of the architecture is compiled in, unless
//!    `XENT_BUNDLED_STATIC_TARGET_ONLY` is set (only the baseline target:
//!    a much faster build, for CI).
//!
//! When the library is outside the system directories, an rpath to it is added
//! to this crate's own test and example binaries (and exported as
//! `DEP_XENT_RPATH` for dependents' build scripts), unless `XENT_NO_RPATH` is
//! set. Metadata for dependents: `DEP_XENT_LIB_DIR`, `DEP_XENT_INCLUDE`,
//! `DEP_XENT_RPATH`.
//!
//! No dependencies without `bundled` (which adds `cc`): this script only runs
//! `pkg-config` when it is installed.

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
    /// Compiled here and already linked (static), not a shared libxent.
    bundled: bool,
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
    "XENT_BUNDLED_THREADING",
    "XENT_BUNDLED_STATIC_TARGET_ONLY",
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
            Err(why) => no_system_library(&why),
        },
    };

    if !found.bundled {
        for dir in &found.lib_dirs {
            println!("cargo:rustc-link-search=native={}", dir.display());
        }
        println!("cargo:rustc-link-lib=dylib=xent");
    }

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

#[cfg(not(feature = "bundled"))]
fn no_system_library(why: &str) -> Found {
    fail(why)
}

#[cfg(feature = "bundled")]
fn no_system_library(why: &str) -> Found {
    bundled::build(why)
}

fn fail(why: &str) -> ! {
    panic!(
        "\n\nxent-sys: cannot find libxent (the xent C library).\n\
         Either\n  \
           * enable the `bundled` feature of xent-sys to compile it from the sources in the crate\n    \
             (needs a C++17 compiler and Highway: Debian's libhwy-dev)\n  \
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
    Found { lib_dirs: vec![dir.clone()], include_dir, how: format!("XENT_LIB_DIR={}", dir.display()), bundled: false }
}

fn pkg_config(args: &[&str]) -> Result<String, String> {
    pkg_config_of("xent", args)
}

fn pkg_config_of(package: &str, args: &[&str]) -> Result<String, String> {
    let exe: OsString = env::var_os("PKG_CONFIG").unwrap_or_else(|| "pkg-config".into());
    let out = Command::new(&exe)
        .args(args)
        .arg(package)
        .output()
        .map_err(|e| format!("could not run {}: {e}", exe.to_string_lossy()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(format!(
            "`{} {} {package}` failed ({}){}",
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
    Ok(Found { lib_dirs, include_dir, how: format!("pkg-config (xent {})", version.trim()), bundled: false })
}

fn is_system_dir(dir: &Path) -> bool {
    let s = dir.to_string_lossy();
    let s = s.trim_end_matches('/');
    matches!(s, "/lib" | "/lib64" | "/usr/lib" | "/usr/lib64" | "/usr/local/lib" | "/usr/local/lib64")
        || (s.starts_with("/usr/lib/") && !s["/usr/lib/".len()..].contains('/'))
        || (s.starts_with("/lib/") && !s["/lib/".len()..].contains('/'))
}

/// The `bundled` feature: libxent compiled from `libxent/` (the repository's
/// `include/`, `src/` and `capi/`, copied into the published crate).
#[cfg(feature = "bundled")]
mod bundled {
    use super::{env, flag_values, pkg_config_of, Found, Path, PathBuf};

    pub(super) fn build(why_no_system: &str) -> Found {
        let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
        let root = manifest.join("libxent");
        let include = root.join("include");
        if !include.join("xent").join("xent.h").exists() {
            panic!(
                "xent-sys (bundled): {} holds no xent/xent.h: the crate's copy of libxent is missing",
                root.display()
            );
        }
        let sources = sources(&root);
        for f in &sources {
            println!("cargo:rerun-if-changed={}", f.display());
        }
        for dir in ["include/xent", "src", "capi"] {
            println!("cargo:rerun-if-changed={}", root.join(dir).display());
        }

        // Highway: headers and libhwy (hwy::SupportedTargets and friends).
        let hwy_cflags = pkg_config_of("libhwy", &["--cflags"]).unwrap_or_else(|e| {
            panic!(
                "\n\nxent-sys (bundled): no system libxent ({why_no_system}), and building the bundled copy needs\n\
                 Highway, which pkg-config cannot find: {e}\n\
                 Install it (Debian/Ubuntu: apt install libhwy-dev), or install libxent itself.\n\n"
            )
        });
        let hwy_libs = pkg_config_of("libhwy", &["--libs"]).expect("pkg-config --libs libhwy");

        let threading = env::var("XENT_BUNDLED_THREADING").unwrap_or_default();
        let mut b = cc::Build::new();
        b.cpp(true)
            .flag("-std=c++17")
            .opt_level(3)
            .debug(false)
            .warnings(false)
            .flag("-fvisibility=hidden")
            .flag("-ffp-contract=off")
            .define("XENT_BUILDING_LIBRARY", None)
            .define("NDEBUG", None)
            // As meson.build: no SSSE3 target (SSE4 covers every x86-64 CPU
            // since 2008), AVX3_DL in addition to AVX3.
            .define("HWY_DISABLED_TARGETS", "HWY_SSSE3")
            .define("HWY_WANT_AVX3_DL", None)
            .include(&include)
            .include(&root);
        for dir in flag_values(&hwy_cflags, "-I") {
            b.include(dir);
        }
        for def in flag_values(&hwy_cflags, "-D") {
            let def = def.to_string_lossy().into_owned();
            match def.split_once('=') {
                Some((k, v)) => b.define(k, v),
                None => b.define(&def, None),
            };
        }
        if env::var_os("XENT_BUNDLED_STATIC_TARGET_ONLY").map_or(false, |v| !v.is_empty()) {
            b.define("HWY_COMPILE_ONLY_STATIC", "1");
        }
        let openmp = match threading.as_str() {
            "openmp" => true,
            "none" => false,
            "" => b.is_flag_supported("-fopenmp").unwrap_or(false),
            other => panic!("xent-sys (bundled): XENT_BUNDLED_THREADING={other}: want openmp or none"),
        };
        let compiler = b.get_compiler();
        let gnu = compiler.is_like_gnu();
        if openmp {
            b.flag("-fopenmp").define("XENT_THREADING_OPENMP", None);
        }
        b.files(&sources);
        b.compile("xent");

        // After the static libxent: what it needs.
        for dir in flag_values(&hwy_libs, "-L") {
            println!("cargo:rustc-link-search=native={}", dir.display());
        }
        let hwy_names: Vec<PathBuf> = flag_values(&hwy_libs, "-l");
        if hwy_names.is_empty() {
            println!("cargo:rustc-link-lib=hwy");
        }
        for name in hwy_names {
            println!("cargo:rustc-link-lib={}", name.display());
        }
        if openmp {
            // GCC's runtime; clang's -fopenmp uses LLVM's libomp.
            println!("cargo:rustc-link-lib={}", if gnu && !compiler.is_like_clang() { "gomp" } else { "omp" });
        }
        println!("cargo:rustc-link-lib=pthread");
        println!("cargo:rustc-link-lib=m");
        let how = format!(
            "bundled (compiled from {}; threading {}{})",
            root.display(),
            if openmp { "openmp" } else { "none" },
            if env::var_os("XENT_BUNDLED_STATIC_TARGET_ONLY").map_or(false, |v| !v.is_empty()) {
                ", baseline SIMD target only"
            } else {
                ""
            }
        );
        println!("cargo:warning=xent-sys: no system libxent ({why_no_system}); using the {how}");
        Found { lib_dirs: Vec::new(), include_dir: Some(include), how, bundled: true }
    }

    /// The library's translation units: every `.cc` of `capi/` and `src/`
    /// (meson.build's libxent; `bindings/rust/ci.sh` checks that the two
    /// lists agree).
    fn sources(root: &Path) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for dir in ["capi", "src"] {
            let rd = std::fs::read_dir(root.join(dir))
                .unwrap_or_else(|e| panic!("xent-sys (bundled): cannot read {}: {e}", root.join(dir).display()));
            for e in rd {
                let p = e.expect("read_dir entry").path();
                if p.extension().map_or(false, |x| x == "cc") {
                    v.push(p);
                }
            }
        }
        v.sort();
        assert!(!v.is_empty(), "xent-sys (bundled): no sources under {}", root.display());
        v
    }
}
