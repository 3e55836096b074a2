//! Parsed request -> [`Operation`]: the endpoint, its action and every guest it touches.
//!
//! Steps for a catalogue endpoint:
//! 1. route with [`catalogue::resolve`] (pveproxy's rules);
//! 2. refuse a path parameter repeated in query/body with a different value (pveproxy: 400
//!    "duplicate parameter (already defined in URI) with conflicting values");
//! 3. read every guest-bearing parameter in its format; a value that should name a guest but
//!    cannot be read is [`InspectError::Malformed`], never "no guest";
//! 4. apply the endpoint's "every guest" rule ([`AllGuests`]): omitted bulk lists, vzdump's
//!    `all`/`exclude`/`pool`, node shells, stored backup jobs and HA rules...;
//! 5. refine the action: `create` with `archive`/`restore=1` is `restore`; the raw agent call
//!    `POST …/agent` takes the action of its `command` (`shutdown` is `power.stop`);
//! 6. collect host-reaching values ([`crate::pve::host`]: host paths, devices, raw `args`,
//!    hook scripts) into [`Operation::host`]; one pvegate cannot read is `Malformed`.
//!
//! `POST /nodes/{node}/execute` is inspected recursively: every nested `{path, method, args}`
//! is judged as `nodes/<node>/<path>` and its guests are added.
//!
//! Unknown endpoints (and known paths with another method, which pveproxy answers with 501)
//! are [`Route::Unknown`]: GET is `read`, anything else `write`, and the guests are every
//! guest-looking value anywhere in the path or parameters (generous on purpose).

use std::borrow::Cow;
use std::ops::Bound;

use super::catalogue::{self, AllGuests, ApiMethod, GuestKind, Match, Param, Resolution};
use super::guests::{self, GuestParseError};
use super::host::{self, HostUse};
use super::request::Segment;
use super::{Action, GuestSet, ParamValue, Params};

/// Which route of the API a request reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A catalogue endpoint, by path template (e.g. `/nodes/{node}/qemu/{vmid}/status/stop`).
    Known(&'static str),
    /// Under `/api2/` but not in the catalogue (newer Proxmox than the schema), or a known
    /// path with a method it does not have; [`Operation::detail`] says which.
    Unknown,
    /// Outside `/api2/` (web UI pages, static files).
    Static,
}

/// What a request does: the typed facts the policy decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The route reached.
    pub route: Route,
    /// What the call does.
    pub action: Action,
    /// Every guest it affects.
    pub guests: GuestSet,
    /// A short explanation for `pvegate check` and logs, set when something is notable: why
    /// every guest is affected, an unknown endpoint, the nested calls of `execute`.
    pub detail: Option<Cow<'static, str>>,
    /// Host-reaching values (host paths, devices, raw `args`, hook scripts): the request
    /// reaches every guest through them and is also decided as `host.access`.
    pub host: Vec<HostUse>,
    /// Set by `inventory::expand` when it found the guests through the inventory's index (a
    /// pool, an HA group, a storage, a mapping): a subset of `guests` that judges like all
    /// of them under one inventory view.
    pub judged: Option<Judged>,
}

/// The guests of an [`Operation`] the policy needs to judge in place of all of them: every
/// guest named directly, plus the representatives of the pools, HA groups, storages or
/// mappings it reached (`policy::resolve`). Valid only with the view it was computed with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judged {
    /// The `id` of the resolved inventory view.
    pub view: u64,
    /// Sorted, free of duplicates, a subset of the operation's listed guests.
    pub guests: Vec<super::Vmid>,
}

impl Operation {
    /// An operation without detail.
    pub fn new(route: Route, action: Action, guests: GuestSet) -> Self {
        Operation {
            route,
            action,
            guests,
            detail: None,
            host: Vec::new(),
            judged: None,
        }
    }

    /// True for [`Route::Unknown`] (an endpoint pvegate has no facts about).
    pub fn is_unknown(&self) -> bool {
        self.route == Route::Unknown
    }

