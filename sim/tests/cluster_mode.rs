//! Cluster mode: three nodes on their own listeners share one cluster state; any node
//! answers for another (as pveproxy forwards), except uploads and consoles; a stopped node
//! is reported offline and its forwarded calls fail with 595; it starts again on the same
//! address; tickets are valid on every node; certificates chain to one cluster CA.

mod common;

use common::{call, find, get, must};
use pvegate_sim::{self as sim, SimConfig};

#[tokio::test]
async fn three_nodes_share_one_cluster() {
    let c = sim::start_cluster(SimConfig::demo_cluster(3))
        .await
        .expect("cluster starts");
    let names: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["pve1", "pve2", "pve3"]);
    assert_eq!(c.guest(104).unwrap().node.as_deref(), Some("pve1"));
    assert_eq!(c.guest(109).unwrap().node.as_deref(), Some("pve2"));
    assert_eq!(c.guest(110).unwrap().node.as_deref(), Some("pve3"));

    // /cluster/* reads the same from every node.
    let mut views = Vec::new();
    for n in &c.nodes {
        let vms = get(&n.url, "/cluster/resources?type=vm").await;
        let mut placed: Vec<String> = vms
            .as_array()
            .unwrap()
            .iter()
            .map(|v| format!("{}@{}", v["vmid"], v["node"].as_str().unwrap()))
            .collect();
        placed.sort();
        views.push(placed);
        let status = get(&n.url, "/cluster/status").await;
        assert_eq!(find(&status, "type", "cluster").unwrap()["nodes"], 3);
        let me = find(&status, "name", &n.name).unwrap();
        assert_eq!(me["local"], 1, "{} says it is local", n.name);
    }
    assert!(views.windows(2).all(|w| w[0] == w[1]), "{views:?}");
    assert_eq!(
        get(&c.nodes[0].url, "/nodes")
            .await
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // pve1 answers for a guest on pve2 (forwarding), and the task runs on pve2.
    let pve1 = &c.nodes[0].url;
    let st = get(pve1, "/nodes/pve2/qemu/109/status/current").await;
    assert_eq!(st["status"], "running");
    let upid = must(pve1, "POST", "/nodes/pve3/qemu/110/status/shutdown", &[]).await;
    assert!(upid.as_str().unwrap().starts_with("UPID:pve3:"), "{upid}");
    let t = get(
        &c.nodes[2].url,
        &format!("/nodes/pve3/tasks/{}/status", upid.as_str().unwrap()),
    )
    .await;
    assert_eq!(t["node"], "pve3");
    // The guest is not on pve1.
    let (code, v) = call(pve1, "GET", "/nodes/pve1/qemu/109/status/current", &[]).await;
    assert_eq!(code, 500);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("nodes/pve1/qemu-server/109.conf"));
    // Storage content is per node.
    let content = get(pve1, "/nodes/pve2/storage/local-lvm/content").await;
    assert!(find(&content, "volid", "local-lvm:vm-109-disk-0").is_some());
    assert!(find(&content, "volid", "local-lvm:vm-104-disk-0").is_none());
    // A change made through one node is seen through another.
    must(
        pve1,
        "PUT",
        "/nodes/pve2/qemu/109/config",
        &[("tags", "prod;gpu")],
    )
    .await;
    assert_eq!(
        get(&c.nodes[2].url, "/nodes/pve2/qemu/109/config").await["tags"],
        "gpu;prod"
    );
    // Migration moves a guest.
    must(
        &c.nodes[1].url,
        "POST",
        "/nodes/pve1/lxc/120/migrate",
        &[("target", "pve3")],
    )
    .await;
    assert_eq!(c.guest(120).unwrap().node.as_deref(), Some("pve3"));
}

