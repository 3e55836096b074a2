//! The API routes of the sim, below `/api2/<format>`.
//!
//! Paths are split on `/` with empty segments dropped (so `//` and trailing slashes do not
//! matter), like `find_handler`. Known endpoints act on [`State`]; anything else that is
//! well-formed still succeeds (`GET` → `[]`, or `{}`/`""` where the schema answers an object or
//! a string, see `shapes`; `POST` → a UPID, `PUT`/`DELETE` → `null`), so
//! tests can judge what reached the sim by the recorder, not by the sim's cleverness.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::upgrade::OnUpgrade;
use hyper::Response;
use serde_json::{json, Value};

use super::auth::{now, Identity};
use super::params::{Params, ParamsExt};
use super::reply::{full, ApiError, ApiOk, ApiResult, Body};
use super::state::{parse_vmid, State};
use super::upload::Upload;
use super::{ws, GuestKind, Shared};

/// One authenticated API call.
pub(crate) struct Call<'a> {
    pub shared: &'a Shared,
    /// The node the call runs on: the one named in `/nodes/{node}/…`, else the node that
    /// received it.
    pub node: String,
    pub method: &'a str,
    /// The decoded path below `/api2/<format>`.
    pub rel: &'a str,
    pub params: Params,
    /// `None` for the anonymous calls.
    pub identity: Option<Identity>,
    pub upload: Option<Upload>,
    pub headers: &'a HeaderMap,
    pub on_upgrade: Option<OnUpgrade>,
}

/// What a route produced.
pub(crate) enum Outcome {
    /// A result to render in the request's format.
    Api(ApiResult),
    /// A finished response (websocket upgrade, streamed download).
    Raw(Response<Body>),
}

impl From<Result<Value, ApiError>> for Outcome {
    fn from(r: Result<Value, ApiError>) -> Self {
        Outcome::Api(r.map(ApiOk::from))
    }
}

fn ok(v: Value) -> Outcome {
    Outcome::Api(Ok(v.into()))
}

fn err(e: ApiError) -> Outcome {
    Outcome::Api(Err(e))
}

fn upid(r: Result<String, ApiError>) -> Outcome {
    Outcome::Api(r.map(|u| Value::String(u).into()))
}

fn subdirs(names: &[&str]) -> Outcome {
    ok(Value::Array(
        names.iter().map(|n| json!({ "subdir": n })).collect(),
    ))
}

impl Call<'_> {
    fn user(&self) -> String {
        self.identity
            .as_ref()
            .map_or_else(|| "root@pam".to_owned(), |i| i.upid_user().to_owned())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        let mut st = self.shared.state();
        st.node.clone_from(&self.node);
        st
    }

    /// pveproxy refuses a body/query value that differs from a path parameter.
    fn check_path_param(&self, name: &str, value: &str) -> Result<(), ApiError> {
        match self.params.get(name) {
            Some(Some(v)) if v == value => Ok(()),
            None => Ok(()),
            Some(_) => Err(ApiError::param(
                name,
                "duplicate parameter (already defined in URI) with conflicting values!",
            )),
        }
    }

    /// Anything well-formed the sim does not model.
    fn generic(&self, segs: &[&str]) -> Outcome {
        match self.method {
            "GET" => ok(match super::shapes::of(segs) {
                super::shapes::Shape::Object => json!({}),
                super::shapes::Shape::Text => json!(""),
                super::shapes::Shape::List => json!([]),
            }),
            "POST" => {
                let ttype: String = segs
                    .last()
                    .unwrap_or(&"generic")
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect();
                let id = segs
                    .iter()
                    .find(|s| parse_vmid("vmid", s).is_ok())
                    .map_or("", |s| *s)
                    .to_owned();
                let user = self.user();
                let upid = self.state().task(&ttype, &id, &user, Ok(Vec::new()));
                ok(Value::String(upid))
            }
            _ => ok(Value::Null),
        }
    }
}

