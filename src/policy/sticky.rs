//! Sticky protection and judging with an inventory: a change that would take away what
//! makes a guest protected — the tag, pool or name its selector rule matches, or its
//! `protection` flag — is refused like a change to that guest, even when its rules permit
//! the action itself (a `managed` rule with `deny = ["destroy"]` permits `config.write`, but
//! not a `config.write` that drops the tag and with it the rule).

use super::decide::{AllowReason, Decision, DenyReason};
use super::judge::{Judgement, Mode};
use super::resolve::{Governing, Resolved};
use super::rule::GuestRule;
use super::selector::{Part, Selector};
use super::Policy;
use crate::inventory::{Change, Guest};
use crate::pve::{Operation, Vmid};

impl Policy {
    /// [`Policy::decide_in`], then sticky protection for `change`.
    pub fn decide_with_change(
        &self,
        op: &Operation,
        change: Option<&Change>,
        identity: Option<&str>,
        view: Option<&Resolved>,
    ) -> Decision {
        let d = self.decide_in(op, identity, view);
        match (d, change, view) {
            (Decision::Allow(AllowReason::Permitted), Some(c), Some(v)) => {
                match self.sticky(c, identity, v) {
                    Some(r) => Decision::Deny(r),
                    None => d,
                }
            }
            _ => d,
        }
    }

    /// [`Policy::judge`] with an inventory view and the request's [`Change`].
    pub fn judge_in(
        &self,
        op: &Operation,
        change: Option<&Change>,
        identity: Option<&str>,
        mode: Mode,
        view: Option<&Resolved>,
    ) -> Judgement {
        let enforced = self.decide_with_change(op, change, identity, view);
        match (enforced, self.shadowed(), mode) {
            (Decision::Deny(r), _, Mode::Enforce) => Judgement::Deny(r),
            (Decision::Deny(r), None, Mode::Shadow) => Judgement::WouldDeny(r),
            (Decision::Allow(a), None, _) => Judgement::Allow(a),
            (_, Some(full), _) => match full.decide_with_change(op, change, identity, view) {
                Decision::Deny(r) => Judgement::WouldDeny(r),
                Decision::Allow(a) => Judgement::Allow(a),
            },
        }
    }

    /// The refusal `change` earns by taking protection away, if it does.
    pub fn sticky(
        &self,
        change: &Change,
        identity: Option<&str>,
        view: &Resolved,
    ) -> Option<DenyReason> {
        let snap = &view.snapshot;
        match change {
            Change::GuestConfig {
                vmid,
                tags,
                name,
                clears_protection,
                ..
            } => {
                if *clears_protection {
                    if let Some(rule) = self.protecting_rule(*vmid, identity, view) {
                        return Some(DenyReason::Sticky {
                            vmid: *vmid,
                            rule,
                            part: Part::Protection,
                        });
                    }
                }
                let g = snap.guests.get(vmid)?;
                let touched = |s: &Selector| {
                    (tags.is_some() && !s.tags.is_empty()) || (name.is_some() && s.name.is_some())
                };
                if !self.may_lose(*vmid, identity, view, touched) {
                    return None;
                }
                let mut after = g.clone();
                if let Some(t) = tags {
                    after.tags = t.clone();
                }
                if let Some(n) = name {
                    after.name = n.clone();
                }
                self.lost_selector(g, &after, identity, view)
            }
            Change::PoolMembers { pool, vms, remove } => vms.iter().find_map(|v| {
                let g = snap.guests.get(v)?;
                if !self.may_lose(*v, identity, view, by_pool) {
                    return None;
                }
                let mut after = g.clone();
                if *remove {
                    if g.pool.as_deref() == Some(pool.as_str()) {
                        after.pool = None;
                    }
                } else {
                    after.pool = Some(pool.clone());
                }
                self.lost_selector(g, &after, identity, view)
            }),
            // Members governed alike lose alike when only their pool goes: the lowest of
            // each kind (the pool's representatives) stands for the others.
            Change::PoolDelete { pool } => view.pool_judged(pool).iter().find_map(|v| {
                let g = snap.guests.get(v)?;
                if !self.may_lose(*v, identity, view, by_pool) {
                    return None;
                }
                let mut after = g.clone();
                after.pool = None;
                self.lost_selector(g, &after, identity, view)
            }),
            _ => None,
        }
    }

    /// Whether a selector rule protects `vmid` against `identity` (no `vmid` rule governing
    /// it) and looks at a part of the guest the change alters (`touched`). Otherwise the
    /// change cannot take protection away, and the guest after it is not worth building:
    /// the rules `vmid` matches matched it as the snapshot has it, so only a part the change
    /// alters can stop matching.
    fn may_lose(
        &self,
        vmid: Vmid,
        identity: Option<&str>,
        view: &Resolved,
        touched: impl Fn(&Selector) -> bool,
    ) -> bool {
        if matches!(self.governing(vmid, Some(view)), Governing::Exact(_)) {
            return false;
        }
        view.matches(vmid).iter().any(|&i| {
            let r = &self.rules[i as usize];
            r.is_restrictive()
                && !r.exempt.matches(identity)
                && r.selector.as_ref().is_some_and(&touched)
        })
    }

