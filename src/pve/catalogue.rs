//! The endpoint catalogue generated from the Proxmox VE API schema, and the router that maps
//! a request to it exactly like pveproxy's `map_path_to_methods`.
//!
//! The data lives in `src/pve/catalogue.json`, written by `tools/gen_catalogue.py` from the
//! PVE 9.1 and 8.4 schemas (the union of both) and embedded at compile time. At first use it
//! is parsed once into a static segment trie; every endpoint also gets its [`Action`] (from
//! [`crate::pve::action::classify`]), its guest-bearing parameters ([`GuestParam`]) and its
//! "every guest" rule ([`AllGuests`]), so a lookup does no parsing and no regex work.
//! [`ApiMethod`] lives in [`crate::pve::method`] and is re-exported here.
//!
//! Routing rules (pve-common `RESTHandler.pm`): fixed segments match exactly and
//! case-sensitively; `{param}` matches one segment (pveproxy's default regex `\S+`, so a
//! value with whitespace never routes and is refused here); a rest-of-path parameter
//! (`{volume}`, `{cidr}`) takes all remaining segments joined with `/`. `.` and `..` are
//! ordinary text.

use std::borrow::Cow;
use std::sync::LazyLock;

use serde::Deserialize;

use super::action::{self, Action};
use super::host::HostKind;
pub use super::method::ApiMethod;
use super::request::Segment;

/// A set of [`ApiMethod`]s (the methods a path exists with).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MethodSet(u8);

impl MethodSet {
    /// True if `m` is in the set.
    pub fn contains(self, m: ApiMethod) -> bool {
        self.0 & (1 << m.index()) != 0
    }

    /// True if no method is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The methods in the set.
    pub fn iter(self) -> impl Iterator<Item = ApiMethod> {
        ApiMethod::ALL
            .into_iter()
            .filter(move |m| self.contains(*m))
    }
}

/// One parameter of an endpoint, as recorded by the generator (facts only).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Param {
    /// Name; indexed families are written `scsi[n]` and match `scsi0`, `scsi1`...
    pub name: String,
    /// True for parameters taken from the path template.
    #[serde(default)]
    pub in_path: bool,
    /// JSON-schema type (`string`, `integer`, `boolean`, `array`, ...).
    #[serde(rename = "type")]
    pub ty: String,
    /// PVE format name (`pve-vmid`, `pve-vmid-list`, `property-string`, ...).
    #[serde(default)]
    pub format: Option<String>,
    /// The format ends in `-list`: repeated values are joined with `,`.
    #[serde(default)]
    pub list: bool,
    /// Format of array items (`pve-vmid` for the cluster bulk actions).
    #[serde(default)]
    pub items_format: Option<String>,
    /// The schema's hint about a guest reference (`vmid`, `vmid-list`, `ha-sid`, `upid`,
    /// `volume-id`, `property-string:file,volume`, ...), see `docs/pveproxy.md#guest-params`.
    #[serde(default)]
    pub vmid_ref: Option<String>,
    /// Property-string sub-keys whose value is a volume ID (aliases included).
    #[serde(default)]
    pub volume_keys: Vec<String>,
    /// The property string's default key (the value of an item without `key=`).
    #[serde(default)]
    pub default_key: Option<String>,
    /// A non-path parameter the call requires.
    #[serde(default)]
    pub required: bool,
    /// How the parameter can reach the host (`paths`, `hookscript`, `pci`, `usb`, `args`;
    /// `unreviewed` for one the generator's heuristics flagged but no table classified).
    #[serde(default)]
    pub host: Option<String>,
    /// Property-string sub-keys whose value may be an absolute host path.
    #[serde(default)]
    pub host_keys: Vec<String>,
    /// The default key, when it is one of `host_keys`.
    #[serde(default)]
    pub host_default: Option<String>,
}

impl Param {
    /// For `scsi[n]`-style families, the prefix (`scsi`); `None` for plain names.
    pub fn family(&self) -> Option<&str> {
        self.name.strip_suffix("[n]")
    }

