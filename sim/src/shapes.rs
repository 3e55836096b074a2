//! The shape of what a `GET` answers, for the endpoints the sim does not model: PVE 9.1's
//! API schema (pve-docs `api-viewer/apidata.js`) declares an object or a string for these
//! paths and a list for (nearly) all others, so the generic answer is `{}`, `""` or `[]`
//! accordingly — a client that reads an object never gets a list.

/// A `GET`'s answer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `{}`.
    Object,
    /// `""`.
    Text,
    /// `[]`.
    List,
}

/// Paths (below `/api2/<format>`, `{…}` matching one segment) whose `GET` answers an object.
const OBJECT: &[&str] = &[
    "/access/groups/{groupid}",
    "/access/permissions",
    "/access/roles/{roleid}",
    "/access/tfa/{userid}/{id}",
    "/access/users/{userid}",
    "/access/users/{userid}/tfa",
    "/access/users/{userid}/token/{tokenid}",
    "/cluster/acme/account/{name}",
    "/cluster/acme/meta",
    "/cluster/acme/plugins/{id}",
    "/cluster/backup/{id}",
    "/cluster/backup/{id}/included_volumes",
    "/cluster/ceph/metadata",
    "/cluster/ceph/status",
    "/cluster/config/join",
    "/cluster/config/qdevice",
    "/cluster/config/totem",
    "/cluster/firewall/aliases/{name}",
    "/cluster/firewall/groups/{group}/{pos}",
    "/cluster/firewall/ipset/{name}/{cidr}",
    "/cluster/firewall/options",
    "/cluster/firewall/rules/{pos}",
    "/cluster/ha/resources/{sid}",
    "/cluster/ha/rules/{rule}",
    "/cluster/ha/status/manager_status",
    "/cluster/jobs/realm-sync/{id}",
    "/cluster/mapping/dir/{id}",
    "/cluster/mapping/pci/{id}",
    "/cluster/mapping/usb/{id}",
    "/cluster/metrics/export",
    "/cluster/metrics/server/{id}",
    "/cluster/notifications/endpoints/gotify/{name}",
    "/cluster/notifications/endpoints/sendmail/{name}",
    "/cluster/notifications/endpoints/smtp/{name}",
    "/cluster/notifications/endpoints/webhook/{name}",
    "/cluster/notifications/matchers/{name}",
    "/cluster/options",
    "/cluster/replication/{id}",
    "/cluster/sdn/controllers/{controller}",
    "/cluster/sdn/dns/{dns}",
    "/cluster/sdn/dry-run",
    "/cluster/sdn/fabrics/all",
    "/cluster/sdn/fabrics/fabric/{id}",
    "/cluster/sdn/fabrics/node/{fabric_id}/{node_id}",
    "/cluster/sdn/ipams/{ipam}",
    "/cluster/sdn/vnets/{vnet}",
    "/cluster/sdn/vnets/{vnet}/firewall/options",
    "/cluster/sdn/vnets/{vnet}/firewall/rules/{pos}",
    "/cluster/sdn/vnets/{vnet}/subnets/{subnet}",
    "/cluster/sdn/zones/{zone}",
    "/nodes/{node}/apt/repositories",
    "/nodes/{node}/capabilities/qemu/migration",
    "/nodes/{node}/ceph/cfg/value",
    "/nodes/{node}/ceph/cmd-safety",
    "/nodes/{node}/ceph/osd",
    "/nodes/{node}/ceph/osd/{osdid}/lv-info",
    "/nodes/{node}/ceph/osd/{osdid}/metadata",
    "/nodes/{node}/ceph/pool/{name}/status",
    "/nodes/{node}/ceph/status",
    "/nodes/{node}/config",
    "/nodes/{node}/disks/lvm",
    "/nodes/{node}/disks/smart",
    "/nodes/{node}/disks/zfs/{name}",
    "/nodes/{node}/dns",
    "/nodes/{node}/firewall/options",
    "/nodes/{node}/firewall/rules/{pos}",
    "/nodes/{node}/hosts",
    "/nodes/{node}/lxc/{vmid}/config",
    "/nodes/{node}/lxc/{vmid}/feature",
    "/nodes/{node}/lxc/{vmid}/firewall/aliases/{name}",
    "/nodes/{node}/lxc/{vmid}/firewall/ipset/{name}/{cidr}",
    "/nodes/{node}/lxc/{vmid}/firewall/options",
    "/nodes/{node}/lxc/{vmid}/firewall/rules/{pos}",
    "/nodes/{node}/lxc/{vmid}/migrate",
    "/nodes/{node}/lxc/{vmid}/mtunnelwebsocket",
    "/nodes/{node}/lxc/{vmid}/rrd",
    "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/config",
    "/nodes/{node}/lxc/{vmid}/status/current",
    "/nodes/{node}/lxc/{vmid}/vncwebsocket",
    "/nodes/{node}/network/{iface}",
    "/nodes/{node}/qemu/{vmid}/agent/exec-status",
    "/nodes/{node}/qemu/{vmid}/agent/file-read",
    "/nodes/{node}/qemu/{vmid}/agent/get-fsinfo",
    "/nodes/{node}/qemu/{vmid}/agent/get-host-name",
    "/nodes/{node}/qemu/{vmid}/agent/get-memory-block-info",
    "/nodes/{node}/qemu/{vmid}/agent/get-memory-blocks",
    "/nodes/{node}/qemu/{vmid}/agent/get-osinfo",
    "/nodes/{node}/qemu/{vmid}/agent/get-time",
    "/nodes/{node}/qemu/{vmid}/agent/get-timezone",
    "/nodes/{node}/qemu/{vmid}/agent/get-users",
    "/nodes/{node}/qemu/{vmid}/agent/get-vcpus",
    "/nodes/{node}/qemu/{vmid}/agent/info",
    "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces",
    "/nodes/{node}/qemu/{vmid}/config",
    "/nodes/{node}/qemu/{vmid}/feature",
    "/nodes/{node}/qemu/{vmid}/firewall/aliases/{name}",
    "/nodes/{node}/qemu/{vmid}/firewall/ipset/{name}/{cidr}",
    "/nodes/{node}/qemu/{vmid}/firewall/options",
    "/nodes/{node}/qemu/{vmid}/firewall/rules/{pos}",
    "/nodes/{node}/qemu/{vmid}/migrate",
    "/nodes/{node}/qemu/{vmid}/mtunnelwebsocket",
    "/nodes/{node}/qemu/{vmid}/rrd",
    "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config",
    "/nodes/{node}/qemu/{vmid}/status/current",
    "/nodes/{node}/qemu/{vmid}/vncwebsocket",
    "/nodes/{node}/query-url-metadata",
    "/nodes/{node}/replication/{id}/status",
    "/nodes/{node}/rrd",
    "/nodes/{node}/services/{service}/state",
    "/nodes/{node}/status",
    "/nodes/{node}/storage/{storage}/content/{volume}",
    "/nodes/{node}/storage/{storage}/import-metadata",
    "/nodes/{node}/storage/{storage}/rrd",
    "/nodes/{node}/storage/{storage}/status",
    "/nodes/{node}/subscription",
    "/nodes/{node}/tasks/{upid}/status",
    "/nodes/{node}/time",
    "/nodes/{node}/version",
    "/nodes/{node}/vncwebsocket",
    "/nodes/{node}/vzdump/defaults",
    "/pools/{poolid}",
    "/storage/{storage}",
    "/version",
];