#[tokio::test]
async fn uploads_and_consoles_only_on_their_own_node() {
    let c = sim::start_cluster(SimConfig::demo_cluster(3))
        .await
        .unwrap();
    let pve1 = &c.nodes[0].url;
    // A console ticket for 109 (on pve2) through pve1 is refused; through pve2 it works.
    let (code, v) = call(
        pve1,
        "POST",
        "/nodes/pve2/qemu/109/vncproxy",
        &[("websocket", "1")],
    )
    .await;
    assert_eq!(code, 501, "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("not forwarded between nodes"));
    let t = must(
        &c.nodes[1].url,
        "POST",
        "/nodes/pve2/qemu/109/vncproxy",
        &[("websocket", "1")],
    )
    .await;
    assert!(t["ticket"].as_str().unwrap().starts_with("PVEVNC:"));
    let (code, _) = call(pve1, "POST", "/nodes/pve3/termproxy", &[]).await;
    assert_eq!(code, 501);
    let (code, _) = call(
        pve1,
        "GET",
        "/nodes/pve2/qemu/109/vncwebsocket?port=5900&vncticket=x",
        &[],
    )
    .await;
    assert_eq!(code, 501);
    // An upload for pve2's storage sent to pve1 never reaches pve2's storage.
    let part = reqwest::multipart::Part::bytes(vec![0u8; 1024]).file_name("x.iso");
    let form = reqwest::multipart::Form::new()
        .text("content", "iso")
        .part("filename", part);
    let r = common::client()
        .post(format!("{pve1}/api2/json/nodes/pve2/storage/local/upload"))
        .header("authorization", common::TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 501);
    let content = get(
        &c.nodes[1].url,
        "/nodes/pve2/storage/local/content?content=iso",
    )
    .await;
    assert!(find(&content, "volid", "local:iso/x.iso").is_none());
    // Its own node takes it.
    let part = reqwest::multipart::Part::bytes(vec![0u8; 1024]).file_name("x.iso");
    let form = reqwest::multipart::Form::new()
        .text("content", "iso")
        .part("filename", part);
    let r = common::client()
        .post(format!(
            "{}/api2/json/nodes/pve2/storage/local/upload",
            c.nodes[1].url
        ))
        .header("authorization", common::TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let content = get(pve1, "/nodes/pve2/storage/local/content?content=iso").await;
    assert!(find(&content, "volid", "local:iso/x.iso").is_some());
    let content = get(pve1, "/nodes/pve1/storage/local/content?content=iso").await;
    assert!(
        find(&content, "volid", "local:iso/x.iso").is_none(),
        "local storage is per node"
    );
}

#[tokio::test]
async fn a_node_stops_and_starts_again() {
    let c = sim::start_cluster(SimConfig::demo_cluster(3))
        .await
        .unwrap();
    let pve2 = c.node("pve2");
    let addr = pve2.addr;
    pve2.stop().await;
    assert!(!pve2.is_running());
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens"
    );
    let pve1 = &c.nodes[0].url;
    let status = get(pve1, "/cluster/status").await;
    assert_eq!(find(&status, "name", "pve2").unwrap()["online"], 0);
    assert_eq!(find(&status, "type", "cluster").unwrap()["quorate"], 1);
    let nodes = get(pve1, "/nodes").await;
    assert_eq!(find(&nodes, "node", "pve2").unwrap()["status"], "offline");
    let vms = get(pve1, "/cluster/resources?type=vm").await;
    assert_eq!(find(&vms, "vmid", "109").unwrap()["status"], "unknown");
    let (code, _) = call(pve1, "GET", "/nodes/pve2/qemu/109/status/current", &[]).await;
    assert_eq!(code, 595, "a call forwarded to a stopped node");
    // The rest of the cluster works.
    must(pve1, "POST", "/nodes/pve3/qemu/110/status/stop", &[]).await;

    pve2.start().await.expect("starts again");
    assert_eq!(pve2.addr, addr);
    assert_eq!(
        get(&pve2.url, "/nodes/pve2/qemu/109/status/current").await["status"],
        "running"
    );
    let status = get(pve1, "/cluster/status").await;
    assert_eq!(find(&status, "name", "pve2").unwrap()["online"], 1);
}

#[tokio::test]
async fn recorders_per_node_and_combined() {
    let c = sim::start_cluster(SimConfig::demo_cluster(3))
        .await
        .unwrap();
    get(&c.nodes[0].url, "/version").await;
    get(&c.nodes[2].url, "/cluster/status").await;
    get(&c.nodes[2].url, "/nodes").await;
    assert_eq!(c.nodes[0].recorder.len(), 1);
    assert_eq!(c.nodes[1].recorder.len(), 0);
    assert_eq!(c.nodes[2].recorder.len(), 2);
    let all = c.recorder.requests();
    let seen: Vec<(&str, &str)> = all.iter().map(|r| (r.node.as_str(), r.path())).collect();
    assert_eq!(
        seen,
        [
            ("pve1", "/api2/json/version"),
            ("pve3", "/api2/json/cluster/status"),
            ("pve3", "/api2/json/nodes")
        ]
    );
}

#[tokio::test]
async fn tickets_work_on_every_node_and_certificates_chain_to_the_cluster_ca() {
    let c = sim::start_cluster(SimConfig {
        tls: true,
        ..SimConfig::demo_cluster(3)
    })
    .await
    .unwrap();
    let ca = reqwest::Certificate::from_pem(c.ca_pem.as_ref().unwrap().as_bytes()).unwrap();
    let verified = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let login = verified
        .post(format!("{}/api2/json/access/ticket", c.nodes[0].url))
        .form(&[("username", "root@pam"), ("password", "demo-password")])
        .send()
        .await
        .expect("pve1's certificate verifies against the cluster CA");
    let v: serde_json::Value = login.json().await.unwrap();
    let ticket = v["data"]["ticket"].as_str().unwrap().to_owned();
    let mut fingerprints = Vec::new();
    for n in &c.nodes {
        let r = verified
            .get(format!("{}/api2/json/nodes/{}/status", n.url, n.name))
            .header(
                "cookie",
                format!(
                    "PVEAuthCookie={}",
                    percent_encoding::utf8_percent_encode(
                        &ticket,
                        percent_encoding::NON_ALPHANUMERIC
                    )
                ),
            )
            .send()
            .await
            .expect("every node's certificate verifies");
        assert_eq!(r.status(), 200, "the ticket from pve1 works on {}", n.name);
        fingerprints.push(n.fingerprint.clone().unwrap());
    }
    fingerprints.dedup();
    assert_eq!(fingerprints.len(), 3, "each node has its own certificate");
    let nodes = get(&c.nodes[1].url, "/nodes").await;
    assert_eq!(
        find(&nodes, "node", "pve3").unwrap()["ssl_fingerprint"],
        c.nodes[2].fingerprint.clone().unwrap()
    );
}
