//! Red-team corpus: thousands of spellings of changes to the readonly guests 104 and 109
//! (and, as a control, the same spellings aimed at the managed guests 110/120), sent through
//! the real stack to the simulated Proxmox.
//!
//! The invariant for every request: either pvegate refused it (400/403/411/413/501, or the
//! extjs/htmljs `success: 0` envelope) and the sim recorded nothing, or it was forwarded and
//! what the sim received is not a change to 104/109. The second half is checked twice: by
//! the sim's guest state, and by [`perl`], a small reader written here from
//! `docs/pveproxy.md` (and HTTP::Headers / AnyEvent.pm for header handling) that
//! re-reads the recorded wire request as pveproxy would, independently of `src/`.
//!
//! The corpus is generated from a fixed seed (xorshift), so it is the same on every run.
//! Bypasses found here and fixed stay as regression tests at the end.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use pvegate_sim::{Recorded, SimGuest};
use serde_json::Value;

const PROTECTED: [u64; 2] = [104, 109];

// ---------------------------------------------------------------------------------------------
// Deterministic randomness
// ---------------------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// pveproxy's reading of a wire request, written independently of src/
// ---------------------------------------------------------------------------------------------

mod perl {
    use super::*;

    /// One API call as pveproxy would dispatch it.
    #[derive(Debug, Clone)]
    pub struct Call {
        pub method: String,
        pub segs: Vec<String>,
        /// `Value::Null` is Perl's undef.
        pub params: BTreeMap<String, Value>,
    }

    /// `s/%([0-9a-fA-F]{2})/chr(hex($1))/eg` on bytes.
    pub fn unescape(b: &[u8]) -> Vec<u8> {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        out
    }

    /// AnyEvent.pm `decode_urlencoded`.
    pub fn decode_urlencoded(data: &[u8], into: &mut BTreeMap<String, Value>) {
        if data.is_empty() || data == b"0" {
            return;
        }
        for kv in data.split(|c| *c == b'&' || *c == b';') {
            // `my ($k, $v) = split(/=/, $kv);` (LIMIT 3; a whole-empty $kv gives no fields)
            let mut f = kv.splitn(3, |c| *c == b'=');
            let k = f.next().unwrap_or_default();
            let v = if kv.is_empty() { None } else { f.next() };
            let plus = |s: &[u8]| -> Vec<u8> {
                s.iter()
                    .map(|c| if *c == b'+' { b' ' } else { *c })
                    .collect()
            };
            let key = String::from_utf8_lossy(&unescape(&plus(k))).into_owned();
            let Some(v) = v else {
                into.insert(key, Value::Null);
                continue;
            };
            let v = Value::String(String::from_utf8_lossy(&unescape(&plus(v))).into_owned());
            let new = match into.remove(&key) {
                Some(Value::Array(mut a)) => {
                    a.push(v);
                    Value::Array(a)
                }
                Some(Value::Null) | None => v,
                Some(old) => Value::Array(vec![old, v]),
            };
            into.insert(key, new);
        }
    }

    /// Perl numification of a header value: leading whitespace, then digits.
    fn numify(s: &str) -> u64 {
        let t = s.trim_start();
        let d: String = t.chars().take_while(char::is_ascii_digit).collect();
        d.parse().unwrap_or(0)
    }

    /// `perl -e 'if ($v)'` for a string.
    fn truthy(s: Option<&str>) -> bool {
        matches!(s, Some(v) if !v.is_empty() && v != "0")
    }

    /// HTTP::Headers: names with `_` read as `-`, case-insensitive; repeated values joined.
    pub fn header(headers: &[(String, String)], name: &str) -> Option<String> {
        let want = name.to_ascii_lowercase();
        let vals: Vec<&str> = headers
            .iter()
            .filter(|(k, _)| k.replace('_', "-").to_ascii_lowercase() == want)
            .map(|(_, v)| v.as_str())
            .collect();
        (!vals.is_empty()).then(|| vals.join(", "))
    }

    /// Reads one request (and anything pveproxy would read after it on the connection from
    /// `rest` — a body it did not consume is parsed as the next request).
    pub fn read(
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
        out: &mut Vec<Call>,
        depth: usize,
    ) {
        let len = header(headers, "Content-Length");
        let len = if truthy(len.as_deref()) {
            numify(len.as_deref().unwrap_or(""))
        } else {
            0
        } as usize;
        let (content, rest) = if len <= body.len() {
            body.split_at(len)
        } else {
            (body, &b""[..])
        };
        if let Some(call) = read_one(method, target, headers, content, len > body.len()) {
            out.push(call);
        }
        if !rest.is_empty() && depth < 4 {
            read_wire(rest, out, depth + 1);
        }
    }

