//! Integration tests of the simulated Proxmox VE API (`pvegate_sim`): auth, state changes,
//! tasks, websockets, streamed uploads, pveproxy's framing refusals and the recorder, driven
//! over real sockets on `127.0.0.1:0` (reqwest, tokio-tungstenite, raw TCP).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pvegate_sim::{self as sim, GuestKind, SimConfig, SimHandle};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "PVEAPIToken=root@pam!tofu=11111111-2222-3333-4444-555555555555";
const FORM: &str = "application/x-www-form-urlencoded";

async fn plain() -> SimHandle {
    sim::start(SimConfig::demo()).await.expect("sim starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client")
}

/// A raw HTTP/1.1 exchange: writes `request`, reads until the server closes (or 10 s).
async fn raw(sim: &SimHandle, request: &[u8]) -> String {
    let mut s = TcpStream::connect(sim.addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_line(resp: &str) -> &str {
    resp.lines().next().unwrap_or("")
}

fn body_json(resp: &str) -> Value {
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

async fn login(sim: &SimHandle) -> (String, String) {
    let r = client()
        .post(format!("{}/api2/json/access/ticket", sim.url))
        .header("content-type", FORM)
        .body("username=root%40pam&password=demo-password")
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    let ticket = v["data"]["ticket"].as_str().expect("ticket").to_owned();
    let csrf = v["data"]["CSRFPreventionToken"]
        .as_str()
        .expect("csrf")
        .to_owned();
    assert_eq!(v["data"]["username"], "root@pam");
    (ticket, csrf)
}

fn cookie(ticket: &str) -> String {
    let enc: String =
        percent_encoding::utf8_percent_encode(ticket, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    format!("PVEAuthCookie={enc}")
}

async fn get_json(sim: &SimHandle, path: &str) -> (u16, Value) {
    let r = client()
        .get(format!("{}{path}", sim.url))
        .header("authorization", TOKEN)
        .send()
        .await
        .expect("get");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls a task until it stops; returns (polls that said running, exitstatus).
async fn wait_task(sim: &SimHandle, upid: &str) -> (u32, String) {
    let enc =
        percent_encoding::utf8_percent_encode(upid, percent_encoding::NON_ALPHANUMERIC).to_string();
    for running in 0..20u32 {
        let (s, v) = get_json(sim, &format!("/api2/json/nodes/pve/tasks/{enc}/status")).await;
        assert_eq!(s, 200, "{v}");
        if v["data"]["status"] == "stopped" {
            return (
                running,
                v["data"]["exitstatus"].as_str().unwrap_or("").to_owned(),
            );
        }
    }
    panic!("task {upid} never stopped");
}

#[tokio::test]
async fn login_ticket_then_csrf_protected_action() {
    let sim = plain().await;
    let (ticket, csrf) = login(&sim).await;
    assert!(ticket.starts_with("PVE:root@pam:"), "{ticket}");
    assert!(ticket.contains("::"));
    assert_eq!(csrf.split(':').next().map(str::len), Some(8));

    // A ticket GET needs no CSRF token.
    let r = client()
        .get(format!(
            "{}/api2/json/nodes/pve/qemu/110/status/current",
            sim.url
        ))
        .header("cookie", cookie(&ticket))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["status"], "running");
    assert_eq!(v["data"]["qmpstatus"], "running");
    assert_eq!(v["data"]["agent"], 1);

    // A ticket POST without CSRF: 401 with pveproxy's reason, connection closed.
    let req = format!(
        "POST /api2/json/nodes/pve/qemu/110/status/stop HTTP/1.1\r\nHost: x\r\nCookie: {}\r\nContent-Length: 0\r\n\r\n",
        cookie(&ticket)
    );
    let resp = raw(&sim, req.as_bytes()).await;
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 401 Permission denied - invalid csrf token"
    );
    assert!(resp.to_ascii_lowercase().contains("connection: close"));
    assert!(sim.guest(110).unwrap().running);

    // With the token (and the Authorization form of the cookie): the stop happens.
    let r = client()
        .post(format!(
            "{}/api2/json/nodes/pve/qemu/110/status/stop",
            sim.url
        ))
        .header("authorization", format!("PVEAuthCookie={ticket}"))
        .header("CSRFPreventionToken", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let upid = v["data"].as_str().unwrap().to_owned();
    assert!(upid.starts_with("UPID:pve:"), "{upid}");
    assert!(upid.ends_with(":qmstop:110:root@pam:"), "{upid}");
    let parts: Vec<&str> = upid.split(':').collect();
    assert_eq!(parts.len(), 9);
    assert!(parts[2..5]
        .iter()
        .all(|p| p.len() == 8 && p.chars().all(|c| c.is_ascii_hexdigit())));

    let (running_polls, exit) = wait_task(&sim, &upid).await;
    assert_eq!(running_polls, 1, "the first poll says running");
    assert_eq!(exit, "OK");
    let (_, v) = get_json(&sim, "/api2/json/nodes/pve/qemu/110/status/current").await;
    assert_eq!(v["data"]["status"], "stopped");
    assert!(!sim.guest(110).unwrap().running);

    // The task log ends with TASK OK.
    let enc = percent_encoding::utf8_percent_encode(&upid, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    let (_, v) = get_json(&sim, &format!("/api2/json/nodes/pve/tasks/{enc}/log")).await;
    let lines = v["data"].as_array().unwrap();
    assert_eq!(lines.last().unwrap()["t"], "TASK OK");
    assert_eq!(v["total"], lines.len());

    // A wrong password.
    let r = client()
        .post(format!("{}/api2/extjs/access/ticket", sim.url))
        .header("content-type", FORM)
        .body("username=root@pam&password=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "extjs reports errors in the body");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], 0);
    assert_eq!(v["status"], 401);
}

#[tokio::test]
async fn token_auth_over_tls_with_the_sims_ca() {
    let sim = sim::start(SimConfig {
        tls: true,
        ..SimConfig::demo()
    })
    .await
    .unwrap();
    assert!(sim.url.starts_with("https://127.0.0.1:"));
    let fp = sim.fingerprint.clone().unwrap();
    assert_eq!(fp.len(), 32 * 3 - 1);
    assert!(fp.split(':').all(|p| p.len() == 2
        && p.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())));

    // Trusting only the sim's CA works: the node certificate names 127.0.0.1.
    let ca = reqwest::Certificate::from_pem(sim.ca_pem.as_ref().unwrap().as_bytes()).unwrap();
    let pinned = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let r = pinned
        .get(format!("{}/api2/json/nodes", sim.url))
        .header("authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"][0]["node"], "pve");
    assert_eq!(v["data"][0]["ssl_fingerprint"], fp.as_str());

    // Tokens need no CSRF token; the space form works too; the UPID names the token.
    let r = client()
        .post(format!(
            "{}/api2/json/nodes/pve/lxc/120/status/start",
            sim.url
        ))
        .header(
            "authorization",
            "PVEAPIToken root@pam!tofu=11111111-2222-3333-4444-555555555555",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["data"]
        .as_str()
        .unwrap()
        .ends_with(":vzstart:120:root@pam!tofu:"));
    assert!(sim.guest(120).unwrap().running);

    // No credential, a bad secret.
    let r = client()
        .get(format!("{}/api2/json/nodes", sim.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(format!("{}/api2/json/nodes", sim.url))
        .header("authorization", "PVEAPIToken=root@pam!tofu=wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(sim.recorder.len(), 4);
}

#[tokio::test]
async fn clone_then_delete_with_trailing_slash() {
    let sim = plain().await;
    let c = client();
    let r = c
        .post(format!("{}/api2/json/nodes/pve/qemu/9001/clone", sim.url))
        .header("authorization", TOKEN)
        .header("content-type", FORM)
        .body("full=1&name=tofu-new&newid=130")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let upid = v["data"].as_str().unwrap().to_owned();
    assert!(upid.contains(":qmclone:9001:"), "{upid}");
    assert_eq!(wait_task(&sim, &upid).await.1, "OK");

    let (s, v) = get_json(&sim, "/api2/json/nodes/pve/qemu/130/config").await;
    assert_eq!(s, 200);
    assert_eq!(v["data"]["name"], "tofu-new");
    assert!(v["data"]["digest"].as_str().is_some());
    let (_, v) = get_json(&sim, "/api2/json/cluster/resources?type=vm").await;
    let entry = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["vmid"] == 130)
        .cloned()
        .unwrap();
    assert_eq!(entry["status"], "stopped");
    assert_eq!(entry["template"], 0);
    assert_eq!(entry["node"], "pve");

    // A running guest is refused, with Proxmox's reason phrase.
    let req = format!(
        "DELETE /api2/json/nodes/pve/qemu/110/?destroy-unreferenced-disks=1&purge=1 HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKEN}\r\n\r\n"
    );
    let resp = raw(&sim, req.as_bytes()).await;
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 500 VM 110 is running - destroy failed"
    );
    assert_eq!(
        body_json(&resp)["message"],
        "VM 110 is running - destroy failed\n"
    );

    let r = c
        .delete(format!(
            "{}/api2/json/nodes/pve/qemu/130/?destroy-unreferenced-disks=1&purge=1",
            sim.url
        ))
        .header("authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["data"].as_str().unwrap().contains(":qmdestroy:130:"));
    assert!(sim.guest(130).is_none());

    let req = format!(
        "GET /api2/json/nodes/pve/qemu/130/status/current HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKEN}\r\n\r\n"
    );
    let resp = raw(&sim, req.as_bytes()).await;
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 500 Configuration file 'nodes/pve/qemu-server/130.conf' does not exist"
    );
}

#[tokio::test]
async fn agent_config_and_generic_endpoints() {
    let sim = plain().await;
    let (s, v) = get_json(
        &sim,
        "/api2/json/nodes/pve/qemu/110/agent/network-get-interfaces",
    )
    .await;
    assert_eq!(s, 200);
    let eth0 = &v["data"]["result"][1];
    assert_eq!(eth0["name"], "eth0");
    assert_eq!(eth0["ip-addresses"][0]["ip-address"], "10.0.0.110");
    let (s, _) = get_json(
        &sim,
        "/api2/json/nodes/pve/qemu/9001/agent/network-get-interfaces",
    )
    .await;
    assert_eq!(s, 500);

    // PUT config: JSON body, delete=, stale digest refused.
    let (_, v) = get_json(&sim, "/api2/json/nodes/pve/qemu/104/config").await;
    let digest = v["data"]["digest"].as_str().unwrap().to_owned();
    let body = serde_json::json!({"memory": 4096, "delete": "agent", "digest": digest}).to_string();
    let put = |body: String| {
        client()
            .put(format!("{}/api2/json/nodes/pve/qemu/104/config", sim.url))
            .header("authorization", TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = put(body.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"data": null})
    );
    let (_, v) = get_json(&sim, "/api2/json/nodes/pve/qemu/104/config").await;
    assert_eq!(v["data"]["memory"], 4096);
    assert!(v["data"].get("agent").is_none());
    assert_eq!(put(body).await.unwrap().status(), 500);

    // Unknown but well-formed: succeeds in the schema's shape (an object for ceph/status, a
    // list for ceph/osd's pools); unknown format: 501; repeated slashes are fine.
    let (s, v) = get_json(&sim, "/api2/json/nodes/pve/ceph/status").await;
    assert_eq!((s, v), (200, serde_json::json!({"data": {}})));
    let (s, v) = get_json(&sim, "/api2/json/nodes/pve/ceph/pool").await;
    assert_eq!((s, v), (200, serde_json::json!({"data": []})));
    let (s, v) = get_json(&sim, "/api2//json//nodes//pve/qemu/104/status/current/").await;
    assert_eq!(s, 200);
    assert_eq!(v["data"]["name"], "doc1");
    let (s, _) = get_json(&sim, "/api2/xml/version").await;
    assert_eq!(s, 501);
    let (s, v) = get_json(&sim, "/api2/json/cluster/nextid").await;
    assert_eq!((s, v["data"].as_str()), (200, Some("100")));

    // Bulk stop of every guest when `vms` is absent.
    let r = client()
        .post(format!("{}/api2/json/nodes/pve/stopall", sim.url))
        .header("authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(sim.guests().iter().all(|g| !g.running));
    assert_eq!(
        sim.guest(9001).map(|g| (g.kind, g.template)),
        Some((GuestKind::Qemu, true))
    );

    // Parameter errors carry `errors`.
    let r = client()
        .post(format!("{}/api2/json/nodes/pve/qemu/9001/clone", sim.url))
        .header("authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "Parameter verification failed.\n");
    assert!(v["errors"]["newid"].is_string());
}

#[tokio::test]
async fn console_websocket_echoes_frames() {
    let sim = plain().await;
    let r = client()
        .post(format!("{}/api2/json/nodes/pve/qemu/104/vncproxy", sim.url))
        .header("authorization", TOKEN)
        .header("content-type", FORM)
        .body("websocket=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let port = v["data"]["port"].as_str().unwrap().to_owned();
    let ticket = v["data"]["ticket"].as_str().unwrap().to_owned();
    assert!(ticket.starts_with("PVEVNC:"));
    assert_eq!(v["data"]["user"], "root@pam!tofu");

    let enc = percent_encoding::utf8_percent_encode(&ticket, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    let url = format!(
        "ws://{}/api2/json/nodes/pve/qemu/104/vncwebsocket?port={port}&vncticket={enc}",
        sim.addr
    );
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", TOKEN.parse().unwrap());
    req.headers_mut()
        .insert("sec-websocket-protocol", "binary".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers()["sec-websocket-protocol"], "binary");

    let payload: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    ws.send(Message::binary(payload.clone())).await.unwrap();
    let first = ws.next().await.unwrap().unwrap();
    assert_eq!(first, Message::binary(payload));
    // Consoles sit idle for long stretches: no idle timeout (HTTP keep-alive's is 5 s).
    tokio::time::sleep(sim::IDLE_TIMEOUT + Duration::from_secs(1)).await;
    ws.send(Message::text("RFB 003.008\n")).await.unwrap();
    let second = ws.next().await.unwrap().unwrap();
    assert_eq!(second, Message::text("RFB 003.008\n"));
    ws.close(None).await.unwrap();

    // A ticket for another guest is refused.
    let url = format!(
        "ws://{}/api2/json/nodes/pve/qemu/109/vncwebsocket?port={port}&vncticket={enc}",
        sim.addr
    );
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", TOKEN.parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());

    let rec = sim.recorder.requests();
    let ws_req = &rec[1];
    assert_eq!(ws_req.method, "GET");
    assert!(ws_req
        .target
        .starts_with("/api2/json/nodes/pve/qemu/104/vncwebsocket?port="));
    assert_eq!(ws_req.header("upgrade"), Some("websocket"));
}

#[tokio::test]
async fn streamed_upload_is_recorded_by_length_and_hash() {
    const FILE: usize = 50 * 1024 * 1024;
    const CHUNK: usize = 1024 * 1024;
    let sim = plain().await;
    let (ticket, _csrf) = login(&sim).await;

    let boundary = "pvegateSimBoundary7MA4YWxkTrZu0gW";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\niso\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"big.iso\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let chunk = |i: usize| -> Vec<u8> { (0..CHUNK).map(|j| (i * 7 + j % 251) as u8).collect() };

    let mut hasher = Sha256::new();
    hasher.update(head.as_bytes());
    for i in 0..FILE / CHUNK {
        hasher.update(chunk(i));
    }
    hasher.update(tail.as_bytes());
    let expected: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let total = (head.len() + FILE + tail.len()) as u64;

    let parts = std::iter::once(head.clone().into_bytes())
        .chain((0..FILE / CHUNK).map(chunk))
        .chain(std::iter::once(tail.into_bytes()))
        .map(Ok::<_, std::io::Error>);
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(parts));
    let r = client()
        .post(format!(
            "{}/api2/json/nodes/pve/storage/local/upload",
            sim.url
        ))
        .header("cookie", cookie(&ticket)) // no CSRF token: uploads do not need one
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header("content-length", total.to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["data"].as_str().unwrap().contains(":imgcopy:"));

    let rec = sim.recorder.last().unwrap();
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.body_len, total);
    assert_eq!(rec.body_sha256, expected);
    assert_eq!(rec.body.len(), 64 * 1024);
    assert!(rec.body.starts_with(head.as_bytes()));
    assert_eq!(rec.header("transfer-encoding"), None);

    let (_, v) = get_json(
        &sim,
        "/api2/json/nodes/pve/storage/local/content?content=iso",
    )
    .await;
    let iso = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["volid"] == "local:iso/big.iso")
        .cloned()
        .unwrap();
    assert_eq!(iso["size"], FILE as u64);

    // The volume id may contain a slash, encoded or not.
    let r = client()
        .delete(format!(
            "{}/api2/json/nodes/pve/storage/local/content/local:iso/big.iso",
            sim.url
        ))
        .header("authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, v) = get_json(
        &sim,
        "/api2/json/nodes/pve/storage/local/content?content=iso",
    )
    .await;
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["volid"] != "local:iso/big.iso"));
}

#[tokio::test]
async fn framing_refusals_like_pveproxy() {
    let sim = plain().await;
    let auth = format!("Authorization: {TOKEN}\r\n");

    let req = format!(
        "POST /api2/json/nodes/pve/qemu/104/status/stop HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    let resp = raw(&sim, req.as_bytes()).await;
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 501 chunked transfer encoding not supported"
    );
    assert!(resp.to_ascii_lowercase().contains("connection: close"));
    assert!(
        sim.guest(104).unwrap().running,
        "refused requests change nothing"
    );

    let req = format!(
        "DELETE /api2/json/nodes/pve/qemu/120 HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5\r\n\r\nhello"
    );
    let resp = raw(&sim, req.as_bytes()).await;
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 501 Unexpected content for method 'DELETE'"
    );
    assert!(sim.guest(120).is_some());

    let resp = raw(&sim, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 501 method 'HEAD' not available"
    );

    let big = "a".repeat(512 * 1024 + 1);
    let req = format!(
        "PUT /api2/json/nodes/pve/qemu/104/config HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: {FORM}\r\nContent-Length: {}\r\n\r\n{big}",
        big.len()
    );
    let resp = raw(&sim, req.as_bytes()).await;
    assert_eq!(status_line(&resp), "HTTP/1.1 501 for data too large");

    let resp = raw(&sim, b"GET /api2/json/nodes HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status_line(&resp), "HTTP/1.1 401 No ticket");

    let resp = raw(&sim, b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 501 no such file '/nothing-here'"
    );

    let rec = sim.recorder.requests();
    assert_eq!(rec.len(), 6);
    assert_eq!(rec[0].header("transfer-encoding"), Some("chunked"));
    assert_eq!(&rec[0].body[..], b"hello");
    assert_eq!(rec[1].method, "DELETE");
    assert_eq!(rec[1].body_len, 5);
    assert_eq!(rec[2].method, "HEAD");
    assert_eq!(rec[3].body_len, 512 * 1024 + 1);
    assert_eq!(rec[3].body.len(), 512 * 1024 + 1);
}

#[tokio::test]
async fn keep_alive_then_idle_close_and_close_after_errors() {
    let sim = plain().await;
    let mut s = TcpStream::connect(sim.addr).await.unwrap();
    let req =
        format!("GET /api2/json/version HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKEN}\r\n\r\n");
    let mut buf = vec![0u8; 65536];
    for _ in 0..2 {
        s.write_all(req.as_bytes()).await.unwrap();
        let n = s.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\"version\""));
    }
    // Idle: closed after about 5 s.
    let started = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "idle connection is closed");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(12),
        "{waited:?}"
    );

    // An error response closes the connection even though the client wants keep-alive.
    let mut s = TcpStream::connect(sim.addr).await.unwrap();
    s.write_all(b"GET /api2/json/nodes HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 401 No ticket\r\n"));
}

