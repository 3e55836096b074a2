//! What `pvegate --version` says: the crate version, the git commit it was built from
//! (recorded by `build.rs`, "unknown" outside a git checkout) and the Proxmox VE API versions
//! of the endpoint catalogue.

use crate::pve::catalogue;

/// The git commit of this build (12 hex digits), or "unknown".
pub const GIT_COMMIT: &str = env!("PVEGATE_GIT_COMMIT");

/// One line: `0.1.0 (git 0123456789ab, Proxmox VE API 9.1, 8.4)`.
pub fn short() -> String {
    let pve: Vec<&str> = catalogue::sources()
        .iter()
        .map(|s| s.pve.as_str())
        .collect();
    format!(
        "{} (git {GIT_COMMIT}, Proxmox VE API {})",
        env!("CARGO_PKG_VERSION"),
        pve.join(", ")
    )
}

/// Several lines: the version, the commit, and each catalogue source with its schema commit.
pub fn long() -> String {
    let mut s = format!("{}\ncommit:    {GIT_COMMIT}\n", env!("CARGO_PKG_VERSION"));
    for src in catalogue::sources() {
        let commit = src
            .source_commit
            .as_deref()
            .map(|c| &c[..c.len().min(8)])
            .unwrap_or("?");
        s.push_str(&format!(
            "catalogue: Proxmox VE {} (API schema from {} {commit})\n",
            src.pve,
            src.source_repo.as_deref().unwrap_or("pve-docs"),
        ));
    }
    s.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_names_commit_and_catalogue_versions() {
        let s = super::short();
        assert!(s.starts_with(env!("CARGO_PKG_VERSION")), "{s}");
        assert!(s.contains("9.1") && s.contains("8.4"), "{s}");
        let l = super::long();
        assert!(
            l.contains("commit:") && l.contains("catalogue: Proxmox VE 9.1"),
            "{l}"
        );
    }
}
