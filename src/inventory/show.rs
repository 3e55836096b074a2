//! `pvegate policy show` with `[inventory]`: every guest of the snapshot that a rule
//! governs, which rules, and through which selector.

use std::fmt::Write;

use super::Inventory;
use crate::policy::Policy;

/// The "Guests now" section: one line per guest a rule governs (unlisted guests under the
/// default are summed up).
pub fn matches(policy: &Policy, inv: &Inventory) -> String {
    let mut out = String::from("\nGuests now (from the inventory):\n");
    let policy_arc = std::sync::Arc::new(policy.clone());
    let view = match inv.view(&policy_arc) {
        Ok(v) => v,
        Err(why) => {
            let _ = writeln!(out, "  not available: {why}");
            return out;
        }
    };
    let mut vmids: Vec<_> = view.snapshot.guests.keys().copied().collect();
    vmids.sort_unstable();
    let mut by_default = 0usize;
    for vmid in vmids {
        let g = &view.snapshot.guests[&vmid];
        let why = policy_arc.explain_guest(vmid, Some(&view));
        if why.len() == 1 && why[0].starts_with("default_access") {
            by_default += 1;
            continue;
        }
        let protected = if policy_arc.is_protected(vmid, Some(&view)) {
            "protected"
        } else {
            "managed"
        };
        let _ = writeln!(out, "  VM {vmid} '{}' ({protected}):", g.name);
        for w in why {
            let _ = writeln!(out, "    {w}");
        }
    }
    let _ = writeln!(
        out,
        "  {by_default} other guest(s): default_access {}",
        policy.default_rule().access.as_str()
    );
    out
}
