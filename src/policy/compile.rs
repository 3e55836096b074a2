//! Policy files -> a compiled [`Policy`]: every value validated, every error located.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::model::{GuestEntry, PolicyFile};
use crate::config::ConfigError;
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

    fn insert(&mut self, a: Action) {
        self.0 |= 1u128 << (a as u32);
    }

    /// Adds every action matching `pattern`: an exact name, `prefix.*`, or `*`.
    fn add_pattern(&mut self, pattern: &str) -> Result<(), String> {
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
    exact: Vec<String>,
    token_users: Vec<String>,
}

impl Exempt {
    /// Whether `identity` is exempt.
    pub fn matches(&self, identity: Option<&str>) -> bool {
        let Some(id) = identity else { return false };
        if self.exact.iter().any(|e| e == id) {
            return true;
        }
        match id.split_once('!') {
            Some((user, _)) => self.token_users.iter().any(|u| u == user),
            None => false,
        }
    }

    fn add(&mut self, pattern: &str) -> Result<(), String> {
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
    /// Host values this rule does not object to (`host_paths`, `host_devices`).
    pub host: HostPermit,
}

impl GuestRule {
    /// Whether this rule refuses `action` (reads are never refused).
    #[inline]
    pub fn refuses(&self, action: Action) -> bool {
        if action.is_read() {
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
        if self.vmids.0 == self.vmids.1 {
            format!("guest {} ({})", self.vmids.0, self.origin)
        } else {
            format!("guests {}-{} ({})", self.vmids.0, self.vmids.1, self.origin)
        }
    }
}

/// A compiled, validated policy: cheap to query, immutable, swapped whole on reload.
#[derive(Clone, Debug)]
pub struct Policy {
    pub(super) rules: Vec<GuestRule>,
    pub(super) by_vmid: HashMap<Vmid, u32>,
    /// Sorted, non-overlapping ranges -> rule index.
    pub(super) ranges: Vec<(Vmid, Vmid, u32)>,
    /// Rule for guests no entry names.
    pub(super) default_rule: GuestRule,
    pub(super) strict: bool,
    pub(super) deny_actions: ActionSet,
    pub(super) exempt: Exempt,
    /// `[settings] host_paths` / `host_devices`: host values no rule objects to.
    pub(super) host: HostPermit,
    /// Indexes of rules that refuse at least one action (for requests that touch every guest).
    pub(super) restrictive: Vec<u32>,
    /// The files it was built from.
    pub files: Vec<PathBuf>,
}

const VMID_MIN: i64 = 100;
const VMID_MAX: i64 = 999_999_999;

impl Policy {
    /// Loads and compiles policy files.
    pub fn load(files: &[PathBuf]) -> Result<Policy, ConfigError> {
        let mut sources = Vec::new();
        for path in files {
            let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            sources.push((path.clone(), src));
        }
        Self::compile(&sources)
    }

    /// Compiles one policy from text (handy in tests and `pvegate demo`).
    pub fn from_toml_str(name: &str, src: &str) -> Result<Policy, ConfigError> {
        Self::compile(&[(PathBuf::from(name), src.to_string())])
    }

    /// Compiles `(path, text)` sources into one policy.
    pub fn compile(sources: &[(PathBuf, String)]) -> Result<Policy, ConfigError> {
        let mut policy = Policy {
            rules: Vec::new(),
            by_vmid: HashMap::new(),
            ranges: Vec::new(),
            default_rule: GuestRule {
                origin: "default".into(),
                vmids: (VMID_MIN as Vmid, VMID_MAX as Vmid),
                name: None,
                access: Access::Managed,
                reason: None,
                allow: ActionSet::default(),
                deny: ActionSet::default(),
                exempt: Exempt::default(),
                host: HostPermit::default(),
            },
            strict: false,
            deny_actions: ActionSet::default(),
            exempt: Exempt::default(),
            host: HostPermit::default(),
            restrictive: Vec::new(),
            files: sources.iter().map(|(p, _)| p.clone()).collect(),
        };
        let mut settings_seen: Option<String> = None;
        for (path, src) in sources {
            let file: PolicyFile =
                toml::from_str(src).map_err(|e| ConfigError::toml(path, src, &e))?;
            let at = |span: std::ops::Range<usize>, msg: String| {
                ConfigError::at(path, src, Some(span.start), msg)
            };
            if let Some(s) = file.settings {
                if let Some(first) = &settings_seen {
                    return Err(ConfigError::at(
                        path,
                        src,
                        None,
                        format!(
                            "[settings] is already given in {first}: keep it in one policy file"
                        ),
                    ));
                }
                settings_seen = Some(path.display().to_string());
                if let Some(strict) = s.strict {
                    policy.strict = *strict.get_ref();
                }
                if let Some(d) = s.default_access {
                    policy.default_rule.access = parse_access(&d).map_err(|m| at(d.span(), m))?;
                    policy.default_rule.origin =
                        format!("{}:{}", path.display(), line_of(src, d.span().start));
                }
                for a in &s.deny_actions {
                    policy
                        .deny_actions
                        .add_pattern(a.get_ref())
                        .map_err(|m| at(a.span(), m))?;
                }
                for e in &s.exempt {
                    policy
                        .exempt
                        .add(e.get_ref())
                        .map_err(|m| at(e.span(), m))?;
                }
                add_host_permits(&mut policy.host, &s.host_paths, &s.host_devices)
                    .map_err(|(span, m)| at(span, m))?;
            }
            for entry in &file.guest {
                let rule = compile_guest(path, src, entry)?;
                policy
                    .add_rule(rule)
                    .map_err(|m| at(entry.access.span(), m))?;
            }
        }
        policy.ranges.sort_unstable();
        for w in policy.ranges.windows(2) {
            if w[0].1 >= w[1].0 {
                let a = &policy.rules[w[0].2 as usize];
                let b = &policy.rules[w[1].2 as usize];
                return Err(ConfigError::Invalid {
                    path: b.origin.rsplit_once(':').map_or(b.origin.clone(), |(p, _)| p.to_string()),
                    line: b.origin.rsplit_once(':').and_then(|(_, l)| l.parse().ok()).unwrap_or(1),
                    message: format!("guest range overlaps the one at {}: make ranges disjoint (a single vmid may sit inside a range)", a.origin),
                });
            }
        }
        policy.restrictive = (0..policy.rules.len() as u32)
            .filter(|&i| {
                let r = &policy.rules[i as usize];
                r.access == Access::Readonly || r.deny != ActionSet::default()
            })
            .collect();
        Ok(policy)
    }

