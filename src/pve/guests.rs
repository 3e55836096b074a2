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
//!
//! The set type itself, [`GuestSet`], is in `guests/set.rs`. The tables that pin the parsers
//! down are in `guests/tests.rs`; `guests/reference.rs` holds plain, unoptimised versions of
//! the scanners that the tests compare these with.

mod set;

pub use set::{GuestSet, Vmid};

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

/// The owner scanners and list parsers as they were before the rewrite for speed, kept as the
/// oracle the tests compare the current ones with.
#[cfg(test)]
mod reference;

#[cfg(test)]
mod tests;
