//! `Policy::decide`: the pure decision function. No I/O, no locks, no allocation.

use super::compile::{GuestRule, Policy};
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
    /// Decides one operation for one identity (`user@realm` or `user@realm!token`).
    pub fn decide(&self, op: &Operation, identity: Option<&str>) -> Decision {
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
        match &op.guests {
            GuestSet::None => Decision::Allow(AllowReason::Permitted),
            GuestSet::Some(list) => {
                for &vmid in list {
                    let index = self.rule_index(vmid);
                    let rule = self.rule_at(index);
                    if rule.refuses(op.action) && !rule.exempt.matches(identity) {
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

    /// The rule label behind a decision, for audit logs and `pvegate check`.
    pub fn rule_label(&self, d: &Decision) -> String {
        match d {
            Decision::Allow(AllowReason::Read) => "read".into(),
            Decision::Allow(AllowReason::Exempt) => "exempt identity".into(),
            Decision::Allow(AllowReason::Permitted) => "permitted".into(),
            Decision::Deny(DenyReason::Action(a)) => {
                format!("settings.deny_actions {}", a.as_str())
            }
            Decision::Deny(DenyReason::Strict) => "settings.strict".into(),
            Decision::Deny(DenyReason::Guest { rule, .. } | DenyReason::AllGuests { rule }) => {
                let r = self.rule_at(*rule);
                if rule.is_some() {
                    r.label()
                } else {
                    format!("settings.default_access ({})", r.origin)
                }
            }
        }
    }

    /// The text a refused client sees (it starts with `pvegate:`). `what` names the request
    /// for messages that have no guest ("POST /nodes/pve/newcall").
    pub fn deny_message(&self, reason: &DenyReason, action: Action, what: &str) -> String {
        let act = action.as_str();
        let with_reason = |r: &GuestRule, s: String| match &r.reason {
            Some(why) => format!("{s} ({why})"),
            None => s,
        };
        match reason {
            DenyReason::Action(_) => format!("pvegate: {act} is refused by policy ({what})"),
            DenyReason::Strict => format!(
                "pvegate: {what} is not in pvegate's API catalogue and strict mode refuses unknown changes"
            ),
            DenyReason::Guest { vmid, rule } => {
                let r = self.rule_at(*rule);
                let s = match r.access {
                    super::Access::Readonly => format!("pvegate: {} is readonly: {act} refused", r.describe_guest(*vmid)),
                    super::Access::Managed => format!("pvegate: {}: {act} refused by policy", r.describe_guest(*vmid)),
                };
                with_reason(r, s)
            }
            DenyReason::AllGuests { rule } => {
                let r = self.rule_at(*rule);
                let who = if rule.is_some() {
                    r.describe_guest(r.vmids.0)
                } else {
                    "unlisted guests".to_string()
                };
                let s = format!(
                    "pvegate: this request acts on every guest, and {who} {} {act}: refused",
                    if r.access == super::Access::Readonly { "is readonly, refusing" } else { "refuses" }
                );
                with_reason(r, s)
            }
        }
    }
}