    /// Does the request key `key` denote this parameter (`scsi3` for `scsi[n]`)?
    pub fn matches_key(&self, key: &str) -> bool {
        match self.family() {
            None => self.name == key,
            Some(prefix) => key
                .strip_prefix(prefix)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        }
    }
}

/// How a guest-bearing parameter names guests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestKind {
    /// `pve-vmid` (strict).
    Vmid,
    /// `pve-vmid-list` (`split_list`).
    VmidList,
    /// Array of `pve-vmid` (cluster bulk actions).
    VmidArray,
    /// HA resource id `vm:N` / `ct:N` / `N`.
    HaSid,
    /// List of HA resource ids.
    HaSidList,
    /// Replication job id `N-M`.
    ReplicationId,
    /// Task id (UPID).
    Upid,
    /// A volume ID (or path): every possible owner.
    Volume,
    /// A property string with volume sub-keys (disks, mount points, cloud-init snippets).
    PropertyString,
    /// An ACL path (`/vms/N`).
    AclPath,
    /// `execute`'s JSON list of nested API calls.
    Commands,
}

impl GuestKind {
    fn from_param(p: &Param) -> Option<GuestKind> {
        let by_ref = match p.vmid_ref.as_deref() {
            Some("vmid") => Some(GuestKind::Vmid),
            Some("vmid-list") => Some(GuestKind::VmidList),
            Some("vmid-array") => Some(GuestKind::VmidArray),
            Some("ha-sid") => Some(GuestKind::HaSid),
            Some("ha-sid-list") => Some(GuestKind::HaSidList),
            Some("replication-job-id") => Some(GuestKind::ReplicationId),
            Some("upid") => Some(GuestKind::Upid),
            Some("volume-id") => Some(GuestKind::Volume),
            Some("acl-path") => Some(GuestKind::AclPath),
            Some("nested-api-calls") => Some(GuestKind::Commands),
            Some(r) if r.starts_with("property-string:") => Some(GuestKind::PropertyString),
            _ => None,
        };
        if by_ref.is_some() {
            return by_ref;
        }
        match (p.format.as_deref(), p.items_format.as_deref()) {
            (Some("pve-vmid"), _) => Some(GuestKind::Vmid),
            (Some("pve-vmid-list"), _) => Some(GuestKind::VmidList),
            (_, Some("pve-vmid")) => Some(GuestKind::VmidArray),
            (Some("pve-volume-id"), _) => Some(GuestKind::Volume),
            (Some("pve-ha-resource-or-vm-id"), _) => Some(GuestKind::HaSid),
            (Some("pve-ha-resource-id-list"), _) => Some(GuestKind::HaSidList),
            (Some("pve-replication-job-id"), _) => Some(GuestKind::ReplicationId),
            _ if !p.volume_keys.is_empty() => Some(GuestKind::PropertyString),
            _ => None,
        }
    }
}

/// A parameter of an endpoint that names guests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestParam {
    /// Index into [`Endpoint::params`].
    pub index: usize,
    /// How to read it.
    pub kind: GuestKind,
}

/// When a call acts on every guest (`docs/pveproxy.md#all-guests`, `#stored-selections`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllGuests {
    /// Only the named guests.
    Never,
    /// Always every guest; the text says why.
    Always(&'static str),
    /// Every guest when `vms` is missing or undef (an empty list selects none).
    VmsOmitted,
    /// Every guest when `vmid` is missing or undef (`prunebackups`).
    VmidOmitted,
    /// vzdump / backup jobs: `all=1`, `exclude` defined without `pool`, or `pool` defined.
    Vzdump,
}

const BACKUP_JOB: &str =
    "a backup job: its stored guest selection (vmid/all/exclude/pool) is not known offline";
const HA_RULE: &str = "an HA rule or group: the guests it places are stored server-side";
const NODE_SHELL: &str = "a node shell reaches every guest";
const STARTALL: &str =
    "startall first clears left-over backup locks on every guest of the node, whatever 'vms' lists";

