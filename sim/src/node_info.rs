//! Read-mostly node endpoints that monitoring tools and the web UI read, in PVE 9.1's
//! `returns` shapes: `subscription` (an object), `apt/repositories` (an object),
//! `apt/versions` and `apt/update` (lists), `disks/list` (a list of disks), `hardware/pci`
//! and `hardware/usb` (the devices mappings name), `dns`, `time`, `hosts`, `report`,
//! `certificates/info`, `netstat`, `replication`.

use serde_json::{json, Value};

use super::api::{Call, Outcome};
use super::auth::now;
use super::reply::ApiOk;

fn ok(v: Value) -> Outcome {
    Outcome::Api(Ok(ApiOk::from(v)))
}

/// Routes a node call below `/nodes/{node}`; `None` when it is not one of these.
pub(crate) fn route(c: &Call<'_>, rest: &[&str]) -> Option<Outcome> {
    let node = c.node.as_str();
    Some(match (c.method, rest) {
        ("GET", ["subscription"]) => ok(json!({
            "status": "notfound",
            "message": "There is no subscription key",
            "serverid": server_id(node),
            "sockets": 1,
            "url": "https://www.proxmox.com/en/proxmox-virtual-environment/pricing",
        })),
        ("GET", ["apt"]) => ok(json!([
            {"id": "changelog"}, {"id": "repositories"}, {"id": "update"}, {"id": "versions"},
        ])),
        ("GET", ["apt", "repositories"]) => ok(repositories()),
        ("GET", ["apt", "versions"]) => ok(json!([
            package("proxmox-ve", "9.1.0", Some("6.14.8-2-pve")),
            package("pve-manager", "9.1.1", None),
            package("qemu-server", "9.1.0", None),
            package("pve-container", "6.0.13", None),
            package("pve-ha-manager", "5.0.5", None),
        ])),
        ("GET", ["apt", "update"]) => ok(json!([])),
        ("GET", ["disks"]) => ok(json!([
            {"name": "list"}, {"name": "smart"}, {"name": "directory"}, {"name": "lvm"},
            {"name": "lvmthin"}, {"name": "zfs"},
        ])),
        ("GET", ["disks", "list"]) => ok(json!([
            {"devpath": "/dev/nvme0n1", "size": 512_110_190_592u64, "model": "Simulated NVMe SSD",
             "serial": format!("SIM-{node}-0"), "type": "nvme", "health": "PASSED", "wearout": 98,
             "gpt": 1, "mounted": 0, "osdid": -1, "osdid-list": Value::Null, "rpm": 0,
             "used": "LVM", "vendor": "Unknown", "wwn": "eui.0000000000000001", "by_id_link": ""},
            {"devpath": "/dev/sda", "size": 2_000_398_934_016u64, "model": "Simulated HDD",
             "serial": format!("SIM-{node}-1"), "type": "hdd", "health": "PASSED",
             "wearout": "N/A", "gpt": 1, "mounted": 0, "osdid": -1, "osdid-list": Value::Null,
             "rpm": 7200, "vendor": "ATA", "wwn": "0x5000000000000001", "by_id_link": ""},
        ])),
        ("GET", ["hardware"]) => ok(json!([{"type": "pci"}, {"type": "usb"}])),
        ("GET", ["hardware", "pci"]) => ok(json!([
            {"id": "0000:00:02.0", "class": "0x030000", "vendor": "0x8086", "device": "0x46a6",
             "vendor_name": "Intel Corporation", "device_name": "Alder Lake-P GT2 [Iris Xe Graphics]",
             "iommugroup": 2, "subsystem_vendor": "0x8086", "subsystem_device": "0x3024", "mdev": 1},
            {"id": "0000:01:00.0", "class": "0x010802", "vendor": "0x144d", "device": "0xa80a",
             "vendor_name": "Samsung Electronics Co Ltd", "device_name": "NVMe SSD Controller",
             "iommugroup": 12, "subsystem_vendor": "0x144d", "subsystem_device": "0xa801"},
        ])),
        ("GET", ["hardware", "usb"]) => ok(json!([
            {"busnum": 1, "devnum": 3, "port": 2, "level": 1, "class": 255, "speed": "12",
             "vendid": "0x1a86", "prodid": "0x55d4", "manufacturer": "ITead",
             "product": "Sonoff Zigbee 3.0 USB Dongle Plus V2", "usbpath": "1-2"},
        ])),
        ("GET", ["dns"]) => ok(json!({"search": "pvegate.sim", "dns1": "10.0.0.1"})),
        ("GET", ["time"]) => {
            let t = now();
            ok(json!({"timezone": "UTC", "time": t, "localtime": t}))
        }
        ("GET", ["hosts"]) => ok(json!({
            "data": format!("127.0.0.1 localhost.localdomain localhost\n10.0.0.1 {node}.pvegate.sim {node}\n"),
            "digest": "0000000000000000000000000000000000000000",
        })),
        ("GET", ["report"]) => ok(json!(format!("==== pvegate sim report for {node} ====\n"))),
        ("GET", ["certificates", "info"]) => ok(json!([
            {"filename": "pve-ssl.pem", "subject": format!("/OU=PVE Cluster Node/O=Proxmox Virtual Environment/CN={node}.pvegate.sim"),
             "issuer": "/CN=Proxmox Virtual Environment/OU=pvegate-sim/O=PVE Cluster Manager CA",
             "fingerprint": c.shared.fingerprint, "pem": c.shared.cert_pem,
             "public-key-type": "ecdsa", "san": ["127.0.0.1", "localhost", node]},
        ])),
        ("GET", ["netstat"]) => ok(json!([])),
        ("GET", ["replication"]) => ok(json!([])),
        _ => return None,
    })
}

