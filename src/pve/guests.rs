//! Guest references: a VMID, a set of VMIDs, or "every guest", and the parsers for every
//! format in which the Proxmox API names a guest (see `docs/pveproxy.md#guest-params`).
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
            GuestSet::None => {
                // Room for a few: scans add guests one by one, and a second insert into a
                // one-element Vec reallocates (glibc hands out the same chunk size for 4).
                let mut list = Vec::with_capacity(4);
                list.push(vmid);
                *self = GuestSet::Some(list);
            }
            GuestSet::Some(list) => {
                // Lists and scans mostly name guests in ascending order: append those
                // without a search.
                if list.last().is_some_and(|&last| last < vmid) {
                    list.push(vmid);
                } else if let Err(pos) = list.binary_search(&vmid) {
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

/// The first occurrence of `needle` (non-empty) in `hay` at or after `from`.
///
/// `str::find` with a string pattern builds a two-way searcher on every call, which costs more
/// than the whole search on the short values of a request; this compares the first byte and
/// only then the rest (without calling `memcmp` per window).
fn find_bytes(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let (&first, tail) = needle.split_first()?;
    let last_start = hay.len().checked_sub(needle.len())?;
    (from..=last_start)
        .find(|&i| hay[i] == first && hay[i + 1..i + needle.len()].iter().eq(tail.iter()))
}

/// Whether `needle` occurs in `hay`.
fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    find_bytes(hay, 0, needle).is_some()
}

/// Whether `needle` (lower-case ASCII) occurs in `hay`, ignoring ASCII case; the same as
/// `hay.to_ascii_lowercase().contains(needle)`, without the allocation.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Does `b` hold three ASCII digits in a row? Every guest the owner scanners report is read
/// from such a run (a VMID is at least 100 and leading zeros are dropped), so a value
/// without one holds no guest and needs no further look.
fn has_digit_run(b: &[u8]) -> bool {
    let mut run = 0;
    for &c in b {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        if run == 3 {
            return true;
        }
    }
    false
}

/// The end of the ASCII digit run starting at `start`.
fn digits_end(b: &[u8], start: usize) -> usize {
    b[start..]
        .iter()
        .position(|c| !c.is_ascii_digit())
        .map_or(b.len(), |n| start + n)
}

/// Separators of the items a generous scan reads as volumes: `,` and whitespace.
fn is_part_separator(c: char) -> bool {
    c == ',' || c.is_whitespace()
}

/// Separators of `split_list`: `,`, `;` and whitespace.
fn is_list_separator(c: char) -> bool {
    c == ',' || c == ';' || c.is_whitespace()
}

/// Perl's `$` matches before one final newline, so every PVE pattern accepts one trailing `\n`.
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
    let b = strip_nl(s).as_bytes();
    if (3..=9).contains(&b.len()) && b[0] != b'0' {
        // Checked and converted in one pass; nine digits cannot overflow a `u32`.
        let value = b.iter().try_fold(0, |acc: Vmid, &c| {
            c.is_ascii_digit().then(|| acc * 10 + Vmid::from(c - b'0'))
        });
        if let Some(v) = value {
            return Ok(v);
        }
    }
    Err(err(format!("invalid VMID {s:?}")))
}

/// pve-common `split_list`: on NUL only if the value contains one; otherwise on `,`, `;` and
/// every Unicode whitespace that Perl's `\s` matches. Empty items are dropped (Perl `split`
/// keeps leading empty fields in NUL mode, which then fail validation: they are kept here too).
pub fn split_list(s: &str) -> Vec<&str> {
    list_items(s).collect()
}

/// The items of [`split_list`], without collecting them.
fn list_items(s: &str) -> impl Iterator<Item = &str> {
    let nul = s.contains('\0');
    // NUL mode: dropping the trailing empty fields is splitting what is left once the
    // trailing NULs are cut off (nothing at all if only NULs were there).
    let by_nul = nul
        .then(|| s.trim_end_matches('\0'))
        .filter(|t| !t.is_empty())
        .map(|t| t.split('\0'));
    let by_separator = (!nul).then(|| s.split(is_list_separator).filter(|x| !x.is_empty()));
    by_nul
        .into_iter()
        .flatten()
        .chain(by_separator.into_iter().flatten())
}

