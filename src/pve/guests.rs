//! Guest references: a VMID, a set of VMIDs, or "every guest", and the parsers for every
//! format in which the Proxmox API names a guest (see `shared/pve-api/SEMANTICS.md` section d).
//!
//! Two kinds of parser live here:
//! * **strict** parsers (`parse_vmid`, `parse_vmid_list`, `parse_ha_sid`, ...) for parameters the
//!   schema types as guest references. They accept what pveproxy accepts and return an error
//!   for anything else: a value that should name a guest but cannot be read is never "no guest".
//! * **owner scanners** (`volume_owners`, `property_string_owners`, `scan_generous`) that collect
//!   every number that could be the owner of a volume or be a guest in an unknown call. They
//!   never fail and, when unsure, include the number: a false positive only refuses a call.

use std::fmt;

/// A Proxmox guest id (VM or container), 100..=999_999_999.
pub type Vmid = u32;

/// Every guest a request touches.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum GuestSet {
    /// The request names no guest.
    #[default]
    None,
    /// The listed guests (sorted, deduplicated, never empty).
    Some(Vec<Vmid>),
    /// The request acts on every guest (an omitted bulk list, a node shell...).
    All,
}

impl GuestSet {
    /// A set holding exactly one guest.
    pub fn one(vmid: Vmid) -> Self {
        GuestSet::Some(vec![vmid])
    }

    /// Adds a guest, keeping the list sorted and free of duplicates (no-op for `All`).
    pub fn insert(&mut self, vmid: Vmid) {
        match self {
            GuestSet::None => *self = GuestSet::one(vmid),
            GuestSet::Some(list) => {
                if let Err(pos) = list.binary_search(&vmid) {
                    list.insert(pos, vmid);
                }
            }
            GuestSet::All => {}
        }
    }

    /// Marks the set as "every guest".
    pub fn set_all(&mut self) {
        *self = GuestSet::All;
    }

    /// Adds every guest of `other` to `self` (`All` absorbs everything).
    pub fn union(&mut self, other: &GuestSet) {
        match other {
            GuestSet::None => {}
            GuestSet::All => self.set_all(),
            GuestSet::Some(list) => {
                for &v in list {
                    self.insert(v);
                }
            }
        }
    }

    /// True when the set is "every guest".
    pub fn is_all(&self) -> bool {
        matches!(self, GuestSet::All)
    }

    /// True when no guest is named.
    pub fn is_empty(&self) -> bool {
        matches!(self, GuestSet::None)
    }

    /// True when `vmid` is affected (always true for `All`).
    pub fn contains(&self, vmid: Vmid) -> bool {
        match self {
            GuestSet::None => false,
            GuestSet::Some(list) => list.binary_search(&vmid).is_ok(),
            GuestSet::All => true,
        }
    }

    /// The listed guests; empty for `None` and for `All`.
    pub fn listed(&self) -> &[Vmid] {
        match self {
            GuestSet::Some(list) => list,
            _ => &[],
        }
    }
}

impl FromIterator<Vmid> for GuestSet {
    fn from_iter<I: IntoIterator<Item = Vmid>>(iter: I) -> Self {
        let mut set = GuestSet::None;
        for v in iter {
            set.insert(v);
        }
        set
    }
}

impl fmt::Display for GuestSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestSet::None => f.write_str("none"),
            GuestSet::All => f.write_str("all guests"),
            GuestSet::Some(list) => {
                for (i, v) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                Ok(())
            }
        }
    }
}

/// A value that should name a guest but is not valid in its format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GuestParseError(pub String);

fn err(msg: impl Into<String>) -> GuestParseError {
    GuestParseError(msg.into())
}

/// Smallest and largest valid VMID.
pub const VMID_MIN: Vmid = 100;
/// Largest valid VMID (`pve-vmid` allows nine digits).
pub const VMID_MAX: Vmid = 999_999_999;