    /// The listed guests to judge under the view with id `view`: [`Operation::judged`] when
    /// it was computed with that view, otherwise every listed guest.
    #[inline]
    pub fn to_judge<'a>(&'a self, list: &'a [super::Vmid], view: Option<u64>) -> &'a [super::Vmid] {
        match (&self.judged, view) {
            (Some(j), Some(id)) if j.view == id => &j.guests,
            _ => list,
        }
    }
}

/// A request that cannot be judged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InspectError {
    /// pveproxy would reject it, or could read it differently: 400.
    #[error("{0}")]
    Malformed(String),
    /// Well-formed for pveproxy, but pvegate cannot tell what it would do (e.g. a nested
    /// `execute` command it cannot parse): refuse like a policy denial (403).
    #[error("{0}")]
    Unjudgeable(String),
}

impl From<GuestParseError> for InspectError {
    fn from(e: GuestParseError) -> Self {
        InspectError::Malformed(e.0)
    }
}

/// How deep `execute` may nest `execute`.
const MAX_EXECUTE_DEPTH: usize = 2;

/// Turns a parsed request into an [`Operation`].
///
/// `segments` are the decoded path segments after `/api2/<format>`; `params` is the query
/// merged over the body, as pveproxy merges them.
pub fn inspect(
    method: &http::Method,
    segments: &[Segment],
    params: &Params,
) -> Result<Operation, InspectError> {
    let m = ApiMethod::from_http(method).ok_or_else(|| {
        InspectError::Malformed(format!("method '{method}' not available (pveproxy: 501)"))
    })?;
    inspect_at(m, segments, params, 0)
}

fn inspect_at(
    m: ApiMethod,
    segments: &[Segment],
    params: &Params,
    depth: usize,
) -> Result<Operation, InspectError> {
    match catalogue::resolve(m, segments) {
        Resolution::Found(found) => inspect_known(&found, params, depth),
        Resolution::OtherMethods(set) => {
            let list: Vec<&str> = set.iter().map(ApiMethod::as_str).collect();
            let why = format!(
                "path exists only for {} (pveproxy answers 501 to {})",
                list.join("/"),
                m.as_str()
            );
            Ok(inspect_unknown(m, segments, params, Cow::Owned(why)))
        }
        Resolution::NotFound => Ok(inspect_unknown(
            m,
            segments,
            params,
            Cow::Borrowed("unknown endpoint (newer Proxmox?)"),
        )),
        Resolution::InvalidSegment(name) => Err(InspectError::Malformed(format!(
            "path parameter '{name}' contains whitespace"
        ))),
    }
}

fn malformed(msg: String) -> InspectError {
    InspectError::Malformed(msg)
}

fn is_defined(v: Option<&ParamValue>) -> bool {
    matches!(v, Some(ParamValue::One(_) | ParamValue::Many(_)))
}

/// PVE's `parse_boolean`, failing towards "true" for anything it would reject.
fn is_true(v: Option<&ParamValue>) -> bool {
    match v {
        None | Some(ParamValue::Absent) => false,
        Some(ParamValue::One(s)) => {
            let t = s.strip_suffix('\n').unwrap_or(s).to_ascii_lowercase();
            !matches!(t.as_str(), "0" | "off" | "no" | "false")
        }
        Some(ParamValue::Many(_)) => true,
    }
}

