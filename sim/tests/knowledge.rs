//! What the sim knows about the cluster, over real sockets: guests' tags, pools, names,
//! templates and HA state in `cluster/resources`; pools, storages, resource mappings, backup
//! jobs and HA resources/groups/rules, each created, read, changed and deleted as Proxmox
//! does it; a destroyed guest leaving pools (and with `purge`, jobs and HA).

mod common;

use common::{call, call_json, find, get, must};
use pvegate_sim::{self as sim, SimConfig};
use serde_json::json;

async fn demo() -> sim::SimHandle {
    sim::start(SimConfig::demo()).await.expect("sim starts")
}

#[tokio::test]
async fn resources_carry_tags_pools_templates_and_ha() {
    let s = demo().await;
    let vms = get(&s.url, "/cluster/resources?type=vm").await;
    assert_eq!(vms.as_array().unwrap().len(), 5);
    let doc1 = find(&vms, "vmid", "104").expect("104 listed");
    assert_eq!(doc1["name"], "doc1");
    assert_eq!(doc1["tags"], "prod");
    assert_eq!(doc1["pool"], "production");
    assert_eq!(doc1["node"], "pve");
    assert_eq!(doc1["type"], "qemu");
    assert_eq!(doc1["template"], 0);
    assert_eq!(doc1["hastate"], "started");
    assert_eq!(doc1["id"], "qemu/104");
    let tmpl = find(&vms, "vmid", "9001").unwrap();
    assert_eq!(tmpl["template"], 1);
    assert!(tmpl.get("pool").is_none());
    let ct = find(&vms, "vmid", "120").unwrap();
    assert_eq!(
        (ct["type"].as_str(), ct["pool"].as_str()),
        (Some("lxc"), Some("lab"))
    );

    let all = get(&s.url, "/cluster/resources").await;
    let types: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in ["node", "qemu", "lxc", "storage", "sdn"] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    let storages = get(&s.url, "/cluster/resources?type=storage").await;
    assert!(find(&storages, "storage", "local-lvm").is_some());
    assert!(storages
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["type"] == "storage"));
    // A read of the guest's config shows what selectors and dependencies are made of.
    let cfg = get(&s.url, "/nodes/pve/qemu/109/config").await;
    assert_eq!(cfg["hostpci0"], "mapping=igpu,pcie=1");
    assert_eq!(cfg["tags"], "prod");
    assert!(cfg["scsi0"]
        .as_str()
        .unwrap()
        .starts_with("local-lvm:vm-109-disk-0"));
    let ct = get(&s.url, "/nodes/pve/lxc/120/config").await;
    assert!(ct["rootfs"]
        .as_str()
        .unwrap()
        .starts_with("local-lvm:vm-120-disk-0"));
}

