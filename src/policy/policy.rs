//! [`Policy`]: the compiled, immutable policy and its rule lookups. It is built by
//! [`compile`](super::compile), decides in [`decide`](super::decide) and is held live by
//! [`store`](super::store).

use std::path::PathBuf;

use super::rule::{Access, ActionSet, Exempt, GuestRule};
use crate::pve::host::HostPermit;
use crate::pve::Vmid;

/// A compiled, validated policy: cheap to query, immutable, swapped whole on reload.
#[derive(Clone, Debug)]
pub struct Policy {
    pub(super) rules: Vec<GuestRule>,
    pub(super) by_vmid: super::FastMap<Vmid, u32>,
    /// Sorted, non-overlapping ranges -> rule index.
    pub(super) ranges: Vec<(Vmid, Vmid, u32)>,
    /// Indexes of rules with selectors (matched through an inventory snapshot).
    pub(super) selector_rules: Vec<u32>,
    /// Rule for guests no entry names.
    pub(super) default_rule: GuestRule,
    pub(super) strict: bool,
    pub(super) deny_actions: ActionSet,
    pub(super) exempt: Exempt,
    /// `[settings] host_paths` / `host_devices`: host values no rule objects to.
    pub(super) host: HostPermit,
    /// Indexes of rules that refuse at least one action (for requests that touch every guest).
    pub(super) restrictive: Vec<u32>,
    /// `[settings] hint`: ends every refusal whose rule has no hint of its own.
    pub(super) hint: Option<String>,
    /// The files it was built from.
    pub files: Vec<PathBuf>,
    /// Counts successful loads of the live policy (set by the store; 1 for the first).
    pub generation: u64,
    /// Foot-guns found while compiling, each `file:line: text` (shown by `validate`, logged
    /// at start and on reload).
    pub warnings: Vec<String>,
    /// When some rules are in shadow mode: the same policy with them enforced, which says
    /// what would have been refused (`would-deny`). This policy treats them as refusing
    /// nothing.
    pub(super) shadowed: Option<std::sync::Arc<Policy>>,
    /// Whether any exemption exists (global or on a rule), so allowed requests look for the
    /// one they used only when there can be one.
    pub(super) any_exempt: bool,
    /// `[settings] approve`: actions that need an approval whatever guests they touch.
    pub(super) approve: ActionSet,
    /// `[settings] approvers`: distinct approvers an approval needs (at least 1).
    pub(super) approvers: u8,
    /// Whether `[settings]` or any rule has an `approve` list (else no request needs approval).
    pub(super) any_approve: bool,
}

impl Policy {
    /// Whether this policy (with its shadow rules counted as enforced) refuses nothing at all.
    pub fn protects_nothing(&self) -> bool {
        let full = self.shadowed.as_deref().unwrap_or(self);
        full.restrictive.is_empty()
            && full.default_rule.access == Access::Managed
            && full.deny_actions == ActionSet::default()
            && !full.strict
            && full.approve.is_empty()
    }

    /// With shadow rules: the policy with them enforced (what would be refused).
    pub fn shadowed(&self) -> Option<&Policy> {
        self.shadowed.as_deref()
    }

    /// The rule that governs `vmid`: an exact entry, else a range, else the default (`None`).
    #[inline]
    pub fn rule_index(&self, vmid: Vmid) -> Option<u32> {
        if let Some(&i) = self.by_vmid.get(&vmid) {
            return Some(i);
        }
        let pos = self.ranges.partition_point(|r| r.0 <= vmid);
        match pos.checked_sub(1).map(|p| self.ranges[p]) {
            Some((_, hi, i)) if vmid <= hi => Some(i),
            _ => None,
        }
    }

    /// The rule at an index from [`Policy::rule_index`] (`None`: the default rule).
    #[inline]
    pub fn rule_at(&self, index: Option<u32>) -> &GuestRule {
        index.map_or(&self.default_rule, |i| &self.rules[i as usize])
    }

    /// The rule that governs `vmid`.
    pub fn rule_for(&self, vmid: Vmid) -> &GuestRule {
        self.rule_at(self.rule_index(vmid))
    }

    /// Every explicit rule, in file order.
    pub fn rules(&self) -> &[GuestRule] {
        &self.rules
    }

    /// Whether unknown writes are refused.
    pub fn strict(&self) -> bool {
        self.strict
    }

    /// The rule applied to guests without an entry.
    pub fn default_rule(&self) -> &GuestRule {
        &self.default_rule
    }
}
