//! Tests of the guest parsers and scanners: tables of values as pveproxy reads them, and
//! comparisons with the plain versions in `reference.rs`.

use super::*;

fn set(v: &[Vmid]) -> GuestSet {
    v.iter().copied().collect()
}

#[test]
fn guest_set_extend_sorts_and_deduplicates_once() {
    let mut s: GuestSet = [300, 100, 200, 100].into_iter().collect();
    assert_eq!(s.listed(), &[100, 200, 300]);
    s.extend([250, 50, 300]);
    assert_eq!(s.listed(), &[50, 100, 200, 250, 300]);
    s.extend([400, 500]);
    assert_eq!(s.listed(), &[50, 100, 200, 250, 300, 400, 500]);
    let mut none = GuestSet::None;
    none.extend(std::iter::empty());
    assert!(none.is_empty(), "an empty extension names no guest");
    let mut all = GuestSet::All;
    all.extend([1, 2]);
    assert!(all.is_all());
    // 10,000 guests in descending order: the same set as one by one.
    let many: GuestSet = (0..10_000).rev().collect();
    let mut one_by_one = GuestSet::None;
    (0..10_000).rev().for_each(|v| one_by_one.insert(v));
    assert_eq!(many, one_by_one);
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
