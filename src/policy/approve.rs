//! Which allowed requests still need a human's approval: `approve = [...]` on a rule and in
//! `[settings]` ([`Policy::approval_needed`]). Pure, like [`Policy::decide`]; the approval
//! state itself (pending requests, grants) lives in [`crate::approval`].

use super::Policy;
use crate::pve::{GuestSet, Operation};

/// Why a request needs approval, and how many distinct approvers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalNeed {
    /// The rule that asks for it: `guest 104 (file:line) approve destroy` or
    /// `settings.approve destroy`.
    pub rule: String,
    /// Distinct approvers (never the requester) the request needs, at least 1.
    pub approvers: u8,
}

impl Policy {
    /// Whether `op`, which the policy permits, needs an approval first: its action is in
    /// `[settings] approve`, or in `approve` of the rule of a guest it touches (of any
    /// rule that can apply, when it acts on every guest). Identities exempt from the whole
    /// policy, or from that rule, need none. With several rules asking, the largest
    /// `approvers` counts.
    pub fn approval_needed(&self, op: &Operation, identity: Option<&str>) -> Option<ApprovalNeed> {
        self.approval_needed_in(op, identity, None)
    }

    /// [`Policy::approval_needed`] with the inventory's `view`, so that rules that select
    /// guests by tag, pool, name, type or template ask for their approvals too.
    pub fn approval_needed_in(
        &self,
        op: &Operation,
        identity: Option<&str>,
        view: Option<&super::resolve::Resolved>,
    ) -> Option<ApprovalNeed> {
        let action = op.action;
        if !self.any_approve || action.is_read() || self.exempt.matches(identity) {
            return None;
        }
        let mut need: Option<ApprovalNeed> = None;
        let mut ask = |rule: &dyn Fn() -> String, approvers: u8| {
            let approvers = approvers.max(1);
            match &mut need {
                Some(n) => n.approvers = n.approvers.max(approvers),
                None => {
                    need = Some(ApprovalNeed {
                        rule: rule(),
                        approvers,
                    })
                }
            }
        };
        if self.approve.contains(action) {
            ask(
                &|| format!("settings.approve {}", action.as_str()),
                self.approvers,
            );
        }
        let mut consider = |index: Option<u32>| {
            let r = self.rule_at(index);
            if r.approve.contains(action) && !r.exempt.matches(identity) {
                let label = || {
                    let who = if index.is_some() {
                        r.label()
                    } else {
                        "settings.default_access".into()
                    };
                    format!("{who} approve {}", action.as_str())
                };
                let n = if r.approvers > 0 {
                    r.approvers
                } else {
                    self.approvers
                };
                ask(&label, n);
            }
        };
        match &op.guests {
            GuestSet::None => {}
            GuestSet::Some(list) => {
                for &v in op.to_judge(list, view.map(|v| v.id)) {
                    match self.governing(v, view) {
                        super::resolve::Governing::Exact(i) => consider(Some(i)),
                        super::resolve::Governing::Default => consider(None),
                        super::resolve::Governing::Matched(sel, range) => sel
                            .iter()
                            .copied()
                            .chain(range)
                            .for_each(|i| consider(Some(i))),
                    }
                }
            }
            GuestSet::All => {
                self.restrictive.iter().for_each(|&i| consider(Some(i)));
                consider(None);
            }
        }
        need
    }