    fn add_rule(&mut self, rule: GuestRule) -> Result<(), String> {
        let idx = self.rules.len() as u32;
        if rule.vmids.0 == rule.vmids.1 {
            if let Some(&prev) = self.by_vmid.get(&rule.vmids.0) {
                return Err(format!(
                    "guest {} already has a rule at {}: keep one rule per guest",
                    rule.vmids.0, self.rules[prev as usize].origin
                ));
            }
            self.by_vmid.insert(rule.vmids.0, idx);
        } else {
            self.ranges.push((rule.vmids.0, rule.vmids.1, idx));
        }
        self.rules.push(rule);
        Ok(())
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

fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

fn parse_access(s: &Spanned<String>) -> Result<Access, String> {
    match s.get_ref().as_str() {
        "readonly" => Ok(Access::Readonly),
        "managed" => Ok(Access::Managed),
        other => Err(format!(
            "access {other:?} is not \"readonly\" or \"managed\""
        )),
    }
}

fn compile_guest(path: &Path, src: &str, e: &GuestEntry) -> Result<GuestRule, ConfigError> {
    let at = |span: std::ops::Range<usize>, msg: String| {
        ConfigError::at(path, src, Some(span.start), msg)
    };
    let check = |v: i64, span: std::ops::Range<usize>| -> Result<Vmid, ConfigError> {
        if (VMID_MIN..=VMID_MAX).contains(&v) {
            Ok(v as Vmid)
        } else {
            Err(at(
                span,
                format!("vmid {v} is outside Proxmox's range 100-999999999"),
            ))
        }
    };
    let vmids = match (&e.vmid, &e.vmids) {
        (Some(v), None) => {
            let id = check(*v.get_ref(), v.span())?;
            (id, id)
        }
        (None, Some(r)) => {
            let bad = || {
                at(
                    r.span(),
                    format!(
                        "vmids {:?} is not a range such as \"9000-9099\"",
                        r.get_ref()
                    ),
                )
            };
            let (lo, hi) = r.get_ref().split_once('-').ok_or_else(bad)?;
            let lo: i64 = lo.trim().parse().map_err(|_| bad())?;
            let hi: i64 = hi.trim().parse().map_err(|_| bad())?;
            let (lo, hi) = (check(lo, r.span())?, check(hi, r.span())?);
            if lo > hi {
                return Err(bad());
            }
            (lo, hi)
        }
        (Some(v), Some(_)) => {
            return Err(at(v.span(), "give either vmid or vmids, not both".into()))
        }
        (None, None) => {
            return Err(at(
                e.access.span(),
                "this [[guest]] names no guest: add vmid = N or vmids = \"LO-HI\"".into(),
            ))
        }
    };
    let access = parse_access(&e.access).map_err(|m| at(e.access.span(), m))?;
    let mut allow = ActionSet::default();
    for a in &e.allow {
        allow
            .add_pattern(a.get_ref())
            .map_err(|m| at(a.span(), m))?;
    }
    let mut deny = ActionSet::default();
    for a in &e.deny {
        deny.add_pattern(a.get_ref()).map_err(|m| at(a.span(), m))?;
    }
    if access == Access::Readonly && !e.deny.is_empty() {
        return Err(at(
            e.deny[0].span(),
            "deny has no effect on a readonly guest (it refuses every change already): remove it"
                .into(),
        ));
    }
    if access == Access::Managed && !e.allow.is_empty() {
        return Err(at(
            e.allow[0].span(),
            "allow has no effect on a managed guest (it allows everything already): remove it"
                .into(),
        ));
    }
    let mut exempt = Exempt::default();
    for x in &e.exempt {
        exempt.add(x.get_ref()).map_err(|m| at(x.span(), m))?;
    }
    let mut host = HostPermit::default();
    add_host_permits(&mut host, &e.host_paths, &e.host_devices).map_err(|(span, m)| at(span, m))?;
    let anchor = e
        .vmid
        .as_ref()
        .map(|v| v.span().start)
        .or_else(|| e.vmids.as_ref().map(|v| v.span().start))
        .unwrap_or(e.access.span().start);
    Ok(GuestRule {
        origin: format!("{}:{}", path.display(), line_of(src, anchor)),
        vmids,
        name: e.name.clone(),
        access,
        reason: e.reason.clone(),
        allow,
        deny,
        exempt,
        host,
    })
}

/// Adds `host_paths` and `host_devices` entries; an error carries the entry's span.
fn add_host_permits(
    permit: &mut HostPermit,
    paths: &[Spanned<String>],
    devices: &[Spanned<String>],
) -> Result<(), (std::ops::Range<usize>, String)> {
    for p in paths {
        permit.add_path(p.get_ref()).map_err(|m| (p.span(), m))?;
    }
    for d in devices {
        permit.add_device(d.get_ref()).map_err(|m| (d.span(), m))?;
    }
    Ok(())
}