/// Paths whose `GET` answers a string.
const TEXT: &[&str] = &[
    "/cluster/acme/tos",
    "/nodes/{node}/apt/changelog",
    "/nodes/{node}/ceph/cfg/raw",
    "/nodes/{node}/ceph/crush",
    "/nodes/{node}/qemu/{vmid}/cloudinit/dump",
    "/nodes/{node}/report",
    "/nodes/{node}/vzdump/extractconfig",
];

fn matches(template: &str, segs: &[&str]) -> bool {
    let parts: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
    parts.len() == segs.len()
        && parts
            .iter()
            .zip(segs)
            .all(|(t, s)| (t.starts_with('{') && t.ends_with('}')) || t == s)
}

/// The answer type of `GET /segs…`.
pub(crate) fn of(segs: &[&str]) -> Shape {
    if OBJECT.iter().any(|t| matches(t, segs)) {
        Shape::Object
    } else if TEXT.iter().any(|t| matches(t, segs)) {
        Shape::Text
    } else {
        Shape::List
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_by_template() {
        assert_eq!(of(&["cluster", "firewall", "options"]), Shape::Object);
        assert_eq!(
            of(&["nodes", "pve2", "storage", "local", "status"]),
            Shape::Object
        );
        assert_eq!(of(&["nodes", "pve", "report"]), Shape::Text);
        assert_eq!(
            of(&["nodes", "pve", "qemu", "104", "firewall", "rules"]),
            Shape::List
        );
        assert_eq!(of(&["cluster", "log"]), Shape::List);
    }
}