    /// A selector rule that protects `before` and no longer matches `after`.
    fn lost_selector(
        &self,
        before: &Guest,
        after: &Guest,
        identity: Option<&str>,
        view: &Resolved,
    ) -> Option<DenyReason> {
        if matches!(self.governing(before.vmid, Some(view)), Governing::Exact(_)) {
            return None; // a vmid rule governs it whatever its tags, pool or name
        }
        view.matches(before.vmid).iter().find_map(|&i| {
            let r = &self.rules[i as usize];
            if !r.is_restrictive() || r.exempt.matches(identity) {
                return None;
            }
            let sel = r.selector.as_ref()?;
            sel.first_mismatch(after).map(|part| DenyReason::Sticky {
                vmid: before.vmid,
                rule: Some(i),
                part: part.unwrap_or(Part::Tags),
            })
        })
    }

    /// The first rule that protects `vmid` against `identity` (`Some(None)`: the default).
    fn protecting_rule(
        &self,
        vmid: Vmid,
        identity: Option<&str>,
        view: &Resolved,
    ) -> Option<Option<u32>> {
        let protects = |r: &GuestRule| r.is_restrictive() && !r.exempt.matches(identity);
        match self.governing(vmid, Some(view)) {
            Governing::Exact(i) => protects(&self.rules[i as usize]).then_some(Some(i)),
            Governing::Default => protects(&self.default_rule).then_some(None),
            Governing::Matched(sel, range) => sel
                .iter()
                .copied()
                .chain(range)
                .find(|&i| protects(&self.rules[i as usize]))
                .map(Some),
        }
    }
}

/// A pool change alters a guest's pool only.
fn by_pool(s: &Selector) -> bool {
    s.pool.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Snapshot;
    use crate::pve::{GuestSet, Route};
    use std::sync::Arc;

    const POLICY: &str = r#"
[[guest]]
tags = ["prod"]
access = "managed"
deny = ["destroy"]

[[guest]]
pool = "core"
access = "managed"
deny = ["destroy"]
exempt = ["ops@pve"]

[[guest]]
name = "doc*"
access = "managed"
deny = ["power.*"]

[[guest]]
vmid = 300
access = "managed"
deny = ["destroy"]
"#;

    fn snap() -> Arc<Snapshot> {
        let mut s = Snapshot::empty();
        for (vmid, name, tags, pool) in [
            (104, "doc1", "prod", None),
            (105, "web", "", Some("core")),
            (106, "free", "", None),
            (300, "pinned", "prod", None),
        ] {
            s.guests.insert(
                vmid,
                Guest {
                    vmid,
                    name: name.into(),
                    node: "pve".into(),
                    kind: crate::inventory::GuestType::Qemu,
                    tags: crate::inventory::split_tags(tags),
                    pool: pool.map(Into::into),
                    template: false,
                    status: "running".into(),
                },
            );
        }
        Arc::new(s)
    }

    fn config(vmid: Vmid, tags: Option<&str>, name: Option<&str>, clear: bool) -> Change {
        Change::GuestConfig {
            vmid,
            tags: tags.map(crate::inventory::split_tags),
            name: name.map(Into::into),
            clears_protection: clear,
            devices: vec![],
        }
    }

    #[test]
    fn taking_protection_away_is_refused() {
        let p = Policy::from_toml_str("s.toml", POLICY).unwrap();
        let v = p.resolve(snap(), 0);
        let op = |vmid| {
            Operation::new(
                Route::Known("/nodes/{node}/qemu/{vmid}/config"),
                "config.write".parse().unwrap(),
                GuestSet::one(vmid),
            )
        };
        let d = |c: &Change, vmid, who| p.decide_with_change(&op(vmid), Some(c), who, Some(&v));
        // removing the tag
        assert!(matches!(
            d(&config(104, Some("web"), None, false), 104, None),
            Decision::Deny(DenyReason::Sticky {
                vmid: 104,
                part: Part::Tags,
                ..
            })
        ));
        // keeping it (other tags change) is fine; case does not matter
        assert_eq!(
            d(&config(104, Some("PROD;web"), None, false), 104, None).verdict(),
            super::super::Verdict::Allow
        );
        // renaming past the name rule
        assert!(matches!(
            d(&config(104, None, Some("web1"), false), 104, None),
            Decision::Deny(DenyReason::Sticky {
                part: Part::Name,
                ..
            })
        ));
        // clearing protection of a protected guest; of an unprotected one it is fine
        assert!(matches!(
            d(&config(104, None, None, true), 104, None),
            Decision::Deny(DenyReason::Sticky {
                part: Part::Protection,
                ..
            })
        ));
        assert!(matches!(
            d(&config(106, None, None, true), 106, None),
            Decision::Allow(_)
        ));
        // adding protection is always fine
        assert!(matches!(
            d(&config(106, Some("prod"), None, false), 106, None),
            Decision::Allow(_)
        ));
        // a vmid rule governs whatever the tag
        assert!(matches!(
            d(&config(300, Some(""), None, false), 300, None),
            Decision::Allow(_)
        ));
        // out of the pool; the exempt identity may
        let out = Change::PoolMembers {
            pool: "core".into(),
            vms: vec![105],
            remove: true,
        };
        assert!(matches!(
            d(&out, 105, None),
            Decision::Deny(DenyReason::Sticky {
                part: Part::Pool,
                ..
            })
        ));
        assert!(matches!(d(&out, 105, Some("ops@pve")), Decision::Allow(_)));
        let gone = Change::PoolDelete {
            pool: "core".into(),
        };
        assert!(matches!(d(&gone, 105, None), Decision::Deny(_)));
        let msg = p.deny_message(
            &DenyReason::Sticky {
                vmid: 104,
                rule: Some(0),
                part: Part::Tags,
            },
            "config.write".parse().unwrap(),
            "PUT /x",
        );
        assert!(
            msg.contains("VM 104 is protected by guests tags = [\"prod\"] (s.toml:3)"),
            "{msg}"
        );
    }
}
