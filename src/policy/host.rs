//! The `host.access` part of a decision: a request that carries host-reaching values
//! ([`crate::pve::host`]) reaches every guest, so every rule that protects a guest must
//! permit each value (its own `host_paths`/`host_devices`, the `[settings]` ones, an
//! `allow = ["host.access"]`, or an exemption of the identity). No allocation.

use super::decide::{Decision, DenyReason};
use super::rule::{Access, ActionSet, GuestRule};
use super::Policy;
use crate::pve::{Action, Operation};

impl GuestRule {
    /// Whether this rule objects to host access it does not list: a readonly rule unless it
    /// allows `host.access`, a managed rule that refuses anything (a host path can destroy
    /// or read its guest's disks whatever action the request names).
    #[inline]
    pub fn refuses_host(&self) -> bool {
        match self.access {
            Access::Readonly => !self.allow.contains(Action::HostAccess),
            Access::Managed => self.deny != ActionSet::default(),
        }
    }
}

impl Policy {
    /// The refusal for the host-reaching values of `op`, if any rule objects to one of them.
    pub(super) fn decide_host(&self, op: &Operation, identity: Option<&str>) -> Option<Decision> {
        if op.host.is_empty() {
            return None;
        }
        if self.deny_actions.contains(Action::HostAccess) {
            return Some(Decision::Deny(DenyReason::Action(Action::HostAccess)));
        }
        for u in &op.host {
            if self.host.permits(&u.target) {
                continue;
            }
            let objects = |r: &GuestRule| {
                r.refuses_host() && !r.exempt.matches(identity) && !r.host.permits(&u.target)
            };
            for &i in &self.restrictive {
                if objects(&self.rules[i as usize]) {
                    return Some(Decision::Deny(DenyReason::Host { rule: Some(i) }));
                }
            }
            if objects(&self.default_rule) {
                return Some(Decision::Deny(DenyReason::Host { rule: None }));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Decision, Verdict};
    use crate::pve::host::{HostTarget, HostUse};
    use crate::pve::{GuestSet, Route};

    const POLICY: &str = r#"
[settings]
host_paths = ["/mnt/pve/isos/*"]

[[guest]]
vmid = 104
access = "readonly"
host_devices = ["0000:01:00.0"]

[[guest]]
vmid = 109
access = "readonly"
allow = ["host.access"]

[[guest]]
vmids = "9000-9099"
access = "managed"
deny = ["destroy"]
exempt = ["tofu@pve!*"]
host_devices = ["0000:01:00.*"]
"#;

    fn op(targets: &[HostTarget]) -> Operation {
        let mut o = Operation::new(
            Route::Known("/nodes/{node}/qemu/{vmid}/config"),
            Action::ConfigWrite,
            GuestSet::one(110),
        );
        o.host = targets
            .iter()
            .map(|t| HostUse {
                key: "k0".into(),
                target: t.clone(),
            })
            .collect();
        o
    }

    fn path(p: &str) -> HostTarget {
        HostTarget::Path {
            path: p.into(),
            plain: true,
        }
    }

    #[test]
    fn host_decision_table() {
        let p = Policy::from_toml_str("h.toml", POLICY).unwrap();
        let dev = |d: &str| HostTarget::Device(d.into());
        let cases: &[(&[HostTarget], Option<&str>, Verdict)] = &[
            (&[], None, Verdict::Allow),
            (&[path("/mnt/pve/isos/a.iso")], None, Verdict::Allow),
            (&[path("/dev/sdb")], None, Verdict::Deny),
            // 104 and the range permit it, 109 allows host.access
            (&[dev("0000:01:00.0")], None, Verdict::Allow),
            // the range permits 01:00.1, 104 does not
            (&[dev("0000:01:00.1")], None, Verdict::Deny),
            // every value must be permitted
            (
                &[path("/mnt/pve/isos/a.iso"), path("/dev/sdb")],
                None,
                Verdict::Deny,
            ),
            (&[HostTarget::Args], None, Verdict::Deny),
            (&[HostTarget::Args], Some("tofu@pve!ci"), Verdict::Deny),
        ];
        for (targets, id, want) in cases {
            let d = p.decide(&op(targets), *id);
            assert_eq!(d.verdict(), *want, "{targets:?} as {id:?}: {d:?}");
        }
        let Decision::Deny(r) = p.decide(&op(&[path("/dev/sdb")]), None) else {
            panic!()
        };
        assert_eq!(r, DenyReason::Host { rule: Some(0) });
        let m = p.deny_message(&r, Action::ConfigWrite, "PUT /x");
        assert!(
            m.contains("host.access refused") && m.contains("VM 104"),
            "{m}"
        );
    }

    #[test]
    fn who_objects() {
        // Managed without deny, and an empty policy, protect nothing (both must be declared
        // deliberate with allow_empty).
        for src in [
            "[settings]\nallow_empty = true\n",
            "[settings]\nallow_empty = true\n[[guest]]\nvmid = 104\naccess = \"managed\"\n",
        ] {
            let p = Policy::from_toml_str("h.toml", src).unwrap();
            assert_eq!(
                p.decide(&op(&[HostTarget::Args]), None).verdict(),
                Verdict::Allow
            );
        }
        // default_access = readonly protects unlisted guests.
        let p =
            Policy::from_toml_str("h.toml", "[settings]\ndefault_access = \"readonly\"\n").unwrap();
        assert_eq!(
            p.decide(&op(&[path("/dev/sdb")]), None),
            Decision::Deny(DenyReason::Host { rule: None })
        );
        // An exempt identity on the only protecting rule passes.
        let p = Policy::from_toml_str(
            "h.toml",
            "[[guest]]\nvmid = 104\naccess = \"readonly\"\nexempt = [\"ops@pam\"]\n",
        )
        .unwrap();
        assert_eq!(
            p.decide(&op(&[HostTarget::Args]), Some("ops@pam"))
                .verdict(),
            Verdict::Allow
        );
        assert_eq!(
            p.decide(&op(&[HostTarget::Args]), Some("other@pam"))
                .verdict(),
            Verdict::Deny
        );
    }

    #[test]
    fn bad_patterns_are_located() {
        for (src, at) in [
            ("[settings]\nhost_paths = [\"relative/x\"]\n", "h.toml:2"),
            ("[settings]\nhost_paths = [\"/a/../b\"]\n", "h.toml:2"),
            (
                "[[guest]]\nvmid = 104\naccess = \"readonly\"\nhost_devices = [\"a b\"]\n",
                "h.toml:4",
            ),
        ] {
            let e = Policy::from_toml_str("h.toml", src)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(at), "{src:?} -> {e}");
        }
    }
}
