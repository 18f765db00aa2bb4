//! Builds a component crate for `wasm32-wasip2`, once per test process.
//!
//! The build goes to `<target>/wasm`, a target directory of its own, because
//! the `cargo test` that runs us may hold the lock on the main one. `just
//! build` uses the same directory and flags, so after it this is a no-op.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static BUILT: Mutex<Option<HashMap<PathBuf, PathBuf>>> = Mutex::new(None);

/// Builds the component crate in `manifest_dir` (release, `wasm32-wasip2`) if
/// it is stale and returns the path of its `.wasm`.
pub fn component_wasm(manifest_dir: &Path) -> PathBuf {
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(path) = built.get(manifest_dir) {
        return path.clone();
    }
    let package = package_name(manifest_dir);
    let root = workspace_root(manifest_dir);
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let wasm_target_dir = target_dir.join("wasm");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2", "-p", &package, "--target-dir"])
        .arg(&wasm_target_dir)
        .status()
        .unwrap_or_else(|error| panic!("running cargo to build {package}: {error}"));
    assert!(
        status.success(),
        "building {package} for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`)"
    );
    let wasm = wasm_target_dir.join("wasm32-wasip2/release").join(format!("{}.wasm", package.replace('-', "_")));
    assert!(wasm.exists(), "{} was not produced", wasm.display());
    built.insert(manifest_dir.to_path_buf(), wasm.clone());
    wasm
}

fn package_name(manifest_dir: &Path) -> String {
    let manifest = std::fs::read_to_string(manifest_dir.join("Cargo.toml"))
        .unwrap_or_else(|error| panic!("reading {}/Cargo.toml: {error}", manifest_dir.display()));
    let manifest: toml::Table = toml::from_str(&manifest).expect("Cargo.toml parses");
    manifest["package"]["name"].as_str().expect("package.name").to_string()
}

fn workspace_root(manifest_dir: &Path) -> PathBuf {
    manifest_dir
        .ancestors()
        .find(|dir| std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|text| text.contains("[workspace]")))
        .unwrap_or(manifest_dir)
        .to_path_buf()
}
