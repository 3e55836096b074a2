//! One endpoint of each API family through the real stack: the guest is found wherever the
//! request names it (path, query, body, lists, arrays, volume ids, HA sids, replication ids,
//! UPIDs, pools, ACL paths, nested `execute` calls), a change that touches a readonly guest is
//! refused without reaching Proxmox, and the same call on a managed guest is forwarded.

use crate::common;

use common::*;

const UPID_104: &str = "UPID:pve:0000A1B2:0001C3D4:6B000000:qmstart:104:root@pam:";
const UPID_110: &str = "UPID:pve:0000A1B3:0001C3D4:6B000000:qmstart:110:root@pam:";

fn delete(path: &str) -> String {
    format!("DELETE {path} HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\n\r\n")
}

/// (family, refused request, allowed request) — the allowed one must reach the upstream.
#[rustfmt::skip]
fn cases() -> Vec<(&'static str, String, String)> {
    let n = "/api2/json/nodes/pve";
    let c = "/api2/json/cluster";
    let cmd = |vmid: u32| {
        let commands = format!(r#"[{{"path":"qemu/{vmid}/status/stop","method":"POST","args":{{}}}}]"#);
        let enc: String = form_urlencoded::byte_serialize(commands.as_bytes()).collect();
        format!("commands={enc}")
    };
    vec![
        ("config", form("PUT", &format!("{n}/qemu/104/config"), "cores=4"), form("PUT", &format!("{n}/qemu/110/config"), "cores=4")),
        ("disk attach (volume of another guest)", form("PUT", &format!("{n}/qemu/110/config"), "scsi1=local-lvm%3Avm-104-disk-0"), form("PUT", &format!("{n}/qemu/110/config"), "scsi1=local-lvm%3Avm-110-disk-1")),
        ("disk import-from", form("POST", &format!("{n}/qemu/110/config"), "scsi2=local-lvm%3A0%2Cimport-from%3Dlocal%3A104%2Fvm-104-disk-0.qcow2"), form("POST", &format!("{n}/qemu/110/config"), "scsi2=local-lvm%3A0%2Cimport-from%3Dlocal%3Aimport%2Fdisk.qcow2")),
        ("disk move to another guest", form("POST", &format!("{n}/qemu/110/move_disk"), "disk=scsi0&target-vmid=109"), form("POST", &format!("{n}/qemu/110/move_disk"), "disk=scsi0&storage=local")),
        ("snapshot", form("POST", &format!("{n}/lxc/109/snapshot"), "snapname=x"), form("POST", &format!("{n}/lxc/120/snapshot"), "snapname=x")),
        ("clone target", form("POST", &format!("{n}/qemu/9001/clone"), "newid=109"), form("POST", &format!("{n}/qemu/9001/clone"), "newid=111")),
        ("clone source", form("POST", &format!("{n}/qemu/104/clone"), "newid=111"), form("POST", &format!("{n}/qemu/110/clone"), "newid=112")),
        ("create", form("POST", &format!("{n}/qemu"), "vmid=104&memory=512"), form("POST", &format!("{n}/qemu"), "vmid=113&memory=512")),
        ("restore over", form("POST", &format!("{n}/lxc"), "vmid=109&ostemplate=local%3Abackup%2Fvzdump-lxc-120-2026_01_01-00_00_00.tar.zst&restore=1&force=1"), form("POST", &format!("{n}/lxc"), "vmid=121&ostemplate=local%3Abackup%2Fvzdump-lxc-120-2026_01_01-00_00_00.tar.zst&restore=1")),
        ("bulk node list", form("POST", &format!("{n}/stopall"), "vms=110%3B104"), form("POST", &format!("{n}/stopall"), "vms=110%3B120")),
        ("bulk node omitted", form("POST", &format!("{n}/suspendall"), ""), form("POST", &format!("{n}/suspendall"), "vms=110")),
        ("bulk cluster array", json("POST", &format!("{c}/bulk-action/guest/shutdown"), r#"{"vms":[110,104]}"#), json("POST", &format!("{c}/bulk-action/guest/shutdown"), r#"{"vms":[110,120]}"#)),
        ("vzdump list", form("POST", &format!("{n}/vzdump"), "vmid=110,109&mode=stop"), form("POST", &format!("{n}/vzdump"), "vmid=110&mode=stop")),
        ("vzdump exclude implies all", form("POST", &format!("{n}/vzdump"), "exclude="), form("POST", &format!("{n}/vzdump"), "vmid=120")),
        ("backup job", form("POST", &format!("{c}/backup"), "schedule=daily&all=1&storage=local"), form("POST", &format!("{c}/backup"), "schedule=daily&vmid=110&storage=local")),
        ("HA resource", form("POST", &format!("{c}/ha/resources"), "sid=vm%3A104"), form("POST", &format!("{c}/ha/resources"), "sid=vm%3A110")),
        ("HA resource path (bare id)", form("PUT", &format!("{c}/ha/resources/104"), "state=disabled"), form("PUT", &format!("{c}/ha/resources/110"), "state=disabled")),
        ("HA rule", form("POST", &format!("{c}/ha/rules"), "rule=r1&type=node-affinity&nodes=pve&resources=vm%3A110%2Cct%3A109"), form("POST", &format!("{c}/ha/rules"), "rule=r1&type=node-affinity&nodes=pve&resources=vm%3A110")),
        ("replication", form("POST", &format!("{c}/replication"), "id=0104-0&target=pve2&type=local"), form("POST", &format!("{c}/replication"), "id=110-0&target=pve2&type=local")),
        ("replication run", form("POST", &format!("{n}/replication/109-1/schedule_now"), ""), form("POST", &format!("{n}/replication/110-1/schedule_now"), "")),
        ("storage volume delete", delete(&format!("{n}/storage/local-lvm/content/local-lvm:vm-104-disk-0")), delete(&format!("{n}/storage/local-lvm/content/local-lvm:vm-110-disk-9"))),
        ("storage volume with raw slash", delete(&format!("{n}/storage/local/content/local:104/vm-104-disk-0.qcow2")), delete(&format!("{n}/storage/local/content/local:110/vm-110-disk-0.qcow2"))),
        ("storage allocate for a guest", form("POST", &format!("{n}/storage/local-lvm/content"), "vmid=104&filename=vm-104-disk-5&size=1G"), form("POST", &format!("{n}/storage/local-lvm/content"), "vmid=110&filename=vm-110-disk-5&size=1G")),
        ("prune backups", delete(&format!("{n}/storage/local/prunebackups?keep-last=1")), delete(&format!("{n}/storage/local/prunebackups?keep-last=1&vmid=110"))),
        ("task stop", delete(&format!("{n}/tasks/{UPID_104}")), delete(&format!("{n}/tasks/{UPID_110}"))),
        ("pool membership", form("PUT", "/api2/json/pools/prod", "vms=104"), form("PUT", "/api2/json/pools/prod", "vms=110")),
        ("ACL on a guest", form("PUT", "/api2/json/access/acl", "path=%2Fvms%2F104&roles=PVEVMAdmin&users=x%40pve"), form("PUT", "/api2/json/access/acl", "path=%2Fvms%2F110&roles=PVEVMAdmin&users=x%40pve")),
        ("guest firewall", form("POST", &format!("{n}/qemu/104/firewall/rules"), "type=in&action=DROP"), form("POST", &format!("{n}/qemu/110/firewall/rules"), "type=in&action=DROP")),
        ("SDN IPAM", form("PUT", &format!("{c}/sdn/vnets/v1/ips"), "zone=z&ip=10.0.0.5&vmid=104"), form("PUT", &format!("{c}/sdn/vnets/v1/ips"), "zone=z&ip=10.0.0.5&vmid=110")),
        ("agent", form("POST", &format!("{n}/qemu/104/agent/file-write"), "file=%2Fetc%2Fx&content=y"), form("POST", &format!("{n}/qemu/110/agent/file-write"), "file=%2Fetc%2Fx&content=y")),
        ("nested execute", form("POST", &format!("{n}/execute"), &cmd(104)), form("POST", &format!("{n}/execute"), &cmd(110))),
        ("unknown endpoint", form("POST", &format!("{n}/qemu/104/brand-new-call"), ""), form("POST", &format!("{n}/qemu/110/brand-new-call"), "")),
    ]
}

#[tokio::test]
async fn every_family_finds_its_guest() {
    let g = start().await;
    for (family, refused, allowed) in cases() {
        g.sim.recorder.clear();
        let r = raw(g.addr, &refused).await;
        assert_eq!(
            r.status, 403,
            "{family}: refused request got {} {}\n{refused}",
            r.status, r.reason
        );
        assert!(r.reason.contains("pvegate: "), "{family}: {}", r.reason);
        assert_eq!(
            g.sim.recorder.len(),
            0,
            "{family}: refused request reached upstream"
        );

        let r = raw(g.addr, &allowed).await;
        assert_ne!(
            r.status, 403,
            "{family}: allowed request refused: {}\n{allowed}",
            r.reason
        );
        assert!(
            r.status != 400,
            "{family}: allowed request unreadable: {}",
            r.reason
        );
        let rec = g.sim.recorder.requests();
        assert_eq!(
            rec.len(),
            1,
            "{family}: allowed request did not reach upstream"
        );
        let target = allowed.split(' ').nth(1).unwrap();
        assert_eq!(rec[0].target, target, "{family}");
        let body = allowed.split("\r\n\r\n").nth(1).unwrap_or("");
        assert_eq!(&rec[0].body[..], body.as_bytes(), "{family}: body changed");
    }
}

#[tokio::test]
async fn node_wide_actions_count_as_every_guest() {
    let g = start().await;
    for req in [
        form("POST", "/api2/json/nodes/pve/status", "command=reboot"),
        form("POST", "/api2/json/nodes/pve/termproxy", ""),
        form(
            "POST",
            "/api2/json/cluster/ha/status/disarm-ha",
            "resource-mode=freeze",
        ),
        get("/api2/json/nodes/pve/vncwebsocket?port=5900&vncticket=x"),
        // stopping a backup of several guests (its UPID names none of them)
        delete("/api2/json/nodes/pve/tasks/UPID:pve:0000A1B2:0001C3D4:6B000000:vzdump::root@pam:"),
        // a backup without a selection
        form("POST", "/api2/json/nodes/pve/vzdump", "stdexcludes=1"),
    ] {
        let r = raw(g.addr, &req).await;
        assert_eq!(r.status, 403, "{req}: {} {}", r.status, r.reason);
        assert!(r.reason.contains("every guest"), "{}", r.reason);
    }
    assert_eq!(g.sim.recorder.len(), 0);
}

#[tokio::test]
async fn polling_reads_always_pass() {
    let g = start().await;
    let n = "/api2/json/nodes/pve";
    for path in [
        format!("{n}/tasks/{UPID_104}/status"),
        format!("{n}/tasks/{UPID_104}/log?start=0&limit=50"),
        format!("{n}/qemu/104/agent/network-get-interfaces"),
        format!("{n}/qemu/109/status/current"),
        format!("{n}/qemu/104/rrddata?timeframe=hour"),
        format!("{n}/qemu/104/snapshot"),
        format!("{n}/replication?guest=104"),
        "/api2/json/cluster/resources".to_string(),
        "/api2/json/cluster/ha/resources/vm:104".to_string(),
        format!("{n}/storage/local-lvm/content/local-lvm:vm-104-disk-0"),
    ] {
        let r = raw(g.addr, &get(&path)).await;
        assert_ne!(r.status, 403, "{path}: {}", r.reason);
        assert_ne!(r.status, 400, "{path}: {}", r.reason);
    }
}

#[tokio::test]
async fn console_websocket_of_a_readonly_guest_is_refused() {
    let g = start().await;
    let req = format!(
        "GET /api2/json/nodes/pve/qemu/104/vncwebsocket?port=5900&vncticket=PVEVNC%3Ax HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let r = raw(g.addr, &req).await;
    assert_denied_json(&g, &r, "VM 104 'doc1' is readonly: console refused");
}
