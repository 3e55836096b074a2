//! Policy files -> a compiled [`Policy`]: every value validated, every error located
//! ([`PolicyError`], all of them at once), foot-guns collected as warnings.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::error::PolicyError;
use super::model::{GuestEntry, PolicyFile};
use super::rule::{Access, ActionSet, Exempt, GuestRule};
use super::Policy;
use crate::config::line_of;
use crate::pve::host::HostPermit;
use crate::pve::Vmid;

const VMID_MIN: i64 = 100;
const VMID_MAX: i64 = 999_999_999;

impl Policy {
    /// Loads and compiles policy files.
    pub fn load(files: &[PathBuf]) -> Result<Policy, PolicyError> {
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        for path in files {
            match std::fs::read_to_string(path) {
                Ok(src) => sources.push((path.clone(), src)),
                Err(source) => errors.push(PolicyError::Read {
                    path: path.display().to_string(),
                    source,
                }),
            }
        }
        if let Some(e) = PolicyError::from_list(errors) {
            return Err(e);
        }
        Self::compile(&sources)
    }

    /// Compiles one policy from text (handy in tests and `pvegate demo`).
    pub fn from_toml_str(name: &str, src: &str) -> Result<Policy, PolicyError> {
        Self::compile(&[(PathBuf::from(name), src.to_string())])
    }