/// Routes a call.
pub(crate) fn route(mut c: Call<'_>) -> Outcome {
    let rel = c.rel.to_owned();
    let segs: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    let m = c.method;
    let auditor = c
        .identity
        .as_ref()
        .and_then(|i| i.token.as_ref())
        .is_some_and(|t| c.shared.auditors.contains(t));
    if auditor && m != "GET" {
        return err(ApiError::new(403, "Permission check failed"));
    }
    match (m, segs.as_slice()) {
        ("GET", []) => subdirs(&["version", "cluster", "nodes", "storage", "access", "pools"]),
        ("GET", ["version"]) => ok(json!({
            "version": "9.1.1", "release": "9.1", "repoid": "42af8a6c1b37e5d2", "console": "html5",
        })),
        ("GET", ["access", "ticket"]) => ok(Value::Null),
        ("POST", ["access", "ticket"]) => login(&c),
        ("POST", ["access", "vncticket"]) => vncticket(&c),
        ("GET", ["access", "domains"]) => ok(json!([
            {"realm": "pam", "type": "pam", "comment": "Linux PAM standard authentication"},
            {"realm": "pve", "type": "pve", "comment": "Proxmox VE authentication server"},
        ])),
        ("GET", ["access", "permissions"]) => ok(json!({"/": caps_flat()})),
        ("GET", ["cluster", "resources"]) => {
            let v = c.state().resources(c.params.str("type"));
            ok(v)
        }
        ("GET", ["cluster", "nextid"]) => c.state().nextid(c.params.str("vmid")).into(),
        ("GET", ["nodes"]) => {
            let st = c.state();
            ok(Value::Array(
                st.nodes.iter().map(|n| st.node_entry(n)).collect(),
            ))
        }
        (_, ["nodes", node, rest @ ..]) => {
            let node = if *node == "localhost" {
                c.shared.node.clone()
            } else {
                (*node).to_owned()
            };
            let (known, offline) = {
                let st = c.shared.state();
                (st.nodes.contains(&node), st.offline.contains(&node))
            };
            if !known {
                return err(ApiError::die(format!(
                    "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
                )));
            }
            if let Err(e) = c.check_path_param("node", &node) {
                return err(e);
            }
            if node != c.shared.node {
                if let Some(what) = local_only(m, rest) {
                    return err(ApiError::new(
                        501,
                        format!(
                            "{what} for node '{node}' must be sent to node '{node}' itself (this is '{}'): it is not forwarded between nodes",
                            c.shared.node
                        ),
                    ));
                }
                if offline {
                    // pveproxy's answer when the node it forwards to does not answer.
                    return err(ApiError::new(595, "Connection refused"));
                }
            }
            c.node = node;
            let rest: Vec<&str> = rest.to_vec();
            node_route(&mut c, &rest)
        }
        _ => match super::cluster_api::route(&mut c, &segs) {
            Some(outcome) => outcome,
            None => c.generic(&segs),
        },
    }
}

/// Calls pveproxy serves only on the node they name: uploads, console websockets and the
/// console ticket calls they pair with (`vncproxy`, `termproxy`, `vncshell`, `spiceproxy`).
fn local_only(method: &str, rest: &[&str]) -> Option<&'static str> {
    match (method, rest) {
        ("POST", ["storage", _, "upload"]) => Some("an upload"),
        ("GET", ["vncwebsocket"]) | ("GET", [_, _, "vncwebsocket"]) => Some("a console websocket"),
        ("POST", ["termproxy" | "vncshell" | "spiceshell"])
        | ("POST", [_, _, "vncproxy" | "termproxy" | "spiceproxy"]) => Some("a console ticket"),
        _ => None,
    }
}