/// Perl's `$` matches before one final newline, so every PVE pattern accepts one trailing `\n`.
/// Whether `needle` occurs in `hay` (for short values, cheaper than `str::contains`).
fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay.windows(needle.len()).any(|w| w == needle)
}

fn strip_nl(s: &str) -> &str {
    s.strip_suffix('\n').unwrap_or(s)
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Perl `int()` of an ASCII digit string, as a VMID-sized number; `None` if it does not fit.
fn int_of_digits(s: &str) -> Option<Vmid> {
    let t = s.trim_start_matches('0');
    if t.is_empty() {
        return if s.is_empty() { None } else { Some(0) };
    }
    if t.len() > 10 {
        return None;
    }
    t.parse::<u64>().ok().and_then(|v| Vmid::try_from(v).ok())
}

/// A number that may be a guest: the VMID range only (owners outside it cannot be guests).
fn candidate(s: &str) -> Option<Vmid> {
    int_of_digits(s).filter(|v| (VMID_MIN..=VMID_MAX).contains(v))
}

/// `pve-vmid`: one trailing `\n` is stripped, then `^[1-9][0-9]{2,8}$` must match.
pub fn parse_vmid(s: &str) -> Result<Vmid, GuestParseError> {
    let t = strip_nl(s);
    let b = t.as_bytes();
    if (3..=9).contains(&b.len()) && b[0] != b'0' && all_digits(t) {
        if let Ok(v) = t.parse::<Vmid>() {
            return Ok(v);
        }
    }
    Err(err(format!("invalid VMID {s:?}")))
}

/// pve-common `split_list`: on NUL only if the value contains one; otherwise on `,`, `;` and
/// every Unicode whitespace that Perl's `\s` matches. Empty items are dropped (Perl `split`
/// keeps leading empty fields in NUL mode, which then fail validation: they are kept here too).
pub fn split_list(s: &str) -> Vec<&str> {
    if s.contains('\0') {
        let mut items: Vec<&str> = s.split('\0').collect();
        while items.last().is_some_and(|x| x.is_empty()) {
            items.pop();
        }
        items
    } else {
        s.split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .filter(|x| !x.is_empty())
            .collect()
    }
}

/// `pve-vmid-list`: every item must be a valid VMID; an empty list is valid (no guest).
pub fn parse_vmid_list(s: &str, out: &mut GuestSet) -> Result<(), GuestParseError> {
    for item in split_list(s) {
        out.insert(
            parse_vmid(item).map_err(|_| err(format!("invalid VMID {item:?} in list {s:?}")))?,
        );
    }
    Ok(())
}

/// HA resource id (`pve-ha-resource-or-vm-id`): `vm:104`, `ct:104` or a bare `104`.
/// Any other resource type fails closed.
pub fn parse_ha_sid(s: &str) -> Result<Vmid, GuestParseError> {
    let t = strip_nl(s);
    if all_digits(t) {
        return int_of_digits(t).ok_or_else(|| err(format!("invalid HA resource id {s:?}")));
    }
    match t.split_once(':') {
        Some(("vm" | "ct", id)) if all_digits(id) => {
            int_of_digits(id).ok_or_else(|| err(format!("invalid HA resource id {s:?}")))
        }
        Some((ty, _)) if !ty.is_empty() && ty.bytes().all(|b| b.is_ascii_lowercase()) => Err(err(
            format!("HA resource {s:?}: only vm:<vmid> and ct:<vmid> can be judged"),
        )),
        _ => Err(err(format!("invalid HA resource id {s:?}"))),
    }
}

/// HA resource list (`pve-ha-resource-id-list`): `split_list`, every item `vm:N`/`ct:N`.
pub fn parse_ha_sid_list(s: &str, out: &mut GuestSet) -> Result<(), GuestParseError> {
    for item in split_list(s) {
        if all_digits(item) {
            return Err(err(format!(
                "HA resource list {s:?}: bare id {item:?} not allowed"
            )));
        }
        out.insert(parse_ha_sid(item)?);
    }
    Ok(())
}

/// Replication job id `^(\d+)-(\d+)$`; the guest is `int($1)` (so `0104-0` is guest 104).
pub fn parse_replication_id(s: &str) -> Result<Vmid, GuestParseError> {
    let t = strip_nl(s);
    match t.split_once('-') {
        Some((g, n)) if all_digits(g) && all_digits(n) => {
            int_of_digits(g).ok_or_else(|| err(format!("invalid replication job id {s:?}")))
        }
        _ => Err(err(format!("invalid replication job id {s:?}"))),
    }
}

fn is_hex(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The guest in a task's id field: `104`, `104@storage` (imgdel), `104-0` (replication).
fn upid_id_guest(id: &str) -> Option<Vmid> {
    let digits_end = id
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(id.len());
    let (d, rest) = id.split_at(digits_end);
    if d.is_empty() || !(rest.is_empty() || rest.starts_with('@') || rest.starts_with('-')) {
        return None;
    }
    int_of_digits(d)
}

/// A task id `UPID:node:pid:pstart:start:type:id:user:`; the guest is the id field when it is
/// a VMID (or `VMID@storage`). A value that is not a UPID is an error.
pub fn parse_upid(s: &str) -> Result<GuestSet, GuestParseError> {
    let t = strip_nl(s);
    let mut f = [""; 9];
    let mut n = 0;
    for part in t.split(':') {
        if n == f.len() {
            return Err(err(format!("invalid task id (UPID) {s:?}")));
        }
        f[n] = part;
        n += 1;
    }
    let ok = n == 9
        && f[0] == "UPID"
        && !f[1].is_empty()
        && f[1].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && is_hex(f[2], 8, 8)
        && is_hex(f[3], 8, 9)
        && is_hex(f[4], 8, 8)
        && !f[5].is_empty()
        && !f[7].is_empty()
        && f[8].is_empty()
        && f[5..8].iter().all(|x| !x.chars().any(char::is_whitespace));
    if !ok {
        return Err(err(format!("invalid task id (UPID) {s:?}")));
    }
    if f[6].is_empty() && multi_guest_task(f[5]) {
        // A backup or bulk task over several guests carries no id: stopping it can interrupt
        // (or leave suspended/locked) any guest it covers, which is not known offline.
        return Ok(GuestSet::All);
    }
    Ok(upid_id_guest(f[6]).map_or(GuestSet::None, |v| GuestSet::Some(vec![v])))
}

/// Task types that act on several guests under one UPID with an empty id field.
fn multi_guest_task(task_type: &str) -> bool {
    matches!(
        task_type,
        "vzdump" | "startall" | "stopall" | "suspendall" | "migrateall"
    ) || task_type.starts_with("bulk")
}

/// ACL path (`PUT /access/acl`, `GET /access/permissions`): `/vms/104` names 104; `/`, `/vms`
/// and `/pool/...` reach every guest (pool membership cannot be resolved offline); other
/// paths name no guest. Normalised like `normalize_path` (`//` collapsed, trailing `/` dropped).
pub fn parse_acl_path(s: &str) -> Result<GuestSet, GuestParseError> {
    let t = strip_nl(s);
    let mut comps = t.split('/').filter(|c| !c.is_empty());
    match (comps.next(), comps.next(), comps.next()) {
        (None, _, _) => Ok(GuestSet::All),
        (Some("vms"), None, _) => Ok(GuestSet::All),
        (Some("vms"), Some(id), None) if all_digits(id) => int_of_digits(id)
            .map(GuestSet::one)
            .ok_or_else(|| err(format!("invalid ACL path {s:?}"))),
        (Some("vms"), _, _) => Err(err(format!("invalid ACL path {s:?}"))),
        (Some("pool"), _, _) => Ok(GuestSet::All),
        _ => Ok(GuestSet::None),
    }
}

/// Volume-name prefixes that carry an owner VMID: `vm-104-…`, `base-…`, `subvol-…`,
/// `basevol-…`, and RBD's `basevm-…` and bare `-104-…`.
const OWNER_PREFIXES: [&str; 6] = ["basevol-", "basevm-", "subvol-", "base-", "vm-", "-"];

/// The owner in one path component of a volume name, by prefix (`vm-104-disk-0`) or as a
/// vzdump archive name (`vzdump-qemu-104-…`).
fn segment_owner(seg: &str) -> Option<Vmid> {
    for p in OWNER_PREFIXES {
        if let Some(rest) = seg.strip_prefix(p) {
            let end = rest
                .bytes()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(rest.len());
            let (d, tail) = rest.split_at(end);
            if !d.is_empty() && (tail.is_empty() || tail.starts_with('-') || tail.starts_with('.'))
            {
                return candidate(d);
            }
        }
    }
    if !contains_bytes(seg.as_bytes(), b"vzdump-") {
        return None;
    }
    for kind in ["vzdump-qemu-", "vzdump-lxc-", "vzdump-openvz-"] {
        if let Some(pos) = seg.find(kind) {
            let rest = &seg[pos + kind.len()..];
            let end = rest
                .bytes()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(rest.len());
            if end > 0 {
                return candidate(&rest[..end]);
            }
        }
    }
    None
}

/// Splits `storage:volname` like `parse_volume_id` (`^([a-z][a-z0-9\-_.]*[a-z0-9]):(.+)$`, case
/// insensitive) and returns the volume name; anything else (a path) is returned whole.
pub fn volume_name(s: &str) -> &str {
    if let Some((store, name)) = s.split_once(':') {
        let b = store.as_bytes();
        let valid = b.len() >= 2
            && b[0].is_ascii_alphabetic()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
        if valid && !name.is_empty() {
            return name;
        }
    }
    s
}

/// Every VMID that could own the volume `s` (volume ID, bare volume name or absolute path):
/// directory owners (`104/…`, also linked clones `100/base-…/104/vm-…`, PBS
/// `backup/vm/104/<time>`), name prefixes (`vm-`, `base-`, `subvol-`, `basevol-`, RBD `-104-`),
/// and vzdump archives (`vzdump-qemu-104-…`). Never fails; includes every candidate.
pub fn volume_owners(s: &str, out: &mut GuestSet) {
    let name = volume_name(strip_nl(s));
    let mut segs = name.split('/').filter(|x| !x.is_empty()).peekable();
    while let Some(seg) = segs.next() {
        if segs.peek().is_some() && all_digits(seg) {
            if let Some(v) = candidate(seg) {
                out.insert(v);
            }
        }
        if let Some(v) = segment_owner(seg) {
            out.insert(v);
        }
    }
}

/// Owners of the volumes in a property string such as
/// `local-lvm:vm-104-disk-0,size=32G` or `file=…,import-from=…`: the values of
/// `volume_keys` and of the unkeyed (default-key) item. Anything PVE would not parse as
/// `key=value` is scanned as a volume too, and a quoted value makes every item count.
pub fn property_string_owners(s: &str, volume_keys: &[String], out: &mut GuestSet) {
    let s = strip_nl(s);
    let quoted = s.contains('"');
    for part in s.split(',') {
        if part.trim().is_empty() {
            continue;
        }
        match part.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                if quoted || volume_keys.iter().any(|x| x == k) {
                    volume_owners(v.trim_matches('"'), out);
                }
            }
            _ => volume_owners(part.trim_matches('"'), out),
        }
    }
}

