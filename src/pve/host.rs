//! Host-reaching values: request parameters through which a guest is given a piece of the
//! Proxmox host itself — an absolute host path where a volume is expected (disks, mount
//! points, container devices, restore sources), a host PCI or USB device by its raw id, raw
//! QEMU `args`, a hook script — and the matching of such values against policy allow-lists.
//!
//! Proxmox lets only `root@pam` set these (the root-only branches of qemu-server's and
//! pve-container's config permission checks, and pve-storage's "only root can pass arbitrary
//! filesystem paths"). They carry no guest number that could be trusted: `/dev/dm-7`,
//! `/dev/sdb` or a bind mount of `/mnt/pve/nfs` can hold any guest's data. So a request that
//! carries one reaches *every* guest ([`crate::policy`] decides it as `host.access`).
//!
//! Which parameters can carry them is a fact of the endpoint catalogue (`host`, `host_keys`,
//! `host_default`, written by `tools/gen_catalogue.py` from the schema's format names), so a
//! new host-reaching parameter in a newer schema shows up there (the coverage test fails on an
//! unreviewed one) instead of being missed here.

use std::fmt;

use super::catalogue::Param;

/// How a host-reaching parameter carries its host value (the catalogue's `host` fact).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKind {
    /// Absolute paths: in the property-string sub-keys `host_keys` (`file`, `import-from`,
    /// `volume`, `path`), or, without sub-keys, the whole value (`serial0=/dev/ttyS0`,
    /// `archive=/root/x.vma`).
    Paths,
    /// A hook script: a snippet volume that the host runs as root at every guest phase.
    Hookscript,
    /// `hostpci[n]`: `host=` raw PCI ids (a `mapping=` is resolved by the cluster instead).
    Pci,
    /// `usb[n]`: `host=` a raw USB vendor:product id or port (not `spice`, not a mapping).
    Usb,
    /// Raw QEMU command-line arguments.
    Args,
}

impl HostKind {
    /// The kind for a catalogue `host` fact; `None` for a fact this build does not know
    /// (`unreviewed`, or a newer generator's kind).
    pub fn from_fact(fact: &str) -> Option<HostKind> {
        match fact {
            "paths" => Some(HostKind::Paths),
            "hookscript" => Some(HostKind::Hookscript),
            "pci" => Some(HostKind::Pci),
            "usb" => Some(HostKind::Usb),
            "args" => Some(HostKind::Args),
            _ => None,
        }
    }
}

/// What on the host a value reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostTarget {
    /// An absolute host path (file, directory or device node), lexically normalised: repeated
    /// and trailing `/` removed. `plain` is false when it has `.` or `..` components, which
    /// no allow-list pattern ever matches.
    Path { path: String, plain: bool },
    /// A hook script volume (`local:snippets/hook.pl`).
    Hookscript(String),
    /// A host PCI function or device (`0000:01:00.0`, `0000:01:00` for all functions), or a
    /// USB device (`046d:c52b`) or port (`1-2.3`); lower-case.
    Device(String),
    /// Raw QEMU arguments (never matched by an allow-list).
    Args,
}

/// One host-reaching value of a request: the parameter key and what it reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostUse {
    /// The request key (`scsi1`, `mp0`, `args`).
    pub key: String,
    /// What it reaches.
    pub target: HostTarget,
}

impl fmt::Display for HostUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            HostTarget::Path { path, .. } => write!(f, "{} host path {path}", self.key),
            HostTarget::Hookscript(v) => write!(f, "{} hook script {v}", self.key),
            HostTarget::Device(d) => write!(f, "{} host device {d}", self.key),
            HostTarget::Args => write!(f, "{} raw QEMU arguments", self.key),
        }
    }
}

