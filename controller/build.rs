//! Embeds every `catalog/*.toml` of the workspace into colocd, so that
//! adding an app to the built-in catalog is adding a file: the list of
//! `(file name, contents)` is generated here, each entry an `include_str!`
//! of the file, and `catalog.rs` parses them at start-up.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dir = manifest.join("..").join("catalog");
    let dir = dir
        .canonicalize()
        .unwrap_or_else(|e| panic!("catalog directory {}: {e}", dir.display()));
    // A directory: cargo rescans it, so a new file reruns this script.
    println!("cargo:rerun-if-changed={}", dir.display());

    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_else(|| panic!("catalog file name is not UTF-8: {}", path.display()))
            .to_owned();
        let path = path
            .to_str()
            .unwrap_or_else(|| panic!("catalog path is not UTF-8: {}", path.display()))
            .into();
        files.push((name, path));
    }
    files.sort();

    let mut out = String::from("pub(super) const FILES: &[(&str, &str)] = &[\n");
    for (name, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let path = path.to_str().expect("checked above");
        writeln!(out, "    ({name:?}, include_str!({path:?})),").expect("writing to a String");
    }
    out.push_str("];\n");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = out_dir.join("catalog_files.rs");
    fs::write(&target, out).unwrap_or_else(|e| panic!("writing {}: {e}", target.display()));
}