    /// Compiles `(path, text)` sources into one policy. Reports every error found (as
    /// [`PolicyError::Many`] when there are several).
    pub fn compile(sources: &[(PathBuf, String)]) -> Result<Policy, PolicyError> {
        let mut policy = Policy {
            rules: Vec::new(),
            by_vmid: Default::default(),
            ranges: Vec::new(),
            selector_rules: Vec::new(),
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
                approve: ActionSet::default(),
                approvers: 0,
                selector: None,
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
            approve: ActionSet::default(),
            approvers: 1,
            any_approve: false,
        };
        let mut errors: Vec<PolicyError> = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        let mut settings_seen: Option<String> = None;
        let mut allow_empty = false;
        for (path, src) in sources {
            let file: PolicyFile = match toml::from_str(src) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(PolicyError::toml(path, src, &e));
                    continue;
                }
            };
            let at = |span: std::ops::Range<usize>, msg: String| {
                PolicyError::at(path, src, Some(span.start), msg)
            };
            let warn_at = |span: std::ops::Range<usize>, msg: String| {
                format!("{}:{}: {msg}", path.display(), line_of(src, span.start))
            };
            if let Some(s) = file.settings {
                if let Some(first) = &settings_seen {
                    errors.push(PolicyError::at(
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
                for a in &s.approve {
                    if let Err(m) = add_approve(&mut policy.approve, a) {
                        errors.push(at(a.span(), m));
                    }
                }
                match approvers(s.approvers.as_ref()) {
                    Ok(n) => policy.approvers = n.max(1),
                    Err((span, m)) => errors.push(at(span, m)),
                }
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
                errors.push(PolicyError::Invalid {
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
            errors.push(PolicyError::at(
                &path,
                src,
                None,
                "this policy refuses nothing (no readonly guest, no deny list, no deny_actions, no default_access = \"readonly\", no strict): every request would pass. An empty or half-written file looks like this. If it is deliberate, set allow_empty = true under [settings]",
            ));
        }
        if let Some(e) = PolicyError::from_list(errors) {
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
        policy.any_approve =
            !policy.approve.is_empty() || policy.rules.iter().any(|r| !r.approve.is_empty());
        if policy.rules.iter().any(|r| r.shadow) {
            let mut enforced = policy.clone();
            for r in enforced.rules.iter_mut().filter(|r| r.shadow) {
                r.access = Access::Managed;
                r.allow = ActionSet::default();
                r.deny = ActionSet::default();
                r.approve = ActionSet::default();
            }
            enforced.restrictive = restrictive(&enforced.rules);
            enforced.shadowed = Some(std::sync::Arc::new(policy));
            return Ok(enforced);
        }
        Ok(policy)
    }

    fn add_rule(&mut self, rule: GuestRule) -> Result<(), String> {
        let idx = self.rules.len() as u32;
        if rule.selector.is_some() {
            self.selector_rules.push(idx);
        } else if rule.vmids.0 == rule.vmids.1 {
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
            r.access == Access::Readonly || r.deny != ActionSet::default() || !r.approve.is_empty()
        })
        .collect()
}

/// One `[[guest]]` entry; its errors go to `errors` (all of them), foot-guns to `warnings`.
fn compile_guest(
    path: &Path,
    src: &str,
    e: &GuestEntry,
    errors: &mut Vec<PolicyError>,
    warnings: &mut Vec<String>,
) -> Option<GuestRule> {
    let at = |span: std::ops::Range<usize>, msg: String| {
        PolicyError::at(path, src, Some(span.start), msg)
    };
    let warn_at = |span: std::ops::Range<usize>, msg: String| {
        format!("{}:{}: {msg}", path.display(), line_of(src, span.start))
    };
    let before = errors.len();
    let check = |v: i64, span: std::ops::Range<usize>| -> Result<Vmid, PolicyError> {
        if (VMID_MIN..=VMID_MAX).contains(&v) {
            Ok(v as Vmid)
        } else {
            Err(at(
                span,
                format!("vmid {v} is outside Proxmox's range 100-999999999"),
            ))
        }
    };
    let vmids: Result<(Vmid, Vmid), PolicyError> = match (&e.vmid, &e.vmids) {
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
        (None, None) if has_selector(e) => Ok((VMID_MIN as Vmid, VMID_MAX as Vmid)),
        (None, None) => Err(at(
            e.access.span(),
            "this [[guest]] names no guest: add vmid = N or vmids = \"LO-HI\"".into(),
        )),
    };
    let vmids = vmids.map_err(|err| errors.push(err)).ok();
    let selector = compile_selector(e, vmids, &at, errors);
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
    let mut approve = ActionSet::default();
    for a in &e.approve {
        if let Err(m) = add_approve(&mut approve, a) {
            errors.push(at(a.span(), m));
        } else if e.deny.iter().any(|d| d.get_ref() == a.get_ref()) {
            errors.push(at(
                a.span(),
                format!("{:?} is in both deny and approve: an approval cannot lift a refusal of the same rule; keep it in one list", a.get_ref()),
            ));
        }
    }
    let rule_approvers = match approvers(e.approvers.as_ref()) {
        Ok(n) => n,
        Err((span, m)) => {
            errors.push(at(span, m));
            0
        }
    };
    if rule_approvers > 0 && e.approve.is_empty() {
        warnings.push(warn_at(
            e.approvers.as_ref().map_or(0..0, |a| a.span()),
            "approvers has no effect here: this rule lists no approve actions".into(),
        ));
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
    let anchor = match &selector {
        Some(_) if e.vmid.is_none() && e.vmids.is_none() => selector_anchor(e).unwrap_or(anchor),
        _ => anchor,
    };
    let name = match &selector {
        Some(s) if s.name.is_some() => None,
        _ => e.name.clone(),
    };
    Some(GuestRule {
        origin: format!("{}:{}", path.display(), line_of(src, anchor)),
        vmids,
        name,
        access,
        reason: e.reason.clone(),
        allow,
        deny,
        exempt,
        shadow,
        hint,
        host,
        approve,
        approvers: rule_approvers,
        selector,
    })
}

/// Adds one `approve` pattern (an action, a family or `*`); reads cannot need approval.
fn add_approve(set: &mut ActionSet, a: &Spanned<String>) -> Result<(), String> {
    if a.get_ref() == "read" {
        return Err("approve = [\"read\"]: reads never need approval (clients poll them every second); list changes only".into());
    }
    set.add_pattern(a.get_ref())
}

/// `approvers = N`: 1 to 5 distinct approvers (0 when not given).
fn approvers(n: Option<&Spanned<i64>>) -> Result<u8, (std::ops::Range<usize>, String)> {
    match n {
        None => Ok(0),
        Some(v) if (1..=5).contains(v.get_ref()) => Ok(*v.get_ref() as u8),
        Some(v) => Err((
            v.span(),
            format!(
                "approvers = {} is not between 1 and 5 (distinct people who must approve)",
                v.get_ref()
            ),
        )),
    }
}

/// Whether a `[[guest]]` entry picks guests through the inventory.
fn has_selector(e: &GuestEntry) -> bool {
    e.tags.is_some()
        || e.pool.is_some()
        || e.kind.is_some()
        || e.template.is_some()
        || e.name.as_deref().is_some_and(|n| {
            super::selector::name_is_selector(n, e.vmid.is_some() || e.vmids.is_some())
        })
}

/// Where a selector rule starts, for its `file:line` (its first selector key).
fn selector_anchor(e: &GuestEntry) -> Option<usize> {
    [
        e.tags.as_ref().map(|t| t.span().start),
        e.pool.as_ref().map(|t| t.span().start),
        e.kind.as_ref().map(|t| t.span().start),
        e.template.as_ref().map(|t| t.span().start),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// The selector of an entry (`None` for a rule by `vmid`/`vmids` alone); its errors go to
/// `errors`.
fn compile_selector(
    e: &GuestEntry,
    vmids: Option<(Vmid, Vmid)>,
    at: &dyn Fn(std::ops::Range<usize>, String) -> PolicyError,
    errors: &mut Vec<PolicyError>,
) -> Option<super::selector::Selector> {
    if !has_selector(e) {
        return None;
    }
    let mut sel = super::selector::Selector {
        vmids: if e.vmid.is_some() || e.vmids.is_some() {
            vmids
        } else {
            None
        },
        ..Default::default()
    };
    if let Some(t) = &e.tags {
        if t.get_ref().is_empty() {
            errors.push(at(
                t.span(),
                "tags = [] selects no guest: list at least one tag".into(),
            ));
        }
        for tag in t.get_ref() {
            let ok = !tag.is_empty()
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.'));
            if !ok {
                errors.push(at(
                    t.span(),
                    format!(
                        "tag {tag:?} is not a Proxmox tag (letters, digits, '_', '-', '+', '.')"
                    ),
                ));
            }
            sel.tags.push(tag.to_ascii_lowercase());
        }
    }
    if let Some(p) = &e.pool {
        if p.get_ref().trim().is_empty() {
            errors.push(at(p.span(), "pool = \"\" names no pool".into()));
        }
        sel.pool = Some(p.get_ref().clone());
    }
    if let Some(n) = &e.name {
        if super::selector::name_is_selector(n, e.vmid.is_some() || e.vmids.is_some()) {
            sel.name = Some(n.to_ascii_lowercase());
        }
    }
    if let Some(k) = &e.kind {
        match crate::inventory::GuestType::parse(k.get_ref()) {
            Some(t) => sel.kind = Some(t),
            None => errors.push(at(
                k.span(),
                format!("type {:?} is not \"qemu\" or \"lxc\"", k.get_ref()),
            )),
        }
    }
    if let Some(t) = &e.template {
        sel.template = Some(*t.get_ref());
    }
    Some(sel)
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