/// Collects the host-reaching values of one request value of parameter `p` (request key
/// `key`). An error names the key and says why the value cannot be judged (answered 400).
pub fn collect(
    kind: HostKind,
    p: &Param,
    key: &str,
    value: &str,
    out: &mut Vec<HostUse>,
) -> Result<(), String> {
    let mut push = |target| {
        out.push(HostUse {
            key: key.to_string(),
            target,
        })
    };
    match kind {
        HostKind::Args => {
            if !value.trim().is_empty() {
                push(HostTarget::Args);
            }
        }
        HostKind::Hookscript => {
            if !value.trim().is_empty() {
                push(HostTarget::Hookscript(value.to_string()));
            }
        }
        HostKind::Paths if p.host_keys.is_empty() => {
            if let Some(t) = path_target(value) {
                push(t);
            }
        }
        HostKind::Paths => {
            for (k, v) in items(key, value)? {
                let wanted = match k {
                    Some(k) => p.host_keys.iter().any(|h| h == k),
                    None => p.host_default.is_some(),
                };
                if wanted {
                    if let Some(t) = path_target(v) {
                        push(t);
                    }
                }
            }
        }
        HostKind::Pci => {
            let mut named = false;
            for (k, v) in items(key, value)? {
                match k {
                    None | Some("host") => {
                        named = true;
                        for id in v.split(';') {
                            let dev = pci_id(id).ok_or_else(|| {
                                format!("{key}: cannot read host PCI id {id:?} (expected e.g. 0000:01:00.0)")
                            })?;
                            push(HostTarget::Device(dev));
                        }
                    }
                    Some("mapping") => named = true,
                    _ => {}
                }
            }
            if !named {
                return Err(format!("{key}: neither host= nor mapping= is given"));
            }
        }
        HostKind::Usb => {
            for (k, v) in items(key, value)? {
                if matches!(k, None | Some("host")) {
                    if v.eq_ignore_ascii_case("spice") {
                        continue;
                    }
                    let dev = usb_id(v).ok_or_else(|| {
                        format!("{key}: cannot read host USB device {v:?} (expected vendor:product such as 046d:c52b, a port such as 1-2.3, or spice)")
                    })?;
                    push(HostTarget::Device(dev));
                }
            }
        }
    }
    Ok(())
}

/// The `key=value` items of a property string as pve-common's `parse_property_string` splits
/// them (`None` key: the default key), without allocating. Quoted values are refused:
/// pvegate does not unquote.
fn items<'a>(
    key: &str,
    value: &'a str,
) -> Result<impl Iterator<Item = (Option<&'a str>, &'a str)>, String> {
    if value.contains('"') {
        return Err(format!(
            "{key}: quoted values in a host-reaching setting cannot be judged; write it unquoted"
        ));
    }
    Ok(value
        .split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, v)) if is_key(k) => (Some(k), v),
            _ => (None, item),
        }))
}

/// pve-common's property key: `[a-z][a-z0-9_-]*`, case-insensitive.
fn is_key(k: &str) -> bool {
    let b = k.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
}

/// A host path if `v` is one: it starts with `/` (leading whitespace ignored), or it is a
/// volume id whose volume name is absolute (`local:/dev/sda`, which no storage accepts, but
/// fail closed).
fn path_target(v: &str) -> Option<HostTarget> {
    let t = v.trim_start();
    let abs = if t.starts_with('/') {
        t
    } else {
        match t.split_once(':') {
            Some((_, name)) if name.starts_with('/') => name,
            _ => return None,
        }
    };
    let mut path = String::with_capacity(abs.len());
    let mut plain = true;
    for comp in abs.split('/').filter(|c| !c.is_empty()) {
        if comp == "." || comp == ".." {
            plain = false;
        }
        path.push('/');
        path.push_str(comp);
    }
    if path.is_empty() {
        path.push('/');
    }
    Some(HostTarget::Path { path, plain })
}

/// A PCI id `[domain:]bus:slot[.function]` (hex) normalised to lower case with a domain.
fn pci_id(id: &str) -> Option<String> {
    let id = id.strip_suffix('\n').unwrap_or(id);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let (dev, func) = match id.split_once('.') {
        Some((d, f)) if hex(f, 1) => (d, Some(f)),
        Some(_) => return None,
        None => (id, None),
    };
    let parts: Vec<&str> = dev.split(':').collect();
    let (domain, bus, slot) = match parts.as_slice() {
        [b, s] => ("0000", *b, *s),
        [d, b, s] if d.len() >= 4 && d.bytes().all(|c| c.is_ascii_hexdigit()) => (*d, *b, *s),
        _ => return None,
    };
    if !hex(bus, 2) || !hex(slot, 2) {
        return None;
    }
    let mut out = format!("{domain}:{bus}:{slot}");
    if let Some(f) = func {
        out.push('.');
        out.push_str(f);
    }
    Some(out.to_ascii_lowercase())
}

/// A USB `vendor:product` (optional `0x`) or a port `bus-port[.port…]`, lower-case.
fn usb_id(v: &str) -> Option<String> {
    let v = v.strip_suffix('\n').unwrap_or(v);
    let hex4 = |s: &str| {
        let s = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        (s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
    };
    if let Some((a, b)) = v.split_once(':') {
        return Some(format!("{}:{}", hex4(a)?, hex4(b)?));
    }
    let (bus, port) = v.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(bus) && port.split('.').all(digits)).then(|| v.to_string())
}

/// Does the glob `pattern` match `text`? `*` matches within one `/`-separated component,
/// `**` matches across components, `?` one character other than `/`; everything else is
/// literal. No allocation (it runs in the policy decision).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    glob_bytes(pattern.as_bytes(), text.as_bytes())
}