/// A stable, made-up server id for `node`.
fn server_id(node: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}{:016X}", h.rotate_left(17))
}

fn package(name: &str, version: &str, kernel: Option<&str>) -> Value {
    let mut v = json!({
        "Package": name, "Version": version, "OldVersion": version, "CurrentState": "Installed",
        "Arch": "amd64", "Origin": "Proxmox", "Priority": "optional", "Section": "admin",
        "Title": name, "Description": name,
    });
    if name == "pve-manager" {
        v["ManagerVersion"] = json!("9.1.1");
    }
    if let Some(k) = kernel {
        v["RunningKernel"] = json!(k);
    }
    v
}

/// `GET /nodes/{node}/apt/repositories`: Debian trixie plus the no-subscription repository.
fn repositories() -> Value {
    let repo = |uris: &str, suites: &[&str], comps: &[&str], enabled: bool| {
        json!({
            "Types": ["deb"], "URIs": [uris], "Suites": suites, "Components": comps,
            "Options": [{"Key": "Signed-By", "Values": ["/usr/share/keyrings/debian-archive-keyring.gpg"]}],
            "Comment": "", "FileType": "sources", "Enabled": u8::from(enabled),
        })
    };
    json!({
        "files": [
            {"path": "/etc/apt/sources.list.d/debian.sources", "file-type": "sources",
             "digest": [1, 2, 3, 4], "repositories": [
                repo("http://deb.debian.org/debian", &["trixie", "trixie-updates"], &["main", "contrib"], true),
                repo("http://security.debian.org/debian-security", &["trixie-security"], &["main", "contrib"], true),
             ]},
            {"path": "/etc/apt/sources.list.d/proxmox.sources", "file-type": "sources",
             "digest": [5, 6, 7, 8], "repositories": [
                repo("http://download.proxmox.com/debian/pve", &["trixie"], &["pve-no-subscription"], true),
             ]},
        ],
        "errors": [],
        "infos": [
            {"path": "/etc/apt/sources.list.d/proxmox.sources", "index": "0", "kind": "warning",
             "message": "the pve-no-subscription repository is not recommended for production use"},
        ],
        "standard-repos": [
            {"handle": "enterprise", "name": "Enterprise", "status": 0},
            {"handle": "no-subscription", "name": "No-Subscription", "status": 1},
            {"handle": "test", "name": "Test"},
        ],
        "digest": "5f3b6b6c2b1c4f1e9d0a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e",
    })
}