fn all_guests_rule(m: ApiMethod, template: &str) -> AllGuests {
    use ApiMethod::*;
    match (m, template) {
        // pve-manager `PVE/API2/Nodes.pm` `startall`: before starting anything it removes
        // left-over `backup` locks from every guest on the node (`$remove_locks_on_startup`
        // walks the node's whole guest list), whatever `vms` lists.
        (Post, "/nodes/{node}/startall") => AllGuests::Always(STARTALL),
        (
            Post,
            "/nodes/{node}/stopall"
            | "/nodes/{node}/suspendall"
            | "/nodes/{node}/migrateall"
            | "/cluster/bulk-action/guest/start"
            | "/cluster/bulk-action/guest/shutdown"
            | "/cluster/bulk-action/guest/suspend"
            | "/cluster/bulk-action/guest/migrate",
        ) => AllGuests::VmsOmitted,
        (Post, "/nodes/{node}/vzdump" | "/cluster/backup") => AllGuests::Vzdump,
        (Put | Delete, "/cluster/backup/{id}") => AllGuests::Always(BACKUP_JOB),
        (Delete, "/nodes/{node}/storage/{storage}/prunebackups") => AllGuests::VmidOmitted,
        (Post, "/nodes/{node}/status") => {
            AllGuests::Always("node reboot/shutdown stops every guest on the node")
        }
        (Post, "/cluster/ha/status/arm-ha" | "/cluster/ha/status/disarm-ha") => {
            AllGuests::Always("HA arm/disarm affects every HA resource")
        }
        (Put | Delete, "/cluster/ha/rules/{rule}" | "/cluster/ha/groups/{group}") => {
            AllGuests::Always(HA_RULE)
        }
        (
            Post,
            "/nodes/{node}/termproxy" | "/nodes/{node}/vncshell" | "/nodes/{node}/spiceshell",
        )
        | (Get, "/nodes/{node}/vncwebsocket") => AllGuests::Always(NODE_SHELL),
        _ => AllGuests::Never,
    }
}

/// One endpoint × method of the Proxmox API.
#[derive(Debug)]
pub struct Endpoint {
    /// Path template relative to `/api2/<format>`, e.g. `/nodes/{node}/qemu/{vmid}/config`.
    pub path: String,
    /// The method.
    pub method: ApiMethod,
    /// PVE versions whose schema has this endpoint (`8.4`, `9.1`).
    pub versions: Vec<String>,
    /// The path parameter that takes all remaining segments (`volume`, `cidr`).
    pub rest_of_path_param: Option<String>,
    /// A websocket endpoint (console, migration tunnel).
    pub websocket: bool,
    /// The response is a streamed file.
    pub download_allowed: bool,
    /// The schema flags it as acting on every guest when the selection is omitted.
    pub all_guests_when_omitted: bool,
    /// Parameters, sorted by name.
    pub params: Vec<Param>,
    /// The action from the rule table (`None` only if the table misses it).
    pub action: Option<Action>,
    /// Parameters that name guests, precomputed.
    pub guest_params: Vec<GuestParam>,
    /// When the call reaches every guest.
    pub all_guests: AllGuests,
    /// Parameters that can reach the host ([`crate::pve::host`]), precomputed. A parameter
    /// with a `host` fact this build does not know is [`HostKind::Paths`] over every sub-key
    /// (fail closed).
    pub host_params: Vec<(usize, HostKind)>,
}

impl Endpoint {
    /// The path template.
    pub fn template(&self) -> &str {
        &self.path
    }

    /// The action, falling back to `read` for GET and `write` otherwise if unclassified.
    pub fn action_or_default(&self) -> Action {
        self.action.unwrap_or(if self.method == ApiMethod::Get {
            Action::Read
        } else {
            Action::Write
        })
    }

