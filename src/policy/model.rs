//! The policy file format (TOML), as written by users. See `policies/README.md`.

use serde::Deserialize;
use toml::Spanned;

/// One policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub settings: Option<Settings>,
    #[serde(default)]
    pub guest: Vec<GuestEntry>,
}

/// `[settings]`: switches that apply to every request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Refuse writes to endpoints pvegate does not know (newer Proxmox than its catalogue).
    pub strict: Option<Spanned<bool>>,
    /// Access for guests no `[[guest]]` entry names: "managed" (default) or "readonly"
    /// (default-deny: only listed guests may be changed).
    pub default_access: Option<Spanned<String>>,
    /// Actions refused whatever guests they touch (e.g. "node.shell", "access.write").
    #[serde(default)]
    pub deny_actions: Vec<Spanned<String>>,
    /// Identities to which no rule applies (break-glass admins), e.g. "root@pam" or
    /// "automation@pve!*" (every token of that user).
    #[serde(default)]
    pub exempt: Vec<Spanned<String>>,
    /// A policy that refuses nothing is an error unless this says it is deliberate.
    pub allow_empty: Option<Spanned<bool>>,
    /// What a refused client should do next, ending every refusal ("ask @ops in #infra").
    pub hint: Option<Spanned<String>>,
    /// Host paths (globs) every rule permits as disks, mounts, devices or hook scripts.
    #[serde(default)]
    pub host_paths: Vec<Spanned<String>>,
    /// Host PCI/USB devices (globs) every rule permits.
    #[serde(default)]
    pub host_devices: Vec<Spanned<String>>,
    /// Actions that need a human's approval whatever guests they touch (`pvegate approve`).
    #[serde(default)]
    pub approve: Vec<Spanned<String>>,
    /// How many distinct approvers an approval needs (default 1).
    pub approvers: Option<Spanned<i64>>,
}

/// `[[guest]]`: a rule for one guest or a range of guests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestEntry {
    /// One guest.
    pub vmid: Option<Spanned<i64>>,
    /// A range "9000-9099" (inclusive).
    pub vmids: Option<Spanned<String>>,
    pub name: Option<String>,
    pub access: Spanned<String>,
    pub reason: Option<String>,
    /// Actions allowed despite `access = "readonly"` (e.g. "snapshot.create", "backup").
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    /// Actions refused despite `access = "managed"` (e.g. "destroy").
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    /// Identities this rule does not apply to.
    #[serde(default)]
    pub exempt: Vec<Spanned<String>>,
    /// "enforce" (default) or "shadow": refusals are only logged (`would-deny`).
    pub mode: Option<Spanned<String>>,
    /// This rule's refusal hint, replacing `[settings] hint`.
    pub hint: Option<Spanned<String>>,
    /// Host paths (globs) this rule does not object to.
    #[serde(default)]
    pub host_paths: Vec<Spanned<String>>,
    /// Host PCI/USB devices (globs) this rule does not object to.
    #[serde(default)]
    pub host_devices: Vec<Spanned<String>>,
    /// Actions permitted on these guests only once a human approved the exact request.
    #[serde(default)]
    pub approve: Vec<Spanned<String>>,
    /// How many distinct approvers this rule's approvals need (default: `[settings]`'s, or 1).
    pub approvers: Option<Spanned<i64>>,
    /// Selector: guests carrying any of these tags (needs `[inventory]`).
    pub tags: Option<Spanned<Vec<String>>>,
    /// Selector: guests in this pool (needs `[inventory]`).
    pub pool: Option<Spanned<String>>,
    /// Selector: `"qemu"` or `"lxc"` (needs `[inventory]`).
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    /// Selector: templates (`true`) or non-templates (`false`) (needs `[inventory]`).
    pub template: Option<Spanned<bool>>,
}