/// Does a parameter name look like it holds guest ids (for endpoints the catalogue lacks)?
fn guest_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("vmid")
        || k.contains("guest")
        || matches!(
            k.as_str(),
            "vms" | "vm" | "sid" | "sids" | "resource" | "resources" | "newid" | "id" | "ids"
        )
}

/// Collects every value that looks like a guest reference, for calls the catalogue does not
/// know: digit runs in guest-like keys, UPIDs, `vm:N`/`ct:N`, `/vms/N`, volume owners.
pub fn scan_generous(key: Option<&str>, value: &str, out: &mut GuestSet) {
    if key.is_some_and(guest_key) {
        for run in value.split(|c: char| !c.is_ascii_digit()) {
            if let Some(v) = candidate(run) {
                out.insert(v);
            }
        }
    }
    // The searches below need a ':' (UPIDs, HA sids) or a '/' (ACL paths); most values have
    // neither, and a substring search costs more to set up than this byte scan.
    let bytes = value.as_bytes();
    let has_colon = bytes.contains(&b':');
    let has_slash = bytes.contains(&b'/');
    // UPIDs anywhere in the value.
    let mut rest = if has_colon { value } else { "" };
    while let Some(pos) = rest.find("UPID:") {
        let fields: Vec<&str> = rest[pos..].splitn(9, ':').collect();
        if let Some(id) = fields.get(6) {
            if let Some(v) = upid_id_guest(id).filter(|v| (VMID_MIN..=VMID_MAX).contains(v)) {
                out.insert(v);
            }
        }
        rest = &rest[pos + 5..];
    }
    // HA sids and ACL paths.
    for pat in ["vm:", "ct:", "/vms/"] {
        let possible = if pat.starts_with('/') {
            has_slash
        } else {
            has_colon
        };
        let mut rest = if possible { value } else { "" };
        while let Some(pos) = rest.find(pat) {
            let tail = &rest[pos + pat.len()..];
            let end = tail
                .bytes()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(tail.len());
            if let Some(v) = candidate(&tail[..end]) {
                out.insert(v);
            }
            rest = tail;
        }
    }
    // Volume ids, bare or inside property strings.
    for part in value.split(|c: char| c == ',' || c.is_whitespace()) {
        volume_owners(part, out);
        if let Some((_, v)) = part.split_once('=') {
            volume_owners(v, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[Vmid]) -> GuestSet {
        v.iter().copied().collect()
    }

    #[test]
    fn guest_set_ops() {
        let mut s = GuestSet::None;
        s.insert(110);
        s.insert(104);
        s.insert(110);
        assert_eq!(s, GuestSet::Some(vec![104, 110]));
        assert!(s.contains(104) && !s.contains(105));
        s.union(&GuestSet::one(100));
        assert_eq!(s.listed(), &[100, 104, 110]);
        assert_eq!(s.to_string(), "100, 104, 110");
        s.union(&GuestSet::All);
        assert!(s.is_all() && s.contains(1));
        s.insert(5);
        assert!(s.is_all());
        assert!(GuestSet::default().is_empty());
    }

    #[test]
    fn vmid_table() {
        for (input, want) in [
            ("104", Some(104)),
            ("104\n", Some(104)),
            ("999999999", Some(999_999_999)),
            ("100", Some(100)),
            ("99", None),
            ("0104", None),
            ("104\n\n", None),
            ("+104", None),
            (" 104", None),
            ("104 ", None),
            ("1000000000", None),
            ("", None),
            ("١٠٤", None),
            ("10a", None),
            ("\n", None),
        ] {
            assert_eq!(parse_vmid(input).ok(), want, "{input:?}");
        }
    }

    #[test]
    fn split_list_table() {
        for (input, want) in [
            ("100,104", vec!["100", "104"]),
            ("100;104", vec!["100", "104"]),
            ("100 104", vec!["100", "104"]),
            ("100\u{a0}104", vec!["100", "104"]),
            ("100\u{2028}104", vec!["100", "104"]),
            ("100\u{0b}104", vec!["100", "104"]),
            ("100\u{85}104", vec!["100", "104"]),
            ("100\u{3000}104", vec!["100", "104"]),
            ("  ,100,,104, ", vec!["100", "104"]),
            ("104\u{0}105", vec!["104", "105"]),
            ("104,5\u{0}105", vec!["104,5", "105"]),
            ("\u{0}104", vec!["", "104"]),
            ("104\u{0}\u{0}", vec!["104"]),
            ("", vec![]),
            (",", vec![]),
            ("100\u{ff0c}104", vec!["100\u{ff0c}104"]),
        ] {
            assert_eq!(split_list(input), want, "{input:?}");
        }
    }

    #[test]
    fn vmid_list_table() {
        let mut s = GuestSet::None;
        parse_vmid_list("100,104;110 120\u{a0}130", &mut s).unwrap();
        assert_eq!(s, set(&[100, 104, 110, 120, 130]));
        let mut s = GuestSet::None;
        parse_vmid_list("", &mut s).unwrap();
        assert!(s.is_empty());
        let mut s = GuestSet::None;
        assert!(parse_vmid_list("100,abc", &mut s).is_err());
        assert!(parse_vmid_list("100\u{ff0c}104", &mut s).is_err());
        assert!(parse_vmid_list("\u{0}104", &mut s).is_err());
        let mut s = GuestSet::None;
        parse_vmid_list("104\u{0}105", &mut s).unwrap();
        assert_eq!(s, set(&[104, 105]));
    }

    #[test]
    fn ha_sid_table() {
        for (input, want) in [
            ("vm:104", Some(104)),
            ("ct:104", Some(104)),
            ("104", Some(104)),
            ("0104", Some(104)),
            ("vm:104\n", Some(104)),
            ("vm:", None),
            ("vm:abc", None),
            ("fence:104", None),
            ("VM:104", None),
            (":104", None),
            ("", None),
        ] {
            assert_eq!(parse_ha_sid(input).ok(), want, "{input:?}");
        }
        let mut s = GuestSet::None;
        parse_ha_sid_list("vm:100,ct:104", &mut s).unwrap();
        assert_eq!(s, set(&[100, 104]));
        assert!(parse_ha_sid_list("vm:100,104", &mut GuestSet::None).is_err());
        assert!(parse_ha_sid_list("vm:100,foo:1", &mut GuestSet::None).is_err());
    }

    #[test]
    fn replication_table() {
        for (input, want) in [
            ("104-0", Some(104)),
            ("0104-0", Some(104)),
            ("104-12", Some(104)),
            ("104-0\n", Some(104)),
            ("104", None),
            ("104-", None),
            ("a-0", None),
            ("104-0-1", None),
        ] {
            assert_eq!(parse_replication_id(input).ok(), want, "{input:?}");
        }
    }

    #[test]
    fn upid_table() {
        let ok = |s: &str| parse_upid(s).unwrap().listed().first().copied();
        assert_eq!(
            ok("UPID:pve:00001234:0000ABCD:65A1B2C3:qmstart:104:root@pam:"),
            Some(104)
        );
        assert_eq!(
            ok("UPID:pve-1:00001234:12345ABCD:65A1B2C3:imgdel:104@local:root@pam:"),
            Some(104)
        );
        assert_eq!(
            parse_upid("UPID:pve:00001234:0000ABCD:65A1B2C3:vzdump::root@pam:").unwrap(),
            GuestSet::All,
            "a backup of several guests may cover any of them"
        );
        assert_eq!(
            ok("UPID:pve:00001234:0000ABCD:65A1B2C3:aptupdate::root@pam:"),
            None
        );
        assert_eq!(
            ok("UPID:pve:00001234:0000ABCD:65A1B2C3:srvstart:pveproxy:root@pam:"),
            None
        );
        assert!(parse_upid("UPID:pve:1234:0000ABCD:65A1B2C3:qmstart:104:root@pam:").is_err());
        assert!(parse_upid("UPID:pve:00001234:0000ABCD:65A1B2C3:qmstart:104:root@pam").is_err());
        assert!(parse_upid("104").is_err());
    }

    #[test]
    fn acl_path_table() {
        assert_eq!(parse_acl_path("/vms/104").unwrap(), GuestSet::one(104));
        assert_eq!(parse_acl_path("//vms//104/").unwrap(), GuestSet::one(104));
        assert_eq!(parse_acl_path("vms/104").unwrap(), GuestSet::one(104));
        assert!(parse_acl_path("/vms").unwrap().is_all());
        assert!(parse_acl_path("/").unwrap().is_all());
        assert!(parse_acl_path("/pool/prod").unwrap().is_all());
        assert!(parse_acl_path("/storage/local").unwrap().is_empty());
        assert!(parse_acl_path("/vms/abc").is_err());
        assert!(parse_acl_path("/vms/104/x").is_err());
    }

    #[test]
    fn volume_owner_table() {
        for (input, want) in [
            ("local-lvm:vm-104-disk-0", vec![104]),
            ("vm-104-disk-0", vec![104]),
            ("local-zfs:base-100-disk-0/vm-104-disk-0", vec![100, 104]),
            ("local-zfs:subvol-104-disk-0", vec![104]),
            ("local-zfs:basevol-104-disk-0", vec![104]),
            ("local:104/vm-200-disk-0.qcow2", vec![104, 200]),
            (
                "local:100/base-100-disk-0.qcow2/104/vm-104-disk-0.qcow2",
                vec![100, 104],
            ),
            ("ceph:-104-x", vec![104]),
            ("ceph:basevm-104-x", vec![104]),
            ("ceph:base-100-disk-0/vm-104-disk-1", vec![100, 104]),
            (
                "local:backup/vzdump-qemu-104-2026_01_01-00_00_00.vma.zst",
                vec![104],
            ),
            (
                "local:backup/vzdump-lxc-104-2026_01_01-00_00_00.tar.zst",
                vec![104],
            ),
            ("pbs:backup/vm/104/2026-01-01T00:00:00Z", vec![104]),
            ("pbs:backup/ct/104/2026-01-01T00:00:00Z", vec![104]),
            ("local:vm-0104-disk-0", vec![104]),
            ("/var/lib/vz/images/104/vm-104-disk-0.qcow2", vec![104]),
            ("/dev/pve/vm-104-disk-0", vec![104]),
            ("local:iso/ubuntu-2404.iso", vec![]),
            ("local:iso/debian-12.7.0-amd64-netinst.iso", vec![]),
            ("local-lvm:128", vec![]),
            ("local:snippets/user.yaml", vec![]),
            ("iscsi:0.0.1.scsi-36001405e6b3d0b1c4", vec![]),
            (
                "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                vec![],
            ),
        ] {
            let mut s = GuestSet::None;
            volume_owners(input, &mut s);
            assert_eq!(s.listed(), want.as_slice(), "{input:?}");
        }
    }

    #[test]
    fn property_string_table() {
        let qm: Vec<String> = ["file", "volume", "import-from"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (input, want) in [
            ("local-lvm:vm-104-disk-0,size=32G", vec![104]),
            ("file=local-lvm:vm-104-disk-0,size=32G", vec![104]),
            ("volume=local-lvm:vm-104-disk-0", vec![104]),
            (
                "local-lvm:0,import-from=local:104/vm-104-disk-0.qcow2",
                vec![104],
            ),
            ("size=32G,local-lvm:vm-104-disk-0", vec![104]),
            ("local-lvm:vm-110-disk-0,serial=vm-104-disk-0", vec![110]),
            ("local-lvm:32,format=raw", vec![]),
            ("none,media=cdrom", vec![]),
        ] {
            let mut s = GuestSet::None;
            property_string_owners(input, &qm, &mut s);
            assert_eq!(s.listed(), want.as_slice(), "{input:?}");
        }
    }

    #[test]
    fn generous_scan() {
        let mut s = GuestSet::None;
        scan_generous(Some("target-vmid"), "104", &mut s);
        scan_generous(Some("x"), "vm:105,ct:106", &mut s);
        scan_generous(
            Some("y"),
            "UPID:pve:00001234:0000ABCD:65A1B2C3:qmstart:107:root@pam:",
            &mut s,
        );
        scan_generous(Some("path"), "/vms/108", &mut s);
        scan_generous(Some("disk"), "file=local:vm-109-disk-0,size=1G", &mut s);
        scan_generous(Some("name"), "web 123", &mut s);
        assert_eq!(s.listed(), &[104, 105, 106, 107, 108, 109]);
    }
}
