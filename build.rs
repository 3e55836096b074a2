//! Build script: records the git commit the binary was built from, for `pvegate --version`.
//!
//! Outside a git checkout (a crate tarball, a Nix build) it uses `PVEGATE_GIT_COMMIT` if set,
//! and otherwise says "unknown" — the build never fails for want of git.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=PVEGATE_GIT_COMMIT");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    // Only trust git when this crate is the top of the checkout (not a vendored copy inside
    // someone else's repository).
    let top = git(&["-C", &manifest, "rev-parse", "--show-toplevel"]);
    let in_checkout = top.is_some_and(|t| {
        Path::new(&t).canonicalize().ok() == Path::new(&manifest).canonicalize().ok()
    });
    let commit = std::env::var("PVEGATE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            if !in_checkout {
                return None;
            }
            // Rebuild when HEAD moves: HEAD itself, and the branch file it points to.
            for p in ["HEAD", "packed-refs"] {
                if let Some(f) = git(&["-C", &manifest, "rev-parse", "--git-path", p]) {
                    println!("cargo:rerun-if-changed={}", abs(&manifest, &f));
                }
            }
            if let Some(r) = git(&["-C", &manifest, "symbolic-ref", "-q", "HEAD"]) {
                if let Some(f) = git(&["-C", &manifest, "rev-parse", "--git-path", &r]) {
                    println!("cargo:rerun-if-changed={}", abs(&manifest, &f));
                }
            }
            git(&["-C", &manifest, "rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=PVEGATE_GIT_COMMIT={commit}");
}

fn abs(base: &str, p: &str) -> String {
    let path = Path::new(p);
    if path.is_absolute() {
        p.to_string()
    } else {
        Path::new(base).join(path).display().to_string()
    }
}