fn glob_bytes(p: &[u8], t: &[u8]) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some((b'*', rest)) => {
            if let Some(rest2) = rest.strip_prefix(b"*") {
                (0..=t.len()).any(|i| glob_bytes(rest2, &t[i..]))
            } else {
                let stop = t.iter().position(|&c| c == b'/').unwrap_or(t.len());
                (0..=stop).any(|i| glob_bytes(rest, &t[i..]))
            }
        }
        Some((b'?', rest)) => t
            .split_first()
            .is_some_and(|(&c, tr)| c != b'/' && glob_bytes(rest, tr)),
        Some((&c, rest)) => t
            .split_first()
            .is_some_and(|(&d, tr)| c == d && glob_bytes(rest, tr)),
    }
}

/// An allow-list of host values (`host_paths`, `host_devices` in a policy).
#[derive(Clone, Debug, Default)]
pub struct HostPermit {
    paths: Vec<String>,
    devices: Vec<String>,
}

impl HostPermit {
    /// Adds a `host_paths` pattern: an absolute path glob, or a hook script volume glob
    /// (`local:snippets/*.pl`).
    pub fn add_path(&mut self, pattern: &str) -> Result<(), String> {
        let is_volume = pattern
            .split_once(':')
            .is_some_and(|(s, n)| !s.is_empty() && !s.contains('/') && !n.is_empty());
        if !(pattern.starts_with('/') || is_volume) {
            return Err(format!(
                "host_paths entry {pattern:?} is neither an absolute path (\"/mnt/pve/isos/*\") nor a hook script volume (\"local:snippets/*\")"
            ));
        }
        if pattern.split('/').any(|c| c == "." || c == "..") {
            return Err(format!(
                "host_paths entry {pattern:?} has a '.' or '..' component: write the path without them"
            ));
        }
        let trimmed = pattern.trim_end_matches('/');
        self.paths
            .push(if trimmed.is_empty() { "/" } else { trimmed }.to_string());
        Ok(())
    }

    /// Adds a `host_devices` pattern: a PCI id (`0000:01:00.0`, domain optional), a USB
    /// `vendor:product` or port; `*` globs allowed.
    pub fn add_device(&mut self, pattern: &str) -> Result<(), String> {
        let p = pattern.to_ascii_lowercase();
        if p.is_empty() || p.contains('/') || p.contains(char::is_whitespace) {
            return Err(format!(
                "host_devices entry {pattern:?} is not a PCI id (\"0000:01:00.0\") or a USB id (\"046d:c52b\", \"1-2.3\")"
            ));
        }
        // `01:00.0` is `0000:01:00.0`, as in hostpci.
        let colons = p.matches(':').count();
        let looks_pci = colons == 1 && p.contains('.');
        self.devices
            .push(if looks_pci { format!("0000:{p}") } else { p });
        Ok(())
    }