#[tokio::test]
async fn guest_config_keeps_tags_names_protection_and_devices() {
    let s = demo().await;
    must(
        &s.url,
        "PUT",
        "/nodes/pve/qemu/110/config",
        &[
            ("tags", "web,beta web"),
            ("name", "tofu-web2"),
            ("protection", "1"),
            ("usb0", "mapping=zigbee"),
            ("hostpci1", "0000:01:00.0,pcie=1"),
            ("scsi1", "local-lvm:vm-110-disk-1,size=4G"),
        ],
    )
    .await;
    let cfg = get(&s.url, "/nodes/pve/qemu/110/config").await;
    assert_eq!(
        cfg["tags"], "beta;web",
        "unique, sorted, ';'-joined as Proxmox keeps them"
    );
    assert_eq!(cfg["name"], "tofu-web2");
    assert_eq!(cfg["protection"], "1");
    assert_eq!(cfg["usb0"], "mapping=zigbee");
    assert_eq!(cfg["hostpci1"], "0000:01:00.0,pcie=1");
    let vms = get(&s.url, "/cluster/resources?type=vm").await;
    let g = find(&vms, "vmid", "110").unwrap();
    assert_eq!(
        (g["name"].as_str(), g["tags"].as_str()),
        (Some("tofu-web2"), Some("beta;web"))
    );
    assert_eq!(s.guest(110).unwrap().tags, vec!["beta", "web"]);
    // JSON bodies (cv4pve, Terraform) and `delete` clear them again.
    let (st, _) = call_json(
        &s.url,
        "PUT",
        "/nodes/pve/qemu/110/config",
        &json!({"delete": "tags,protection"}),
    )
    .await;
    assert_eq!(st, 200);
    let cfg = get(&s.url, "/nodes/pve/qemu/110/config").await;
    assert!(
        cfg.get("tags").is_none() && cfg.get("protection").is_none(),
        "{cfg}"
    );
    // Protection refuses the destroy, as in Proxmox.
    must(
        &s.url,
        "PUT",
        "/nodes/pve/lxc/120/config",
        &[("protection", "1")],
    )
    .await;
    let (st, v) = call(&s.url, "DELETE", "/nodes/pve/lxc/120", &[]).await;
    assert_eq!(st, 500, "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("protection mode enabled"));
}

#[tokio::test]
async fn pools_crud_in_both_path_forms() {
    let s = demo().await;
    let pools = get(&s.url, "/pools").await;
    assert!(find(&pools, "poolid", "production").is_some());
    assert!(
        pools[0].get("members").is_none(),
        "the index has no members"
    );
    // PVE 9: GET /pools?poolid= lists the pool with its members.
    let one = get(&s.url, "/pools?poolid=production").await;
    assert_eq!(one[0]["members"][0]["vmid"], 104);
    assert_eq!(one[0]["members"][0]["id"], "qemu/104");
    let lab = get(&s.url, "/pools/lab?type=lxc").await;
    assert_eq!(lab["members"].as_array().unwrap().len(), 1);

    must(
        &s.url,
        "POST",
        "/pools",
        &[("poolid", "staging"), ("comment", "next")],
    )
    .await;
    let (st, v) = call(&s.url, "POST", "/pools", &[("poolid", "staging")]).await;
    assert_eq!(st, 500);
    assert!(v["message"].as_str().unwrap().contains("already exists"));
    // PUT /pools with the id in the body; a member of another pool needs allow-move.
    let (st, v) = call(
        &s.url,
        "PUT",
        "/pools",
        &[("poolid", "staging"), ("vms", "110")],
    )
    .await;
    assert_eq!(st, 500);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("belongs already to pool 'lab'"),
        "{v}"
    );
    must(
        &s.url,
        "PUT",
        "/pools",
        &[
            ("poolid", "staging"),
            ("vms", "110"),
            ("allow-move", "1"),
            ("storage", "local"),
        ],
    )
    .await;
    assert_eq!(s.guest(110).unwrap().pool.as_deref(), Some("staging"));
    let staging = get(&s.url, "/pools/staging").await;
    let members = staging["members"].as_array().unwrap();
    assert!(
        members.iter().any(|m| m["id"] == "storage/pve/local"),
        "{staging}"
    );
    // Only an empty pool can go (deprecated path form, then the PVE 9 form).
    let (st, v) = call(&s.url, "DELETE", "/pools/staging", &[]).await;
    assert_eq!(st, 500);
    assert!(v["message"].as_str().unwrap().contains("not empty"));
    must(
        &s.url,
        "PUT",
        "/pools/staging",
        &[("vms", "110"), ("storage", "local"), ("delete", "1")],
    )
    .await;
    must(&s.url, "DELETE", "/pools?poolid=staging", &[]).await;
    let (st, _) = call(&s.url, "GET", "/pools/staging", &[]).await;
    assert_eq!(st, 500);
    // A guest created or cloned into a pool joins it.
    must(
        &s.url,
        "POST",
        "/nodes/pve/qemu/9001/clone",
        &[("newid", "131"), ("name", "c"), ("pool", "lab")],
    )
    .await;
    assert_eq!(s.guest(131).unwrap().pool.as_deref(), Some("lab"));
    let (st, _) = call(
        &s.url,
        "POST",
        "/nodes/pve/qemu",
        &[("vmid", "132"), ("pool", "nosuchpool")],
    )
    .await;
    assert_eq!(st, 500);
}

