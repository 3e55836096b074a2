//! Plain, unoptimised versions of the owner scanners and list parsers: the reference the
//! tests compare the optimised ones in `guests.rs` with, which must find exactly the same
//! guests and items.

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
