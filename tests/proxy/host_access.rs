//! Host-reaching values through the real stack (issue 9): absolute host paths where a volume
//! is expected, container bind mounts and devices, raw QEMU `args`, host PCI/USB ids and hook
//! scripts reach every guest, so the homelab policy (104 and 109 readonly) refuses them with
//! 403 before Proxmox sees anything — unless the policy permits the exact value. Volumes of
//! content without an owner (ISO images, templates, snippets, import sources) name no guest.

use crate::common;

use common::*;

const Q110: &str = "/api2/json/nodes/prom/qemu/110/config";
const CT120: &str = "/api2/json/nodes/prom/lxc/120/config";

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `key=value` pairs, each value percent-encoded.
fn body(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The issue's examples and more of the kind: (what, request).
fn refused_requests() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |what: &str, req: String| out.push((what.to_string(), req));
    let qemu_values = [
        ("scsi1", "/dev/mapper/pve-vm--104--disk--0"),
        (
            "virtio1",
            "/dev/disk/by-id/dm-name-pve-vm--104--disk--0,cache=none",
        ),
        (
            "args",
            "-drive file=/dev/pve/vm-104-disk-0,if=virtio,format=raw",
        ),
        ("args", "-hda /dev/sdb"),
        ("scsi2", "file=/dev/dm-7,cache=none"),
        ("sata1", "volume=/dev/sdb"),
        (
            "ide1",
            "/var/lib/vz/images/104/vm-104-disk-0.qcow2,media=disk",
        ),
        ("efidisk0", "/dev/pve/vm-109-disk-1,efitype=4m"),
        ("tpmstate0", "file=/dev/pve/vm-109-disk-2"),
        ("scsi3", "local-lvm:0,import-from=/dev/pve/vm-104-disk-0"),
        ("virtio2", "//dev//mapper//pve-vm--104--disk--0/"),
        ("scsi4", " /dev/sdb"),
        ("hostpci0", "0000:01:00.0,pcie=1"),
        ("hostpci1", "host=02:00;03:00.1"),
        ("usb0", "host=046d:c52b"),
        ("usb1", "1-2.3"),
        ("serial0", "/dev/ttyUSB0"),
        ("cdrom", "/dev/sr0"),
        ("hookscript", "local:snippets/hook.pl"),
    ];
    for (k, v) in qemu_values {
        add(
            &format!("qemu {k}={v}"),
            form("PUT", Q110, &body(&[(k, v)])),
        );
    }
    let ct_values = [
        ("mp0", "/var/lib/vz/images/104,mp=/mnt/doc1"),
        ("mp1", "/mnt/pve/nfs/images/109/,mp=/mnt/igp"),
        ("mp0", "/dev/mapper/pve-vm--104--disk--0,mp=/mnt/x"),
        ("mp2", "volume=/mnt/pve/nfs,mp=/mnt/all"),
        ("dev0", "/dev/pve/vm-104-disk-0"),
        ("dev1", "path=/dev/sdb,mode=0660"),
        ("rootfs", "/dev/dm-7"),
        ("hookscript", "local:snippets/hook.pl"),
    ];
    for (k, v) in ct_values {
        add(
            &format!("lxc {k}={v}"),
            form("PUT", CT120, &body(&[(k, v)])),
        );
    }
    add(
        "qemu create with a dm path",
        form(
            "POST",
            "/api2/json/nodes/prom/qemu",
            "vmid=111&scsi0=%2Fdev%2Fmapper%2Fpve-vm--109--disk--0",
        ),
    );
    add(
        "lxc create with a bind mount",
        form(
            "POST",
            "/api2/json/nodes/prom/lxc",
            &body(&[
                ("vmid", "121"),
                ("ostemplate", "local:vztmpl/debian-12.tar.zst"),
                ("mp0", "/var/lib/vz/images/104,mp=/mnt/doc1"),
            ]),
        ),
    );
    add(
        "restore from a host path",
        form(
            "POST",
            "/api2/json/nodes/prom/qemu",
            &body(&[("vmid", "111"), ("archive", "/mnt/backup/any.vma.zst")]),
        ),
    );
    add(
        "json body",
        json(
            "PUT",
            Q110,
            r#"{"scsi1":"/dev/mapper/pve-vm--104--disk--0","cores":2}"#,
        ),
    );
    add(
        "query string",
        format!(
            "PUT {Q110}?args={} HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nContent-Length: 0\r\n\r\n",
            enc("-drive file=/dev/pve/vm-104-disk-0")
        ),
    );
    add(
        "query overrides a harmless body value",
        format!(
            "PUT {Q110}?scsi1={} HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 30\r\n\r\nscsi1=local-lvm%3Avm-110-disk-1",
            enc("/dev/sdb")
        ),
    );
    add(
        "nested execute",
        form(
            "POST",
            "/api2/json/nodes/prom/execute",
            &body(&[(
                "commands",
                r#"[{"path":"qemu/110/config","method":"PUT","args":{"scsi1":"/dev/sdb"}}]"#,
            )]),
        ),
    );
    out
}

