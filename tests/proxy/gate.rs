//! The gate end to end: the real stack in front of the simulated Proxmox. Every refused request
//! is checked for the client's answer and for the upstream having seen nothing; every allowed
//! one for the upstream having received the same method, target and body.

use crate::common;

use common::*;

const N: &str = "/api2/json/nodes/pve";

#[tokio::test]
async fn reads_of_protected_guests_pass_and_reach_upstream_unchanged() {
    let g = start().await;
    for path in [
        format!("{N}/qemu/104/status/current"),
        format!("{N}/qemu/104/config"),
        "/api2/json/cluster/resources?type=vm".to_string(),
        format!("{N}/qemu/109/rrddata?timeframe=hour&cf=AVERAGE"),
        format!("{N}/qemu/104/agent/network-get-interfaces"),
    ] {
        g.sim.recorder.clear();
        let r = raw(g.addr, &get(&path)).await;
        assert_eq!(r.status, 200, "{path}: {} {}", r.status, r.reason);
        let rec = g.sim.recorder.requests();
        assert_eq!(rec.len(), 1, "{path}");
        assert_eq!(rec[0].method, "GET");
        assert_eq!(rec[0].target, path);
    }
}

#[tokio::test]
async fn changes_to_readonly_guests_are_refused_before_upstream() {
    let g = start().await;
    let cases = [
        (form("POST", &format!("{N}/qemu/104/status/stop"), ""), "VM 104 'doc1' is readonly"),
        (form("POST", &format!("{N}/qemu/109/status/shutdown"), "timeout=30"), "VM 109 'igp' is readonly"),
        (form("PUT", &format!("{N}/qemu/104/config"), "memory=4096"), "VM 104 'doc1'"),
        (form("PUT", &format!("{N}/qemu/104/resize"), "disk=scsi0&size=%2B1G"), "VM 104"),
        (form("POST", &format!("{N}/qemu/104/snapshot"), "snapname=pre"), "VM 104"),
        (form("POST", &format!("{N}/qemu/104/snapshot/pre/rollback"), ""), "VM 104"),
        (form("POST", &format!("{N}/qemu/104/migrate"), "target=pve2"), "VM 104"),
        (form("POST", &format!("{N}/qemu/104/template"), ""), "VM 104"),
        (form("POST", &format!("{N}/qemu/104/vncproxy"), "websocket=1"), "VM 104"),
        (form("POST", &format!("{N}/qemu/104/agent/exec"), "command=id"), "VM 104"),
        (form("PUT", &format!("{N}/qemu/104/firewall/options"), "enable=0"), "VM 104"),
        (get(&format!("{N}/qemu/104/agent/file-read?file=/etc/shadow")), "VM 104"),
        (format!("DELETE {N}/qemu/104?purge=1 HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\n\r\n"), "VM 104"),
        (format!("DELETE {N}/qemu/104/?destroy-unreferenced-disks=1&purge=1 HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\n\r\n"), "VM 104"),
        // guests named outside the {vmid} segment
        (form("POST", &format!("{N}/qemu/9001/clone"), "newid=104&name=x"), "VM 104"),
        (form("POST", &format!("{N}/qemu"), "vmid=104&archive=local:backup/vzdump-qemu-104.vma.zst&force=1"), "VM 104"),
        (form("POST", &format!("{N}/stopall"), "vms=110,104"), "VM 104"),
        (form("POST", &format!("{N}/qemu/110/move_disk"), "disk=scsi0&target-vmid=104"), "VM 104"),
    ];
    for (req, needle) in cases {
        g.sim.recorder.clear();
        let r = raw(g.addr, &req).await;
        assert_denied_json(&g, &r, needle);
    }
}

