//! What a reload takes away: where a new policy protects guests less than the one in force
//! (an action no longer refused, an exemption added, strict mode or a deny_action removed).

use super::rule::{Exempt, GuestRule};
use super::Policy;
use crate::pve::{Action, Vmid};

/// One loss of protection: who (`VM 104`, `VMs 9000-9099`, `every guest`) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    pub guests: String,
    pub what: String,
}

/// Every place where `new` protects less than `old` (both as enforced, so a rule turned to
/// shadow mode counts as a loss).
pub fn protection_removed(old: &Policy, new: &Policy) -> Vec<Loss> {
    let mut out = Vec::new();
    let every = || "every guest".to_string();
    let lost_global: Vec<&str> = Action::ALL
        .iter()
        .filter(|&&a| old.deny_actions.contains(a) && !new.deny_actions.contains(a))
        .map(|a| a.as_str())
        .collect();
    if !lost_global.is_empty() {
        out.push(Loss {
            guests: every(),
            what: format!(
                "settings.deny_actions no longer refuses {}",
                lost_global.join(", ")
            ),
        });
    }
    let lost_approve: Vec<&str> = Action::ALL
        .iter()
        .filter(|&&a| old.approve.contains(a) && !new.approve.contains(a))
        .map(|a| a.as_str())
        .collect();
    if !lost_approve.is_empty() || new.approvers < old.approvers {
        out.push(Loss {
            guests: every(),
            what: format!(
                "settings.approve no longer asks approval for {} (approvers {} -> {})",
                summarize(&lost_approve),
                old.approvers,
                new.approvers
            ),
        });
    }
    if old.strict && !new.strict {
        out.push(Loss {
            guests: every(),
            what: "strict mode is off: unknown changes pass".into(),
        });
    }
    if let Some(added) = added_exemptions(&old.exempt, &new.exempt) {
        out.push(Loss {
            guests: every(),
            what: format!("settings.exempt now exempts {added}"),
        });
    }
    let mut cuts: Vec<u64> = vec![100, 1_000_000_000];
    for p in [old, new] {
        for r in p.rules() {
            cuts.push(u64::from(r.vmids.0));
            cuts.push(u64::from(r.vmids.1) + 1);
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    for w in cuts.windows(2) {
        let (lo, hi) = (w[0] as Vmid, (w[1] - 1) as Vmid);
        let (a, b) = (old.rule_for(lo), new.rule_for(lo));
        let mut what = Vec::new();
        let lost: Vec<&str> = Action::ALL
            .iter()
            .filter(|&&x| a.refuses(x) && !b.refuses(x))
            .map(|x| x.as_str())
            .collect();
        if !lost.is_empty() {
            what.push(format!("no longer refused: {}", summarize(&lost)));
        }
        let unapproved: Vec<&str> = Action::ALL
            .iter()
            .filter(|&&x| a.approve.contains(x) && !b.approve.contains(x) && !b.refuses(x))
            .map(|x| x.as_str())
            .collect();
        if !unapproved.is_empty() {
            what.push(format!(
                "no longer needs approval: {}",
                summarize(&unapproved)
            ));
        }
        if refuses_any(b) {
            if let Some(added) = added_exemptions(&a.exempt, &b.exempt) {
                what.push(format!("now exempts {added}"));
            }
        }
        if !what.is_empty() {
            out.push(Loss {
                guests: if lo == hi {
                    format!("VM {lo}")
                } else {
                    format!("VMs {lo}-{hi}")
                },
                what: what.join("; "),
            });
        }
    }
    out
}

fn refuses_any(r: &GuestRule) -> bool {
    Action::ALL.iter().any(|&a| r.refuses(a))
}

fn summarize(names: &[&str]) -> String {
    if names.len() > 6 {
        format!("{} and {} more", names[..6].join(", "), names.len() - 6)
    } else {
        names.join(", ")
    }
}

fn added_exemptions(old: &Exempt, new: &Exempt) -> Option<String> {
    let mut added: Vec<String> = new
        .exact
        .iter()
        .filter(|e| !old.exact.contains(e))
        .map(|e| format!("{e:?}"))
        .collect();
    added.extend(
        new.token_users
            .iter()
            .filter(|u| !old.token_users.contains(u))
            .map(|u| format!("\"{u}!*\"")),
    );
    (!added.is_empty()).then(|| added.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(src: &str) -> Policy {
        Policy::from_toml_str("t.toml", src).unwrap()
    }

    #[test]
    fn names_the_guests_that_lose_protection() {
        let old = p("[settings]\ndeny_actions = [\"node.shell\"]\n[[guest]]\nvmid = 104\naccess = \"readonly\"\n[[guest]]\nvmids = \"9000-9099\"\naccess = \"managed\"\ndeny = [\"destroy\"]\n");
        let same = protection_removed(&old, &old);
        assert!(same.is_empty(), "{same:?}");
        let new = p("[[guest]]\nvmid = 104\naccess = \"readonly\"\nexempt = [\"ci@pve!*\"]\n[[guest]]\nvmids = \"9000-9049\"\naccess = \"managed\"\ndeny = [\"destroy\"]\n");
        let lost = protection_removed(&old, &new);
        let text = format!("{lost:?}");
        assert!(text.contains("node.shell"), "{text}");
        assert!(
            lost.iter()
                .any(|l| l.guests == "VM 104" && l.what.contains("ci@pve!*")),
            "{text}"
        );
        assert!(
            lost.iter()
                .any(|l| l.guests == "VMs 9050-9099" && l.what.contains("destroy")),
            "{text}"
        );
        assert!(!text.contains("9000-9049"), "{text}");
        // Adding protection is no loss.
        assert!(protection_removed(&new, &new).is_empty());
        let shadow = p("[[guest]]\nvmid = 104\naccess = \"readonly\"\nmode = \"shadow\"\n");
        let lost = protection_removed(
            &p("[[guest]]\nvmid = 104\naccess = \"readonly\"\n"),
            &shadow,
        );
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].guests, "VM 104");
    }
}
