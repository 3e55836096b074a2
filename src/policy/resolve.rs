//! Selector rules meet an inventory snapshot: [`Resolved`] is, for one policy and one
//! snapshot, the selector rules each guest matches, computed once when either changes so
//! that a decision is a hash lookup. Also which rules govern a guest (the precedence), and
//! which guests a rule protects (to know whose configs the inventory must read).
//!
//! Precedence, for one guest:
//! 1. a rule by `vmid = N` alone (no selector) governs that guest alone, as before;
//! 2. otherwise every rule that matches applies — the selector rules whose selectors pick
//!    it and the `vmids` range holding it — and a request is refused when any of them
//!    refuses it (the most restrictive wins; each rule keeps its own exemptions);
//! 3. a guest no rule matches gets `[settings] default_access`.

use std::collections::HashMap;
use std::sync::Arc;

use super::rule::GuestRule;
use super::Policy;
use crate::inventory::Snapshot;
use crate::pve::{Action, Vmid};

/// The selector matches of one snapshot under one policy.
#[derive(Debug)]
pub struct Resolved {
    /// Guest -> indexes of the selector rules it matches (file order).
    matches: HashMap<Vmid, Box<[u32]>>,
    /// The snapshot it was built from.
    pub snapshot: Arc<Snapshot>,
    /// Identifies the policy it was built for (its address in the live store).
    pub policy_key: usize,
}

impl Resolved {
    /// The selector rules `vmid` matches (empty for a guest the snapshot does not have).
    #[inline]
    pub fn matches(&self, vmid: Vmid) -> &[u32] {
        self.matches.get(&vmid).map_or(&[], |m| m)
    }
}

/// Which rules govern one guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Governing<'a> {
    /// A `vmid = N` rule, alone.
    Exact(u32),
    /// The selector rules it matches and the range holding it (at least one).
    Matched(&'a [u32], Option<u32>),
    /// No rule: the default.
    Default,
}

impl Policy {
    /// Builds the selector matches of `snapshot` for this policy; `policy_key` identifies
    /// the policy for caching.
    pub fn resolve(&self, snapshot: Arc<Snapshot>, policy_key: usize) -> Resolved {
        let mut matches = HashMap::new();
        if !self.selector_rules.is_empty() {
            let mut hit = Vec::new();
            for g in snapshot.guests.values() {
                hit.clear();
                for &i in &self.selector_rules {
                    let sel = self.rules[i as usize].selector.as_ref();
                    if sel.is_some_and(|s| s.matches(g)) {
                        hit.push(i);
                    }
                }
                if !hit.is_empty() {
                    matches.insert(g.vmid, hit.clone().into_boxed_slice());
                }
            }
        }
        Resolved {
            matches,
            snapshot,
            policy_key,
        }
    }

    /// Whether any rule picks guests through the inventory.
    pub fn needs_inventory(&self) -> bool {
        !self.selector_rules.is_empty()
    }

    /// The `file:line` of the first selector rule (for "add `[inventory]`" errors).
    pub fn first_selector_origin(&self) -> Option<&str> {
        self.selector_rules
            .first()
            .map(|&i| self.rules[i as usize].origin.as_str())
    }

    /// An error for each selector rule when there is no `[inventory]` to match them with.
    pub fn require_inventory(&self, have: bool) -> Result<(), super::PolicyError> {
        if have || !self.needs_inventory() {
            return Ok(());
        }
        let errors = self
            .selector_rules
            .iter()
            .map(|&i| {
                let r = &self.rules[i as usize];
                let (path, line) = r.origin.rsplit_once(':').unwrap_or((&r.origin, "1"));
                super::PolicyError::Invalid {
                    path: path.to_string(),
                    line: line.parse().unwrap_or(1),
                    message: format!(
                        "this rule selects guests by {} and needs the inventory: add an [inventory] section with token_file to the config (see README \"Inventory and selectors\")",
                        r.selector.as_ref().map(|s| s.describe()).unwrap_or_default()
                    ),
                }
            })
            .collect();
        Err(super::PolicyError::from_list(errors).unwrap_or(super::PolicyError::Many(vec![])))
    }