fn inspect_known(
    found: &Match<'_>,
    params: &Params,
    depth: usize,
) -> Result<Operation, InspectError> {
    let ep = found.endpoint;

    // A path parameter repeated in query/body must carry the same string (nested `execute`
    // arguments may not repeat it at all).
    for (name, value) in found.params.iter() {
        match params.map.get(name) {
            None => {}
            Some(ParamValue::One(v)) if v == value && depth == 0 => {}
            Some(_) => {
                return Err(malformed(format!(
                    "parameter '{name}' conflicts with the value in the URI"
                )))
            }
        }
    }

    let mut guests = GuestSet::None;
    let mut detail: Option<Cow<'static, str>> = None;
    for gp in &ep.guest_params {
        let p = &ep.params[gp.index];
        if p.in_path {
            if let Some(v) = found.params.get(&p.name) {
                let nested = extract_one(gp.kind, p, v, found, depth, &mut guests)?;
                detail = detail.or(nested);
            }
        } else if p.family().is_some() {
            for (k, v) in family_entries(params, p) {
                extract(gp.kind, p, k, v, found, depth, &mut guests)?;
            }
        } else if let Some(v) = params.map.get(&p.name) {
            if let Some(d) = extract(gp.kind, p, &p.name, v, found, depth, &mut guests)? {
                detail = Some(d);
            }
        }
    }

    let mut host_uses = Vec::new();
    for &(index, kind) in &ep.host_params {
        let p = &ep.params[index];
        for (k, v) in family_entries(params, p) {
            match v {
                ParamValue::Absent => {}
                ParamValue::One(s) => {
                    host::collect(kind, p, k, s, &mut host_uses).map_err(malformed)?
                }
                ParamValue::Many(_) => {
                    return Err(malformed(format!("parameter '{k}' given more than once")))
                }
            }
        }
    }
    if !host_uses.is_empty() && detail.is_none() {
        let list: Vec<String> = host_uses.iter().map(ToString::to_string).collect();
        detail = Some(Cow::Owned(format!(
            "reaches the host, so every guest ({})",
            list.join("; ")
        )));
    }

    let get = |k: &str| params.map.get(k);
    match ep.all_guests {
        AllGuests::Never => {}
        AllGuests::Always(why) => {
            guests.set_all();
            detail = Some(Cow::Borrowed(why));
        }
        AllGuests::VmsOmitted => {
            if !is_defined(get("vms")) {
                guests.set_all();
                detail = Some(Cow::Borrowed("no 'vms' list: every guest"));
            }
        }
        AllGuests::VmidOmitted => {
            if !is_defined(get("vmid")) {
                guests.set_all();
                detail = Some(Cow::Borrowed("no 'vmid': every guest's backups"));
            }
        }
        AllGuests::Vzdump => {
            let pool = is_defined(get("pool"));
            if pool {
                guests.set_all();
                detail = Some(Cow::Borrowed(
                    "'pool' selects its members (not known offline)",
                ));
            } else if is_true(get("all")) || is_defined(get("exclude")) {
                guests.set_all();
                detail = Some(Cow::Borrowed(
                    "'all' (or 'exclude', which implies it): every guest",
                ));
            } else if !is_defined(get("vmid")) {
                // Proxmox refuses a backup without a selection; if some version did not, it
                // would not be a backup of no guest. Fail closed.
                guests.set_all();
                detail = Some(Cow::Borrowed(
                    "no 'vmid', 'all' or 'pool': treated as every guest",
                ));
            }
        }
    }

    let mut action = ep.action_or_default();
    if action == Action::Create {
        let restore = match found.template {
            "/nodes/{node}/qemu" => is_defined(get("archive")),
            "/nodes/{node}/lxc" => is_true(get("restore")),
            _ => false,
        };
        if restore {
            action = Action::Restore;
        }
    }
    if found.template == "/nodes/{node}/qemu/{vmid}/agent" {
        if let Some(ParamValue::One(c)) = get("command") {
            action = agent_command_action(c);
        }
    }
    Ok(Operation {
        route: Route::Known(found.template),
        action,
        guests,
        detail,
        host: host_uses,
        judged: None,
    })
}

/// The request parameters of the indexed family `p` (`scsi[n]`: `scsi0`, `scsi12`...), in key
/// order (for a plain parameter, its one key). They sort together from the prefix on, so only
/// those keys are visited instead of testing every key against every family (a config update
/// has half a dozen disk families).
fn family_entries<'a>(
    params: &'a Params,
    p: &'a Param,
) -> impl Iterator<Item = (&'a String, &'a ParamValue)> {
    let prefix = p.family().unwrap_or(&p.name);
    params
        .map
        .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
        .filter(|(k, _)| p.matches_key(k))
}

/// The raw agent call (`POST …/agent`, `command=`) gets the action of the dedicated endpoint
/// for that command, so `agent.write` cannot stand in for `power.stop`.
fn agent_command_action(command: &str) -> Action {
    match command.strip_suffix('\n').unwrap_or(command) {
        "shutdown" | "suspend-disk" | "suspend-ram" | "suspend-hybrid" => Action::PowerStop,
        "ping" | "fsfreeze-status" | "info" | "network-get-interfaces" => Action::Read,
        c if c.starts_with("get-") => Action::Read,
        _ => Action::AgentWrite,
    }
}