/// The privileges of PVE 9.1 by the object class the web UI's `cap` groups them in (root
/// holds all of them).
const PRIVILEGES: &[(&str, &[&str])] = &[
    (
        "vms",
        &[
            "VM.Allocate",
            "VM.Audit",
            "VM.Backup",
            "VM.Clone",
            "VM.Config.CDROM",
            "VM.Config.CPU",
            "VM.Config.Cloudinit",
            "VM.Config.Disk",
            "VM.Config.HWType",
            "VM.Config.Memory",
            "VM.Config.Network",
            "VM.Config.Options",
            "VM.Console",
            "VM.GuestAgent.Audit",
            "VM.GuestAgent.FileRead",
            "VM.GuestAgent.FileSystemMgmt",
            "VM.GuestAgent.FileWrite",
            "VM.GuestAgent.Unrestricted",
            "VM.Migrate",
            "VM.PowerMgmt",
            "VM.Replicate",
            "VM.Snapshot",
            "VM.Snapshot.Rollback",
            "Permissions.Modify",
        ],
    ),
    (
        "storage",
        &[
            "Datastore.Allocate",
            "Datastore.AllocateSpace",
            "Datastore.AllocateTemplate",
            "Datastore.Audit",
            "Permissions.Modify",
        ],
    ),
    (
        "access",
        &[
            "Group.Allocate",
            "Realm.Allocate",
            "Realm.AllocateUser",
            "User.Modify",
            "Permissions.Modify",
        ],
    ),
    (
        "nodes",
        &[
            "Sys.AccessNetwork",
            "Sys.Audit",
            "Sys.Console",
            "Sys.Incoming",
            "Sys.Modify",
            "Sys.PowerMgmt",
            "Sys.Syslog",
            "Permissions.Modify",
        ],
    ),
    (
        "dc",
        &[
            "Sys.Audit",
            "Sys.Modify",
            "SDN.Allocate",
            "SDN.Audit",
            "SDN.Use",
        ],
    ),
    (
        "sdn",
        &["SDN.Allocate", "SDN.Audit", "SDN.Use", "Permissions.Modify"],
    ),
    ("pool", &["Pool.Allocate", "Pool.Audit"]),
    (
        "mapping",
        &[
            "Mapping.Audit",
            "Mapping.Modify",
            "Mapping.Use",
            "Permissions.Modify",
        ],
    ),
];

/// The ticket's `cap`: each class with its privileges set to 1.
fn caps() -> Value {
    let mut m = serde_json::Map::new();
    for (class, privs) in PRIVILEGES {
        let set: serde_json::Map<String, Value> =
            privs.iter().map(|p| ((*p).to_owned(), json!(1))).collect();
        m.insert((*class).to_owned(), Value::Object(set));
    }
    Value::Object(m)
}

/// Every privilege, set to 1 (`GET /access/permissions` for root on `/`).
fn caps_flat() -> Value {
    let m: serde_json::Map<String, Value> = PRIVILEGES
        .iter()
        .flat_map(|(_, privs)| privs.iter())
        .map(|p| ((*p).to_owned(), json!(1)))
        .collect();
    Value::Object(m)
}

fn login(c: &Call<'_>) -> Outcome {
    let Some(username) = c.params.str("username") else {
        return err(ApiError::missing("username"));
    };
    let Some(password) = c.params.str("password") else {
        return err(ApiError::missing("password"));
    };
    let username = match (username.contains('@'), c.params.str("realm")) {
        (false, Some(realm)) => format!("{username}@{realm}"),
        _ => username.to_owned(),
    };
    let now = now();
    let by_password = c
        .shared
        .users
        .iter()
        .any(|(u, p)| *u == username && p == password);
    let by_ticket = c
        .shared
        .keys
        .verify_ticket(password, now)
        .is_some_and(|u| u == username || u == "root@pam");
    if !(by_password || by_ticket) {
        return err(ApiError::new(401, "authentication failure"));
    }
    if c.params.str("path").is_some() {
        // Verification only (`path` + `privs`).
        return ok(json!({ "username": username }));
    }
    ok(json!({
        "username": username,
        "ticket": c.shared.keys.ticket(&username, now),
        "CSRFPreventionToken": c.shared.keys.csrf(&username, now),
        "cap": caps(),
    }))
}

