//! `Policy::decide`: the pure decision function. No I/O, no locks, no allocation.

use std::borrow::Cow;

use super::rule::GuestRule;
use super::Policy;
use crate::pve::{Action, GuestSet, Operation, Route, Vmid};

/// Allowed or refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

/// Why a request was allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllowReason {
    /// The action has no side effect.
    Read,
    /// The identity is exempt from the whole policy.
    Exempt,
    /// Every guest it touches permits the action (or it touches none).
    Permitted,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// `[settings] deny_actions` lists this action.
    Action(Action),
    /// An endpoint pvegate does not know, in strict mode.
    Strict,
    /// A guest's rule refuses the action. `rule` is `None` for the default rule.
    Guest { vmid: Vmid, rule: Option<u32> },
    /// The request acts on every guest and this rule refuses the action.
    AllGuests { rule: Option<u32> },
    /// The request reaches the host (a host path, device, raw `args`, hook script), so every
    /// guest, and this rule does not permit it (`host.access`).
    Host { rule: Option<u32> },
    /// The change would take away what makes a guest protected (its tag, pool, name or
    /// `protection` flag): refused like a change to it ([`super::sticky`]).
    Sticky {
        vmid: Vmid,
        rule: Option<u32>,
        part: super::selector::Part,
    },
}

/// The outcome of [`Policy::decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow(AllowReason),
    Deny(DenyReason),
}

impl Decision {
    /// Allow or deny.
    pub fn verdict(&self) -> Verdict {
        match self {
            Decision::Allow(_) => Verdict::Allow,
            Decision::Deny(_) => Verdict::Deny,
        }
    }
}

impl Policy {
    /// Decides one operation for one identity (`user@realm` or `user@realm!token`), without
    /// an inventory (selector rules match no guest).
    pub fn decide(&self, op: &Operation, identity: Option<&str>) -> Decision {
        self.decide_in(op, identity, None)
    }

    /// [`Policy::decide`] with the selector matches of an inventory snapshot
    /// ([`Resolved`](super::resolve::Resolved), built for this policy).
    pub fn decide_in(
        &self,
        op: &Operation,
        identity: Option<&str>,
        view: Option<&super::resolve::Resolved>,
    ) -> Decision {
        if self.exempt.matches(identity) {
            return Decision::Allow(AllowReason::Exempt);
        }
        if self.deny_actions.contains(op.action) {
            return Decision::Deny(DenyReason::Action(op.action));
        }
        if op.action.is_read() {
            return Decision::Allow(AllowReason::Read);
        }
        if self.strict && op.route == Route::Unknown {
            return Decision::Deny(DenyReason::Strict);
        }
        if let Some(d) = self.decide_host(op, identity) {
            return d;
        }
        match &op.guests {
            GuestSet::None => Decision::Allow(AllowReason::Permitted),
            GuestSet::Some(list) => {
                // The representatives of a pool, storage... judge like all their members.
                for &vmid in op.to_judge(list, view.map(|v| v.id)) {
                    if let Some(index) = self.refusing_rule(vmid, op.action, identity, view) {
                        return Decision::Deny(DenyReason::Guest { vmid, rule: index });
                    }
                }
                Decision::Allow(AllowReason::Permitted)
            }
            GuestSet::All => {
                for &i in &self.restrictive {
                    let rule = &self.rules[i as usize];
                    if rule.refuses(op.action) && !rule.exempt.matches(identity) {
                        return Decision::Deny(DenyReason::AllGuests { rule: Some(i) });
                    }
                }
                let d = &self.default_rule;
                if d.refuses(op.action) && !d.exempt.matches(identity) {
                    return Decision::Deny(DenyReason::AllGuests { rule: None });
                }
                Decision::Allow(AllowReason::Permitted)
            }
        }
    }