#[tokio::test]
async fn changes_to_managed_guests_are_forwarded_byte_for_byte() {
    let g = start().await;
    let body = "memory=2048&name=tofu-web&net0=virtio%2Cbridge%3Dvmbr0";
    let r = raw(g.addr, &form("PUT", &format!("{N}/qemu/110/config"), body)).await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    let rec = g.sim.recorder.requests();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].method, "PUT");
    assert_eq!(rec[0].target, format!("{N}/qemu/110/config"));
    assert_eq!(&rec[0].body[..], body.as_bytes());
    let cl = rec[0]
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.clone());
    assert_eq!(cl.as_deref(), Some(body.len().to_string().as_str()));

    g.sim.recorder.clear();
    let r = raw(
        g.addr,
        &form("POST", &format!("{N}/qemu/110/status/start"), ""),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["data"].as_str().unwrap().starts_with("UPID:pve:"));
    assert_eq!(g.sim.recorder.len(), 1);
}

#[tokio::test]
async fn extjs_and_htmljs_denials_are_http_200_with_success_0() {
    let g = start().await;
    for fmt in ["extjs", "htmljs"] {
        g.sim.recorder.clear();
        let r = raw(
            g.addr,
            &form(
                "POST",
                &format!("/api2/{fmt}/nodes/pve/qemu/104/status/stop"),
                "",
            ),
        )
        .await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["success"], 0);
        assert_eq!(v["status"], 403);
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("VM 104 'doc1' is readonly: power.stop refused"),
            "{v}"
        );
        assert_eq!(g.sim.recorder.len(), 0);
    }
}