fn vncticket(c: &Call<'_>) -> Outcome {
    let (Some(user), Some(ticket), Some(path)) = (
        c.params.str("username"),
        c.params.str("vncticket"),
        c.params.str("authpath"),
    ) else {
        return err(ApiError::missing("vncticket"));
    };
    let port = c.params.str("port").unwrap_or("");
    if c.shared
        .keys
        .verify_vnc_ticket(ticket, user, path, port, now())
    {
        ok(Value::Null)
    } else {
        err(ApiError::new(
            401,
            "permission denied - invalid PVEVNC ticket",
        ))
    }
}

fn kind_of(s: &str) -> Option<GuestKind> {
    match s {
        "qemu" => Some(GuestKind::Qemu),
        "lxc" => Some(GuestKind::Lxc),
        _ => None,
    }
}

fn node_route(c: &mut Call<'_>, rest: &[&str]) -> Outcome {
    let m = c.method;
    let user = c.user();
    match (m, rest) {
        ("GET", []) => subdirs(&[
            "qemu",
            "lxc",
            "status",
            "tasks",
            "storage",
            "network",
            "journal",
            "syslog",
            "startall",
            "stopall",
            "termproxy",
            "vncshell",
            "vncwebsocket",
            "version",
        ]),
        ("GET", ["status"]) => ok(json!({
            "uptime": 864_000, "cpu": 0.031, "wait": 0.0, "idle": 0,
            "loadavg": ["0.12", "0.20", "0.25"],
            "cpuinfo": {"cpus": 8, "cores": 4, "sockets": 1, "model": "Simulated CPU", "mhz": "3000.000"},
            "memory": {"total": 34_359_738_368u64, "used": 6_442_450_944u64, "free": 27_917_287_424u64},
            "rootfs": {"total": 107_374_182_400u64, "used": 10_737_418_240u64, "free": 96_636_764_160u64},
            "kversion": "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC",
            "pveversion": "pve-manager/9.1.1/42af8a6c1b37e5d2",
        })),
        ("GET", ["version"]) => {
            ok(json!({"version": "9.1.1", "release": "9.1", "repoid": "42af8a6c1b37e5d2"}))
        }
        ("GET", ["network"]) => ok(json!([
            {"iface": "vmbr0", "type": "bridge", "active": 1, "autostart": 1, "method": "static",
             "cidr": "10.0.0.1/16", "address": "10.0.0.1", "netmask": "16", "bridge_ports": "eno1"},
        ])),
        ("GET", [k]) if kind_of(k).is_some() => {
            let kind = kind_of(k).unwrap_or(GuestKind::Qemu);
            ok(c.state().list(kind))
        }
        ("POST", [k]) if kind_of(k).is_some() => {
            let kind = kind_of(k).unwrap_or(GuestKind::Qemu);
            upid(c.state().create(kind, &c.params, &user))
        }
        (_, [k, vmid, tail @ ..]) if kind_of(k).is_some() => {
            let kind = kind_of(k).unwrap_or(GuestKind::Qemu);
            let vmid_s = *vmid;
            let vmid = match parse_vmid("vmid", vmid_s) {
                Ok(v) => v,
                Err(e) => return err(e),
            };
            if let Err(e) = c.check_path_param("vmid", vmid_s) {
                return err(e);
            }
            let tail: Vec<&str> = tail.to_vec();
            guest_route(c, kind, vmid, &tail)
        }
        ("GET", ["tasks"]) => ok(c.state().task_list(&c.params)),
        ("GET", ["tasks", _]) => subdirs(&["log", "status"]),
        ("DELETE", ["tasks", u]) => c.state().task_stop(u).map(|()| Value::Null).into(),
        ("GET", ["tasks", u, "status"]) => c.state().task_status(u).into(),
        ("GET", ["tasks", u, "log"]) => task_log(c, u),
        ("POST", [a @ ("startall" | "stopall" | "suspendall")]) => {
            let u = c.state().bulk(a, &c.params, &user);
            ok(Value::String(u))
        }
        ("GET", ["storage"]) => ok(c.state().storages(&c.params)),
        ("GET", ["storage", s]) => {
            if c.state().storage_exists(s) {
                subdirs(&["content", "download-url", "status", "upload"])
            } else {
                err(ApiError::die(format!("storage '{s}' does not exist")))
            }
        }
        ("GET", ["storage", s, "status"]) => c.state().storage_status(s).into(),
        ("GET", ["storage", s, "content"]) => c.state().content(s, &c.params).into(),
        ("GET", ["storage", s, "content", vol @ ..]) if !vol.is_empty() => {
            let volume = vol.join("/");
            c.state().volume_info(s, &volume).into()
        }
        ("DELETE", ["storage", s, "content", vol @ ..]) if !vol.is_empty() => {
            let volume = vol.join("/");
            upid(c.state().delete_volume(s, &volume, &user))
        }
        ("POST", ["storage", s, "upload"]) => upload(c, s),
        ("GET", ["journal"]) => journal(c),
        ("GET", ["syslog"]) => {
            let n: usize = c
                .params
                .str("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(50)
                .min(10_000);
            let data: Vec<Value> = (0..n)
                .map(|i| json!({"n": i + 1, "t": format!("pvegate-sim syslog line {}", i + 1)}))
                .collect();
            Outcome::Api(Ok(ApiOk {
                data: Value::Array(data),
                extra: vec![("total", json!(n))],
            }))
        }
        ("POST", ["termproxy" | "vncshell"]) => {
            let path = format!("/nodes/{}", c.node);
            console_reply(c, rest[0], "", &path, false)
        }
        ("GET", ["vncwebsocket"]) => {
            let path = format!("/nodes/{}", c.node);
            websocket(c, &path)
        }
        _ => match super::node_info::route(c, rest) {
            Some(outcome) => outcome,
            None => {
                let node = c.node.clone();
                let mut segs = vec!["nodes", node.as_str()];
                segs.extend_from_slice(rest);
                c.generic(&segs)
            }
        },
    }
}

fn task_log(c: &Call<'_>, u: &str) -> Outcome {
    if c.params.flag("download") {
        let text = match c.state().task_log_text(u) {
            Ok(t) => t,
            Err(e) => return err(e),
        };
        let mut resp = Response::new(full(text));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return Outcome::Raw(resp);
    }
    let start: usize = c
        .params
        .str("start")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let limit: usize = c
        .params
        .str("limit")
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    match c.state().task_log(u, start, limit) {
        Ok((data, total)) => Outcome::Api(Ok(ApiOk {
            data,
            extra: vec![("total", json!(total))],
        })),
        Err(e) => err(e),
    }
}

/// `GET /nodes/{node}/journal?lastentries=N`: a streamed body of N lines (default 500).
fn journal(c: &Call<'_>) -> Outcome {
    const PER_CHUNK: u64 = 1000;
    let n: u64 = c
        .params
        .str("lastentries")
        .and_then(|s| s.parse().ok())
        .unwrap_or(500)
        .min(10_000_000);
    let node = c.node.clone();
    let chunks = n.div_ceil(PER_CHUNK);
    let body_chunks = (0..chunks).map(move |k| {
        let mut s = String::new();
        if k == 0 {
            s.push_str("{\"data\":[");
        }
        let from = k * PER_CHUNK;
        let to = ((k + 1) * PER_CHUNK).min(n);
        for i in from..to {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!(
                "\"Jan 01 00:00:00 {node} pvegate-sim[1]: journal line {:08}\"",
                i + 1
            ));
        }
        if k + 1 == chunks {
            s.push_str("]}");
        }
        Ok::<_, std::io::Error>(Frame::data(Bytes::from(s)))
    });
    let empty = (n == 0).then(|| Ok(Frame::data(Bytes::from_static(b"{\"data\":[]}"))));
    let s = stream::iter(body_chunks.chain(empty));
    let mut resp = Response::new(StreamBody::new(s).boxed_unsync());
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    Outcome::Raw(resp)
}