/// Reads one request value of a guest-bearing parameter.
fn extract(
    kind: GuestKind,
    p: &Param,
    key: &str,
    value: &ParamValue,
    found: &Match<'_>,
    depth: usize,
    out: &mut GuestSet,
) -> Result<Option<Cow<'static, str>>, InspectError> {
    match value {
        ParamValue::Absent => Ok(None),
        ParamValue::One(s) => extract_one(kind, p, s, found, depth, out),
        ParamValue::Many(list) => match kind {
            // `-list` formats: pveproxy joins repeated values with `,`.
            GuestKind::VmidList | GuestKind::HaSidList => {
                extract_one(kind, p, &list.join(","), found, depth, out)
            }
            // Arrays: every element is one item.
            GuestKind::VmidArray => {
                for s in list {
                    out.insert(guests::parse_vmid(s)?);
                }
                Ok(None)
            }
            _ => Err(malformed(format!("parameter '{key}' given more than once"))),
        },
    }
}

fn extract_one(
    kind: GuestKind,
    p: &Param,
    s: &str,
    found: &Match<'_>,
    depth: usize,
    out: &mut GuestSet,
) -> Result<Option<Cow<'static, str>>, InspectError> {
    match kind {
        GuestKind::Vmid | GuestKind::VmidArray => out.insert(guests::parse_vmid(s)?),
        GuestKind::VmidList => guests::parse_vmid_list(s, out)?,
        GuestKind::HaSid => out.insert(guests::parse_ha_sid(s)?),
        GuestKind::HaSidList => guests::parse_ha_sid_list(s, out)?,
        GuestKind::ReplicationId => out.insert(guests::parse_replication_id(s)?),
        GuestKind::Upid => {
            out.union(&guests::parse_upid(s)?);
        }
        GuestKind::Volume => guests::volume_owners(s, out),
        GuestKind::PropertyString => guests::property_string_owners(s, &p.volume_keys, out),
        GuestKind::AclPath => out.union(&guests::parse_acl_path(s)?),
        GuestKind::Commands => {
            let node = found.params.get("node").unwrap_or("localhost");
            return inspect_commands(node, s, depth, out).map(Some);
        }
    }
    Ok(None)
}

/// Converts a nested `args` value like Perl would see it after `decode_json`.
fn json_to_param(v: &serde_json::Value) -> Option<ParamValue> {
    use serde_json::Value;
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
            Value::Number(n) => Some(match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => i.to_string(),
                (_, Some(u), _) => u.to_string(),
                (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
                _ => n.to_string(),
            }),
            _ => None,
        }
    }
    match v {
        Value::Null => Some(ParamValue::Absent),
        Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()
            .map(ParamValue::Many),
        other => scalar(other).map(ParamValue::One),
    }
}

