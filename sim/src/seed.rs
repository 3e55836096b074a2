//! What the cluster-wide configuration of a sim starts with: resource pools, storages,
//! resource mappings, backup jobs and HA (resources, groups, rules), as plain data a test
//! or the demo writes down ([`ClusterSeed`]), and the demo's story ([`ClusterSeed::demo`]).

/// One entry of a Proxmox section config (`storage.cfg`, `jobs.cfg`, `ha/rules.cfg`, the
/// mapping files): its id and its properties as the API takes them (`("type", "dir")`,
/// `("content", "images,rootdir")`, …). A property may repeat (a mapping's `map`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEntry {
    /// The id (`local`, `igpu`, `backup-daily`, `vm:104`, `prod-pin`).
    pub id: String,
    /// The properties in order.
    pub props: Vec<(String, String)>,
}

impl SimEntry {
    /// An entry with these properties.
    pub fn new(id: &str, props: &[(&str, &str)]) -> Self {
        SimEntry {
            id: id.to_owned(),
            props: props
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }
}

/// A resource pool: its id and comment (guests join it with [`crate::SimGuest::pool`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPool {
    /// The pool id.
    pub id: String,
    /// Its comment.
    pub comment: String,
    /// Storages that are members.
    pub storages: Vec<String>,
}

/// The cluster-wide configuration a sim starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSeed {
    /// Resource pools.
    pub pools: Vec<SimPool>,
    /// Storages (`storage.cfg`): props `type`, `content`, `path`, `vgname`, `thinpool`,
    /// `shared`, `disable`, `nodes`, ….
    pub storages: Vec<SimEntry>,
    /// PCI resource mappings: props `map` (repeated: `node=pve,path=0000:00:02.0,id=…`),
    /// `description`, `mdev`, ….
    pub pci_mappings: Vec<SimEntry>,
    /// USB resource mappings: props `map` (`node=pve,id=1a86:55d4` or `…,path=1-2`), ….
    pub usb_mappings: Vec<SimEntry>,
    /// Directory mappings (virtiofs): props `map` (`node=pve,path=/srv/share`), ….
    pub dir_mappings: Vec<SimEntry>,
    /// Backup jobs (`jobs.cfg`, type vzdump): props `vmid`, `pool`, `all`, `exclude`,
    /// `node`, `storage`, `schedule`, `enabled`, `mode`, ….
    pub backup_jobs: Vec<SimEntry>,
    /// HA resources, by sid (`vm:104`, `ct:120`): props `state`, `group`, `comment`, ….
    pub ha_resources: Vec<SimEntry>,
    /// HA groups: props `nodes`, `restricted`, `nofailback`, `comment`.
    pub ha_groups: Vec<SimEntry>,
    /// HA rules (PVE 9): props `type` (`node-affinity` | `resource-affinity`), `resources`,
    /// `nodes`, `strict`, `affinity`, `disable`, `comment`.
    pub ha_rules: Vec<SimEntry>,
}

impl Default for ClusterSeed {
    /// The two storages of a fresh install: `local` (dir) and `local-lvm` (lvmthin);
    /// nothing else.
    fn default() -> Self {
        ClusterSeed {
            pools: Vec::new(),
            storages: vec![
                SimEntry::new(
                    "local",
                    &[
                        ("type", "dir"),
                        ("path", "/var/lib/vz"),
                        ("content", "iso,vztmpl,backup,snippets,import"),
                    ],
                ),
                SimEntry::new(
                    "local-lvm",
                    &[
                        ("type", "lvmthin"),
                        ("thinpool", "data"),
                        ("vgname", "pve"),
                        ("content", "images,rootdir"),
                    ],
                ),
            ],
            pci_mappings: Vec::new(),
            usb_mappings: Vec::new(),
            dir_mappings: Vec::new(),
            backup_jobs: Vec::new(),
            ha_resources: Vec::new(),
            ha_groups: Vec::new(),
            ha_rules: Vec::new(),
        }
    }
}

impl ClusterSeed {
    /// The demo's cluster configuration; `igpu_node` is the node that holds the iGPU
    /// (where VM 109 runs), `prod_node` the node VM 104 is pinned to.
    ///
    /// - pools `production` (VM 104 joins it) and `lab` (VM 110 and CT 120 join it);
    /// - storages `local` and `local-lvm`;
    /// - PCI mapping `igpu` (`0000:00:02.0` on `igpu_node`), USB mapping `zigbee`;
    /// - backup jobs `backup-prod` (`vmid=104,109`, nightly to `local`) and `backup-lab`
    ///   (`pool=lab`);
    /// - HA resources `vm:104`, `vm:110`, `ct:120`; HA rules `prod-pin` (node affinity of
    ///   `vm:104` to `prod_node`) and `lab-apart` (`vm:110` and `ct:120` kept apart).
    pub fn demo(igpu_node: &str, prod_node: &str) -> Self {
        let igpu_map = format!("node={igpu_node},path=0000:00:02.0,id=8086:46a6,iommugroup=2");
        let usb_map = format!("node={igpu_node},id=1a86:55d4");
        let prod_nodes = format!("{prod_node}:2");
        ClusterSeed {
            pools: vec![
                SimPool {
                    id: "production".into(),
                    comment: "Services the household relies on".into(),
                    storages: Vec::new(),
                },
                SimPool {
                    id: "lab".into(),
                    comment: "Managed by OpenTofu".into(),
                    storages: Vec::new(),
                },
            ],
            pci_mappings: vec![SimEntry::new(
                "igpu",
                &[
                    ("map", igpu_map.as_str()),
                    ("description", "Intel UHD Graphics 770"),
                ],
            )],
            usb_mappings: vec![SimEntry::new(
                "zigbee",
                &[("map", usb_map.as_str()), ("description", "Zigbee stick")],
            )],
            backup_jobs: vec![
                SimEntry::new(
                    "backup-prod",
                    &[
                        ("type", "vzdump"),
                        ("vmid", "104,109"),
                        ("storage", "local"),
                        ("schedule", "02:00"),
                        ("mode", "snapshot"),
                        ("compress", "zstd"),
                        ("enabled", "1"),
                        ("comment", "nightly, production guests"),
                    ],
                ),
                SimEntry::new(
                    "backup-lab",
                    &[
                        ("type", "vzdump"),
                        ("pool", "lab"),
                        ("storage", "local"),
                        ("schedule", "sat 03:00"),
                        ("mode", "snapshot"),
                        ("enabled", "1"),
                    ],
                ),
            ],
            ha_resources: vec![
                SimEntry::new("vm:104", &[("state", "started")]),
                SimEntry::new("vm:110", &[("state", "started")]),
                SimEntry::new("ct:120", &[("state", "stopped")]),
            ],
            ha_rules: vec![
                SimEntry::new(
                    "prod-pin",
                    &[
                        ("type", "node-affinity"),
                        ("resources", "vm:104"),
                        ("nodes", prod_nodes.as_str()),
                        ("strict", "0"),
                    ],
                ),
                SimEntry::new(
                    "lab-apart",
                    &[
                        ("type", "resource-affinity"),
                        ("resources", "ct:120,vm:110"),
                        ("affinity", "negative"),
                    ],
                ),
            ],
            ..ClusterSeed::default()
        }
    }
}