    /// True if `version` (e.g. `8.4`) has this endpoint.
    pub fn in_version(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    /// The parameter called `name` (exact name, `scsi[n]` for families).
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

#[derive(Deserialize)]
struct RawEndpoint {
    path: String,
    method: ApiMethod,
    pve: Vec<String>,
    #[serde(default)]
    rest_of_path_param: Option<String>,
    #[serde(default)]
    websocket: bool,
    #[serde(default)]
    download_allowed: bool,
    #[serde(default)]
    all_guests_when_omitted: bool,
    params: Vec<Param>,
}

/// Where the generated data came from (the file's `header`).
#[derive(Clone, Debug, Deserialize)]
pub struct Source {
    /// Short version label (`9.1`, `8.4`).
    pub pve: String,
    /// Long version text from the schema's `meta`.
    #[serde(default)]
    pub pve_version: Option<String>,
    /// Source repository (`proxmox/pve-docs`).
    #[serde(default)]
    pub source_repo: Option<String>,
    /// Source commit.
    #[serde(default)]
    pub source_commit: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    sources: Vec<Source>,
}

#[derive(Deserialize)]
struct RawFile {
    header: RawHeader,
    endpoints: Vec<RawEndpoint>,
}

/// The most path parameters any template has is 4; room for more.
pub const MAX_PATH_PARAMS: usize = 8;

/// Path parameters extracted by the router, without allocation (a rest-of-path value that
/// spans several segments is the only owned string).
#[derive(Clone, Debug)]
pub struct PathParams<'a> {
    len: usize,
    items: [(&'static str, Cow<'a, str>); MAX_PATH_PARAMS],
}

impl<'a> PathParams<'a> {
    fn new() -> Self {
        PathParams {
            len: 0,
            items: std::array::from_fn(|_| ("", Cow::Borrowed(""))),
        }
    }

    fn push(&mut self, name: &'static str, value: Cow<'a, str>) -> bool {
        if self.len == MAX_PATH_PARAMS {
            return false;
        }
        self.items[self.len] = (name, value);
        self.len += 1;
        true
    }

    /// The value of path parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// `(name, value)` pairs in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.items[..self.len].iter().map(|(n, v)| (*n, v.as_ref()))
    }

    /// Number of path parameters.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the template has no parameter.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A request matched to a catalogue endpoint.
#[derive(Clone, Debug)]
pub struct Match<'a> {
    /// The endpoint's facts.
    pub endpoint: &'static Endpoint,
    /// The path template, e.g. `/nodes/{node}/qemu/{vmid}/status/stop`.
    pub template: &'static str,
    /// The path parameters.
    pub params: PathParams<'a>,
}

/// The outcome of routing a path.
// `Found` is large on purpose: the path parameters live inline so routing does not allocate.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Resolution<'a> {
    /// The endpoint for this method.
    Found(Match<'a>),
    /// The path exists, but only with these methods (pveproxy answers 501).
    OtherMethods(MethodSet),
    /// No such path in the catalogue.
    NotFound,
    /// A `{param}` segment pveproxy's `\S+` would not match (it contains whitespace).
    InvalidSegment(&'static str),
}

struct ParamChild {
    name: String,
    node: usize,
    rest: bool,
}

/// A fixed path segment with a precomputed sort key: probes compare integers and only touch
/// the bytes past the first eight on a full key match.
struct Fixed {
    len: usize,
    prefix: u64,
    text: String,
    node: usize,
}

/// `(len, first eight bytes)` of a segment.
#[inline]
fn seg_key(s: &str) -> (usize, u64) {
    let b = s.as_bytes();
    let mut buf = [0u8; 8];
    let n = b.len().min(8);
    buf[..n].copy_from_slice(&b[..n]);
    (b.len(), u64::from_be_bytes(buf))
}

impl Fixed {
    #[inline]
    fn order(&self, key: (usize, u64), seg: &str) -> std::cmp::Ordering {
        (self.len, self.prefix).cmp(&key).then_with(|| {
            if self.len > 8 {
                self.text.as_bytes()[8..].cmp(&seg.as_bytes()[8..])
            } else {
                std::cmp::Ordering::Equal
            }
        })
    }
}

#[derive(Default)]
struct Node {
    fixed: Vec<Fixed>,
    param: Option<ParamChild>,
    methods: [Option<usize>; 4],
}

/// The parsed catalogue with its router.
pub struct Catalogue {
    endpoints: Vec<Endpoint>,
    nodes: Vec<Node>,
    sources: Vec<Source>,
}

const DATA: &str = include_str!("catalogue.json");

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| {
    // The data is generated, checked in and embedded at compile time; the unit tests parse
    // it, so a failure here can only be a build from a hand-edited file.
    Catalogue::parse(DATA).expect("embedded src/pve/catalogue.json is valid (see unit tests)")
});