    /// Whether any rule or `[settings]` asks for approvals (so `serve` prepares the state
    /// directory at start).
    pub fn uses_approvals(&self) -> bool {
        let p = self.explaining();
        !p.approve.is_empty() || p.rules.iter().any(|r| !r.approve.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Decision, Verdict};
    use crate::pve::{Action, Route, Vmid};

    const POLICY: &str = r#"
[settings]
approve = ["snapshot.rollback"]
exempt = ["breakglass@pam"]

[[guest]]
vmid = 104
access = "readonly"
approve = ["power.*"]
approvers = 2

[[guest]]
vmids = "200-299"
access = "managed"
approve = ["destroy"]
exempt = ["ops@pve!*"]
"#;

    fn op(action: Action, guests: GuestSet) -> Operation {
        Operation::new(Route::Known("/x"), action, guests)
    }

    fn some(v: &[Vmid]) -> GuestSet {
        GuestSet::Some(v.to_vec())
    }

    #[test]
    fn approve_permits_with_approval_and_counts_approvers() {
        let p = Policy::from_toml_str("t.toml", POLICY).unwrap();
        // Readonly 104: power.stop is not refused but needs two approvers.
        let o = op(Action::PowerStop, some(&[104]));
        assert_eq!(p.decide(&o, None).verdict(), Verdict::Allow);
        let n = p.approval_needed(&o, Some("tofu@pve!ci")).unwrap();
        assert_eq!(n.approvers, 2);
        assert!(n.rule.starts_with("guest 104 (t.toml:") && n.rule.ends_with("approve power.stop"));
        // Other changes to 104 are still refused.
        assert!(matches!(
            p.decide(&op(Action::ConfigWrite, some(&[104])), None),
            Decision::Deny(_)
        ));
        // The range: destroy needs one approver, except for exempt identities.
        let d = op(Action::Destroy, some(&[250]));
        assert_eq!(p.approval_needed(&d, None).unwrap().approvers, 1);
        assert_eq!(p.approval_needed(&d, Some("ops@pve!tf")), None);
        assert_eq!(p.approval_needed(&d, Some("breakglass@pam")), None);
        // Settings: whatever the guest.
        let r = op(Action::SnapshotRollback, some(&[300]));
        assert_eq!(
            p.approval_needed(&r, None).unwrap().rule,
            "settings.approve snapshot.rollback"
        );
        // Reads and unrelated actions need none; every-guest requests see every rule.
        assert_eq!(
            p.approval_needed(&op(Action::Read, some(&[104])), None),
            None
        );
        assert_eq!(
            p.approval_needed(&op(Action::PowerStop, some(&[300])), None),
            None
        );
        assert_eq!(
            p.approval_needed(&op(Action::PowerStop, GuestSet::All), None)
                .unwrap()
                .approvers,
            2
        );
        assert!(p.uses_approvals());
    }

    #[test]
    fn approve_is_validated() {
        for (src, needle) in [
            ("[settings]\napprove = [\"read\"]\n", "reads never need approval"),
            ("[settings]\napprove = [\"destroi\"]\n", "unknown action"),
            ("[settings]\napprove = [\"destroy\"]\napprovers = 0\n", "between 1 and 5"),
            (
                "[[guest]]\nvmid = 104\naccess = \"managed\"\ndeny = [\"destroy\"]\napprove = [\"destroy\"]\n",
                "both deny and approve",
            ),
        ] {
            let e = Policy::from_toml_str("t.toml", src).unwrap_err().to_string();
            assert!(e.contains(needle), "{src:?} -> {e}");
        }
        // A policy whose only protection is an approval protects something.
        let p = Policy::from_toml_str("t.toml", "[settings]\napprove = [\"destroy\"]\n").unwrap();
        assert!(!p.protects_nothing());
    }

    #[test]
    fn a_reload_dropping_approve_is_a_loss_and_show_lists_it() {
        let old = Policy::from_toml_str("t.toml", POLICY).unwrap();
        let new = Policy::from_toml_str(
            "t.toml",
            "[[guest]]\nvmid = 104\naccess = \"readonly\"\napprove = [\"power.start\"]\n",
        )
        .unwrap();
        let losses = crate::policy::diff::protection_removed(&old, &new);
        let text: Vec<String> = losses
            .iter()
            .map(|l| format!("{}: {}", l.guests, l.what))
            .collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("every guest: settings.approve no longer")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("VMs 200-299")
                    && t.contains("no longer needs approval: destroy")),
            "{text:?}"
        );
        let shown = old.show();
        assert!(
            shown.contains("approve         snapshot.rollback"),
            "{shown}"
        );
        assert!(
            shown.contains("approve  power.start, power.stop"),
            "{shown}"
        );
    }
}