#[tokio::test]
async fn host_reaching_values_are_refused_before_proxmox() {
    let g = start().await;
    for (what, req) in refused_requests() {
        g.sim.recorder.clear();
        let r = raw(g.addr, &req).await;
        assert_eq!(r.status, 403, "{what}: {} {}", r.status, r.reason);
        assert!(
            r.reason.starts_with("Permission check failed (pvegate: "),
            "{what}: {}",
            r.reason
        );
        let v = r.json();
        assert_eq!(v["data"], serde_json::Value::Null, "{what}");
        assert_eq!(v["message"].as_str().unwrap(), format!("{}\n", r.reason));
        assert_eq!(g.sim.recorder.len(), 0, "{what}: reached the upstream");
    }
}

#[tokio::test]
async fn the_refusal_says_host_access_and_names_a_protected_guest() {
    let g = start().await;
    let r = raw(
        g.addr,
        &form("PUT", Q110, "scsi1=%2Fdev%2Fmapper%2Fpve-vm--104--disk--0"),
    )
    .await;
    assert_denied_json(&g, &r, "host.access refused");
    assert!(r.reason.contains("VM 104 'doc1'"), "{}", r.reason);
    // The web UI's format: 200 with success 0.
    let r = raw(
        g.addr,
        &form(
            "PUT",
            "/api2/extjs/nodes/prom/qemu/110/config",
            "args=-hda%20%2Fdev%2Fsdb",
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["success"], 0);
    assert_eq!(v["status"], 403);
    assert!(v["message"].as_str().unwrap().contains("host.access"));
    assert_eq!(g.sim.recorder.len(), 0);
}

/// Ordinary volumes, allocations, ISO/snippet volumes named after a protected guest, `none`,
/// `cdrom`, SPICE USB and mapped devices: forwarded.
#[tokio::test]
async fn ordinary_volumes_and_ownerless_content_pass() {
    let g = start().await;
    let cases: Vec<(&str, String)> = vec![
        (
            "volume",
            form("PUT", Q110, &body(&[("scsi1", "local-lvm:vm-110-disk-0")])),
        ),
        (
            "allocation",
            form("PUT", Q110, &body(&[("scsi1", "local-lvm:10")])),
        ),
        (
            "allocation with import",
            form(
                "PUT",
                Q110,
                &body(&[(
                    "scsi1",
                    "local-lvm:0,import-from=local:import/vm-104-disk-0.qcow2",
                )]),
            ),
        ),
        (
            "iso",
            form(
                "PUT",
                Q110,
                &body(&[("ide2", "local:iso/vm-104-install.iso,media=cdrom")]),
            ),
        ),
        (
            "snippet",
            form(
                "PUT",
                Q110,
                &body(&[("cicustom", "user=local:snippets/vm-104-user.yaml")]),
            ),
        ),
        (
            "none",
            form("PUT", Q110, &body(&[("ide2", "none,media=cdrom")])),
        ),
        ("cdrom", form("PUT", Q110, &body(&[("ide2", "cdrom")]))),
        ("spice usb", form("PUT", Q110, &body(&[("usb0", "spice")]))),
        (
            "mapped usb",
            form("PUT", Q110, &body(&[("usb0", "mapping=stick")])),
        ),
        (
            "mapped pci",
            form("PUT", Q110, &body(&[("hostpci0", "mapping=gpu,pcie=1")])),
        ),
        (
            "serial socket",
            form("PUT", Q110, &body(&[("serial0", "socket")])),
        ),
        (
            "container volume",
            form("PUT", CT120, &body(&[("mp0", "local-lvm:8,mp=/mnt/data")])),
        ),
        (
            "container template",
            form(
                "POST",
                "/api2/json/nodes/prom/lxc",
                &body(&[
                    ("vmid", "121"),
                    ("ostemplate", "local:vztmpl/vm-104-base.tar.zst"),
                ]),
            ),
        ),
        ("delete a disk key", form("PUT", Q110, "delete=scsi1,args")),
        (
            "json",
            json(
                "PUT",
                Q110,
                r#"{"ide2":"local:iso/vm-109-x.iso,media=cdrom"}"#,
            ),
        ),
    ];
    for (what, req) in cases {
        g.sim.recorder.clear();
        let r = raw(g.addr, &req).await;
        assert!(
            !r.reason.contains("pvegate"),
            "{what}: refused by pvegate: {} {}",
            r.status,
            r.reason
        );
        assert_eq!(
            g.sim.recorder.len(),
            1,
            "{what}: did not reach the upstream"
        );
    }
}

#[tokio::test]
async fn unreadable_host_values_are_a_400_naming_the_key() {
    let g = start().await;
    for (key, value) in [
        ("hostpci0", "host=gpu"),
        ("hostpci1", "pcie=1"),
        ("usb0", "host=stick"),
        ("scsi1", "\"/dev/sdb\""),
        ("mp0", "\"/mnt/x\",mp=/y"),
    ] {
        g.sim.recorder.clear();
        let target = if key.starts_with("mp") { CT120 } else { Q110 };
        let r = raw(g.addr, &form("PUT", target, &body(&[(key, value)]))).await;
        assert_eq!(r.status, 400, "{key}={value}: {} {}", r.status, r.reason);
        assert!(r.reason.contains(key), "{key}: {}", r.reason);
        assert_refused(&g, &r);
    }
}

const PERMITS: &str = r#"
[settings]
host_paths = ["/mnt/pve/isos/*", "local:snippets/hook-*.pl"]
host_devices = ["0000:01:00.0", "046d:*"]

[[guest]]
vmid = 104
name = "doc1"
access = "readonly"
host_paths = ["/dev/disk/by-id/usb-Stick_*"]

[[guest]]
vmid = 109
name = "igp"
access = "readonly"
allow = ["host.access"]

[[guest]]
vmids = "9000-9099"
access = "managed"
deny = ["destroy"]
exempt = ["tofu@pve!*"]
host_devices = ["0000:02:00.*"]
"#;

async fn verdicts(g: &Gate, cases: &[(&str, &str, bool)]) {
    for &(key, value, pass) in cases {
        g.sim.recorder.clear();
        let r = raw(g.addr, &form("PUT", Q110, &body(&[(key, value)]))).await;
        if pass {
            assert!(
                !r.reason.contains("pvegate"),
                "{key}={value}: refused: {}",
                r.reason
            );
            assert_eq!(g.sim.recorder.len(), 1, "{key}={value}: not forwarded");
        } else {
            assert_denied_json(g, &r, "host.access refused");
        }
    }
}

#[tokio::test]
async fn policies_permit_exact_host_values() {
    let g = start_with(Opts {
        policy: PERMITS.to_string(),
        ..Opts::default()
    })
    .await;
    verdicts(
        &g,
        &[
            // [settings] permits for every rule
            ("ide2", "/mnt/pve/isos/debian.iso,media=cdrom", true),
            ("ide2", "/mnt/pve/isos//debian.iso/,media=cdrom", true),
            ("ide2", "/mnt/pve/isos/sub/debian.iso,media=cdrom", false),
            ("ide2", "/mnt/pve/isos/../nfs/images/104/x.raw", false),
            ("hookscript", "local:snippets/hook-start.pl", true),
            ("hookscript", "local:snippets/other.pl", false),
            // 104's own list covers the stick, 109 allows host.access, and the range rule
            // (managed, deny destroy) objects unless its list or the settings cover it
            ("scsi1", "/dev/disk/by-id/usb-Stick_123", false),
            ("hostpci0", "0000:01:00.0", true),
            ("hostpci0", "01:00.0", true),
            ("hostpci0", "01:00", false),
            ("hostpci0", "0000:02:00.1", false),
            ("usb0", "host=046d:c52b", true),
            ("usb0", "host=1d6b:0002", false),
            ("args", "-cpu host", false),
        ],
    )
    .await;
}

#[tokio::test]
async fn permits_are_per_rule_and_exempt_identities_skip_a_rule() {
    // Only 104 protected, with its own list: that list alone decides.
    let policy = r#"
[[guest]]
vmid = 104
access = "readonly"
host_paths = ["/dev/disk/by-id/usb-Stick_*"]
host_devices = ["0000:02:00.*"]
"#;
    let g = start_with(Opts {
        policy: policy.to_string(),
        ..Opts::default()
    })
    .await;
    verdicts(
        &g,
        &[
            ("scsi1", "/dev/disk/by-id/usb-Stick_123", true),
            ("scsi1", "/dev/disk/by-id/usb-Stick_1/../../../sdb", false),
            ("hostpci0", "0000:02:00.1", true),
            ("scsi1", "/dev/sdb", false),
        ],
    )
    .await;
    // The test token is root@pam!tofu: an exemption of it on the only protecting rule.
    let exempt = "[[guest]]\nvmid = 104\naccess = \"readonly\"\nexempt = [\"root@pam!tofu\"]\n";
    let g = start_with(Opts {
        policy: exempt.to_string(),
        ..Opts::default()
    })
    .await;
    verdicts(&g, &[("args", "-hda /dev/sdb", true)]).await;
    // A policy that protects nothing has no objection; deny_actions refuses outright.
    let g = start_with(Opts {
        policy: "[settings]\nallow_empty = true\n[[guest]]\nvmid = 104\naccess = \"managed\"\n"
            .to_string(),
        ..Opts::default()
    })
    .await;
    verdicts(&g, &[("args", "-hda /dev/sdb", true)]).await;
    let g = start_with(Opts {
        policy: "[settings]\ndeny_actions = [\"host.access\"]\nhost_paths = [\"/mnt/**\"]\n"
            .to_string(),
        ..Opts::default()
    })
    .await;
    g.sim.recorder.clear();
    let r = raw(g.addr, &form("PUT", Q110, "scsi1=%2Fmnt%2Fx")).await;
    assert_denied_json(&g, &r, "host.access is refused by [settings] deny_actions");
}

/// Changes that can break a protected guest without naming it (resource mappings, storage
/// definitions, node disks) are not tied to guests yet; `deny_actions` covers them.
#[tokio::test]
async fn deny_actions_cover_indirect_changes() {
    let policy = r#"
[settings]
deny_actions = ["storage.write", "cluster.write"]

[[guest]]
vmid = 104
access = "readonly"
"#;
    let g = start_with(Opts {
        policy: policy.to_string(),
        ..Opts::default()
    })
    .await;
    let del = |path: &str| {
        format!("DELETE {path} HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\n\r\n")
    };
    for (req, action) in [
        (del("/api2/json/cluster/mapping/pci/gpu"), "cluster.write"),
        (
            form(
                "PUT",
                "/api2/json/cluster/mapping/usb/stick",
                "map=node%3Dprom%2Cid%3D046d%3Ac52b",
            ),
            "cluster.write",
        ),
        (del("/api2/json/storage/nfs"), "storage.write"),
        (
            form(
                "PUT",
                "/api2/json/nodes/prom/disks/wipedisk",
                "disk=%2Fdev%2Fsdb",
            ),
            "storage.write",
        ),
    ] {
        g.sim.recorder.clear();
        let r = raw(g.addr, &req).await;
        assert_denied_json(
            &g,
            &r,
            &format!("{action} is refused by [settings] deny_actions"),
        );
    }
}

/// `startall` clears left-over backup locks on every guest of the node first, so it counts
/// as every guest even with a `vms` list.
#[tokio::test]
async fn startall_counts_as_every_guest() {
    let g = start().await;
    let r = raw(
        g.addr,
        &form("POST", "/api2/json/nodes/prom/startall", "vms=110"),
    )
    .await;
    assert_denied_json(&g, &r, "every guest");
    // stopall with a list keeps its list.
    let r = raw(
        g.addr,
        &form("POST", "/api2/json/nodes/pve/stopall", "vms=110"),
    )
    .await;
    assert!(!r.reason.contains("pvegate"), "{}", r.reason);
    assert_eq!(g.sim.recorder.len(), 1);
}

/// `pvegate check` explains a host-reaching request; `validate` locates a bad pattern.
#[test]
fn check_explains_host_access_and_validate_locates_bad_patterns() {
    let bin = BIN;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("homelab.toml"), HOMELAB).unwrap();
    let cfg = dir.path().join("pvegate.toml");
    std::fs::write(
        &cfg,
        "[listen]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\n[policy]\nfiles = [\"homelab.toml\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args([
            "check",
            "--config",
            cfg.to_str().unwrap(),
            "PUT",
            "/api2/json/nodes/prom/qemu/110/config",
            "--data",
            "scsi1=%2Fdev%2Fmapper%2Fpve-vm--104--disk--0",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("action:   config.write"), "{text}");
    assert!(
        text.contains("host:     scsi1 host path /dev/mapper/pve-vm--104--disk--0"),
        "{text}"
    );
    assert!(text.contains("host.access refused"), "{text}");

    std::fs::write(
        dir.path().join("homelab.toml"),
        "[[guest]]\nvmid = 104\naccess = \"readonly\"\nhost_paths = [\n  \"/mnt/ok/*\",\n  \"mnt/relative\",\n]\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(["validate", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("homelab.toml:6"), "{err}");
    assert!(err.contains("mnt/relative"), "{err}");
}
