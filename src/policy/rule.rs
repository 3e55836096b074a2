//! One compiled `[[guest]]` rule and its parts: [`Access`], [`ActionSet`], [`Exempt`].

use crate::pve::host::HostPermit;
use crate::pve::{Action, Vmid};

/// What may be done to a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads only (plus the rule's `allow` list).
    Readonly,
    /// Everything (minus the rule's `deny` list).
    Managed,
}

impl Access {
    /// The name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Readonly => "readonly",
            Access::Managed => "managed",
        }
    }
}

/// A set of actions, one bit per [`Action`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionSet(u128);

impl ActionSet {
    /// Whether `a` is in the set.
    #[inline]
    pub fn contains(self, a: Action) -> bool {
        self.0 & (1u128 << (a as u32)) != 0
    }

    /// Whether the set holds no action.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(super) fn insert(&mut self, a: Action) {
        self.0 |= 1u128 << (a as u32);
    }

    /// Adds every action matching `pattern`: an exact name, `prefix.*`, or `*`.
    pub fn add_pattern(&mut self, pattern: &str) -> Result<(), String> {
        let mut hit = false;
        for &a in Action::ALL {
            let name = a.as_str();
            let matches = match pattern.strip_suffix('*') {
                Some("") => !a.is_read(),
                Some(prefix) => prefix.ends_with('.') && name.starts_with(prefix),
                None => name == pattern,
            };
            if matches {
                self.insert(a);
                hit = true;
            }
        }
        if hit {
            Ok(())
        } else {
            let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
            Err(format!(
                "unknown action {pattern:?}: use one of {}, a family such as \"power.*\", or \"*\" (see policies/README.md)",
                names.join(", ")
            ))
        }
    }
}

/// Identities a rule does not apply to: exact names, or `user@realm!*` for every token of a user.
#[derive(Clone, Debug, Default)]
pub struct Exempt {
    pub(super) exact: Vec<String>,
    pub(super) token_users: Vec<String>,
}

impl Exempt {
    /// The pattern that makes `identity` exempt, if any.
    pub fn matching_pattern(&self, identity: Option<&str>) -> Option<String> {
        let id = identity?;
        if let Some(e) = self.exact.iter().find(|e| *e == id) {
            return Some(e.clone());
        }
        let (user, _) = id.split_once('!')?;
        self.token_users
            .iter()
            .find(|u| *u == user)
            .map(|u| format!("{u}!*"))
    }

    /// Whether there is no pattern at all.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.token_users.is_empty()
    }

    /// Whether `identity` is exempt.
    pub fn matches(&self, identity: Option<&str>) -> bool {
        let Some(id) = identity else { return false };
        if self.exact.iter().any(|e| e == id) {
            return true;
        }
        match id.bytes().position(|b| b == b'!') {
            Some(at) => self.token_users.iter().any(|u| *u == id[..at]),
            None => false,
        }
    }

    /// The identities as written in the policy (`user@realm!*` for every token of a user).
    pub fn patterns(&self) -> impl Iterator<Item = String> + '_ {
        self.exact
            .iter()
            .cloned()
            .chain(self.token_users.iter().map(|u| format!("{u}!*")))
    }

    pub(super) fn add(&mut self, pattern: &str) -> Result<(), String> {
        let valid_user = |u: &str| {
            u.split_once('@')
                .is_some_and(|(n, r)| !n.is_empty() && !r.is_empty() && !r.contains(['!', '@']))
        };
        if let Some(user) = pattern.strip_suffix("!*") {
            if valid_user(user) {
                self.token_users.push(user.to_string());
                return Ok(());
            }
        } else {
            let user = pattern.split_once('!').map_or(pattern, |(u, _)| u);
            if valid_user(user) && !pattern.ends_with('!') {
                self.exact.push(pattern.to_string());
                return Ok(());
            }
        }
        Err(format!(
            "exempt identity {pattern:?} is not \"user@realm\", \"user@realm!token\" or \"user@realm!*\""
        ))
    }
}

/// One compiled `[[guest]]` rule.
#[derive(Clone, Debug)]
pub struct GuestRule {
    /// `file:line` of the rule, for audit logs and `pvegate check`.
    pub origin: String,
    /// The VMID, or the inclusive range.
    pub vmids: (Vmid, Vmid),
    pub name: Option<String>,
    pub access: Access,
    pub reason: Option<String>,
    pub allow: ActionSet,
    pub deny: ActionSet,
    pub exempt: Exempt,
    /// `mode = "shadow"`: its refusals are logged as `would-deny` and forwarded.
    pub shadow: bool,
    /// The rule's own refusal hint (`hint = "…"`); `None` falls back to `[settings] hint`.
    pub hint: Option<String>,
    /// Host values this rule does not object to (`host_paths`, `host_devices`).
    pub host: HostPermit,
    /// Actions this rule permits only with an approval (`approve = [...]`): never refused by
    /// the rule, gated by [`crate::approval`] instead.
    pub approve: ActionSet,
    /// Distinct approvers an approval under this rule needs (`approvers`; 0: the settings').
    pub approvers: u8,
    /// Guests picked through the inventory (`tags`, `pool`, `name` glob, `type`,
    /// `template`); `None` for a rule by `vmid`/`vmids` alone.
    pub selector: Option<super::selector::Selector>,
}

impl GuestRule {
    /// Whether this rule refuses some change at all (`readonly`, or a `deny` list): the
    /// guests it governs are protected.
    #[inline]
    pub fn is_restrictive(&self) -> bool {
        self.access == super::Access::Readonly || self.deny != ActionSet::default()
    }

    /// Whether this rule refuses `action` (reads are never refused; nor are actions it
    /// permits with an approval, see [`GuestRule::approve`]).
    #[inline]
    pub fn refuses(&self, action: Action) -> bool {
        if action.is_read() || self.approve.contains(action) {
            return false;
        }
        match self.access {
            Access::Readonly => !self.allow.contains(action),
            Access::Managed => self.deny.contains(action),
        }
    }

    /// "VM 104 'doc1'" or "VM 9001" (for a range rule, the guest asked about).
    pub fn describe_guest(&self, vmid: Vmid) -> String {
        match &self.name {
            Some(n) if self.vmids.0 == self.vmids.1 => format!("VM {vmid} '{n}'"),
            _ => format!("VM {vmid}"),
        }
    }

    /// The rule's label: "guest 104 (policies/homelab.toml:3)".
    pub fn label(&self) -> String {
        if let Some(s) = &self.selector {
            return format!("guests {} ({})", s.describe(), self.origin);
        }
        if self.vmids.0 == self.vmids.1 {
            format!("guest {} ({})", self.vmids.0, self.origin)
        } else {
            format!("guests {}-{} ({})", self.vmids.0, self.vmids.1, self.origin)
        }
    }
}