/// `pve-vmid-list`: every item must be a valid VMID; an empty list is valid (no guest).
pub fn parse_vmid_list(s: &str, out: &mut GuestSet) -> Result<(), GuestParseError> {
    for item in list_items(s) {
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
    for item in list_items(s) {
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
    // Only the first archive name of each kind counts (a name holds one).
    for kind in ["vzdump-qemu-", "vzdump-lxc-", "vzdump-openvz-"] {
        if let Some(pos) = find_bytes(seg.as_bytes(), 0, kind.as_bytes()) {
            let start = pos + kind.len();
            let end = digits_end(seg.as_bytes(), start);
            if end > start {
                return candidate(&seg[start..end]);
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
    if !has_digit_run(s.as_bytes()) {
        return;
    }
    let name = volume_name(strip_nl(s));
    if ownerless(name) {
        return;
    }
    // A container's old-style root directory `rootdir/<vmid>`: the last component is the owner.
    if let Some(v) = name.strip_prefix("rootdir/").and_then(|d| {
        let d = d.trim_end_matches('/');
        all_digits(d).then(|| candidate(d)).flatten()
    }) {
        out.insert(v);
    }
    // Each non-empty `/` component is judged once the next one is found, as only components
    // before the last can be owner directories.
    let mut pending: Option<&str> = None;
    let mut start = 0;
    for (i, &b) in name.as_bytes().iter().enumerate() {
        if b == b'/' {
            if i > start {
                if let Some(dir) = pending.replace(&name[start..i]) {
                    component_owners(dir, false, out);
                }
            }
            start = i + 1;
        }
    }
    if start < name.len() {
        if let Some(dir) = pending.replace(&name[start..]) {
            component_owners(dir, false, out);
        }
    }
    if let Some(last) = pending {
        component_owners(last, true, out);
    }
}

/// Volume names of content without an owner, as pve-storage's file-based `parse_volname`
/// reads them: `iso/<file>`, `vztmpl/<file>`, `snippets/<file>`, `import/<file>` and
/// `import/<file>.ova/<member>` (no further `/`). Only ISO images, container templates,
/// snippets and import sources have no owner there; images (`<vmid>/…`), container volumes
/// (`rootdir/<vmid>`, `subvol-…`) and backups (`backup/vzdump-<type>-<vmid>-…`, PBS
/// `backup/vm/<vmid>/…`) do. Block and object storages (LVM, ZFS, RBD, iSCSI) accept none
/// of these prefixes, so the name is refused there. Anything else keeps every owner-like
/// number (fail closed).
fn ownerless(name: &str) -> bool {
    let Some((kind, rest)) = name.split_once('/') else {
        return false;
    };
    let one = |s: &str| !s.is_empty() && !s.contains('/');
    match kind {
        "iso" | "vztmpl" | "snippets" => one(rest),
        "import" => {
            one(rest)
                || rest
                    .split_once(".ova/")
                    .is_some_and(|(a, b)| one(a) && one(b))
        }
        _ => false,
    }
}

/// The owners one component of a volume name can name: itself, if it is a number with more
/// components after it (`104/vm-104-disk-0.qcow2`), and the owner in its name.
fn component_owners(comp: &str, last: bool, out: &mut GuestSet) {
    if !has_digit_run(comp.as_bytes()) {
        return; // `images`, `backup`, `vm`... cannot name an owner
    }
    if !last && all_digits(comp) {
        if let Some(v) = candidate(comp) {
            out.insert(v);
        }
    }
    if let Some(v) = segment_owner(comp) {
        out.insert(v);
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
/// Case-insensitive: a name containing `vmid` or `guest`, or one of a few exact names.
fn guest_key(key: &str) -> bool {
    const NAMES: [&str; 9] = [
        "vms",
        "vm",
        "sid",
        "sids",
        "resource",
        "resources",
        "newid",
        "id",
        "ids",
    ];
    let k = key.as_bytes();
    contains_ignore_case(k, b"vmid")
        || contains_ignore_case(k, b"guest")
        || NAMES.iter().any(|n| key.eq_ignore_ascii_case(n))
}

/// Collects every value that looks like a guest reference, for calls the catalogue does not
/// know: digit runs in guest-like keys, UPIDs, `vm:N`/`ct:N`, `/vms/N`, volume owners.
///
/// This runs on every path segment and parameter of an unknown call, so it avoids what costs
/// there: values without three digits in a row are skipped whole, substring searches do not
/// build a `str::find` searcher, and nothing is allocated but the guest list.
pub fn scan_generous(key: Option<&str>, value: &str, out: &mut GuestSet) {
    let bytes = value.as_bytes();
    if !has_digit_run(bytes) {
        return;
    }
    if key.is_some_and(guest_key) {
        scan_digit_runs(value, out);
    }
    // UPIDs and HA sids need a ':', ACL paths a '/'; most values have neither.
    if bytes.contains(&b':') {
        scan_upids(value, out);
        scan_after(value, b"vm:", out);
        scan_after(value, b"ct:", out);
    }
    if bytes.contains(&b'/') {
        scan_after(value, b"/vms/", out);
    }
    // Volume ids, bare or inside property strings.
    for part in value.split(is_part_separator) {
        volume_owners(part, out);
        if let Some((_, v)) = part.split_once('=') {
            volume_owners(v, out);
        }
    }
}

/// Every maximal run of ASCII digits that is a candidate VMID.
fn scan_digit_runs(value: &str, out: &mut GuestSet) {
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let end = digits_end(bytes, i);
            insert_candidate(&value[i..end], out);
            i = end;
        } else {
            i += 1;
        }
    }
}

/// The digit run right after each occurrence of `pat`; the search goes on after the pattern
/// (so occurrences never overlap).
fn scan_after(value: &str, pat: &[u8], out: &mut GuestSet) {
    let bytes = value.as_bytes();
    let mut from = 0;
    while let Some(pos) = find_bytes(bytes, from, pat) {
        let start = pos + pat.len();
        insert_candidate(&value[start..digits_end(bytes, start)], out);
        from = start;
    }
}

/// The id field (the seventh `:`-separated field) of every `UPID:` in the value, when it is a
/// guest (`104`, `104@storage`, `104-0`).
fn scan_upids(value: &str, out: &mut GuestSet) {
    const UPID: &[u8] = b"UPID:";
    let mut from = 0;
    while let Some(pos) = find_bytes(value.as_bytes(), from, UPID) {
        if let Some(id) = value[pos..].split(':').nth(6) {
            if let Some(v) = upid_id_guest(id).filter(|v| (VMID_MIN..=VMID_MAX).contains(v)) {
                out.insert(v);
            }
        }
        from = pos + UPID.len();
    }
}

/// Adds the digit run `digits` if it is a candidate VMID. (Runs of ASCII digits start and
/// end on character boundaries, so the callers' slicing cannot panic.)
fn insert_candidate(digits: &str, out: &mut GuestSet) {
    if let Some(v) = candidate(digits) {
        out.insert(v);
    }
}

/// The owner scanners and list parsers as they were before the rewrite for speed (commit
/// 3afa4a3), kept verbatim as the reference the tests compare the current ones with: the
/// rewrite must find exactly the same guests and items.
#[cfg(test)]
mod reference {
    use super::{all_digits, candidate, strip_nl, upid_id_guest, volume_name, OWNER_PREFIXES};
    use super::{GuestSet, Vmid, VMID_MAX, VMID_MIN};

    pub fn parse_vmid(s: &str) -> Option<Vmid> {
        let t = strip_nl(s);
        let b = t.as_bytes();
        if (3..=9).contains(&b.len()) && b[0] != b'0' && all_digits(t) {
            if let Ok(v) = t.parse::<Vmid>() {
                return Some(v);
            }
        }
        None
    }

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

    fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
        hay.len() >= needle.len() && hay.windows(needle.len()).any(|w| w == needle)
    }

    fn segment_owner(seg: &str) -> Option<Vmid> {
        for p in OWNER_PREFIXES {
            if let Some(rest) = seg.strip_prefix(p) {
                let end = rest
                    .bytes()
                    .position(|b| !b.is_ascii_digit())
                    .unwrap_or(rest.len());
                let (d, tail) = rest.split_at(end);
                if !d.is_empty()
                    && (tail.is_empty() || tail.starts_with('-') || tail.starts_with('.'))
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

    pub fn volume_owners(s: &str, out: &mut GuestSet) {
        let name = volume_name(strip_nl(s));
        // Added with the ownerless content types (issue 9); not part of the speed rewrite.
        if super::ownerless(name) {
            return;
        }
        if let Some(v) = name.strip_prefix("rootdir/").and_then(|d| {
            let d = d.trim_end_matches('/');
            all_digits(d).then(|| candidate(d)).flatten()
        }) {
            out.insert(v);
        }
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

    fn guest_key(key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        k.contains("vmid")
            || k.contains("guest")
            || matches!(
                k.as_str(),
                "vms" | "vm" | "sid" | "sids" | "resource" | "resources" | "newid" | "id" | "ids"
            )
    }

    pub fn scan_generous(key: Option<&str>, value: &str, out: &mut GuestSet) {
        if key.is_some_and(guest_key) {
            for run in value.split(|c: char| !c.is_ascii_digit()) {
                if let Some(v) = candidate(run) {
                    out.insert(v);
                }
            }
        }
        let bytes = value.as_bytes();
        let has_colon = bytes.contains(&b':');
        let has_slash = bytes.contains(&b'/');
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
        for part in value.split(|c: char| c == ',' || c.is_whitespace()) {
            volume_owners(part, out);
            if let Some((_, v)) = part.split_once('=') {
                volume_owners(v, out);
            }
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
            ("\u{0}", vec![]),
            ("\u{0}\u{0}", vec![]),
            ("\u{0}\u{0}a\u{0}", vec!["", "", "a"]),
            ("a\u{0},\u{0}", vec!["a", ","]),
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
            // Content without an owner, whatever its file name says.
            ("local:iso/vm-104-install.iso", vec![]),
            ("local:snippets/vm-104-user.yaml", vec![]),
            ("local:vztmpl/vm-104-base.tar.zst", vec![]),
            ("local:import/vm-104-disk-0.qcow2", vec![]),
            ("local:import/vm-104.ova/vm-104-disk1.vmdk", vec![]),
            // Not one of those shapes: every owner-like number counts.
            ("local:iso/104/vm-104-disk-0.qcow2", vec![104]),
            ("local:iso/", vec![]),
            ("local:snippets/a/vm-104-user.yaml", vec![104]),
            ("local:import/x/y/vm-104-disk-0.raw", vec![104]),
            ("local:rootdir/104", vec![104]),
            ("/var/lib/vz/template/iso/vm-104-install.iso", vec![104]),
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

    /// Values that probe every rule of the owner scanners and its edges: VMID bounds and
    /// leading zeros, overlapping and repeated patterns, truncated UPIDs, every volume-name
    /// prefix, vzdump names, property strings, Unicode whitespace and non-ASCII digits.
    const TRICKY: &[&str] = &[
        "",
        "1",
        "12",
        "99",
        "100",
        "0100",
        "00099",
        "999999999",
        "1000000000",
        "4294967295",
        "4294967296",
        "99999999999",
        "0000000000104",
        "104\n",
        "104\n\n",
        "web 123",
        "vm:104",
        "ct:0104",
        "vm:",
        "vm:vm:104",
        "vmvm:104",
        "VM:104",
        "xvm:105x",
        "vm:1e3",
        "ct:99",
        "vm:1000000000",
        "vm:104,ct:105;vm:106",
        "sid=vm:107",
        "fence:108",
        "/vms/104",
        "/vms//vms/104",
        "/vms/vms/104",
        "/vms/104/x",
        "//vms/105",
        "/vms/",
        "/VMS/104",
        "/vms/0106",
        "/pool/prod",
        "a/b/c",
        "/vms/104abc",
        "UPID:pve:00001234:0000ABCD:65A1B2C3:qmstart:104:root@pam:",
        "UPID:pve:00001234:0000ABCD:65A1B2C3:vzdump::root@pam:",
        "UPID:pve-1:00001234:12345ABCD:65A1B2C3:imgdel:104@local:root@pam:",
        "UPID:",
        "UPID:a:b:c:d:e",
        "UPID:a:b:c:d:e:",
        "UPID:a:b:c:d:e:104",
        "UPID:a:b:c:d:e:104@x:y:",
        "UPID:a:b:c:d:e:104-0:",
        "UPID:a:b:c:d:e:104x:",
        "UPID:UPID:a:b:c:d:e:105:",
        "xUPID:n:1:2:3:t:106:u:",
        "UPID:n:1:2:3:t:0000107:u:",
        "upid:n:1:2:3:t:108:u:",
        "UPID:n:1:2:3:t:99:u:",
        "UPID:n:1:2:3:t:1000000000:u:",
        "UPID:n:1/2:3:4:t:109:u:",
        "UPID:a:UPID:b:c:d:e:110:f:g:111:",
        "local-lvm:vm-104-disk-0",
        "vm-104-disk-0",
        "local-zfs:base-100-disk-0/vm-104-disk-0",
        "local-zfs:subvol-104-disk-0",
        "local-zfs:basevol-104-disk-0",
        "local:104/vm-200-disk-0.qcow2",
        "local:100/base-100-disk-0.qcow2/104/vm-104-disk-0.qcow2",
        "ceph:-104-x",
        "ceph:basevm-104-x",
        "ceph:base-100-disk-0/vm-104-disk-1",
        "local:backup/vzdump-qemu-104-2026_01_01-00_00_00.vma.zst",
        "local:backup/vzdump-lxc-104-2026_01_01-00_00_00.tar.zst",
        "pbs:backup/vm/104/2026-01-01T00:00:00Z",
        "pbs:backup/ct/104/2026-01-01T00:00:00Z",
        "local:vm-0104-disk-0",
        "/var/lib/vz/images/104/vm-104-disk-0.qcow2",
        "/dev/pve/vm-104-disk-0",
        "local:iso/ubuntu-2404.iso",
        "local-lvm:128",
        "iscsi:0.0.1.scsi-36001405e6b3d0b1c4",
        "vzdump-qemu-x-vzdump-qemu-104",
        "vzdump-lxc-",
        "vzdump-openvz-105.tar",
        "x-vzdump-qemu-106-",
        "vzdump-qemu-vzdump-lxc-107",
        "vzdump-",
        "vzdump-qemu-99-",
        "-104-",
        "-",
        "--104",
        "vm-104",
        "vm-104x",
        "vm-104.raw",
        "basevol-104",
        "basevm-105-",
        "subvol-106-disk-0",
        "base-107",
        "vm--108",
        "vm-1e3",
        "a:104/",
        "a:/104/x",
        "x:y:z/105/w",
        "1:106/7",
        "ab:107",
        "a-b.c_d:108/vm-109-x",
        "file=local:vm-104-disk-0,size=32G",
        "a=b=vm-105-x",
        "x=y=z",
        "=vm-104-disk",
        "vm-104-disk=1",
        "scsi0=local:vm-110-disk-0,import-from=local:104/vm-105-disk-0",
        "\"vm-104-disk-0\"",
        "100\u{a0}vm-104-x",
        "a\u{2028}vm-105-x",
        "vm-104-x\nvm-105-y",
        "vm-104-disk-0\n",
        "\u{85}vm-106-x\u{3000}vm-107-y",
        "é104",
        "١٠٤",
        "vm-١٠٤-disk",
        "vm:104é",
        "１０４",
        "vm:١٠٤",
        "ü/vms/104ü",
        "€UPID:a:b:c:d:e:104:",
        "vm-104é",
        "local-lvm:vm-104-disk-0:vm:105",
        "ab:/vms/107",
        "a,b,,c,,,vm-104-x",
        "100,104;110 120\u{a0}130",
        "104\u{0}105",
        "vms=104&x=105",
    ];

    /// Parameter names: guest-like ones in several cases, near misses, non-ASCII.
    const KEYS: &[Option<&str>] = &[
        None,
        Some(""),
        Some("vmid"),
        Some("target-VMID"),
        Some("Guest"),
        Some("guests"),
        Some("VMS"),
        Some("vm"),
        Some("id"),
        Some("Ids"),
        Some("sid"),
        Some("SIDS"),
        Some("resource"),
        Some("Resources"),
        Some("newid"),
        Some("x"),
        Some("name"),
        Some("vmi"),
        Some("idx"),
        Some("İd"),
        Some("vmıd"),
        Some("gue-st"),
        Some("xvmidx"),
    ];

    /// The generous scan of `(key, value)` now and before the rewrite.
    fn both(key: Option<&str>, value: &str) -> (GuestSet, GuestSet) {
        let (mut new, mut old) = (GuestSet::None, GuestSet::None);
        scan_generous(key, value, &mut new);
        reference::scan_generous(key, value, &mut old);
        (new, old)
    }

    #[test]
    fn generous_scan_matches_reference_on_tricky_values() {
        let mut found = 0;
        for &key in KEYS {
            for &value in TRICKY {
                let (new, old) = both(key, value);
                assert_eq!(new, old, "key {key:?}, value {value:?}");
                found += usize::from(!old.is_empty());
            }
        }
        // The corpus exercises the finding paths, not only the empty ones.
        assert!(found > TRICKY.len() * KEYS.len() / 2, "{found}");
        for &value in TRICKY {
            let (mut new, mut old) = (GuestSet::None, GuestSet::None);
            volume_owners(value, &mut new);
            reference::volume_owners(value, &mut old);
            assert_eq!(new, old, "volume {value:?}");
        }
    }

    /// A small deterministic generator (xorshift64*), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }
    }

    /// Fragments the generated values are built from: pattern pieces, separators and numbers
    /// around the VMID bounds, so random joins form (and break) every reference format.
    const PIECES: &[&str] = &[
        "UPID:",
        "UPID",
        "U",
        ":",
        "vm:",
        "ct:",
        "vm",
        "ct",
        "/vms/",
        "/vms",
        "vms/",
        "/",
        "//",
        "vzdump-",
        "vzdump-qemu-",
        "vzdump-lxc-",
        "vzdump-openvz-",
        "qemu-",
        "vm-",
        "base-",
        "basevol-",
        "basevm-",
        "subvol-",
        "-",
        ".",
        "@",
        ",",
        ";",
        "=",
        " ",
        "\n",
        "\t",
        "\u{a0}",
        "\u{2028}",
        "\"",
        "0",
        "1",
        "00",
        "10",
        "99",
        "100",
        "104",
        "0104",
        "999",
        "999999999",
        "1000000000",
        "4294967296",
        "12345678901",
        "x",
        "local",
        "local-lvm",
        "disk",
        "é",
        "١٠٤",
        "a",
        "Z",
        "\r",
        "\u{0b}",
        "\u{0c}",
        "\u{1c}",
        "\u{85}",
        "\u{3000}",
    ];

    fn generated(rng: &mut Rng) -> String {
        let n = 1 + rng.below(12);
        (0..n).map(|_| PIECES[rng.below(PIECES.len())]).collect()
    }

    #[test]
    fn generous_scan_matches_reference_on_generated_values() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut found = 0;
        for _ in 0..60_000 {
            let value = generated(&mut rng);
            let key = KEYS[rng.below(KEYS.len())];
            let (new, old) = both(key, &value);
            assert_eq!(new, old, "key {key:?}, value {value:?}");
            found += usize::from(!old.is_empty());
            let (mut new, mut old) = (GuestSet::None, GuestSet::None);
            volume_owners(&value, &mut new);
            reference::volume_owners(&value, &mut old);
            assert_eq!(new, old, "volume {value:?}");
        }
        assert!(found > 10_000, "{found}");
    }

    #[test]
    fn generous_scan_adds_to_what_is_there() {
        for &value in TRICKY {
            for start in [GuestSet::one(104), GuestSet::All] {
                let (mut new, mut old) = (start.clone(), start.clone());
                scan_generous(Some("vmid"), value, &mut new);
                reference::scan_generous(Some("vmid"), value, &mut old);
                assert_eq!(new, old, "{value:?} over {start:?}");
            }
        }
    }

    #[test]
    fn split_list_matches_reference() {
        let mut rng = Rng(11);
        let mut values: Vec<String> = (0..20_000).map(|_| generated(&mut rng)).collect();
        values.extend((0..5_000).map(|_| {
            let n = rng.below(6);
            (0..n)
                .map(|_| ["\u{0}", "104", "", ",", ";", " "][rng.below(6)])
                .collect()
        }));
        for v in TRICKY
            .iter()
            .copied()
            .chain(values.iter().map(String::as_str))
        {
            assert_eq!(split_list(v), reference::split_list(v), "{v:?}");
        }
    }

    #[test]
    fn parse_vmid_matches_reference() {
        let mut rng = Rng(5);
        let mut values: Vec<String> = (0..20_000).map(|_| generated(&mut rng)).collect();
        values.extend((0..1_200).map(|n| n.to_string()));
        values.extend((0..1_200).map(|n| format!("{n:03}\n")));
        // Digit strings of every length up to eleven, leading zeros included.
        values.extend((0..5_000).map(|_| {
            let len = 1 + rng.below(11);
            (0..len)
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect::<String>()
        }));
        for v in TRICKY
            .iter()
            .copied()
            .chain(values.iter().map(String::as_str))
        {
            assert_eq!(parse_vmid(v).ok(), reference::parse_vmid(v), "{v:?}");
        }
    }

    #[test]
    fn guest_set_insert_keeps_sorted_unique() {
        let mut rng = Rng(3);
        for _ in 0..2_000 {
            let mut set = GuestSet::None;
            let mut want = std::collections::BTreeSet::new();
            for _ in 0..rng.below(40) {
                // Runs of ascending values (the fast path) mixed with arbitrary ones.
                let v = if rng.below(2) == 0 {
                    want.last().copied().unwrap_or(100) + rng.below(3) as Vmid
                } else {
                    100 + rng.below(60) as Vmid
                };
                set.insert(v);
                want.insert(v);
            }
            let want: Vec<Vmid> = want.into_iter().collect();
            assert_eq!(set.listed(), want.as_slice());
            assert_eq!(set.is_empty(), want.is_empty());
        }
    }

    #[test]
    fn digit_run_prefilter() {
        assert!(has_digit_run(b"104") && has_digit_run(b"a000b") && has_digit_run(b"x12345"));
        assert!(!has_digit_run(b"") && !has_digit_run(b"12") && !has_digit_run(b"1a2b3c"));
        assert!(!has_digit_run("١٠٤".as_bytes()));
        assert_eq!(find_bytes(b"/vms/vms/", 0, b"/vms/"), Some(0));
        assert_eq!(find_bytes(b"/vms/vms/", 1, b"/vms/"), Some(4));
        assert_eq!(find_bytes(b"/vms/vms/", 5, b"/vms/"), None);
        assert_eq!(find_bytes(b"ab", 0, b"abc"), None);
        assert_eq!(find_bytes(b"abc", 3, b"c"), None);
        assert_eq!(find_bytes(b"abc", 2, b"c"), Some(2));
    }
}
