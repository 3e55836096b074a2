//! How the authorize layer uses the inventory for one request: whether the request needs
//! it, the operation to judge (stored selections and dependencies resolved), the refusal
//! when it is stale, and what to do once a forwarded write succeeded (apply the change to
//! the snapshot at once, so protection added through pvegate has no window, then refresh).

use std::borrow::Cow;
use std::sync::Arc;

use super::change::Change;
use super::expand::expand;
use super::snapshot::Snapshot;
use super::Inventory;
use crate::policy::resolve::Resolved;
use crate::policy::Policy;
use crate::pve::Operation;

/// What the inventory says about one request.
pub enum Prepared {
    /// It does not need the inventory (a read, or nothing an inventory could change).
    NotNeeded,
    /// Judge `op` (when resolved differently from the request's own) with `view`.
    Ready {
        view: Arc<Resolved>,
        op: Option<Operation>,
    },
    /// The inventory is stale or was never read: the text says why.
    Stale(String),
}

/// Whether judging `op` (with `change`) needs the inventory under `policy`.
pub fn needed(op: &Operation, change: Option<&Change>, policy: &Policy) -> bool {
    !op.action.is_read()
        && (change.is_some() || (policy.needs_inventory() && !op.guests.is_empty()))
}

impl Inventory {
    /// Prepares the judgement of `op` (see [`Prepared`]).
    pub fn prepare(
        &self,
        op: &Operation,
        change: Option<&Change>,
        policy: &Arc<Policy>,
    ) -> Prepared {
        if !needed(op, change, policy.explaining()) {
            return Prepared::NotNeeded;
        }
        match self.view(policy) {
            Err(why) => Prepared::Stale(why),
            Ok(view) => {
                let op = change.and_then(|c| expand(op, c, &view));
                Prepared::Ready { view, op }
            }
        }
    }

    /// After a forwarded write answered with a success: applies `change` to the snapshot
    /// (tags, name, pool membership), then asks for a refresh.
    pub fn after_write(&self, change: Option<&Change>) {
        if let (Some(c), Some(cur)) = (change, self.current()) {
            if let Some(next) = applied(&cur, c) {
                self.install_patched(next, c);
            }
        }
        self.refresh_soon();
    }
}

/// `snap` with `change` applied, when it changes what selectors see.
pub fn applied(snap: &Snapshot, change: &Change) -> Option<Snapshot> {
    let mut next = match change {
        Change::GuestConfig {
            vmid, tags, name, ..
        } if tags.is_some() || name.is_some() => {
            let mut s = snap.clone();
            let g = s.guests.get_mut(vmid)?;
            if let Some(t) = tags {
                g.tags = t.clone();
            }
            if let Some(n) = name {
                g.name = n.clone();
            }
            s
        }
        Change::PoolMembers { pool, vms, remove } => {
            let mut s = snap.clone();
            for v in vms {
                if let Some(g) = s.guests.get_mut(v) {
                    if *remove {
                        if g.pool.as_deref() == Some(pool.as_str()) {
                            g.pool = None;
                        }
                    } else {
                        g.pool = Some(pool.clone());
                    }
                }
            }
            s
        }
        _ => return None,
    };
    // Keeps its age: applying a change does not make the rest of it newer.
    next.loaded_at = snap.loaded_at;
    next.loaded_wall = snap.loaded_wall;
    Some(next)
}

/// A refusal text with the reason the inventory added guests ("storage tank holds disks of
/// VM 109"), put before its hint.
pub fn with_detail(message: String, prepared: &Prepared) -> String {
    let Prepared::Ready { op: Some(op), .. } = prepared else {
        return message;
    };
    let Some(d) = &op.detail else {
        return message;
    };
    match message.find("; hint: ") {
        Some(at) => format!("{} [{d}]{}", &message[..at], &message[at..]),
        None => format!("{message} [{d}]"),
    }
}

/// The refusal text for a stale inventory.
pub fn stale_message(why: &str, what: &str) -> String {
    format!(
        "cannot judge {what}: {why}; changes that need the inventory are refused until it is read again (reads still pass); hint: check /readyz and the inventory token"
    )
}

/// The rule label of a stale refusal, for the audit.
pub const STALE_RULE: Cow<'static, str> = Cow::Borrowed("inventory.stale");

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn applying_adds_protection_at_once() {
        let mut s = Snapshot::empty();
        s.set_resources(&json!([{"vmid":110,"type":"qemu","name":"web","node":"pve"}]))
            .unwrap();
        let c = Change::GuestConfig {
            vmid: 110,
            tags: Some(vec!["prod".into()]),
            name: None,
            clears_protection: false,
            devices: vec![],
        };
        let n = applied(&s, &c).unwrap();
        assert_eq!(n.guests[&110].tags, vec!["prod"]);
        assert_eq!(n.loaded_at, s.loaded_at);
        let p = Change::PoolMembers {
            pool: "core".into(),
            vms: vec![110],
            remove: false,
        };
        assert_eq!(
            applied(&s, &p).unwrap().guests[&110].pool.as_deref(),
            Some("core")
        );
    }
}