fn upload(c: &Call<'_>, storage: &str) -> Outcome {
    let Some(u) = &c.upload else {
        return err(ApiError::missing("filename"));
    };
    let Some(content) = c.params.str("content") else {
        return err(ApiError::missing("content"));
    };
    let user = c.user();
    upid(
        c.state()
            .add_upload(storage, content, &u.filename, u.size, &user),
    )
}

/// `vncproxy` / `termproxy` replies.
fn console_reply(c: &Call<'_>, what: &str, id: &str, authpath: &str, with_cert: bool) -> Outcome {
    let port = (5900 + c.shared.vnc_port.fetch_add(1, Ordering::Relaxed) % 100).to_string();
    let user = c.user();
    let ticket = c.shared.keys.vnc_ticket(&user, authpath, &port, now());
    let ttype = match what {
        "vncshell" => "vncshell",
        "termproxy" => "vncterm",
        _ => "vncproxy",
    };
    let upid = c.state().task(ttype, id, &user, Ok(Vec::new()));
    let mut v = json!({"port": port, "ticket": ticket, "user": user, "upid": upid});
    if with_cert {
        v["cert"] = json!(c.shared.cert_pem);
    }
    if c.params.flag("generate-password") {
        v["password"] = json!("simpassw");
    }
    ok(v)
}