    /// The rule label behind a decision, for audit logs and `pvegate check` (borrowed for the
    /// common cases, so logging an allowed request does not allocate).
    pub fn rule_label(&self, d: &Decision) -> Cow<'static, str> {
        match d {
            Decision::Allow(AllowReason::Read) => Cow::Borrowed("read"),
            Decision::Allow(AllowReason::Exempt) => Cow::Borrowed("exempt identity"),
            Decision::Allow(AllowReason::Permitted) => Cow::Borrowed("permitted"),
            Decision::Deny(DenyReason::Action(a)) => {
                Cow::Owned(format!("settings.deny_actions {}", a.as_str()))
            }
            Decision::Deny(DenyReason::Strict) => Cow::Borrowed("settings.strict"),
            Decision::Deny(
                DenyReason::Guest { rule, .. }
                | DenyReason::AllGuests { rule }
                | DenyReason::Host { rule }
                | DenyReason::Sticky { rule, .. },
            ) => {
                let r = self.rule_at(*rule);
                Cow::Owned(if rule.is_some() {
                    r.label()
                } else {
                    format!("settings.default_access ({})", r.origin)
                })
            }
        }
    }

    /// Why the request is refused, as the client will read it after pvegate's prefix
    /// (`crate::reject` adds `pvegate: ` and the permission-check wrapper). It names the rule that
    /// refused (the guest's rule, a range with its name, `default_access`, or a setting) and
    /// ends with the policy's hint for that rule. `what` names the request for messages that
    /// have no guest ("POST /nodes/pve/newcall").
    pub fn deny_message(&self, reason: &DenyReason, action: Action, what: &str) -> String {
        let act = action.as_str();
        let with_reason = |r: &GuestRule, s: String| match &r.reason {
            Some(why) => format!("{s} ({why})"),
            None => s,
        };
        let (core, rule) = match reason {
            // The reason's own action: `host.access` rides on a request of another action.
            DenyReason::Action(a) => (
                format!("{a} is refused by [settings] deny_actions ({what})"),
                None,
            ),
            DenyReason::Strict => (
                format!(
                    "{what} is not in pvegate's API catalogue and [settings] strict refuses unknown changes"
                ),
                None,
            ),
            DenyReason::Guest { vmid, rule } => {
                let r = self.rule_at(*rule);
                let guest = match rule {
                    None => format!("VM {vmid}"),
                    Some(_) => describe_in_rule(r, *vmid),
                };
                let by = if rule.is_none() { " by default_access" } else { "" };
                let s = match r.access {
                    super::Access::Readonly => {
                        format!("{guest} is readonly{by}: {act} refused")
                    }
                    super::Access::Managed => {
                        format!("{guest}: {act} refused by policy")
                    }
                };
                (with_reason(r, s), rule.map(|_| r))
            }
            DenyReason::Sticky { vmid, rule, part } => {
                let r = self.rule_at(*rule);
                let by = match rule {
                    Some(_) => r.label(),
                    None => format!("default_access ({})", r.origin),
                };
                let s = format!(
                    "VM {vmid} is protected by {by}: this change would take away {}, so it is refused like any change to VM {vmid} ({act} refused)",
                    part.what()
                );
                (with_reason(r, s), rule.map(|_| r))
            }
            DenyReason::Host { rule } => {
                let r = self.rule_at(*rule);
                let who = if rule.is_some() {
                    rule_guests(r)
                } else {
                    "unlisted guests".to_string()
                };
                let s = format!(
                    "this request gives the guest a host path, host device, raw QEMU args or hook script, which can reach every guest, including {who} ({}): host.access refused; permit it with host_paths/host_devices in the policy",
                    r.access.as_str()
                );
                (with_reason(r, s), rule.map(|_| r))
            }
            DenyReason::AllGuests { rule } => {
                let r = self.rule_at(*rule);
                let (who, which) = match rule {
                    None => (
                        "unlisted guests".to_string(),
                        "which are readonly by default_access".to_string(),
                    ),
                    Some(_) => (rule_guests(r), "which is readonly".to_string()),
                };
                let s = match r.access {
                    super::Access::Readonly => format!(
                        "this request acts on every guest, including {who}, {which}: {act} refused"
                    ),
                    super::Access::Managed => format!(
                        "this request acts on every guest, including {who}, whose policy refuses {act}"
                    ),
                };
                (with_reason(r, s), rule.map(|_| r))
            }
        };
        format!("{core}; hint: {}", self.hint_for(rule))
    }
}

