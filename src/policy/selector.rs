//! Selectors: rules that pick guests by what the inventory says about them (`tags`, `pool`,
//! `name` glob, `type`, `template`), alone or narrowed by `vmid`/`vmids`. Every part given
//! must match (AND); within `tags`, one listed tag is enough (OR). Tags and names compare
//! case-insensitively, as Proxmox does by default, so a different spelling never escapes
//! a rule.

use crate::inventory::{Guest, GuestType};
use crate::pve::host::glob_match;
use crate::pve::Vmid;

/// The compiled selector of one rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// Lower-cased; a guest carrying any of them matches.
    pub tags: Vec<String>,
    pub pool: Option<String>,
    /// Lower-cased glob (`*`, `?`).
    pub name: Option<String>,
    pub kind: Option<GuestType>,
    pub template: Option<bool>,
    /// `vmid`/`vmids` written beside the selectors (inclusive).
    pub vmids: Option<(Vmid, Vmid)>,
}

/// Which part of a selector made a guest match (for `check`, `policy show` and messages),
/// and what a change must not take away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Tags,
    Pool,
    Name,
    Type,
    Template,
    /// Not a selector: the guest's `protection` flag, which a protected guest keeps.
    Protection,
}

impl Part {
    /// What a change takes away, in words.
    pub fn what(self) -> &'static str {
        match self {
            Part::Tags => "the tag that selects it",
            Part::Pool => "its membership of the pool that selects it",
            Part::Name => "the name that selects it",
            Part::Type => "its type",
            Part::Template => "its template flag",
            Part::Protection => "its protection flag",
        }
    }
}

impl Selector {
    /// Whether `g` is selected.
    #[inline]
    pub fn matches(&self, g: &Guest) -> bool {
        self.first_mismatch(g).is_none()
    }

    /// The first part that does not match `g` (`None`: it matches). A `vmids` mismatch is
    /// reported as `Some(None)`.
    pub fn first_mismatch(&self, g: &Guest) -> Option<Option<Part>> {
        if let Some((lo, hi)) = self.vmids {
            if g.vmid < lo || g.vmid > hi {
                return Some(None);
            }
        }
        if !self.tags.is_empty() && !self.tags.iter().any(|t| g.tags.contains(t)) {
            return Some(Some(Part::Tags));
        }
        if let Some(p) = &self.pool {
            if g.pool.as_deref() != Some(p.as_str()) {
                return Some(Some(Part::Pool));
            }
        }
        if let Some(n) = &self.name {
            if !glob_match(n, &g.name.to_ascii_lowercase()) {
                return Some(Some(Part::Name));
            }
        }
        if let Some(k) = self.kind {
            if g.kind != k {
                return Some(Some(Part::Type));
            }
        }
        if let Some(t) = self.template {
            if g.template != t {
                return Some(Some(Part::Template));
            }
        }
        None
    }

    /// The selector in policy-file words: `tags = ["prod"], pool = "core"`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some((lo, hi)) = self.vmids {
            if lo == hi {
                parts.push(format!("vmid = {lo}"));
            } else {
                parts.push(format!("vmids = \"{lo}-{hi}\""));
            }
        }
        if !self.tags.is_empty() {
            let t: Vec<String> = self.tags.iter().map(|t| format!("{t:?}")).collect();
            parts.push(format!("tags = [{}]", t.join(", ")));
        }
        if let Some(p) = &self.pool {
            parts.push(format!("pool = {p:?}"));
        }
        if let Some(n) = &self.name {
            parts.push(format!("name = {n:?}"));
        }
        if let Some(k) = self.kind {
            parts.push(format!("type = {:?}", k.as_str()));
        }
        if let Some(t) = self.template {
            parts.push(format!("template = {t}"));
        }
        parts.join(", ")
    }

    /// Why `g` matches, in words: `tag "prod"`, `pool "core"`, `name "doc*"`…
    pub fn matched_through(&self, g: &Guest) -> String {
        let mut why = Vec::new();
        if let Some(t) = self.tags.iter().find(|t| g.tags.contains(t)) {
            why.push(format!("tag {t:?}"));
        }
        if let Some(p) = &self.pool {
            why.push(format!("pool {p:?}"));
        }
        if let Some(n) = &self.name {
            why.push(format!("name {:?} ~ {n:?}", g.name));
        }
        if let Some(k) = self.kind {
            why.push(format!("type {}", k.as_str()));
        }
        if self.template == Some(true) {
            why.push("template".into());
        } else if self.template == Some(false) {
            why.push("not a template".into());
        }
        if let Some((lo, hi)) = self.vmids {
            why.push(if lo == hi {
                format!("vmid {lo}")
            } else {
                format!("vmids {lo}-{hi}")
            });
        }
        why.join(" and ")
    }
}

/// Whether a policy `name` value is a glob selector rather than a label: with neither
/// `vmid` nor `vmids` it is always a selector; beside them only when it holds `*`, `?` or `[`.
pub fn name_is_selector(name: &str, has_vmids: bool) -> bool {
    !has_vmids || name.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(vmid: Vmid, name: &str, tags: &[&str], pool: Option<&str>) -> Guest {
        Guest {
            vmid,
            name: name.into(),
            node: "pve".into(),
            kind: GuestType::Qemu,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            pool: pool.map(Into::into),
            template: false,
            status: "running".into(),
        }
    }

    #[test]
    fn parts_are_anded_tags_are_ored() {
        let s = Selector {
            tags: vec!["prod".into(), "db".into()],
            pool: Some("core".into()),
            ..Selector::default()
        };
        assert!(s.matches(&guest(104, "a", &["db"], Some("core"))));
        assert!(!s.matches(&guest(104, "a", &["db"], Some("lab"))));
        assert!(!s.matches(&guest(104, "a", &["dev"], Some("core"))));
        let n = Selector {
            name: Some("doc*".into()),
            vmids: Some((100, 199)),
            ..Selector::default()
        };
        assert!(n.matches(&guest(104, "Doc1", &[], None)));
        assert!(!n.matches(&guest(204, "doc1", &[], None)));
        assert!(!n.matches(&guest(105, "web", &[], None)));
        assert_eq!(
            n.first_mismatch(&guest(105, "web", &[], None)),
            Some(Some(Part::Name))
        );
        assert_eq!(n.describe(), "vmids = \"100-199\", name = \"doc*\"");
    }

    #[test]
    fn name_label_or_selector() {
        assert!(name_is_selector("doc1", false));
        assert!(!name_is_selector("doc1", true));
        assert!(name_is_selector("doc*", true));
    }
}
