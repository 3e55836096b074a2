//! Enforce or shadow: what happens to a [`Decision`] ([`Policy::judge`]), and which exemption
//! let a request through ([`Policy::exemption_used`]), for the audit and `pvegate check`.

use super::decide::{AllowReason, Decision, DenyReason};
use super::Policy;
use crate::pve::{GuestSet, Operation};

/// `[policy] mode` in the config: whether refusals are enforced or only logged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Refusals are answered (the default).
    #[default]
    Enforce,
    /// Nothing is refused: what would be is forwarded and logged as `would-deny`.
    Shadow,
}

/// What to do with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Forward it.
    Allow(AllowReason),
    /// Refuse it.
    Deny(DenyReason),
    /// Forward it, but log that the policy refuses it (shadow mode, whole or per rule).
    WouldDeny(DenyReason),
}

impl Judgement {
    /// The decision as the policy made it (a would-deny is a deny).
    pub fn decision(self) -> Decision {
        match self {
            Judgement::Allow(a) => Decision::Allow(a),
            Judgement::Deny(r) | Judgement::WouldDeny(r) => Decision::Deny(r),
        }
    }
}

impl Policy {
    /// Decides `op` and applies the mode: with `Mode::Shadow`, or for a refusal that only
    /// a shadow rule makes, the request is forwarded and marked [`Judgement::WouldDeny`].
    /// Rule labels and messages of a would-deny come from [`Policy::explaining`].
    #[inline]
    pub fn judge(&self, op: &Operation, identity: Option<&str>, mode: Mode) -> Judgement {
        let enforced = self.decide(op, identity);
        match (enforced, self.shadowed(), mode) {
            (Decision::Deny(r), _, Mode::Enforce) => Judgement::Deny(r),
            (Decision::Deny(r), None, Mode::Shadow) => Judgement::WouldDeny(r),
            (Decision::Allow(a), None, _) => Judgement::Allow(a),
            (_, Some(full), _) => match full.decide(op, identity) {
                Decision::Deny(r) => Judgement::WouldDeny(r),
                Decision::Allow(a) => Judgement::Allow(a),
            },
        }
    }

    /// The policy whose rules explain a judgement: with shadow rules, the one that enforces
    /// them (rule indexes are the same in both).
    pub fn explaining(&self) -> &Policy {
        self.shadowed().unwrap_or(self)
    }

    /// The exemption that let `identity` through where a rule would have refused `op`:
    /// `settings.exempt "root@pam"` or `guest 104 (file:line) exempt "media@pve!*"`.
    /// `None` when no exemption mattered. Not on the decision path: only called for allowed
    /// requests of policies that have exemptions.
    pub fn exemption_used(&self, op: &Operation, identity: Option<&str>) -> Option<String> {
        identity?;
        let p = self.explaining();
        if let Some(pat) = p.exempt.matching_pattern(identity) {
            let refused = p.decide(op, None);
            return matches!(refused, Decision::Deny(_))
                .then(|| format!("settings.exempt {pat:?}"));
        }
        if op.action.is_read() {
            return None;
        }
        let rules: Box<dyn Iterator<Item = Option<u32>>> = match &op.guests {
            GuestSet::None => return None,
            GuestSet::Some(list) => Box::new(list.iter().map(|&v| p.rule_index(v))),
            GuestSet::All => Box::new(p.restrictive.iter().map(|&i| Some(i)).chain([None])),
        };
        for index in rules {
            let rule = p.rule_at(index);
            if rule.refuses(op.action) {
                if let Some(pat) = rule.exempt.matching_pattern(identity) {
                    let label = if index.is_some() {
                        rule.label()
                    } else {
                        "default rule".into()
                    };
                    return Some(format!("{label} exempt {pat:?}"));
                }
            }
        }
        None
    }

    /// Whether any exemption exists (global or on a rule).
    #[inline]
    pub fn has_exemptions(&self) -> bool {
        self.explaining().any_exempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::{Action, Route, Vmid};

    const POLICY: &str = r#"
[settings]
exempt = ["breakglass@pam"]

[[guest]]
vmid = 104
access = "readonly"

[[guest]]
vmid = 105
access = "readonly"
mode = "shadow"
exempt = ["media@pve!*"]
"#;

    fn op(action: Action, guests: &[Vmid]) -> Operation {
        Operation::new(
            Route::Known("/nodes/{node}/qemu/{vmid}/status/stop"),
            action,
            GuestSet::Some(guests.to_vec()),
        )
    }

    #[test]
    fn shadow_rules_only_log_and_never_weaken_enforced_ones() {
        let p = Policy::from_toml_str("t.toml", POLICY).unwrap();
        let j = |g: &[Vmid], mode| p.judge(&op(Action::PowerStop, g), None, mode);
        assert!(matches!(j(&[104], Mode::Enforce), Judgement::Deny(_)));
        assert!(matches!(j(&[105], Mode::Enforce), Judgement::WouldDeny(_)));
        // The shadow rule comes first, the enforced one still refuses.
        assert!(matches!(j(&[105, 104], Mode::Enforce), Judgement::Deny(_)));
        assert!(matches!(j(&[110], Mode::Enforce), Judgement::Allow(_)));
        assert!(matches!(j(&[104], Mode::Shadow), Judgement::WouldDeny(_)));
        assert!(matches!(j(&[110], Mode::Shadow), Judgement::Allow(_)));
        let read = p.judge(&op(Action::Read, &[105]), None, Mode::Enforce);
        assert!(matches!(read, Judgement::Allow(_)));
    }

    #[test]
    fn the_exemption_used_is_named() {
        let p = Policy::from_toml_str("t.toml", POLICY).unwrap();
        let o = op(Action::PowerStop, &[104]);
        assert_eq!(
            p.exemption_used(&o, Some("breakglass@pam")).as_deref(),
            Some("settings.exempt \"breakglass@pam\"")
        );
        let o = op(Action::PowerStop, &[105]);
        let used = p.exemption_used(&o, Some("media@pve!jf")).unwrap();
        assert!(
            used.starts_with("guest 105 (t.toml:") && used.ends_with("exempt \"media@pve!*\""),
            "{used}"
        );
        assert_eq!(p.exemption_used(&o, Some("other@pve")), None);
        assert_eq!(
            p.exemption_used(&op(Action::Read, &[104]), Some("breakglass@pam")),
            None
        );
    }
}