/// "VM 104 'doc1'" for a one-guest rule, "VM 9005 (range 9000-9099 'templates')" for a range.
fn describe_in_rule(r: &GuestRule, vmid: Vmid) -> String {
    if let Some(s) = &r.selector {
        return format!("VM {vmid} (selected by {})", s.describe());
    }
    if r.vmids.0 == r.vmids.1 {
        return r.describe_guest(vmid);
    }
    format!("VM {vmid} ({})", range_label(r))
}

/// The guests a rule covers, as a refusal names them.
fn rule_guests(r: &GuestRule) -> String {
    if let Some(s) = &r.selector {
        return format!("the guests selected by {}", s.describe());
    }
    if r.vmids.0 == r.vmids.1 {
        r.describe_guest(r.vmids.0)
    } else {
        format!("guests {}", range_label(r).trim_start_matches("range "))
    }
}

fn range_label(r: &GuestRule) -> String {
    match &r.name {
        Some(n) => format!("range {}-{} '{n}'", r.vmids.0, r.vmids.1),
        None => format!("range {}-{}", r.vmids.0, r.vmids.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::Operation;

    const POLICY: &str = r#"
[settings]
deny_actions = ["node.execute"]
exempt = ["breakglass@pam"]

[[guest]]
vmid = 104
name = "doc1"
access = "readonly"
reason = "Main services VM"

[[guest]]
vmid = 109
name = "igp"
access = "readonly"
allow = ["snapshot.*", "backup"]
exempt = ["media@pve!*"]

[[guest]]
vmids = "9000-9099"
access = "managed"
deny = ["destroy"]
"#;

    fn policy() -> Policy {
        Policy::from_toml_str("t.toml", POLICY).unwrap()
    }

    fn op(action: &str, guests: GuestSet) -> Operation {
        Operation::new(
            Route::Known("/nodes/{node}/qemu/{vmid}/status/stop"),
            action.parse().unwrap(),
            guests,
        )
    }

    fn some(v: &[Vmid]) -> GuestSet {
        GuestSet::Some(v.to_vec())
    }

    #[test]
    fn decision_table() {
        let p = policy();
        let cases: &[(&str, GuestSet, Option<&str>, Verdict)] = &[
            ("read", some(&[104]), None, Verdict::Allow),
            ("power.stop", some(&[104]), None, Verdict::Deny),
            ("power.stop", some(&[110]), None, Verdict::Allow),
            ("power.stop", some(&[110, 104]), None, Verdict::Deny),
            ("console", some(&[109]), None, Verdict::Deny),
            ("snapshot.create", some(&[109]), None, Verdict::Allow),
            ("snapshot.rollback", some(&[109]), None, Verdict::Allow),
            ("backup", some(&[109]), None, Verdict::Allow),
            (
                "config.write",
                some(&[109]),
                Some("media@pve!jellyfin"),
                Verdict::Allow,
            ),
            (
                "config.write",
                some(&[109]),
                Some("media@pve"),
                Verdict::Deny,
            ),
            (
                "config.write",
                some(&[104]),
                Some("breakglass@pam"),
                Verdict::Allow,
            ),
            ("destroy", some(&[9001]), None, Verdict::Deny),
            ("power.start", some(&[9001]), None, Verdict::Allow),
            ("destroy", some(&[9100]), None, Verdict::Allow),
            ("power.stop", GuestSet::All, None, Verdict::Deny),
            ("power.stop", GuestSet::None, None, Verdict::Allow),
            ("node.execute", GuestSet::None, None, Verdict::Deny),
            ("write", some(&[110]), None, Verdict::Allow),
        ];
        for (action, guests, id, want) in cases {
            let d = p.decide(&op(action, guests.clone()), *id);
            assert_eq!(d.verdict(), *want, "{action} {guests:?} as {id:?}: {d:?}");
        }
    }

    #[test]
    fn strict_mode_refuses_unknown_writes_only() {
        let p = Policy::from_toml_str("s.toml", "[settings]\nstrict = true\n").unwrap();
        let mut o = op("write", GuestSet::None);
        o.route = Route::Unknown;
        assert_eq!(p.decide(&o, None), Decision::Deny(DenyReason::Strict));
        o.action = Action::Read;
        assert_eq!(p.decide(&o, None).verdict(), Verdict::Allow);
    }

    #[test]
    fn default_readonly_makes_unlisted_guests_readonly() {
        let src = "[settings]\ndefault_access = \"readonly\"\n[[guest]]\nvmid = 110\naccess = \"managed\"\n";
        let p = Policy::from_toml_str("d.toml", src).unwrap();
        assert_eq!(
            p.decide(&op("power.stop", some(&[110])), None).verdict(),
            Verdict::Allow
        );
        assert_eq!(
            p.decide(&op("power.stop", some(&[111])), None).verdict(),
            Verdict::Deny
        );
        assert_eq!(
            p.decide(&op("power.stop", GuestSet::All), None).verdict(),
            Verdict::Deny
        );
    }

    #[test]
    fn messages_name_guest_reason_and_action() {
        let p = policy();
        let Decision::Deny(r) = p.decide(&op("power.stop", some(&[104])), None) else {
            panic!()
        };
        assert_eq!(
            p.deny_message(&r, "power.stop".parse().unwrap(), "POST /x"),
            "VM 104 'doc1' is readonly: power.stop refused (Main services VM); hint: ask whoever runs pvegate to change its policy if you need this"
        );
        let Decision::Deny(r) = p.decide(&op("power.stop", GuestSet::All), None) else {
            panic!()
        };
        let m = p.deny_message(&r, "power.stop".parse().unwrap(), "POST /x");
        assert!(
            m.contains("every guest") && m.contains("VM 104 'doc1'"),
            "{m}"
        );
        for banned in [
            "already running",
            "already exists",
            "does not exist",
            "got timeout",
        ] {
            assert!(!m.contains(banned));
        }
        assert!(p
            .rule_label(&Decision::Deny(r))
            .starts_with("guest 104 (t.toml:"));
    }

    #[test]
    fn compile_errors_are_located() {
        let cases = [
            ("[[guest]]\nvmid = 104\naccess = \"readonly\"\nallow = [\"power.stp\"]\n", "t.toml:4", "unknown action"),
            ("[[guest]]\nvmid = 99\naccess = \"readonly\"\n", "t.toml:2", "outside"),
            ("[[guest]]\nvmid = 104\naccess = \"readonly\"\n[[guest]]\nvmid = 104\naccess = \"managed\"\n", "t.toml:6", "already has a rule"),
            ("[[guest]]\nvmid = 104\naccess = \"ro\"\n", "t.toml:3", "readonly"),
            ("[[guest]]\nvmid = 104\naccess = \"readonly\"\ncolour = 1\n", "t.toml:4", "colour"),
            ("[[guest]]\nvmids = \"200-100\"\naccess = \"readonly\"\n", "t.toml:2", "range"),
            ("[settings]\nexempt = [\"root\"]\n", "t.toml:2", "exempt identity"),
        ];
        for (src, at, needle) in cases {
            let e = Policy::from_toml_str("t.toml", src)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(at) && e.contains(needle), "{src:?} -> {e}");
        }
    }
}