/// Bypass classes of DESIGN.md section 3: each is a change to guest 104 spelled so that a
/// naive proxy would miss it. Each must be refused (403 or 400) and never reach Proxmox.
#[tokio::test]
async fn bypass_spellings_are_refused() {
    let g = start().await;
    let stop = |target: &str| form("POST", target, "");
    let cases = [
        stop("/api2/json/nodes/pve/qemu%2F104%2Fstatus%2Fstop"),
        stop("/%61pi2/json/nodes/pve/qemu/104/status/stop"),
        stop("/api2/json/nodes/pve/qemu/%31%30%34/status/stop"),
        stop("/api2//json//nodes//pve/qemu/104/status/stop/"),
        stop("/api2/json/nodes/pve/qemu/104/status/stop%0A"),
        stop("http://pve:8006/api2/json/nodes/pve/qemu/104/status/stop"),
        stop("/api2/spiceconfig/nodes/pve/qemu/104/status/stop"),
        stop("/api2/png/nodes/pve/qemu/104/status/stop"),
        stop("/api2/html/nodes/pve/qemu/104/status/stop"),
        // query overrides body; `;` separates; repeated keys collect
        form("POST", "/api2/json/nodes/pve/stopall?vms", "vms=110"),
        form("POST", "/api2/json/nodes/pve/stopall", "vms=110;vms=104"),
        form("POST", "/api2/json/nodes/pve/stopall", "vms=110&vms=104"),
        form("POST", "/api2/json/nodes/pve/stopall", "vms=110%C2%A0104"),
        form("POST", "/api2/json/nodes/pve/stopall", "vms=110+104"),
        form("POST", "/api2/json/nodes/pve/stopall", ""),
        form("POST", "/api2/json/nodes/pve/qemu/9001/clone?newid=104", "newid=110"),
        json("POST", "/api2/json/nodes/pve/qemu/9001/clone", r#"{"newid":104.0}"#),
        json("POST", "/api2/json/nodes/pve/qemu/9001/clone", r#"{"newid":1.04e2}"#),
        json("POST", "/api2/json/nodes/pve/qemu/9001/clone", r#"{"newid":110,"newid":104}"#),
        form("POST", "/api2/json/nodes/pve/qemu/9001/clone", "newid=104%0A"),
        form("POST", "/api2/json/nodes/pve/qemu/110/clone", "newid=111&vmid=104"),
        format!("POST /api2/json/nodes/pve/qemu/104/status/stop HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nContent-Type: Application/JSON\r\nContent-Length: 2\r\n\r\n{{}}"),
        format!("POST /api2/json/nodes/pve/qemu/104/status/stop HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("PATCH /api2/json/nodes/pve/qemu/104/config HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nContent-Length: 0\r\n\r\n"),
        format!("HEAD /api2/json/nodes/pve/qemu/104/status/current HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\n\r\n"),
        format!("DELETE /api2/json/nodes/pve/qemu/110 HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nContent-Length: 9\r\n\r\nvmid=104&"),
    ];
    for req in cases {
        g.sim.recorder.clear();
        let r = raw(g.addr, &req).await;
        assert!(
            matches!(r.status, 400 | 403 | 411 | 413 | 501),
            "not refused: {} {}\n{req}",
            r.status,
            r.reason
        );
        assert_eq!(g.sim.recorder.len(), 0, "reached upstream:\n{req}");
    }
}

#[tokio::test]
async fn dot_segments_are_literal_and_never_resolved() {
    let g = start().await;
    // `/qemu/110/../104/status/stop` is NOT a stop of 104 for pveproxy (no such route): it is an
    // unknown write; either way it must not be forwarded as something else.
    let r = raw(
        g.addr,
        &form(
            "POST",
            "/api2/json/nodes/pve/qemu/110/../104/status/stop",
            "",
        ),
    )
    .await;
    assert!(matches!(r.status, 400 | 403), "{} {}", r.status, r.reason);
    assert_eq!(g.sim.recorder.len(), 0);
}

#[tokio::test]
async fn upstream_reason_phrases_and_errors_pass_through() {
    let g = start().await;
    let r = raw(g.addr, &get("/api2/json/nodes/pve/qemu/999/status/current")).await;
    assert_eq!(r.status, 500);
    assert!(r.reason.contains("does not exist"), "{}", r.reason);
}

#[tokio::test]
async fn upstream_down_is_a_502_in_the_denial_shape() {
    let g = start().await;
    // Point a second gate at a port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = common::clients::upstream_cfg(
        &format!("http://{dead}"),
        pvegate::config::Trust::Insecure,
        std::time::Duration::from_secs(3),
    );
    let up = pvegate::upstream::Upstream::new(&cfg).unwrap();
    let listener = pvegate::server::Listener::bind("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(listener.serve(pvegate::stack::build(g.store.clone(), up)));
    let r = raw(addr, &get("/api2/json/version")).await;
    assert_eq!(r.status, 502);
    assert!(
        r.reason.contains("cannot connect to the Proxmox upstream"),
        "{}",
        r.reason
    );
    assert!(r.message().contains(&dead.to_string()));
    let r = raw(addr, &get("/api2/extjs/version")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], 502);
    task.abort();
}

#[tokio::test]
async fn hop_by_hop_and_internal_headers_are_stripped() {
    let g = start().await;
    let req = format!(
        "GET /api2/json/version HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nPVEDisableProxy: 1\r\nPVEClientIP: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\n\r\n"
    );
    let r = raw(g.addr, &req).await;
    assert_eq!(r.status, 200);
    let rec = g.sim.recorder.requests();
    let names: Vec<String> = rec[0]
        .headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect();
    for bad in [
        "pvedisableproxy",
        "pveclientip",
        "x-hop",
        "proxy-authorization",
    ] {
        assert!(
            !names.contains(&bad.to_string()),
            "{bad} forwarded: {names:?}"
        );
    }
    let xff = rec[0]
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-forwarded-for"))
        .unwrap();
    assert_eq!(xff.1, "127.0.0.1");
}

#[tokio::test]
async fn more_headers_than_pveproxy_accepts_are_refused() {
    let g = start().await;
    let extra: String = (0..70).map(|i| format!("X-Filler-{i}: 1\r\n")).collect();
    let req = format!(
        "GET /api2/json/version HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\n{extra}\r\n"
    );
    let r = raw(g.addr, &req).await;
    assert_eq!(r.status, 400, "{} {}", r.status, r.reason);
    assert!(r.reason.contains("64 lines"), "{}", r.reason);
    assert_eq!(g.sim.recorder.len(), 0);
}

#[tokio::test]
async fn headers_named_in_connection_are_refused_not_silently_dropped() {
    let g = start().await;
    for named in ["X-Hop", "Cookie", "Content-Type", "Authorization"] {
        let req = format!(
            "GET /api2/json/version HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nConnection: close, {named}\r\n\r\n"
        );
        let r = raw(g.addr, &req).await;
        assert_refused(&g, &r);
        assert!(r.reason.contains("Connection names"), "{}", r.reason);
    }
}