/// `GET …/vncwebsocket?port=…&vncticket=…`: upgrade to the echo websocket.
fn websocket(c: &mut Call<'_>, authpath: &str) -> Outcome {
    let Some(port) = c.params.str("port").map(str::to_owned) else {
        return err(ApiError::missing("port"));
    };
    let Some(ticket) = c.params.str("vncticket").map(str::to_owned) else {
        return err(ApiError::missing("vncticket"));
    };
    let user = c.user();
    if !c
        .shared
        .keys
        .verify_vnc_ticket(&ticket, &user, authpath, &port, now())
    {
        return err(ApiError::die("permission denied - invalid PVEVNC ticket"));
    }
    if c.method != "GET" || !ws::wants_upgrade(c.headers) {
        return ok(json!({ "port": port }));
    }
    Outcome::Raw(ws::accept(
        c.headers,
        c.on_upgrade.take(),
        c.shared.shutdown.clone(),
    ))
}

fn guest_route(c: &mut Call<'_>, kind: GuestKind, vmid: u32, tail: &[&str]) -> Outcome {
    if let Err(e) = c.state().guest(kind, vmid).map(|_| ()) {
        return err(e);
    }
    let m = c.method;
    let user = c.user();
    let qemu = kind == GuestKind::Qemu;
    let id = vmid.to_string();
    match (m, tail) {
        ("GET", []) => subdirs(&[
            "config",
            "pending",
            "status",
            "snapshot",
            "rrddata",
            "firewall",
            "agent",
            "vncproxy",
            "termproxy",
            "vncwebsocket",
            "clone",
            "template",
            "resize",
        ]),
        ("DELETE", []) => {
            let purge = c.params.flag("purge");
            upid(c.state().destroy(kind, vmid, purge, &user))
        }
        ("POST", ["migrate"]) => upid(c.state().migrate(kind, vmid, &c.params, &user)),
        ("GET", ["status"]) => subdirs(&[
            "current", "start", "stop", "shutdown", "reboot", "suspend", "resume",
        ]),
        ("GET", ["status", "current"]) => c.state().status_current(kind, vmid).into(),
        (
            "POST",
            ["status", action @ ("start" | "stop" | "shutdown" | "reboot" | "suspend" | "resume" | "reset")],
        ) => upid(c.state().power(kind, vmid, action, &user)),
        ("GET", ["config"]) => c.state().config(kind, vmid).into(),
        ("POST", ["config"]) if qemu => {
            let mut st = c.state();
            match st.set_config(kind, vmid, &c.params) {
                Ok(()) => ok(Value::String(st.task(
                    "qmconfig",
                    &id,
                    &user,
                    Ok(Vec::new()),
                ))),
                Err(e) => err(e),
            }
        }
        ("PUT", ["config"]) => c
            .state()
            .set_config(kind, vmid, &c.params)
            .map(|()| Value::Null)
            .into(),
        ("GET", ["pending"]) => c.state().pending(kind, vmid).into(),
        ("PUT", ["resize"]) => upid(c.state().resize(kind, vmid, &c.params, &user)),
        ("POST", ["clone"]) => upid(c.state().clone_guest(kind, vmid, &c.params, &user)),
        ("POST", ["template"]) => upid(c.state().template(kind, vmid, &user)),
        ("GET", ["snapshot"]) => c.state().snapshots(kind, vmid).into(),
        ("POST", ["snapshot"]) => upid(c.state().snapshot_create(kind, vmid, &c.params, &user)),
        ("GET", ["snapshot", name]) => c.state().snapshot_get(kind, vmid, name).into(),
        ("DELETE", ["snapshot", name]) => upid(c.state().snapshot_delete(kind, vmid, name, &user)),
        ("POST", ["snapshot", name, "rollback"]) => {
            upid(c.state().snapshot_rollback(kind, vmid, name, &user))
        }
        ("GET", ["snapshot", name, "config"]) => {
            let st = c.state();
            match st.snapshot_get(kind, vmid, name) {
                Ok(_) => st.config(kind, vmid).into(),
                Err(e) => err(e),
            }
        }
        ("GET", ["agent"]) if qemu => ok(json!([
            {"name": "exec"}, {"name": "exec-status"}, {"name": "file-read"}, {"name": "file-write"},
            {"name": "get-host-name"}, {"name": "get-osinfo"}, {"name": "info"},
            {"name": "network-get-interfaces"}, {"name": "ping"}, {"name": "set-user-password"},
        ])),
        ("GET", ["interfaces"]) if !qemu => {
            super::guestnet::lxc_interfaces(&c.state(), vmid).into()
        }
        (_, ["agent", cmd]) if qemu => c.state().agent(vmid, cmd, &c.params).into(),
        ("POST", [what @ ("vncproxy" | "termproxy")]) => {
            if let Err(e) = c.state().console_ok(kind, vmid) {
                return err(e);
            }
            let path = format!("/vms/{vmid}");
            console_reply(c, what, &id, &path, *what == "vncproxy")
        }
        ("POST", ["spiceproxy"]) => ok(json!({
            "type": "spice", "host": format!("pvespiceproxy:{:08X}:{vmid}:{}:5900::sim", now(), c.node),
            "proxy": "http://127.0.0.1:3128", "tls-port": 61000, "password": "simpassw",
            "title": format!("VM {vmid}"), "delete-this-file": 1,
        })),
        ("GET", ["vncwebsocket"]) => {
            let path = format!("/vms/{vmid}");
            websocket(c, &path)
        }
        ("GET", ["rrddata"]) => ok(json!([])),
        ("GET", ["feature"]) => {
            let nodes = c.state().nodes.clone();
            ok(json!({"hasFeature": 1, "nodes": nodes}))
        }
        ("GET", ["migrate"]) => ok(
            json!({"running": 0, "allowed_nodes": [], "not_allowed_nodes": {}, "local_disks": [], "local_resources": []}),
        ),
        ("PUT", ["sendkey" | "unlink"]) => ok(Value::Null),
        _ => {
            let ks = if qemu { "qemu" } else { "lxc" };
            let node = c.node.clone();
            let mut segs = vec!["nodes", node.as_str(), ks, id.as_str()];
            segs.extend_from_slice(tail);
            c.generic(&segs)
        }
    }
}