/// `POST /nodes/{node}/execute`: judges every nested call as `nodes/<node>/<path>` and adds
/// its guests. Returns a detail text listing the nested actions.
fn inspect_commands(
    node: &str,
    commands: &str,
    depth: usize,
    out: &mut GuestSet,
) -> Result<Cow<'static, str>, InspectError> {
    let unjudgeable = |why: &str| InspectError::Unjudgeable(format!("execute: {why}"));
    if depth >= MAX_EXECUTE_DEPTH {
        return Err(unjudgeable("execute nested too deeply"));
    }
    let parsed: serde_json::Value = serde_json::from_str(commands)
        .map_err(|e| malformed(format!("execute: 'commands' is not valid JSON: {e}")))?;
    let list = parsed
        .as_array()
        .ok_or_else(|| malformed("execute: 'commands' is not a JSON array".into()))?;
    let mut summary = Vec::with_capacity(list.len());
    for cmd in list {
        let obj = cmd
            .as_object()
            .ok_or_else(|| unjudgeable("a command is not an object"))?;
        let path = obj
            .get("path")
            .and_then(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .ok_or_else(|| unjudgeable("a command has no 'path'"))?;
        let method = obj
            .get("method")
            .and_then(|m| m.as_str())
            .and_then(ApiMethod::from_name)
            .ok_or_else(|| unjudgeable("a command has no valid 'method'"))?;
        let mut params = Params::default();
        match obj.get("args") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(args)) => {
                for (k, v) in args {
                    let pv = json_to_param(v).ok_or_else(|| {
                        unjudgeable(&format!("argument '{k}' is a nested object"))
                    })?;
                    params.map.insert(k.clone(), pv);
                }
            }
            Some(_) => return Err(unjudgeable("'args' is not an object")),
        }
        let mut segments = vec![Segment::new("nodes"), Segment::new(node)];
        segments.extend(path.split('/').filter(|s| !s.is_empty()).map(Segment::new));
        let op = inspect_at(method, &segments, &params, depth + 1)?;
        out.union(&op.guests);
        if !op.host.is_empty() {
            // A nested call that reaches the host reaches every guest; `execute` has no
            // host allow-list of its own.
            out.set_all();
        }
        let target = match op.route {
            Route::Known(t) => t.to_string(),
            _ => format!("unknown /{}", segments.join("/")),
        };
        summary.push(format!("{} {} {}", op.action, method.as_str(), target));
    }
    Ok(Cow::Owned(format!("nested calls: {}", summary.join("; "))))
}

/// An endpoint pvegate does not know: `read` for GET, `write` otherwise, and every
/// guest-looking value in the path and parameters.
fn inspect_unknown(
    m: ApiMethod,
    segments: &[Segment],
    params: &Params,
    why: Cow<'static, str>,
) -> Operation {
    let mut guests = GuestSet::None;
    for (i, seg) in segments.iter().enumerate() {
        let prev = if i > 0 { segments[i - 1].as_str() } else { "" };
        let key = if matches!(prev, "qemu" | "lxc") {
            Some("vmid")
        } else {
            None
        };
        // Any all-digit segment in the VMID range counts, not just `qemu/<n>` pairs.
        let key = key.or(if seg.bytes().all(|b| b.is_ascii_digit()) {
            Some("id")
        } else {
            None
        });
        guests::scan_generous(key, seg, &mut guests);
    }
    guests::scan_generous(None, &segments.join("/"), &mut guests);
    // A volume id in the path spans segments from the one holding `storage:` on
    // (`…/local:104/vm-200-disk-0.qcow2`): scan the path from each such segment too.
    for (i, seg) in segments.iter().enumerate().skip(1) {
        if seg.contains(':') && i + 1 < segments.len() {
            guests::scan_generous(None, &segments[i..].join("/"), &mut guests);
        }
    }
    for (k, v) in &params.map {
        match v {
            ParamValue::Absent => {}
            ParamValue::One(s) => guests::scan_generous(Some(k), s, &mut guests),
            ParamValue::Many(list) => {
                for s in list {
                    guests::scan_generous(Some(k), s, &mut guests);
                }
            }
        }
    }
    let action = if m == ApiMethod::Get {
        Action::Read
    } else {
        Action::Write
    };
    // An unknown call may take host paths too (a newer Proxmox's disk key): any absolute path
    // in a parameter value, or in a property-string item, counts (fail closed).
    let mut host_uses = Vec::new();
    if action != Action::Read {
        for (k, v) in &params.map {
            let values: &[String] = match v {
                ParamValue::Absent => &[],
                ParamValue::One(s) => std::slice::from_ref(s),
                ParamValue::Many(list) => list,
            };
            for s in values {
                let found = s.split(',').any(|item| {
                    let val = item.split_once('=').map_or(item, |(_, v)| v);
                    val.trim_start().starts_with('/')
                });
                if found {
                    host_uses.push(HostUse {
                        key: k.clone(),
                        target: host::HostTarget::Path {
                            path: s.clone(),
                            plain: false,
                        },
                    });
                }
            }
        }
    }
    Operation {
        route: Route::Unknown,
        action,
        guests,
        detail: Some(why),
        host: host_uses,
        judged: None,
    }
}

#[cfg(test)]
mod tests;