    /// True when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.devices.is_empty()
    }

    /// Whether this list permits `target` (raw `args` never are).
    pub fn permits(&self, target: &HostTarget) -> bool {
        match target {
            HostTarget::Path { path, plain } => {
                *plain && self.paths.iter().any(|p| glob_match(p, path))
            }
            HostTarget::Hookscript(v) => self.paths.iter().any(|p| glob_match(p, v)),
            HostTarget::Device(d) => self.devices.iter().any(|p| glob_match(p, d)),
            HostTarget::Args => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(keys: &[&str], default: bool) -> Param {
        Param {
            name: "x".into(),
            in_path: false,
            ty: "string".into(),
            format: None,
            list: false,
            items_format: None,
            vmid_ref: None,
            volume_keys: vec![],
            default_key: None,
            required: false,
            host: Some("paths".into()),
            host_keys: keys.iter().map(|s| s.to_string()).collect(),
            host_default: default.then(|| keys[0].to_string()),
        }
    }

    fn uses(kind: HostKind, p: &Param, v: &str) -> Result<Vec<HostTarget>, String> {
        let mut out = Vec::new();
        collect(kind, p, "k0", v, &mut out)?;
        Ok(out.into_iter().map(|u| u.target).collect())
    }

    fn path(p: &str) -> HostTarget {
        HostTarget::Path {
            path: p.into(),
            plain: true,
        }
    }

    #[test]
    fn disk_values() {
        let p = param(&["file", "import-from", "volume"], true);
        let k = HostKind::Paths;
        for v in [
            "local-lvm:vm-110-disk-0",
            "local-lvm:10",
            "none",
            "cdrom",
            "local:iso/x.iso,media=cdrom",
            "local-lvm:0,import-from=local:import/x.qcow2",
        ] {
            assert_eq!(uses(k, &p, v).unwrap(), vec![], "{v}");
        }
        assert_eq!(
            uses(k, &p, "/dev/mapper/pve-vm--104--disk--0").unwrap(),
            vec![path("/dev/mapper/pve-vm--104--disk--0")]
        );
        assert_eq!(
            uses(k, &p, "file=//dev//sdb/,cache=none").unwrap(),
            vec![path("/dev/sdb")]
        );
        assert_eq!(
            uses(
                k,
                &p,
                "local-lvm:0,import-from=/var/lib/vz/images/104/x.raw"
            )
            .unwrap(),
            vec![path("/var/lib/vz/images/104/x.raw")]
        );
        assert_eq!(
            uses(k, &p, "volume= /dev/sda").unwrap(),
            vec![path("/dev/sda")]
        );
        assert_eq!(
            uses(k, &p, "/mnt/../dev/sda").unwrap(),
            vec![HostTarget::Path {
                path: "/mnt/../dev/sda".into(),
                plain: false
            }]
        );
        assert!(uses(k, &p, "\"/dev/sda\"").is_err());
        // The container-side `mp=` is not a host path.
        let mp = param(&["volume"], true);
        assert_eq!(uses(k, &mp, "local-lvm:8,mp=/mnt/data").unwrap(), vec![]);
        assert_eq!(
            uses(k, &mp, "/var/lib/vz/images/104,mp=/mnt/doc1").unwrap(),
            vec![path("/var/lib/vz/images/104")]
        );
        let whole = param(&[], false);
        assert_eq!(
            uses(k, &whole, "/dev/ttyS0").unwrap(),
            vec![path("/dev/ttyS0")]
        );
        assert_eq!(uses(k, &whole, "socket").unwrap(), vec![]);
    }

    #[test]
    fn devices() {
        let p = param(&[], false);
        let dev = |s: &str| HostTarget::Device(s.into());
        assert_eq!(
            uses(HostKind::Pci, &p, "01:00.0,pcie=1").unwrap(),
            vec![dev("0000:01:00.0")]
        );
        assert_eq!(
            uses(HostKind::Pci, &p, "host=0000:0A:00;0000:0b:00.1").unwrap(),
            vec![dev("0000:0a:00"), dev("0000:0b:00.1")]
        );
        assert_eq!(uses(HostKind::Pci, &p, "mapping=gpu").unwrap(), vec![]);
        assert!(uses(HostKind::Pci, &p, "host=gpu").is_err());
        assert!(uses(HostKind::Pci, &p, "pcie=1").is_err());
        assert_eq!(
            uses(HostKind::Usb, &p, "host=0x046D:c52b,usb3=1").unwrap(),
            vec![dev("046d:c52b")]
        );
        assert_eq!(
            uses(HostKind::Usb, &p, "1-2.3").unwrap(),
            vec![dev("1-2.3")]
        );
        assert_eq!(uses(HostKind::Usb, &p, "spice").unwrap(), vec![]);
        assert_eq!(uses(HostKind::Usb, &p, "mapping=stick").unwrap(), vec![]);
        assert!(uses(HostKind::Usb, &p, "host=stick").is_err());
        assert_eq!(
            uses(HostKind::Args, &p, "-drive file=/dev/pve/vm-104-disk-0").unwrap(),
            vec![HostTarget::Args]
        );
        assert_eq!(uses(HostKind::Args, &p, " ").unwrap(), vec![]);
    }

    #[test]
    fn globs_and_permits() {
        assert!(glob_match("/mnt/pve/isos/*", "/mnt/pve/isos/a.iso"));
        assert!(!glob_match("/mnt/pve/isos/*", "/mnt/pve/isos/sub/a.iso"));
        assert!(glob_match("/mnt/pve/isos/**", "/mnt/pve/isos/sub/a.iso"));
        assert!(!glob_match("/mnt/pve/isos/*", "/mnt/pve/isosx"));
        assert!(glob_match("/dev/disk/by-id/usb-?", "/dev/disk/by-id/usb-1"));
        let mut hp = HostPermit::default();
        hp.add_path("/mnt/pve/isos/**/").unwrap();
        hp.add_path("local:snippets/*").unwrap();
        hp.add_device("01:00.*").unwrap();
        hp.add_device("046D:C52B").unwrap();
        assert!(hp.permits(&path("/mnt/pve/isos/x.iso")));
        assert!(!hp.permits(&HostTarget::Path {
            path: "/mnt/pve/isos/../nfs/images/104".into(),
            plain: false
        }));
        assert!(!hp.permits(&path("/mnt/pve/nfs")));
        assert!(hp.permits(&HostTarget::Hookscript("local:snippets/h.pl".into())));
        assert!(hp.permits(&HostTarget::Device("0000:01:00.1".into())));
        assert!(!hp.permits(&HostTarget::Device("0000:01:00".into())));
        assert!(hp.permits(&HostTarget::Device("046d:c52b".into())));
        assert!(!hp.permits(&HostTarget::Args));
        assert!(hp.add_path("mnt/x").is_err());
        assert!(hp.add_path("/mnt/../x").is_err());
    }
}