    /// Parses raw bytes left on a connection as pipelined requests (AnyEvent.pm
    /// `push_request_header` / `unshift_read_header`).
    pub fn read_wire(mut data: &[u8], out: &mut Vec<Call>, depth: usize) {
        // skip empty lines before the request line
        loop {
            if data.starts_with(b"\r\n") {
                data = &data[2..];
            } else if data.starts_with(b"\n") {
                data = &data[1..];
            } else {
                break;
            }
        }
        let Some(head_end) = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| (p, p + 4))
            .or_else(|| {
                data.windows(2)
                    .position(|w| w == b"\n\n")
                    .map(|p| (p, p + 2))
            })
        else {
            return;
        };
        let head = String::from_utf8_lossy(&data[..head_end.0]).into_owned();
        let body = &data[head_end.1..];
        let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
        let line = lines.next().unwrap_or("");
        let words: Vec<&str> = line.split(' ').collect();
        if words.len() < 3 || !words[2].starts_with("HTTP/1.") {
            return;
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        for l in lines {
            if l.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(l.trim());
                }
            } else if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        read(words[0], words[1], &headers, body, out, depth);
    }

    fn read_one(
        method: &str,
        target: &str,
        headers: &[(String, String)],
        content: &[u8],
        short: bool,
    ) -> Option<Call> {
        if !matches!(method, "GET" | "POST" | "PUT" | "DELETE") {
            return None;
        }
        if truthy(header(headers, "Transfer-Encoding").as_deref()) {
            return None;
        }
        if short {
            return None; // pveproxy would wait for more body bytes
        }
        // URI: absolute-form carries a path; origin-form is the path.
        let lower = target.to_ascii_lowercase();
        let t = if lower.starts_with("http://") || lower.starts_with("https://") {
            let rest = &target[target.find("://").unwrap() + 3..];
            &rest[rest.find(['/', '?']).unwrap_or(rest.len())..]
        } else {
            target
        };
        let t = t.split('#').next().unwrap_or("");
        let (raw_path, query) = match t.split_once('?') {
            Some((p, q)) => (p, q),
            None => (t, ""),
        };
        let path = String::from_utf8_lossy(&unescape(raw_path.as_bytes())).into_owned();
        // $split_abs_uri: m/^\/api2\/+([a-z][a-z0-9]+)(\/.*)?$/
        let p = path.strip_prefix("/api2")?;
        let p2 = p.trim_start_matches('/');
        if p2.len() == p.len() {
            return None;
        }
        let flen = p2
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            .count();
        if flen < 2 || !p2.as_bytes()[0].is_ascii_lowercase() {
            return None;
        }
        let format = &p2[..flen];
        if !["json", "extjs", "htmljs", "spiceconfig", "png", "html"].contains(&format) {
            return None;
        }
        let rel = &p2[flen..];
        let rel = rel.strip_suffix('\n').unwrap_or(rel);
        if rel.contains('\n') || !(rel.is_empty() || rel.starts_with('/')) {
            return None;
        }
        let segs: Vec<String> = rel
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();

        let mut params = BTreeMap::new();
        if !content.is_empty() {
            if !matches!(method, "POST" | "PUT") {
                return None; // 501 Unexpected content
            }
            let ct = header(headers, "Content-Type");
            let first = ct
                .as_deref()
                .filter(|c| truthy(Some(c)))
                .map(|c| {
                    c.split([';', ','])
                        .next()
                        .unwrap_or("")
                        .trim_end()
                        .to_string()
                })
                .unwrap_or_default();
            match first.as_str() {
                "application/json" => match serde_json::from_slice::<Value>(content) {
                    Ok(Value::Object(m)) => params.extend(m),
                    _ => return None,
                },
                "" | "application/x-www-form-urlencoded" => decode_urlencoded(content, &mut params),
                _ => return None, // 506
            }
        }
        let mut q = BTreeMap::new();
        decode_urlencoded(query.as_bytes(), &mut q);
        params.extend(q);
        params.remove("_dc");
        Some(Call {
            method: method.to_string(),
            segs,
            params,
        })
    }

    /// Integers named in a string: every maximal digit run (leading zeros ignored).
    fn ints(s: &str, out: &mut Vec<u64>) {
        let mut cur = String::new();
        for c in s.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_digit() {
                cur.push(c);
            } else if !cur.is_empty() {
                let t = cur.trim_start_matches('0');
                if t.len() <= 18 {
                    out.push(t.parse().unwrap_or(0));
                }
                cur.clear();
            }
        }
    }

    fn value_ints(v: &Value, out: &mut Vec<u64>) {
        match v {
            Value::String(s) => ints(s, out),
            Value::Number(n) => {
                if let Some(f) = n.as_f64() {
                    if f.fract() == 0.0 && (0.0..1e15).contains(&f) {
                        out.push(f as u64);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| value_ints(x, out)),
            Value::Object(m) => m.iter().for_each(|(k, x)| {
                ints(k, out);
                value_ints(x, out)
            }),
            _ => {}
        }
    }

    fn defined(p: &BTreeMap<String, Value>, k: &str) -> bool {
        matches!(p.get(k), Some(v) if !v.is_null())
    }

    fn true_param(p: &BTreeMap<String, Value>, k: &str) -> bool {
        match p.get(k) {
            Some(Value::String(s)) => !s.is_empty() && s != "0",
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(Value::Bool(b)) => *b,
            Some(Value::Array(_)) => true,
            _ => false,
        }
    }

    /// Why this call would change a protected guest, if it would. Generous on purpose: any
    /// protected id anywhere in a modifying call to a real endpoint counts.
    pub fn changes_protected(c: &Call, depth: usize) -> Option<String> {
        let s: Vec<&str> = c.segs.iter().map(String::as_str).collect();
        let read_only_get = c.method == "GET"
            && !s.last().is_some_and(|l| {
                [
                    "vncwebsocket",
                    "file-read",
                    "exec-status",
                    "mtunnelwebsocket",
                ]
                .contains(l)
            });
        if read_only_get {
            return None;
        }
        const GUEST_TAILS: [&str; 16] = [
            "",
            "status/stop",
            "status/shutdown",
            "status/start",
            "status/suspend",
            "status/reboot",
            "config",
            "clone",
            "move_disk",
            "agent/exec",
            "snapshot",
            "resize",
            "template",
            "migrate",
            "vncproxy",
            "firewall/options",
        ];
        let all_when_no_vms = |p: &BTreeMap<String, Value>| !defined(p, "vms");
        let everything = match s.as_slice() {
            ["nodes", _, "qemu" | "lxc", _, tail @ ..] => {
                if !GUEST_TAILS.contains(&tail.join("/").as_str()) {
                    return None;
                }
                false
            }
            ["nodes", _, "qemu" | "lxc"] => false,
            // startall clears stale backup locks on every guest of the node first.
            ["nodes", _, "startall"] => true,
            ["nodes", _, "stopall" | "suspendall" | "migrateall"] => all_when_no_vms(&c.params),
            ["cluster", "bulk-action", "guest", _] => all_when_no_vms(&c.params),
            ["nodes", _, "vzdump"] | ["cluster", "backup"] => {
                true_param(&c.params, "all")
                    || defined(&c.params, "exclude")
                    || defined(&c.params, "pool")
            }
            ["nodes", _, "status"] | ["cluster", "ha", "status", _] => true,
            ["nodes", node, "execute"] => {
                let Some(Value::String(cmds)) = c.params.get("commands") else {
                    return None;
                };
                let Ok(Value::Array(list)) = serde_json::from_str::<Value>(cmds) else {
                    return None;
                };
                for cmd in list {
                    let path = cmd["path"].as_str().unwrap_or("");
                    let mut segs = vec!["nodes".to_string(), node.to_string()];
                    segs.extend(path.split('/').filter(|x| !x.is_empty()).map(String::from));
                    let mut params = BTreeMap::new();
                    if let Some(Value::Object(a)) = cmd.get("args") {
                        params.extend(a.clone());
                    }
                    let nested = Call {
                        method: cmd["method"].as_str().unwrap_or("GET").to_string(),
                        segs,
                        params,
                    };
                    if depth < 3 {
                        if let Some(why) = changes_protected(&nested, depth + 1) {
                            return Some(format!("nested execute: {why}"));
                        }
                    }
                }
                return None;
            }
            ["nodes", _, "storage", _, "content", _, ..] => false,
            ["nodes", _, "tasks", _] => false,
            ["cluster", "ha", "resources", ..] => false,
            ["cluster", "replication", ..] => false,
            ["pools", ..] => false,
            ["access", "acl"] => false,
            _ => return None, // no such endpoint: pveproxy answers 501
        };
        if everything {
            return Some(format!("{} {} acts on every guest", c.method, s.join("/")));
        }
        // A host path, device, raw args or hook script reaches every guest (qemu-server /
        // pve-container accept them from root where a volume or device is expected).
        if matches!(
            s.as_slice(),
            ["nodes", _, "qemu" | "lxc", _, "config"] | ["nodes", _, "qemu" | "lxc"]
        ) {
            if let Some(why) = reaches_host(&c.params) {
                return Some(format!(
                    "{} {} reaches the host: {why}",
                    c.method,
                    s.join("/")
                ));
            }
        }
        // The guest-bearing places of each family (docs/pveproxy.md#guest-params). Other keys are
        // ignored: Proxmox refuses unknown parameters (additionalProperties 0).
        let mut found = Vec::new();
        let keys: &[&str] = match s.as_slice() {
            // a volume names its owners only in these places (case-sensitive, see
            // docs/pveproxy.md#fmt-volume-id); a literal `%6F`/`QEMU` is another, missing volume
            ["nodes", _, "storage", _, "content", vol @ ..] => {
                volume_owners(&vol.join("/"), &mut found);
                &["vmid"]
            }
            ["nodes", _, "qemu" | "lxc", id, tail @ ..] => {
                ints(id, &mut found);
                match tail {
                    ["clone"] => &["newid"],
                    ["move_disk" | "move_volume" | "remote_migrate"] => &["target-vmid"],
                    _ => &[],
                }
            }
            ["nodes", _, "qemu" | "lxc"] => &["vmid", "archive", "ostemplate"],
            ["nodes", _, "tasks", upid] => {
                ints(upid.split(':').nth(6).unwrap_or(""), &mut found);
                &[]
            }
            ["cluster", "ha", "resources", rest @ ..] => {
                rest.iter().take(1).for_each(|x| ints(x, &mut found));
                &["sid"]
            }
            ["cluster", "replication", rest @ ..] => {
                for id in rest.iter().take(1) {
                    ints(id.split('-').next().unwrap_or(""), &mut found);
                }
                &["id"]
            }
            ["access", "acl"] => &["path"],
            _ => &["vms", "vmid", "exclude"],
        };
        for (k, v) in &c.params {
            match v {
                Value::String(text) if is_disk_key(k) => volume_owners(text, &mut found),
                Value::String(text) if k == "id" => {
                    ints(text.split('-').next().unwrap_or(""), &mut found)
                }
                _ if keys.contains(&k.as_str()) => value_ints(v, &mut found),
                _ => {}
            }
        }
        found.iter().find(|n| PROTECTED.contains(n)).map(|n| {
            format!(
                "{} {} names guest {n}: {:?}",
                c.method,
                s.join("/"),
                c.params
            )
        })
    }

    /// The first host-reaching value among guest config parameters, read from the schema's
    /// shapes: disk/mount/device values that are absolute paths, raw `args`, hook scripts,
    /// raw PCI/USB host ids.
    fn reaches_host(params: &BTreeMap<String, Value>) -> Option<String> {
        let key_re = regex::Regex::new(r"^[A-Za-z][A-Za-z0-9_-]*$").unwrap();
        for (k, v) in params {
            let texts: Vec<&str> = match v {
                Value::String(t) => vec![t.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
            for text in texts {
                // (sub-key or None for the default item, value)
                let items: Vec<(Option<&str>, &str)> = text
                    .split(',')
                    .filter(|i| !i.trim().is_empty())
                    .map(|i| match i.split_once('=') {
                        Some((a, b)) if key_re.is_match(a) => (Some(a), b),
                        _ => (None, i),
                    })
                    .collect();
                let hit = match base {
                    "args" => !text.trim().is_empty(),
                    "hookscript" => !text.trim().is_empty(),
                    "ide" | "sata" | "scsi" | "virtio" | "efidisk" | "tpmstate" | "cdrom"
                    | "mp" | "rootfs" | "dev" | "serial" | "parallel" | "archive"
                    | "ostemplate" => items.iter().any(|(sub, val)| {
                        matches!(sub, None | Some("file" | "volume" | "import-from" | "path"))
                            && (val.trim_start().starts_with('/')
                                || val.split_once(':').is_some_and(|(_, n)| n.starts_with('/')))
                    }),
                    "hostpci" => items
                        .iter()
                        .any(|(sub, _)| matches!(sub, None | Some("host"))),
                    "usb" => items.iter().any(|(sub, val)| {
                        matches!(sub, None | Some("host")) && !val.eq_ignore_ascii_case("spice")
                    }),
                    _ => false,
                };
                if hit {
                    return Some(format!("{k}={text}"));
                }
            }
        }
        None
    }

    fn is_disk_key(k: &str) -> bool {
        let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
        [
            "ide", "sata", "scsi", "virtio", "efidisk", "tpmstate", "unused", "mp", "rootfs",
        ]
        .contains(&base)
    }

    /// The owners a storage plugin reads from a volume id (any storage type).
    fn volume_owners(vol: &str, out: &mut Vec<u64>) {
        // Plugin.pm parse_volume_id: m/^([a-z][a-z0-9\-\_\.]*[a-z0-9]):(.+)$/i
        let valid = regex::Regex::new(r"(?i)^[a-z][a-z0-9._-]*[a-z0-9]:.+$").unwrap();
        if !valid.is_match(vol) {
            return;
        }
        // File-based storages: ISO images, container templates, snippets and import sources
        // have no owner (pve-storage Plugin.pm parse_volname).
        let ownerless = regex::Regex::new(
            r"^[^:]*:(?:(?:iso|vztmpl|snippets)/[^/]+|import/[^/]+(?:\.ova/[^/]+)?)$",
        )
        .unwrap();
        if ownerless.is_match(vol) {
            return;
        }
        let owners = regex::Regex::new(
            r"(?:^[^:]*:|/)(\d+)/|(?:vm|base|subvol|basevol)-(\d+)-|(?:^[^:]*:|/)-(\d+)-|vzdump-(?:openvz|lxc|qemu)-(\d+)-|backup/(?:vm|ct)/(\d+)/",
        )
        .unwrap();
        for c in owners.captures_iter(vol) {
            for m in c.iter().skip(1).flatten() {
                ints(m.as_str(), out);
            }
        }
    }

    /// pveproxy's reading of what the sim recorded.
    pub fn of_recorded(r: &Recorded) -> Vec<Call> {
        let mut out = Vec::new();
        read(&r.method, &r.target, &r.headers, &r.body, &mut out, 0);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

/// A guest-bearing parameter value.
#[derive(Clone, Debug)]
enum Pv {
    /// One VMID.
    Id(u64),
    /// A VMID list (`pve-vmid-list`).
    List(Vec<u64>),
    /// An array of VMIDs (cluster bulk actions).
    Array(Vec<u64>),
    /// Plain text (volume ids, sids, ...), sent as is.
    Text(String),
}

/// A change, before spelling.
#[derive(Clone, Debug)]
struct Op {
    method: &'static str,
    /// Relative to `/api2/<fmt>/`.
    path: String,
    /// The guest-bearing parameter, if the guest is not (only) in the path.
    key: Option<(&'static str, Pv)>,
    /// Harmless extra parameters.
    extra: Vec<(&'static str, &'static str)>,
    /// A harmless value for `key`, for precedence tricks (`None`: no such trick).
    decoy: Option<Pv>,
}

fn op(method: &'static str, path: String) -> Op {
    Op {
        method,
        path,
        key: None,
        extra: vec![],
        decoy: None,
    }
}

fn ops_for(v: u64, other: u64) -> Vec<Op> {
    let n = "nodes/pve";
    let vols = [
        format!("local-lvm:vm-{v}-disk-0"),
        format!("local:{v}/vm-{v}-disk-0.qcow2"),
        format!("local:{v}/vm-{other}-disk-0.qcow2"),
        format!("local-zfs:subvol-{v}-disk-0"),
        format!("local-zfs:base-{other}-disk-0/vm-{v}-disk-0"),
        format!("ceph:vm-{v}-disk-1"),
        format!("local:backup/vzdump-qemu-{v}-2026_01_01-00_00_00.vma.zst"),
        format!("pbs:backup/vm/{v}/2026-01-01T00:00:00Z"),
    ];
    let mut ops = vec![
        op("POST", format!("{n}/qemu/{v}/status/stop")),
        op("POST", format!("{n}/qemu/{v}/status/shutdown")),
        Op {
            extra: vec![("memory", "2048")],
            ..op("PUT", format!("{n}/qemu/{v}/config"))
        },
        Op {
            extra: vec![("description", "x")],
            ..op("POST", format!("{n}/qemu/{v}/config"))
        },
        op("DELETE", format!("{n}/qemu/{v}")),
        Op {
            key: Some(("newid", Pv::Id(v))),
            decoy: Some(Pv::Id(211)),
            extra: vec![("name", "x")],
            ..op("POST", format!("{n}/qemu/9001/clone"))
        },
        Op {
            key: Some(("vms", Pv::List(vec![other, v]))),
            decoy: Some(Pv::List(vec![other])),
            ..op("POST", format!("{n}/stopall"))
        },
        Op {
            key: Some(("vms", Pv::List(vec![v]))),
            decoy: Some(Pv::List(vec![other])),
            ..op("POST", format!("{n}/suspendall"))
        },
        Op {
            key: Some(("vmid", Pv::List(vec![other, v]))),
            decoy: Some(Pv::List(vec![other])),
            extra: vec![("mode", "stop")],
            ..op("POST", format!("{n}/vzdump"))
        },
        Op {
            key: Some(("target-vmid", Pv::Id(v))),
            decoy: Some(Pv::Id(other)),
            extra: vec![("disk", "scsi0")],
            ..op("POST", format!("{n}/qemu/{other}/move_disk"))
        },
        Op {
            key: Some(("vms", Pv::Array(vec![v]))),
            decoy: Some(Pv::Array(vec![other])),
            ..op("POST", "cluster/bulk-action/guest/shutdown".to_string())
        },
        Op {
            key: Some(("sid", Pv::Text(format!("vm:{v}")))),
            decoy: Some(Pv::Text(format!("vm:{other}"))),
            ..op("POST", "cluster/ha/resources".to_string())
        },
        Op {
            key: Some(("sid", Pv::Text(format!("{v}")))),
            decoy: Some(Pv::Text(format!("ct:{other}"))),
            ..op("POST", "cluster/ha/resources".to_string())
        },
        Op {
            extra: vec![("comment", "x")],
            ..op("PUT", format!("cluster/replication/0{v}-0"))
        },
        op(
            "DELETE",
            format!("{n}/tasks/UPID:pve:00001234:00005678:65A1B2C3:qmstart:{v}:root@pam:"),
        ),
        Op {
            key: Some((
                "commands",
                Pv::Text(format!(
                    r#"[{{"path":"qemu/{v}/status/stop","method":"POST"}}]"#
                )),
            )),
            decoy: Some(Pv::Text(format!(
                r#"[{{"path":"qemu/{other}/status/current","method":"GET"}}]"#
            ))),
            ..op("POST", format!("{n}/execute"))
        },
        Op {
            key: Some(("vms", Pv::List(vec![v]))),
            decoy: Some(Pv::List(vec![other])),
            ..op("PUT", "pools/lab".to_string())
        },
        Op {
            key: Some(("path", Pv::Text(format!("/vms/{v}")))),
            decoy: Some(Pv::Text(format!("/vms/{other}"))),
            extra: vec![("roles", "PVEVMAdmin"), ("users", "x@pve")],
            ..op("PUT", "access/acl".to_string())
        },
        Op {
            extra: vec![("command", "id")],
            ..op("POST", format!("{n}/qemu/{v}/agent/exec"))
        },
    ];
    // Content without an owner, named after the protected guests: no guest but `v`.
    for (key, val) in [
        ("ide2", "local:iso/vm-104-install.iso,media=cdrom"),
        ("cicustom", "user=local:snippets/vm-109-user.yaml"),
        ("scsi1", "local-lvm:10"),
        ("ide2", "none,media=cdrom"),
    ] {
        ops.push(Op {
            key: Some((key, Pv::Text(val.to_string()))),
            ..op("PUT", format!("{n}/qemu/{v}/config"))
        });
    }
    for vol in vols {
        ops.push(op("DELETE", format!("{n}/storage/local/content/{vol}")));
        ops.push(Op {
            key: Some(("scsi1", Pv::Text(vol.clone()))),
            decoy: Some(Pv::Text(format!("local-lvm:vm-{other}-disk-1"))),
            ..op("PUT", format!("{n}/qemu/{other}/config"))
        });
    }
    ops
}

/// Host-reaching values on a managed guest (`other`) that reach `v`'s data, or any guest's:
/// absolute paths (device-mapper names with doubled dashes, by-id links, image directories
/// with and without a trailing slash, doubled slashes), raw `args`, host devices, hook
/// scripts, container bind mounts and devices, and the same on create.
fn host_ops(v: u64, other: u64) -> Vec<Op> {
    let n = "nodes/pve";
    let disk = |key: &'static str, val: String| Op {
        key: Some((key, Pv::Text(val))),
        decoy: Some(Pv::Text(format!("local-lvm:vm-{other}-disk-1"))),
        ..op("PUT", format!("{n}/qemu/{other}/config"))
    };
    let mount = |key: &'static str, val: String| Op {
        key: Some((key, Pv::Text(val))),
        decoy: Some(Pv::Text("local-lvm:8,mp=/mnt/data".into())),
        ..op("PUT", format!("{n}/lxc/{other}/config"))
    };
    let plain = |key: &'static str, val: String, kind: &str| Op {
        key: Some((key, Pv::Text(val))),
        ..op("PUT", format!("{n}/{kind}/{other}/config"))
    };
    vec![
        disk("scsi1", format!("/dev/mapper/pve-vm--{v}--disk--0")),
        disk(
            "virtio1",
            format!("/dev/disk/by-id/dm-name-pve-vm--{v}--disk--0,cache=none"),
        ),
        disk("scsi2", format!("file=/dev/pve/vm-{v}-disk-0,cache=none")),
        disk(
            "sata1",
            format!("local-lvm:0,import-from=/dev/pve/vm-{v}-disk-0"),
        ),
        disk("ide1", format!("/var/lib/vz/images/{v}/")),
        disk("efidisk0", "/dev/dm-7".into()),
        disk("tpmstate0", "//dev//sdb/".into()),
        disk(
            "virtio3",
            format!("volume=/mnt/pve/nfs/images/{v}/vm-{v}-disk-0.raw"),
        ),
        plain(
            "args",
            format!("-drive file=/dev/pve/vm-{v}-disk-0,if=virtio,format=raw"),
            "qemu",
        ),
        plain("args", "-hda /dev/sdb".into(), "qemu"),
        plain(
            "args",
            format!("-blockdev driver=host_device,filename=/dev/mapper/pve-vm--{v}--disk--0,node-name=x"),
            "qemu",
        ),
        plain("hostpci0", "0000:01:00.0".into(), "qemu"),
        plain("usb0", "host=046d:c52b".into(), "qemu"),
        plain("hookscript", "local:snippets/hook.pl".into(), "qemu"),
        mount("mp0", format!("/var/lib/vz/images/{v},mp=/mnt/doc1")),
        mount("mp1", format!("/mnt/pve/nfs/images/{v}/,mp=/mnt/igp")),
        mount("mp0", format!("/dev/mapper/pve-vm--{v}--disk--0,mp=/mnt/x")),
        mount("rootfs", "/mnt/pve/nfs".into()),
        plain("dev0", format!("/dev/pve/vm-{v}-disk-0"), "lxc"),
        Op {
            key: Some((
                "scsi0",
                Pv::Text(format!("/dev/mapper/pve-vm--{v}--disk--0")),
            )),
            extra: vec![("vmid", "111")],
            decoy: Some(Pv::Text("local-lvm:4".into())),
            ..op("POST", format!("{n}/qemu"))
        },
        Op {
            key: Some((
                "mp0",
                Pv::Text(format!("/var/lib/vz/images/{v},mp=/mnt/doc1")),
            )),
            extra: vec![("vmid", "121"), ("ostemplate", "local:vztmpl/debian-12.tar.zst")],
            decoy: Some(Pv::Text("local-lvm:8,mp=/mnt/data".into())),
            ..op("POST", format!("{n}/lxc"))
        },
    ]
}

/// A request ready to write.
#[derive(Clone, Debug)]
struct Req {
    method: String,
    target: String,
    version: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    framing: Framing,
    /// A description of the tricks used, for failure messages.
    tricks: Vec<String>,
    /// For the control corpus: a spelling real clients use, which must not be refused.
    legit: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Framing {
    Length,
    Chunked,
    ChunkedExt,
    ChunkedIdentity,
    LengthAndChunked,
    DoubleLength,
    FoldedType,
    Expect,
    NoLength,
}

impl Req {
    fn bytes(&self) -> Vec<u8> {
        let mut h = format!("{} {} {}\r\n", self.method, self.target, self.version);
        for (k, v) in &self.headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = &self.body;
        let mut tail = Vec::new();
        match self.framing {
            Framing::Length | Framing::Expect | Framing::FoldedType => {
                if self.framing == Framing::Expect {
                    h.push_str("Expect: 100-continue\r\n");
                }
                if self.framing == Framing::FoldedType {
                    h.push_str("X-Note: a\r\n  folded\r\n");
                }
                h.push_str(&format!("Content-Length: {}\r\n", body.len()));
                tail.extend_from_slice(body);
            }
            Framing::NoLength => {}
            Framing::DoubleLength => {
                h.push_str(&format!("Content-Length: {}\r\n", body.len()));
                h.push_str(&format!("Content-Length: {}\r\n", body.len()));
                tail.extend_from_slice(body);
            }
            Framing::Chunked
            | Framing::ChunkedExt
            | Framing::ChunkedIdentity
            | Framing::LengthAndChunked => {
                match self.framing {
                    Framing::ChunkedIdentity => {
                        h.push_str("Transfer-Encoding: chunked, identity\r\n")
                    }
                    Framing::LengthAndChunked => {
                        h.push_str("Transfer-Encoding: chunked\r\n");
                        h.push_str(&format!("Content-Length: {}\r\n", body.len()));
                    }
                    _ => h.push_str("Transfer-Encoding: chunked\r\n"),
                }
                let ext = if self.framing == Framing::ChunkedExt {
                    ";x=y"
                } else {
                    ""
                };
                for part in body.chunks(7) {
                    tail.extend_from_slice(format!("{:x}{ext}\r\n", part.len()).as_bytes());
                    tail.extend_from_slice(part);
                    tail.extend_from_slice(b"\r\n");
                }
                tail.extend_from_slice(b"0\r\n\r\n");
            }
        }
        // last, so that pvegate's removal of this hop-by-hop header (a swap-remove in
        // hyper's HeaderMap) does not reorder the others
        h.push_str("Connection: close\r\n");
        let mut out = h.into_bytes();
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&tail);
        out
    }
}

/// How far the generator may go.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Every trick but the known bypasses.
    Attack,
    /// The same tricks aimed at managed guests.
    Control,
    /// Only the known bypass family (header names with `_`).
    Underscore,
}

const UNI_SEPS: [&str; 14] = [
    "%C2%A0",
    "%C2%85",
    "%E1%9A%80",
    "%E2%80%80",
    "%E2%80%8A",
    "%E2%80%A8",
    "%E2%80%A9",
    "%E2%80%AF",
    "%E2%81%9F",
    "%E3%80%80",
    "%0B",
    "%0C",
    "%0D",
    "%EF%BC%8C",
];

/// Form spelling of one VMID; (text, legit).
fn form_id(rng: &mut Rng, v: u64) -> (String, bool) {
    match rng.below(12) {
        0..=4 => (v.to_string(), true),
        5 => (
            v.to_string().bytes().map(|b| format!("%{b:02X}")).collect(),
            true,
        ),
        6 => (format!("{v}%0A"), false),
        7 => (format!("0{v}"), false),
        8 => (format!("+{v}"), false),
        9 => (format!("{v}%00"), false),
        10 => (format!("%20{v}"), false),
        _ => (format!("{v}.0"), false),
    }
}

/// Form spelling of a VMID list.
fn form_list(rng: &mut Rng, ids: &[u64]) -> (String, bool) {
    let (sep, legit) = match rng.below(12) {
        0..=3 => (",".to_string(), true),
        4 => ("%2C".to_string(), true),
        5 => ("%3B".to_string(), true),
        6 => ("+".to_string(), true),
        7 => ("%20".to_string(), true),
        8 => ("%09".to_string(), false),
        9 => ("%00".to_string(), false),
        10 => ("%0A".to_string(), false),
        _ => (rng.pick(&UNI_SEPS).to_string(), false),
    };
    let mut legit = legit;
    let parts: Vec<String> = ids
        .iter()
        .map(|v| {
            let (t, l) = form_id(rng, *v);
            legit &= l;
            t
        })
        .collect();
    (parts.join(&sep), legit)
}

fn form_text(s: &str, rng: &mut Rng) -> String {
    // percent-encode what must be, plus some random characters
    s.bytes()
        .map(|b| {
            let must = matches!(b, b'&' | b';' | b'=' | b'+' | b'%' | b'#' | b' ' | b'"')
                || !b.is_ascii_graphic();
            if must || rng.chance(10) {
                if rng.chance(50) {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                }
            } else {
                (b as char).to_string()
            }
        })
        .collect()
}

/// Form pairs for a parameter; (pairs, legit). Repeated keys for lists sometimes.
fn form_pairs(rng: &mut Rng, key: &str, pv: &Pv) -> (Vec<String>, bool) {
    let k = if rng.chance(8) {
        key.bytes().map(|b| format!("%{b:02x}")).collect()
    } else {
        key.to_string()
    };
    match pv {
        Pv::Id(v) => {
            let (t, l) = form_id(rng, *v);
            (vec![format!("{k}={t}")], l)
        }
        Pv::List(ids) | Pv::Array(ids) => {
            if ids.len() > 1 && rng.chance(30) {
                let mut legit = true;
                let pairs = ids
                    .iter()
                    .map(|v| {
                        let (t, l) = form_id(rng, *v);
                        legit &= l;
                        format!("{k}={t}")
                    })
                    .collect();
                (pairs, legit)
            } else if matches!(pv, Pv::Array(_)) {
                let (t, l) = form_id(rng, ids[0]);
                (vec![format!("{k}={t}")], l)
            } else {
                let (t, l) = form_list(rng, ids);
                (vec![format!("{k}={t}")], l)
            }
        }
        Pv::Text(s) => (vec![format!("{k}={}", form_text(s, rng))], true),
    }
}

/// JSON spelling of a parameter value; (json text, legit).
fn json_value(rng: &mut Rng, pv: &Pv) -> (String, bool) {
    let one = |rng: &mut Rng, v: u64| -> (String, bool) {
        match rng.below(14) {
            0..=3 => (v.to_string(), true),
            4..=5 => (format!("\"{v}\""), true),
            6 => (format!("{v}.0"), false),
            7 => (format!("{}.{}e2", v / 100, v % 100), false),
            8 => (format!("{}e-1", v * 10), false),
            9 => (format!("{}e-2", v * 100), false),
            10 => (format!("\" {v}\""), false),
            11 => (format!("\"{v}\\n\""), false),
            12 => (format!("\"0{v}\""), false),
            _ => (format!("{v}e0"), false),
        }
    };
    match pv {
        Pv::Id(v) => one(rng, *v),
        Pv::Array(ids) => {
            let mut legit = true;
            let items: Vec<String> = ids
                .iter()
                .map(|v| {
                    let (t, l) = one(rng, *v);
                    legit &= l;
                    t
                })
                .collect();
            (format!("[{}]", items.join(",")), legit)
        }
        Pv::List(ids) => {
            if rng.chance(25) {
                let items: Vec<String> = ids.iter().map(|v| v.to_string()).collect();
                return (format!("[{}]", items.join(",")), false);
            }
            let (sep, legit) = match rng.below(8) {
                0..=3 => (",", true),
                4 => (";", true),
                5 => (" ", true),
                6 => ("\\u0000", false),
                _ => (
                    *rng.pick(&["\\u00a0", "\\u2028", "\\u3000", "\\u000b", "\\u0085"]),
                    false,
                ),
            };
            let items: Vec<String> = ids.iter().map(|v| v.to_string()).collect();
            (format!("\"{}\"", items.join(sep)), legit)
        }
        Pv::Text(s) => (serde_json::to_string(s).unwrap(), true),
    }
}

/// Spells the path part of the target; (target, legit, tricks).
fn spell_target(rng: &mut Rng, rel: &str, mode: Mode) -> (String, bool, Vec<String>) {
    let mut tricks = Vec::new();
    let mut legit = true;
    let formats = [
        ("json", true),
        ("json", true),
        ("json", true),
        ("extjs", true),
        ("htmljs", true),
        ("spiceconfig", true),
        ("png", true),
        ("html", true),
        ("JSON", false),
        ("xml", false),
        ("j", false),
        ("json2", false),
    ];
    let (fmt, fl) = *rng.pick(&formats);
    legit &= fl;
    if fmt != "json" {
        tricks.push(format!("format {fmt}"));
    }
    let mut rel = rel.to_string();
    // percent-encode random bytes, '/' included
    if rng.chance(40) {
        let p = 5 + rng.below(40) as u64;
        let mut enc_slash = false;
        rel = rel
            .bytes()
            .map(|b| {
                if rng.chance(p) {
                    enc_slash |= b == b'/';
                    if rng.chance(50) {
                        format!("%{b:02X}")
                    } else {
                        format!("%{b:02x}")
                    }
                } else {
                    (b as char).to_string()
                }
            })
            .collect();
        tricks.push(format!("percent-encoded path ({p}%)"));
        // %2F as a separator is what pveproxy does, but no client sends it on purpose
        if enc_slash {
            tricks.push("%2F".into());
        }
    }
    if rng.chance(8) {
        // double encoding of one byte
        let i = rng.below(rel.len());
        if rel.is_char_boundary(i) && rel.is_char_boundary(i + 1) {
            let b = rel.as_bytes()[i];
            rel = format!("{}%25{:02X}{}", &rel[..i], b, &rel[i + 1..]);
            tricks.push("double-encoded byte".into());
            legit = false;
        }
    }
    if rng.chance(20) {
        rel = rel.replace('/', if rng.chance(50) { "//" } else { "///" });
        tricks.push("repeated slashes".into());
    }
    if rng.chance(15) {
        rel.push('/');
        tricks.push("trailing slash".into());
    }
    if rng.chance(7) {
        let seg = *rng.pick(&["./", "../", ".%2F", "%2E/", "%2e%2e/"]);
        let cut = rel.find('/').map_or(0, |i| i + 1);
        rel.insert_str(cut, seg);
        tricks.push(format!("dot segment {seg}"));
        legit = false;
    }
    if rng.chance(8) {
        let bad = *rng.pick(&["%0A", "%0D", "%00", "%20", "%09", "%0a%0A", "%7F", "%FF"]);
        if rng.chance(50) {
            rel.push_str(bad);
            tricks.push(format!("trailing {bad}"));
        } else {
            let i = rel.rfind('/').unwrap_or(0);
            rel.insert_str(i, bad);
            tricks.push(format!("inner {bad}"));
        }
        legit = false;
    }
    if rng.chance(5) {
        rel = rel
            .replacen("qemu", "QEMU", 1)
            .replacen("nodes", "Nodes", 1);
        tricks.push("case change".into());
        legit = false;
    }
    let prefix = match rng.below(20) {
        0 => {
            tricks.push("/api2//".into());
            format!("/api2//{fmt}/")
        }
        1 => {
            tricks.push("%61pi2".into());
            format!("/%61pi2/{fmt}/")
        }
        2 => {
            tricks.push("leading //".into());
            legit = false;
            format!("//api2/{fmt}/")
        }
        3 => {
            tricks.push("absolute-form".into());
            format!("http://pve:8006/api2/{fmt}/")
        }
        4 => {
            tricks.push("absolute-form https upper".into());
            format!("HTTPS://pve.lan/api2/{fmt}/")
        }
        5 => {
            tricks.push("format encoded".into());
            let enc: String = fmt.bytes().map(|b| format!("%{b:02x}")).collect();
            format!("/api2/{enc}/")
        }
        _ => format!("/api2/{fmt}/"),
    };
    let _ = mode;
    (format!("{prefix}{rel}"), legit, tricks)
}

/// One spelled request for `op`.
fn spell(rng: &mut Rng, o: &Op, mode: Mode) -> Req {
    let (mut target, mut legit, mut tricks) = spell_target(rng, &o.path, mode);
    let mut method = o.method.to_string();
    match rng.below(40) {
        0 => {
            method = method.to_ascii_lowercase();
            tricks.push("lower-case method".into());
            legit = false;
        }
        1 => {
            method = (*rng.pick(&["HEAD", "PATCH", "OPTIONS"])).to_string();
            tricks.push(format!("method {method}"));
            legit = false;
        }
        _ => {}
    }
    let bodyless = matches!(o.method, "GET" | "DELETE");
    // where the parameters go
    let mut query: Vec<String> = Vec::new();
    let mut body_pairs: Vec<String> = Vec::new();
    let mut json: Vec<(String, String)> = Vec::new();
    let placement = if bodyless {
        0
    } else if mode == Mode::Underscore {
        6 // a JSON body, which pvegate will read as a form
    } else {
        rng.below(10)
    };
    let use_json = !bodyless && placement >= 6;
    if use_json {
        tricks.push("json body".into());
    }
    let add = |rng: &mut Rng,
               key: &str,
               pv: &Pv,
               in_query: bool,
               legit: &mut bool,
               query: &mut Vec<String>,
               body_pairs: &mut Vec<String>,
               json: &mut Vec<(String, String)>| {
        if in_query || !use_json {
            let (pairs, l) = form_pairs(rng, key, pv);
            *legit &= l;
            if in_query {
                query.extend(pairs);
            } else {
                body_pairs.extend(pairs);
            }
        } else {
            let (t, l) = json_value(rng, pv);
            *legit &= l;
            json.push((key.to_string(), t));
        }
    };
    for (k, v) in &o.extra {
        let in_query = bodyless || placement == 1;
        add(
            rng,
            k,
            &Pv::Text(v.to_string()),
            in_query,
            &mut legit,
            &mut query,
            &mut body_pairs,
            &mut json,
        );
    }
    if let Some((key, pv)) = &o.key {
        let trick = if o.decoy.is_some() { rng.below(10) } else { 0 };
        let decoy = o.decoy.clone().unwrap_or(pv.clone());
        match trick {
            // query over body: decoy in the body, the real value in the query
            7 if !bodyless => {
                tricks.push("decoy in body, value in query".into());
                add(
                    rng,
                    key,
                    &decoy,
                    false,
                    &mut legit,
                    &mut query,
                    &mut body_pairs,
                    &mut json,
                );
                add(
                    rng,
                    key,
                    pv,
                    true,
                    &mut legit,
                    &mut query,
                    &mut body_pairs,
                    &mut json,
                );
                legit = false;
            }
            // body value, decoy in the query (pveproxy takes the query: no change)
            8 if !bodyless => {
                tricks.push("value in body, decoy in query".into());
                add(
                    rng,
                    key,
                    pv,
                    false,
                    &mut legit,
                    &mut query,
                    &mut body_pairs,
                    &mut json,
                );
                add(
                    rng,
                    key,
                    &decoy,
                    true,
                    &mut legit,
                    &mut query,
                    &mut body_pairs,
                    &mut json,
                );
                legit = false;
            }
            // decoy in the body, valueless key in the query: absent
            9 if !bodyless => {
                tricks.push("decoy in body, valueless key in query".into());
                add(
                    rng,
                    key,
                    &decoy,
                    false,
                    &mut legit,
                    &mut query,
                    &mut body_pairs,
                    &mut json,
                );
                query.push(key.to_string());
                legit = false;
            }
            // repeated key: decoy then the value in the same place
            6 if !use_json => {
                tricks.push("decoy then value, same key".into());
                let q = bodyless || rng.chance(50);
                add(
                    rng,
                    key,
                    &decoy,
                    q,
                    &mut legit,
                    &mut query,
                    &mut body_pairs,
                    &mut json,
                );
                add(
                    rng,
                    key,
                    pv,
                    q,
                    &mut legit,
                    &mut query,
                    &mut body_pairs,
                    &mut json,
                );
                legit = false;
            }
            _ => {
                let q = bodyless || placement == 2 || placement == 7;
                if q {
                    tricks.push("value in query".into());
                }
                add(
                    rng,
                    key,
                    pv,
                    q,
                    &mut legit,
                    &mut query,
                    &mut body_pairs,
                    &mut json,
                );
            }
        }
    }
    if rng.chance(10) {
        query.push("_dc=1700000000".into());
    }
    if rng.chance(5) {
        json.push(("_dc".into(), "1".into()));
    }
    // separators
    let qsep = if rng.chance(20) {
        tricks.push("';' in query".into());
        ";"
    } else {
        "&"
    };
    let bsep = if rng.chance(20) {
        tricks.push("';' in body".into());
        ";"
    } else {
        "&"
    };
    if !query.is_empty() {
        target.push('?');
        target.push_str(&query.join(qsep));
    } else if rng.chance(5) {
        target.push('?');
    }
    if mode == Mode::Underscore {
        // one '=' inside a JSON string makes the whole body a single (junk) form pair
        json.push(("x".into(), "\"=\"".into()));
    }
    let mut body: Vec<u8> = if use_json {
        let mut items: Vec<String> = json
            .iter()
            .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
            .collect();
        if rng.chance(5) && !items.is_empty() {
            // duplicate key: pveproxy keeps the last
            items.push(items[0].clone());
            tricks.push("duplicate JSON key".into());
            legit = false;
        }
        format!("{{{}}}", items.join(",")).into_bytes()
    } else {
        body_pairs.join(bsep).into_bytes()
    };
    if !bodyless && !use_json && rng.chance(4) && !body.is_empty() {
        body.extend_from_slice(b"&");
        tricks.push("trailing & in body".into());
    }
    if bodyless && rng.chance(5) {
        body = b"x=1".to_vec();
        tricks.push("body on bodyless method".into());
        legit = false;
    }

    // headers
    let mut headers = vec![
        ("Host".to_string(), "pve".to_string()),
        ("Authorization".to_string(), TOKEN.to_string()),
    ];
    if !body.is_empty() || rng.chance(30) {
        let cts: &[(&str, bool)] = if use_json {
            &[
                ("application/json", true),
                ("application/json", true),
                ("application/json; charset=UTF-8", true),
                ("application/json;charset=utf-8", true),
                ("application/json,text/plain", false),
                ("Application/JSON", false),
                ("application/json ; x=y", true),
                ("text/json", false),
            ]
        } else {
            &[
                ("application/x-www-form-urlencoded", true),
                ("application/x-www-form-urlencoded", true),
                ("application/x-www-form-urlencoded; charset=UTF-8", true),
                ("", true),
                ("text/plain", false),
                ("application/x-www-form-urlencoded, application/json", false),
                ("multipart/form-data; boundary=x", false),
                ("APPLICATION/X-WWW-FORM-URLENCODED", false),
            ]
        };
        let (ct, l) = *rng.pick(cts);
        legit &= l;
        if !ct.is_empty() {
            headers.push(("Content-Type".to_string(), ct.to_string()));
            if rng.chance(5) {
                let other = if use_json {
                    "application/x-www-form-urlencoded"
                } else {
                    "application/json"
                };
                headers.push(("Content-Type".to_string(), other.to_string()));
                tricks.push("two Content-Type headers".into());
                legit = false;
            }
        } else if use_json {
            legit = false;
        }
        if ct != "application/json" && !ct.is_empty() {
            tricks.push(format!("Content-Type {ct:?}"));
        }
    }
    if mode == Mode::Underscore {
        // the known bypass family: HTTP::Headers reads '_' in a header name as '-'
        let ct_json = "application/json";
        match rng.below(3) {
            0 => {
                headers.retain(|(k, _)| k != "Content-Type");
                headers.push(("Content_Type".into(), ct_json.into()));
            }
            1 => {
                headers.retain(|(k, _)| k != "Content-Type");
                headers.insert(2, ("content_type".into(), ct_json.into()));
                headers.push((
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded".into(),
                ));
            }
            _ => {
                headers.insert(2, ("Content_Type".into(), ct_json.into()));
            }
        }
        tricks.push("Content_Type header".into());
    }
    if rng.chance(5) {
        headers.push(("CSRFPreventionToken".into(), "x".into()));
    }
    let framing = if bodyless && body.is_empty() {
        if rng.chance(10) {
            Framing::NoLength
        } else {
            Framing::Length
        }
    } else {
        match rng.below(30) {
            0 => Framing::Chunked,
            1 => Framing::ChunkedExt,
            2 => Framing::ChunkedIdentity,
            3 => Framing::LengthAndChunked,
            4 => Framing::DoubleLength,
            5 => Framing::FoldedType,
            6 | 7 => Framing::Expect,
            _ => Framing::Length,
        }
    };
    if framing != Framing::Length {
        tricks.push(format!("framing {framing:?}"));
    }
    if matches!(
        framing,
        Framing::ChunkedIdentity
            | Framing::LengthAndChunked
            | Framing::DoubleLength
            | Framing::FoldedType
    ) {
        legit = false;
    }
    let version = if rng.chance(5) {
        tricks.push("HTTP/1.0".into());
        if !matches!(framing, Framing::Length | Framing::NoLength) {
            legit = false; // no chunked bodies or Expect in HTTP/1.0
        }
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    Req {
        method,
        target,
        version,
        headers,
        body,
        framing,
        tricks,
        legit,
    }
}

fn corpus(seed: u64, count: usize, mode: Mode) -> Vec<(Op, Req)> {
    let mut rng = Rng(seed);
    let ops: Vec<Op> = match mode {
        Mode::Control => [ops_for(110, 120), ops_for(120, 110)].concat(),
        _ => [
            ops_for(104, 110),
            ops_for(109, 120),
            host_ops(104, 110),
            host_ops(109, 120),
        ]
        .concat(),
    };
    (0..count)
        .map(|_| {
            let o = rng.pick(&ops).clone();
            let r = spell(&mut rng, &o, mode);
            (o, r)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Sending and judging
// ---------------------------------------------------------------------------------------------

/// Writes `bytes` on a fresh connection (closing our write side after it) and reads
/// everything the gate answers.
/// How long an answer to one spelling may take.
const WAIT: Duration = Duration::from_secs(5);

/// The status codes in a (possibly pipelined) answer, and whether any body says
/// `success: 0` (extjs/htmljs denials are HTTP 200).
fn statuses(buf: &[u8]) -> (Vec<u16>, bool) {
    let text = String::from_utf8_lossy(buf);
    let codes = text
        .match_indices("HTTP/1.")
        .filter_map(|(i, _)| text.get(i + 9..i + 12))
        .filter_map(|c| c.parse().ok())
        .filter(|c: &u16| *c >= 200)
        .collect();
    (codes, text.contains("\"success\":0"))
}

fn protected_state(g: &Gate) -> Vec<SimGuest> {
    let mut v: Vec<SimGuest> = g
        .sim
        .guests()
        .into_iter()
        .filter(|x| PROTECTED.contains(&u64::from(x.vmid)))
        .collect();
    v.sort_by_key(|x| x.vmid);
    v
}

#[derive(Default)]
struct Tally {
    sent: usize,
    refused: usize,
    forwarded: usize,
    violations: Vec<String>,
}

/// Sends one request and checks the invariant; returns whether anything reached the sim.
async fn check(g: &Gate, req: &Req, before: &[SimGuest], t: &mut Tally) -> bool {
    g.sim.recorder.clear();
    let bytes = req.bytes();
    let answer = exchange(g.addr, &bytes, WAIT).await;
    t.sent += 1;
    let recorded = g.sim.recorder.requests();
    let (codes, success0) = statuses(&answer);
    let show = || {
        format!(
            "{} {}\n  tricks: {:?}\n  answer: {:?}\n  wire: {:?}",
            req.method,
            req.target,
            req.tricks,
            String::from_utf8_lossy(&answer[..answer.len().min(300)]),
            String::from_utf8_lossy(&bytes),
        )
    };
    if recorded.is_empty() {
        t.refused += 1;
        let refusal = |c: &u16| [400, 403, 411, 413, 501].contains(c) || (*c == 200 && success0);
        if !codes.first().is_some_and(refusal) && !answer.is_empty() {
            t.violations
                .push(format!("nothing forwarded but no refusal: {}", show()));
        }
        return false;
    }
    t.forwarded += 1;
    for r in &recorded {
        for call in perl::of_recorded(r) {
            if let Some(why) = perl::changes_protected(&call, 0) {
                t.violations.push(format!(
                    "FORWARDED A CHANGE: {why}\n  sim received: {} {} {:?} body {:?}\n  {}",
                    r.method,
                    r.target,
                    r.headers,
                    r.body_text(),
                    show()
                ));
            }
        }
    }
    let after = protected_state(g);
    if after != before {
        t.violations.push(format!(
            "sim state of 104/109 changed: {before:?} -> {after:?}\n  {}",
            show()
        ));
    }
    true
}

fn report(name: &str, t: &Tally, started: std::time::Instant) {
    eprintln!(
        "{name}: {} requests, {} refused, {} forwarded, {} violations, {:.1}s",
        t.sent,
        t.refused,
        t.forwarded,
        t.violations.len(),
        started.elapsed().as_secs_f64()
    );
}

fn assert_clean(t: &Tally) {
    assert!(
        t.violations.is_empty(),
        "{} violations; first ones:\n{}",
        t.violations.len(),
        t.violations
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// The self-test of the independent reader, on spellings whose pveproxy reading is cited in
/// docs/pveproxy.md.
#[test]
fn perl_reader_reads_the_cited_examples() {
    let h = |ct: &str| {
        vec![
            ("content-type".to_string(), ct.to_string()),
            ("content-length".to_string(), "999".to_string()),
        ]
    };
    let read = |m: &str, t: &str, hs: &[(String, String)], b: &str| {
        let mut hs = hs.to_vec();
        for x in hs.iter_mut() {
            if x.0 == "content-length" {
                x.1 = b.len().to_string();
            }
        }
        let mut out = Vec::new();
        perl::read(m, t, &hs, b.as_bytes(), &mut out, 0);
        out
    };
    let form = h("application/x-www-form-urlencoded");
    let c = read(
        "POST",
        "/api2/json/nodes/pve/qemu%2F104%2Fstatus%2Fstop",
        &form,
        "",
    );
    assert_eq!(c[0].segs, ["nodes", "pve", "qemu", "104", "status", "stop"]);
    assert!(perl::changes_protected(&c[0], 0).is_some());
    let c = read(
        "POST",
        "/api2//json//nodes//pve/qemu/104/status/stop/%0A",
        &form,
        "",
    );
    assert!(perl::changes_protected(&c[0], 0).is_some());
    let c = read("POST", "/api2/json/nodes/pve/stopall?vms", &form, "vms=110");
    assert_eq!(c[0].params["vms"], Value::Null);
    assert!(perl::changes_protected(&c[0], 0).is_some());
    let c = read(
        "POST",
        "/api2/json/nodes/pve/stopall",
        &form,
        "vms=110;vms=104",
    );
    assert!(perl::changes_protected(&c[0], 0).is_some());
    let c = read(
        "POST",
        "/api2/json/nodes/pve/stopall",
        &form,
        "vms=110&vms=",
    );
    assert_eq!(c[0].params["vms"], serde_json::json!(["110", ""]));
    let c = read("POST", "/api2/json/nodes/pve/stopall", &form, "a=b=c");
    assert_eq!(c[0].params["a"], "b");
    let c = read(
        "POST",
        "/api2/json/nodes/pve/qemu/9001/clone",
        &h("application/json; charset=UTF-8"),
        r#"{"newid":1.04e2}"#,
    );
    assert!(perl::changes_protected(&c[0], 0).is_some());
    // HTTP::Headers reads Content_Type as Content-Type
    let hs = vec![
        ("content_type".to_string(), "application/json".to_string()),
        ("content-length".to_string(), "0".to_string()),
    ];
    let c = read(
        "PUT",
        "/api2/json/nodes/pve/qemu/110/config",
        &hs,
        r#"{"scsi1":"local-lvm:vm-104-disk-0","x":"="}"#,
    );
    assert!(perl::changes_protected(&c[0], 0).is_some());
    // a body longer than pveproxy's Content-Length is the next request on the connection
    let smuggled = format!(
        "POST /api2/json/nodes/pve/qemu/104/status/stop HTTP/1.1\r\nAuthorization: {TOKEN}\r\n\r\n"
    );
    let body = format!("a=1{smuggled}");
    let mut out = Vec::new();
    perl::read(
        "POST",
        "/api2/json/nodes/pve/qemu/110/config",
        &[
            ("content_length".into(), "3".into()),
            ("content-length".into(), body.len().to_string()),
        ],
        body.as_bytes(),
        &mut out,
        0,
    );
    assert_eq!(out.len(), 2);
    assert!(perl::changes_protected(&out[1], 0).is_some());
    // not changes: reads, unknown routes, the decoy in the query wins
    let c = read("GET", "/api2/json/nodes/pve/qemu/104/config", &form, "");
    assert!(perl::changes_protected(&c[0], 0).is_none());
    let c = read(
        "POST",
        "/api2/json/nodes/pve/qemu%252F104%252Fstatus%252Fstop",
        &form,
        "",
    );
    assert!(perl::changes_protected(&c[0], 0).is_none());
    let c = read(
        "POST",
        "/api2/json/nodes/pve/qemu/9001/clone?newid=211",
        &form,
        "newid=104",
    );
    assert!(perl::changes_protected(&c[0], 0).is_none());
}

/// 4,000 spellings of changes to 104/109: none may reach Proxmox as a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_of_a_change_to_a_readonly_guest_gets_through() {
    let g = start().await;
    let before = protected_state(&g);
    assert_eq!(before.len(), 2);
    let started = std::time::Instant::now();
    let mut t = Tally::default();
    for (_, req) in corpus(0x9E37_79B9_7F4A_7C15, 4000, Mode::Attack) {
        check(&g, &req, &before, &mut t).await;
    }
    report("attack corpus", &t, started);
    assert_clean(&t);
    assert!(t.refused > 3500, "most of the corpus should be refused");
}

/// Pipelined: a harmless request followed on the same connection by a change to 104/109,
/// spelled with the framing tricks; also a body that carries a whole second request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_and_smuggled_changes_are_judged_one_by_one() {
    let g = start().await;
    let before = protected_state(&g);
    let started = std::time::Instant::now();
    let mut t = Tally::default();
    let mut rng = Rng(0x51A5_11ED);
    let attacks = corpus(0xC0FF_EE00, 300, Mode::Attack);
    let harmless = [
        get("/api2/json/nodes/pve/qemu/104/status/current"),
        get("/api2/json/version"),
        form(
            "PUT",
            "/api2/json/nodes/pve/qemu/110/config",
            "description=ok",
        ),
    ];
    for (_, attack) in attacks {
        g.sim.recorder.clear();
        let first = rng.pick(&harmless).clone();
        let mut wire = first.clone().into_bytes();
        let second = attack.bytes();
        let trick = rng.below(4);
        match trick {
            // plain pipelining
            0 | 1 => wire.extend_from_slice(&second),
            // the second request hidden in the first one's body, counted by Content-Length
            2 => {
                let body = [b"description=ok&".as_slice(), &second].concat();
                wire = format!(
                    "PUT /api2/json/nodes/pve/qemu/110/config HTTP/1.1\r\nConnection: close\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                wire.extend_from_slice(&body);
            }
            // the same, chunked
            _ => {
                let body = [b"description=ok&".as_slice(), &second].concat();
                wire = format!(
                    "PUT /api2/json/nodes/pve/qemu/110/config HTTP/1.1\r\nConnection: close\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
                    body.len()
                )
                .into_bytes();
                wire.extend_from_slice(&body);
                wire.extend_from_slice(b"\r\n0\r\n\r\n");
            }
        }
        let _ = exchange(g.addr, &wire, WAIT).await;
        t.sent += 1;
        for r in g.sim.recorder.requests() {
            t.forwarded += 1;
            for call in perl::of_recorded(&r) {
                if let Some(why) = perl::changes_protected(&call, 0) {
                    t.violations.push(format!(
                        "FORWARDED A CHANGE (pipelined, trick {trick}): {why}\n  wire: {:?}",
                        String::from_utf8_lossy(&wire)
                    ));
                }
            }
        }
        let after = protected_state(&g);
        if after != before {
            t.violations.push(format!(
                "sim state changed (pipelined): {:?}",
                String::from_utf8_lossy(&wire)
            ));
        }
    }
    report("pipelined corpus", &t, started);
    assert_clean(&t);
}

/// The same tricks aimed at managed guests 110/120: nothing may reach the sim as a change to
/// 104/109, and spellings real clients send must not be refused.
///
/// Legitimately refusable (ambiguous, or refused by pveproxy itself): lower-case or
/// HEAD/PATCH/OPTIONS methods, `//api2`, unknown or upper-case formats, double encoding,
/// `.`/`..`, control bytes and `%FF` in the path, a case change in a fixed segment, VMIDs
/// spelled `0110`/`+110`/`110.0`/`110%0A`/`110%00`/` 110`, list separators other than `,`
/// `;` and space, JSON numbers with fraction or exponent, JSON strings with spaces or
/// newlines, JSON arrays for `*-list` formats, duplicate JSON keys, query-over-body
/// precedence tricks, a body on GET/DELETE, odd or duplicate Content-Types, CL+TE,
/// `chunked, identity`, two Content-Lengths and obs-fold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_tricks_on_managed_guests_are_not_over_refused() {
    let g = start().await;
    let before = protected_state(&g);
    let started = std::time::Instant::now();
    let mut t = Tally::default();
    let mut over_refused = Vec::new();
    let mut legit = 0;
    for (_, req) in corpus(0x00DD_BA11, 1500, Mode::Control) {
        let forwarded = check(&g, &req, &before, &mut t).await;
        if req.legit {
            legit += 1;
            if !forwarded {
                over_refused.push(format!(
                    "{} {}  tricks {:?}  body {:?}",
                    req.method,
                    req.target,
                    req.tricks,
                    String::from_utf8_lossy(&req.body)
                ));
            }
        }
    }
    report("control corpus", &t, started);
    eprintln!(
        "control corpus: {legit} legitimate spellings, {} over-refused",
        over_refused.len()
    );
    assert_clean(&t);
    assert!(
        over_refused.is_empty(),
        "{} legitimate requests refused; first ones:\n{}",
        over_refused.len(),
        over_refused
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Bypasses found by this corpus, fixed (regression tests)
// ---------------------------------------------------------------------------------------------

/// HTTP::Headers (which pveproxy reads every header line into) turns `_` into `-` in header
/// names, so `Content_Type: application/json` is pveproxy's Content-Type while pvegate sees
/// no Content-Type and reads the body as a form. A JSON body whose only `=` sits inside a
/// string reads as one junk form parameter to pvegate, and as real parameters to pveproxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_content_type_with_underscore() {
    let g = start().await;
    let before = protected_state(&g);
    let mut t = Tally::default();
    let n = "/api2/json/nodes/pve";
    let cases = [
        (
            "PUT",
            format!("{n}/qemu/110/config"),
            r#"{"scsi1":"local-lvm:vm-104-disk-0","x":"="}"#,
        ),
        (
            "POST",
            format!("{n}/qemu/110/move_disk"),
            r#"{"disk":"scsi0","target-vmid":104,"x":"="}"#,
        ),
        ("POST", format!("{n}/vzdump"), r#"{"vmid":"104","x":"="}"#),
        (
            "POST",
            format!("{n}/execute"),
            r#"{"commands":"[{\"path\":\"qemu/104/status/stop\",\"method\":\"POST\"}]","x":"="}"#,
        ),
    ];
    for (method, path, body) in cases {
        for headers in [
            "Content_Type: application/json\r\n".to_string(),
            "content_type: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                .to_string(),
        ] {
            let wire = format!(
                "{method} {path} HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            g.sim.recorder.clear();
            let answer = exchange(g.addr, wire.as_bytes(), WAIT).await;
            t.sent += 1;
            for r in g.sim.recorder.requests() {
                for call in perl::of_recorded(&r) {
                    if let Some(why) = perl::changes_protected(&call, 0) {
                        t.violations.push(format!(
                            "{why}\n  wire: {wire:?}\n  answer: {:?}",
                            String::from_utf8_lossy(&answer[..answer.len().min(200)])
                        ));
                    }
                }
            }
        }
    }
    // and the generated family
    for (_, req) in corpus(0x5EED_0001, 200, Mode::Underscore) {
        check(&g, &req, &before, &mut t).await;
    }
    assert_clean(&t);
}

/// HTTP::Headers also reads `Content_Length` as Content-Length. pvegate forwards the client's
/// `Content_Length: 3` next to the real `Content-Length`; pveproxy joins them (`"3, 180"`),
/// numifies that to 3, reads three bytes of body and parses the rest of the body as the next
/// request on pvegate's pooled upstream connection: a smuggled, never-judged request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_content_length_with_underscore_smuggles_a_request() {
    let g = start().await;
    let smuggled = format!(
        "POST /api2/json/nodes/pve/qemu/104/status/stop HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nContent-Length: 0\r\n\r\n"
    );
    let body = format!("a=1{smuggled}");
    let wire = format!(
        "PUT /api2/json/nodes/pve/qemu/110/config HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nContent_Length: 3\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    g.sim.recorder.clear();
    let answer = exchange(g.addr, wire.as_bytes(), WAIT).await;
    let mut violations = Vec::new();
    for r in g.sim.recorder.requests() {
        for call in perl::of_recorded(&r) {
            if let Some(why) = perl::changes_protected(&call, 0) {
                violations.push(format!(
                    "{why}\n  sim received headers {:?}\n  answer {:?}",
                    r.headers,
                    String::from_utf8_lossy(&answer[..answer.len().min(200)])
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