    /// The range rule holding `vmid`, if any.
    #[inline]
    fn range_index(&self, vmid: Vmid) -> Option<u32> {
        let pos = self.ranges.partition_point(|r| r.0 <= vmid);
        match pos.checked_sub(1).map(|p| self.ranges[p]) {
            Some((_, hi, i)) if vmid <= hi => Some(i),
            _ => None,
        }
    }

    /// The rules that govern `vmid` (see the module doc for the precedence).
    #[inline]
    pub fn governing<'a>(&self, vmid: Vmid, view: Option<&'a Resolved>) -> Governing<'a> {
        if let Some(&i) = self.by_vmid.get(&vmid) {
            return Governing::Exact(i);
        }
        let sel = view.map_or(&[][..], |v| v.matches(vmid));
        let range = self.range_index(vmid);
        if sel.is_empty() && range.is_none() {
            Governing::Default
        } else {
            Governing::Matched(sel, range)
        }
    }

    /// The first governing rule of `vmid` that refuses `action` for `identity`
    /// (`Some(None)`: the default rule), or `None` when all permit it.
    #[inline]
    pub(super) fn refusing_rule(
        &self,
        vmid: Vmid,
        action: Action,
        identity: Option<&str>,
        view: Option<&Resolved>,
    ) -> Option<Option<u32>> {
        let refuses = |r: &GuestRule| r.refuses(action) && !r.exempt.matches(identity);
        match self.governing(vmid, view) {
            Governing::Exact(i) => refuses(&self.rules[i as usize]).then_some(Some(i)),
            Governing::Default => refuses(&self.default_rule).then_some(None),
            Governing::Matched(sel, range) => sel
                .iter()
                .copied()
                .chain(range)
                .find(|&i| refuses(&self.rules[i as usize]))
                .map(Some),
        }
    }

    /// Whether `vmid` is protected at all: some governing rule refuses some change
    /// (ignoring exemptions).
    pub fn is_protected(&self, vmid: Vmid, view: Option<&Resolved>) -> bool {
        let restrictive = |r: &GuestRule| {
            r.access == super::Access::Readonly || r.deny != super::rule::ActionSet::default()
        };
        match self.governing(vmid, view) {
            Governing::Exact(i) => restrictive(&self.rules[i as usize]),
            Governing::Default => restrictive(&self.default_rule),
            Governing::Matched(sel, range) => sel
                .iter()
                .copied()
                .chain(range)
                .any(|i| restrictive(&self.rules[i as usize])),
        }
    }

    /// `guest 104 (file:line)` or `guests tags = ["prod"] (file:line) through tag "prod"`:
    /// every rule governing `vmid`, for `pvegate check` and `policy show`.
    pub fn explain_guest(&self, vmid: Vmid, view: Option<&Resolved>) -> Vec<String> {
        let guest = view.and_then(|v| v.snapshot.guests.get(&vmid));
        match self.governing(vmid, view) {
            Governing::Exact(i) => vec![format!("{} through vmid", self.rules[i as usize].label())],
            Governing::Default => vec![format!(
                "default_access {} ({})",
                self.default_rule.access.as_str(),
                self.default_rule.origin
            )],
            Governing::Matched(sel, range) => sel
                .iter()
                .copied()
                .chain(range)
                .map(|i| {
                    let r = &self.rules[i as usize];
                    match (&r.selector, guest) {
                        (Some(s), Some(g)) => {
                            format!("{} through {}", r.label(), s.matched_through(g))
                        }
                        _ => format!("{} through vmids", r.label()),
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Guest, GuestType};
    use crate::pve::{GuestSet, Operation, Route};

    pub(crate) fn snapshot(guests: &[(Vmid, &str, &str, Option<&str>)]) -> Snapshot {
        let mut s = Snapshot::empty();
        for &(vmid, name, tags, pool) in guests {
            s.guests.insert(
                vmid,
                Guest {
                    vmid,
                    name: name.into(),
                    node: "pve".into(),
                    kind: GuestType::Qemu,
                    tags: crate::inventory::split_tags(tags),
                    pool: pool.map(Into::into),
                    template: false,
                    status: "running".into(),
                },
            );
        }
        s
    }

    const POLICY: &str = r#"
[[guest]]
tags = ["prod"]
access = "readonly"
allow = ["snapshot.*"]

[[guest]]
pool = "lab"
access = "managed"
deny = ["destroy"]

[[guest]]
name = "doc*"
access = "readonly"

[[guest]]
vmid = 110
access = "managed"

[[guest]]
vmids = "200-299"
access = "managed"
deny = ["power.*"]
"#;

    fn op(action: &str, vmid: Vmid) -> Operation {
        Operation::new(Route::Unknown, action.parse().unwrap(), GuestSet::one(vmid))
    }

    #[test]
    fn precedence_exact_then_every_match_then_default() {
        let p = Policy::from_toml_str("p.toml", POLICY).unwrap();
        let s = Arc::new(snapshot(&[
            (104, "app1", "prod", None),
            (105, "web", "dev", Some("lab")),
            (106, "docs", "", Some("lab")),
            (110, "tofu", "prod", None),
            (120, "free", "", None),
            (205, "x", "", Some("lab")),
        ]));
        let r = p.resolve(s, 0);
        let d = |a: &str, v: Vmid| p.decide_in(&op(a, v), None, Some(&r)).verdict();
        use super::super::Verdict::*;
        // tag rule: readonly, snapshots allowed
        assert_eq!(d("power.stop", 104), Deny);
        assert_eq!(d("snapshot.create", 104), Allow);
        // pool rule: destroy refused only
        assert_eq!(d("power.stop", 105), Allow);
        assert_eq!(d("destroy", 105), Deny);
        // pool (managed) and name (readonly) both match: the most restrictive wins
        assert_eq!(d("power.stop", 106), Deny);
        // an exact vmid rule wins alone even though the tag matches
        assert_eq!(d("power.stop", 110), Allow);
        // nothing matches: default (managed)
        assert_eq!(d("power.stop", 120), Allow);
        // range + pool: each refuses its own
        assert_eq!(d("power.stop", 205), Deny);
        assert_eq!(d("destroy", 205), Deny);
        assert_eq!(d("config.write", 205), Allow);
        // without an inventory selectors match nothing
        assert_eq!(p.decide(&op("power.stop", 104), None).verdict(), Allow);
        let why = p.explain_guest(106, Some(&r));
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(why[0].contains("pool \"lab\""), "{why:?}");
        assert!(why[1].contains("name \"docs\" ~ \"doc*\""), "{why:?}");
        assert!(p.is_protected(105, Some(&r)) && !p.is_protected(120, Some(&r)));
    }

    #[test]
    fn selector_errors_are_located() {
        for (src, line, needle) in [
            (
                "[[guest]]\ntags = []\naccess = \"readonly\"\n",
                2,
                "selects no guest",
            ),
            (
                "[[guest]]\ntags = [\"a b\"]\naccess = \"readonly\"\n",
                2,
                "not a Proxmox tag",
            ),
            (
                "[[guest]]\ntype = \"vm\"\naccess = \"readonly\"\n",
                2,
                "\"qemu\" or \"lxc\"",
            ),
        ] {
            let e = Policy::from_toml_str("t.toml", src)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("t.toml:{line}")) && e.contains(needle),
                "{e}"
            );
        }
        let p = Policy::from_toml_str(
            "t.toml",
            "[[guest]]\nvmid = 104\nname = \"doc1\"\naccess = \"readonly\"\n",
        )
        .unwrap();
        assert!(
            !p.needs_inventory(),
            "a plain name beside vmid stays a label"
        );
    }
}