#[tokio::test]
async fn storages_crud_and_disable() {
    let s = demo().await;
    let list = get(&s.url, "/storage").await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["storage"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["local", "local-lvm"]);
    assert_eq!(
        find(&list, "storage", "local-lvm").unwrap()["type"],
        "lvmthin"
    );
    assert!(list[0]["digest"].is_string());
    assert_eq!(
        get(&s.url, "/storage?type=dir")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let created = must(
        &s.url,
        "POST",
        "/storage",
        &[
            ("storage", "nas"),
            ("type", "nfs"),
            ("server", "10.0.0.5"),
            ("export", "/export/pve"),
            ("content", "images,backup"),
        ],
    )
    .await;
    assert_eq!(created, json!({"storage": "nas", "type": "nfs"}));
    let (st, v) = call(
        &s.url,
        "POST",
        "/storage",
        &[("storage", "nas"), ("type", "dir"), ("path", "/x")],
    )
    .await;
    assert_eq!(st, 500);
    assert!(v["message"].as_str().unwrap().contains("already defined"));
    let nas = get(&s.url, "/storage/nas").await;
    assert_eq!(nas["server"], "10.0.0.5");
    // A stale digest is refused; disabling shows on the node.
    let (st, _) = call(
        &s.url,
        "PUT",
        "/storage/nas",
        &[("disable", "1"), ("digest", "0000")],
    )
    .await;
    assert_eq!(st, 500);
    let digest = nas["digest"].as_str().unwrap().to_owned();
    must(
        &s.url,
        "PUT",
        "/storage/nas",
        &[("disable", "1"), ("digest", &digest)],
    )
    .await;
    assert_eq!(get(&s.url, "/storage/nas").await["disable"], 1);
    let node = get(&s.url, "/nodes/pve/storage").await;
    assert_eq!(find(&node, "storage", "nas").unwrap()["enabled"], 0);
    let (st, v) = call(&s.url, "GET", "/nodes/pve/storage/nas/content", &[]).await;
    assert_eq!(st, 500);
    assert!(v["message"].as_str().unwrap().contains("disabled"));
    must(&s.url, "PUT", "/storage/nas", &[("delete", "disable")]).await;
    assert!(get(&s.url, "/nodes/pve/storage/nas/content")
        .await
        .is_array());
    must(&s.url, "DELETE", "/storage/nas", &[]).await;
    let (st, _) = call(&s.url, "GET", "/storage/nas", &[]).await;
    assert_eq!(st, 500);
    // The node's view lists a guest's disks on the storage that holds them.
    let content = get(&s.url, "/nodes/pve/storage/local-lvm/content").await;
    assert!(find(&content, "volid", "local-lvm:vm-104-disk-0").is_some());
}

#[tokio::test]
async fn mappings_crud_for_pci_usb_and_dir() {
    let s = demo().await;
    let pci = get(&s.url, "/cluster/mapping/pci").await;
    let igpu = find(&pci, "id", "igpu").expect("igpu mapping");
    assert_eq!(
        igpu["map"][0],
        "node=pve,path=0000:00:02.0,id=8086:46a6,iommugroup=2"
    );
    let checked = get(&s.url, "/cluster/mapping/pci?check-node=pve").await;
    assert_eq!(checked[0]["checks"], json!([]));
    let usb = get(&s.url, "/cluster/mapping/usb").await;
    assert!(find(&usb, "id", "zigbee").is_some());

    // A form repeats `map`; JSON sends an array.
    let body = "id=nvme&map=node%3Dpve%2Cpath%3D0000%3A01%3A00.0%2Cid%3D144d%3Aa80a&map=node%3Dpve2%2Cpath%3D0000%3A02%3A00.0%2Cid%3D144d%3Aa80a&description=disk";
    let r = common::client()
        .post(format!("{}/api2/json/cluster/mapping/pci", s.url))
        .header("authorization", common::TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let nvme = get(&s.url, "/cluster/mapping/pci/nvme").await;
    assert_eq!(nvme["map"].as_array().unwrap().len(), 2, "{nvme}");
    let (st, _) = call_json(
        &s.url,
        "POST",
        "/cluster/mapping/dir",
        &json!({"id": "share", "map": ["node=pve,path=/srv/share"]}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        get(&s.url, "/cluster/mapping/dir/share").await["map"][0],
        "node=pve,path=/srv/share"
    );
    let (st, _) = call(
        &s.url,
        "POST",
        "/cluster/mapping/pci",
        &[("id", "igpu"), ("map", "node=pve,path=0000:00:02.0")],
    )
    .await;
    assert_eq!(st, 500, "duplicate id");
    must(
        &s.url,
        "PUT",
        "/cluster/mapping/pci/igpu",
        &[("description", "iGPU")],
    )
    .await;
    assert_eq!(
        get(&s.url, "/cluster/mapping/pci/igpu").await["description"],
        "iGPU"
    );
    must(&s.url, "DELETE", "/cluster/mapping/pci/igpu", &[]).await;
    let (st, _) = call(&s.url, "GET", "/cluster/mapping/pci/igpu", &[]).await;
    assert_eq!(st, 500);
}

#[tokio::test]
async fn backup_jobs_crud_and_included_volumes() {
    let s = demo().await;
    let jobs = get(&s.url, "/cluster/backup").await;
    let prod = find(&jobs, "id", "backup-prod").unwrap();
    assert_eq!(prod["vmid"], "104,109");
    assert_eq!(prod["enabled"], 1);
    assert_eq!(prod["type"], "vzdump");
    assert!(prod["next-run"].is_u64());
    assert_eq!(find(&jobs, "id", "backup-lab").unwrap()["pool"], "lab");

    let inc = get(&s.url, "/cluster/backup/backup-lab/included_volumes").await;
    let ids: Vec<u64> = inc["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [110, 120]);
    assert_eq!(
        inc["children"][0]["children"][0]["name"],
        "local-lvm:vm-110-disk-0"
    );

    must(
        &s.url,
        "POST",
        "/cluster/backup",
        &[
            ("id", "all-but-prod"),
            ("all", "1"),
            ("exclude", "104,109"),
            ("storage", "local"),
            ("schedule", "sun 04:00"),
        ],
    )
    .await;
    let inc = get(&s.url, "/cluster/backup/all-but-prod/included_volumes").await;
    assert_eq!(
        inc["children"].as_array().unwrap().len(),
        2,
        "110 and 120 (9001 is a template)"
    );
    let (st, _) = call(&s.url, "POST", "/cluster/backup", &[("storage", "local")]).await;
    assert_eq!(st, 500, "a job must select something");
    must(
        &s.url,
        "POST",
        "/cluster/backup",
        &[("vmid", "110"), ("storage", "local")],
    )
    .await;
    assert_eq!(
        get(&s.url, "/cluster/backup")
            .await
            .as_array()
            .unwrap()
            .len(),
        4,
        "an id was generated"
    );
    must(
        &s.url,
        "PUT",
        "/cluster/backup/backup-prod",
        &[("enabled", "0"), ("vmid", "104")],
    )
    .await;
    let prod = get(&s.url, "/cluster/backup/backup-prod").await;
    assert_eq!(
        (prod["enabled"].as_i64(), prod["vmid"].as_str()),
        (Some(0), Some("104"))
    );
    must(&s.url, "DELETE", "/cluster/backup/all-but-prod", &[]).await;
    let (st, _) = call(&s.url, "GET", "/cluster/backup/all-but-prod", &[]).await;
    assert_eq!(st, 500);
}

#[tokio::test]
async fn ha_resources_groups_and_rules() {
    let s = demo().await;
    let res = get(&s.url, "/cluster/ha/resources").await;
    assert_eq!(find(&res, "sid", "vm:104").unwrap()["type"], "vm");
    assert_eq!(
        get(&s.url, "/cluster/ha/resources?type=ct")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // `104` is a shortcut for `vm:104`.
    assert_eq!(
        get(&s.url, "/cluster/ha/resources/104").await["sid"],
        "vm:104"
    );
    must(
        &s.url,
        "POST",
        "/cluster/ha/resources",
        &[("sid", "109"), ("state", "started")],
    )
    .await;
    let (st, _) = call(
        &s.url,
        "POST",
        "/cluster/ha/resources",
        &[("sid", "vm:109")],
    )
    .await;
    assert_eq!(st, 500, "already defined");
    let (st, _) = call(
        &s.url,
        "POST",
        "/cluster/ha/resources",
        &[("sid", "ct:104")],
    )
    .await;
    assert_eq!(st, 400, "wrong type");
    must(
        &s.url,
        "PUT",
        "/cluster/ha/resources/vm:109",
        &[("state", "stopped")],
    )
    .await;
    assert_eq!(
        get(&s.url, "/cluster/ha/resources/vm:109").await["state"],
        "stopped"
    );

    must(
        &s.url,
        "POST",
        "/cluster/ha/groups",
        &[("group", "prefer-pve"), ("nodes", "pve:2")],
    )
    .await;
    assert_eq!(
        get(&s.url, "/cluster/ha/groups").await[0]["group"],
        "prefer-pve"
    );
    must(
        &s.url,
        "PUT",
        "/cluster/ha/resources/vm:109",
        &[("group", "prefer-pve")],
    )
    .await;
    let (st, _) = call(&s.url, "DELETE", "/cluster/ha/groups/prefer-pve", &[]).await;
    assert_eq!(st, 500, "in use");

    let rules = get(&s.url, "/cluster/ha/rules").await;
    let pin = find(&rules, "rule", "prod-pin").unwrap();
    assert_eq!(
        (pin["type"].as_str(), pin["resources"].as_str()),
        (Some("node-affinity"), Some("vm:104"))
    );
    let for_110 = get(&s.url, "/cluster/ha/rules?resource=vm:110").await;
    assert_eq!(for_110.as_array().unwrap().len(), 1);
    assert_eq!(for_110[0]["rule"], "lab-apart");
    must(
        &s.url,
        "POST",
        "/cluster/ha/rules",
        &[
            ("rule", "keep-together"),
            ("type", "resource-affinity"),
            ("resources", "vm:109,vm:104"),
            ("affinity", "positive"),
        ],
    )
    .await;
    assert_eq!(
        get(&s.url, "/cluster/ha/rules/keep-together").await["resources"],
        "vm:104,vm:109"
    );
    must(
        &s.url,
        "PUT",
        "/cluster/ha/rules/keep-together",
        &[
            ("type", "resource-affinity"),
            ("resources", "vm:104,vm:110"),
        ],
    )
    .await;
    assert_eq!(
        get(&s.url, "/cluster/ha/rules/keep-together").await["resources"],
        "vm:104,vm:110"
    );
    let (st, _) = call(
        &s.url,
        "PUT",
        "/cluster/ha/rules/keep-together",
        &[("type", "node-affinity")],
    )
    .await;
    assert_eq!(st, 400, "a rule keeps its type");
    must(&s.url, "DELETE", "/cluster/ha/rules/keep-together", &[]).await;
    let status = get(&s.url, "/cluster/ha/status/current").await;
    assert!(find(&status, "id", "service:vm:104").is_some());
    assert!(find(&status, "id", "quorum").is_some());
    // status/current of an HA guest says it is managed.
    assert_eq!(
        get(&s.url, "/nodes/pve/qemu/104/status/current").await["ha"]["managed"],
        1
    );
    assert_eq!(
        get(&s.url, "/nodes/pve/qemu/9001/status/current").await["ha"]["managed"],
        0
    );
}

#[tokio::test]
async fn destroy_leaves_pools_and_with_purge_jobs_and_ha() {
    let s = demo().await;
    must(&s.url, "POST", "/nodes/pve/qemu/110/status/stop", &[]).await;
    must(&s.url, "DELETE", "/nodes/pve/qemu/110?purge=1", &[]).await;
    assert!(s.guest(110).is_none());
    let lab = get(&s.url, "/pools/lab").await;
    assert!(lab["members"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["vmid"] != 110));
    let res = get(&s.url, "/cluster/ha/resources").await;
    assert!(find(&res, "sid", "vm:110").is_none());
    // lab-apart lost vm:110 and keeps ct:120.
    assert_eq!(
        get(&s.url, "/cluster/ha/rules/lab-apart").await["resources"],
        "ct:120"
    );
}
