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
        match id.split_once('!') {
            Some((user, _)) => self.token_users.iter().any(|u| u == user),
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
    /// `mode = "shadow"`: its refusals are logged as `would-deny` and forwarded.
    pub shadow: bool,
    /// The rule's own refusal hint (`hint = "…"`); `None` falls back to `[settings] hint`.
    pub hint: Option<String>,
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
}

const VMID_MIN: i64 = 100;
const VMID_MAX: i64 = 999_999_999;

impl Policy {
    /// Loads and compiles policy files.
    pub fn load(files: &[PathBuf]) -> Result<Policy, ConfigError> {
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        for path in files {
            match std::fs::read_to_string(path) {
                Ok(src) => sources.push((path.clone(), src)),
                Err(source) => errors.push(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                }),
            }
        }
        if let Some(e) = ConfigError::from_list(errors) {
            return Err(e);
        }
        Self::compile(&sources)
    }

    /// Compiles one policy from text (handy in tests and `pvegate demo`).
    pub fn from_toml_str(name: &str, src: &str) -> Result<Policy, ConfigError> {
        Self::compile(&[(PathBuf::from(name), src.to_string())])
    }

    /// Compiles `(path, text)` sources into one policy. Reports every error found (as
    /// [`ConfigError::Many`] when there are several).
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
                shadow: false,
                hint: None,
                host: HostPermit::default(),
            },
            strict: false,
            deny_actions: ActionSet::default(),
            exempt: Exempt::default(),
            host: HostPermit::default(),
            restrictive: Vec::new(),
            hint: None,
            files: sources.iter().map(|(p, _)| p.clone()).collect(),
            generation: 0,
            warnings: Vec::new(),
            shadowed: None,
            any_exempt: false,
        };
        let mut errors: Vec<ConfigError> = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        let mut settings_seen: Option<String> = None;
        let mut allow_empty = false;
        for (path, src) in sources {
            let file: PolicyFile = match toml::from_str(src) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(ConfigError::toml(path, src, &e));
                    continue;
                }
            };
            let at = |span: std::ops::Range<usize>, msg: String| {
                ConfigError::at(path, src, Some(span.start), msg)
            };
            let warn_at = |span: std::ops::Range<usize>, msg: String| {
                format!("{}:{}: {msg}", path.display(), line_of(src, span.start))
            };
            if let Some(s) = file.settings {
                if let Some(first) = &settings_seen {
                    errors.push(ConfigError::at(
                        path,
                        src,
                        None,
                        format!(
                            "[settings] is already given in {first}: keep it in one policy file"
                        ),
                    ));
                    continue;
                }
                settings_seen = Some(path.display().to_string());
                if let Some(strict) = s.strict {
                    policy.strict = *strict.get_ref();
                }
                if let Some(a) = s.allow_empty {
                    allow_empty = *a.get_ref();
                }
                if let Some(d) = s.default_access {
                    match parse_access(&d) {
                        Ok(a) => policy.default_rule.access = a,
                        Err(m) => errors.push(at(d.span(), m)),
                    }
                    policy.default_rule.origin =
                        format!("{}:{}", path.display(), line_of(src, d.span().start));
                }
                for a in &s.deny_actions {
                    if let Err(m) = policy.deny_actions.add_pattern(a.get_ref()) {
                        errors.push(at(a.span(), m));
                    } else if a.get_ref() == "read" {
                        warnings.push(warn_at(a.span(), "deny_actions contains \"read\": every read is refused (status polling, the web UI, Terraform refresh): remove it unless that is the intent".into()));
                    }
                }
                for e in &s.exempt {
                    match policy.exempt.add(e.get_ref()) {
                        Ok(()) => {
                            if let Some(w) = exempt_warning(e.get_ref()) {
                                warnings.push(warn_at(e.span(), w));
                            }
                        }
                        Err(m) => errors.push(at(e.span(), m)),
                    }
                }
                if let Some(h) = &s.hint {
                    match super::show::check_hint(h) {
                        Ok(t) => policy.hint = Some(t),
                        Err(m) => errors.push(at(h.span(), m)),
                    }
                }
                add_host_permits(&mut policy.host, &s.host_paths, &s.host_devices)
                    .map_err(|(span, m)| at(span, m))?;
            }
            for entry in &file.guest {
                let Some(rule) = compile_guest(path, src, entry, &mut errors, &mut warnings) else {
                    continue;
                };
                if let Err(m) = policy.add_rule(rule) {
                    errors.push(at(entry.access.span(), m));
                }
            }
        }
        policy.ranges.sort_unstable();
        for w in policy.ranges.windows(2) {
            if w[0].1 >= w[1].0 {
                let a = &policy.rules[w[0].2 as usize];
                let b = &policy.rules[w[1].2 as usize];
                errors.push(ConfigError::Invalid {
                    path: b.origin.rsplit_once(':').map_or(b.origin.clone(), |(p, _)| p.to_string()),
                    line: b.origin.rsplit_once(':').and_then(|(_, l)| l.parse().ok()).unwrap_or(1),
                    message: format!("guest range overlaps the one at {}: make ranges disjoint (a single vmid may sit inside a range)", a.origin),
                });
            }
        }
        policy.restrictive = restrictive(&policy.rules);
        if errors.is_empty() && !allow_empty && policy.protects_nothing() {
            let (path, src) = sources
                .first()
                .map_or((PathBuf::from("policy"), ""), |(p, s)| {
                    (p.clone(), s.as_str())
                });
            errors.push(ConfigError::at(
                &path,
                src,
                None,
                "this policy refuses nothing (no readonly guest, no deny list, no deny_actions, no default_access = \"readonly\", no strict): every request would pass. An empty or half-written file looks like this. If it is deliberate, set allow_empty = true under [settings]",
            ));
        }
        if let Some(e) = ConfigError::from_list(errors) {
            return Err(e);
        }
        if allow_empty && policy.protects_nothing() {
            let first = sources
                .first()
                .map_or("policy".into(), |(p, _)| p.display().to_string());
            warnings.push(format!(
                "{first}:1: this policy refuses nothing (allow_empty = true): every request passes"
            ));
        }
        policy.warnings = warnings;
        policy.any_exempt =
            !policy.exempt.is_empty() || policy.rules.iter().any(|r| !r.exempt.is_empty());
        if policy.rules.iter().any(|r| r.shadow) {
            let mut enforced = policy.clone();
            for r in enforced.rules.iter_mut().filter(|r| r.shadow) {
                r.access = Access::Managed;
                r.allow = ActionSet::default();
                r.deny = ActionSet::default();
            }
            enforced.restrictive = restrictive(&enforced.rules);
            enforced.shadowed = Some(std::sync::Arc::new(policy));
            return Ok(enforced);
        }
        Ok(policy)
    }

    /// Whether this policy (with its shadow rules counted as enforced) refuses nothing at all.
    pub fn protects_nothing(&self) -> bool {
        let full = self.shadowed.as_deref().unwrap_or(self);
        full.restrictive.is_empty()
            && full.default_rule.access == Access::Managed
            && full.deny_actions == ActionSet::default()
            && !full.strict
    }

    /// With shadow rules: the policy with them enforced (what would be refused).
    pub fn shadowed(&self) -> Option<&Policy> {
        self.shadowed.as_deref()
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

/// Warns about exemption patterns no identity pveproxy accepts can match.
fn exempt_warning(pattern: &str) -> Option<String> {
    let name_ok = |t: &str| {
        let mut c = t.chars();
        c.next().is_some_and(|f| f.is_ascii_alphabetic())
            && t.len() >= 2
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    let (user, token) = match pattern.split_once('!') {
        Some((u, t)) => (u, Some(t)),
        None => (pattern, None),
    };
    let (name, realm) = user.split_once('@')?;
    let problem = if name.contains(|c: char| c.is_whitespace() || matches!(c, ':' | '/' | '*')) {
        Some("its user name holds a character Proxmox user names cannot have (whitespace, ':', '/', or a '*', which is no wildcard here)")
    } else if !name_ok(realm) {
        Some(
            "its realm is not a Proxmox realm name (a letter, then letters, digits, '.', '-', '_')",
        )
    } else if token.is_some_and(|t| t != "*" && !name_ok(t)) {
        Some("its token name is not a Proxmox token name (a letter, then letters, digits, '.', '-', '_'); only a whole \"!*\" is a wildcard")
    } else {
        None
    };
    problem.map(|p| format!("exempt identity {pattern:?} can never match: {p}"))
}

fn restrictive(rules: &[GuestRule]) -> Vec<u32> {
    (0..rules.len() as u32)
        .filter(|&i| {
            let r = &rules[i as usize];
            r.access == Access::Readonly || r.deny != ActionSet::default()
        })
        .collect()
}

/// One `[[guest]]` entry; its errors go to `errors` (all of them), foot-guns to `warnings`.
fn compile_guest(
    path: &Path,
    src: &str,
    e: &GuestEntry,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Option<GuestRule> {
    let at = |span: std::ops::Range<usize>, msg: String| {
        ConfigError::at(path, src, Some(span.start), msg)
    };
    let warn_at = |span: std::ops::Range<usize>, msg: String| {
        format!("{}:{}: {msg}", path.display(), line_of(src, span.start))
    };
    let before = errors.len();
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
    let vmids: Result<(Vmid, Vmid), ConfigError> = match (&e.vmid, &e.vmids) {
        (Some(v), None) => check(*v.get_ref(), v.span()).map(|id| (id, id)),
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
            (|| {
                let (lo, hi) = r.get_ref().split_once('-').ok_or_else(bad)?;
                let lo: i64 = lo.trim().parse().map_err(|_| bad())?;
                let hi: i64 = hi.trim().parse().map_err(|_| bad())?;
                let (lo, hi) = (check(lo, r.span())?, check(hi, r.span())?);
                if lo > hi {
                    return Err(bad());
                }
                Ok((lo, hi))
            })()
        }
        (Some(v), Some(_)) => Err(at(v.span(), "give either vmid or vmids, not both".into())),
        (None, None) => Err(at(
            e.access.span(),
            "this [[guest]] names no guest: add vmid = N or vmids = \"LO-HI\"".into(),
        )),
    };
    let vmids = vmids.map_err(|err| errors.push(err)).ok();
    let access = parse_access(&e.access)
        .map_err(|m| errors.push(at(e.access.span(), m)))
        .ok();
    let mut allow = ActionSet::default();
    for a in &e.allow {
        if let Err(m) = allow.add_pattern(a.get_ref()) {
            errors.push(at(a.span(), m));
        }
    }
    let mut deny = ActionSet::default();
    for a in &e.deny {
        if let Err(m) = deny.add_pattern(a.get_ref()) {
            errors.push(at(a.span(), m));
        } else if a.get_ref() == "read" {
            warnings.push(warn_at(a.span(), "deny = [\"read\"] has no effect: a guest rule never refuses reads (to refuse reads everywhere, use deny_actions under [settings])".into()));
        }
    }
    if access == Some(Access::Readonly) && !e.deny.is_empty() {
        errors.push(at(
            e.deny[0].span(),
            "deny has no effect on a readonly guest (it refuses every change already): remove it"
                .into(),
        ));
    }
    if access == Some(Access::Managed) && !e.allow.is_empty() {
        errors.push(at(
            e.allow[0].span(),
            "allow has no effect on a managed guest (it allows everything already): remove it"
                .into(),
        ));
    }
    let mut exempt = Exempt::default();
    for x in &e.exempt {
        match exempt.add(x.get_ref()) {
            Ok(()) => {
                if let Some(w) = exempt_warning(x.get_ref()) {
                    warnings.push(warn_at(x.span(), w));
                }
            }
            Err(m) => errors.push(at(x.span(), m)),
        }
    }
    if access == Some(Access::Managed) && e.deny.is_empty() && !e.exempt.is_empty() {
        warnings.push(warn_at(
            e.exempt[0].span(),
            "exempt has no effect here: this managed rule refuses nothing".into(),
        ));
    }
    let shadow = match e.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "enforce")) => false,
        Some((_, "shadow")) => true,
        Some((m, other)) => {
            errors.push(at(
                m.span(),
                format!("mode {other:?} is not \"enforce\" or \"shadow\""),
            ));
            false
        }
    };
    let hint = match &e.hint {
        Some(h) => match super::show::check_hint(h) {
            Ok(t) => Some(t),
            Err(m) => {
                errors.push(at(h.span(), m));
                None
            }
        },
        None => None,
    };
    let mut host = HostPermit::default();
    if let Err((span, m)) = add_host_permits(&mut host, &e.host_paths, &e.host_devices) {
        errors.push(at(span, m));
    }
    if errors.len() > before {
        return None;
    }
    let (vmids, access) = (vmids?, access?);
    let anchor = e
        .vmid
        .as_ref()
        .map(|v| v.span().start)
        .or_else(|| e.vmids.as_ref().map(|v| v.span().start))
        .unwrap_or(e.access.span().start);
    Some(GuestRule {
        origin: format!("{}:{}", path.display(), line_of(src, anchor)),
        vmids,
        name: e.name.clone(),
        access,
        reason: e.reason.clone(),
        allow,
        deny,
        exempt,
        shadow,
        hint,
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