fn split_template(t: &str) -> impl Iterator<Item = &str> {
    t.split('/').filter(|s| !s.is_empty())
}

impl Catalogue {
    /// Parses generated catalogue data and builds the router.
    pub fn parse(data: &str) -> Result<Catalogue, String> {
        let raw: RawFile =
            serde_json::from_str(data).map_err(|e| format!("catalogue data: {e}"))?;
        let mut cat = Catalogue {
            endpoints: Vec::with_capacity(raw.endpoints.len()),
            nodes: vec![Node::default()],
            sources: raw.header.sources,
        };
        for r in raw.endpoints {
            let guest_params = r
                .params
                .iter()
                .enumerate()
                .filter_map(|(index, p)| {
                    GuestKind::from_param(p).map(|kind| GuestParam { index, kind })
                })
                .collect();
            let host_params = r
                .params
                .iter()
                .enumerate()
                .filter_map(|(index, p)| {
                    let fact = p.host.as_deref()?;
                    Some((index, HostKind::from_fact(fact).unwrap_or(HostKind::Paths)))
                })
                .collect();
            let ep = Endpoint {
                host_params,
                action: action::classify(r.method, &r.path),
                all_guests: all_guests_rule(r.method, &r.path),
                path: r.path,
                method: r.method,
                versions: r.pve,
                rest_of_path_param: r.rest_of_path_param,
                websocket: r.websocket,
                download_allowed: r.download_allowed,
                all_guests_when_omitted: r.all_guests_when_omitted,
                params: r.params,
                guest_params,
            };
            let idx = cat.endpoints.len();
            cat.insert(idx, &ep)?;
            cat.endpoints.push(ep);
        }
        Ok(cat)
    }

    fn insert(&mut self, idx: usize, ep: &Endpoint) -> Result<(), String> {
        let mut node = 0;
        let mut nparams = 0;
        for seg in split_template(&ep.path) {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                nparams += 1;
                let rest = ep.rest_of_path_param.as_deref() == Some(name);
                let next = self.nodes.len();
                let cur = &mut self.nodes[node];
                if !cur.fixed.is_empty() {
                    return Err(format!("{}: parameter beside fixed segments", ep.path));
                }
                match &mut cur.param {
                    Some(p) if p.name == name => {
                        p.rest |= rest;
                        node = p.node;
                    }
                    Some(p) => return Err(format!("{}: {{{name}}} vs {{{}}}", ep.path, p.name)),
                    None => {
                        cur.param = Some(ParamChild {
                            name: name.to_string(),
                            node: next,
                            rest,
                        });
                        self.nodes.push(Node::default());
                        node = next;
                    }
                }
            } else {
                let next = self.nodes.len();
                let cur = &mut self.nodes[node];
                if cur.param.is_some() {
                    return Err(format!("{}: fixed segment beside a parameter", ep.path));
                }
                let key = seg_key(seg);
                match cur.fixed.binary_search_by(|f| f.order(key, seg)) {
                    Ok(i) => node = cur.fixed[i].node,
                    Err(i) => {
                        let fixed = Fixed {
                            len: key.0,
                            prefix: key.1,
                            text: seg.to_string(),
                            node: next,
                        };
                        cur.fixed.insert(i, fixed);
                        self.nodes.push(Node::default());
                        node = next;
                    }
                }
            }
        }
        if nparams > MAX_PATH_PARAMS {
            return Err(format!("{}: too many path parameters", ep.path));
        }
        let slot = &mut self.nodes[node].methods[ep.method.index()];
        if slot.is_some() {
            return Err(format!(
                "{} {}: duplicate endpoint",
                ep.method.as_str(),
                ep.path
            ));
        }
        *slot = Some(idx);
        Ok(())
    }
}