#[tokio::test]
async fn recorder_keeps_targets_exactly() {
    let sim = plain().await;
    assert!(sim.recorder.is_empty());
    let req = format!(
        "GET /api2/json//nodes/pve/qemu%2F104/status/current?x=1;y=2 HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let resp = raw(&sim, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert_eq!(body_json(&resp)["data"]["vmid"], 104);

    let req = format!(
        "GET http://{}/api2/json/version HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKEN}\r\nConnection: close\r\n\r\n",
        sim.addr
    );
    let resp = raw(&sim, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");

    assert!(sim.recorder.wait_for(2, Duration::from_secs(1)).await);
    assert!(!sim.recorder.wait_for(3, Duration::from_millis(50)).await);
    let rec = sim.recorder.requests();
    assert_eq!(
        rec[0].target,
        "/api2/json//nodes/pve/qemu%2F104/status/current?x=1;y=2"
    );
    assert_eq!(rec[0].query(), Some("x=1;y=2"));
    assert_eq!(rec[0].header("authorization"), Some(TOKEN));
    assert_eq!(rec[0].body_len, 0);
    assert_eq!(
        rec[0].body_sha256,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(rec[0].peer.ip(), std::net::Ipv4Addr::LOCALHOST);
    assert_eq!(
        rec[1].target,
        format!("http://{}/api2/json/version", sim.addr)
    );
    assert_eq!(rec[1].path(), "/api2/json/version");

    // wait_for wakes up when a request arrives later.
    let rec2 = sim.recorder.clone();
    let waiter = tokio::spawn(async move { rec2.wait_for(3, Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = raw(
        &sim,
        b"GET /pve2/js/pvemanagerlib.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(waiter.await.unwrap());
    sim.recorder.clear();
    assert_eq!(sim.recorder.len(), 0);
}

#[tokio::test]
async fn index_page_embeds_csrf_for_a_valid_cookie() {
    let sim = plain().await;
    sim.add_static_file(
        "/pve2/js/test-page.js",
        "application/javascript",
        &b"ok();"[..],
    );
    let r = client()
        .get(format!("{}/pve2/js/test-page.js", sim.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/javascript");
    assert_eq!(r.text().await.unwrap(), "ok();");

    let anon = client()
        .get(format!("{}/", sim.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(anon.contains("/pve2/js/pvemanagerlib.js"));
    assert!(anon.contains("CSRFPreventionToken: false"));

    let (ticket, _) = sim.issue_ticket("root@pam");
    let page = client()
        .get(format!("{}/", sim.url))
        .header("cookie", cookie(&ticket))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("CSRFPreventionToken: \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    // The embedded token authorizes a write with the cookie.
    let r = client()
        .post(format!(
            "{}/api2/extjs/nodes/pve/qemu/104/snapshot",
            sim.url
        ))
        .header("cookie", cookie(&ticket))
        .header("CSRFPreventionToken", csrf)
        .header("content-type", FORM)
        .body("snapname=before-upgrade")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], 1);
    assert!(v["data"].as_str().unwrap().contains(":qmsnapshot:104:"));
}
