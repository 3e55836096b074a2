//! The answers monitoring tools and the web UI depend on come in PVE 9.1's `returns` shapes:
//! objects where the schema has objects (subscription, cluster options, apt repositories),
//! lists where it has lists (disks, cluster tasks, cluster status with its cluster entry),
//! and a ticket whose caps hold every PVE 9 privilege the UI checks.

mod common;

use common::{find, get, must};
use pvegate_sim::{self as sim, SimConfig};

#[tokio::test]
async fn node_and_cluster_reads_have_the_schema_shapes() {
    let s = sim::start(SimConfig::demo()).await.expect("sim starts");
    let sub = get(&s.url, "/nodes/pve/subscription").await;
    assert!(sub.is_object(), "{sub}");
    assert_eq!(sub["status"], "notfound");
    assert!(sub["serverid"].as_str().is_some_and(|id| id.len() == 32));

    let opts = get(&s.url, "/cluster/options").await;
    assert!(opts.is_object(), "{opts}");
    must(
        &s.url,
        "PUT",
        "/cluster/options",
        &[("keyboard", "de"), ("description", "lab")],
    )
    .await;
    assert_eq!(get(&s.url, "/cluster/options").await["keyboard"], "de");

    let repos = get(&s.url, "/nodes/pve/apt/repositories").await;
    assert!(repos["files"].is_array() && repos["errors"].is_array() && repos["infos"].is_array());
    assert!(repos["standard-repos"].is_array() && repos["digest"].is_string());
    assert!(get(&s.url, "/nodes/pve/apt/versions").await[0]["Package"].is_string());

    let disks = get(&s.url, "/nodes/pve/disks/list").await;
    let first = &disks[0];
    assert!(first["devpath"].is_string() && first["size"].is_u64() && first["gpt"].is_u64());

    let status = get(&s.url, "/cluster/status").await;
    let cluster = find(&status, "type", "cluster").expect("cluster entry");
    assert_eq!(cluster["nodes"], 1);
    assert_eq!(cluster["quorate"], 1);
    let node = find(&status, "type", "node").expect("node entry");
    assert_eq!(
        (
            node["name"].as_str(),
            node["local"].as_u64(),
            node["online"].as_u64()
        ),
        (Some("pve"), Some(1), Some(1))
    );

    assert_eq!(
        get(&s.url, "/cluster/tasks")
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let upid = must(&s.url, "POST", "/nodes/pve/qemu/110/status/stop", &[]).await;
    let tasks = get(&s.url, "/cluster/tasks").await;
    let t = find(&tasks, "upid", upid.as_str().unwrap()).expect("the task is listed");
    assert_eq!(
        (t["node"].as_str(), t["type"].as_str(), t["id"].as_str()),
        (Some("pve"), Some("qmstop"), Some("110"))
    );

    let pci = get(&s.url, "/nodes/pve/hardware/pci").await;
    assert!(find(&pci, "id", "0000:00:02.0").is_some());
    assert_eq!(get(&s.url, "/version").await["release"], "9.1");
}

#[tokio::test]
async fn the_ticket_caps_hold_the_privileges_the_ui_checks() {
    let s = sim::start(SimConfig::demo()).await.expect("sim starts");
    let r = common::client()
        .post(format!("{}/api2/json/access/ticket", s.url))
        .form(&[("username", "root@pam"), ("password", "demo-password")])
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    let cap = &v["data"]["cap"];
    for (class, p) in [
        ("vms", "VM.GuestAgent.Audit"),
        ("vms", "VM.GuestAgent.Unrestricted"),
        ("vms", "VM.Config.Cloudinit"),
        ("vms", "VM.Snapshot.Rollback"),
        ("vms", "VM.Backup"),
        ("nodes", "Sys.Incoming"),
        ("mapping", "Mapping.Use"),
        ("sdn", "SDN.Use"),
        ("storage", "Datastore.AllocateTemplate"),
    ] {
        assert_eq!(cap[class][p], 1, "{class}.{p} in {cap}");
    }
    let perms = get(&s.url, "/access/permissions").await;
    assert_eq!(perms["/"]["VM.GuestAgent.Audit"], 1);
}

#[tokio::test]
async fn unmodelled_reads_answer_in_the_schema_shape() {
    let s = sim::start(SimConfig::demo()).await.expect("sim starts");
    assert!(get(&s.url, "/cluster/firewall/options").await.is_object());
    assert!(get(&s.url, "/nodes/pve/qemu/104/firewall/options")
        .await
        .is_object());
    assert!(get(&s.url, "/nodes/pve/vzdump/defaults").await.is_object());
    assert!(get(&s.url, "/nodes/pve/qemu/104/firewall/rules")
        .await
        .is_array());
    assert!(get(&s.url, "/nodes/pve/apt/changelog?name=pve-manager")
        .await
        .is_string());
    let st = get(&s.url, "/nodes/pve/storage/local-lvm/status").await;
    assert_eq!(
        (st["type"].as_str(), st["active"].as_u64()),
        (Some("lvmthin"), Some(1))
    );
}

#[tokio::test]
async fn an_auditor_token_reads_everything_and_changes_nothing() {
    let s = sim::start(SimConfig::demo()).await.expect("sim starts");
    let auth = format!(
        "PVEAPIToken={}={}",
        sim::DEMO_AUDITOR_TOKEN_ID,
        sim::DEMO_AUDITOR_TOKEN_SECRET
    );
    let c = common::client();
    let r = c
        .get(format!("{}/api2/json/cluster/resources?type=vm", s.url))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!(
            "{}/api2/json/nodes/pve/qemu/110/status/stop",
            s.url
        ))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(s.guest(110).unwrap().running, "nothing changed");
    let r = c
        .get(format!("{}/api2/json/version", s.url))
        .header("authorization", format!("{auth}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a wrong secret is refused");
}
