//! The `host.access` part of a decision: a request that carries host-reaching values
//! ([`crate::pve::host`]) reaches every guest, so every rule that protects a guest must
//! permit each value (its own `host_paths`/`host_devices`, the `[settings]` ones, an
//! `allow = ["host.access"]`, or an exemption of the identity). No allocation.

use super::compile::{Access, ActionSet, GuestRule, Policy};
use super::decide::{Decision, DenyReason};
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