fn has_whitespace(s: &str) -> bool {
    s.chars().any(char::is_whitespace)
}

/// Routes `segments` (decoded path segments after `/api2/<format>`, empty ones ignored) like
/// pveproxy: see the module documentation.
pub fn resolve(method: ApiMethod, segments: &[Segment]) -> Resolution<'_> {
    let cat: &'static Catalogue = &CATALOGUE;
    let mut node = &cat.nodes[0];
    let mut params = PathParams::new();
    let mut i = 0;
    while i < segments.len() {
        let seg = segments[i].as_str();
        if seg.is_empty() {
            i += 1;
            continue;
        }
        let key = seg_key(seg);
        if let Ok(k) = node.fixed.binary_search_by(|f| f.order(key, seg)) {
            node = &cat.nodes[node.fixed[k].node];
            i += 1;
            continue;
        }
        let Some(p) = &node.param else {
            return Resolution::NotFound;
        };
        let value: Cow<'_, str> = if p.rest {
            let rest: Vec<&str> = segments[i..]
                .iter()
                .map(Segment::as_str)
                .filter(|s| !s.is_empty())
                .collect();
            i = segments.len();
            if rest.len() == 1 {
                Cow::Borrowed(rest[0])
            } else {
                Cow::Owned(rest.join("/"))
            }
        } else {
            i += 1;
            Cow::Borrowed(seg)
        };
        if has_whitespace(&value) {
            return Resolution::InvalidSegment(p.name.as_str());
        }
        if !params.push(p.name.as_str(), value) {
            return Resolution::NotFound;
        }
        node = &cat.nodes[p.node];
    }
    match node.methods[method.index()] {
        Some(idx) => {
            let endpoint = &cat.endpoints[idx];
            Resolution::Found(Match {
                endpoint,
                template: endpoint.path.as_str(),
                params,
            })
        }
        None => {
            let mut set = MethodSet::default();
            for m in ApiMethod::ALL {
                if node.methods[m.index()].is_some() {
                    set.0 |= 1 << m.index();
                }
            }
            if set.is_empty() {
                Resolution::NotFound
            } else {
                Resolution::OtherMethods(set)
            }
        }
    }
}

/// The endpoint reached by `method` and `segments`, with its path parameters; `None` for an
/// unknown path, a path without this method, or a method pveproxy does not serve.
pub fn lookup<'a>(method: &http::Method, segments: &'a [Segment]) -> Option<Match<'a>> {
    match resolve(ApiMethod::from_http(method)?, segments) {
        Resolution::Found(m) => Some(m),
        _ => None,
    }
}

/// The methods `segments` exists with (empty if the path is unknown).
pub fn methods_for(segments: &[Segment]) -> MethodSet {
    match resolve(ApiMethod::Get, segments) {
        Resolution::Found(m) => {
            let mut set = MethodSet(1);
            for other in [ApiMethod::Post, ApiMethod::Put, ApiMethod::Delete] {
                if find(other, m.template).is_some() {
                    set.0 |= 1 << other.index();
                }
            }
            set
        }
        Resolution::OtherMethods(set) => set,
        _ => MethodSet::default(),
    }
}

/// Every endpoint × method of the catalogue, sorted by path then method.
pub fn endpoints() -> impl Iterator<Item = &'static Endpoint> {
    let cat: &'static Catalogue = &CATALOGUE;
    cat.endpoints.iter()
}

/// The endpoint with exactly this method and template.
pub fn find(method: ApiMethod, template: &str) -> Option<&'static Endpoint> {
    endpoints().find(|e| e.method == method && e.path == template)
}

/// The schema versions the catalogue was generated from.
pub fn sources() -> &'static [Source] {
    let cat: &'static Catalogue = &CATALOGUE;
    &cat.sources
}

#[cfg(test)]
mod tests;
